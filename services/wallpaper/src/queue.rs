//! One generation at a time on a worker thread at idle priority: a small bounded queue of
//! requested pictures first, then background work (the phase variants of time-aware sets)
//! when nobody waits. A request preempts background work within one step; the preempted
//! variant goes back to the front of its line.
//!
//! The worker reports through [`Event`]s on a channel, so the bus layer never blocks on it.
//! The model is dropped after an idle timeout and loaded again on the next job.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use image::RgbImage;
use tokio::sync::mpsc::UnboundedSender;

use crate::Engine;
use crate::engine::EngineError;
use crate::engine::display::{dither, encode_png};
use crate::engine::pipeline::Request;
use crate::store::{Entry, Recipe, Store};
use crate::timeaware::{ANCHORS, variant_prompt};

pub type JobId = u64;

/// What a caller asked for.
#[derive(Debug, Clone)]
pub struct Spec {
    pub recipe: Recipe,
    pub time_aware: bool,
    pub apply: bool,
    /// Apply to this display only (all displays when `None`).
    pub display: Option<String>,
}

/// Why a job ended without a picture, as a D-Bus error name and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub name: &'static str,
    pub message: String,
}

#[derive(Debug)]
pub enum Event {
    Started {
        job: JobId,
    },
    Progress {
        job: JobId,
        step: usize,
        total: usize,
        /// A small PNG of the current guess.
        preview: Option<Vec<u8>>,
    },
    Done {
        job: JobId,
        spec: Box<Spec>,
        entry: Box<Entry>,
    },
    Failed {
        job: JobId,
        failure: Failure,
    },
    Cancelled {
        job: JobId,
    },
    /// A phase variant of a time-aware set is on disk.
    VariantDone {
        image_id: String,
        word: &'static str,
    },
    ModelLoaded(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Requests that may wait behind the running one; more get `Busy`.
    pub max_queued: usize,
    /// Seconds without work before the model is dropped.
    pub idle_unload_secs: u64,
    /// How much of a variant is re-imagined from the base (img2img strength).
    pub variant_strength: f64,
    /// Niceness of the worker thread (19: idle).
    pub nice: i32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_queued: 2,
            idle_unload_secs: 120,
            variant_strength: 0.55,
            nice: 19,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueueError {
    #[error("{running} running and {queued} queued: the queue is full, try again later")]
    Full { running: usize, queued: usize },
    #[error("no job {0}")]
    NoSuchJob(JobId),
}

struct Pending {
    id: JobId,
    spec: Spec,
}

struct Variant {
    image_id: String,
    word: &'static str,
    recipe: Recipe,
}

enum Work {
    Job(Pending),
    Variant(Variant),
}

struct Running {
    job: Option<JobId>,
    cancel: Arc<AtomicBool>,
    /// Stopped to make room for a request, not by a caller.
    preempted: bool,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Pending>,
    background: VecDeque<Variant>,
    running: Option<Running>,
    next_id: JobId,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Queue {
    shared: Arc<Shared>,
    config: QueueConfig,
    worker: Option<JoinHandle<()>>,
}

impl Drop for Queue {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stop = true;
            if let Some(running) = &state.running {
                running.cancel.store(true, Ordering::SeqCst);
            }
        }
        self.shared.wake.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Queue {
    pub fn start(
        engine: Arc<Engine>,
        store: Arc<Mutex<Store>>,
        config: QueueConfig,
        events: UnboundedSender<Event>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            wake: Condvar::new(),
        });
        let worker = Worker {
            shared: shared.clone(),
            engine,
            store,
            config,
            events,
        };
        let handle = std::thread::Builder::new()
            .name("wallpaper-gen".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            shared,
            config,
            worker: Some(handle),
        })
    }

    /// Takes a job id if there is room (so the caller can publish the job before it runs).
    pub fn reserve(&self) -> Result<JobId, QueueError> {
        let mut state = self.shared.lock();
        self.room(&state)?;
        let id = state.next_id;
        state.next_id += 1;
        Ok(id)
    }

    fn room(&self, state: &State) -> Result<(), QueueError> {
        if state.pending.len() >= self.config.max_queued {
            let running = usize::from(state.running.as_ref().is_some_and(|r| r.job.is_some()));
            return Err(QueueError::Full {
                running,
                queued: state.pending.len(),
            });
        }
        Ok(())
    }

    /// Queues a request under a reserved id; it preempts background work.
    pub fn submit(&self, id: JobId, spec: Spec) -> Result<(), QueueError> {
        let mut state = self.shared.lock();
        self.room(&state)?;
        state.pending.push_back(Pending { id, spec });
        if let Some(running) = &mut state.running
            && running.job.is_none()
        {
            running.preempted = true;
            running.cancel.store(true, Ordering::SeqCst);
        }
        drop(state);
        self.shared.wake.notify_all();
        Ok(())
    }

