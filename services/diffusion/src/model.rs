//! A model folder in the diffusers ONNX layout, loaded for tract.
//!
//! ```text
//! model_index.json  manifest.json  scheduler/scheduler_config.json
//! tokenizer/{tokenizer.json,tokenizer_config.json}
//! text_encoder/model.onnx  unet/model.onnx  vae_decoder/model.onnx  [vae_encoder/model.onnx]
//! [upscaler/{model.onnx,config.json}]
//! ```
//!
//! A pixel-space model (no `vae_decoder/`) is allowed: its denoiser works on RGB directly.
//! The latent grid's pixels per cell come from `vae_decoder/config.json`: its
//! `spatial_compression_ratio` (cabin's own autoencoder says so) or else diffusers'
//! AutoencoderKL rule, one halving per `block_out_channels` entry after the first.
//! `upscaler/` is the optional display stage (`super::upscaler`): a network that lifts the
//! decoded picture by an integer scale before it is fitted to a display.
//! Each network is parsed once; tract plans are optimised per concrete input shape on first
//! use and cached, so a model that serves one display size pays the optimisation once.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::EngineError;
use super::manifest::Manifest;
use super::scheduler::SchedulerConfig;
use super::tokenizer::PromptTokenizer;
use super::upscaler::{self, Upscaler};
use crate::net::{Net, heap};

pub use crate::net::op_profile;

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Refuse a folder without a valid `manifest.json` (the default; off only for a developer
    /// trying a fresh export).
    pub require_manifest: bool,
    /// Threads tract may use for matrix products (1 = the calling thread only).
    pub threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            require_manifest: true,
            threads: 1,
        }
    }
}

/// Defaults a model folder may recommend in `model_index.json` under `"cabin"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Recommended {
    pub steps: usize,
    pub guidance: f64,
    pub scheduler: Option<String>,
}

impl Default for Recommended {
    fn default() -> Self {
        Self {
            steps: 20,
            guidance: 7.5,
            scheduler: None,
        }
    }
}

/// What the pipeline needs to know about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub dir: PathBuf,
    pub name: String,
    pub version: String,
    pub licence: String,
    pub latent_channels: usize,
    /// Pixels per latent cell (8 for SD's VAE, 1 for a pixel-space model).
    pub latent_factor: usize,
    pub native_width: usize,
    pub native_height: usize,
    pub scaling_factor: f64,
    pub recommended: Recommended,
    /// Width of the guidance embedding an LCM-distilled UNet takes, if any.
    pub time_cond_dim: Option<usize>,
    /// The display stage's scale when the folder carries `upscaler/`: generated pictures come
    /// out this many times the generation size. `None`: they come out at generation size.
    pub display_scale: Option<usize>,
}

pub struct Model {
    pub info: ModelInfo,
    pub scheduler: SchedulerConfig,
    pub tokenizer: PromptTokenizer,
    pub(crate) text_encoder: Net,
    pub(crate) unet: Net,
    pub(crate) vae_decoder: Option<Net>,
    pub(crate) vae_encoder: Option<Net>,
    pub(crate) upscaler: Option<Upscaler>,
    /// Last, so it runs after the networks are freed.
    _give_back: heap::GiveBackOnDrop,
}

