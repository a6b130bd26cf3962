//! Each of cabin's ops against tract's own on the same plan, at the shapes of the bundled
//! wallpaper model (UNet at batch 2 for guidance, 16x40 latents; decoder at 64x160) and of the
//! on-device LM's 4-bit products (SmolLM2-135M: a decode token, a 63-token prompt), on 1 and
//! 2 threads, with the CPU it ran on.
//!
//!     cargo bench -p cabin-tract-ops --bench ops -- [--peak1 GFLOPS] [--peak2 GFLOPS] [--reps N]
//!         [--only TEXT]
//!
//! `onnx/bench/ops.sh` passes the same run's sgemm peaks at 1 and 2 threads (numpy's BLAS), so
//! the matrix-shaped ops print their share of it. Not a test: it asserts nothing about time.

use std::sync::Arc;
use std::time::Instant;

use cabin_tract_ops::{Op, swap_in_only};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::cnn::deconv::Deconv;
use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_core::ops::nn::{DataFormat, Reduce, Reducer, RmsNorm, Softmax, SoftmaxKind};

/// One benchmark case: a plan builder, its inputs, its work in GFLOP (0: memory-bound).
struct Case {
    name: String,
    op: Op,
    gflop: f64,
    build: Box<dyn Fn() -> TractResult<TypedModel>>,
    inputs: Vec<Vec<usize>>,
}

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 31 + seed * 17) % 97) as f32 - 48.0) * 0.02)
        .collect()
}

fn conv(n: usize, cin: usize, cout: usize, h: usize, w: usize) -> Case {
    let build = move || -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([n, cin, h, w]))?;
        let k = model.add_const(
            "k",
            Tensor::from_shape(&[cout, cin, 3, 3], &values(cout * cin * 9, 1))?,
        )?;
        let b = model.add_const("b", Tensor::from_shape(&[cout], &values(cout, 2))?)?;
        let spec = PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![3, 3],
            padding: PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
            dilations: None,
            strides: None,
            input_channels: cin,
            output_channels: cout,
        };
        let op = Conv::new(spec, KernelFormat::OIHW, 1, None);
        let y = model.wire_node("conv", op, &[x, k, b])?[0];
        model.select_output_outlets(&[y])?;
        Ok(model)
    };
    Case {
        name: format!("conv3x3 {n}x{cin}x{h}x{w} -> {cout}"),
        op: Op::Conv3x3,
        gflop: 2.0 * (n * cout * h * w * cin * 9) as f64 / 1e9,
        build: Box::new(build),
        inputs: vec![vec![n, cin, h, w]],
    }
}

/// A transposed convolution, kernel `k` = the stride or twice it, as a display stage's.
fn deconv(cin: usize, cout: usize, h: usize, w: usize, (s, k, pad): (usize, usize, usize)) -> Case {
    let build = move || -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, cin, h, w]))?;
        let kernel = model.add_const(
            "k",
            Tensor::from_shape(&[cout, cin, k, k], &values(cout * cin * k * k, 1))?,
        )?;
        let b = model.add_const("b", Tensor::from_shape(&[cout], &values(cout, 2))?)?;
        let spec = PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![k, k],
            padding: PaddingSpec::Explicit(tvec![pad, pad], tvec![pad, pad]),
            dilations: None,
            strides: Some(tvec![s, s]),
            input_channels: cin,
            output_channels: cout,
        };
        let op = Deconv::new(spec, KernelFormat::OIHW, tvec![0, 0], 1);
        let y = model.wire_node("deconv", op, &[x, kernel, b])?[0];
        model.select_output_outlets(&[y])?;
        Ok(model)
    };
    Case {
        name: format!("deconv 1x{cin}x{h}x{w} -> {cout}, k{k} s{s} p{pad}"),
        op: Op::ConvTranspose,
        gflop: 2.0 * (cout * h * w * cin * k * k) as f64 / 1e9,
        build: Box::new(build),
        inputs: vec![vec![1, cin, h, w]],
    }
}

fn linear(a: usize, m: usize, k: usize, n: usize) -> Case {
    let build = move || -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([a, m, k]))?;
        let w = model.add_const("w", Tensor::from_shape(&[k, n], &values(k * n, 3))?)?;
        let b = model.add_const("b", Tensor::from_shape(&[1, 1, n], &values(n, 4))?)?;
        let mm = EinSum::new("amk,kn->amn".parse()?, f32::datum_type());
        let y = model.wire_node("mm", mm, &[x, w])?[0];
        let y = model.wire_node("bias", math::add(), &[y, b])?[0];
        model.select_output_outlets(&[y])?;
        Ok(model)
    };
    Case {
        name: format!("linear {a}x{m}x{k} . {k}x{n}"),
        op: Op::Linear,
        gflop: 2.0 * (a * m * k * n) as f64 / 1e9,
        build: Box::new(build),
        inputs: vec![vec![a, m, k]],
    }
}

