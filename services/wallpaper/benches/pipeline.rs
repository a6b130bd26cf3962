//! End-to-end wallpaper benchmark: prompt → display-size PNG through the tract pipeline.
//!
//! `cargo bench -p cabin-wallpaper --bench pipeline -- [--model DIR] [--steps N]
//! [--guidance F] [--scheduler NAME] [--threads N] [--runs N] [--size WxH] [--ops | --ops-by-shape]`
//! prints one JSON object (`--ops` adds the time per tract op kind on stderr, `--ops-by-shape`
//! per op kind and input shapes); `onnx/bench/run.sh` runs it beside onnxruntime on the same ONNX
//! files and prints the ratios. Not part of the test command.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cabin_wallpaper::engine::display::{self, Fit};
use cabin_wallpaper::engine::model::LoadOptions;
use cabin_wallpaper::engine::pipeline::Request;
use cabin_wallpaper::{Engine, default_model_dir};

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = arg::<String>(&args, "--model").map_or_else(default_model_dir, Into::into);
    let threads = arg(&args, "--threads").unwrap_or(1);
    let runs = arg(&args, "--runs").unwrap_or(3usize).max(1);
    let (w, h) = arg::<String>(&args, "--size")
        .map(|s| display::parse_size(&s).expect("--size WxH"))
        .unwrap_or((1920, 720));
    let request = Request {
        prompt: arg(&args, "--prompt").unwrap_or_else(|| "snowy mountains at dusk".into()),
        negative: String::new(),
        seed: 1,
        steps: arg(&args, "--steps"),
        guidance: arg(&args, "--guidance"),
        scheduler: arg(&args, "--scheduler"),
        ..Request::default()
    };

    let load_started = Instant::now();
    let engine = Engine::new(
        &dir,
        LoadOptions {
            require_manifest: false,
            threads,
        },
    );
    let model = engine.model().expect("model loads");
    let load = load_started.elapsed();

    // The first run also optimises the tract plans for these shapes; report it apart.
    let (mut e2e, mut text, mut unet, mut decode, mut display_stage, mut finish) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut first_run = Duration::ZERO;
    let mut steps_run = 0;
    let by_shape = args.iter().any(|a| a == "--ops-by-shape");
    let ops = by_shape || args.iter().any(|a| a == "--ops");
    for run in 0..=runs {
        if ops && run == 1 {
            cabin_wallpaper::engine::model::op_profile::start(by_shape);
        }
        let started = Instant::now();
        let out = engine
            .generate(&request, &AtomicBool::new(false), &mut |_| {})
            .expect("generates");
        let finish_started = Instant::now();
        let png = display::encode_png(&display::to_display(&out.image, w, h, Fit::Crop));
        let total = started.elapsed();
        assert!(!png.is_empty());
        if run == 0 {
            first_run = total;
            continue;
        }
        steps_run = out.timings.unet_steps.len();
        e2e.push(ms(total));
        text.push(ms(out.timings.text_encoder));
        unet.extend(out.timings.unet_steps.iter().map(|&d| ms(d)));
        decode.push(ms(out.timings.decoder));
        display_stage.push(ms(out.timings.display_stage));
        finish.push(ms(finish_started.elapsed()));
    }
    if ops {
        for (stage, op, spent) in cabin_wallpaper::engine::model::op_profile::take() {
            eprintln!(
                "{stage:>14} {op:<28} {:8.2} ms per run",
                spent / runs as f64
            );
        }
    }
    let report = serde_json::json!({
        "engine": "tract",
        "model": model.info.name,
        "native": format!("{}x{}", model.info.native_width, model.info.native_height),
        "display": format!("{w}x{h}"),
        "threads": threads,
        "machine": cabin_wallpaper::engine::machine(),
        "steps": steps_run,
        "guidance": request.guidance.unwrap_or(model.info.recommended.guidance),
        "load_ms": ms(load),
        "first_run_ms": ms(first_run),
        "end_to_end_ms": median(e2e),
        "text_encoder_ms": median(text),
        "unet_step_ms": median(unet),
        "decoder_ms": median(decode),
        "display_scale": model.info.display_scale,
        "display_stage_ms": median(display_stage),
        "resize_encode_ms": median(finish),
        "peak_rss_mib": peak_rss_kib().map(|k| k as f64 / 1024.0),
    });
    println!("{report}");
}
