//! cabin-companiond on the bus: `org.cabin.Companion1` ([`service`]) and one
//! `org.cabin.Companion1.Session` object per conversation ([`session`]), over the
//! [`Companion`] library. Replies are produced off the async runtime (backends block on
//! the network) and stream back as signals; `Say` returns at once.
//!
//! Architecture invariant: only this module (and the binary) imports zbus; actions on other
//! services go through [`BusEffects`], the one place that calls them.

pub mod service;
pub mod session;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cabin_common::CabinError;
use cabin_common::error::names;
use cabin_common::options::string;
use cabin_common::vehicle::{FixedVehicle, VehicleSource};
use cabin_contracts::CallError;
use cabin_contracts::wallpaper::Wallpaper1Proxy;
use zbus::Variant;

use crate::agent::{Companion, CompanionError, Config, language_of_locale};
use crate::tools::Effects;

pub use service::CompanionService;
pub use session::Session;

pub use cabin_contracts::companion::{
    BUS_NAME, INTERFACE, INTROSPECTION_XML, OBJECT_PATH, SESSION_INTERFACE,
};

/// How `cabin-companiond` names itself: in its logs, its `--help` and the bus name it takes.
pub const DAEMON: cabin_common::cli::Daemon = cabin_common::cli::Daemon::new(
    "cabin-companiond",
    BUS_NAME,
    "Serve the companion chat agent as org.cabin.Companion1",
);

/// What the bus objects share.
pub struct Core {
    pub companion: Companion,
    vehicle: Mutex<Arc<dyn VehicleSource>>,
    pub effects: BusEffects,
    /// Open sessions by number.
    pub sessions: Mutex<std::collections::BTreeSet<u64>>,
}

impl Core {
    pub fn vehicle(&self) -> Arc<dyn VehicleSource> {
        self.vehicle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// `org.cabin.Wallpaper1.Generate` over the bus, from the blocking thread a reply runs on.
pub fn to_bus(e: CompanionError) -> CabinError {
    match e {
        CompanionError::InvalidArgument(m) => CabinError::InvalidArgument(m),
        CompanionError::NotFound(m) => CabinError::NotFound(m),
        CompanionError::PermissionDenied(m) => CabinError::PermissionDenied(m),
        CompanionError::Busy(m) => CabinError::Busy(m),
        CompanionError::NoAnswer(m, _) => CabinError::Unavailable(m),
        CompanionError::Internal(m) => CabinError::internal("companion", m),
    }
}

/// A `locale` option (`zh-CN`, `en-US`, ...) as the language the companion answers in.
pub fn locale_option(key: &str, value: &Variant<'_>) -> Result<&'static str, CabinError> {
    language_of_locale(&string(key, value)?).map_err(CabinError::InvalidArgument)
}

/// Tells clients that the number of open sessions changed.
pub async fn sessions_changed(conn: &zbus::Connection) {
    if let Ok(service) = conn
        .object_server()
        .interface::<_, CompanionService>(OBJECT_PATH)
        .await
    {
        let _ = service
            .get()
            .await
            .sessions_changed(service.signal_emitter())
            .await;
    }
}

pub struct BusEffects {
    conn: OnceLock<zbus::Connection>,
    runtime: tokio::runtime::Handle,
}

impl Effects for BusEffects {
    fn set_wallpaper(&self, prompt: &str) -> Result<String, (String, String)> {
        let Some(conn) = self.conn.get().cloned() else {
            return Err((
                names::UNAVAILABLE.into(),
                "not connected to the bus yet".into(),
            ));
        };
        let prompt = prompt.to_string();
        self.runtime.block_on(async move {
            let call = async {
                let proxy = Wallpaper1Proxy::new(&conn).await?;
                proxy.generate(&prompt, Default::default()).await
            };
            let service = "the wallpaper service";
            match tokio::time::timeout(Duration::from_secs(10), call).await {
                Ok(Ok(path)) => Ok(path.to_string()),
                Ok(Err(e)) => {
                    let e = CallError::from_call(service, e);
                    Err((e.name, e.message))
                }
                Err(_) => {
                    let e = CallError::timed_out(service, 10);
                    Err((e.name, e.message))
                }
            }
        })
    }
}

pub async fn serve(
    bus: &cabin_common::bus::BusChoice,
    config: Config,
    state_dir: &Path,
) -> Result<zbus::Connection, String> {
    let fixed = config.vehicle.clone();
    let companion = Companion::open(config, state_dir)?;
    serve_companion(bus, companion, fixed.is_none())
        .await
        .map(|(conn, _)| conn)
}

/// Serves an opened [`Companion`]; follows `org.cabin.Vehicle1` when `follow_vehicle`.
pub async fn serve_companion(
    bus: &cabin_common::bus::BusChoice,
    companion: Companion,
    follow_vehicle: bool,
) -> Result<(zbus::Connection, Arc<Core>), String> {
    let fixed: Arc<dyn VehicleSource> = Arc::new(FixedVehicle::new(
        companion.config().vehicle.clone().unwrap_or_default(),
    ));
    let core = Arc::new(Core {
        companion,
        vehicle: Mutex::new(fixed),
        sessions: Mutex::new(Default::default()),
        effects: BusEffects {
            conn: OnceLock::new(),
            runtime: tokio::runtime::Handle::current(),
        },
    });
    let builder = bus
        .builder()
        .serve_at(OBJECT_PATH, CompanionService::new(core.clone()));
    let conn = cabin_common::bus::serve(builder, BUS_NAME)
        .await
        .map_err(|e| format!("cannot serve {BUS_NAME} on the {bus} bus: {e}"))?;
    let _ = core.effects.conn.set(conn.clone());
    if follow_vehicle {
        let source = cabin_common::vehicle::dbus::DbusVehicle::follow(&conn)
            .await
            .map_err(|e| format!("cannot follow the vehicle context: {e}"))?;
        *core.vehicle.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(source);
    }
    Ok((conn, core))
}
