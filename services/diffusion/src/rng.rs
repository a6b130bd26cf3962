//! The noise generator behind every seed.
//!
//! Documented so that a seed means the same picture on every build and platform:
//! xoshiro256++ (Blackman & Vigna) seeded by four outputs of SplitMix64 from the 64-bit seed;
//! each pair of uniform doubles u1, u2 (53-bit, u1 in (0, 1]) gives two standard normals by
//! Box–Muller, r = √(−2 ln u1), z0 = r cos 2πu2, z1 = r sin 2πu2, used in that order and
//! rounded to f32. The initial latents are the first C·H·W normals; noise for stochastic
//! samplers follows in the same stream.

use super::scheduler::NoiseSource;

pub struct NoiseRng {
    s: [u64; 4],
    spare: Option<f64>,
}

impl NoiseRng {
    pub fn new(seed: u64) -> Self {
        let mut sm = cabin_seed::SplitMix64::new(seed);
        Self {
            s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()],
            spare: None,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in (0, 1].
    fn uniform_open0(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let (u1, u2) = (self.uniform_open0(), self.uniform_open0());
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }

    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal() as f32).collect()
    }
}

impl NoiseSource for NoiseRng {
    fn fill(&mut self, out: &mut [f32]) {
        for v in out {
            *v = self.normal() as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_known_first_value() {
        let a = NoiseRng::new(42).normals(1000);
        assert_eq!(a, NoiseRng::new(42).normals(1000));
        assert_ne!(a, NoiseRng::new(43).normals(1000));
        // Pin the stream: a change here changes every seed's picture.
        let first = NoiseRng::new(0).next_u64();
        assert_eq!(first, 0x53175d61490b23df, "{first:#x}");
    }

    #[test]
    fn normals_are_standard() {
        let z = NoiseRng::new(7).normals(200_000);
        let mean = z.iter().map(|&v| f64::from(v)).sum::<f64>() / z.len() as f64;
        let var = z
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / z.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
        assert!(z.iter().all(|v| v.is_finite()));
    }
}
