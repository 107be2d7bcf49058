//! The backend contract: how a backend drives weft's scheduler, and how an
//! operation suspends a fiber and is later resumed or cancelled.
//!
//! This module is the whole contract. A backend (io_uring, POSIX, the mock)
//! provides a [`Driver`]; the scheduler owns it and calls it when it needs to
//! know the time or to wait for something to happen. Operations, whether in a
//! backend or in weft's own sync primitives, block a fiber with [`suspend`] or
//! [`suspend_with_cancel`]:
//!
//! 1. `register` receives a [`Resumer`] — `Send + Sync`, callable from any
//!    thread, even a signal handler through the deferred path — and stores it
//!    wherever the completion will find it (a waiter list, an io_uring user
//!    data table, a timer).
//! 2. The fiber is switched out. Other fibers run.
//! 3. Exactly one party wins the right to resume it: the completion calling
//!    [`Resumer::resume`], or the cancel hook (run when the fiber's
//!    cancellation context is cancelled) calling [`Resumer::fail`]. They race
//!    on one atomic in the fiber's wake slot; the loser gets its value back.
//!
//! A backend that simulates part of the outside world with fibers of its
//! own (the mock's child processes) starts them with [`spawn_detached`]:
//! fibers that belong to no switch, owned through a [`DetachedFiber`]
//! handle, and cancelled and joined when the run's main fiber returns.
//!
//! A cancel hook need not resume the fiber at once: an io_uring operation
//! submits `AsyncCancel` from its hook and lets the original completion resume
//! the fiber (with `ECANCELED`, or with the result that arrived anyway), so a
//! buffer is never freed while the kernel may write to it.
//!
//! ```
//! use weft::backend::{suspend, Resumer};
//! use std::sync::{Arc, Mutex};
//!
//! weft::mock::run(|_env| {
//!     let slot: Arc<Mutex<Option<Resumer<u32>>>> = Arc::default();
//!     let s2 = slot.clone();
//!     let t = std::thread::spawn(move || loop {
//!         if let Some(r) = s2.lock().unwrap().take() {
//!             r.resume(7).unwrap();
//!             break;
//!         }
//!         std::thread::yield_now();
//!     });
//!     let _ext = weft::backend::ExternalWork::begin();
//!     let v = suspend("a value from a thread", |r| {
//!         *slot.lock().unwrap() = Some(r);
//!     })?;
//!     assert_eq!(v, 7);
//!     t.join().unwrap();
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::sched;

pub use crate::detached::{spawn_detached, DetachedFiber};

/// How long [`Driver::park`] may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Park {
    /// Do not block: collect whatever completions are ready and return.
    Poll,
    /// Block until something happens or the monotonic clock reaches this
    /// deadline (nanoseconds, as returned by [`Driver::now`]).
    Until(u64),
    /// Block until something happens. Nothing is scheduled on the clock.
    Forever,
}

/// What [`Driver::park`] found out.
#[derive(Debug)]
pub enum Parked {
    /// Returned normally: completions (if any) have been delivered through
    /// their [`Resumer`]s.
    Ok,
    /// Nothing can ever happen again: no IO in flight, no timer, no external
    /// waker. The scheduler reports a deadlock naming the blocked fibers.
    Stuck,
}

/// Wakes a parked scheduler from any thread.
///
/// `unpark` must be async-signal-safe (an `eventfd` write, a futex wake):
/// [`Condition::broadcast`](crate::sync::Condition::broadcast) may call it
/// from a signal handler.
pub trait Unpark: Send + Sync + 'static {
    /// Makes the current or next [`Driver::park`] return promptly.
    fn unpark(&self);
}

/// A backend's event loop, owned by one scheduler on one OS thread.
pub trait Driver: 'static {
    /// A short name for diagnostics and `Env::backend_id` (`"mock"`,
    /// `"posix"`, `"uring"`).
    fn name(&self) -> &'static str;

    /// The monotonic clock in nanoseconds since an arbitrary origin. Timers
    /// (`sleep`, timeouts) are deadlines on this clock.
    fn now(&self) -> u64;

    /// The wall clock.
    fn wall_clock(&self) -> SystemTime;

    /// Waits for completions, up to what `park` allows, delivering each
    /// through its [`Resumer`]. `external` tells whether any thread outside
    /// the scheduler may still wake it (see [`ExternalWork`]).
    fn park(&mut self, park: Park, external: bool) -> Parked;

    /// The handle other threads use to interrupt [`Driver::park`].
    fn unparker(&self) -> Arc<dyn Unpark>;

    /// Called for every `traceln!` line emitted on this scheduler's thread.
    /// Returns `true` if the backend consumed it (the mock captures lines);
    /// otherwise the line goes to standard error.
    fn trace(&mut self, _line: &str) -> bool {
        false
    }
}

