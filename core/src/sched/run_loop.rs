//! The scheduler's main loop: run what is runnable, take an IO/timer turn
//! once per pass over the run queue, block in the driver when nothing can
//! run, and report a deadlock when nothing ever will.

use std::ptr;

use corosensei::CoroutineResult;

use super::{Fiber, Scheduler};
use crate::backend::{Park, Parked};
use crate::error::{Error, ErrorKind};

/// Fiber runs between two IO/timer turns while fibers are runnable: one
/// turn per pass over the run queue, but no more often than this. A turn
/// with nothing to do still costs about a hundred instructions (and on
/// POSIX, with fds waited on, an `epoll_wait`); 64 runs of a few tens of
/// nanoseconds each keep IO and timers within a few microseconds even when
/// a handful of fibers keep yielding (tokio polls every 61 tasks).
const MIN_TURN_INTERVAL: usize = 64;

/// How long a busy scheduler lets idle stacks stay resident past
/// `max_idle_stacks` before it trims them; one with nothing to run trims
/// them at once. Stacks freed by a burst of finishing fibers are then
/// taken warm by the next burst instead of being zapped and faulted in
/// again, and a run that ends right after a burst unmaps its slabs whole
/// instead of zapping them stack by stack first (allocators decay unused
/// memory the same way).
const TRIM_AFTER_NS: u64 = 1_000_000_000;

impl Scheduler {
    /// Trims the stack pool's idle excess if it has lasted `TRIM_AFTER_NS`,
    /// or at once when the scheduler is `idle` (about to block).
    fn trim_stacks(&self, idle: bool) {
        if !self.stacks.borrow().has_excess() {
            return;
        }
        if !idle {
            let now = self.now();
            match self.excess_since.get() {
                None => {
                    self.excess_since.set(Some(now));
                    return;
                }
                Some(t) if now.saturating_sub(t) < TRIM_AFTER_NS => return,
                Some(_) => {}
            }
        }
        let mut pool = self.stacks.borrow_mut();
        pool.trim_excess(idle);
        if !pool.has_excess() {
            self.excess_since.set(None);
        }
    }

    fn run_fiber(&self, fp: *const Fiber) {
        // SAFETY: `fp` came off the run queue, so (see `run_queue`) the
        // table holds an `Rc` to this fiber until it returns, which can only
        // happen inside the `resume` below; we stop using `f` before
        // removing the entry.
        let f = unsafe { &*fp };
        #[cfg(debug_assertions)]
        f.queued.set(false);
        // SAFETY: only this loop touches `coro`, and not re-entrantly: the
        // fiber being resumed cannot reach its own coroutine cell.
        let Some(coro) = (unsafe { (*f.coro.get()).as_mut() }) else {
            return;
        };
        // Also what the overflow handler reads as the running label.
        self.current_fiber.set(fp);
        let r = coro.resume(());
        self.current_fiber.set(ptr::null());
        if let CoroutineResult::Yield(()) = r {
            if f.finished.get() {
                self.worker_finished(f);
            }
            return;
        }
        // A coroutine made for its body (not a worker) has returned.
        // SAFETY: as above; the coroutine has finished.
        let coro = unsafe { (*f.coro.get()).take() }.expect("coroutine present");
        f.leave(f.ctx().members());
        let stack = coro.into_stack();
        let rc = self.fibers.borrow_mut().remove(f.key.get());
        match rc {
            Some(rc) => self.recycle(rc, stack),
            None => self.stacks.borrow_mut().put(stack),
        }
    }

    fn drain_remote(&self) {
        if self.shared.has_remote() {
            self.shared.drain_remote(|k| self.queue_key(k));
        }
    }

    fn io_turn(&self, park: Park) -> Parked {
        let external = self.shared.has_external();
        let parked = self.driver.borrow_mut().park(park, external);
        self.drain_remote();
        self.fire_timers();
        parked
    }

