//! The `org.cabin.Vehicle1` object (contract: `services/contracts/dbus/org.cabin.Vehicle1.xml`).
//!
//! Properties mirror [`VehicleState`]; the plain ones are writable so `busctl set-property`
//! works, `Update` sets several at once (one `PropertiesChanged`), `SetClock` re-anchors the
//! simulated clock, and `Now` reads it.

use std::collections::HashMap;

use cabin_common::CabinError;
use cabin_common::clock::ClockSetting;
use cabin_common::vehicle::{INTERFACE, VehicleState, prop};
use chrono::{DateTime, TimeZone, Utc};
use zbus::fdo;
use zbus::interface;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;

use crate::driving::DrivingTimer;

pub struct Vehicle {
    state: VehicleState,
    timer: DrivingTimer,
}

impl Vehicle {
    pub fn new(state: VehicleState, min_break: chrono::Duration) -> Self {
        let mut timer = DrivingTimer::new(min_break);
        timer.set_seconds(state.driving_secs);
        Self { state, timer }
    }

    pub fn state(&self) -> &VehicleState {
        &self.state
    }

    /// Simulated now.
    pub fn now(&self) -> DateTime<Utc> {
        self.state.clock.at(Utc::now())
    }

    /// Applies `changes` (property name → value) atomically; returns what changed.
    pub fn apply(
        &mut self,
        changes: &[(&str, &zbus::Variant<'_>)],
    ) -> Result<Vec<&'static str>, String> {
        let now = self.now();
        self.timer.observe(now, self.state.is_moving());
        let before = self.state.to_properties();
        self.state.apply_properties(changes.iter().copied())?;
        if changes.iter().any(|(k, _)| *k == prop::DRIVING_TIME) {
            self.timer.set_seconds(self.state.driving_secs);
        }
        if changes.iter().any(|(k, _)| k.starts_with("Clock")) {
            self.timer.rebase(self.now());
        }
        self.state.driving_secs = self.timer.observe(self.now(), self.state.is_moving());
        let after = self.state.to_properties();
        Ok(prop::ALL
            .iter()
            .copied()
            .filter(|p| before.get(p) != after.get(p))
            .collect())
    }

    /// Advances the driving timer to the simulated now; true when `DrivingTime` changed.
    pub fn tick(&mut self) -> bool {
        let secs = self.timer.observe(self.now(), self.state.is_moving());
        let changed = secs != self.state.driving_secs;
        self.state.driving_secs = secs;
        changed
    }

    /// Emits one `PropertiesChanged` with the current values of `names`.
    pub async fn announce(&self, emitter: &SignalEmitter<'_>, names: &[&str]) -> zbus::Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let all = self.state.to_properties();
        let changed: HashMap<&str, zbus::Variant<'_>> = names
            .iter()
            .filter_map(|n| Some((*n, all.get(n)?.try_clone().ok()?.into())))
            .collect();
        let iface = InterfaceName::from_static_str_unchecked(INTERFACE);
        fdo::Properties::properties_changed(emitter, iface, changed, (&[] as &[&str]).into()).await
    }

    fn set_one(&mut self, name: &str, value: zbus::Variant<'_>) -> fdo::Result<()> {
        self.apply(&[(name, &value)])
            .map(|_| ())
            .map_err(fdo::Error::InvalidArgs)
    }
}

#[interface(name = "org.cabin.Vehicle1")]
impl Vehicle {
    /// Speed in km/h (VSS Vehicle.Speed).
    #[zbus(property)]
    fn speed(&self) -> f64 {
        self.state.speed_kmh
    }
    #[zbus(property)]
    fn set_speed(&mut self, value: f64) -> fdo::Result<()> {
        self.set_one(prop::SPEED, value.into())
    }

    /// P, R, N or D.
    #[zbus(property)]
    fn gear(&self) -> String {
        self.state.gear.to_string()
    }
    #[zbus(property)]
    fn set_gear(&mut self, value: String) -> fdo::Result<()> {
        self.set_one(prop::GEAR, value.as_str().into())
    }

