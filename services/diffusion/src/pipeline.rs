//! Prompt → image: tokenize, encode (cond and uncond), denoise with classifier-free
//! guidance, decode, then lift with the model's display stage when it has one. Mirrors
//! diffusers' `StableDiffusionPipeline` and its img2img sibling, so a model behaves here as it
//! does there.
//!
//! Every picture a caller gets from [`generate`] is a display picture: the service's
//! requests, their phase variants and the CLI's PNG all come through here, so all of them
//! are upscaled once, in one place, and only fitted to a screen afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use image::{Rgb32FImage, RgbImage};
use tract_onnx::prelude::*;

use super::EngineError;
use super::model::Model;
use super::net::Net;
use super::rng::NoiseRng;
use super::scheduler::{NoiseSource, SchedulerConfig};
use super::tokenizer::PromptTokenizer;

/// The largest side we generate natively; display sizes come from resizing.
pub const MAX_SIDE: usize = 2048;
pub const MAX_STEPS: usize = 500;
pub const MAX_GUIDANCE: f64 = 30.0;

/// One generation.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub prompt: String,
    pub negative: String,
    pub seed: u64,
    /// Defaults to the model's recommendation.
    pub steps: Option<usize>,
    pub guidance: Option<f64>,
    /// One of `scheduler::NAMES`; defaults to the model's.
    pub scheduler: Option<String>,
    /// Generation size (width, height); defaults to the model's native size.
    pub size: Option<(usize, usize)>,
    /// img2img: start from this picture, keeping `strength` of the noise (0..=1).
    pub init: Option<(RgbImage, f64)>,
    /// Ask for a cheap preview with each progress report.
    pub previews: bool,
}

/// Reported after every denoising step.
pub struct Progress<'a> {
    pub step: usize,
    pub total: usize,
    /// The current guess of the final picture at latent resolution. A progress indicator,
    /// not a display picture: it is never decoded nor put through the display stage, which
    /// would cost a decoder run per step.
    pub preview: Option<&'a RgbImage>,
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub text_encoder: Duration,
    pub unet_steps: Vec<Duration>,
    pub decoder: Duration,
    /// The upscaler and the conversion to an image (without an upscaler, the conversion only).
    pub display_stage: Duration,
}

pub struct Generated {
    /// RGB in [0, 1] at generation size times the model's display scale
    /// (`ModelInfo::display_scale`; 1 without an upscaler).
    pub image: Rgb32FImage,
    pub timings: Timings,
    /// Latents just before decoding (unscaled), for checks against a reference.
    pub final_latents: Vec<f32>,
}

/// Initial noise can be handed in (to reproduce a reference run) instead of drawn.
pub enum Noise {
    Seeded,
    Given {
        latents: Vec<f32>,
        extra: Option<Box<dyn NoiseSource>>,
    },
}

struct Plan {
    steps: usize,
    guidance: f64,
    width: usize,
    height: usize,
}

