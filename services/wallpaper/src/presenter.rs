//! What each display shows now: the current picture or, for a time-aware set, the blend of its
//! phase variants for the sun, graded and capped at night; fitted to every display and written
//! where the HMI reads it. Only a perceptible change produces a new picture.
//!
//! The night cap holds even with time-awareness off: a bright picture at night dazzles a
//! driver whatever the setting.

use std::collections::{HashMap, hash_map};
use std::path::PathBuf;

use image::{Rgb32FImage, RgbImage};
use serde::Deserialize;

use crate::engine::display::{Fit, encode_png, to_display};
use crate::store::{Store, StoreError};
use crate::sun::{Phase, SunPosition};
use crate::timeaware::{Look, cap_luma, compose, mean_luma, perceptibly_different};

/// A screen the wallpaper is shown on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Display {
    pub name: String,
    pub width: u32,
    pub height: u32,
}

impl Display {
    pub fn check(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "display name {:?} must be 1-32 letters, digits, '-' or '_'",
                self.name
            ));
        }
        let max = crate::engine::display::MAX_DISPLAY_SIDE;
        if self.width == 0 || self.height == 0 || self.width > max || self.height > max {
            return Err(format!(
                "display {} size {}x{} must be 1..={max} on each side",
                self.name, self.width, self.height
            ));
        }
        Ok(())
    }
}

pub fn default_displays() -> Vec<Display> {
    vec![Display {
        name: "center".into(),
        width: 1920,
        height: 720,
    }]
}

/// A new picture on some displays.
#[derive(Debug, Clone)]
pub struct Change {
    pub image_id: String,
    pub phase: Phase,
    /// Mean luma (0..1) of what is shown.
    pub luma: f64,
    /// The displays that changed and where their picture is.
    pub paths: Vec<(String, PathBuf)>,
}

struct Shown {
    image_id: String,
    variants: usize,
    composed: Rgb32FImage,
}

pub struct Presenter {
    look: Look,
    displays: Vec<Display>,
    /// By display name.
    shown: HashMap<String, Shown>,
    /// Decoded pictures of the sets on show, by (id, word); word "base" or an anchor word.
    /// Kept as the 8-bit pictures they are on disk: at a display stage's size (1920x768) one
    /// is 4.4 MB, where as floats a set of five would hold 88 MB.
    cache: HashMap<(String, String), RgbImage>,
}

impl Presenter {
    pub fn new(look: Look, displays: Vec<Display>) -> Self {
        Self {
            look,
            displays,
            shown: HashMap::new(),
            cache: HashMap::new(),
        }
    }

    pub fn displays(&self) -> &[Display] {
        &self.displays
    }

    pub fn display(&self, name: &str) -> Option<&Display> {
        self.displays.iter().find(|d| d.name == name)
    }

    /// What `display` shows now, if anything.
    pub fn shown_id(&self, display: &str) -> Option<&str> {
        self.shown.get(display).map(|s| s.image_id.as_str())
    }

    /// Recomputes what the displays show for `sun`. `force` skips the perceptibility check
    /// (a picture was just applied). Returns one change per picture that changed somewhere.
    pub fn evaluate(
        &mut self,
        store: &Store,
        sun: &SunPosition,
        time_aware: bool,
        force: bool,
    ) -> Result<Vec<Change>, StoreError> {
        let mut changes: Vec<Change> = Vec::new();
        let mut composed_by_id: HashMap<String, Rgb32FImage> = HashMap::new();
        let displays = self.displays.clone();
        let wanted: Vec<Option<crate::store::Entry>> = displays
            .iter()
            .map(|d| store.current_for(&d.name).cloned())
            .collect();
        self.cache
            .retain(|(id, _), _| wanted.iter().flatten().any(|e| &e.id == id));
        for (display, entry) in displays.iter().zip(wanted) {
            let Some(entry) = entry else {
                self.shown.remove(&display.name);
                continue;
            };
            let composed = match composed_by_id.get(&entry.id) {
                Some(c) => c.clone(),
                None => {
                    let c = self.compose(store, &entry, sun, time_aware)?;
                    composed_by_id.insert(entry.id.clone(), c.clone());
                    c
                }
            };
            let variants = entry.variants.len();
            let unchanged = self.shown.get(&display.name).is_some_and(|s| {
                s.image_id == entry.id
                    && s.variants == variants
                    && !perceptibly_different(&s.composed, &composed, &self.look)
            });
            if unchanged && !force {
                continue;
            }
            let png = encode_png(&render(&composed, display));
            let path = store.write_shown(&display.name, &png)?;
            let luma = mean_luma(&composed);
            self.shown.insert(
                display.name.clone(),
                Shown {
                    image_id: entry.id.clone(),
                    variants,
                    composed,
                },
            );
            match changes.iter_mut().find(|c| c.image_id == entry.id) {
                Some(change) => change.paths.push((display.name.clone(), path)),
                None => changes.push(Change {
                    image_id: entry.id.clone(),
                    phase: sun.phase,
                    luma,
                    paths: vec![(display.name.clone(), path)],
                }),
            }
        }
        Ok(changes)
    }

    /// Reads `id`'s pictures called `words` into the cache unless they are there.
    fn load(&mut self, store: &Store, id: &str, words: &[&str]) -> Result<(), StoreError> {
        for word in words {
            let key = (id.to_string(), word.to_string());
            if let hash_map::Entry::Vacant(slot) = self.cache.entry(key) {
                slot.insert(store.load(id, word)?);
            }
        }
        Ok(())
    }

    fn cached(&self, id: &str, word: &str) -> Option<Rgb32FImage> {
        self.cache
            .get(&(id.to_string(), word.to_string()))
            .map(to_f32)
    }

