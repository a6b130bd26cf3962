//! Products with a constant weight matrix, for tract plans: a transformer's projections and
//! feed-forward (`amk,kn->amn`, `ambk,bkn->amn`) and 1x1 convolutions (`NIHW,OI->NOHW`, and
//! the two that also move the channels, `NIHW,OI->NHWO` and `NHWI,OI->NOHW`), each with the
//! bias add that follows it.
//!
//! tract 0.23 packs the activations for its matrix kernel on every call, and on our UNet's
//! matrices (a few hundred rows, 96 to 896 columns) reached 45–80 GFLOP/s against a 101
//! GFLOP/s core (`onnx/bench/README.md`). Here the weights are packed once, at load, and the
//! activations are read where they lie: channel-major ones (`[k][points]`) are the vector
//! operand of the convolution's tile kernel, eight output channels at a time; token-major
//! ones (`[rows][k]`) are broadcast a value at a time, eight rows by up to 48 output columns
//! per tile. Each tile is written out with its bias, transposed where the output's channel
//! axis is elsewhere.
//!
//! [`replace_linears`] swaps them into a decluttered plan; `CABIN_TRACT_LINEAR=1` keeps
//! tract's own.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::conv3x3::{Kernel, MR, NT};
use super::plan_rewrite::{einsum_letters, on_tract_pool, same_bits, swap_in};

/// Where the contracted and the output channel axes sit. Both tensors have the same other
/// axes in the same order; `points` of them (the trailing ones, or all for token-major data)
/// run inside each of the `outer` leading ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Layout {
    /// The input is `[outer.., k, points..]`; else `[outer.., points.., k]`.
    input_channel_major: bool,
    /// The output is `[outer.., n, points..]`; else `[outer.., points.., n]`.
    output_channel_major: bool,
    /// Leading axes outside the product.
    outer_axes: usize,
    /// How many input axes make up `k`.
    k_axes: usize,
}

impl Layout {
    /// (k, points per outer item) for an input of `shape`.
    fn sizes(&self, shape: &[usize]) -> (usize, usize) {
        let outer: usize = shape[..self.outer_axes].iter().product();
        let k_start = if self.input_channel_major {
            self.outer_axes
        } else {
            shape.len() - self.k_axes
        };
        let k: usize = shape[k_start..k_start + self.k_axes].iter().product();
        let points = shape.iter().product::<usize>() / (outer * k).max(1);
        (k, points)
    }

    /// The output shape for an input of `shape` and `n` output channels.
    fn output_shape<D: DimLike>(&self, shape: &[D], n: usize) -> TVec<D> {
        let mut others: TVec<D> = if self.input_channel_major {
            let k_end = self.outer_axes + self.k_axes;
            shape[..self.outer_axes]
                .iter()
                .chain(&shape[k_end..])
                .cloned()
                .collect()
        } else {
            shape[..shape.len() - self.k_axes].iter().cloned().collect()
        };
        let at = if self.output_channel_major {
            self.outer_axes
        } else {
            others.len()
        };
        others.insert(at, D::from(n));
        others
    }
}

/// Rows and columns of the AVX2 micro-tile for token-major activations: 6 x 16 in 12 ymm
/// accumulators, two weight loads and six broadcasts per input channel.
const AVX2_ROWS: usize = 6;
const AVX2_COLUMNS: usize = 16;
/// Row blocks one worker takes at a time on that path: the weight panel (16 columns by `k`)
/// stays in cache across them.
const AVX2_STRIPE_BLOCKS: usize = 4;

/// The weights, `k` by `n`, packed for the side the activations come in on.
#[derive(Debug)]
struct Packed {
    k: usize,
    n: usize,
    /// Channel-major input: `[n block of MR][k][MR]`. Token-major: `[n panel of width][k][width]`
    /// (width NT, or `AVX2_COLUMNS` for the AVX2 kernel). Zero past `n` either way. Starts at
    /// `start`, on a cache line, so a 16-column panel row is one line.
    values: Vec<f32>,
    start: usize,
}

impl Packed {
    /// `w(i, j)` is the weight from input channel `i` to output channel `j`.
    fn new(k: usize, n: usize, width: usize, w: impl Fn(usize, usize) -> f32) -> Self {
        let groups = n.div_ceil(width);
        let mut values = vec![0.0; groups * k * width + 16];
        let start = values.as_ptr().align_offset(64).min(16);
        for j in 0..n {
            let (group, lane) = (j / width, j % width);
            for i in 0..k {
                values[start + (group * k + i) * width + lane] = w(i, j);
            }
        }
        Self {
            k,
            n,
            values,
            start,
        }
    }

