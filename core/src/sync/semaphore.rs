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

use super::wait_queue::{self, lock, Queued, WaitQueue};
use crate::error::Result;

struct State {
    /// Free permits. Zero whenever `waiters` is non-empty: a release with
    /// waiters hands its permit over instead of counting it.
    permits: usize,
    /// Fibers waiting in `acquire`, oldest first.
    waiters: WaitQueue,
}

impl Queued for State {
    type Want = ();

    fn queue(&mut self) -> &mut WaitQueue {
        &mut self.waiters
    }

    fn take_now(&mut self, (): ()) -> Result<bool> {
        if self.permits == 0 {
            return Ok(false);
        }
        debug_assert!(self.waiters.is_empty(), "free permits while fibers wait");
        self.permits -= 1;
        Ok(true)
    }
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
                waiters: WaitQueue::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Takes a permit, suspending the fiber until one is free.
    ///
    /// Returns at once, without suspending, if a permit is free. Fails with
    /// `Cancelled` if the fiber is cancelled while it waits; it then holds
    /// no permit, and the permit it would have got goes to the next waiter.
    pub fn acquire(&self) -> Result<()> {
        wait_queue::acquire("semaphore acquire", &self.state, ())
    }

    /// Like [`acquire`](Semaphore::acquire), returning a [`Permit`] that
    /// releases itself when dropped.
    pub fn acquire_permit(&self) -> Result<Permit<'_>> {
        self.acquire()?;
        Ok(Permit { sem: self })
    }

    /// Takes a permit if one is free now, without suspending.
    pub fn try_acquire(&self) -> bool {
        // Never fails: a semaphore has no poison.
        self.state().take_now(()).unwrap_or(false)
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
        // A woken waiter takes the permit: it is not counted as free.
        if st.waiters.wake_oldest() {
            return;
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
