//! [`VehicleSource`] that follows `org.cabin.Vehicle1` on the bus.
//!
//! It subscribes before it reads, so no change between the first read and the subscription
//! is lost, and it re-reads everything when the publisher (re)appears on the bus. Until a
//! publisher is there the state is the default one.

use futures_util::StreamExt;
use tokio::sync::watch;
use zbus::fdo::{DBusProxy, PropertiesProxy};
use zbus::names::InterfaceName;

use super::{BUS_NAME, INTERFACE, OBJECT_PATH, VehicleSource, VehicleState};

pub struct DbusVehicle {
    tx: watch::Sender<VehicleState>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for DbusVehicle {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl VehicleSource for DbusVehicle {
    fn watch(&self) -> watch::Receiver<VehicleState> {
        self.tx.subscribe()
    }
}

impl DbusVehicle {
    /// Starts following the publisher on `conn`.
    pub async fn follow(conn: &zbus::Connection) -> zbus::Result<Self> {
        let props = PropertiesProxy::builder(conn)
            .destination(BUS_NAME)
            .path(OBJECT_PATH)
            .build()
            .await?;
        let mut changes = props.receive_properties_changed().await?;
        let mut owners = DBusProxy::new(conn)
            .await?
            .receive_name_owner_changed_with_args(&[(0, BUS_NAME)])
            .await?;

        let tx = watch::Sender::new(VehicleState::default());
        reload(&props, &tx).await;

        let state = tx.clone();
        let follower = tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(signal) = changes.next() => {
                        let Ok(args) = signal.args() else { continue };
                        if args.interface_name().as_str() != INTERFACE {
                            continue;
                        }
                        let mut next = state.borrow().clone();
                        let changed = args.changed_properties().iter().map(|(k, v)| (*k, v));
                        match next.apply_properties(changed) {
                            Ok(()) if args.invalidated_properties().is_empty() => {
                                state.send_if_modified(|s| replace_if_changed(s, next));
                            }
                            Ok(()) => reload(&props, &state).await,
                            Err(e) => tracing::warn!("ignoring a bad vehicle update: {e}"),
                        }
                    }
                    Some(owner) = owners.next() => {
                        let appeared = owner.args().is_ok_and(|a| a.new_owner().is_some());
                        if appeared {
                            reload(&props, &state).await;
                        }
                    }
                    else => break,
                }
            }
        });
        Ok(Self { tx, follower })
    }
}

fn replace_if_changed(current: &mut VehicleState, next: VehicleState) -> bool {
    if *current == next {
        return false;
    }
    *current = next;
    true
}

async fn reload(props: &PropertiesProxy<'_>, state: &watch::Sender<VehicleState>) {
    let iface = InterfaceName::from_static_str_unchecked(INTERFACE);
    match props.get_all(iface).await {
        Ok(all) => {
            let mut next = VehicleState::default();
            match next.apply_properties(all.iter().map(|(k, v)| (k.as_str(), &**v))) {
                Ok(()) => {
                    state.send_if_modified(|s| replace_if_changed(s, next));
                }
                Err(e) => tracing::warn!("vehicle publisher sent a bad state: {e}"),
            }
        }
        Err(e) => tracing::debug!("no vehicle publisher yet: {e}"),
    }
}
