//! Wake slots and the remote wake-up queue: the part of the backend
//! contract that other threads touch.
//!
//! Completion and cancellation of a wait race on one atomic per fiber (its
//! [`WakeSlot`]); whoever claims the wait's epoch delivers the result. A
//! claim from another thread (or a signal handler) pushes the slot onto the
//! scheduler's lock-free remote stack ([`Shared`]) and unparks it if it
//! sleeps.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::Unpark;
use crate::sched::FiberKey;

const IDLE: u64 = 0;
const WAITING: u64 = 1;
const CLAIMED: u64 = 2;
const STATUS_MASK: u64 = 3;

/// A fiber's wake slot: the atomic on which completion and cancellation race,
/// and the intrusive link of the scheduler's remote wake-up queue.
///
/// Allocated once per fiber, the first time it suspends, and reused for every
/// later suspension; each suspension has a new epoch so that a stale
/// [`Resumer`] can never resume a later wait.
pub(crate) struct WakeSlot {
    /// `epoch << 2 | status`.
    state: AtomicU64,
    /// Link in [`Shared::remote`] while queued there.
    next: AtomicPtr<WakeSlot>,
    /// The fiber this slot wakes (`FiberKey` as FFI bits). Set before any
    /// resumer for it exists; reset when a pooled slot moves to a new fiber.
    fiber: AtomicU64,
    pub(super) target: WakeTarget,
}

/// Who a wake slot wakes.
pub(super) enum WakeTarget {
    /// A fiber of the scheduler that owns `Shared`.
    Fiber(Arc<Shared>),
    /// A plain OS thread blocked in a weft wait outside any runtime; `ready`
    /// is set once the result has been written.
    Thread {
        thread: std::thread::Thread,
        ready: std::sync::atomic::AtomicBool,
    },
}

impl WakeSlot {
    pub(crate) fn new(fiber: FiberKey, shared: Arc<Shared>) -> Self {
        WakeSlot {
            state: AtomicU64::new(IDLE),
            next: AtomicPtr::new(ptr::null_mut()),
            fiber: AtomicU64::new(slotmap::Key::data(&fiber).as_ffi()),
            target: WakeTarget::Fiber(shared),
        }
    }

    pub(super) fn for_thread() -> Self {
        WakeSlot {
            state: AtomicU64::new(IDLE),
            next: AtomicPtr::new(ptr::null_mut()),
            fiber: AtomicU64::new(0),
            target: WakeTarget::Thread {
                thread: std::thread::current(),
                ready: std::sync::atomic::AtomicBool::new(false),
            },
        }
    }

    #[inline]
    pub(crate) fn fiber(&self) -> FiberKey {
        slotmap::KeyData::from_ffi(self.fiber.load(Ordering::Relaxed)).into()
    }

    /// Moves a pooled slot to another fiber. Only called while no resumer
    /// of the slot exists (its `Arc` is unique).
    pub(crate) fn reassign(&self, fiber: FiberKey) {
        self.fiber
            .store(slotmap::Key::data(&fiber).as_ffi(), Ordering::Relaxed);
    }

    /// Starts a new wait and returns its epoch. Only the owning fiber calls
    /// this, and only while no wait is pending.
    #[inline]
    pub(super) fn begin_wait(&self) -> u64 {
        let cur = self.state.load(Ordering::Relaxed);
        debug_assert_ne!(cur & STATUS_MASK, WAITING, "fiber already waiting");
        let epoch = (cur >> 2).wrapping_add(1);
        self.state.store(epoch << 2 | WAITING, Ordering::Release);
        epoch
    }

