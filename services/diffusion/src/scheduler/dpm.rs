//! DPM-Solver++ (Lu et al. 2022), multistep, orders 1–2, midpoint or Heun second-order
//! update, optional Karras sigmas: diffusers' `DPMSolverMultistepScheduler` with
//! `algorithm_type = "dpmsolver++"`. Latents are VP: x = α·x0 + σ·ε.

use super::{
    NoiseSource, PredictionType, Scheduler, SchedulerConfig, Spacing, StepOutput, interp_index,
    karras_sigmas, linspace, round_half_even, sigma_to_t, train_sigmas,
};
use crate::EngineError;

pub struct DpmSolverMultistep {
    timesteps: Vec<f64>,
    /// One per step plus the final sigma.
    sigmas: Vec<f64>,
    prediction: PredictionType,
    order: usize,
    heun: bool,
    lower_order_final: bool,
    euler_at_final: bool,
    final_zero: bool,
    /// Converted (x0) outputs of the last steps, newest last.
    history: Vec<Vec<f64>>,
    lower_order_nums: usize,
}

impl DpmSolverMultistep {
    pub fn new(cfg: &SchedulerConfig, ac: Vec<f64>, steps: usize) -> Result<Self, EngineError> {
        if cfg.algorithm_type != "dpmsolver++" {
            return Err(EngineError::Model(format!(
                "DPM-Solver algorithm `{}` is not supported (only dpmsolver++)",
                cfg.algorithm_type
            )));
        }
        if !(1..=2).contains(&cfg.solver_order) {
            return Err(EngineError::Model(format!(
                "solver_order {} is not supported (1 or 2)",
                cfg.solver_order
            )));
        }
        let n = cfg.num_train_timesteps;
        let spacing = cfg.timestep_spacing.unwrap_or(Spacing::Linspace);
        let mut timesteps: Vec<f64> = match spacing {
            Spacing::Linspace => linspace(0.0, (n - 1) as f64, steps + 1)
                .into_iter()
                .rev()
                .take(steps)
                .map(round_half_even)
                .collect(),
            Spacing::Leading => {
                let ratio = n / (steps + 1);
                (1..=steps)
                    .rev()
                    .map(|i| (i * ratio + cfg.steps_offset) as f64)
                    .collect()
            }
            Spacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                (0..steps)
                    .map(|i| round_half_even(n as f64 - i as f64 * ratio) - 1.0)
                    .collect()
            }
        };
        let train = train_sigmas(&ac);
        let mut sigmas: Vec<f64> = if cfg.use_karras_sigmas {
            let log_sigmas: Vec<f64> = train.iter().map(|s| s.ln()).collect();
            let descending: Vec<f64> = train.iter().rev().copied().collect();
            let sigmas = karras_sigmas(&descending, steps);
            timesteps = sigmas
                .iter()
                .map(|&s| round_half_even(sigma_to_t(s, &log_sigmas)))
                .collect();
            sigmas
        } else {
            timesteps.iter().map(|&t| interp_index(t, &train)).collect()
        };
        let final_zero = cfg.final_sigmas_type.as_deref().unwrap_or("zero") == "zero";
        sigmas.push(if final_zero { 0.0 } else { train[0] });
        Ok(Self {
            timesteps,
            sigmas,
            prediction: cfg.prediction_type,
            order: cfg.solver_order,
            heun: cfg.solver_type == "heun",
            lower_order_final: cfg.lower_order_final,
            euler_at_final: cfg.euler_at_final,
            final_zero,
            history: Vec::new(),
            lower_order_nums: 0,
        })
    }
}

/// (α_t, σ_t) of the VP process at noise level `sigma`.
fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

fn lambda(sigma: f64) -> f64 {
    let (a, s) = alpha_sigma(sigma);
    a.ln() - s.ln()
}

impl Scheduler for DpmSolverMultistep {
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
        let steps = self.timesteps.len();
        let lower_final = i + 1 == steps
            && (self.euler_at_final || (self.lower_order_final && steps < 15) || self.final_zero);
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[i]);
        let x0: Vec<f64> = sample
            .iter()
            .zip(model_output)
            .map(|(&x, &m)| {
                let (x, m) = (f64::from(x), f64::from(m));
                match self.prediction {
                    PredictionType::Epsilon => (x - sigma_s0 * m) / alpha_s0,
                    PredictionType::VPrediction => alpha_s0 * x - sigma_s0 * m,
                    PredictionType::Sample => m,
                }
            })
            .collect();
        if self.history.len() == self.order {
            self.history.remove(0);
        }
        self.history.push(x0);

        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[i + 1]);
        let h = lambda(self.sigmas[i + 1]) - lambda(self.sigmas[i]);
        let decay = (-h).exp() - 1.0; // e^{-h} - 1
        let ratio = sigma_t / sigma_s0;
        let m0 = &self.history[self.history.len() - 1];
        let first_order = self.order == 1 || self.lower_order_nums < 1 || lower_final;
        let prev: Vec<f64> = if first_order {
            sample
                .iter()
                .zip(m0)
                .map(|(&x, &d0)| ratio * f64::from(x) - alpha_t * decay * d0)
                .collect()
        } else {
            let m1 = &self.history[self.history.len() - 2];
            let h0 = lambda(self.sigmas[i]) - lambda(self.sigmas[i - 1]);
            let r0 = h0 / h;
            sample
                .iter()
                .zip(m0.iter().zip(m1))
                .map(|(&x, (&a, &b))| {
                    let d1 = (a - b) / r0;
                    let base = ratio * f64::from(x) - alpha_t * decay * a;
                    if self.heun {
                        base - alpha_t * (decay / h + 1.0) * d1
                    } else {
                        base - 0.5 * alpha_t * decay * d1
                    }
                })
                .collect()
        };
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        StepOutput {
            prev_sample: prev.iter().map(|&v| v as f32).collect(),
            pred_original: m0.iter().map(|&v| v as f32).collect(),
        }
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], i: usize) -> Vec<f32> {
        let (alpha, sigma) = alpha_sigma(self.sigmas[i]);
        original
            .iter()
            .zip(noise)
            .map(|(&x, &n)| (alpha * f64::from(x) + sigma * f64::from(n)) as f32)
            .collect()
    }
}
