//! A direct 3x3 convolution for tract plans: stride 1 or 2, padding 1, group 1, NCHW f32, the
//! shape of nearly every convolution in an SD-family UNet and VAE decoder (stride 2: the
//! UNet's downsamplers).
//!
//! tract 0.23 runs these as im2col + matrix product and spends as long building the patch
//! matrix as multiplying (`onnx/bench/README.md`). Here the input is padded once and laid out
//! flat, row after row with the two padding columns between rows; output point `p = y*Wp + x`
//! is then `sum over c, ky, kx of w[c,ky,kx] * in[c][p + ky*Wp + kx]`, nine shifted runs of
//! the same flat array. So the padded image is its own patch matrix: a register-blocked kernel
//! reads it straight, eight output channels by one run of points at a time. The two points per
//! row that fall on padding columns are computed and thrown away. At stride 2 the padded
//! image is split into its four parity planes, which makes every tap a fixed shift again
//! ([`Geometry`]).
//!
//! [`replace_convs`] swaps these convolutions into a decluttered plan before tract optimises
//! it; `CABIN_TRACT_CONV=1` keeps tract's own (for comparisons).

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::PaddingSpec;
use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::plan_rewrite::{on_tract_pool, same_bits, swap_in};

/// Output channels per register block; the packed weights are laid out in blocks of this.
pub(super) const MR: usize = 8;
/// Points per tile: the widest kernel's run (3 AVX-512 vectors); narrower kernels split it.
pub(super) const NT: usize = 48;

/// Weights of one convolution packed for the kernels: `[block][c][tap][MR]`, the output
/// channels past `cout` zero.
#[derive(Debug)]
struct Packed {
    cin: usize,
    cout: usize,
    weights: Vec<f32>,
}

impl Packed {
    /// `kernel` is OIHW `[cout, cin, 3, 3]`.
    fn new(kernel: &[f32], cout: usize, cin: usize) -> Self {
        let blocks = cout.div_ceil(MR);
        let mut weights = vec![0.0; blocks * cin * 9 * MR];
        for o in 0..cout {
            let (block, lane) = (o / MR, o % MR);
            for c in 0..cin {
                for tap in 0..9 {
                    weights[((block * cin + c) * 9 + tap) * MR + lane] =
                        kernel[(o * cin + c) * 9 + tap];
                }
            }
        }
        Self { cin, cout, weights }
    }

    fn block(&self, block: usize) -> &[f32] {
        let len = self.cin * 9 * MR;
        &self.weights[block * len..(block + 1) * len]
    }
}

/// Which register-blocked kernel runs a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The fastest kernel this machine runs, capped by `CABIN_SIMD` (`portable`, `avx2`) or
    /// [`super::use_portable_kernels`], so the portable code a car without these extensions
    /// runs is tested and measured here too.
    pub fn best() -> Self {
        let cap = std::env::var("CABIN_SIMD").unwrap_or_default();
        if cap == "portable" || super::portable_only() {
            return Self::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if cap != "avx2" && std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Self::Avx2;
            }
        }
        Self::Portable
    }

    /// How many parts [`Kernel::tile_part`] splits a tile into: the AVX2 kernel runs 16 of its
    /// 48 points at a time, so a caller can run every output block over one part before the
    /// next (that part's stretch of the input then stays in L1 across the blocks).
    pub(super) fn parts(self) -> usize {
        if self.is_avx2() { NT / 16 } else { 1 }
    }

    /// Part `part` of [`Kernel::tile`] (of [`Kernel::parts`]); the other points of `out` are
    /// left as they were.
    pub(super) fn tile_part<const TAPS: usize>(
        self,
        input: &[f32],
        stride: usize,
        offsets: &[usize; TAPS],
        weights: &[f32],
        out: &mut [f32],
        part: usize,
    ) {
        assert!(part < self.parts());
        #[cfg(target_arch = "x86_64")]
        if self.is_avx2() {
            assert_tile_bounds(input, stride, offsets, weights, out);
            // SAFETY: the kernel is only AVX2 where AVX2 and FMA were detected; the assert
            // above bounds every read and write.
            unsafe { x86::tile_avx2_part(input, stride, offsets, weights, out, part) };
            return;
        }
        self.tile(input, stride, offsets, weights, out);
    }

    /// Whether this is the AVX2+FMA kernel (false wherever it does not exist).
    pub(super) fn is_avx2(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Self::Avx2 {
            return true;
        }
        false
    }

    /// All kernels this machine can run (the tests check each against the plain sum).
    #[cfg(test)]
    pub(super) fn available() -> Vec<Self> {
        let mut all = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                all.push(Self::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Self::Avx512);
            }
        }
        all
    }

    /// One tile: `out[m*NT + j] = sum over c, tap of w[c][tap][m] * input[c*stride + off[tap] + j]`
    /// for `m < MR`, `j < NT`. With one tap at offset 0 it is a plain matrix product's tile
    /// (`attention` uses it so).
    pub(super) fn tile<const TAPS: usize>(
        self,
        input: &[f32],
        stride: usize,
        offsets: &[usize; TAPS],
        weights: &[f32],
        out: &mut [f32],
    ) {
        assert_tile_bounds(input, stride, offsets, weights, out);
        match self {
            Self::Portable => tile_portable(input, stride, offsets, weights, out),
            // SAFETY: the feature was detected in `best`/`available`; the assert above bounds
            // every read.
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { x86::tile_avx2(input, stride, offsets, weights, out) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { x86::tile_avx512(input, stride, offsets, weights, out) },
        }
    }
}

