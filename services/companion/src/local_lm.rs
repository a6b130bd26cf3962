//! The on-device language model as a backend (`cabin-lm` on tract): no network, so it
//! answers in tunnels, with the persona and memory in its prompt.
//!
//! The model loads on the first reply, not at start, and its KV cache stays warm between
//! turns: a chat pays for its new tokens only. Loading runs on its own thread and a reply waits
//! for it (and for a reply still running) only until its deadline, so a slow load never holds a
//! turn past it: the chain answers from the next backend and the model is ready next time. A language the model does not speak, a model
//! that cannot load, or a reply that comes out empty is `Unavailable`, so the chain moves on.
//! Small models cannot call tools reliably; this backend takes no actions.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cabin_lm::{
    Conversation, Limits, LmConfig, LmError, LmModel, LoadOptions, Message, Role, Sampling,
};
use serde::Deserialize;

use crate::backend::{Backend, BackendError, Draft, Request};
use crate::prompt::{self, ChatRole, Layout};
use cabin_text::is_han as is_cjk;

/// `[local]` in companion.toml.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LocalLmConfig {
    /// A folder made by `onnx/lm/build_lm.py` (config.json, tokenizer.json, model.onnx,
    /// manifest.json).
    pub model_dir: PathBuf,
    pub threads: usize,
    /// Context the engine allows (prompt + reply), capped by the model's.
    pub max_context: usize,
    pub max_new_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub repetition_penalty: f32,
    /// Unload the model after this long without a reply (0: keep it), to give its memory
    /// back to the head unit between conversations.
    pub idle_unload_secs: u64,
}

impl Default for LocalLmConfig {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("/usr/share/cabin/models/smollm2-135m-instruct"),
            threads: 1,
            max_context: 2048,
            max_new_tokens: 96,
            // Small models wander when sampled hot.
            temperature: 0.5,
            top_p: 0.9,
            repetition_penalty: 1.15,
            idle_unload_secs: 600,
        }
    }
}

impl LocalLmConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.model_dir.as_os_str().is_empty() {
            return Err("[local] model_dir is empty".into());
        }
        if self.threads == 0 || self.max_new_tokens == 0 || self.max_context < 64 {
            return Err("[local] threads and max_new_tokens must be > 0, max_context >= 64".into());
        }
        self.sampling(0).check().map_err(|e| format!("[local] {e}"))
    }

    fn sampling(&self, seed: u64) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed,
            ..Sampling::default()
        }
    }
}

pub struct LocalLmBackend {
    config: LocalLmConfig,
    /// The loaded model with its warm cache and when it last answered; `None` until the
    /// first reply, after `unload`, and after an idle spell.
    loaded: Arc<Mutex<Option<Loaded>>>,
    /// A load is running on its own thread.
    loading: Arc<AtomicBool>,
    /// Why the last background load failed, for the next reply to say.
    load_error: Arc<Mutex<Option<BackendError>>>,
}

struct Loaded {
    conversation: Conversation,
    last_used: Instant,
}

impl LocalLmBackend {
    pub fn new(config: LocalLmConfig) -> Result<Self, String> {
        config.validate()?;
        let loaded: Arc<Mutex<Option<Loaded>>> = Arc::new(Mutex::new(None));
        if config.idle_unload_secs > 0 {
            let idle = std::time::Duration::from_secs(config.idle_unload_secs);
            let watched = Arc::downgrade(&loaded);
            // Ends with the backend: it holds only a weak reference.
            std::thread::Builder::new()
                .name("lm-idle-unload".into())
                .spawn(move || {
                    let tick = (idle / 4).clamp(
                        std::time::Duration::from_millis(50),
                        std::time::Duration::from_secs(30),
                    );
                    loop {
                        std::thread::sleep(tick);
                        let Some(loaded) = watched.upgrade() else {
                            return;
                        };
                        // A reply in progress holds the lock: never unloaded mid-reply.
                        if let Ok(mut slot) = loaded.try_lock()
                            && slot.as_ref().is_some_and(|l| l.last_used.elapsed() >= idle)
                        {
                            *slot = None;
                            tracing::info!("on-device model unloaded after {idle:?} idle");
                        }
                    }
                })
                .map_err(|e| format!("cannot start the idle-unload thread: {e}"))?;
        }
        Ok(Self {
            config,
            loaded,
            loading: Arc::new(AtomicBool::new(false)),
            load_error: Arc::new(Mutex::new(None)),
        })
    }

