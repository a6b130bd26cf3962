//! `org.cabin.Companion1.Session` at `/org/cabin/Companion1/sessions/<n>`: one conversation.
//!
//! `Say(s text, a{sv} options) → u turn` returns at once (option `locale` s); the reply
//! streams as `Token(u turn, s text)` signals, sentence by sentence, then
//! `Reply(u turn, s text, s emotion, a(sa{sv}) actions)` — or `Failed(u turn, s error_name,
//! s message)`. Turns of a session are answered in order. `Reset()` starts the conversation
//! afresh (what was learned stays), `End()` closes the session. Properties: `Persona`,
//! `Backend` (which backend answered last: `offline`, `cloud`, or `safety`), `Turns`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cabin_common::CabinError;
use zbus::object_server::SignalEmitter;
use zbus::{OwnedVariant, Variant, interface};

use super::{Core, locale_option, sessions_changed, to_bus};
use crate::agent::{CompanionError, MAX_MESSAGE_CHARS, Turn};
use crate::tools::Action;

pub fn session_path(id: u64) -> String {
    format!("{}/sessions/{id}", super::OBJECT_PATH)
}

pub struct Session {
    core: Arc<Core>,
    id: u64,
    persona: String,
    lang: Option<&'static str>,
    seed: u64,
    turns: u32,
    backend: String,
    next_turn: AtomicU32,
    /// Turns wait here for the one before to finish.
    order: Arc<tokio::sync::Mutex<()>>,
    ended: Arc<AtomicBool>,
}

impl Session {
    pub fn new(
        core: Arc<Core>,
        id: u64,
        persona: String,
        lang: Option<&'static str>,
        seed: u64,
    ) -> Self {
        Self {
            core,
            id,
            persona,
            lang,
            seed,
            turns: 0,
            backend: String::new(),
            next_turn: AtomicU32::new(1),
            order: Arc::new(tokio::sync::Mutex::new(())),
            ended: Arc::new(AtomicBool::new(false)),
        }
    }
}

fn actions_to_bus(actions: &[Action]) -> Vec<(String, HashMap<String, OwnedVariant>)> {
    actions
        .iter()
        .map(|a| {
            let mut map: HashMap<String, OwnedVariant> = a
                .details
                .iter()
                .filter_map(|(k, v)| {
                    Variant::from(v.as_str())
                        .try_into_owned()
                        .ok()
                        .map(|v| (k.clone(), v))
                })
                .collect();
            if let Ok(ok) = Variant::from(a.ok).try_into_owned() {
                map.insert("ok".into(), ok);
            }
            (a.name.clone(), map)
        })
        .collect()
}

