//! Transposed convolutions whose kernel is the stride or twice it (`ConvTranspose`, NCHW f32,
//! group 1, the same stride on both axes, padding below the stride): the learned upsamplers of
//! a display stage (`k = 2s`, a smooth s× enlargement) and of pixel-shuffle-like layers
//! (`k = s`).
//!
//! tract 0.23 runs a transposed convolution as a matrix product into a `[cout·k·k, pixels]`
//! column buffer and a `DeconvSum` that adds the overlapping columns back into the picture: at
//! a 1920×720 output that is a 72 MB buffer written and read again, and its product ran at ~10
//! GFLOP/s on our upscaler (`onnx/bench/README.md`). Here each output pixel is seen as what it
//! is: with `k = 2s`, output `Y` (padding `p`) gets exactly two input rows, `b = (Y+p) div s`
//! and `b-1`, through kernel rows `r = (Y+p) mod s` and `r+s`. So on the input padded by one,
//! every output phase `(ry, rx)` of every channel is a plain 2×2 convolution at base point
//! `(b_y, b_x)`: `cout·s·s` "phase channels" over 4 taps, which is `conv3x3`'s register-blocked
//! tile kernel as it stands. Each tile's phase channels are written straight to their pixels
//! (every output pixel comes from exactly one phase channel and base point), so no column
//! buffer exists. With `k = s` there is one tap.
//!
//! [`replace_conv_transposes`] swaps them into a decluttered plan; `CABIN_TRACT_DECONV=1` keeps
//! tract's own.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::deconv::Deconv;
use tract_onnx::tract_core::ops::cnn::{KernelFormat, PaddingSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::conv3x3::{Kernel, MR, NT};
use super::linear::Shared;
use super::plan_rewrite::{on_tract_pool, same_bits, swap_in};

/// Where things lie for one picture: the input padded by one pixel on every side, laid out
/// flat (`pitch = w + 2`), base point `q = b_y * pitch + b_x` for `b_y <= h`, `b_x <= w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
    pitch: usize,
    /// Base points computed (the padding column's among them, thrown away).
    points: usize,
    /// Floats per input channel in the scratch: the padded picture and the last tile's reach.
    channel: usize,
}

/// The weights as phase channels: `[block][c][tap][MR]`, phase channel `v = (o*s + ry)*s + rx`,
/// zero past `cout*s*s`.
#[derive(Debug)]
struct Packed {
    cin: usize,
    cout: usize,
    stride: usize,
    /// 4 (kernel twice the stride) or 1 (kernel the stride).
    taps: usize,
    pad: usize,
    weights: Vec<f32>,
}

impl Packed {
    /// `kernel` is OIHW `[cout, cin, k, k]`, `k` the stride or twice it.
    fn new(kernel: &[f32], cout: usize, cin: usize, stride: usize, k: usize, pad: usize) -> Self {
        let taps = if k == stride { 1 } else { 4 };
        let phases = cout * stride * stride;
        let blocks = phases.div_ceil(MR);
        let mut weights = vec![0.0; blocks * cin * taps * MR];
        for v in 0..phases {
            let (o, ry, rx) = (v / (stride * stride), v / stride % stride, v % stride);
            let (block, lane) = (v / MR, v % MR);
            for c in 0..cin {
                for tap in 0..taps {
                    // Tap (ty, tx) reads padded pixel (b_y + ty, b_x + tx), which is input
                    // (b_y + ty - 1, ...): kernel row ry + s for ty = 0, ry for ty = 1.
                    let (ky, kx) = if taps == 1 {
                        (ry, rx)
                    } else {
                        let (ty, tx) = (tap / 2, tap % 2);
                        (ry + (1 - ty) * stride, rx + (1 - tx) * stride)
                    };
                    weights[((block * cin + c) * taps + tap) * MR + lane] =
                        kernel[((o * cin + c) * k + ky) * k + kx];
                }
            }
        }
        Self {
            cin,
            cout,
            stride,
            taps,
            pad,
            weights,
        }
    }

    fn k(&self) -> usize {
        self.stride * if self.taps == 1 { 1 } else { 2 }
    }

    fn blocks(&self) -> usize {
        (self.cout * self.stride * self.stride).div_ceil(MR)
    }