mod listed;
mod wake;
pub(crate) use listed::{suspend_listed, Here, Listed};
use wake::WakeTarget;
pub(crate) use wake::{Shared, WakeSlot};

/// Where a resumed fiber finds its result: a cell in the suspended frame.
type ResumeCell<T> = UnsafeCell<Option<Result<T>>>;

/// The right to resume one suspended fiber, once.
///
/// Cloning is cheap (one reference count). Whichever clone claims the wait
/// first — through [`resume`](Resumer::resume), [`fail`](Resumer::fail) or
/// [`complete`](Resumer::complete) — delivers its result; every later attempt
/// fails and gets its value back, so nothing is lost silently.
pub struct Resumer<T> {
    slot: Arc<WakeSlot>,
    epoch: u64,
    out: NonNull<ResumeCell<T>>,
}

// SAFETY: the only non-Send/Sync field is `out`, a pointer into the suspended
// fiber's frame. It is written only by the single claim winner, after the
// claim and before the fiber is queued to run, while the fiber is suspended
// and its frame therefore alive; the value written is a `T`, so `T: Send` is
// required.
unsafe impl<T: Send> Send for Resumer<T> {}
// SAFETY: all methods take `&self` and synchronise through the slot's atomic;
// at most one of them ever writes `out` (see the Send impl).
unsafe impl<T: Send> Sync for Resumer<T> {}

impl<T> Clone for Resumer<T> {
    fn clone(&self) -> Self {
        Resumer {
            slot: self.slot.clone(),
            epoch: self.epoch,
            out: self.out,
        }
    }
}

impl<T> std::fmt::Debug for Resumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumer")
            .field("epoch", &self.epoch)
            .field("pending", &self.is_pending())
            .finish()
    }
}

impl<T> Resumer<T> {
    /// Resumes the fiber with `value`. Fails, giving the value back, if the
    /// fiber was already resumed (or cancelled) by someone else.
    pub fn resume(&self, value: T) -> std::result::Result<(), T> {
        self.complete(Ok(value)).map_err(|r| match r {
            Ok(v) => v,
            Err(_) => unreachable!("complete returns what it was given"),
        })
    }

    /// Resumes the fiber with an error (typically `Cancelled`).
    pub fn fail(&self, error: Error) -> std::result::Result<(), Error> {
        self.complete(Err(error)).map_err(|r| match r {
            Err(e) => e,
            Ok(_) => unreachable!("complete returns what it was given"),
        })
    }

    /// Resumes the fiber with `result`, or gives it back if the wait was
    /// already claimed.
    pub fn complete(&self, result: Result<T>) -> std::result::Result<(), Result<T>> {
        if !self.slot.claim(self.epoch) {
            return Err(result);
        }
        // SAFETY: we won the claim for this epoch, so the fiber is suspended
        // in the frame that owns `out` and cannot resume until it is queued
        // below; nobody else writes `out` for this epoch.
        unsafe { *self.out.as_ref().get() = Some(result) };
        self.enqueue(false);
        Ok(())
    }

    /// Like [`complete`](Resumer::complete), but always goes through the
    /// lock-free remote queue, never the scheduler's local run queue. Safe to
    /// call from a signal handler, provided dropping `result`'s previous
    /// contents does not allocate (it is `None`).
    pub(crate) fn complete_deferred(
        &self,
        result: Result<T>,
    ) -> std::result::Result<(), Result<T>> {
        if !self.slot.claim(self.epoch) {
            return Err(result);
        }
        // SAFETY: as in `complete`.
        unsafe { *self.out.as_ref().get() = Some(result) };
        self.enqueue(true);
        Ok(())
    }

    fn enqueue(&self, deferred: bool) {
        match &self.slot.target {
            WakeTarget::Fiber(shared) => {
                if deferred || !sched::wake_local(shared, self.slot.fiber()) {
                    shared.push_remote(&self.slot);
                }
            }
            WakeTarget::Thread { thread, ready } => {
                // Clone first: once `ready` is set the waiter may return and
                // drop its references (ours keeps the slot alive anyway).
                let t = thread.clone();
                ready.store(true, Ordering::Release);
                t.unpark();
            }
        }
    }

    /// True while the wait this resumer belongs to has not been claimed.
    pub fn is_pending(&self) -> bool {
        self.slot.is_waiting(self.epoch)
    }

