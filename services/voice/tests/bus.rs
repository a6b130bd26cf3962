//! `cabin-voiced` as its own process on a private `dbus-daemon`, routing to the real
//! wallpaper (tiny fixture model), companion and feedback services and the vehicle
//! simulator; and `cabinctl`, the exec hook, doing the same from a shell.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use cabin_common::bus::BusChoice;
use cabin_contracts::feedback::Feedback1Proxy;
use cabin_contracts::voice::Voice1Proxy;
use cabin_contracts::wallpaper::Wallpaper1Proxy;
use cabin_testbus::{
    ServiceProcess, TestBus, eventually, interface_members, introspect, wait_for_name,
};
use cabin_voice::daemon::{BUS_NAME, INTERFACE, INTROSPECTION_XML, OBJECT_PATH};
use zbus::Variant;

const VOICED: &str = env!("CARGO_BIN_EXE_cabin-voiced");
const CABINCTL: &str = env!("CARGO_BIN_EXE_cabinctl");

fn ctl(bus: &TestBus, args: &[&str]) -> (i32, String) {
    let out = Command::new(CABINCTL)
        .arg("--bus")
        .arg(bus.address())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utterances_reach_the_services_that_own_them() {
    let bus = TestBus::start().unwrap();
    let choice = BusChoice::Address(bus.address().to_string());
    let conn = bus.connect().await.unwrap();
    let vehicle =
        cabin_vehicle_sim::Publisher::start(&choice, &cabin_vehicle_sim::Config::default())
            .await
            .unwrap();
    let _voiced = ServiceProcess::spawn(VOICED, &["--bus", bus.address()]).unwrap();
    assert!(wait_for_name(&conn, BUS_NAME, Duration::from_secs(20)).await);
    let voice = Voice1Proxy::new(&conn).await.unwrap();
    let handle = |u: &'static str| {
        let voice = voice.clone();
        async move { voice.handle(u, "", HashMap::new()).await.unwrap() }
    };

    // The live export is the committed contract.
    let xml = introspect(&conn, BUS_NAME, OBJECT_PATH).await.unwrap();
    assert_eq!(
        interface_members(&xml, INTERFACE),
        interface_members(INTROSPECTION_XML, INTERFACE)
    );

    // Services absent: understood, not handled, and the reply says why.
    let (handled, reply, intent) = handle("陪我聊聊天").await;
    assert_eq!((handled, intent.as_str()), (false, "companion.chat"));
    assert!(reply.contains("不可用"), "{reply}");

    // Now the real services.
    let dir = tempfile::tempdir().unwrap();
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures/tiny-sd");
    let wallpaper_config = cabin_wallpaper::daemon::Config {
        model_dir: Some(model),
        ..Default::default()
    };
    let _wallpaper =
        cabin_wallpaper::daemon::serve(&choice, wallpaper_config, &dir.path().join("wallpaper"))
            .await
            .unwrap();
    let _companion = cabin_companion::daemon::serve(
        &choice,
        cabin_companion::Config::default(),
        &dir.path().join("companion"),
    )
    .await
    .unwrap();
    let _feedback = cabin_feedback::daemon::serve(
        &choice,
        cabin_feedback::daemon::Config::default(),
        &dir.path().join("feedback"),
    )
    .await
    .unwrap();
    let wallpaper = Wallpaper1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();

    let (handled, reply, intent) = handle("嗯 那个 换一张雪山的壁纸").await;
    assert_eq!(
        (handled, intent.as_str()),
        (true, "wallpaper.generate"),
        "{reply}"
    );
    assert!(reply.contains("雪山"), "{reply}");
    assert!(
        eventually(Duration::from_secs(120), || {
            let w = wallpaper.clone();
            async move { w.current().await.is_ok_and(|c| !c.is_empty()) }
        })
        .await,
        "a wallpaper is on show"
    );
    let (handled, reply, intent) = handle("what's my wallpaper").await;
    assert_eq!((handled, intent.as_str()), (true, "status.wallpaper"));
    assert!(reply.contains("雪山"), "{reply}");

    let (handled, _, intent) = handle("turn off time wallpaper").await;
    assert_eq!((handled, intent.as_str()), (true, "wallpaper.time_aware"));
    assert!(!wallpaper.time_aware().await.unwrap());
    let (handled, _, _) = handle("壁纸跟随时间变化").await;
    assert!(handled);
    assert!(wallpaper.time_aware().await.unwrap());

    let driven = Variant::from(5400u64);
    vehicle.apply(&[("DrivingTime", &driven)]).await.unwrap();
    let (handled, reply, intent) = handle("我开了多久了").await;
    assert_eq!((handled, intent.as_str()), (true, "status.drive_time"));
    assert!(reply.contains("1小时30分钟"), "{reply}");

    let (handled, reply, intent) = handle("I'm tired").await;
    assert_eq!((handled, intent.as_str()), (true, "companion.chat"));
    assert!(
        reply.len() > 10 && !reply.chars().any(cabin_text::is_han),
        "{reply}"
    );
    let (handled, reply, _) = handle("讲个笑话").await;
    assert!(handled && reply.chars().any(cabin_text::is_han), "{reply}");

    let (handled, reply, intent) = handle("反馈一下，导航老是卡").await;
    assert_eq!(
        (handled, intent.as_str()),
        (true, "feedback.submit"),
        "{reply}"
    );
    let (handled, _, _) = handle("report a problem: the seat heater doesn't work").await;
    assert!(handled);
    let feedback = Feedback1Proxy::new(&conn).await.unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&feedback.summary(0, 0, HashMap::new()).await.unwrap()).unwrap();
    let text = summary.to_string();
    assert!(
        text.contains("导航") && text.contains("seat heater"),
        "{text}"
    );

    let (handled, reply, intent) = handle("打开车窗").await;
    assert_eq!((handled, intent.as_str()), (false, "car.command"));
    assert!(!reply.is_empty());

    // Context and errors.
    let low = HashMap::from([("confidence", Variant::from(0.1))]);
    let (handled, _, _) = voice.handle("换一张星空壁纸", "", low).await.unwrap();
    assert!(!handled, "a low-confidence recognition does nothing");
    let (_, reply, _) = voice
        .handle(
            "I'm tired",
            "zh-CN",
            HashMap::from([("persona", Variant::from("night-drive-friend"))]),
        )
        .await
        .unwrap();
    assert!(
        reply.chars().any(cabin_text::is_han),
        "locale zh-CN answers in Chinese: {reply}"
    );
    for (locale, context, why) in [
        ("fr-FR", HashMap::new(), "locale"),
        (
            "",
            HashMap::from([("mood", Variant::from("x"))]),
            "unknown context key",
        ),
        (
            "",
            HashMap::from([("confidence", Variant::from("high"))]),
            "confidence",
        ),
        ("", HashMap::from([("hour", Variant::from(25u32))]), "hour"),
    ] {
        match voice.handle("hi", locale, context).await.unwrap_err() {
            zbus::Error::MethodError(name, message, _) => {
                assert_eq!(name.as_str(), "org.cabin.Error.InvalidArgument");
                assert!(message.unwrap_or_default().contains(why));
            }
            other => panic!("{other}"),
        }
    }
    assert!(
        voice
            .handle(&"字".repeat(1001), "", HashMap::new())
            .await
            .is_err()
    );

    // cabinctl: the same from a shell.
    let (code, out) = ctl(&bus, &["intent", "来个星空壁纸"]);
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            code,
            parsed["intent"].as_str(),
            parsed["slots"]["scene"].as_str()
        ),
        (0, Some("wallpaper.generate"), Some("星空"))
    );
    let (code, out) = ctl(&bus, &["voice", "--json", "what's my wallpaper"]);
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (code, answer["handled"].as_bool(), answer["intent"].as_str()),
        (0, Some(true), Some("status.wallpaper"))
    );
    let (code, out) = ctl(&bus, &["say", "hello there"]);
    assert!(code == 0 && !out.is_empty(), "{out}");
    let (code, out) = ctl(&bus, &["submit", "the horn is too quiet"]);
    assert!(code == 0 && !out.is_empty(), "{out}");
    let (code, _) = ctl(&bus, &["voice", "set the temperature to 22 degrees"]);
    assert_eq!(code, 2, "not handled");
    let before = wallpaper.current().await.unwrap();
    let (code, out) = ctl(&bus, &["generate", "--wait", "aurora over a lake"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().count() == 2 && out.starts_with("/org/cabin/Wallpaper1/jobs/"),
        "{out}"
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            let w = wallpaper.clone();
            let b = before.clone();
            async move { w.current().await.is_ok_and(|c| c != b) }
        })
        .await
    );

    // An unsure command is asked back, and this caller's "no" drops it.
    let (handled, reply, intent) = handle("雪山").await;
    assert_eq!(
        (handled, reply.as_str(), intent.as_str()),
        (false, "要换成雪山壁纸吗？", "wallpaper.generate")
    );
    let (handled, reply, _) = handle("不用了").await;
    assert_eq!((handled, reply.as_str()), (true, "好的，那就不了。"));

    // The hour that picks a scene for "a new one" is the vehicle's, not the desktop's: the
    // simulator's clock at 01:30 and then at 02:30 local time gives two different scenes.
    for (hour, scene) in [(1, "雪山"), (2, "星空")] {
        use chrono::TimeZone;
        let now = chrono::Utc::now();
        let local = chrono::Local::now()
            .date_naive()
            .and_hms_opt(hour, 30, 0)
            .unwrap();
        let sim = chrono::Local
            .from_local_datetime(&local)
            .earliest()
            .unwrap();
        let (real_ms, sim_ms) = (
            Variant::from(now.timestamp_millis()),
            Variant::from(sim.timestamp_millis()),
        );
        vehicle
            .apply(&[("ClockRealAnchor", &real_ms), ("ClockSimAnchor", &sim_ms)])
            .await
            .unwrap();
        // The property change reaches cabin-voiced asynchronously: ask until it has.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (handled, reply, _) = handle("换个壁纸").await;
            if handled && reply.contains(scene) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{hour}: {reply}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
