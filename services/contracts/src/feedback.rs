//! `org.cabin.Feedback1` at `/org/cabin/Feedback1` (served by `cabin-feedbackd`).

use std::collections::HashMap;

use zbus::Variant;

pub const BUS_NAME: &str = "org.cabin.Feedback1";
pub const OBJECT_PATH: &str = "/org/cabin/Feedback1";
pub const INTERFACE: &str = "org.cabin.Feedback1";
/// The contract as committed; the service's bus test compares it with the live export.
pub const INTROSPECTION_XML: &str = include_str!("../dbus/org.cabin.Feedback1.xml");

#[zbus::proxy(
    interface = "org.cabin.Feedback1",
    default_service = "org.cabin.Feedback1",
    default_path = "/org/cabin/Feedback1"
)]
pub trait Feedback1 {
    /// Files one statement; its id.
    fn submit(
        &self,
        channel: &str,
        text: &str,
        meta: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<String>;
    /// Files every row of a JSONL or CSV file; how many.
    fn import(&self, fd: zbus::Fd<'_>, format: &str) -> zbus::Result<u32>;
    /// The recurring problems between two times (Unix seconds), as JSON.
    fn summary(
        &self,
        since: i64,
        until: i64,
        options: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<String>;
    fn flush(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn batch_uploaded(&self, batch_id: String, items: u32) -> zbus::Result<()>;
    #[zbus(signal)]
    fn upload_failed(&self, reason: String) -> zbus::Result<()>;
    #[zbus(property)]
    fn consent(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn set_consent(&self, on: bool) -> zbus::Result<()>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_upload(&self) -> zbus::Result<i64>;
    #[zbus(property)]
    fn pending(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn uploaded(&self) -> zbus::Result<u64>;
}