fn plan(model: &Model, req: &Request) -> Result<Plan, EngineError> {
    PromptTokenizer::check("prompt", &req.prompt, false)?;
    PromptTokenizer::check("negative prompt", &req.negative, true)?;
    let info = &model.info;
    let steps = req.steps.unwrap_or(info.recommended.steps);
    if !(1..=MAX_STEPS).contains(&steps) {
        return Err(EngineError::InvalidArgument(format!(
            "steps must be 1..={MAX_STEPS}, got {steps}"
        )));
    }
    let guidance = req.guidance.unwrap_or(info.recommended.guidance);
    if !guidance.is_finite() || !(0.0..=MAX_GUIDANCE).contains(&guidance) {
        return Err(EngineError::InvalidArgument(format!(
            "guidance must be 0..={MAX_GUIDANCE}, got {guidance}"
        )));
    }
    let (width, height) = req.size.unwrap_or((info.native_width, info.native_height));
    let f = info.latent_factor;
    for (what, v) in [("width", width), ("height", height)] {
        if v == 0 || v > MAX_SIDE || v % f != 0 {
            return Err(EngineError::InvalidArgument(format!(
                "{what} must be a multiple of {f} in {f}..={MAX_SIDE}, got {v}"
            )));
        }
    }
    if let Some(scale) = info.display_scale {
        // The display stage multiplies the picture; keep it within what a display can be.
        let max = super::display::MAX_DISPLAY_SIDE as usize;
        for (what, v) in [("width", width), ("height", height)] {
            if v * scale > max {
                return Err(EngineError::InvalidArgument(format!(
                    "{what} {v} times this model's display scale {scale} is over {max}"
                )));
            }
        }
    }
    let sample = model.unet.input("sample")?;
    for (axis, v) in [(2, height / f), (3, width / f)] {
        if let Some(Some(fixed)) = sample.dims.get(axis)
            && *fixed != v
        {
            return Err(EngineError::InvalidArgument(format!(
                "this model only generates {}x{}",
                info.native_width, info.native_height
            )));
        }
    }
    if let Some((_, strength)) = &req.init
        && !(strength.is_finite() && *strength > 0.0 && *strength <= 1.0)
    {
        return Err(EngineError::InvalidArgument(format!(
            "strength must be in (0, 1], got {strength}"
        )));
    }
    Ok(Plan {
        steps,
        guidance,
        width,
        height,
    })
}