/// The kernels read and write without bounds checks; this is what makes that sound.
fn assert_tile_bounds<const TAPS: usize>(
    input: &[f32],
    stride: usize,
    offsets: &[usize; TAPS],
    weights: &[f32],
    out: &[f32],
) {
    let cin = weights.len() / (TAPS * MR);
    let furthest = offsets.iter().copied().max().unwrap_or(0);
    let reach = cin.saturating_sub(1) * stride + furthest + NT;
    assert!(
        cin > 0 && input.len() >= reach && weights.len() == cin * TAPS * MR && out.len() == MR * NT
    );
}

fn tile_portable<const TAPS: usize>(
    input: &[f32],
    stride: usize,
    offsets: &[usize; TAPS],
    weights: &[f32],
    out: &mut [f32],
) {
    // 16 points at a time keeps the accumulators in vector registers on NEON and SSE.
    const W: usize = 16;
    for part in 0..NT / W {
        let mut acc = [[0.0f32; W]; MR];
        for (c, taps) in weights.chunks_exact(TAPS * MR).enumerate() {
            let channel = &input[c * stride + part * W..];
            for (tap, w) in taps.chunks_exact(MR).enumerate() {
                let x: &[f32; W] = channel[offsets[tap]..offsets[tap] + W]
                    .try_into()
                    .expect("W points");
                for m in 0..MR {
                    for j in 0..W {
                        acc[m][j] += w[m] * x[j];
                    }
                }
            }
        }
        for (m, acc) in acc.iter().enumerate() {
            out[m * NT + part * W..][..W].copy_from_slice(acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, NT};
    use std::arch::x86_64::*;

    /// 8 channels x 48 points in 24 zmm accumulators.
    ///
    /// # Safety
    /// AVX-512F is available and `input`/`weights` are as long as `Kernel::tile` asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_avx512<const TAPS: usize>(
        input: &[f32],
        stride: usize,
        offsets: &[usize; TAPS],
        weights: &[f32],
        out: &mut [f32],
    ) {
        let cin = weights.len() / (TAPS * MR);
        let mut acc = [[_mm512_setzero_ps(); 3]; MR];
        let mut w = weights.as_ptr();
        for c in 0..cin {
            let channel = unsafe { input.as_ptr().add(c * stride) };
            for &off in offsets {
                let x = unsafe {
                    let p = channel.add(off);
                    [
                        _mm512_loadu_ps(p),
                        _mm512_loadu_ps(p.add(16)),
                        _mm512_loadu_ps(p.add(32)),
                    ]
                };
                for (m, row) in acc.iter_mut().enumerate() {
                    let wm = _mm512_set1_ps(unsafe { *w.add(m) });
                    for (a, &xv) in row.iter_mut().zip(&x) {
                        *a = _mm512_fmadd_ps(wm, xv, *a);
                    }
                }
                w = unsafe { w.add(MR) };
            }
        }
        for (m, row) in acc.iter().enumerate() {
            for (v, a) in row.iter().enumerate() {
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(m * NT + 16 * v), *a) };
            }
        }
    }

    /// 4 channels x 16 points in 8 ymm accumulators, twice per 8-channel block and three
    /// times per tile. (4 x 24 in 12 left too few of the 16 registers for the inputs and the
    /// broadcast: the compiler spilled one input vector per tap to the stack.)
    ///
    /// # Safety
    /// AVX2 and FMA are available and `input`/`weights` are as long as `Kernel::tile` asserts.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2<const TAPS: usize>(
        input: &[f32],
        stride: usize,
        offsets: &[usize; TAPS],
        weights: &[f32],
        out: &mut [f32],
    ) {
        for part in 0..NT / 16 {
            unsafe { tile_avx2_part(input, stride, offsets, weights, out, part) };
        }
    }

    /// Points `16*part..16*part + 16` of the tile, all 8 channels.
    ///
    /// # Safety
    /// As for `tile_avx2`, and `part < NT / 16`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2_part<const TAPS: usize>(
        input: &[f32],
        stride: usize,
        offsets: &[usize; TAPS],
        weights: &[f32],
        out: &mut [f32],
        part: usize,
    ) {
        let cin = weights.len() / (TAPS * MR);
        for half in 0..2 {
            let mut acc = [[_mm256_setzero_ps(); 2]; 4];
            let mut w = unsafe { weights.as_ptr().add(4 * half) };
            for c in 0..cin {
                let channel = unsafe { input.as_ptr().add(c * stride + 16 * part) };
                for &off in offsets {
                    let x = unsafe {
                        let p = channel.add(off);
                        [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))]
                    };
                    for (m, row) in acc.iter_mut().enumerate() {
                        let wm = _mm256_set1_ps(unsafe { *w.add(m) });
                        for (a, &xv) in row.iter_mut().zip(&x) {
                            *a = _mm256_fmadd_ps(wm, xv, *a);
                        }
                    }
                    w = unsafe { w.add(MR) };
                }
            }
            for (m, row) in acc.iter().enumerate() {
                let dst = unsafe { out.as_mut_ptr().add((4 * half + m) * NT + 16 * part) };
                for (v, a) in row.iter().enumerate() {
                    unsafe { _mm256_storeu_ps(dst.add(8 * v), *a) };
                }
            }
        }
    }
}

