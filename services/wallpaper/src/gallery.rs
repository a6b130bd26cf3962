//! The wallpaper library behind `cabin-wallpaperd`: one facade over [`Store`], [`Queue`] and
//! [`Presenter`] that owns the service's policy. It takes the worker's [`Event`]s and says what
//! changed ([`Update`]); it recomposes the displays for the sun ([`Gallery::compose`]). The bus
//! layer (`daemon/`) only turns these into properties and signals.
//!
//! Architecture invariant: no zbus here; time for the sun comes from the vehicle source's clock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cabin_common::error::names;
use cabin_common::vehicle::{FixedVehicle, VehicleSource, VehicleState};
use serde::Deserialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::Engine;
use crate::engine::model::LoadOptions;
use crate::presenter::{Change, Display, Presenter, default_displays};
use crate::queue::{Event, JobId, Queue, QueueConfig};
use crate::store::{Limits, Store, StoreError};
use crate::sun::{self, Phase, SunPosition};
use crate::timeaware::Look;

/// What changed after a worker event, for the bus layer to announce.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    JobStarted(JobId),
    JobProgress {
        job: JobId,
        step: usize,
        total: usize,
        /// The preview PNG as written to the previews folder.
        preview: Option<PathBuf>,
    },
    JobDone {
        job: JobId,
        image_id: String,
    },
    /// Failed or cancelled (`error_name` is `org.cabin.Error.Cancelled` then).
    JobFailed {
        job: JobId,
        error_name: &'static str,
        message: String,
    },
    /// What the displays show must be recomposed ([`Gallery::compose`]).
    Displays {
        reason: Reason,
        force: bool,
    },
    /// Whether a requested picture is running or waiting may have changed.
    Busy,
    ModelInfo,
}

/// What the displays show now, after [`Gallery::compose`].
#[derive(Debug)]
pub struct Composed {
    pub phase_changed: bool,
    /// One per picture that changed somewhere.
    pub changes: Vec<Change>,
    pub transition_ms: u32,
    pub moving: bool,
    /// The main display changed (`Current`, `CurrentPrompt`, `CurrentPath`).
    pub main_changed: bool,
}

/// The model as the service describes it, without loading it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub loaded: bool,
    pub threads: usize,
    /// (name, version, licence) from the manifest, or why it cannot be read.
    pub manifest: Result<(String, String, String), String>,
}

/// `/etc/cabin/wallpaper.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The model folder [default: the bundled model].
    pub model_dir: Option<PathBuf>,
    /// Inference threads (the head unit's other work keeps the rest).
    pub threads: usize,
    /// Refuse a model without a valid manifest.
    pub require_manifest: bool,
    /// `TimeAware` until someone sets it.
    pub time_aware: bool,
    pub displays: Vec<Display>,
    pub look: Look,
    pub queue: QueueConfig,
    pub cache: Limits,
    pub transitions: Transitions,
    /// Seconds a finished job object stays on the bus.
    pub job_linger_secs: u64,
    /// How often the sun is looked at again, in simulated seconds.
    pub reevaluate_secs: u64,
    /// A fixed vehicle context instead of following `org.cabin.Vehicle1` on the bus.
    pub vehicle: Option<VehicleState>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model_dir: None,
            threads: 1,
            require_manifest: true,
            time_aware: true,
            displays: default_displays(),
            look: Look::default(),
            queue: QueueConfig::default(),
            cache: Limits::default(),
            transitions: Transitions::default(),
            job_linger_secs: 60,
            reevaluate_secs: 60,
            vehicle: None,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.displays.is_empty() {
            return Err("at least one display is needed".into());
        }
        for (i, d) in self.displays.iter().enumerate() {
            d.check()?;
            if self.displays[..i].iter().any(|e| e.name == d.name) {
                return Err(format!("display {} is listed twice", d.name));
            }
        }
        if !(1..=64).contains(&self.threads) {
            return Err(format!("threads must be 1..=64, got {}", self.threads));
        }
        let cap = self.look.night_luma_cap;
        if !(0.0..=1.0).contains(&cap) {
            return Err(format!("look.night_luma_cap must be 0..=1, got {cap}"));
        }
        let strength = self.queue.variant_strength;
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(format!(
                "queue.variant_strength must be in (0, 1], got {strength}"
            ));
        }
        if !(-20..=19).contains(&self.queue.nice) {
            return Err(format!(
                "queue.nice must be -20..=19, got {}",
                self.queue.nice
            ));
        }
        if let Some(v) = &self.vehicle {
            v.validate().map_err(|e| format!("vehicle: {e}"))?;
        }
        Ok(())
    }

    pub fn model_dir(&self) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(crate::default_model_dir)
    }
}

