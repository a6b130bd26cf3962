//! `org.cabin.Wallpaper1.Job` at `/org/cabin/Wallpaper1/jobs/<n>`: one requested picture.
//!
//! Properties: `State` (queued, running, done, failed, cancelled), `Progress` (0..1),
//! `Prompt`, `ImageId` (when done), `PreviewPath` (the latest preview PNG, for HMIs that
//! prefer a path to a descriptor). Signals: `Progress(u step, u total, h preview_png)`,
//! `Done(s image_id)`, `Failed(s error_name, s message)`. Method: `Cancel()`.
//! A finished job leaves the bus after `job_linger_secs`.

use std::sync::Arc;
use std::time::Duration;

use cabin_common::CabinError;
use cabin_common::error::names;
use zbus::interface;
use zbus::object_server::{InterfaceRef, SignalEmitter};

use crate::gallery::{Gallery, Update};
use crate::queue::JobId;

pub fn job_path(id: JobId) -> String {
    format!("{}/jobs/{id}", cabin_contracts::wallpaper::OBJECT_PATH)
}

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
    core: Arc<Gallery>,
    id: JobId,
    prompt: String,
    state: JobState,
    progress: f64,
    image_id: String,
    preview_path: String,
}

impl Job {
    pub fn new(core: Arc<Gallery>, id: JobId, prompt: &str) -> Self {
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
fn linger(conn: zbus::Connection, core: Arc<Gallery>, id: JobId) {
    let after = Duration::from_secs(core.config.job_linger_secs);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = conn
            .object_server()
            .remove::<Job, _>(job_path(id).as_str())
            .await;
        core.drop_preview(id);
    });
}

/// A job's update from the library as its properties and signals.
pub async fn announce(
    core: &Arc<Gallery>,
    conn: &zbus::Connection,
    update: Update,
) -> zbus::Result<()> {
    let (job, ends) = match &update {
        Update::JobStarted(job) | Update::JobProgress { job, .. } => (*job, false),
        Update::JobDone { job, .. } | Update::JobFailed { job, .. } => (*job, true),
        _ => return Ok(()),
    };
    if let Some(iface) = job_ref(conn, job).await {
        let emitter = iface.signal_emitter();
        let mut j = iface.get_mut().await;
        match update {
            Update::JobStarted(_) => {
                j.state = JobState::Running;
                j.state_changed(emitter).await?;
            }
            Update::JobProgress {
                step,
                total,
                preview,
                ..
            } => {
                j.progress = step as f64 / total.max(1) as f64;
                j.progress_changed(emitter).await?;
                if let Some(path) = preview
                    && let Ok(file) = std::fs::File::open(&path)
                {
                    let path = path.display().to_string();
                    if j.preview_path != path {
                        j.preview_path = path;
                        j.preview_path_changed(emitter).await?;
                    }
                    let fd = zbus::Fd::from(&file);
                    Job::progress_step(emitter, step as u32, total as u32, fd).await?;
                }
            }
            Update::JobDone { image_id, .. } => {
                j.state = JobState::Done;
                j.progress = 1.0;
                j.image_id = image_id.clone();
                j.image_id_changed(emitter).await?;
                j.progress_changed(emitter).await?;
                j.state_changed(emitter).await?;
                Job::done(emitter, &image_id).await?;
            }
            Update::JobFailed {
                error_name,
                message,
                ..
            } => {
                j.state = if error_name == names::CANCELLED {
                    JobState::Cancelled
                } else {
                    JobState::Failed
                };
                j.state_changed(emitter).await?;
                Job::failed(emitter, error_name, &message).await?;
            }
            _ => {}
        }
    }
    if ends {
        linger(conn.clone(), core.clone(), job);
    }
    Ok(())
}

async fn job_ref(conn: &zbus::Connection, id: JobId) -> Option<InterfaceRef<Job>> {
    conn.object_server()
        .interface::<_, Job>(job_path(id).as_str())
        .await
        .ok()
}
