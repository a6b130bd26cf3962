//! The bundled model (`onnx/wallpaper-tiny`) as a user meets it: it loads verified, the
//! phase word is respected (night dark, day bright) in English and Chinese, seeds give
//! different pictures, the same seed the same bytes, and the display size comes out.

use std::sync::atomic::AtomicBool;

use cabin_wallpaper::engine::display::{Fit, encode_png, to_display};
use cabin_wallpaper::engine::model::LoadOptions;
use cabin_wallpaper::engine::pipeline::Request;
use cabin_wallpaper::timeaware::mean_luma;
use cabin_wallpaper::{Engine, default_model_dir};
use image::Rgb32FImage;

fn engine() -> Engine {
    Engine::new(default_model_dir(), LoadOptions::default())
}

fn generate(engine: &Engine, prompt: &str, seed: u64) -> Rgb32FImage {
    let request = Request {
        prompt: prompt.into(),
        seed,
        ..Request::default()
    };
    engine
        .generate(&request, &AtomicBool::new(false), &mut |_| {})
        .unwrap()
        .image
}

#[test]
fn the_bundled_model_loads_verified_with_its_recommendations() {
    let engine = engine();
    let model = engine.model().unwrap();
    assert_eq!(model.info.name, "cabin-wallpaper-tiny");
    assert!(model.info.native_width >= 256 && model.info.native_height >= 96);
    assert!(
        model.info.recommended.steps <= 25,
        "the default must be fast on a head unit"
    );
}

#[test]
fn night_is_dark_and_day_is_bright_in_both_languages() {
    let engine = engine();
    for (night, day) in [
        ("snowy mountains at night", "snowy mountains during the day"),
        ("夜晚的雪山", "白天的雪山"),
        ("city skyline at night", "city skyline during the day"),
        ("夜晚的湖", "白天的湖"),
    ] {
        for seed in [1, 2] {
            let (n, d) = (
                mean_luma(&generate(&engine, night, seed)),
                mean_luma(&generate(&engine, day, seed)),
            );
            assert!(
                d - n > 0.1,
                "{night:?} {n:.3} vs {day:?} {d:.3} (seed {seed})"
            );
        }
    }
}

#[test]
fn seeds_change_the_picture_and_repeat_it_exactly() {
    let engine = engine();
    let a = generate(&engine, "sea sunset", 11);
    let b = generate(&engine, "sea sunset", 12);
    let diff: f32 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (x - y).abs())
        .sum::<f32>()
        / a.as_raw().len() as f32;
    assert!(
        diff > 0.02,
        "two seeds gave nearly the same picture ({diff})"
    );
    let again = generate(&engine, "sea sunset", 11);
    let png = |i: &Rgb32FImage| encode_png(&to_display(i, 1920, 720, Fit::Crop));
    let (first, second) = (png(&a), png(&again));
    assert!(first == second, "same seed, different bytes");
    let shown = image::load_from_memory(&first).unwrap();
    assert_eq!((shown.width(), shown.height()), (1920, 720));
}