    /// Reserves and queues.
    pub fn push(&self, spec: Spec) -> Result<JobId, QueueError> {
        let id = self.reserve()?;
        self.submit(id, spec)?;
        Ok(id)
    }

    /// Cancels a queued job at once, a running one within a step. Returns whether it was
    /// still queued (then no worker event follows: the caller reports it).
    pub fn cancel(&self, job: JobId) -> Result<bool, QueueError> {
        let mut state = self.shared.lock();
        if let Some(at) = state.pending.iter().position(|p| p.id == job) {
            state.pending.remove(at);
            return Ok(true);
        }
        match &state.running {
            Some(running) if running.job == Some(job) => {
                running.cancel.store(true, Ordering::SeqCst);
                Ok(false)
            }
            _ => Err(QueueError::NoSuchJob(job)),
        }
    }

    /// Schedules the missing phase variants of a time-aware picture.
    pub fn make_variants(&self, entry: &Entry) {
        let mut state = self.shared.lock();
        for anchor in ANCHORS {
            let have = entry.variants.iter().any(|w| w == anchor.word);
            let queued = state
                .background
                .iter()
                .any(|v| v.image_id == entry.id && v.word == anchor.word);
            if !have && !queued {
                state.background.push_back(Variant {
                    image_id: entry.id.clone(),
                    word: anchor.word,
                    recipe: entry.recipe.clone(),
                });
            }
        }
        drop(state);
        self.shared.wake.notify_all();
    }

    /// Drops background work for a picture that is gone.
    pub fn forget(&self, image_id: &str) {
        let mut state = self.shared.lock();
        state.background.retain(|v| v.image_id != image_id);
    }

    /// A request is running or waiting.
    pub fn busy(&self) -> bool {
        let state = self.shared.lock();
        !state.pending.is_empty() || state.running.as_ref().is_some_and(|r| r.job.is_some())
    }

    /// Background variants still to make.
    pub fn background_len(&self) -> usize {
        let state = self.shared.lock();
        state.background.len()
            + usize::from(state.running.as_ref().is_some_and(|r| r.job.is_none()))
    }
}

struct Worker {
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    store: Arc<Mutex<Store>>,
    config: QueueConfig,
    events: UnboundedSender<Event>,
}

impl Worker {
    fn run(self) {
        set_thread_nice(self.config.nice);
        let idle = Duration::from_secs(self.config.idle_unload_secs);
        let mut last_work = Instant::now();
        loop {
            let (work, cancel) = {
                let mut state = self.shared.lock();
                loop {
                    if state.stop {
                        return;
                    }
                    let work = match state.pending.pop_front() {
                        Some(p) => Some(Work::Job(p)),
                        None => state.background.pop_front().map(Work::Variant),
                    };
                    if let Some(work) = work {
                        let cancel = Arc::new(AtomicBool::new(false));
                        state.running = Some(Running {
                            job: match &work {
                                Work::Job(p) => Some(p.id),
                                Work::Variant(_) => None,
                            },
                            cancel: cancel.clone(),
                            preempted: false,
                        });
                        break (work, cancel);
                    }
                    let waited = last_work.elapsed();
                    if self.engine.is_loaded() && waited >= idle {
                        self.engine.unload();
                        tracing::info!(idle = ?waited, "model dropped after idle timeout");
                        let _ = self.events.send(Event::ModelLoaded(false));
                    }
                    let timeout = if self.engine.is_loaded() {
                        idle.saturating_sub(waited).max(Duration::from_millis(10))
                    } else {
                        Duration::from_secs(3600)
                    };
                    state = self
                        .shared
                        .wake
                        .wait_timeout(state, timeout)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            };
            let was_loaded = self.engine.is_loaded();
            let finished = match work {
                Work::Job(pending) => Some(self.run_job(pending, &cancel)),
                Work::Variant(variant) => {
                    self.run_variant(variant, &cancel);
                    None
                }
            };
            // The job leaves the queue before its end is told, so a client acting on the
            // event finds it gone (Cancel answers NoSuchJob, Busy is false), never running.
            self.shared.lock().running = None;
            if let Some(event) = finished {
                let _ = self.events.send(event);
            }
            if !was_loaded && self.engine.is_loaded() {
                let _ = self.events.send(Event::ModelLoaded(true));
            }
            last_work = Instant::now();
        }
    }

    /// Runs one request; returns its end (done, cancelled or failed) for the caller to tell.
    fn run_job(&self, pending: Pending, cancel: &AtomicBool) -> Event {
        let Pending { id: job, spec } = pending;
        let _ = self.events.send(Event::Started { job });
        let request = Request {
            prompt: spec.recipe.prompt.clone(),
            negative: spec.recipe.negative.clone(),
            seed: spec.recipe.seed,
            steps: spec.recipe.steps,
            guidance: spec.recipe.guidance,
            previews: true,
            ..Request::default()
        };
        let events = self.events.clone();
        let mut progress = |p: crate::engine::pipeline::Progress<'_>| {
            let _ = events.send(Event::Progress {
                job,
                step: p.step,
                total: p.total,
                preview: p.preview.map(encode_png),
            });
        };
        let result = guarded(|| self.engine.generate(&request, cancel, &mut progress));
        match result {
            Ok(generated) => {
                let base = dither(&generated.image);
                let added =
                    self.lock_store()
                        .add(spec.recipe.clone(), spec.time_aware, &base, Utc::now());
                match added {
                    Ok(entry) => Event::Done {
                        job,
                        spec: Box::new(spec),
                        entry: Box::new(entry),
                    },
                    Err(e) => Event::Failed {
                        job,
                        failure: Failure {
                            name: cabin_common::error::names::INTERNAL,
                            message: format!("saving the picture: {e}"),
                        },
                    },
                }
            }
            Err(EngineError::Cancelled { .. }) => Event::Cancelled { job },
            Err(e) => Event::Failed {
                job,
                failure: failure(&e),
            },
        }
    }

