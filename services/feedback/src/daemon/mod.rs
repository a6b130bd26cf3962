//! cabin-feedbackd on the bus: `org.cabin.Feedback1` ([`service`]) over the [`Desk`], and the
//! upload loop that drains the outbox to the collector.
//!
//! Nothing slow runs inside a method: submissions are written in a blocking thread (fsync),
//! uploads happen in [`upload_loop`], which `Submit`, `Flush` and `Consent` wake.
//!
//! Architecture invariant: without consent nothing leaves the car — the loop checks consent
//! before every attempt, and an upload URL alone never overrides it.

pub mod service;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;
use zbus::object_server::InterfaceRef;

use crate::desk::Desk;
use crate::history::Retention;
use crate::outbox::Limits;
use crate::upload::{Backoff, Outcome, Uploader};

pub use service::Feedback;

pub use cabin_contracts::feedback::{BUS_NAME, INTERFACE, INTROSPECTION_XML, OBJECT_PATH};

/// How `cabin-feedbackd` names itself: in its logs, its `--help` and the bus name it takes.
pub const DAEMON: cabin_common::cli::Daemon = cabin_common::cli::Daemon::new(
    "cabin-feedbackd",
    BUS_NAME,
    "Serve feedback intake, summaries and batched uploads as org.cabin.Feedback1",
);

/// `/etc/cabin/feedback.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The collector's `POST` endpoint (`--upload-url` wins); none: batches wait on the car.
    pub upload_url: Option<String>,
    /// PEM file of the CA(s) the collector's certificate must chain to [default: web roots].
    pub ca_file: Option<PathBuf>,
    /// Consent until the owner sets it. Off: nothing leaves the car.
    pub consent_default: bool,
    /// How long new items gather before a batch is cut (`Flush` skips the wait).
    pub batch_delay_ms: u64,
    /// One upload attempt, connection to answer.
    pub timeout_secs: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_secs: u64,
    pub outbox: Limits,
    pub history: Retention,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            upload_url: None,
            ca_file: None,
            consent_default: false,
            batch_delay_ms: 30_000,
            timeout_secs: 30,
            backoff_initial_ms: 2_000,
            backoff_max_secs: 600,
            outbox: Limits::default(),
            history: Retention::default(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.upload_url {
            crate::upload::check_url(url)?;
        }
        if self.timeout_secs == 0 || self.backoff_initial_ms == 0 || self.backoff_max_secs == 0 {
            return Err("timeout_secs, backoff_initial_ms and backoff_max_secs must be > 0".into());
        }
        if self.outbox.max_batch_items == 0 || self.outbox.max_batch_bytes < 1024 {
            return Err("outbox.max_batch_items must be > 0 and max_batch_bytes ≥ 1024".into());
        }
        Ok(())
    }
}

/// What the last uploads did, for the `LastUpload` and `LastError` properties.
#[derive(Debug, Clone, Default)]
pub struct UploadState {
    pub last_upload_unix_ms: i64,
    pub last_error: String,
}

/// What the bus object and the upload loop share.
pub struct Core {
    pub desk: Desk,
    pub config: Config,
    uploader: Option<Arc<Uploader>>,
    state: Mutex<UploadState>,
    /// New items or a consent change: the loop looks again (after the batch delay).
    work: Notify,
    /// `Flush`: upload now, no batch delay, no backoff wait.
    flush: Notify,
    flushing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn now_unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Core {
    pub fn open(config: Config, state_dir: &Path) -> Result<Arc<Self>, String> {
        config.validate()?;
        let desk = Desk::open(
            state_dir,
            config.outbox,
            config.history,
            config.consent_default,
        )
        .map_err(|e| {
            format!(
                "cannot open the feedback state in {}: {e}",
                state_dir.display()
            )
        })?;
        let uploader = match &config.upload_url {
            Some(url) => Some(Arc::new(
                Uploader::new(
                    url,
                    config.ca_file.as_deref(),
                    Duration::from_secs(config.timeout_secs),
                )
                .map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        Ok(Arc::new(Self {
            desk,
            config,
            uploader,
            state: Mutex::new(UploadState::default()),
            work: Notify::new(),
            flush: Notify::new(),
            flushing: AtomicBool::new(false),
        }))
    }

    pub fn upload_state(&self) -> UploadState {
        lock(&self.state).clone()
    }

    pub fn has_uploader(&self) -> bool {
        self.uploader.is_some()
    }

    pub fn wake(&self) {
        self.work.notify_one();
    }

    pub fn flush(&self) {
        self.flushing.store(true, Ordering::SeqCst);
        self.flush.notify_one();
        self.work.notify_one();
    }

    fn may_upload(&self) -> bool {
        self.uploader.is_some() && self.desk.consent()
    }
}

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
