//! What the bus object and the upload loop share: the desk, the uploader, the last uploads'
//! outcome and the wake-ups.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::config::Config;
use crate::desk::Desk;
use crate::upload::Uploader;

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
    pub(super) uploader: Option<Arc<Uploader>>,
    pub(super) state: Mutex<UploadState>,
    /// New items or a consent change: the loop looks again (after the batch delay).
    pub(super) work: Notify,
    /// `Flush`: upload now, no batch delay, no backoff wait.
    pub(super) flush: Notify,
    pub(super) flushing: AtomicBool,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

    pub(super) fn may_upload(&self) -> bool {
        self.uploader.is_some() && self.desk.consent()
    }
}
