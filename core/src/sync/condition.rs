//! Condition variables: wait until some condition may have become true.
//!
//! A [`Condition`] carries no value. Fibers that change the inputs of some
//! condition call [`broadcast`](Condition::broadcast); fibers waiting for the
//! condition re-check it each time they are woken, in a loop, because it may
//! have changed again before they got to run.
//!
//! The safe way to use one across threads is with a [`Mutex`]:
//! [`wait`](Condition::wait) registers the fiber with the condition and only
//! then releases the mutex, so a change made under the mutex cannot slip in
//! between the check and the wait. This is Eio's module `Y`:
//!
//! ```
//! use weft::{fiber, sync::{Condition, Mutex}, traceln};
//!
//! struct Y {
//!     y: Mutex<i32>,
//!     changed: Condition,
//! }
//!
//! impl Y {
//!     fn await_zero(&self) -> weft::Result<()> {
//!         let mut y = self.y.lock()?;
//!         while *y != 0 {
//!             y = self.changed.wait(y)?;
//!         }
//!         traceln!("y is now zero (at least until we release the mutex)");
//!         Ok(())
//!     }
//!
//!     fn set(&self, value: i32) -> weft::Result<()> {
//!         self.y.use_rw(true, |y| {
//!             *y = value;
//!             self.changed.broadcast();
//!             traceln!("y set to {value}");
//!             Ok(())
//!         })
//!     }
//! }
//!
//! let (result, trace) = weft::mock::run_traced(|_env| {
//!     let t = Y { y: Mutex::new(5), changed: Condition::new() };
//!     fiber::both(
//!         || {
//!             traceln!("Waiting for y to be 0");
//!             t.await_zero()
//!         },
//!         || t.set(0),
//!     )
//! });
//! result.unwrap();
//! assert_eq!(
//!     trace,
//!     ["Waiting for y to be 0", "y set to 0", "y is now zero (at least until we release the mutex)"]
//! );
//! ```
//!
//! Without a mutex, [`wait_no_mutex`](Condition::wait_no_mutex) is only safe
//! when the check and the wait happen without switching fibers, on the
//! thread that makes the changes: a broadcast made before the wait starts is
//! not seen. [`loop_no_mutex`](Condition::loop_no_mutex) runs a function
//! again each time the condition is broadcast, and never misses a broadcast
//! made while the function runs. [`sequence`](Condition::sequence) and
//! [`wait_since`](Condition::wait_since) give the same guarantee to
//! hand-written loops.
//!
//! # Signal handlers
//!
//! [`broadcast`](Condition::broadcast) is async-signal-safe: it takes no
//! blocking lock, allocates and frees nothing, and wakes fibers through the
//! lock-free remote queue of their scheduler. A signal handler may call it on
//! a `static` condition (Eio's Ctrl-C example):
//!
//! ```
//! use weft::{fiber, sync::Condition, traceln};
//!
//! static INTERRUPTED: Condition = Condition::new();
//!
//! fn run_op() -> weft::Result<()> {
//!     fiber::first(
//!         || {
//!             INTERRUPTED.wait_no_mutex()?;
//!             traceln!("Cancelled at user's request.");
//!             Ok(())
//!         },
//!         || {
//!             traceln!("Running operation (Ctrl-C to cancel)...");
//!             // A signal handler would call this:
//!             INTERRUPTED.broadcast();
//!             Err(fiber::await_cancel()) // simulated work
//!         },
//!     )
//! }
//!
//! let (result, trace) = weft::mock::run_traced(|_env| run_op());
//! result.unwrap();
//! assert_eq!(trace, ["Running operation (Ctrl-C to cancel)...", "Cancelled at user's request."]);
//! ```
//!
//! A condition is shared freely between threads:
//!
//! ```
//! fn is_send_sync<T: Send + Sync>() {}
//! is_send_sync::<weft::sync::Condition>();
//! ```
//!
//! ```compile_fail
//! // `wait` gives back a guard of the same mutex, with the same lifetime:
//! use weft::sync::{Condition, Mutex};
//! fn f<'a>(c: &Condition, g: weft::sync::MutexGuard<'a, u8>) -> weft::sync::MutexGuard<'static, u8> {
//!     c.wait(g).unwrap()
//! }
//! ```
//!
//! # How `broadcast` stays signal-safe
//!
//! Waiters are kept in a `Vec` behind a tiny lock of our own (`locked`, an
//! atomic flag). Ordinary code takes it by spinning (its critical sections
//! are a few vector operations and never suspend); `broadcast` only ever
//! *tries* to take it, and if that fails it sets `pending` and returns,
//! leaving the wake-up to the current holder, which checks `pending` right
//! after releasing the lock and then does the broadcast itself. All
//! operations on `locked` and `pending` are `SeqCst`, so in their single
//! total order either the broadcaster's `try_lock` comes after the holder's
//! release (and succeeds, or fails to yet another holder, which will see
//! `pending` in turn), or the holder's check of `pending` comes after the
//! broadcaster set it. A broadcast is therefore never lost, and never waits.
//!
//! Waking a waiter (`Resumer::complete_deferred`) claims its wait with one
//! compare-exchange and pushes its wake slot onto the scheduler's lock-free
//! remote queue, moving an extra reference count into it (an atomic
//! increment, no allocation), then unparks the scheduler (an eventfd write
//! or futex wake). Woken entries are *not* removed from the vector by the
//! broadcaster: dropping them could free the last reference to a fiber's
//! wake slot inside the signal handler. The broadcaster only records that
//! the first `woken` entries are spent; ordinary code drops them later, the
//! next time it holds the lock (every woken fiber does so as it resumes).
//!
//! The invariant that makes the wake-ups infallible: every entry at or after
//! `woken` is an unclaimed wait. Only two parties claim an entry: a
//! broadcaster, which marks it spent under the lock, and the waiter's own
//! cancel hook, which removes the entry under the lock *before* failing the
//! wait.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use crate::backend::{suspend_with_cancel, Resumer};
use crate::error::{Error, Result};
use crate::sync::{Mutex, MutexGuard};