    fn run_variant(&self, variant: Variant, cancel: &AtomicBool) {
        let Some(anchor) = ANCHORS.iter().find(|a| a.word == variant.word) else {
            return;
        };
        let base = match self.lock_store().load(&variant.image_id, "base") {
            Ok(base) => base,
            Err(e) => {
                tracing::info!(image = %variant.image_id, error = %e, "variant skipped");
                return;
            }
        };
        let request = Request {
            prompt: variant_prompt(&variant.recipe.prompt, anchor),
            negative: variant.recipe.negative.clone(),
            seed: variant.recipe.seed,
            steps: variant.recipe.steps,
            guidance: variant.recipe.guidance,
            init: Some((base, self.config.variant_strength)),
            ..Request::default()
        };
        let result = guarded(|| self.engine.generate(&request, cancel, &mut |_| {}));
        match result {
            Ok(generated) => {
                let image: RgbImage = dither(&generated.image);
                match self
                    .lock_store()
                    .add_variant(&variant.image_id, variant.word, &image)
                {
                    Ok(()) => {
                        let _ = self.events.send(Event::VariantDone {
                            image_id: variant.image_id,
                            word: variant.word,
                        });
                    }
                    // Deleted meanwhile: nothing to keep.
                    Err(e) => {
                        tracing::info!(image = %variant.image_id, error = %e, "variant dropped")
                    }
                }
            }
            Err(EngineError::Cancelled { .. }) => {
                let mut state = self.shared.lock();
                if state.running.as_ref().is_some_and(|r| r.preempted) && !state.stop {
                    state.background.push_front(variant);
                }
            }
            Err(e) => {
                tracing::warn!(image = %variant.image_id, word = variant.word, error = %e, "variant failed")
            }
        }
    }

    fn lock_store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A panic inside inference becomes a failed job, not a dead worker.
fn guarded<T>(f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        Err(EngineError::Inference {
            stage: "pipeline",
            message,
        })
    })
}

/// The bus error a failed generation is reported with.
pub fn failure(e: &EngineError) -> Failure {
    use cabin_common::error::names;
    let name = match e {
        EngineError::InvalidArgument(_) => names::INVALID_ARGUMENT,
        EngineError::Model(_) | EngineError::Io { .. } => names::UNAVAILABLE,
        EngineError::Inference { .. } => names::INTERNAL,
        EngineError::Cancelled { .. } => names::CANCELLED,
    };
    Failure {
        name,
        message: e.to_string(),
    }
}

