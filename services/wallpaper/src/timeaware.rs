//! What a time-aware wallpaper shows at a given sun: a blend of the set's two nearest phase
//! variants, graded for the light, with a luminance cap at night so the centre display
//! never dazzles a driver whose eyes have adapted to the dark.
//!
//! Pure image arithmetic: the service feeds it the sun from `sun` and the variants from the
//! engine.

use cabin_text::is_han as is_cjk;
use image::imageops::{self, FilterType};
use image::{Rgb, Rgb32FImage};

use crate::sun::{Phase, SunPosition};

/// Which phase word a variant was generated with, and the sun elevation it stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    /// The phase word put into the prompt ("night", "dawn", "day", "dusk").
    pub word: &'static str,
    pub elevation_deg: f64,
    /// Dawn and dusk look alike by elevation; the time of day tells them apart.
    pub morning: Option<bool>,
}

/// The variants a set is made of, from the darkest sky up.
pub const ANCHORS: [Anchor; 4] = [
    Anchor {
        word: "night",
        elevation_deg: -18.0,
        morning: None,
    },
    Anchor {
        word: "dawn",
        elevation_deg: 0.0,
        morning: Some(true),
    },
    Anchor {
        word: "dusk",
        elevation_deg: 0.0,
        morning: Some(false),
    },
    Anchor {
        word: "day",
        elevation_deg: 25.0,
        morning: None,
    },
];

/// Tuning of the look.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Look {
    /// Highest mean luma (0..1, Rec. 709 on display values) allowed at night.
    pub night_luma_cap: f64,
    /// Smallest mean luma change (0..1) worth telling the HMI about.
    pub perceptible_luma: f64,
}

impl Default for Look {
    fn default() -> Self {
        Self {
            night_luma_cap: 0.25,
            perceptible_luma: 0.01,
        }
    }
}

/// The two variants to blend for `sun` and the weight of the second (0..=1).
pub fn pick(sun: &SunPosition) -> (Anchor, Anchor, f64) {
    let [night, dawn, dusk, day] = ANCHORS;
    let twilight = if sun.morning { dawn } else { dusk };
    let e = sun.elevation_deg;
    if e <= night.elevation_deg {
        (night, night, 0.0)
    } else if e < twilight.elevation_deg {
        (
            night,
            twilight,
            (e - night.elevation_deg) / (twilight.elevation_deg - night.elevation_deg),
        )
    } else if e < day.elevation_deg {
        (
            twilight,
            day,
            (e - twilight.elevation_deg) / (day.elevation_deg - twilight.elevation_deg),
        )
    } else {
        (day, day, 0.0)
    }
}

/// `a` and `b` mixed with weight `t` on `b` (same size).
pub fn blend(a: &Rgb32FImage, b: &Rgb32FImage, t: f64) -> Rgb32FImage {
    let t = t.clamp(0.0, 1.0) as f32;
    Rgb32FImage::from_fn(a.width(), a.height(), |x, y| {
        let (Rgb(p), Rgb(q)) = (a.get_pixel(x, y), b.get_pixel(x, y));
        Rgb([0, 1, 2].map(|c| p[c] * (1.0 - t) + q[c] * t))
    })
}

pub fn mean_luma(image: &Rgb32FImage) -> f64 {
    let sum: f64 = image
        .pixels()
        .map(|Rgb(p)| {
            0.2126 * f64::from(p[0]) + 0.7152 * f64::from(p[1]) + 0.0722 * f64::from(p[2])
        })
        .sum();
    sum / (f64::from(image.width()) * f64::from(image.height())).max(1.0)
}

