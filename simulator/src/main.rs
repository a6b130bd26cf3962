//! `cabin-sim`: the bundle on a desktop. Today it starts a private bus and the simulated
//! vehicle (`org.cabin.Vehicle1`), prints the bus address for `busctl` and the services, and
//! tears everything down on Ctrl-C. The services and the web cockpit join as they land.

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
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cabin-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
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
    println!("cabin-sim: private bus at {}", bus.address());
    println!(
        "cabin-sim: org.cabin.Vehicle1 at ({:.4}, {:.4}), clock x{}",
        state.latitude, state.longitude, state.clock.rate
    );
    println!(
        "try: busctl --address={} introspect org.cabin.Vehicle1 /org/cabin/Vehicle1",
        bus.address()
    );
    println!(
        "     busctl --address={} set-property org.cabin.Vehicle1 /org/cabin/Vehicle1 org.cabin.Vehicle1 {} d 80",
        bus.address(),
        prop::SPEED
    );
    println!("Ctrl-C stops everything.");
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    drop(vehicle);
    drop(bus);
    println!("cabin-sim: stopped");
    Ok(())
}
