//! Products with 4-bit block-quantised weights, for tract plans: a language model's projections
//! and head stored as GGML's Q4_0 (blocks of 32 weights, one f16 scale, `(code - 8) * scale`),
//! which is how tract keeps the weights of ONNX `MatMulNBits` (and its own block-quant
//! transform) in memory.
//!
//! tract 0.23 runs those through a packer that widens every panel to f32 before its matrix
//! kernel, on every call; a decode step (one token) then spends most of its time widening.
//! Here a token's product reads the blocks where they lie: each block's 32 codes are widened
//! in registers and multiplied with the activation, `Σ (code - 8)·x = Σ code·x - 8·Σ x` with the
//! block sums of `x` taken once per token. Several tokens at once (a prompt) widen a panel of
//! output rows to f32 once and run `linear`'s register-blocked tile kernel over the tokens.
//!
//! The op shares the weights' blob with the constant it replaces: no copy, no repacking.
//! [`replace_block_quant_linears`] swaps it into a decluttered plan; `CABIN_TRACT_Q4=1` keeps
//! tract's own.

use std::sync::Arc;

use tract_linalg::block_quant::{BlockQuant, BlockQuantStorage, Q4_0};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::conv3x3::{Kernel, MR, NT};
use super::linear::{Shared, rows_tile};
use super::plan_rewrite::{einsum_letters, on_tract_pool, swap_in};

/// Weights per block, and bytes per block: an f16 scale then 16 bytes of codes, element `i`
/// in the low nibble of byte `i` and element `i + 16` in its high nibble.
const BLOCK: usize = 32;
const BLOCK_BYTES: usize = 18;

/// Rows a decode kernel call computes together: four independent sums keep the vector units
/// busy while the weights stream in, and share the loads of the activation.
const ROWS: usize = 4;

/// Fewer tokens than this are run block by block; from it on, by widened panels.
const PANEL_FROM: usize = MR;

/// The tract op: `x [.., k]` times the `n x k` weights, giving `[.., n]`.
#[derive(Debug, Clone)]
pub(crate) struct BlockQ4Linear {
    blocks: Arc<Blob>,
    k: usize,
    n: usize,
    kernel: Kernel,
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

impl PartialEq for BlockQ4Linear {
    fn eq(&self, other: &Self) -> bool {
        self.k == other.k
            && self.n == other.n
            && self.kernel == other.kernel
            && self.k_axes == other.k_axes
            && self.out_axes == other.out_axes
            && (Arc::ptr_eq(&self.blocks, &other.blocks)
                || self.blocks.as_bytes() == other.blocks.as_bytes())
    }
}

impl Eq for BlockQ4Linear {}

impl BlockQ4Linear {
    /// The op for `[.., k] -> [.., n]`.
    #[cfg(test)]
    fn plain(
        blocks: Arc<Blob>,
        n: usize,
        k: usize,
        kernel: Kernel,
        rank: usize,
    ) -> TractResult<Self> {
        let mut out_axes: TVec<OutAxis> = (0..rank - 1).map(OutAxis::Input).collect();
        out_axes.push(OutAxis::N);
        Self::new(blocks, n, k, kernel, 1, out_axes)
    }