    fn block(&self, block: usize) -> &[f32] {
        let len = self.cin * self.taps * MR;
        &self.weights[block * len..(block + 1) * len]
    }

    /// Output length along an axis of `len` input pixels: `(len - 1)*s + k - 2*pad`.
    fn out_len(&self, len: usize) -> usize {
        (len * self.stride + self.k()).saturating_sub(self.stride + 2 * self.pad)
    }

    fn geometry(&self, h: usize, w: usize) -> Geometry {
        let pitch = w + 2;
        let points = (h + 1) * pitch;
        // The furthest tap is (1, 1).
        let channel = ((h + 2) * pitch).max(pitch + 1 + points.div_ceil(NT) * NT);
        Geometry {
            h,
            w,
            out_h: self.out_len(h),
            out_w: self.out_len(w),
            pitch,
            points,
            channel,
        }
    }

    /// Tap offsets from a base point in the padded picture.
    fn offsets<const TAPS: usize>(&self, pitch: usize) -> [usize; TAPS] {
        std::array::from_fn(|tap| {
            if TAPS == 1 {
                pitch + 1
            } else {
                (tap / 2) * pitch + tap % 2
            }
        })
    }
}

/// One picture: `input` `[cin, h, w]`, `output` `[cout, out_h, out_w]`.
fn deconv_image(
    kernel: Kernel,
    packed: &Packed,
    bias: &[f32],
    input: &[f32],
    g: Geometry,
    output: &mut [f32],
) {
    PADDED.with_borrow_mut(|padded| {
        padded.clear();
        padded.resize(packed.cin * g.channel, 0.0);
        for (c, channel) in padded.chunks_exact_mut(g.channel).enumerate() {
            for y in 0..g.h {
                channel[(y + 1) * g.pitch + 1..][..g.w]
                    .copy_from_slice(&input[(c * g.h + y) * g.w..][..g.w]);
            }
        }
        let padded = &padded[..];
        let out = Shared::new(output);
        let tiles = g.points.div_ceil(NT);
        let run_tile = |t: usize| {
            if packed.taps == 1 {
                deconv_tile::<1>(kernel, packed, bias, padded, g, t, out)
            } else {
                deconv_tile::<4>(kernel, packed, bias, padded, g, t, out)
            }
        };
        on_tract_pool((0..tiles).collect(), run_tile);
    });
}

/// Base points `t*NT..` for every phase channel, each written to its output pixel.
fn deconv_tile<const TAPS: usize>(
    kernel: Kernel,
    packed: &Packed,
    bias: &[f32],
    padded: &[f32],
    g: Geometry,
    t: usize,
    out: Shared,
) {
    let (s, pad) = (packed.stride, packed.pad);
    let offsets = packed.offsets::<TAPS>(g.pitch);
    let phases = packed.cout * s * s;
    let first = t * NT;
    let count = NT.min(g.points - first);
    let mut tile = [0.0f32; MR * NT];
    for block in 0..packed.blocks() {
        kernel.tile(
            &padded[first..],
            g.channel,
            &offsets,
            packed.block(block),
            &mut tile,
        );
        for m in 0..MR.min(phases - block * MR) {
            let v = block * MR + m;
            let (o, ry, rx) = (v / (s * s), v / s % s, v % s);
            let b = bias[o];
            let values = &tile[m * NT..][..count];
            // Base columns whose output column `bx*s + rx - pad` lies inside the picture.
            let lo = pad.saturating_sub(rx).div_ceil(s);
            let hi = (g.out_w + pad - rx).div_ceil(s);
            // One base row at a time: a fixed output row, output columns `s` apart.
            let mut q = first;
            while q < first + count {
                let (by, bx0) = (q / g.pitch, q % g.pitch);
                let run = (g.pitch - bx0).min(first + count - q);
                let y = (by * s + ry).wrapping_sub(pad);
                let (from, to) = (bx0.max(lo), (bx0 + run).min(hi));
                if y < g.out_h && from < to {
                    let x0 = from * s + rx - pad;
                    // SAFETY: output row y from column x0 on, every s-th of (to - from)
                    // columns, all inside it; only this phase channel at these base points
                    // writes them.
                    let row =
                        unsafe { out.run(plane_start(o, y, g) + x0, (to - from - 1) * s + 1) };
                    let src = &values[q - first + from - bx0..][..to - from];
                    for (d, &v) in row.iter_mut().step_by(s).zip(src) {
                        *d = v + b;
                    }
                }
                q += run;
            }
        }
    }
}

