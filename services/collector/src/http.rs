//! The collector's HTTP surface (axum): `POST /v1/feedback`, `GET /v1/fleet?since=&until=`,
//! `GET /v1/stats`, `GET /healthz`.
//!
//! Answers to an upload: 200 + `CollectorResponse` (ACCEPTED or DUPLICATE); 400 (malformed
//! or failed verification, REJECTED), 413 (too large), 415 (not protobuf): never retried;
//! 503 when the database fails, which a client retries.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cabin_proto::feedback::v1::{CollectorResponse, FeedbackBatch, UploadStatus};
use prost::Message;

use crate::store::{Put, Store, Window};
use crate::verify::verify;

/// Largest request body, compressed.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// How much of a too-large upload is read (and dropped) before it is refused: answering 413
/// with the body unread makes the connection reset under the sender, which then sees a broken
/// pipe instead of the status (the soak under load found it). Past this, the sender is cut off.
pub const DRAIN_LIMIT: usize = 4 * MAX_BODY;
/// Largest batch after gunzip (a zip bomb stops here).
pub const MAX_DECODED: usize = 32 * 1024 * 1024;

type Shared = Arc<Store>;

pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/v1/feedback", post(receive))
        .route("/v1/fleet", get(fleet))
        .route("/v1/stats", get(stats))
        .route("/healthz", get(|| async { "ok\n" }))
        // `receive` reads the body itself, see DRAIN_LIMIT
        .layer(DefaultBodyLimit::disable())
        .with_state(store)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
}

fn answer(
    status: StatusCode,
    batch_id: &str,
    upload: UploadStatus,
    message: &str,
    seq: u64,
) -> Response {
    let body = CollectorResponse {
        batch_id: batch_id.to_string(),
        status: upload as i32,
        message: message.to_string(),
        acknowledged_sequence: seq,
    }
    .encode_to_vec();
    (
        status,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        body,
    )
        .into_response()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    tracing::info!(%status, message, "upload refused");
    answer(status, "", UploadStatus::Rejected, message, 0)
}

async fn receive(State(store): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let body = match axum::body::to_bytes(body, DRAIN_LIMIT).await {
        Ok(body) if body.len() <= MAX_BODY => body,
        Ok(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "upload over 8 MiB"),
        // over DRAIN_LIMIT, or the sender went away mid-body
        Err(e) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("upload not read: {e}"),
            );
        }
    };
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let content_type = text(header::CONTENT_TYPE).unwrap_or_default();
    if content_type.split(';').next() != Some("application/x-protobuf") {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/x-protobuf",
        );
    }
    let bytes = match text(header::CONTENT_ENCODING).as_deref() {
        None | Some("identity") => body.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            let read = flate2::read::GzDecoder::new(&body[..])
                .take(MAX_DECODED as u64 + 1)
                .read_to_end(&mut out);
            match read {
                Ok(_) if out.len() > MAX_DECODED => {
                    return refuse(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "batch too large after gunzip",
                    );
                }
                Ok(_) => out,
                Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("bad gzip: {e}")),
            }
        }
        Some(other) => {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("Content-Encoding {other} is not supported"),
            );
        }
    };
    let batch = match FeedbackBatch::decode(&bytes[..]) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("not a FeedbackBatch: {e}"),
            );
        }
    };
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    if let Err(reason) = verify(&batch, key) {
        return answer(
            StatusCode::BAD_REQUEST,
            &batch.batch_id,
            UploadStatus::Rejected,
            &reason,
            0,
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (batch_id, vehicle, items) = (
        batch.batch_id.clone(),
        batch.vehicle_pseudonym.clone(),
        batch.items.len(),
    );
    match store.put(batch, now).await {
        Ok((put, seq)) => {
            let status = match put {
                Put::Accepted => UploadStatus::Accepted,
                Put::Duplicate => UploadStatus::Duplicate,
            };
            tracing::info!(batch = %batch_id, %vehicle, items, ?put, "batch received");
            answer(StatusCode::OK, &batch_id, status, "", seq)
        }
        Err(e) => {
            tracing::error!(%e, "cannot store a batch");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry later",
            )
        }
    }
}

/// A window bound: unix milliseconds or an RFC 3339 time.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("{text:?} is neither unix milliseconds nor an RFC 3339 time"))
}

/// `GET /v1/fleet?since=&until=`: problems whose batch window ended in `[since, until)`.
async fn fleet(
    State(store): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let bound = |name: &str| query.get(name).map(|t| parse_time(t)).transpose();
    let window = match (bound("since"), bound("until")) {
        (Ok(since), Ok(until)) => Window { since, until },
        (Err(e), _) | (_, Err(e)) => {
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    match store.fleet(window).await {
        Ok(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(%e, "fleet view failed");
            (StatusCode::SERVICE_UNAVAILABLE, "fleet view unavailable\n").into_response()
        }
    }
}

/// `GET /v1/stats`: exact counts of what is stored.
async fn stats(State(store): State<Shared>) -> Response {
    match store.stats().await {
        Ok(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(%e, "stats failed");
            (StatusCode::SERVICE_UNAVAILABLE, "stats unavailable\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_read_both_forms() {
        assert_eq!(parse_time("1790000000000"), Ok(1_790_000_000_000));
        assert_eq!(parse_time("2026-12-01T00:00:00Z"), Ok(1_796_083_200_000));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
