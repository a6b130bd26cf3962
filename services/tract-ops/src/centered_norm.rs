//! The statistics half of a group (or instance) norm in one op: each row of the last axis
//! becomes `(x - mean) / sqrt(mean((x - mean)^2) + eps)`.
//!
//! ONNX exports of `GroupNorm` reach tract as Reshape → InstanceNormalization → Reshape → Mul →
//! Add, and tract decomposes the instance norm into Reduce<Sum> → Mul → Sub → RmsNorm. Its
//! Reduce walks the row element by element, which made the norms of our UNet and decoder cost
//! as much as some of their convolutions (`onnx/bench/README.md`). Here a row is read twice
//! and written once, in loops that vectorise, rows spread over tract's pool; what follows a
//! norm in these networks (a reshape back, the per-channel scale and shift, often a SiLU) is
//! folded into that one write.
//!
//! [`replace_centered_norms`] swaps it in for the Reduce → Mul → Sub → RmsNorm chain of a
//! decluttered plan, with its epilogue; `CABIN_TRACT_NORM=1` keeps tract's own.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm};

use super::attention::exp_nonpositive;
use super::conv3x3::Kernel;
use super::plan_rewrite::{on_tract_pool, same_bits, swap_in};

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

/// What a norm's output goes through next, folded into the op.
#[derive(Debug, Clone)]
struct Epilogue {
    /// The output's shape, when a reshape (one that keeps the element order) followed.
    shape: TVec<usize>,
    /// Per-channel scale and shift: flat element `f` belongs to channel
    /// `(f / inner) % scale.len()`.
    scale: Vec<f32>,
    shift: Vec<f32>,
    inner: usize,
    silu: bool,
}

impl PartialEq for Epilogue {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape
            && self.inner == other.inner
            && self.silu == other.silu
            && same_bits(&self.scale, &other.scale)
            && same_bits(&self.shift, &other.shift)
    }
}

impl Eq for Epilogue {}

/// `x * sigmoid(x)`, branch-free: `e^-|x|` never overflows.
#[inline(always)]
fn silu(x: f32) -> f32 {
    let t = exp_nonpositive(-x.abs());
    let sigmoid = if x >= 0.0 { 1.0 } else { t } / (1.0 + t);
    x * sigmoid
}

/// Normalises `row` (whose first element is flat element `first` of the tensor) and applies
/// `epilogue`.
#[inline(always)]
fn normalise_row_body(row: &mut [f32], first: usize, eps: f32, epilogue: Option<&Epilogue>) {
    let n = row.len() as f64;
    let mean = (lane_sum(row, |v| v) / n) as f32;
    let variance = (lane_sum(row, |v| (v - mean) * (v - mean)) / n) as f32;
    let scale = 1.0 / (variance + eps).sqrt();
    let Some(e) = epilogue else {
        for v in row.iter_mut() {
            *v = (*v - mean) * scale;
        }
        return;
    };
    if e.silu {
        affine::<true>(row, first, mean, scale, e);
    } else {
        affine::<false>(row, first, mean, scale, e);
    }
}

/// `row = epilogue((row - mean) * scale)`, SiLU or not decided at compile time so each loop
/// vectorises on its own.
#[inline(always)]
fn affine<const SILU: bool>(row: &mut [f32], first: usize, mean: f32, scale: f32, e: &Epilogue) {
    let channels = e.scale.len();
    let finish = |v: f32| if SILU { silu(v) } else { v };
    if e.inner == 1 {
        // One channel per element, the row a whole number of channel runs (checked when
        // fused): a layer norm's affine.
        for run in row.chunks_exact_mut(channels) {
            for ((v, &a), &b) in run.iter_mut().zip(&e.scale).zip(&e.shift) {
                *v = finish((*v - mean) * scale * a + b);
            }
        }
    } else {
        // Runs of `inner` elements share a channel, the row a whole number of runs: a group
        // norm's per-channel affine over each channel's plane.
        for (k, run) in row.chunks_exact_mut(e.inner).enumerate() {
            let c = (first / e.inner + k) % channels;
            let a = scale * e.scale[c];
            let b = e.shift[c] - mean * a;
            for v in run.iter_mut() {
                *v = finish(*v * a + b);
            }
        }
    }
}