/// Where an image's padded input lies for the kernel and where its output points fall.
///
/// Stride 1: the padded image row after row, `pitch = w + 2`; output point `p = y*pitch + x`
/// reads tap `(ky, kx)` at `p + ky*pitch + kx`. Stride 2: the padded image split into its
/// four (row, column) parity planes of `pitch = ceil((w + 2) / 2)` columns; tap `(ky, kx)`
/// of output `(y, x)` is padded pixel `(2y + ky, 2x + kx)`, which is plane
/// `(ky % 2, kx % 2)` at `(y + ky/2, x + kx/2)`: again `p` plus a fixed offset per tap. Either
/// way the points past each output row's end are computed and thrown away.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    step: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
    pitch: usize,
    /// Rows of one parity plane (stride 2).
    plane_rows: usize,
    /// Floats per input channel in the scratch, room for the last tile's furthest tap.
    channel: usize,
}

impl Geometry {
    fn new(step: usize, h: usize, w: usize) -> Self {
        let (out_h, out_w) = (out_len(h, step), out_len(w, step));
        let (pitch, plane_rows) = if step == 1 {
            (w + 2, h + 2)
        } else {
            ((w + 2).div_ceil(2), (h + 2).div_ceil(2))
        };
        let tiles = (out_h * pitch).div_ceil(NT);
        let furthest = Self::offsets_for(step, pitch, plane_rows)
            .into_iter()
            .max()
            .unwrap_or(0);
        let planes = if step == 1 { 1 } else { 4 };
        let channel = (planes * plane_rows * pitch).max(furthest + tiles * NT);
        Self {
            step,
            h,
            w,
            out_h,
            out_w,
            pitch,
            plane_rows,
            channel,
        }
    }

