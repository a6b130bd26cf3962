//! cabin-feedbackd on the bus: `org.cabin.Feedback1` ([`service`]) over the [`Desk`], and the
//! upload loop that drains the outbox to the collector.
//!
//! Nothing slow runs inside a method: submissions are written in a blocking thread (fsync),
//! uploads happen in [`upload_loop`], which `Submit`, `Flush` and `Consent` wake.
//!
//! Architecture invariant: without consent nothing leaves the car — the loop checks consent
//! before every attempt, and an upload URL alone never overrides it.

mod config;
pub mod service;
mod shared;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use zbus::object_server::InterfaceRef;

use crate::upload::{Backoff, Outcome};
use shared::lock;

pub use config::Config;
pub use service::Feedback;
pub use shared::{Core, UploadState, now_unix_ms};

pub use cabin_contracts::feedback::{BUS_NAME, INTERFACE, INTROSPECTION_XML, OBJECT_PATH};

/// How `cabin-feedbackd` names itself: in its logs, its `--help` and the bus name it takes.
pub const DAEMON: cabin_common::cli::Daemon = cabin_common::cli::Daemon::new(
    "cabin-feedbackd",
    BUS_NAME,
    "Serve feedback intake, summaries and batched uploads as org.cabin.Feedback1",
);

pub async fn serve(
    bus: &cabin_common::bus::BusChoice,
    config: Config,
    state_dir: &Path,
) -> Result<zbus::Connection, String> {
    let core = Core::open(config, state_dir)?;
    let builder = bus
        .builder()
        .serve_at(OBJECT_PATH, Feedback::new(core.clone()));
    let conn = cabin_common::bus::serve(builder, BUS_NAME)
        .await
        .map_err(|e| format!("cannot serve {BUS_NAME} on the {bus} bus: {e}"))?;
    let service = conn
        .object_server()
        .interface::<_, Feedback>(OBJECT_PATH)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(upload_loop(core, service));
    Ok(conn)
}

/// Drains the outbox while there is consent, an upload URL and something pending.
async fn upload_loop(core: Arc<Core>, service: InterfaceRef<Feedback>) {
    let mut backoff = Backoff::new(
        Duration::from_millis(core.config.backoff_initial_ms),
        Duration::from_secs(core.config.backoff_max_secs),
    );
    let batch_delay = Duration::from_millis(core.config.batch_delay_ms);
    loop {
        if !core.may_upload() || core.desk.pending() == 0 {
            core.work.notified().await;
            continue;
        }
        if !core.flushing.swap(false, Ordering::SeqCst) && !batch_delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(batch_delay) => {}
                _ = core.flush.notified() => {}
            }
        }
        let Some(uploader) = core.uploader.clone() else {
            continue;
        };
        while core.may_upload() {
            let desk_core = core.clone();
            let batch =
                match tokio::task::spawn_blocking(move || desk_core.desk.next_batch(now_unix_ms()))
                    .await
                {
                    Ok(Ok(Some(batch))) => batch,
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => {
                        record_error(&core, &service, format!("outbox: {e}")).await;
                        tokio::time::sleep(backoff.next(None)).await;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(%e, "outbox task failed");
                        break;
                    }
                };
            let sending = uploader.clone();
            let sent = batch.clone();
            let outcome = tokio::task::spawn_blocking(move || sending.send(&sent))
                .await
                .unwrap_or_else(|e| Outcome::Retry {
                    reason: format!("upload task failed: {e}"),
                    after: None,
                });
            match outcome {
                Outcome::Delivered { duplicate } => {
                    // The ack is an fsync: off the event loop.
                    let (acking, id) = (core.clone(), batch.batch_id.clone());
                    match tokio::task::spawn_blocking(move || acking.desk.ack(&id)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(%e, batch = %batch.batch_id, "cannot record the ack")
                        }
                        Err(e) => tracing::error!(%e, "ack task failed"),
                    }
                    backoff.reset();
                    {
                        let mut state = lock(&core.state);
                        state.last_upload_unix_ms = now_unix_ms();
                        state.last_error.clear();
                    }
                    tracing::info!(batch = %batch.batch_id, items = batch.items, duplicate, "batch delivered");
                    service::batch_uploaded(&service, &batch.batch_id, batch.items as u32).await;
                }
                Outcome::Rejected { reason } => {
                    let reason = format!("batch {} set aside: {reason}", batch.batch_id);
                    let (rejecting, id, why) =
                        (core.clone(), batch.batch_id.clone(), reason.clone());
                    match tokio::task::spawn_blocking(move || rejecting.desk.reject(&id, &why))
                        .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::error!(%e, batch = %batch.batch_id, "cannot set the batch aside")
                        }
                        Err(e) => tracing::error!(%e, "reject task failed"),
                    }
                    record_error(&core, &service, reason).await;
                }
                Outcome::Retry { reason, after } => {
                    let wait = backoff.next(after);
                    tracing::warn!(%reason, ?wait, failures = backoff.failures(), "upload will be retried");
                    record_error(&core, &service, reason).await;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = core.flush.notified() => { backoff.reset(); }
                    }
                }
            }
        }
    }
}

async fn record_error(core: &Core, service: &InterfaceRef<Feedback>, reason: String) {
    lock(&core.state).last_error = reason.clone();
    service::upload_failed(service, &reason).await;
}
