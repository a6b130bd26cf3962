//! A team of spinning helper threads for work too short for the pool: a decode token's
//! product with one layer's weights takes 10–100 µs, about what waking a sleeping pool worker
//! costs, so on tract's pool a second thread made decoding slower. The helpers here keep
//! spinning for a while after each piece of work (a decode step is a few hundred products
//! back to back), so handing them half of a product costs well under a microsecond; after
//! [`SPIN_FOR`] without work they sleep until the next.
//!
//! The caller takes parts too and returns only when every part is done, so the work may
//! borrow from its stack. A helper that is asleep or not scheduled simply takes no part.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long a helper spins for the next work before it sleeps: longer than the gaps between a
/// decode step's products (attention, norms), short enough that an idle model costs nothing.
const SPIN_FOR: Duration = Duration::from_millis(3);

/// Runs `work(0)` .. `work(parts - 1)`, each once, on the calling thread and on up to
/// `threads - 1` helpers; returns when all are done. With one thread, or one part, all run
/// here.
pub(crate) fn run_parts(threads: usize, parts: usize, work: &(dyn Fn(usize) + Sync)) {
    if threads <= 1 || parts <= 1 {
        (0..parts).for_each(work);
        return;
    }
    let team = Team::get(threads - 1);
    // One caller at a time posts work; another caller meanwhile does its own alone.
    let _posting = match team.caller.try_lock() {
        Ok(posting) => posting,
        // a part's panic went through an earlier caller; the team itself is sound
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return (0..parts).for_each(work),
    };
    team.run(parts, work);
}

/// The state word: the work's number (32 bits), how many parts it has (16) and the next part
/// to take (16). One compare-and-swap claims a part of exactly that work.
struct Word(u64);

impl Word {
    fn pack(epoch: u32, parts: u16, next: u16) -> u64 {
        (epoch as u64) << 32 | (parts as u64) << 16 | next as u64
    }
    fn epoch(&self) -> u32 {
        (self.0 >> 32) as u32
    }
    fn parts(&self) -> u16 {
        (self.0 >> 16) as u16
    }
    fn next(&self) -> u16 {
        self.0 as u16
    }
}

struct Team {
    state: AtomicU64,
    /// Parts finished of the current work.
    done: AtomicUsize,
    /// The current work; written only while no part of earlier work can still be claimed.
    work: UnsafeCell<Option<&'static (dyn Fn(usize) + Sync)>>,
    /// Serialises callers.
    caller: Mutex<()>,
    /// Helpers asleep, and where they sleep.
    sleeping: AtomicUsize,
    bed: Mutex<()>,
    wake: Condvar,
    helpers: Mutex<usize>,
    /// A helper's part that panicked, raised again on the caller's thread.
    helper_panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

// SAFETY: `work` is written by the one caller holding `caller`, before the state word publishes
// it, and read by a helper only after it claimed a part of that work, which keeps the caller
// waiting (and the cell unchanged) until the part is done.
unsafe impl Sync for Team {}

static TEAM: OnceLock<Team> = OnceLock::new();

impl Team {
    /// The team, with at least `helpers` helpers started.
    fn get(helpers: usize) -> &'static Team {
        let team = TEAM.get_or_init(|| Team {
            state: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            work: UnsafeCell::new(None),
            caller: Mutex::new(()),
            sleeping: AtomicUsize::new(0),
            bed: Mutex::new(()),
            wake: Condvar::new(),
            helpers: Mutex::new(0),
            helper_panic: Mutex::new(None),
        });
        let mut started = team.helpers.lock().unwrap_or_else(|e| e.into_inner());
        while *started < helpers.min(63) {
            let spawned = std::thread::Builder::new()
                .name(format!("cabin-team-{started}"))
                .spawn(move || team.help());
            if spawned.is_err() {
                break;
            }
            *started += 1;
        }
        team
    }

