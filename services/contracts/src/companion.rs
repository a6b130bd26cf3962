//! `org.cabin.Companion1` at `/org/cabin/Companion1` (served by `cabin-companiond`) and one
//! `org.cabin.Companion1.Session` per conversation at `/org/cabin/Companion1/sessions/N`.

use std::collections::HashMap;

use zbus::{OwnedObjectPath, OwnedVariant, Variant};

pub const BUS_NAME: &str = "org.cabin.Companion1";
pub const OBJECT_PATH: &str = "/org/cabin/Companion1";
pub const INTERFACE: &str = "org.cabin.Companion1";
pub const SESSION_INTERFACE: &str = "org.cabin.Companion1.Session";
/// The contract as committed; the service's bus test compares it with the live export.
pub const INTROSPECTION_XML: &str = include_str!("../dbus/org.cabin.Companion1.xml");

#[zbus::proxy(
    interface = "org.cabin.Companion1",
    default_service = "org.cabin.Companion1",
    default_path = "/org/cabin/Companion1"
)]
pub trait Companion1 {
    /// Every persona: (id, display name, details).
    fn list_personas(&self) -> zbus::Result<Vec<(String, String, HashMap<String, OwnedVariant>)>>;
    fn import_persona(&self, card_json: &str) -> zbus::Result<String>;
    fn export_persona(&self, id: &str) -> zbus::Result<String>;
    fn start_session(
        &self,
        persona_id: &str,
        options: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn forget(&self, persona_id: &str) -> zbus::Result<()>;
    #[zbus(property)]
    fn backends(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn default_persona(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sessions(&self) -> zbus::Result<u32>;
}

#[zbus::proxy(
    interface = "org.cabin.Companion1.Session",
    default_service = "org.cabin.Companion1"
)]
pub trait Session {
    /// Queues a message; the turn number its signals will carry.
    fn say(&self, text: &str, options: HashMap<&str, Variant<'_>>) -> zbus::Result<u32>;
    fn reset(&self) -> zbus::Result<()>;
    fn end(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn token(&self, turn: u32, text: String) -> zbus::Result<()>;
    #[zbus(signal)]
    fn reply(
        &self,
        turn: u32,
        text: String,
        emotion: String,
        actions: Vec<(String, HashMap<String, OwnedVariant>)>,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn failed(&self, turn: u32, error_name: String, message: String) -> zbus::Result<()>;
    #[zbus(property)]
    fn backend(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn persona(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn turns(&self) -> zbus::Result<u32>;
}
