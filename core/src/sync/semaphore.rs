//! Semaphores: let up to *n* fibers use a resource at once.
//!
//! A [`Semaphore`] holds a number of permits. [`acquire`](Semaphore::acquire)
//! takes one, suspending the fiber while there are none;
//! [`release`](Semaphore::release) gives one back, handing it straight to the
//! fiber that has waited longest. A cancelled waiter never consumes a permit:
//! it leaves the queue, and later releases go to the fibers behind it.
//!
//! [`acquire_permit`](Semaphore::acquire_permit) returns a [`Permit`] that
//! releases itself when dropped, so a failure cannot leak it.
//!
//! ```
//! use weft::{fiber, sync::Semaphore, traceln};
//!
//! let (result, trace) = weft::mock::run_traced(|_env| {
//!     let slots = Semaphore::new(2);
//!     fiber::all((0..3).map(|i| {
//!         let slots = &slots;
//!         move || {
//!             let _permit = slots.acquire_permit()?;
//!             traceln!("{i}: working");
//!             fiber::yield_now()?;
//!             traceln!("{i}: done");
//!             Ok(())
//!         }
//!     }))
//! });
//! result.unwrap();
//! assert_eq!(
//!     trace,
//!     ["0: working", "1: working", "0: done", "1: done", "2: working", "2: done"]
//! );
//! ```
//!
//! A semaphore can be shared between threads; a permit borrows it:
//!
//! ```
//! fn is_send_sync<T: Send + Sync>() {}
//! is_send_sync::<weft::sync::Semaphore>();
//! is_send_sync::<weft::sync::Permit<'static>>();
//! ```
//!
//! ```compile_fail
//! let permit = {
//!     let sem = weft::sync::Semaphore::new(1);
//!     sem.try_acquire_permit().unwrap() // `sem` does not live long enough
//! };
//! ```

use std::collections::VecDeque;

use crate::backend::{suspend_with_cancel, Resumer};
use crate::error::{Error, Result};

struct State {
    /// Free permits. Zero whenever `waiters` is non-empty: a release with
    /// waiters hands its permit over instead of counting it.
    permits: usize,
    /// Fibers waiting in `acquire`, oldest first.
    waiters: VecDeque<Resumer<()>>,
}

/// A counting semaphore for fibers, usable across threads.
///
/// Releases go to the oldest waiter; a cancelled waiter never takes one.
pub struct Semaphore {
    state: std::sync::Mutex<State>,
}

/// One permit of a [`Semaphore`], released when dropped.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct Permit<'a> {
    sem: &'a Semaphore,
}

impl Semaphore {
    /// A semaphore with `permits` free permits.
    pub const fn new(permits: usize) -> Semaphore {
        Semaphore {
            state: std::sync::Mutex::new(State {
                permits,
                waiters: VecDeque::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section is a few queue operations that cannot panic
        // half-way, so std's poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a permit, suspending the fiber until one is free.
    ///
    /// Returns at once, without suspending, if a permit is free. Fails with
    /// `Cancelled` if the fiber is cancelled while it waits; it then holds
    /// no permit, and the permit it would have got goes to the next waiter.
    pub fn acquire(&self) -> Result<()> {
        if self.try_acquire() {
            return Ok(());
        }
        suspend_with_cancel(
            "semaphore acquire",
            |r| {
                let mut st = self.state();
                // Re-check: a permit may have been released meanwhile.
                if st.permits > 0 {
                    st.permits -= 1;
                    drop(st);
                    let _ = r.resume(());
                } else {
                    st.waiters.push_back(r);
                }
            },
            |r, reason| {
                let mut st = self.state();
                if let Some(i) = st.waiters.iter().position(|w| w.same_wait(r)) {
                    // Not handed a permit yet, and now no release can pick us.
                    let _ = st.waiters.remove(i);
                    drop(st);
                    let _ = r.fail(Error::cancelled(reason.clone()));
                }
                // Otherwise a release already gave us its permit; that resume
                // wins and `acquire` returns `Ok`.
            },
        )
    }

    /// Like [`acquire`](Semaphore::acquire), returning a [`Permit`] that
    /// releases itself when dropped.
    pub fn acquire_permit(&self) -> Result<Permit<'_>> {
        self.acquire()?;
        Ok(Permit { sem: self })
    }

    /// Takes a permit if one is free now, without suspending.
    pub fn try_acquire(&self) -> bool {
        let mut st = self.state();
        if st.permits > 0 {
            debug_assert!(st.waiters.is_empty(), "free permits while fibers wait");
            st.permits -= 1;
            true
        } else {
            false
        }
    }

    /// Like [`try_acquire`](Semaphore::try_acquire), returning a [`Permit`].
    pub fn try_acquire_permit(&self) -> Option<Permit<'_>> {
        // Built only if acquired: dropping a permit releases it.
        self.try_acquire().then(|| Permit { sem: self })
    }

    /// Gives a permit back: to the oldest waiting fiber if there is one,
    /// else to the pool of free permits.
    ///
    /// A release needs no matching acquire; it may raise the number of
    /// permits above the initial count.
    ///
    /// # Panics
    /// If the number of free permits would overflow `usize`.
    pub fn release(&self) {
        let mut st = self.state();
        while let Some(w) = st.waiters.pop_front() {
            // A queued waiter is always claimable (a cancelled one leaves the
            // queue before failing); the loop is only a safety net.
            if w.resume(()).is_ok() {
                return;
            }
        }
        st.permits = st
            .permits
            .checked_add(1)
            .expect("semaphore permit count would overflow");
    }

    /// The number of free permits now (0 while fibers are waiting).
    pub fn available(&self) -> usize {
        self.state().permits
    }

    /// The number of fibers waiting in [`acquire`](Semaphore::acquire).
    pub fn waiting(&self) -> usize {
        self.state().waiters.len()
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("Semaphore")
            .field("available", &st.permits)
            .field("waiting", &st.waiters.len())
            .finish()
    }
}

impl Permit<'_> {
    /// Consumes the permit without releasing it (the semaphore keeps one
    /// permit fewer).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.sem.release();
    }
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Permit")
    }
}
