//! The waiting machinery shared by [`Mutex`](super::Mutex),
//! [`RwLock`](super::RwLock) and [`Semaphore`](super::Semaphore): a FIFO
//! queue of suspended fibers inside a state behind a `std::sync::Mutex`,
//! and the one subtle piece they all need — suspending in that queue so
//! that a cancelled waiter never ends up holding what it waited for.
//!
//! The protocol, the same for the three: a waiter first tries to take the
//! resource under the state lock; if it must wait, it re-checks and queues
//! itself in the same critical section (so no release can slip in
//! between). A release hands the resource to the oldest waiter by resuming
//! it while it is still accounted as taken. A cancelled waiter that is
//! still queued leaves the queue and fails; one that is no longer queued
//! has been handed the resource, and that resume wins.

use std::collections::VecDeque;
use std::sync::MutexGuard;

use crate::backend::{suspend_with_cancel, Resumer};
use crate::error::{Error, Result};

/// Fibers waiting for a resource, oldest first, each with what it asked for
/// (`()` where there is only one thing to ask for).
pub(super) struct WaitQueue<T = ()> {
    waiters: VecDeque<(T, Resumer<()>)>,
}

impl<T: Copy> WaitQueue<T> {
    pub(super) const fn new() -> WaitQueue<T> {
        WaitQueue {
            waiters: VecDeque::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.waiters.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// What the oldest waiter asked for.
    pub(super) fn front(&self) -> Option<T> {
        self.waiters.front().map(|&(want, _)| want)
    }

    /// Pops the oldest waiter and resumes it, handing it the resource:
    /// false if there is none, or if it could not be resumed.
    pub(super) fn wake_front(&mut self) -> bool {
        self.waiters
            .pop_front()
            .is_some_and(|(_, w)| w.resume(()).is_ok())
    }

    /// Hands the resource to the oldest waiter: whether there was one.
    /// Queued waiters are always claimable (a cancelled one leaves the
    /// queue before failing), so the first try succeeds; trying the next is
    /// only a safety net.
    pub(super) fn wake_oldest(&mut self) -> bool {
        while !self.waiters.is_empty() {
            if self.wake_front() {
                return true;
            }
        }
        false
    }

    /// Takes every waiter out, leaving the queue empty (to fail them once
    /// the state lock is released).
    pub(super) fn take(&mut self) -> WaitQueue<T> {
        WaitQueue {
            waiters: std::mem::take(&mut self.waiters),
        }
    }

    /// Fails every waiter with `error()`.
    pub(super) fn fail_all(self, error: impl Fn() -> Error) {
        for (_, w) in self.waiters {
            let _ = w.fail(error());
        }
    }
}

/// A state that fibers wait on through a [`WaitQueue`].
pub(super) trait Queued {
    /// What a waiter asks for.
    type Want: Copy;

    /// The waiters.
    fn queue(&mut self) -> &mut WaitQueue<Self::Want>;

    /// Takes the resource for `want` if that is possible now: `Ok(true)`
    /// if taken, `Ok(false)` if the caller must wait, `Err` if it can never
    /// be had (a poisoned lock).
    fn take_now(&mut self, want: Self::Want) -> Result<bool>;

    /// Called after a cancelled waiter has left the queue, for states
    /// where that can let the waiters behind it in.
    fn after_leave(&mut self) {}
}

/// Locks `state`. Critical sections on these states are a few queue
/// operations that cannot panic half-way, so std's poisoning is ignored.
pub(super) fn lock<S>(state: &std::sync::Mutex<S>) -> MutexGuard<'_, S> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the resource for `want`, suspending the fiber (named `what` in
/// deadlock reports) in the queue while it must wait. Returns at once,
/// without suspending, if it is free. Fails with `Cancelled` if the fiber
/// is cancelled while it waits (it then holds nothing), or with
/// [`Queued::take_now`]'s error.
pub(super) fn acquire<S: Queued>(
    what: &'static str,
    state: &std::sync::Mutex<S>,
    want: S::Want,
) -> Result<()> {
    if lock(state).take_now(want)? {
        return Ok(());
    }
    suspend_with_cancel(
        what,
        |r| {
            let mut st = lock(state);
            // Re-check: the resource may have been released meanwhile.
            match st.take_now(want) {
                Ok(false) => st.queue().waiters.push_back((want, r)),
                Ok(true) => {
                    drop(st);
                    let _ = r.resume(());
                }
                Err(e) => {
                    drop(st);
                    let _ = r.fail(e);
                }
            }
        },
        |r, reason| {
            let mut st = lock(state);
            let waiters = &mut st.queue().waiters;
            if let Some(i) = waiters.iter().position(|(_, w)| w.same_wait(r)) {
                // Still queued, so nothing has been handed to us: leave the
                // queue and fail. No release can pick us any more.
                let _ = waiters.remove(i);
                st.after_leave();
                drop(st);
                let _ = r.fail(Error::cancelled(reason.clone()));
            }
            // Otherwise a release has already handed us the resource (or
            // failed us), and that resume wins.
        },
    )
}