    fn values(&self) -> &[f32] {
        &self.values[self.start..self.values.len() - 16 + self.start]
    }

    fn group(&self, width: usize, group: usize) -> &[f32] {
        &self.values()[group * self.k * width..][..self.k * width]
    }
}

/// An output pointer shared by the pool's workers, each writing elements no other touches.
#[derive(Clone, Copy)]
pub(super) struct Shared(*mut f32);
// SAFETY: only used for disjoint writes into a buffer that outlives the pool's scope.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    pub(super) fn new(buffer: &mut [f32]) -> Self {
        Self(buffer.as_mut_ptr())
    }

    /// The `len` values from `start` on.
    ///
    /// # Safety
    /// They are inside the buffer, and no other thread touches them while this lives.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn run<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }

    /// # Safety
    /// As for `pointer::add`.
    pub(super) unsafe fn offset(self, i: usize) -> Self {
        Self(unsafe { self.0.add(i) })
    }
}

/// The tract op: input as [`Layout`] says, output the same with `k`'s axes replaced by one of
/// `n`; the bias is one value per output channel (zeros when the product had none).
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    packed: Arc<Packed>,
    bias: Arc<Vec<f32>>,
    layout: Layout,
    kernel: Kernel,
}

// tract compares ops to merge identical nodes; values compare by bits, so NaN equals itself.
impl PartialEq for Linear {
    fn eq(&self, other: &Self) -> bool {
        self.layout == other.layout
            && self.kernel == other.kernel
            && self.packed.k == other.packed.k
            && self.packed.n == other.packed.n
            && same_bits(&self.bias, &other.bias)
            && (Arc::ptr_eq(&self.packed, &other.packed)
                || same_bits(self.packed.values(), other.packed.values()))
    }
}

impl Eq for Linear {}

impl Linear {
    /// One outer item: `x` is `[k][points]` or `[points][k]`, `out` `[n][points]` or
    /// `[points][n]`, as the layout says.
    fn item(&self, x: &[f32], points: usize, out: Shared) {
        let (k, n) = (self.packed.k, self.packed.n);
        let bias = &self.bias[..];
        let channel_major_out = self.layout.output_channel_major;
        if self.layout.input_channel_major {
            // Points along the vector axis: the input, padded to whole tiles, is the kernel's
            // `[channel][point]` operand as it stands.
            let stride = points.div_ceil(NT) * NT;
            PADDED.with_borrow_mut(|padded| {
                padded.clear();
                padded.resize(k * stride, 0.0);
                for (dst, src) in padded.chunks_exact_mut(stride).zip(x.chunks_exact(points)) {
                    dst[..points].copy_from_slice(src);
                }
                let padded = &padded[..];
                let stripe = |t: usize| {
                    let mut tile = [0.0f32; MR * NT];
                    let p0 = t * NT;
                    let width = NT.min(points - p0);
                    for block in 0..n.div_ceil(MR) {
                        let weights = self.packed.group(MR, block);
                        self.kernel
                            .tile(&padded[p0..], stride, &[0], weights, &mut tile);
                        let o0 = block * MR;
                        let channels = MR.min(n - o0);
                        // SAFETY (both arms): this stripe alone writes points p0..p0+width.
                        if channel_major_out {
                            for m in 0..channels {
                                let dst = unsafe { out.run((o0 + m) * points + p0, width) };
                                let b = bias[o0 + m];
                                for (d, &v) in dst.iter_mut().zip(&tile[m * NT..][..width]) {
                                    *d = v + b;
                                }
                            }
                        } else {
                            for j in 0..width {
                                let dst = unsafe { out.run((p0 + j) * n + o0, channels) };
                                for (m, d) in dst.iter_mut().enumerate() {
                                    *d = tile[m * NT + j] + bias[o0 + m];
                                }
                            }
                        }
                    }
                };
                on_tract_pool((0..points.div_ceil(NT)).collect(), stripe);
            });
        } else if cfg!(target_arch = "x86_64") && self.kernel.is_avx2() {
            self.rows_avx2(x, points, out);
        } else {
            // Output channels along the vector axis, eight rows broadcast a value at a time.
            let stripe = |r: usize| {
                let p0 = r * MR;
                let rows = MR.min(points - p0);
                let mut spare = Vec::new();
                let block = if rows == MR {
                    &x[p0 * k..(p0 + MR) * k]
                } else {
                    spare.resize(MR * k, 0.0);
                    spare[..rows * k].copy_from_slice(&x[p0 * k..(p0 + rows) * k]);
                    &spare[..]
                };
                let mut tile = [0.0f32; MR * NT];
                for panel in 0..n.div_ceil(NT) {
                    let j0 = panel * NT;
                    let width = NT.min(n - j0);
                    rows_tile(
                        self.kernel,
                        block,
                        self.packed.group(NT, panel),
                        width,
                        &mut tile,
                    );
                    let bias = &bias[j0..][..width];
                    // SAFETY (both arms): this stripe alone writes points p0..p0+rows.
                    if channel_major_out {
                        for (j, &b) in bias.iter().enumerate() {
                            let dst = unsafe { out.run((j0 + j) * points + p0, rows) };
                            for (m, d) in dst.iter_mut().enumerate() {
                                *d = tile[m * NT + j] + b;
                            }
                        }
                    } else {
                        for m in 0..rows {
                            let dst = unsafe { out.run((p0 + m) * n + j0, width) };
                            for ((d, &v), &b) in dst.iter_mut().zip(&tile[m * NT..]).zip(bias) {
                                *d = v + b;
                            }
                        }
                    }
                }
            };
            on_tract_pool((0..points.div_ceil(MR)).collect(), stripe);
        }
    }

