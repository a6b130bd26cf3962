//! `org.cabin.Wallpaper1` at `/org/cabin/Wallpaper1` (contract:
//! `services/contracts/dbus/org.cabin.Wallpaper1.xml`).
//!
//! Methods: `Generate(s prompt, a{sv} options) → o job`, `Apply(s id)`, `History(u limit) →
//! aa{sv}`, `Open(s id, s display) → h`, `Delete(s id)`.
//! Properties: `Current`, `CurrentPrompt`, `CurrentPath`, `Phase`, `TimeAware` (writable), `Displays`, `Busy`,
//! `ModelInfo`. Signal: `Changed(s image_id, s phase, a{sv} hints)`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use cabin_common::CabinError;
use cabin_common::options::{boolean, string, unsigned};
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::{OwnedVariant, Variant, fdo, interface};

use super::job::{Job, job_path};
use crate::engine::pipeline::{MAX_GUIDANCE, MAX_STEPS};
use crate::engine::tokenizer::PromptTokenizer;
use crate::gallery::{Gallery, Reason};
use crate::queue::{QueueError, Spec};
use crate::store::{Recipe, StoreError};

pub struct Wallpaper {
    core: Arc<Gallery>,
}

impl Wallpaper {
    pub fn new(core: Arc<Gallery>) -> Self {
        Self { core }
    }
}

fn store_error(e: StoreError) -> CabinError {
    match e {
        StoreError::NotFound(_) => CabinError::not_found(e.to_string()),
        StoreError::BadId(_) => CabinError::invalid_argument(e.to_string()),
        other => CabinError::internal("wallpaper library", other),
    }
}

/// `Generate`'s options, checked: unknown keys and wrong types are refused by name.
pub fn parse_options(
    core: &Gallery,
    prompt: &str,
    options: &HashMap<String, OwnedVariant>,
) -> Result<Spec, CabinError> {
    PromptTokenizer::check("prompt", prompt, false)
        .map_err(|e| CabinError::invalid_argument(e.to_string()))?;
    let mut spec = Spec {
        recipe: Recipe {
            prompt: prompt.to_string(),
            negative: String::new(),
            seed: rand_seed(),
            steps: None,
            guidance: None,
        },
        time_aware: core.time_aware(),
        apply: true,
        display: None,
    };
    for (key, value) in options {
        let value: &Variant<'_> = value;
        match key.as_str() {
            "seed" => spec.recipe.seed = unsigned(key, value)?,
            "steps" => {
                let steps = unsigned(key, value)?;
                if !(1..=MAX_STEPS as u64).contains(&steps) {
                    return Err(CabinError::invalid_argument(format!(
                        "steps must be 1..={MAX_STEPS}, got {steps}"
                    )));
                }
                spec.recipe.steps = Some(steps as usize);
            }
            "guidance" => {
                let g = match value {
                    Variant::F64(g) => *g,
                    other => {
                        let v = unsigned(key, other)?;
                        v as f64
                    }
                };
                if !(g.is_finite() && (0.0..=MAX_GUIDANCE).contains(&g)) {
                    return Err(CabinError::invalid_argument(format!(
                        "guidance must be 0..={MAX_GUIDANCE}, got {g}"
                    )));
                }
                spec.recipe.guidance = Some(g);
            }
            "negative" => {
                let text = string(key, value)?;
                PromptTokenizer::check("negative prompt", &text, true)
                    .map_err(|e| CabinError::invalid_argument(e.to_string()))?;
                spec.recipe.negative = text;
            }
            "display" => {
                let name = string(key, value)?;
                if core.presenter().display(&name).is_none() {
                    let known: Vec<String> = core
                        .config
                        .displays
                        .iter()
                        .map(|d| d.name.clone())
                        .collect();
                    return Err(CabinError::invalid_argument(format!(
                        "unknown display {name:?}; displays: {}",
                        known.join(", ")
                    )));
                }
                spec.display = Some(name);
            }
            "time_aware" => spec.time_aware = boolean(key, value)?,
            "apply" => spec.apply = boolean(key, value)?,
            other => {
                return Err(CabinError::invalid_argument(format!(
                    "unknown option {other:?}; known: seed, steps, guidance, negative, display, time_aware, apply"
                )));
            }
        }
    }
    Ok(spec)
}

/// A seed for a caller who gave none: different pictures for the same words.
fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

fn entry_dict(entry: &crate::store::Entry, current: bool) -> HashMap<String, OwnedVariant> {
    let mut out = HashMap::new();
    let mut put = |k: &str, v: Variant<'_>| {
        if let Ok(v) = OwnedVariant::try_from(v) {
            out.insert(k.to_string(), v);
        }
    };
    put("id", Variant::from(entry.id.clone()));
    put("prompt", Variant::from(entry.recipe.prompt.clone()));
    put("seed", Variant::from(entry.recipe.seed));
    put("created", Variant::from(entry.created.to_rfc3339()));
    put("time_aware", Variant::from(entry.time_aware));
    put("variants", Variant::from(entry.variants.clone()));
    put("current", Variant::from(current));
    out
}

