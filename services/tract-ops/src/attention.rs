//! Scaled dot-product attention in one op: `softmax(q · kᵀ) · v` per batch item and head.
//!
//! A diffusers attention block reaches tract as EinSum `ambk,anbk->abmn` → Softmax →
//! EinSum `abmk,akbn->ambn` (the scale already multiplied into q and k). tract packs both
//! operands of both products at run time and moves the score tensor's axes between them; on
//! our UNet's 160-token, 24-wide heads that ran at a few GFLOP/s, the cost of a convolution
//! ten times its size (`onnx/bench/README.md`). Here each head's keys are transposed once and
//! each query's scores, softmax and weighted sum of values run as loops over contiguous rows
//! that vectorise.
//!
//! [`replace_attention`] swaps the three nodes for one in a decluttered plan;
//! `CABIN_TRACT_ATTENTION=1` keeps tract's own.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

use super::conv3x3::{Kernel, MR, NT};
use super::plan_rewrite::{einsum_letters, on_tract_pool, swap_in};

/// Sizes: `batch` items, `heads`, `queries` and `keys` tokens, `dim` values per head. All
/// tensors are `[batch, tokens, heads, dim]`.
#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: usize,
    queries: usize,
    keys: usize,
    heads: usize,
    dim: usize,
}

/// `e^x` for `x <= 0` (a softmax's shifted scores), branch-free so a loop over it vectorises:
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2`, `e^r` by its degree-6 Taylor polynomial (relative
/// error about 1e-6, tested), `2^n` put straight into the exponent bits. Below -87 it is
/// e^-87.
#[inline]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts (Cody-Waite), so `n * LN_2_HI` is exact and r keeps its precision.
    const LN_2_HI: f32 = 0.693_359_4;
    const LN_2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer in the float unit itself: `round` is a libm call
    // on baseline x86-64 and would keep the loop scalar.
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let t = x * LOG2_E + ROUNDER;
    let n = t - ROUNDER;
    let r = (x - n * LN_2_HI) - n * LN_2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `t`'s low mantissa bits hold `n` itself; a float-to-int cast would not vectorise.
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUNDER.to_bits() - 127) << 23);
    p * scale
}

/// One head of one batch item; `out` is `[queries][dim]`.
///
/// Both products run on the convolution's tile kernel (one tap) with the queries along its
/// vector axis, so the long axes are the vectorised and the accumulated ones even for narrow
/// heads: for each run of `NT` queries, the scores come out transposed, `[keys][NT]`, eight
/// keys per tile against `qᵀ` laid out `[dim][queries]`; the softmax then runs down each
/// column, elementwise across rows; and `vᵀ`, eight dims per tile, sums over every key against
/// those rows.
fn head(
    kernel: Kernel,
    s: Shape,
    (a, b): (usize, usize),
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
) {
    let at = |tokens: usize, t: usize| ((a * tokens + t) * s.heads + b) * s.dim;
    let queries_padded = s.queries.div_ceil(NT) * NT;
    let (key_blocks, dim_blocks) = (s.keys.div_ceil(MR), s.dim.div_ceil(MR));
    // qᵀ `[dim][queries_padded]`; k `[key block][dim][MR]`; v `[dim block][keys][MR]`.
    let mut qt = vec![0.0f32; s.dim * queries_padded];
    for i in 0..s.queries {
        for (d, &x) in q[at(s.queries, i)..][..s.dim].iter().enumerate() {
            qt[d * queries_padded + i] = x;
        }
    }
    let mut kp = vec![0.0f32; key_blocks * s.dim * MR];
    let mut vp = vec![0.0f32; dim_blocks * s.keys * MR];
    for j in 0..s.keys {
        let (block, lane) = (j / MR, j % MR);
        for (d, &x) in k[at(s.keys, j)..][..s.dim].iter().enumerate() {
            kp[(block * s.dim + d) * MR + lane] = x;
        }
        for (d, &x) in v[at(s.keys, j)..][..s.dim].iter().enumerate() {
            vp[((d / MR) * s.keys + j) * MR + d % MR] = x;
        }
    }
    let mut scores = vec![0.0f32; key_blocks * MR * NT];
    let mut tile = [0.0f32; MR * NT];
    for i0 in (0..queries_padded).step_by(NT) {
        for (block, dst) in scores.chunks_exact_mut(MR * NT).enumerate() {
            let keys = &kp[block * s.dim * MR..][..s.dim * MR];
            kernel.tile(&qt[i0..], queries_padded, &[0], keys, dst);
        }
        let norms = softmax_down_columns(kernel, &mut scores[..s.keys * NT]);
        let rows = NT.min(s.queries - i0);
        for block in 0..dim_blocks {
            let values = &vp[block * s.keys * MR..][..s.keys * MR];
            kernel.tile(&scores, NT, &[0], values, &mut tile);
            for m in 0..MR.min(s.dim - block * MR) {
                let d = block * MR + m;
                for (j, (&x, &norm)) in tile[m * NT..][..rows].iter().zip(&norms).enumerate() {
                    out[(i0 + j) * s.dim + d] = x * norm;
                }
            }
        }
    }
}

/// Turns `scores`, `[keys][NT]`, into each column's unnormalised softmax in place and returns
/// one over each column's sum.
fn softmax_down_columns(kernel: Kernel, scores: &mut [f32]) -> [f32; NT] {
    #[cfg(target_arch = "x86_64")]
    match kernel {
        // SAFETY: `Kernel::Avx512` is only chosen where AVX-512F was detected.
        Kernel::Avx512 => return unsafe { x86::softmax_down_columns_avx512(scores) },
        // SAFETY: `Kernel::Avx2` is only chosen where AVX2 and FMA were detected.
        Kernel::Avx2 => return unsafe { x86::softmax_down_columns_avx2(scores) },
        Kernel::Portable => {}
    }
    let _ = kernel;
    softmax_down_columns_body(scores)
}

/// The body, inlined into a function per instruction set so the column loops vectorise.
#[inline(always)]
fn softmax_down_columns_body(scores: &mut [f32]) -> [f32; NT] {
    let mut max = [f32::NEG_INFINITY; NT];
    for row in scores.chunks_exact(NT) {
        for (m, &x) in max.iter_mut().zip(row) {
            *m = m.max(x);
        }
    }
    let mut sum = [0.0f32; NT];
    for row in scores.chunks_exact_mut(NT) {
        for ((x, &m), s) in row.iter_mut().zip(&max).zip(sum.iter_mut()) {
            *x = exp_nonpositive(*x - m);
            *s += *x;
        }
    }
    sum.map(|s| 1.0 / s)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::NT;

    /// # Safety
    /// AVX-512F is available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn softmax_down_columns_avx512(scores: &mut [f32]) -> [f32; NT] {
        super::softmax_down_columns_body(scores)
    }

    /// # Safety
    /// AVX2 and FMA are available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_down_columns_avx2(scores: &mut [f32]) -> [f32; NT] {
        super::softmax_down_columns_body(scores)
    }
}

/// The tract op: inputs q `[batch, queries, heads, dim]`, k and v `[batch, keys, heads, dim]`;
/// output `[batch, queries, heads, dim]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attention {
    kernel: Kernel,
}