    /// Token-major rows on AVX2: each worker packs a stripe of rows (`[block of 6][k][6]`,
    /// so the broadcasts read one stream) and runs every 16-column weight panel over it.
    fn rows_avx2(&self, x: &[f32], rows: usize, out: Shared) {
        let (k, n) = (self.packed.k, self.packed.n);
        let bias = &self.bias[..];
        let channel_major_out = self.layout.output_channel_major;
        let stripe_rows = AVX2_ROWS * AVX2_STRIPE_BLOCKS;
        let stripe = |stripe: usize| {
            let r0 = stripe * stripe_rows;
            let count = stripe_rows.min(rows - r0);
            let blocks = count.div_ceil(AVX2_ROWS);
            PADDED.with_borrow_mut(|packed_rows| {
                packed_rows.clear();
                packed_rows.resize(blocks * k * AVX2_ROWS, 0.0);
                for r in 0..count {
                    let (block, m) = (r / AVX2_ROWS, r % AVX2_ROWS);
                    let dst = &mut packed_rows[block * k * AVX2_ROWS..][..k * AVX2_ROWS];
                    for (d, &v) in dst[m..]
                        .iter_mut()
                        .step_by(AVX2_ROWS)
                        .zip(&x[(r0 + r) * k..][..k])
                    {
                        *d = v;
                    }
                }
                let mut tile = [0.0f32; AVX2_ROWS * AVX2_COLUMNS];
                for panel in 0..n.div_ceil(AVX2_COLUMNS) {
                    let weights = self.packed.group(AVX2_COLUMNS, panel);
                    let j0 = panel * AVX2_COLUMNS;
                    let width = AVX2_COLUMNS.min(n - j0);
                    for block in 0..blocks {
                        let a = &packed_rows[block * k * AVX2_ROWS..][..k * AVX2_ROWS];
                        let p0 = r0 + block * AVX2_ROWS;
                        let here = AVX2_ROWS.min(count - block * AVX2_ROWS);
                        if !channel_major_out && here == AVX2_ROWS && width == AVX2_COLUMNS {
                            // A whole tile of row-major output: straight from the registers,
                            // with its bias.
                            let bias: &[f32; AVX2_COLUMNS] =
                                bias[j0..][..AVX2_COLUMNS].try_into().expect("16 columns");
                            // SAFETY: rows p0..p0+6, columns j0..j0+16 of this stripe's rows.
                            let dst = unsafe { out.run(p0 * n + j0, (AVX2_ROWS - 1) * n + width) };
                            rows_6x16_out(self.kernel, a, weights, bias, dst, n);
                            continue;
                        }
                        rows_6x16_out(
                            self.kernel,
                            a,
                            weights,
                            &[0.0; AVX2_COLUMNS],
                            &mut tile,
                            AVX2_COLUMNS,
                        );
                        // SAFETY (both arms): this stripe alone writes rows r0..r0+count.
                        if channel_major_out {
                            for j in 0..width {
                                let dst = unsafe { out.run((j0 + j) * rows + p0, here) };
                                for (m, d) in dst.iter_mut().enumerate() {
                                    *d = tile[m * AVX2_COLUMNS + j] + bias[j0 + j];
                                }
                            }
                        } else {
                            for m in 0..here {
                                let dst = unsafe { out.run((p0 + m) * n + j0, width) };
                                let src = &tile[m * AVX2_COLUMNS..][..width];
                                for ((d, &v), &b) in dst.iter_mut().zip(src).zip(&bias[j0..]) {
                                    *d = v + b;
                                }
                            }
                        }
                    }
                }
            });
        };
        on_tract_pool((0..rows.div_ceil(stripe_rows)).collect(), stripe);
    }
}

