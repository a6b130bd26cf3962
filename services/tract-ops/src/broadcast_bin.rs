//! Adds and multiplies where one f32 operand is broadcast over the other, as SD-family
//! networks do everywhere: a bias or norm scale per channel (`[2, C, H, W]` with `[1, C, 1, 1]`)
//! or per feature (`[2, T, D]` with `[1, 1, D]`).
//!
//! tract 0.23 has fast kernels only when the small operand matches the big one on the leading
//! axes, so a batch of two (classifier-free guidance) sends these through its generic
//! element-by-element broadcast, about a fifth of a UNet step (`onnx/bench/README.md`). Here
//! the output is walked in runs along the trailing axes: over a run the small operand is either
//! one value or a slice as long as the run, and the loop over the run vectorises.
//!
//! [`replace_broadcast_bins`] swaps them into a decluttered plan; `CABIN_TRACT_BIN=1` keeps
//! tract's own.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

use super::plan_rewrite::swap_in;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Add,
    Mul,
}

impl Kind {
    fn apply(self, out: &mut [f32], small: Small<'_>) {
        match (self, small) {
            (Self::Add, Small::One(b)) => out.iter_mut().for_each(|a| *a += b),
            (Self::Mul, Small::One(b)) => out.iter_mut().for_each(|a| *a *= b),
            (Self::Add, Small::Run(b)) => out.iter_mut().zip(b).for_each(|(a, b)| *a += b),
            (Self::Mul, Small::Run(b)) => out.iter_mut().zip(b).for_each(|(a, b)| *a *= b),
        }
    }
}

/// What the small operand holds over one run of the output.
#[derive(Clone, Copy)]
enum Small<'a> {
    One(f32),
    Run(&'a [f32]),
}

/// `big = big (op) small` in place, `small` broadcast to `big`'s shape (same rank, 1 where
/// broadcast).
fn broadcast(kind: Kind, big: &mut [f32], shape: &[usize], small: &[f32], small_shape: &[usize]) {
    let rank = shape.len();
    if big.is_empty() {
        return;
    }
    // The trailing axes where the small operand is all 1 (one value per run) or all equal to
    // the output (a slice per run); the longer block is the run. The last axis is one or the
    // other, so the run is never empty.
    let ones = (0..rank).rev().take_while(|&i| small_shape[i] == 1).count();
    let equal = (0..rank)
        .rev()
        .take_while(|&i| small_shape[i] == shape[i])
        .count();
    let (axes, one_value) = if ones >= equal {
        (ones, true)
    } else {
        (equal, false)
    };
    let run: usize = shape[rank - axes..].iter().product();
    // Strides of the small operand over the outer axes, 0 where it is broadcast.
    let mut small_strides = vec![0usize; rank];
    let mut stride = 1;
    for i in (0..rank).rev() {
        small_strides[i] = if small_shape[i] == 1 { 0 } else { stride };
        stride *= small_shape[i];
    }
    let outer = &shape[..rank - axes];
    let mut index = vec![0usize; outer.len()];
    for (r, out) in big.chunks_exact_mut(run).enumerate() {
        if r > 0 {
            // Next outer multi-index, last axis fastest.
            for i in (0..index.len()).rev() {
                index[i] += 1;
                if index[i] < outer[i] {
                    break;
                }
                index[i] = 0;
            }
        }
        let at: usize = index.iter().zip(&small_strides).map(|(i, s)| i * s).sum();
        let small = if one_value {
            Small::One(small[at])
        } else {
            Small::Run(&small[at..at + run])
        };
        kind.apply(out, small);
    }
}

/// The tract op: inputs (big, small), output big's shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BroadcastBin {
    kind: Kind,
}

impl Op for BroadcastBin {
    fn name(&self) -> StaticName {
        format!("Broadcast{:?}", self.kind).into()
    }

    op_as_typed_op!();
}