#[interface(name = "org.cabin.Companion1.Session")]
impl Session {
    /// Queues a message; the turn number its signals will carry.
    #[zbus(out_args("turn"))]
    async fn say(
        &self,
        text: String,
        options: HashMap<String, OwnedVariant>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<u32, CabinError> {
        if self.ended.load(Ordering::SeqCst) {
            return Err(CabinError::not_found("the session has ended"));
        }
        if text.trim().is_empty() {
            return Err(CabinError::invalid_argument("the message is empty"));
        }
        let count = text.chars().count();
        if count > MAX_MESSAGE_CHARS {
            return Err(CabinError::invalid_argument(format!(
                "the message has {count} characters; at most {MAX_MESSAGE_CHARS} are accepted"
            )));
        }
        let mut lang = self.lang;
        for (key, value) in &options {
            match key.as_str() {
                "locale" => lang = Some(locale_option(key, value)?),
                other => {
                    return Err(CabinError::invalid_argument(format!(
                        "unknown option {other:?}; known: locale"
                    )));
                }
            }
        }
        let turn = self.next_turn.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(answer(
            conn.clone(),
            self.core.clone(),
            self.id,
            self.persona.clone(),
            text,
            lang,
            self.seed,
            turn,
            self.order.clone(),
            self.ended.clone(),
        ));
        Ok(turn)
    }

    /// Starts the conversation afresh; facts and the summary are kept.
    async fn reset(&self) -> Result<(), CabinError> {
        let core = self.core.clone();
        let persona = self.persona.clone();
        let _turn = self.order.lock().await;
        tokio::task::spawn_blocking(move || core.companion.reset(&persona))
            .await
            .map_err(|e| CabinError::internal("reset", e))
    }

    /// Closes the session; a reply in progress is dropped.
    async fn end(&self, #[zbus(connection)] conn: &zbus::Connection) -> Result<(), CabinError> {
        self.ended.store(true, Ordering::SeqCst);
        self.core
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        let path = session_path(self.id);
        let conn = conn.clone();
        // Removing the object that is answering this call: after the reply is sent.
        tokio::spawn(async move {
            let _ = conn
                .object_server()
                .remove::<Session, _>(path.as_str())
                .await;
            sessions_changed(&conn).await;
        });
        Ok(())
    }

    #[zbus(signal)]
    async fn token(emitter: &SignalEmitter<'_>, turn: u32, text: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn reply(
        emitter: &SignalEmitter<'_>,
        turn: u32,
        text: &str,
        emotion: &str,
        actions: Vec<(String, HashMap<String, OwnedVariant>)>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn failed(
        emitter: &SignalEmitter<'_>,
        turn: u32,
        error_name: &str,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn persona(&self) -> &str {
        &self.persona
    }

    #[zbus(property)]
    fn backend(&self) -> &str {
        &self.backend
    }

    #[zbus(property)]
    fn turns(&self) -> u32 {
        self.turns
    }
}

/// Produces one reply off the runtime and turns it into signals.
#[allow(clippy::too_many_arguments)]
async fn answer(
    conn: zbus::Connection,
    core: Arc<Core>,
    id: u64,
    persona: String,
    text: String,
    lang: Option<&'static str>,
    seed: u64,
    turn: u32,
    order: Arc<tokio::sync::Mutex<()>>,
    ended: Arc<AtomicBool>,
) {
    let _in_order = order.lock().await;
    let path = session_path(id);
    let Ok(emitter) = SignalEmitter::new(&conn, path.clone()) else {
        return;
    };
    if ended.load(Ordering::SeqCst) {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let worker_core = core.clone();
    let work = tokio::task::spawn_blocking(move || {
        let vehicle = worker_core.vehicle();
        let turn_input = Turn {
            persona: &persona,
            text: &text,
            lang,
            seed,
            vehicle: vehicle.snapshot(),
            now: vehicle.clock().now(),
            effects: &worker_core.effects,
            cancel: &ended,
        };
        worker_core.companion.say(turn_input, &mut |t: &str| {
            let _ = tx.send(t.to_string());
        })
    });
    while let Some(piece) = rx.recv().await {
        let _ = Session::token(&emitter, turn, &piece).await;
    }
    let outcome = work.await;
    let iface = conn
        .object_server()
        .interface::<_, Session>(path.as_str())
        .await
        .ok();
    match outcome {
        Ok(Ok(result)) => {
            if let Some(iface) = &iface {
                let mut session = iface.get_mut().await;
                session.turns += 1;
                let backend_changed = session.backend != result.backend;
                session.backend = result.backend.clone();
                let _ = session.turns_changed(iface.signal_emitter()).await;
                if backend_changed {
                    let _ = session.backend_changed(iface.signal_emitter()).await;
                }
            }
            let _ = Session::reply(
                &emitter,
                turn,
                &result.text,
                &result.emotion,
                actions_to_bus(&result.actions),
            )
            .await;
        }
        Ok(Err(e)) => {
            let (name, message) = match e {
                CompanionError::NoAnswer(m, name) => (name.to_string(), m),
                other => {
                    let bus = to_bus(other);
                    (
                        zbus::DBusError::name(&bus).to_string(),
                        zbus::DBusError::description(&bus).unwrap_or("").to_string(),
                    )
                }
            };
            let _ = Session::failed(&emitter, turn, &name, &message).await;
        }
        Err(e) => {
            tracing::error!(%e, "a reply task failed");
            let _ = Session::failed(
                &emitter,
                turn,
                cabin_common::error::names::INTERNAL,
                "the reply failed inside the service",
            )
            .await;
        }
    }
}
