//! `cabin-sim`: the whole bundle on a desktop. It starts a private `dbus-daemon`, the
//! simulated vehicle (`org.cabin.Vehicle1`), the reference collector on 127.0.0.1, the
//! services as supervised child processes (`org.cabin.Wallpaper1` on the bundled model,
//! `org.cabin.Companion1`, `org.cabin.Voice1`, `org.cabin.Feedback1` uploading to the
//! collector with consent on; a crashed one is restarted), and the web cockpit at
//! `http://127.0.0.1:PORT`. Ctrl-C or SIGTERM stops everything and leaves nothing behind.
//!
//! The services are the binaries the car runs (`cabin-wallpaperd`, ...), found beside this
//! one (`cargo build --release --workspace --bins` builds them all) or in
//! `--service-binaries DIR`.

mod cockpit;
mod supervisor;

use std::path::PathBuf;
use std::time::Duration;

use cabin_common::bus::BusChoice;
use cabin_common::clock::ClockSetting;
use cabin_common::vehicle::VehicleState;
use cabin_testbus::TestBus;
use cabin_vehicle_sim::{Config, Publisher};
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Run the cabin bundle on a desktop with a simulated vehicle and a web cockpit"
)]
struct Cli {
    /// Port of the web cockpit on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 8470)]
    port: u16,
    /// Where the car is: shenzhen, harbin or oslo.
    #[arg(long, default_value = "shenzhen")]
    place: String,
    /// Simulated seconds per real second (60 plays a day in 24 minutes).
    #[arg(long, default_value_t = 1.0)]
    clock_rate: f64,
    /// The wallpaper model folder [default: the bundled model].
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Where the services keep their state [default: $XDG_STATE_HOME/cabin-sim or
    /// ~/.local/state/cabin-sim].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Port of the reference collector on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 0)]
    collector_port: u16,
    /// Where the service binaries are (cabin-wallpaperd, cabin-companiond, cabin-voiced,
    /// cabin-feedbackd), e.g. /usr/bin [default: beside this binary].
    #[arg(long, value_name = "DIR")]
    service_binaries: Option<PathBuf>,
    /// Drive this route: a vehicle scenario (TOML steps of position, speed, gear), e.g.
    /// simulator/scenarios/shenzhen-loop.toml.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
}

/// The services cabin-sim runs: (name, bus name, binary).
const SERVICES: [(&str, &str, &str); 4] = [
    (
        "wallpaper",
        cabin_contracts::wallpaper::BUS_NAME,
        "cabin-wallpaperd",
    ),
    (
        "companion",
        cabin_contracts::companion::BUS_NAME,
        "cabin-companiond",
    ),
    ("voice", cabin_contracts::voice::BUS_NAME, "cabin-voiced"),
    (
        "feedback",
        cabin_contracts::feedback::BUS_NAME,
        "cabin-feedbackd",
    ),
];

fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("cabin-sim")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cabin_common::logging::init("sim");
    cabin_common::cli::exit_code("cabin-sim", run(cli).await)
}

/// The services from their own binaries: each gets `--bus`, `--state-dir` and, where the
/// simulator needs other than the defaults, a config file written beside its state.
fn binary_specs(
    bin_dir: &std::path::Path,
    state_dir: &std::path::Path,
    common: &dyn Fn(&str) -> Vec<String>,
    upload_url: &str,
    model: Option<&std::path::Path>,
) -> Result<Vec<supervisor::Spec>, String> {
    let config_dir = state_dir.join("sim-config");
    std::fs::create_dir_all(&config_dir).map_err(|e| format!("{}: {e}", config_dir.display()))?;
    let write_config = |name: &str, toml: String| -> Result<Vec<String>, String> {
        let path = config_dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(vec!["--config".into(), path.display().to_string()])
    };
    let wallpaper = match model {
        Some(dir) => write_config(
            "wallpaper",
            format!("model_dir = {:?}\n", dir.display().to_string()),
        )?,
        None => vec![],
    };
    // A desktop trial: the tester consents and wants to see uploads soon.
    let mut feedback = write_config(
        "feedback",
        "consent_default = true\nbatch_delay_ms = 5000\n".into(),
    )?;
    feedback.extend(["--upload-url".into(), upload_url.to_string()]);
    SERVICES
        .iter()
        .map(|&(name, bus_name, binary)| {
            let program = bin_dir.join(binary);
            if !program.is_file() {
                return Err(format!(
                    "{} is missing: build the services beside cabin-sim with `{}` (or name \
                     their folder with --service-binaries DIR)",
                    program.display(),
                    build_command(bin_dir)
                ));
            }
            let mut args = common(name);
            match name {
                "wallpaper" => args.extend(wallpaper.clone()),
                "feedback" => args.extend(feedback.clone()),
                _ => {}
            }
            Ok(supervisor::Spec {
                name,
                bus_name,
                program,
                args,
            })
        })
        .collect()
}