impl Op for Attention {
    fn name(&self) -> StaticName {
        "Attention".into()
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for Attention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (q, k, v) = args_3!(inputs);
        let (qs, ks) = (q.shape(), k.shape());
        ensure!(
            qs.len() == 4
                && ks.len() == 4
                && v.shape() == ks
                && qs[0] == ks[0]
                && qs[2] == ks[2]
                && qs[3] == ks[3],
            "Attention: q {qs:?}, k {ks:?}, v {:?} do not fit",
            v.shape()
        );
        let s = Shape {
            batch: qs[0],
            queries: qs[1],
            keys: ks[1],
            heads: qs[2],
            dim: qs[3],
        };
        let (q, k, v) = (
            q.try_as_plain_ram()?.as_slice::<f32>()?,
            k.try_as_plain_ram()?.as_slice::<f32>()?,
            v.try_as_plain_ram()?.as_slice::<f32>()?,
        );
        let shape = [s.batch, s.queries, s.heads, s.dim];
        let mut tensor = Tensor::zero::<f32>(&shape)?;
        let mut view = tensor.try_as_plain_ram_mut()?;
        let out = view.as_slice_mut::<f32>()?;
        if s.keys > 0 && s.dim > 0 {
            let pairs: Vec<(usize, usize)> = (0..s.batch)
                .flat_map(|a| (0..s.heads).map(move |b| (a, b)))
                .collect();
            let mut per_head = vec![vec![0.0f32; s.queries * s.dim]; pairs.len()];
            on_tract_pool(
                pairs.iter().zip(per_head.iter_mut()).collect(),
                |(&pair, o): (&(usize, usize), &mut Vec<f32>)| {
                    head(self.kernel, s, pair, q, k, v, o)
                },
            );
            for (&(a, b), o) in pairs.iter().zip(&per_head) {
                for (i, row) in o.chunks_exact(s.dim).enumerate() {
                    let at = ((a * s.queries + i) * s.heads + b) * s.dim;
                    out[at..at + s.dim].copy_from_slice(row);
                }
            }
        }
        Ok(tvec!(tensor.into_tvalue()))
    }
}

