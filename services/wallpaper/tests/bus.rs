//! `org.cabin.Wallpaper1` against a private dbus-daemon, the service running as its own
//! process (`cabin-wallpaperd`) on the tiny SD fixture model: the live contract, a zbus
//! client and an independent one (busctl) generating, following, cancelling, applying and
//! opening pictures; restarts after a hard kill; a simulated day at 1000x; bad input.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cabin_common::vehicle::VehicleState;
use cabin_contracts::wallpaper::{JobProxy, Wallpaper1Proxy as WallpaperProxy};
use cabin_testbus::{
    ServiceProcess, TestBus, eventually, interface_members, introspect, wait_for_name,
};
use cabin_wallpaper::daemon::{BUS_NAME, INTERFACE, INTROSPECTION_XML, JOB_INTERFACE, OBJECT_PATH};
use futures_util::StreamExt;
use zbus::{OwnedVariant, Variant};

const BIN: &str = env!("CARGO_BIN_EXE_cabin-wallpaperd");
const WAIT: Duration = Duration::from_secs(60);

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures/tiny-sd")
}

struct Service {
    process: Option<ServiceProcess>,
    conn: zbus::Connection,
    config: PathBuf,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

/// Config for the fixture model; `extra` is more TOML.
async fn start(bus: &TestBus, extra: &str) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wallpaper.toml");
    std::fs::write(
        &config,
        format!(
            "model_dir = {:?}\njob_linger_secs = 30\n{extra}\n",
            fixture().display().to_string()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut service = Service {
        process: None,
        conn: bus.connect().await.unwrap(),
        config,
        state,
        _dir: dir,
    };
    service.spawn(bus).await;
    service
}

impl Service {
    async fn spawn(&mut self, bus: &TestBus) -> Duration {
        let started = Instant::now();
        let process = ServiceProcess::spawn(
            BIN,
            &[
                "--bus",
                bus.address(),
                "--config",
                self.config.to_str().unwrap(),
                "--state-dir",
                self.state.to_str().unwrap(),
            ],
        )
        .unwrap();
        assert!(
            wait_for_name(&self.conn, BUS_NAME, WAIT).await,
            "cabin-wallpaperd never took its name"
        );
        self.process = Some(process);
        started.elapsed()
    }

    /// Like a power cut: SIGKILL, no chance to tidy up.
    async fn kill(&mut self) {
        drop(self.process.take());
        let dbus = zbus::fdo::DBusProxy::new(&self.conn).await.unwrap();
        assert!(
            eventually(WAIT, || {
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

    async fn proxy(&self) -> WallpaperProxy<'static> {
        WallpaperProxy::new(&self.conn).await.unwrap()
    }

    async fn job(&self, path: &zbus::OwnedObjectPath) -> JobProxy<'static> {
        JobProxy::builder(&self.conn)
            .path(path.clone())
            .build()
            .await
            .unwrap()
    }
}

fn options(pairs: &[(&'static str, Variant<'static>)]) -> HashMap<&'static str, Variant<'static>> {
    pairs.iter().cloned().collect()
}

fn busctl(bus: &TestBus, args: &[&str]) -> std::process::Output {
    bus.busctl(args).expect("busctl runs")
}

fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => format!("{other:?}"),
    }
}

async fn wait_state(job: &JobProxy<'_>, want: &str) -> bool {
    eventually(WAIT, || async {
        job.state().await.ok().as_deref() == Some(want)
    })
    .await
}

fn png_luma(bytes: &[u8]) -> (u32, u32, f64) {
    let image = image::load_from_memory(bytes).unwrap().to_rgb32f();
    let n = f64::from(image.width() * image.height());
    let luma: f64 = image
        .pixels()
        .map(|p| 0.2126 * f64::from(p[0]) + 0.7152 * f64::from(p[1]) + 0.0722 * f64::from(p[2]))
        .sum();
    (image.width(), image.height(), luma / n)
}

#[tokio::test]
async fn live_export_matches_the_committed_contract() {
    let bus = TestBus::start().unwrap();
    let service = start(&bus, "").await;
    let live = introspect(&service.conn, BUS_NAME, OBJECT_PATH)
        .await
        .unwrap();
    let committed = interface_members(INTROSPECTION_XML, INTERFACE);
    assert!(committed.len() > 10);
    assert_eq!(interface_members(&live, INTERFACE), committed);

    let wallpaper = service.proxy().await;
    let path = wallpaper
        .generate("sea at dusk", options(&[("steps", Variant::from(2u32))]))
        .await
        .unwrap();
    let live = introspect(&service.conn, BUS_NAME, path.as_str())
        .await
        .unwrap();
    let committed = interface_members(INTROSPECTION_XML, JOB_INTERFACE);
    assert!(committed.len() > 5);
    assert_eq!(interface_members(&live, JOB_INTERFACE), committed);
}

#[tokio::test]
async fn generate_follow_progress_apply_and_open_with_zbus() {
    let bus = TestBus::start().unwrap();
    let service = start(&bus, "").await;
    let wallpaper = service.proxy().await;
    let mut changes = wallpaper.receive_changed().await.unwrap();
    assert_eq!(
        wallpaper.displays().await.unwrap(),
        [("center".to_string(), 1920, 720)]
    );
    assert_eq!(
        wallpaper.model_info().await.unwrap()["name"],
        OwnedVariant::try_from(Variant::from("tiny-sd-fixture")).unwrap()
    );

    let path = wallpaper
        .generate(
            "snowy mountains at dusk",
            options(&[
                ("steps", Variant::from(5u32)),
                ("seed", Variant::from(42u64)),
            ]),
        )
        .await
        .unwrap();
    let job = service.job(&path).await;
    let mut progress = job.receive_progress_step().await.unwrap();
    let mut done = job.receive_done().await.unwrap();
    assert_eq!(job.prompt().await.unwrap(), "snowy mountains at dusk");

    // Progress arrives step by step with a readable PNG preview behind the descriptor.
    let step = tokio::time::timeout(WAIT, progress.next())
        .await
        .unwrap()
        .unwrap();
    let args = step.args().unwrap();
    assert_eq!(*args.total(), 5);
    let mut preview = Vec::new();
    std::fs::File::from(
        std::os::fd::AsFd::as_fd(args.preview_png())
            .try_clone_to_owned()
            .unwrap(),
    )
    .read_to_end(&mut preview)
    .unwrap();
    assert!(image::load_from_memory(&preview).is_ok());

    let done = tokio::time::timeout(WAIT, done.next())
        .await
        .unwrap()
        .unwrap();
    let image_id = done.args().unwrap().image_id().clone();
    assert_eq!(job.state().await.unwrap(), "done");
    assert_eq!(job.image_id().await.unwrap(), image_id);
    assert!((job.progress().await.unwrap() - 1.0).abs() < 1e-9);

    // Applied by default: Changed names it, with a transition hint, and Current follows.
    let changed = tokio::time::timeout(WAIT, changes.next())
        .await
        .unwrap()
        .unwrap();
    let args = changed.args().unwrap();
    assert_eq!(args.image_id(), &image_id);
    assert_eq!(args.phase(), &wallpaper.phase().await.unwrap());
    let hints = args.hints();
    assert!(u32::try_from(&hints["transition_ms"]).unwrap() > 0);
    assert_eq!(
        String::try_from(hints["reason"].try_clone().unwrap()).unwrap(),
        "requested"
    );
    assert_eq!(wallpaper.current().await.unwrap(), image_id);
    let shown = std::fs::read(wallpaper.current_path().await.unwrap()).unwrap();
    assert_eq!(png_luma(&shown).0, 1920);

    // Open hands a read-only descriptor of a PNG sized for the display.
    let fd = wallpaper.open(&image_id, "center").await.unwrap();
    let mut file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
    let mut png = Vec::new();
    file.read_to_end(&mut png).unwrap();
    let (width, height, _) = png_luma(&png);
    assert_eq!((width, height), (1920, 720));
    use std::io::Write;
    assert!(
        file.write_all(b"x").is_err(),
        "the descriptor must be read-only"
    );

    // A second picture, not applied; then applied by id; history lists both, newest use first.
    let second = wallpaper
        .generate(
            "forest",
            options(&[
                ("steps", Variant::from(2u32)),
                ("apply", Variant::from(false)),
            ]),
        )
        .await
        .unwrap();
    let second = service.job(&second).await;
    assert!(wait_state(&second, "done").await);
    let second_id = second.image_id().await.unwrap();
    assert_eq!(wallpaper.current().await.unwrap(), image_id);
    wallpaper.apply(&second_id).await.unwrap();
    assert_eq!(wallpaper.current().await.unwrap(), second_id);
    let history = wallpaper.history(10).await.unwrap();
    let ids: Vec<String> = history
        .iter()
        .map(|e| String::try_from(e["id"].try_clone().unwrap()).unwrap())
        .collect();
    assert_eq!(ids, [second_id.clone(), image_id.clone()]);

    // Delete: gone from history, and opening it is NotFound.
    wallpaper.delete(&image_id).await.unwrap();
    assert_eq!(wallpaper.history(10).await.unwrap().len(), 1);
    let err = wallpaper.open(&image_id, "center").await.unwrap_err();
    assert_eq!(error_name(&err), "org.cabin.Error.NotFound");
}

#[tokio::test]
async fn busctl_cancels_running_and_queued_jobs_and_a_full_queue_is_busy() {
    let bus = TestBus::start().unwrap();
    let service = start(&bus, "[queue]\nmax_queued = 1").await;
    let call = |args: &[&str]| {
        let mut full = vec!["call", BUS_NAME, OBJECT_PATH, INTERFACE];
        full.extend_from_slice(args);
        busctl(&bus, &full)
    };
    let job_path = |out: &std::process::Output| {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.trim()
            .trim_start_matches("o ")
            .trim_matches('"')
            .to_string()
    };
    let long = job_path(&call(&[
        "Generate",
        "sa{sv}",
        "starry night",
        "1",
        "steps",
        "u",
        "400",
    ]));
    let long_proxy = service.job(&long.as_str().try_into().unwrap()).await;
    assert!(wait_state(&long_proxy, "running").await);
    let queued = job_path(&call(&[
        "Generate", "sa{sv}", "desert", "1", "steps", "u", "3",
    ]));
    let queued_proxy = service.job(&queued.as_str().try_into().unwrap()).await;
    assert_eq!(queued_proxy.state().await.unwrap(), "queued");
    assert!(service.proxy().await.busy().await.unwrap());

    // Running one plus one queued: the next is refused by name.
    let full = call(&["Generate", "sa{sv}", "lake", "0"]);
    assert!(!full.status.success());
    assert!(
        String::from_utf8_lossy(&full.stderr).contains("queue is full"),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let err = service
        .proxy()
        .await
        .generate("lake", HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "org.cabin.Error.Busy");

    // Cancel the queued one: at once. Then the running one: within a step.
    let cancel = |path: &str| busctl(&bus, &["call", BUS_NAME, path, JOB_INTERFACE, "Cancel"]);
    assert!(cancel(&queued).status.success());
    assert!(wait_state(&queued_proxy, "cancelled").await);
    let mut failed = long_proxy.receive_failed().await.unwrap();
    assert!(cancel(&long).status.success());
    let signal = tokio::time::timeout(WAIT, failed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        signal.args().unwrap().error_name(),
        "org.cabin.Error.Cancelled"
    );
    assert!(wait_state(&long_proxy, "cancelled").await);
    assert!(
        eventually(WAIT, || async {
            !service.proxy().await.busy().await.unwrap()
        })
        .await
    );
    // Nothing was applied.
    assert_eq!(service.proxy().await.current().await.unwrap(), "");
}

#[tokio::test]
async fn bad_options_are_invalid_arguments() {
    let bus = TestBus::start().unwrap();
    let service = start(&bus, "").await;
    let wallpaper = service.proxy().await;
    let huge = "x".repeat(10_000);
    let cases: Vec<(&str, HashMap<&str, Variant<'_>>)> = vec![
        ("", HashMap::new()),
        (&huge, HashMap::new()),
        ("sea", options(&[("steps", Variant::from("four"))])),
        ("sea", options(&[("steps", Variant::from(0u32))])),
        ("sea", options(&[("steps", Variant::from(1_000_000u32))])),
        ("sea", options(&[("guidance", Variant::from(f64::NAN))])),
        ("sea", options(&[("guidance", Variant::from("high"))])),
        ("sea", options(&[("seed", Variant::from(-1i32))])),
        ("sea", options(&[("display", Variant::from("rear"))])),
        ("sea", options(&[("apply", Variant::from(1u32))])),
        ("sea", options(&[("colour", Variant::from("red"))])),
    ];
    for (prompt, opts) in cases {
        let err = wallpaper.generate(prompt, opts.clone()).await.unwrap_err();
        assert_eq!(
            error_name(&err),
            "org.cabin.Error.InvalidArgument",
            "{} {opts:?}",
            prompt.chars().take(20).collect::<String>()
        );
    }
    for (id, name) in [
        ("../../etc/passwd", "org.cabin.Error.InvalidArgument"),
        ("nope", "org.cabin.Error.NotFound"),
    ] {
        assert_eq!(error_name(&wallpaper.apply(id).await.unwrap_err()), name);
        assert_eq!(error_name(&wallpaper.delete(id).await.unwrap_err()), name);
        assert_eq!(
            error_name(&wallpaper.open(id, "center").await.unwrap_err()),
            name
        );
    }
    // busctl with a wrong type, an independent client.
    let out = busctl(
        &bus,
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            INTERFACE,
            "Generate",
            "sa{sv}",
            "sea",
            "1",
            "seed",
            "s",
            "x",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("seed must be an unsigned integer"));
    // Still serving after all that.
    assert!(wallpaper.history(1).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_hard_kill_loses_nothing_and_the_name_comes_back_fast() {
    let bus = TestBus::start().unwrap();
    let mut service = start(&bus, "").await;
    let wallpaper = service.proxy().await;
    let path = wallpaper
        .generate(
            "city skyline at night",
            options(&[("steps", Variant::from(2u32))]),
        )
        .await
        .unwrap();
    let job = service.job(&path).await;
    assert!(wait_state(&job, "done").await);
    let id = job.image_id().await.unwrap();
    wallpaper.set_time_aware(false).await.unwrap();
    service.kill().await;

    let took = service.spawn(&bus).await;
    eprintln!("bus name owned {took:?} after exec (debug build, model not loaded)");
    let wallpaper = service.proxy().await;
    assert_eq!(wallpaper.current().await.unwrap(), id);
    assert!(!wallpaper.time_aware().await.unwrap());
    assert_eq!(wallpaper.history(5).await.unwrap().len(), 1);
    assert!(std::fs::read(wallpaper.current_path().await.unwrap()).is_ok());
    let info = wallpaper.model_info().await.unwrap();
    assert!(
        !bool::try_from(&info["loaded"]).unwrap(),
        "the model loads lazily"
    );
}

/// A simulated day at 1000x: the phase walks night → twilights → golden hour → day and back,
/// and every picture shown in the dark stays under the night luminance cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_day_follows_the_sun_and_caps_the_night() {
    let bus = TestBus::start().unwrap();
    // The vehicle: Oslo, 22 March, starting 00:00 UTC at 1000x.
    let start_at = chrono::DateTime::parse_from_rfc3339("2026-03-22T00:00:00Z")
        .unwrap()
        .to_utc();
    let vehicle = VehicleState {
        latitude: 59.9139,
        longitude: 10.7522,
        ..VehicleState::default()
    };
    let publisher = cabin_vehicle_sim::Publisher::start(
        &cabin_common::bus::BusChoice::Address(bus.address().to_string()),
        &cabin_vehicle_sim::Config {
            vehicle,
            ..cabin_vehicle_sim::Config::default()
        },
    )
    .await
    .unwrap();
    let service = start(&bus, "reevaluate_secs = 120").await;
    let wallpaper = service.proxy().await;
    // A picture with its phase variants, made while the clock stands still.
    let pause = |ms: i64, rate: f64| {
        let (ms, rate) = (Variant::from(ms), Variant::from(rate));
        let publisher = &publisher;
        async move {
            let conn = publisher.connection();
            conn.call_method(
                Some("org.cabin.Vehicle1"),
                "/org/cabin/Vehicle1",
                Some("org.cabin.Vehicle1"),
                "SetClock",
                &(i64::try_from(&ms).unwrap(), f64::try_from(&rate).unwrap()),
            )
            .await
            .unwrap();
        }
    };
    pause(start_at.timestamp_millis(), 0.0).await;
    let path = wallpaper
        .generate(
            "lake at dusk",
            options(&[
                ("steps", Variant::from(3u32)),
                ("seed", Variant::from(5u64)),
            ]),
        )
        .await
        .unwrap();
    let job = service.job(&path).await;
    assert!(wait_state(&job, "done").await);
    let id = job.image_id().await.unwrap();
    assert!(
        eventually(WAIT, || async {
            let history = wallpaper.history(1).await.unwrap();
            <Vec<String>>::try_from(history[0]["variants"].try_clone().unwrap())
                .unwrap()
                .len()
                == 4
        })
        .await,
        "the phase variants were never made"
    );

    let mut changes = wallpaper.receive_changed().await.unwrap();
    let mut phases = wallpaper.receive_phase_changed().await;
    pause(start_at.timestamp_millis(), 1000.0).await;
    let mut seen = vec![wallpaper.phase().await.unwrap()];
    let dark = ["night", "astronomical_twilight", "nautical_twilight"];
    let mut dark_lumas = Vec::new();
    let mut shown_changes = 0;
    // 24 simulated hours take 86.4 s; stop once the evening is back to night. The deadline
    // leaves room for a loaded CI machine (90 s once fell short while other tests ran).
    let deadline = Instant::now() + Duration::from_secs(150);
    while Instant::now() < deadline {
        tokio::select! {
            Some(change) = changes.next() => {
                let args = change.args().unwrap();
                assert_eq!(args.image_id(), &id);
                shown_changes += 1;
                if dark.contains(&args.phase().as_str()) {
                    let png = std::fs::read(wallpaper.current_path().await.unwrap()).unwrap();
                    dark_lumas.push(png_luma(&png).2);
                }
            }
            Some(phase) = phases.next() => {
                let phase = phase.get().await.unwrap();
                if seen.last() != Some(&phase) {
                    seen.push(phase);
                }
                if seen.len() >= 11 {
                    break;
                }
            }
        }
    }
    let expected = [
        "night",
        "astronomical_twilight",
        "nautical_twilight",
        "civil_twilight",
        "golden_hour",
        "day",
        "golden_hour",
        "civil_twilight",
        "nautical_twilight",
        "astronomical_twilight",
        "night",
    ];
    assert_eq!(seen, expected);
    assert!(
        shown_changes >= 6,
        "only {shown_changes} changes shown over a day"
    );
    // And what shows now, back in the night.
    let png = std::fs::read(wallpaper.current_path().await.unwrap()).unwrap();
    dark_lumas.push(png_luma(&png).2);
    assert!(dark_lumas.len() >= 2, "no picture shown in the dark");
    for luma in dark_lumas {
        // The cap is 0.25 on the composed picture; resizing and dithering move it a hair.
        assert!(luma <= 0.255, "picture in the dark with mean luma {luma}");
    }
}

/// While the car moves a requested picture still cross-fades (a longer one), and the hint
/// says the car moves; the times come from the config.
#[tokio::test]
async fn while_driving_changes_carry_long_transitions() {
    let bus = TestBus::start().unwrap();
    let service = start(
        &bus,
        "[vehicle]\nspeed_kmh = 80.0\ngear = \"D\"\n[transitions]\nrequested_moving_ms = 4500",
    )
    .await;
    let wallpaper = service.proxy().await;
    let mut changes = wallpaper.receive_changed().await.unwrap();
    wallpaper
        .generate(
            "cherry blossoms",
            options(&[("steps", Variant::from(2u32))]),
        )
        .await
        .unwrap();
    let changed = tokio::time::timeout(WAIT, changes.next())
        .await
        .unwrap()
        .unwrap();
    let args = changed.args().unwrap();
    let hints = args.hints();
    assert!(bool::try_from(&hints["moving"]).unwrap());
    assert_eq!(u32::try_from(&hints["transition_ms"]).unwrap(), 4500);
}
