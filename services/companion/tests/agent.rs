//! The companion as a library: conversations on the offline engine, memory across a
//! restart, the driving policy, care, safety, the on-device LM (the tiny random-weight
//! LLaMA fixture), and the cloud backend against a local server speaking the OpenAI
//! streaming protocol (errors, rate limits, hangs and tool calls).

mod support;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cabin_common::vehicle::{Gear, VehicleState};
use cabin_companion::backend::{Backend, BackendError, Draft, Request};
use cabin_companion::cloud::CloudConfig;
use cabin_companion::local_lm::LocalLmConfig;
use cabin_companion::tools::Effects;
use cabin_companion::{Companion, Config, Turn, TurnResult};
use cabin_text::is_han as is_cjk;
use support::{ChatServer, Script};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Effects for Recorder {
    fn set_wallpaper(&self, prompt: &str) -> Result<String, (String, String)> {
        self.0.lock().unwrap().push(prompt.to_string());
        Ok("/org/cabin/Wallpaper1/jobs/1".into())
    }
}

fn parked() -> VehicleState {
    VehicleState::default()
}

fn moving(kmh: f64, driving_mins: u64) -> VehicleState {
    VehicleState {
        speed_kmh: kmh,
        gear: Gear::Drive,
        driving_secs: driving_mins * 60,
        ..VehicleState::default()
    }
}

/// Midday in Shenzhen (the default vehicle position): no late-night care.
fn noon() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-30T04:00:00Z")
        .unwrap()
        .to_utc()
}

fn say(
    c: &Companion,
    persona: &str,
    text: &str,
    vehicle: VehicleState,
    seed: u64,
    effects: &dyn Effects,
) -> (TurnResult, Vec<String>) {
    let cancel = AtomicBool::new(false);
    let mut tokens = Vec::new();
    let result = c
        .say(
            Turn {
                persona,
                text,
                lang: None,
                seed,
                vehicle,
                now: noon(),
                effects,
                cancel: &cancel,
            },
            &mut |t| tokens.push(t.to_string()),
        )
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let last_reset = tokens
        .iter()
        .rposition(|t| t.is_empty())
        .map_or(0, |i| i + 1);
    assert_eq!(
        tokens[last_reset..].concat(),
        result.text,
        "what streamed after the last withdrawal is the reply"
    );
    (result, tokens)
}

fn open(dir: &std::path::Path, config: Config) -> Companion {
    Companion::open(config, dir).unwrap()
}

#[test]
fn an_offline_conversation_in_each_language() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), Config::default());
    let fx = Recorder::default();
    let zh = [
        "你好",
        "我叫王芳，我喜欢火锅",
        "今天工作好累",
        "讲个笑话吧",
        "周末想去海边",
        "你还记得我叫什么吗",
        "谢谢你",
        "再见",
    ];
    let mut replies = Vec::new();
    for text in zh {
        let (r, _) = say(&c, "warm-companion", text, parked(), 7, &fx);
        assert!(
            r.text.chars().filter(|c| is_cjk(*c)).count() >= 4,
            "{text} → {}",
            r.text
        );
        assert_eq!(r.backend, "offline");
        replies.push(r.text);
    }
    assert!(replies[5].contains("王芳"), "recall: {}", replies[5]);
    assert_eq!(
        say(&c, "warm-companion", "今天工作好累", parked(), 7, &fx)
            .0
            .emotion,
        "caring"
    );
    let en = [
        "hi",
        "my name is Sam and I love jazz",
        "I'm so stressed about my meeting",
        "tell me a joke",
        "what's my name?",
        "bye",
    ];
    for text in en {
        let (r, _) = say(&c, "cheerful-copilot", text, parked(), 7, &fx);
        assert!(
            !r.text.chars().any(is_cjk) && r.text.len() > 10,
            "{text} → {}",
            r.text
        );
        replies.push(r.text);
    }
    assert!(replies[12].contains("Sam"), "recall: {}", replies[12]);
    // A long conversation does not repeat itself.
    let mut seen = std::collections::HashSet::new();
    for i in 0..12 {
        let (r, _) = say(
            &c,
            "night-drive-friend",
            &format!("the road is quiet tonight {i}"),
            parked(),
            3,
            &fx,
        );
        assert!(seen.insert(r.text.clone()), "turn {i} repeated: {}", r.text);
    }
}

