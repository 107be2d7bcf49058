//! Mutexes: mutual exclusion between fibers, on one thread or across threads.
//!
//! [`Mutex::lock`] suspends the calling fiber (never the thread) while another
//! fiber holds the lock; waiters get the lock in the order they asked for it.
//! Waiting is a cancellation point: a cancelled waiter returns
//! `Err(Cancelled)` and never ends up owning the lock.
//!
//! As in Eio, a mutex is *poisoned* when a writer fails in its critical
//! section, because the data it protects may be half-updated:
//!
//! * [`use_rw`](Mutex::use_rw) poisons the mutex when its function returns
//!   `Err` or panics;
//! * a [`MutexGuard`] dropped while its fiber panics poisons it too;
//! * [`use_ro`](Mutex::use_ro) never poisons: a reader cannot break the data.
//!
//! Locking a poisoned mutex fails with [`ErrorKind::Poisoned`] (whose source
//! is the error that poisoned it), and fibers already waiting are woken with
//! that error.
//!
//! If the critical section is only a few non-suspending operations on
//! in-memory data, `std::sync::Mutex` is cheaper. Use this one when the
//! critical section suspends (IO, sleeping, waiting for other fibers).
//!
//! The example below is Eio's `Atomic_file`, on an in-memory "file": `save`
//! runs its critical section protected from cancellation, so a cancelled
//! save still finishes writing; `load` waits until the save is done.
//!
//! ```
//! use weft::{fiber, sync::Mutex, traceln};
//!
//! struct AtomicFile {
//!     data: Mutex<String>,
//! }
//!
//! impl AtomicFile {
//!     fn save(&self, data: &str) -> weft::Result<()> {
//!         self.data.use_rw(true, |file| {
//!             file.clear();
//!             fiber::yield_now()?; // writing takes a while
//!             file.push_str(data);
//!             Ok(())
//!         })
//!     }
//!
//!     fn load(&self) -> weft::Result<String> {
//!         self.data.use_ro(|file| Ok(file.clone()))
//!     }
//! }
//!
//! let (result, trace) = weft::mock::run_traced(|_env| {
//!     let t = AtomicFile { data: Mutex::new(String::new()) };
//!     fiber::both(
//!         || t.save("some data"),
//!         || {
//!             let data = t.load()?;
//!             traceln!("Loaded: {data:?}");
//!             Ok(())
//!         },
//!     )
//! });
//! result.unwrap();
//! assert_eq!(trace, [r#"Loaded: "some data""#]);
//! ```
//!
//! A `Mutex<T>` can be shared between threads when `T` can be sent between
//! them:
//!
//! ```
//! fn is_send_sync<T: Send + Sync>() {}
//! is_send_sync::<weft::sync::Mutex<Vec<u8>>>();
//! is_send_sync::<weft::sync::Mutex<std::cell::Cell<u8>>>();
//! ```
//!
//! ```compile_fail
//! fn is_send<T: Send>() {}
//! is_send::<weft::sync::Mutex<std::rc::Rc<u32>>>();
//! ```
//!
//! ```compile_fail
//! fn is_sync<T: Sync>() {}
//! is_sync::<weft::sync::Mutex<std::rc::Rc<u32>>>();
//! ```
//!
//! A guard gives `&T` to whoever can see it, so it is only `Sync` when `T`
//! is:
//!
//! ```compile_fail
//! fn is_sync<T: Sync>() {}
//! is_sync::<weft::sync::MutexGuard<'static, std::cell::Cell<u8>>>();
//! ```

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::poison::{self, run_poisoning};
use super::wait_queue::{self, lock, Queued, WaitQueue};
use crate::error::{Error, ErrorKind, Result};

struct State {
    /// True while a guard exists, or while the lock is being handed to a
    /// waiter that has not run yet (it owns the lock already).
    locked: bool,
    /// The failure that poisoned the mutex.
    poison: Option<Error>,
    /// Fibers waiting in `lock`, oldest first. Non-empty only while locked
    /// and not poisoned.
    waiters: WaitQueue,
}

impl Queued for State {
    type Want = ();

    fn queue(&mut self) -> &mut WaitQueue {
        &mut self.waiters
    }

    fn take_now(&mut self, (): ()) -> Result<bool> {
        if let Some(cause) = &self.poison {
            return Err(poisoned(cause));
        }
        if self.locked {
            return Ok(false);
        }
        self.locked = true;
        Ok(true)
    }
}

/// A fiber-aware mutual-exclusion lock protecting a `T`: waiting suspends
/// the fiber, waiters are served in FIFO order, and a writer that fails
/// poisons it (see [`use_rw`](Mutex::use_rw)).
///
/// ```
/// use weft::{fiber, sync::Mutex, ErrorKind, Error};
///
/// weft::mock::run(|_env| {
///     let log = Mutex::new(Vec::new());
///     fiber::both(
///         || {
///             let mut l = log.lock()?;
///             l.push("a1");
///             fiber::yield_now()?; // still holding the lock
///             l.push("a2");
///             Ok(())
///         },
///         || {
///             log.lock()?.push("b"); // waits for the first fiber
///             Ok(())
///         },
///     )?;
///     assert_eq!(*log.lock()?, ["a1", "a2", "b"]);
///
///     // A writer that fails leaves the data suspect: the mutex is poisoned.
///     let r: weft::Result<()> = log.use_rw(false, |l| {
///         l.clear();
///         Err(Error::msg(ErrorKind::InvalidInput, "gave up half-way"))
///     });
///     assert!(r.is_err());
///     assert_eq!(log.lock().unwrap_err().kind(), &ErrorKind::Poisoned);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct Mutex<T: ?Sized> {
    state: std::sync::Mutex<State>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a `MutexGuard` (or through
// `&mut self`/`self`), and at most one guard exists at a time: a guard is
// created only by the fiber that set `locked` from false to true under the
// state lock, or that was handed the still-locked mutex by the previous
// guard's drop, which then no longer touches the data. Whoever holds the
// guard may be on any thread and gets `&mut T`, so `T: Send` is required
// (as for `std::sync::Mutex`); `T: Sync` is not, since the data is never
// shared by two threads at once.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Exclusive access to the data of a locked [`Mutex`]. The lock is released
/// when the guard is dropped; a guard dropped while its fiber panics
/// poisons the mutex instead.
#[must_use = "the mutex is unlocked as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    /// Makes the guard `Send` only if `T: Send` and `Sync` only if `T: Sync`.
    _data: PhantomData<&'a mut T>,
}