/// Recomputes what the displays show and tells the HMI when it changed.
pub async fn refresh(
    core: &Arc<Gallery>,
    service: &InterfaceRef<Wallpaper>,
    reason: Reason,
    force: bool,
) {
    let emitter = service.signal_emitter();
    let work = core.clone();
    let composed = tokio::task::spawn_blocking(move || work.compose(reason, force)).await;
    let composed = match composed {
        Ok(Ok(composed)) => composed,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot compose the wallpaper");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "composing the wallpaper panicked");
            return;
        }
    };
    if composed.phase_changed {
        let iface = service.get().await;
        let _ = iface.phase_changed(emitter).await;
    }
    let changes = composed.changes;
    if changes.is_empty() {
        return;
    }
    let (moving, transition) = (composed.moving, composed.transition_ms);
    for change in &changes {
        let displays: Vec<String> = change.paths.iter().map(|(d, _)| d.clone()).collect();
        let mut hints: HashMap<&str, Variant<'_>> = HashMap::new();
        hints.insert("transition_ms", Variant::from(transition));
        hints.insert("reason", Variant::from(reason.as_str()));
        hints.insert("moving", Variant::from(moving));
        hints.insert("luma", Variant::from(change.luma));
        hints.insert("displays", Variant::from(displays));
        if let Err(e) =
            Wallpaper::changed(emitter, &change.image_id, change.phase.as_str(), hints).await
        {
            tracing::warn!(error = %e, "cannot emit Changed");
        }
    }
    if composed.main_changed {
        let iface = service.get().await;
        let _ = iface.current_changed(emitter).await;
        let _ = iface.current_prompt_changed(emitter).await;
        let _ = iface.current_path_changed(emitter).await;
    }
}

#[interface(name = "org.cabin.Wallpaper1")]
impl Wallpaper {
    /// Queues a picture and returns its job at once. Options: `seed` (t), `steps` (u),
    /// `guidance` (d), `negative` (s), `display` (s), `time_aware` (b), `apply` (b).
    async fn generate(
        &self,
        prompt: String,
        options: HashMap<String, OwnedVariant>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<zbus::OwnedObjectPath, CabinError> {
        let spec = parse_options(&self.core, &prompt, &options)?;
        let queue = self.core.queue();
        let id = queue
            .reserve()
            .map_err(|e| CabinError::busy(e.to_string()))?;
        let path = job_path(id);
        let job = Job::new(self.core.clone(), id, &spec.recipe.prompt);
        conn.object_server()
            .at(path.as_str(), job)
            .await
            .map_err(|e| CabinError::internal("serving the job", e))?;
        if let Err(e) = queue.submit(id, spec) {
            let _ = conn.object_server().remove::<Job, _>(path.as_str()).await;
            return Err(match e {
                QueueError::Full { .. } => CabinError::busy(e.to_string()),
                QueueError::NoSuchJob(_) => CabinError::internal("queueing", e),
            });
        }
        let _ = self.busy_changed(&emitter).await;
        zbus::OwnedObjectPath::try_from(path).map_err(|e| CabinError::internal("job path", e))
    }

    /// Shows a stored picture on every display.
    async fn apply(
        &self,
        image_id: String,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), CabinError> {
        let now = chrono::Utc::now(); // record-keeping: wall time
        self.core
            .store()
            .set_current(&image_id, now)
            .map_err(store_error)?;
        let service = conn
            .object_server()
            .interface::<_, Wallpaper>(cabin_contracts::wallpaper::OBJECT_PATH)
            .await?;
        refresh(&self.core, &service, Reason::Requested, true).await;
        Ok(())
    }

    /// The most recently used pictures first: `id`, `prompt`, `seed`, `created`,
    /// `time_aware`, `variants`, `current`.
    fn history(&self, limit: u32) -> Vec<HashMap<String, OwnedVariant>> {
        let store = self.core.store();
        let current = store.current().map(|e| e.id.clone());
        store
            .history(limit as usize)
            .iter()
            .map(|e| entry_dict(e, current.as_deref() == Some(e.id.as_str())))
            .collect()
    }

    /// A read-only descriptor of the picture as a PNG fitted to `display` (as shown, for the
    /// picture on show).
    async fn open(&self, image_id: String, display: String) -> Result<zbus::OwnedFd, CabinError> {
        let Some(target) = self.core.presenter().display(&display).cloned() else {
            return Err(CabinError::invalid_argument(format!(
                "unknown display {display:?}"
            )));
        };
        crate::store::check_id(&image_id).map_err(store_error)?;
        let core = self.core.clone();
        let dir = self.core.previews_dir();
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, CabinError> {
            let png = {
                let store = core.store();
                core.presenter()
                    .open_png(&store, &image_id, &target)
                    .map_err(store_error)?
            };
            std::fs::create_dir_all(&dir).map_err(|e| CabinError::internal("open", e))?;
            // An unlinked file: the caller's descriptor is the only way to it.
            let mut file =
                tempfile::tempfile_in(&dir).map_err(|e| CabinError::internal("open", e))?;
            file.write_all(&png)
                .map_err(|e| CabinError::internal("open", e))?;
            let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
            std::fs::File::open(path).map_err(|e| CabinError::internal("open", e))
        })
        .await
        .map_err(|e| CabinError::internal("open", e))??;
        Ok(zbus::OwnedFd::from(std::os::fd::OwnedFd::from(file)))
    }

