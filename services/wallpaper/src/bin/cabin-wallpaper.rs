//! `cabin-wallpaper`: the wallpaper engine from a shell.
//!
//! `generate` runs prompt → display-size PNG; `manifest` writes a model folder's manifest.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use cabin_wallpaper::engine::display::{self, Fit};
use cabin_wallpaper::engine::manifest::{self, Manifest};
use cabin_wallpaper::engine::model::LoadOptions;
use cabin_wallpaper::engine::pipeline::Request;
use cabin_wallpaper::{Engine, default_model_dir};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "cabin's on-device wallpaper generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a wallpaper PNG from a prompt.
    Generate(GenerateArgs),
    /// Print the sun's apparent elevation, azimuth and day phase as JSON.
    Sun {
        #[arg(long, allow_negative_numbers = true)]
        lat: f64,
        #[arg(long, allow_negative_numbers = true)]
        lon: f64,
        /// RFC 3339 time, e.g. 2026-12-21T08:30:00+08:00 [default: now].
        #[arg(long)]
        at: Option<String>,
    },
    /// A contact sheet of a model at display size: one tile per scene family of the wallpaper
    /// vocabulary (or, with --phases, four families at each light phase), each a whole
    /// picture made as `generate` makes it, display stage included, then scaled into the sheet.
    ContactSheet(SheetArgs),
    /// Write manifest.json (sha256 of every file) for a model folder.
    Manifest {
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        licence: String,
        /// How the model was made (command, data, training time).
        #[arg(long)]
        made_by: String,
    },
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Model folder in the diffusers ONNX layout [default: the bundled model].
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value = "")]
    negative: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Denoising steps [default: the model's].
    #[arg(long)]
    steps: Option<usize>,
    /// Classifier-free guidance scale; ≤ 1 turns guidance off [default: the model's].
    #[arg(long)]
    guidance: Option<f64>,
    /// ddim, euler, euler-a, dpm++2m, dpm++2m-karras or lcm [default: the model's].
    #[arg(long)]
    scheduler: Option<String>,
    /// Display size of the PNG.
    #[arg(long, default_value = "1920x720", value_parser = display::parse_size)]
    size: (u32, u32),
    /// Generation size before resizing [default: the model's native size].
    #[arg(long, value_parser = display::parse_size)]
    gen_size: Option<(u32, u32)>,
    /// How another aspect ratio fills the display: crop or extend.
    #[arg(long, default_value = "crop")]
    fit: Fit,
    /// img2img: start from this picture.
    #[arg(long, requires = "strength")]
    init: Option<PathBuf>,
    /// img2img: how much to change it, (0, 1].
    #[arg(long, requires = "init")]
    strength: Option<f64>,
    /// Threads a picture is computed on (a pool this size; 1 runs on the calling thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Load a model folder that has no manifest (a fresh export under test).
    #[arg(long)]
    allow_unverified: bool,
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct SheetArgs {
    /// Model folder in the diffusers ONNX layout [default: the bundled model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// One tile per prompt [default: every family, or with --phases four families by phase].
    #[arg(long = "prompt")]
    prompts: Vec<String>,
    /// Families by light phase (a row per family, a column per phase) rather than families.
    #[arg(long)]
    phases: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Size of the sheet (and of each picture before it is scaled into its tile).
    #[arg(long, default_value = "1920x720", value_parser = display::parse_size)]
    size: (u32, u32),
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Load a model folder that has no manifest (a fresh export under test).
    #[arg(long)]
    allow_unverified: bool,
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    cabin_common::logging::init("wallpaper-cli");
    let result = match Cli::parse().command {
        Command::Generate(args) => generate(args),
        Command::ContactSheet(args) => contact_sheet(args),
        Command::Sun { lat, lon, at } => sun(lat, lon, at.as_deref()),
        Command::Manifest {
            dir,
            name,
            version,
            licence,
            made_by,
        } => Manifest::build(&dir, &name, &version, &licence, &made_by)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                let path = dir.join(manifest::FILE_NAME);
                let text = serde_json::to_string_pretty(&m).map_err(|e| e.to_string())? + "\n";
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
                eprintln!("wrote {} ({} files)", path.display(), m.files.len());
                Ok(())
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cabin-wallpaper: {e}");
            ExitCode::FAILURE
        }
    }
}

fn sun(lat: f64, lon: f64, at: Option<&str>) -> Result<(), String> {
    cabin_wallpaper::sun::validate(lat, lon)?;
    let at = match at {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("--at `{text}` is not an RFC 3339 time: {e}"))?
            .to_utc(),
        None => chrono::Utc::now(),
    };
    let p = cabin_wallpaper::sun::position(lat, lon, at);
    let json = serde_json::json!({
        "elevation_deg": (p.elevation_deg * 1e4).round() / 1e4,
        "azimuth_deg": (p.azimuth_deg * 1e4).round() / 1e4,
        "phase": p.phase.as_str(),
    });
    println!("{json}");
    Ok(())
}