    fn run(&self, parts: usize, work: &(dyn Fn(usize) + Sync)) {
        let parts = parts.min(u16::MAX as usize) as u16;
        let epoch = Word(self.state.load(Ordering::Acquire))
            .epoch()
            .wrapping_add(1);
        // SAFETY: the lifetime is widened only for as long as this call runs: every claimed part
        // is finished before it returns (see `Team`'s Sync).
        let work: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(work) };
        unsafe { *self.work.get() = Some(work) };
        self.done.store(0, Ordering::Relaxed);
        self.state
            .store(Word::pack(epoch, parts, 0), Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) > 0 {
            let _bed = self.bed.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
        // A panicking part must not end this call while a helper still runs another.
        let mut panic = None;
        while let Some(part) = self.claim(epoch) {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| work(part))) {
                panic = Some(p);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
        let mut spins = 0u32;
        while self.done.load(Ordering::Acquire) < parts as usize {
            spins += 1;
            if spins.is_multiple_of(64) {
                // a helper holding a part may have been descheduled: let it run here
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        unsafe { *self.work.get() = None };
        if let Some(p) = panic.or_else(|| self.helper_panic.lock().ok()?.take()) {
            resume_unwind(p);
        }
    }

    /// The next part of work `epoch`, if any is left.
    fn claim(&self, epoch: u32) -> Option<usize> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let word = Word(current);
            if word.epoch() != epoch || word.next() >= word.parts() {
                return None;
            }
            let claimed = Word::pack(epoch, word.parts(), word.next() + 1);
            match self.state.compare_exchange_weak(
                current,
                claimed,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(word.next() as usize),
                Err(now) => current = now,
            }
        }
    }

    fn help(&self) {
        let mut seen = Word(self.state.load(Ordering::Acquire)).epoch();
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            let epoch = Word(self.state.load(Ordering::Acquire)).epoch();
            if epoch != seen {
                seen = epoch;
                while let Some(part) = self.claim(epoch) {
                    // SAFETY: a claimed part keeps its work alive and the cell unchanged.
                    if let Some(work) = unsafe { *self.work.get() }
                        && let Err(p) = catch_unwind(AssertUnwindSafe(|| work(part)))
                        && let Ok(mut slot) = self.helper_panic.lock()
                    {
                        *slot = Some(p);
                    }
                    self.done.fetch_add(1, Ordering::Release);
                }
                idle_since = Instant::now();
                continue;
            }
            spins += 1;
            if !spins.is_multiple_of(256) {
                std::hint::spin_loop();
                continue;
            }
            if idle_since.elapsed() < SPIN_FOR {
                // let whatever else wants this core run between checks
                std::thread::yield_now();
                continue;
            }
            let bed = self.bed.lock().unwrap_or_else(|e| e.into_inner());
            self.sleeping.fetch_add(1, Ordering::SeqCst);
            let _bed = self
                .wake
                .wait_while(bed, |_| {
                    Word(self.state.load(Ordering::SeqCst)).epoch() == seen
                })
                .unwrap_or_else(|e| e.into_inner());
            self.sleeping.fetch_sub(1, Ordering::SeqCst);
            idle_since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_part_runs_once_on_every_call() {
        for parts in [0, 1, 2, 3, 8, 100] {
            for _ in 0..200 {
                let counts: Vec<AtomicU32> = (0..parts).map(|_| AtomicU32::new(0)).collect();
                run_parts(2, parts, &|p| {
                    counts[p].fetch_add(1, Ordering::Relaxed);
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn helpers_take_parts_and_wake_after_sleeping() {
        let here = std::thread::current().id();
        let elsewhere = AtomicU32::new(0);
        // parts that last long enough for a spinning (or woken) helper to take one
        let until_a_helper_takes_a_part = || {
            let before = elsewhere.load(Ordering::Relaxed);
            let mut rounds = 0;
            while elsewhere.load(Ordering::Relaxed) == before && rounds < 1000 {
                run_parts(2, 2, &|_| {
                    if std::thread::current().id() != here {
                        elsewhere.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                });
                rounds += 1;
            }
            elsewhere.load(Ordering::Relaxed) > before
        };
        assert!(until_a_helper_takes_a_part(), "no helper took a part");
        // asleep now; the next work still completes, and a helper joins again
        std::thread::sleep(SPIN_FOR * 3);
        assert!(until_a_helper_takes_a_part(), "the helper never woke");
    }

    #[test]
    fn a_panicking_part_reaches_the_caller_after_every_part_ended() {
        let finished = AtomicU32::new(0);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            run_parts(2, 8, &|p| {
                if p == 3 {
                    panic!("part 3");
                }
                std::thread::sleep(Duration::from_micros(100));
                finished.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(caught.is_err());
        assert_eq!(finished.load(Ordering::Relaxed), 7);
        // the team still works
        let sum = AtomicUsize::new(0);
        run_parts(2, 4, &|p| {
            sum.fetch_add(p, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn callers_on_several_threads_each_get_all_their_parts() {
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..300 {
                        let sum = AtomicUsize::new(0);
                        run_parts(2, 16, &|p| {
                            sum.fetch_add(p + 1, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 16 * 17 / 2);
                    }
                });
            }
        });
    }
}