#[test]
fn same_seed_same_replies_other_seed_other_replies() {
    let run = |seed: u64| -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path(), Config::default());
        let fx = Recorder::default();
        [
            "hello",
            "tell me a joke",
            "I had a long day",
            "what should I eat tonight",
        ]
        .iter()
        .map(|t| say(&c, "warm-companion", t, parked(), seed, &fx).0.text)
        .collect()
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
fn memory_survives_a_restart_and_forget_erases_it() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Recorder::default();
    {
        let c = open(dir.path(), Config::default());
        say(
            &c,
            "warm-companion",
            "我叫李雷，明天要去杭州出差",
            parked(),
            1,
            &fx,
        );
    }
    let c = open(dir.path(), Config::default());
    let remembered = c.remembered("warm-companion");
    assert_eq!(remembered.facts.name.as_deref(), Some("李雷"));
    assert_eq!(remembered.facts.plans, vec!["明天去杭州出差"]);
    let (r, _) = say(&c, "warm-companion", "你记得我叫什么吗", parked(), 1, &fx);
    assert!(
        r.text.contains("李雷") && r.text.contains("杭州"),
        "{}",
        r.text
    );
    // Memory is per persona.
    assert_eq!(c.remembered("cheerful-copilot").facts.name, None);
    c.forget("warm-companion").unwrap();
    let c = open(dir.path(), Config::default());
    let (r, _) = say(&c, "warm-companion", "你记得我叫什么吗", parked(), 1, &fx);
    assert!(!r.text.contains("李雷"), "{}", r.text);
    assert!(c.forget("nobody").is_err());
}

/// A backend that writes like a chat model on a desktop: markdown, a list, a link, at length.
struct Verbose;

impl Backend for Verbose {
    fn name(&self) -> &str {
        "verbose"
    }
    fn respond(
        &self,
        _req: &Request<'_>,
        _deadline: Instant,
        on_token: &mut dyn FnMut(&str),
        _cancel: &AtomicBool,
    ) -> Result<Draft, BackendError> {
        let text = "## Break ideas\nHere are **three** things you can do. 1. Stop at the next service area and walk.\n2. Drink water.\n3. See https://example.com/tips for more. Also, stretching your shoulders helps a lot when you have been sitting for hours, and a short nap of twenty minutes can reset your attention.";
        for piece in text.split_inclusive(' ') {
            on_token(piece);
        }
        Ok(Draft {
            text: text.into(),
            lines: Vec::new(),
        })
    }
}

/// A companion whose only backend is [`Verbose`].
fn verbose_companion(config: Config, dir: &std::path::Path) -> Companion {
    let backend = Arc::new(Verbose) as Arc<dyn Backend>;
    Companion::with_backends(config, dir, vec![(backend, Duration::from_secs(2))]).unwrap()
}

#[test]
fn the_driving_policy_shapes_any_backend() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let limits = config.speech.clone();
    let c = verbose_companion(config, dir.path());
    let fx = Recorder::default();
    let (parked_reply, _) = say(&c, "warm-companion", "any tips?", parked(), 1, &fx);
    let (moving_reply, _) = say(&c, "warm-companion", "any tips?", moving(60.0, 10), 1, &fx);
    let (fast_reply, _) = say(&c, "warm-companion", "any tips?", moving(130.0, 10), 1, &fx);
    for r in [&parked_reply, &moving_reply, &fast_reply] {
        for bad in ["#", "*", "http", "\n", "1."] {
            assert!(!r.text.contains(bad), "{bad:?} in {}", r.text);
        }
    }
    assert!(
        parked_reply.text.contains("twenty minutes"),
        "parked: the full reply: {}",
        parked_reply.text
    );
    assert!(
        moving_reply.text.chars().count() <= limits.moving_max_chars,
        "{}",
        moving_reply.text
    );
    assert!(
        fast_reply.text.chars().count() <= limits.high_speed_max_chars,
        "{}",
        fast_reply.text
    );
    assert!(
        fast_reply.text.len() < moving_reply.text.len()
            && moving_reply.text.len() < parked_reply.text.len()
    );
    assert!(moving_reply.text.ends_with('.'), "{}", moving_reply.text);
}

