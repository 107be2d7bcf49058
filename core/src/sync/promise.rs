//! Promises: a value that is resolved once and awaited by any number of
//! fibers, on any thread.
//!
//! ```
//! use weft::{fiber, sync::Promise, traceln};
//!
//! weft::mock::run(|_env| {
//!     let (promise, resolver) = Promise::new();
//!     fiber::both(
//!         || {
//!             traceln!("Waiting for promise...");
//!             let x = promise.wait()?;
//!             traceln!("x = {x}");
//!             Ok(())
//!         },
//!         || {
//!             traceln!("Resolving promise");
//!             resolver.resolve(42).unwrap();
//!             Ok(())
//!         },
//!     )
//! })
//! .unwrap();
//! ```
//!
//! A `Promise` can be shared across threads when its value can:
//!
//! ```
//! fn is_send_sync<T: Send + Sync>() {}
//! is_send_sync::<weft::sync::Promise<u32>>();
//! is_send_sync::<weft::sync::Resolver<u32>>();
//! ```
//!
//! ```compile_fail
//! fn is_send<T: Send>() {}
//! is_send::<weft::sync::Promise<std::rc::Rc<u32>>>();
//! ```

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::backend::{suspend_with_cancel, Resumer};
use crate::error::{Error, ErrorKind, Result};

use super::spin::SpinLock;

const PENDING: u8 = 0;
const RESOLVED: u8 = 1;
const ABANDONED: u8 = 2;

struct Inner<T> {
    state: AtomicU8,
    /// Written once, under `waiters`' lock, before `state` becomes RESOLVED.
    value: UnsafeCell<Option<T>>,
    waiters: SpinLock<Waiters>,
    resolvers: AtomicUsize,
}

/// The fibers waiting on a promise. The common single waiter sits inline, so
/// it costs no allocation, and taking or dropping an empty set is a few
/// instructions (a `SmallVec` costs several times that on this path).
#[derive(Default)]
struct Waiters {
    first: Option<Resumer<()>>,
    rest: Vec<Resumer<()>>,
}

impl Waiters {
    fn push(&mut self, r: Resumer<()>) {
        if self.first.is_none() {
            self.first = Some(r);
        } else {
            self.rest.push(r);
        }
    }

    /// Forgets the waiter whose wait `r` belongs to, keeping the others in
    /// wait order.
    fn remove(&mut self, r: &Resumer<()>) {
        if self.first.as_ref().is_some_and(|x| x.same_wait(r)) {
            self.first = (!self.rest.is_empty()).then(|| self.rest.remove(0));
        } else {
            self.rest.retain(|x| !x.same_wait(r));
        }
    }

    /// Resumes every waiter.
    #[inline]
    fn wake_all(self) {
        if let Some(r) = self.first {
            let _ = r.resume(());
        }
        // Most promises have one waiter or none: skip building an iterator.
        if !self.rest.is_empty() {
            for r in self.rest {
                let _ = r.resume(());
            }
        }
    }
}

// SAFETY: `value` is written once, under the `waiters` lock, before `state`
// is set to RESOLVED with Release ordering, and never written again; readers
// only read it after observing RESOLVED with Acquire ordering. Sharing `&T`
// across threads needs `T: Sync`, moving `T` in from another thread needs
// `T: Send`.
unsafe impl<T: Send + Sync> Sync for Inner<T> {}
// SAFETY: as above; the value may be dropped on any thread, so `T: Send`.
unsafe impl<T: Send> Send for Inner<T> {}

/// The reading half of a promise: [`wait`](Promise::wait) for the value.
///
/// Clones share the promise: every waiter sees the one value.
///
/// ```
/// use weft::{fiber, sync::Promise};
///
/// weft::mock::run(|_env| {
///     let (config, set_config) = Promise::<String>::new();
///     let (a, b) = fiber::pair(
///         || Ok(config.wait()?.len()),   // waits
///         || {
///             set_config.resolve(String::from("port=80")).unwrap();
///             Ok(config.wait()?.clone()) // already resolved: no wait
///         },
///     )?;
///     assert_eq!((a, b.as_str()), (7, "port=80"));
///     assert_eq!(config.peek().map(String::as_str), Some("port=80"));
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct Promise<T> {
    inner: Arc<Inner<T>>,
}

/// The writing half of a promise: [`resolve`](Resolver::resolve) it once.
///
/// If every resolver is dropped without resolving, waiters get
/// `Err(Closed)` instead of waiting forever.
pub struct Resolver<T> {
    inner: Arc<Inner<T>>,
}

/// Returned by [`Resolver::resolve`] on a promise that was already resolved;
/// gives the rejected value back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("promise already resolved")]
pub struct AlreadyResolved<T>(pub T);

