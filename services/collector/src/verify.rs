//! What a batch must look like before it is stored. A batch that fails is refused with a
//! reason (HTTP 400, `UPLOAD_STATUS_REJECTED`): the same bytes would fail again.

use cabin_proto::feedback::v1::{FeedbackBatch, SCHEMA_VERSION};

pub const MAX_ITEMS: usize = 10_000;
pub const MAX_TEXT_CHARS: usize = 4_000;

fn is_batch_id(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Checks a decoded batch; `idempotency_key` is the header the upload came with.
pub fn verify(batch: &FeedbackBatch, idempotency_key: Option<&str>) -> Result<(), String> {
    if !is_batch_id(&batch.batch_id) {
        return Err(format!(
            "batch_id {:?} is not a UUID",
            truncate(&batch.batch_id)
        ));
    }
    if let Some(key) = idempotency_key
        && key != batch.batch_id
    {
        return Err(format!(
            "Idempotency-Key {:?} differs from batch_id {}",
            truncate(key),
            batch.batch_id
        ));
    }
    if batch.schema_version == 0 || batch.schema_version > SCHEMA_VERSION {
        return Err(format!(
            "schema_version {} is not supported (1..={SCHEMA_VERSION})",
            batch.schema_version
        ));
    }
    if batch.sequence == 0 {
        return Err("sequence starts at 1".into());
    }
    let vehicle = &batch.vehicle_pseudonym;
    if vehicle.is_empty() || vehicle.len() > 128 || vehicle.chars().any(char::is_control) {
        return Err("vehicle_pseudonym must be 1..128 printable characters".into());
    }
    if batch.items.is_empty() {
        return Err("a batch carries at least one item".into());
    }
    if batch.items.len() > MAX_ITEMS {
        return Err(format!(
            "{} items is over the {MAX_ITEMS}-item limit",
            batch.items.len()
        ));
    }
    for (n, item) in batch.items.iter().enumerate() {
        if item.id.is_empty() || item.id.len() > 64 {
            return Err(format!("item {n}: id must be 1..64 bytes"));
        }
        let chars = item.text.chars().count();
        if chars == 0 || chars > MAX_TEXT_CHARS {
            return Err(format!(
                "item {n}: text must be 1..{MAX_TEXT_CHARS} characters"
            ));
        }
        if item.rating.is_some_and(|r| !(1..=5).contains(&r)) {
            return Err(format!("item {n}: rating must be 1..5"));
        }
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cabin_proto::feedback::v1::RedactedItem;

    fn good() -> FeedbackBatch {
        FeedbackBatch {
            batch_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            sequence: 1,
            vehicle_pseudonym: "veh-1".into(),
            schema_version: SCHEMA_VERSION,
            items: vec![RedactedItem {
                id: "i1".into(),
                channel: 1,
                time_unix_ms: 1,
                text: "导航老是卡".into(),
                locale: "zh".into(),
                rating: Some(2),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_good_batch_passes_and_each_flaw_is_named() {
        assert_eq!(
            verify(&good(), Some("0f8fad5b-d9cb-469f-a165-70867728950e")),
            Ok(())
        );
        type Spoil = Box<dyn Fn(&mut FeedbackBatch)>;
        let cases: Vec<(Spoil, &str)> = vec![
            (Box::new(|b| b.batch_id = "x".into()), "not a UUID"),
            (Box::new(|b| b.schema_version = 9), "schema_version"),
            (Box::new(|b| b.sequence = 0), "sequence"),
            (
                Box::new(|b| b.vehicle_pseudonym.clear()),
                "vehicle_pseudonym",
            ),
            (Box::new(|b| b.items.clear()), "at least one item"),
            (Box::new(|b| b.items[0].text = "x".repeat(5000)), "text"),
            (Box::new(|b| b.items[0].rating = Some(7)), "rating"),
        ];
        for (spoil, expect) in cases {
            let mut b = good();
            spoil(&mut b);
            let err = verify(&b, None).unwrap_err();
            assert!(err.contains(expect), "{err} should mention {expect}");
        }
        assert!(
            verify(&good(), Some("other"))
                .unwrap_err()
                .contains("Idempotency-Key")
        );
    }
}
