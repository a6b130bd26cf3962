//! Products with block-quantised weights, for tract plans: a language model's projections and
//! head stored as GGML's Q4_0 (blocks of 32 weights, one f16 scale, `(code - 8) * scale`),
//! which is how tract keeps the weights of ONNX `MatMulNBits` (and its own block-quant
//! transform) in memory, or as Q8_0 (`(code - 128) * scale`, a byte a weight: `MatMulNBits`
//! with `bits=8`, which tract 0.23 does not read; [`crate::quant_onnx`] builds this op for it).
//!
//! tract 0.23 runs those through a packer that widens every panel to f32 before its matrix
//! kernel, on every call. Here the codes are rows of 16 bytes a block (the file's own bytes for
//! `MatMulNBits`, tract's Q4_0 blob unpacked once otherwise) with the f16 scales beside them (a
//! Q4_1 layer's minimums too), and:
//! - a token (decode) is quantised to 8 bits per block of 32 (one scale per block, as llama.cpp
//!   does with its Q8 activations) and multiplied with the codes in integer arithmetic: AVX-512
//!   VNNI's `vpdpbusd` on two blocks at a time, AVX-512BW or AVX2 `vpmaddubsw`/`vpmaddwd`
//!   elsewhere, the `- 8` folded into each sum's starting value; each block's integer sum is
//!   then scaled by the weights' and the token's scales;
//! - several tokens (a prompt) widen a panel of output rows to f32 once and run `linear`'s
//!   register-blocked tile kernel over them, exactly.
//!
//! [`replace_block_quant_linears`] swaps the op into a decluttered plan; `CABIN_TRACT_Q4=1`
//! keeps tract's own.

use std::sync::Arc;

use tract_linalg::block_quant::{BlockQuant, BlockQuantStorage, Q4_0};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::conv3x3::{Kernel, MR, NT};
use super::linear::{Shared, rows_tile};
use super::plan_rewrite::{einsum_letters, on_tract_pool, pool_threads, swap_in};
use super::team;

/// Weights per block; bytes per block in tract's Q4_0 (an f16 scale, then 16 bytes of codes:
/// element `i` in the low nibble of byte `i`, element `i + 16` in its high nibble).
pub(crate) const BLOCK: usize = 32;
const BLOCK_BYTES: usize = 18;
/// Bytes of codes per Q4_0 block, in the same nibble order.
const CODES: usize = 16;

/// How the weights' codes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Format {
    /// 16 bytes a block, two codes a byte (see [`CODES`]), `(code - 8) * scale`.
    Q4_0,
    /// 32 bytes a block in element order, `(code - 128) * scale`.
    Q8_0,
}

impl Format {
    fn code_bytes(self) -> usize {
        match self {
            Format::Q4_0 => CODES,
            Format::Q8_0 => BLOCK,
        }
    }
}

/// Rows a decode kernel call computes together: four independent sums keep the vector units
/// busy while the weights stream in, and share the loads of the token.
const ROWS: usize = 4;

/// How many kernel calls ahead the decode kernels ask for the weights. The weights of a
/// decode step (tens of MB) come from L3 or memory, and the kernel stalled on its loads (perf:
/// most of its samples on the instruction after them). In A/B runs on the Xeon, asking two
/// calls ahead took a decode token 0.6–0.9 of the time it took without, at 1 thread and at 2;
/// one call ahead less, three to six no better.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PREFETCH_GROUPS: usize = 2;

/// A decode product on a pool of `T` threads is cut into `T` times this many parts, so a
/// thread that starts late still finds work.
const PARTS_PER_THREAD: usize = 2;

/// Fewer tokens than this are run one by one in integer arithmetic; from it on, by widened
/// panels in f32.
const PANEL_FROM: usize = MR;

/// Which code runs a decode token's product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q4Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Bw,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Q4Kernel {
    /// The fastest this machine runs within what the crate's [`Kernel`] allows.
    fn for_kernel(kernel: Kernel) -> Self {
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("f16c") {
            // every x86 kernel widens the f16 scales with F16C (all AVX2 CPUs have it)
            return Self::Portable;
        }
        match kernel {
            Kernel::Portable => Self::Portable,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => Self::Avx2,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                if !std::arch::is_x86_feature_detected!("avx512bw")
                    || !std::arch::is_x86_feature_detected!("avx512vl")
                {
                    Self::Avx2
                } else if std::arch::is_x86_feature_detected!("avx512vnni") {
                    Self::Avx512Vnni
                } else {
                    Self::Avx512Bw
                }
            }
        }
    }

    /// Whether it reads the token two blocks at a time (see [`QuantisedToken`]).
    fn reads_pairs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            matches!(self, Self::Avx512Bw | Self::Avx512Vnni)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Every one this machine can run (the tests check each against the plain sum).
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut all = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            let has = |f: &str| match f {
                "avx2" => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                        && std::arch::is_x86_feature_detected!("f16c")
                }
                "bw" => {
                    std::arch::is_x86_feature_detected!("avx512bw")
                        && std::arch::is_x86_feature_detected!("avx512vl")
                }
                _ => std::arch::is_x86_feature_detected!("avx512vnni"),
            };
            if has("avx2") {
                all.push(Self::Avx2);
                if has("bw") {
                    all.push(Self::Avx512Bw);
                    if has("vnni") {
                        all.push(Self::Avx512Vnni);
                    }
                }
            }
        }
        all
    }
}

/// Which elements of a 4-bit block a byte of codes holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Nibbles {
    /// Element `i` in the low nibble of byte `i`, `i + 16` in the high one (GGML's and
    /// tract's Q4_0): the order the kernels multiply in.
    Halves,
    /// Element `2i` low, `2i + 1` high (ONNX `MatMulNBits`): the token is put in that order
    /// instead (see [`QuantisedToken::new`]), so the file's bytes are used as they lie.
    Pairs,
}

/// The weights as the kernels read them: `[n][blocks][16]` codes (`[n][k]` bytes for Q8_0)
/// and `[n][blocks]` scales, and for a Q4_1 layer (`code * d + m`, see `onnx/lm/build_lm.py`)
/// each block's `m`, the weights being `(code - 8) * d + (8d + m)`. Scales and minimums are
/// f16 bits, as GGML and tract store them: a decode token reads every byte of the weights
/// once, so their size is its time. The codes are a plain `u8` tensor, the file's own where
/// they come from one: a copy of every layer beside the file's was the peak of a language
/// model's memory while it loaded.
#[derive(Debug, PartialEq)]
struct Weights {
    format: Format,
    nibbles: Nibbles,
    codes: Arc<Tensor>,
    scales: Arc<Vec<u16>>,
    mins: Vec<u16>,
}

fn to_f32(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// `bytes` as a plain `u8` tensor, without a copy.
pub(crate) fn byte_tensor(bytes: Vec<u8>) -> Arc<Tensor> {
    Arc::new(tract_ndarray::Array1::from_vec(bytes).into())
}

/// `tensor` if it is `len` bytes in plain memory.
pub(crate) fn plain_bytes(tensor: Arc<Tensor>, len: usize, what: &str) -> TractResult<Arc<Tensor>> {
    ensure!(
        tensor.datum_type() == u8::datum_type()
            && tensor.len() == len
            && tensor.as_plain_ram().is_some(),
        "{what}: {:?} of {} values where {len} bytes were expected",
        tensor.datum_type(),
        tensor.len()
    );
    Ok(tensor)
}

impl Weights {
    /// Unpacks tract's Q4_0 blob of `n` rows of `k`.
    fn from_q4_0(blob: &[u8], n: usize, k: usize) -> Self {
        let blocks = n * k / BLOCK;
        let mut codes = Vec::with_capacity(blocks * CODES);
        let mut scales = Vec::with_capacity(blocks);
        for block in blob.chunks_exact(BLOCK_BYTES) {
            scales.push(u16::from_le_bytes([block[0], block[1]]));
            codes.extend_from_slice(&block[2..]);
        }
        Self {
            format: Format::Q4_0,
            nibbles: Nibbles::Halves,
            codes: byte_tensor(codes),
            scales: Arc::new(scales),
            mins: Vec::new(),
        }
    }

    /// Every code byte (the constructors take only plain `u8` tensors, where this cannot fail).
    fn codes(&self) -> &[u8] {
        self.codes.as_bytes()
    }
}

/// The tract op: `x [.., k]` times the `n x k` weights, giving `[.., n]`.
#[derive(Debug, Clone)]
pub(crate) struct BlockQuantLinear {
    weights: Arc<Weights>,
    k: usize,
    n: usize,
    /// The prompt path's f32 tile kernel.
    kernel: Kernel,
    /// The decode path's integer kernel.
    q4: Q4Kernel,
    /// How many trailing input axes make up `k` (a head split, `[.., heads, dim]`, is two).
    k_axes: usize,
    /// Where each output axis comes from; the input's other axes are all of size 1.
    out_axes: TVec<OutAxis>,
}

/// One output axis: an input axis (in order), a new axis of size 1, or the `n` outputs (last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutAxis {
    Input(usize),
    One,
    N,
}

impl PartialEq for BlockQuantLinear {
    fn eq(&self, other: &Self) -> bool {
        self.k == other.k
            && self.n == other.n
            && self.kernel == other.kernel
            && self.q4 == other.q4
            && self.k_axes == other.k_axes
            && self.out_axes == other.out_axes
            && (Arc::ptr_eq(&self.weights, &other.weights) || self.weights == other.weights)
    }
}