impl TypedOp for Attention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3 && inputs.iter().all(|f| f.rank() == 4));
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// `q · kᵀ`: `ambk,anbk->abmn` under any letters.
fn is_scores(op: &EinSum) -> bool {
    let Some((x, y, out)) = einsum_letters(op) else {
        return false;
    };
    x.len() == 4
        && y.len() == 4
        && out.len() == 4
        && y[0] == x[0]
        && y[2] == x[2]
        && y[3] == x[3]
        && !x.contains(&y[1])
        && out == [x[0], x[2], x[1], y[1]]
}

/// `p · v`: `abmk,akbn->ambn` under any letters.
fn is_weighted_sum(op: &EinSum) -> bool {
    let Some((x, y, out)) = einsum_letters(op) else {
        return false;
    };
    x.len() == 4
        && y.len() == 4
        && out.len() == 4
        && y[0] == x[0]
        && y[1] == x[3]
        && y[2] == x[1]
        && !x.contains(&y[3])
        && out == [x[0], x[2], x[1], y[3]]
}

/// q, k and v when `node` is the `p · v` end of an attention chain whose scores and
/// probabilities feed nothing else.
fn chain(model: &TypedModel, node: &TypedNode) -> Option<[OutletId; 3]> {
    let f32_plain = |op: &EinSum| op.q_params.is_none() && op.operating_dt == f32::datum_type();
    let weighted = node.op_as::<EinSum>()?;
    if !f32_plain(weighted) || !is_weighted_sum(weighted) || node.inputs.len() != 2 {
        return None;
    }
    let probs = model.node(node.inputs[0].node);
    let softmax = probs.op_as::<Softmax>()?;
    let rank = 4;
    if softmax.kind != SoftmaxKind::Softmax
        || softmax.quant_output_dt.is_some()
        || softmax.axes.as_slice() != [rank - 1]
        || probs.outputs[0].successors.len() != 1
    {
        return None;
    }
    let scores = model.node(probs.inputs[0].node);
    let product = scores.op_as::<EinSum>()?;
    if !f32_plain(product)
        || !is_scores(product)
        || scores.inputs.len() != 2
        || scores.outputs[0].successors.len() != 1
    {
        return None;
    }
    let [q, k, v] = [scores.inputs[0], scores.inputs[1], node.inputs[1]];
    let facts: Vec<&TypedFact> = [q, k, v]
        .iter()
        .map(|o| model.outlet_fact(*o).ok())
        .collect::<Option<_>>()?;
    let concrete = facts.iter().all(|f| {
        f.datum_type == f32::datum_type() && f.rank() == 4 && f.shape.as_concrete().is_some()
    });
    (concrete && facts[1].shape == facts[2].shape).then_some([q, k, v])
}

