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

/// Runs `run` (a whole plan) on one of `pool`'s workers while the others wait for its parallel
/// work spinning, not asleep.
///
/// A plan is hundreds of ops of a millisecond or less; between two parallel ones a rayon worker
/// goes to sleep, and waking it (a futex and, in a VM, an interrupt to another vCPU) took long
/// enough that on the 2-core EPYC the second thread joined most short ops late: products of
/// half a millisecond ran no faster on 2 threads than on 1. The others run
/// [`rayon::yield_now`] in a loop instead, for as long as any such run is active on the pool,
/// so they take a share of each op at once.
///
/// A thread never spins inside work it is part of: the runner, and a spinner that stole a piece
/// of the plan and meets another spin job while it waits inside it, skip the loop (a spin there
/// would wait on itself).
pub fn install_hot<R: Send>(pool: &rayon::ThreadPool, run: impl FnOnce() -> R + Send) -> R {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    thread_local! {
        /// This thread runs a plan or spins for one.
        static BUSY: Cell<bool> = const { Cell::new(false) };
    }
    /// Runs in progress per pool (by address; a pool lives as long as its model).
    static ACTIVE: Mutex<Vec<(usize, Arc<AtomicUsize>)>> = Mutex::new(Vec::new());

    /// Marks this thread busy, and one run active, until dropped (a panic included).
    struct Running {
        active: Arc<AtomicUsize>,
        was_busy: bool,
    }
    impl Drop for Running {
        fn drop(&mut self) {
            self.active.fetch_sub(1, Ordering::Release);
            BUSY.set(self.was_busy);
        }
    }

    if pool.current_num_threads() < 2 {
        return pool.install(run);
    }
    let active = {
        let key = pool as *const rayon::ThreadPool as usize;
        let mut all = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        match all.iter().find(|(k, _)| *k == key) {
            Some((_, active)) => active.clone(),
            None => {
                let active = Arc::new(AtomicUsize::new(0));
                all.push((key, active.clone()));
                active
            }
        }
    };
    pool.install(|| {
        active.fetch_add(1, Ordering::AcqRel);
        let running = Running {
            active: active.clone(),
            was_busy: BUSY.replace(true),
        };
        let spinning = active.clone();
        pool.spawn_broadcast(move |_| {
            if BUSY.replace(true) {
                return;
            }
            while spinning.load(Ordering::Acquire) > 0 {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
            BUSY.set(false);
        });
        let out = run();
        drop(running);
        out
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_runs_back_to_back_finish_and_give_their_results() {
        // Short parallel work in runs that start while the last run's spinner may still be
        // inside a stolen piece: where a spinner could wait on itself, this hangs (the
        // channel then fails it).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (sent, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use rayon::prelude::*;
            let mut sums = Vec::new();
            for run in 0..3000u64 {
                sums.push(install_hot(&pool, || {
                    (0..256u64).into_par_iter().map(|i| i * run).sum::<u64>()
                }));
            }
            sent.send(sums).unwrap();
        });
        let sums = received
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("3,000 hot runs finish");
        for (run, sum) in sums.into_iter().enumerate() {
            assert_eq!(sum, 255 * 256 / 2 * run as u64);
        }
    }
}
