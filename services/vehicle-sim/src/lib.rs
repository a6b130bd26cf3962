//! The simulated vehicle: serves `org.cabin.Vehicle1`, keeps the driving timer running and
//! plays scripts. The simulator links this; tests run it as the `cabin-vehicle-sim` binary.
//!
//! Architecture invariant: depends on `cabin-common` only; it is the *publisher* side of
//! the vehicle context, never read by services directly (they use `common::vehicle`).

pub mod driving;
pub mod script;
pub mod vehicle;

use std::time::Duration;

use cabin_common::vehicle::{BUS_NAME, OBJECT_PATH, VehicleState, prop};
use serde::Deserialize;
use zbus::object_server::InterfaceRef;

pub use vehicle::Vehicle;

/// `/etc/cabin/vehicle-sim.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The state served at start.
    pub vehicle: VehicleState,
    /// A stop at least this long resets the continuous driving time.
    pub break_minutes: u32,
    /// How often the driving timer advances (real time).
    pub tick_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            vehicle: VehicleState::default(),
            break_minutes: 15,
            tick_ms: 1000,
        }
    }
}

/// A served vehicle.
pub struct Publisher {
    conn: zbus::Connection,
    vehicle: InterfaceRef<Vehicle>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

impl Publisher {
    /// Serves the vehicle on `bus` and takes the well-known name.
    pub async fn start(
        bus: &cabin_common::bus::BusChoice,
        config: &Config,
    ) -> Result<Self, String> {
        config
            .vehicle
            .validate()
            .map_err(|e| format!("initial vehicle state: {e}"))?;
        let min_break = chrono::Duration::minutes(i64::from(config.break_minutes));
        let builder = bus
            .builder()
            .serve_at(OBJECT_PATH, Vehicle::new(config.vehicle.clone(), min_break));
        let conn = cabin_common::bus::serve(builder, BUS_NAME)
            .await
            .map_err(|e| format!("cannot serve {BUS_NAME} on the {bus} bus: {e}"))?;
        let vehicle = conn
            .object_server()
            .interface::<_, Vehicle>(OBJECT_PATH)
            .await
            .map_err(|e| e.to_string())?;
        let ticker = tokio::spawn(tick(
            vehicle.clone(),
            Duration::from_millis(config.tick_ms.max(50)),
        ));
        Ok(Self {
            conn,
            vehicle,
            ticker,
        })
    }

    pub fn connection(&self) -> &zbus::Connection {
        &self.conn
    }

    pub async fn state(&self) -> VehicleState {
        self.vehicle.get().await.state().clone()
    }

    /// Applies changes as if a client had called `Update`, announcing them on the bus.
    pub async fn apply(&self, changes: &[(&str, &zbus::Variant<'_>)]) -> Result<(), String> {
        let mut vehicle = self.vehicle.get_mut().await;
        let changed = vehicle.apply(changes)?;
        vehicle
            .announce(self.vehicle.signal_emitter(), &changed)
            .await
            .map_err(|e| e.to_string())
    }

    /// Plays `script` until it ends (forever when it repeats).
    pub async fn play(&self, script: &script::Script) -> Result<(), String> {
        loop {
            for step in &script.steps {
                tokio::time::sleep(Duration::from_secs_f64(step.after_s)).await;
                let changes = step.changes();
                let changes: Vec<_> = changes.iter().map(|(k, v)| (*k, v)).collect();
                self.apply(&changes).await?;
            }
            if !script.repeat {
                return Ok(());
            }
        }
    }
}

async fn tick(vehicle: InterfaceRef<Vehicle>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    loop {
        interval.tick().await;
        let mut v = vehicle.get_mut().await;
        if v.tick()
            && let Err(e) = v
                .announce(vehicle.signal_emitter(), &[prop::DRIVING_TIME])
                .await
        {
            tracing::warn!("cannot announce DrivingTime: {e}");
        }
    }
}
