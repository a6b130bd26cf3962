//! The command line every cabin service binary shares: `--bus`, `--config`, `--state-dir`.

use std::path::PathBuf;

use crate::bus::BusChoice;

/// Flatten into a binary's own `clap::Parser` with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Bus to serve on: `system`, `session`, or a D-Bus address such as `unix:path=/run/bus`.
    #[arg(long, default_value = "system", value_name = "system|session|ADDRESS")]
    pub bus: BusChoice,
    /// Config file [default: /etc/cabin/<service>.toml, optional].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Directory for persistent state [default: /var/lib/cabin/<service>].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl ServiceArgs {
    pub fn state_dir(&self, service: &str) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/var/lib/cabin/{service}")))
    }

    /// Loads this service's config from `--config` or its default path.
    pub fn load_config<T: serde::de::DeserializeOwned>(
        &self,
        service: &str,
    ) -> Result<T, crate::config::ConfigError> {
        crate::config::load(service, self.config.as_deref())
    }
}

/// What a service binary is: its program name (`cabin-wallpaperd`), the bus name it owns and
/// its `--help` line. Its short name (`wallpaper`: the config and state folder names, the log
/// identifier) is the program's, as every cabin service is called `cabin-NAMEd`.
#[derive(Debug, Clone, Copy)]
pub struct Daemon {
    pub program: &'static str,
    pub bus_name: &'static str,
    pub about: &'static str,
    pub service: &'static str,
}

impl Daemon {
    /// `program` must be `cabin-NAMEd`; the service is `NAME`.
    pub const fn new(program: &'static str, bus_name: &'static str, about: &'static str) -> Self {
        let service = match program.as_bytes() {
            [b'c', b'a', b'b', b'i', b'n', b'-', name @ .., b'd'] => {
                match std::str::from_utf8(name) {
                    Ok(name) => name,
                    Err(_) => panic!("a service name is UTF-8"),
                }
            }
            _ => panic!("a cabin service binary is called cabin-NAMEd"),
        };
        Daemon {
            program,
            bus_name,
            about,
            service,
        }
    }

    /// The binary's command line: `--bus`, `--config`, `--state-dir`, `--help`, `--version`.
    pub fn command(&self) -> clap::Command {
        use clap::Args;
        ServiceArgs::augment_args(
            clap::Command::new(self.program)
                .about(self.about)
                .version(env!("CARGO_PKG_VERSION")),
        )
    }

    /// This process's arguments, parsed (`--help` and bad arguments exit as clap does).
    pub fn parse_args(&self) -> ServiceArgs {
        use clap::FromArgMatches;
        let matches = self.command().get_matches();
        ServiceArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// The whole life of a service binary whose command line is just [`ServiceArgs`]: see
/// [`run_daemon_with`]. `serve` gets the bus, the config and the state folder.
pub async fn run_daemon<C, F, Fut>(daemon: Daemon, serve: F) -> std::process::ExitCode
where
    C: serde::de::DeserializeOwned,
    F: FnOnce(BusChoice, C, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<zbus::Connection, String>>,
{
    let args = daemon.parse_args();
    let bus = args.bus.clone();
    run_daemon_with(daemon, &args, |config, state_dir| {
        serve(bus, config, state_dir)
    })
    .await
}

/// The whole life of a service binary, the same for every cabin service: logging, its config
/// (`--config` or `/etc/cabin/<service>.toml`), its state folder, `serve` (which puts the
/// objects on the bus and takes the name), READY=1 and the watchdog, then until SIGTERM; a
/// failure on the way is one line on stderr and exit code 1.
pub async fn run_daemon_with<C, F, Fut>(
    daemon: Daemon,
    args: &ServiceArgs,
    serve: F,
) -> std::process::ExitCode
where
    C: serde::de::DeserializeOwned,
    F: FnOnce(C, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<zbus::Connection, String>>,
{
    crate::logging::init(daemon.service);
    let run = async {
        let config: C = args
            .load_config(daemon.service)
            .map_err(|e| e.to_string())?;
        let conn = serve(config, args.state_dir(daemon.service)).await?;
        serve_until_stopped(conn, daemon.bus_name, &args.bus).await;
        Ok(())
    };
    exit_code(daemon.program, run.await)
}

/// A binary's exit: success, or the error on one line prefixed with the program's name.
pub fn exit_code(program: &str, result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The rest of a service's life once it is on the bus: READY=1 (and the watchdog pings
/// systemd asks for), then wait for SIGTERM or Ctrl-C. `conn` is dropped last.
pub async fn serve_until_stopped(conn: zbus::Connection, bus_name: &str, bus: &BusChoice) {
    tracing::info!(%bus, "serving {bus_name}");
    crate::readiness::ready();
    shutdown_signal().await;
    tracing::info!("stopping");
    drop(conn);
}

/// Resolves on SIGTERM (systemd stopping the unit) or Ctrl-C, whichever comes first.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_daemon_is_named_after_its_binary() {
        const WALLPAPER: Daemon = Daemon::new("cabin-wallpaperd", "org.cabin.Wallpaper1", "about");
        assert_eq!(WALLPAPER.service, "wallpaper");
        assert_eq!(WALLPAPER.command().get_name(), "cabin-wallpaperd");
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        service: ServiceArgs,
    }

    #[test]
    fn defaults_point_at_target_paths() {
        let cli = Cli::parse_from(["x"]);
        assert_eq!(cli.service.bus, BusChoice::System);
        assert_eq!(
            cli.service.state_dir("feedback"),
            PathBuf::from("/var/lib/cabin/feedback")
        );
    }

    #[test]
    fn parses_all_three() {
        let cli = Cli::parse_from([
            "x",
            "--bus",
            "unix:path=/tmp/b",
            "--config",
            "/tmp/c.toml",
            "--state-dir",
            "/tmp/s",
        ]);
        assert_eq!(
            cli.service.bus,
            BusChoice::Address("unix:path=/tmp/b".into())
        );
        assert_eq!(cli.service.config, Some(PathBuf::from("/tmp/c.toml")));
        assert_eq!(cli.service.state_dir("x"), PathBuf::from("/tmp/s"));
    }

    #[test]
    fn rejects_a_bus_that_is_no_address() {
        assert!(Cli::try_parse_from(["x", "--bus", "sesion"]).is_err());
    }
}
