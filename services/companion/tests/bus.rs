//! The bus contract of `cabin-companiond`, run as its own process on a private
//! `dbus-daemon`, with the vehicle simulator and (for actions) the real wallpaper service;
//! the cloud backend against a local server speaking the OpenAI streaming protocol, the
//! on-device LM on the tiny random-weight LLaMA fixture.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use cabin_common::bus::BusChoice;
use cabin_companion::daemon::{
    BUS_NAME, INTERFACE, INTROSPECTION_XML, OBJECT_PATH, SESSION_INTERFACE,
};
use cabin_contracts::companion::{Companion1Proxy, SessionProxy};
use cabin_contracts::wallpaper::Wallpaper1Proxy;
use cabin_testbus::{
    ServiceProcess, TestBus, eventually, interface_members, introspect, wait_for_name,
};
use futures_util::StreamExt;
use zbus::{OwnedVariant, Variant};

const BIN: &str = env!("CARGO_BIN_EXE_cabin-companiond");

struct Stage {
    bus: TestBus,
    conn: zbus::Connection,
    state: tempfile::TempDir,
    service: Option<ServiceProcess>,
    vehicle: cabin_vehicle_sim::Publisher,
    config: Option<std::path::PathBuf>,
}

impl Stage {
    async fn new() -> Self {
        Self::with_config(None).await
    }

    /// With `companion.toml` text for `--config`.
    async fn with_config(config: Option<&str>) -> Self {
        let bus = TestBus::start().unwrap();
        let choice = BusChoice::Address(bus.address().to_string());
        // Midday in Shenzhen whenever the test runs: late-night care would change the replies.
        let noon = chrono::DateTime::parse_from_rfc3339("2026-11-30T04:00:00Z")
            .unwrap()
            .to_utc();
        let vehicle_config = cabin_vehicle_sim::Config {
            vehicle: cabin_common::vehicle::VehicleState {
                clock: cabin_common::clock::ClockSetting::anchored(chrono::Utc::now(), noon, 1.0),
                ..Default::default()
            },
            ..Default::default()
        };
        let vehicle = cabin_vehicle_sim::Publisher::start(&choice, &vehicle_config)
            .await
            .unwrap();
        let conn = bus.connect().await.unwrap();
        let mut stage = Self {
            bus,
            conn,
            state: tempfile::tempdir().unwrap(),
            service: None,
            vehicle,
            config: None,
        };
        if let Some(text) = config {
            let path = stage.state.path().join("companion.toml");
            std::fs::write(&path, text).unwrap();
            stage.config = Some(path);
        }
        stage.start_service().await;
        stage
    }

    async fn start_service(&mut self) {
        let state = self.state.path().to_str().unwrap().to_string();
        let mut args = vec!["--bus", self.bus.address(), "--state-dir", &state];
        let config = self
            .config
            .as_ref()
            .map(|p| p.to_str().unwrap().to_string());
        if let Some(config) = &config {
            args.extend(["--config", config]);
        }
        self.service = Some(ServiceProcess::spawn(BIN, &args).unwrap());
        assert!(
            wait_for_name(&self.conn, BUS_NAME, Duration::from_secs(20)).await,
            "cabin-companiond owns its name"
        );
    }

    async fn stop_service(&mut self) {
        self.service = None;
        let dbus = zbus::fdo::DBusProxy::new(&self.conn).await.unwrap();
        assert!(
            eventually(Duration::from_secs(10), || {
                let dbus = dbus.clone();
                async move {
                    !dbus
                        .name_has_owner(BUS_NAME.try_into().unwrap())
                        .await
                        .unwrap_or(true)
                }
            })
            .await
        );
    }

    async fn companion(&self) -> Companion1Proxy<'static> {
        Companion1Proxy::new(&self.conn).await.unwrap()
    }

    async fn session(&self, persona: &str, locale: &str) -> SessionProxy<'static> {
        let mut options = HashMap::new();
        if !locale.is_empty() {
            options.insert("locale", Variant::from(locale));
        }
        let path = self
            .companion()
            .await
            .start_session(persona, options)
            .await
            .unwrap();
        SessionProxy::builder(&self.conn)
            .path(path)
            .build()
            .await
            .unwrap()
    }
}

/// A reply as a client sees it: the streamed text and the final signal.
#[derive(Debug)]
struct Heard {
    streamed: String,
    text: String,
    emotion: String,
    actions: Vec<(String, HashMap<String, OwnedVariant>)>,
}

