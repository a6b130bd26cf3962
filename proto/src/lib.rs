//! Generated types of `proto/cabin/feedback/v1/*.proto`.
//!
//! Architecture invariant: schema only. No I/O, no logic beyond what prost generates, no
//! dependency on any other cabin crate, so the collector and the car share exactly this.

pub mod feedback {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cabin.feedback.v1.rs"));

        /// The `schema_version` writers of this crate put into batches.
        pub const SCHEMA_VERSION: u32 = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::feedback::v1::*;
    use prost::Message;

    fn sample() -> FeedbackBatch {
        FeedbackBatch {
            batch_id: "5b0e8f7e-3f0c-4c53-9a55-1b3f1c1e0f00".into(),
            sequence: 7,
            vehicle_pseudonym: "veh-3f9a".into(),
            window: Some(TimeWindow {
                start_unix_ms: 1,
                end_unix_ms: 2,
            }),
            schema_version: SCHEMA_VERSION,
            problems: vec![ProblemSummary {
                label: "车机卡顿 / infotainment lag".into(),
                keywords: vec!["卡顿".into(), "lag".into()],
                count: 12,
                trend: Trend::Rising as i32,
                channels: vec![Channel::Voice as i32, Channel::App as i32],
                sentiment: -0.6,
                severity: Severity::Medium as i32,
                quotes: vec!["导航老是卡，电话[PHONE]".into()],
                improvement: "Profile map rendering on the head unit".into(),
                previous_count: 5,
                key: "hmi_screen/lag".into(),
            }],
            items: vec![RedactedItem {
                id: "i1".into(),
                channel: Channel::Dealer as i32,
                time_unix_ms: 3,
                text: "seat heater broken".into(),
                locale: "en-GB".into(),
                rating: Some(2),
            }],
            created_unix_ms: 4,
        }
    }

    #[test]
    fn round_trips() {
        let batch = sample();
        let bytes = batch.encode_to_vec();
        assert_eq!(FeedbackBatch::decode(bytes.as_slice()).unwrap(), batch);
    }

    #[test]
    fn a_v1_reader_skips_fields_from_a_newer_writer() {
        let mut bytes = sample().encode_to_vec();
        // Field 100, wire type 2 (length-delimited): what a later minor version might add.
        prost::encoding::string::encode(100, &"from the future".to_string(), &mut bytes);
        assert_eq!(FeedbackBatch::decode(bytes.as_slice()).unwrap(), sample());
    }

    #[test]
    fn unknown_enum_values_read_as_unspecified() {
        let mut response = CollectorResponse {
            status: 42,
            ..Default::default()
        };
        let decoded = CollectorResponse::decode(response.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.status(), UploadStatus::Unspecified);
        response.status = UploadStatus::Duplicate as i32;
        assert_eq!(response.status(), UploadStatus::Duplicate);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(FeedbackBatch::decode(&[0xff, 0xff, 0xff][..]).is_err());
    }
}
