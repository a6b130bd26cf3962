//! `cabin-wallpaperd`: the time-aware wallpaper service, `org.cabin.Wallpaper1`.

use cabin_common::cli::run_daemon;
use cabin_wallpaper::daemon;

// Inference runs on the service's own worker thread; the bus needs only this one.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    run_daemon(
        daemon::DAEMON,
        |bus, config: daemon::Config, state_dir| async move {
            daemon::serve(&bus, config, &state_dir).await
        },
    )
    .await
}
