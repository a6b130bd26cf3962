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

use cabin_common::error::names;
use cabin_common::vehicle::{FixedVehicle, VehicleSource};

use crate::agent::{Companion, Config};
use crate::tools::Effects;

pub use service::CompanionService;
pub use session::Session;

pub const BUS_NAME: &str = "org.cabin.Companion1";
pub const OBJECT_PATH: &str = "/org/cabin/Companion1";
pub const INTERFACE: &str = "org.cabin.Companion1";
pub const SESSION_INTERFACE: &str = "org.cabin.Companion1.Session";
/// The contract, committed beside this crate.
pub const INTROSPECTION_XML: &str = include_str!("../../dbus/org.cabin.Companion1.xml");

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
pub struct BusEffects {
    conn: OnceLock<zbus::Connection>,
    runtime: tokio::runtime::Handle,
}

#[zbus::proxy(
    interface = "org.cabin.Wallpaper1",
    default_service = "org.cabin.Wallpaper1",
    default_path = "/org/cabin/Wallpaper1"
)]
trait Wallpaper1 {
    fn generate(
        &self,
        prompt: &str,
        options: std::collections::HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<zbus::OwnedObjectPath>;
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
            match tokio::time::timeout(Duration::from_secs(10), call).await {
                Ok(Ok(path)) => Ok(path.to_string()),
                Ok(Err(zbus::Error::MethodError(name, message, _))) => {
                    let name = name.to_string();
                    if name == "org.freedesktop.DBus.Error.ServiceUnknown"
                        || name == "org.freedesktop.DBus.Error.NameHasNoOwner"
                    {
                        Err((
                            names::UNAVAILABLE.into(),
                            "the wallpaper service is not running".into(),
                        ))
                    } else {
                        Err((name, message.unwrap_or_default()))
                    }
                }
                Ok(Err(e)) => Err((
                    names::UNAVAILABLE.into(),
                    format!("cannot reach the wallpaper service: {e}"),
                )),
                Err(_) => Err((
                    names::UNAVAILABLE.into(),
                    "the wallpaper service did not answer within 10 s".into(),
                )),
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
