//! The companion itself: personas, memories and the backend chain behind one bus-free API.
//! A turn: safety first, then mood, care, lorebook and memory into a request; the chain
//! answers; the driving policy shapes what is streamed; memory learns and is saved.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use cabin_common::vehicle::VehicleState;

use crate::backend::{Backend, BackendError, Chain, Lore, Request, Stream};
use crate::care::{Care, CareConfig};
use crate::cloud::{CloudBackend, CloudConfig};
use crate::local_lm::{LocalLmBackend, LocalLmConfig};
use crate::memory::{Memory, MemoryConfig, MemoryStore};
use crate::mood;
use crate::offline::OfflineEngine;
use crate::persona::{Card, CardError, SHIPPED};
use crate::safety::{self, SafetyConfig};
use crate::speech::{Shaper, SpeechConfig, clean_for_speech, fit};
use crate::tools::{self, Action, Effects, ToolBox};

/// The longest message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Imported personas kept at most.
pub const MAX_IMPORTED: usize = 64;

/// `/etc/cabin/companion.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Backends in the order they are tried: `cloud`, `local` (the on-device LM),
    /// `offline`. The offline engine is always there: it is added last when missing.
    pub backends: Vec<String>,
    /// Each backend's deadline for a whole reply.
    pub cloud_timeout_ms: u64,
    /// The first local reply also loads the model (~2-3 s for a 135M model).
    pub local_timeout_ms: u64,
    pub offline_timeout_ms: u64,
    /// Tools the companion may use (`set_wallpaper`, `drive_status`); cards cannot add any.
    pub tools: Vec<String>,
    pub default_persona: String,
    pub max_sessions: usize,
    pub memory: MemoryConfig,
    pub care: CareConfig,
    pub speech: SpeechConfig,
    pub safety: SafetyConfig,
    pub cloud: Option<CloudConfig>,
    pub local: Option<LocalLmConfig>,
    /// A fixed vehicle context for bench setups; none: follow `org.cabin.Vehicle1`.
    pub vehicle: Option<VehicleState>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            backends: vec!["offline".into()],
            cloud_timeout_ms: 8000,
            local_timeout_ms: 15000,
            offline_timeout_ms: 3000,
            tools: tools::KNOWN.iter().map(|s| s.to_string()).collect(),
            default_persona: "warm-companion".into(),
            max_sessions: 8,
            memory: MemoryConfig::default(),
            care: CareConfig::default(),
            speech: SpeechConfig::default(),
            safety: SafetyConfig::default(),
            cloud: None,
            local: None,
            vehicle: None,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        for b in &self.backends {
            match b.as_str() {
                "offline" => {}
                "cloud" => match &self.cloud {
                    Some(cloud) => cloud.validate()?,
                    None => {
                        return Err(
                            "backend \"cloud\" is listed but there is no [cloud] table".into()
                        );
                    }
                },
                "local" => self.local.clone().unwrap_or_default().validate()?,
                other => {
                    return Err(format!(
                        "unknown backend {other:?}; known: cloud, local, offline"
                    ));
                }
            }
        }
        for t in &self.tools {
            if !tools::KNOWN.contains(&t.as_str()) {
                return Err(format!(
                    "unknown tool {t:?}; known: {}",
                    tools::KNOWN.join(", ")
                ));
            }
        }
        if self.cloud_timeout_ms == 0
            || self.local_timeout_ms == 0
            || self.offline_timeout_ms == 0
            || self.max_sessions == 0
        {
            return Err("timeouts and max_sessions must be > 0".into());
        }
        if self.speech.moving_max_chars < 20 || self.speech.high_speed_max_chars < 10 {
            return Err("speech limits below 20 (moving) or 10 (high speed) characters leave nothing to say".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompanionError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Busy(String),
    #[error("every backend failed: {0}")]
    NoAnswer(String, &'static str),
    #[error("{0}")]
    Internal(String),
}

impl From<CardError> for CompanionError {
    fn from(e: CardError) -> Self {
        CompanionError::InvalidArgument(e.to_string())
    }
}

pub struct Persona {
    pub card: Card,
    pub shipped: bool,
}

/// One message of a session, and how to answer it.
pub struct Turn<'a> {
    pub persona: &'a str,
    pub text: &'a str,
    /// `zh` or `en`; none: read from the text.
    pub lang: Option<&'a str>,
    pub seed: u64,
    pub vehicle: VehicleState,
    pub now: DateTime<Utc>,
    pub effects: &'a dyn Effects,
    pub cancel: &'a AtomicBool,
}

#[derive(Debug, Clone)]
pub struct TurnResult {
    pub text: String,
    pub emotion: String,
    pub actions: Vec<Action>,
    pub backend: String,
}

pub struct Companion {
    config: Config,
    personas: RwLock<BTreeMap<String, Persona>>,
    persona_dir: PathBuf,
    memories: MemoryStore,
    loaded: Mutex<HashMap<String, Arc<Mutex<Memory>>>>,
    chain: Chain,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Companion {
    /// Shipped personas, imported ones from `STATE/personas`, memories in `STATE/memory`.
    pub fn open(config: Config, state_dir: &Path) -> Result<Self, String> {
        config.validate()?;
        let mut backends: Vec<(Arc<dyn Backend>, Duration)> = Vec::new();
        let mut names = config.backends.clone();
        if !names.iter().any(|b| b == "offline") {
            names.push("offline".into());
        }
        for name in &names {
            match name.as_str() {
                "cloud" => {
                    let cloud = CloudBackend::new(config.cloud.clone().unwrap_or_default())?;
                    backends.push((
                        Arc::new(cloud),
                        Duration::from_millis(config.cloud_timeout_ms),
                    ));
                }
                "local" => backends.push((
                    Arc::new(LocalLmBackend::new(
                        config.local.clone().unwrap_or_default(),
                    )?),
                    Duration::from_millis(config.local_timeout_ms),
                )),
                _ => backends.push((
                    Arc::new(OfflineEngine::shipped()?),
                    Duration::from_millis(config.offline_timeout_ms),
                )),
            }
        }
        Self::with_backends(config, state_dir, backends)
    }

    /// As [`open`](Self::open) with a chain of the caller's choosing (tests, benches).
    pub fn with_backends(
        config: Config,
        state_dir: &Path,
        backends: Vec<(Arc<dyn Backend>, Duration)>,
    ) -> Result<Self, String> {
        let persona_dir = state_dir.join("personas");
        std::fs::create_dir_all(&persona_dir)
            .map_err(|e| format!("cannot create {}: {e}", persona_dir.display()))?;
        let memories = MemoryStore::open(&state_dir.join("memory"))
            .map_err(|e| format!("cannot open the memory folder: {e}"))?;
        let mut personas = BTreeMap::new();
        for json in SHIPPED {
            let card =
                Card::parse(json).map_err(|e| format!("a shipped persona is broken: {e}"))?;
            personas.insert(
                card.id(),
                Persona {
                    card,
                    shipped: true,
                },
            );
        }
        if let Ok(entries) = std::fs::read_dir(&persona_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                match std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|s| Card::parse(&s).map_err(|e| e.to_string()))
                {
                    Ok(card) if !personas.contains_key(&card.id()) => {
                        personas.insert(
                            card.id(),
                            Persona {
                                card,
                                shipped: false,
                            },
                        );
                    }
                    Ok(_) => {
                        tracing::warn!(path = %path.display(), "an imported persona shadows a shipped one; ignored")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), %e, "an imported persona cannot be read; ignored")
                    }
                }
            }
        }
        if !personas.contains_key(&config.default_persona) {
            return Err(format!(
                "default_persona {:?} does not exist",
                config.default_persona
            ));
        }
        Ok(Self {
            config,
            personas: RwLock::new(personas),
            persona_dir,
            memories,
            loaded: Mutex::new(HashMap::new()),
            chain: Chain::new(backends),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn backend_names(&self) -> Vec<String> {
        self.chain.names()
    }

    pub fn personas(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Persona>> {
        self.personas.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn has_persona(&self, id: &str) -> bool {
        self.personas().contains_key(id)
    }

    pub fn import_persona(&self, json: &str) -> Result<String, CompanionError> {
        let card = Card::parse(json)?;
        let id = card.id();
        let mut personas = self.personas.write().unwrap_or_else(|p| p.into_inner());
        match personas.get(&id) {
            Some(p) if p.shipped => {
                return Err(CompanionError::PermissionDenied(format!(
                    "{id:?} is a shipped persona and cannot be replaced; give the card another extensions.cabin.id"
                )));
            }
            None if personas.values().filter(|p| !p.shipped).count() >= MAX_IMPORTED => {
                return Err(CompanionError::Busy(format!(
                    "{MAX_IMPORTED} personas are imported already; remove one first"
                )));
            }
            _ => {}
        }
        let path = self.persona_dir.join(format!("{id}.json"));
        cabin_common::fsutil::write_atomic(&path, json.as_bytes())
            .map_err(|e| CompanionError::Internal(format!("cannot store the persona: {e}")))?;
        personas.insert(
            id.clone(),
            Persona {
                card,
                shipped: false,
            },
        );
        Ok(id)
    }

    pub fn export_persona(&self, id: &str) -> Result<String, CompanionError> {
        self.personas()
            .get(id)
            .map(|p| p.card.to_json())
            .ok_or_else(|| not_found(id))
    }

    fn memory(&self, persona: &str) -> Arc<Mutex<Memory>> {
        lock(&self.loaded)
            .entry(persona.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(self.memories.load(persona))))
            .clone()
    }

    /// A snapshot of what is remembered for a persona.
    pub fn remembered(&self, persona: &str) -> Memory {
        lock(&self.memory(persona)).clone()
    }

    /// Erases everything remembered about the user for `persona`, on disk too.
    pub fn forget(&self, persona: &str) -> Result<(), CompanionError> {
        if !self.has_persona(persona) {
            return Err(not_found(persona));
        }
        let memory = self.memory(persona);
        let mut memory = lock(&memory);
        self.memories
            .forget(persona)
            .map_err(|e| CompanionError::Internal(format!("cannot erase the memory: {e}")))?;
        *memory = Memory::default();
        Ok(())
    }

    /// Ends the conversation's short-term window; facts and summary stay.
    pub fn reset(&self, persona: &str) {
        let memory = self.memory(persona);
        let mut memory = lock(&memory);
        let old: Vec<String> = memory
            .window
            .drain(..)
            .filter(|m| m.from_user)
            .map(|m| m.text)
            .collect();
        for text in old {
            if text.chars().filter(|c| c.is_alphanumeric()).count() >= 6 {
                memory.summary.push_back(text.chars().take(80).collect());
            }
        }
        while memory
            .summary
            .iter()
            .map(|s| s.chars().count())
            .sum::<usize>()
            > self.config.memory.summary_chars
        {
            memory.summary.pop_front();
        }
        if let Err(e) = self.memories.save(persona, &memory) {
            tracing::warn!(%e, persona, "cannot save the memory");
        }
    }

    /// Answers one message. Blocking (backends may do network I/O): run it off the async
    /// runtime. `on_token` hears the reply as it is shaped, sentence by sentence; an empty
    /// token withdraws what was streamed before it (a backend failed midway and the next
    /// one starts over).
    pub fn say(
        &self,
        turn: Turn<'_>,
        on_token: &mut dyn FnMut(&str),
    ) -> Result<TurnResult, CompanionError> {
        let text = turn.text.trim();
        if text.is_empty() {
            return Err(CompanionError::InvalidArgument(
                "the message is empty".into(),
            ));
        }
        let count = text.chars().count();
        if count > MAX_MESSAGE_CHARS {
            return Err(CompanionError::InvalidArgument(format!(
                "the message has {count} characters; at most {MAX_MESSAGE_CHARS} are accepted"
            )));
        }
        let card = self
            .personas()
            .get(turn.persona)
            .map(|p| p.card.clone())
            .ok_or_else(|| not_found(turn.persona))?;
        let lang = turn.lang.unwrap_or_else(|| language_of(text));
        let memory_handle = self.memory(turn.persona);
        // One turn at a time per persona: the memory is the conversation.
        let mut memory = lock(&memory_handle);
        let care = Care::read(&self.config.care, &turn.vehicle, turn.now);
        let max_chars = if care.high_speed {
            self.config.speech.high_speed_max_chars
        } else if care.moving {
            self.config.speech.moving_max_chars
        } else {
            self.config.speech.parked_max_chars
        };
        let user = memory.facts.name.clone().unwrap_or_else(|| {
            if lang == "zh" {
                "朋友".into()
            } else {
                "friend".into()
            }
        });
        let toolbox = ToolBox::new(&self.config.tools, turn.effects, &turn.vehicle);

        let (reply, backend, emotion, lines) = if safety::is_crisis(text) {
            let reply = safety::crisis_reply(&self.config.safety, lang, &user, care.moving);
            on_token(&reply);
            (
                reply,
                "safety".to_string(),
                "concerned".to_string(),
                Vec::new(),
            )
        } else {
            let mood = mood::detect(text);
            let scan = format!("{}\n{text}", memory.recent_user_text(3));
            let lore = card
                .lore_for(&scan)
                .into_iter()
                .map(|e| Lore {
                    content: crate::persona::substitute(
                        &e.content,
                        &card.display_name(lang),
                        &user,
                    ),
                    constant: e.constant == Some(true),
                })
                .collect();
            // The offline engine's seed moves with the turn, so a session does not loop.
            let seed = turn.seed ^ memory.turns.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let request = Request {
                card: &card,
                lang,
                text,
                user: user.clone(),
                memory: &memory,
                mood,
                care,
                vehicle: &turn.vehicle,
                lore,
                max_chars,
                seed,
                tools: &toolbox,
            };
            let mut shaper = Shaper::new(max_chars);
            let mut on_event = |event: Stream<'_>| match event {
                Stream::Token(t) => {
                    if let Some(piece) = shaper.push(t) {
                        on_token(&piece);
                    }
                }
                Stream::Restart => {
                    // What the failed backend streamed is withdrawn: an empty token says so.
                    if !shaper.text().is_empty() {
                        on_token("");
                    }
                    shaper = Shaper::new(max_chars)
                }
            };
            let answer = self
                .chain
                .respond(&request, &mut on_event, turn.cancel)
                .map_err(|failures| {
                    let name = failures
                        .last()
                        .map_or(cabin_common::error::names::UNAVAILABLE, |(_, e)| {
                            e.bus_name()
                        });
                    let cancelled = failures.iter().any(|(_, e)| *e == BackendError::Cancelled);
                    let detail = failures
                        .iter()
                        .map(|(b, e)| format!("{b}: {e}"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    CompanionError::NoAnswer(
                        detail,
                        if cancelled {
                            cabin_common::error::names::CANCELLED
                        } else {
                            name
                        },
                    )
                })?;
            if let Some(piece) = shaper.finish() {
                on_token(&piece);
            }
            let mut reply = shaper.text().to_string();
            if reply.is_empty() {
                reply = fit(&clean_for_speech(&answer.draft.text), max_chars);
                if reply.is_empty() {
                    reply = if lang == "zh" {
                        "嗯，我在听。".into()
                    } else {
                        "I'm listening.".into()
                    };
                }
                on_token(&reply);
            }
            (
                reply,
                answer.backend,
                mood.mood.answering_emotion().to_string(),
                answer.draft.lines,
            )
        };

        memory.record(&self.config.memory, text, &reply);
        for line in &lines {
            memory.remember_line(line);
        }
        if let Err(e) = self.memories.save(turn.persona, &memory) {
            tracing::warn!(%e, persona = turn.persona, "cannot save the memory");
        }
        Ok(TurnResult {
            text: reply,
            emotion,
            actions: toolbox.actions(),
            backend,
        })
    }
}

fn not_found(id: &str) -> CompanionError {
    CompanionError::NotFound(format!("no persona {id:?}"))
}

pub use cabin_text::{language_of, language_of_locale};
