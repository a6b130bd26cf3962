//! cabin-wallpaperd on the bus: `org.cabin.Wallpaper1` ([`service`]) and its job objects
//! ([`job`]), a thin layer over the library's [`Gallery`].
//!
//! Long work never runs inside a method: `Generate` queues and returns the job's path at once;
//! the worker's events go through [`Gallery::apply_event`] and its [`Update`]s become
//! properties and signals in [`pump`]; the sun is followed in [`follow`], on a timer in
//! simulated time and whenever the vehicle context changes.
//!
//! Architecture invariant: the bus name is owned before anything slow happens (the model
//! loads on the first generation, not at start).

pub mod job;
pub mod service;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use zbus::object_server::InterfaceRef;

pub use crate::gallery::{Config, Gallery, Reason, Transitions, Update};
use crate::queue::Event;

pub use job::Job;
pub use service::Wallpaper;

pub use cabin_contracts::wallpaper::{
    BUS_NAME, INTERFACE, INTROSPECTION_XML, JOB_INTERFACE, OBJECT_PATH,
};

/// How `cabin-wallpaperd` names itself: in its logs, its `--help` and the bus name it takes.
pub const DAEMON: cabin_common::cli::Daemon = cabin_common::cli::Daemon::new(
    "cabin-wallpaperd",
    BUS_NAME,
    "Serve time-aware wallpaper generation as org.cabin.Wallpaper1",
);

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
    let (core, events) = Gallery::open(config, state_dir)?;
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
    core.resume_variants();
    service::refresh(&core, &service, Reason::Restored, true).await;
    cabin_common::bus::claim_name(&conn, BUS_NAME)
        .await
        .map_err(|e| format!("cannot serve {BUS_NAME} on the {bus} bus: {e}"))?;
    tokio::spawn(pump(core.clone(), conn.clone(), service.clone(), events));
    tokio::spawn(follow(core, service));
    Ok(conn)
}

/// Turns the worker's events, through the library, into properties and signals.
async fn pump(
    core: Arc<Gallery>,
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
            for update in core.apply_event(event) {
                if let Err(e) = announce(&core, &conn, &service, update).await {
                    tracing::warn!(error = %e, "cannot report a job event");
                }
            }
        }
    }
}

/// One library update as properties and signals.
async fn announce(
    core: &Arc<Gallery>,
    conn: &zbus::Connection,
    service: &InterfaceRef<Wallpaper>,
    update: Update,
) -> zbus::Result<()> {
    match update {
        Update::Displays { reason, force } => {
            service::refresh(core, service, reason, force).await;
            Ok(())
        }
        Update::Busy => {
            let emitter = service.signal_emitter();
            service.get().await.busy_changed(emitter).await
        }
        Update::ModelInfo => {
            let emitter = service.signal_emitter();
            service.get().await.model_info_changed(emitter).await
        }
        job_update => job::announce(core, conn, job_update).await,
    }
}

/// Follows the sun: on a timer in simulated time and on every vehicle change.
async fn follow(core: Arc<Gallery>, service: InterfaceRef<Wallpaper>) {
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
