//! Care from the vehicle context: a break after long driving, gentleness late at night,
//! brevity at speed.

use chrono::{DateTime, Timelike, Utc};
use serde::Deserialize;

use cabin_common::vehicle::VehicleState;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CareConfig {
    /// Continuous driving after which a break is suggested.
    pub break_after_mins: u64,
    /// How often the break suggestion may repeat while the drive goes on.
    pub break_repeat_mins: u64,
    /// Local hours counted as late night, `[start, end)` across midnight.
    pub night_from_hour: u32,
    pub night_until_hour: u32,
    /// Above this speed replies are cut to the shortest form.
    pub high_speed_kmh: f64,
    /// The car's offset from UTC; unset: the solar offset of the car's longitude.
    pub utc_offset_minutes: Option<i32>,
}

impl Default for CareConfig {
    fn default() -> Self {
        Self {
            break_after_mins: 120,
            break_repeat_mins: 30,
            night_from_hour: 23,
            night_until_hour: 5,
            high_speed_kmh: 100.0,
            utc_offset_minutes: None,
        }
    }
}

/// What the context asks of this reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Care {
    pub moving: bool,
    pub long_drive: bool,
    pub late_night: bool,
    pub high_speed: bool,
    pub driving_mins: u64,
}

impl Care {
    pub fn read(config: &CareConfig, vehicle: &VehicleState, now: DateTime<Utc>) -> Self {
        let offset = config
            .utc_offset_minutes
            .unwrap_or_else(|| (vehicle.longitude / 15.0 * 60.0).round() as i32);
        let local = now + chrono::Duration::minutes(i64::from(offset));
        let hour = local.hour();
        let (from, until) = (config.night_from_hour, config.night_until_hour);
        let late_night = if from > until {
            hour >= from || hour < until
        } else {
            (from..until).contains(&hour)
        };
        let moving = vehicle.is_moving();
        let driving_mins = vehicle.driving_secs / 60;
        Self {
            moving,
            long_drive: driving_mins >= config.break_after_mins,
            late_night,
            high_speed: moving && vehicle.speed_kmh >= config.high_speed_kmh,
            driving_mins,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cabin_common::vehicle::Gear;

    #[test]
    fn reads_long_drives_nights_and_speed() {
        let config = CareConfig::default();
        let mut v = VehicleState {
            speed_kmh: 120.0,
            gear: Gear::Drive,
            driving_secs: 2 * 3600 + 60,
            longitude: 116.4, // Beijing: solar offset +7:46, close to CST
            ..VehicleState::default()
        };
        let at = |h: u32| {
            DateTime::parse_from_rfc3339(&format!("2026-11-30T{h:02}:00:00Z"))
                .unwrap()
                .to_utc()
        };
        let care = Care::read(&config, &v, at(16)); // ~23:46 local
        assert!(care.moving && care.long_drive && care.high_speed && care.late_night);
        assert_eq!(care.driving_mins, 121);
        v.speed_kmh = 0.0;
        v.driving_secs = 600;
        let care = Care::read(&config, &v, at(4)); // ~11:46 local
        assert!(!care.moving && !care.long_drive && !care.high_speed && !care.late_night);
        let fixed = CareConfig {
            utc_offset_minutes: Some(0),
            ..CareConfig::default()
        };
        assert!(Care::read(&fixed, &v, at(2)).late_night);
    }
}