fn normalise_row(
    kernel: Kernel,
    row: &mut [f32],
    first: usize,
    eps: f32,
    epilogue: Option<&Epilogue>,
) {
    #[cfg(target_arch = "x86_64")]
    match kernel {
        // SAFETY: `Kernel::Avx512` is only chosen where AVX-512F was detected.
        Kernel::Avx512 => return unsafe { x86::normalise_row_avx512(row, first, eps, epilogue) },
        // SAFETY: `Kernel::Avx2` is only chosen where AVX2 and FMA were detected.
        Kernel::Avx2 => return unsafe { x86::normalise_row_avx2(row, first, eps, epilogue) },
        Kernel::Portable => {}
    }
    let _ = kernel;
    normalise_row_body(row, first, eps, epilogue)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Epilogue;

    /// # Safety
    /// AVX-512F is available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn normalise_row_avx512(
        row: &mut [f32],
        first: usize,
        eps: f32,
        epilogue: Option<&Epilogue>,
    ) {
        super::normalise_row_body(row, first, eps, epilogue)
    }

    /// # Safety
    /// AVX2 and FMA are available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn normalise_row_avx2(
        row: &mut [f32],
        first: usize,
        eps: f32,
        epilogue: Option<&Epilogue>,
    ) {
        super::normalise_row_body(row, first, eps, epilogue)
    }
}

/// The tract op: one f32 input, normalised along its last axis, then its epilogue if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CenteredNorm {
    kernel: Kernel,
    /// The bits of the f32 epsilon (so the op can be `Eq`).
    eps: u32,
    epilogue: Option<Arc<Epilogue>>,
}

impl Op for CenteredNorm {
    fn name(&self) -> StaticName {
        "CenteredNorm".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = vec![format!("eps {}", f32::from_bits(self.eps))];
        if let Some(e) = &self.epilogue {
            info.push(format!(
                "then {} channels (runs of {}), silu {}, shape {:?}",
                e.scale.len(),
                e.inner,
                e.silu,
                e.shape
            ));
        }
        Ok(info)
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
            let epilogue = self.epilogue.as_deref();
            let mut view = tensor.try_as_plain_ram_mut()?;
            let data = view.as_slice_mut::<f32>()?;
            // Pieces of at least ~16k elements: enough work to be worth a worker.
            let rows_per_piece = 16_384usize.div_ceil(row);
            let pieces = data.chunks_mut(rows_per_piece * row).enumerate().collect();
            on_tract_pool(pieces, |(p, piece): (usize, &mut [f32])| {
                for (r, values) in piece.chunks_exact_mut(row).enumerate() {
                    let first = (p * rows_per_piece + r) * row;
                    normalise_row(self.kernel, values, first, eps, epilogue);
                }
            });
        }
        if let Some(e) = &self.epilogue {
            tensor = tensor.into_shape(&e.shape)?;
        }
        Ok(tvec!(tensor.into_tvalue()))
    }
}

impl TypedOp for CenteredNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(match &self.epilogue {
            Some(e) => f32::fact(e.shape.iter().copied()),
            None => inputs[0].without_value(),
        }))
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

/// The only node `id`'s output feeds, and the input slot it takes it in.
fn sole_successor(model: &TypedModel, id: usize) -> Option<(&TypedNode, usize)> {
    let node = model.node(id);
    match node.outputs.as_slice() {
        [output] => match output.successors.as_slice() {
            [inlet] => Some((model.node(inlet.node), inlet.slot)),
            _ => None,
        },
        _ => None,
    }
}

/// The values of `node`'s other operand when `node` is the binary `name` (Add or Mul) of
/// `slot`'s input with an f32 constant that is one per channel of `axis` (1 elsewhere) in an
/// output of `shape`, and leaves the shape as it is.
fn per_channel(
    model: &TypedModel,
    node: &TypedNode,
    slot: usize,
    name: &str,
    shape: &[usize],
) -> Option<(usize, Vec<f32>)> {
    let bin = node.op_as::<TypedBinOp>()?;
    if bin.0.name() != name || node.inputs.len() != 2 {
        return None;
    }
    let konst = model
        .outlet_fact(node.inputs[1 - slot])
        .ok()?
        .konst
        .clone()?;
    let out = model.outlet_fact(node.id.into()).ok()?;
    if konst.datum_type() != f32::datum_type()
        || konst.rank() != shape.len()
        || out.shape.as_concrete()? != shape
    {
        return None;
    }
    let axes: Vec<usize> = (0..shape.len())
        .filter(|&i| konst.shape()[i] != 1)
        .collect();
    let axis = match axes.as_slice() {
        [axis] if konst.shape()[*axis] == shape[*axis] => *axis,
        _ => return None,
    };
    let values = konst
        .try_as_plain_ram()
        .ok()?
        .as_slice::<f32>()
        .ok()?
        .to_vec();
    Some((axis, values))
}

