//! cabin-wallpaperd on the bus: `org.cabin.Wallpaper1` ([`service`]) and its job objects
//! ([`job`]), a thin layer over the library ([`Store`], [`Queue`], [`Presenter`]).
//!
//! Long work never runs inside a method: `Generate` queues and returns the job's path at once;
//! the worker's [`Event`]s become properties and signals in [`pump`]; the sun is followed in
//! [`follow`], on a timer in simulated time and whenever the vehicle context changes.
//!
//! Architecture invariant: the bus name is owned before anything slow happens (the model
//! loads on the first generation, not at start).

pub mod job;
pub mod service;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cabin_common::vehicle::{FixedVehicle, VehicleSource, VehicleState};
use serde::Deserialize;
use tokio::sync::mpsc::UnboundedReceiver;
use zbus::object_server::InterfaceRef;

use crate::Engine;
use crate::engine::model::LoadOptions;
use crate::presenter::{Display, Presenter, default_displays};
use crate::queue::{Event, Queue, QueueConfig};
use crate::store::{Limits, Store};
use crate::sun::{self, Phase, SunPosition};
use crate::timeaware::Look;

pub use job::Job;
pub use service::Wallpaper;

pub const BUS_NAME: &str = "org.cabin.Wallpaper1";
pub const OBJECT_PATH: &str = "/org/cabin/Wallpaper1";
pub const INTERFACE: &str = "org.cabin.Wallpaper1";
pub const JOB_INTERFACE: &str = "org.cabin.Wallpaper1.Job";
/// The contract, committed beside this crate.
pub const INTROSPECTION_XML: &str = include_str!("../../dbus/org.cabin.Wallpaper1.xml");

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

/// What the bus objects share.
pub struct Core {
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
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

    fn previews_dir(&self) -> PathBuf {
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
    pub fn model_info(&self) -> HashMap<String, zbus::OwnedVariant> {
        let dir = self.config.model_dir();
        let mut info: HashMap<String, zbus::OwnedVariant> = HashMap::new();
        let mut put = |k: &str, v: zbus::Variant<'_>| {
            if let Ok(v) = zbus::OwnedVariant::try_from(v) {
                info.insert(k.to_string(), v);
            }
        };
        put("path", zbus::Variant::from(dir.display().to_string()));
        put("loaded", zbus::Variant::from(self.model_loaded()));
        put("threads", zbus::Variant::from(self.config.threads as u32));
        match crate::engine::manifest::Manifest::read(&dir) {
            Ok(m) => {
                put("name", zbus::Variant::from(m.name));
                put("version", zbus::Variant::from(m.version));
                put("licence", zbus::Variant::from(m.licence));
            }
            Err(e) => put("error", zbus::Variant::from(e.to_string())),
        }
        info
    }
}

/// Serves the wallpaper service on `bus`: objects first, then what was shown restored, then the
/// name (a client that calls as soon as the name appears after a crash sees the picture it
/// saw before); then follows the vehicle context and the worker. Returns the connection (drop
/// it to stop serving).
pub async fn serve(
    bus: &cabin_common::bus::BusChoice,
    config: Config,
    state_dir: &Path,
) -> Result<zbus::Connection, String> {
    let fixed_vehicle = config.vehicle.is_some();
    let (core, events) = Core::open(config, state_dir)?;
    let conn = bus
        .builder()
        .serve_at(OBJECT_PATH, Wallpaper::new(core.clone()))
        .build()
        .await
        .map_err(|e| format!("cannot serve {BUS_NAME} on the {bus} bus: {e}"))?;
    let service = conn
        .object_server()
        .interface::<_, Wallpaper>(OBJECT_PATH)
        .await
        .map_err(|e| e.to_string())?;
    if !fixed_vehicle {
        let source = cabin_common::vehicle::dbus::DbusVehicle::follow(&conn)
            .await
            .map_err(|e| format!("cannot follow the vehicle context: {e}"))?;
        core.set_vehicle(Arc::new(source));
    }
    // Resume: what was shown, and any set whose variants were not finished.
    let unfinished: Vec<_> = core
        .store()
        .history(usize::MAX)
        .into_iter()
        .filter(|e| e.time_aware && e.variants.len() < crate::timeaware::ANCHORS.len())
        .collect();
    for entry in &unfinished {
        core.queue().make_variants(entry);
    }
    service::refresh(&core, &service, Reason::Restored, true).await;
    cabin_common::bus::claim_name(&conn, BUS_NAME)
        .await
        .map_err(|e| format!("cannot serve {BUS_NAME} on the {bus} bus: {e}"))?;
    tokio::spawn(pump(core.clone(), conn.clone(), service.clone(), events));
    tokio::spawn(follow(core, service));
    Ok(conn)
}

/// Turns the worker's events into job properties and signals.
async fn pump(
    core: Arc<Core>,
    conn: zbus::Connection,
    service: InterfaceRef<Wallpaper>,
    mut events: UnboundedReceiver<Event>,
) {
    while let Some(first) = events.recv().await {
        // Take what piled up; a progress report superseded by a later one for the same job
        // is dropped, so a fast model never makes the HMI lag behind (or a cancel wait).
        let mut batch = vec![first];
        while let Ok(more) = events.try_recv() {
            batch.push(more);
        }
        let latest_progress: HashMap<u64, usize> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Event::Progress { job, .. } => Some((*job, i)),
                _ => None,
            })
            .collect();
        for (i, event) in batch.into_iter().enumerate() {
            if let Event::Progress { job, .. } = &event
                && latest_progress.get(job) != Some(&i)
            {
                continue;
            }
            if let Err(e) = job::handle(&core, &conn, &service, event).await {
                tracing::warn!(error = %e, "cannot report a job event");
            }
        }
    }
}

/// Follows the sun: on a timer in simulated time and on every vehicle change.
async fn follow(core: Arc<Core>, service: InterfaceRef<Wallpaper>) {
    let mut vehicle = core.vehicle().watch();
    let base = Duration::from_secs(core.config.reevaluate_secs.max(1));
    loop {
        let rate = vehicle.borrow().clock.rate;
        let period = if rate > 1.0 {
            base.div_f64(rate).max(Duration::from_millis(50))
        } else {
            base
        };
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            changed = vehicle.changed() => {
                if changed.is_err() {
                    // The source went away; fall back to the timer alone.
                    vehicle = core.vehicle().watch();
                    tokio::time::sleep(period).await;
                }
                vehicle.borrow_and_update();
            }
        }
        service::refresh(&core, &service, Reason::Time, false).await;
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