thread_local! {
    /// The channel-major input padded to whole tiles, or a stripe of token-major rows packed
    /// for the AVX2 kernel; kept between calls.
    static PADDED: std::cell::RefCell<Vec<f32>> = Default::default();
}

/// `out[m*pitch + j] = bias[j] + sum over c of a[c*6 + m] * panel[c*16 + j]`: six packed rows
/// by one 16-column panel (the AVX2 token-major path), the output rows `pitch` apart.
fn rows_6x16_out(
    kernel: Kernel,
    a: &[f32],
    panel: &[f32],
    bias: &[f32; AVX2_COLUMNS],
    out: &mut [f32],
    pitch: usize,
) {
    let k = panel.len() / AVX2_COLUMNS;
    // The kernel reads and writes without bounds checks; this is what makes that sound.
    assert!(
        k > 0
            && a.len() == k * AVX2_ROWS
            && panel.len() == k * AVX2_COLUMNS
            && pitch >= AVX2_COLUMNS
            && out.len() >= (AVX2_ROWS - 1) * pitch + AVX2_COLUMNS
    );
    #[cfg(target_arch = "x86_64")]
    if kernel.is_avx2() {
        // SAFETY: AVX2 and FMA were detected for this kernel; the assert bounds every access.
        unsafe { x86::rows_6x16_out_avx2(a, panel, bias, out, pitch) };
        return;
    }
    let _ = kernel;
    for m in 0..AVX2_ROWS {
        for j in 0..AVX2_COLUMNS {
            out[m * pitch + j] = bias[j]
                + (0..k)
                    .map(|c| a[c * AVX2_ROWS + m] * panel[c * AVX2_COLUMNS + j])
                    .sum::<f32>();
        }
    }
}

/// `out[m*NT + j] = sum over c of rows[m*k + c] * panel[c*NT + j]` for `m < MR`, `j < width`
/// (`rows` is `MR` rows of `k`); columns past `width` are left as they were or zero.
pub(super) fn rows_tile(
    kernel: Kernel,
    rows: &[f32],
    panel: &[f32],
    width: usize,
    out: &mut [f32],
) {
    let k = rows.len() / MR;
    // The kernels read without bounds checks; this is what makes that sound.
    assert!(
        k > 0
            && rows.len() == MR * k
            && panel.len() == k * NT
            && out.len() == MR * NT
            && (1..=NT).contains(&width)
    );
    match kernel {
        Kernel::Portable => rows_tile_portable(rows, panel, out),
        // SAFETY: the features were detected in `Kernel::best`/`available`; the assert above
        // bounds every access.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { x86::rows_tile_avx2(rows, panel, out) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe {
            match width.div_ceil(16) {
                1 => x86::rows_tile_avx512::<1>(rows, panel, out),
                2 => x86::rows_tile_avx512::<2>(rows, panel, out),
                _ => x86::rows_tile_avx512::<3>(rows, panel, out),
            }
        },
    }
}