#[test]
fn care_follows_the_vehicle() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), Config::default());
    let fx = Recorder::default();
    let (r, _) = say(
        &c,
        "warm-companion",
        "路上车不多",
        moving(90.0, 150),
        5,
        &fx,
    );
    assert!(
        r.text.contains("服务区") || r.text.contains("休息") || r.text.contains("歇"),
        "{}",
        r.text
    );
    assert!(r.text.chars().count() <= 120);
    let (r, _) = say(
        &c,
        "warm-companion",
        "how long have I been driving?",
        moving(90.0, 150),
        5,
        &fx,
    );
    assert!(r.text.contains("2 h 30 min"), "{}", r.text);
    assert_eq!(r.actions.len(), 1);
    assert_eq!(r.actions[0].name, "drive_status");
}

#[test]
fn crisis_text_gets_care_and_a_hotline_whatever_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.safety.hotline_zh = "请拨打热线 12356。".into();
    let c = verbose_companion(config, dir.path());
    let fx = Recorder::default();
    let (r, _) = say(
        &c,
        "warm-companion",
        "我真的不想活了",
        moving(60.0, 10),
        1,
        &fx,
    );
    assert!(
        r.text.contains("12356") && r.text.contains("停车"),
        "{}",
        r.text
    );
    assert_eq!(r.backend, "safety");
    let (r, _) = say(
        &c,
        "warm-companion",
        "I want to end my life",
        parked(),
        1,
        &fx,
    );
    assert!(
        r.text.contains("988") && !r.text.contains("Break ideas"),
        "{}",
        r.text
    );
    let (r, _) = say(&c, "warm-companion", "累死了", parked(), 1, &fx);
    assert_eq!(r.backend, "verbose", "an idiom is not a crisis");
}

#[test]
fn actions_are_an_allow_list_that_cards_cannot_extend() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Recorder::default();
    let c = open(dir.path(), Config::default());
    let (r, _) = say(&c, "warm-companion", "换一张雪山的壁纸", parked(), 1, &fx);
    assert_eq!(fx.0.lock().unwrap().as_slice(), ["雪山"]);
    assert!(
        r.actions[0].ok && r.actions[0].details["job"].contains("/jobs/"),
        "{:?}",
        r.actions
    );
    assert!(r.text.contains("雪山"), "{}", r.text);

    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        tools: vec![],
        ..Config::default()
    };
    let c = open(dir.path(), config);
    let card = r#"{"spec":"chara_card_v2","spec_version":"2.0","data":{"name":"Sneaky","description":"x","extensions":{"cabin":{"id":"sneaky","tools":["set_wallpaper"]}}}}"#;
    assert_eq!(c.import_persona(card).unwrap(), "sneaky");
    let fx = Recorder::default();
    let (r, _) = say(
        &c,
        "sneaky",
        "make the wallpaper a starry night",
        parked(),
        1,
        &fx,
    );
    assert!(fx.0.lock().unwrap().is_empty(), "nothing called");
    assert!(!r.actions[0].ok);
    assert_eq!(
        r.actions[0].details["error_name"],
        "org.cabin.Error.PermissionDenied"
    );
}

#[test]
fn personas_import_export_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), Config::default());
    assert_eq!(c.personas().len(), 3);
    let card = include_str!("../personas/warm-companion.json")
        .replace("\"id\": \"warm-companion\"", "\"id\": \"my-copy\"");
    assert_eq!(c.import_persona(&card).unwrap(), "my-copy");
    let exported: serde_json::Value =
        serde_json::from_str(&c.export_persona("my-copy").unwrap()).unwrap();
    assert_eq!(
        exported,
        serde_json::from_str::<serde_json::Value>(&card).unwrap()
    );
    let shipped = include_str!("../personas/warm-companion.json");
    assert!(
        c.import_persona(shipped)
            .unwrap_err()
            .to_string()
            .contains("shipped")
    );
    assert!(c.import_persona("{}").is_err());
    // Imported personas survive a restart.
    drop(c);
    let c = open(dir.path(), Config::default());
    assert!(c.has_persona("my-copy"));
    for (text, why) in [
        ("   ", "empty"),
        (&"字".repeat(2001)[..], "2001 characters"),
    ] {
        let err = refused(&c, "my-copy", text);
        assert!(err.contains(why), "{err}");
    }
    assert!(refused(&c, "ghost", "hi").contains("ghost"));
}

