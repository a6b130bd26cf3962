//! `org.cabin.Vehicle1` at `/org/cabin/Vehicle1`: the vehicle context every service reads
//! (the signal broker on the car, `cabin-vehicle-sim` on a desktop).

use std::collections::HashMap;

use zbus::Variant;

pub const BUS_NAME: &str = "org.cabin.Vehicle1";
pub const OBJECT_PATH: &str = "/org/cabin/Vehicle1";
pub const INTERFACE: &str = "org.cabin.Vehicle1";
/// The contract as committed; the publisher's bus test compares it with the live export.
pub const INTROSPECTION_XML: &str = include_str!("../dbus/org.cabin.Vehicle1.xml");

#[zbus::proxy(
    interface = "org.cabin.Vehicle1",
    default_service = "org.cabin.Vehicle1",
    default_path = "/org/cabin/Vehicle1"
)]
pub trait Vehicle1 {
    /// Changes several properties at once, all or none.
    fn update(&self, changes: HashMap<&str, Variant<'_>>) -> zbus::Result<()>;
    /// Runs the simulated clock from `sim_time_ms` (Unix ms) at `rate` times real time.
    fn set_clock(&self, sim_time_ms: i64, rate: f64) -> zbus::Result<()>;
    /// The vehicle's time, Unix ms.
    fn now(&self) -> zbus::Result<i64>;
    #[zbus(property)]
    fn clock_rate(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn clock_real_anchor(&self) -> zbus::Result<i64>;
    #[zbus(property)]
    fn clock_sim_anchor(&self) -> zbus::Result<i64>;
    #[zbus(property)]
    fn day_night_mode(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn set_day_night_mode(&self, mode: &str) -> zbus::Result<()>;
    /// Continuous driving time, seconds (a 15-minute stop resets it).
    #[zbus(property)]
    fn driving_time(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn gear(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn set_gear(&self, gear: &str) -> zbus::Result<()>;
    #[zbus(property)]
    fn ignition(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn set_ignition(&self, ignition: &str) -> zbus::Result<()>;
    #[zbus(property)]
    fn latitude(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn set_latitude(&self, degrees: f64) -> zbus::Result<()>;
    #[zbus(property)]
    fn longitude(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn set_longitude(&self, degrees: f64) -> zbus::Result<()>;
    /// km/h.
    #[zbus(property)]
    fn speed(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn set_speed(&self, kmh: f64) -> zbus::Result<()>;
}
