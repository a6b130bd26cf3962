//! `cabin-feedbackd`: owners' feedback → redacted recurring problems → batched uploads,
//! `org.cabin.Feedback1`.

use cabin_common::cli::{ServiceArgs, run_daemon_with};
use cabin_feedback::daemon;
use clap::{Arg, FromArgMatches};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let me = daemon::DAEMON;
    let matches = me
        .command()
        .arg(
            Arg::new("upload_url")
                .long("upload-url")
                .value_name("URL")
                .help(
                    "The collector's endpoint, e.g. https://collector.example.com/v1/feedback \
                     (plain http only to a loopback address) [default: config `upload_url`; \
                     none: nothing is uploaded]",
                ),
        )
        .get_matches();
    let args = ServiceArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let upload_url = matches.get_one::<String>("upload_url").cloned();
    let bus = args.bus.clone();
    run_daemon_with(
        me,
        &args,
        |mut config: daemon::Config, state_dir| async move {
            if upload_url.is_some() {
                config.upload_url = upload_url;
            }
            daemon::serve(&bus, config, &state_dir).await
        },
    )
    .await
}
