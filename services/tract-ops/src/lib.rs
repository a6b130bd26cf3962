//! cabin's own tract ops: the kernels behind the wallpaper engine's speed, in one audited crate.
//!
//! tract 0.23 runs an SD-family UNet and VAE decoder well below the machine's peak: its 3x3
//! convolutions go through im2col, its `Linear`-shaped einsums and attention through generic
//! matrix products, its group norms through several reductions. Each module here replaces one
//! such pattern in a decluttered plan with an op of its own, register-blocked for AVX-512 and
//! AVX2+FMA, with a portable path that is tested on every machine:
//!
//! - `conv3x3`: direct 3x3 convolution, stride 1 or 2, padding 1;
//! - `conv_transpose`: transposed convolutions with a kernel of the stride or twice it (a
//!   display stage's learned upsamplers) as per-phase 2x2 convolutions on `conv3x3`'s kernel;
//! - `linear`: products with a constant weight matrix (projections, feed-forward, 1x1
//!   convolutions) on weights packed once, at load, with the bias that follows;
//! - `attention`: `softmax(q · kᵀ) · v` per batch item and head in one op;
//! - `centered_norm`: the statistics of a group or instance norm, with the reshape, per-channel
//!   scale and shift and SiLU that follow it folded into its one write;
//! - `broadcast_bin`: adds and multiplies with one operand broadcast per channel or feature;
//! - `block_quant`: products with block-quantised (Q4_0, Q8_0) weights, read as they are
//!   stored: a language model's projections and head;
//! - `quant_onnx`: the 8-bit `MatMulNBits` and `GatherBlockQuantized` tract-onnx does not parse,
//!   and the 4-bit `MatMulNBits` straight to `block_quant` ([`onnx`] is tract-onnx's parser with
//!   them);
//! - `masked_attention`: a language model's `softmax(q · kᵀ + mask) · v` over its KV cache,
//!   grouped-query heads included, in one op;
//! - `team`: spinning helper threads for work too short to wake the pool for (a decode token's
//!   product with one layer).
//!
//! Architecture invariant: this crate knows tract and nothing of diffusion, models or
//! services; all of the engine's SIMD and threads, and the `unsafe` they take, live here. [`swap_in`] is the one entry
//! point a loader calls. On a CPU where none of the fast kernels applies (aarch64, an x86
//! without AVX2) it swaps in only the ops whose portable code was measured faster than tract's
//! own (attention, norms, broadcasts) and leaves the convolutions and products to tract's NEON
//! and SSE matrix kernels; forcing the portable code (`CABIN_SIMD=portable` or
//! [`use_portable_kernels`]) swaps in everything, which is how the tests exercise it.

mod attention;
mod block_quant;
mod broadcast_bin;
mod centered_norm;
mod conv3x3;
mod conv_transpose;
mod linear;
mod masked_attention;
mod plan_rewrite;
mod quant_onnx;
mod team;

use std::sync::atomic::{AtomicBool, Ordering};

use tract_onnx::prelude::*;

pub use conv3x3::Kernel;
pub use plan_rewrite::install_hot;

/// tract-onnx's parser, with cabin's forms of the ops it does not read (see `quant_onnx`).
pub fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    quant_onnx::register(&mut onnx.op_register);
    onnx
}

static PORTABLE_ONLY: AtomicBool = AtomicBool::new(false);

/// Holds every cabin kernel to its portable code in plans made from now on, as
/// `CABIN_SIMD=portable` does: what a CPU without AVX2 or AVX-512 would run, tested and measured
/// on one that has them.
pub fn use_portable_kernels() {
    PORTABLE_ONLY.store(true, Ordering::SeqCst);
}

fn portable_only() -> bool {
    PORTABLE_ONLY.load(Ordering::SeqCst)
}

fn portable_forced() -> bool {
    portable_only() || std::env::var("CABIN_SIMD").is_ok_and(|v| v == "portable")
}

/// How many nodes of each kind [`swap_in`] replaced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swapped {
    pub conv3x3: usize,
    pub conv_transposes: usize,
    pub linear: usize,
    pub attention: usize,
    pub norms: usize,
    pub broadcasts: usize,
    pub block_q4: usize,
    pub masked_attention: usize,
}

impl Swapped {
    pub fn total(&self) -> usize {
        self.conv3x3
            + self.conv_transposes
            + self.linear
            + self.attention
            + self.norms
            + self.broadcasts
            + self.block_q4
            + self.masked_attention
    }
}

/// Whether cabin's ops are worth swapping in on this CPU: where a fast kernel applies, or where
/// the portable code is asked for by name. Without either, only the ops in
/// [`Op::beats_tract_when_portable`] go in.
pub fn worth_swapping() -> bool {
    worth_swapping_with(Kernel::best(), portable_forced())
}

/// Whether 4-bit products are cabin's in plans made now: where [`worth_swapping`], unless
/// `CABIN_TRACT_Q4=1` keeps tract's own (to compare the two).
fn block_quant_here() -> bool {
    worth_swapping() && !std::env::var("CABIN_TRACT_Q4").is_ok_and(|v| v == "1")
}

fn worth_swapping_with(best: Kernel, portable_forced: bool) -> bool {
    best != Kernel::Portable || portable_forced
}

