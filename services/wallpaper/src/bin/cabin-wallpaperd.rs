//! `cabin-wallpaperd`: the time-aware wallpaper service, `org.cabin.Wallpaper1`.

use cabin_common::cli::ServiceArgs;
use cabin_wallpaper::daemon::{self, Config};
use clap::Parser;

const SERVICE: &str = "wallpaper";

#[derive(Parser)]
#[command(
    version,
    about = "Serve time-aware wallpaper generation as org.cabin.Wallpaper1"
)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
}

// Inference runs on the service's own worker thread; the bus needs only this one.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cabin_common::logging::init(SERVICE);
    cabin_common::cli::exit_code("cabin-wallpaperd", run(cli).await)
}

async fn run(cli: Cli) -> Result<(), String> {
    let config: Config = cli
        .service
        .load_config(SERVICE)
        .map_err(|e| e.to_string())?;
    let state_dir = cli.service.state_dir(SERVICE);
    let conn = daemon::serve(&cli.service.bus, config, &state_dir).await?;
    cabin_common::cli::serve_until_stopped(conn, "org.cabin.Wallpaper1", &cli.service.bus).await;
    Ok(())
}
