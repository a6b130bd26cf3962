//! Attention with an additive mask, over a language model's KV cache, in one op:
//! `softmax(q · kᵀ + bias) · v`, grouped-query heads included.
//!
//! `build_lm.py`'s graph reaches tract (decluttered) as EinSum `abcmk,abnk->abcmn` (the `c`
//! query heads that share each of the `b` key/value heads against the cache) → Add(bias, the
//! causal mask) → Softmax over the keys → EinSum `abcmk,abkn->abcmn`. tract runs that as two
//! matrix products that pack their operands on every call, plus the add and the softmax: on
//! SmolLM2-135M that was 6 of a decode step's ~45 ops a layer and 12% of its time, for one
//! query row per head. Here, per head, each query's scores, softmax and weighted sum of values
//! are loops over contiguous rows of the cache; a prompt's many queries go through
//! `ndarray`'s matrix product instead.
//!
//! [`replace_masked_attention`] swaps the four nodes for one in a decluttered plan;
//! `CABIN_TRACT_MASKED_ATTENTION=1` keeps tract's own.

use tract_onnx::prelude::tract_ndarray::linalg::general_mat_mul;
use tract_onnx::prelude::tract_ndarray::{ArrayView2, ArrayViewMut2};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

use super::attention::exp_nonpositive;
use super::linear::Shared;
use super::plan_rewrite::{einsum_letters, on_tract_pool, swap_in};

/// From this many queries on, a head's two products go through a matrix product.
const PRODUCT_FROM: usize = 8;

/// Inputs `q [.., m, d]`, `k [.., n, d]`, `bias` (broadcast to `[.., m, n]`), `v [.., n, e]`;
/// output `[.., m, e]`. The leading axes are the queries'; the keys and values have some of
/// them, in the same order, and broadcast over the rest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MaskedAttention {
    /// For each leading axis of the queries, the keys' and values' axis that is the same, if any.
    kv_axes: TVec<Option<usize>>,
}