async fn talk(session: &SessionProxy<'_>, text: &str) -> Heard {
    let mut tokens = session.receive_token().await.unwrap();
    let mut replies = session.receive_reply().await.unwrap();
    let mut failures = session.receive_failed().await.unwrap();
    let turn = session.say(text, HashMap::new()).await.unwrap();
    let mut streamed = String::new();
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            Some(t) = tokens.next() => {
                let args = t.args().unwrap();
                if args.turn == turn {
                    if args.text.is_empty() { streamed.clear() } else { streamed.push_str(&args.text) }
                }
            }
            Some(r) = replies.next() => {
                let args = r.args().unwrap();
                if args.turn == turn {
                    // Tokens are sent before the reply; give stragglers on the stream a moment.
                    while let Ok(Some(t)) = tokio::time::timeout(Duration::from_millis(50), tokens.next()).await {
                        let a = t.args().unwrap();
                        if a.turn == turn { streamed.push_str(&a.text) }
                    }
                    return Heard { streamed, text: args.text.clone(), emotion: args.emotion.clone(), actions: args.actions.clone() };
                }
            }
            Some(f) = failures.next() => {
                let args = f.args().unwrap();
                panic!("turn {turn} failed: {} {}", args.error_name, args.message);
            }
            _ = &mut deadline => panic!("no reply to {text:?}"),
        }
    }
}

