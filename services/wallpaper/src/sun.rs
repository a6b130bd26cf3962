//! Where the sun is, and what part of the day that makes it.
//!
//! NOAA's solar position equations (the ones behind its online calculator; within ±0.2° of
//! NREL's SPA, see `tests/sun_reference.rs`), with the standard-atmosphere refraction
//! correction, so elevations are the apparent ones a driver sees. Phases follow the sun's
//! elevation, so polar day and polar night need no special case.

use chrono::{DateTime, Timelike, Utc};
use serde::Serialize;

/// The part of the day, from the sun's apparent elevation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Below −18°.
    Night,
    /// −18° to −12°.
    AstronomicalTwilight,
    /// −12° to −6°.
    NauticalTwilight,
    /// −6° to 0°: the sun is just below the horizon.
    CivilTwilight,
    /// 0° to 6°: low, warm light.
    GoldenHour,
    /// Above 6°.
    Day,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Night,
        Phase::AstronomicalTwilight,
        Phase::NauticalTwilight,
        Phase::CivilTwilight,
        Phase::GoldenHour,
        Phase::Day,
    ];

    pub fn from_elevation(elevation_deg: f64) -> Self {
        match elevation_deg {
            e if e < -18.0 => Phase::Night,
            e if e < -12.0 => Phase::AstronomicalTwilight,
            e if e < -6.0 => Phase::NauticalTwilight,
            e if e < 0.0 => Phase::CivilTwilight,
            e if e < 6.0 => Phase::GoldenHour,
            _ => Phase::Day,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Night => "night",
            Phase::AstronomicalTwilight => "astronomical_twilight",
            Phase::NauticalTwilight => "nautical_twilight",
            Phase::CivilTwilight => "civil_twilight",
            Phase::GoldenHour => "golden_hour",
            Phase::Day => "day",
        }
    }
}

/// The sun seen from one place at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SunPosition {
    /// Apparent elevation above the horizon (refraction included), degrees.
    pub elevation_deg: f64,
    /// Clockwise from true north, degrees in [0, 360).
    pub azimuth_deg: f64,
    pub phase: Phase,
    /// Before solar noon: the light is dawn's, not dusk's.
    pub morning: bool,
}

/// Why a place or time cannot be used.
pub fn validate(lat: f64, lon: f64) -> Result<(), String> {
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(format!("latitude {lat} is outside -90..=90"));
    }
    if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("longitude {lon} is outside -180..=180"));
    }
    Ok(())
}

/// The sun at `lat`, `lon` (degrees, north and east positive) at `at`.
pub fn position(lat: f64, lon: f64, at: DateTime<Utc>) -> SunPosition {
    let (sin, cos, tan) = (
        |d: f64| d.to_radians().sin(),
        |d: f64| d.to_radians().cos(),
        |d: f64| d.to_radians().tan(),
    );
    let jd = julian_day(at);
    let jc = (jd - 2451545.0) / 36525.0;

    let mean_long = (280.46646 + jc * (36000.76983 + jc * 0.0003032)).rem_euclid(360.0);
    let mean_anom = 357.52911 + jc * (35999.05029 - 0.0001537 * jc);
    let eccent = 0.016708634 - jc * (0.000042037 + 0.0000001267 * jc);
    let center = sin(mean_anom) * (1.914602 - jc * (0.004817 + 0.000014 * jc))
        + sin(2.0 * mean_anom) * (0.019993 - 0.000101 * jc)
        + sin(3.0 * mean_anom) * 0.000289;
    let true_long = mean_long + center;
    let omega = 125.04 - 1934.136 * jc;
    let app_long = true_long - 0.00569 - 0.00478 * sin(omega);
    let mean_obliq =
        23.0 + (26.0 + (21.448 - jc * (46.815 + jc * (0.00059 - jc * 0.001813))) / 60.0) / 60.0;
    let obliq = mean_obliq + 0.00256 * cos(omega);
    let declination = (sin(obliq) * sin(app_long)).asin().to_degrees();

    let y = tan(obliq / 2.0).powi(2);
    let eq_of_time_min = 4.0
        * (y * sin(2.0 * mean_long) - 2.0 * eccent * sin(mean_anom)
            + 4.0 * eccent * y * sin(mean_anom) * cos(2.0 * mean_long)
            - 0.5 * y * y * sin(4.0 * mean_long)
            - 1.25 * eccent * eccent * sin(2.0 * mean_anom))
        .to_degrees();
    let minutes =
        f64::from(at.num_seconds_from_midnight()) / 60.0 + f64::from(at.nanosecond()) / 6.0e10;
    let true_solar_min = (minutes + eq_of_time_min + 4.0 * lon).rem_euclid(1440.0);
    let hour_angle = true_solar_min / 4.0 - 180.0;

    let cos_zenith = (sin(lat) * sin(declination) + cos(lat) * cos(declination) * cos(hour_angle))
        .clamp(-1.0, 1.0);
    let zenith = cos_zenith.acos().to_degrees();
    let geometric = 90.0 - zenith;

    let denom = cos(lat) * sin(zenith);
    let azimuth = if denom.abs() < 1e-12 {
        // At a pole or with the sun overhead the azimuth is undefined; south from the north pole.
        if lat > 0.0 { 180.0 } else { 0.0 }
    } else {
        let a = ((sin(lat) * cos(zenith) - sin(declination)) / denom)
            .clamp(-1.0, 1.0)
            .acos()
            .to_degrees();
        if hour_angle > 0.0 {
            (a + 180.0).rem_euclid(360.0)
        } else {
            (540.0 - a).rem_euclid(360.0)
        }
    };

    let elevation = geometric + refraction_deg(geometric);
    SunPosition {
        elevation_deg: elevation,
        azimuth_deg: azimuth,
        phase: Phase::from_elevation(elevation),
        morning: hour_angle < 0.0,
    }
}

