//! `cabin-voiced`: the voice command hook, `org.cabin.Voice1`.

use cabin_common::cli::run_daemon;
use cabin_voice::daemon;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    // The hook keeps no state of its own: the state folder goes unused.
    run_daemon(
        daemon::DAEMON,
        |bus, config: daemon::Config, _state| async move { daemon::serve(&bus, config).await },
    )
    .await
}
