//! Service configuration: a TOML file, then `CABIN_<SERVICE>__<KEY>` environment overrides.
//!
//! Config structs use `#[serde(default, deny_unknown_fields)]`, so a missing key takes its
//! default and a typo is a start-up error. Every error is one line naming the file (or the
//! environment variable), the key and why, because that line is what an operator sees in the
//! journal when a service refuses to start.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Where a service's config lives on a target when `--config` is not given.
pub fn default_path(service: &str) -> PathBuf {
    PathBuf::from(format!("/etc/cabin/{service}.toml"))
}

/// The environment prefix of a service: `wallpaper` → `CABIN_WALLPAPER__`.
pub fn env_prefix(service: &str) -> String {
    format!("CABIN_{}__", service.to_ascii_uppercase().replace('-', "_"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `environment` when the bad value came from a variable.
    pub source: String,
    /// Dotted key path, empty when the error is not about one key.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "config {}: {}", self.source, self.reason)
        } else {
            write!(
                f,
                "config {}: key `{}`: {}",
                self.source, self.key, self.reason
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Loads the config of `service` from `explicit` (must exist) or the default path (may be
/// absent), with overrides from the process environment.
pub fn load<T: DeserializeOwned>(service: &str, explicit: Option<&Path>) -> Result<T, ConfigError> {
    load_with_env(service, explicit, std::env::vars())
}

/// [`load`] with the environment handed in, so tests need not touch the process's.
pub fn load_with_env<T: DeserializeOwned>(
    service: &str,
    explicit: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let path = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_path(service));
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => String::new(),
        Err(e) => {
            return Err(ConfigError {
                source: shown,
                key: String::new(),
                reason: e.to_string(),
            });
        }
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError {
        source: shown.clone(),
        key: String::new(),
        reason: syntax_reason(&text, &e),
    })?;

    let prefix = env_prefix(service);
    let mut from_env = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError {
                source: format!("environment {name}"),
                key: String::new(),
                reason: "empty key segment".into(),
            });
        }
        set_path(&mut table, &keys, parse_env_value(&value)).map_err(|reason| ConfigError {
            source: format!("environment {name}"),
            key: keys.join("."),
            reason,
        })?;
        from_env.push((keys.join("."), name));
    }

    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let source = from_env
            .iter()
            .find(|(k, _)| *k == key || key.starts_with(&format!("{k}.")))
            .map(|(_, var)| format!("environment {var}"))
            .unwrap_or(shown);
        let reason = e
            .into_inner()
            .message()
            .lines()
            .next()
            .unwrap_or("invalid value")
            .to_string();
        ConfigError {
            source,
            key,
            reason,
        }
    })
}

/// A TOML syntax error as `line N: message`, one line.
fn syntax_reason(text: &str, err: &toml::de::Error) -> String {
    let message = err
        .message()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .trim()
        .to_string();
    match err.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

/// An environment value is a TOML value when it parses as one (`3`, `true`, `[1, 2]`),
/// and a plain string otherwise, so `CABIN_X__NAME=Oslo` needs no quotes.
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        threads: u32,
        name: String,
        vehicle: Place,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Place {
        latitude: f64,
        longitude: f64,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                threads: 2,
                name: "cabin".into(),
                vehicle: Place::default(),
            }
        }
    }

    impl Default for Place {
        fn default() -> Self {
            Self {
                latitude: 22.54,
                longitude: 114.06,
            }
        }
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn missing_keys_take_defaults() {
        let file = write("threads = 4\n");
        let cfg: Sample = load_with_env("test", Some(file.path()), no_env()).unwrap();
        assert_eq!(
            cfg,
            Sample {
                threads: 4,
                ..Sample::default()
            }
        );
    }

    #[test]
    fn absent_default_file_means_all_defaults() {
        let cfg: Sample = load_with_env("surely-not-installed-here", None, no_env()).unwrap();
        assert_eq!(cfg, Sample::default());
    }

    #[test]
    fn explicit_file_must_exist() {
        let err = load_with_env::<Sample>("test", Some(Path::new("/nonexistent/x.toml")), no_env())
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"), "{err}");
    }

    #[test]
    fn typo_key_is_one_line_naming_file_and_key() {
        let file = write("threads = 1\n[vehicle]\nlattitude = 59.9\n");
        let err = load_with_env::<Sample>("test", Some(file.path()), no_env()).unwrap_err();
        let line = err.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(&file.path().display().to_string()), "{line}");
        assert!(line.contains("lattitude"), "{line}");
        assert!(line.contains("vehicle"), "{line}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let file = write("threads = \"many\"\n");
        let err = load_with_env::<Sample>("test", Some(file.path()), no_env()).unwrap_err();
        assert_eq!(err.key, "threads");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn syntax_error_gives_the_line() {
        let file = write("threads = 1\nname = \n");
        let err = load_with_env::<Sample>("test", Some(file.path()), no_env()).unwrap_err();
        assert!(err.reason.starts_with("line 2:"), "{err}");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn environment_overrides_file() {
        let file = write("threads = 1\n[vehicle]\nlatitude = 1.0\n");
        let env = vec![
            ("CABIN_TEST__THREADS".to_string(), "8".to_string()),
            (
                "CABIN_TEST__VEHICLE__LONGITUDE".to_string(),
                "10.75".to_string(),
            ),
            ("CABIN_TEST__NAME".to_string(), "Oslo car".to_string()),
            ("CABIN_OTHER__THREADS".to_string(), "99".to_string()),
        ];
        let cfg: Sample = load_with_env("test", Some(file.path()), env).unwrap();
        assert_eq!(cfg.threads, 8);
        assert_eq!(cfg.name, "Oslo car");
        assert_eq!(
            cfg.vehicle,
            Place {
                latitude: 1.0,
                longitude: 10.75
            }
        );
    }

    #[test]
    fn unknown_environment_key_names_the_variable() {
        let env = vec![("CABIN_TEST__THREDS".to_string(), "8".to_string())];
        let err = load_with_env::<Sample>("test", Some(write("").path()), env).unwrap_err();
        assert!(err.to_string().contains("CABIN_TEST__THREDS"), "{err}");
        assert!(err.to_string().contains("threds"), "{err}");
    }

    #[test]
    fn env_prefix_of_dashed_service() {
        assert_eq!(env_prefix("vehicle-sim"), "CABIN_VEHICLE_SIM__");
    }
}
