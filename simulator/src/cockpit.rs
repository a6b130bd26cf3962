//! The web cockpit: one page (`cockpit.html`) served on 127.0.0.1, live from the private
//! bus. Signals of every cabin object (`path_namespace=/org/cabin`) become JSON events on
//! `GET /events` (server-sent events); the page's controls are small JSON `POST`s that
//! become D-Bus calls (voice, chat, feedback, vehicle, clock).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Duration as ChronoDuration, Timelike};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, broadcast};
use zbus::{OwnedObjectPath, OwnedVariant, Variant};

use cabin_contracts::CallError;
use cabin_contracts::companion::{self, Companion1Proxy, SessionProxy};
use cabin_contracts::feedback::{self, Feedback1Proxy};
use cabin_contracts::vehicle::{self, Vehicle1Proxy};
use cabin_contracts::voice::Voice1Proxy;
use cabin_contracts::wallpaper::{self, Wallpaper1Proxy};

use crate::supervisor::ServiceStatus;

const PAGE: &str = include_str!("cockpit.html");
/// How long a page action waits for a service before it reports it unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A bus call for a page action, its failure as "org.cabin.Error.Name: message".
async fn called<T>(
    service: &str,
    call: impl std::future::Future<Output = zbus::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r.map_err(|e| CallError::from_call(service, e).to_string()),
        Err(_) => Err(CallError::timed_out(service, CALL_TIMEOUT.as_secs()).to_string()),
    }
}

pub struct Cockpit {
    conn: zbus::Connection,
    events: broadcast::Sender<String>,
    statuses: Box<dyn Fn() -> Vec<ServiceStatus> + Send + Sync>,
    collector: String,
    chat: Mutex<Option<OwnedObjectPath>>,
}

type Shared = Arc<Cockpit>;

fn to_json(v: &OwnedVariant) -> Value {
    let v: &Variant<'_> = v;
    match v {
        Variant::Bool(b) => json!(b),
        Variant::F64(x) => json!(x),
        Variant::Str(s) => json!(s.as_str()),
        Variant::U8(x) => json!(x),
        Variant::U16(x) => json!(x),
        Variant::U32(x) => json!(x),
        Variant::U64(x) => json!(x),
        Variant::I16(x) => json!(x),
        Variant::I32(x) => json!(x),
        Variant::I64(x) => json!(x),
        Variant::ObjectPath(p) => json!(p.as_str()),
        other => json!(other.to_string()),
    }
}

impl Cockpit {
    pub fn new(
        conn: zbus::Connection,
        statuses: impl Fn() -> Vec<ServiceStatus> + Send + Sync + 'static,
        collector: String,
    ) -> Shared {
        let (events, _) = broadcast::channel(256);
        Arc::new(Self {
            conn,
            events,
            statuses: Box::new(statuses),
            collector,
            chat: Mutex::new(None),
        })
    }

    pub fn publish(&self, event: Value) {
        let _ = self.events.send(event.to_string());
    }

    pub fn services_changed(&self) {
        self.publish(json!({"type": "services", "services": (self.statuses)()}));
    }

