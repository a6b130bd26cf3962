//! The service's configuration file.

use std::path::PathBuf;

use serde::Deserialize;

use crate::history::Retention;
use crate::outbox::Limits;

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