impl Eq for BlockQuantLinear {}

/// A token quantised for the integer kernels: per block of 32, codes `q` with `x ≈ q * scale`.
struct QuantisedToken {
    /// `[blocks][32]`, in element order.
    values: Vec<i8>,
    scales: Vec<f32>,
    /// `-8 * Σ` of each run of four values, `[blocks][8]`: the `- 8` of the weights' codes,
    /// as the starting value of each lane of the integer sums.
    offsets: Vec<i32>,
    /// The same three, two blocks at a time in the order the AVX-512 kernels read them (empty
    /// elsewhere): the
    /// first 16 values of both blocks, then the last 16 of both (the last block alone stays in
    /// the single-block arrays above when there is an odd number).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pair_values: Vec<i8>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pair_scales: Vec<f32>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pair_offsets: Vec<i32>,
    /// The token's block sums in f32, for the weights' block offsets.
    sums: Vec<f32>,
}

impl QuantisedToken {
    /// `x` quantised; for weights of [`Nibbles::Pairs`], each block's values in the order its
    /// codes hold them: the even elements, then the odd ones.
    fn new(x: &[f32], pairs: bool, nibbles: Nibbles) -> Self {
        let reordered: Vec<f32>;
        let x = match nibbles {
            Nibbles::Halves => x,
            Nibbles::Pairs => {
                reordered = x
                    .chunks_exact(BLOCK)
                    .flat_map(|b| b.iter().step_by(2).chain(b.iter().skip(1).step_by(2)))
                    .copied()
                    .collect();
                &reordered
            }
        };
        let blocks = x.len() / BLOCK;
        let mut values = vec![0i8; x.len()];
        let mut scales = vec![0f32; blocks];
        let mut offsets = vec![0i32; blocks * 8];
        for (b, xs) in x.chunks_exact(BLOCK).enumerate() {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = amax / 127.0;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            scales[b] = scale;
            for (q, v) in values[b * BLOCK..][..BLOCK].iter_mut().zip(xs) {
                *q = round_half_away(v * inverse).clamp(-127, 127) as i8;
            }
            for (lane, four) in values[b * BLOCK..][..BLOCK].chunks_exact(4).enumerate() {
                offsets[b * 8 + lane] = -8 * four.iter().map(|&q| q as i32).sum::<i32>();
            }
        }
        let (mut pair_values, mut pair_scales, mut pair_offsets) = (vec![], vec![], vec![]);
        if pairs {
            for p in 0..blocks / 2 {
                let (b0, b1) = (2 * p, 2 * p + 1);
                for half in 0..2 {
                    for b in [b0, b1] {
                        pair_values.extend_from_slice(&values[b * BLOCK + 16 * half..][..16]);
                        pair_offsets.extend_from_slice(&offsets[b * 8 + 4 * half..][..4]);
                    }
                }
                for _ in 0..2 {
                    for b in [b0, b1] {
                        pair_scales.extend_from_slice(&[scales[b]; 4]);
                    }
                }
            }
        }
        Self {
            values,
            scales,
            offsets,
            pair_values,
            pair_scales,
            pair_offsets,
            sums: x.chunks_exact(BLOCK).map(|b| b.iter().sum()).collect(),
        }
    }
}

/// `v.round()` (halves away from zero) as an integer, for `|v|` within `i32`: in integer
/// arithmetic that vectorises, where `f32::round` is a libm call on baseline x86-64 (it was
/// most of the time a decode token took to quantise).
#[inline]
fn round_half_away(v: f32) -> i32 {
    let whole = v as i32;
    // exact: `whole` is `v` with its fraction cleared
    let fraction = v - whole as f32;
    whole + (fraction >= 0.5) as i32 - (fraction <= -0.5) as i32
}

impl BlockQuantLinear {
    /// The op for `[.., k] -> [.., n]`.
    #[cfg(test)]
    fn plain(blob: &[u8], n: usize, k: usize, q4: Q4Kernel, rank: usize) -> TractResult<Self> {
        let mut out_axes: TVec<OutAxis> = (0..rank - 1).map(OutAxis::Input).collect();
        out_axes.push(OutAxis::N);
        let mut op = Self::new(blob, n, k, Kernel::best(), 1, out_axes)?;
        op.q4 = q4;
        Ok(op)
    }

    fn new(
        blob: &[u8],
        n: usize,
        k: usize,
        kernel: Kernel,
        k_axes: usize,
        out_axes: TVec<OutAxis>,
    ) -> TractResult<Self> {
        ensure!(
            k > 0 && n > 0 && k.is_multiple_of(BLOCK) && blob.len() == n * k / BLOCK * BLOCK_BYTES,
            "BlockQuantLinear: {} bytes are not {n} x {k} Q4_0 weights",
            blob.len()
        );
        Ok(Self {
            weights: Arc::new(Weights::from_q4_0(blob, n, k)),
            k,
            n,
            kernel,
            q4: Q4Kernel::for_kernel(kernel),
            k_axes,
            out_axes,
        })
    }

    /// `[.., k] -> [.., n]` (input of `rank`) on Q8_0 weights: `codes` `[n][k]` stored
    /// `code + 128` (as `MatMulNBits` with `bits=8` and no zero points holds them), `scales`
    /// `[n][k / 32]`, held as f16 as GGML's Q8_0 holds them (a scale that is not an f16 value
    /// is rounded to the nearest, 2⁻¹¹ of itself).
    pub(crate) fn q8_0(
        codes: Arc<Tensor>,
        scales: &[f32],
        n: usize,
        k: usize,
        rank: usize,
    ) -> TractResult<Self> {
        Self::of_file(Format::Q8_0, Nibbles::Halves, codes, scales, n, k, rank)
    }

    /// `[.., k] -> [.., n]` (input of `rank`) on 4-bit weights as `MatMulNBits` with `bits=4`,
    /// blocks of 32 and no zero points holds them: `codes` `[n][k / 32][16]`, element `2i` of a
    /// block in the low nibble of byte `i` and `2i + 1` in its high one, `(code - 8) * scale`;
    /// `scales` `[n][k / 32]`, held as f16 as tract and GGML hold them.
    pub(crate) fn q4_0_nbits(
        codes: Arc<Tensor>,
        scales: &[f32],
        n: usize,
        k: usize,
        rank: usize,
    ) -> TractResult<Self> {
        Self::of_file(Format::Q4_0, Nibbles::Pairs, codes, scales, n, k, rank)
    }

    /// That a file's `codes` bytes and `scales` are `n x k` weights of `format`, for an input of
    /// `rank`.
    fn check_file(
        codes: usize,
        scales: usize,
        n: usize,
        k: usize,
        rank: usize,
        format: Format,
    ) -> TractResult<()> {
        let bytes = n * k / BLOCK * format.code_bytes();
        ensure!(
            k > 0
                && n > 0
                && rank > 0
                && k.is_multiple_of(BLOCK)
                && codes == bytes
                && scales == n * k / BLOCK,
            "BlockQuantLinear: {codes} bytes and {scales} scales are not {n} x {k} {format:?} weights"
        );
        Ok(())
    }

    /// `[.., k] -> [.., n]` (input of `rank`) on a file's codes, kept as they lie, and its f32
    /// scales, kept as f16.
    #[allow(clippy::too_many_arguments)]
    fn of_file(
        format: Format,
        nibbles: Nibbles,
        codes: Arc<Tensor>,
        scales: &[f32],
        n: usize,
        k: usize,
        rank: usize,
    ) -> TractResult<Self> {
        Self::check_file(codes.len(), scales.len(), n, k, rank, format)?;
        let codes = plain_bytes(
            codes,
            n * k / BLOCK * format.code_bytes(),
            "BlockQuantLinear",
        )?;
        let kernel = Kernel::best();
        let mut out_axes: TVec<OutAxis> = (0..rank - 1).map(OutAxis::Input).collect();
        out_axes.push(OutAxis::N);
        Ok(Self {
            weights: Arc::new(Weights {
                format,
                nibbles,
                codes,
                scales: Arc::new(scales.iter().map(|&s| f16::from_f32(s).to_bits()).collect()),
                mins: Vec::new(),
            }),
            k,
            n,
            kernel,
            q4: Q4Kernel::for_kernel(kernel),
            k_axes: 1,
            out_axes,
        })
    }

    fn output_shape<D: DimLike>(&self, input: &[D]) -> TVec<D> {
        self.out_axes
            .iter()
            .map(|axis| match axis {
                OutAxis::Input(i) => input[*i].clone(),
                OutAxis::One => D::one(),
                OutAxis::N => D::from(self.n),
            })
            .collect()
    }

    fn blocks(&self) -> usize {
        self.k / BLOCK
    }