/// Grades for the sun: warmer and dimmer as it sinks, cooler after dark; then caps the
/// night's brightness.
pub fn grade(image: &Rgb32FImage, sun: &SunPosition, look: &Look) -> Rgb32FImage {
    let e = sun.elevation_deg;
    // Exposure: full above 10°, easing down to 55 % at −12° and below.
    let exposure = 0.55 + 0.45 * smoothstep(-12.0, 10.0, e);
    // White balance: warm around sunrise/sunset, cool (bluish) in the dark.
    let warm = (1.0 - ((e - 2.0) / 8.0).powi(2)).max(0.0) * 0.08;
    let cool = smoothstep(0.0, -12.0, e) * 0.06;
    let gains = [1.0 + warm - cool, 1.0, 1.0 - warm + cool].map(|g| (g * exposure) as f32);
    let mut out = Rgb32FImage::from_fn(image.width(), image.height(), |x, y| {
        let Rgb(p) = image.get_pixel(x, y);
        Rgb([0, 1, 2].map(|c| (p[c] * gains[c]).clamp(0.0, 1.0)))
    });
    if matches!(
        sun.phase,
        Phase::Night | Phase::AstronomicalTwilight | Phase::NauticalTwilight
    ) {
        cap_luma(&mut out, look.night_luma_cap);
    }
    out
}

/// Scales the picture down until its mean luma is at most `cap`.
pub fn cap_luma(image: &mut Rgb32FImage, cap: f64) {
    let luma = mean_luma(image);
    if luma > cap && luma > 0.0 {
        let k = (cap / luma) as f32;
        for Rgb(p) in image.pixels_mut() {
            for v in p.iter_mut() {
                *v *= k;
            }
        }
    }
}

/// Whether the HMI should be told: the mean luma moved by at least `look.perceptible_luma`
/// or the pictures differ visibly somewhere (mean absolute difference over 1 %).
pub fn perceptibly_different(a: &Rgb32FImage, b: &Rgb32FImage, look: &Look) -> bool {
    if a.dimensions() != b.dimensions() {
        return true;
    }
    if (mean_luma(a) - mean_luma(b)).abs() >= look.perceptible_luma {
        return true;
    }
    let diff: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| f64::from((x - y).abs()))
        .sum::<f64>()
        / a.as_raw().len().max(1) as f64;
    diff >= 0.01
}

/// What the display shows for `sun`, given the set's variants by anchor word.
///
/// A variant of another size than `base` is resized to it first: a set begun before the
/// model gained (or lost) its display stage holds pictures of both sizes.
pub fn compose(
    variant: &dyn Fn(&str) -> Option<Rgb32FImage>,
    base: &Rgb32FImage,
    sun: &SunPosition,
    look: &Look,
) -> Rgb32FImage {
    let (a, b, t) = pick(sun);
    let (w, h) = base.dimensions();
    let get = |anchor: Anchor| match variant(anchor.word) {
        Some(v) if v.dimensions() == (w, h) => v,
        Some(v) => imageops::resize(&v, w, h, FilterType::Triangle),
        None => base.clone(),
    };
    let mixed = if t <= 0.0 || a == b {
        get(a)
    } else {
        blend(&get(a), &get(b), t)
    };
    grade(&mixed, sun, look)
}

/// The prompt for a set's `anchor` variant: the user's words with the phase word swapped
/// for the anchor's (or added), in the prompt's own language, so the variant keeps the
/// subject and the model sees a phrasing it knows ("黄昏的雪山" → "夜晚的雪山",
/// "sea sunset" → "sea night", "snowy mountains" → "snowy mountains at night").
pub fn variant_prompt(prompt: &str, anchor: &Anchor) -> String {
    let prompt = prompt.trim();
    if prompt.chars().any(is_cjk) {
        let word = zh_phase_word(anchor.word);
        // Longest first, so 日落时 goes before 日落.
        for old in ZH_PHASE_WORDS {
            if let Some(at) = prompt.find(old) {
                return format!("{}{word}{}", &prompt[..at], &prompt[at + old.len()..]);
            }
        }
        return format!("{word}的{prompt}");
    }
    let lower = prompt.to_lowercase();
    for (old, phrase) in EN_PHASE_WORDS {
        if let Some(at) = find_words(&lower, old) {
            let new = if *phrase {
                en_phase_phrase(anchor.word)
            } else {
                en_phase_adjective(anchor.word)
            };
            // `to_lowercase` can change byte lengths outside ASCII; only splice when it did not.
            if lower.len() == prompt.len() {
                return format!("{}{new}{}", &prompt[..at], &prompt[at + old.len()..]);
            }
            return format!("{}{new}{}", &lower[..at], &lower[at + old.len()..]);
        }
    }
    format!("{prompt} {}", en_phase_phrase(anchor.word))
}