impl EvalOp for BroadcastBin {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (big, small) = args_2!(inputs);
        let shape = big.shape().to_vec();
        let small_shape = small.shape().to_vec();
        ensure!(
            shape.len() == small_shape.len()
                && shape
                    .iter()
                    .zip(&small_shape)
                    .all(|(a, b)| a == b || *b == 1),
            "Broadcast{:?}: {small_shape:?} does not broadcast to {shape:?}",
            self.kind
        );
        // In place: tract hands over the tensor itself when nothing else reads it.
        let mut out = big.into_tensor();
        broadcast(
            self.kind,
            out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
            &shape,
            small.try_as_plain_ram()?.as_slice::<f32>()?,
            &small_shape,
        );
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for BroadcastBin {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 2);
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Replaces each f32 Add or Mul of a decluttered `model` whose one operand is broadcast over
/// the other on some axis other than the leading ones (the case tract runs element by
/// element); returns how many. Left alone with `CABIN_TRACT_BIN=1`.
pub(crate) fn replace_broadcast_bins(model: &mut TypedModel) -> TractResult<usize> {
    if std::env::var_os("CABIN_TRACT_BIN").is_some_and(|v| v == "1") {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(bin) = node.op_as::<TypedBinOp>() else {
            continue;
        };
        let kind = match bin.0.name() {
            "Add" => Kind::Add,
            "Mul" => Kind::Mul,
            _ => continue,
        };
        if node.inputs.len() != 2 {
            continue;
        }
        let facts = model.node_input_facts(id)?;
        let (Some(a), Some(b)) = (facts[0].shape.as_concrete(), facts[1].shape.as_concrete())
        else {
            continue;
        };
        let (a, b) = (a.to_vec(), b.to_vec());
        let all_f32 = facts.iter().all(|f| f.datum_type == f32::datum_type());
        drop(facts);
        if !all_f32 || a.len() != b.len() {
            continue;
        }
        let (big, small, swap) = if a.iter().product::<usize>() >= b.iter().product() {
            (&a, &b, false)
        } else {
            (&b, &a, true)
        };
        let broadcasts = big.iter().zip(small).all(|(x, y)| x == y || *y == 1);
        // Equal shapes and a single value are what tract's own kernels do well.
        let trivial = big == small || small.iter().all(|&d| d == 1);
        if !broadcasts || trivial || big.iter().product::<usize>() < 4096 {
            continue;
        }
        let inputs = &model.node(id).inputs;
        let (big, small) = if swap {
            (inputs[1], inputs[0])
        } else {
            (inputs[0], inputs[1])
        };
        swap_in(model, id, BroadcastBin { kind }, &[big, small])?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(
        kind: Kind,
        big: &[f32],
        shape: &[usize],
        small: &[f32],
        small_shape: &[usize],
    ) -> Vec<f32> {
        let rank = shape.len();
        (0..big.len())
            .map(|flat| {
                let (mut rest, mut at, mut stride) = (flat, 0, 1);
                let mut index = vec![0; rank];
                for i in (0..rank).rev() {
                    index[i] = rest % shape[i];
                    rest /= shape[i];
                }
                for i in (0..rank).rev() {
                    if small_shape[i] != 1 {
                        at += index[i] * stride;
                    }
                    stride *= small_shape[i];
                }
                match kind {
                    Kind::Add => big[flat] + small[at],
                    Kind::Mul => big[flat] * small[at],
                }
            })
            .collect()
    }

    #[test]
    fn every_broadcast_pattern_gives_the_element_by_element_result() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[2, 5, 3, 7], &[1, 5, 1, 1]),
            (&[2, 6, 11], &[1, 1, 11]),
            (&[2, 6, 11], &[1, 6, 1]),
            (&[3, 4, 5], &[3, 1, 5]),
            (&[2, 3, 4, 5], &[1, 3, 1, 5]),
            (&[2, 3, 1, 5], &[1, 1, 1, 5]),
            (&[4, 9], &[1, 1]),
            (&[7], &[7]),
        ];
        for kind in [Kind::Add, Kind::Mul] {
            for (i, (shape, small_shape)) in cases.iter().enumerate() {
                let n: usize = shape.iter().product();
                let m: usize = small_shape.iter().product();
                let big: Vec<f32> = (0..n).map(|v| v as f32 * 0.5 - 3.0).collect();
                let small: Vec<f32> = (0..m).map(|v| v as f32 * 1.5 + 1.0 + i as f32).collect();
                let mut got = big.clone();
                broadcast(kind, &mut got, shape, &small, small_shape);
                assert_eq!(
                    got,
                    reference(kind, &big, shape, &small, small_shape),
                    "{kind:?} {shape:?} with {small_shape:?}"
                );
            }
        }
    }

    #[test]
    fn a_plan_with_the_op_gives_what_tract_gives() {
        // A batch-two activation with a per-channel scale and a per-feature bias, small operand
        // first in one of them.
        let build = || -> TractResult<TypedModel> {
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact([2, 32, 8, 20]))?;
            let scale = model.add_const(
                "scale",
                Tensor::from_shape(
                    &[1, 32, 1, 1],
                    &(0..32).map(|v| v as f32 * 0.1).collect::<Vec<_>>(),
                )?,
            )?;
            let bias = model.add_const(
                "bias",
                Tensor::from_shape(
                    &[1, 1, 1, 20],
                    &(0..20).map(|v| v as f32 - 7.0).collect::<Vec<_>>(),
                )?,
            )?;
            let y = model.wire_node(
                "scaled",
                tract_onnx::tract_core::ops::math::mul(),
                &[scale, x],
            )?[0];
            let y = model.wire_node(
                "biased",
                tract_onnx::tract_core::ops::math::add(),
                &[y, bias],
            )?[0];
            model.select_output_outlets(&[y])?;
            Ok(model)
        };
        let input = || {
            let values: Vec<f32> = (0..2 * 32 * 8 * 20)
                .map(|v| (v % 97) as f32 * 0.25)
                .collect();
            tvec![
                Tensor::from_shape(&[2, 32, 8, 20], &values)
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
        assert_eq!(replace_broadcast_bins(&mut ours).unwrap(), 2);
        let got = ours
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap()
            .run(input())
            .unwrap();
        assert_eq!(
            got[0].to_plain_array_view::<f32>().unwrap(),
            want[0].to_plain_array_view::<f32>().unwrap()
        );
    }
}