/// How fast a new picture replaces the old one, by why it changes and whether the car moves.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Transitions {
    /// A picture the driver asked for, parked.
    pub requested_ms: u32,
    /// A picture the driver asked for, while driving: still a cross-fade, never a cut.
    pub requested_moving_ms: u32,
    /// The sun moved, parked.
    pub time_ms: u32,
    /// The sun moved, while driving: slow enough to go unnoticed.
    pub time_moving_ms: u32,
}

impl Default for Transitions {
    fn default() -> Self {
        Self {
            requested_ms: 800,
            requested_moving_ms: 3000,
            time_ms: 5000,
            time_moving_ms: 60_000,
        }
    }
}

/// Why the displays change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Someone applied or generated a picture.
    Requested,
    /// The light changed (sun, location, clock, a new phase variant).
    Time,
    /// The service started and restored what was shown.
    Restored,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Requested => "requested",
            Reason::Time => "time",
            Reason::Restored => "restored",
        }
    }
}

impl Transitions {
    pub fn for_change(&self, reason: Reason, moving: bool) -> u32 {
        match (reason, moving) {
            (Reason::Requested, false) => self.requested_ms,
            (Reason::Requested, true) => self.requested_moving_ms,
            (_, false) => self.time_ms,
            (_, true) => self.time_moving_ms,
        }
    }
}

