//! cabin-voiced on the bus: `org.cabin.Voice1` ([`service`]) over the router, with
//! [`BusServices`](crate::bus::BusServices) making the calls.

pub mod service;

use std::sync::Arc;

use serde::Deserialize;

pub use service::Voice;

pub use cabin_contracts::voice::{BUS_NAME, INTERFACE, INTROSPECTION_XML, OBJECT_PATH};

/// How `cabin-voiced` names itself: in its logs, its `--help` and the bus name it takes.
pub const DAEMON: cabin_common::cli::Daemon = cabin_common::cli::Daemon::new(
    "cabin-voiced",
    BUS_NAME,
    "Serve the voice command hook as org.cabin.Voice1",
);

/// `/etc/cabin/voice.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The companion persona chat goes to ("": the companion's default).
    pub persona: String,
    /// Below this recogniser confidence (context `confidence`) nothing is done.
    pub min_confidence: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            persona: String::new(),
            min_confidence: 0.35,
        }
    }
}

pub async fn serve(
    bus: &cabin_common::bus::BusChoice,
    config: Config,
) -> Result<zbus::Connection, String> {
    if !(0.0..=1.0).contains(&config.min_confidence) {
        return Err(format!(
            "min_confidence {} is outside 0..=1",
            config.min_confidence
        ));
    }
    // The calls go out on a connection of their own, so a slow service never holds up the
    // connection that receives Handle.
    let calls = bus
        .connect()
        .await
        .map_err(|e| format!("cannot connect to the {bus} bus: {e}"))?;
    // The vehicle's clock, not the desktop's: in the simulator its day drives the defaults.
    let vehicle = cabin_common::vehicle::dbus::DbusVehicle::follow(&calls)
        .await
        .map_err(|e| format!("cannot follow the vehicle context: {e}"))?;
    let services = Arc::new(crate::bus::BusServices::new(calls, config.persona.clone()));
    let builder = bus
        .builder()
        .serve_at(OBJECT_PATH, Voice::new(services, config, Arc::new(vehicle)));
    cabin_common::bus::serve(builder, BUS_NAME)
        .await
        .map_err(|e| format!("cannot serve {BUS_NAME} on the {bus} bus: {e}"))
}
