//! Vehicle context: what the services may know about the car right now.
//!
//! Services read it through [`VehicleSource`]; where it comes from is not their business.
//! In the simulator (and in tests) it is `org.cabin.Vehicle1` on D-Bus ([`dbus`]); on a car the
//! integration maps the signal broker onto the same state; a fixed state from config
//! ([`FixedVehicle`]) serves bench setups with no vehicle at all.
//!
//! Field ↔ COVESA VSS (4.x) signal:
//!
//! | field            | VSS signal                                          | bus property   |
//! |------------------|-----------------------------------------------------|----------------|
//! | `speed_kmh`      | `Vehicle.Speed` (km/h)                              | `Speed`        |
//! | `gear`           | `Vehicle.Powertrain.Transmission.SelectedGear` (127 = P, 126 = D, -1 = R, 0 = N) | `Gear` |
//! | `latitude`       | `Vehicle.CurrentLocation.Latitude` (deg)            | `Latitude`     |
//! | `longitude`      | `Vehicle.CurrentLocation.Longitude` (deg)           | `Longitude`    |
//! | `day_night`      | `Vehicle.Cabin.Infotainment.HMI.DayNightMode` (DAY/NIGHT) | `DayNightMode` |
//! | `ignition`       | `Vehicle.LowVoltageSystemState` (OFF/ACC/ON/START)  | `Ignition`     |
//! | `driving_secs`   | none standard; derived from `Vehicle.Speed` and `Vehicle.LowVoltageSystemState` (closest: `Vehicle.TripDuration`) | `DrivingTime` |
//! | `clock`          | none (simulation only); a car uses the system clock | `ClockRate`, `ClockRealAnchor`, `ClockSimAnchor` |

pub mod dbus;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::{ClockSetting, SettingClock, SharedClock, SystemClock};

pub use cabin_contracts::vehicle::{BUS_NAME, INTERFACE, INTROSPECTION_XML, OBJECT_PATH};

macro_rules! bus_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$($text),+];
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(
                        "`{other}` is not a {}; expected one of {}",
                        stringify!($name).to_ascii_lowercase(),
                        Self::ALL.join(", ")
                    )),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> { s.parse() }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String { v.as_str().to_string() }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

bus_enum!(
    /// Selected gear, as the driver sees it on the selector.
    Gear { Park = "P", Reverse = "R", Neutral = "N", Drive = "D" }
);
bus_enum!(
    /// The HMI's day/night mode (headlights, ambient light sensor).
    DayNight { Day = "day", Night = "night" }
);
bus_enum!(
    /// Low-voltage system state (the ignition key position).
    Ignition { Off = "off", Acc = "acc", On = "on", Start = "start" }
);

/// A snapshot of the vehicle context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VehicleState {
    pub speed_kmh: f64,
    pub gear: Gear,
    pub latitude: f64,
    pub longitude: f64,
    pub day_night: DayNight,
    pub ignition: Ignition,
    /// Continuous driving time: reset by a break of at least the publisher's break length.
    pub driving_secs: u64,
    pub clock: ClockSetting,
}

impl Default for VehicleState {
    /// A parked car in Shenzhen with the ignition on, on real time.
    fn default() -> Self {
        Self {
            speed_kmh: 0.0,
            gear: Gear::Park,
            latitude: 22.5431,
            longitude: 114.0579,
            day_night: DayNight::Day,
            ignition: Ignition::On,
            driving_secs: 0,
            clock: ClockSetting::default(),
        }
    }
}

/// The fastest speed accepted as plausible, km/h.
pub const MAX_SPEED_KMH: f64 = 400.0;

impl VehicleState {
    /// Moving: the driver's attention belongs to the road.
    pub fn is_moving(&self) -> bool {
        self.ignition != Ignition::Off && self.speed_kmh > 0.5
    }