    fn new(
        blocks: Arc<Blob>,
        n: usize,
        k: usize,
        kernel: Kernel,
        k_axes: usize,
        out_axes: TVec<OutAxis>,
    ) -> TractResult<Self> {
        ensure!(
            k > 0 && n > 0 && k % BLOCK == 0 && blocks.len() == n * k / BLOCK * BLOCK_BYTES,
            "BlockQ4Linear: {} bytes are not {n} x {k} Q4_0 weights",
            blocks.len()
        );
        Ok(Self {
            blocks,
            k,
            n,
            kernel,
            k_axes,
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

    fn row(&self, j: usize) -> &[u8] {
        let bytes = self.k / BLOCK * BLOCK_BYTES;
        &self.blocks.as_bytes()[j * bytes..][..bytes]
    }

    /// `R` consecutive rows from `j` on.
    fn rows<const R: usize>(&self, j: usize) -> [&[u8]; R] {
        std::array::from_fn(|r| self.row(j + r))
    }

    /// `out[j] = Σ w[j][c]·x[c]` for one token, every output row, on the calling thread: a
    /// decode step's product takes tens of microseconds, about what handing half of it to the
    /// pool and waking a worker costs (on the pool, two threads decoded slower than one).
    fn token(&self, x: &[f32], out: Shared) {
        let sums: Vec<f32> = x.chunks_exact(BLOCK).map(|b| b.iter().sum()).collect();
        {
            // SAFETY: this call alone writes the token's n outputs.
            let dst = unsafe { out.run(0, self.n) };
            let mut j = 0;
            for d in dst.chunks_mut(ROWS) {
                if d.len() == ROWS {
                    d.copy_from_slice(&rows_dot::<ROWS>(self.kernel, self.rows(j), x, &sums));
                } else {
                    for (i, d) in d.iter_mut().enumerate() {
                        *d = rows_dot::<1>(self.kernel, self.rows(j + i), x, &sums)[0];
                    }
                }
                j += ROWS;
            }
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
                    widen_row(self.row(j0 + lane), |c, v| widened[c * NT + lane] = v);
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

/// Calls `put(c, w[c])` for the `k` weights of one row.
fn widen_row(row: &[u8], mut put: impl FnMut(usize, f32)) {
    for (b, block) in row.chunks_exact(BLOCK_BYTES).enumerate() {
        let scale = f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32();
        for (i, &byte) in block[2..].iter().enumerate() {
            put(b * BLOCK + i, ((byte & 0x0F) as f32 - 8.0) * scale);
            put(b * BLOCK + 16 + i, ((byte >> 4) as f32 - 8.0) * scale);
        }
    }
}

/// `Σ w[r][c]·x[c]` for `R` rows of blocks; `sums` holds `x`'s block sums.
fn rows_dot<const R: usize>(kernel: Kernel, rows: [&[u8]; R], x: &[f32], sums: &[f32]) -> [f32; R] {
    // The kernels read without bounds checks; this is what makes that sound.
    assert!(
        rows.iter().all(|r| r.len() == sums.len() * BLOCK_BYTES) && x.len() == sums.len() * BLOCK
    );
    match kernel {
        Kernel::Portable => rows.map(|row| row_dot_portable(row, x, sums)),
        // SAFETY: the features were detected in `Kernel::best`/`available` (F16C comes with
        // every AVX2 and AVX-512 x86); the assert above bounds every read.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { x86::rows_dot_avx2(rows, x, sums) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { x86::rows_dot_avx512(rows, x, sums) },
    }
}

fn row_dot_portable(row: &[u8], x: &[f32], sums: &[f32]) -> f32 {
    let mut total = 0.0;
    for ((block, x), &sum) in row
        .chunks_exact(BLOCK_BYTES)
        .zip(x.chunks_exact(BLOCK))
        .zip(sums)
    {
        let scale = f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32();
        let mut dot = 0.0;
        for (i, &byte) in block[2..].iter().enumerate() {
            dot += (byte & 0x0F) as f32 * x[i] + (byte >> 4) as f32 * x[16 + i];
        }
        total += scale * (dot - 8.0 * sum);
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BLOCK, BLOCK_BYTES};
    use std::arch::x86_64::*;

    /// The f16 scale at the start of a block.
    ///
    /// # Safety
    /// F16C is available and `block` points at two readable bytes.
    #[inline(always)]
    unsafe fn scale(block: *const u8) -> f32 {
        let bits = unsafe { (block as *const u16).read_unaligned() };
        unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))) }
    }

    /// # Safety
    /// AVX-512F and F16C are available and the slices are as long as `rows_dot` asserts.
    #[target_feature(enable = "avx512f,f16c")]
    pub(super) unsafe fn rows_dot_avx512<const R: usize>(
        rows: [&[u8]; R],
        x: &[f32],
        sums: &[f32],
    ) -> [f32; R] {
        let q = rows.map(|r| r.as_ptr());
        let xp = x.as_ptr();
        let low = _mm_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); R];
        let mut offset = [0.0f32; R];
        for (b, &sum) in sums.iter().enumerate() {
            let xs = unsafe { xp.add(b * BLOCK) };
            let (x_lo, x_hi) = unsafe { (_mm512_loadu_ps(xs), _mm512_loadu_ps(xs.add(16))) };
            for r in 0..R {
                let block = unsafe { q[r].add(b * BLOCK_BYTES) };
                let d = unsafe { scale(block) };
                let codes = unsafe { _mm_loadu_si128(block.add(2) as *const __m128i) };
                let lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(codes, low)));
                let hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(
                    _mm_srli_epi16(codes, 4),
                    low,
                )));
                let dot = _mm512_fmadd_ps(hi, x_hi, _mm512_mul_ps(lo, x_lo));
                acc[r] = _mm512_fmadd_ps(dot, _mm512_set1_ps(d), acc[r]);
                offset[r] += d * sum;
            }
        }
        std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) - 8.0 * offset[r])
    }

    /// # Safety
    /// AVX2, FMA and F16C are available and the slices are as long as `rows_dot` asserts.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows_dot_avx2<const R: usize>(
        rows: [&[u8]; R],
        x: &[f32],
        sums: &[f32],
    ) -> [f32; R] {
        let q = rows.map(|r| r.as_ptr());
        let xp = x.as_ptr();
        let low = _mm_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut offset = [0.0f32; R];
        let widen = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
        for (b, &sum) in sums.iter().enumerate() {
            let xs = unsafe { xp.add(b * BLOCK) };
            let xv: [__m256; 4] =
                std::array::from_fn(|i| unsafe { _mm256_loadu_ps(xs.add(8 * i)) });
            for r in 0..R {
                let block = unsafe { q[r].add(b * BLOCK_BYTES) };
                let d = unsafe { scale(block) };
                let codes = unsafe { _mm_loadu_si128(block.add(2) as *const __m128i) };
                let lo = _mm_and_si128(codes, low);
                let hi = _mm_and_si128(_mm_srli_epi16(codes, 4), low);
                let mut dot = _mm256_mul_ps(widen(lo), xv[0]);
                dot = _mm256_fmadd_ps(widen(_mm_srli_si128(lo, 8)), xv[1], dot);
                dot = _mm256_fmadd_ps(widen(hi), xv[2], dot);
                dot = _mm256_fmadd_ps(widen(_mm_srli_si128(hi, 8)), xv[3], dot);
                acc[r] = _mm256_fmadd_ps(dot, _mm256_set1_ps(d), acc[r]);
                offset[r] += d * sum;
            }
        }
        std::array::from_fn(|r| {
            let a = acc[r];
            let half = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            let half = _mm_add_ps(half, _mm_movehl_ps(half, half));
            let one = _mm_add_ss(half, _mm_shuffle_ps(half, half, 1));
            _mm_cvtss_f32(one) - 8.0 * offset[r]
        })
    }
}