    /// Claims the wait `epoch`; exactly one caller ever succeeds.
    #[inline]
    pub(super) fn claim(&self, epoch: u64) -> bool {
        self.state
            .compare_exchange(
                epoch << 2 | WAITING,
                epoch << 2 | CLAIMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// [`claim`](Self::claim) without a read-modify-write.
    ///
    /// # Safety
    /// No other thread may try to claim `epoch` meanwhile (every other
    /// claimant of this wait runs on the calling thread).
    #[inline]
    pub(super) unsafe fn claim_unshared(&self, epoch: u64) -> bool {
        if self.state.load(Ordering::Relaxed) != epoch << 2 | WAITING {
            return false;
        }
        self.state.store(epoch << 2 | CLAIMED, Ordering::Release);
        true
    }

    pub(super) fn is_waiting(&self, epoch: u64) -> bool {
        self.state.load(Ordering::Acquire) == epoch << 2 | WAITING
    }
}

/// The part of a scheduler that other threads may touch: the remote wake-up
/// queue and the unparker.
pub(crate) struct Shared {
    /// Treiber stack of claimed wake slots (each holds one `Arc` reference).
    remote: AtomicPtr<WakeSlot>,
    /// Set while the scheduler is in (or about to enter) a blocking park.
    sleeping: std::sync::atomic::AtomicBool,
    /// Threads that may still wake this scheduler (see
    /// [`ExternalWork`](super::ExternalWork)).
    pub(super) external: AtomicUsize,
    pub(super) unparker: Arc<dyn Unpark>,
}

impl Shared {
    pub(crate) fn new(unparker: Arc<dyn Unpark>) -> Self {
        Shared {
            remote: AtomicPtr::new(ptr::null_mut()),
            sleeping: std::sync::atomic::AtomicBool::new(false),
            external: AtomicUsize::new(0),
            unparker,
        }
    }

    /// Pushes a claimed slot onto the remote queue and wakes the scheduler.
    /// Lock-free and allocation-free, so it is async-signal-safe.
    pub(super) fn push_remote(&self, slot: &Arc<WakeSlot>) {
        let raw = Arc::into_raw(slot.clone()) as *mut WakeSlot;
        let mut head = self.remote.load(Ordering::Relaxed);
        loop {
            // SAFETY: `raw` came from `Arc::into_raw` above, so it points to a
            // live WakeSlot; only the claim winner pushes a slot, so no other
            // thread is writing its `next` link now.
            unsafe { (*raw).next.store(head, Ordering::Relaxed) };
            match self
                .remote
                .compare_exchange_weak(head, raw, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        if self.sleeping.load(Ordering::SeqCst) {
            self.unparker.unpark();
        }
    }

    #[inline]
    pub(crate) fn has_remote(&self) -> bool {
        !self.remote.load(Ordering::Acquire).is_null()
    }

    /// Takes every queued slot, oldest first, calling `f` with each fiber.
    pub(crate) fn drain_remote(&self, mut f: impl FnMut(FiberKey)) {
        let mut head = self.remote.swap(ptr::null_mut(), Ordering::AcqRel);
        // The stack is newest-first; reverse it so wake-ups keep their order.
        let mut rev: *mut WakeSlot = ptr::null_mut();
        while !head.is_null() {
            // SAFETY: every pointer in the list came from `Arc::into_raw` in
            // `push_remote` and the swap above gave this thread sole ownership
            // of the whole list.
            let next = unsafe { (*head).next.load(Ordering::Relaxed) };
            // SAFETY: as above; we own `head`'s link.
            unsafe { (*head).next.store(rev, Ordering::Relaxed) };
            rev = head;
            head = next;
        }
        while !rev.is_null() {
            // SAFETY: `rev` is an owned `Arc` reference (see above); turning it
            // back into an Arc releases that reference when dropped.
            let slot = unsafe { Arc::from_raw(rev) };
            rev = slot.next.load(Ordering::Relaxed);
            f(slot.fiber());
        }
    }

    /// Marks the scheduler as about to block; returns false if wake-ups are
    /// already queued (so it must not block).
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.has_remote() {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    pub(crate) fn end_sleep(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    pub(crate) fn has_external(&self) -> bool {
        self.external.load(Ordering::Acquire) > 0
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Release references still queued (a scheduler that stopped early).
        self.drain_remote(|_| {});
    }
}