/// The wallpaper library behind the service: the stored pictures, the worker making them
/// and what the displays show, with the policy that ties them together.
pub struct Gallery {
    pub config: Config,
    state_dir: PathBuf,
    store: Arc<Mutex<Store>>,
    queue: Queue,
    presenter: Mutex<Presenter>,
    vehicle: Mutex<Arc<dyn VehicleSource>>,
    time_aware: AtomicBool,
    phase: Mutex<Phase>,
    model_loaded: AtomicBool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gallery {
    /// Opens the library and starts the worker; nothing slow (the model loads on first use).
    pub fn open(
        config: Config,
        state_dir: &Path,
    ) -> Result<(Arc<Self>, UnboundedReceiver<Event>), String> {
        config.validate()?;
        let store =
            Store::open(state_dir, config.cache).map_err(|e| format!("wallpaper library: {e}"))?;
        let time_aware = store.time_aware_setting().unwrap_or(config.time_aware);
        let store = Arc::new(Mutex::new(store));
        let engine = Arc::new(Engine::new(
            config.model_dir(),
            LoadOptions {
                require_manifest: config.require_manifest,
                threads: config.threads,
            },
        ));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let queue = Queue::start(engine.clone(), store.clone(), config.queue, tx)
            .map_err(|e| format!("cannot start the generation thread: {e}"))?;
        let vehicle: Arc<dyn VehicleSource> = Arc::new(FixedVehicle::new(
            config.vehicle.clone().unwrap_or_default(),
        ));
        let presenter = Presenter::new(config.look, config.displays.clone());
        let core = Arc::new(Self {
            state_dir: state_dir.to_path_buf(),
            store,
            queue,
            presenter: Mutex::new(presenter),
            vehicle: Mutex::new(vehicle),
            time_aware: AtomicBool::new(time_aware),
            phase: Mutex::new(Phase::Day),
            model_loaded: AtomicBool::new(false),
            config,
        });
        let sun = core.sun();
        *lock(&core.phase) = sun.phase;
        Ok((core, rx))
    }

    pub fn set_vehicle(&self, source: Arc<dyn VehicleSource>) {
        *lock(&self.vehicle) = source;
    }

    pub fn vehicle(&self) -> Arc<dyn VehicleSource> {
        lock(&self.vehicle).clone()
    }

    pub fn sun(&self) -> SunPosition {
        let vehicle = self.vehicle();
        let state = vehicle.snapshot();
        sun::position(state.latitude, state.longitude, vehicle.clock().now())
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    pub fn time_aware(&self) -> bool {
        self.time_aware.load(Ordering::SeqCst)
    }

    pub fn phase(&self) -> Phase {
        *lock(&self.phase)
    }

    pub fn model_loaded(&self) -> bool {
        self.model_loaded.load(Ordering::SeqCst)
    }

    /// Where job previews are written (a preview is worthless after a power cut).
    pub fn previews_dir(&self) -> PathBuf {
        self.state_dir.join("previews")
    }

    /// The displays' shown picture path (the first display's), if one is shown.
    pub fn current_path(&self) -> String {
        let main = &self.config.displays[0].name;
        let shown = lock(&self.presenter).shown_id(main).is_some();
        if shown {
            self.store().shown_path(main).display().to_string()
        } else {
            String::new()
        }
    }

    pub fn presenter(&self) -> MutexGuard<'_, Presenter> {
        lock(&self.presenter)
    }

    /// The model's name, version and licence from its manifest, without loading it.
    pub fn model_info(&self) -> ModelInfo {
        let dir = self.config.model_dir();
        let manifest = crate::engine::manifest::Manifest::read(&dir)
            .map(|m| (m.name, m.version, m.licence))
            .map_err(|e| e.to_string());
        ModelInfo {
            path: dir,
            loaded: self.model_loaded(),
            threads: self.config.threads,
            manifest,
        }
    }

    /// Turns `TimeAware` on or off, remembered across restarts; on, every time-aware picture
    /// gets its missing phase variants queued.
    pub fn set_time_aware(&self, on: bool) -> Result<(), StoreError> {
        self.time_aware.store(on, Ordering::SeqCst);
        self.store().set_time_aware_setting(on)?;
        if on {
            let entries = self.store().history(usize::MAX);
            for entry in entries.iter().filter(|e| e.time_aware) {
                self.queue().make_variants(entry);
            }
        }
        Ok(())
    }

    /// Deletes a picture and its variants; whether it was on the main display.
    pub fn delete(&self, image_id: &str) -> Result<bool, StoreError> {
        let was_current = self.store().current().is_some_and(|e| e.id == image_id);
        self.store().delete(image_id)?;
        self.queue().forget(image_id);
        Ok(was_current)
    }

    /// Time-aware pictures whose variants were not all made before a restart get them queued.
    pub fn resume_variants(&self) {
        let unfinished: Vec<_> = self
            .store()
            .history(usize::MAX)
            .into_iter()
            .filter(|e| e.time_aware && e.variants.len() < crate::timeaware::ANCHORS.len())
            .collect();
        for entry in &unfinished {
            self.queue().make_variants(entry);
        }
    }

    /// Applies one worker event to the library (the cache trimmed, a finished picture shown
    /// and its variants queued, a preview written) and says what changed, for the bus layer to
    /// announce.
    pub fn apply_event(&self, event: Event) -> Vec<Update> {
        match event {
            Event::Started { job } => vec![Update::JobStarted(job)],
            Event::Progress {
                job,
                step,
                total,
                preview,
            } => {
                let preview = preview.and_then(|png| self.write_preview(job, &png));
                vec![Update::JobProgress {
                    job,
                    step,
                    total,
                    preview,
                }]
            }
            Event::Done { job, spec, entry } => {
                let evicted = self.store().evict().unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cache eviction failed");
                    Vec::new()
                });
                for id in &evicted {
                    self.queue().forget(id);
                }
                let mut updates = Vec::new();
                if spec.apply {
                    let now = chrono::Utc::now(); // record-keeping: wall time
                    let applied = match &spec.display {
                        Some(display) => self.store().set_current_on(display, &entry.id, now),
                        None => self.store().set_current(&entry.id, now),
                    };
                    match applied {
                        Ok(()) => updates.push(Update::Displays {
                            reason: Reason::Requested,
                            force: true,
                        }),
                        Err(e) => tracing::warn!(error = %e, "cannot apply the new picture"),
                    }
                }
                if entry.time_aware && self.time_aware() {
                    self.queue().make_variants(&entry);
                }
                updates.push(Update::JobDone {
                    job,
                    image_id: entry.id.clone(),
                });
                updates.push(Update::Busy);
                updates
            }
            Event::Failed { job, failure } => vec![
                Update::JobFailed {
                    job,
                    error_name: failure.name,
                    message: failure.message,
                },
                Update::Busy,
            ],
            Event::Cancelled { job } => vec![
                Update::JobFailed {
                    job,
                    error_name: names::CANCELLED,
                    message: "cancelled while running".into(),
                },
                Update::Busy,
            ],
            Event::VariantDone { image_id, word } => {
                tracing::debug!(image = %image_id, word, "phase variant ready");
                let presenter = self.presenter();
                let on_show = self
                    .config
                    .displays
                    .iter()
                    .any(|d| presenter.shown_id(&d.name) == Some(image_id.as_str()));
                if on_show {
                    vec![Update::Displays {
                        reason: Reason::Time,
                        force: false,
                    }]
                } else {
                    Vec::new()
                }
            }
            Event::ModelLoaded(loaded) => {
                self.model_loaded.store(loaded, Ordering::SeqCst);
                vec![Update::ModelInfo]
            }
        }
    }

    fn write_preview(&self, job: JobId, png: &[u8]) -> Option<PathBuf> {
        let path = self.previews_dir().join(format!("job-{job}.png"));
        std::fs::create_dir_all(self.previews_dir()).ok()?;
        // Rename for atomicity, no fsync: a preview is worthless after a power cut.
        let temp = path.with_extension("png.tmp");
        std::fs::write(&temp, png).ok()?;
        std::fs::rename(&temp, &path).ok()?;
        Some(path)
    }

    /// Forgets a finished job's preview.
    pub fn drop_preview(&self, job: JobId) {
        let _ = std::fs::remove_file(self.previews_dir().join(format!("job-{job}.png")));
    }

    /// Recomputes what the displays show for the sun now (blocking: it composes pictures).
    pub fn compose(&self, reason: Reason, force: bool) -> Result<Composed, StoreError> {
        let sun = self.sun();
        let phase_changed = {
            let mut phase = lock(&self.phase);
            let changed = *phase != sun.phase;
            *phase = sun.phase;
            changed
        };
        let changes = {
            let store = self.store();
            self.presenter()
                .evaluate(&store, &sun, self.time_aware(), force)?
        };
        let moving = self.vehicle().snapshot().is_moving();
        let main = &self.config.displays[0].name;
        let main_changed = changes
            .iter()
            .any(|c| c.paths.iter().any(|(d, _)| d == main));
        Ok(Composed {
            phase_changed,
            transition_ms: self.config.transitions.for_change(reason, moving),
            moving,
            main_changed,
            changes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_longer_while_driving_and_for_the_sun() {
        let t = Transitions::default();
        assert!(t.for_change(Reason::Requested, true) > t.for_change(Reason::Requested, false));
        assert!(t.for_change(Reason::Time, true) > t.for_change(Reason::Time, false));
        assert!(
            t.for_change(Reason::Time, true) >= 30_000,
            "no abrupt change while driving"
        );
        assert!(
            t.for_change(Reason::Requested, true) > 0,
            "never a hard cut while driving"
        );
    }

    #[test]
    fn config_is_checked_with_a_reason() {
        let parse = |text: &str| -> Result<Config, String> {
            let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
            config.validate()?;
            Ok(config)
        };
        assert!(parse("").is_ok());
        assert!(
            parse("displays = []")
                .unwrap_err()
                .contains("at least one display")
        );
        let twice = "[[displays]]\nname='a'\nwidth=10\nheight=10\n[[displays]]\nname='a'\nwidth=10\nheight=10";
        assert!(parse(twice).unwrap_err().contains("twice"));
        assert!(parse("threads = 0").unwrap_err().contains("threads"));
        assert!(
            parse("[look]\nnight_luma_cap = 2.0")
                .unwrap_err()
                .contains("night_luma_cap")
        );
        assert!(
            parse("[queue]\nvariant_strength = 0.0")
                .unwrap_err()
                .contains("variant_strength")
        );
        assert!(parse("colour = 'red'").unwrap_err().contains("colour"));
    }
}