    /// The model slot, waiting for a reply still running only until `deadline`.
    fn slot_until(
        &self,
        deadline: Instant,
    ) -> Result<MutexGuard<'_, Option<Loaded>>, BackendError> {
        loop {
            match self.loaded.try_lock() {
                Ok(slot) => return Ok(slot),
                Err(std::sync::TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Unavailable(
                    "the on-device model is still busy with an earlier reply".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts loading the model on its own thread unless a load is already running.
    fn start_loading(&self) {
        if self.loading.swap(true, Ordering::SeqCst) {
            return;
        }
        let (config, loaded, loading, load_error) = (
            self.config.clone(),
            self.loaded.clone(),
            self.loading.clone(),
            self.load_error.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("lm-load".into())
            .spawn(move || {
                let result = load(&config);
                match result {
                    Ok(model) => {
                        *loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(model);
                    }
                    Err(e) => *load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
                }
                loading.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.loading.store(false, Ordering::SeqCst);
            *self.load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(
                BackendError::Unavailable(format!("cannot start loading the model: {e}")),
            );
        }
    }

    /// Frees the model's memory; the next reply loads it again.
    pub fn unload(&self) {
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The model's languages from its `config.json` alone (loading verifies the rest).
    fn languages(&self) -> Result<Vec<String>, BackendError> {
        let path = self.config.model_dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            BackendError::Unavailable(format!("on-device model: {}: {e}", path.display()))
        })?;
        LmConfig::parse(&text)
            .map(|c| c.languages)
            .map_err(|e| BackendError::Unavailable(format!("on-device model: {e}")))
    }
}

fn load(config: &LocalLmConfig) -> Result<Loaded, BackendError> {
    let model = LmModel::load(
        &config.model_dir,
        &LoadOptions {
            require_manifest: true,
            threads: config.threads,
            max_context: config.max_context,
        },
    )
    .map_err(|e| BackendError::Unavailable(format!("on-device model: {e}")))?;
    Ok(Loaded {
        conversation: Conversation::new(Arc::new(model)),
        last_used: Instant::now(),
    })
}

impl Backend for LocalLmBackend {
    fn name(&self) -> &str {
        "local"
    }

    fn respond(
        &self,
        req: &Request<'_>,
        deadline: Instant,
        on_token: &mut dyn FnMut(&str),
        cancel: &AtomicBool,
    ) -> Result<Draft, BackendError> {
        let mut slot = self.slot_until(deadline)?;
        let languages = match slot.as_ref() {
            Some(loaded) => loaded.conversation.model().config().languages.clone(),
            // Asked before loading, so a language the model cannot answer costs no load.
            None => self.languages()?,
        };
        if !languages.iter().any(|l| l == req.lang) {
            return Err(BackendError::Unavailable(format!(
                "the on-device model speaks {}, not {}",
                languages.join(", "),
                req.lang
            )));
        }
        if slot.is_none() {
            drop(slot);
            self.start_loading();
            loop {
                if let Some(e) = self
                    .load_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    return Err(e);
                }
                slot = self.slot_until(deadline)?;
                if slot.is_some() {
                    break;
                }
                drop(slot);
                if Instant::now() >= deadline {
                    return Err(BackendError::Unavailable(
                        "the on-device model is still loading".into(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let loaded = slot.as_mut().expect("loaded above");
        loaded.last_used = Instant::now();
        let conversation = &mut loaded.conversation;
        let model = conversation.model().clone();
        // About three characters a token in English, a bit over one in Chinese; the shaper
        // cuts the reply to `max_chars` at a sentence end anyway.
        let budget = (req.max_chars / 2 + 16).min(self.config.max_new_tokens);
        let speaks_cjk = ["zh", "ja", "ko"].iter().any(|l| model.config().speaks(l));
        let mut messages: Vec<Message> = prompt::layout(req, Layout::CacheFriendly)
            .into_iter()
            .map(|m| {
                let role = match m.role {
                    ChatRole::System => Role::System,
                    ChatRole::User => Role::User,
                    ChatRole::Assistant => Role::Assistant,
                };
                // Bilingual cards carry Chinese beside the English; a small model that
                // does not speak it copies it back as gibberish.
                let content = if speaks_cjk || role == Role::User {
                    m.content
                } else {
                    without_cjk(&m.content)
                };
                Message::new(role, content)
            })
            .collect();
        let prompt = fit_context(&model, &mut messages, budget)?;
        let limits = Limits {
            max_new_tokens: budget,
            deadline: Some(deadline),
        };
        let mut forward = |t: &str| {
            if !cancel.load(Ordering::SeqCst) {
                on_token(t)
            }
        };
        let done = conversation
            .complete(
                &prompt,
                &self.config.sampling(req.seed),
                &limits,
                &mut forward,
                cancel,
            )
            .map_err(|e| match e {
                LmError::Cancelled { .. } => BackendError::Cancelled,
                LmError::DeadlinePassed { .. } => {
                    BackendError::Timeout(deadline.saturating_duration_since(Instant::now()))
                }
                other => BackendError::Unavailable(format!("on-device model: {other}")),
            });
        // The idle clock starts when the reply ends.
        if let Some(loaded) = slot.as_mut() {
            loaded.last_used = Instant::now();
        }
        let done = done?;
        if done.text.trim().is_empty() {
            return Err(BackendError::Unavailable(
                "the on-device model gave an empty reply".into(),
            ));
        }
        tracing::debug!(
            prompt = done.prompt_tokens,
            reused = done.reused_tokens,
            tokens = done.tokens.len(),
            ttft = ?done.time_to_first_token,
            elapsed = ?done.elapsed,
            "local reply"
        );
        Ok(Draft {
            text: done.text,
            lines: Vec::new(),
        })
    }
}

/// The rendered prompt, with the oldest remembered turns dropped until it and a reply of
/// `budget` tokens fit the context. The system message and the new message always stay.
fn fit_context(
    model: &LmModel,
    messages: &mut Vec<Message>,
    budget: usize,
) -> Result<String, BackendError> {
    loop {
        let prompt = cabin_lm::chat::render(messages, model.specials());
        let tokens = model
            .encode(&prompt)
            .map_err(|e| BackendError::Unavailable(format!("on-device model: {e}")))?
            .len();
        if tokens + budget <= model.context() {
            return Ok(prompt);
        }
        // [system, window..., user, (post-history system)]: drop the oldest window message.
        let droppable = messages
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, m)| m.role == Role::Assistant || m.role == Role::User)
            .map(|(i, _)| i)
            .filter(|&i| {
                i + 1 < messages.len() && messages[i + 1..].iter().any(|m| m.role == Role::User)
            });
        match droppable {
            Some(i) => {
                messages.remove(i);
            }
            None => {
                return Err(BackendError::Unavailable(format!(
                    "the message needs {tokens} tokens; the on-device model's context is {}",
                    model.context()
                )));
            }
        }
    }
}

/// `text` without its runs of CJK characters (and the punctuation and spaces around them),
/// line by line; lines left empty go.
fn without_cjk(text: &str) -> String {
    const CJK_PUNCTUATION: &str = "。，、！？：；“”‘’（）《》「」【】…—～·";
    let mut out = Vec::new();
    for line in text.lines() {
        let mut kept = String::new();
        let mut in_run = false;
        for c in line.chars() {
            let cjk = is_cjk(c) || CJK_PUNCTUATION.contains(c);
            if cjk {
                in_run = true;
            } else if in_run && (c.is_whitespace() || c.is_ascii_punctuation()) {
                // the space or full stop that belonged to the removed run
            } else {
                in_run = false;
                kept.push(c);
            }
        }
        let kept = kept.trim_end();
        let empty_turn = kept.ends_with(':') && kept.len() < 12;
        if !kept.trim().is_empty() && !empty_turn {
            out.push(kept.to_string());
        } else if line.trim().is_empty() {
            out.push(String::new());
        }
    }
    out.join("\n").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_is_taken_out_of_bilingual_text() {
        assert_eq!(
            without_cjk("Gentle, patient. 温柔、耐心、细心。 Soft-spoken."),
            "Gentle, patient. Soft-spoken."
        );
        assert_eq!(
            without_cjk(
                "{{user}}: I'm tired.\n{{char}}: Rest a bit.\n{{user}}: 我有点困了。\n{{char}}: 辛苦了。"
            ),
            "{{user}}: I'm tired.\n{{char}}: Rest a bit."
        );
        assert_eq!(without_cjk("Only English here."), "Only English here.");
    }
}