    fn offsets_for(step: usize, pitch: usize, plane_rows: usize) -> [usize; 9] {
        std::array::from_fn(|tap| {
            let (ky, kx) = (tap / 3, tap % 3);
            if step == 1 {
                ky * pitch + kx
            } else {
                let plane = (ky % 2) * 2 + kx % 2;
                plane * plane_rows * pitch + (ky / 2) * pitch + kx / 2
            }
        })
    }

    fn offsets(&self) -> [usize; 9] {
        Self::offsets_for(self.step, self.pitch, self.plane_rows)
    }

    fn points(&self) -> usize {
        self.out_h * self.pitch
    }

    /// Where unpadded input pixel `(y, x)` goes within its channel's scratch.
    fn at(&self, y: usize, x: usize) -> usize {
        let (py, px) = (y + 1, x + 1);
        if self.step == 1 {
            py * self.pitch + px
        } else {
            let plane = (py % 2) * 2 + px % 2;
            (plane * self.plane_rows + py / 2) * self.pitch + px / 2
        }
    }
}

/// Output length along an axis of `len` for a 3-tap, pad-1 window moving `step` at a time.
fn out_len(len: usize, step: usize) -> usize {
    (len + 2 - 3) / step + 1
}

/// Runs the convolution on one image: `input` is `[cin, h, w]`, `output` `[cout, out_h,
/// out_w]`, `bias` one value per output channel.
fn conv_image(
    kernel: Kernel,
    packed: &Packed,
    bias: &[f32],
    input: &[f32],
    geometry: Geometry,
    output: &mut [f32],
) {
    SCRATCH.with_borrow_mut(|(padded, results)| {
        conv_image_in(
            kernel, packed, bias, input, geometry, padded, results, output,
        )
    })
}

thread_local! {
    /// The padded input and the tile results, kept between calls: a decoder's are megabytes,
    /// and fresh ones cost a page fault per 4 KiB every call.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = Default::default();
}

#[allow(clippy::too_many_arguments)]
fn conv_image_in(
    kernel: Kernel,
    packed: &Packed,
    bias: &[f32],
    input: &[f32],
    g: Geometry,
    padded: &mut Vec<f32>,
    results: &mut Vec<f32>,
    output: &mut [f32],
) {
    let (h, w, stride) = (g.h, g.w, g.channel);
    let tiles = g.points().div_ceil(NT);
    padded.clear();
    padded.resize(packed.cin * stride, 0.0);
    for c in 0..packed.cin {
        let channel = &mut padded[c * stride..(c + 1) * stride];
        for y in 0..h {
            let src = &input[(c * h + y) * w..][..w];
            if g.step == 1 {
                channel[g.at(y, 0)..][..w].copy_from_slice(src);
            } else {
                for (x, &v) in src.iter().enumerate() {
                    channel[g.at(y, x)] = v;
                }
            }
        }
    }
    let offsets = g.offsets();
    // Each tile's results, all output blocks of it together, so tiles can run in parallel;
    // the tile's stretch of the padded input stays in cache across the blocks.
    let blocks = packed.cout.div_ceil(MR);
    let per_tile = blocks * MR * NT;
    // Every element is written by its tile before it is read.
    results.resize(tiles * per_tile, 0.0);
    let results = &mut results[..tiles * per_tile];
    let run_tile = |(t, out): (usize, &mut [f32])| {
        for part in 0..kernel.parts() {
            for (block, out) in out.chunks_exact_mut(MR * NT).enumerate() {
                kernel.tile_part(
                    &padded[t * NT..],
                    stride,
                    &offsets,
                    packed.block(block),
                    out,
                    part,
                );
            }
        }
    };
    on_tract_pool(results.chunks_mut(per_tile).enumerate().collect(), run_tile);
    // Back to rows, skipping the padding columns.
    for o in 0..packed.cout {
        let bias = bias[o];
        let (block, m) = (o / MR, o % MR);
        let size = g.out_h * g.out_w;
        let plane = &mut output[o * size..(o + 1) * size];
        for (y, row) in plane.chunks_exact_mut(g.out_w).enumerate() {
            for (x0, dst) in row.chunks_mut(NT).enumerate() {
                // Output row y, columns from x0*NT: flat points p..p+len, maybe across tiles.
                let mut p = y * g.pitch + x0 * NT;
                let mut dst = &mut dst[..];
                while !dst.is_empty() {
                    let (t, j) = (p / NT, p % NT);
                    let run = (NT - j).min(dst.len());
                    let src = &results[t * per_tile + (block * MR + m) * NT + j..][..run];
                    let (head, rest) = dst.split_at_mut(run);
                    for (d, v) in head.iter_mut().zip(src) {
                        *d = v + bias;
                    }
                    dst = rest;
                    p += run;
                }
            }
        }
    }
}