    /// A copy that does not count as a reference to the wake slot: it must
    /// never be dropped (hence `ManuallyDrop`).
    ///
    /// # Safety
    /// The copy must not be used after the last counted reference to the
    /// slot is gone.
    unsafe fn uncounted_copy(&self) -> ManuallyDrop<Resumer<T>> {
        // SAFETY: forwarded from the caller; `self.slot` is a live `Arc`.
        unsafe { uncounted(&self.slot, self.epoch, self.out) }
    }

    /// True if both resumers belong to the same wait.
    pub fn same_wait(&self, other: &Resumer<T>) -> bool {
        Arc::ptr_eq(&self.slot, &other.slot) && self.epoch == other.epoch
    }
}

/// A type-erased cancel hook living in a suspended frame.
pub(crate) struct RawHook {
    data: *mut (),
    call: unsafe fn(*mut (), &Error),
}

impl RawHook {
    /// Runs the hook.
    ///
    /// # Safety
    /// The frame that created the hook must still be suspended.
    pub(crate) unsafe fn call(self, reason: &Error) {
        // SAFETY: forwarded from the caller.
        unsafe { (self.call)(self.data, reason) }
    }
}

struct Frame<T, H> {
    /// Saves two atomic reference-count operations per suspension.
    resumer: ManuallyDrop<Resumer<T>>,
    hook: Option<H>,
}

unsafe fn call_hook<T, H: FnOnce(&Resumer<T>, &Error)>(data: *mut (), reason: &Error) {
    // SAFETY: `data` is the `Frame<T, H>` of a fiber suspended in
    // `suspend_with_cancel` (the hook is cleared before that frame ends), and
    // hooks run on the fiber's own thread while it is not running.
    let frame = unsafe { &mut *(data as *mut Frame<T, H>) };
    if let Some(h) = frame.hook.take() {
        h(&frame.resumer, reason);
    }
}

/// A resumer that does not own the slot reference it points through; it
/// must never be dropped (hence `ManuallyDrop`).
///
/// # Safety
/// It must not be used after the last counted reference to `slot` is gone.
#[inline]
unsafe fn uncounted<T>(
    slot: &Arc<WakeSlot>,
    epoch: u64,
    out: NonNull<ResumeCell<T>>,
) -> ManuallyDrop<Resumer<T>> {
    // SAFETY: the pointer comes from a live `Arc`; the result is never
    // dropped, so the count it did not take is never given back.
    let slot = unsafe { Arc::from_raw(Arc::as_ptr(slot)) };
    ManuallyDrop::new(Resumer { slot, epoch, out })
}

