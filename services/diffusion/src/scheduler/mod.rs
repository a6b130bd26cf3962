//! Noise schedulers, built from a diffusers `scheduler_config.json`.
//!
//! Each reproduces the diffusers class of the same name for the options we support: the
//! same `set_timesteps` (spacing, Karras sigmas), the same `scale_model_input`, `step` and
//! `add_noise` arithmetic. Numbers are computed in f64 and stored as f32 latents.
//! `tests/scheduler_reference.rs` checks them against values diffusers printed.

mod ddim;
mod dpm;
mod euler;
mod lcm;

use serde::Deserialize;

use super::EngineError;

pub use ddim::Ddim;
pub use dpm::DpmSolverMultistep;
pub use euler::Euler;
pub use lcm::Lcm;

/// What the denoiser predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    Sample,
}

/// How inference timesteps are spread over the training ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    Leading,
    Trailing,
    Linspace,
}

/// The subset of diffusers' scheduler config we read; unknown keys are ignored, because
/// real configs carry many that do not change the arithmetic for our options.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: PredictionType,
    pub timestep_spacing: Option<Spacing>,
    pub steps_offset: usize,
    pub set_alpha_to_one: Option<bool>,
    pub clip_sample: Option<bool>,
    pub clip_sample_range: f64,
    pub thresholding: bool,
    pub rescale_betas_zero_snr: bool,
    pub use_karras_sigmas: bool,
    pub interpolation_type: String,
    pub algorithm_type: String,
    pub solver_order: usize,
    pub solver_type: String,
    pub lower_order_final: bool,
    pub euler_at_final: bool,
    pub final_sigmas_type: Option<String>,
    pub original_inference_steps: usize,
    pub timestep_scaling: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            class_name: "DDIMScheduler".into(),
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: "linear".into(),
            trained_betas: None,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: None,
            steps_offset: 0,
            set_alpha_to_one: None,
            clip_sample: None,
            clip_sample_range: 1.0,
            thresholding: false,
            rescale_betas_zero_snr: false,
            use_karras_sigmas: false,
            interpolation_type: "linear".into(),
            algorithm_type: "dpmsolver++".into(),
            solver_order: 2,
            solver_type: "midpoint".into(),
            lower_order_final: true,
            euler_at_final: false,
            final_sigmas_type: None,
            original_inference_steps: 50,
            timestep_scaling: 10.0,
        }
    }
}

/// The schedulers by the names the CLI and the bus accept.
pub const NAMES: &[&str] = &[
    "ddim",
    "euler",
    "euler-a",
    "dpm++2m",
    "dpm++2m-karras",
    "lcm",
];

impl SchedulerConfig {
    pub fn from_json(text: &str) -> Result<Self, EngineError> {
        serde_json::from_str(text)
            .map_err(|e| EngineError::Model(format!("scheduler_config.json: {e}")))
    }

    /// Switches to the scheduler called `name` (one of [`NAMES`]) keeping the betas.
    pub fn with_name(mut self, name: &str) -> Result<Self, EngineError> {
        let (class, karras) = match name {
            "ddim" => ("DDIMScheduler", false),
            "euler" => ("EulerDiscreteScheduler", false),
            "euler-a" => ("EulerAncestralDiscreteScheduler", false),
            "dpm++2m" => ("DPMSolverMultistepScheduler", false),
            "dpm++2m-karras" => ("DPMSolverMultistepScheduler", true),
            "lcm" => ("LCMScheduler", false),
            other => {
                return Err(EngineError::InvalidArgument(format!(
                    "unknown scheduler `{other}`; expected one of {}",
                    NAMES.join(", ")
                )));
            }
        };
        if class != self.class_name {
            // Spacing defaults differ per class; let the new class pick its own.
            self.timestep_spacing = None;
            self.final_sigmas_type = None;
            self.set_alpha_to_one = None;
            self.clip_sample = None;
        }
        self.class_name = class.into();
        self.use_karras_sigmas = karras;
        Ok(self)
    }

