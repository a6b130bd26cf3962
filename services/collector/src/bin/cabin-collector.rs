//! `cabin-collector`: the reference collector for cabin's feedback uploads.
//!
//! Prints `listening on http://ADDR` once the socket is bound (port 0 picks a free one).

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Receive cabin feedback batches (POST /v1/feedback), serve GET /v1/fleet"
)]
struct Cli {
    /// Address to listen on, e.g. 127.0.0.1:8787.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: String,
    /// SQLite database file (created if missing).
    #[arg(long)]
    db: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cabin_common::logging::init("collector");
    cabin_common::cli::exit_code("cabin-collector", run(cli).await)
}

async fn run(cli: Cli) -> Result<(), String> {
    let store =
        cabin_collector::Store::open(&cli.db).map_err(|e| format!("{}: {e}", cli.db.display()))?;
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, db = %cli.db.display(), "collector up");
    cabin_collector::serve(listener, store, cabin_common::cli::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