    /// Deletes a picture and its variants.
    async fn delete(
        &self,
        image_id: String,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), CabinError> {
        let was_current = self.core.delete(&image_id).map_err(store_error)?;
        let service = conn
            .object_server()
            .interface::<_, Wallpaper>(cabin_contracts::wallpaper::OBJECT_PATH)
            .await?;
        refresh(&self.core, &service, Reason::Requested, true).await;
        if was_current {
            let _ = self.current_changed(&emitter).await;
            let _ = self.current_prompt_changed(&emitter).await;
            let _ = self.current_path_changed(&emitter).await;
        }
        Ok(())
    }

    /// The picture on the main display ("" when none).
    #[zbus(property)]
    fn current(&self) -> String {
        let main = &self.core.config.displays[0].name;
        self.core
            .presenter()
            .shown_id(main)
            .map(str::to_string)
            .unwrap_or_default()
    }

    /// The request behind the picture on the main display ("" when none), so a client that
    /// says what is on show needs no `History` scan.
    #[zbus(property)]
    fn current_prompt(&self) -> String {
        let id = self.current();
        if id.is_empty() {
            return id;
        }
        self.core
            .store()
            .get(&id)
            .map(|e| e.recipe.prompt.clone())
            .unwrap_or_default()
    }

    /// A PNG of what the main display shows, replaced atomically on every change.
    #[zbus(property)]
    fn current_path(&self) -> String {
        self.core.current_path()
    }

    /// night, astronomical_twilight, nautical_twilight, civil_twilight, golden_hour or day.
    #[zbus(property)]
    fn phase(&self) -> String {
        self.core.phase().as_str().to_string()
    }

    #[zbus(property)]
    fn time_aware(&self) -> bool {
        self.core.time_aware()
    }

    #[zbus(property)]
    async fn set_time_aware(
        &mut self,
        on: bool,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> fdo::Result<()> {
        self.core
            .set_time_aware(on)
            .map_err(|e| fdo::Error::Failed(e.to_string()))?;
        let core = self.core.clone();
        let conn = conn.clone();
        // After the property reply: refresh takes this object's lock.
        tokio::spawn(async move {
            if let Ok(service) = conn
                .object_server()
                .interface::<_, Wallpaper>(cabin_contracts::wallpaper::OBJECT_PATH)
                .await
            {
                refresh(&core, &service, Reason::Time, false).await;
            }
        });
        Ok(())
    }

    /// (name, width, height) of every display.
    #[zbus(property)]
    fn displays(&self) -> Vec<(String, u32, u32)> {
        self.core
            .config
            .displays
            .iter()
            .map(|d| (d.name.clone(), d.width, d.height))
            .collect()
    }

    /// A requested picture is running or waiting.
    #[zbus(property)]
    fn busy(&self) -> bool {
        self.core.queue().busy()
    }

    /// `name`, `version`, `licence` (from the manifest), `path`, `loaded`, `threads`.
    #[zbus(property)]
    fn model_info(&self) -> HashMap<String, OwnedVariant> {
        let info = self.core.model_info();
        let mut out: HashMap<String, OwnedVariant> = HashMap::new();
        let mut put = |k: &str, v: Variant<'_>| {
            if let Ok(v) = OwnedVariant::try_from(v) {
                out.insert(k.to_string(), v);
            }
        };
        put("path", Variant::from(info.path.display().to_string()));
        put("loaded", Variant::from(info.loaded));
        put("threads", Variant::from(info.threads as u32));
        match info.manifest {
            Ok((name, version, licence)) => {
                put("name", Variant::from(name));
                put("version", Variant::from(version));
                put("licence", Variant::from(licence));
            }
            Err(e) => put("error", Variant::from(e)),
        }
        out
    }

    /// The displays show another picture (or the same one in another light).
    /// Hints: `transition_ms` (u), `reason` (s: requested, time, restored), `moving` (b),
    /// `luma` (d), `displays` (as).
    #[zbus(signal)]
    pub async fn changed(
        emitter: &SignalEmitter<'_>,
        image_id: &str,
        phase: &str,
        hints: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<()>;
}