/// The error a parked turn is refused with.
fn refused(c: &Companion, persona: &str, text: &str) -> String {
    let cancel = AtomicBool::new(false);
    let turn = Turn {
        persona,
        text,
        lang: None,
        seed: 1,
        vehicle: parked(),
        now: noon(),
        effects: &Recorder::default(),
        cancel: &cancel,
    };
    c.say(turn, &mut |_| {}).unwrap_err().to_string()
}

/// One parked turn with the warm companion, off the async runtime (backends block):
/// the result, the tokens, how long it took.
fn turn_off_runtime(
    c: Arc<Companion>,
    text: &'static str,
) -> tokio::task::JoinHandle<(TurnResult, Vec<String>, Duration)> {
    tokio::task::spawn_blocking(move || {
        let fx = Recorder::default();
        let started = Instant::now();
        let (r, tokens) = say(&c, "warm-companion", text, parked(), 1, &fx);
        (r, tokens, started.elapsed())
    })
}

fn cloud_config(server: &ChatServer, key_file: &std::path::Path) -> Config {
    Config {
        backends: vec!["cloud".into(), "offline".into()],
        cloud_timeout_ms: 1500,
        cloud: Some(CloudConfig {
            base_url: server.base_url.clone(),
            model: "test-model".into(),
            api_key_file: Some(key_file.to_path_buf()),
            ..CloudConfig::default()
        }),
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_backend_streams_and_refused_credentials_fall_back() {
    let server = ChatServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "sk-test-123\n").unwrap();
    let config = cloud_config(&server, &key);
    server
        .then(Script::Text(vec![
            "Hello",
            " Sam! It's",
            " good to hear",
            " from you. How",
            " was the drive?",
        ]))
        .then(Script::Status(401, vec![]));
    let c = Arc::new(open(dir.path().join("state").as_path(), config));
    let turn = |text: &'static str| turn_off_runtime(c.clone(), text);
    let (r, tokens, _) = turn("my name is Sam").await.unwrap();
    assert_eq!(r.backend, "cloud");
    assert_eq!(
        r.text,
        "Hello Sam! It's good to hear from you. How was the drive?"
    );
    assert!(
        tokens.len() >= 2,
        "streamed sentence by sentence: {tokens:?}"
    );
    let seen = &server.requests()[0];
    assert_eq!(seen.authorization, "Bearer sk-test-123");
    assert_eq!(seen.body["stream"], true);
    assert_eq!(seen.body["model"], "test-model");
    let system = seen.body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("Nuan") && !system.contains(&shipped_creator_notes()),
        "creator notes stay out"
    );
    let tools: Vec<&str> = seen.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["set_wallpaper", "drive_status"]);

    let (r, _, _) = turn("hello again").await.unwrap();
    assert_eq!(r.backend, "offline", "401");
    // Refused credentials rest the cloud backend: the next turn does not call it.
    let before = server.requests().len();
    let (r, _, _) = turn("still there?").await.unwrap();
    assert_eq!(
        (r.backend.as_str(), server.requests().len()),
        ("offline", before)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_broken_streams_hangs_and_rate_limits_fall_back() {
    let server = ChatServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "sk-test").unwrap();
    server
        .then(Script::Status(503, vec![]))
        .then(Script::ErrorEvent(vec!["I was about to say. "]))
        .then(Script::Drop(vec!["Half a sentence. "]))
        .then(Script::Hang)
        .then(Script::Text(vec!["Back again."]))
        .then(Script::Status(429, vec![("Retry-After", "60")]));
    let c = Arc::new(open(
        dir.path().join("state").as_path(),
        cloud_config(&server, &key),
    ));
    let turn = |text: &'static str| turn_off_runtime(c.clone(), text);
    for case in ["503", "error event", "dropped stream"] {
        let (r, tokens, _) = turn("tell me about your day").await.unwrap();
        assert_eq!(r.backend, "offline", "{case}");
        assert!(
            !r.text.contains("Half a sentence") && !r.text.contains("about to say"),
            "{case}: {}",
            r.text
        );
        let withdrawn = tokens.iter().position(|t| t.is_empty());
        assert_eq!(
            withdrawn.is_some(),
            case != "503",
            "{case}: what a failed backend streamed is withdrawn: {tokens:?}"
        );
    }
    let (r, _, took) = turn("a hung server").await.unwrap();
    assert_eq!(r.backend, "offline", "hang");
    assert!(
        took < Duration::from_secs(10),
        "the deadline ends a hang: {took:?}"
    );
    let (r, _, _) = turn("and now?").await.unwrap();
    assert_eq!(r.backend, "cloud");
    assert_eq!(r.text, "Back again.");
    let (r, _, _) = turn("rate limited").await.unwrap();
    assert_eq!(r.backend, "offline", "429");
    let before = server.requests().len();
    let (r, _, _) = turn("within Retry-After").await.unwrap();
    assert_eq!(
        (r.backend.as_str(), server.requests().len()),
        ("offline", before),
        "Retry-After is respected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_tool_calls_act_and_are_reported() {
    let server = ChatServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "sk-test").unwrap();
    server
        .then(Script::ToolCall {
            name: "set_wallpaper",
            arguments: r#"{"prompt": "aurora over a lake"}"#,
        })
        .then(Script::Text(vec!["Your aurora wallpaper is on its way."]));
    let c = Arc::new(open(
        dir.path().join("state").as_path(),
        cloud_config(&server, &key),
    ));
    let fx = Arc::new(Recorder::default());
    let (c2, fx2) = (c.clone(), fx.clone());
    let (r, _) = tokio::task::spawn_blocking(move || {
        say(
            &c2,
            "cheerful-copilot",
            "I'd love an aurora wallpaper",
            parked(),
            1,
            fx2.as_ref(),
        )
    })
    .await
    .unwrap();
    assert_eq!(fx.0.lock().unwrap().as_slice(), ["aurora over a lake"]);
    assert_eq!(r.text, "Your aurora wallpaper is on its way.");
    assert_eq!(r.actions.len(), 1);
    assert_eq!(r.actions[0].details["prompt"], "aurora over a lake");
    let second = &server.requests()[1].body;
    let messages = second["messages"].as_array().unwrap();
    let tool = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the tool result goes back");
    assert_eq!(tool["tool_call_id"], "call_abc");
    assert!(tool["content"].as_str().unwrap().contains("/jobs/1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_and_no_network_fall_back_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port, and nothing else can take it while the test runs: the
    // socket holds it bound without listening, so connections are refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = socket.local_addr().unwrap();
    let config = Config {
        backends: vec!["cloud".into()],
        cloud: Some(CloudConfig {
            base_url: format!("http://{closed}/v1"),
            api_key_env: "CABIN_TEST_NO_SUCH_KEY".into(),
            ..CloudConfig::default()
        }),
        ..Config::default()
    };
    let c = open(dir.path(), config);
    assert_eq!(
        c.backend_names(),
        ["cloud", "offline"],
        "the offline engine is always last"
    );
    let fx = Recorder::default();
    let (r, _) =
        tokio::task::spawn_blocking(move || say(&c, "warm-companion", "hello", parked(), 1, &fx))
            .await
            .unwrap();
    assert_eq!(r.backend, "offline");
}

fn shipped_creator_notes() -> String {
    let card: serde_json::Value =
        serde_json::from_str(include_str!("../personas/warm-companion.json")).unwrap();
    card["data"]["creator_notes"]
        .as_str()
        .unwrap()
        .chars()
        .take(30)
        .collect()
}

fn tiny_lm() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures/tiny-lm")
}

fn local_config(model_dir: std::path::PathBuf) -> Config {
    Config {
        backends: vec!["local".into()],
        local: Some(LocalLmConfig {
            model_dir,
            max_new_tokens: 24,
            // the fixture's byte-level tokenizer spends a token per byte of the persona
            max_context: 4096,
            ..LocalLmConfig::default()
        }),
        ..Config::default()
    }
}

#[test]
fn a_conversation_on_the_on_device_model() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), local_config(tiny_lm()));
    assert_eq!(c.backend_names(), ["local", "offline"]);
    let fx = Recorder::default();
    let texts = [
        "hello there",
        "my name is Sam and I like jazz",
        "what should we do this weekend?",
    ];
    let mut replies = Vec::new();
    for text in texts {
        let (r, _) = say(&c, "warm-companion", text, parked(), 7, &fx);
        assert_eq!(r.backend, "local", "{text}");
        assert!(!r.text.trim().is_empty(), "{text}");
        replies.push(r.text);
    }
    // The memory is the companion's, whoever answered.
    assert_eq!(
        c.remembered("warm-companion").facts.name.as_deref(),
        Some("Sam")
    );
    // The driving policy holds for the model's words too.
    let (r, _) = say(
        &c,
        "warm-companion",
        "tell me a story",
        moving(110.0, 10),
        7,
        &fx,
    );
    assert_eq!(r.backend, "local");
    assert!(r.text.chars().count() <= 60, "{}", r.text);
    // The fixture speaks English only: Chinese goes to the offline engine.
    let (r, _) = say(&c, "warm-companion", "你好", parked(), 7, &fx);
    assert_eq!(r.backend, "offline");
    assert!(r.text.chars().any(is_cjk), "{}", r.text);

    // Same seed, same words: a fresh companion replays the conversation.
    let again_dir = tempfile::tempdir().unwrap();
    let again = open(again_dir.path(), local_config(tiny_lm()));
    for (text, before) in texts.iter().zip(&replies) {
        let (r, _) = say(&again, "warm-companion", text, parked(), 7, &fx);
        assert_eq!(&r.text, before, "{text}");
    }
}

