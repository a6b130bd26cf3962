//! `org.cabin.Wallpaper1.Job` at `/org/cabin/Wallpaper1/jobs/<n>`: one requested picture.
//!
//! Properties: `State` (queued, running, done, failed, cancelled), `Progress` (0..1),
//! `Prompt`, `ImageId` (when done), `PreviewPath` (the latest preview PNG, for HMIs that
//! prefer a path to a descriptor). Signals: `Progress(u step, u total, h preview_png)`,
//! `Done(s image_id)`, `Failed(s error_name, s message)`. Method: `Cancel()`.
//! A finished job leaves the bus after `job_linger_secs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cabin_common::CabinError;
use cabin_common::error::names;
use zbus::interface;
use zbus::object_server::{InterfaceRef, SignalEmitter};

use super::service::{Wallpaper, job_path, refresh};
use super::{Core, Reason};
use crate::queue::{Event, JobId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

pub struct Job {
    core: Arc<Core>,
    id: JobId,
    prompt: String,
    state: JobState,
    progress: f64,
    image_id: String,
    preview_path: String,
}

impl Job {
    pub fn new(core: Arc<Core>, id: JobId, prompt: &str) -> Self {
        Self {
            core,
            id,
            prompt: prompt.to_string(),
            state: JobState::Queued,
            progress: 0.0,
            image_id: String::new(),
            preview_path: String::new(),
        }
    }

    fn preview_file(&self) -> PathBuf {
        self.core
            .previews_dir()
            .join(format!("job-{}.png", self.id))
    }
}

#[interface(name = "org.cabin.Wallpaper1.Job")]
impl Job {
    /// Stops the job: at once when queued, within one step when running.
    async fn cancel(
        &mut self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), CabinError> {
        if self.state == JobState::Cancelled {
            return Ok(());
        }
        if self.state.finished() {
            return Err(CabinError::invalid_argument(format!(
                "job {} already ended ({})",
                self.id,
                self.state.as_str()
            )));
        }
        match self.core.queue().cancel(self.id) {
            // Still waiting: it ends here.
            Ok(true) => {
                self.state = JobState::Cancelled;
                let _ = self.state_changed(&emitter).await;
                let _ =
                    Job::failed(&emitter, names::CANCELLED, "cancelled before it started").await;
                linger(conn.clone(), self.core.clone(), self.id);
                Ok(())
            }
            // Running: the worker stops within a step and reports it.
            Ok(false) => Ok(()),
            Err(e) => Err(CabinError::invalid_argument(e.to_string())),
        }
    }

    #[zbus(property)]
    fn state(&self) -> &str {
        self.state.as_str()
    }

    /// 0..1.
    #[zbus(property)]
    fn progress(&self) -> f64 {
        self.progress
    }

    #[zbus(property)]
    fn prompt(&self) -> &str {
        &self.prompt
    }

    /// The picture's id once done, else "".
    #[zbus(property)]
    fn image_id(&self) -> &str {
        &self.image_id
    }

    #[zbus(property)]
    fn preview_path(&self) -> &str {
        &self.preview_path
    }

    /// After every denoising step, with a small PNG of the current guess.
    #[zbus(signal, name = "Progress")]
    async fn progress_step(
        emitter: &SignalEmitter<'_>,
        step: u32,
        total: u32,
        preview_png: zbus::Fd<'_>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn done(emitter: &SignalEmitter<'_>, image_id: &str) -> zbus::Result<()>;

    /// `error_name` is an `org.cabin.Error.*` name (`Cancelled` for a cancelled job).
    #[zbus(signal)]
    async fn failed(
        emitter: &SignalEmitter<'_>,
        error_name: &str,
        message: &str,
    ) -> zbus::Result<()>;
}

/// Removes a finished job from the bus after the linger time.
fn linger(conn: zbus::Connection, core: Arc<Core>, id: JobId) {
    let after = Duration::from_secs(core.config.job_linger_secs);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = conn
            .object_server()
            .remove::<Job, _>(job_path(id).as_str())
            .await;
        let _ = std::fs::remove_file(core.previews_dir().join(format!("job-{id}.png")));
    });
}

