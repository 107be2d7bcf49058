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

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr::{self, NonNull};
use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};

use crate::backend::{suspend_listed, Here, Listed, Resumer};
use crate::error::{Error, ErrorKind, Result};

use super::spin::backoff;

mod cache;

// `Inner::state`: the status in the low two bits, plus LOCKED while one
// party holds the waiter list. Once the status leaves PENDING it never
// changes again, and the lock is only ever taken while it is PENDING, so
// checking the status and taking the lock is one compare-exchange, and
// resolving publishes the value and unlocks in one release store.
const PENDING: u8 = 0;
const RESOLVED: u8 = 1;
const ABANDONED: u8 = 2;
const LOCKED: u8 = 4;
const STATUS: u8 = 3;

// `Inner::refs`: every handle (promise or resolver) counts one HANDLE and
// each resolver also one RESOLVER, so dropping a resolver is a single
// read-modify-write that also tells whether it was the last reference.
const HANDLE: u64 = 1;
const RESOLVER: u64 = 1 << 32;
/// Clones beyond this abort, as `Arc` does, long before a half overflows.
const MAX_HANDLES: u64 = 1 << 31;

/// The shared block behind a promise's handles: one allocation, freed by
/// whichever handle drops the last reference.
struct Inner<T> {
    state: AtomicU8,
    refs: AtomicU64,
    /// Written once, under the lock while PENDING, before the status becomes
    /// RESOLVED; initialised exactly when the status is RESOLVED.
    value: UnsafeCell<MaybeUninit<T>>,
    /// Only touched while holding LOCKED. Nearly always empty when the
    /// block is freed, so `Drop` checks before running the list's drop glue.
    waiters: UnsafeCell<ManuallyDrop<Waiters>>,
}

/// The fibers waiting on a promise. The common single waiter sits inline, so
/// it costs no allocation, and taking or dropping an empty set is a few
/// instructions (a `SmallVec` costs several times that on this path).
///
/// The entries are [`Listed`] resumers, added, removed and taken only under
/// the promise's lock, and detached as they are taken (the rules are in
/// `backend::listed`).
#[derive(Default)]
struct Waiters {
    first: Option<Listed<()>>,
    rest: Vec<Listed<()>>,
}

impl Waiters {
    #[inline]
    fn push(&mut self, r: Listed<()>) {
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
}

impl<T> Inner<T> {
    /// A new block holding `refs` references, on the heap (through the
    /// per-thread block cache).
    #[inline]
    fn alloc(state: u8, refs: u64, value: MaybeUninit<T>) -> NonNull<Inner<T>> {
        let p = cache::alloc_block(Layout::new::<Inner<T>>()).cast::<Inner<T>>();
        // SAFETY: `p` is a fresh allocation with `Inner<T>`'s layout.
        unsafe {
            p.as_ptr().write(Inner {
                state: AtomicU8::new(state),
                refs: AtomicU64::new(refs),
                value: UnsafeCell::new(value),
                waiters: UnsafeCell::new(ManuallyDrop::new(Waiters::default())),
            })
        };
        p
    }

    /// Takes the waiter lock if the promise is pending. Returns false,
    /// without locking, once it is resolved or abandoned (which is final);
    /// the Acquire then makes a resolved value visible.
    #[inline]
    fn lock_pending(&self) -> bool {
        match self.state.compare_exchange_weak(
            PENDING,
            PENDING | LOCKED,
            Ordering::Acquire,
            Ordering::Acquire,
        ) {
            Ok(_) => true,
            Err(s) => self.lock_pending_contended(s),
        }
    }

    #[cold]
    fn lock_pending_contended(&self, mut s: u8) -> bool {
        let mut spins = 0u32;
        loop {
            if s & LOCKED == 0 {
                if s != PENDING {
                    return false;
                }
                match self.state.compare_exchange_weak(
                    PENDING,
                    PENDING | LOCKED,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return true,
                    Err(now) => s = now,
                }
                continue;
            }
            backoff(&mut spins);
            s = self.state.load(Ordering::Acquire);
        }
    }