/// `tokens x k` against `n x k` weights stored as Q4_0, as tract-onnx keeps `MatMulNBits`.
fn block_q4(tokens: usize, k: usize, n: usize) -> Case {
    use tract_linalg::block_quant::{BlockQuant, BlockQuantFact, BlockQuantStorage, Q4_0};
    use tract_onnx::tract_core::ops::konst::Const;
    let build = move || -> TractResult<TypedModel> {
        let blob = Q4_0.quant_f32(&values(n * k, 5))?;
        let storage = BlockQuantStorage::new(Box::new(Q4_0), n, k, Arc::new(blob))?;
        let fact = Box::new(BlockQuantFact::new(Box::new(Q4_0), tvec!(n, k)));
        let weights = storage.into_tensor_with_shape(f32::datum_type(), &[n, k]);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, tokens, k]))?;
        let w = model.wire_node(
            "w",
            Const::new_with_exotic_fact(Arc::new(weights), fact)?,
            &[],
        )?[0];
        let mm = EinSum::new("ask,nk->asn".parse()?, f32::datum_type());
        let y = model.wire_node("mm", mm, &[x, w])?[0];
        model.select_output_outlets(&[y])?;
        Ok(model)
    };
    Case {
        name: format!("q4_0 {tokens}x{k} . {n}x{k}"),
        op: Op::BlockQ4Linear,
        gflop: 2.0 * (tokens * k * n) as f64 / 1e9,
        build: Box::new(build),
        inputs: vec![vec![1, tokens, k]],
    }
}

fn attention(batch: usize, queries: usize, keys: usize, heads: usize, dim: usize) -> Case {
    let build = move || -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let q = model.add_source("q", f32::fact([batch, queries, heads, dim]))?;
        let k = model.add_source("k", f32::fact([batch, keys, heads, dim]))?;
        let v = model.add_source("v", f32::fact([batch, keys, heads, dim]))?;
        let scores = EinSum::new("ambk,anbk->abmn".parse()?, f32::datum_type());
        let s = model.wire_node("scores", scores, &[q, k])?[0];
        let p = model.wire_node(
            "softmax",
            Softmax::new(tvec![3], None, SoftmaxKind::Softmax),
            &[s],
        )?[0];
        let weighted = EinSum::new("abmk,akbn->ambn".parse()?, f32::datum_type());
        let y = model.wire_node("weighted", weighted, &[p, v])?[0];
        model.select_output_outlets(&[y])?;
        Ok(model)
    };
    Case {
        name: format!("attention b{batch} {queries}q x {keys}k, {heads} heads of {dim}"),
        op: Op::Attention,
        gflop: 4.0 * (batch * heads * queries * keys * dim) as f64 / 1e9,
        build: Box::new(build),
        inputs: vec![
            vec![batch, queries, heads, dim],
            vec![batch, keys, heads, dim],
            vec![batch, keys, heads, dim],
        ],
    }
}

/// A group norm as an ONNX export reaches tract (the centring chain over groups), then the
/// reshape back, the per-channel scale and shift and a SiLU.
fn group_norm(n: usize, c: usize, h: usize, w: usize, groups: usize) -> Case {
    let len = c / groups * h * w;
    let build = move || -> TractResult<TypedModel> {
        use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
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
        let from: TVec<TDim> = tvec![groups.to_dim(), len.to_dim()];
        let to: TVec<TDim> = tvec![c.to_dim(), h.to_dim(), w.to_dim()];
        let y = model.wire_node("back", AxisOp::Reshape(1, from, to), &[y])?[0];
        let scale = model.add_const("scale", Tensor::from_shape(&[1, c, 1, 1], &values(c, 5))?)?;
        let shift = model.add_const("shift", Tensor::from_shape(&[1, c, 1, 1], &values(c, 6))?)?;
        let y = model.wire_node("scaled", math::mul(), &[y, scale])?[0];
        let y = model.wire_node("shifted", math::add(), &[y, shift])?[0];
        let silu = ElementWiseOp(Box::new(tract_onnx::tract_core::ops::nn::Silu {}), None);
        let y = model.wire_node("silu", silu, &[y])?[0];
        model.select_output_outlets(&[y])?;
        Ok(model)
    };
    Case {
        name: format!("group norm + SiLU {n}x{c}x{h}x{w}, {groups} groups"),
        op: Op::CenteredNorm,
        gflop: 0.0,
        build: Box::new(build),
        inputs: vec![vec![n, groups, len]],
    }
}