/// Lowers this thread's priority (Linux threads carry their own nice value); the inference
/// threads tract starts from here inherit it.
fn set_thread_nice(nice: i32) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::warn!(nice, error = %e, "could not lower the generation thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::LoadOptions;
    use std::path::Path;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    #[test]
    fn the_generation_thread_lowers_its_own_priority_only() {
        let main_before = rustix::process::getpriority_process(None).unwrap();
        let seen = std::thread::spawn(|| {
            set_thread_nice(19);
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, 19);
        assert_eq!(
            rustix::process::getpriority_process(None).unwrap(),
            main_before
        );
    }

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures/tiny-sd")
    }

    fn spec(prompt: &str, steps: usize) -> Spec {
        Spec {
            recipe: Recipe {
                prompt: prompt.into(),
                negative: String::new(),
                seed: 3,
                steps: Some(steps),
                guidance: None,
            },
            time_aware: true,
            apply: true,
            display: None,
        }
    }

    fn start(
        config: QueueConfig,
    ) -> (
        Queue,
        UnboundedReceiver<Event>,
        Arc<Mutex<Store>>,
        Arc<Engine>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Mutex::new(
            Store::open(dir.path(), crate::store::Limits::default()).unwrap(),
        ));
        let engine = Arc::new(Engine::new(fixture(), LoadOptions::default()));
        let (tx, rx) = unbounded_channel();
        let queue = Queue::start(engine.clone(), store.clone(), config, tx).unwrap();
        (queue, rx, store, engine, dir)
    }

    fn next(rx: &mut UnboundedReceiver<Event>) -> Event {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(e) = rx.try_recv() {
                return e;
            }
            assert!(Instant::now() < deadline, "no event");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_job_runs_reports_progress_and_its_variants_follow() {
        let (queue, mut rx, store, _engine, _dir) = start(QueueConfig::default());
        let job = queue.push(spec("a red fox", 4)).unwrap();
        assert!(matches!(next(&mut rx), Event::Started { job: j } if j == job));
        let mut steps = Vec::new();
        let entry = loop {
            match next(&mut rx) {
                Event::Progress {
                    step,
                    total,
                    preview,
                    ..
                } => {
                    assert_eq!(total, 4);
                    assert!(preview.is_some_and(|p| p.starts_with(b"\x89PNG")));
                    steps.push(step);
                }
                Event::Done { entry, .. } => break entry,
                Event::ModelLoaded(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(steps, [1, 2, 3, 4]);
        queue.make_variants(&entry);
        let mut words = Vec::new();
        while words.len() < ANCHORS.len() {
            if let Event::VariantDone { image_id, word } = next(&mut rx) {
                assert_eq!(image_id, entry.id);
                words.push(word);
            }
        }
        let stored = store.lock().unwrap().get(&entry.id).unwrap().clone();
        assert_eq!(stored.variants.len(), 4);
    }

    #[test]
    fn the_queue_is_bounded_and_cancel_works_queued_or_running() {
        let config = QueueConfig {
            max_queued: 1,
            ..QueueConfig::default()
        };
        let (queue, mut rx, _store, _engine, _dir) = start(config);
        let first = queue.push(spec("one", 200)).unwrap();
        // Wait until it runs, so the next one queues.
        while !matches!(next(&mut rx), Event::Progress { .. }) {}
        let second = queue.push(spec("two", 4)).unwrap();
        assert!(matches!(
            queue.push(spec("three", 4)),
            Err(QueueError::Full {
                running: 1,
                queued: 1
            })
        ));
        assert_eq!(queue.cancel(second), Ok(true));
        assert_eq!(queue.cancel(first), Ok(false));
        loop {
            match next(&mut rx) {
                Event::Cancelled { job } => {
                    assert_eq!(job, first);
                    break;
                }
                Event::Progress { .. } | Event::ModelLoaded(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(queue.cancel(first), Err(QueueError::NoSuchJob(first)));
        assert!(!queue.busy());
    }

    #[test]
    fn the_model_is_dropped_when_idle() {
        let config = QueueConfig {
            idle_unload_secs: 0,
            ..QueueConfig::default()
        };
        let (queue, mut rx, _store, engine, _dir) = start(config);
        let mut job_spec = spec("x", 2);
        job_spec.time_aware = false;
        queue.push(job_spec).unwrap();
        let mut saw_unload = false;
        while !saw_unload {
            saw_unload = matches!(next(&mut rx), Event::ModelLoaded(false));
        }
        assert!(!engine.is_loaded());
    }

    #[test]
    fn a_bad_request_fails_with_a_named_error_and_the_worker_goes_on() {
        let (queue, mut rx, _store, _engine, _dir) = start(QueueConfig::default());
        let mut bad = spec("", 4);
        bad.time_aware = false;
        let job = queue.push(bad).unwrap();
        loop {
            match next(&mut rx) {
                Event::Failed { job: j, failure } => {
                    assert_eq!(j, job);
                    assert_eq!(failure.name, cabin_common::error::names::INVALID_ARGUMENT);
                    break;
                }
                Event::Started { .. } | Event::ModelLoaded(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut good = spec("fine", 2);
        good.time_aware = false;
        queue.push(good).unwrap();
        while !matches!(next(&mut rx), Event::Done { .. }) {}
    }
}