impl Op for BlockQ4Linear {
    fn name(&self) -> StaticName {
        "BlockQ4Linear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {}, Q4_0, {:?} kernel",
            self.k, self.n, self.kernel
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for BlockQ4Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(self.apply(&input)?.into_tvalue()))
    }
}

impl BlockQ4Linear {
    fn apply(&self, input: &Tensor) -> TractResult<Tensor> {
        let shape = input.shape();
        let k_start = shape.len().checked_sub(self.k_axes);
        ensure!(
            k_start.is_some_and(|at| shape[at..].iter().product::<usize>() == self.k),
            "BlockQ4Linear: input {shape:?} does not end in {} channels",
            self.k
        );
        let tokens = shape.iter().product::<usize>() / self.k;
        let out_shape = self.output_shape(shape);
        let x = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut tensor = Tensor::zero::<f32>(&out_shape)?;
        let mut view = tensor.try_as_plain_ram_mut()?;
        let output = view.as_slice_mut::<f32>()?;
        let base = Shared::new(output);
        if tokens >= PANEL_FROM {
            self.tokens(x, tokens, base);
        } else {
            for (t, x) in x.chunks_exact(self.k).enumerate() {
                // SAFETY: token `t`'s outputs are its own `n` values of `output`.
                self.token(x, unsafe { base.offset(t * self.n) });
            }
        }
        drop(view);
        Ok(tensor)
    }
}

impl TypedOp for BlockQ4Linear {
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
fn block_q4_for(model: &TypedModel, node: &TypedNode, kernel: Kernel) -> Option<BlockQ4Linear> {
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
    BlockQ4Linear::new(
        storage.value().clone(),
        n,
        k,
        kernel,
        contracted.len(),
        out_axes,
    )
    .ok()
}

/// Swaps [`BlockQ4Linear`] in for every Q4_0 product with a constant weight of a decluttered
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
    Ok(replaced)
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
        let mut dequantised = vec![0.0; n * k];
        for j in 0..n {
            let bytes = k / BLOCK * BLOCK_BYTES;
            let row = &storage.value().as_bytes()[j * bytes..][..bytes];
            widen_row(row, |c, v| dequantised[j * k + c] = v);
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

    #[test]
    fn every_kernel_gives_the_dequantised_product_for_one_token_and_many() {
        // 70 rows: a part task and a part panel; 5 tokens by blocks, 19 by panels
        let (n, k) = (70, 96);
        let (_, w) = q4_plan(n, k, 1);
        let blob = Q4_0.quant_f32(&noise(n * k, 1)).unwrap();
        for kernel in Kernel::available() {
            let op = BlockQ4Linear::plain(Arc::new(blob.clone()), n, k, kernel, 3).unwrap();
            for tokens in [1, 5, 19] {
                let x = noise(tokens * k, 7);
                let want = product(&x, &w, k);
                let got = op
                    .apply(&Tensor::from_shape(&[1, tokens, k], &x).unwrap())
                    .unwrap();
                let got = got.to_plain_array_view::<f32>().unwrap();
                assert_eq!(got.shape(), &[1, tokens, n]);
                for (g, e) in got.iter().zip(&want) {
                    assert!(
                        (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{kernel:?}, {tokens} tokens: {g} != {e}"
                    );
                }
            }
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
