//! cabin-wallpaperd: wallpapers generated on the head unit from a spoken request, following
//! the sun.
//!
//! `engine` is the text-to-image pipeline (`cabin-diffusion`, re-exported under the name the
//! service has always used); `gallery` is the service's policy over the store, the queue and
//! the presenter; `daemon` is the thin bus layer over them.
//!
//! Architecture invariant: the library never imports zbus outside `daemon`; this crate links
//! `cabin-common` and never another service's crate.

pub mod daemon;
pub use cabin_diffusion as engine;
pub mod gallery;
pub mod presenter;
pub mod queue;
pub mod store;
pub mod sun;
pub mod timeaware;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use engine::EngineError;
use engine::model::{LoadOptions, Model};
use engine::pipeline::{Generated, Noise, Progress, Request};

/// Where the bundled default model is: installed, or in this repository's checkout.
pub fn default_model_dir() -> PathBuf {
    let installed = Path::new("/usr/share/cabin/models/wallpaper-tiny");
    if installed.is_dir() {
        return installed.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/wallpaper-tiny")
}

/// A model loaded on first use, reused across generations, droppable to free memory.
pub struct Engine {
    dir: PathBuf,
    options: LoadOptions,
    model: Mutex<Option<Arc<Model>>>,
}

impl Engine {
    pub fn new(dir: impl Into<PathBuf>, options: LoadOptions) -> Self {
        Self {
            dir: dir.into(),
            options,
            model: Mutex::new(None),
        }
    }

    /// The loaded model, loading (and verifying) it first if needed.
    pub fn model(&self) -> Result<Arc<Model>, EngineError> {
        let mut slot = self.model.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(model) = slot.as_ref() {
            return Ok(model.clone());
        }
        let started = std::time::Instant::now();
        let model = Arc::new(Model::load(&self.dir, &self.options)?);
        tracing::info!(model = %model.info.name, elapsed = ?started.elapsed(), "model loaded");
        *slot = Some(model.clone());
        Ok(model)
    }

    pub fn is_loaded(&self) -> bool {
        self.model
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Frees the model; the next generation loads it again. A generation in flight keeps
    /// its own reference and finishes.
    pub fn unload(&self) {
        self.model.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    pub fn generate(
        &self,
        request: &Request,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Generated, EngineError> {
        let model = self.model()?;
        engine::pipeline::generate(&model, request, Noise::Seeded, cancel, progress)
    }
}