/// Phase words and whether each is a phrase ("at dusk") or an adjective ("sunset beach"),
/// longest first.
const EN_PHASE_WORDS: &[(&str, bool)] = &[
    ("in the early morning", true),
    ("on a sunny day", true),
    ("during the day", true),
    ("in the daytime", true),
    ("in the evening", true),
    ("early morning", false),
    ("in daylight", true),
    ("at daybreak", true),
    ("at twilight", true),
    ("at midnight", true),
    ("in the night", true),
    ("at sunrise", true),
    ("at sunset", true),
    ("at night", true),
    ("by night", true),
    ("at dawn", true),
    ("at dusk", true),
    ("at noon", true),
    ("nighttime", false),
    ("midnight", false),
    ("daytime", false),
    ("sunrise", false),
    ("evening", false),
    ("morning", false),
    ("sunset", false),
    ("midday", false),
    ("night", false),
    ("dawn", false),
    ("dusk", false),
];

const ZH_PHASE_WORDS: &[&str] = &[
    "日出时",
    "日落时",
    "夕阳下",
    "黎明",
    "清晨",
    "早晨",
    "拂晓",
    "日出",
    "白天",
    "中午",
    "白日",
    "黄昏",
    "傍晚",
    "日落",
    "夕阳",
    "夜晚",
    "晚上",
    "深夜",
    "夜里",
    "夜间",
];

fn en_phase_phrase(word: &str) -> &'static str {
    match word {
        "night" => "at night",
        "dawn" => "at dawn",
        "dusk" => "at dusk",
        _ => "during the day",
    }
}

fn en_phase_adjective(word: &str) -> &'static str {
    match word {
        "night" => "night",
        "dawn" => "dawn",
        "dusk" => "dusk",
        _ => "daytime",
    }
}

fn zh_phase_word(word: &str) -> &'static str {
    match word {
        "night" => "夜晚",
        "dawn" => "黎明",
        "dusk" => "黄昏",
        _ => "白天",
    }
}

/// Byte offset of `needle` in `haystack` as whole words.
fn find_words(haystack: &str, needle: &str) -> Option<usize> {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    let mut from = 0;
    while let Some(i) = haystack[from..].find(needle) {
        let at = from + i;
        let end = at + needle.len();
        if boundary(haystack[..at].chars().next_back()) && boundary(haystack[end..].chars().next())
        {
            return Some(at);
        }
        from = at + needle.len().max(1);
    }
    None
}

