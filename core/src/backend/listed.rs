//! Resumers as a wait list keeps them, without a reference count on the
//! fiber's wake slot.
//!
//! A [`Resumer`] holds a counted reference to its fiber's wake slot:
//! making one for a wait and dropping it after the wake are two atomic
//! read-modify-writes (full barriers on x86), a sizeable part of a promise
//! round trip. A [`Listed`] resumer skips both, which is sound under a
//! discipline that the wait list keeps (the promise does):
//!
//! - While the fiber waits, the suspended frame of [`suspend_listed`] holds
//!   the counted reference that the fiber's control block otherwise holds,
//!   so the slot lives at least as long as the wait. A fiber leaked by a
//!   deadlocked run never drops that frame, so its slot is never freed.
//! - The entry is only added to, taken from, or removed from the list under
//!   the list's lock, and the wait can only end after it has left the list
//!   (taken by a waker, or removed by the cancel hook). So while the entry is
//!   in the list, the slot is alive.
//! - Whoever takes entries out calls [`Listed::detach`] on each before
//!   releasing the lock. On the fiber's own scheduler thread the entry stays
//!   uncounted: the waker runs to the end of its wake-ups before any fiber
//!   of this thread (the waiter, or its cancel hook) runs again. Anywhere
//!   else it takes a counted reference then, while the slot is known alive.
//! - A listed resumer is never cloned, so the only other claimant of its
//!   wait is the frame's copy for the cancel hook, which runs on the fiber's
//!   thread: an uncounted entry, used only there, can claim with a plain
//!   load and store instead of a compare-exchange.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Arc;

use super::{
    block_thread, block_with_hook, take_result, uncounted, Frame, ResumeCell, Resumer, WakeTarget,
};
use crate::error::{Error, Result};
use crate::sched;

/// The right to resume a fiber waiting through [`suspend_listed`], as kept
/// in a wait list (see the module documentation for the rules).
pub(crate) struct Listed<T> {
    r: ManuallyDrop<Resumer<T>>,
    /// Whether `r` owns a reference count on its slot.
    counted: bool,
}

impl<T> Listed<T> {
    /// True if this entry belongs to the wait `r` resumes.
    #[inline]
    pub(crate) fn same_wait(&self, r: &Resumer<T>) -> bool {
        self.r.same_wait(r)
    }

    /// Makes a taken entry usable once the list's lock is released: off the
    /// fiber's own scheduler thread, it takes a counted reference to the
    /// slot. `here` is [`Here::now`], read once for the whole list.
    ///
    /// # Safety
    /// The entry is still in (or was just taken from) its wait list, under
    /// the list's lock, so the waiting fiber cannot have left the wait.
    #[inline]
    pub(crate) unsafe fn detach(&mut self, here: Here) {
        if self.counted || here.owns(&self.r) {
            return;
        }
        // SAFETY: the slot is alive (the caller holds the list's lock with
        // the entry not yet used, so the frame's counted reference is still
        // held, or leaked with its frame), and `r.slot` came from that Arc.
        unsafe { Arc::increment_strong_count(Arc::as_ptr(&self.r.slot)) };
        self.counted = true;
    }

    /// Resumes the fiber. Fails, giving the value back, if its wait was
    /// already claimed (by its cancel hook). `here` is [`Here::now`] on
    /// the thread that detached the entry (or, for the waiting fiber itself,
    /// on its own thread).
    #[inline]
    pub(crate) fn resume(self, here: Here, value: T) -> std::result::Result<(), T> {
        match here.0 {
            Some(sched) if !self.counted && here.owns(&self.r) => {
                // SAFETY: the only other resumer of this wait is the
                // frame's copy, whose hook runs on this thread, as we do
                // now; so nobody else can be claiming it.
                if !unsafe { self.r.slot.claim_unshared(self.r.epoch) } {
                    return Err(value);
                }
                // SAFETY: as in `Resumer::complete`: we claimed this epoch,
                // so the fiber is suspended in the frame that owns `out` and
                // stays so until queued below.
                unsafe { *self.r.out.as_ref().get() = Some(Ok(value)) };
                sched.queue_key(self.r.slot.fiber());
                Ok(())
            }
            _ => {
                // Uncounted entries are detached on their fiber's thread (or
                // resumed by the fiber itself) and so take the branch above;
                // anything else means a waker skipped `detach`.
                debug_assert!(
                    self.counted,
                    "an undetached wait-list entry woken off its thread"
                );
                self.r.resume(value)
            }
        }
    }
}

/// The scheduler running on this thread, if any: read once by a waker for
/// all the entries it detaches and resumes.
#[derive(Clone, Copy)]
pub(crate) struct Here(Option<&'static sched::Scheduler>);

impl Here {
    #[inline]
    pub(crate) fn now() -> Here {
        Here(sched::current().ok())
    }

    /// True if `r`'s fiber belongs to this thread's scheduler.
    #[inline]
    fn owns<T>(self, r: &Resumer<T>) -> bool {
        match (self.0, &r.slot.target) {
            (Some(s), WakeTarget::Fiber(shared)) => Arc::ptr_eq(s.shared(), shared),
            _ => false,
        }
    }
}

impl<T> Drop for Listed<T> {
    #[inline]
    fn drop(&mut self) {
        if self.counted {
            // SAFETY: a counted entry owns its reference, and `r` is not
            // used again.
            unsafe { ManuallyDrop::drop(&mut self.r) };
        }
    }
}

/// [`suspend_with_cancel`](super::suspend_with_cancel) for waits whose
/// resumer goes into a wait list that keeps the [`Listed`] rules.
#[inline]
pub(crate) fn suspend_listed<T, H>(
    what: &'static str,
    register: impl FnOnce(Listed<T>),
    hook: H,
) -> Result<T>
where
    H: FnOnce(&Resumer<T>, &Error),
{
    let sched = match sched::current() {
        Ok(s) => s,
        Err(_) => {
            return block_thread(|r| {
                register(Listed {
                    r: ManuallyDrop::new(r),
                    counted: true,
                })
            })
        }
    };
    sched.check_cancelled()?;
    let cell: ResumeCell<T> = UnsafeCell::new(None);
    // Held by this frame for the whole wait (see the module documentation).
    let slot = sched.take_wake_slot();
    let epoch = slot.begin_wait();
    let out = NonNull::from(&cell);
    // SAFETY: `slot` holds a counted reference for as long as the frame's
    // hook can run (until `drop(frame)` below).
    let resumer = unsafe { uncounted(&slot, epoch, out) };
    let frame = Frame {
        resumer,
        hook: Some(hook),
    };
    // SAFETY: the listed entry is only used while the slot is alive, as
    // argued in the module documentation.
    let r = unsafe { uncounted(&slot, epoch, out) };
    register(Listed { r, counted: false });
    block_with_hook(sched, what, frame);
    sched.put_wake_slot(slot);
    take_result(&cell)
}
