//! Latent Consistency Model sampling, as diffusers' `LCMScheduler`: few steps, a
//! consistency-boundary skip connection, fresh noise between steps.

use super::{
    NoiseSource, PredictionType, Scheduler, SchedulerConfig, StepOutput, ddpm_add_noise, x0_and_eps,
};
use crate::EngineError;

pub struct Lcm {
    ac: Vec<f64>,
    final_alpha: f64,
    timesteps: Vec<f64>,
    prediction: PredictionType,
    timestep_scaling: f64,
    clip: Option<f64>,
}

impl Lcm {
    pub fn new(cfg: &SchedulerConfig, ac: Vec<f64>, steps: usize) -> Result<Self, EngineError> {
        let n = cfg.num_train_timesteps;
        let original = cfg.original_inference_steps.clamp(1, n);
        if steps > original {
            return Err(EngineError::InvalidArgument(format!(
                "LCM takes at most {original} steps (its original_inference_steps), got {steps}"
            )));
        }
        let k = n / original;
        let origin: Vec<usize> = (1..=original).map(|i| i * k - 1).rev().collect();
        let timesteps = (0..steps)
            .map(|j| {
                origin[(j as f64 * origin.len() as f64 / steps as f64).floor() as usize] as f64
            })
            .collect();
        Ok(Self {
            final_alpha: if cfg.set_alpha_to_one.unwrap_or(true) {
                1.0
            } else {
                ac[0]
            },
            timesteps,
            prediction: cfg.prediction_type,
            timestep_scaling: cfg.timestep_scaling,
            clip: cfg
                .clip_sample
                .unwrap_or(false)
                .then_some(cfg.clip_sample_range),
            ac,
        })
    }
}

impl Scheduler for Lcm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, _sample: &mut [f32], _i: usize) {}

    fn step(
        &mut self,
        model_output: &[f32],
        i: usize,
        sample: &[f32],
        noise: &mut dyn NoiseSource,
    ) -> StepOutput {
        let t = self.timesteps[i];
        let last = i + 1 >= self.timesteps.len();
        let prev_t = if last { t } else { self.timesteps[i + 1] };
        let alpha = self.ac[t as usize];
        let alpha_prev = if prev_t >= 0.0 {
            self.ac[prev_t as usize]
        } else {
            self.final_alpha
        };
        let sigma_data = 0.5_f64;
        let scaled = t * self.timestep_scaling;
        let c_skip = sigma_data.powi(2) / (scaled.powi(2) + sigma_data.powi(2));
        let c_out = scaled / (scaled.powi(2) + sigma_data.powi(2)).sqrt();

        let mut fresh = vec![0.0f32; sample.len()];
        if !last {
            noise.fill(&mut fresh);
        }
        let mut prev_sample = Vec::with_capacity(sample.len());
        let mut pred_original = Vec::with_capacity(sample.len());
        for ((&x, &m), &z) in sample.iter().zip(model_output).zip(&fresh) {
            let (mut x0, _) = x0_and_eps(self.prediction, alpha, x, m);
            if let Some(range) = self.clip {
                x0 = x0.clamp(-range, range);
            }
            let denoised = c_out * x0 + c_skip * f64::from(x);
            let prev = if last {
                denoised
            } else {
                alpha_prev.sqrt() * denoised + (1.0 - alpha_prev).sqrt() * f64::from(z)
            };
            prev_sample.push(prev as f32);
            pred_original.push(denoised as f32);
        }
        StepOutput {
            prev_sample,
            pred_original,
        }
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], i: usize) -> Vec<f32> {
        ddpm_add_noise(self.ac[self.timesteps[i] as usize], original, noise)
    }
}
