//! DDIM (Song et al. 2020), deterministic (eta = 0), as diffusers' `DDIMScheduler`.

use super::{
    NoiseSource, PredictionType, Scheduler, SchedulerConfig, Spacing, StepOutput, ddpm_add_noise,
    spaced_timesteps, x0_and_eps,
};
use crate::EngineError;

pub struct Ddim {
    ac: Vec<f64>,
    final_alpha: f64,
    timesteps: Vec<f64>,
    step_ratio: usize,
    prediction: PredictionType,
    clip: Option<f64>,
}

impl Ddim {
    pub fn new(cfg: &SchedulerConfig, ac: Vec<f64>, steps: usize) -> Result<Self, EngineError> {
        let n = cfg.num_train_timesteps;
        let spacing = cfg.timestep_spacing.unwrap_or(Spacing::Leading);
        let final_alpha = if cfg.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            ac[0]
        };
        Ok(Self {
            timesteps: spaced_timesteps(spacing, n, steps, cfg.steps_offset),
            final_alpha,
            step_ratio: n / steps,
            prediction: cfg.prediction_type,
            clip: cfg
                .clip_sample
                .unwrap_or(true)
                .then_some(cfg.clip_sample_range),
            ac,
        })
    }

    fn alpha(&self, t: f64) -> f64 {
        let t = t as usize;
        self.ac[t.min(self.ac.len() - 1)]
    }
}

impl Scheduler for Ddim {
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
        _noise: &mut dyn NoiseSource,
    ) -> StepOutput {
        let t = self.timesteps[i];
        let prev_t = t as i64 - self.step_ratio as i64;
        let alpha = self.alpha(t);
        let alpha_prev = if prev_t >= 0 {
            self.alpha(prev_t as f64)
        } else {
            self.final_alpha
        };
        let mut prev_sample = Vec::with_capacity(sample.len());
        let mut pred_original = Vec::with_capacity(sample.len());
        for (&x, &m) in sample.iter().zip(model_output) {
            let (mut x0, mut eps) = x0_and_eps(self.prediction, alpha, x, m);
            if let Some(range) = self.clip {
                x0 = x0.clamp(-range, range);
                eps = (f64::from(x) - alpha.sqrt() * x0) / (1.0 - alpha).sqrt();
            }
            prev_sample.push((alpha_prev.sqrt() * x0 + (1.0 - alpha_prev).sqrt() * eps) as f32);
            pred_original.push(x0 as f32);
        }
        StepOutput {
            prev_sample,
            pred_original,
        }
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], i: usize) -> Vec<f32> {
        ddpm_add_noise(self.alpha(self.timesteps[i]), original, noise)
    }
}
