//! `cabin-feedbackd`: owners' feedback → redacted recurring problems → batched uploads,
//! `org.cabin.Feedback1`.

use cabin_common::cli::ServiceArgs;
use cabin_feedback::daemon::{self, Config};
use clap::Parser;

const SERVICE: &str = "feedback";

#[derive(Parser)]
#[command(
    version,
    about = "Serve feedback intake, summaries and batched uploads as org.cabin.Feedback1"
)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    /// The collector's endpoint, e.g. https://collector.example.com/v1/feedback (plain http
    /// only to a loopback address) [default: config `upload_url`; none: nothing is uploaded].
    #[arg(long, value_name = "URL")]
    upload_url: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cabin_common::logging::init(SERVICE);
    cabin_common::cli::exit_code("cabin-feedbackd", run(cli).await)
}

async fn run(cli: Cli) -> Result<(), String> {
    let mut config: Config = cli
        .service
        .load_config(SERVICE)
        .map_err(|e| e.to_string())?;
    if cli.upload_url.is_some() {
        config.upload_url = cli.upload_url;
    }
    let state_dir = cli.service.state_dir(SERVICE);
    let conn = daemon::serve(&cli.service.bus, config, &state_dir).await?;
    cabin_common::cli::serve_until_stopped(conn, "org.cabin.Feedback1", &cli.service.bus).await;
    Ok(())
}