impl Op for MaskedAttention {
    fn name(&self) -> StaticName {
        "MaskedAttention".into()
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> TVec<usize> {
    let mut strides: TVec<usize> = tvec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Sizes of one head and where its operands start.
#[derive(Debug, Clone, Copy)]
struct Head {
    m: usize,
    n: usize,
    d: usize,
    e: usize,
    q: usize,
    k: usize,
    v: usize,
    bias: usize,
    /// The bias's steps along the queries and the keys (0 where it broadcasts).
    bias_m: usize,
    bias_n: usize,
    out: usize,
}

impl EvalOp for MaskedAttention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (q, k, bias, v) = args_4!(inputs);
        let (qs, ks, bs, vs) = (q.shape(), k.shape(), bias.shape(), v.shape());
        let (r, rk) = (qs.len(), ks.len());
        ensure!(
            r >= 2
                && r == self.kv_axes.len() + 2
                && rk >= 2
                && vs.len() == rk
                && bs.len() == r
                && ks[rk - 1] == qs[r - 1]
                && vs[..rk - 1] == ks[..rk - 1],
            "MaskedAttention: q {qs:?}, k {ks:?}, bias {bs:?}, v {vs:?} do not fit"
        );
        let (m, d, n, e) = (qs[r - 2], qs[r - 1], ks[rk - 2], vs[rk - 1]);
        let lead = &qs[..r - 2];
        let target: TVec<usize> = lead.iter().copied().chain([m, n]).collect();
        ensure!(
            bs.iter().zip(&target).all(|(b, t)| *b == 1 || b == t)
                && self
                    .kv_axes
                    .iter()
                    .zip(lead)
                    .all(|(axis, size)| axis.is_none_or(|a| a < rk - 2 && ks[a] == *size))
                && (0..rk - 2).all(|a| ks[a] == 1 || self.kv_axes.contains(&Some(a))),
            "MaskedAttention: q {qs:?}, k {ks:?}, bias {bs:?} do not broadcast"
        );
        let (k_strides, b_strides) = (strides(ks), strides(bs));
        let v_strides = strides(vs);
        let step = |i: usize| if bs[i] == 1 { 0 } else { b_strides[i] };
        let heads: usize = lead.iter().product();
        let lead_strides = strides(lead);
        let head_at = |h: usize| {
            let (mut k_at, mut v_at, mut bias) = (0, 0, 0);
            for (i, axis) in self.kv_axes.iter().enumerate() {
                let index = h / lead_strides[i] % lead[i];
                if let &Some(a) = axis {
                    k_at += index * k_strides[a];
                    v_at += index * v_strides[a];
                }
                bias += index * step(i);
            }
            Head {
                m,
                n,
                d,
                e,
                q: h * m * d,
                k: k_at,
                v: v_at,
                bias,
                bias_m: step(r - 2),
                bias_n: step(r - 1),
                out: h * m * e,
            }
        };
        let out_shape: TVec<usize> = lead.iter().copied().chain([m, e]).collect();
        let mut tensor = Tensor::zero::<f32>(&out_shape)?;
        {
            let (q, k, bias, v) = (
                q.try_as_plain_ram()?,
                k.try_as_plain_ram()?,
                bias.try_as_plain_ram()?,
                v.try_as_plain_ram()?,
            );
            let (q, k, bias, v) = (
                q.as_slice::<f32>()?,
                k.as_slice::<f32>()?,
                bias.as_slice::<f32>()?,
                v.as_slice::<f32>()?,
            );
            let mut view = tensor.try_as_plain_ram_mut()?;
            let out = Shared::new(view.as_slice_mut::<f32>()?);
            let run = |h: usize| {
                let at = head_at(h);
                // SAFETY: head `h` alone writes its `m * e` outputs.
                let dst = unsafe { out.run(at.out, m * e) };
                head(at, q, k, bias, v, dst);
            };
            if n > 0 && m * n * d >= 1 << 16 {
                on_tract_pool((0..heads).collect(), run);
            } else if n > 0 {
                (0..heads).for_each(run);
            }
        }
        Ok(tvec!(tensor.into_tvalue()))
    }
}

/// `Σ a[i]·b[i]` in eight running sums, which vectorise.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// One row of scores (with its bias already added) into probabilities, in place: a masked
/// key (`-inf`) gets exactly 0; a row with every key masked, all zeros.
fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sum = 0.0;
    for s in row.iter_mut() {
        *s = if *s == f32::NEG_INFINITY {
            0.0
        } else {
            exp_nonpositive(*s - max)
        };
        sum += *s;
    }
    let inverse = 1.0 / sum;
    row.iter_mut().for_each(|p| *p *= inverse);
}

/// One head: `out [m][e]` from its queries, keys, bias and values.
fn head(h: Head, q: &[f32], k: &[f32], bias: &[f32], v: &[f32], out: &mut [f32]) {
    let (q, k, v) = (
        &q[h.q..][..h.m * h.d],
        &k[h.k..][..h.n * h.d],
        &v[h.v..][..h.n * h.e],
    );
    let bias_at = |i: usize, j: usize| bias[h.bias + i * h.bias_m + j * h.bias_n];
    if h.m >= PRODUCT_FROM {
        let mut scores = vec![0f32; h.m * h.n];
        let shapes = (
            ArrayView2::from_shape((h.m, h.d), q),
            ArrayView2::from_shape((h.n, h.d), k),
            ArrayView2::from_shape((h.n, h.e), v),
        );
        let (Ok(qv), Ok(kv), Ok(vv)) = shapes else {
            unreachable!("the slices are cut to these shapes above")
        };
        {
            let mut sv =
                ArrayViewMut2::from_shape((h.m, h.n), &mut scores[..]).expect("scores are m x n");
            general_mat_mul(1.0, &qv, &kv.t(), 0.0, &mut sv);
        }
        for (i, row) in scores.chunks_exact_mut(h.n).enumerate() {
            for (j, s) in row.iter_mut().enumerate() {
                *s += bias_at(i, j);
            }
            softmax(row);
        }
        let probs = ArrayView2::from_shape((h.m, h.n), &scores[..]).expect("m x n");
        let mut ov = ArrayViewMut2::from_shape((h.m, h.e), out).expect("out is m x e");
        general_mat_mul(1.0, &probs, &vv, 0.0, &mut ov);
        return;
    }
    let mut row = vec![0f32; h.n];
    for (i, (query, out)) in q
        .chunks_exact(h.d)
        .zip(out.chunks_exact_mut(h.e))
        .enumerate()
    {
        for (j, (s, key)) in row.iter_mut().zip(k.chunks_exact(h.d)).enumerate() {
            *s = dot(query, key) + bias_at(i, j);
        }
        softmax(&mut row);
        out.fill(0.0);
        for (&p, value) in row.iter().zip(v.chunks_exact(h.e)) {
            if p != 0.0 {
                out.iter_mut().zip(value).for_each(|(o, x)| *o += p * x);
            }
        }
    }
}