    /// Codes, scales and (a Q4_1 layer's) minimums of `R` consecutive rows from `j` on.
    fn rows<const R: usize>(&self, j: usize) -> Rows<'_, R> {
        let nb = self.blocks();
        let row = nb * self.weights.format.code_bytes();
        let (codes, mins) = (self.weights.codes(), &self.weights.mins);
        Rows {
            codes: std::array::from_fn(|r| &codes[(j + r) * row..][..row]),
            scales: std::array::from_fn(|r| &self.weights.scales[(j + r) * nb..][..nb]),
            mins: (!mins.is_empty()).then(|| std::array::from_fn(|r| &mins[(j + r) * nb..][..nb])),
        }
    }

    /// `out[j] = Σ w[j][c]·x[c]` for one token, every output row. A layer's product takes tens
    /// of microseconds, about what waking a pool worker costs, so when the plan runs on a pool
    /// the rows are shared with [`team`]'s spinning helpers instead.
    fn token(&self, x: &[f32], out: Shared) {
        let format = self.weights.format;
        let pairs = format == Format::Q4_0 && self.q4.reads_pairs();
        let token = QuantisedToken::new(x, pairs, self.weights.nibbles);
        let threads = pool_threads();
        let parts = (threads * PARTS_PER_THREAD).min(self.n.div_ceil(ROWS));
        let per_part = self.n.div_ceil(parts).next_multiple_of(ROWS);
        let part = |p: usize| {
            let j0 = p * per_part;
            if j0 >= self.n {
                return;
            }
            let rows = per_part.min(self.n - j0);
            // SAFETY: this part alone writes rows j0..j0+rows of the token's outputs.
            let dst = unsafe { out.run(j0, rows) };
            self.part_rows::<ROWS>(j0, dst, &token);
        };
        team::run_parts(threads, parts, &part);
    }

    fn part_rows<const R: usize>(&self, j0: usize, dst: &mut [f32], token: &QuantisedToken) {
        let format = self.weights.format;
        let mut j = j0;
        for d in dst.chunks_mut(R) {
            if d.len() == R {
                d.copy_from_slice(&rows_dot(self.q4, format, self.rows::<R>(j), token));
            } else {
                for (i, d) in d.iter_mut().enumerate() {
                    *d = rows_dot(self.q4, format, self.rows::<1>(j + i), token)[0];
                }
            }
            j += R;
        }
    }

    /// Many tokens (`x` is `[tokens][k]`): each panel of `NT` output rows widened to f32 once.
    fn tokens(&self, x: &[f32], tokens: usize, out: Shared) {
        let (k, n) = (self.k, self.n);
        let task = |panel: usize| {
            let j0 = panel * NT;
            let width = NT.min(n - j0);
            WIDENED.with_borrow_mut(|widened| {
                widened.clear();
                widened.resize(k * NT, 0.0);
                for lane in 0..width {
                    let row = self.rows::<1>(j0 + lane);
                    let mins = row.mins.map(|m| m[0]);
                    widen_row(
                        self.weights.format,
                        self.weights.nibbles,
                        row.codes[0],
                        row.scales[0],
                        mins,
                        |c, v| widened[c * NT + lane] = v,
                    );
                }
                let mut spare = Vec::new();
                let mut tile = [0.0f32; MR * NT];
                for p0 in (0..tokens).step_by(MR) {
                    let rows = MR.min(tokens - p0);
                    let block = if rows == MR {
                        &x[p0 * k..(p0 + MR) * k]
                    } else {
                        spare.resize(MR * k, 0.0);
                        spare.fill(0.0);
                        spare[..rows * k].copy_from_slice(&x[p0 * k..(p0 + rows) * k]);
                        &spare[..]
                    };
                    rows_tile(self.kernel, block, widened, width, &mut tile);
                    for m in 0..rows {
                        // SAFETY: this panel alone writes columns j0..j0+width of every row.
                        let dst = unsafe { out.run((p0 + m) * n + j0, width) };
                        dst.copy_from_slice(&tile[m * NT..][..width]);
                    }
                }
            });
        };
        on_tract_pool((0..n.div_ceil(NT)).collect(), task);
    }
}

thread_local! {
    /// A panel of output rows widened to f32, `[k][NT]`, kept between calls.
    static WIDENED: std::cell::RefCell<Vec<f32>> = Default::default();
}

/// Calls `put(c, w[c])` for the `k` weights of one row (with its Q4_1 minimums, if any).
fn widen_row(
    format: Format,
    nibbles: Nibbles,
    codes: &[u8],
    scales: &[u16],
    mins: Option<&[u16]>,
    mut put: impl FnMut(usize, f32),
) {
    if format == Format::Q8_0 {
        for (b, (block, &scale)) in codes.chunks_exact(BLOCK).zip(scales).enumerate() {
            let scale = to_f32(scale);
            for (i, &code) in block.iter().enumerate() {
                put(b * BLOCK + i, (code as f32 - 128.0) * scale);
            }
        }
        return;
    }
    for (b, (block, &scale)) in codes.chunks_exact(CODES).zip(scales).enumerate() {
        let scale = to_f32(scale);
        let offset = mins.map_or(0.0, |m| 8.0 * scale + to_f32(m[b]));
        for (i, &byte) in block.iter().enumerate() {
            let (low, high) = match nibbles {
                Nibbles::Halves => (i, i + 16),
                Nibbles::Pairs => (2 * i, 2 * i + 1),
            };
            put(
                b * BLOCK + low,
                ((byte & 0x0F) as f32 - 8.0) * scale + offset,
            );
            put(
                b * BLOCK + high,
                ((byte >> 4) as f32 - 8.0) * scale + offset,
            );
        }
    }
}