/// Where output row `y` of channel `o` starts.
fn plane_start(o: usize, y: usize, g: Geometry) -> usize {
    (o * g.out_h + y) * g.out_w
}

thread_local! {
    /// The padded input, kept between calls (a display stage's is megabytes).
    static PADDED: std::cell::RefCell<Vec<f32>> = Default::default();
}

/// The tract op: inputs `[n, cin, h, w]` and the bias (one value or one per output channel).
#[derive(Debug, Clone)]
pub(crate) struct PhaseDeconv {
    packed: Arc<Packed>,
    kernel: Kernel,
}

// tract compares ops to merge identical nodes; weights compare by bits, so NaN equals itself.
impl PartialEq for PhaseDeconv {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.packed, &other.packed);
        self.kernel == other.kernel
            && (Arc::ptr_eq(a, b)
                || (a.cin, a.cout, a.stride, a.taps, a.pad)
                    == (b.cin, b.cout, b.stride, b.taps, b.pad)
                    && same_bits(&a.weights, &b.weights))
    }
}

impl Eq for PhaseDeconv {}

impl Op for PhaseDeconv {
    fn name(&self) -> StaticName {
        "PhaseDeconv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let p = &self.packed;
        Ok(vec![format!(
            "{} -> {} channels, kernel {}, stride {}, pad {}, {:?} kernel",
            p.cin,
            p.cout,
            p.k(),
            p.stride,
            p.pad,
            self.kernel
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for PhaseDeconv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, bias) = args_2!(inputs);
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let cout = self.packed.cout;
        let bias: Vec<f32> = match bias.len() {
            1 => vec![bias[0]; cout],
            n if n == cout => bias.to_vec(),
            n => bail!("PhaseDeconv: {n} bias values for {cout} output channels"),
        };
        let shape = input.shape();
        ensure!(
            shape.len() == 4 && shape[1] == self.packed.cin,
            "PhaseDeconv expects [n, {}, h, w], got {shape:?}",
            self.packed.cin
        );
        let (n, h, w) = (shape[0], shape[2], shape[3]);
        let g = self.packed.geometry(h, w);
        let data = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut tensor = Tensor::zero::<f32>(&[n, cout, g.out_h, g.out_w])?;
        let mut view = tensor.try_as_plain_ram_mut()?;
        let output = view.as_slice_mut::<f32>()?;
        if h * w > 0 {
            for (image, out) in data
                .chunks_exact(self.packed.cin * h * w)
                .zip(output.chunks_exact_mut(cout * g.out_h * g.out_w))
            {
                deconv_image(self.kernel, &self.packed, &bias, image, g, out);
            }
        }
        Ok(tvec!(tensor.into_tvalue()))
    }
}

impl TypedOp for PhaseDeconv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(shape.rank() == 4 && inputs.len() == 2);
        let side =
            |d: &TDim| -> TractResult<TDim> { Ok(self.packed.out_len(d.to_usize()?).to_dim()) };
        Ok(tvec!(f32::fact([
            shape[0].clone(),
            self.packed.cout.to_dim(),
            side(&shape[2])?,
            side(&shape[3])?,
        ])))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let shape = &inputs[0].shape;
        let p = &self.packed;
        let points = shape[0].clone() * &shape[2] * &shape[3];
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            points * (p.cin * p.cout * p.k() * p.k())
        )))
    }

    as_op!();
}