    /// Gives the lock back, setting the status to `status` (PENDING to
    /// just unlock; RESOLVED or ABANDONED to publish the outcome).
    #[inline]
    fn unlock(&self, status: u8) {
        self.state.store(status, Ordering::Release);
    }

    /// The waiter list.
    ///
    /// # Safety
    /// The caller holds the lock (took it with `lock_pending`, has not yet
    /// called `unlock`) and keeps the returned reference no longer.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    unsafe fn waiters(&self) -> &mut Waiters {
        // SAFETY: forwarded: the lock makes the caller the list's only user.
        unsafe { &mut *self.waiters.get() }
    }

    /// The value of a resolved promise.
    ///
    /// # Safety
    /// The caller observed the status RESOLVED with an Acquire load.
    #[inline]
    unsafe fn value(&self) -> &T {
        // SAFETY: RESOLVED (observed with Acquire) means `value` was
        // initialised before the Release store that published it, and it is
        // never written again while the block lives.
        unsafe { (*self.value.get()).assume_init_ref() }
    }

    /// The value, if the promise is resolved.
    #[inline]
    fn peek(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == RESOLVED {
            // SAFETY: just observed RESOLVED with Acquire.
            Some(unsafe { self.value() })
        } else {
            None
        }
    }

    /// Abandons the promise if it is still pending, waking every waiter
    /// (they get `Closed`).
    fn abandon(&self) {
        if self.lock_pending() {
            // SAFETY: we hold the lock (taken just above).
            unsafe { self.settle(ABANDONED) };
        }
    }

    /// Sets the final status, releasing the lock, and wakes every waiter.
    ///
    /// # Safety
    /// The caller holds the lock (and, for RESOLVED, has written the value).
    #[inline]
    unsafe fn settle(&self, status: u8) {
        // SAFETY: we hold the lock, until the `unlock` below.
        let w = unsafe { self.waiters() };
        // Waiters fill `first` before `rest`: no first, nobody to wake.
        let Some(mut first) = w.first.take() else {
            self.unlock(status);
            return;
        };
        let here = Here::now();
        // SAFETY: taken from the list under the lock, which we still hold.
        unsafe { first.detach(here) };
        let rest = if w.rest.is_empty() {
            Vec::new()
        } else {
            for r in &mut w.rest {
                // SAFETY: as above, for entries still in the list.
                unsafe { r.detach(here) };
            }
            std::mem::take(&mut w.rest)
        };
        self.unlock(status);
        let _ = first.resume(here, ());
        // Most promises have one waiter or none: skip building an iterator.
        if !rest.is_empty() {
            for r in rest {
                let _ = r.resume(here, ());
            }
        }
    }
}

