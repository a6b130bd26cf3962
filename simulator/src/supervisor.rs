//! The services as child processes, as systemd runs them on a car: the service binaries
//! the car runs, watched, and restarted after a crash with a growing delay. Status changes go
//! out on a channel for the cockpit.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, watch};

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub bus_name: String,
    pub running: bool,
    pub pid: u32,
    pub restarts: u32,
    /// How the last run ended ("" while it has not), e.g. "killed by signal 9".
    pub last_exit: String,
}

pub struct Supervisor {
    statuses: Arc<Mutex<Vec<ServiceStatus>>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// One service to run: its name, bus name, the program and its arguments.
pub struct Spec {
    pub name: &'static str,
    pub bus_name: &'static str,
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Supervisor {
    pub fn start(specs: Vec<Spec>, changed: broadcast::Sender<()>) -> std::io::Result<Self> {
        let statuses = Arc::new(Mutex::new(
            specs
                .iter()
                .map(|s| ServiceStatus {
                    name: s.name.into(),
                    bus_name: s.bus_name.into(),
                    running: false,
                    pid: 0,
                    restarts: 0,
                    last_exit: String::new(),
                })
                .collect::<Vec<_>>(),
        ));
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let statuses = statuses.clone();
            let mut stopping = stop.subscribe();
            let changed = changed.clone();
            tasks.push(tokio::spawn(async move {
                let mut delay = Duration::from_millis(500);
                loop {
                    let child = Command::new(&spec.program)
                        .args(&spec.args)
                        .stdin(Stdio::null())
                        .kill_on_drop(true)
                        .spawn();
                    let mut child: Child = match child {
                        Ok(c) => c,
                        Err(e) => {
                            lock(&statuses)[index].last_exit = format!("cannot start: {e}");
                            let _ = changed.send(());
                            return;
                        }
                    };
                    {
                        let mut s = lock(&statuses);
                        s[index].running = true;
                        s[index].pid = child.id().unwrap_or(0);
                    }
                    let _ = changed.send(());
                    let started = tokio::time::Instant::now();
                    tokio::select! {
                        status = child.wait() => {
                            let how = match status {
                                Ok(s) => describe(s),
                                Err(e) => e.to_string(),
                            };
                            tracing::warn!(service = spec.name, %how, "service exited; restarting");
                            {
                                let mut s = lock(&statuses);
                                s[index].running = false;
                                s[index].pid = 0;
                                s[index].last_exit = how;
                                s[index].restarts += 1;
                            }
                            let _ = changed.send(());
                            // A service that ran a while restarts at once; one that keeps
                            // crashing waits longer each time (at most 10 s).
                            if started.elapsed() > Duration::from_secs(30) {
                                delay = Duration::from_millis(500);
                            }
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                _ = stopped(&mut stopping) => return,
                            }
                            delay = (delay * 2).min(Duration::from_secs(10));
                        }
                        _ = stopped(&mut stopping) => {
                            terminate(&mut child).await;
                            let mut s = lock(&statuses);
                            s[index].running = false;
                            s[index].pid = 0;
                            return;
                        }
                    }
                }
            }));
        }
        Ok(Self {
            statuses,
            stop,
            tasks,
        })
    }

    /// A reader of the services' status that outlives borrowing the supervisor.
    pub fn status_handle(&self) -> impl Fn() -> Vec<ServiceStatus> + Send + Sync + 'static {
        let statuses = self.statuses.clone();
        move || lock(&statuses).clone()
    }

    /// SIGTERM to every child, SIGKILL after 5 s; returns when all are gone.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".into(),
    }
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        // Already gone is fine: the wait below returns at once.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Resolves once a stop was asked for (or the supervisor is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