/// The tract op: inputs `[n, cin, h, w]` and the bias (one value, or one per output channel,
/// in any shape: tract folds a following per-channel add into it, so it need not be a
/// constant); output `[n, cout, h, w]`, or half that (rounded up) at stride 2.
#[derive(Debug, Clone)]
pub(crate) struct DirectConv3x3 {
    packed: Arc<Packed>,
    kernel: Kernel,
    /// 1 or 2, both axes.
    step: usize,
}

// tract compares ops to merge identical nodes; weights compare by bits, so NaN equals itself.
impl PartialEq for DirectConv3x3 {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.packed, &other.packed);
        self.kernel == other.kernel
            && self.step == other.step
            && (Arc::ptr_eq(a, b)
                || (a.cin, a.cout) == (b.cin, b.cout) && same_bits(&a.weights, &b.weights))
    }
}

impl Eq for DirectConv3x3 {}

impl Op for DirectConv3x3 {
    fn name(&self) -> StaticName {
        "DirectConv3x3".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {} channels, stride {}, {:?} kernel",
            self.packed.cin, self.packed.cout, self.step, self.kernel
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DirectConv3x3 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, bias) = args_2!(inputs);
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let cout = self.packed.cout;
        let bias: Vec<f32> = match bias.len() {
            1 => vec![bias[0]; cout],
            n if n == cout => bias.to_vec(),
            n => bail!("DirectConv3x3: {n} bias values for {cout} output channels"),
        };
        let shape = input.shape();
        ensure!(
            shape.len() == 4 && shape[1] == self.packed.cin,
            "DirectConv3x3 expects [n, {}, h, w], got {shape:?}",
            self.packed.cin
        );
        let (n, h, w) = (shape[0], shape[2], shape[3]);
        let data = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let g = Geometry::new(self.step, h, w);
        // Written straight into the tensor tract gets: no copy, no second allocation.
        let mut tensor = Tensor::zero::<f32>(&[n, self.packed.cout, g.out_h, g.out_w])?;
        let mut view = tensor.try_as_plain_ram_mut()?;
        let output = view.as_slice_mut::<f32>()?;
        if h * w > 0 {
            let images = data.chunks_exact(self.packed.cin * h * w);
            let outputs = output.chunks_exact_mut(self.packed.cout * g.out_h * g.out_w);
            let run = |(image, out): (&[f32], &mut [f32])| {
                conv_image(self.kernel, &self.packed, &bias, image, g, out)
            };
            // A batch (guidance's two) splits over the pool an image each: larger pieces than
            // tiles. Inside the pool the tiles of an image then run in turn.
            if n > 1 {
                on_tract_pool(images.zip(outputs).collect(), run);
            } else {
                images.zip(outputs).for_each(run);
            }
        }
        Ok(tvec!(tensor.into_tvalue()))
    }
}

impl TypedOp for DirectConv3x3 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(shape.rank() == 4 && inputs.len() == 2);
        let side = |d: &TDim| -> TractResult<TDim> {
            Ok(if self.step == 1 {
                d.clone()
            } else {
                out_len(d.to_usize()?, self.step).to_dim()
            })
        };
        let out = [
            shape[0].clone(),
            self.packed.cout.to_dim(),
            side(&shape[2])?,
            side(&shape[3])?,
        ];
        Ok(tvec!(f32::fact(out)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let shape = &inputs[0].shape;
        let points = shape[0].clone() * &shape[2] * &shape[3] / (self.step * self.step) as u64;
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            points * (self.packed.cin * 9 * self.packed.cout)
        )))
    }

    as_op!();
}

