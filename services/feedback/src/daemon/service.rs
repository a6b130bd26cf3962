//! `org.cabin.Feedback1` at `/org/cabin/Feedback1` (contract:
//! `services/contracts/dbus/org.cabin.Feedback1.xml`).
//!
//! Methods: `Submit(s channel, s text, a{sv} meta) → s id`, `Import(h fd, s format) → u count`,
//! `Summary(x since, x until, a{sv} options) → s json`, `Flush()`.
//! Properties: `Pending`, `Uploaded`, `LastUpload`, `LastError`, `Consent` (writable).
//! Signals: `BatchUploaded(s batch_id, u items)`, `UploadFailed(s reason)`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use cabin_common::CabinError;
use cabin_common::options::{integer, string, strings, unsigned};
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::{OwnedVariant, Variant, fdo, interface};

use super::shared::{Core, now_unix_ms};
use crate::desk::{DeskError, SummaryOptions};
use crate::intake::{IntakeError, MAX_IMPORT_BYTES, Submission};

pub struct Feedback {
    core: Arc<Core>,
}

impl Feedback {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

fn desk_error(e: DeskError) -> CabinError {
    match e {
        DeskError::Intake(e) => CabinError::invalid_argument(e.to_string()),
        DeskError::InvalidArgument(m) => CabinError::invalid_argument(m),
        DeskError::Full(e) => CabinError::busy(e.to_string()),
        DeskError::Storage(m) => CabinError::internal("feedback storage", m),
    }
}

/// `Submit`'s meta: rating (1..5), locale (BCP 47), time (Unix ms, or RFC 3339 text).
fn parse_meta(
    channel: &str,
    text: &str,
    meta: &HashMap<String, OwnedVariant>,
) -> Result<Submission, CabinError> {
    let mut sub = Submission {
        channel: channel.to_string(),
        text: text.to_string(),
        ..Default::default()
    };
    for (key, value) in meta {
        let value: &Variant<'_> = value;
        match key.as_str() {
            "rating" => sub.rating = Some(integer(key, value)?),
            "locale" => sub.locale = Some(string(key, value)?),
            "time" => {
                sub.time_unix_ms = Some(match value {
                    Variant::Str(s) => chrono::DateTime::parse_from_rfc3339(s)
                        .map_err(|e| {
                            CabinError::invalid_argument(format!(
                                "time {s:?} is not RFC 3339 ({e}); or send Unix ms as x"
                            ))
                        })?
                        .timestamp_millis(),
                    other => integer(key, other)?,
                })
            }
            other => {
                return Err(CabinError::invalid_argument(format!(
                    "unknown meta key {other:?}; known: rating, locale, time"
                )));
            }
        }
    }
    Ok(sub)
}

fn summary_options(options: &HashMap<String, OwnedVariant>) -> Result<SummaryOptions, CabinError> {
    let mut out = SummaryOptions::default();
    for (key, value) in options {
        let value: &Variant<'_> = value;
        match key.as_str() {
            "max_quotes" => out.max_quotes = unsigned(key, value)?.min(20) as usize,
            "max_problems" => out.max_problems = unsigned(key, value)?.min(1000) as usize,
            "channels" => out.channels = strings(key, value)?,
            other => {
                return Err(CabinError::invalid_argument(format!(
                    "unknown option {other:?}; known: max_quotes, max_problems, channels"
                )));
            }
        }
    }
    Ok(out)
}

#[interface(name = "org.cabin.Feedback1")]
impl Feedback {
    /// Checks, redacts and stores one piece of feedback; the id is returned once it is on disk.
    #[zbus(out_args("id"))]
    async fn submit(
        &self,
        channel: String,
        text: String,
        meta: HashMap<String, OwnedVariant>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, CabinError> {
        let sub = parse_meta(&channel, &text, &meta)?;
        let core = self.core.clone();
        let id = tokio::task::spawn_blocking(move || core.desk.submit(&sub, now_unix_ms()))
            .await
            .map_err(|e| CabinError::internal("submit task", e))?
            .map_err(desk_error)?;
        self.core.wake();
        let _ = self.pending_changed(&emitter).await;
        Ok(id)
    }

    /// Imports a JSON Lines or CSV export read from `fd`; all rows or none.
    #[zbus(out_args("count"))]
    async fn import(
        &self,
        fd: zbus::Fd<'_>,
        format: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<u32, CabinError> {
        let format = format.trim().to_ascii_lowercase();
        if !matches!(format.as_str(), "jsonl" | "csv") {
            return Err(CabinError::invalid_argument(
                IntakeError::UnknownFormat(format).to_string(),
            ));
        }
        let owned = std::os::fd::AsFd::as_fd(&fd)
            .try_clone_to_owned()
            .map_err(|e| CabinError::invalid_argument(format!("unusable fd: {e}")))?;
        let file = std::fs::File::from(owned);
        let core = self.core.clone();
        let count = tokio::task::spawn_blocking(move || -> Result<usize, CabinError> {
            let mut bytes = Vec::new();
            file.take(MAX_IMPORT_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| CabinError::invalid_argument(format!("cannot read the fd: {e}")))?;
            core.desk
                .import(&bytes, &format, "app", now_unix_ms())
                .map_err(desk_error)
        })
        .await
        .map_err(|e| CabinError::internal("import task", e))??;
        self.core.wake();
        let _ = self.pending_changed(&emitter).await;
        Ok(count as u32)
    }

    /// Recurring problems of `since..until` (Unix ms; 0 = open end) as JSON.
    #[zbus(out_args("json"))]
    async fn summary(
        &self,
        since: i64,
        until: i64,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<String, CabinError> {
        let options = summary_options(&options)?;
        let until = if until == 0 { i64::MAX } else { until };
        let core = self.core.clone();
        let json = tokio::task::spawn_blocking(move || core.desk.summary(since, until, &options))
            .await
            .map_err(|e| CabinError::internal("summary task", e))?
            .map_err(desk_error)?;
        Ok(json.to_string())
    }

    /// Upload what is pending now; returns at once (watch `BatchUploaded` / `UploadFailed`).
    async fn flush(&self) -> Result<(), CabinError> {
        if !self.core.has_uploader() {
            return Err(CabinError::unavailable(
                "no upload URL is configured (--upload-url or upload_url)",
            ));
        }
        if !self.core.desk.consent() {
            return Err(CabinError::PermissionDenied(
                "consent is off: nothing leaves the car".into(),
            ));
        }
        self.core.flush();
        Ok(())
    }

    /// Items accepted and not yet delivered.
    #[zbus(property)]
    fn pending(&self) -> u32 {
        self.core.desk.pending() as u32
    }

    /// Items delivered to the collector since the car was new.
    #[zbus(property)]
    fn uploaded(&self) -> u64 {
        self.core.desk.counters().uploaded_items
    }

    /// Unix ms of the last delivered batch (0: none since start).
    #[zbus(property)]
    fn last_upload(&self) -> i64 {
        self.core.upload_state().last_upload_unix_ms
    }

    /// Why the last attempt failed; empty after a success.
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.core.upload_state().last_error
    }

    #[zbus(property)]
    fn consent(&self) -> bool {
        self.core.desk.consent()
    }

    #[zbus(property)]
    async fn set_consent(&mut self, consent: bool) -> fdo::Result<()> {
        // Saving the setting is an fsync: off the event loop.
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.desk.set_consent(consent))
            .await
            .map_err(|e| fdo::Error::Failed(e.to_string()))?
            .map_err(|e| fdo::Error::Failed(e.to_string()))?;
        self.core.wake();
        Ok(())
    }

    #[zbus(signal)]
    async fn batch_uploaded(
        emitter: &SignalEmitter<'_>,
        batch_id: &str,
        items: u32,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn upload_failed(emitter: &SignalEmitter<'_>, reason: &str) -> zbus::Result<()>;
}

/// After a delivery: the signal, then the properties that changed.
pub async fn batch_uploaded(service: &InterfaceRef<Feedback>, batch_id: &str, items: u32) {
    let emitter = service.signal_emitter();
    if let Err(e) = Feedback::batch_uploaded(emitter, batch_id, items).await {
        tracing::warn!(%e, "cannot emit BatchUploaded");
    }
    let object = service.get().await;
    let _ = object.pending_changed(emitter).await;
    let _ = object.uploaded_changed(emitter).await;
    let _ = object.last_upload_changed(emitter).await;
    let _ = object.last_error_changed(emitter).await;
}

pub async fn upload_failed(service: &InterfaceRef<Feedback>, reason: &str) {
    let emitter = service.signal_emitter();
    if let Err(e) = Feedback::upload_failed(emitter, reason).await {
        tracing::warn!(%e, "cannot emit UploadFailed");
    }
    let object = service.get().await;
    let _ = object.pending_changed(emitter).await;
    let _ = object.last_error_changed(emitter).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, Variant<'static>)]) -> HashMap<String, OwnedVariant> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OwnedVariant::try_from(v.clone()).unwrap()))
            .collect()
    }

    #[test]
    fn meta_keys_are_read_or_refused_by_name() {
        let sub = parse_meta(
            "app",
            "text",
            &opts(&[
                ("rating", Variant::from(4u32)),
                ("locale", Variant::from("zh-CN")),
                ("time", Variant::from("2026-11-30T08:00:00+08:00")),
            ]),
        )
        .unwrap();
        assert_eq!(sub.rating, Some(4));
        assert_eq!(sub.locale.as_deref(), Some("zh-CN"));
        assert_eq!(sub.time_unix_ms, Some(1_795_996_800_000));
        let err = parse_meta("app", "t", &opts(&[("mood", Variant::from(1u32))])).unwrap_err();
        assert!(format!("{err:?}").contains("mood"));
        let err =
            parse_meta("app", "t", &opts(&[("time", Variant::from("yesterday"))])).unwrap_err();
        assert!(format!("{err:?}").contains("RFC 3339"));
        let o = summary_options(&opts(&[("channels", Variant::from(vec!["voice"]))])).unwrap();
        assert_eq!(o.channels, ["voice"]);
        assert!(summary_options(&opts(&[("max_quotes", Variant::from("3"))])).is_err());
    }
}
