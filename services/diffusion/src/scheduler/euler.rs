//! Euler (Karras et al. 2022, Algorithm 2 with no churn) and Euler ancestral, as diffusers'
//! `EulerDiscreteScheduler` / `EulerAncestralDiscreteScheduler`. Latents live in sigma
//! space: x = x0 + σ·ε.

use super::{
    NoiseSource, PredictionType, Scheduler, SchedulerConfig, Spacing, StepOutput, interp_index,
    karras_sigmas, linspace, round_half_even, sigma_to_t, train_sigmas,
};
use crate::EngineError;

pub struct Euler {
    timesteps: Vec<f64>,
    /// One per step plus the final 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction: PredictionType,
    ancestral: bool,
}

impl Euler {
    pub fn new(
        cfg: &SchedulerConfig,
        ac: Vec<f64>,
        steps: usize,
        ancestral: bool,
    ) -> Result<Self, EngineError> {
        let n = cfg.num_train_timesteps;
        let spacing = cfg.timestep_spacing.unwrap_or(Spacing::Linspace);
        let mut timesteps: Vec<f64> = match spacing {
            Spacing::Linspace => linspace(0.0, (n - 1) as f64, steps)
                .into_iter()
                .rev()
                .collect(),
            Spacing::Leading => {
                let ratio = n / steps;
                (0..steps)
                    .rev()
                    .map(|i| round_half_even((i * ratio) as f64) + cfg.steps_offset as f64)
                    .collect()
            }
            Spacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                (0..steps)
                    .map(|i| round_half_even(n as f64 - i as f64 * ratio) - 1.0)
                    .collect()
            }
        };
        // diffusers keeps these timesteps in float32.
        for t in &mut timesteps {
            *t = f64::from(*t as f32);
        }
        let train = train_sigmas(&ac);
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp_index(t, &train)).collect();
        if cfg.use_karras_sigmas && !ancestral {
            let log_sigmas: Vec<f64> = train.iter().map(|s| s.ln()).collect();
            sigmas = karras_sigmas(&sigmas, steps);
            timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
        }
        let max_sigma = sigmas.iter().copied().fold(0.0, f64::max);
        let init_noise_sigma = match spacing {
            Spacing::Linspace | Spacing::Trailing => max_sigma,
            Spacing::Leading => (max_sigma * max_sigma + 1.0).sqrt(),
        };
        sigmas.push(0.0);
        Ok(Self {
            timesteps,
            sigmas,
            init_noise_sigma,
            prediction: cfg.prediction_type,
            ancestral,
        })
    }
}

impl Scheduler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: &mut [f32], i: usize) {
        let scale = 1.0 / (self.sigmas[i].powi(2) + 1.0).sqrt();
        for x in sample {
            *x = (f64::from(*x) * scale) as f32;
        }
    }

    fn step(
        &mut self,
        model_output: &[f32],
        i: usize,
        sample: &[f32],
        noise: &mut dyn NoiseSource,
    ) -> StepOutput {
        let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
        let (sigma_target, sigma_up) = if self.ancestral {
            let up =
                (sigma_next.powi(2) * (sigma.powi(2) - sigma_next.powi(2)) / sigma.powi(2)).sqrt();
            ((sigma_next.powi(2) - up.powi(2)).sqrt(), up)
        } else {
            (sigma_next, 0.0)
        };
        let mut fresh = vec![0.0f32; sample.len()];
        if self.ancestral {
            noise.fill(&mut fresh);
        }
        let dt = sigma_target - sigma;
        let mut prev_sample = Vec::with_capacity(sample.len());
        let mut pred_original = Vec::with_capacity(sample.len());
        for ((&x, &m), &z) in sample.iter().zip(model_output).zip(&fresh) {
            let (x, m) = (f64::from(x), f64::from(m));
            let x0 = match self.prediction {
                PredictionType::Epsilon => x - sigma * m,
                PredictionType::VPrediction => {
                    m * (-sigma / (sigma * sigma + 1.0).sqrt()) + x / (sigma * sigma + 1.0)
                }
                PredictionType::Sample => m,
            };
            let derivative = (x - x0) / sigma;
            prev_sample.push((x + derivative * dt + f64::from(z) * sigma_up) as f32);
            pred_original.push(x0 as f32);
        }
        StepOutput {
            prev_sample,
            pred_original,
        }
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], i: usize) -> Vec<f32> {
        let sigma = self.sigmas[i];
        original
            .iter()
            .zip(noise)
            .map(|(&x, &n)| (f64::from(x) + sigma * f64::from(n)) as f32)
            .collect()
    }
}
