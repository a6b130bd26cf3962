//! A typed client of `org.cabin.Feedback1` (the CLI, the simulator and the tests use it;
//! other processes can equally use busctl, gdbus or any D-Bus binding).

use std::collections::HashMap;

#[zbus::proxy(
    interface = "org.cabin.Feedback1",
    default_service = "org.cabin.Feedback1",
    default_path = "/org/cabin/Feedback1"
)]
pub trait Feedback1 {
    fn submit(
        &self,
        channel: &str,
        text: &str,
        meta: HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<String>;
    fn import(&self, fd: zbus::Fd<'_>, format: &str) -> zbus::Result<u32>;
    fn summary(
        &self,
        since: i64,
        until: i64,
        options: HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<String>;
    fn flush(&self) -> zbus::Result<()>;
    #[zbus(property)]
    fn pending(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn uploaded(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn last_upload(&self) -> zbus::Result<i64>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn consent(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn set_consent(&self, on: bool) -> zbus::Result<()>;
    #[zbus(signal)]
    fn batch_uploaded(&self, batch_id: String, items: u32) -> zbus::Result<()>;
    #[zbus(signal)]
    fn upload_failed(&self, reason: String) -> zbus::Result<()>;
}
