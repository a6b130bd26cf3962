//! What the service tests share: the reference collector (in this process, on a real TCP
//! port), cabin-feedbackd as its own process on a private dbus-daemon, and a proxy.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use cabin_testbus::{ServiceProcess, TestBus};
use zbus::Variant;

pub const BIN: &str = env!("CARGO_BIN_EXE_cabin-feedbackd");
pub const WAIT: Duration = Duration::from_secs(30);

pub use cabin_contracts::feedback::Feedback1Proxy as FeedbackProxy;

/// The reference collector on 127.0.0.1, serving until dropped.
pub struct Collector {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub db: PathBuf,
    pub store: std::sync::Arc<cabin_collector::Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Collector {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("collector.db");
        let store = std::sync::Arc::new(
            cabin_collector::Store::open(&db.display().to_string())
                .await
                .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(cabin_collector::serve(
            listener,
            store.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            url: format!("http://{addr}/v1/feedback"),
            addr,
            db,
            store,
            stop: Some(stop),
            _dir: dir,
        }
    }

    /// How often each item id was stored.
    pub async fn item_counts(&self) -> BTreeMap<String, u64> {
        self.store.item_counts().await.unwrap()
    }

    pub async fn fleet(&self) -> serde_json::Value {
        self.store.fleet(Default::default()).await.unwrap()
    }

    /// All stored item texts.
    pub async fn texts(&self) -> Vec<String> {
        self.store.item_texts().await.unwrap()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// cabin-feedbackd with a config file and a state folder that outlive restarts.
pub struct Daemon {
    pub process: Option<ServiceProcess>,
    pub config: PathBuf,
    pub state: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    pub fn new(config_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("feedback.toml");
        std::fs::write(&config, config_toml).unwrap();
        Self {
            process: None,
            config,
            state: dir.path().join("state"),
            dir,
        }
    }

    /// Starts the process; returns once a *new* owner holds the name.
    pub async fn spawn(&mut self, bus: &TestBus, conn: &zbus::Connection) {
        let dbus = zbus::fdo::DBusProxy::new(conn).await.unwrap();
        let name = zbus::names::BusName::try_from("org.cabin.Feedback1").unwrap();
        let before = dbus.get_name_owner(name.clone()).await.ok();
        self.process = Some(
            ServiceProcess::spawn(
                BIN,
                &[
                    "--bus",
                    bus.address(),
                    "--config",
                    self.config.to_str().unwrap(),
                    "--state-dir",
                    self.state.to_str().unwrap(),
                ],
            )
            .unwrap(),
        );
        let started = std::time::Instant::now();
        loop {
            let now = dbus.get_name_owner(name.clone()).await.ok();
            if now.is_some() && now != before {
                return;
            }
            if let Some(p) = self.process.as_mut()
                && let Some(status) = p.exited()
            {
                panic!("cabin-feedbackd exited: {status}");
            }
            assert!(
                started.elapsed() < WAIT,
                "cabin-feedbackd never took its name"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGKILL: no goodbye, like a power cut for the process.
    pub fn kill(&mut self) {
        self.process = None;
    }
}

pub async fn proxy(conn: &zbus::Connection) -> FeedbackProxy<'static> {
    FeedbackProxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap()
}

pub fn meta(pairs: &[(&'static str, Variant<'static>)]) -> HashMap<&'static str, Variant<'static>> {
    pairs.iter().cloned().collect()
}

/// The D-Bus error name of a failed call.
pub fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        zbus::Error::FDO(fdo) => format!("{fdo:?}"),
        other => format!("{other:?}"),
    }
}