/// Runs a generation. `cancel` is checked before every step; `progress` is called after.
pub fn generate(
    model: &Model,
    req: &Request,
    noise: Noise,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Generated, EngineError> {
    let mut scheduler = model.scheduler.clone();
    if let Some(name) = req
        .scheduler
        .as_deref()
        .or(model.info.recommended.scheduler.as_deref())
    {
        scheduler = scheduler.with_name(name)?;
    }
    generate_with_scheduler(model, req, scheduler, noise, cancel, progress)
}

/// [`generate`] with an explicit scheduler config instead of the model's and `req.scheduler`.
pub fn generate_with_scheduler(
    model: &Model,
    req: &Request,
    scheduler: SchedulerConfig,
    noise: Noise,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Generated, EngineError> {
    let Plan {
        steps,
        guidance,
        width,
        height,
    } = plan(model, req)?;
    let info = &model.info;
    let mut scheduler = scheduler.build(steps)?;
    let mut timings = Timings::default();

    // Guidance-distilled (LCM) UNets take the guidance as an embedding instead of a batch.
    let embedded_guidance = model.unet.has_input("timestep_cond");
    let cfg = guidance > 1.0 && !embedded_guidance;

    let started = Instant::now();
    let cond = encode_text(model, &[&req.prompt])?;
    let hidden = if cfg {
        let uncond = encode_text(model, &[&req.negative])?;
        concat0(&[&uncond, &cond], "text encoder")?
    } else {
        cond
    };
    timings.text_encoder = started.elapsed();

    let (c, h, w) = (
        info.latent_channels,
        height / info.latent_factor,
        width / info.latent_factor,
    );
    let n = c * h * w;
    let mut rng = NoiseRng::new(req.seed);
    let (initial, mut extra): (Vec<f32>, Box<dyn NoiseSource>) = match noise {
        Noise::Seeded => {
            let initial = rng.normals(n);
            (initial, Box::new(rng))
        }
        Noise::Given { latents, extra } => {
            if latents.len() != n {
                return Err(EngineError::InvalidArgument(format!(
                    "given latents have {} values, expected {n}",
                    latents.len()
                )));
            }
            (latents, extra.unwrap_or_else(|| Box::new(rng)))
        }
    };

    let timesteps = scheduler.timesteps().to_vec();
    let (start, mut latents) = match &req.init {
        Some((image, strength)) => {
            let init_steps = ((steps as f64 * strength) as usize).min(steps);
            if init_steps == 0 {
                return Err(EngineError::InvalidArgument(format!(
                    "strength {strength} leaves no step to run at {steps} steps"
                )));
            }
            let start = steps - init_steps;
            let clean = encode_image(model, image, width, height)?;
            (start, scheduler.add_noise(&clean, &initial, start))
        }
        None => {
            let sigma = scheduler.init_noise_sigma();
            (
                0,
                initial
                    .iter()
                    .map(|&v| (f64::from(v) * sigma) as f32)
                    .collect(),
            )
        }
    };

    let total = steps - start;
    let batch = if cfg { 2 } else { 1 };
    let guidance_embedding = match (embedded_guidance, info.time_cond_dim) {
        (true, Some(dim)) => Some(guidance_scale_embedding(guidance - 1.0, dim)),
        (true, None) => {
            return Err(EngineError::Model(
                "the UNet takes timestep_cond but its width is unknown".into(),
            ));
        }
        _ => None,
    };
    let timestep_rank = model.unet.input("timestep")?.dims.len();
    for (done, i) in (start..steps).enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled { step: done, total });
        }
        let step_started = Instant::now();
        let mut model_in = latents.clone();
        scheduler.scale_model_input(&mut model_in, i);
        let sample: Vec<f32> = model_in.iter().copied().cycle().take(n * batch).collect();
        let t = timesteps[i] as f32;
        let timestep = if timestep_rank == 0 {
            tensor0(t)
        } else {
            tensor1(&vec![t; batch])
        };
        let mut inputs = vec![
            ("sample", tensor_f32(&[batch, c, h, w], sample)?),
            ("timestep", timestep),
            ("encoder_hidden_states", hidden.clone()),
        ];
        if let Some(emb) = &guidance_embedding {
            inputs.push(("timestep_cond", tensor_f32(&[1, emb.len()], emb.clone())?));
        }
        let out = run_batched(&model.unet, inputs, batch)?;
        let eps: Vec<f32> = if cfg {
            let (u, t) = out.split_at(n);
            let g = guidance as f32;
            u.iter().zip(t).map(|(&u, &t)| u + g * (t - u)).collect()
        } else {
            out
        };
        let stepped = scheduler.step(&eps, i, &latents, extra.as_mut());
        latents = stepped.prev_sample;
        timings.unet_steps.push(step_started.elapsed());
        let preview = req
            .previews
            .then(|| preview(&stepped.pred_original, c, h, w, info.latent_factor > 1))
            .flatten();
        progress(Progress {
            step: done + 1,
            total,
            preview: preview.as_ref(),
        });
    }

    let started = Instant::now();
    let (planes, ph, pw) = decode(model, &latents, c, h, w)?;
    timings.decoder = started.elapsed();
    let started = Instant::now();
    let image = match &model.upscaler {
        Some(upscaler) => {
            let upscaled = upscaler.upscale(planes, ph, pw)?;
            let s = upscaler.scale();
            let values = upscaled
                .try_as_plain_ram()
                .and_then(|view| view.as_slice::<f32>())
                .map_err(|e| EngineError::Inference {
                    stage: "upscaler",
                    message: e.to_string(),
                })?;
            picture(values, s * ph, s * pw)
        }
        None => picture(&planes, ph, pw),
    };
    timings.display_stage = started.elapsed();
    Ok(Generated {
        image,
        timings,
        final_latents: latents,
    })
}

fn encode_text(model: &Model, prompts: &[&str]) -> Result<Tensor, EngineError> {
    let mut ids = Vec::new();
    for p in prompts {
        ids.extend(model.tokenizer.encode("prompt", p)?);
    }
    let len = model.tokenizer.max_len();
    let input = tract_ndarray::Array2::from_shape_vec((prompts.len(), len), ids)
        .map_err(|e| EngineError::Inference {
            stage: "text encoder",
            message: e.to_string(),
        })?
        .into_tensor();
    let net = &model.text_encoder;
    let outputs = net.run(vec![("input_ids", input)])?;
    Net::pick(&outputs, &["last_hidden_state"], net.output_names()).ok_or_else(|| {
        EngineError::Inference {
            stage: "text encoder",
            message: "no output".into(),
        }
    })
}

