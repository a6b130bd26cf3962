//! The statistics half of a group (or instance) norm in one op: each row of the last axis
//! becomes `(x - mean) / sqrt(mean((x - mean)^2) + eps)`.
//!
//! ONNX exports of `GroupNorm` reach tract as Reshape → InstanceNormalization → Reshape → Mul →
//! Add, and tract decomposes the instance norm into Reduce<Sum> → Mul → Sub → RmsNorm. Its
//! Reduce walks the row element by element, which made the norms of our UNet and decoder cost
//! as much as some of their convolutions (`onnx/bench/README.md`). Here a row is read twice
//! and written once, in loops that vectorise; the affine Mul/Add after it stays as it was.
//!
//! [`replace_centered_norms`] swaps it in for the Reduce → Mul → Sub → RmsNorm chain of a
//! decluttered plan; `CABIN_TRACT_NORM=1` keeps tract's own.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm};

use super::plan_rewrite::swap_in;

/// Sum of a row in 16 independent lanes: vectorises, and keeps the rounding error of a long
/// row (a decoder's 128x320 planes) well below f32's resolution of the result.
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; 16];
    let chunks = row.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + f64::from(tail)
}

fn normalise_row(row: &mut [f32], eps: f32) {
    let n = row.len() as f64;
    let mean = (lane_sum(row, |v| v) / n) as f32;
    let variance = (lane_sum(row, |v| (v - mean) * (v - mean)) / n) as f32;
    let scale = 1.0 / (variance + eps).sqrt();
    for v in row.iter_mut() {
        *v = (*v - mean) * scale;
    }
}

/// The tract op: one f32 input, normalised along its last axis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CenteredNorm {
    /// The bits of the f32 epsilon (so the op can be `Eq`).
    eps: u32,
}

impl Op for CenteredNorm {
    fn name(&self) -> StaticName {
        "CenteredNorm".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("eps {}", f32::from_bits(self.eps))])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for CenteredNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let mut tensor = input.into_tensor();
        let row = *tensor
            .shape()
            .last()
            .context("CenteredNorm needs an axis")?;
        if row > 0 {
            let eps = f32::from_bits(self.eps);
            let mut view = tensor.try_as_plain_ram_mut()?;
            for chunk in view.as_slice_mut::<f32>()?.chunks_exact_mut(row) {
                normalise_row(chunk, eps);
            }
        }
        Ok(tvec!(tensor.into_tvalue()))
    }
}

impl TypedOp for CenteredNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

/// The single-output producer of `outlet` when its op is `T`.
fn producer<T: Op>(model: &TypedModel, outlet: OutletId) -> Option<(&TypedNode, &T)> {
    let node = model.node(outlet.node);
    node.op_as::<T>().map(|op| (node, op))
}

/// `x` and eps when `rms` is RmsNorm(x - Sum(x) * c) on the last axis, with `c` = 1 / len.
fn chain_input(model: &TypedModel, rms: &TypedNode) -> Option<(OutletId, f32)> {
    let norm = rms.op_as::<RmsNorm>()?;
    let (sub, sub_op) = producer::<TypedBinOp>(model, rms.inputs[0])?;
    if sub_op.0.name() != "Sub" || sub.inputs.len() != 2 {
        return None;
    }
    let x = sub.inputs[0];
    let x_fact = model.outlet_fact(x).ok()?;
    let rank = x_fact.rank();
    let len = x_fact.shape.as_concrete()?.last().copied()?;
    if x_fact.datum_type != f32::datum_type() || rank == 0 || norm.axis != rank - 1 || len == 0 {
        return None;
    }
    let (mean, mean_op) = producer::<TypedBinOp>(model, sub.inputs[1])?;
    if mean_op.0.name() != "Mul" || mean.inputs.len() != 2 {
        return None;
    }
    // Sum(x) times the constant 1/len, in either order.
    let (sum, recip) = [
        (mean.inputs[0], mean.inputs[1]),
        (mean.inputs[1], mean.inputs[0]),
    ]
    .into_iter()
    .find_map(|(a, b)| {
        let (node, reduce) = producer::<Reduce>(model, a)?;
        let recip = model.outlet_fact(b).ok()?.konst.clone()?;
        Some(((node, reduce), recip))
    })?;
    let (sum_node, reduce) = sum;
    if reduce.reducer != Reducer::Sum
        || reduce.axes.as_slice() != [rank - 1]
        || sum_node.inputs[0] != x
    {
        return None;
    }
    let recip = recip.cast_to_scalar::<f32>().ok()?;
    if (recip * len as f32 - 1.0).abs() > 1e-5 {
        return None;
    }
    Some((x, norm.eps.cast_to_scalar::<f32>().ok()?))
}

