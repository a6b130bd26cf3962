//! The collector binary over real HTTP: accepted once, duplicates recognised (also after a
//! restart on the same database), every malformed upload refused with the right status, and
//! the fleet view.

use std::io::Write;

use cabin_proto::feedback::v1::{
    CollectorResponse, FeedbackBatch, ProblemSummary, RedactedItem, UploadStatus,
};
use prost::Message;

mod support;

fn start(db: &std::path::Path) -> support::Collector {
    support::Collector::start(&db.display().to_string(), "127.0.0.1:0")
}

fn batch(id: &str, vehicle: &str, seq: u64) -> FeedbackBatch {
    FeedbackBatch {
        batch_id: id.into(),
        sequence: seq,
        vehicle_pseudonym: vehicle.into(),
        schema_version: 1,
        items: vec![RedactedItem {
            id: format!("item-{id}"),
            channel: 2,
            time_unix_ms: 1_790_000_000_000,
            text: "the screen freezes [PHONE]".into(),
            locale: "en".into(),
            rating: Some(2),
        }],
        problems: vec![ProblemSummary {
            label: "screen lag".into(),
            count: 1,
            severity: 2,
            channels: vec![2],
            quotes: vec!["the screen freezes [PHONE]".into()],
            improvement: "optimise the HMI".into(),
            ..Default::default()
        }],
        created_unix_ms: 1_790_000_000_000,
        ..Default::default()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POST; returns the status and the decoded answer.
fn post(base: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, CollectorResponse) {
    let mut req = agent().post(format!("{base}/v1/feedback"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body).unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.body_mut().read_to_vec().unwrap();
    (
        status,
        CollectorResponse::decode(&bytes[..]).unwrap_or_default(),
    )
}

const ID1: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const ID2: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const PB: (&str, &str) = ("content-type", "application/x-protobuf");
const GZ: (&str, &str) = ("content-encoding", "gzip");

#[test]
fn batches_are_stored_once_and_bad_uploads_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let server = start(&db);
    let base = server.base.clone();

    let first = gzip(&batch(ID1, "veh-a", 1).encode_to_vec());
    let (status, answer) = post(&base, &first, &[PB, GZ, ("idempotency-key", ID1)]);
    assert_eq!((status, answer.status()), (200, UploadStatus::Accepted));
    assert_eq!(
        (answer.batch_id.as_str(), answer.acknowledged_sequence),
        (ID1, 1)
    );
    let (status, answer) = post(&base, &first, &[PB, GZ, ("idempotency-key", ID1)]);
    assert_eq!((status, answer.status()), (200, UploadStatus::Duplicate));
    // Identity encoding works too.
    let (status, answer) = post(&base, &batch(ID2, "veh-b", 1).encode_to_vec(), &[PB]);
    assert_eq!((status, answer.status()), (200, UploadStatus::Accepted));

    // Refusals, each with its status.
    let (status, _) = post(&base, &first, &[("content-type", "application/json"), GZ]);
    assert_eq!(status, 415);
    let (status, answer) = post(&base, b"certainly not protobuf", &[PB]);
    assert_eq!((status, answer.status()), (400, UploadStatus::Rejected));
    assert!(!answer.message.is_empty());
    let (status, answer) = post(&base, b"\x1f\x8b garbage", &[PB, GZ]);
    assert_eq!((status, answer.status()), (400, UploadStatus::Rejected));
    let other = "11111111-2222-4333-8444-555555555555";
    let (status, answer) = post(&base, &first, &[PB, GZ, ("idempotency-key", other)]);
    assert_eq!(status, 400);
    assert!(
        answer.message.contains("Idempotency-Key"),
        "{}",
        answer.message
    );
    let mut bad = batch("not-a-uuid", "veh-a", 2);
    bad.items[0].rating = Some(9);
    let (status, answer) = post(&base, &bad.encode_to_vec(), &[PB]);
    assert_eq!(status, 400);
    assert!(answer.message.contains("UUID"), "{}", answer.message);
    let (status, _) = post(&base, &vec![0u8; 9 * 1024 * 1024], &[PB]);
    assert_eq!(status, 413);
    let bomb = gzip(&vec![0u8; 40 * 1024 * 1024]);
    let (status, _) = post(&base, &bomb, &[PB, GZ]);
    assert_eq!(status, 413);

    let mut resp = agent().get(format!("{base}/v1/fleet")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let fleet: serde_json::Value =
        serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(fleet["vehicles"], 2);
    assert_eq!(fleet["batches"], 2);
    assert_eq!(fleet["problems"][0]["label"], "screen lag");
    assert_eq!(fleet["problems"][0]["vehicles"], 2);
    drop(server);

    // A restart on the same database still knows the batch.
    let server = start(&db);
    let (status, answer) = post(&server.base, &first, &[PB, GZ]);
    assert_eq!((status, answer.status()), (200, UploadStatus::Duplicate));
    let mut resp = agent()
        .get(format!("{}/healthz", server.base))
        .call()
        .unwrap();
    assert_eq!(resp.body_mut().read_to_string().unwrap().trim(), "ok");
}