/// `R` rows of the weights as the kernels read them.
struct Rows<'a, const R: usize> {
    codes: [&'a [u8]; R],
    scales: [&'a [u16]; R],
    /// A Q4_1 layer's: the weights are `(code - 8)·d + (8d + m)`, so each row's product gains
    /// `Σ (8d + m)·s` over its blocks, `s` the token's block sums.
    mins: Option<[&'a [u16]; R]>,
}

/// `Σ w[r][c]·x[c]` for `R` rows against a quantised token.
fn rows_dot<const R: usize>(
    kernel: Q4Kernel,
    format: Format,
    rows: Rows<'_, R>,
    token: &QuantisedToken,
) -> [f32; R] {
    let Rows {
        codes,
        scales,
        mins,
    } = rows;
    let nb = token.scales.len();
    // The kernels read without bounds checks; this is what makes that sound.
    assert!(
        codes.iter().all(|c| c.len() == nb * format.code_bytes())
            && scales.iter().all(|s| s.len() == nb)
            && mins.is_none_or(|m| format == Format::Q4_0 && m.iter().all(|m| m.len() == nb))
            && token.values.len() == nb * BLOCK
            && token.offsets.len() == nb * 8
            && token.sums.len() == nb
    );
    if format == Format::Q8_0 {
        return match kernel {
            Q4Kernel::Portable => {
                std::array::from_fn(|r| row_dot_q8_portable(codes[r], scales[r], token))
            }
            // SAFETY (all three): as below; the Q8_0 kernels read the token in element order.
            #[cfg(target_arch = "x86_64")]
            Q4Kernel::Avx2 => unsafe { x86::rows_dot_q8_avx2(codes, scales, token) },
            #[cfg(target_arch = "x86_64")]
            Q4Kernel::Avx512Bw => unsafe { x86::rows_dot_q8_avx512_bw(codes, scales, token) },
            #[cfg(target_arch = "x86_64")]
            Q4Kernel::Avx512Vnni => unsafe { x86::rows_dot_q8_avx512_vnni(codes, scales, token) },
        };
    }
    match kernel {
        Q4Kernel::Portable => std::array::from_fn(|r| {
            row_dot_portable(codes[r], scales[r], mins.map(|m| m[r]), token)
        }),
        // SAFETY (all three): the features were detected in `Q4Kernel::for_kernel`/`available`;
        // the assert above bounds every read, and the pair arrays are built when these run.
        #[cfg(target_arch = "x86_64")]
        Q4Kernel::Avx2 => unsafe { x86::rows_dot_avx2(codes, scales, mins, token) },
        #[cfg(target_arch = "x86_64")]
        Q4Kernel::Avx512Bw => unsafe { x86::rows_dot_avx512_bw(codes, scales, mins, token) },
        #[cfg(target_arch = "x86_64")]
        Q4Kernel::Avx512Vnni => unsafe { x86::rows_dot_avx512_vnni(codes, scales, mins, token) },
    }
}

/// What every kernel computes: per block, the integer sum of `(code - 8) * value`, times the
/// two scales; with minimums, plus `(8d + m)` times the token's block sum.
fn row_dot_portable(
    codes: &[u8],
    scales: &[u16],
    mins: Option<&[u16]>,
    token: &QuantisedToken,
) -> f32 {
    let mut total = 0.0;
    for (b, (block, &scale)) in codes.chunks_exact(CODES).zip(scales).enumerate() {
        let x = &token.values[b * BLOCK..][..BLOCK];
        let mut sum = 0i32;
        for (i, &byte) in block.iter().enumerate() {
            sum += ((byte & 0x0F) as i32 - 8) * x[i] as i32;
            sum += ((byte >> 4) as i32 - 8) * x[16 + i] as i32;
        }
        total += to_f32(scale) * token.scales[b] * sum as f32;
        if let Some(mins) = mins {
            total += (8.0 * to_f32(scale) + to_f32(mins[b])) * token.sums[b];
        }
    }
    total
}

/// The Q8_0 sum every kernel computes: per block, `Σ (code - 128) * value`, times the scales.
fn row_dot_q8_portable(codes: &[u8], scales: &[u16], token: &QuantisedToken) -> f32 {
    let mut total = 0.0;
    for (b, (block, &scale)) in codes.chunks_exact(BLOCK).zip(scales).enumerate() {
        let x = &token.values[b * BLOCK..][..BLOCK];
        let sum: i32 = block
            .iter()
            .zip(x)
            .map(|(&code, &v)| (code as i32 - 128) * v as i32)
            .sum();
        total += to_f32(scale) * token.scales[b] * sum as f32;
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BLOCK, CODES, PREFETCH_GROUPS, QuantisedToken};
    use std::arch::x86_64::*;

    /// One Q8_0 block of one row against the token: 8 lanes of integer sums, each four
    /// products. `vpmaddubsw` multiplies unsigned by signed bytes and saturates pairs, so the
    /// codes go in as `|code - 128|` and the token takes their signs (at most 2·128·127 a pair).
    ///
    /// # Safety
    /// `codes` has 32 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn q8_block_sums(codes: *const u8, x: __m256i) -> __m256i {
        let w = _mm256_xor_si256(
            unsafe { _mm256_loadu_si256(codes as *const __m256i) },
            _mm256_set1_epi8(-128),
        );
        let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
        _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
    }

    /// # Safety
    /// AVX2, FMA and F16C are available and the slices are as long as `rows_dot` asserts.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows_dot_q8_avx2<const R: usize>(
        codes: [&[u8]; R],
        scales: [&[u16]; R],
        token: &QuantisedToken,
    ) -> [f32; R] {
        let mut acc = [_mm256_setzero_ps(); R];
        let nb = token.scales.len();
        let code_ahead = unsafe { prefetch_ahead(scales, None, nb, BLOCK) };
        for b in 0..nb {
            let x = unsafe {
                _mm256_loadu_si256(token.values.as_ptr().add(b * BLOCK) as *const __m256i)
            };
            let x_scale = token.scales[b];
            if b % 2 == 0 {
                for row in codes {
                    let line = row.as_ptr().wrapping_add(b * BLOCK + code_ahead);
                    _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
                }
            }
            for r in 0..R {
                let sums = unsafe { q8_block_sums(codes[r].as_ptr().add(b * BLOCK), x) };
                let scale = _mm256_set1_ps(unsafe { half(*scales[r].get_unchecked(b)) } * x_scale);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc[r]);
            }
        }
        std::array::from_fn(|r| sum256(acc[r]))
    }

    /// Asks for the scales and minimums of the rows [`PREFETCH_GROUPS`] calls on (rows are
    /// consecutive in memory, `R` a call); the distance to the same code bytes there.
    ///
    /// # Safety
    /// SSE is available (prefetching reads nothing, so any address is sound).
    #[inline]
    #[target_feature(enable = "sse")]
    unsafe fn prefetch_ahead<const R: usize>(
        scales: [&[u16]; R],
        mins: Option<[&[u16]; R]>,
        nb: usize,
        code_bytes: usize,
    ) -> usize {
        let ahead = PREFETCH_GROUPS * R * nb;
        for first in std::iter::once(scales[0]).chain(mins.map(|m| m[0])) {
            let at = first.as_ptr().wrapping_add(ahead) as *const i8;
            for line in (0..R * nb * 2).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line));
            }
        }
        ahead * code_bytes
    }

    /// Two f16 values at `at`, widened into lanes 0 and 1 (2 and 3 zero).
    ///
    /// # Safety
    /// `at` has two readable f16 values.
    #[inline]
    #[target_feature(enable = "f16c")]
    unsafe fn two_halves(at: *const u16) -> __m128 {
        _mm_cvtph_ps(_mm_cvtsi32_si128(unsafe {
            std::ptr::read_unaligned(at as *const i32)
        }))
    }

    /// `acc + sums · scale`, each lane's scale the token's times the row's block: `scales[0]`,
    /// or `scales[1]` in the lanes `second` marks.
    ///
    /// # Safety
    /// `scales` has two readable f16 values.
    #[inline]
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn add_scaled(
        acc: __m512,
        sums: __m512i,
        scales: *const u16,
        second: __mmask16,
        x_scales: __m512,
    ) -> __m512 {
        let two = unsafe { two_halves(scales) };
        let w = _mm512_mask_blend_ps(
            second,
            _mm512_broadcastss_ps(two),
            _mm512_broadcastss_ps(_mm_movehdup_ps(two)),
        );
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(w, x_scales), acc)
    }

    /// Two Q8_0 blocks of each row at a time (64 codes and 64 token values in element order:
    /// lanes 0-7 the first block, 8-15 the second), their integer sums by `$sums` given the
    /// token bytes and `$start`, what the loop over rows shares; an odd last block through
    /// [`q8_block_sums`].
    macro_rules! rows_dot_q8_avx512 {
        ($name:ident, $features:literal, |$x:ident| $start:expr, |$begin:ident, $codes:ident| $sums:expr) => {
            /// # Safety
            /// The target features are available and the slices are as long as `rows_dot`
            /// asserts.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name<const R: usize>(
                codes: [&[u8]; R],
                scales: [&[u16]; R],
                token: &QuantisedToken,
            ) -> [f32; R] {
                let nb = token.scales.len();
                let mut acc = [_mm512_setzero_ps(); R];
                let code_ahead = unsafe { prefetch_ahead(scales, None, nb, BLOCK) };
                for p in 0..nb / 2 {
                    // a pair of blocks is a line of each row
                    for row in codes {
                        let line = row.as_ptr().wrapping_add(2 * p * BLOCK + code_ahead);
                        _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
                    }
                    let $x = unsafe {
                        _mm512_loadu_si512(token.values.as_ptr().add(p * 2 * BLOCK) as *const _)
                    };
                    let $begin = $start;
                    let x_scales = _mm512_mask_blend_ps(
                        0xFF00,
                        _mm512_set1_ps(token.scales[2 * p]),
                        _mm512_set1_ps(token.scales[2 * p + 1]),
                    );
                    for r in 0..R {
                        let $codes = unsafe {
                            _mm512_loadu_si512(codes[r].as_ptr().add(p * 2 * BLOCK) as *const _)
                        };
                        let sums = $sums;
                        let s = unsafe { scales[r].as_ptr().add(2 * p) };
                        acc[r] = unsafe { add_scaled(acc[r], sums, s, 0xFF00, x_scales) };
                    }
                }
                let mut out: [f32; R] = std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]));
                if nb % 2 == 1 {
                    let b = nb - 1;
                    let x = unsafe {
                        _mm256_loadu_si256(token.values.as_ptr().add(b * BLOCK) as *const __m256i)
                    };
                    for r in 0..R {
                        let sums = unsafe { q8_block_sums(codes[r].as_ptr().add(b * BLOCK), x) };
                        out[r] += sum256(_mm256_cvtepi32_ps(sums))
                            * unsafe { half(*scales[r].get_unchecked(b)) }
                            * token.scales[b];
                    }
                }
                out
            }
        };
    }

    // VNNI multiplies the stored `code + 128` (unsigned) by the token without saturating; the
    // `128 · Σ x` that adds is taken away once per pair of blocks, for every row.
    rows_dot_q8_avx512!(
        rows_dot_q8_avx512_vnni,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        |x| _mm512_sub_epi32(
            _mm512_setzero_si512(),
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(-128), x)
        ),
        |start, codes| _mm512_dpbusd_epi32(start, codes, x)
    );
    // Without VNNI, as `q8_block_sums` does: AVX-512 has no byte sign instruction, so the
    // token's bytes are negated under the mask of the negative codes.
    rows_dot_q8_avx512!(
        rows_dot_q8_avx512_bw,
        "avx512f,avx512bw,avx512vl,avx2,fma,f16c",
        |x| x,
        |x_bytes, codes| {
            let w = _mm512_xor_si512(codes, _mm512_set1_epi8(-128));
            let signed = _mm512_mask_sub_epi8(
                x_bytes,
                _mm512_movepi8_mask(w),
                _mm512_setzero_si512(),
                x_bytes,
            );
            let pairs = _mm512_maddubs_epi16(_mm512_abs_epi8(w), signed);
            _mm512_madd_epi16(pairs, _mm512_set1_epi16(1))
        }
    );

    /// One block of one row against the token: 8 lanes of integer sums (each lane four
    /// products, `- 8` included), as f32.
    ///
    /// # Safety
    /// `codes` has 16 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn block_sums(codes: *const u8, x: __m256i, offsets: __m256i) -> __m256 {
        let packed = unsafe { _mm_loadu_si128(codes as *const __m128i) };
        let low = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(packed, low);
        let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low);
        let bytes = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        let pairs = _mm256_maddubs_epi16(bytes, x);
        let fours = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
        _mm256_cvtepi32_ps(_mm256_add_epi32(fours, offsets))
    }

    /// An f16 value, widened.
    #[inline]
    #[target_feature(enable = "f16c")]
    fn half(h: u16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
    }

    #[inline]
    #[target_feature(enable = "avx")]
    fn sum256(v: __m256) -> f32 {
        let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let half = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(half, _mm_shuffle_ps(half, half, 1)))
    }

    /// # Safety
    /// AVX2, FMA and F16C are available and the slices are as long as `rows_dot` asserts.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows_dot_avx2<const R: usize>(
        codes: [&[u8]; R],
        scales: [&[u16]; R],
        mins: Option<[&[u16]; R]>,
        token: &QuantisedToken,
    ) -> [f32; R] {
        let mut acc = [_mm256_setzero_ps(); R];
        let mut from_mins = [0f32; R];
        let nb = token.scales.len();
        let code_ahead = unsafe { prefetch_ahead(scales, mins, nb, CODES) };
        for b in 0..nb {
            if b % 4 == 0 {
                for row in codes {
                    let line = row.as_ptr().wrapping_add(b * CODES + code_ahead);
                    _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
                }
            }
            let x = unsafe {
                _mm256_loadu_si256(token.values.as_ptr().add(b * BLOCK) as *const __m256i)
            };
            let offsets =
                unsafe { _mm256_loadu_si256(token.offsets.as_ptr().add(b * 8) as *const __m256i) };
            let x_scale = token.scales[b];
            for r in 0..R {
                let sums = unsafe { block_sums(codes[r].as_ptr().add(b * CODES), x, offsets) };
                let d = unsafe { half(*scales[r].get_unchecked(b)) };
                acc[r] = _mm256_fmadd_ps(sums, _mm256_set1_ps(d * x_scale), acc[r]);
                if let Some(mins) = mins {
                    let m = unsafe { half(*mins[r].get_unchecked(b)) };
                    from_mins[r] += (8.0 * d + m) * unsafe { *token.sums.get_unchecked(b) };
                }
            }
        }
        std::array::from_fn(|r| sum256(acc[r]) + from_mins[r])
    }

    /// Two blocks of each row at a time in 512-bit registers, their integer sums by `$sums`
    /// (`vpdpbusd` with VNNI, else `vpmaddubsw` + `vpmaddwd`); an odd last block through
    /// [`block_sums`].
    macro_rules! rows_dot_avx512 {
        ($name:ident, $features:literal, |$offsets:ident, $bytes:ident, $x:ident| $sums:expr) => {
            /// # Safety
            /// The target features are available, the slices are as long as `rows_dot`
            /// asserts and the token's pair arrays are built.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name<const R: usize>(
                codes: [&[u8]; R],
                scales: [&[u16]; R],
                mins: Option<[&[u16]; R]>,
                token: &QuantisedToken,
            ) -> [f32; R] {
                let nb = token.scales.len();
                let low = _mm256_set1_epi8(0x0F);
                let mut acc = [_mm512_setzero_ps(); R];
                // each row's (8d + m)·s for the pair's two blocks, in lanes 0 and 1
                let mut from_mins = [_mm_setzero_ps(); R];
                let eight = _mm_set1_ps(8.0);
                let code_ahead = unsafe { prefetch_ahead(scales, mins, nb, CODES) };
                for p in 0..nb / 2 {
                    if p % 2 == 0 {
                        // the same line of the rows PREFETCH_GROUPS calls on
                        for row in codes {
                            let line = row.as_ptr().wrapping_add(2 * p * CODES + code_ahead);
                            _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
                        }
                    }
                    let $x = unsafe {
                        _mm512_loadu_si512(token.pair_values.as_ptr().add(p * 64) as *const _)
                    };
                    let $offsets = unsafe {
                        _mm512_loadu_si512(token.pair_offsets.as_ptr().add(p * 16) as *const _)
                    };
                    let x_scales =
                        unsafe { _mm512_loadu_ps(token.pair_scales.as_ptr().add(p * 16)) };
                    let block_sums = unsafe {
                        _mm_castsi128_ps(_mm_loadl_epi64(
                            token.sums.as_ptr().add(2 * p) as *const __m128i
                        ))
                    };
                    for r in 0..R {
                        let packed = unsafe {
                            _mm256_loadu_si256(
                                codes[r].as_ptr().add(2 * p * CODES) as *const __m256i
                            )
                        };
                        let lo = _mm256_and_si256(packed, low);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
                        let $bytes = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                        let sums = $sums;
                        // the weights' two scales over their blocks' lanes: 0-3 and 8-11, 4-7 and 12-15
                        let s = unsafe { scales[r].as_ptr().add(2 * p) };
                        acc[r] = unsafe { add_scaled(acc[r], sums, s, 0xF0F0, x_scales) };
                        if let Some(mins) = mins {
                            let (d, m) =
                                unsafe { (two_halves(s), two_halves(mins[r].as_ptr().add(2 * p))) };
                            from_mins[r] =
                                _mm_fmadd_ps(_mm_fmadd_ps(eight, d, m), block_sums, from_mins[r]);
                        }
                    }
                }
                let mut out: [f32; R] = std::array::from_fn(|r| {
                    let m = from_mins[r];
                    _mm512_reduce_add_ps(acc[r])
                        + _mm_cvtss_f32(m)
                        + _mm_cvtss_f32(_mm_movehdup_ps(m))
                });
                if nb % 2 == 1 {
                    let b = nb - 1;
                    let x = unsafe {
                        _mm256_loadu_si256(token.values.as_ptr().add(b * BLOCK) as *const __m256i)
                    };
                    let offsets = unsafe {
                        _mm256_loadu_si256(token.offsets.as_ptr().add(b * 8) as *const __m256i)
                    };
                    for r in 0..R {
                        let sums =
                            unsafe { block_sums(codes[r].as_ptr().add(b * CODES), x, offsets) };
                        let d = unsafe { half(*scales[r].get_unchecked(b)) };
                        out[r] += sum256(sums) * d * token.scales[b];
                        if let Some(mins) = mins {
                            let m = unsafe { half(*mins[r].get_unchecked(b)) };
                            out[r] += (8.0 * d + m) * token.sums[b];
                        }
                    }
                }
                out
            }
        };
    }

    rows_dot_avx512!(
        rows_dot_avx512_vnni,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        |offsets, bytes, x| _mm512_dpbusd_epi32(offsets, bytes, x)
    );
    rows_dot_avx512!(
        rows_dot_avx512_bw,
        "avx512f,avx512bw,avx512vl,avx2,fma,f16c",
        |offsets, bytes, x| {
            let pairs = _mm512_maddubs_epi16(bytes, x);
            _mm512_add_epi32(_mm512_madd_epi16(pairs, _mm512_set1_epi16(1)), offsets)
        }
    );
}

