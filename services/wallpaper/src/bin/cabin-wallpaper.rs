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

fn main() -> ExitCode {
    cabin_common::logging::init("wallpaper-cli");
    let result = match Cli::parse().command {
        Command::Generate(args) => generate(args),
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
    let dir = args.model.clone().unwrap_or_else(default_model_dir);
    let engine = Engine::new(
        &dir,
        LoadOptions {
            require_manifest: !args.allow_unverified,
            threads: args.threads,
        },
    );
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
    eprintln!(
        "wrote {} ({w}x{h}) in {:.2} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