/// The direct op for `node`, when it is a convolution this file handles.
fn direct_for(model: &TypedModel, node: &TypedNode, kernel: Kernel) -> Option<DirectConv3x3> {
    let conv = node.op_as::<Conv>()?;
    let spec = &conv.pool_spec;
    let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&d| d == 1));
    let explicit_one = match &spec.padding {
        PaddingSpec::Explicit(before, after) | PaddingSpec::ExplicitOnnxPool(before, after, _) => {
            before.iter().chain(after).all(|&p| p == 1)
        }
        _ => false,
    };
    // SAME pads a 3-tap window by one on each side only at stride 1.
    let same = matches!(
        spec.padding,
        PaddingSpec::SameUpper | PaddingSpec::SameLower
    );
    let step = match spec.strides.as_deref() {
        None => 1,
        Some(s) if s.iter().all(|&d| d == 1) => 1,
        Some([2, 2]) => 2,
        Some(_) => return None,
    };
    let padded_by_one = explicit_one || (same && step == 1);
    if conv.q_params.is_some()
        || conv.group != 1
        || conv.kernel_fmt != KernelFormat::OIHW
        || spec.data_format != DataFormat::NCHW
        || spec.kernel_shape.as_slice() != [3, 3]
        || !ones(&spec.dilations)
        || !padded_by_one
        || node.inputs.len() != 3
    {
        return None;
    }
    let input = model.outlet_fact(node.inputs[0]).ok()?;
    if input.datum_type != f32::datum_type()
        || input.rank() != 4
        || (step == 2 && input.shape.as_concrete().is_none())
    {
        return None;
    }
    let weights = model.outlet_fact(node.inputs[1]).ok()?.konst.clone()?;
    let bias = model.outlet_fact(node.inputs[2]).ok()?;
    let (cout, cin) = (spec.output_channels, spec.input_channels);
    if weights.shape() != [cout, cin, 3, 3]
        || weights.datum_type() != f32::datum_type()
        || bias.datum_type != f32::datum_type()
        || !(bias.shape.volume() == 1.to_dim() || bias.shape.volume() == cout.to_dim())
    {
        return None;
    }
    let weights = weights.try_as_plain_ram().ok()?;
    let packed = Packed::new(weights.as_slice::<f32>().ok()?, cout, cin);
    Some(DirectConv3x3 {
        packed: Arc::new(packed),
        kernel,
        step,
    })
}