/// Runs `net` at `batch`, or once per batch item when its batch axis is fixed at 1.
fn run_batched(
    net: &Net,
    inputs: Vec<(&str, Tensor)>,
    batch: usize,
) -> Result<Vec<f32>, EngineError> {
    let fixed_one = net.input("sample")?.dims.first() == Some(&Some(1));
    let err = |e: TractError| EngineError::Inference {
        stage: "unet",
        message: format!("{e:#}"),
    };
    let runs: Vec<Vec<(&str, Tensor)>> = if batch > 1 && fixed_one {
        (0..batch)
            .map(|b| {
                inputs
                    .iter()
                    .map(|(name, t)| {
                        let t = if t.rank() > 0 && t.shape()[0] == batch {
                            t.slice(0, b, b + 1).map_err(err)?
                        } else {
                            t.clone()
                        };
                        Ok((*name, t))
                    })
                    .collect::<Result<_, EngineError>>()
            })
            .collect::<Result<_, _>>()?
    } else {
        vec![inputs]
    };
    let mut out = Vec::new();
    for run in runs {
        let outputs = net.run(run)?;
        let t = Net::pick(&outputs, &["out_sample"], net.output_names()).ok_or_else(|| {
            EngineError::Inference {
                stage: "unet",
                message: "no output".into(),
            }
        })?;
        out.extend(values(&t).map_err(err)?);
    }
    Ok(out)
}

/// The img2img start picture as latents. `image` may be any size (a stored picture is at the
/// display stage's size): it is fitted back to the generation size the encoder works at.
fn encode_image(
    model: &Model,
    image: &RgbImage,
    width: usize,
    height: usize,
) -> Result<Vec<f32>, EngineError> {
    let fitted = super::display::cover(image, width as u32, height as u32);
    let (w, h) = (width, height);
    let mut chw = vec![0f32; 3 * w * h];
    for (x, y, p) in fitted.enumerate_pixels() {
        for ch in 0..3 {
            chw[ch * w * h + y as usize * w + x as usize] = f32::from(p[ch]) / 127.5 - 1.0;
        }
    }
    let info = &model.info;
    let Some(encoder) = &model.vae_encoder else {
        if info.latent_factor == 1 {
            return Ok(chw);
        }
        return Err(EngineError::Model(
            "img2img needs vae_encoder/model.onnx".into(),
        ));
    };
    let outputs = encoder.run(vec![("sample", tensor_f32(&[1, 3, h, w], chw)?)])?;
    let t = Net::pick(
        &outputs,
        &["latent_parameters", "latent_sample"],
        encoder.output_names(),
    )
    .ok_or_else(|| EngineError::Inference {
        stage: "vae encoder",
        message: "no output".into(),
    })?;
    let values = values(&t).map_err(|e| EngineError::Inference {
        stage: "vae encoder",
        message: e.to_string(),
    })?;
    let n = info.latent_channels * (h / info.latent_factor) * (w / info.latent_factor);
    if values.len() < n {
        return Err(EngineError::Model(
            "vae encoder output is smaller than the latent".into(),
        ));
    }
    // Mean and log-variance are stacked on channels; the mean comes first.
    Ok(values[..n]
        .iter()
        .map(|&v| (f64::from(v) * info.scaling_factor) as f32)
        .collect())
}

/// The decoder's picture, planar RGB in -1..1, with its height and width.
fn decode(
    model: &Model,
    latents: &[f32],
    c: usize,
    h: usize,
    w: usize,
) -> Result<(Vec<f32>, usize, usize), EngineError> {
    Ok(match &model.vae_decoder {
        Some(vae) => {
            let scaled: Vec<f32> = latents
                .iter()
                .map(|&v| (f64::from(v) / model.info.scaling_factor) as f32)
                .collect();
            let outputs = vae.run(vec![("latent_sample", tensor_f32(&[1, c, h, w], scaled)?)])?;
            let t = Net::pick(&outputs, &["sample"], vae.output_names()).ok_or_else(|| {
                EngineError::Inference {
                    stage: "vae decoder",
                    message: "no output".into(),
                }
            })?;
            let shape = t.shape().to_vec();
            if shape.len() != 4 || shape[0] == 0 || shape[1] != 3 {
                return Err(EngineError::Model(format!(
                    "vae decoder gave shape {shape:?}"
                )));
            }
            let values = values(&t).map_err(|e| EngineError::Inference {
                stage: "vae decoder",
                message: e.to_string(),
            })?;
            (values, shape[2], shape[3])
        }
        None if c == 3 => (latents.to_vec(), h, w),
        None => {
            return Err(EngineError::Model(format!(
                "a pixel-space model must have 3 channels, not {c}"
            )));
        }
    })
}