impl<T> Clone for Promise<T> {
    fn clone(&self) -> Self {
        Promise {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Clone for Resolver<T> {
    fn clone(&self) -> Self {
        self.inner.resolvers.fetch_add(1, Ordering::Relaxed);
        Resolver {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Promise<T> {
    /// A new unresolved promise and its resolver.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (Promise<T>, Resolver<T>) {
        let inner = Arc::new(Inner {
            state: AtomicU8::new(PENDING),
            value: UnsafeCell::new(None),
            waiters: SpinLock::new(Waiters::default()),
            resolvers: AtomicUsize::new(1),
        });
        (
            Promise {
                inner: inner.clone(),
            },
            Resolver { inner },
        )
    }

    /// A promise that is already resolved with `value`.
    pub fn resolved(value: T) -> Promise<T> {
        Promise {
            inner: Arc::new(Inner {
                state: AtomicU8::new(RESOLVED),
                value: UnsafeCell::new(Some(value)),
                waiters: SpinLock::new(Waiters::default()),
                resolvers: AtomicUsize::new(0),
            }),
        }
    }

    /// Waits until the promise is resolved and returns its value. Returns at
    /// once if it already is. Fails with `Cancelled` if the fiber is
    /// cancelled first, and with `Closed` if every resolver was dropped.
    pub fn wait(&self) -> Result<&T> {
        if let Some(v) = self.peek() {
            return Ok(v);
        }
        self.check_abandoned()?;
        suspend_with_cancel(
            "promise",
            |r| {
                let mut w = self.inner.waiters.lock();
                if self.inner.state.load(Ordering::Acquire) != PENDING {
                    drop(w);
                    let _ = r.resume(());
                } else {
                    w.push(r);
                }
            },
            |r, reason| {
                self.inner.waiters.lock().remove(r);
                let _ = r.fail(Error::cancelled(reason.clone()));
            },
        )?;
        match self.peek() {
            Some(v) => Ok(v),
            None => {
                self.check_abandoned()?;
                unreachable!("woken while pending")
            }
        }
    }

    fn check_abandoned(&self) -> Result<()> {
        if self.inner.state.load(Ordering::Acquire) == ABANDONED {
            return Err(Error::msg(
                ErrorKind::Closed,
                "promise abandoned: every resolver was dropped unresolved",
            ));
        }
        Ok(())
    }

    /// The value, if the promise is resolved. Never suspends.
    pub fn peek(&self) -> Option<&T> {
        if self.inner.state.load(Ordering::Acquire) == RESOLVED {
            // SAFETY: RESOLVED (observed with Acquire) means `value` was
            // written before the Release store and is never written again.
            unsafe { (*self.inner.value.get()).as_ref() }
        } else {
            None
        }
    }

    /// True once the promise has a value.
    pub fn is_resolved(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == RESOLVED
    }
}

impl<T: Clone> Promise<Result<T>> {
    /// Waits for a promise holding a `Result` (as made by
    /// [`Switch::fork_promise`](crate::Switch::fork_promise)) and returns a
    /// copy of it, flattening the error.
    pub fn wait_result(&self) -> Result<T> {
        self.wait()?.clone()
    }
}

impl<T> Resolver<T> {
    /// Resolves the promise, waking every waiter. A promise is resolved
    /// only once: later calls fail and give the value back.
    pub fn resolve(&self, value: T) -> std::result::Result<(), AlreadyResolved<T>> {
        let waiters = {
            let mut w = self.inner.waiters.lock();
            if self.inner.state.load(Ordering::Acquire) != PENDING {
                return Err(AlreadyResolved(value));
            }
            // SAFETY: we hold the waiters lock and the state is PENDING, so no
            // other resolver is writing and no reader reads `value` yet.
            unsafe { *self.inner.value.get() = Some(value) };
            self.inner.state.store(RESOLVED, Ordering::Release);
            std::mem::take(&mut *w)
        };
        waiters.wake_all();
        Ok(())
    }

    /// Resolves the promise unless it already is; returns whether it did.
    pub fn try_resolve(&self, value: T) -> bool {
        self.resolve(value).is_ok()
    }

    /// True once the promise has a value.
    pub fn is_resolved(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == RESOLVED
    }
}

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        if self.inner.resolvers.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let waiters = {
            let mut w = self.inner.waiters.lock();
            if self.inner.state.load(Ordering::Acquire) != PENDING {
                return;
            }
            self.inner.state.store(ABANDONED, Ordering::Release);
            std::mem::take(&mut *w)
        };
        waiters.wake_all();
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.peek() {
            Some(v) => f.debug_tuple("Promise::Resolved").field(v).finish(),
            None => f.write_str("Promise::Pending"),
        }
    }
}

impl<T> std::fmt::Debug for Resolver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("resolved", &self.is_resolved())
            .finish()
    }
}