    /// Describes every blocked fiber, for a deadlock report.
    fn describe_blocked(&self) -> String {
        let fibers = self.fibers.borrow();
        let mut lines: Vec<(u64, String)> = fibers
            .values()
            .map(|f| {
                let mut s = format!("fiber #{}", f.id.get());
                if let Some(n) = f.name() {
                    s.push_str(&format!(" \"{n}\""));
                }
                if let Some(site) = f.site.get() {
                    s.push_str(&format!(" (forked at {site})"));
                }
                let waiting_on = f.waiting_on.get();
                if waiting_on.is_empty() {
                    s.push_str(" is blocked");
                } else {
                    s.push_str(&format!(" waiting on {waiting_on}"));
                }
                (f.id.get(), s)
            })
            .collect();
        lines.sort();
        lines
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The main loop: runs until the root fiber finishes or nothing can run.
    pub(super) fn run_loop(&self) {
        let mut leaked = false;
        loop {
            if self.root_done.get() {
                if self.detached_live.get() == 0 {
                    break;
                }
                // The run ends with its main fiber: detached fibers still
                // running are cancelled (once), and finish inside the run.
                if !self.detached_ctx.is_cancelled() {
                    self.detached_ctx.cancel(
                        self,
                        Error::msg(ErrorKind::Cancelled, "the run's main fiber has finished"),
                    );
                }
            }
            self.drain_remote();
            let next = self.run_queue.pop_front();
            if let Some(fiber) = next {
                let b = self.budget.get();
                if b == 0 {
                    self.io_turn(Park::Poll);
                    self.trim_stacks(false);
                    self.budget.set(self.run_queue.len().max(MIN_TURN_INTERVAL));
                } else {
                    self.budget.set(b - 1);
                }
                self.run_fiber(fiber);
                continue;
            }
            if self.fire_timers() {
                continue;
            }
            // Nothing runnable: block in the driver.
            self.trim_stacks(true);
            let deadline = self.timers.borrow().first_key_value().map(|(k, _)| k.0);
            let park = match deadline {
                Some(d) => Park::Until(d),
                None => Park::Forever,
            };
            if !self.shared.prepare_sleep() {
                continue;
            }
            let parked = self.io_turn(park);
            self.shared.end_sleep();
            if let Parked::Stuck = parked {
                if !self.run_queue.is_empty() {
                    continue;
                }
                if self.root_done.get() {
                    // Detached fibers, cancelled, that still cannot finish
                    // (blocked in a protected region): the run is over.
                    leaked = true;
                    break;
                }
                if self.fatal.borrow().is_some() {
                    // Already cancelled everything once; what is left is
                    // blocked where cancellation cannot reach. Leak it.
                    leaked = true;
                    break;
                }
                let err = Error::msg(ErrorKind::Deadlock, self.describe_blocked());
                *self.fatal.borrow_mut() = Some(err.clone());
                self.root_ctx.cancel(self, err);
            }
        }
        let _ = leaked;
        // Fibers still here are blocked forever: never resume or drop their
        // coroutines (dropping would unwind them, running code that might
        // suspend, over borrows that may have ended).
        let mut fibers = self.fibers.borrow_mut();
        let leaked_any = !fibers.is_empty();
        // They leave their contexts' member lists first: the lists must
        // only hold blocks the table keeps alive.
        for f in fibers.values() {
            f.leave(f.ctx().members());
        }
        for (_, f) in fibers.drain() {
            // SAFETY: the loop has stopped; nothing else touches coroutines.
            if let Some(c) = unsafe { (*f.coro.get()).take() } {
                std::mem::forget(c);
            }
        }
        drop(fibers);
        self.retire_workers();
        // The stacks of spare blocks go back to the pool, which unmaps its
        // slabs when dropped only if every stack it handed out came back.
        for f in self.stacked_spares.borrow_mut().drain(..) {
            if let Some(s) = f.take_stack() {
                self.stacks.borrow_mut().put(s);
            }
        }
        debug_assert!(
            leaked_any || self.stacks.borrow().outstanding() == 0,
            "a finished fiber's stack did not come back to the pool"
        );
    }
}
