//! Resource pools: reuse expensive resources (connections, buffers) between
//! fibers, creating at most a fixed number of them.
//!
//! [`Pool::with`] lends a resource to a function: an idle one if there is
//! one, else a new one (made by the pool's `alloc` function) if fewer than
//! `max_size` exist, else the next one returned by another fiber — fibers
//! wait in FIFO order. Afterwards the resource goes back to the pool.
//!
//! The semantics are Eio's `Pool`:
//!
//! * a resource is checked with the `validate` function (if any) each time
//!   it is reused; one that fails is passed to `dispose` and replaced by a
//!   fresh one;
//! * when the function returns `Err`, the resource still goes back to the
//!   pool (use `validate` to weed out broken ones);
//! * if `alloc` fails, that use fails, but the pool keeps its capacity: a
//!   later (or waiting) use tries to allocate again;
//! * resources are created lazily, in the fiber that needs one; a fiber that
//!   makes room for a new resource waits its turn for it like everyone else.
//!
//! One difference, for Rust: if the function (or `alloc`, `validate`,
//! `dispose`) *panics*, the resource it had is disposed rather than reused —
//! a panic may leave it in any state — and the panic continues.
//!
//! ```
//! use weft::{fiber, sync::Pool, traceln};
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! let (result, trace) = weft::mock::run_traced(|_env| {
//!     let made = AtomicUsize::new(0);
//!     let pool = Pool::new(1, || {
//!         let id = made.fetch_add(1, Ordering::Relaxed);
//!         traceln!("Creating item {id}");
//!         Ok(id)
//!     });
//!     fiber::both(
//!         || pool.with(|x| { traceln!("A: using item {x}"); fiber::yield_now() }),
//!         || pool.with(|x| { traceln!("B: using item {x}"); Ok(()) }),
//!     )
//! });
//! result.unwrap();
//! assert_eq!(trace, ["Creating item 0", "A: using item 0", "B: using item 0"]);
//! ```
//!
//! A pool is shared between threads when its resources and functions can be:
//!
//! ```
//! fn is_send_sync<T: Send + Sync>() {}
//! fn check<A: Fn() -> weft::Result<Vec<u8>> + Send + Sync>(a: A) {
//!     is_send_sync::<weft::sync::Pool<Vec<u8>, A>>();
//! }
//! check(|| Ok(Vec::new()));
//! ```
//!
//! ```compile_fail
//! fn is_sync<T: Sync>() {}
//! fn check<A: Fn() -> weft::Result<std::rc::Rc<u8>> + Send + Sync>(a: A) {
//!     is_sync::<weft::sync::Pool<std::rc::Rc<u8>, A>>();
//! }
//! ```

use std::collections::VecDeque;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::backend::{suspend_with_cancel, Resumer};
use crate::error::{Error, Result};

/// A slot is the right to hold one resource; it may hold none yet (or any
/// more, after a failed allocation or a disposal).
type Slot<T> = Option<T>;

struct State<T> {
    /// Slots that exist, idle or in use.
    slots: usize,
    /// Idle slots, oldest first.
    idle: VecDeque<Slot<T>>,
    /// Fibers waiting for a slot, oldest first.
    waiters: VecDeque<Resumer<Slot<T>>>,
}

/// A pool of up to `max_size` reusable resources of type `T`, made by `A`,
/// checked by `V` and disposed of by `D`; fibers wait for a resource in FIFO
/// order. Built with [`Pool::new`], then optionally
/// [`validate`](Pool::validate) and [`dispose`](Pool::dispose).
pub struct Pool<T, A, V = fn(&T) -> bool, D = fn(T)> {
    state: std::sync::Mutex<State<T>>,
    max_size: usize,
    alloc: A,
    validate: V,
    dispose: D,
}

impl<T, A: Fn() -> Result<T>> Pool<T, A> {
    /// A pool allowing up to `max_size` resources at a time, made by `alloc`
    /// when needed (in the fiber that needs one). Every resource is valid,
    /// and disposing of one just drops it, unless [`validate`](Pool::validate)
    /// and [`dispose`](Pool::dispose) say otherwise.
    ///
    /// # Panics
    /// If `max_size` is 0.
    pub fn new(max_size: usize, alloc: A) -> Pool<T, A> {
        assert!(max_size > 0, "Pool::new: max_size must be at least 1");
        Pool {
            state: std::sync::Mutex::new(State {
                slots: 0,
                idle: VecDeque::new(),
                waiters: VecDeque::new(),
            }),
            max_size,
            alloc,
            validate: |_| true,
            dispose: drop,
        }
    }
}

impl<T, A, V, D> Pool<T, A, V, D> {
    /// Uses `validate` to check a resource each time before it is reused;
    /// one for which it returns `false` is disposed of and replaced.
    pub fn validate<V2: Fn(&T) -> bool>(self, validate: V2) -> Pool<T, A, V2, D> {
        Pool {
            state: self.state,
            max_size: self.max_size,
            alloc: self.alloc,
            validate,
            dispose: self.dispose,
        }
    }

    /// Uses `dispose` to free resources rejected by the `validate` function
    /// (or left behind by a panic). Idle resources still in the pool when it
    /// is dropped are simply dropped.
    pub fn dispose<D2: Fn(T)>(self, dispose: D2) -> Pool<T, A, V, D2> {
        Pool {
            state: self.state,
            max_size: self.max_size,
            alloc: self.alloc,
            validate: self.validate,
            dispose,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // The critical sections cannot panic half-way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The maximum number of resources.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The number of idle slots (each holding a resource, or room for one).
    pub fn idle(&self) -> usize {
        self.state().idle.len()
    }

    /// Returns a slot: to the oldest waiter, else to the idle list.
    fn put_back(&self, slot: Slot<T>) {
        let mut st = self.state();
        let mut slot = slot;
        while let Some(w) = st.waiters.pop_front() {
            // A queued waiter is always claimable (a cancelled one leaves
            // the queue before failing); the loop is only a safety net.
            match w.resume(slot) {
                Ok(()) => return,
                Err(back) => slot = back,
            }
        }
        st.idle.push_back(slot);
    }

    /// Waits for a slot (one may already be idle: then we still let the
    /// other fibers run first).
    fn wait_slot(&self) -> Result<Slot<T>> {
        suspend_with_cancel(
            "pool",
            |r| {
                let mut st = self.state();
                match st.idle.pop_front() {
                    Some(slot) => {
                        drop(st);
                        if let Err(slot) = r.resume(slot) {
                            self.put_back(slot);
                        }
                    }
                    None => st.waiters.push_back(r),
                }
            },
            |r, reason| {
                let mut st = self.state();
                if let Some(i) = st.waiters.iter().position(|w| w.same_wait(r)) {
                    let _ = st.waiters.remove(i);
                    drop(st);
                    let _ = r.fail(Error::cancelled(reason.clone()));
                }
                // Otherwise a slot has been handed to us: we keep it, and
                // give it back after `with` (which will fail at its first
                // suspension point).
            },
        )
    }
}

impl<T, A, V, D> Pool<T, A, V, D>
where
    A: Fn() -> Result<T>,
    V: Fn(&T) -> bool,
    D: Fn(T),
{
    /// Runs `f` with a resource from the pool, waiting (in FIFO order) if
    /// all `max_size` resources are in use; then returns the resource to
    /// the pool, whether `f` succeeded or not.
    ///
    /// Fails with `f`'s error, with `alloc`'s if a new resource could not
    /// be made, or with `Cancelled` if the fiber is cancelled while it
    /// waits.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        let slot = {
            let mut st = self.state();
            match st.idle.pop_front() {
                Some(slot) => Some(slot),
                None => {
                    if st.slots < self.max_size {
                        // Room for one more: make an empty slot and queue it
                        // like a returned one (it goes to the oldest waiter,
                        // who may be us once we queue).
                        st.slots += 1;
                        drop(st);
                        self.put_back(None);
                    }
                    None
                }
            }
        };
        let slot = match slot {
            Some(slot) => slot,
            None => self.wait_slot()?,
        };
        self.run_with(slot, f)
    }

    /// Like [`with`](Pool::with), but never waits: if every resource is in
    /// use, a fresh one is made for `f` alone and disposed of afterwards
    /// (Eio's `~never_block:true`).
    pub fn with_never_block<R>(&self, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        let slot = {
            let mut st = self.state();
            match st.idle.pop_front() {
                Some(slot) => Some(slot),
                None if st.slots < self.max_size => {
                    st.slots += 1;
                    drop(st);
                    self.put_back(None);
                    None
                }
                None => {
                    drop(st);
                    return self.run_extra(f);
                }
            }
        };
        let slot = match slot {
            Some(slot) => slot,
            None => self.wait_slot()?,
        };
        self.run_with(slot, f)
    }

    /// Makes sure `slot` holds a valid resource and runs `f` with it, then
    /// gives the slot back.
    fn run_with<R>(&self, mut slot: Slot<T>, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        let r = catch_unwind(AssertUnwindSafe(|| {
            if let Some(x) = &slot {
                if !(self.validate)(x) {
                    // Taken out first: even if `dispose` panics, the
                    // resource counts as disposed.
                    let x = slot.take().expect("checked above");
                    (self.dispose)(x);
                }
            }
            let x = match &mut slot {
                Some(x) => x,
                None => slot.insert((self.alloc)()?),
            };
            f(x)
        }));
        match r {
            Ok(r) => {
                self.put_back(slot);
                r
            }
            Err(p) => {
                if let Some(x) = slot.take() {
                    let _ = catch_unwind(AssertUnwindSafe(|| (self.dispose)(x)));
                }
                self.put_back(None);
                resume_unwind(p)
            }
        }
    }

    /// Runs `f` with a resource made for it alone, then disposes of it.
    fn run_extra<R>(&self, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        let mut x = (self.alloc)()?;
        let r = catch_unwind(AssertUnwindSafe(|| f(&mut x)));
        (self.dispose)(x);
        match r {
            Ok(r) => r,
            Err(p) => resume_unwind(p),
        }
    }
}

impl<T, A, V, D> std::fmt::Debug for Pool<T, A, V, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("Pool")
            .field("max_size", &self.max_size)
            .field("slots", &st.slots)
            .field("idle", &st.idle.len())
            .field("waiting", &st.waiters.len())
            .finish()
    }
}
