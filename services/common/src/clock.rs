//! Time, as every service must read it: through a [`Clock`].
//!
//! On a car the clock is the system clock. In the simulator the vehicle source publishes a
//! [`ClockSetting`] (an anchor and a speed factor), so a whole day plays in minutes and
//! every service agrees on the simulated time.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A simulated clock as an offset and a speed factor: at real time `real_anchor_ms` it read
/// `sim_anchor_ms`, and it advances `rate` simulated seconds per real second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockSetting {
    pub real_anchor_ms: i64,
    pub sim_anchor_ms: i64,
    pub rate: f64,
}

impl Default for ClockSetting {
    /// Real time: no offset, rate 1.
    fn default() -> Self {
        Self {
            real_anchor_ms: 0,
            sim_anchor_ms: 0,
            rate: 1.0,
        }
    }
}

/// The fastest a simulated day may run: a day in about 14 s.
pub const MAX_RATE: f64 = 6000.0;

impl ClockSetting {
    /// A clock that reads `sim` at real time `real` and then runs at `rate`.
    pub fn anchored(real: DateTime<Utc>, sim: DateTime<Utc>, rate: f64) -> Self {
        Self {
            real_anchor_ms: real.timestamp_millis(),
            sim_anchor_ms: sim.timestamp_millis(),
            rate,
        }
    }

    /// Simulated time at real time `real`.
    pub fn at(&self, real: DateTime<Utc>) -> DateTime<Utc> {
        let elapsed_ms = (real.timestamp_millis() - self.real_anchor_ms) as f64;
        let sim_ms = self.sim_anchor_ms as f64 + elapsed_ms * self.rate;
        let sim_ms = sim_ms.clamp(-8.0e15, 8.0e15) as i64;
        Utc.timestamp_millis_opt(sim_ms).single().unwrap_or(real)
    }

    /// Why a setting is unusable, if it is.
    pub fn validate(&self) -> Result<(), String> {
        if !self.rate.is_finite() || self.rate < 0.0 || self.rate > MAX_RATE {
            return Err(format!(
                "clock rate {} is outside 0..={MAX_RATE}",
                self.rate
            ));
        }
        Ok(())
    }
}

/// A clock driven by a (published) setting, read live from a watch channel.
#[derive(Clone)]
pub struct SettingClock<F> {
    setting: F,
}

impl<F: Fn() -> ClockSetting + Send + Sync> SettingClock<F> {
    pub fn new(setting: F) -> Self {
        Self { setting }
    }
}

impl<F: Fn() -> ClockSetting + Send + Sync> Clock for SettingClock<F> {
    fn now(&self) -> DateTime<Utc> {
        (self.setting)().at(Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn default_setting_is_real_time() {
        let real = Utc::now();
        assert_eq!(ClockSetting::default().at(real), real.with_nanosecond_ms());
    }

    #[test]
    fn simulated_day_runs_at_rate() {
        let real = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
        let sim = Utc.with_ymd_and_hms(2026, 12, 21, 5, 0, 0).unwrap();
        let s = ClockSetting::anchored(real, sim, 60.0);
        assert_eq!(s.at(real), sim);
        assert_eq!(
            s.at(real + Duration::seconds(10)),
            sim + Duration::minutes(10)
        );
    }

    #[test]
    fn paused_clock_stays() {
        let real = Utc::now();
        let s = ClockSetting::anchored(real, real - Duration::hours(3), 0.0);
        assert_eq!(s.at(real + Duration::hours(1)), s.at(real));
    }

    #[test]
    fn rejects_bad_rates() {
        for rate in [-1.0, f64::NAN, f64::INFINITY, MAX_RATE * 2.0] {
            assert!(
                ClockSetting {
                    rate,
                    ..Default::default()
                }
                .validate()
                .is_err()
            );
        }
        assert!(ClockSetting::default().validate().is_ok());
    }

    trait Ms {
        fn with_nanosecond_ms(self) -> Self;
    }
    impl Ms for DateTime<Utc> {
        fn with_nanosecond_ms(self) -> Self {
            Utc.timestamp_millis_opt(self.timestamp_millis()).unwrap()
        }
    }
}