/// Replaces each EinSum → Softmax → EinSum attention chain of a decluttered `model` with an
/// [`Attention`]; returns how many.
pub(crate) fn replace_attention(model: &mut TypedModel) -> TractResult<usize> {
    if std::env::var_os("CABIN_TRACT_ATTENTION").is_some_and(|v| v == "1") {
        return Ok(0);
    }
    let kernel = Kernel::best();
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(inputs) = chain(model, node) else {
            continue;
        };
        swap_in(model, id, Attention { kernel }, &inputs)?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan_rewrite::{assert_agrees_here_and_on_pool, noise};

    #[test]
    fn the_exponential_is_accurate_where_a_softmax_uses_it() {
        for i in 0..=100_000 {
            let x = -(i as f32) * 1e-3;
            let (got, want) = (exp_nonpositive(x), f64::from(x).exp());
            assert!(
                (f64::from(got) - want).abs() <= 1e-6 * want + 1e-37,
                "e^{x}: {got} != {want}"
            );
        }
        assert_eq!(exp_nonpositive(-1000.0), exp_nonpositive(-87.0));
        assert!(exp_nonpositive(-1000.0) < 2e-38);
    }

    #[test]
    fn every_kernel_takes_the_same_softmax() {
        let keys = 61;
        let scores: Vec<f32> = noise(keys * NT, 7).iter().map(|v| v * 8.0).collect();
        let mut want = scores.clone();
        let want_norms = softmax_down_columns_body(&mut want);
        for kernel in Kernel::available() {
            let mut got = scores.clone();
            let norms = softmax_down_columns(kernel, &mut got);
            for (g, w) in got.iter().zip(&want).chain(norms.iter().zip(&want_norms)) {
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{kernel:?}: {g} != {w}"
                );
            }
        }
    }

    #[test]
    fn a_plan_with_the_op_gives_what_tract_gives() {
        // Self-attention (queries = keys) and cross-attention (fewer keys); runs of queries,
        // keys and dims off the kernel's block sizes.
        for (queries, keys, dim) in [(37, 37, 8), (37, 5, 12), (100, 61, 24), (2, 3, 5)] {
            let (batch, heads) = (2, 3);
            let build = || -> TractResult<TypedModel> {
                let mut model = TypedModel::default();
                let q = model.add_source("q", f32::fact([batch, queries, heads, dim]))?;
                let k = model.add_source("k", f32::fact([batch, keys, heads, dim]))?;
                let v = model.add_source("v", f32::fact([batch, keys, heads, dim]))?;
                let scores = EinSum::new("ambk,anbk->abmn".parse()?, f32::datum_type());
                let s = model.wire_node("scores", scores, &[q, k])?[0];
                let softmax = Softmax::new(tvec![3], None, SoftmaxKind::Softmax);
                let p = model.wire_node("softmax", softmax, &[s])?[0];
                let weighted = EinSum::new("abmk,akbn->ambn".parse()?, f32::datum_type());
                let y = model.wire_node("weighted", weighted, &[p, v])?[0];
                model.select_output_outlets(&[y])?;
                Ok(model)
            };
            let input = || {
                let t = |n: usize, len, seed| {
                    Tensor::from_shape(&[batch, n, heads, dim], &noise(len, seed))
                        .unwrap()
                        .into_tvalue()
                };
                tvec![
                    t(queries, batch * queries * heads * dim, 1),
                    t(keys, batch * keys * heads * dim, 2),
                    t(keys, batch * keys * heads * dim, 3),
                ]
            };
            let want = build().unwrap().into_optimized().unwrap();
            let want = want.into_runnable().unwrap().run(input()).unwrap();
            let mut ours = build().unwrap().into_decluttered().unwrap();
            assert_eq!(replace_attention(&mut ours).unwrap(), 1);
            let ours = ours.into_optimized().unwrap();
            assert!(ours.nodes().iter().all(|n| n.op_as::<Softmax>().is_none()));
            // On the calling thread, and with the heads spread over a pool.
            let ours = ours.into_runnable().unwrap();
            let what = format!("{queries}x{keys}x{dim}");
            assert_agrees_here_and_on_pool(&ours, input, &want[0], &what);
        }
    }
}
