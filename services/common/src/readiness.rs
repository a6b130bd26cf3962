//! systemd readiness and watchdog through the `sd-notify` crate (`NOTIFY_SOCKET`,
//! `WATCHDOG_USEC`, `WATCHDOG_PID`).
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op, so the same binary runs in
//! the simulator, in tests and on the head unit. `services/vehicle-sim/tests/bus.rs` starts a
//! real binary with a notify socket and checks `READY=1` and the watchdog pings arrive.

use std::time::Duration;

use sd_notify::NotifyState;

/// The ping period for a watchdog timeout: half of it, as systemd recommends.
pub fn ping_period(timeout: Duration) -> Duration {
    timeout / 2
}

/// Says `READY=1` and, when systemd asked for a watchdog (for this process), keeps pinging
/// it from a task at half its timeout. Call once the service is on the bus.
pub fn ready() {
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready]) {
        tracing::warn!("sd_notify READY=1 failed: {e}");
    }
    if let Some(timeout) = sd_notify::watchdog_enabled().filter(|t| !t.is_zero()) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ping_period(timeout));
            loop {
                tick.tick().await;
                if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
                    tracing::warn!("sd_notify WATCHDOG=1 failed: {e}");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_come_at_half_the_timeout() {
        assert_eq!(
            ping_period(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
    }
}