impl Op for BlockQuantLinear {
    fn name(&self) -> StaticName {
        match self.weights.format {
            Format::Q4_0 => "BlockQ4Linear".into(),
            Format::Q8_0 => "BlockQ8Linear".into(),
        }
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {}, {:?}, {:?} kernel",
            self.k, self.n, self.weights.format, self.kernel
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for BlockQuantLinear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(self.apply(&input)?.into_tvalue()))
    }
}

impl BlockQuantLinear {
    fn apply(&self, input: &Tensor) -> TractResult<Tensor> {
        let shape = input.shape();
        let k_start = shape.len().checked_sub(self.k_axes);
        ensure!(
            k_start.is_some_and(|at| shape[at..].iter().product::<usize>() == self.k),
            "BlockQuantLinear: input {shape:?} does not end in {} channels",
            self.k
        );
        let tokens = shape.iter().product::<usize>() / self.k;
        let out_shape = self.output_shape(shape);
        let x = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut tensor = Tensor::zero::<f32>(&out_shape)?;
        {
            let mut view = tensor.try_as_plain_ram_mut()?;
            let base = Shared::new(view.as_slice_mut::<f32>()?);
            if tokens >= PANEL_FROM {
                self.tokens(x, tokens, base);
            } else {
                for (t, x) in x.chunks_exact(self.k).enumerate() {
                    // SAFETY: token `t`'s outputs are its own `n` values of the output.
                    self.token(x, unsafe { base.offset(t * self.n) });
                }
            }
        }
        Ok(tensor)
    }
}

impl TypedOp for BlockQuantLinear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].rank() >= self.k_axes);
        let shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        Ok(tvec!(f32::fact(self.output_shape(&shape))))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let volume = inputs[0].shape.volume();
        Ok(tvec!((Cost::FMA(f32::datum_type()), volume * self.n)))
    }

    as_op!();
}