/// The waiter list, guarded by `Condition::locked`.
struct Waiters {
    entries: Vec<Resumer<()>>,
    /// `entries[..woken]` have been resumed and wait to be dropped by
    /// ordinary (non-signal) code; `entries[woken..]` are all unclaimed.
    woken: usize,
}

impl Waiters {
    /// Drops spent entries. Never call from `broadcast` (see module docs).
    fn sweep(&mut self) {
        self.entries.drain(..self.woken);
        self.woken = 0;
    }

    /// Wakes every unclaimed entry. Async-signal-safe: no allocation, no
    /// drop, no blocking.
    fn wake_all(&mut self) {
        for r in &self.entries[self.woken..] {
            // By the invariant the claim succeeds; were it to fail, `Ok(())`
            // comes back and is dropped, which frees nothing.
            let _ = r.complete_deferred(Ok(()));
        }
        self.woken = self.entries.len();
    }
}

/// A condition variable for fibers, usable across threads and from signal
/// handlers.
///
/// [`broadcast`](Condition::broadcast) is async-signal-safe.
pub struct Condition {
    /// Incremented by every broadcast, before it wakes anyone.
    seq: AtomicU64,
    /// A broadcast found the list locked and left its wake-up to the holder.
    pending: AtomicBool,
    /// The lock on `list`.
    locked: AtomicBool,
    list: UnsafeCell<Waiters>,
}

// SAFETY: `list` is only accessed by whoever set `locked` from false to true
// (a SeqCst compare-exchange, so it acquires) until it stores false again
// (SeqCst, so it releases); everything else is atomic. `Resumer<()>` is
// `Send + Sync`, so the entries may be used and dropped on any thread.
unsafe impl Sync for Condition {}

/// Holds `Condition::locked`; releasing it honours a pending broadcast.
struct ListGuard<'a> {
    cond: &'a Condition,
}

impl std::ops::Deref for ListGuard<'_> {
    type Target = Waiters;

    fn deref(&self) -> &Waiters {
        // SAFETY: the guard exists only while this thread holds `locked`.
        unsafe { &*self.cond.list.get() }
    }
}

