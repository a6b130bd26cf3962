//! What cabin's own tract ops (`conv3x3`, `linear`, `attention`, `centered_norm`, `broadcast_bin`)
//! share: swapping one of them in for a node of a decluttered plan, and spreading work over
//! the pool tract runs the plan on.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

/// An EinSum's axis letters: (first input, second input, output); `None` unless it has two
/// inputs.
pub(super) fn einsum_letters(op: &EinSum) -> Option<(Vec<char>, Vec<char>, Vec<char>)> {
    let expr = op.axes.to_string();
    let (inputs, out) = expr.split_once("->")?;
    let (a, b) = inputs.split_once(',')?;
    let chars = |s: &str| s.chars().collect::<Vec<_>>();
    Some((chars(a), chars(b), chars(out)))
}

/// Whether two f32 slices hold the same bits. tract compares ops to merge identical nodes;
/// compared by bits, a NaN weight equals itself.
pub(super) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Deterministic standard-normal test values (Box–Muller on a seeded SplitMix64).
#[cfg(test)]
pub(super) fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = cabin_seed::SplitMix64::new(seed);
    (0..len)
        .map(|_| {
            let u1 = 1.0 - rng.uniform();
            let u2 = rng.uniform();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// Wires `op` on `inputs` in place of node `id`'s single output.
pub(super) fn swap_in(
    model: &mut TypedModel,
    id: usize,
    op: impl Into<Box<dyn TypedOp>>,
    inputs: &[OutletId],
) -> TractResult<()> {
    let name = model.node(id).name.clone();
    let mut patch = TypedModelPatch::new(format!("cabin {name}"));
    let taps = inputs
        .iter()
        .map(|o| patch.tap_model(model, *o))
        .collect::<TractResult<TVec<_>>>()?;
    let output = patch.wire_node(name, op, &taps)?[0];
    patch.shunt_outside(model, id.into(), output)?;
    patch.apply(model)
}

/// Runs `f` on each item, spread over tract's thread pool when the plan runs on one (the
/// `threads` cap), else in turn on the calling thread. Inside the pool no executor is set, so
/// work nested in `f` runs in turn.
/// How many threads the plan being run has: its pool's, or 1.
pub(super) fn pool_threads() -> usize {
    match tract_linalg::multithread::current_tract_executor() {
        tract_linalg::multithread::Executor::MultiThread(pool) => pool.current_num_threads(),
        _ => 1,
    }
}

pub(super) fn on_tract_pool<T: Send>(items: Vec<T>, f: impl Fn(T) + Send + Sync) {
    match tract_linalg::multithread::current_tract_executor() {
        tract_linalg::multithread::Executor::MultiThread(pool) => pool.install(|| {
            use rayon::prelude::*;
            items.into_par_iter().for_each(f);
        }),
        _ => items.into_iter().for_each(f),
    }
}

/// `plan`'s outputs on the calling thread and on a 2-thread pool, each checked against
/// `want` to `1e-4 * (1 + |want|)`; `what` names the case in a failure.
#[cfg(test)]
pub(super) fn assert_agrees_here_and_on_pool(
    plan: &std::sync::Arc<TypedRunnableModel>,
    inputs: impl Fn() -> TVec<TValue>,
    want: &TValue,
    what: &str,
) {
    let pool = tract_linalg::multithread::Executor::multithread(2);
    let pooled =
        tract_linalg::multithread::multithread_tract_scope(pool, || plan.run(inputs()).unwrap());
    let want = want.to_plain_array_view::<f32>().unwrap();
    for got in [plan.run(inputs()).unwrap(), pooled] {
        let got = got[0].to_plain_array_view::<f32>().unwrap();
        assert_eq!(got.shape(), want.shape());
        for (g, e) in got.iter().zip(want.iter()) {
            assert!(
                (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{what}: {g} != {e}"
            );
        }
    }
}
