//! [`Services`] over D-Bus: the calls the voice hook makes on the other services.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Mutex;
use zbus::{OwnedObjectPath, OwnedVariant, Variant};

use crate::router::{Failure, Services};

#[zbus::proxy(
    interface = "org.cabin.Wallpaper1",
    default_service = "org.cabin.Wallpaper1",
    default_path = "/org/cabin/Wallpaper1"
)]
pub trait Wallpaper1 {
    fn generate(
        &self,
        prompt: &str,
        options: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn history(&self, limit: u32) -> zbus::Result<Vec<HashMap<String, OwnedVariant>>>;
    #[zbus(property)]
    fn current(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn time_aware(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn set_time_aware(&self, on: bool) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.cabin.Companion1",
    default_service = "org.cabin.Companion1",
    default_path = "/org/cabin/Companion1"
)]
pub trait Companion1 {
    fn start_session(
        &self,
        persona_id: &str,
        options: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.cabin.Companion1.Session",
    default_service = "org.cabin.Companion1"
)]
pub trait Session {
    fn say(&self, text: &str, options: HashMap<&str, Variant<'_>>) -> zbus::Result<u32>;
    #[zbus(signal)]
    fn reply(
        &self,
        turn: u32,
        text: String,
        emotion: String,
        actions: Vec<(String, HashMap<String, OwnedVariant>)>,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn failed(&self, turn: u32, error_name: String, message: String) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.cabin.Feedback1",
    default_service = "org.cabin.Feedback1",
    default_path = "/org/cabin/Feedback1"
)]
pub trait Feedback1 {
    fn submit(
        &self,
        channel: &str,
        text: &str,
        meta: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.cabin.Vehicle1",
    default_service = "org.cabin.Vehicle1",
    default_path = "/org/cabin/Vehicle1"
)]
pub trait Vehicle1 {
    #[zbus(property)]
    fn driving_time(&self) -> zbus::Result<u64>;
}

/// How long a companion reply may take before the voice hook gives up on it.
const CHAT_TIMEOUT: Duration = Duration::from_secs(20);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct BusServices {
    conn: zbus::Connection,
    /// The companion persona to talk to ("" = its default).
    persona: String,
    /// One conversation per persona and language, reused so the companion keeps the thread.
    sessions: Mutex<HashMap<(String, String), OwnedObjectPath>>,
}

fn failure(e: zbus::Error) -> Failure {
    match e {
        zbus::Error::MethodError(name, message, _) => Failure {
            name: name.to_string(),
            message: message.unwrap_or_default(),
        },
        zbus::Error::FDO(e) => {
            let name = zbus::DBusError::name(e.as_ref()).to_string();
            Failure {
                name,
                message: e.to_string(),
            }
        }
        other => Failure::unavailable(other.to_string()),
    }
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = zbus::Result<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(failure),
        Err(_) => Err(Failure::unavailable(format!(
            "{what} did not answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

fn locale_of(lang: &str) -> &'static str {
    if lang == "zh" { "zh-CN" } else { "en-US" }
}

impl BusServices {
    pub fn new(conn: zbus::Connection, persona: impl Into<String>) -> Self {
        Self {
            conn,
            persona: persona.into(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    async fn session(
        &self,
        persona: Option<&str>,
        lang: &str,
        fresh: bool,
    ) -> Result<SessionProxy<'static>, Failure> {
        let persona = persona.unwrap_or(&self.persona).to_string();
        let key = (persona.clone(), lang.to_string());
        let mut sessions = self.sessions.lock().await;
        if fresh {
            sessions.remove(&key);
        }
        let path = match sessions.get(&key) {
            Some(path) => path.clone(),
            None => {
                let companion = timed("the companion", Companion1Proxy::new(&self.conn)).await?;
                let options = HashMap::from([("locale", Variant::from(locale_of(lang)))]);
                let path =
                    timed("the companion", companion.start_session(&persona, options)).await?;
                sessions.insert(key, path.clone());
                path
            }
        };
        timed(
            "the companion",
            SessionProxy::builder(&self.conn).path(path).build(),
        )
        .await
    }

    async fn chat_once(
        &self,
        text: &str,
        persona: Option<&str>,
        lang: &str,
        fresh: bool,
    ) -> Result<String, Failure> {
        let session = self.session(persona, lang, fresh).await?;
        let mut replies = timed("the companion", session.receive_reply()).await?;
        let mut failures = timed("the companion", session.receive_failed()).await?;
        let turn = timed("the companion", session.say(text, HashMap::new())).await?;
        let wait = async {
            loop {
                tokio::select! {
                    Some(r) = replies.next() => {
                        if let Ok(args) = r.args() && args.turn == turn {
                            return Ok(args.text.clone());
                        }
                    }
                    Some(f) = failures.next() => {
                        if let Ok(args) = f.args() && args.turn == turn {
                            return Err(Failure { name: args.error_name.clone(), message: args.message.clone() });
                        }
                    }
                    else => return Err(Failure::unavailable("the companion left the bus")),
                }
            }
        };
        tokio::time::timeout(CHAT_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| Err(Failure::unavailable("the companion did not answer in time")))
    }
}

impl Services for BusServices {
    async fn generate_wallpaper(&self, scene: &str) -> Result<String, Failure> {
        let wallpaper = timed("the wallpaper service", Wallpaper1Proxy::new(&self.conn)).await?;
        timed(
            "the wallpaper service",
            wallpaper.generate(scene, HashMap::new()),
        )
        .await
        .map(|p| p.to_string())
    }

    async fn set_time_aware(&self, enabled: bool) -> Result<(), Failure> {
        let wallpaper = timed("the wallpaper service", Wallpaper1Proxy::new(&self.conn)).await?;
        timed("the wallpaper service", wallpaper.set_time_aware(enabled)).await
    }

    async fn current_wallpaper(&self) -> Result<Option<String>, Failure> {
        let wallpaper = timed(
            "the wallpaper service",
            Wallpaper1Proxy::builder(&self.conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build(),
        )
        .await?;
        let current = timed("the wallpaper service", wallpaper.current()).await?;
        if current.is_empty() {
            return Ok(None);
        }
        let history = timed("the wallpaper service", wallpaper.history(100)).await?;
        let prompt = history.iter().find_map(|entry| {
            let id = entry
                .get("id")
                .and_then(|v| String::try_from(v.clone()).ok())?;
            (id == current)
                .then(|| {
                    entry
                        .get("prompt")
                        .and_then(|v| String::try_from(v.clone()).ok())
                })
                .flatten()
        });
        Ok(Some(prompt.unwrap_or(current)))
    }

    async fn driving_secs(&self) -> Result<u64, Failure> {
        let vehicle = timed(
            "the vehicle data",
            Vehicle1Proxy::builder(&self.conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build(),
        )
        .await?;
        timed("the vehicle data", vehicle.driving_time()).await
    }

    async fn chat(&self, text: &str, persona: Option<&str>, lang: &str) -> Result<String, Failure> {
        match self.chat_once(text, persona, lang, false).await {
            // The session ended (the companion restarted): once more, in a new one.
            Err(f)
                if f.name.contains("UnknownObject")
                    || f.name.contains("UnknownMethod")
                    || f.name.ends_with("NotFound") =>
            {
                self.chat_once(text, persona, lang, true).await
            }
            other => other,
        }
    }

    async fn submit_feedback(&self, text: &str, lang: &str) -> Result<String, Failure> {
        let feedback = timed("the feedback service", Feedback1Proxy::new(&self.conn)).await?;
        let meta = HashMap::from([("locale", Variant::from(locale_of(lang)))]);
        timed("the feedback service", feedback.submit("voice", text, meta)).await
    }
}