fn rows_tile_portable(rows: &[f32], panel: &[f32], out: &mut [f32]) {
    let k = rows.len() / MR;
    const W: usize = 16;
    for part in 0..NT / W {
        let mut acc = [[0.0f32; W]; MR];
        for c in 0..k {
            let w: &[f32; W] = panel[c * NT + part * W..][..W].try_into().expect("W");
            for (m, acc) in acc.iter_mut().enumerate() {
                let x = rows[m * k + c];
                for (a, &w) in acc.iter_mut().zip(w) {
                    *a += x * w;
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
    use super::{AVX2_COLUMNS, AVX2_ROWS, MR, NT};
    use std::arch::x86_64::*;

    /// 8 rows x `16 * V` columns in `8 * V` zmm accumulators.
    ///
    /// # Safety
    /// AVX-512F is available and the slices are as long as `rows_tile` asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows_tile_avx512<const V: usize>(
        rows: &[f32],
        panel: &[f32],
        out: &mut [f32],
    ) {
        let k = rows.len() / MR;
        let mut acc = [[_mm512_setzero_ps(); V]; MR];
        let (x, w) = (rows.as_ptr(), panel.as_ptr());
        for c in 0..k {
            let wv: [__m512; V] =
                std::array::from_fn(|v| unsafe { _mm512_loadu_ps(w.add(c * NT + 16 * v)) });
            for (m, row) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(unsafe { *x.add(m * k + c) });
                for (a, &wv) in row.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(b, wv, *a);
                }
            }
        }
        for (m, row) in acc.iter().enumerate() {
            for (v, a) in row.iter().enumerate() {
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(m * NT + 16 * v), *a) };
            }
        }
    }

    /// 6 packed rows x 16 columns in 12 ymm accumulators started at the bias, the rows stored
    /// `pitch` apart.
    ///
    /// # Safety
    /// AVX2 and FMA are available and the slices are as long as `rows_6x16_out` asserts.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_6x16_out_avx2(
        a: &[f32],
        panel: &[f32],
        bias: &[f32; AVX2_COLUMNS],
        out: &mut [f32],
        pitch: usize,
    ) {
        let k = panel.len() / AVX2_COLUMNS;
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(bias.as_ptr()),
                _mm256_loadu_ps(bias.as_ptr().add(8)),
            )
        };
        let mut acc = [[b0, b1]; AVX2_ROWS];
        let (x, w) = (a.as_ptr(), panel.as_ptr());
        for c in 0..k {
            let (w0, w1) = unsafe {
                (
                    _mm256_loadu_ps(w.add(c * AVX2_COLUMNS)),
                    _mm256_loadu_ps(w.add(c * AVX2_COLUMNS + 8)),
                )
            };
            for (m, row) in acc.iter_mut().enumerate() {
                let b = unsafe { _mm256_broadcast_ss(&*x.add(c * AVX2_ROWS + m)) };
                row[0] = _mm256_fmadd_ps(b, w0, row[0]);
                row[1] = _mm256_fmadd_ps(b, w1, row[1]);
            }
        }
        for (m, row) in acc.iter().enumerate() {
            unsafe {
                _mm256_storeu_ps(out.as_mut_ptr().add(m * pitch), row[0]);
                _mm256_storeu_ps(out.as_mut_ptr().add(m * pitch + 8), row[1]);
            }
        }
    }

    /// 4 rows x 16 columns in 8 ymm accumulators, over the 8 x 48 tile (4 x 24 spilled a
    /// weight vector to the stack: too few of the 16 registers left).
    ///
    /// # Safety
    /// AVX2 and FMA are available and the slices are as long as `rows_tile` asserts.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_tile_avx2(rows: &[f32], panel: &[f32], out: &mut [f32]) {
        let k = rows.len() / MR;
        let (x, w) = (rows.as_ptr(), panel.as_ptr());
        for half in 0..2 {
            for part in 0..NT / 16 {
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                for c in 0..k {
                    let wv: [__m256; 2] = std::array::from_fn(|v| unsafe {
                        _mm256_loadu_ps(w.add(c * NT + 16 * part + 8 * v))
                    });
                    for (m, row) in acc.iter_mut().enumerate() {
                        let b = _mm256_set1_ps(unsafe { *x.add((4 * half + m) * k + c) });
                        for (a, &wv) in row.iter_mut().zip(&wv) {
                            *a = _mm256_fmadd_ps(b, wv, *a);
                        }
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
}

impl Op for Linear {
    fn name(&self) -> StaticName {
        "Linear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {}, {:?}, {:?} kernel",
            self.packed.k, self.packed.n, self.layout, self.kernel
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape = input.shape();
        let minimum = self.layout.outer_axes + self.layout.k_axes;
        ensure!(
            shape.len() >= minimum,
            "Linear: input {shape:?} has too few axes"
        );
        let (k, points) = self.layout.sizes(shape);
        ensure!(
            k == self.packed.k,
            "Linear: input {shape:?} does not have {} input channels",
            self.packed.k
        );
        let n = self.packed.n;
        let out_shape = self.layout.output_shape(shape, n);
        let x = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut tensor = Tensor::zero::<f32>(&out_shape)?;
        let mut view = tensor.try_as_plain_ram_mut()?;
        let output = view.as_slice_mut::<f32>()?;
        if points > 0 && !self.layout.input_channel_major && !self.layout.output_channel_major {
            // Token-major in and out: the outer items are just more rows, split over the pool
            // in one go (per item, a batch of two left the pool's threads idle between).
            self.item(x, x.len() / k, Shared(output.as_mut_ptr()));
        } else if points > 0 {
            let base = Shared(output.as_mut_ptr());
            for (o, item) in x.chunks_exact(k * points).enumerate() {
                // SAFETY: item `o`'s outputs are its own `n * points` slice of `output`.
                let out = unsafe { base.offset(o * n * points) };
                self.item(item, points, out);
            }
        }
        Ok(tvec!(tensor.into_tvalue()))
    }
}

impl TypedOp for Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1);
        let shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        ensure!(shape.len() >= self.layout.outer_axes + self.layout.k_axes);
        Ok(tvec!(f32::fact(
            self.layout.output_shape(&shape, self.packed.n)
        )))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let volume = inputs[0].shape.volume();
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            volume * self.packed.n
        )))
    }

    as_op!();
}

