//! Times the display stage (a model folder's `upscaler/`) alone on tract.
//!
//! `cargo run --release -p cabin-wallpaper --example display_stage -- --model DIR
//! [--size WxH] [--threads N] [--runs N] [--tile-pixels N] [--check-tiles N] [--ops]` prints
//! one JSON object; DIR is an `upscaler/` folder or a model folder holding one, WxH the input
//! (the model's native size, 320x128 by default). `onnx/bench/upscaler.sh` runs it beside
//! onnxruntime on the same file. `--tile-pixels` overrides the engine's tile size (0: one
//! piece); `--check-tiles N` also reports the largest difference from a run in tiles of N
//! input pixels (and spoils the peak memory figures); `--ops` prints the time per tract op
//! kind and input shapes on stderr.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cabin_diffusion::display;
use cabin_diffusion::rng::NoiseRng;
use cabin_diffusion::upscaler::{self, Upscaler};

/// Counts live heap bytes: the intermediates' peak as the program holds them, apart from what
/// the allocator keeps around (which the peak RSS includes).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of the whole process (all threads): on a shared machine it counts the work done,
/// where wall time also counts waiting for a core.
fn cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let mut dir: PathBuf = arg::<String>(&args, "--model")
        .ok_or("--model DIR is required")?
        .into();
    if dir.join(upscaler::FOLDER).is_dir() {
        dir = dir.join(upscaler::FOLDER);
    }
    let (w, h) = display::parse_size(&arg::<String>(&args, "--size").unwrap_or("320x128".into()))?;
    let (w, h) = (w as usize, h as usize);
    let threads = arg(&args, "--threads").unwrap_or(1usize);
    let runs = arg(&args, "--runs").unwrap_or(5usize).max(1);
    let ops = args.iter().any(|a| a == "--ops");

    let mut upscaler = Upscaler::load_folder(&dir, threads).map_err(|e| e.to_string())?;
    let tile_pixels = arg::<usize>(&args, "--tile-pixels");
    if let Some(pixels) = tile_pixels {
        upscaler = upscaler.with_tile_input_pixels(if pixels == 0 { usize::MAX } else { pixels });
    }
    let mut rng = NoiseRng::new(1);
    let picture: Vec<f32> = (0..3 * h * w)
        .map(|_| (rng.normal() as f32 * 0.5).clamp(-1.0, 1.0))
        .collect();
    let rss_before = rss_kib("VmRSS:");

    // The first run also optimises tract's plan for this shape; report it apart.
    let started = Instant::now();
    let out = upscaler
        .upscale(picture.clone(), h, w)
        .map_err(|e| e.to_string())?;
    let first_run_ms = started.elapsed().as_secs_f64() * 1e3;
    let output = format!("{}x{}", out.shape()[3], out.shape()[2]);
    let diff_from_tiled = if let Some(pixels) = arg::<usize>(&args, "--check-tiles") {
        let tiled = Upscaler::load_folder(&dir, threads).map_err(|e| e.to_string())?;
        let tiled = tiled
            .with_tile_input_pixels(pixels)
            .upscale(picture.clone(), h, w)
            .map_err(|e| e.to_string())?;
        let values = |t: &tract_onnx::prelude::Tensor| -> Vec<f32> {
            let view = t.try_as_plain_ram().expect("plain tensor");
            view.as_slice::<f32>().expect("f32").to_vec()
        };
        let (a, b) = (values(&out), values(&tiled));
        Some(
            a.iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max),
        )
    } else {
        None
    };
    drop(out);
    if ops {
        cabin_diffusion::model::op_profile::start(true);
    }
    let (mut times, mut cpu) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let live_before = LIVE.load(Ordering::Relaxed);
    PEAK.store(live_before, Ordering::Relaxed);
    for _ in 0..runs {
        let (started, cpu_started) = (Instant::now(), cpu_ms());
        let out = upscaler
            .upscale(picture.clone(), h, w)
            .map_err(|e| e.to_string())?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        cpu.push(cpu_ms() - cpu_started);
        drop(out);
    }
    if ops {
        for (_, op, spent) in cabin_diffusion::model::op_profile::take() {
            eprintln!("{op:<90} {:8.2} ms per run", spent / runs as f64);
        }
    }
    times.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let mib = |k: Option<u64>| k.map(|k| k as f64 / 1024.0);
    let report = serde_json::json!({
        "engine": "tract",
        "threads": threads,
        "scale": upscaler.scale(),
        "input": format!("{w}x{h}"),
        "output": output,
        "first_run_ms": first_run_ms,
        "median_ms": times[times.len() / 2],
        "min_ms": times[0],
        "cpu_ms": cpu[cpu.len() / 2],
        "runs": runs,
        "tile_pixels": tile_pixels,
        "max_diff_from_tiled": diff_from_tiled,
        "rss_before_run_mib": mib(rss_before),
        "run_peak_live_heap_mib": (PEAK.load(Ordering::Relaxed) - live_before) as f64 / (1 << 20) as f64,
        "peak_rss_mib": mib(rss_kib("VmHWM:")),
    });
    println!("{report}");
    Ok(())
}