/// A per-channel add at batch 2, the shape tract has no fast kernel for.
fn broadcast_add(n: usize, c: usize, h: usize, w: usize) -> Case {
    let build = move || -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([n, c, h, w]))?;
        let t = model.add_const("t", Tensor::from_shape(&[1, c, 1, 1], &values(c, 7))?)?;
        let add: TypedBinOp = math::add();
        let y = model.wire_node("add", add, &[x, t])?[0];
        model.select_output_outlets(&[y])?;
        Ok(model)
    };
    Case {
        name: format!("per-channel add {n}x{c}x{h}x{w}"),
        op: Op::BroadcastBin,
        gflop: 0.0,
        build: Box::new(build),
        inputs: vec![vec![n, c, h, w]],
    }
}

/// Median milliseconds of one run of the plan, with cabin's op swapped in or tract's own.
fn time_plan(case: &Case, ours: bool, threads: usize, reps: usize) -> TractResult<(f64, usize)> {
    let mut model = (case.build)()?.into_decluttered()?;
    let swapped = if ours {
        swap_in_only(&mut model, case.op)?
    } else {
        0
    };
    let model = model.into_optimized()?;
    let executor = (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads));
    let plan = match &executor {
        Some(executor) => {
            let options = tract_onnx::tract_core::runtime::RunOptions {
                executor: Some(executor.clone()),
                ..Default::default()
            };
            model.into_runnable_with_options(&options)?
        }
        None => model.into_runnable()?,
    };
    // As the engine runs a plan: on a worker of its pool, the others spinning for its work.
    let run = |input: TVec<TValue>| -> TractResult<()> {
        match &executor {
            Some(tract_linalg::multithread::Executor::MultiThread(pool)) => {
                cabin_tract_ops::install_hot(pool, || plan.run(input).map(drop))
            }
            _ => plan.run(input).map(drop),
        }
    };
    let inputs = || -> TVec<TValue> {
        case.inputs
            .iter()
            .enumerate()
            .map(|(i, shape)| {
                let len = shape.iter().product();
                Tensor::from_shape(shape, &values(len, 10 + i))
                    .unwrap()
                    .into_tvalue()
            })
            .collect()
    };
    run(inputs())?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let input = inputs();
        let started = Instant::now();
        run(input)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], swapped))
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let peaks: [Option<f64>; 2] = [arg(&args, "--peak1"), arg(&args, "--peak2")];
    let reps: usize = arg(&args, "--reps").unwrap_or(15);
    // `--only TEXT`: the cases whose name holds it.
    let only: Option<String> = arg(&args, "--only");
    let cases = [
        conv(2, 96, 96, 16, 40),
        conv(2, 128, 128, 8, 20),
        conv(1, 64, 64, 64, 160),
        deconv(64, 32, 64, 160, (2, 2, 0)),
        deconv(32, 3, 128, 320, (6, 12, 3)),
        linear(2, 640, 64, 64),
        linear(2, 160, 128, 512),
        linear(2, 160, 512, 128),
        attention(2, 160, 160, 4, 24),
        attention(2, 160, 32, 4, 24),
        group_norm(2, 96, 16, 40, 32),
        group_norm(1, 64, 64, 160, 32),
        broadcast_add(2, 96, 16, 40),
        block_q4(1, 576, 1536),
        block_q4(1, 1536, 576),
        block_q4(1, 576, 49152),
        block_q4(63, 576, 1536),
    ];
    println!("machine: {}", cabin_tract_ops::machine());
    match peaks {
        [Some(one), Some(two)] => {
            println!(
                "sgemm peak (same run, numpy's BLAS): {one:.0} GFLOP/s at 1 thread, {two:.0} at 2"
            )
        }
        _ => println!("no --peak1/--peak2: onnx/bench/ops.sh passes the same run's sgemm peaks"),
    }
    println!(
        "{:44}{:>4}{:>10}{:>10}{:>8}{:>10}{:>10}",
        "op", "thr", "tract ms", "cabin ms", "ratio", "GFLOP/s", "% peak"
    );
    for threads in [1, 2] {
        for case in cases
            .iter()
            .filter(|c| only.as_ref().is_none_or(|o| c.name.contains(o.as_str())))
        {
            let (tract_ms, _) = time_plan(case, false, threads, reps)?;
            let (cabin_ms, swapped) = time_plan(case, true, threads, reps)?;
            let (rate, share) = if case.gflop > 0.0 {
                let rate = case.gflop / (cabin_ms / 1e3);
                let share = peaks[threads - 1]
                    .map_or(String::from("-"), |p| format!("{:.0}%", 100.0 * rate / p));
                (format!("{rate:.1}"), share)
            } else {
                ("-".into(), "-".into())
            };
            let note = if swapped == 0 {
                "  (not swapped in)"
            } else {
                ""
            };
            println!(
                "{:44}{:>4}{:>10.3}{:>10.3}{:>8.2}{:>10}{:>10}{note}",
                case.name,
                threads,
                tract_ms,
                cabin_ms,
                cabin_ms / tract_ms,
                rate,
                share
            );
        }
    }
    Ok(())
}