/// Folds what follows the plain [`CenteredNorm`] at `id` into it: a reshape that keeps the
/// element order, then a per-channel Mul, an optional Add on the same axis, an optional
/// SiLU. Returns the last node folded and the epilogue, or `None` when no Mul follows.
fn epilogue_after(model: &TypedModel, id: usize) -> Option<(usize, Epilogue)> {
    let row = *model
        .outlet_fact(id.into())
        .ok()?
        .shape
        .as_concrete()?
        .last()?;
    let (mut next, mut slot) = sole_successor(model, id)?;
    let mut shape: TVec<usize> = model
        .outlet_fact(id.into())
        .ok()?
        .shape
        .as_concrete()?
        .into();
    if let Some(AxisOp::Reshape(..) | AxisOp::Add(_) | AxisOp::Rm(_)) = next.op_as::<AxisOp>() {
        shape = model
            .outlet_fact(next.id.into())
            .ok()?
            .shape
            .as_concrete()?
            .into();
        (next, slot) = sole_successor(model, next.id)?;
    }
    let (axis, scale) = per_channel(model, next, slot, "Mul", &shape)?;
    let mut last = next.id;
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let fits = if inner == 1 {
        row % channels == 0
    } else {
        row % inner == 0
    };
    if !fits || scale.len() != channels {
        return None;
    }
    let mut shift = vec![0.0; channels];
    if let Some((after, slot)) = sole_successor(model, last)
        && let Some((add_axis, values)) = per_channel(model, after, slot, "Add", &shape)
        && add_axis == axis
    {
        shift = values;
        last = after.id;
    }
    let mut silu = false;
    if let Some((after, _)) = sole_successor(model, last)
        && after.op().name() == "Silu"
        && after.inputs.len() == 1
        && model.outlet_fact(after.id.into()).ok()?.datum_type == f32::datum_type()
    {
        silu = true;
        last = after.id;
    }
    Some((
        last,
        Epilogue {
            shape,
            scale,
            shift,
            inner,
            silu,
        },
    ))
}

