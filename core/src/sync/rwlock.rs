//! Reader-writer locks: many readers or one writer, for fibers on any thread.
//!
//! [`RwLock::read`] gives shared access and [`RwLock::write`] exclusive
//! access; both suspend the fiber (never the thread) while they must wait.
//! The lock is fair: requests are served in the order they were made, so a
//! waiting writer blocks readers that arrive after it, and a stream of
//! readers cannot starve a writer. When a writer finishes, every reader
//! queued before the next writer is let in at once.
//!
//! Cancellation and poisoning work as for [`Mutex`](super::Mutex): a
//! cancelled waiter never ends up holding the lock; a writer that fails in
//! [`use_write`](RwLock::use_write), or whose guard is dropped while its fiber
//! panics, poisons the lock, after which `read` and `write` fail with
//! [`ErrorKind::Poisoned`]. Readers cannot modify the data, so they never
//! poison it.
//!
//! ```
//! use weft::{fiber, sync::RwLock, traceln};
//!
//! let (result, trace) = weft::mock::run_traced(|_env| {
//!     let config = RwLock::new(String::from("v1"));
//!     fiber::all([
//!         Box::new(|| {
//!             let c = config.read()?;
//!             traceln!("reader 1 sees {}", *c);
//!             fiber::yield_now()?;
//!             Ok(())
//!         }) as Box<dyn FnOnce() -> weft::Result<()>>,
//!         Box::new(|| {
//!             let mut c = config.write()?; // waits for reader 1
//!             *c = String::from("v2");
//!             traceln!("writer updated");
//!             Ok(())
//!         }),
//!         Box::new(|| {
//!             let c = config.read()?; // queued behind the writer
//!             traceln!("reader 2 sees {}", *c);
//!             Ok(())
//!         }),
//!     ])
//! });
//! result.unwrap();
//! assert_eq!(trace, ["reader 1 sees v1", "writer updated", "reader 2 sees v2"]);
//! ```
//!
//! Readers on different threads share `&T`, so an `RwLock<T>` is `Sync` only
//! if `T` is both `Send` and `Sync`:
//!
//! ```
//! fn is_send_sync<T: Send + Sync>() {}
//! is_send_sync::<weft::sync::RwLock<Vec<u8>>>();
//! ```
//!
//! ```compile_fail
//! fn is_sync<T: Sync>() {}
//! is_sync::<weft::sync::RwLock<std::cell::Cell<u8>>>();
//! ```
//!
//! ```compile_fail
//! fn is_send<T: Send>() {}
//! is_send::<weft::sync::RwLock<std::rc::Rc<u8>>>();
//! ```

use std::cell::UnsafeCell;
use std::marker::PhantomData;

use super::poison::{self, run_poisoning};
use super::wait_queue::{self, lock, Queued, WaitQueue};
use crate::error::{Error, ErrorKind, Result};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    Read,
    Write,
}

struct State {
    /// Active readers (including readers handed the lock but not yet run).
    readers: usize,
    /// True while a writer holds the lock (or has been handed it).
    writer: bool,
    /// The failure that poisoned the lock.
    poison: Option<Error>,
    /// Waiting fibers, oldest first. Invariant: the head of the queue cannot
    /// be admitted now (else it would have been).
    queue: WaitQueue<Want>,
}

impl State {
    fn can_read(&self) -> bool {
        !self.writer && self.queue.is_empty()
    }

    fn can_write(&self) -> bool {
        !self.writer && self.readers == 0 && self.queue.is_empty()
    }

    /// Counts the lock as held for `want`.
    fn grant(&mut self, want: Want) {
        match want {
            Want::Read => self.readers += 1,
            Want::Write => self.writer = true,
        }
    }

    /// Admits waiters from the head of the queue for as long as they fit:
    /// one writer, or every reader up to the next writer.
    fn admit(&mut self) {
        while let Some(want) = self.queue.front() {
            let fits = match want {
                Want::Read => !self.writer,
                Want::Write => !self.writer && self.readers == 0,
            };
            if !fits {
                return;
            }
            // Queued waiters are always claimable (a cancelled one leaves
            // the queue before failing); the check is only a safety net.
            if self.queue.wake_front() {
                self.grant(want);
            }
        }
    }
}

impl Queued for State {
    type Want = Want;

    fn queue(&mut self) -> &mut WaitQueue<Want> {
        &mut self.queue
    }

    fn take_now(&mut self, want: Want) -> Result<bool> {
        if let Some(cause) = &self.poison {
            return Err(poisoned(cause));
        }
        let taken = match want {
            Want::Read => self.can_read(),
            Want::Write => self.can_write(),
        };
        if taken {
            self.grant(want);
        }
        Ok(taken)
    }

    /// A writer leaving the head of the queue may unblock the readers
    /// queued behind it.
    fn after_leave(&mut self) {
        self.admit();
    }
}