/// The error returned when locking a mutex poisoned by `cause`.
fn poisoned(cause: &Error) -> Error {
    poison::poisoned("mutex", cause)
}

impl<T> Mutex<T> {
    /// A new, unlocked mutex protecting `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            state: std::sync::Mutex::new(State {
                locked: false,
                poison: None,
                waiters: WaitQueue::new(),
            }),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns its data, even if it is poisoned
    /// (check [`is_poisoned`](Mutex::is_poisoned) first if that matters).
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Locks the mutex, suspending the fiber while another one holds it.
    ///
    /// Returns at once, without suspending, if the mutex is free. Fails
    /// with `Cancelled` if the fiber is cancelled while it waits (it then
    /// does not hold the lock), and with [`ErrorKind::Poisoned`] if the
    /// mutex is or becomes poisoned.
    pub fn lock(&self) -> Result<MutexGuard<'_, T>> {
        wait_queue::acquire("mutex lock", &self.state, ())?;
        Ok(self.guard())
    }

    /// Locks the mutex if it is free now. `Ok(None)` if another fiber holds
    /// it; `Err` if it is poisoned.
    pub fn try_lock(&self) -> Result<Option<MutexGuard<'_, T>>> {
        let taken = self.state().take_now(())?;
        // Built only if taken: dropping a guard unlocks.
        Ok(taken.then(|| self.guard()))
    }

    /// Runs `f` with exclusive, mutable access to the data.
    ///
    /// If `f` fails (returns `Err`, including `Err(Cancelled)`) or panics,
    /// the data may be left half-updated, so the mutex is poisoned and the
    /// failure passed on. With `protect: true`, `f` runs inside
    /// [`cancel::protect`](crate::cancel::protect), so cancelling the fiber does not interrupt the
    /// critical section (but waiting for the lock can still be cancelled).
    pub fn use_rw<R>(&self, protect: bool, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        run_poisoning(self.lock()?, protect, f, MutexGuard::poison)
    }

    /// Runs `f` with shared access to the data. The lock is released
    /// however `f` ends: since `f` cannot modify the data, a failure or
    /// panic does not poison the mutex.
    pub fn use_ro<R>(&self, f: impl FnOnce(&T) -> Result<R>) -> Result<R> {
        let guard = self.lock()?;
        let r = catch_unwind(AssertUnwindSafe(|| f(&guard)));
        guard.unlock_now();
        match r {
            Ok(r) => r,
            Err(p) => resume_unwind(p),
        }
    }

    /// True once the mutex has been poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.state().poison.is_some()
    }

    /// Mutable access to the data, without locking: `&mut self` proves that
    /// no guard exists. Works even if the mutex is poisoned.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// A guard for a lock the caller has just taken (or been handed).
    fn guard(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            mutex: self,
            _data: PhantomData,
        }
    }

    /// Releases the lock: hands it to the oldest waiter, or marks it free.
    fn unlock(&self) {
        let mut st = self.state();
        if st.poison.is_some() {
            // Stays locked for good; the waiters have already been failed.
            return;
        }
        debug_assert!(st.locked, "unlocking a mutex that is not locked");
        // `locked` stays true if a waiter is woken: the lock is its now.
        if !st.waiters.wake_oldest() {
            st.locked = false;
        }
    }

    /// Poisons the (locked) mutex with `cause` and fails every waiter.
    fn poison(&self, cause: Error) {
        let waiters = {
            let mut st = self.state();
            st.poison = Some(cause.clone());
            st.waiters.take()
        };
        waiters.fail_all(|| poisoned(&cause));
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Self {
        Mutex::new(value)
    }
}

impl<T: ?Sized> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("Mutex")
            .field("locked", &st.locked)
            .field("poisoned", &st.poison.is_some())
            .field("waiters", &st.waiters.len())
            .finish_non_exhaustive()
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// The mutex this guard locks.
    pub(crate) fn mutex(this: &Self) -> &'a Mutex<T> {
        this.mutex
    }

    /// Poisons the mutex, consuming the guard without unlocking.
    fn poison(self, cause: Error) {
        let mutex = self.mutex;
        std::mem::forget(self);
        mutex.poison(cause);
    }

    /// Unlocks, even if the fiber is panicking (for `use_ro`).
    fn unlock_now(self) {
        let mutex = self.mutex;
        std::mem::forget(self);
        mutex.unlock();
    }
}

impl<T: ?Sized> std::ops::Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard exists, so the mutex is locked on its behalf
        // and no other guard (nor `&mut Mutex`) can reach the data until it
        // is dropped; `&self` lends the access out for no longer than that.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> std::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only access
        // through the guard.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.mutex.poison(Error::msg(
                ErrorKind::Panic,
                "a fiber panicked while holding the mutex",
            ));
        } else {
            self.mutex.unlock();
        }
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + std::fmt::Display> std::fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&**self, f)
    }
}