/// Replaces every Reduce → Mul → Sub → RmsNorm centring chain of a decluttered `model` with a
/// [`CenteredNorm`]; returns how many.
pub(crate) fn replace_centered_norms(model: &mut TypedModel) -> TractResult<usize> {
    if std::env::var_os("CABIN_TRACT_NORM").is_some_and(|v| v == "1") {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some((x, eps)) = chain_input(model, node) else {
            continue;
        };
        swap_in(model, id, CenteredNorm { eps: eps.to_bits() }, &[x])?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_out_centred_with_unit_variance() {
        // A long row with a large offset: the sums must not lose the small spread.
        let mut row: Vec<f32> = (0..40961)
            .map(|i| 1000.0 + ((i * 37) % 101) as f32 * 0.01)
            .collect();
        normalise_row(&mut row, 1e-6);
        let n = row.len() as f64;
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((var - 1.0).abs() < 1e-3, "variance {var}");
    }

    #[test]
    fn an_onnx_style_group_norm_gives_what_tract_gives() {
        // Reshape to groups, the centring chain tract builds from InstanceNormalization, and
        // back: the rewritten plan must agree with tract's and hold no Reduce.
        let (n, c, h, w, groups) = (2, 8, 5, 7, 4);
        let len = c / groups * h * w;
        let build = || -> TractResult<TypedModel> {
            use tract_onnx::tract_core::ops::math;
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact([n, groups, len]))?;
            let sum = model.wire_node("sum", Reduce::new(tvec![2], Reducer::Sum), &[x])?[0];
            let recip = model.add_const("recip", tensor3(&[[[1.0 / len as f32]]]))?;
            let mean = model.wire_node("mean", math::mul(), &[sum, recip])?[0];
            let diff = model.wire_node("diff", math::sub(), &[x, mean])?[0];
            let rms = RmsNorm {
                axis: 2,
                eps: Arc::new(tensor0(1e-5f32)),
            };
            let y = model.wire_node("rms", rms, &[diff])?[0];
            model.select_output_outlets(&[y])?;
            Ok(model)
        };
        let values: Vec<f32> = (0..n * groups * len)
            .map(|i| ((i * 53) % 89) as f32 * 0.3 - 9.0)
            .collect();
        let input = || {
            tvec![
                Tensor::from_shape(&[n, groups, len], &values)
                    .unwrap()
                    .into_tvalue()
            ]
        };
        let want = build()
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap()
            .run(input())
            .unwrap();
        let mut ours = build().unwrap().into_decluttered().unwrap();
        assert_eq!(replace_centered_norms(&mut ours).unwrap(), 1);
        let ours = ours.into_optimized().unwrap();
        assert!(ours.nodes().iter().all(|n| n.op_as::<Reduce>().is_none()));
        let got = ours.into_runnable().unwrap().run(input()).unwrap();
        let got = got[0].to_plain_array_view::<f32>().unwrap();
        let want = want[0].to_plain_array_view::<f32>().unwrap();
        for (g, e) in got.iter().zip(want.iter()) {
            assert!((g - e).abs() < 1e-4, "{g} != {e}");
        }
    }
}