fn error_name(err: zbus::Error) -> String {
    match err {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => format!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_conversation_personas_and_errors() {
    let stage = Stage::new().await;
    let companion = stage.companion().await;

    // The live export is the committed contract.
    let xml = introspect(&stage.conn, BUS_NAME, OBJECT_PATH)
        .await
        .unwrap();
    assert_eq!(
        interface_members(&xml, INTERFACE),
        interface_members(INTROSPECTION_XML, INTERFACE)
    );
    let session = stage.session("", "zh-CN").await;
    let xml = introspect(&stage.conn, BUS_NAME, session.inner().path().as_str())
        .await
        .unwrap();
    assert_eq!(
        interface_members(&xml, SESSION_INTERFACE),
        interface_members(INTROSPECTION_XML, SESSION_INTERFACE)
    );
    assert!(!interface_members(INTROSPECTION_XML, SESSION_INTERFACE).is_empty());

    // A conversation: each turn streams, then replies, in Chinese as asked.
    assert_eq!(session.persona().await.unwrap(), "warm-companion");
    let mut replies = Vec::new();
    for text in ["你好", "我叫小周，今天好累", "讲个笑话吧"] {
        let heard = talk(&session, text).await;
        assert_eq!(heard.streamed, heard.text, "{text}");
        assert!(
            heard.text.chars().any(cabin_text::is_han),
            "{text} → {}",
            heard.text
        );
        replies.push(heard);
    }
    assert_eq!(replies[1].emotion, "caring");
    assert!(replies[1].text.contains("小周"), "{}", replies[1].text);
    assert_eq!(session.turns().await.unwrap(), 3);
    assert_eq!(session.backend().await.unwrap(), "offline");
    assert_eq!(companion.backends().await.unwrap(), ["offline"]);

    // Personas.
    let personas = companion.list_personas().await.unwrap();
    let ids: Vec<&str> = personas.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        ids,
        ["cheerful-copilot", "night-drive-friend", "warm-companion"]
    );
    let card = r#"{"spec":"chara_card_v2","spec_version":"2.0","data":{"name":"Ming","description":"A friend.","first_mes":"Hi","extensions":{"vendor":{"x":[1,2]}}},"extra":true}"#;
    let id = companion.import_persona(card).await.unwrap();
    let back: serde_json::Value =
        serde_json::from_str(&companion.export_persona(&id).await.unwrap()).unwrap();
    assert_eq!(
        back,
        serde_json::from_str::<serde_json::Value>(card).unwrap()
    );
    let english = stage.session(&id, "").await;
    let heard = talk(&english, "hello, how are you?").await;
    assert!(
        !heard.text.chars().any(cabin_text::is_han) && !heard.text.is_empty(),
        "{}",
        heard.text
    );

    // Errors by name.
    let e = |r: zbus::Result<u32>| error_name(r.unwrap_err());
    assert_eq!(
        e(session.say("  ", HashMap::new()).await),
        "org.cabin.Error.InvalidArgument"
    );
    assert_eq!(
        e(session.say(&"x".repeat(2001), HashMap::new()).await),
        "org.cabin.Error.InvalidArgument"
    );
    assert_eq!(
        e(session
            .say("hi", HashMap::from([("volume", Variant::from(3u32))]))
            .await),
        "org.cabin.Error.InvalidArgument"
    );
    assert_eq!(
        e(session
            .say("hi", HashMap::from([("locale", Variant::from("fr-FR"))]))
            .await),
        "org.cabin.Error.InvalidArgument"
    );
    assert_eq!(
        error_name(
            companion
                .start_session("ghost", HashMap::new())
                .await
                .unwrap_err()
        ),
        "org.cabin.Error.NotFound"
    );
    assert_eq!(
        error_name(companion.import_persona("{}").await.unwrap_err()),
        "org.cabin.Error.InvalidArgument"
    );
    let shipped = include_str!("../personas/warm-companion.json");
    assert_eq!(
        error_name(companion.import_persona(shipped).await.unwrap_err()),
        "org.cabin.Error.PermissionDenied"
    );
    assert_eq!(
        error_name(companion.export_persona("ghost").await.unwrap_err()),
        "org.cabin.Error.NotFound"
    );
    assert_eq!(
        error_name(companion.forget("ghost").await.unwrap_err()),
        "org.cabin.Error.NotFound"
    );

    // End: the session leaves the bus.
    session.end().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || {
            let s = session.clone();
            async move { s.say("hi", HashMap::new()).await.is_err() }
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_survives_a_restart_and_forget_erases_it() {
    let mut stage = Stage::new().await;
    let session = stage.session("night-drive-friend", "").await;
    talk(&session, "my name is Jordan and I love old jazz records").await;
    stage.stop_service().await;
    stage.start_service().await;
    let session = stage.session("night-drive-friend", "").await;
    let heard = talk(&session, "do you remember my name?").await;
    assert!(heard.text.contains("Jordan"), "{}", heard.text);
    stage
        .companion()
        .await
        .forget("night-drive-friend")
        .await
        .unwrap();
    let session = stage.session("night-drive-friend", "").await;
    let heard = talk(&session, "do you remember my name?").await;
    assert!(!heard.text.contains("Jordan"), "{}", heard.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_follow_the_vehicle_and_actions_reach_the_wallpaper_service() {
    let stage = Stage::new().await;
    let session = stage.session("warm-companion", "en-US").await;
    let parked = talk(&session, "I just had lunch with my family, and the kids told me all about their school trip to the mountains. What do you think?").await;

    // Moving for 2.5 h at 110 km/h: short, and a break is suggested.
    let speed = Variant::from(110.0);
    let gear = Variant::from("D");
    let driven = Variant::from(9000u64);
    stage
        .vehicle
        .apply(&[("Speed", &speed), ("Gear", &gear), ("DrivingTime", &driven)])
        .await
        .unwrap();
    let limit = cabin_companion::Config::default()
        .speech
        .high_speed_max_chars;
    // The companion follows Vehicle1's signals; its drive_status tool shows when it has. Asked
    // through another persona: the three properties may arrive one by one, and a turn in
    // between (driven 2.5 h, still parked) would already have suggested the break in this
    // persona's memory, which the reply below must not repeat.
    let probe = stage.session("cheerful-copilot", "en-US").await;
    let mut seen = String::new();
    for _ in 0..50 {
        seen = talk(&probe, "how fast am I going?").await.text;
        if seen.contains("110 km/h") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.contains("2 h 30 min") && seen.contains("110 km/h"),
        "{seen}"
    );
    let heard = talk(&session, "I just had lunch with my family, and the kids told me all about their school trip. What do you think?").await;
    assert!(
        heard.text.chars().count() <= limit,
        "at speed: {} ({} chars)",
        heard.text,
        heard.text.chars().count()
    );
    assert!(parked.text.chars().count() > heard.text.chars().count());
    let lower = heard.text.to_lowercase();
    assert!(
        lower.contains("break")
            || lower.contains("rest")
            || lower.contains("service area")
            || lower.contains("stop")
            || lower.contains("hours"),
        "{}",
        heard.text
    );

    // No wallpaper service on the bus: the action fails by name, the reply says so.
    let heard = talk(&session, "make the wallpaper a starry night").await;
    let (name, details) = &heard.actions[0];
    assert_eq!(name, "set_wallpaper");
    assert_eq!(details["ok"], OwnedVariant::from(false));
    assert_eq!(
        String::try_from(details["error_name"].clone()).unwrap(),
        "org.cabin.Error.Unavailable"
    );
    assert!(heard.text.contains("isn't available"), "{}", heard.text);

    // With the wallpaper service: the picture really changes.
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures/tiny-sd");
    let wallpaper_state = tempfile::tempdir().unwrap();
    let config = cabin_wallpaper::daemon::Config {
        model_dir: Some(model),
        time_aware: false,
        ..Default::default()
    };
    let _wallpaper = cabin_wallpaper::daemon::serve(
        &BusChoice::Address(stage.bus.address().to_string()),
        config,
        wallpaper_state.path(),
    )
    .await
    .unwrap();
    let wallpaper = Wallpaper1Proxy::new(&stage.conn).await.unwrap();
    let before = wallpaper.current().await.unwrap();
    let heard = talk(&session, "make the wallpaper a snowy mountain").await;
    let (_, details) = &heard.actions[0];
    assert_eq!(details["ok"], OwnedVariant::from(true), "{details:?}");
    assert_eq!(
        String::try_from(details["prompt"].clone()).unwrap(),
        "snowy mountain"
    );
    assert!(
        String::try_from(details["job"].clone())
            .unwrap()
            .starts_with("/org/cabin/Wallpaper1/jobs/")
    );
    assert!(
        eventually(Duration::from_secs(120), || {
            let w = wallpaper.clone();
            let b = before.clone();
            async move { w.current().await.is_ok_and(|c| !c.is_empty() && c != b) }
        })
        .await,
        "the wallpaper changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_device_model_answers_over_the_bus() {
    on_device_model_answers("tiny-lm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_device_model_with_four_bit_weights_answers_over_the_bus() {
    on_device_model_answers("tiny-lm-q4").await;
}

async fn on_device_model_answers(fixture: &str) {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../onnx/fixtures")
        .join(fixture)
        .canonicalize()
        .unwrap();
    let config = format!(
        "backends = [\"local\"]\n[local]\nmodel_dir = {:?}\nmax_new_tokens = 24\nmax_context = 4096\n",
        model.display().to_string()
    );
    let stage = Stage::with_config(Some(&config)).await;
    let companion = stage.companion().await;
    assert_eq!(companion.backends().await.unwrap(), ["local", "offline"]);

    let session = stage.session("night-drive-friend", "en-US").await;
    for text in [
        "hi, it's a long road tonight",
        "my name is Alex",
        "any music ideas?",
    ] {
        let heard = talk(&session, text).await;
        assert_eq!(heard.streamed, heard.text, "{text}");
        assert!(!heard.text.trim().is_empty(), "{text}");
        assert_eq!(session.backend().await.unwrap(), "local", "{text}");
    }
    assert_eq!(session.turns().await.unwrap(), 3);

    // Chinese is not the fixture's language: the offline engine answers, in Chinese.
    let zh = stage.session("night-drive-friend", "zh-CN").await;
    let heard = talk(&zh, "你好").await;
    assert!(heard.text.chars().any(cabin_text::is_han), "{}", heard.text);
    assert_eq!(zh.backend().await.unwrap(), "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_backend_answers_over_the_bus_and_falls_back_mid_stream() {
    let server = support::ChatServer::start().await;
    server
        .then(support::Script::Text(vec![
            "Hello Alex,",
            " good to have",
            " you on the road.",
        ]))
        .then(support::Script::Text(vec![
            "Jazz sounds",
            " perfect tonight.",
        ]))
        .then(support::Script::ErrorEvent(vec!["I was about to"]));
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key");
    std::fs::write(&key, "sk-bus-test\n").unwrap();
    let config = format!(
        "backends = [\"cloud\"]\ncloud_timeout_ms = 3000\n[cloud]\nbase_url = {:?}\nmodel = \"test-model\"\napi_key_file = {:?}\n",
        server.base_url,
        key.display().to_string()
    );
    let stage = Stage::with_config(Some(&config)).await;
    assert_eq!(
        stage.companion().await.backends().await.unwrap(),
        ["cloud", "offline"]
    );
    let session = stage.session("warm-companion", "en-US").await;
    let first = talk(&session, "hi, I'm Alex").await;
    assert_eq!(first.text, "Hello Alex, good to have you on the road.");
    assert_eq!(first.streamed, first.text);
    assert_eq!(session.backend().await.unwrap(), "cloud");
    let second = talk(&session, "any music ideas?").await;
    assert_eq!(second.text, "Jazz sounds perfect tonight.");
    // The third stream breaks off: what it streamed is withdrawn, the offline engine answers.
    let third = talk(&session, "and after that?").await;
    assert!(!third.text.contains("about to"), "{}", third.text);
    assert_eq!(third.streamed, third.text);
    assert_eq!(session.backend().await.unwrap(), "offline");
    assert_eq!(session.turns().await.unwrap(), 3);
    let seen = server.requests();
    assert_eq!(seen[0].authorization, "Bearer sk-bus-test");
    // The second request carries the first exchange.
    let history: Vec<&str> = seen[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(
        history.contains(&"Hello Alex, good to have you on the road."),
        "{history:?}"
    );
}