impl TypedOp for MaskedAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 4 && inputs[0].rank() >= 2 && inputs[3].rank() >= 2);
        let q = &inputs[0].shape;
        let v = &inputs[3].shape;
        let mut shape: TVec<TDim> = q.iter().take(q.len() - 1).cloned().collect();
        shape.push(v[v.len() - 1].clone());
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

/// For the scores EinSum's letters (`q`, `k`, out): the keys' axis for each leading axis of
/// the queries, when it is `[.., m, d] x [.., n, d] -> [.., m, n]` with the keys' leading
/// letters a subsequence of the queries'.
fn scores_axes(q: &[char], k: &[char], out: &[char]) -> Option<TVec<Option<usize>>> {
    let (r, rk) = (q.len(), k.len());
    if r < 2 || rk < 2 || out.len() != r {
        return None;
    }
    let (m, d, n) = (q[r - 2], q[r - 1], k[rk - 2]);
    if k[rk - 1] != d || q.contains(&n) || k.contains(&m) || out[..r - 2] != q[..r - 2] {
        return None;
    }
    if out[r - 2] != m || out[r - 1] != n {
        return None;
    }
    lead_axes(&q[..r - 2], &k[..rk - 2])
}

/// For each of `lead`'s letters, where it is in `sub`, if `sub` is a subsequence of `lead`.
fn lead_axes(lead: &[char], sub: &[char]) -> Option<TVec<Option<usize>>> {
    let axes: TVec<Option<usize>> = lead
        .iter()
        .map(|c| sub.iter().position(|s| s == c))
        .collect();
    let found: Vec<usize> = axes.iter().flatten().copied().collect();
    (found.len() == sub.len() && found.windows(2).all(|w| w[0] < w[1])).then_some(axes)
}

/// The same for the weighted sum's letters (`p`, `v`, out): `[.., m, n] x [.., n, e] -> [.., m, e]`.
fn weighted_axes(p: &[char], v: &[char], out: &[char]) -> Option<TVec<Option<usize>>> {
    let (r, rv) = (p.len(), v.len());
    if r < 2 || rv < 2 || out.len() != r {
        return None;
    }
    let (n, e) = (p[r - 1], v[rv - 1]);
    if v[rv - 2] != n || p.contains(&e) || out[..r - 1] != p[..r - 1] || out[r - 1] != e {
        return None;
    }
    lead_axes(&p[..r - 2], &v[..rv - 2])
}