/// Replaces every convolution [`DirectConv3x3`] handles in a decluttered `model`; returns how
/// many. Left alone with `CABIN_TRACT_CONV=1`.
pub(crate) fn replace_convs(model: &mut TypedModel) -> TractResult<usize> {
    if std::env::var_os("CABIN_TRACT_CONV").is_some_and(|v| v == "1") {
        return Ok(0);
    }
    let kernel = Kernel::best();
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = direct_for(model, node, kernel) else {
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

    /// The textbook sum, zero padding, for comparison.
    fn reference(
        input: &[f32],
        kernel: &[f32],
        bias: &[f32],
        (cin, cout, h, w): (usize, usize, usize, usize),
        step: usize,
    ) -> Vec<f32> {
        let (oh, ow) = (out_len(h, step), out_len(w, step));
        let mut out = vec![0.0; cout * oh * ow];
        for o in 0..cout {
            for y in 0..oh {
                for x in 0..ow {
                    let mut sum = f64::from(bias[o]);
                    for c in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (y * step + ky, x * step + kx);
                                if iy < 1 || ix < 1 || iy > h || ix > w {
                                    continue;
                                }
                                let v = input[(c * h + iy - 1) * w + ix - 1];
                                sum += f64::from(v * kernel[((o * cin + c) * 3 + ky) * 3 + kx]);
                            }
                        }
                    }
                    out[(o * oh + y) * ow + x] = sum as f32;
                }
            }
        }
        out
    }

    #[test]
    fn every_kernel_matches_the_plain_sum_on_awkward_shapes() {
        // Channel counts off the block size, rows shorter and longer than a tile, one pixel.
        let shapes = [
            (1, 1, 1, 1),
            (3, 5, 7, 9),
            (4, 8, 16, 40),
            (17, 13, 5, 61),
            (8, 20, 2, 3),
        ];
        for kernel in Kernel::available() {
            for (i, &(cin, cout, h, w)) in shapes.iter().enumerate() {
                let input = noise(cin * h * w, i as u64);
                let weights = noise(cout * cin * 9, 100 + i as u64);
                let bias = noise(cout, 200 + i as u64);
                let packed = Packed::new(&weights, cout, cin);
                for step in [1, 2] {
                    let want = reference(&input, &weights, &bias, (cin, cout, h, w), step);
                    // On the calling thread, and split over a pool as tract's executor runs it.
                    for threads in [1, 3] {
                        let mut got = vec![f32::NAN; want.len()];
                        let pool = tract_linalg::multithread::Executor::multithread(threads);
                        let g = Geometry::new(step, h, w);
                        tract_linalg::multithread::multithread_tract_scope(pool, || {
                            conv_image(kernel, &packed, &bias, &input, g, &mut got)
                        });
                        for (j, (g, e)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                                "{kernel:?} stride {step} {threads} threads {cin}->{cout} \
                                 {h}x{w} point {j}: {g} != {e}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_plan_with_the_direct_op_gives_what_tract_gives() {
        // Two convolutions and a stride-2 one, a per-channel runtime add (a UNet's time embedding: at batch 1
        // tract folds it into the first one's bias) and an activation between; tract's own
        // plan and the rewritten one must agree, and the rewritten one must hold no Conv.
        let (cin, mid, cout, h, w) = (6, 16, 5, 9, 23);
        for batch in [1, 2] {
            let build = || -> TractResult<TypedModel> {
                let mut model = TypedModel::default();
                let x = model.add_source("x", f32::fact([batch, cin, h, w]))?;
                let t = model.add_source("t", f32::fact([1, mid, 1, 1]))?;
                let conv = |model: &mut TypedModel, name: &str, x, ci: usize, co: usize, seed| {
                    let step = if name == "down" { 2 } else { 1 };
                    let k = model.add_const(
                        format!("{name}.k"),
                        Tensor::from_shape(&[co, ci, 3, 3], &noise(co * ci * 9, seed))?,
                    )?;
                    let b = model.add_const(
                        format!("{name}.b"),
                        Tensor::from_shape(&[co], &noise(co, seed + 1))?,
                    )?;
                    let spec = tract_onnx::tract_core::ops::cnn::PoolSpec {
                        data_format: DataFormat::NCHW,
                        kernel_shape: tvec![3, 3],
                        padding: PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
                        dilations: None,
                        strides: (step == 2).then(|| tvec![2, 2]),
                        input_channels: ci,
                        output_channels: co,
                    };
                    let op = Conv::new(spec, KernelFormat::OIHW, 1, None);
                    Ok::<_, TractError>(model.wire_node(name, op, &[x, k, b])?[0])
                };
                let y = conv(&mut model, "a", x, cin, mid, 1)?;
                let y =
                    model.wire_node("temb", tract_onnx::tract_core::ops::math::add(), &[y, t])?[0];
                let zero = model.add_const("zero", tensor0(0f32).broadcast_into_rank(4)?)?;
                let y = model.wire_node(
                    "relu",
                    tract_onnx::tract_core::ops::math::max(),
                    &[y, zero],
                )?[0];
                let z = conv(&mut model, "b", y, mid, cout, 3)?;
                // A downsampler: stride 2 on odd sides.
                let z = conv(&mut model, "down", z, cout, cout, 5)?;
                model.select_output_outlets(&[z])?;
                Ok(model)
            };
            let input = || {
                tvec![
                    Tensor::from_shape(&[batch, cin, h, w], &noise(batch * cin * h * w, 9))
                        .unwrap()
                        .into_tvalue(),
                    Tensor::from_shape(&[1, mid, 1, 1], &noise(mid, 10))
                        .unwrap()
                        .into_tvalue(),
                ]
            };
            let tract_plan = build().unwrap().into_optimized().unwrap();
            let want = tract_plan.into_runnable().unwrap().run(input()).unwrap();

            let mut ours = build().unwrap().into_decluttered().unwrap();
            assert_eq!(replace_convs(&mut ours).unwrap(), 3, "batch {batch}");
            let ours = ours.into_optimized().unwrap();
            assert!(ours.nodes().iter().all(|n| n.op_as::<Conv>().is_none()));
            // On the calling thread, and on a pool (a batch then splits an image per thread).
            let ours = ours.into_runnable().unwrap();
            let what = format!("batch {batch}");
            assert_agrees_here_and_on_pool(&ours, input, &want[0], &what);
        }
    }
}
