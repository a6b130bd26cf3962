//! `cabin-voiced`: the voice command hook, `org.cabin.Voice1`.

use cabin_common::cli::ServiceArgs;
use cabin_voice::daemon::{self, Config};
use clap::Parser;

const SERVICE: &str = "voice";

#[derive(Parser)]
#[command(version, about = "Serve the voice command hook as org.cabin.Voice1")]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cabin_common::logging::init(SERVICE);
    cabin_common::cli::exit_code("cabin-voiced", run(cli).await)
}

async fn run(cli: Cli) -> Result<(), String> {
    let config: Config = cli
        .service
        .load_config(SERVICE)
        .map_err(|e| e.to_string())?;
    let conn = daemon::serve(&cli.service.bus, config).await?;
    cabin_common::cli::serve_until_stopped(conn, "org.cabin.Voice1", &cli.service.bus).await;
    Ok(())
}
