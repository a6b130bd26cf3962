//! Choosing the next token: repetition penalty, temperature, top-k, top-p (nucleus), then a
//! draw from a seeded SplitMix64 stream (`cabin-seed`), so a seed gives the same reply every time.

use crate::LmError;

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches this.
    pub top_p: f32,
    /// Keep at most this many tokens (0: no limit).
    pub top_k: usize,
    /// Divides positive logits (multiplies negative ones) of tokens seen in the last
    /// `repeat_window` tokens; 1 is off. Small models loop without it.
    pub repetition_penalty: f32,
    pub repeat_window: usize,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            repetition_penalty: 1.15,
            repeat_window: 64,
            seed: 0,
        }
    }
}

impl Sampling {
    pub fn check(&self) -> Result<(), LmError> {
        let bad = |m: &str| Err(LmError::InvalidArgument(m.into()));
        if !(0.0..=5.0).contains(&self.temperature) {
            return bad("temperature must be within 0..=5");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be within (0, 1]");
        }
        if !(1.0..=5.0).contains(&self.repetition_penalty) {
            return bad("repetition_penalty must be within 1..=5");
        }
        Ok(())
    }
}

pub struct Sampler {
    settings: Sampling,
    stream: cabin_seed::SplitMix64,
}

impl Sampler {
    pub fn new(settings: Sampling) -> Result<Self, LmError> {
        settings.check()?;
        let stream = cabin_seed::SplitMix64::new(settings.seed);
        Ok(Self { settings, stream })
    }

    /// Uniform in [0, 1) from the project's seeded stream (SplitMix64).
    fn uniform(&mut self) -> f64 {
        self.stream.uniform()
    }

    /// The next token after `logits`, given the tokens so far (`history`).
    pub fn pick(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let s = &self.settings;
        let mut scores: Vec<f32> = logits
            .iter()
            .map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l })
            .collect();
        if s.repetition_penalty > 1.0 {
            let from = history.len().saturating_sub(s.repeat_window);
            for &id in &history[from..] {
                if let Some(l) = scores.get_mut(id as usize) {
                    *l = if *l > 0.0 {
                        *l / s.repetition_penalty
                    } else {
                        *l * s.repetition_penalty
                    };
                }
            }
        }
        let best = argmax(&scores);
        if s.temperature == 0.0 {
            return best;
        }
        let mut ranked: Vec<(u32, f32)> = scores
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l / s.temperature))
            .collect();
        if ranked.is_empty() {
            return best;
        }
        ranked.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if s.top_k > 0 {
            ranked.truncate(s.top_k);
        }
        let top = ranked[0].1;
        let mut probs: Vec<f64> = ranked
            .iter()
            .map(|(_, l)| ((l - top) as f64).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        let mut kept = 0;
        let mut mass = 0.0;
        for p in probs.iter_mut() {
            *p /= total;
            mass += *p;
            kept += 1;
            if mass >= s.top_p as f64 {
                break;
            }
        }
        let draw = self.uniform() * mass;
        let mut acc = 0.0;
        for (i, p) in probs[..kept].iter().enumerate() {
            acc += p;
            if draw < acc {
                return ranked[i].0;
            }
        }
        ranked[kept - 1].0
    }
}

fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in scores.iter().enumerate() {
        if l > scores[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f32, top_p: f32, seed: u64) -> Sampler {
        Sampler::new(Sampling {
            temperature,
            top_p,
            top_k: 0,
            repetition_penalty: 1.0,
            repeat_window: 0,
            seed,
        })
        .unwrap()
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        assert_eq!(sampler(0.0, 1.0, 1).pick(&[0.1, 3.0, -2.0, 2.9], &[]), 1);
    }

    #[test]
    fn top_p_never_picks_outside_the_nucleus() {
        // probabilities ~0.64, 0.24, 0.09, 0.03: top_p 0.8 keeps the first two
        let logits = [3.0, 2.0, 1.0, 0.0];
        let mut s = sampler(1.0, 0.8, 7);
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[s.pick(&logits, &[]) as usize] += 1;
        }
        assert_eq!(seen[2] + seen[3], 0, "{seen:?}");
        // within the nucleus the odds stay ~0.64 : 0.24
        let share = seen[0] as f64 / 2000.0;
        assert!((0.68..0.78).contains(&share), "{seen:?}");
    }

    #[test]
    fn a_seed_replays_and_another_seed_differs() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = sampler(1.0, 1.0, seed);
            (0..40).map(|_| s.pick(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn repetition_penalty_moves_off_a_repeated_token() {
        let mut s = Sampler::new(Sampling {
            temperature: 0.0,
            repetition_penalty: 2.0,
            ..Sampling::default()
        })
        .unwrap();
        assert_eq!(s.pick(&[2.0, 1.5], &[]), 0);
        assert_eq!(s.pick(&[2.0, 1.5], &[0]), 1);
    }

    #[test]
    fn out_of_range_settings_are_named() {
        for bad in [
            Sampling {
                temperature: -1.0,
                ..Sampling::default()
            },
            Sampling {
                top_p: 0.0,
                ..Sampling::default()
            },
            Sampling {
                repetition_penalty: 0.5,
                ..Sampling::default()
            },
        ] {
            assert!(matches!(
                Sampler::new(bad),
                Err(LmError::InvalidArgument(_))
            ));
        }
    }
}