    fn compose(
        &mut self,
        store: &Store,
        entry: &crate::store::Entry,
        sun: &SunPosition,
        time_aware: bool,
    ) -> Result<Rgb32FImage, StoreError> {
        let blended = time_aware && entry.time_aware;
        let mut words = vec!["base"];
        if blended {
            words.extend(entry.variants.iter().map(String::as_str));
        }
        self.load(store, &entry.id, &words)?;
        let base = self
            .cached(&entry.id, "base")
            .ok_or_else(|| StoreError::NotFound(format!("{}/base", entry.id)))?;
        if blended {
            let variant = |word: &str| {
                let made = entry.variants.iter().any(|w| w == word);
                made.then(|| self.cached(&entry.id, word)).flatten()
            };
            return Ok(compose(&variant, &base, sun, &self.look));
        }
        let mut plain = base;
        if matches!(
            sun.phase,
            Phase::Night | Phase::AstronomicalTwilight | Phase::NauticalTwilight
        ) {
            cap_luma(&mut plain, self.look.night_luma_cap);
        }
        Ok(plain)
    }

    /// A stored picture fitted to `display`, as PNG. A picture on show comes as shown
    /// (time-aware look included).
    pub fn open_png(
        &self,
        store: &Store,
        image_id: &str,
        display: &Display,
    ) -> Result<Vec<u8>, StoreError> {
        if let Some(shown) = self.shown.values().find(|s| s.image_id == image_id) {
            return Ok(encode_png(&render(&shown.composed, display)));
        }
        let base = to_f32(&store.load(image_id, "base")?);
        Ok(encode_png(&render(&base, display)))
    }
}

fn render(composed: &Rgb32FImage, display: &Display) -> RgbImage {
    to_display(composed, display.width, display.height, Fit::Crop)
}

fn to_f32(image: &RgbImage) -> Rgb32FImage {
    let values = image
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect();
    Rgb32FImage::from_raw(image.width(), image.height(), values).expect("one float per 8-bit value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limits, Recipe};
    use crate::sun;
    use chrono::{TimeZone, Utc};
    use image::Rgb;

    fn store_with(pictures: &[(&str, u8)]) -> (Store, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), Limits::default()).unwrap();
        let recipe = Recipe {
            prompt: "lake".into(),
            negative: String::new(),
            seed: 1,
            steps: None,
            guidance: None,
        };
        let flat = |v: u8| RgbImage::from_pixel(40, 16, Rgb([v, v, v]));
        let entry = store
            .add(recipe, true, &flat(pictures[0].1), Utc::now())
            .unwrap();
        for (word, v) in &pictures[1..] {
            store.add_variant(&entry.id, word, &flat(*v)).unwrap();
        }
        store.set_current(&entry.id, Utc::now()).unwrap();
        (store, entry.id, dir)
    }

    fn small_display() -> Vec<Display> {
        vec![Display {
            name: "center".into(),
            width: 96,
            height: 36,
        }]
    }

    fn luma_of_png(path: &std::path::Path) -> f64 {
        mean_luma(&image::open(path).unwrap().to_rgb32f())
    }

    #[test]
    fn night_is_capped_day_is_not_and_only_real_changes_are_reported() {
        let (store, id, _dir) = store_with(&[
            ("base", 200),
            ("night", 180),
            ("dawn", 150),
            ("dusk", 150),
            ("day", 220),
        ]);
        let look = Look::default();
        let mut presenter = Presenter::new(look, small_display());
        let midnight = sun::position(
            59.91,
            10.75,
            Utc.with_ymd_and_hms(2026, 1, 10, 23, 0, 0).unwrap(),
        );
        let noon = sun::position(
            59.91,
            10.75,
            Utc.with_ymd_and_hms(2026, 6, 10, 11, 0, 0).unwrap(),
        );
        let change = presenter
            .evaluate(&store, &midnight, true, false)
            .unwrap()
            .remove(0);
        assert_eq!(change.image_id, id);
        assert_eq!(change.phase, Phase::Night);
        // Dithering may move the mean by a fraction of a code value.
        assert!(luma_of_png(&change.paths[0].1) <= look.night_luma_cap + 0.005);
        assert!(
            presenter
                .evaluate(&store, &midnight, true, false)
                .unwrap()
                .is_empty()
        );
        let change = presenter
            .evaluate(&store, &noon, true, false)
            .unwrap()
            .remove(0);
        assert!(luma_of_png(&change.paths[0].1) > 0.7);
        let png = image::open(&change.paths[0].1).unwrap();
        assert_eq!((png.width(), png.height()), (96, 36));
    }

    #[test]
    fn the_night_cap_holds_with_time_awareness_off() {
        let (store, _id, _dir) = store_with(&[("base", 240)]);
        let mut presenter = Presenter::new(Look::default(), small_display());
        let midnight = sun::position(
            22.54,
            114.06,
            Utc.with_ymd_and_hms(2026, 3, 1, 17, 0, 0).unwrap(),
        );
        let change = presenter
            .evaluate(&store, &midnight, false, false)
            .unwrap()
            .remove(0);
        assert!(luma_of_png(&change.paths[0].1) <= 0.255);
    }

    #[test]
    fn displays_are_checked() {
        let bad = Display {
            name: "../x".into(),
            width: 10,
            height: 10,
        };
        assert!(bad.check().is_err());
        let huge = Display {
            name: "rear".into(),
            width: 100_000,
            height: 10,
        };
        assert!(huge.check().is_err());
        assert!(default_displays()[0].check().is_ok());
    }
}
