//! `cabin-voiced`: the voice command hook, `org.cabin.Voice1`.

use cabin_common::cli::{Daemon, run_daemon};
use cabin_voice::daemon;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let me = Daemon {
        service: "voice",
        program: "cabin-voiced",
        bus_name: daemon::BUS_NAME,
        about: "Serve the voice command hook as org.cabin.Voice1",
    };
    // The hook keeps no state of its own: the state folder goes unused.
    run_daemon(me, |bus, config: daemon::Config, _state| async move {
        daemon::serve(&bus, config).await
    })
    .await
}