/// The op for `node` when it is an f32 EinSum of an activation with a constant matrix in one
/// of the layouts [`Layout`] covers (the bias is added later).
fn linear_for(model: &TypedModel, node: &TypedNode, kernel: Kernel) -> Option<Linear> {
    let op = node.op_as::<EinSum>()?;
    if op.q_params.is_some() || op.operating_dt != f32::datum_type() || node.inputs.len() != 2 {
        return None;
    }
    let (x, w, y) = einsum_letters(op)?;
    let x_fact = model.outlet_fact(node.inputs[0]).ok()?;
    let w_fact = model.outlet_fact(node.inputs[1]).ok()?;
    let x_shape = x_fact.shape.as_concrete()?;
    let weights = w_fact.konst.clone()?;
    if x_fact.datum_type != f32::datum_type() || weights.datum_type() != f32::datum_type() {
        return None;
    }
    // The one output channel letter: in the weights and the output, not the input.
    let n_letters: Vec<char> = w
        .iter()
        .copied()
        .filter(|c| y.contains(c) && !x.contains(c))
        .collect();
    let [n_letter] = n_letters[..] else {
        return None;
    };
    // The weights are [contracted.., n] or [n, contracted..]; every other weight letter is
    // contracted, in the input and not the output.
    let contracted: Vec<char> = w.iter().copied().filter(|&c| c != n_letter).collect();
    if contracted.is_empty()
        || contracted.iter().any(|c| y.contains(c) || !x.contains(c))
        || !(w[w.len() - 1] == n_letter || w[0] == n_letter)
        || w.iter().collect::<std::collections::HashSet<_>>().len() != w.len()
    {
        return None;
    }
    let n_last = w[w.len() - 1] == n_letter;
    // The contracted letters sit together in the input, in the weights' order.
    let k_at = x.iter().position(|&c| c == contracted[0])?;
    if x.get(k_at..k_at + contracted.len())? != contracted.as_slice() {
        return None;
    }
    // The other letters, the same and in the same order on both sides.
    let others: Vec<char> = x
        .iter()
        .copied()
        .filter(|c| !contracted.contains(c))
        .collect();
    let y_others: Vec<char> = y.iter().copied().filter(|&c| c != n_letter).collect();
    let n_at = y.iter().position(|&c| c == n_letter)?;
    if others != y_others || y.len() != others.len() + 1 {
        return None;
    }
    let input_channel_major = k_at < others.len();
    let output_channel_major = n_at < others.len();
    let outer_axes = match (input_channel_major, output_channel_major) {
        (true, true) if k_at == n_at => k_at,
        (true, false) => k_at,
        (false, true) => n_at,
        (false, false) => 0,
        _ => return None,
    };
    let layout = Layout {
        input_channel_major,
        output_channel_major,
        outer_axes,
        k_axes: contracted.len(),
    };
    let k: usize = x_shape[k_at..k_at + contracted.len()].iter().product();
    let n = *weights.shape().get(if n_last { w.len() - 1 } else { 0 })?;
    if weights.len() != k * n || k == 0 || n == 0 || x_shape.iter().product::<usize>() == 0 {
        return None;
    }
    let values = weights.try_as_plain_ram().ok()?;
    let values = values.as_slice::<f32>().ok()?;
    let width = match (input_channel_major, kernel) {
        (true, _) => MR,
        #[cfg(target_arch = "x86_64")]
        (false, Kernel::Avx2) => AVX2_COLUMNS,
        (false, _) => NT,
    };
    let packed = Packed::new(k, n, width, |i, j| {
        if n_last {
            values[i * n + j]
        } else {
            values[j * k + i]
        }
    });
    Some(Linear {
        packed: Arc::new(packed),
        bias: Arc::new(vec![0.0; n]),
        layout,
        kernel,
    })
}