/// NOAA's standard-atmosphere refraction, degrees to add to the geometric elevation.
fn refraction_deg(e: f64) -> f64 {
    let t = e.to_radians().tan();
    let arcsec = if e > 85.0 {
        0.0
    } else if e > 5.0 {
        58.1 / t - 0.07 / t.powi(3) + 0.000086 / t.powi(5)
    } else if e > -0.575 {
        1735.0 + e * (-518.2 + e * (103.4 + e * (-12.79 + e * 0.711)))
    } else {
        // Below the horizon the sun is not seen through the atmosphere: nothing to bend.
        0.0
    };
    arcsec / 3600.0
}

/// Days since the Unix epoch plus the epoch's Julian day.
fn julian_day(at: DateTime<Utc>) -> f64 {
    let secs = at.timestamp() as f64 + f64::from(at.nanosecond()) / 1e9;
    secs / 86400.0 + 2440587.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn nrel_spa_example() {
        // NREL SPA's published example (Golden, Colorado): zenith 50.11162°, azimuth 194.34024°.
        let p = position(39.742476, -105.1786, at("2003-10-17T19:30:30Z"));
        assert!((p.elevation_deg - (90.0 - 50.11162)).abs() < 0.05, "{p:?}");
        assert!((p.azimuth_deg - 194.34024).abs() < 0.05, "{p:?}");
        assert_eq!(p.phase, Phase::Day);
    }

    #[test]
    fn polar_day_and_polar_night() {
        // Tromsø at local midnight in June: the sun never sets; in December it never rises.
        let june = position(69.6492, 18.9553, at("2026-06-21T22:45:00Z"));
        assert!(june.elevation_deg > 0.0, "{june:?}");
        let december = position(69.6492, 18.9553, at("2026-12-21T11:00:00Z"));
        assert!(december.elevation_deg < 0.0, "{december:?}");
        assert_ne!(december.phase, Phase::Day);
    }

    #[test]
    fn phases_follow_the_thresholds() {
        let cases = [
            (-30.0, Phase::Night),
            (-15.0, Phase::AstronomicalTwilight),
            (-8.0, Phase::NauticalTwilight),
            (-1.0, Phase::CivilTwilight),
            (3.0, Phase::GoldenHour),
            (40.0, Phase::Day),
        ];
        for (e, phase) in cases {
            assert_eq!(Phase::from_elevation(e), phase, "{e}");
        }
    }

    #[test]
    fn morning_and_evening() {
        let shenzhen_morning = position(22.5431, 114.0579, at("2026-11-29T23:30:00Z"));
        assert!(shenzhen_morning.morning);
        let shenzhen_evening = position(22.5431, 114.0579, at("2026-11-29T09:30:00Z"));
        assert!(!shenzhen_evening.morning);
    }
}