    /// The training noise schedule: cumulative products of (1 - beta).
    pub fn alphas_cumprod(&self) -> Result<Vec<f64>, EngineError> {
        let n = self.num_train_timesteps;
        if !(2..=100_000).contains(&n) {
            return Err(EngineError::Model(format!(
                "num_train_timesteps {n} is out of range"
            )));
        }
        let mut betas: Vec<f64> = match (&self.trained_betas, self.beta_schedule.as_str()) {
            (Some(b), _) if b.len() == n => b.clone(),
            (Some(b), _) => {
                return Err(EngineError::Model(format!(
                    "trained_betas has {} values, expected {n}",
                    b.len()
                )));
            }
            (None, "linear") => linspace(self.beta_start, self.beta_end, n),
            (None, "scaled_linear") => linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            (None, "squaredcos_cap_v2") => {
                let alpha_bar = |t: f64| {
                    ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..n)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
                    })
                    .collect()
            }
            (None, other) => {
                return Err(EngineError::Model(format!(
                    "unsupported beta_schedule `{other}`"
                )));
            }
        };
        if self.rescale_betas_zero_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let mut acc = 1.0;
        Ok(betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect())
    }

    /// Builds the scheduler for `steps` inference steps.
    pub fn build(&self, steps: usize) -> Result<Box<dyn Scheduler>, EngineError> {
        if self.thresholding {
            return Err(EngineError::Model(
                "dynamic thresholding is not supported".into(),
            ));
        }
        if steps == 0 || steps > self.num_train_timesteps {
            return Err(EngineError::InvalidArgument(format!(
                "steps must be 1..={}, got {steps}",
                self.num_train_timesteps
            )));
        }
        let ac = self.alphas_cumprod()?;
        Ok(match self.class_name.as_str() {
            "EulerDiscreteScheduler" => Box::new(Euler::new(self, ac, steps, false)?),
            "EulerAncestralDiscreteScheduler" => Box::new(Euler::new(self, ac, steps, true)?),
            "DPMSolverMultistepScheduler" => Box::new(DpmSolverMultistep::new(self, ac, steps)?),
            "LCMScheduler" => Box::new(Lcm::new(self, ac, steps)?),
            // DDIM stands in for the classic samplers (PNDM, DDPM) many SD exports name:
            // same training schedule, deterministic, good at few steps.
            _ => Box::new(Ddim::new(self, ac, steps)?),
        })
    }
}

/// Where the noise of stochastic samplers (ancestral, LCM) comes from.
pub trait NoiseSource {
    fn fill(&mut self, out: &mut [f32]);
}

/// One denoising step's result.
pub struct StepOutput {
    pub prev_sample: Vec<f32>,
    /// The model's current guess of the clean sample, for previews.
    pub pred_original: Vec<f32>,
}

pub trait Scheduler: Send {
    /// The timesteps handed to the denoiser, one per inference step.
    fn timesteps(&self) -> &[f64];
    /// Standard deviation of the initial noise.
    fn init_noise_sigma(&self) -> f64;
    /// Scales the denoiser's input in place at step `i`.
    fn scale_model_input(&self, sample: &mut [f32], i: usize);
    /// Advances from step `i` to `i + 1`.
    fn step(
        &mut self,
        model_output: &[f32],
        i: usize,
        sample: &[f32],
        noise: &mut dyn NoiseSource,
    ) -> StepOutput;
    /// Noises a clean sample to the level of step `i` (img2img starts there).
    fn add_noise(&self, original: &[f32], noise: &[f32], i: usize) -> Vec<f32>;
}

pub(crate) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    (0..n)
        .map(|i| start + (end - start) * i as f64 / (n - 1) as f64)
        .collect()
}

fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let mut acc = 1.0;
    let sqrt_bar: Vec<f64> = betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc.sqrt()
        })
        .collect();
    let (first, last) = (sqrt_bar[0], sqrt_bar[sqrt_bar.len() - 1]);
    let bar: Vec<f64> = sqrt_bar
        .iter()
        .map(|s| ((s - last) * first / (first - last)).powi(2))
        .collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    for w in bar.windows(2) {
        out.push(1.0 - w[1] / w[0]);
    }
    out
}

