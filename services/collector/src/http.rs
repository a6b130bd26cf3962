//! The collector's HTTP surface (axum): `POST /v1/feedback`, `GET /v1/fleet`, `GET /healthz`.
//!
//! Answers to an upload: 200 + `CollectorResponse` (ACCEPTED or DUPLICATE); 400 (malformed
//! or failed verification, REJECTED), 413 (too large), 415 (not protobuf): never retried;
//! 503 when the database fails, which a client retries.

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cabin_proto::feedback::v1::{CollectorResponse, FeedbackBatch, UploadStatus};
use prost::Message;

use crate::store::{Put, Store};
use crate::verify::verify;

/// Largest request body, compressed.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Largest batch after gunzip (a zip bomb stops here).
pub const MAX_DECODED: usize = 32 * 1024 * 1024;

type Shared = Arc<Mutex<Store>>;

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/v1/feedback", post(receive))
        .route("/v1/fleet", get(fleet))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(Mutex::new(store)))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
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

async fn receive(State(store): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
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
    let stored = tokio::task::spawn_blocking(move || {
        let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let put = store.put(&batch, now)?;
        let seq = store.acknowledged_sequence(&batch.vehicle_pseudonym)?;
        Ok::<_, crate::store::StoreError>((batch, put, seq))
    })
    .await;
    match stored {
        Ok(Ok((batch, put, seq))) => {
            let status = match put {
                Put::Accepted => UploadStatus::Accepted,
                Put::Duplicate => UploadStatus::Duplicate,
            };
            tracing::info!(batch = %batch.batch_id, vehicle = %batch.vehicle_pseudonym, items = batch.items.len(), ?put, "batch received");
            answer(StatusCode::OK, &batch.batch_id, status, "", seq)
        }
        Ok(Err(e)) => {
            tracing::error!(%e, "cannot store a batch");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry later",
            )
        }
        Err(e) => {
            tracing::error!(%e, "store task failed");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry later",
            )
        }
    }
}

async fn fleet(State(store): State<Shared>) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        store.lock().unwrap_or_else(|p| p.into_inner()).fleet()
    })
    .await;
    match result {
        Ok(Ok(json)) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "fleet view unavailable\n").into_response(),
    }
}