/// When `id`'s only successor adds a constant that is one value per output channel (shaped
/// like the output with 1 on every other axis), that add's node and the values.
fn bias_after(model: &TypedModel, id: usize, op: &Linear) -> Option<(usize, Vec<f32>)> {
    let node = model.node(id);
    let [succ] = node.outputs[0].successors.as_slice() else {
        return None;
    };
    let add = model.node(succ.node);
    let bin = add.op_as::<TypedBinOp>()?;
    if bin.0.name() != "Add" || add.inputs.len() != 2 {
        return None;
    }
    let other = add.inputs[1 - succ.slot];
    let konst = model.outlet_fact(other).ok()?.konst.clone()?;
    let out = model.outlet_fact(node.id.into()).ok()?;
    let out = out.shape.as_concrete()?;
    let n = op.packed.n;
    let n_axis = if op.layout.output_channel_major {
        op.layout.outer_axes
    } else {
        out.len() - 1
    };
    let fits = konst.datum_type() == f32::datum_type()
        && konst.rank() == out.len()
        && konst
            .shape()
            .iter()
            .enumerate()
            .all(|(i, &d)| d == if i == n_axis { n } else { 1 });
    let add_out = model.outlet_fact(add.id.into()).ok()?;
    if !fits || add_out.shape.as_concrete()? != out {
        return None;
    }
    let values = konst
        .try_as_plain_ram()
        .ok()?
        .as_slice::<f32>()
        .ok()?
        .to_vec();
    Some((add.id, values))
}