    /// Every property of one cabin object, as JSON (null when its service is not there).
    async fn properties(&self, dest: &str, path: &str, iface: &str) -> Value {
        let all = async {
            let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
                .destination(dest.to_string())
                .path(path.to_string())
                .build()
                .await?;
            let iface = zbus::names::InterfaceName::try_from(iface.to_string())?;
            Ok::<_, zbus::Error>(props.get_all(iface).await?)
        };
        match tokio::time::timeout(CALL_TIMEOUT, all).await {
            Ok(Ok(props)) => {
                Value::Object(props.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
            }
            _ => Value::Null,
        }
    }

    pub async fn state(&self) -> Value {
        json!({
            "type": "state",
            "services": (self.statuses)(),
            "vehicle": self.properties(vehicle::BUS_NAME, vehicle::OBJECT_PATH, vehicle::INTERFACE).await,
            "wallpaper": self.properties(wallpaper::BUS_NAME, wallpaper::OBJECT_PATH, wallpaper::INTERFACE).await,
            "feedback": self.properties(feedback::BUS_NAME, feedback::OBJECT_PATH, feedback::INTERFACE).await,
        })
    }
}

pub fn router(cockpit: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events", get(events))
        .route(
            "/api/state",
            get(|State(c): State<Shared>| async move { Json(c.state().await) }),
        )
        .route("/wallpaper/current.png", get(wallpaper_png))
        .route("/wallpaper/model-sheet.png", get(model_sheet_png))
        .route("/api/model", get(model))
        .route("/api/voice", post(voice))
        .route("/api/chat", post(chat))
        .route("/api/feedback", post(feedback))
        .route("/api/fleet", get(fleet))
        .route("/api/vehicle", post(vehicle))
        .with_state(cockpit)
}

async fn events(
    State(c): State<Shared>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = c.events.subscribe();
    let first = c.state().await.to_string();
    let stream = futures_util::stream::once(async move { Ok(Event::default().data(first)) }).chain(
        futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(data) => return Some((Ok(Event::default().data(data)), rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }),
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

async fn wallpaper_png(State(c): State<Shared>) -> Response {
    let path = called("the wallpaper service", async {
        Wallpaper1Proxy::builder(&c.conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?
            .current_path()
            .await
    })
    .await
    .unwrap_or_default();
    if path.is_empty() {
        return error(StatusCode::NOT_FOUND, "no wallpaper yet");
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// The contact sheet the wallpaper model ships (`contact-sheet.png` in its folder, covered
/// by its manifest): one picture per scene family, as this model draws them.
async fn model_sheet_png(State(c): State<Shared>) -> Response {
    let info = called("the wallpaper service", async {
        Wallpaper1Proxy::new(&c.conn).await?.model_info().await
    })
    .await;
    let dir = match info {
        Ok(info) => info
            .get("path")
            .and_then(|v| String::try_from(v.clone()).ok())
            .unwrap_or_default(),
        Err(e) => return error(StatusCode::BAD_GATEWAY, e),
    };
    let path = std::path::Path::new(&dir).join("contact-sheet.png");
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        Err(_) => error(
            StatusCode::NOT_FOUND,
            format!("the model at {dir} ships no contact sheet"),
        ),
    }
}

/// The wallpaper model's `ModelInfo` (name, version, licence, path, loaded, threads).
async fn model(State(c): State<Shared>) -> Response {
    let info = called("the wallpaper service", async {
        Wallpaper1Proxy::new(&c.conn).await?.model_info().await
    })
    .await;
    match info {
        Ok(info) => Json(Value::Object(
            info.iter().map(|(k, v)| (k.clone(), to_json(v))).collect(),
        ))
        .into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

#[derive(Deserialize)]
struct Text {
    text: String,
}

async fn voice(State(c): State<Shared>, Json(body): Json<Text>) -> Response {
    let result = called("the voice hook", async {
        Voice1Proxy::new(&c.conn)
            .await?
            .handle(&body.text, "", HashMap::new())
            .await
    })
    .await;
    match result {
        Ok((handled, reply, intent)) => {
            Json(json!({"handled": handled, "reply": reply, "intent": intent})).into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

async fn chat(State(c): State<Shared>, Json(body): Json<Text>) -> Response {
    for fresh in [false, true] {
        let mut session = c.chat.lock().await;
        if fresh || session.is_none() {
            let started = called("the companion", async {
                Companion1Proxy::new(&c.conn)
                    .await?
                    .start_session("", HashMap::new())
                    .await
            })
            .await;
            match started {
                Ok(path) => *session = Some(path),
                Err(e) => return error(StatusCode::BAD_GATEWAY, e),
            }
        }
        let Some(path) = session.clone() else {
            continue;
        };
        let said = called("the companion", async {
            SessionProxy::builder(&c.conn)
                .path(path.clone())
                .build()
                .await?
                .say(&body.text, HashMap::new())
                .await
        })
        .await;
        match said {
            Ok(turn) => {
                return Json(json!({"turn": turn, "session": path.as_str()})).into_response();
            }
            // The companion restarted: its sessions are gone; start another once.
            Err(e)
                if !fresh
                    && (e.contains("UnknownObject")
                        || e.contains("UnknownMethod")
                        || e.contains("NotFound")) =>
            {
                continue;
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    }
    error(StatusCode::BAD_GATEWAY, "the companion is not answering")
}

async fn feedback(State(c): State<Shared>, Json(body): Json<Text>) -> Response {
    let feedback = called("the feedback service", Feedback1Proxy::new(&c.conn)).await;
    let id = match &feedback {
        Ok(proxy) => {
            called(
                "the feedback service",
                proxy.submit("app", &body.text, HashMap::new()),
            )
            .await
        }
        Err(e) => Err(e.clone()),
    };
    match id {
        Ok(id) => {
            // A desktop trial wants to see it arrive: upload now rather than after the batch delay.
            if let Ok(proxy) = &feedback {
                let _ = called("the feedback service", proxy.flush()).await;
            }
            Json(json!({"id": id})).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn fleet(State(c): State<Shared>) -> Response {
    let url = format!("{}/v1/fleet", c.collector);
    let got = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let mut response = ureq::get(&url).call().map_err(|e| e.to_string())?;
        response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match got {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

#[derive(Deserialize)]
struct VehicleChange {
    speed: Option<f64>,
    /// Local (solar) hour of day at the vehicle, 0..24.
    hour: Option<f64>,
    clock_rate: Option<f64>,
    place: Option<String>,
}

pub fn place(name: &str) -> Option<(f64, f64)> {
    match name.to_ascii_lowercase().as_str() {
        "shenzhen" => Some((22.5431, 114.0579)),
        "harbin" => Some((45.8038, 126.5349)),
        "oslo" => Some((59.9139, 10.7522)),
        _ => None,
    }
}

async fn vehicle(State(c): State<Shared>, Json(body): Json<VehicleChange>) -> Response {
    let mut changes: HashMap<&str, Variant<'_>> = HashMap::new();
    if let Some(speed) = body.speed {
        changes.insert("Speed", Variant::from(speed));
        changes.insert("Gear", Variant::from(if speed > 0.0 { "D" } else { "P" }));
    }
    if let Some(name) = &body.place {
        let Some((lat, lon)) = place(name) else {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown place {name:?}; known: shenzhen, harbin, oslo"),
            );
        };
        changes.insert("Latitude", Variant::from(lat));
        changes.insert("Longitude", Variant::from(lon));
    }
    if !changes.is_empty() {
        let done = called("the vehicle data", async {
            Vehicle1Proxy::new(&c.conn).await?.update(changes).await
        })
        .await;
        if let Err(e) = done {
            return error(StatusCode::BAD_REQUEST, e);
        }
    }
    if body.hour.is_some() || body.clock_rate.is_some() {
        let props = c
            .properties(vehicle::BUS_NAME, vehicle::OBJECT_PATH, vehicle::INTERFACE)
            .await;
        let rate = body
            .clock_rate
            .or_else(|| props["ClockRate"].as_f64())
            .unwrap_or(1.0);
        let mut sim_ms = 0i64;
        if let Some(hour) = body.hour {
            if !(0.0..24.0).contains(&hour) {
                return error(StatusCode::BAD_REQUEST, "hour must be within 0..24");
            }
            let now = called("the vehicle data", async {
                Vehicle1Proxy::new(&c.conn).await?.now().await
            })
            .await;
            let now = now
                .ok()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .unwrap_or_else(chrono::Utc::now);
            let offset = ChronoDuration::seconds(
                (props["Longitude"].as_f64().unwrap_or(0.0) / 15.0 * 3600.0) as i64,
            );
            let local = now + offset;
            let midnight =
                local - ChronoDuration::seconds(i64::from(local.num_seconds_from_midnight()));
            sim_ms = (midnight + ChronoDuration::seconds((hour * 3600.0) as i64) - offset)
                .timestamp_millis();
        }
        let done = called("the vehicle data", async {
            Vehicle1Proxy::new(&c.conn)
                .await?
                .set_clock(sim_ms, rate)
                .await
        })
        .await;
        if let Err(e) = done {
            return error(StatusCode::BAD_REQUEST, e);
        }
    }
    Json(json!({"ok": true})).into_response()
}

/// Turns the bus's signals into cockpit events until the connection closes.
pub async fn follow_bus(c: Shared) -> zbus::Result<()> {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path_namespace("/org/cabin")
        .build()?;
    let mut stream =
        zbus::MessageStream::for_match_rule(rule, &c.conn, std::num::NonZeroUsize::new(256))
            .await?;
    while let Some(Ok(msg)) = stream.next().await {
        let header = msg.header();
        let (Some(iface), Some(member), Some(path)) =
            (header.interface(), header.member(), header.path())
        else {
            continue;
        };
        let (iface, member, path) = (iface.as_str(), member.as_str(), path.as_str());
        let body = msg.body();
        let event = match (iface, member) {
            (wallpaper::INTERFACE, "Changed") => body.deserialize::<(String, String, HashMap<String, OwnedVariant>)>().ok().map(|(id, phase, hints)| {
                json!({"type": "wallpaper", "image_id": id, "phase": phase, "hints": Value::Object(hints.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())})
            }),
            (wallpaper::JOB_INTERFACE, "Progress") => body.deserialize::<(u32, u32, zbus::Fd<'_>)>().ok().map(|(step, total, _)| json!({"type": "progress", "job": path, "step": step, "total": total})),
            (wallpaper::JOB_INTERFACE, "Done") => Some(json!({"type": "job_done", "job": path})),
            (wallpaper::JOB_INTERFACE, "Failed") => body.deserialize::<(String, String)>().ok().map(|(name, message)| json!({"type": "job_failed", "job": path, "error": name, "message": message})),
            (companion::SESSION_INTERFACE, "Token") => body.deserialize::<(u32, String)>().ok().map(|(turn, text)| json!({"type": "token", "session": path, "turn": turn, "text": text})),
            (companion::SESSION_INTERFACE, "Reply") => body.deserialize::<(u32, String, String, Vec<(String, HashMap<String, OwnedVariant>)>)>().ok().map(|(turn, text, emotion, actions)| {
                json!({"type": "reply", "session": path, "turn": turn, "text": text, "emotion": emotion, "actions": actions.iter().map(|a| a.0.clone()).collect::<Vec<_>>()})
            }),
            (companion::SESSION_INTERFACE, "Failed") => body.deserialize::<(u32, String, String)>().ok().map(|(turn, name, message)| json!({"type": "reply_failed", "session": path, "turn": turn, "error": name, "message": message})),
            (feedback::INTERFACE, "BatchUploaded") => body.deserialize::<(String, u32)>().ok().map(|(batch, items)| json!({"type": "uploaded", "batch": batch, "items": items})),
            ("org.freedesktop.DBus.Properties", "PropertiesChanged") => {
                let (target, dest, iface_name) = match path {
                    vehicle::OBJECT_PATH => ("vehicle", vehicle::BUS_NAME, vehicle::INTERFACE),
                    wallpaper::OBJECT_PATH => ("wallpaper_state", wallpaper::BUS_NAME, wallpaper::INTERFACE),
                    feedback::OBJECT_PATH => ("feedback", feedback::BUS_NAME, feedback::INTERFACE),
                    _ => continue,
                };
                Some(json!({"type": target, "properties": c.properties(dest, path, iface_name).await}))
            }
            _ => None,
        };
        if let Some(mut event) = event {
            // The page shows the conversation it started; other sessions (the voice hook's)
            // are marked as such.
            if iface == companion::SESSION_INTERFACE {
                let mine = c
                    .chat
                    .lock()
                    .await
                    .as_ref()
                    .is_some_and(|p| p.as_str() == path);
                event["cockpit"] = json!(mine);
            }
            c.publish(event);
        }
    }
    Ok(())
}
