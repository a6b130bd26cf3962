//! `cabin-companiond`: the driver's companion chat, `org.cabin.Companion1`.

use cabin_common::cli::run_daemon;
use cabin_companion::daemon;

// Replies run on blocking threads; the bus needs only this one.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    run_daemon(
        daemon::DAEMON,
        |bus, config: cabin_companion::Config, state_dir| async move {
            daemon::serve(&bus, config, &state_dir).await
        },
    )
    .await
}
