//! systemd readiness and watchdog (`sd_notify`), spoken directly over `NOTIFY_SOCKET`.
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op, so the same binary runs in
//! the simulator, in tests and on the head unit.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where and how often to tell systemd we are alive.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` of this process.
    pub fn from_env() -> Self {
        Self::from_vars(
            std::env::var("NOTIFY_SOCKET").ok(),
            std::env::var("WATCHDOG_USEC").ok(),
            std::env::var("WATCHDOG_PID").ok(),
            std::process::id(),
        )
    }

    pub fn from_vars(
        notify_socket: Option<String>,
        watchdog_usec: Option<String>,
        watchdog_pid: Option<String>,
        own_pid: u32,
    ) -> Self {
        let socket = notify_socket.filter(|s| !s.is_empty());
        // WATCHDOG_PID, when set, names the one process that must ping (not our children).
        let pid_matches = watchdog_pid.is_none_or(|p| p.parse::<u32>() == Ok(own_pid));
        let watchdog = watchdog_usec
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && pid_matches && socket.is_some())
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    /// The ping period: half the watchdog timeout, as systemd recommends.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends one notification such as `READY=1`; a no-op outside systemd.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some(path) = &self.socket else {
            return Ok(());
        };
        let addr = match path.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name.as_bytes())?
            }
            None => SocketAddr::from_pathname(path)?,
        };
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    }

    /// Says `READY=1` and, when systemd asked for a watchdog, keeps pinging it from a task.
    pub fn ready(&self) {
        if let Err(e) = self.notify("READY=1") {
            tracing::warn!("sd_notify READY=1 failed: {e}");
        }
        if let Some(period) = self.watchdog_period() {
            let this = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tick.tick().await;
                    if let Err(e) = this.notify("WATCHDOG=1") {
                        tracing::warn!("sd_notify WATCHDOG=1 failed: {e}");
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_without_systemd() {
        let n = Notifier::from_vars(None, Some("1000000".into()), None, 1);
        assert_eq!(n.watchdog_period(), None);
        n.notify("READY=1").unwrap();
    }

    #[test]
    fn watchdog_for_another_pid_is_not_ours() {
        let n = Notifier::from_vars(
            Some("/x".into()),
            Some("1000000".into()),
            Some("2".into()),
            1,
        );
        assert_eq!(n.watchdog_period(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ready_and_watchdog_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::from_vars(
            Some(path.display().to_string()),
            Some("200000".into()),
            Some("7".into()),
            7,
        );
        assert_eq!(n.watchdog_period(), Some(Duration::from_millis(100)));
        n.ready();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        // The first tick fires at once, then one per period.
        for _ in 0..2 {
            let len = tokio::task::block_in_place(|| listener.recv(&mut buf)).unwrap();
            assert_eq!(&buf[..len], b"WATCHDOG=1");
        }
    }

    #[test]
    fn abstract_socket_names_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("cabin-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::from_vars(Some(format!("@{name}")), None, None, 1)
            .notify("STATUS=hi")
            .unwrap();
        let mut buf = [0u8; 16];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=hi");
    }
}
