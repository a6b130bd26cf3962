//! Scripted vehicle scenarios: a TOML list of steps, each applied some seconds (real time)
//! after the previous one, optionally looping.
//!
//! ```toml
//! repeat = true
//! [[step]]
//! after_s = 0
//! gear = "D"
//! speed_kmh = 60
//! [[step]]
//! after_s = 30
//! speed_kmh = 0
//! gear = "P"
//! ```

use std::path::Path;

use cabin_common::vehicle::{DayNight, Gear, Ignition, prop};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Script {
    #[serde(default)]
    pub repeat: bool,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub after_s: f64,
    pub speed_kmh: Option<f64>,
    pub gear: Option<Gear>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub day_night: Option<DayNight>,
    pub ignition: Option<Ignition>,
    pub driving_secs: Option<u64>,
}

impl Script {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("script {}: {e}", path.display()))?;
        let script: Script = toml::from_str(&text).map_err(|e| {
            format!(
                "script {}: {}",
                path.display(),
                e.message().lines().next().unwrap_or("")
            )
        })?;
        for (i, step) in script.steps.iter().enumerate() {
            if !step.after_s.is_finite() || step.after_s < 0.0 || step.after_s > 86_400.0 {
                return Err(format!(
                    "script {}: step {}: after_s must be 0..=86400",
                    path.display(),
                    i + 1
                ));
            }
        }
        if script.repeat && script.steps.iter().all(|s| s.after_s == 0.0) {
            return Err(format!(
                "script {}: a repeating script needs a step with after_s > 0",
                path.display()
            ));
        }
        Ok(script)
    }
}

impl Step {
    /// The step as `Vehicle1` property changes.
    pub fn changes(&self) -> Vec<(&'static str, zbus::Variant<'static>)> {
        let mut out = Vec::new();
        if let Some(v) = self.speed_kmh {
            out.push((prop::SPEED, v.into()));
        }
        if let Some(v) = self.gear {
            out.push((prop::GEAR, v.as_str().into()));
        }
        if let Some(v) = self.latitude {
            out.push((prop::LATITUDE, v.into()));
        }
        if let Some(v) = self.longitude {
            out.push((prop::LONGITUDE, v.into()));
        }
        if let Some(v) = self.day_night {
            out.push((prop::DAY_NIGHT, v.as_str().into()));
        }
        if let Some(v) = self.ignition {
            out.push((prop::IGNITION, v.as_str().into()));
        }
        if let Some(v) = self.driving_secs {
            out.push((prop::DRIVING_TIME, v.into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let dir = std::env::temp_dir().join(format!("cabin-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "repeat = true\n[[step]]\ngear = \"D\"\nspeed_kmh = 60\n[[step]]\nafter_s = 2\nspeed_kmh = 0\n").unwrap();
        let s = Script::load(&good).unwrap();
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].changes().len(), 2);

        let typo = dir.join("typo.toml");
        std::fs::write(&typo, "[[step]]\nsped = 1\n").unwrap();
        assert!(Script::load(&typo).unwrap_err().contains("sped"));

        let spin = dir.join("spin.toml");
        std::fs::write(&spin, "repeat = true\n[[step]]\nspeed_kmh = 1\n").unwrap();
        assert!(Script::load(&spin).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