impl Model {
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self, EngineError> {
        heap::keep_freed_memory();
        if !dir.is_dir() {
            return Err(EngineError::Model(format!(
                "{} is not a model folder",
                dir.display()
            )));
        }
        let manifest = Manifest::open(dir, options.require_manifest)?;
        let covered = |rel: &str| -> Result<PathBuf, EngineError> {
            if let Some(m) = &manifest {
                m.require(rel)?;
            }
            Ok(dir.join(rel))
        };
        let read_json = |rel: &str, required: bool| -> Result<Value, EngineError> {
            let path = dir.join(rel);
            if !required && !path.exists() {
                return Ok(Value::Null);
            }
            let path = covered(rel)?;
            let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
            serde_json::from_str(&text).map_err(|e| EngineError::Model(format!("{rel}: {e}")))
        };

        let index = read_json("model_index.json", true)?;
        let recommended: Recommended = match index.get("cabin") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| EngineError::Model(format!("model_index.json `cabin`: {e}")))?,
            None => Recommended::default(),
        };
        let scheduler_json = read_json("scheduler/scheduler_config.json", true)?;
        let scheduler = SchedulerConfig::from_json(&scheduler_json.to_string())?;
        scheduler.alphas_cumprod()?;

        let threads = options.threads.max(1);
        let text_encoder = Net::load(
            &covered("text_encoder/model.onnx")?,
            "text encoder",
            threads,
        )?;
        let unet = Net::load(&covered("unet/model.onnx")?, "unet", threads)?;
        let has_vae = dir.join("vae_decoder/model.onnx").exists();
        let vae_decoder = if has_vae {
            Some(Net::load(
                &covered("vae_decoder/model.onnx")?,
                "vae decoder",
                threads,
            )?)
        } else {
            None
        };
        let vae_encoder = if dir.join("vae_encoder/model.onnx").exists() {
            Some(Net::load(
                &covered("vae_encoder/model.onnx")?,
                "vae encoder",
                threads,
            )?)
        } else {
            None
        };

        let upscaler = if dir.join(upscaler::FOLDER).exists() {
            Some(Upscaler::load(
                &covered(upscaler::WEIGHTS)?,
                &covered(upscaler::CONFIG)?,
                upscaler::CONFIG,
                threads,
            )?)
        } else {
            None
        };

        let seq_len = text_encoder
            .input("input_ids")?
            .dims
            .get(1)
            .copied()
            .flatten()
            .unwrap_or(77);
        covered("tokenizer/tokenizer.json")?;
        if dir.join("tokenizer/tokenizer_config.json").exists() {
            covered("tokenizer/tokenizer_config.json")?;
        }
        let tokenizer = PromptTokenizer::load(&dir.join("tokenizer"), seq_len)?;

        let unet_cfg = read_json("unet/config.json", false)?;
        let vae_cfg = read_json("vae_decoder/config.json", false)?;
        let sample = unet.input("sample")?;
        let latent_channels = unet_cfg["in_channels"]
            .as_u64()
            .map(|c| c as usize)
            .or(sample.dims.get(1).copied().flatten())
            .ok_or_else(|| EngineError::Model("cannot tell the UNet's channel count".into()))?;
        let latent_factor = if has_vae { latent_factor(&vae_cfg)? } else { 1 };
        let sample_size = |axis: usize| -> Option<usize> {
            match &unet_cfg["sample_size"] {
                Value::Number(n) => n.as_u64().map(|n| n as usize),
                Value::Array(a) => a.get(axis - 2).and_then(Value::as_u64).map(|n| n as usize),
                _ => None,
            }
            .or(sample.dims.get(axis).copied().flatten())
        };
        let (lh, lw) = (sample_size(2).unwrap_or(64), sample_size(3).unwrap_or(64));
        let time_cond_dim = unet
            .inputs
            .iter()
            .any(|i| i.name == "timestep_cond")
            .then(|| unet_cfg["time_cond_proj_dim"].as_u64().map(|d| d as usize))
            .flatten();
        let (name, version, licence) = match &manifest {
            Some(m) => (m.name.clone(), m.version.clone(), m.licence.clone()),
            None => (
                dir.display().to_string(),
                "unverified".into(),
                "unknown".into(),
            ),
        };
        Ok(Self {
            info: ModelInfo {
                dir: dir.to_path_buf(),
                name,
                version,
                licence,
                latent_channels,
                latent_factor,
                native_width: lw * latent_factor,
                native_height: lh * latent_factor,
                scaling_factor: vae_cfg["scaling_factor"].as_f64().unwrap_or(if has_vae {
                    0.18215
                } else {
                    1.0
                }),
                recommended,
                time_cond_dim,
                display_scale: upscaler.as_ref().map(Upscaler::scale),
            },
            scheduler,
            tokenizer,
            text_encoder,
            unet,
            vae_decoder,
            vae_encoder,
            upscaler,
            _give_back: heap::GiveBackOnDrop,
        })
    }
}

/// Pixels per latent cell, from `vae_decoder/config.json` (`Null` when there is none).
fn latent_factor(vae_cfg: &Value) -> Result<usize, EngineError> {
    const MAX: u64 = 64;
    if let Some(ratio) = vae_cfg.get("spatial_compression_ratio") {
        return ratio
            .as_u64()
            .filter(|r| (1..=MAX).contains(r))
            .map(|r| r as usize)
            .ok_or_else(|| {
                EngineError::Model(format!(
                    "vae_decoder/config.json: `spatial_compression_ratio` must be an integer in \
                     1..={MAX}, got {ratio}"
                ))
            });
    }
    match vae_cfg["block_out_channels"].as_array() {
        Some(blocks) if !blocks.is_empty() => 1u64
            .checked_shl(blocks.len() as u32 - 1)
            .filter(|f| *f <= MAX)
            .map(|f| f as usize)
            .ok_or_else(|| {
                EngineError::Model(format!(
                    "vae_decoder/config.json: {} `block_out_channels` would shrink the picture \
                     more than {MAX}x",
                    blocks.len()
                ))
            }),
        _ => Ok(8),
    }
}