/// Replaces each product with a constant matrix that [`Linear`] handles in a decluttered
/// `model`, with the bias add after it when there is one; returns how many.
pub(crate) fn replace_linears(model: &mut TypedModel) -> TractResult<usize> {
    if std::env::var_os("CABIN_TRACT_LINEAR").is_some_and(|v| v == "1") {
        return Ok(0);
    }
    let kernel = Kernel::best();
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(mut op) = linear_for(model, node, kernel) else {
            continue;
        };
        let input = node.inputs[0];
        let at = match bias_after(model, id, &op) {
            Some((add, bias)) => {
                op.bias = Arc::new(bias);
                add
            }
            None => id,
        };
        swap_in(model, at, op, &[input])?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan_rewrite::{assert_agrees_here_and_on_pool, noise};

    #[test]
    fn every_rows_kernel_matches_the_plain_sum() {
        for kernel in Kernel::available() {
            for (k, width) in [(1, 48), (5, 16), (37, 33), (96, 48), (3, 1)] {
                let rows = noise(MR * k, 1);
                let mut panel = noise(k * NT, 2);
                for c in 0..k {
                    panel[c * NT + width..(c + 1) * NT].fill(0.0);
                }
                let mut out = vec![f32::NAN; MR * NT];
                rows_tile(kernel, &rows, &panel, width, &mut out);
                for m in 0..MR {
                    for j in 0..width {
                        let want: f32 = (0..k).map(|c| rows[m * k + c] * panel[c * NT + j]).sum();
                        let got = out[m * NT + j];
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{kernel:?} k {k} width {width} [{m}][{j}]: {got} != {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_kernel_multiplies_token_major_rows_as_the_plain_sum() {
        // Rows and columns off every kernel's tile (6 x 16 on AVX2, 8 x 48 elsewhere), both
        // output layouts, on the calling thread and a pool.
        for kernel in Kernel::available() {
            for (rows, k, n) in [(37, 20, 112), (1, 3, 1), (6, 16, 16), (25, 64, 33)] {
                for channel_major_out in [false, true] {
                    let weights = noise(k * n, 3);
                    let x = noise(rows * k, 4);
                    let bias = noise(n, 5);
                    let width = if kernel.is_avx2() { AVX2_COLUMNS } else { NT };
                    let op = Linear {
                        packed: Arc::new(Packed::new(k, n, width, |i, j| weights[i * n + j])),
                        bias: Arc::new(bias.clone()),
                        layout: Layout {
                            input_channel_major: false,
                            output_channel_major: channel_major_out,
                            outer_axes: 0,
                            k_axes: 1,
                        },
                        kernel,
                    };
                    for threads in [1, 2] {
                        let mut out = vec![f32::NAN; rows * n];
                        let pool = tract_linalg::multithread::Executor::multithread(threads);
                        tract_linalg::multithread::multithread_tract_scope(pool, || {
                            op.item(&x, rows, Shared::new(&mut out))
                        });
                        for r in 0..rows {
                            for j in 0..n {
                                let want: f32 = bias[j]
                                    + (0..k)
                                        .map(|c| x[r * k + c] * weights[c * n + j])
                                        .sum::<f32>();
                                let got = if channel_major_out {
                                    out[j * rows + r]
                                } else {
                                    out[r * n + j]
                                };
                                assert!(
                                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                    "{kernel:?} {rows}x{k}x{n} [{r}][{j}]: {got} != {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// `expr` on an input of `x_shape` and constant weights of `w_shape`, then maybe a bias
    /// shaped `bias_shape`.
    fn build(
        expr: &str,
        x_shape: &[usize],
        w_shape: &[usize],
        bias_shape: Option<&[usize]>,
    ) -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(x_shape))?;
        let w_len = w_shape.iter().product();
        let w = model.add_const("w", Tensor::from_shape(w_shape, &noise(w_len, 3))?)?;
        let einsum = EinSum::new(expr.parse()?, f32::datum_type());
        let mut y = model.wire_node("product", einsum, &[x, w])?[0];
        if let Some(shape) = bias_shape {
            let len = shape.iter().product();
            let b = model.add_const("b", Tensor::from_shape(shape, &noise(len, 4))?)?;
            let add = TypedBinOp(Box::new(tract_onnx::tract_core::ops::math::Add), None);
            y = model.wire_node("bias", add, &[y, b])?[0];
        }
        model.select_output_outlets(&[y])?;
        Ok(model)
    }

    #[test]
    fn a_plan_with_the_op_gives_what_tract_gives() {
        // Token-major (a transformer's layers, the heads folded into k), channel-major (1x1
        // convolutions) and both mixed; rows, points and channels off the tile sizes.
        // (expression, input shape, weight shape, bias shape)
        type Case = (
            &'static str,
            &'static [usize],
            &'static [usize],
            Option<&'static [usize]>,
        );
        let cases: &[Case] = &[
            ("amk,kn->amn", &[2, 37, 20], &[20, 112], Some(&[1, 1, 112])),
            ("amk,kn->amn", &[1, 5, 7], &[7, 3], None),
            (
                "ambk,bkn->amn",
                &[2, 19, 3, 8],
                &[3, 8, 50],
                Some(&[1, 1, 50]),
            ),
            ("mk,nk->mn", &[2, 33], &[17, 33], Some(&[1, 17])),
            (
                "NIHW,OI->NOHW",
                &[2, 13, 5, 11],
                &[21, 13],
                Some(&[1, 21, 1, 1]),
            ),
            (
                "NIHW,OI->NHWO",
                &[2, 9, 7, 8],
                &[30, 9],
                Some(&[1, 1, 1, 30]),
            ),
            (
                "NHWI,OI->NOHW",
                &[2, 7, 9, 10],
                &[12, 10],
                Some(&[1, 12, 1, 1]),
            ),
            ("NIHW,OI->NOHW", &[1, 4, 1, 100], &[9, 4], None),
        ];
        for &(expr, x_shape, w_shape, bias) in cases {
            let input = || {
                let len = x_shape.iter().product();
                tvec![
                    Tensor::from_shape(x_shape, &noise(len, 5))
                        .unwrap()
                        .into_tvalue()
                ]
            };
            let want = build(expr, x_shape, w_shape, bias).unwrap();
            let want = want.into_optimized().unwrap().into_runnable().unwrap();
            let want = want.run(input()).unwrap();
            let mut ours = build(expr, x_shape, w_shape, bias).unwrap();
            assert_eq!(replace_linears(&mut ours).unwrap(), 1, "{expr}");
            let ours = ours.into_optimized().unwrap();
            let left: Vec<String> = ours
                .nodes()
                .iter()
                .map(|n| n.op.name().to_string())
                .collect();
            assert!(
                left.iter()
                    .all(|n| n != "EinSum" && !n.contains("MatMul") && n != "Add"),
                "{expr}: {left:?}"
            );
            let ours = ours.into_runnable().unwrap();
            let what = format!("{expr} {x_shape:?}");
            assert_agrees_here_and_on_pool(&ours, input, &want[0], &what);
        }
    }
}