impl Op {
    /// Whether this op's portable code still beats tract's own: measured with `onnx/bench/ops.sh`
    /// under `CABIN_SIMD=portable` against tract's AVX-512 ops (Xeon, 2026-12-07), attention
    /// took 0.43–0.91x tract's time, the group norms 0.38–1.08x and the per-channel add 0.06x,
    /// where tract's cost is packing and generic broadcasting, not its kernels; the portable
    /// conv3x3 (1.1–3.8x) and linear (4.7–7.9x) lose to tract's matrix kernels, which have NEON
    /// and SSE paths.
    pub fn beats_tract_when_portable(self) -> bool {
        matches!(self, Op::Attention | Op::CenteredNorm | Op::BroadcastBin)
    }
}

/// What a benchmark figure was measured on: the CPU's name, the vector extensions cabin's
/// kernels look for, and which kernel (or tract's own ops) plans get here.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let name = field("model name")
        .or_else(|| {
            let part = field("CPU part")?;
            Some(format!("{} CPU part {part}", std::env::consts::ARCH))
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ops = if worth_swapping() {
        format!("cabin ops, {:?} kernels", Kernel::best())
    } else {
        "tract's convolutions and products, cabin's portable attention, norms, broadcasts"
            .to_string()
    };
    format!("{name} ({cores} cores; {}; {ops})", extensions().join(" "))
}

/// The vector extensions of this CPU that matter to the kernels here and to tract's.
pub fn extensions() -> Vec<&'static str> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            found.push("avx512f");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            found.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            found.push("fma");
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            found.push("neon");
        }
        if std::arch::is_aarch64_feature_detected!("fp16") {
            found.push("fp16");
        }
    }
    if found.is_empty() {
        found.push("no vector extensions cabin uses");
    }
    found
}

/// One kind of cabin op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Conv3x3,
    ConvTranspose,
    Linear,
    Attention,
    CenteredNorm,
    BroadcastBin,
    BlockQ4Linear,
    MaskedAttention,
}

impl Op {
    /// In the order [`swap_in`] applies them: the norms before the broadcasts, since a norm
    /// folds in the per-channel Mul and Add after it.
    pub const ALL: [Op; 8] = [
        Op::Conv3x3,
        Op::ConvTranspose,
        Op::Linear,
        Op::Attention,
        Op::CenteredNorm,
        Op::BroadcastBin,
        Op::BlockQ4Linear,
        Op::MaskedAttention,
    ];
}

/// Replaces every pattern of a decluttered plan that one of cabin's ops runs faster (see the
/// module list), before tract optimises the plan; `CABIN_TRACT_<OP>=1` keeps tract's own for
/// one kind (CONV, DECONV, LINEAR, ATTENTION, NORM, BIN) for comparisons.
pub fn swap_in(model: &mut TypedModel) -> TractResult<Swapped> {
    let mut swapped = Swapped::default();
    let all = worth_swapping();
    for op in Op::ALL {
        if !all && !op.beats_tract_when_portable() {
            continue;
        }
        let n = swap_in_only(model, op)?;
        match op {
            Op::Conv3x3 => swapped.conv3x3 = n,
            Op::ConvTranspose => swapped.conv_transposes = n,
            Op::Linear => swapped.linear = n,
            Op::Attention => swapped.attention = n,
            Op::CenteredNorm => swapped.norms = n,
            Op::BroadcastBin => swapped.broadcasts = n,
            Op::BlockQ4Linear => swapped.block_q4 = n,
            Op::MaskedAttention => swapped.masked_attention = n,
        }
    }
    Ok(swapped)
}

/// Swaps in one kind of op wherever it applies, whatever the CPU (the per-op bench compares
/// each with tract's own on the same plan); returns how many nodes it replaced.
pub fn swap_in_only(model: &mut TypedModel, op: Op) -> TractResult<usize> {
    match op {
        Op::Conv3x3 => conv3x3::replace_convs(model),
        Op::ConvTranspose => conv_transpose::replace_conv_transposes(model),
        Op::Linear => linear::replace_linears(model),
        Op::Attention => attention::replace_attention(model),
        Op::CenteredNorm => centered_norm::replace_centered_norms(model),
        Op::BroadcastBin => broadcast_bin::replace_broadcast_bins(model),
        Op::BlockQ4Linear => block_quant::replace_block_quant_linears(model),
        Op::MaskedAttention => masked_attention::replace_masked_attention(model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_fast_kernel_tract_keeps_its_matrix_ops_unless_the_portable_code_is_asked_for() {
        // What an aarch64 head unit (or an x86 without AVX2) gets: tract's NEON / SSE matrix
        // kernels for convolutions and products, cabin's portable attention, norms, broadcasts.
        assert!(!worth_swapping_with(Kernel::Portable, false));
        let portable: Vec<Op> = Op::ALL
            .into_iter()
            .filter(|op| op.beats_tract_when_portable())
            .collect();
        assert_eq!(
            portable,
            [Op::Attention, Op::CenteredNorm, Op::BroadcastBin]
        );
        assert!(worth_swapping_with(Kernel::Portable, true));
        #[cfg(target_arch = "x86_64")]
        {
            assert!(worth_swapping_with(Kernel::Avx2, false));
            assert!(worth_swapping_with(Kernel::Avx512, false));
        }
    }

    #[test]
    fn the_machine_line_names_the_cpu_and_what_plans_get() {
        let line = machine();
        assert!(line.contains("cores;"), "{line}");
        assert!(line.contains("ops"), "{line}");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            assert!(line.contains("avx2"), "{line}");
        }
    }
}