/// The op for `node`, when it is a transposed convolution this file handles.
fn phase_deconv_for(model: &TypedModel, node: &TypedNode, kernel: Kernel) -> Option<PhaseDeconv> {
    let deconv = node.op_as::<Deconv>()?;
    let spec = &deconv.pool_spec;
    let strides = spec.strides();
    let stride = strides[0];
    let k = *spec.kernel_shape.first()?;
    let pad = match &spec.padding {
        PaddingSpec::Explicit(before, after)
            if before.iter().chain(after).all(|&p| p == before[0]) =>
        {
            before[0]
        }
        PaddingSpec::Valid => 0,
        _ => return None,
    };
    if deconv.group != 1
        || deconv.kernel_format != KernelFormat::OIHW
        || spec.data_format != DataFormat::NCHW
        || spec.kernel_shape.as_slice() != [k, k]
        || strides[..] != [stride, stride]
        || !(k == stride || k == 2 * stride)
        || pad >= stride
        || deconv.adjustments.iter().any(|&a| a != 0)
        || spec.dilations().iter().any(|&d| d != 1)
        || node.inputs.len() != 3
    {
        return None;
    }
    let input = model.outlet_fact(node.inputs[0]).ok()?;
    if input.datum_type != f32::datum_type() || input.rank() != 4 {
        return None;
    }
    let weights = model.outlet_fact(node.inputs[1]).ok()?.konst.clone()?;
    let bias = model.outlet_fact(node.inputs[2]).ok()?;
    let (cout, cin) = (spec.output_channels, spec.input_channels);
    if weights.shape() != [cout, cin, k, k]
        || weights.datum_type() != f32::datum_type()
        || bias.datum_type != f32::datum_type()
        || !(bias.shape.volume() == 1.to_dim() || bias.shape.volume() == cout.to_dim())
    {
        return None;
    }
    let weights = weights.try_as_plain_ram().ok()?;
    let packed = Packed::new(weights.as_slice::<f32>().ok()?, cout, cin, stride, k, pad);
    Some(PhaseDeconv {
        packed: Arc::new(packed),
        kernel,
    })
}