impl<T> Drop for Inner<T> {
    #[inline]
    fn drop(&mut self) {
        if *self.state.get_mut() == RESOLVED {
            // SAFETY: RESOLVED means the value was initialised, and the block
            // is being freed, so this is its only drop.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
        let w = self.waiters.get_mut();
        if w.first.is_some() || w.rest.capacity() != 0 {
            // SAFETY: dropped once, here, as the block goes away.
            unsafe { ManuallyDrop::drop(w) };
        }
    }
}

/// Adds `n` references to a block the caller holds a reference to.
#[inline]
fn retain<T>(inner: &Inner<T>, n: u64) {
    let old = inner.refs.fetch_add(n, Ordering::Relaxed);
    if old & (RESOLVER - 1) >= MAX_HANDLES {
        std::process::abort();
    }
}

/// Gives back `n` of the references the caller holds (one HANDLE, plus one
/// RESOLVER for a resolver), freeing the block if they were the last.
///
/// # Safety
/// The caller owns those references and does not use `inner` afterwards.
#[inline(always)]
unsafe fn release<T>(inner: NonNull<Inner<T>>, n: u64) {
    // SAFETY: the caller's references keep the block alive until it is
    // freed or the decrement below.
    let refs = &unsafe { inner.as_ref() }.refs;
    // Holding every reference there is (the usual case for the last handle
    // to go), nobody else can reach the count, nor make a reference without
    // one: free without the read-modify-write. The Acquire pairs with the
    // other handles' Release decrements, as `free`'s fence does.
    if refs.load(Ordering::Acquire) == n {
        // SAFETY: ours were the last references.
        unsafe { free(inner) };
        return;
    }
    // The Release orders every use of the block through our references
    // before the decrement.
    if refs.fetch_sub(n, Ordering::Release) == n {
        // SAFETY: that was the last reference.
        unsafe { free(inner) };
    }
}

/// Drops and frees the block.
///
/// # Safety
/// The caller gave back the last reference to it.
#[inline(never)]
unsafe fn free<T>(inner: NonNull<Inner<T>>) {
    // Pairs with the other handles' Release decrements: their uses of the
    // block happen before it is freed.
    fence(Ordering::Acquire);
    // SAFETY: the count reached zero, so no other handle exists and none can
    // be made; the block was initialised by `Inner::alloc` and is dropped
    // once, here.
    unsafe { ptr::drop_in_place(inner.as_ptr()) };
    // SAFETY: the block came from `cache::alloc_block` with this layout and
    // its contents were just dropped.
    unsafe { cache::free_block(inner.cast(), Layout::new::<Inner<T>>()) };
}

#[cold]
#[inline(never)]
fn abandoned() -> Error {
    Error::msg(
        ErrorKind::Closed,
        "promise abandoned: every resolver was dropped unresolved",
    )
}

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
    inner: NonNull<Inner<T>>,
    /// Owns a share of the block (and so maybe drops a `T`).
    _owns: PhantomData<Inner<T>>,
}

/// The writing half of a promise: [`resolve`](Resolver::resolve) it once.
///
/// If every resolver is dropped without resolving, waiters get
/// `Err(Closed)` instead of waiting forever.
pub struct Resolver<T> {
    inner: NonNull<Inner<T>>,
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: the handles share `Inner` across threads. Its atomics synchronise
// themselves; `waiters` is only touched under the lock bit (Acquire to take,
// Release to give back); `value` is written once, under the lock while
// PENDING, before the Release store of RESOLVED, and only read after an
// Acquire load of RESOLVED. Sharing the `&T` that readers get needs
// `T: Sync`; moving the value in from the resolver's thread, and dropping it
// on whichever thread frees the block, needs `T: Send`.
unsafe impl<T: Send + Sync> Send for Promise<T> {}
// SAFETY: as for Send; every method takes `&self` and goes through the same
// synchronisation.
unsafe impl<T: Send + Sync> Sync for Promise<T> {}
// SAFETY: as for `Promise`.
unsafe impl<T: Send + Sync> Send for Resolver<T> {}
// SAFETY: as for `Promise`.
unsafe impl<T: Send + Sync> Sync for Resolver<T> {}

/// Returned by [`Resolver::resolve`] on a promise that was already resolved;
/// gives the rejected value back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("promise already resolved")]
pub struct AlreadyResolved<T>(pub T);

impl<T> Clone for Promise<T> {
    fn clone(&self) -> Self {
        retain(self.inner(), HANDLE);
        Promise {
            inner: self.inner,
            _owns: PhantomData,
        }
    }
}

impl<T> Clone for Resolver<T> {
    fn clone(&self) -> Self {
        retain(self.inner(), RESOLVER + HANDLE);
        Resolver {
            inner: self.inner,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for Promise<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this handle owns one HANDLE reference and is going away.
        unsafe { release(self.inner, HANDLE) }
    }
}

impl<T> Promise<T> {
    /// A new unresolved promise and its resolver.
    #[allow(clippy::new_ret_no_self)]
    #[inline]
    pub fn new() -> (Promise<T>, Resolver<T>) {
        let inner = Inner::alloc(PENDING, RESOLVER + 2 * HANDLE, MaybeUninit::uninit());
        (
            Promise {
                inner,
                _owns: PhantomData,
            },
            Resolver {
                inner,
                _owns: PhantomData,
            },
        )
    }