fn smoothstep(edge0: f64, edge1: f64, x: f64) -> f64 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sun;
    use chrono::{Duration, TimeZone, Utc};

    fn flat(v: f32) -> Rgb32FImage {
        Rgb32FImage::from_pixel(32, 12, Rgb([v, v, v]))
    }

    fn variants(word: &str) -> Option<Rgb32FImage> {
        Some(match word {
            "night" => flat(0.6), // a night variant the model made too bright
            "dawn" | "dusk" => flat(0.5),
            _ => flat(0.8),
        })
    }

    #[test]
    fn a_day_in_oslo_walks_the_phases_in_order_and_night_stays_dim() {
        let look = Look::default();
        let start = Utc.with_ymd_and_hms(2026, 3, 20, 0, 0, 0).unwrap();
        let mut phases: Vec<Phase> = Vec::new();
        let mut shown = None;
        let mut changes = 0;
        // A simulated day, one sample every 5 simulated minutes.
        for i in 0..(24 * 12) {
            let at = start + Duration::minutes(5 * i);
            let p = sun::position(59.9139, 10.7522, at);
            if phases.last() != Some(&p.phase) {
                phases.push(p.phase);
            }
            let image = compose(&variants, &flat(0.5), &p, &look);
            if matches!(
                p.phase,
                Phase::Night | Phase::AstronomicalTwilight | Phase::NauticalTwilight
            ) {
                assert!(
                    mean_luma(&image) <= look.night_luma_cap + 1e-6,
                    "too bright at {at}: {}",
                    mean_luma(&image)
                );
            }
            if shown
                .as_ref()
                .is_none_or(|s| perceptibly_different(s, &image, &look))
            {
                changes += 1;
                shown = Some(image);
            }
        }
        use Phase::*;
        let expected = [
            Night,
            AstronomicalTwilight,
            NauticalTwilight,
            CivilTwilight,
            GoldenHour,
            Day,
            GoldenHour,
            CivilTwilight,
            NauticalTwilight,
            AstronomicalTwilight,
            Night,
        ];
        assert_eq!(phases, expected);
        // Changes are told when the light moves, not every five minutes of a steady night or noon.
        assert!(changes > 10 && changes < 24 * 12 / 2, "{changes} changes");
    }

    #[test]
    fn dawn_and_dusk_are_told_apart_and_blending_is_continuous() {
        let morning = SunPosition {
            elevation_deg: -5.0,
            azimuth_deg: 90.0,
            phase: Phase::CivilTwilight,
            morning: true,
        };
        let evening = SunPosition {
            morning: false,
            azimuth_deg: 270.0,
            ..morning
        };
        assert_eq!(pick(&morning).1.word, "dawn");
        assert_eq!(pick(&evening).1.word, "dusk");
        let at = |e: f64| {
            let sun = SunPosition {
                elevation_deg: e,
                phase: sun::Phase::from_elevation(e),
                ..morning
            };
            mean_luma(&compose(&variants, &flat(0.5), &sun, &Look::default()))
        };
        // No jump across an anchor.
        assert!((at(-0.01) - at(0.01)).abs() < 0.01);
        assert!((at(24.99) - at(25.01)).abs() < 0.01);
    }

    #[test]
    fn variants_of_another_size_are_fitted_to_the_base() {
        // A set begun before the model had its display stage: a native-size base, variants
        // made since at 6x (and the other way round).
        let small = flat(0.5);
        let large = Rgb32FImage::from_pixel(192, 72, Rgb([0.8, 0.8, 0.8]));
        let dusk = SunPosition {
            elevation_deg: 10.0,
            azimuth_deg: 270.0,
            phase: Phase::Day,
            morning: false,
        };
        let look = Look::default();
        // Only the dusk variant is made yet: dusk blends with the base standing in for day.
        assert_eq!((pick(&dusk).0.word, pick(&dusk).1.word), ("dusk", "day"));
        let upscaled = |word: &str| (word == "dusk").then(|| large.clone());
        let shown = compose(&upscaled, &small, &dusk, &look);
        assert_eq!(shown.dimensions(), small.dimensions());
        let native = |word: &str| (word == "dusk").then(|| small.clone());
        let shown = compose(&native, &large, &dusk, &look);
        assert_eq!(shown.dimensions(), large.dimensions());
    }

    #[test]
    fn perceptible_change_ignores_tiny_differences() {
        let look = Look::default();
        assert!(!perceptibly_different(&flat(0.5), &flat(0.502), &look));
        assert!(perceptibly_different(&flat(0.5), &flat(0.55), &look));
    }

    #[test]
    fn variant_prompts_swap_or_add_the_phase_word() {
        let [night, dawn, _, day] = ANCHORS;
        assert_eq!(variant_prompt("黄昏的雪山", &night), "夜晚的雪山");
        assert_eq!(
            variant_prompt("换一张极光的壁纸", &dawn),
            "黎明的换一张极光的壁纸"
        );
        assert_eq!(variant_prompt("日落时的沙漠", &day), "白天的沙漠");
        assert_eq!(
            variant_prompt("snowy mountains at dusk", &night),
            "snowy mountains at night"
        );
        assert_eq!(variant_prompt("Sunset beach", &dawn), "dawn beach");
        assert_eq!(variant_prompt("a forest", &day), "a forest during the day");
        // "knight" holds "night" but is not the word.
        assert_eq!(variant_prompt("a knight", &dawn), "a knight at dawn");
        assert_eq!(variant_prompt("City at Night", &day), "City during the day");
    }
}