impl std::ops::DerefMut for ListGuard<'_> {
    fn deref_mut(&mut self) -> &mut Waiters {
        // SAFETY: as in `deref`; `&mut self` makes this the only access.
        unsafe { &mut *self.cond.list.get() }
    }
}

impl Drop for ListGuard<'_> {
    fn drop(&mut self) {
        self.cond.locked.store(false, SeqCst);
        self.cond.flush_pending();
    }
}

impl Condition {
    /// A new condition. `const`, so it can be a `static` (for signal
    /// handlers).
    pub const fn new() -> Condition {
        Condition {
            seq: AtomicU64::new(0),
            pending: AtomicBool::new(false),
            locked: AtomicBool::new(false),
            list: UnsafeCell::new(Waiters {
                entries: Vec::new(),
                woken: 0,
            }),
        }
    }

    fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, SeqCst, SeqCst)
            .is_ok()
    }

    /// Takes the list lock from ordinary code, spinning while another thread
    /// (or a broadcast) holds it; its critical sections are short and never
    /// suspend.
    fn lock(&self) -> ListGuard<'_> {
        let mut spins = 0u32;
        while !self.try_lock() {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
        let mut g = ListGuard { cond: self };
        g.sweep();
        g
    }

    /// Performs pending broadcasts, unless someone else holds the lock (then
    /// they will, when they release it). Async-signal-safe.
    fn flush_pending(&self) {
        while self.pending.load(SeqCst) {
            if !self.try_lock() {
                return;
            }
            self.pending.store(false, SeqCst);
            // SAFETY: `try_lock` succeeded, so we hold `locked` until the
            // store below; no `ListGuard` is used here, so nothing is dropped.
            unsafe { (*self.list.get()).wake_all() };
            self.locked.store(false, SeqCst);
        }
    }

    /// Wakes every fiber waiting on the condition now. If none is waiting,
    /// nothing happens (the broadcast is not remembered, except by
    /// [`sequence`](Condition::sequence)).
    ///
    /// Callable from any thread, from outside any weft runtime, and from a
    /// signal handler (it never blocks, allocates or frees). Woken fibers
    /// are queued to run; none runs before `broadcast` returns.
    pub fn broadcast(&self) {
        self.seq.fetch_add(1, SeqCst);
        self.pending.store(true, SeqCst);
        self.flush_pending();
    }

    /// The cancel hook of both waits: fails the waiter `r` with
    /// `Cancelled` if it is still in the list.
    fn cancel_wait(&self, r: &Resumer<()>, reason: &Error) {
        let mut g = self.lock();
        if let Some(i) = g.entries.iter().position(|x| x.same_wait(r)) {
            // Unclaimed (all entries are, after the sweep in `lock`):
            // remove it, so no broadcast can claim it.
            g.entries.remove(i);
            drop(g);
            let _ = r.fail(Error::cancelled(reason.clone()));
        }
        // Otherwise a broadcast already woke us; that wins.
    }

    /// The number of broadcasts so far (wrapping). Read it before checking a
    /// condition, and pass it to [`wait_since`](Condition::wait_since) to
    /// wait without missing a broadcast that happens in between.
    pub fn sequence(&self) -> u64 {
        self.seq.load(SeqCst)
    }

    /// Waits until a broadcast happens after the one numbered `seen` (as
    /// returned by [`sequence`](Condition::sequence)). Returns at once —
    /// still letting other fibers run first — if one already has.
    ///
    /// Fails with `Cancelled` if the fiber is cancelled while it waits.
    pub fn wait_since(&self, seen: u64) -> Result<()> {
        suspend_with_cancel(
            "condition",
            |r| {
                let mut g = self.lock();
                if self.seq.load(SeqCst) != seen {
                    drop(g);
                    let _ = r.resume(());
                } else {
                    // A broadcast that increments `seq` after the check
                    // above finds us in the list (or finds the list locked,
                    // and we do its wake-up when `g` is dropped).
                    g.entries.push(r);
                }
            },
            |r, reason| self.cancel_wait(r, reason),
        )?;
        // Drop our spent entry (and any others) in ordinary code.
        drop(self.lock());
        Ok(())
    }

    /// Waits for the next broadcast.
    ///
    /// Only use this when the condition was checked on this thread without
    /// switching fibers since, and broadcasts come from this thread too, as
    /// in Eio's `await_no_mutex`: a broadcast made before the call is not
    /// seen. Across threads, use [`wait`](Condition::wait) with a mutex, or
    /// [`sequence`](Condition::sequence) with
    /// [`wait_since`](Condition::wait_since).
    pub fn wait_no_mutex(&self) -> Result<()> {
        self.wait_since(self.sequence())
    }

    /// Releases `guard`'s mutex, waits for a broadcast, and locks the mutex
    /// again, returning the new guard.
    ///
    /// The fiber is registered with the condition *before* the mutex is
    /// released, so a fiber that changes the data under the mutex and then
    /// broadcasts cannot be missed. Call it in a loop that re-checks the
    /// condition.
    ///
    /// If the fiber is cancelled while it waits (or while it waits to lock
    /// the mutex again), `wait` returns `Err(Cancelled)` *without* the lock:
    /// the guard was consumed and the mutex stays unlocked, since there is
    /// no guard to give back with the error. (Eio re-locks the mutex before
    /// raising, because its callers unlock it themselves; a Rust caller has
    /// no guard left to unlock.) Fails with [`Poisoned`] if the mutex was
    /// poisoned meanwhile.
    ///
    /// [`Poisoned`]: crate::ErrorKind::Poisoned
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> Result<MutexGuard<'a, T>> {
        let mutex: &'a Mutex<T> = MutexGuard::mutex(&guard);
        let mut guard = Some(guard);
        suspend_with_cancel(
            "condition (with mutex)",
            |r| {
                self.lock().entries.push(r);
                // Registered: now let the others at the data.
                drop(guard.take());
            },
            |r, reason| self.cancel_wait(r, reason),
        )?;
        // (If the fiber was already cancelled, `register` never ran and
        // `guard` is dropped here, unlocking the mutex.)
        drop(guard);
        drop(self.lock());
        mutex.lock()
    }

    /// Runs `update` until it returns `Some(x)`, then returns `x`; after each
    /// `None`, waits for a broadcast before running it again.
    ///
    /// A broadcast made while `update` runs is not missed: `update` then
    /// runs again at once (after letting other fibers run). This is Eio's
    /// `loop_no_mutex`, e.g. for reloading a configuration file each time a
    /// signal handler broadcasts that it changed. An `Err` from `update`
    /// ends the loop.
    ///
    /// ```
    /// use weft::{fiber, sync::Condition, traceln};
    /// use std::cell::Cell;
    ///
    /// weft::mock::run(|_env| {
    ///     let changed = Condition::new();
    ///     let x = Cell::new(0);
    ///     fiber::both(
    ///         || {
    ///             let seen = changed.loop_no_mutex(|| {
    ///                 Ok((x.get() == 3).then_some(x.get()))
    ///             })?;
    ///             traceln!("saw {seen}");
    ///             Ok(())
    ///         },
    ///         || {
    ///             for v in 1..=3 {
    ///                 x.set(v);
    ///                 changed.broadcast();
    ///                 fiber::yield_now()?;
    ///             }
    ///             Ok(())
    ///         },
    ///     )
    /// })
    /// .unwrap();
    /// ```
    pub fn loop_no_mutex<R>(&self, mut update: impl FnMut() -> Result<Option<R>>) -> Result<R> {
        loop {
            let seen = self.sequence();
            if let Some(r) = update()? {
                return Ok(r);
            }
            self.wait_since(seen)?;
        }
    }

    /// The number of fibers waiting now (for diagnostics and tests).
    pub fn waiting(&self) -> usize {
        let g = self.lock();
        g.entries.len() - g.woken
    }
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("sequence", &self.sequence())
            .field("waiting", &self.waiting())
            .finish()
    }
}
