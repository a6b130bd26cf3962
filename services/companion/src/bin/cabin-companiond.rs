//! `cabin-companiond`: the driver's companion chat, `org.cabin.Companion1`.

use cabin_common::cli::ServiceArgs;
use cabin_companion::Config;
use cabin_companion::daemon;
use clap::Parser;

const SERVICE: &str = "companion";

#[derive(Parser)]
#[command(
    version,
    about = "Serve the companion chat agent as org.cabin.Companion1"
)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cabin_common::logging::init(SERVICE);
    cabin_common::cli::exit_code("cabin-companiond", run(cli).await)
}

async fn run(cli: Cli) -> Result<(), String> {
    let config: Config = cli
        .service
        .load_config(SERVICE)
        .map_err(|e| e.to_string())?;
    let state_dir = cli.service.state_dir(SERVICE);
    let conn = daemon::serve(&cli.service.bus, config, &state_dir).await?;
    cabin_common::cli::serve_until_stopped(conn, "org.cabin.Companion1", &cli.service.bus).await;
    Ok(())
}