fn generate(args: GenerateArgs) -> Result<(), String> {
    if !(1..=64).contains(&args.threads) {
        return Err(format!("--threads must be 1..=64, got {}", args.threads));
    }
    let init = match (&args.init, args.strength) {
        (Some(path), Some(strength)) => {
            let image = image::open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .to_rgb8();
            Some((image, strength))
        }
        _ => None,
    };
    let engine = open_engine(args.model.clone(), args.allow_unverified, args.threads);
    let request = Request {
        prompt: args.prompt,
        negative: args.negative,
        seed: args.seed,
        steps: args.steps,
        guidance: args.guidance,
        scheduler: args.scheduler,
        size: args.gen_size.map(|(w, h)| (w as usize, h as usize)),
        init,
        previews: false,
    };
    let started = std::time::Instant::now();
    let generated = engine
        .generate(&request, &AtomicBool::new(false), &mut |p| {
            eprint!("\rstep {}/{}", p.step, p.total);
            if p.step == p.total {
                eprintln!();
            }
        })
        .map_err(|e| e.to_string())?;
    let (w, h) = args.size;
    let fit_started = std::time::Instant::now();
    let png = display::encode_png(&display::to_display(&generated.image, w, h, args.fit));
    let fit = fit_started.elapsed();
    std::fs::write(&args.out, png).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let t = &generated.timings;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let (gw, gh) = generated.image.dimensions();
    let scale = engine.model().ok().and_then(|m| m.info.display_scale);
    let display_stage = match scale {
        Some(s) => format!("display stage x{s} {:.0} ms", ms(t.display_stage)),
        None => "no display stage".into(),
    };
    eprintln!(
        "text encoder {:.0} ms, {} steps {:.0} ms, decoder {:.0} ms, {display_stage} \
         ({gw}x{gh}), fit + PNG {:.0} ms",
        ms(t.text_encoder),
        t.unet_steps.len(),
        t.unet_steps.iter().copied().map(ms).sum::<f64>(),
        ms(t.decoder),
        ms(fit),
    );
    let peak = peak_rss_mib().map_or(String::new(), |m| format!(", peak RSS {m:.0} MiB"));
    eprintln!(
        "wrote {} ({w}x{h}) in {:.2} s{peak}",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// This process's own peak resident memory (`VmHWM`), where the kernel tells it. A parent's
/// rusage cannot say: a child forked from a large process carries the parent's high-water mark
/// across exec.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The default prompts of a contact sheet and its columns.
fn sheet_prompts(phases: bool) -> (Vec<String>, u32) {
    if !phases {
        return (
            cabin_text::scene::families()
                .iter()
                .map(|f| f.to_string())
                .collect(),
            4,
        );
    }
    let phrase = |phase: &str| match phase {
        "day" => "in the daytime".to_string(),
        other => format!("at {other}"),
    };
    let families = ["sea", "mountains", "city", "lake"];
    let phases = cabin_text::scene::phases();
    let prompts = families
        .iter()
        .flat_map(|f| phases.iter().map(move |p| format!("{f} {}", phrase(p))))
        .collect();
    (prompts, phases.len().max(1) as u32)
}

fn contact_sheet(args: SheetArgs) -> Result<(), String> {
    if !(1..=64).contains(&args.threads) {
        return Err(format!("--threads must be 1..=64, got {}", args.threads));
    }
    let (prompts, columns) = if args.prompts.is_empty() {
        sheet_prompts(args.phases)
    } else {
        let n = args.prompts.len() as u32;
        (args.prompts.clone(), n.min(4))
    };
    if prompts.is_empty() {
        return Err("no prompts for the sheet".into());
    }
    let engine = open_engine(args.model.clone(), args.allow_unverified, args.threads);
    let (w, h) = args.size;
    let rows = (prompts.len() as u32).div_ceil(columns);
    let (tile_w, tile_h) = (w / columns, h / rows);
    let mut sheet = image::RgbImage::new(w, h);
    for (i, prompt) in prompts.iter().enumerate() {
        let started = std::time::Instant::now();
        let request = Request {
            prompt: prompt.clone(),
            negative: String::new(),
            seed: args.seed,
            steps: None,
            guidance: None,
            scheduler: None,
            size: None,
            init: None,
            previews: false,
        };
        let generated = engine
            .generate(&request, &AtomicBool::new(false), &mut |_| {})
            .map_err(|e| format!("{prompt}: {e}"))?;
        // The picture as the display shows it, then scaled to cover its tile.
        let picture = display::to_display(&generated.image, w, h, Fit::Crop);
        let scale = f64::max(
            f64::from(tile_w) / f64::from(w),
            f64::from(tile_h) / f64::from(h),
        );
        let (sw, sh) = (
            (f64::from(w) * scale).ceil() as u32,
            (f64::from(h) * scale).ceil() as u32,
        );
        let scaled =
            image::imageops::resize(&picture, sw, sh, image::imageops::FilterType::Triangle);
        let tile = image::imageops::crop_imm(
            &scaled,
            (sw - tile_w) / 2,
            (sh - tile_h) / 2,
            tile_w,
            tile_h,
        )
        .to_image();
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        image::imageops::replace(
            &mut sheet,
            &tile,
            i64::from(col * tile_w),
            i64::from(row * tile_h),
        );
        eprintln!(
            "{}/{} {prompt:?} in {:.2} s",
            i + 1,
            prompts.len(),
            started.elapsed().as_secs_f64()
        );
    }
    std::fs::write(&args.out, display::encode_png(&sheet))
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprintln!(
        "wrote {} ({w}x{h}, {} tiles)",
        args.out.display(),
        prompts.len()
    );
    Ok(())
}

/// The engine on `--model` (default: the bundled model), as `generate` and `contact-sheet` load it.
fn open_engine(model: Option<PathBuf>, allow_unverified: bool, threads: usize) -> Engine {
    Engine::new(
        model.unwrap_or_else(default_model_dir),
        LoadOptions {
            require_manifest: !allow_unverified,
            threads,
        },
    )
}
