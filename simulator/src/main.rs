//! `cabin-sim`: the bundle on a desktop. It starts a private bus, the simulated vehicle
//! (`org.cabin.Vehicle1`), the services on it (`org.cabin.Wallpaper1` on the bundled model,
//! `org.cabin.Companion1` on its offline engine, `org.cabin.Voice1`, `org.cabin.Feedback1` uploading to the
//! reference collector on 127.0.0.1, with consent on), prints the addresses for `busctl`,
//! `cabin-feedback` and HMIs, and tears everything down on Ctrl-C or SIGTERM.

use cabin_common::clock::ClockSetting;
use cabin_common::vehicle::{VehicleState, prop};
use cabin_testbus::TestBus;
use cabin_vehicle_sim::{Config, Publisher};
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Run the cabin bundle on a desktop with a simulated vehicle"
)]
struct Cli {
    /// Where the car is: shenzhen, harbin or oslo.
    #[arg(long, default_value = "shenzhen")]
    place: Place,
    /// Simulated seconds per real second (60 plays a day in 24 minutes).
    #[arg(long, default_value_t = 1.0)]
    clock_rate: f64,
    /// The wallpaper model folder [default: the bundled model].
    #[arg(long, value_name = "DIR")]
    model: Option<std::path::PathBuf>,
    /// Where the services keep their state [default: $XDG_STATE_HOME/cabin-sim or
    /// ~/.local/state/cabin-sim].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Port of the reference collector on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 0)]
    collector_port: u16,
}

fn default_state_dir() -> std::path::PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/state"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("cabin-sim")
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Place {
    Shenzhen,
    Harbin,
    Oslo,
}

impl Place {
    fn lat_lon(self) -> (f64, f64) {
        match self {
            Place::Shenzhen => (22.5431, 114.0579),
            Place::Harbin => (45.8038, 126.5349),
            Place::Oslo => (59.9139, 10.7522),
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cabin_common::logging::init("sim");
    cabin_common::cli::exit_code("cabin-sim", run(cli).await)
}

async fn run(cli: Cli) -> Result<(), String> {
    let bus = TestBus::start().map_err(|e| format!("cannot start a private dbus-daemon: {e}"))?;
    let (latitude, longitude) = cli.place.lat_lon();
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
    let bus_choice = cabin_common::bus::BusChoice::Address(bus.address().to_string());
    let vehicle = Publisher::start(&bus_choice, &config).await?;
    let state = vehicle.state().await;
    let state_dir = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    let wallpaper_config = cabin_wallpaper::daemon::Config {
        model_dir: cli.model.clone(),
        ..cabin_wallpaper::daemon::Config::default()
    };
    let model_dir = wallpaper_config.model_dir();
    let wallpaper =
        cabin_wallpaper::daemon::serve(&bus_choice, wallpaper_config, &state_dir.join("wallpaper"))
            .await?;
    let collector_db = state_dir.join("collector.db");
    std::fs::create_dir_all(&state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let store = cabin_collector::Store::open(&collector_db)
        .map_err(|e| format!("{}: {e}", collector_db.display()))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", cli.collector_port))
        .await
        .map_err(|e| format!("cannot listen for the collector: {e}"))?;
    let collector_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop_collector, collector_stopped) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(cabin_collector::serve(listener, store, async move {
        let _ = collector_stopped.await;
    }));
    let feedback_config = cabin_feedback::daemon::Config {
        upload_url: Some(format!("http://{collector_addr}/v1/feedback")),
        // A desktop trial: the tester consents; a car starts with consent off.
        consent_default: true,
        batch_delay_ms: 5_000,
        ..cabin_feedback::daemon::Config::default()
    };
    let feedback =
        cabin_feedback::daemon::serve(&bus_choice, feedback_config, &state_dir.join("feedback"))
            .await?;
    let companion = cabin_companion::daemon::serve(
        &bus_choice,
        cabin_companion::Config::default(),
        &state_dir.join("companion"),
    )
    .await?;
    let voice =
        cabin_voice::daemon::serve(&bus_choice, cabin_voice::daemon::Config::default()).await?;
    println!("cabin-sim: private bus at {}", bus.address());
    println!(
        "cabin-sim: org.cabin.Vehicle1 at ({:.4}, {:.4}), clock x{}",
        state.latitude, state.longitude, state.clock.rate
    );
    println!(
        "cabin-sim: org.cabin.Wallpaper1 on {}, state in {}",
        model_dir.display(),
        state_dir.display()
    );
    println!(
        "try: busctl --address={} introspect org.cabin.Vehicle1 /org/cabin/Vehicle1",
        bus.address()
    );
    println!(
        "     busctl --address={} call org.cabin.Wallpaper1 /org/cabin/Wallpaper1 org.cabin.Wallpaper1 Generate 'sa{{sv}}' 'snowy mountains at dusk' 0",
        bus.address()
    );
    println!(
        "     busctl --address={} set-property org.cabin.Vehicle1 /org/cabin/Vehicle1 org.cabin.Vehicle1 {} d 80",
        bus.address(),
        prop::SPEED
    );
    println!(
        "cabin-sim: org.cabin.Feedback1 uploading to the reference collector at http://{collector_addr} (fleet view: /v1/fleet)"
    );
    println!(
        "     target/release/cabin-feedback --bus {} submit --channel voice '导航老是卡'",
        bus.address()
    );
    println!(
        "cabin-sim: org.cabin.Companion1 (offline engine; personas warm-companion, cheerful-copilot, night-drive-friend)"
    );
    println!(
        "     busctl --address={} call org.cabin.Companion1 /org/cabin/Companion1 org.cabin.Companion1 StartSession 'sa{{sv}}' '' 0",
        bus.address()
    );
    println!(
        "cabin-sim: org.cabin.Voice1 — target/release/cabinctl --bus {} voice '换一张雪山的壁纸'",
        bus.address()
    );
    println!("Ctrl-C stops everything.");
    cabin_common::cli::shutdown_signal().await;
    drop(voice);
    drop(companion);
    drop(feedback);
    let _ = stop_collector.send(());
    let _ = collector.await;
    drop(wallpaper);
    drop(vehicle);
    drop(bus);
    println!("cabin-sim: stopped");
    Ok(())
}