    /// Why a state is implausible, if it is; the first problem found.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=MAX_SPEED_KMH).contains(&self.speed_kmh) {
            return Err(format!(
                "speed {} km/h is outside 0..={MAX_SPEED_KMH}",
                self.speed_kmh
            ));
        }
        if !(-90.0..=90.0).contains(&self.latitude) {
            return Err(format!("latitude {} is outside -90..=90", self.latitude));
        }
        if !(-180.0..=180.0).contains(&self.longitude) {
            return Err(format!(
                "longitude {} is outside -180..=180",
                self.longitude
            ));
        }
        self.clock.validate()
    }

    /// The bus properties of `org.cabin.Vehicle1` for this state.
    pub fn to_properties(&self) -> HashMap<&'static str, zbus::OwnedVariant> {
        use zbus::Variant;
        let own = |v: Variant<'_>| v.try_into_owned().expect("plain values carry no fds");
        HashMap::from([
            (prop::SPEED, own(Variant::from(self.speed_kmh))),
            (prop::GEAR, own(Variant::from(self.gear.as_str()))),
            (prop::LATITUDE, own(Variant::from(self.latitude))),
            (prop::LONGITUDE, own(Variant::from(self.longitude))),
            (prop::DAY_NIGHT, own(Variant::from(self.day_night.as_str()))),
            (prop::IGNITION, own(Variant::from(self.ignition.as_str()))),
            (prop::DRIVING_TIME, own(Variant::from(self.driving_secs))),
            (prop::CLOCK_RATE, own(Variant::from(self.clock.rate))),
            (
                prop::CLOCK_REAL_ANCHOR,
                own(Variant::from(self.clock.real_anchor_ms)),
            ),
            (
                prop::CLOCK_SIM_ANCHOR,
                own(Variant::from(self.clock.sim_anchor_ms)),
            ),
        ])
    }

    /// Applies the bus properties in `props` over this state; unknown names are an error,
    /// so a typo in an `Update` call is reported rather than ignored.
    pub fn apply_properties<'a>(
        &mut self,
        props: impl IntoIterator<Item = (&'a str, &'a zbus::Variant<'a>)>,
    ) -> Result<(), String> {
        let mut next = self.clone();
        for (name, value) in props {
            let mut value = value;
            while let zbus::Variant::Variant(inner) = value {
                value = inner;
            }
            match name {
                prop::SPEED => next.speed_kmh = number(name, value)?,
                prop::GEAR => next.gear = text(name, value)?.parse()?,
                prop::LATITUDE => next.latitude = number(name, value)?,
                prop::LONGITUDE => next.longitude = number(name, value)?,
                prop::DAY_NIGHT => next.day_night = text(name, value)?.parse()?,
                prop::IGNITION => next.ignition = text(name, value)?.parse()?,
                prop::DRIVING_TIME => {
                    let secs = number(name, value)?;
                    if !(0.0..=1.0e9).contains(&secs) {
                        return Err(format!("{name} {secs} is out of range"));
                    }
                    next.driving_secs = secs as u64
                }
                prop::CLOCK_RATE => next.clock.rate = number(name, value)?,
                prop::CLOCK_REAL_ANCHOR => next.clock.real_anchor_ms = integer(name, value)?,
                prop::CLOCK_SIM_ANCHOR => next.clock.sim_anchor_ms = integer(name, value)?,
                other => {
                    return Err(format!(
                        "unknown vehicle property `{other}`; expected one of {}",
                        prop::ALL.join(", ")
                    ));
                }
            }
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

/// Property names of `org.cabin.Vehicle1`.
pub mod prop {
    pub const SPEED: &str = "Speed";
    pub const GEAR: &str = "Gear";
    pub const LATITUDE: &str = "Latitude";
    pub const LONGITUDE: &str = "Longitude";
    pub const DAY_NIGHT: &str = "DayNightMode";
    pub const IGNITION: &str = "Ignition";
    pub const DRIVING_TIME: &str = "DrivingTime";
    pub const CLOCK_RATE: &str = "ClockRate";
    pub const CLOCK_REAL_ANCHOR: &str = "ClockRealAnchor";
    pub const CLOCK_SIM_ANCHOR: &str = "ClockSimAnchor";
    pub const ALL: &[&str] = &[
        SPEED,
        GEAR,
        LATITUDE,
        LONGITUDE,
        DAY_NIGHT,
        IGNITION,
        DRIVING_TIME,
        CLOCK_RATE,
        CLOCK_REAL_ANCHOR,
        CLOCK_SIM_ANCHOR,
    ];
}

fn number(name: &str, v: &zbus::Variant<'_>) -> Result<f64, String> {
    use zbus::Variant as V;
    let n = match v {
        V::F64(x) => *x,
        V::I32(x) => f64::from(*x),
        V::U32(x) => f64::from(*x),
        V::I64(x) => *x as f64,
        V::U64(x) => *x as f64,
        V::I16(x) => f64::from(*x),
        V::U16(x) => f64::from(*x),
        V::U8(x) => f64::from(*x),
        other => {
            return Err(format!(
                "{name} must be a number, got {}",
                other.value_signature()
            ));
        }
    };
    if n.is_finite() {
        Ok(n)
    } else {
        Err(format!("{name} must be finite"))
    }
}

fn integer(name: &str, v: &zbus::Variant<'_>) -> Result<i64, String> {
    use zbus::Variant as V;
    match v {
        V::I64(x) => Ok(*x),
        V::I32(x) => Ok(i64::from(*x)),
        V::U32(x) => Ok(i64::from(*x)),
        V::U64(x) => i64::try_from(*x).map_err(|_| format!("{name} is out of range")),
        other => Err(format!(
            "{name} must be an integer, got {}",
            other.value_signature()
        )),
    }
}

fn text<'a>(name: &str, v: &'a zbus::Variant<'_>) -> Result<&'a str, String> {
    match v {
        zbus::Variant::Str(s) => Ok(s.as_str()),
        other => Err(format!(
            "{name} must be a string, got {}",
            other.value_signature()
        )),
    }
}

/// Where services read the vehicle context from.
pub trait VehicleSource: Send + Sync {
    /// Follows the state: the receiver always holds the latest snapshot.
    fn watch(&self) -> watch::Receiver<VehicleState>;

    fn snapshot(&self) -> VehicleState {
        self.watch().borrow().clone()
    }

    /// The clock the services should read: simulated when the source publishes a setting.
    fn clock(&self) -> SharedClock {
        let rx = self.watch();
        std::sync::Arc::new(SettingClock::new(move || rx.borrow().clock))
    }
}

/// A fixed vehicle context, e.g. from a `[vehicle]` config table.
pub struct FixedVehicle {
    tx: watch::Sender<VehicleState>,
}

impl FixedVehicle {
    pub fn new(state: VehicleState) -> Self {
        Self {
            tx: watch::Sender::new(state),
        }
    }
}

impl VehicleSource for FixedVehicle {
    fn watch(&self) -> watch::Receiver<VehicleState> {
        self.tx.subscribe()
    }

    fn clock(&self) -> SharedClock {
        if self.tx.borrow().clock == ClockSetting::default() {
            std::sync::Arc::new(SystemClock)
        } else {
            let rx = self.watch();
            std::sync::Arc::new(SettingClock::new(move || rx.borrow().clock))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::Variant;

    #[test]
    fn properties_round_trip() {
        let mut state = VehicleState {
            speed_kmh: 88.5,
            gear: Gear::Drive,
            latitude: 59.91,
            longitude: 10.75,
            day_night: DayNight::Night,
            ignition: Ignition::On,
            driving_secs: 7300,
            clock: ClockSetting {
                real_anchor_ms: 5,
                sim_anchor_ms: 9,
                rate: 60.0,
            },
        };
        let props = state.to_properties();
        let mut back = VehicleState::default();
        back.apply_properties(props.iter().map(|(k, v)| (*k, &**v)))
            .unwrap();
        assert_eq!(back, state);
        state.speed_kmh = 0.0;
        assert!(!state.is_moving());
    }

    #[test]
    fn bad_updates_change_nothing_and_say_why() {
        let mut state = VehicleState::default();
        let before = state.clone();
        let cases: Vec<(&str, Variant<'static>, &str)> = vec![
            ("Speed", Variant::from(-5.0), "speed"),
            ("Speed", Variant::from("fast"), "number"),
            ("Gear", Variant::from("X"), "expected one of P, R, N, D"),
            ("Latitude", Variant::from(91.0), "latitude"),
            ("ClockRate", Variant::from(f64::NAN), "finite"),
            (
                "Sped",
                Variant::from(1.0),
                "unknown vehicle property `Sped`",
            ),
        ];
        for (name, value, why) in cases {
            let ok = Variant::from(30.0);
            let err = state
                .apply_properties([("Speed", &ok), (name, &value)])
                .unwrap_err();
            assert!(err.contains(why), "{name}: {err}");
            assert_eq!(state, before, "a failed update must change nothing");
        }
    }

    #[test]
    fn fixed_vehicle_on_real_time_uses_the_system_clock() {
        let v = FixedVehicle::new(VehicleState::default());
        let drift = (v.clock().now() - chrono::Utc::now())
            .num_milliseconds()
            .abs();
        assert!(drift < 1000);
    }

    #[test]
    fn state_reads_from_toml() {
        let s: VehicleState =
            toml::from_str("latitude = 69.65\nlongitude = 18.96\ngear = \"D\"").unwrap();
        assert_eq!(s.gear, Gear::Drive);
        assert!(toml::from_str::<VehicleState>("gear = \"Q\"").is_err());
    }
}
