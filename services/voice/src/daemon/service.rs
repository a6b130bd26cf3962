//! `org.cabin.Voice1` at `/org/cabin/Voice1`: the exec hook of the voice assistant.
//!
//! `Handle(s utterance, s locale, a{sv} context) → (b handled, s reply, s intent)`:
//! `locale` "" reads the language from the utterance, else `zh-*`/`en-*`; context keys
//! `persona` (s: the companion persona to talk to), `confidence` (d: the recogniser's; below
//! `min_confidence` nothing is done), `hour` (u: local hour). Unknown or unsupported
//! requests are `handled = false` with the reason in `reply`; malformed arguments are
//! `org.cabin.Error.InvalidArgument`.

use cabin_common::clock::SharedClock;
use cabin_common::vehicle::VehicleSource;
use std::collections::HashMap;
use std::sync::Arc;

use cabin_common::CabinError;
use cabin_common::options::{string, unsigned};
use chrono::Timelike;
use zbus::{OwnedVariant, interface};

use super::Config;
use crate::bus::BusServices;
use crate::intent::parse;
use crate::router::{Context, route_with_pending};

/// The longest utterance accepted, in characters.
pub const MAX_UTTERANCE_CHARS: usize = 1000;

pub struct Voice {
    services: Arc<BusServices>,
    config: Config,
    /// The vehicle context followed, kept alive with the object.
    _vehicle: Arc<dyn VehicleSource>,
    /// Its clock (simulated in the simulator), for the hour that picks defaults.
    clock: SharedClock,
    /// The last question asked back to each caller (its unique bus name), waiting for its
    /// "yes": one client's answer never confirms another's question.
    pending: tokio::sync::Mutex<HashMap<String, crate::router::Pending>>,
}

impl Voice {
    pub fn new(
        services: Arc<BusServices>,
        config: Config,
        vehicle: Arc<dyn VehicleSource>,
    ) -> Self {
        Self {
            services,
            config,
            clock: vehicle.clock(),
            _vehicle: vehicle,
            pending: Default::default(),
        }
    }
}

/// The local hour of a clock reading.
pub fn local_hour(clock: &SharedClock) -> u32 {
    clock.now().with_timezone(&chrono::Local).hour()
}

pub fn locale_lang(locale: &str) -> Result<Option<&'static str>, CabinError> {
    if locale.is_empty() {
        return Ok(None);
    }
    let primary = locale
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match primary.as_str() {
        "zh" => Ok(Some("zh")),
        "en" => Ok(Some("en")),
        _ => Err(CabinError::invalid_argument(format!(
            "locale {locale:?} is not supported; use \"\", zh-* or en-*"
        ))),
    }
}

fn number(key: &str, value: &zbus::Variant<'_>) -> Result<f64, CabinError> {
    match value {
        zbus::Variant::F64(v) if v.is_finite() => Ok(*v),
        other => Err(CabinError::invalid_argument(format!(
            "{key} must be a finite double (d), got type {}",
            other.value_signature()
        ))),
    }
}

#[interface(name = "org.cabin.Voice1")]
impl Voice {
    /// Understands an utterance and has the owning service act on it.
    #[zbus(out_args("handled", "reply", "intent"))]
    async fn handle(
        &self,
        utterance: String,
        locale: String,
        context: HashMap<String, OwnedVariant>,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<(bool, String, String), CabinError> {
        let caller = header.sender().map(|s| s.to_string()).unwrap_or_default();
        let count = utterance.chars().count();
        if count > MAX_UTTERANCE_CHARS {
            return Err(CabinError::invalid_argument(format!(
                "the utterance has {count} characters; at most {MAX_UTTERANCE_CHARS} are accepted"
            )));
        }
        let lang = locale_lang(&locale)?;
        let mut ctx = Context {
            persona: None,
            hour: local_hour(&self.clock),
        };
        let mut confidence = 1.0;
        for (key, value) in &context {
            match key.as_str() {
                "persona" => ctx.persona = Some(string(key, value)?).filter(|p| !p.is_empty()),
                "confidence" => confidence = number(key, value)?,
                "hour" => {
                    let hour = unsigned(key, value)?;
                    if hour > 23 {
                        return Err(CabinError::invalid_argument(format!(
                            "hour {hour} is outside 0..=23"
                        )));
                    }
                    ctx.hour = hour as u32;
                }
                other => {
                    return Err(CabinError::invalid_argument(format!(
                        "unknown context key {other:?}; known: persona, confidence, hour"
                    )));
                }
            }
        }
        let parsed = parse(&utterance, lang);
        if confidence < self.config.min_confidence {
            let reply = if parsed.lang == "zh" {
                "抱歉，我没听清，请再说一遍。"
            } else {
                "Sorry, I didn't catch that. Could you say it again?"
            };
            return Ok((false, reply.to_string(), "unknown".into()));
        }
        // The lock is never held across a call to another service: one slow service must not
        // hold up every other utterance.
        let mut pending = self.pending.lock().await.remove(&caller);
        let handled = route_with_pending(self.services.as_ref(), &parsed, &ctx, &mut pending).await;
        if let Some(p) = pending {
            let mut all = self.pending.lock().await;
            all.retain(|_, p| p.asked_at.elapsed() < crate::router::PENDING_FOR);
            all.insert(caller, p);
        }
        tracing::info!(intent = %handled.intent, handled = handled.handled, "utterance handled");
        Ok((handled.handled, handled.reply, handled.intent))
    }
}
