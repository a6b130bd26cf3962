//! `cabin-vehicle-sim`: serve a fixed or scripted vehicle context on D-Bus, or watch one.

use std::path::PathBuf;

use cabin_common::cli::ServiceArgs;
use cabin_common::vehicle::VehicleSource;
use cabin_common::vehicle::dbus::DbusVehicle;
use cabin_vehicle_sim::{Config, Publisher, script::Script};
use clap::{Parser, Subcommand};

const SERVICE: &str = "vehicle-sim";

#[derive(Parser)]
#[command(
    version,
    about = "Serve (or watch) the simulated vehicle context org.cabin.Vehicle1"
)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    /// Play this scenario (TOML steps) after start.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Follow the vehicle context on the bus as a service would; print one JSON line per change.
    Watch,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cabin_common::logging::init(SERVICE);
    cabin_common::cli::exit_code("cabin-vehicle-sim", run(cli).await)
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Some(Command::Watch) = cli.command {
        return watch(&cli.service).await;
    }
    let config: Config = cli
        .service
        .load_config(SERVICE)
        .map_err(|e| e.to_string())?;
    let script = cli.script.as_deref().map(Script::load).transpose()?;
    let publisher = Publisher::start(&cli.service.bus, &config).await?;
    tracing::info!(bus = %cli.service.bus, "serving org.cabin.Vehicle1");
    cabin_common::readiness::ready();
    let play = async {
        match &script {
            Some(script) => publisher.play(script).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = play => {
            result?;
            cabin_common::cli::shutdown_signal().await
        }
        () = cabin_common::cli::shutdown_signal() => {}
    }
    Ok(())
}

async fn watch(service: &ServiceArgs) -> Result<(), String> {
    let conn = service
        .bus
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", service.bus))?;
    let vehicle = DbusVehicle::follow(&conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut rx = vehicle.watch();
    loop {
        let line = serde_json::to_string(&*rx.borrow_and_update()).map_err(|e| e.to_string())?;
        println!("{line}");
        tokio::select! {
            changed = rx.changed() => changed.map_err(|e| e.to_string())?,
            () = cabin_common::cli::shutdown_signal() => return Ok(()),
        }
    }
}
