//! `cabin-collector`: the reference collector for cabin's feedback uploads, and a fleet load
//! generator to measure one.
//!
//!     cabin-collector --db postgresql://USER@HOST:PORT/DB [--listen ADDR]
//!     cabin-collector --db FILE.db [--listen ADDR]
//!     cabin-collector load --url URL --vehicles N --batches M [--items K] [--dup-rate R] [--concurrency C]
//!
//! Serving prints `listening on http://ADDR` once the socket is bound (port 0 picks a free
//! one). `load` prints one JSON report and fails unless the collector's totals are exact.

use std::io::Write;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Receive cabin feedback batches (POST /v1/feedback), serve GET /v1/fleet; or load-test a collector"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on, e.g. 127.0.0.1:8787.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: String,
    /// `postgresql://USER@HOST:PORT/DB` (a PostgreSQL server, pooled) or a SQLite file
    /// (created if missing).
    #[arg(long, env = "CABIN_COLLECTOR_DB")]
    db: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Send a fleet's uploads to a collector and check its totals.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 100)]
        vehicles: usize,
        /// Batches per vehicle.
        #[arg(long, default_value_t = 5)]
        batches: usize,
        /// Items per batch.
        #[arg(long, default_value_t = 20)]
        items: usize,
        /// Share of batches delivered twice at the same moment.
        #[arg(long, default_value_t = 0.25)]
        dup_rate: f64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seconds to keep retrying a batch while no collector answers.
        #[arg(long, default_value_t = 120)]
        patience: u64,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cabin_common::logging::init("collector");
    cabin_common::cli::exit_code("cabin-collector", run(cli).await)
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Some(Command::Load {
        url,
        vehicles,
        batches,
        items,
        dup_rate,
        concurrency,
        seed,
        patience,
    }) = cli.command
    {
        let config = cabin_collector::load::LoadConfig {
            url: url.trim_end_matches('/').to_string(),
            vehicles,
            batches,
            items,
            dup_rate,
            concurrency,
            seed,
            patience: Duration::from_secs(patience),
        };
        let report = tokio::task::spawn_blocking(move || cabin_collector::load::run(&config))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return if report.exact {
            Ok(())
        } else {
            Err(format!(
                "totals are not exact: expected {:?}, the collector holds {:?}",
                report.expected, report.stored
            ))
        };
    }
    let db = cli
        .db
        .ok_or("--db is required: postgresql://USER@HOST:PORT/DB or a SQLite file")?;
    let store = cabin_collector::Store::open(&db)
        .await
        .map_err(|e| format!("{}: {e}", redact(&db)))?;
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, db = %redact(&db), backend = store.backend(), "collector up");
    cabin_collector::serve(
        listener,
        std::sync::Arc::new(store),
        cabin_common::cli::shutdown_signal(),
    )
    .await
    .map_err(|e| e.to_string())
}

/// A database URL without its password, for logs and errors.
fn redact(db: &str) -> String {
    match (db.find("://"), db.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &db[scheme + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}{}", &db[..scheme + 3], &db[at..])
        }
        _ => db.to_string(),
    }
}