/// Switches the current fiber out with `frame`'s cancel hook armed, and
/// disarms it (by dropping the frame) once the fiber runs again.
#[inline(always)]
fn block_with_hook<T, H>(sched: &sched::Scheduler, what: &'static str, mut frame: Frame<T, H>)
where
    H: FnOnce(&Resumer<T>, &Error),
{
    let raw = RawHook {
        data: &mut frame as *mut Frame<T, H> as *mut (),
        call: call_hook::<T, H>,
    };
    sched.block_current(what, Some(raw));
    drop(frame);
}

/// The result a claim winner stored for a fiber that has just resumed.
#[inline(always)]
fn take_result<T>(cell: &ResumeCell<T>) -> Result<T> {
    // SAFETY: the fiber only runs again after a claim winner stored the result
    // and queued it; no other party touches the cell for this epoch.
    match unsafe { (*cell.get()).take() } {
        Some(r) => r,
        None => unreachable!("fiber resumed without a result"),
    }
}

/// Suspends the current fiber until the [`Resumer`] passed to `register` is
/// used. If the fiber's cancellation context is cancelled meanwhile, the wait
/// ends with `Err(Cancelled)` (unless a resume wins the race first).
///
/// Returns `Err(Cancelled)` at once, without calling `register`, if the
/// context is already cancelled. Called outside any runtime (on a plain
/// thread), it blocks that thread until the resumer is used — so weft's
/// promises, streams and locks also work from ordinary threads. `what` names the wait in deadlock reports
/// ("promise", "stream take", …).
#[inline]
pub fn suspend<T>(what: &'static str, register: impl FnOnce(Resumer<T>)) -> Result<T> {
    suspend_with_cancel(what, register, |r: &Resumer<T>, reason: &Error| {
        let _ = r.fail(Error::cancelled(reason.clone()));
    })
}

/// Like [`suspend`], with a custom cancel hook. The hook runs on the fiber's
/// own thread when its context is cancelled while it waits; it gets the
/// fiber's resumer and the cancellation reason. It may resume the fiber at
/// once, or start an asynchronous cancellation whose completion resumes it.
#[inline]
pub fn suspend_with_cancel<T, H>(
    what: &'static str,
    register: impl FnOnce(Resumer<T>),
    hook: H,
) -> Result<T>
where
    H: FnOnce(&Resumer<T>, &Error),
{
    let sched = match sched::current() {
        Ok(s) => s,
        Err(_) => return block_thread(register),
    };
    sched.check_cancelled()?;
    let cell: ResumeCell<T> = UnsafeCell::new(None);
    let slot = sched.current_wake_slot();
    let epoch = slot.begin_wait();
    let resumer = Resumer {
        slot,
        epoch,
        out: NonNull::from(&cell),
    };
    // SAFETY: the frame keeps this uncounted copy only while the fiber is
    // suspended here, and the fiber's control block holds a counted
    // reference to its wake slot until the fiber finishes.
    let uncounted = unsafe { resumer.uncounted_copy() };
    let frame = Frame {
        resumer: uncounted,
        hook: Some(hook),
    };
    register(resumer);
    block_with_hook(sched, what, frame);
    take_result(&cell)
}

/// Outside any runtime (a plain thread): blocks the OS thread until the
/// resumer is used. There is no cancellation context, so only the resumer
/// ends the wait.
fn block_thread<T>(register: impl FnOnce(Resumer<T>)) -> Result<T> {
    let cell: ResumeCell<T> = UnsafeCell::new(None);
    let slot = Arc::new(WakeSlot::for_thread());
    let epoch = slot.begin_wait();
    register(Resumer {
        slot: slot.clone(),
        epoch,
        out: NonNull::from(&cell),
    });
    let WakeTarget::Thread { ready, .. } = &slot.target else {
        unreachable!("a thread slot")
    };
    while !ready.load(Ordering::Acquire) {
        std::thread::park();
    }
    // SAFETY: `ready` (Acquire) is set by the claim winner after it wrote
    // the cell (Release), and nobody writes it again for this epoch.
    match unsafe { (*cell.get()).take() } {
        Some(r) => r,
        None => unreachable!("thread woken without a result"),
    }
}

/// Suspends the current fiber without registering for cancellation: only the
/// resumer can end this wait. For waits that must not be interrupted, such
/// as a switch joining its fibers.
#[inline]
pub(crate) fn suspend_uncancellable<T>(
    what: &'static str,
    register: impl FnOnce(Resumer<T>),
) -> Result<T> {
    let sched = sched::current()?;
    let cell: ResumeCell<T> = UnsafeCell::new(None);
    let slot = sched.current_wake_slot();
    let epoch = slot.begin_wait();
    register(Resumer {
        slot,
        epoch,
        out: NonNull::from(&cell),
    });
    sched.block_current(what, None);
    take_result(&cell)
}

/// True when called on a fiber of a running weft scheduler. Outside one (a
/// plain thread), [`suspend`] blocks the thread instead; a wait that only
/// the scheduler's own driver can end (an fd readiness wait, a ring
/// completion) must refuse with an error rather than block forever.
pub fn in_runtime() -> bool {
    sched::in_runtime()
}

/// Declares that another thread may wake the current scheduler, so an idle
/// scheduler must wait for it rather than report a deadlock. Dropping the
/// guard ends the declaration. Domains, `run_in_systhread` and other helper
/// threads started by weft hold one while they run; code that hands a
/// [`Resumer`] or a promise to a plain `std::thread` should hold one too.
#[must_use = "the declaration ends when the guard is dropped"]
pub struct ExternalWork {
    /// Weak, so a helper thread that outlives the run does not keep the
    /// scheduler's resources (its epoll fd, its ring) open.
    shared: std::sync::Weak<Shared>,
}

impl ExternalWork {
    /// Begins external work on the current thread's scheduler. Outside a
    /// runtime (a plain thread, whose waits block the thread anyway) the
    /// guard does nothing.
    pub fn begin() -> ExternalWork {
        let Ok(sched) = sched::current() else {
            return ExternalWork {
                shared: std::sync::Weak::new(),
            };
        };
        let shared = sched.shared();
        shared.external.fetch_add(1, Ordering::AcqRel);
        ExternalWork {
            shared: Arc::downgrade(shared),
        }
    }
}

impl Drop for ExternalWork {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.external.fetch_sub(1, Ordering::AcqRel);
            // The scheduler may be parked waiting for us; let it re-check.
            shared.unparker.unpark();
        }
    }
}

impl std::fmt::Debug for ExternalWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExternalWork")
    }
}
