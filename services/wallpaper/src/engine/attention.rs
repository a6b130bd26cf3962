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
use super::plan_rewrite::{on_tract_pool, swap_in};

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
/// error about 1e-6, tested), `2^n` put straight into the exponent bits. Below -87 it is 0.
#[inline]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts (Cody-Waite), so `n * LN_2_HI` is exact and r keeps its precision.
    const LN_2_HI: f32 = 0.693_359_4;
    const LN_2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer in the float unit itself: `round` is a libm call
    // on baseline x86-64 and would keep the loop scalar.
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let n = (x * LOG2_E + ROUNDER) - ROUNDER;
    let r = (x - n * LN_2_HI) - n * LN_2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// One head of one batch item; `out` is `[queries][dim]`.
///
/// Both products run on the convolution's tile kernel (one tap): eight queries at a time
/// against `kᵀ` laid out `[dim][keys]`, then their probabilities, laid out `[keys][8]`,
/// against `v` laid out `[keys][dim]`, both padded to whole tiles.
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
    let keys_padded = s.keys.div_ceil(NT) * NT;
    let dim_padded = s.dim.div_ceil(NT) * NT;
    let mut kt = vec![0.0f32; s.dim * keys_padded];
    let mut vp = vec![0.0f32; s.keys * dim_padded];
    for j in 0..s.keys {
        for (d, &x) in k[at(s.keys, j)..][..s.dim].iter().enumerate() {
            kt[d * keys_padded + j] = x;
        }
        vp[j * dim_padded..][..s.dim].copy_from_slice(&v[at(s.keys, j)..][..s.dim]);
    }
    let mut qt = vec![0.0f32; s.dim * MR];
    let mut scores = vec![0.0f32; MR * keys_padded];
    let mut pt = vec![0.0f32; s.keys * MR];
    let mut tile = [0.0f32; MR * NT];
    for i0 in (0..s.queries).step_by(MR) {
        let rows = MR.min(s.queries - i0);
        qt.fill(0.0);
        for r in 0..rows {
            for (d, &x) in q[at(s.queries, i0 + r)..][..s.dim].iter().enumerate() {
                qt[d * MR + r] = x;
            }
        }
        for j0 in (0..keys_padded).step_by(NT) {
            kernel.tile(&kt[j0..], keys_padded, &[0], &qt, &mut tile);
            for r in 0..MR {
                scores[r * keys_padded + j0..][..NT].copy_from_slice(&tile[r * NT..][..NT]);
            }
        }
        let mut norms = [0.0f32; MR];
        pt.fill(0.0);
        for (r, norm) in norms.iter_mut().enumerate().take(rows) {
            let row = &mut scores[r * keys_padded..][..s.keys];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for x in row.iter_mut() {
                *x = exp_nonpositive(*x - max);
            }
            *norm = 1.0 / row.iter().sum::<f32>();
            for (j, &p) in row.iter().enumerate() {
                pt[j * MR + r] = p;
            }
        }
        for d0 in (0..dim_padded).step_by(NT) {
            kernel.tile(&vp[d0..], dim_padded, &[0], &pt, &mut tile);
            let cols = NT.min(s.dim - d0);
            for (r, &norm) in norms.iter().enumerate().take(rows) {
                let dst = &mut out[(i0 + r) * s.dim + d0..][..cols];
                for (o, &x) in dst.iter_mut().zip(&tile[r * NT..][..cols]) {
                    *o = x * norm;
                }
            }
        }
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
        let mut out = vec![0.0f32; q.len()];
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
        let shape = [s.batch, s.queries, s.heads, s.dim];
        Ok(tvec!(Tensor::from_shape(&shape, &out)?.into_tvalue()))
    }
}

impl TypedOp for Attention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3 && inputs.iter().all(|f| f.rank() == 4));
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

/// The EinSum's (inputs, output) axis letters.
fn letters(op: &EinSum) -> Option<(Vec<char>, Vec<char>, Vec<char>)> {
    let expr = op.axes.to_string();
    let (inputs, out) = expr.split_once("->")?;
    let (a, b) = inputs.split_once(',')?;
    Some((chars(a), chars(b), chars(out)))
}

/// `q · kᵀ`: `ambk,anbk->abmn` under any letters.
fn is_scores(op: &EinSum) -> bool {
    let Some((x, y, out)) = letters(op) else {
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
    let Some((x, y, out)) = letters(op) else {
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
    use crate::engine::plan_rewrite::assert_agrees_here_and_on_pool;

    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::engine::rng::NoiseRng::new(seed);
        (0..len).map(|_| rng.normal() as f32).collect()
    }

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
    fn a_plan_with_the_op_gives_what_tract_gives() {
        // Self-attention (queries = keys) and cross-attention (fewer keys), two heads.
        for (queries, keys) in [(37, 37), (37, 5)] {
            let (batch, heads, dim) = (2, 3, 8);
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
            let what = format!("{queries}x{keys}");
            assert_agrees_here_and_on_pool(&ours, input, &want[0], &what);
        }
    }
}