    /// A promise that is already resolved with `value`.
    pub fn resolved(value: T) -> Promise<T> {
        Promise {
            inner: Inner::alloc(RESOLVED, HANDLE, MaybeUninit::new(value)),
            _owns: PhantomData,
        }
    }

    #[inline]
    fn inner(&self) -> &Inner<T> {
        // SAFETY: this handle holds a reference, so the block is alive.
        unsafe { self.inner.as_ref() }
    }

    /// Waits until the promise is resolved and returns its value. Returns at
    /// once if it already is. Fails with `Cancelled` if the fiber is
    /// cancelled first, and with `Closed` if every resolver was dropped.
    pub fn wait(&self) -> Result<&T> {
        let inner = self.inner();
        match inner.state.load(Ordering::Acquire) {
            // SAFETY: just observed RESOLVED with Acquire.
            RESOLVED => return Ok(unsafe { inner.value() }),
            ABANDONED => return Err(abandoned()),
            _ => {}
        }
        suspend_listed(
            "promise",
            |r| {
                if inner.lock_pending() {
                    // SAFETY: we hold the lock.
                    unsafe { inner.waiters() }.push(r);
                    inner.unlock(PENDING);
                } else {
                    let _ = r.resume(Here::now(), ());
                }
            },
            |r, reason| {
                if inner.lock_pending() {
                    // SAFETY: we hold the lock.
                    unsafe { inner.waiters() }.remove(r);
                    inner.unlock(PENDING);
                }
                let _ = r.fail(Error::cancelled(reason.clone()));
            },
        )?;
        // Woken, so the status is final: resolved, or abandoned.
        inner.peek().ok_or_else(abandoned)
    }

    /// The value, if the promise is resolved. Never suspends.
    #[inline]
    pub fn peek(&self) -> Option<&T> {
        self.inner().peek()
    }

    /// True once the promise has a value.
    pub fn is_resolved(&self) -> bool {
        self.inner().state.load(Ordering::Acquire) == RESOLVED
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
    #[inline]
    fn inner(&self) -> &Inner<T> {
        // SAFETY: this handle holds a reference, so the block is alive.
        unsafe { self.inner.as_ref() }
    }

    /// Resolves the promise, waking every waiter. A promise is resolved
    /// only once: later calls fail and give the value back.
    #[inline]
    pub fn resolve(&self, value: T) -> std::result::Result<(), AlreadyResolved<T>> {
        let inner = self.inner();
        if !inner.lock_pending() {
            return Err(AlreadyResolved(value));
        }
        // SAFETY: we hold the lock and the status is PENDING, so the value
        // was never written and nobody reads it before RESOLVED is published.
        unsafe { (*inner.value.get()).write(value) };
        // SAFETY: we hold the lock and wrote the value.
        unsafe { inner.settle(RESOLVED) };
        Ok(())
    }

    /// Resolves the promise unless it already is; returns whether it did.
    pub fn try_resolve(&self, value: T) -> bool {
        self.resolve(value).is_ok()
    }

    /// True once the promise has a value.
    pub fn is_resolved(&self) -> bool {
        self.inner().state.load(Ordering::Acquire) == RESOLVED
    }
}

impl<T> Drop for Resolver<T> {
    #[inline]
    fn drop(&mut self) {
        let inner = self.inner();
        // Once the status has left PENDING it stays put, so no abandoning
        // can be needed: give back both counts in one step.
        if inner.state.load(Ordering::Relaxed) & STATUS != PENDING {
            // SAFETY: this handle owns one HANDLE and one RESOLVER reference
            // and is going away.
            unsafe { release(self.inner, RESOLVER + HANDLE) };
            return;
        }
        // Give up the RESOLVER count first, keeping the HANDLE so the block
        // outlives the abandoning; the decrement that takes the resolvers to
        // zero is the one (and only one) that abandons.
        let old = inner.refs.fetch_sub(RESOLVER, Ordering::AcqRel);
        if old < 2 * RESOLVER {
            inner.abandon();
        }
        // SAFETY: this handle still owns its HANDLE reference.
        unsafe { release(self.inner, HANDLE) };
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

#[cfg(test)]
mod tests;
