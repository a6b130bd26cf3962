//! `org.cabin.Wallpaper1` at `/org/cabin/Wallpaper1` (served by `cabin-wallpaperd`) and its
//! jobs, `org.cabin.Wallpaper1.Job` at `/org/cabin/Wallpaper1/jobs/N`.

use std::collections::HashMap;

use zbus::{OwnedFd, OwnedObjectPath, OwnedVariant, Variant};

pub const BUS_NAME: &str = "org.cabin.Wallpaper1";
pub const OBJECT_PATH: &str = "/org/cabin/Wallpaper1";
pub const INTERFACE: &str = "org.cabin.Wallpaper1";
pub const JOB_INTERFACE: &str = "org.cabin.Wallpaper1.Job";
/// The contract as committed; the service's bus test compares it with the live export.
pub const INTROSPECTION_XML: &str = include_str!("../dbus/org.cabin.Wallpaper1.xml");

#[zbus::proxy(
    interface = "org.cabin.Wallpaper1",
    default_service = "org.cabin.Wallpaper1",
    default_path = "/org/cabin/Wallpaper1"
)]
pub trait Wallpaper1 {
    /// Queues a picture; its job's path, at once.
    fn generate(
        &self,
        prompt: &str,
        options: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn apply(&self, image_id: &str) -> zbus::Result<()>;
    fn history(&self, limit: u32) -> zbus::Result<Vec<HashMap<String, OwnedVariant>>>;
    /// A read-only descriptor of the picture as a PNG fitted to `display`.
    fn open(&self, image_id: &str, display: &str) -> zbus::Result<OwnedFd>;
    fn delete(&self, image_id: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn changed(
        &self,
        image_id: String,
        phase: String,
        hints: HashMap<String, OwnedVariant>,
    ) -> zbus::Result<()>;
    #[zbus(property)]
    fn busy(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn current(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn current_prompt(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn current_path(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn displays(&self) -> zbus::Result<Vec<(String, u32, u32)>>;
    #[zbus(property)]
    fn model_info(&self) -> zbus::Result<HashMap<String, OwnedVariant>>;
    #[zbus(property)]
    fn phase(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn time_aware(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn set_time_aware(&self, on: bool) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.cabin.Wallpaper1.Job",
    default_service = "org.cabin.Wallpaper1"
)]
pub trait Job {
    fn cancel(&self) -> zbus::Result<()>;
    /// The `Progress` signal (the trait cannot name it `progress`: the property has that name).
    #[zbus(signal, name = "Progress")]
    fn progress_step(&self, step: u32, total: u32, preview_png: OwnedFd) -> zbus::Result<()>;
    #[zbus(signal)]
    fn done(&self, image_id: String) -> zbus::Result<()>;
    #[zbus(signal)]
    fn failed(&self, error_name: String, message: String) -> zbus::Result<()>;
    #[zbus(property)]
    fn image_id(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn preview_path(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn prompt(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
}