/// The op for `node` when it is an f32 EinSum `[.., k] x [n, k] -> [.., n]` whose weights are
/// a Q4_0 block-quant constant (what tract-onnx makes of `MatMulNBits`).
fn block_q4_for(model: &TypedModel, node: &TypedNode, kernel: Kernel) -> Option<BlockQuantLinear> {
    let op = node.op_as::<EinSum>()?;
    if op.q_params.is_some() || op.operating_dt != f32::datum_type() || node.inputs.len() != 2 {
        return None;
    }
    let (x, w, y) = einsum_letters(op)?;
    let x_fact = model.outlet_fact(node.inputs[0]).ok()?;
    let weights = model.outlet_fact(node.inputs[1]).ok()?.konst.clone()?;
    let storage = weights.storage_as::<BlockQuantStorage>()?;
    let q4_0: &dyn BlockQuant = &Q4_0;
    if x_fact.datum_type != f32::datum_type() || storage.format() != q4_0 {
        return None;
    }
    // Weights `[(1,) n, contracted..]`; the input ends in the contracted axes in that order.
    let shape = weights.shape();
    let (n_letter, contracted, n_at) = match (w.first(), shape.first()) {
        (Some(g), Some(1)) if shape.len() >= 3 && !x.contains(g) && !y.contains(g) => {
            (w[1], &w[2..], 1)
        }
        (Some(n), _) if shape.len() >= 2 => (*n, &w[1..], 0),
        _ => return None,
    };
    let x_lead = x.strip_suffix(contracted)?;
    let (&y_last, y_lead) = y.split_last()?;
    if y_last != n_letter || x_lead.contains(&n_letter) || y_lead.iter().any(|c| w.contains(c)) {
        return None;
    }
    // The axes both sides have, in the same order; what only one side has is of size 1.
    let common: Vec<char> = x_lead
        .iter()
        .copied()
        .filter(|c| y_lead.contains(c))
        .collect();
    let y_common: Vec<char> = y_lead
        .iter()
        .copied()
        .filter(|c| x_lead.contains(c))
        .collect();
    let dropped_are_ones = x_lead
        .iter()
        .enumerate()
        .filter(|(_, c)| !y_lead.contains(c))
        .all(|(i, _)| x_fact.shape[i].is_one());
    if common != y_common || !dropped_are_ones {
        return None;
    }
    let mut out_axes: TVec<OutAxis> = y_lead
        .iter()
        .map(|c| match x_lead.iter().position(|x| x == c) {
            Some(i) => OutAxis::Input(i),
            None => OutAxis::One,
        })
        .collect();
    out_axes.push(OutAxis::N);
    let n = shape[n_at];
    let k: usize = shape[n_at + 1..].iter().product();
    BlockQuantLinear::new(
        storage.value().as_bytes(),
        n,
        k,
        kernel,
        contracted.len(),
        out_axes,
    )
    .ok()
}

/// Swaps [`BlockQuantLinear`] in for every Q4_0 product with a constant weight of a decluttered
/// model; returns how many.
pub(crate) fn replace_block_quant_linears(model: &mut TypedModel) -> TractResult<usize> {
    if std::env::var("CABIN_TRACT_Q4").is_ok_and(|v| v == "1") {
        return Ok(0);
    }
    let kernel = Kernel::best();
    let mut replaced = 0;
    for id in model.eval_order()? {
        let Some(op) = block_q4_for(model, model.node(id), kernel) else {
            continue;
        };
        let input = model.node(id).inputs[0];
        swap_in(model, id, op, &[input])?;
        replaced += 1;
    }
    // the products may also have come in as cabin's already (see `quant_onnx`)
    fold_block_offsets(model)?;
    Ok(replaced)
}