/// Replaces every transposed convolution [`PhaseDeconv`] handles in a decluttered `model`;
/// returns how many. Left alone with `CABIN_TRACT_DECONV=1`.
pub(crate) fn replace_conv_transposes(model: &mut TypedModel) -> TractResult<usize> {
    if std::env::var_os("CABIN_TRACT_DECONV").is_some_and(|v| v == "1") {
        return Ok(0);
    }
    let kernel = Kernel::best();
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = phase_deconv_for(model, node, kernel) else {
            continue;
        };
        let inputs = [node.inputs[0], node.inputs[2]];
        swap_in(model, id, op, &inputs)?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan_rewrite::{assert_agrees_here_and_on_pool, noise};
    use tract_onnx::tract_core::ops::cnn::PoolSpec;

    /// The textbook scatter: input pixel (y, x) adds `w[o, c, ky, kx]` times itself to output
    /// (y*s + ky - pad, x*s + kx - pad).
    fn reference(
        input: &[f32],
        kernel: &[f32],
        bias: &[f32],
        (cin, cout, h, w): (usize, usize, usize, usize),
        (s, k, pad): (usize, usize, usize),
    ) -> Vec<f32> {
        let (oh, ow) = ((h - 1) * s + k - 2 * pad, (w - 1) * s + k - 2 * pad);
        let mut out = vec![0f64; cout * oh * ow];
        for o in 0..cout {
            out[o * oh * ow..][..oh * ow].fill(f64::from(bias[o]));
            for c in 0..cin {
                for y in 0..h {
                    for x in 0..w {
                        let v = f64::from(input[(c * h + y) * w + x]);
                        for ky in 0..k {
                            for kx in 0..k {
                                let (oy, ox) = (
                                    (y * s + ky).wrapping_sub(pad),
                                    (x * s + kx).wrapping_sub(pad),
                                );
                                if oy < oh && ox < ow {
                                    out[(o * oh + oy) * ow + ox] +=
                                        v * f64::from(kernel[((o * cin + c) * k + ky) * k + kx]);
                                }
                            }
                        }
                    }
                }
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn every_kernel_matches_the_plain_scatter_on_awkward_shapes() {
        // Kernel twice the stride (every padding below it) and equal to it; channel counts off
        // the block size; rows shorter and longer than a tile; one pixel.
        let shapes = [(1, 1, 1, 1), (3, 5, 7, 9), (4, 3, 16, 40), (17, 2, 5, 61)];
        let forms = [
            (2, 4, 0),
            (2, 4, 1),
            (6, 12, 3),
            (6, 12, 5),
            (3, 6, 2),
            (2, 2, 0),
            (6, 6, 0),
        ];
        for kernel in Kernel::available() {
            for (i, &(cin, cout, h, w)) in shapes.iter().enumerate() {
                for &(s, k, pad) in &forms {
                    let input = noise(cin * h * w, i as u64);
                    let weights = noise(cout * cin * k * k, 100 + i as u64);
                    let bias = noise(cout, 200 + i as u64);
                    let packed = Packed::new(&weights, cout, cin, s, k, pad);
                    let want = reference(&input, &weights, &bias, (cin, cout, h, w), (s, k, pad));
                    let g = packed.geometry(h, w);
                    assert_eq!(g.out_h * g.out_w * cout, want.len());
                    for threads in [1, 3] {
                        let mut got = vec![f32::NAN; want.len()];
                        let pool = tract_linalg::multithread::Executor::multithread(threads);
                        tract_linalg::multithread::multithread_tract_scope(pool, || {
                            deconv_image(kernel, &packed, &bias, &input, g, &mut got)
                        });
                        for (j, (g, e)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                                "{kernel:?} s {s} k {k} pad {pad}, {threads} threads, \
                                 {cin}->{cout} {h}x{w} point {j}: {g} != {e}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_plan_with_the_phase_op_gives_what_tract_gives() {
        // A display stage's tail: a 2x one (kernel = stride) into a 6x smooth one (kernel 12,
        // pad 3), and one tract must keep (pad not below the stride).
        let (cin, mid, cout, h, w) = (5, 4, 3, 7, 11);
        for batch in [1, 2] {
            let build = |keep_last: bool| -> TractResult<TypedModel> {
                let mut model = TypedModel::default();
                let x = model.add_source("x", f32::fact([batch, cin, h, w]))?;
                let deconv = |model: &mut TypedModel,
                              name: &str,
                              x,
                              ci: usize,
                              co: usize,
                              s: usize,
                              k: usize,
                              pad: usize,
                              seed| {
                    let kernel = model.add_const(
                        format!("{name}.k"),
                        Tensor::from_shape(&[co, ci, k, k], &noise(co * ci * k * k, seed))?,
                    )?;
                    let b = model.add_const(
                        format!("{name}.b"),
                        Tensor::from_shape(&[co], &noise(co, seed + 1))?,
                    )?;
                    let spec = PoolSpec {
                        data_format: DataFormat::NCHW,
                        kernel_shape: tvec![k, k],
                        padding: PaddingSpec::Explicit(tvec![pad, pad], tvec![pad, pad]),
                        dilations: None,
                        strides: Some(tvec![s, s]),
                        input_channels: ci,
                        output_channels: co,
                    };
                    let op = Deconv::new(spec, KernelFormat::OIHW, tvec![0, 0], 1);
                    Ok::<_, TractError>(model.wire_node(name, op, &[x, kernel, b])?[0])
                };
                let y = deconv(&mut model, "up2", x, cin, mid, 2, 2, 0, 1)?;
                let mut z = deconv(&mut model, "up", y, mid, cout, 6, 12, 3, 3)?;
                if keep_last {
                    z = deconv(&mut model, "wide", z, cout, cout, 2, 4, 2, 5)?;
                }
                model.select_output_outlets(&[z])?;
                Ok(model)
            };
            for keep_last in [false, true] {
                let input = || {
                    tvec![
                        Tensor::from_shape(&[batch, cin, h, w], &noise(batch * cin * h * w, 9))
                            .unwrap()
                            .into_tvalue(),
                    ]
                };
                let tract_plan = build(keep_last).unwrap().into_optimized().unwrap();
                let want = tract_plan.into_runnable().unwrap().run(input()).unwrap();

                let mut ours = build(keep_last).unwrap().into_decluttered().unwrap();
                assert_eq!(
                    replace_conv_transposes(&mut ours).unwrap(),
                    2,
                    "batch {batch}"
                );
                let ours = ours.into_optimized().unwrap().into_runnable().unwrap();
                let what = format!("batch {batch}, keep_last {keep_last}");
                assert_agrees_here_and_on_pool(&ours, input, &want[0], &what);
            }
        }
    }
}