/// The cargo command that puts the service binaries in `bin_dir`.
fn build_command(bin_dir: &std::path::Path) -> &'static str {
    if bin_dir.ends_with("release") {
        "cargo build --release --workspace --bins"
    } else {
        "cargo build --workspace --bins"
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let (latitude, longitude) = cockpit::place(&cli.place).ok_or_else(|| {
        format!(
            "unknown place {:?}; known: shenzhen, harbin, oslo",
            cli.place
        )
    })?;
    let bus = TestBus::start().map_err(|e| format!("cannot start a private dbus-daemon: {e}"))?;
    let bus_choice = BusChoice::Address(bus.address().to_string());
    let now = chrono::Utc::now();
    let config = Config {
        vehicle: VehicleState {
            latitude,
            longitude,
            clock: ClockSetting::anchored(now, now, cli.clock_rate),
            ..VehicleState::default()
        },
        ..Config::default()
    };
    let script = match &cli.scenario {
        Some(path) => Some(cabin_vehicle_sim::script::Script::load(path)?),
        None => None,
    };
    let vehicle = std::sync::Arc::new(Publisher::start(&bus_choice, &config).await?);
    let driving = script.map(|script| {
        let vehicle = vehicle.clone();
        tokio::spawn(async move {
            if let Err(e) = vehicle.play(&script).await {
                tracing::warn!(%e, "the scenario stopped");
            }
        })
    });
    let state_dir = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    std::fs::create_dir_all(&state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;

    let collector_db = state_dir.join("collector.db");
    let store = cabin_collector::Store::open(&collector_db.display().to_string())
        .await
        .map_err(|e| format!("{}: {e}", collector_db.display()))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", cli.collector_port))
        .await
        .map_err(|e| format!("cannot listen for the collector: {e}"))?;
    let collector_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop_collector, collector_stopped) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(cabin_collector::serve(
        listener,
        std::sync::Arc::new(store),
        async move {
            let _ = collector_stopped.await;
        },
    ));

    let dir = |name: &str| state_dir.join(name).display().to_string();
    let common = |name: &str| {
        vec![
            "--bus".to_string(),
            bus.address().to_string(),
            "--state-dir".into(),
            dir(name),
        ]
    };
    let upload_url = format!("http://{collector_addr}/v1/feedback");
    let bin_dir = match &cli.service_binaries {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
            .ok_or("cannot find the folder of this binary; name it with --service-binaries")?,
    };
    let specs = binary_specs(
        &bin_dir,
        &state_dir,
        &common,
        &upload_url,
        cli.model.as_deref(),
    )?;
    let (changed, mut changes) = tokio::sync::broadcast::channel(64);
    let services = supervisor::Supervisor::start(specs, changed)
        .map_err(|e| format!("cannot start the services: {e}"))?;

    let conn = bus
        .connect()
        .await
        .map_err(|e| format!("cannot connect to the private bus: {e}"))?;
    for (_, name, _) in SERVICES {
        if !cabin_testbus::wait_for_name(&conn, name, Duration::from_secs(60)).await {
            tracing::warn!(name, "service did not appear on the bus within 60 s");
        }
    }
    let statuses = services.status_handle();
    let cockpit = cockpit::Cockpit::new(conn, statuses, format!("http://{collector_addr}"));
    let following = tokio::spawn(cockpit::follow_bus(cockpit.clone()));
    let announcer = {
        let cockpit = cockpit.clone();
        tokio::spawn(async move {
            while changes.recv().await.is_ok() {
                cockpit.services_changed();
            }
        })
    };
    let web = tokio::net::TcpListener::bind(("127.0.0.1", cli.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", cli.port))?;
    let web_addr = web.local_addr().map_err(|e| e.to_string())?;
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(web, cockpit::router(cockpit))
            .with_graceful_shutdown(async move {
                let _ = web_stopped.await;
            })
            .await
    });

    println!("cabin-sim: private bus at {}", bus.address());
    println!(
        "cabin-sim: org.cabin.Vehicle1 at ({latitude:.4}, {longitude:.4}), clock x{}",
        cli.clock_rate
    );
    if let Some(path) = &cli.scenario {
        println!("cabin-sim: driving {}", path.display());
    }
    println!(
        "cabin-sim: services (child processes from {}): wallpaper, companion, voice, feedback; state in {}",
        bin_dir.display(),
        state_dir.display()
    );
    println!("cabin-sim: reference collector at http://{collector_addr} (fleet view: /v1/fleet)");
    println!(
        "try: target/release/cabinctl --bus {} voice '换一张雪山的壁纸'",
        bus.address()
    );
    println!("cabin-sim: cockpit at http://{web_addr}");
    println!("Ctrl-C stops everything.");

    cabin_common::cli::shutdown_signal().await;
    let _ = stop_web.send(());
    // Open event streams would hold a graceful shutdown forever: give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    following.abort();
    if let Some(driving) = driving {
        driving.abort();
    }
    announcer.abort();
    services.stop().await;
    let _ = stop_collector.send(());
    let _ = collector.await;
    drop(vehicle);
    drop(bus);
    println!("cabin-sim: stopped");
    Ok(())
}