/// Folds the float correction of a Q4_1 layer into the product before it: `Add(q4(x),
/// EinSum(Reduce<Sum>(Reshape(x, [.., K/32, 32])), C))`, with `C` a constant `[K/32, n]`, becomes
/// one [`BlockQuantLinear`] whose blocks carry `C`'s offsets (`build_lm.py --quant q4_1` writes that
/// pattern: `MatMulNBits` plus `(8d + m)` times the block sums). Returns how many.
pub(crate) fn fold_block_offsets(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::binary::TypedBinOp;
    use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
    let mut folded = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(bin) = node.op_as::<TypedBinOp>() else {
            continue;
        };
        if bin.0.name() != "Add" || node.inputs.len() != 2 {
            continue;
        }
        let fold = (0..2).find_map(|q| {
            let product = model.node(node.inputs[q].node);
            let correction = model.node(node.inputs[1 - q].node);
            let op = product.op_as::<BlockQuantLinear>()?;
            if !op.weights.mins.is_empty() || op.weights.format != Format::Q4_0 {
                return None;
            }
            // the correction: block sums of the same activation against a [K/32, n] constant
            let einsum = correction.op_as::<EinSum>()?;
            if correction.inputs.len() != 2 || einsum.q_params.is_some() {
                return None;
            }
            let table = model
                .outlet_fact(correction.inputs[1])
                .ok()?
                .konst
                .clone()?;
            let nb = op.blocks();
            if table.datum_type() != f32::datum_type() || table.shape() != [nb, op.n] {
                return None;
            }
            let (sums_letters, table_letters, out_letters) = einsum_letters(einsum)?;
            let [block_letter, n_letter] = table_letters[..] else {
                return None;
            };
            let sums_at = sums_letters.len().checked_sub(2)?;
            if sums_letters[sums_at] != block_letter
                || out_letters.last() != Some(&n_letter)
                || out_letters.contains(&sums_letters[sums_at + 1])
            {
                return None;
            }
            let reduce_node = model.node(correction.inputs[0].node);
            let reduce = reduce_node.op_as::<Reduce>()?;
            let split_node = model.node(reduce_node.inputs.first()?.node);
            let split_rank = model.outlet_fact(reduce_node.inputs[0]).ok()?.rank();
            if !matches!(reduce.reducer, Reducer::Sum) || reduce.axes[..] != [split_rank - 1] {
                return None;
            }
            let AxisOp::Reshape(at, from, to) = split_node.op_as::<AxisOp>()? else {
                return None;
            };
            if *at != split_rank - 2
                || from[..] != [op.k.to_dim()]
                || to[..] != [nb.to_dim(), BLOCK.to_dim()]
            {
                return None;
            }
            // the same activation: both read one tensor, through reshapes that move no data
            let root = |mut outlet: OutletId| {
                while let Some(AxisOp::Reshape(..)) = model.node(outlet.node).op_as::<AxisOp>() {
                    outlet = model.node(outlet.node).inputs[0];
                }
                outlet
            };
            if root(product.inputs[0]) != root(split_node.inputs[0])
                || model.outlet_fact(node.inputs[q]).ok()?.shape
                    != model.outlet_fact(node.inputs[1 - q]).ok()?.shape
            {
                return None;
            }
            // a Q4_1 layer's table: `8d + m` with `m` an f16 value, kept as that `m` when it
            // gives the table's value back exactly; any other table stays a product of its own
            let values = table.try_as_plain_ram().ok()?;
            let values = values.as_slice::<f32>().ok()?;
            let mut mins = vec![0u16; op.n * nb];
            for b in 0..nb {
                for j in 0..op.n {
                    let d = to_f32(op.weights.scales[j * nb + b]);
                    let value = values[b * op.n + j];
                    let m = f16::from_f32(value - 8.0 * d);
                    if 8.0 * d + m.to_f32() != value {
                        return None;
                    }
                    mins[j * nb + b] = m.to_bits();
                }
            }
            let mut fused = op.clone();
            fused.weights = Arc::new(Weights {
                format: Format::Q4_0,
                nibbles: op.weights.nibbles,
                codes: op.weights.codes.clone(),
                scales: op.weights.scales.clone(),
                mins,
            });
            Some((fused, product.inputs[0]))
        });
        if let Some((fused, input)) = fold {
            swap_in(model, id, fused, &[input])?;
            folded += 1;
        }
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan_rewrite::{assert_agrees_here_and_on_pool, noise};
    use tract_onnx::tract_core::ops::konst::Const;

    /// A plan `x [1, tokens, k] -> x · wᵀ` with `w` quantised to Q4_0 the way tract-onnx stores
    /// `MatMulNBits`, and the weights it stands for.
    fn q4_plan(n: usize, k: usize, seed: u64) -> (TypedModel, Vec<f32>) {
        q4_plan_as(n, k, seed, false)
    }

    /// As [`q4_plan`]; `split` has the input as `[S, heads, k / heads]` against weights of the
    /// same split and the output gain a leading axis, as tract's declutter leaves an attention
    /// output's projection (`bck,nck->abn`).
    fn q4_plan_as(n: usize, k: usize, seed: u64, split: bool) -> (TypedModel, Vec<f32>) {
        let w = noise(n * k, seed);
        let blob = Q4_0.quant_f32(&w).unwrap();
        let storage = BlockQuantStorage::new(Box::new(Q4_0), n, k, Arc::new(blob)).unwrap();
        let unpacked = Weights::from_q4_0(storage.value().as_bytes(), n, k);
        let mut dequantised = vec![0.0; n * k];
        let nb = k / BLOCK;
        for j in 0..n {
            widen_row(
                Format::Q4_0,
                Nibbles::Halves,
                &unpacked.codes()[j * nb * CODES..][..nb * CODES],
                &unpacked.scales[j * nb..][..nb],
                None,
                |c, v| dequantised[j * k + c] = v,
            );
        }
        let heads = 4;
        let mut model = TypedModel::default();
        let s = TDim::from(model.symbols.sym("S"));
        let (w_shape, x_fact, axes) = if split {
            (
                vec![n, heads, k / heads],
                f32::fact(tvec![s, heads.to_dim(), (k / heads).to_dim()]),
                (["bck", "nck"], ["abn"]),
            )
        } else {
            (
                vec![1, n, k],
                f32::fact(tvec![1.to_dim(), s, k.to_dim()]),
                (["ask", "gnk"], ["asn"]),
            )
        };
        let fact = Box::new(tract_linalg::block_quant::BlockQuantFact::new(
            Box::new(Q4_0),
            w_shape.iter().copied().collect(),
        ));
        let tensor = storage.into_tensor_with_shape(f32::datum_type(), &w_shape);
        let x = model.add_source("x", x_fact).unwrap();
        let w = model
            .wire_node(
                "w",
                Const::new_with_exotic_fact(Arc::new(tensor), fact).unwrap(),
                &[],
            )
            .unwrap()[0];
        let axes = AxesMapping::from_strs(&axes.0, &axes.1).unwrap();
        let y = model
            .wire_node("mm", EinSum::new(axes, f32::datum_type()), &[x, w])
            .unwrap();
        model.select_output_outlets(&y).unwrap();
        (model.into_decluttered().unwrap(), dequantised)
    }

    fn product(x: &[f32], w: &[f32], k: usize) -> Vec<f32> {
        let n = w.len() / k;
        x.chunks_exact(k)
            .flat_map(|x| {
                (0..n).map(move |j| {
                    x.iter()
                        .zip(&w[j * k..][..k])
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>() as f32
                })
            })
            .collect()
    }

    fn run(op: &BlockQuantLinear, x: &[f32], tokens: usize) -> Vec<f32> {
        let got = op
            .apply(&Tensor::from_shape(&[1, tokens, op.k], x).unwrap())
            .unwrap();
        assert_eq!(got.shape(), &[1, tokens, op.n]);
        got.to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn every_decode_kernel_gives_the_integer_sum() {
        // 70 rows: four at a time and a rest; 3 blocks (a pair and a lone one) and 4
        for k in [96, 128] {
            let n = 70;
            let blob = Q4_0.quant_f32(&noise(n * k, 1)).unwrap();
            let x = noise(k, 7);
            let portable = run(
                &BlockQuantLinear::plain(&blob, n, k, Q4Kernel::Portable, 3).unwrap(),
                &x,
                1,
            );
            for q4 in Q4Kernel::available() {
                let got = run(&BlockQuantLinear::plain(&blob, n, k, q4, 3).unwrap(), &x, 1);
                for (g, e) in got.iter().zip(&portable) {
                    assert!(
                        (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                        "{q4:?}, k {k}: {g} != {e}"
                    );
                }
            }
        }
    }

    /// `w` as Q8_0 (codes `+ 128`, f32 scales), and the weights that stands for.
    #[test]
    fn every_decode_kernel_adds_a_q4_1_layers_minimums() {
        // k 96: a pair of blocks and a lone one; 128: two pairs
        for k in [96, 128] {
            let n = 70;
            let (_, w0) = q4_plan(n, k, 1);
            let blob = Q4_0.quant_f32(&noise(n * k, 1)).unwrap();
            let mins: Vec<u16> = noise(n * k / BLOCK, 4)
                .iter()
                .map(|&m| f16::from_f32(m).to_bits())
                .collect();
            // the weights a Q4_1 layer stands for: (code - 8)·d + (8d + m)
            let scales = Weights::from_q4_0(&blob, n, k).scales;
            let w: Vec<f32> = (0..n * k)
                .map(|i| w0[i] + 8.0 * to_f32(scales[i / BLOCK]) + to_f32(mins[i / BLOCK]))
                .collect();
            let x = noise(k, 7);
            let want = product(&x, &w, k);
            let step: Vec<f32> = x
                .chunks_exact(BLOCK)
                .map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0)
                .collect();
            for q4 in Q4Kernel::available() {
                let mut op = BlockQuantLinear::plain(&blob, n, k, q4, 3).unwrap();
                Arc::get_mut(&mut op.weights).unwrap().mins = mins.clone();
                for (j, (g, e)) in run(&op, &x, 1).iter().zip(&want).enumerate() {
                    // only the codes meet the token's 8-bit rounding; the minimums meet its sums
                    let bound: f32 = (0..k)
                        .map(|c| w0[j * k + c].abs() * step[c / BLOCK] / 2.0)
                        .sum();
                    assert!(
                        (g - e).abs() <= bound * 1.001 + 1e-4 * (1.0 + e.abs()),
                        "{q4:?}, k {k}, row {j}: {g} != {e} (bound {bound})"
                    );
                }
            }
        }
    }

    #[test]
    fn a_token_rounds_as_f32_round_does() {
        let mut cases = vec![
            0.0f32, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, 126.5, -126.5, 127.0, -127.0,
        ];
        cases.extend([0.49999997f32, -0.49999997, 1.4999999, f32::NAN]);
        cases.extend(noise(1000, 21).iter().map(|v| v * 60.0));
        for v in cases {
            let want = v.round().clamp(-127.0, 127.0) as i8;
            assert_eq!(round_half_away(v).clamp(-127, 127) as i8, want, "{v}");
        }
    }

    fn q8_weights(w: &[f32]) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
        let mut codes = Vec::with_capacity(w.len());
        let mut scales = Vec::new();
        let mut dequantised = Vec::with_capacity(w.len());
        for block in w.chunks_exact(BLOCK) {
            // f16, as GGML stores it
            let scale = f16::from_f32(block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0);
            let scale = scale.to_f32();
            scales.push(scale);
            for v in block {
                let code = (v / scale).round().clamp(-127.0, 127.0);
                codes.push((code + 128.0) as u8);
                dequantised.push(code * scale);
            }
        }
        (codes, scales, dequantised)
    }

    fn q8_op(w: &[f32], n: usize, k: usize, q4: Q4Kernel) -> (BlockQuantLinear, Vec<f32>) {
        let (codes, scales, dequantised) = q8_weights(w);
        let mut op = BlockQuantLinear::q8_0(byte_tensor(codes), &scales, n, k, 3).unwrap();
        op.q4 = q4;
        (op, dequantised)
    }

    #[test]
    fn every_q8_decode_kernel_gives_the_integer_sum() {
        // 70 rows: four at a time and a rest; 3 blocks (a pair and a lone one) and 4; the
        // extreme codes (-127, 127, and -128, which a file may hold) included
        for k in [96, 128] {
            let n = 70;
            let mut w = noise(n * k, 1);
            w[3] = 40.0;
            w[5] = -40.0;
            let (mut codes, scales, _) = q8_weights(&w);
            codes[6] = 0;
            let x = noise(k, 7);
            let portable = {
                let mut op =
                    BlockQuantLinear::q8_0(byte_tensor(codes.clone()), &scales, n, k, 3).unwrap();
                op.q4 = Q4Kernel::Portable;
                run(&op, &x, 1)
            };
            for q4 in Q4Kernel::available() {
                let mut op =
                    BlockQuantLinear::q8_0(byte_tensor(codes.clone()), &scales, n, k, 3).unwrap();
                op.q4 = q4;
                for (g, e) in run(&op, &x, 1).iter().zip(&portable) {
                    assert!(
                        (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                        "{q4:?}, k {k}: {g} != {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_q8_token_is_within_its_rounding_and_a_prompt_is_exact() {
        let (n, k) = (70, 96);
        let w = noise(n * k, 3);
        let (op, dequantised) = q8_op(&w, n, k, Q4Kernel::for_kernel(Kernel::best()));
        a_token_is_within_its_rounding(&op, &dequantised, &noise(k, 9));
        prompts_give_the_product(&op, &dequantised);
    }

    #[test]
    fn q8_weights_of_the_wrong_size_are_refused() {
        let err =
            BlockQuantLinear::q8_0(byte_tensor(vec![128; 64 * 95]), &[1.0; 64 * 3], 64, 95, 2);
        assert!(err.is_err());
        let err = BlockQuantLinear::q8_0(byte_tensor(vec![128; 64 * 96]), &[1.0; 64], 64, 96, 2);
        assert!(err.is_err());
    }

    #[test]
    fn a_token_is_within_its_8_bit_rounding_of_the_dequantised_product() {
        let (n, k) = (70, 96);
        let (_, w) = q4_plan(n, k, 1);
        let blob = Q4_0.quant_f32(&noise(n * k, 1)).unwrap();
        let op =
            BlockQuantLinear::plain(&blob, n, k, Q4Kernel::for_kernel(Kernel::best()), 3).unwrap();
        a_token_is_within_its_rounding(&op, &w, &noise(k, 7));
    }

    #[test]
    fn a_prompt_gives_the_dequantised_product() {
        let (n, k) = (70, 96);
        let (_, w) = q4_plan(n, k, 1);
        let blob = Q4_0.quant_f32(&noise(n * k, 1)).unwrap();
        let op = BlockQuantLinear::plain(&blob, n, k, Q4Kernel::Portable, 3).unwrap();
        prompts_give_the_product(&op, &w);
    }

    /// One token against the weights `w` stands for: each value of the token is off by at most
    /// half its block's 8-bit step, which bounds each output; and not trivially (a wrong
    /// nibble or block order would be far outside it).
    fn a_token_is_within_its_rounding(op: &BlockQuantLinear, w: &[f32], x: &[f32]) {
        let k = op.k;
        let want = product(x, w, k);
        let step: Vec<f32> = x
            .chunks_exact(BLOCK)
            .map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0)
            .collect();
        for (j, (g, e)) in run(op, x, 1).iter().zip(&want).enumerate() {
            let bound: f32 = (0..k)
                .map(|c| w[j * k + c].abs() * step[c / BLOCK] / 2.0)
                .sum();
            assert!(
                (g - e).abs() <= bound * 1.001 + 1e-5,
                "row {j}: {g} != {e} (bound {bound})"
            );
        }
        assert!(want.iter().map(|v| v.abs()).sum::<f32>() > 10.0);
    }

    /// Prompts (8 tokens and 19) on every f32 tile kernel give the product with the weights
    /// `w` stands for, exactly but for float rounding.
    fn prompts_give_the_product(op: &BlockQuantLinear, w: &[f32]) {
        let k = op.k;
        for kernel in Kernel::available() {
            let mut op = op.clone();
            op.kernel = kernel;
            for tokens in [8, 19] {
                let x = noise(tokens * k, 7);
                let want = product(&x, w, k);
                for (g, e) in run(&op, &x, tokens).iter().zip(&want) {
                    assert!(
                        (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{kernel:?}, {tokens} tokens: {g} != {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn matmul_nbits_codes_give_the_product_they_stand_for() {
        // MatMulNBits' layout: element 2i of a block in the low nibble of byte i, 2i + 1 high
        let (n, k) = (12, 96);
        let w = noise(n * k, 11);
        let mut codes = vec![0u8; n * k / 2];
        let mut scales = vec![0f32; n * k / BLOCK];
        let mut dequantised = vec![0f32; n * k];
        for (b, block) in w.chunks_exact(BLOCK).enumerate() {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = f16::from_f32(amax / 7.0).to_f32();
            scales[b] = scale;
            for (e, v) in block.iter().enumerate() {
                let code = ((v / scale).round() + 8.0).clamp(0.0, 15.0) as u8;
                codes[b * CODES + e / 2] |= code << (4 * (e % 2));
                dequantised[b * BLOCK + e] = (code as f32 - 8.0) * scale;
            }
        }
        let op =
            BlockQuantLinear::q4_0_nbits(byte_tensor(codes.clone()), &scales, n, k, 3).unwrap();
        prompts_give_the_product(&op, &dequantised);
        for q4 in Q4Kernel::available() {
            let mut op = op.clone();
            op.q4 = q4;
            a_token_is_within_its_rounding(&op, &dequantised, &noise(k, 12));
        }
        let short = byte_tensor(codes[1..].to_vec());
        assert!(BlockQuantLinear::q4_0_nbits(short, &scales, n, k, 3).is_err());
        // the file's bytes are used as they lie, not copied
        let file = byte_tensor(codes);
        let op = BlockQuantLinear::q4_0_nbits(file.clone(), &scales, n, k, 3).unwrap();
        assert!(Arc::ptr_eq(&op.weights.codes, &file));
    }

    #[test]
    fn a_token_shared_with_the_team_gives_what_one_thread_gives() {
        // rows split between threads: each row's sum is the same arithmetic, so equal bits
        let (n, k) = (300, 128);
        let blob = Q4_0.quant_f32(&noise(n * k, 3)).unwrap();
        let op =
            BlockQuantLinear::plain(&blob, n, k, Q4Kernel::for_kernel(Kernel::best()), 3).unwrap();
        let x = noise(k, 4);
        let alone = run(&op, &x, 1);
        let pool = tract_linalg::multithread::Executor::multithread(2);
        for _ in 0..50 {
            let shared = tract_linalg::multithread::multithread_tract_scope(pool.clone(), || {
                run(&op, &x, 1)
            });
            assert!(
                alone
                    .iter()
                    .zip(&shared)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
    }

    #[test]
    fn a_plan_with_the_op_gives_what_tract_gives() {
        plan_agrees(false);
    }

    #[test]
    fn a_product_over_split_heads_gives_what_tract_gives() {
        plan_agrees(true);
    }

    fn plan_agrees(split: bool) {
        let (n, k) = (100, 128);
        let (model, _) = q4_plan_as(n, k, 3, split);
        let mut swapped = model.clone();
        assert_eq!(replace_block_quant_linears(&mut swapped).unwrap(), 1);
        let ours = swapped.into_optimized().unwrap().into_runnable().unwrap();
        let tract = model.into_optimized().unwrap().into_runnable().unwrap();
        for tokens in [1, 3, 33] {
            let shape = if split {
                vec![tokens, 4, k / 4]
            } else {
                vec![1, tokens, k]
            };
            let x = Tensor::from_shape(&shape, &noise(tokens * k, 11)).unwrap();
            if tokens < PANEL_FROM {
                // a token is multiplied at 8 bits: within a hundredth of the largest output
                let want = tract.run(tvec!(x.clone().into_tvalue())).unwrap();
                let got = ours.run(tvec!(x.clone().into_tvalue())).unwrap();
                let (want, got) = (
                    want[0].to_plain_array_view::<f32>().unwrap(),
                    got[0].to_plain_array_view::<f32>().unwrap(),
                );
                assert_eq!(want.shape(), got.shape());
                let largest = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (g, e) in got.iter().zip(want.iter()) {
                    assert!(
                        (g - e).abs() <= 0.01 * largest,
                        "{tokens} tokens: {g} != {e}"
                    );
                }
                continue;
            }
            let want = tract.run(tvec!(x.clone().into_tvalue())).unwrap();
            assert_agrees_here_and_on_pool(
                &ours,
                || tvec!(x.clone().into_tvalue()),
                &want[0],
                &format!("{tokens} tokens"),
            );
        }
    }

    #[test]
    fn a_q4_1_correction_is_folded_into_the_product() {
        // build_lm.py's q4_1 layer: MatMulNBits plus (8d + m) times the activation's block
        // sums, `d` the layer's scales and `m` f16 values
        let (n, k) = (40, 96);
        let nb = k / BLOCK;
        let blob = Q4_0.quant_f32(&noise(n * k, 5)).unwrap();
        let scales = Weights::from_q4_0(&blob, n, k).scales;
        let mins = noise(nb * n, 6);
        let mut table = vec![0f32; nb * n];
        for b in 0..nb {
            for j in 0..n {
                let m = f16::from_f32(mins[b * n + j]).to_f32();
                table[b * n + j] = 8.0 * to_f32(scales[j * nb + b]) + m;
            }
        }
        assert_eq!(q4_1_plan_agrees(n, k, &table), 0, "not folded");
    }

    #[test]
    fn a_correction_that_is_not_a_q4_1_one_stays_beside_the_product() {
        // minimums that are not f16 values: the correction keeps its own product
        let (n, k) = (40, 96);
        let table = noise(k / BLOCK * n, 6);
        assert_eq!(q4_1_plan_agrees(n, k, &table), 1);
    }

    /// Runs a [`q4_plan`] `(n, k, 5)` plus `table` times the block sums with cabin's ops and
    /// with tract's, checks they agree and returns how many block sums cabin's plan still takes.
    fn q4_1_plan_agrees(n: usize, k: usize, table: &[f32]) -> usize {
        use tract_onnx::tract_core::ops::math;
        use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
        let nb = k / BLOCK;
        let (mut model, _) = q4_plan(n, k, 5);
        let x = model.input_outlets().unwrap()[0];
        let product = model.output_outlets().unwrap()[0];
        let split = model
            .wire_node(
                "split",
                AxisOp::Reshape(2, tvec![k.to_dim()], tvec![nb.to_dim(), BLOCK.to_dim()]),
                &[x],
            )
            .unwrap();
        let sums = model
            .wire_node("sums", Reduce::new(tvec![3], Reducer::Sum), &split)
            .unwrap()[0];
        let table = model
            .add_const("offsets", Tensor::from_shape(&[nb, n], table).unwrap())
            .unwrap();
        let axes = AxesMapping::from_strs(&["amkb", "kn"], &["amn"]).unwrap();
        let correction = model
            .wire_node(
                "correction",
                EinSum::new(axes, f32::datum_type()),
                &[sums, table],
            )
            .unwrap()[0];
        let y = model
            .wire_node("add", math::add(), &[product, correction])
            .unwrap();
        model.select_output_outlets(&y).unwrap();
        let model = model.into_decluttered().unwrap();

        assert!(model.nodes().iter().any(|n| n.op_as::<Reduce>().is_some()));
        let mut swapped = model.clone();
        replace_block_quant_linears(&mut swapped).unwrap();
        let swapped = swapped.into_optimized().unwrap();
        let reductions = swapped
            .nodes()
            .iter()
            .filter(|n| n.op_as::<Reduce>().is_some())
            .count();
        let ours = swapped.into_runnable().unwrap();
        let tract = model.into_optimized().unwrap().into_runnable().unwrap();
        for (tokens, tolerance) in [(1, 0.01), (19, 1e-4)] {
            let x = Tensor::from_shape(&[1, tokens, k], &noise(tokens * k, 9)).unwrap();
            let want = tract.run(tvec!(x.clone().into_tvalue())).unwrap();
            let got = ours.run(tvec!(x.into_tvalue())).unwrap();
            let want = want[0].to_plain_array_view::<f32>().unwrap();
            let got = got[0].to_plain_array_view::<f32>().unwrap();
            let largest = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (g, e) in got.iter().zip(want.iter()) {
                assert!(
                    (g - e).abs() <= tolerance * largest.max(1.0),
                    "{tokens}: {g} != {e}"
                );
            }
        }
        reductions
    }

    #[test]
    fn a_plain_float_product_is_left_to_tract() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 64])).unwrap();
        let w = model
            .add_const("w", Tensor::from_shape(&[64, 8], &noise(512, 2)).unwrap())
            .unwrap();
        let axes = AxesMapping::from_strs(&["mk", "kn"], &["mn"]).unwrap();
        let y = model
            .wire_node("mm", EinSum::new(axes, f32::datum_type()), &[x, w])
            .unwrap();
        model.select_output_outlets(&y).unwrap();
        let mut model = model.into_decluttered().unwrap();
        assert_eq!(replace_block_quant_linears(&mut model).unwrap(), 0);
    }
}