/// sigma = sqrt((1 - ᾱ) / ᾱ) for every training timestep.
pub(crate) fn train_sigmas(ac: &[f64]) -> Vec<f64> {
    ac.iter().map(|a| ((1.0 - a) / a).sqrt()).collect()
}

/// numpy's `interp(x, arange(len(ys)), ys)`.
pub(crate) fn interp_index(x: f64, ys: &[f64]) -> f64 {
    if x <= 0.0 {
        return ys[0];
    }
    let last = ys.len() - 1;
    if x >= last as f64 {
        return ys[last];
    }
    let lo = x.floor() as usize;
    let w = x - lo as f64;
    ys[lo] * (1.0 - w) + ys[lo + 1] * w
}

/// Karras et al. (2022) sigmas between the ends of `in_sigmas` (descending), rho = 7.
pub(crate) fn karras_sigmas(in_sigmas: &[f64], steps: usize) -> Vec<f64> {
    let (sigma_min, sigma_max) = (in_sigmas[in_sigmas.len() - 1], in_sigmas[0]);
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    linspace(0.0, 1.0, steps)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// The (fractional) training timestep whose sigma is `sigma`, interpolating in log space.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    let low = log_sigmas
        .iter()
        .rposition(|&l| log_sigma - l >= 0.0)
        .unwrap_or(0)
        .min(n - 2);
    let (l, h) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((l - log_sigma) / (l - h)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// Training-step timesteps for `spacing`, descending, as DDIM/LCM-style integer steps.
pub(crate) fn spaced_timesteps(
    spacing: Spacing,
    n_train: usize,
    steps: usize,
    offset: usize,
) -> Vec<f64> {
    match spacing {
        Spacing::Leading => {
            let ratio = n_train / steps;
            (0..steps)
                .rev()
                .map(|i| (i * ratio + offset) as f64)
                .collect()
        }
        Spacing::Trailing => {
            let ratio = n_train as f64 / steps as f64;
            (0..steps)
                .map(|i| (n_train as f64 - i as f64 * ratio).round() - 1.0)
                .collect()
        }
        Spacing::Linspace => linspace(0.0, (n_train - 1) as f64, steps)
            .into_iter()
            .rev()
            .map(round_half_even)
            .collect(),
    }
}

/// numpy rounds half to even.
pub(crate) fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// x0 and epsilon from a model output at noise level ᾱ (DDPM parameterisation).
pub(crate) fn x0_and_eps(
    prediction: PredictionType,
    alpha_prod: f64,
    sample: f32,
    output: f32,
) -> (f64, f64) {
    let (a, b) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
    let (x, m) = (f64::from(sample), f64::from(output));
    match prediction {
        PredictionType::Epsilon => ((x - b * m) / a, m),
        PredictionType::Sample => (m, (x - a * m) / b),
        PredictionType::VPrediction => (a * x - b * m, a * m + b * x),
    }
}

/// DDPM forward noising: √ᾱ·x0 + √(1-ᾱ)·noise.
pub(crate) fn ddpm_add_noise(alpha_prod: f64, original: &[f32], noise: &[f32]) -> Vec<f32> {
    let (a, b) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
    original
        .iter()
        .zip(noise)
        .map(|(&x, &n)| (a * f64::from(x) + b * f64::from(n)) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_schedule_ends_where_diffusers_does() {
        let cfg = SchedulerConfig {
            beta_schedule: "scaled_linear".into(),
            beta_start: 0.00085,
            beta_end: 0.012,
            ..Default::default()
        };
        let ac = cfg.alphas_cumprod().unwrap();
        assert!((ac[0] - 0.99915).abs() < 1e-6);
        assert!((ac[999] - 0.0046600).abs() < 1e-5, "{}", ac[999]);
    }

    #[test]
    fn unknown_names_and_bad_steps_are_errors() {
        let cfg = SchedulerConfig::default();
        assert!(cfg.clone().with_name("plms").is_err());
        assert!(cfg.build(0).is_err());
        assert!(cfg.build(1_000_000).is_err());
        assert!(cfg.build(20).is_ok());
    }

    #[test]
    fn numpy_rounding() {
        assert_eq!(round_half_even(0.5), 0.0);
        assert_eq!(round_half_even(1.5), 2.0);
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(2.6), 3.0);
    }
}