#[test]
fn a_missing_or_slow_on_device_model_falls_back_to_offline() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Recorder::default();
    let c = open(dir.path(), local_config("/nonexistent/lm".into()));
    let (r, _) = say(&c, "warm-companion", "hello", parked(), 1, &fx);
    assert_eq!(r.backend, "offline");

    let slow = Config {
        local_timeout_ms: 1,
        ..local_config(tiny_lm())
    };
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), slow);
    let (r, _) = say(&c, "warm-companion", "hello", parked(), 1, &fx);
    assert_eq!(r.backend, "offline");
}

#[test]
fn an_idle_on_device_model_is_unloaded_and_loads_again() {
    use cabin_companion::local_lm::LocalLmBackend;
    let backend = LocalLmBackend::new(LocalLmConfig {
        model_dir: tiny_lm(),
        max_context: 4096,
        max_new_tokens: 8,
        idle_unload_secs: 1,
        ..LocalLmConfig::default()
    })
    .unwrap();
    assert!(!backend.is_loaded(), "nothing loads before the first reply");
    let card =
        cabin_companion::persona::Card::parse(include_str!("../personas/warm-companion.json"))
            .unwrap();
    let memory = cabin_companion::memory::Memory::default();
    let vehicle = parked();
    let allowed: Vec<String> = Vec::new();
    let fx = Recorder::default();
    let tools = cabin_companion::tools::ToolBox::new(&allowed, &fx, &vehicle);
    let request = Request {
        card: &card,
        lang: "en",
        text: "hello",
        user: "friend".into(),
        memory: &memory,
        mood: cabin_companion::mood::detect("hello"),
        care: Default::default(),
        vehicle: &vehicle,
        lore: Vec::new(),
        max_chars: 120,
        seed: 1,
        tools: &tools,
    };
    let reply = |b: &LocalLmBackend| {
        b.respond(
            &request,
            Instant::now() + Duration::from_secs(30),
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap()
    };
    // A language the model does not speak is refused without loading it.
    let chinese = Request {
        card: &card,
        lang: "zh",
        text: "你好",
        user: "朋友".into(),
        memory: &memory,
        mood: cabin_companion::mood::detect("你好"),
        care: Default::default(),
        vehicle: &vehicle,
        lore: Vec::new(),
        max_chars: 120,
        seed: 1,
        tools: &tools,
    };
    let refused = backend.respond(
        &chinese,
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert!(
        matches!(refused, Err(BackendError::Unavailable(_))),
        "{:?}",
        refused.err()
    );
    assert!(!backend.is_loaded());

    // A reply due now does not wait for the load: it is refused at once, the load goes on in
    // the background, and the model is there for the next reply.
    let hurried = backend.respond(
        &request,
        Instant::now(),
        &mut |_| {},
        &AtomicBool::new(false),
    );
    match hurried {
        Err(BackendError::Unavailable(why)) => assert!(why.contains("loading"), "{why}"),
        other => panic!("{:?}", other.map(|d| d.text)),
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !backend.is_loaded() {
        assert!(
            Instant::now() < deadline,
            "the background load never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let first = reply(&backend);
    assert!(backend.is_loaded());
    let deadline = Instant::now() + Duration::from_secs(20);
    while backend.is_loaded() {
        assert!(Instant::now() < deadline, "still loaded after 20 s idle");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Loaded again on demand, with the same words for the same seed.
    assert_eq!(reply(&backend).text, first.text);
    assert!(backend.is_loaded());
}
