//! `cabin-companiond`: the driver's companion chat, `org.cabin.Companion1`.

use cabin_common::cli::{Daemon, run_daemon};
use cabin_companion::daemon;

// Replies run on blocking threads; the bus needs only this one.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let me = Daemon {
        service: "companion",
        program: "cabin-companiond",
        bus_name: daemon::BUS_NAME,
        about: "Serve the companion chat agent as org.cabin.Companion1",
    };
    run_daemon(
        me,
        |bus, config: cabin_companion::Config, state_dir| async move {
            daemon::serve(&bus, config, &state_dir).await
        },
    )
    .await
}
