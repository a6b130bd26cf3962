//! Agent tools: what the companion may do besides talking. The allow-list is the service's
//! config; a persona card cannot add to it. Each action taken is reported with the reply.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use cabin_common::vehicle::VehicleState;

pub const SET_WALLPAPER: &str = "set_wallpaper";
pub const DRIVE_STATUS: &str = "drive_status";
pub const KNOWN: &[&str] = &[SET_WALLPAPER, DRIVE_STATUS];

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// JSON object of arguments, as an LM sends them.
    pub arguments: Value,
}

/// What an action did, as the `Reply` signal reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: String,
    pub ok: bool,
    /// Argument and result fields, flat strings (`prompt`, `job`, `error_name`, `message`, ...).
    pub details: BTreeMap<String, String>,
}

impl Action {
    /// The text an LM gets back as the tool's result.
    pub fn result_json(&self) -> String {
        json!({"ok": self.ok, "details": self.details}).to_string()
    }
}

/// Side effects outside the companion, implemented by the bus layer (D-Bus calls).
pub trait Effects: Send + Sync {
    /// Starts a wallpaper generation; the job's object path, or (error name, message).
    fn set_wallpaper(&self, prompt: &str) -> Result<String, (String, String)>;
}

/// Runs the allowed tools for one turn and keeps what was done.
pub struct ToolBox<'a> {
    allowed: &'a [String],
    effects: &'a dyn Effects,
    vehicle: &'a VehicleState,
    done: Mutex<Vec<(ToolCall, Action)>>,
}

impl<'a> ToolBox<'a> {
    pub fn new(allowed: &'a [String], effects: &'a dyn Effects, vehicle: &'a VehicleState) -> Self {
        Self {
            allowed,
            effects,
            vehicle,
            done: Mutex::new(Vec::new()),
        }
    }

    pub fn allowed(&self, name: &str) -> bool {
        self.allowed.iter().any(|a| a == name)
    }

    /// JSON schemas of the allowed tools, in the OpenAI `tools` format.
    pub fn schemas(&self) -> Vec<Value> {
        self.allowed
            .iter()
            .filter_map(|name| match name.as_str() {
                SET_WALLPAPER => Some(json!({"type": "function", "function": {
                    "name": SET_WALLPAPER,
                    "description": "Generate a new wallpaper for the car's centre display from a short scene description and show it.",
                    "parameters": {"type": "object", "properties": {
                        "prompt": {"type": "string", "description": "The scene, e.g. 'snowy mountains at dusk' or '星空'."}
                    }, "required": ["prompt"]}
                }})),
                DRIVE_STATUS => Some(json!({"type": "function", "function": {
                    "name": DRIVE_STATUS,
                    "description": "The current drive: continuous driving time, speed and whether the car is moving.",
                    "parameters": {"type": "object", "properties": {}}
                }})),
                _ => None,
            })
            .collect()
    }

    /// Runs a call once per turn: the same call again (say, from a fallback backend) gets
    /// the first result without acting twice.
    pub fn run(&self, call: &ToolCall) -> Action {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, action)) = done.iter().find(|(c, _)| c == call) {
            return action.clone();
        }
        let action = self.execute(call);
        done.push((call.clone(), action.clone()));
        action
    }

    pub fn actions(&self) -> Vec<Action> {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, a)| a.clone())
            .collect()
    }

    fn execute(&self, call: &ToolCall) -> Action {
        let mut details = BTreeMap::new();
        let fail = |mut details: BTreeMap<String, String>, name: &str, message: String| {
            details.insert("error_name".into(), name.into());
            details.insert("message".into(), message);
            Action {
                name: call.name.clone(),
                ok: false,
                details,
            }
        };
        if !self.allowed(&call.name) {
            return fail(
                details,
                cabin_common::error::names::PERMISSION_DENIED,
                format!("the tool {:?} is not allowed here", call.name),
            );
        }
        match call.name.as_str() {
            SET_WALLPAPER => {
                let prompt = call
                    .arguments
                    .get("prompt")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim();
                if prompt.is_empty() || prompt.chars().count() > 200 {
                    return fail(
                        details,
                        cabin_common::error::names::INVALID_ARGUMENT,
                        "set_wallpaper needs a prompt of 1-200 characters".into(),
                    );
                }
                details.insert("prompt".into(), prompt.to_string());
                match self.effects.set_wallpaper(prompt) {
                    Ok(job) => {
                        details.insert("job".into(), job);
                        Action {
                            name: call.name.clone(),
                            ok: true,
                            details,
                        }
                    }
                    Err((name, message)) => fail(details, &name, message),
                }
            }
            DRIVE_STATUS => {
                let v = self.vehicle;
                details.insert("driving_minutes".into(), (v.driving_secs / 60).to_string());
                details.insert("speed_kmh".into(), format!("{:.0}", v.speed_kmh));
                details.insert("moving".into(), v.is_moving().to_string());
                Action {
                    name: call.name.clone(),
                    ok: true,
                    details,
                }
            }
            other => fail(
                details,
                cabin_common::error::names::INVALID_ARGUMENT,
                format!("unknown tool {other:?}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);
    impl Effects for Counting {
        fn set_wallpaper(&self, prompt: &str) -> Result<String, (String, String)> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(format!("/job/{}", prompt.len()))
        }
    }

    #[test]
    fn only_allowed_tools_run_and_each_call_runs_once() {
        let effects = Counting(AtomicUsize::new(0));
        let vehicle = VehicleState {
            driving_secs: 3 * 3600,
            speed_kmh: 80.0,
            gear: cabin_common::vehicle::Gear::Drive,
            ..Default::default()
        };
        let allowed = vec![SET_WALLPAPER.to_string()];
        let tools = ToolBox::new(&allowed, &effects, &vehicle);
        let call = ToolCall {
            name: SET_WALLPAPER.into(),
            arguments: json!({"prompt": "starry night"}),
        };
        assert!(tools.run(&call).ok);
        assert!(tools.run(&call).ok);
        assert_eq!(effects.0.load(Ordering::SeqCst), 1);
        let denied = tools.run(&ToolCall {
            name: DRIVE_STATUS.into(),
            arguments: json!({}),
        });
        assert!(!denied.ok);
        assert_eq!(
            denied.details["error_name"],
            "org.cabin.Error.PermissionDenied"
        );
        assert_eq!(tools.schemas().len(), 1);
        let bad = tools.run(&ToolCall {
            name: SET_WALLPAPER.into(),
            arguments: json!({"prompt": ""}),
        });
        assert_eq!(bad.details["error_name"], "org.cabin.Error.InvalidArgument");
        assert_eq!(tools.actions().len(), 3);
    }
}