    #[zbus(property)]
    fn latitude(&self) -> f64 {
        self.state.latitude
    }
    #[zbus(property)]
    fn set_latitude(&mut self, value: f64) -> fdo::Result<()> {
        self.set_one(prop::LATITUDE, value.into())
    }

    #[zbus(property)]
    fn longitude(&self) -> f64 {
        self.state.longitude
    }
    #[zbus(property)]
    fn set_longitude(&mut self, value: f64) -> fdo::Result<()> {
        self.set_one(prop::LONGITUDE, value.into())
    }

    /// `day` or `night`.
    #[zbus(property)]
    fn day_night_mode(&self) -> String {
        self.state.day_night.to_string()
    }
    #[zbus(property)]
    fn set_day_night_mode(&mut self, value: String) -> fdo::Result<()> {
        self.set_one(prop::DAY_NIGHT, value.as_str().into())
    }

    /// `off`, `acc`, `on` or `start`.
    #[zbus(property)]
    fn ignition(&self) -> String {
        self.state.ignition.to_string()
    }
    #[zbus(property)]
    fn set_ignition(&mut self, value: String) -> fdo::Result<()> {
        self.set_one(prop::IGNITION, value.as_str().into())
    }

    /// Continuous driving time in seconds; computed here, settable through `Update`.
    #[zbus(property)]
    fn driving_time(&self) -> u64 {
        self.state.driving_secs
    }

    #[zbus(property)]
    fn clock_rate(&self) -> f64 {
        self.state.clock.rate
    }

    #[zbus(property)]
    fn clock_real_anchor(&self) -> i64 {
        self.state.clock.real_anchor_ms
    }

    #[zbus(property)]
    fn clock_sim_anchor(&self) -> i64 {
        self.state.clock.sim_anchor_ms
    }

    /// Sets several properties at once (names as in the properties, plus `DrivingTime`);
    /// all or nothing.
    async fn update(
        &mut self,
        changes: HashMap<String, zbus::OwnedVariant>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), CabinError> {
        let changes: Vec<(&str, &zbus::Variant<'_>)> =
            changes.iter().map(|(k, v)| (k.as_str(), &**v)).collect();
        let changed = self.apply(&changes).map_err(CabinError::InvalidArgument)?;
        self.announce(&emitter, &changed).await?;
        Ok(())
    }

    /// Makes the simulated clock read `sim_time_ms` (Unix ms) now and run at `rate`
    /// simulated seconds per second (0 pauses it). `sim_time_ms` 0 keeps the current time.
    async fn set_clock(
        &mut self,
        sim_time_ms: i64,
        rate: f64,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), CabinError> {
        let real = Utc::now();
        let sim = if sim_time_ms == 0 {
            self.now()
        } else {
            Utc.timestamp_millis_opt(sim_time_ms)
                .single()
                .ok_or_else(|| {
                    CabinError::invalid_argument(format!("{sim_time_ms} is not a valid time"))
                })?
        };
        let setting = ClockSetting::anchored(real, sim, rate);
        setting.validate().map_err(CabinError::InvalidArgument)?;
        let (rate, real_anchor, sim_anchor) = (
            zbus::Variant::from(setting.rate),
            zbus::Variant::from(setting.real_anchor_ms),
            zbus::Variant::from(setting.sim_anchor_ms),
        );
        let changes = [
            (prop::CLOCK_RATE, &rate),
            (prop::CLOCK_REAL_ANCHOR, &real_anchor),
            (prop::CLOCK_SIM_ANCHOR, &sim_anchor),
        ];
        let changed = self.apply(&changes).map_err(CabinError::InvalidArgument)?;
        self.announce(&emitter, &changed).await?;
        Ok(())
    }

    /// The simulated time, Unix milliseconds.
    #[zbus(name = "Now")]
    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}
