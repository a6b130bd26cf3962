//! `org.cabin.Companion1` at `/org/cabin/Companion1`: the personas, the memory they keep,
//! and the door to a conversation.
//!
//! Methods: `ListPersonas() → a(ssa{sv})` (id, name, details: `style`, `shipped`, `tags`,
//! `name_zh`, `name_en`, `description`), `ImportPersona(s card_json) → s id`,
//! `ExportPersona(s id) → s card_json`, `StartSession(s persona_id, a{sv} options) → o`
//! (options `locale` s, `seed` t; "" is the default persona), `Forget(s persona_id)`.
//! Properties: `Backends` (as, in the order tried), `DefaultPersona` (s), `Sessions` (u).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cabin_common::CabinError;
use cabin_common::options::unsigned;
use zbus::object_server::SignalEmitter;
use zbus::{OwnedVariant, Variant, interface};

use super::session::{Session, session_path};
use super::{Core, locale_option, to_bus};

pub struct CompanionService {
    core: Arc<Core>,
    next_session: AtomicU64,
}

impl CompanionService {
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            next_session: AtomicU64::new(1),
        }
    }
}

fn own(v: Variant<'_>) -> OwnedVariant {
    v.try_into_owned()
        .unwrap_or_else(|_| OwnedVariant::from(0u8))
}

#[interface(name = "org.cabin.Companion1")]
impl CompanionService {
    /// Every persona: (id, display name, details).
    #[zbus(out_args("personas"))]
    async fn list_personas(&self) -> Vec<(String, String, HashMap<String, OwnedVariant>)> {
        self.core
            .companion
            .personas()
            .iter()
            .map(|(id, p)| {
                let cabin = p.card.cabin();
                let mut details = HashMap::new();
                details.insert("style".to_string(), own(Variant::from(p.card.style())));
                details.insert("shipped".to_string(), own(Variant::from(p.shipped)));
                details.insert(
                    "tags".to_string(),
                    own(Variant::from(p.card.data.tags.clone())),
                );
                details.insert(
                    "description".to_string(),
                    own(Variant::from(
                        p.card
                            .data
                            .description
                            .chars()
                            .take(200)
                            .collect::<String>(),
                    )),
                );
                for (lang, name) in &cabin.name {
                    details.insert(format!("name_{lang}"), own(Variant::from(name.clone())));
                }
                (id.clone(), p.card.data.name.clone(), details)
            })
            .collect()
    }

    /// Adds (or replaces an imported) persona from a Character Card V2; its id.
    #[zbus(out_args("id"))]
    async fn import_persona(&self, card_json: String) -> Result<String, CabinError> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.companion.import_persona(&card_json))
            .await
            .map_err(|e| CabinError::internal("import", e))?
            .map_err(to_bus)
    }

    /// The card as imported (unknown fields included).
    #[zbus(out_args("card_json"))]
    async fn export_persona(&self, id: String) -> Result<String, CabinError> {
        self.core.companion.export_persona(&id).map_err(to_bus)
    }

    /// Opens a conversation with a persona; its object path.
    #[zbus(out_args("session"))]
    async fn start_session(
        &self,
        persona_id: String,
        options: HashMap<String, OwnedVariant>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<zbus::OwnedObjectPath, CabinError> {
        let persona = if persona_id.is_empty() {
            self.core.companion.config().default_persona.clone()
        } else {
            persona_id
        };
        if !self.core.companion.has_persona(&persona) {
            return Err(CabinError::not_found(format!(
                "no persona {persona:?}; ListPersonas() names them"
            )));
        }
        let mut lang = None;
        let mut seed = None;
        for (key, value) in &options {
            match key.as_str() {
                "locale" => lang = Some(locale_option(key, value)?),
                "seed" => seed = Some(unsigned(key, value)?),
                other => {
                    return Err(CabinError::invalid_argument(format!(
                        "unknown option {other:?}; known: locale, seed"
                    )));
                }
            }
        }
        let id = self.next_session.fetch_add(1, Ordering::SeqCst);
        {
            let mut sessions = self.core.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let max = self.core.companion.config().max_sessions;
            if sessions.len() >= max {
                return Err(CabinError::busy(format!(
                    "{max} sessions are open; End() one first"
                )));
            }
            sessions.insert(id);
        }
        let seed = seed.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            nanos ^ id.rotate_left(32)
        });
        let path = session_path(id);
        let session = Session::new(self.core.clone(), id, persona, lang, seed);
        if let Err(e) = conn.object_server().at(path.as_str(), session).await {
            self.core
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Err(CabinError::internal("serving the session", e));
        }
        let _ = self.sessions_changed(&emitter).await;
        zbus::OwnedObjectPath::try_from(path).map_err(|e| CabinError::internal("session path", e))
    }

    /// Erases everything remembered about the user for a persona.
    async fn forget(&self, persona_id: String) -> Result<(), CabinError> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.companion.forget(&persona_id))
            .await
            .map_err(|e| CabinError::internal("forget", e))?
            .map_err(to_bus)
    }

    #[zbus(property)]
    fn backends(&self) -> Vec<String> {
        self.core.companion.backend_names()
    }

    #[zbus(property)]
    fn default_persona(&self) -> String {
        self.core.companion.config().default_persona.clone()
    }

    #[zbus(property)]
    fn sessions(&self) -> u32 {
        self.core
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len() as u32
    }
}