/// Applies one worker event to the bus.
pub async fn handle(
    core: &Arc<Core>,
    conn: &zbus::Connection,
    service: &InterfaceRef<Wallpaper>,
    event: Event,
) -> zbus::Result<()> {
    let emitter = service.signal_emitter();
    match event {
        Event::Started { job } => {
            if let Some(iface) = job_ref(conn, job).await {
                let mut j = iface.get_mut().await;
                j.state = JobState::Running;
                j.state_changed(iface.signal_emitter()).await?;
            }
        }
        Event::Progress {
            job,
            step,
            total,
            preview,
        } => {
            let Some(iface) = job_ref(conn, job).await else {
                return Ok(());
            };
            let mut j = iface.get_mut().await;
            j.progress = step as f64 / total.max(1) as f64;
            j.progress_changed(iface.signal_emitter()).await?;
            let file = preview.and_then(|png| {
                let path = j.preview_file();
                std::fs::create_dir_all(core.previews_dir()).ok()?;
                // A preview is worthless after a power cut: rename for atomicity, no fsync.
                let temp = path.with_extension("png.tmp");
                std::fs::write(&temp, &png).ok()?;
                std::fs::rename(&temp, &path).ok()?;
                let file = std::fs::File::open(&path).ok()?;
                Some((path, file))
            });
            if let Some((path, file)) = file {
                let path = path.display().to_string();
                if j.preview_path != path {
                    j.preview_path = path;
                    j.preview_path_changed(iface.signal_emitter()).await?;
                }
                let fd = zbus::Fd::from(&file);
                Job::progress_step(iface.signal_emitter(), step as u32, total as u32, fd).await?;
            }
        }
        Event::Done { job, spec, entry } => {
            let evicted = core.store().evict().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cache eviction failed");
                Vec::new()
            });
            for id in &evicted {
                core.queue().forget(id);
            }
            if spec.apply {
                let now = chrono::Utc::now(); // record-keeping: wall time
                let applied = match &spec.display {
                    Some(display) => core.store().set_current_on(display, &entry.id, now),
                    None => core.store().set_current(&entry.id, now),
                };
                match applied {
                    Ok(()) => refresh(core, service, Reason::Requested, true).await,
                    Err(e) => tracing::warn!(error = %e, "cannot apply the new picture"),
                }
            }
            if entry.time_aware && core.time_aware() {
                core.queue().make_variants(&entry);
            }
            if let Some(iface) = job_ref(conn, job).await {
                let mut j = iface.get_mut().await;
                j.state = JobState::Done;
                j.progress = 1.0;
                j.image_id = entry.id.clone();
                j.image_id_changed(iface.signal_emitter()).await?;
                j.progress_changed(iface.signal_emitter()).await?;
                j.state_changed(iface.signal_emitter()).await?;
                Job::done(iface.signal_emitter(), &entry.id).await?;
            }
            linger(conn.clone(), core.clone(), job);
            service.get().await.busy_changed(emitter).await?;
        }
        Event::Failed { job, failure } => {
            if let Some(iface) = job_ref(conn, job).await {
                let mut j = iface.get_mut().await;
                j.state = JobState::Failed;
                j.state_changed(iface.signal_emitter()).await?;
                Job::failed(iface.signal_emitter(), failure.name, &failure.message).await?;
            }
            linger(conn.clone(), core.clone(), job);
            service.get().await.busy_changed(emitter).await?;
        }
        Event::Cancelled { job } => {
            if let Some(iface) = job_ref(conn, job).await {
                let mut j = iface.get_mut().await;
                j.state = JobState::Cancelled;
                j.state_changed(iface.signal_emitter()).await?;
                Job::failed(
                    iface.signal_emitter(),
                    names::CANCELLED,
                    "cancelled while running",
                )
                .await?;
            }
            linger(conn.clone(), core.clone(), job);
            service.get().await.busy_changed(emitter).await?;
        }
        Event::VariantDone { image_id, word } => {
            tracing::debug!(image = %image_id, word, "phase variant ready");
            let on_show = core
                .config
                .displays
                .iter()
                .any(|d| core.presenter().shown_id(&d.name) == Some(image_id.as_str()));
            if on_show {
                refresh(core, service, Reason::Time, false).await;
            }
        }
        Event::ModelLoaded(loaded) => {
            core.model_loaded
                .store(loaded, std::sync::atomic::Ordering::SeqCst);
            service.get().await.model_info_changed(emitter).await?;
        }
    }
    Ok(())
}

async fn job_ref(conn: &zbus::Connection, id: JobId) -> Option<InterfaceRef<Job>> {
    conn.object_server()
        .interface::<_, Job>(job_path(id).as_str())
        .await
        .ok()
}
