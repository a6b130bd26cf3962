//! [`Services`] over D-Bus: the calls the voice hook makes on the other services.

use std::collections::HashMap;
use std::time::Duration;

use cabin_contracts::CallError;
use cabin_contracts::companion::{Companion1Proxy, SessionProxy};
use cabin_contracts::feedback::Feedback1Proxy;
use cabin_contracts::vehicle::Vehicle1Proxy;
use cabin_contracts::wallpaper::Wallpaper1Proxy;
use futures_util::StreamExt;
use tokio::sync::Mutex;
use zbus::{OwnedObjectPath, Variant};

use crate::router::{Failure, Services};

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

fn failure(what: &str, e: zbus::Error) -> Failure {
    let CallError { name, message } = CallError::from_call(what, e);
    Failure { name, message }
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = zbus::Result<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| failure(what, e)),
        Err(_) => {
            let CallError { name, message } = CallError::timed_out(what, CALL_TIMEOUT.as_secs());
            Err(Failure { name, message })
        }
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
        let prompt = timed("the wallpaper service", wallpaper.current_prompt()).await?;
        Ok(Some(if prompt.is_empty() { current } else { prompt }))
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
