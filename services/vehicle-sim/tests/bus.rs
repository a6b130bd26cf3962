//! `org.cabin.Vehicle1` against a private dbus-daemon: the live contract, independent clients
//! (busctl, a second process following through the vehicle-context client) and bad input.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cabin_common::vehicle::dbus::DbusVehicle;
use cabin_common::vehicle::{
    BUS_NAME, INTERFACE, INTROSPECTION_XML, OBJECT_PATH, VehicleSource, VehicleState,
};
use cabin_testbus::{
    ServiceProcess, TestBus, eventually, interface_members, introspect, wait_for_name,
};

const BIN: &str = env!("CARGO_BIN_EXE_cabin-vehicle-sim");
const WAIT: Duration = Duration::from_secs(10);

async fn start(bus: &TestBus, extra: &[&str]) -> (ServiceProcess, zbus::Connection) {
    let mut args = vec!["--bus", bus.address()];
    args.extend_from_slice(extra);
    let process = ServiceProcess::spawn(BIN, &args).unwrap();
    let conn = bus.connect().await.unwrap();
    assert!(
        wait_for_name(&conn, BUS_NAME, WAIT).await,
        "cabin-vehicle-sim never took its name"
    );
    (process, conn)
}

fn busctl(bus: &TestBus, args: &[&str]) -> std::process::Output {
    bus.busctl(args).expect("busctl runs")
}

#[tokio::test]
async fn live_export_matches_the_committed_contract() {
    let bus = TestBus::start().unwrap();
    let (_sim, conn) = start(&bus, &[]).await;
    let live = introspect(&conn, BUS_NAME, OBJECT_PATH).await.unwrap();
    let committed = interface_members(INTROSPECTION_XML, INTERFACE);
    assert!(!committed.is_empty());
    assert_eq!(interface_members(&live, INTERFACE), committed);

    // And busctl, an independent client, sees the interface.
    let out = busctl(&bus, &["introspect", BUS_NAME, OBJECT_PATH]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("org.cabin.Vehicle1") && text.contains(".Speed"),
        "{text}"
    );
}