/// q, k, bias and v, and the op, when `node` is the `p · v` end of a masked attention chain
/// whose scores, masked scores and probabilities feed nothing else.
fn chain(model: &TypedModel, node: &TypedNode) -> Option<([OutletId; 4], MaskedAttention)> {
    let f32_plain = |op: &EinSum| op.q_params.is_none() && op.operating_dt == f32::datum_type();
    let only_use = |n: &TypedNode| n.outputs.len() == 1 && n.outputs[0].successors.len() == 1;
    let weighted = node.op_as::<EinSum>()?;
    if !f32_plain(weighted) || node.inputs.len() != 2 {
        return None;
    }
    let (p, v, out) = einsum_letters(weighted)?;
    let v_axes = weighted_axes(&p, &v, &out)?;

    let probs = model.node(node.inputs[0].node);
    let softmax = probs.op_as::<Softmax>()?;
    let rank = p.len();
    if softmax.kind != SoftmaxKind::Softmax
        || softmax.quant_output_dt.is_some()
        || softmax.axes.as_slice() != [rank - 1]
        || !only_use(probs)
    {
        return None;
    }
    let masked = model.node(probs.inputs[0].node);
    let add = masked.op_as::<TypedBinOp>()?;
    if add.0.name() != "Add" || masked.inputs.len() != 2 || !only_use(masked) {
        return None;
    }
    // the scores on either side of the add, the bias on the other
    let (scores, bias) = (0..2).find_map(|s| {
        let scores = model.node(masked.inputs[s].node);
        (scores.op_is::<EinSum>() && only_use(scores)).then_some((scores, masked.inputs[1 - s]))
    })?;
    let product = scores.op_as::<EinSum>()?;
    if !f32_plain(product) || scores.inputs.len() != 2 {
        return None;
    }
    let (q, k, s_out) = einsum_letters(product)?;
    let k_axes = scores_axes(&q, &k, &s_out)?;
    if k_axes != v_axes || s_out.len() != rank {
        return None;
    }
    let inputs = [scores.inputs[0], scores.inputs[1], bias, node.inputs[1]];
    let facts: Vec<&TypedFact> = inputs
        .iter()
        .map(|o| model.outlet_fact(*o).ok())
        .collect::<Option<_>>()?;
    let f32s = facts.iter().all(|f| f.datum_type == f32::datum_type());
    if !f32s || facts[2].rank() != rank || facts[1].rank() != facts[3].rank() {
        return None;
    }
    Some((inputs, MaskedAttention { kv_axes: k_axes }))
}