/// Planar RGB in -1..1 (`[3, height, width]`) as an image in [0, 1], clamped.
fn picture(planes: &[f32], height: usize, width: usize) -> Rgb32FImage {
    let plane = height * width;
    let (r, rest) = planes.split_at(plane);
    let (g, b) = rest.split_at(plane);
    let mut interleaved = Vec::with_capacity(3 * plane);
    for ((&r, &g), &b) in r.iter().zip(g).zip(&b[..plane]) {
        interleaved.extend([r, g, b].map(|v| (v / 2.0 + 0.5).clamp(0.0, 1.0)));
    }
    Rgb32FImage::from_raw(width as u32, height as u32, interleaved)
        .expect("3 values per pixel of a width x height picture")
}

/// A latent-resolution RGB guess: the clean-sample prediction for a pixel model, and a
/// linear map for SD-style 4-channel latents.
fn preview(x0: &[f32], c: usize, h: usize, w: usize, latent: bool) -> Option<RgbImage> {
    const SD_FACTORS: [[f32; 3]; 4] = [
        [0.298, 0.207, 0.208],
        [0.187, 0.286, 0.173],
        [-0.158, 0.189, 0.264],
        [-0.184, -0.271, -0.473],
    ];
    let plane = h * w;
    let pixel = |i: usize| -> [f32; 3] {
        match (latent, c) {
            (false, 3) => [0, 1, 2].map(|ch| x0[ch * plane + i] / 2.0 + 0.5),
            (true, 4) => {
                let mut rgb = [0.0; 3];
                for (ch, f) in SD_FACTORS.iter().enumerate() {
                    for k in 0..3 {
                        rgb[k] += x0[ch * plane + i] * f[k];
                    }
                }
                rgb.map(|v| v / 2.0 + 0.5)
            }
            _ => [0.5; 3],
        }
    };
    if !(c == 3 && !latent || c == 4 && latent) {
        return None;
    }
    Some(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb(
            pixel(y as usize * w + x as usize).map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8),
        )
    }))
}

/// The sinusoidal embedding of (guidance − 1) that LCM-distilled UNets take.
fn guidance_scale_embedding(w: f64, dim: usize) -> Vec<f32> {
    let w = w * 1000.0;
    let half = dim / 2;
    let scale = (10000f64).ln() / (half as f64 - 1.0).max(1.0);
    let freqs: Vec<f64> = (0..half).map(|i| (-(i as f64) * scale).exp() * w).collect();
    let mut emb: Vec<f32> = freqs.iter().map(|f| f.sin() as f32).collect();
    emb.extend(freqs.iter().map(|f| f.cos() as f32));
    emb.resize(dim, 0.0);
    emb
}

/// A tensor's f32 values in logical order.
fn values(t: &Tensor) -> TractResult<Vec<f32>> {
    Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect())
}

fn tensor_f32(shape: &[usize], data: Vec<f32>) -> Result<Tensor, EngineError> {
    tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), data)
        .map(|a| a.into_tensor())
        .map_err(|e| EngineError::Inference {
            stage: "pipeline",
            message: e.to_string(),
        })
}

fn concat0(parts: &[&Tensor], stage: &'static str) -> Result<Tensor, EngineError> {
    Tensor::stack_tensors(0, parts).map_err(|e| EngineError::Inference {
        stage,
        message: e.to_string(),
    })
}