#[tokio::test]
async fn busctl_changes_reach_a_second_process() {
    let bus = TestBus::start().unwrap();
    let (_sim, _conn) = start(&bus, &[]).await;
    let mut watcher = Command::new(BIN)
        .args(["--bus", bus.address(), "watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let first: VehicleState = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first, VehicleState::default());

    let out = busctl(
        &bus,
        &[
            "set-property",
            BUS_NAME,
            OBJECT_PATH,
            INTERFACE,
            "Speed",
            "d",
            "72.5",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = busctl(
        &bus,
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            INTERFACE,
            "Update",
            "a{sv}",
            "3",
            "Gear",
            "s",
            "D",
            "Latitude",
            "d",
            "59.91",
            "Longitude",
            "d",
            "10.75",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let seen = (0..10).find_map(|_| {
        let line = lines.next()?.ok()?;
        let state: VehicleState = serde_json::from_str(&line).ok()?;
        (state.speed_kmh == 72.5 && state.latitude == 59.91 && state.longitude == 10.75)
            .then_some(state)
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    let seen = seen.expect("the watcher never saw the busctl changes");
    assert_eq!(seen.gear.as_str(), "D");
}

#[tokio::test]
async fn bad_input_is_a_named_error_and_changes_nothing() {
    let bus = TestBus::start().unwrap();
    let (_sim, conn) = start(&bus, &[]).await;
    let vehicle = DbusVehicle::follow(&conn).await.unwrap();

    let out = busctl(
        &bus,
        &[
            "set-property",
            BUS_NAME,
            OBJECT_PATH,
            INTERFACE,
            "Speed",
            "d",
            "500",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside 0..=400"));

    let proxy = zbus::Proxy::new(&conn, BUS_NAME, OBJECT_PATH, INTERFACE)
        .await
        .unwrap();
    let bad: Vec<(&str, zbus::Variant<'_>)> = vec![("Speed", 30.0.into()), ("Gear", "X".into())];
    let bad: std::collections::HashMap<_, _> = bad.into_iter().collect();
    let err = proxy.call_method("Update", &(bad,)).await.unwrap_err();
    match err {
        zbus::Error::MethodError(name, Some(message), _) => {
            assert_eq!(name.as_str(), "org.cabin.Error.InvalidArgument");
            assert!(message.contains("`X` is not a gear"), "{message}");
        }
        other => panic!("expected a named error, got {other:?}"),
    }
    let err = proxy
        .call_method("SetClock", &(0i64, -3.0f64))
        .await
        .unwrap_err();
    assert!(
        matches!(err, zbus::Error::MethodError(ref n, _, _) if n.as_str() == "org.cabin.Error.InvalidArgument")
    );

    // A good update after the bad ones is the barrier: the service's signals arrive in order,
    // so once its change is seen, any change the bad ones made would have been seen too.
    let good: std::collections::HashMap<&str, zbus::Variant<'_>> =
        [("Latitude", zbus::Variant::from(12.5f64))]
            .into_iter()
            .collect();
    proxy.call_method("Update", &(good,)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while vehicle.snapshot().latitude != 12.5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the good update never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        vehicle.snapshot().speed_kmh,
        0.0,
        "a rejected update must change nothing"
    );
}

#[tokio::test]
async fn simulated_clock_and_driving_time_follow_the_publisher() {
    let started = std::time::Instant::now();
    let bus = TestBus::start().unwrap();
    let config = bus.dir().join("vehicle-sim.toml");
    std::fs::write(
        &config,
        "tick_ms = 100\nbreak_minutes = 15\n[vehicle]\nspeed_kmh = 80.0\ngear = \"D\"\n",
    )
    .unwrap();
    let (_sim, conn) = start(&bus, &["--config", config.to_str().unwrap()]).await;
    let vehicle = DbusVehicle::follow(&conn).await.unwrap();
    let clock = vehicle.clock();

    // Noon on the winter solstice, one simulated minute per real second... times 60.
    let noon = chrono::DateTime::parse_from_rfc3339("2026-12-21T12:00:00Z")
        .unwrap()
        .to_utc();
    let proxy = zbus::Proxy::new(&conn, BUS_NAME, OBJECT_PATH, INTERFACE)
        .await
        .unwrap();
    proxy
        .call_method("SetClock", &(noon.timestamp_millis(), 3600.0f64))
        .await
        .unwrap();

    assert!(
        eventually(WAIT, || async { vehicle.snapshot().clock.rate == 3600.0 }).await,
        "the clock setting never arrived"
    );
    let t0 = clock.now();
    assert!(
        (t0 - noon).num_minutes().abs() < 10,
        "simulated now {t0} should be near {noon}"
    );
    // At an hour per second, continuous driving passes an hour within a couple of seconds.
    assert!(
        eventually(WAIT, || async { vehicle.snapshot().driving_secs >= 3600 }).await,
        "DrivingTime did not advance: {:?}",
        vehicle.snapshot()
    );
    // The driving time counts on the publisher's simulated clock, which read `noon` when the
    // setting arrived: an hour of it means an hour past noon, less what was driven before at
    // real time (no more than the test has run). `t0` is no anchor: it was read only when the
    // setting reached this client, under load some simulated minutes after noon.
    let driven_before = chrono::Duration::from_std(started.elapsed()).unwrap();
    assert!(
        clock.now() - noon + driven_before >= chrono::Duration::minutes(60),
        "an hour's driving at {} on a clock set to {noon}",
        clock.now()
    );
    assert!(clock.now() - t0 > chrono::Duration::zero());
}

#[tokio::test]
async fn a_client_started_first_picks_up_the_publisher_when_it_appears() {
    let bus = TestBus::start().unwrap();
    let conn = bus.connect().await.unwrap();
    let vehicle = DbusVehicle::follow(&conn).await.unwrap();
    assert_eq!(vehicle.snapshot(), VehicleState::default());

    let config = bus.dir().join("oslo.toml");
    std::fs::write(
        &config,
        "[vehicle]\nlatitude = 59.91\nlongitude = 10.75\nday_night = \"night\"\n",
    )
    .unwrap();
    let (_sim, _) = start(&bus, &["--config", config.to_str().unwrap()]).await;
    assert!(eventually(WAIT, || async { vehicle.snapshot().latitude == 59.91 }).await);
    assert_eq!(vehicle.snapshot().day_night.as_str(), "night");
}

#[test]
fn a_typo_in_the_config_fails_start_up_with_one_line() {
    let dir = tempfile_dir();
    let config = dir.join("vehicle-sim.toml");
    std::fs::write(&config, "tick_ms = 100\n[vehicle]\nlattitude = 59.9\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "--bus",
            "unix:path=/nonexistent/bus",
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("lattitude") && lines[0].contains(config.to_str().unwrap()),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cabin-vsim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// As systemd runs it (`Type=notify`, `WatchdogSec=`): `READY=1` once the name is taken, then
/// watchdog pings at half the timeout, over a real notify socket.
#[tokio::test]
async fn tells_systemd_it_is_ready_and_alive() {
    let bus = TestBus::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut child = Command::new(BIN)
        .args(["--bus", bus.address()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let receive = |socket: &std::os::unix::net::UnixDatagram| {
        let mut buf = [0u8; 256];
        let len = socket.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..len]).into_owned()
    };
    let socket = tokio::task::spawn_blocking(move || {
        let first = receive(&socket);
        let pings: Vec<String> = (0..3).map(|_| receive(&socket)).collect();
        (first, pings)
    })
    .await
    .unwrap();
    let conn = bus.connect().await.unwrap();
    let on_bus = wait_for_name(&conn, BUS_NAME, WAIT).await;
    let _ = child.kill();
    let _ = child.wait();
    let (first, pings) = socket;
    assert_eq!(first.trim(), "READY=1");
    assert!(on_bus, "READY=1 came, so the name must be taken");
    for ping in pings {
        assert_eq!(ping.trim(), "WATCHDOG=1");
    }
}