/// Replaces each EinSum → Add → Softmax → EinSum chain of a decluttered `model` with a
/// [`MaskedAttention`]; returns how many.
pub(crate) fn replace_masked_attention(model: &mut TypedModel) -> TractResult<usize> {
    if std::env::var_os("CABIN_TRACT_MASKED_ATTENTION").is_some_and(|v| v == "1") {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in model.eval_order()? {
        let Some((inputs, op)) = chain(model, model.node(id)) else {
            continue;
        };
        swap_in(model, id, op, &inputs)?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan_rewrite::{assert_agrees_here_and_on_pool, noise};
    use tract_onnx::tract_core::ops::math;

    /// build_lm.py's attention: `kv` heads of `group` queries each, `queries` new tokens
    /// against `keys` cached ones, the causal mask as a `[1, 1, 1, queries, keys]` input.
    /// Token counts symbolic, as in the model's one plan for prompts and decode steps.
    fn plan(kv: usize, group: usize, dim: usize) -> TypedModel {
        let mut model = TypedModel::default();
        let s = TDim::from(model.symbols.sym("S"));
        let t = TDim::from(model.symbols.sym("T"));
        let (one, kv, group, dim) = (1.to_dim(), kv.to_dim(), group.to_dim(), dim.to_dim());
        let fact =
            |dims: &[&TDim]| f32::fact(dims.iter().map(|d| (*d).clone()).collect::<TVec<_>>());
        let q = model
            .add_source("q", fact(&[&one, &kv, &group, &s, &dim]))
            .unwrap();
        let k = model.add_source("k", fact(&[&one, &kv, &t, &dim])).unwrap();
        let bias = model
            .add_source("bias", fact(&[&one, &one, &one, &s, &t]))
            .unwrap();
        let v = model.add_source("v", fact(&[&one, &kv, &t, &dim])).unwrap();
        let scores = EinSum::new("abcmk,abnk->abcmn".parse().unwrap(), f32::datum_type());
        let s = model.wire_node("scores", scores, &[q, k]).unwrap()[0];
        let masked = model.wire_node("masked", math::add(), &[s, bias]).unwrap()[0];
        let softmax = Softmax::new(tvec![4], None, SoftmaxKind::Softmax);
        let p = model.wire_node("softmax", softmax, &[masked]).unwrap()[0];
        let weighted = EinSum::new("abcmk,abkn->abcmn".parse().unwrap(), f32::datum_type());
        let y = model.wire_node("weighted", weighted, &[p, v]).unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        model
    }

    #[test]
    fn a_plan_with_the_op_gives_what_tract_gives() {
        // decode (one query), a short prompt and a long one (the matrix product), over a cache
        for (queries, past) in [(1, 40), (1, 0), (5, 17), (19, 0), (33, 9)] {
            let (kv, group, dim) = (3, 3, 16);
            let keys = past + queries;
            let input = || {
                // the causal mask: query i sees the cache and new tokens up to itself
                let mut bias = vec![0f32; queries * keys];
                for i in 0..queries {
                    for j in past + i + 1..keys {
                        bias[i * keys + j] = f32::NEG_INFINITY;
                    }
                }
                let t = |shape: &[usize], values: Vec<f32>| {
                    Tensor::from_shape(shape, &values).unwrap().into_tvalue()
                };
                tvec![
                    t(
                        &[1, kv, group, queries, dim],
                        noise(kv * group * queries * dim, 1)
                    ),
                    t(&[1, kv, keys, dim], noise(kv * keys * dim, 2)),
                    t(&[1, 1, 1, queries, keys], bias),
                    t(&[1, kv, keys, dim], noise(kv * keys * dim, 3)),
                ]
            };
            let build = || plan(kv, group, dim);
            let want = build().into_optimized().unwrap();
            let want = want.into_runnable().unwrap().run(input()).unwrap();
            let mut ours = build().into_decluttered().unwrap();
            assert_eq!(replace_masked_attention(&mut ours).unwrap(), 1);
            let ours = ours.into_optimized().unwrap();
            assert!(ours.nodes().iter().all(|n| n.op_as::<Softmax>().is_none()));
            let ours = ours.into_runnable().unwrap();
            let what = format!("{queries} queries, {keys} keys");
            assert_agrees_here_and_on_pool(&ours, input, &want[0], &what);
        }
    }

    #[test]
    fn attention_without_a_mask_is_left_alone() {
        let mut model = TypedModel::default();
        let q = model.add_source("q", f32::fact([1, 2, 4, 8])).unwrap();
        let k = model.add_source("k", f32::fact([1, 2, 6, 8])).unwrap();
        let v = model.add_source("v", f32::fact([1, 2, 6, 8])).unwrap();
        let scores = EinSum::new("abmk,abnk->abmn".parse().unwrap(), f32::datum_type());
        let s = model.wire_node("scores", scores, &[q, k]).unwrap()[0];
        let softmax = Softmax::new(tvec![3], None, SoftmaxKind::Softmax);
        let p = model.wire_node("softmax", softmax, &[s]).unwrap()[0];
        let weighted = EinSum::new("abmk,abkn->abmn".parse().unwrap(), f32::datum_type());
        let y = model.wire_node("weighted", weighted, &[p, v]).unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        let mut model = model.into_decluttered().unwrap();
        assert_eq!(replace_masked_attention(&mut model).unwrap(), 0);
    }

    #[test]
    fn a_row_with_every_key_masked_gives_zeros_not_nan() {
        let mut row = [f32::NEG_INFINITY; 5];
        softmax(&mut row);
        assert_eq!(row, [0.0; 5]);
        let mut row = [0.0, f32::NEG_INFINITY, 0.0];
        softmax(&mut row);
        assert_eq!(row, [0.5, 0.0, 0.5]);
    }
}