/// A fair, fiber-aware reader-writer lock protecting a `T`.
///
/// Requests are served in order, so a waiting writer blocks later readers.
pub struct RwLock<T: ?Sized> {
    state: std::sync::Mutex<State>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through guards (or `&mut self`/`self`).
// Write guards are created only while `writer` is set and `readers` is 0,
// read guards only while `writer` is clear, all decided under the state
// lock; so a `&mut T` never coexists with another reference. Readers on
// several threads share `&T` (needs `T: Sync`) and a writer on any thread
// gets `&mut T` (needs `T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

/// Shared access to the data of an [`RwLock`], released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _data: PhantomData<&'a T>,
}

/// Exclusive access to the data of an [`RwLock`], released when dropped; a
/// guard dropped while its fiber panics poisons the lock instead.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _data: PhantomData<&'a mut T>,
}

fn poisoned(cause: &Error) -> Error {
    poison::poisoned("rwlock", cause)
}

impl<T> RwLock<T> {
    /// A new, unlocked lock protecting `value`.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: std::sync::Mutex::new(State {
                readers: 0,
                writer: false,
                poison: None,
                queue: WaitQueue::new(),
            }),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock and returns its data, even if it is poisoned.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Takes shared access, suspending while a writer holds the lock or is
    /// waiting for it. Fails with `Cancelled` if the fiber is cancelled while
    /// it waits, and with [`ErrorKind::Poisoned`] if the lock is poisoned.
    pub fn read(&self) -> Result<RwLockReadGuard<'_, T>> {
        wait_queue::acquire("rwlock read", &self.state, Want::Read)?;
        Ok(RwLockReadGuard {
            lock: self,
            _data: PhantomData,
        })
    }

    /// Takes exclusive access, suspending while anyone else holds the lock
    /// or waits for it. Fails like [`read`](RwLock::read).
    pub fn write(&self) -> Result<RwLockWriteGuard<'_, T>> {
        wait_queue::acquire("rwlock write", &self.state, Want::Write)?;
        Ok(RwLockWriteGuard {
            lock: self,
            _data: PhantomData,
        })
    }

    /// Takes shared access if that is possible now without waiting.
    /// `Ok(None)` if not; `Err` if the lock is poisoned.
    pub fn try_read(&self) -> Result<Option<RwLockReadGuard<'_, T>>> {
        let taken = self.state().take_now(Want::Read)?;
        // Built only if taken: dropping a guard releases the lock.
        Ok(taken.then(|| RwLockReadGuard {
            lock: self,
            _data: PhantomData,
        }))
    }

    /// Takes exclusive access if that is possible now without waiting.
    pub fn try_write(&self) -> Result<Option<RwLockWriteGuard<'_, T>>> {
        let taken = self.state().take_now(Want::Write)?;
        // Built only if taken: dropping a guard releases the lock.
        Ok(taken.then(|| RwLockWriteGuard {
            lock: self,
            _data: PhantomData,
        }))
    }

    /// Runs `f` with exclusive access. If `f` fails or panics the lock is
    /// poisoned (as [`Mutex::use_rw`](super::Mutex::use_rw)); with
    /// `protect: true`, `f` runs inside [`cancel::protect`](crate::cancel::protect).
    pub fn use_write<R>(&self, protect: bool, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        run_poisoning(self.write()?, protect, f, RwLockWriteGuard::poison)
    }

    /// Runs `f` with shared access. Never poisons the lock.
    pub fn use_read<R>(&self, f: impl FnOnce(&T) -> Result<R>) -> Result<R> {
        let guard = self.read()?;
        f(&guard)
    }

    /// True once the lock has been poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.state().poison.is_some()
    }

    /// Mutable access without locking: `&mut self` proves no guard exists.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn release_read(&self) {
        let mut st = self.state();
        debug_assert!(st.readers > 0, "releasing a read lock nobody holds");
        st.readers -= 1;
        if st.poison.is_none() {
            st.admit();
        }
    }

    fn release_write(&self) {
        let mut st = self.state();
        if st.poison.is_some() {
            return;
        }
        debug_assert!(st.writer, "releasing a write lock nobody holds");
        st.writer = false;
        st.admit();
    }

    fn poison(&self, cause: Error) {
        let waiters = {
            let mut st = self.state();
            st.poison = Some(cause.clone());
            st.queue.take()
        };
        waiters.fail_all(|| poisoned(&cause));
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T: ?Sized> std::fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("RwLock")
            .field("readers", &st.readers)
            .field("writer", &st.writer)
            .field("poisoned", &st.poison.is_some())
            .field("waiting", &st.queue.len())
            .finish_non_exhaustive()
    }
}

impl<T: ?Sized> std::ops::Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this read guard counts in `readers`, so no writer holds the
        // lock (nor can get it) until the guard is dropped; only shared
        // references exist meanwhile.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release_read();
    }
}

impl<T: ?Sized> RwLockWriteGuard<'_, T> {
    fn poison(self, cause: Error) {
        let lock = self.lock;
        std::mem::forget(self);
        lock.poison(cause);
    }
}

impl<T: ?Sized> std::ops::Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard is the writer (`writer` is set on its behalf and
        // `readers` is 0), so nobody else reaches the data until it is dropped.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> std::ops::DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.lock.poison(Error::msg(
                ErrorKind::Panic,
                "a fiber panicked while holding the write lock",
            ));
        } else {
            self.lock.release_write();
        }
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}