/// Replaces every Reduce → Mul → Sub → RmsNorm centring chain of a decluttered `model` with a
/// [`CenteredNorm`], folding in the epilogue after it; returns how many.
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
        let (at, epilogue) = match epilogue_after(model, id) {
            Some((last, e)) => (last, Some(Arc::new(e))),
            None => (id, None),
        };
        let op = CenteredNorm {
            kernel: Kernel::best(),
            eps: eps.to_bits(),
            epilogue,
        };
        swap_in(model, at, op, &[x])?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_out_centred_with_unit_variance() {
        for kernel in Kernel::available() {
            // A long row with a large offset: the sums must not lose the small spread.
            let mut row: Vec<f32> = (0..40961)
                .map(|i| 1000.0 + ((i * 37) % 101) as f32 * 0.01)
                .collect();
            normalise_row(kernel, &mut row, 0, 1e-6, None);
            let n = row.len() as f64;
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            assert!(mean.abs() < 1e-3, "{kernel:?}: mean {mean}");
            assert!((var - 1.0).abs() < 1e-3, "{kernel:?}: variance {var}");
        }
    }

    #[test]
    fn an_onnx_style_group_norm_gives_what_tract_gives() {
        // The centring chain tract builds from InstanceNormalization over groups: the
        // rewritten plan must agree with tract's and hold no Reduce.
        let (n, c, h, w, groups) = (2, 8, 5, 7, 4);
        let len = c / groups * h * w;
        let build = || norm_then((n, groups, len), &[n, groups, len], None, false, false);
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

    /// The centring chain on `[a, b, len]`, then a reshape to `shape`; with `affine` (the
    /// per-channel shape) a Mul by a scale, maybe an Add of a shift, maybe a SiLU.
    fn norm_then(
        (a, b, len): (usize, usize, usize),
        shape: &[usize],
        affine: Option<&[usize]>,
        shift: bool,
        silu: bool,
    ) -> TractResult<TypedModel> {
        use tract_onnx::tract_core::ops::math;
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([a, b, len]))?;
        let sum = model.wire_node("sum", Reduce::new(tvec![2], Reducer::Sum), &[x])?[0];
        let recip = model.add_const("recip", tensor3(&[[[1.0 / len as f32]]]))?;
        let mean = model.wire_node("mean", math::mul(), &[sum, recip])?[0];
        let diff = model.wire_node("diff", math::sub(), &[x, mean])?[0];
        let rms = RmsNorm {
            axis: 2,
            eps: Arc::new(tensor0(1e-5f32)),
        };
        let mut y = model.wire_node("rms", rms, &[diff])?[0];
        if shape != [a, b, len] {
            let from: TVec<TDim> = [b, len].iter().map(|d| d.to_dim()).collect();
            let to: TVec<TDim> = shape[1..].iter().map(|d| d.to_dim()).collect();
            y = model.wire_node("back", AxisOp::Reshape(1, from, to), &[y])?[0];
        }
        let Some(affine) = affine else {
            model.select_output_outlets(&[y])?;
            return Ok(model);
        };
        let channels: usize = affine.iter().product();
        let values = |k: usize| -> Vec<f32> {
            (0..channels)
                .map(|c| 0.5 + ((c * 7 + k) % 11) as f32 * 0.1)
                .collect()
        };
        let scale = model.add_const("scale", Tensor::from_shape(affine, &values(1))?)?;
        y = model.wire_node("scaled", math::mul(), &[y, scale])?[0];
        if shift {
            let b = model.add_const("shift", Tensor::from_shape(affine, &values(3))?)?;
            y = model.wire_node("shifted", math::add(), &[b, y])?[0];
        }
        if silu {
            use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
            let op = ElementWiseOp(Box::new(tract_onnx::tract_core::ops::nn::Silu {}), None);
            y = model.wire_node("silu", op, &[y])?[0];
        }
        model.select_output_outlets(&[y])?;
        Ok(model)
    }

    #[test]
    fn a_norm_takes_in_the_reshape_affine_and_silu_after_it() {
        // Group norm (2 groups of 3 channels over 5x7 planes) with and without SiLU, a layer
        // norm's affine along the row, and a scale with no shift.
        type Case = (
            (usize, usize, usize),
            &'static [usize],
            &'static [usize],
            bool,
            bool,
        );
        let cases: &[Case] = &[
            ((2, 2, 105), &[2, 6, 5, 7], &[1, 6, 1, 1], true, true),
            ((2, 2, 105), &[2, 6, 5, 7], &[1, 6, 1, 1], true, false),
            ((2, 9, 24), &[2, 9, 24], &[1, 1, 24], true, false),
            ((1, 4, 3000), &[1, 4, 3000], &[1, 1, 3000], false, true),
        ];
        for &(dims, shape, affine, shift, silu) in cases {
            let len = dims.0 * dims.1 * dims.2;
            let values: Vec<f32> = (0..len)
                .map(|i| ((i * 53) % 89) as f32 * 0.3 - 9.0)
                .collect();
            let input = || {
                let t = Tensor::from_shape(&[dims.0, dims.1, dims.2], &values).unwrap();
                tvec![t.into_tvalue()]
            };
            let build = || norm_then(dims, shape, Some(affine), shift, silu).unwrap();
            let want = build().into_optimized().unwrap().into_runnable().unwrap();
            let want = want.run(input()).unwrap();
            let mut ours = build().into_decluttered().unwrap();
            assert_eq!(replace_centered_norms(&mut ours).unwrap(), 1);
            let ours = ours.into_optimized().unwrap();
            let names: Vec<String> = ours
                .nodes()
                .iter()
                .map(|n| n.op.name().to_string())
                .collect();
            assert_eq!(names, ["Source", "CenteredNorm"], "{shape:?} {affine:?}");
            let ours = ours.into_runnable().unwrap();
            let what = format!("{shape:?} {affine:?} shift {shift} silu {silu}");
            crate::plan_rewrite::assert_agrees_here_and_on_pool(&ours, input, &want[0], &what);
        }
    }

    #[test]
    fn silu_is_accurate_over_both_signs() {
        for i in -20_000..=20_000 {
            let x = i as f32 * 1e-3;
            let want = f64::from(x) / (1.0 + (-f64::from(x)).exp());
            let got = f64::from(silu(x));
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "silu({x}) {got} != {want}"
            );
        }
        assert!(silu(-1000.0).abs() < 1e-30 && silu(1000.0) == 1000.0);
    }
}
