//! `org.cabin.Voice1` at `/org/cabin/Voice1` (served by `cabin-voiced`).

use std::collections::HashMap;

use zbus::Variant;

pub const BUS_NAME: &str = "org.cabin.Voice1";
pub const OBJECT_PATH: &str = "/org/cabin/Voice1";
pub const INTERFACE: &str = "org.cabin.Voice1";
/// The contract as committed; the service's bus test compares it with the live export.
pub const INTROSPECTION_XML: &str = include_str!("../dbus/org.cabin.Voice1.xml");

#[zbus::proxy(
    interface = "org.cabin.Voice1",
    default_service = "org.cabin.Voice1",
    default_path = "/org/cabin/Voice1"
)]
pub trait Voice1 {
    /// One recognised utterance: (handled, spoken reply, intent).
    fn handle(
        &self,
        utterance: &str,
        locale: &str,
        context: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<(bool, String, String)>;
}
