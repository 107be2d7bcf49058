//! One io_uring instance per scheduler thread, and the table of operations
//! in flight on it.
//!
//! Operations never enter the kernel one by one. [`Ring::push`] only writes
//! an SQE into the submission queue and records, under a fresh `user_data`
//! key, the [`Resumer`] of the fiber waiting for it; the driver hands the
//! whole batch to the kernel once per scheduler turn ([`Ring::enter`]), in
//! the same `io_uring_enter` that collects completions. A full submission
//! queue is flushed at once and the push retried: it never fails.
//!
//! Completions are dispatched by `user_data`. A key is a versioned slot-map
//! key, so a late `AsyncCancel` aimed at an operation that has already
//! completed can never hit a newer operation that reused its slot.
//!
//! The ring is set up with the cheapest task-work mode the kernel accepts:
//! `SINGLE_ISSUER | DEFER_TASKRUN` (6.1), then `COOP_TASKRUN` (5.19), then
//! the plain setup. [`Setup`] tells which one a ring got.
//!
//! ```
//! # if weft_uring::probe().is_err() { return; }
//! use weft_core::Switch;
//! use weft_uring::ops;
//!
//! weft_uring::run(&weft_core::RunConfig::default(), |_env| {
//!     let pipes = (0..32).map(|_| ops::pipe()).collect::<weft_core::Result<Vec<_>>>()?;
//!     let before = weft_uring::stats()?;
//!     // 32 fibers each write once; their SQEs go to the kernel in a few
//!     // batches, not in 32 system calls.
//!     Switch::run(|sw| {
//!         for (_, w) in &pipes {
//!             sw.fork(move || w.write(b"x").map(|_| ()));
//!         }
//!         Ok(())
//!     })?;
//!     let after = weft_uring::stats()?;
//!     assert_eq!(after.ops - before.ops, 32);
//!     assert!(after.enters - before.enters < 32);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

use io_uring::{opcode, squeue, types, EnterFlags, IoUring};
use slotmap::{DefaultKey, Key, KeyData, SlotMap};
use weft_core::backend::Resumer;
use weft_core::{Error, ErrorKind, Result};

/// `user_data` of completions nobody waits for (`AsyncCancel` requests).
pub(crate) const UD_IGNORE: u64 = u64::MAX;
/// `user_data` of the poll on the driver's wake-up eventfd.
pub(crate) const UD_WAKE: u64 = u64::MAX - 1;

/// The task-work mode a ring was set up with, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG` (Linux 6.1+):
    /// completions are only processed when the scheduler asks for them.
    DeferTaskrun,
    /// `COOP_TASKRUN | TASKRUN_FLAG` (Linux 5.19+): no interrupts to run
    /// completion work, which runs at the next kernel entry instead.
    CoopTaskrun,
    /// No optional flag: what older kernels accept.
    Plain,
}

/// Sizes of the rings a scheduler sets up (see
/// [`run_with_options`](crate::run_with_options)).
#[derive(Clone, Debug)]
pub struct RingOptions {
    /// Submission queue entries: how many operations can be queued between
    /// two scheduler turns before the queue is flushed early. Not a limit on
    /// operations in flight. Rounded up to a power of two by the kernel.
    pub sq_entries: u32,
    /// Completion queue entries (at least twice `sq_entries`). The kernel
    /// keeps completions that do not fit until there is room again.
    pub cq_entries: u32,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            sq_entries: 256,
            cq_entries: 4096,
        }
    }
}

/// Counters of one ring, read with [`stats`](crate::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// `io_uring_enter` calls made (submissions and waits together).
    pub enters: u64,
    /// Of those, calls made early because the submission queue was full.
    pub sq_full_flushes: u64,
    /// Operations pushed (not counting cancellations and wake-up polls).
    pub ops: u64,
    /// Completions dispatched to waiting fibers.
    pub completions: u64,
    /// Operations in flight right now.
    pub in_flight: usize,
    /// `IORING_OP_SPLICE` operations that moved bytes (how a test tells
    /// that `flow::copy` moved them in the kernel).
    pub splices: u64,
    /// Bytes those splices moved.
    pub spliced_bytes: u64,
}

struct Pending {
    resumer: Resumer<i32>,
    /// The fd the operation names (-1 if none), so closing an fd can
    /// cancel what is in flight on it.
    fd: RawFd,
}

struct Inner {
    uring: IoUring,
    ops: SlotMap<DefaultKey, Pending>,
    stats: RingStats,
    /// Set when the wake-up poll completed and must be submitted again.
    wake_fired: bool,
}

/// A thread's io_uring and its operations in flight.
pub(crate) struct Ring {
    inner: RefCell<Inner>,
    setup: Setup,
}

/// Builds a ring, trying the best task-work mode first. `EINVAL` means
/// "this kernel does not know a flag": try the next mode. Any other error
/// is final (and reported for the first attempt, which is the one a user
/// would expect to work).
pub(crate) fn build(opts: &RingOptions) -> io::Result<(IoUring, Setup)> {
    let cq = opts.cq_entries.max(opts.sq_entries.saturating_mul(2));
    let mut last = None;
    for setup in [Setup::DeferTaskrun, Setup::CoopTaskrun, Setup::Plain] {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq).setup_clamp();
        match setup {
            Setup::DeferTaskrun => {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag();
            }
            Setup::CoopTaskrun => {
                b.setup_coop_taskrun().setup_taskrun_flag();
            }
            Setup::Plain => {}
        }
        match b.build(opts.sq_entries.max(1)) {
            Ok(ring) => return Ok((ring, setup)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

impl Ring {
    pub(crate) fn new(uring: IoUring, setup: Setup) -> Ring {
        Ring {
            inner: RefCell::new(Inner {
                uring,
                ops: SlotMap::with_capacity(64),
                stats: RingStats::default(),
                wake_fired: false,
            }),
            setup,
        }
    }

    pub(crate) fn setup(&self) -> Setup {
        self.setup
    }

    pub(crate) fn stats(&self) -> RingStats {
        let inner = self.inner.borrow();
        RingStats {
            in_flight: inner.ops.len(),
            ..inner.stats
        }
    }

    /// Queues `sqe` for the next submission; `resumer` is resumed with the
    /// CQE's result. Returns the operation's `user_data` key.
    ///
    /// # Safety
    /// Every buffer, address and fd `sqe` names must stay valid (and
    /// buffers the kernel writes, unaliased) until the completion has been
    /// delivered to `resumer`.
    pub(crate) unsafe fn push(&self, sqe: squeue::Entry, resumer: Resumer<i32>, fd: RawFd) -> u64 {
        let mut inner = self.inner.borrow_mut();
        let key = inner.ops.insert(Pending { resumer, fd }).data().as_ffi();
        inner.stats.ops += 1;
        // SAFETY: forwarded from our caller.
        unsafe { inner.push_entry(&sqe.user_data(key)) };
        key
    }

    /// Counts a splice that moved `bytes`.
    pub(crate) fn count_splice(&self, bytes: u64) {
        let mut inner = self.inner.borrow_mut();
        inner.stats.splices += 1;
        inner.stats.spliced_bytes += bytes;
    }

    /// Asks the kernel to cancel the operation `key`. Its own completion
    /// (with `-ECANCELED`, or whatever result won the race) still resumes
    /// the fiber. A key that already completed matches nothing (`-ENOENT`).
    pub(crate) fn cancel(&self, key: u64) {
        let sqe = opcode::AsyncCancel::new(key).build().user_data(UD_IGNORE);
        // SAFETY: AsyncCancel names no memory, only a user_data value.
        unsafe { self.inner.borrow_mut().push_entry(&sqe) };
    }

    /// Cancels every operation in flight on `fd`.
    pub(crate) fn cancel_fd(&self, fd: RawFd) {
        let keys: Vec<u64> = {
            let inner = self.inner.borrow();
            inner
                .ops
                .iter()
                .filter(|(_, p)| p.fd == fd)
                .map(|(k, _)| k.data().as_ffi())
                .collect()
        };
        for k in keys {
            self.cancel(k);
        }
    }

    /// Queues a poll for `POLLIN` on the wake-up eventfd.
    pub(crate) fn arm_wake(&self, eventfd: RawFd) {
        let sqe = opcode::PollAdd::new(types::Fd(eventfd), libc::POLLIN as u32)
            .build()
            .user_data(UD_WAKE);
        // SAFETY: a poll names no memory; the eventfd is owned by the
        // driver's unparker, which outlives the ring (the driver holds it).
        unsafe { self.inner.borrow_mut().push_entry(&sqe) };
    }

    /// True when the wake-up poll completed since the last call.
    pub(crate) fn take_wake(&self) -> bool {
        std::mem::take(&mut self.inner.borrow_mut().wake_fired)
    }

    /// Operations in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.inner.borrow().ops.len()
    }

    /// Submits what is queued and waits until nothing is in flight: how a
    /// thread without a scheduler completes the one operation it pushed
    /// on its [private ring](for_submit). A failing `io_uring_enter` is
    /// retried: the kernel may still hold the operation's buffers, so the
    /// wait cannot end without its completion.
    pub(crate) fn complete_all(&self) {
        while self.in_flight() > 0 {
            if let Err(e) = self.enter(None) {
                eprintln!("weft: io_uring_enter failed on a private ring, retrying: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Submits what is queued and collects completions, waiting at most
    /// `wait` for the first one (`None`: without limit; `Some(ZERO)`: not
    /// at all). Returns the number of fibers resumed.
    pub(crate) fn enter(&self, wait: Option<Duration>) -> io::Result<usize> {
        let mut inner = self.inner.borrow_mut();
        let cq_ready = !inner.uring.completion().is_empty();
        let wait = if cq_ready { Some(Duration::ZERO) } else { wait };
        let (sq_len, kernel_work) = {
            let sq = inner.uring.submission();
            (sq.len(), sq.taskrun() || sq.cq_overflow())
        };
        let must_enter = match wait {
            Some(d) if d.is_zero() => {
                // Poll: only enter the kernel if there is something to
                // submit, or completion work it flagged (TASKRUN_FLAG,
                // set up with both task-work modes) or overflowed. A
                // plain ring runs completion work on its own.
                sq_len > 0 || kernel_work
            }
            _ => true,
        };
        if must_enter {
            inner.stats.enters += 1;
            let sub = inner.uring.submitter();
            let r = match wait {
                Some(d) if d.is_zero() => {
                    // SAFETY: GETEVENTS with no extended argument: the
                    // kernel reads nothing from the (absent) argument.
                    unsafe {
                        sub.enter::<libc::sigset_t>(
                            sq_len as u32,
                            0,
                            EnterFlags::GETEVENTS.bits(),
                            None,
                        )
                    }
                }
                Some(d) => {
                    let ts = types::Timespec::from(d);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    sub.submit_with_args(1, &args)
                }
                None => sub.submit_and_wait(1),
            };
            match r {
                Ok(_) => {}
                Err(e) => match e.raw_os_error() {
                    // Timed out, interrupted by a signal, or busy with a
                    // full CQ (reaping below makes room): all normal.
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                    _ => return Err(e),
                },
            }
        }
        Ok(inner.reap())
    }

    /// Cancels everything still in flight and waits for the kernel to let
    /// go of it, so that no completion writes into memory after the ring is
    /// gone. Only operations of fibers that were abandoned can be left.
    fn drain(&self) {
        let keys: Vec<u64> = {
            let inner = self.inner.borrow();
            inner.ops.keys().map(|k| k.data().as_ffi()).collect()
        };
        if keys.is_empty() {
            return;
        }
        for k in keys {
            self.cancel(k);
        }
        let start = std::time::Instant::now();
        let mut warned = false;
        while self.in_flight() > 0 {
            if self.enter(Some(Duration::from_millis(100))).is_err() {
                break;
            }
            if !warned && start.elapsed() > Duration::from_secs(1) {
                eprintln!(
                    "weft: io_uring: waiting for {} abandoned operations to finish",
                    self.in_flight()
                );
                warned = true;
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.drain();
    }
}

impl Inner {
    /// Pushes one entry, flushing a full queue to the kernel first.
    ///
    /// # Safety
    /// As for [`Ring::push`].
    unsafe fn push_entry(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: forwarded from our caller: what the entry names stays
            // valid until its completion.
            if unsafe { self.uring.submission().push(sqe) }.is_ok() {
                return;
            }
            self.flush_full();
        }
    }

    /// The submission queue is full: submit it now without waiting. If the
    /// kernel is busy (its completion backlog is full), collect completions
    /// to make room and try again.
    fn flush_full(&mut self) {
        self.stats.sq_full_flushes += 1;
        loop {
            self.stats.enters += 1;
            match self.uring.submit() {
                Ok(_) => return,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EBUSY | libc::EAGAIN) => {
                        // Completions are delivered by the caller's next
                        // turn; here they only need to leave the kernel.
                        self.reap();
                        std::thread::yield_now();
                    }
                    _ => panic!("weft: io_uring submission failed: {e}"),
                },
            }
        }
    }

    /// Dispatches every completion in the CQ.
    fn reap(&mut self) -> usize {
        let mut resumed = 0;
        let Inner {
            uring,
            ops,
            stats,
            wake_fired,
        } = self;
        for cqe in uring.completion() {
            match cqe.user_data() {
                UD_IGNORE => {}
                UD_WAKE => *wake_fired = true,
                key => {
                    let k: DefaultKey = KeyData::from_ffi(key).into();
                    if let Some(p) = ops.remove(k) {
                        stats.completions += 1;
                        // The fiber is suspended in `ops::submit` waiting
                        // for exactly this; nobody else can claim it.
                        let claimed = p.resumer.resume(cqe.result()).is_ok();
                        debug_assert!(claimed, "an io_uring wait was resumed twice");
                        resumed += 1;
                    }
                }
            }
        }
        resumed
    }
}

thread_local! {
    static RING: RefCell<Option<Rc<Ring>>> = const { RefCell::new(None) };
    /// The ring of a thread that runs no scheduler, built on first use.
    static PRIVATE: RefCell<Option<Rc<Ring>>> = const { RefCell::new(None) };
}

/// Sizes of a private ring: it has one operation in flight at a time.
const PRIVATE_RING: RingOptions = RingOptions {
    sq_entries: 4,
    cq_entries: 8,
};

/// The ring an operation on this thread goes to, and whether it is a
/// private one: the scheduler's ring; or, on a thread without one (a plain
/// thread or a system thread using a `Dir` handed to it), a small ring of
/// the thread's own, which the caller drives itself
/// ([`Ring::complete_all`]) — the operation then blocks that thread, as a
/// system call would.
pub(crate) fn for_submit() -> Result<(Rc<Ring>, bool)> {
    if let Some(r) = try_current() {
        return Ok((r, false));
    }
    let private = PRIVATE
        .try_with(|p| -> Result<Rc<Ring>> {
            if let Some(r) = p.borrow().as_ref() {
                return Ok(r.clone());
            }
            let (uring, setup) = build(&PRIVATE_RING).map_err(crate::probe::setup_error)?;
            let ring = Rc::new(Ring::new(uring, setup));
            *p.borrow_mut() = Some(ring.clone());
            Ok(ring)
        })
        .map_err(|_| {
            Error::msg(
                ErrorKind::InvalidInput,
                "no io_uring on this thread (its thread-locals are being destroyed)",
            )
        })??;
    Ok((private, true))
}

/// Clears the thread's ring when dropped.
pub(crate) struct Installed(Option<Rc<Ring>>);

impl Drop for Installed {
    fn drop(&mut self) {
        let prev = self.0.take();
        // Take our ring out first and drop it outside the borrow: its
        // teardown may take a while and must not find the slot borrowed.
        let ours = RING.with(|r| std::mem::replace(&mut *r.borrow_mut(), prev));
        drop(ours);
    }
}

/// Makes `ring` this thread's ring until the guard is dropped (restoring
/// the previous one).
pub(crate) fn install(ring: Rc<Ring>) -> Installed {
    Installed(RING.with(|slot| slot.borrow_mut().replace(ring)))
}

/// This thread's ring.
pub(crate) fn current() -> Result<Rc<Ring>> {
    RING.with(|r| r.borrow().clone()).ok_or_else(|| {
        Error::msg(
            ErrorKind::InvalidInput,
            "no io_uring on this thread (not running on the uring backend)",
        )
    })
}

/// This thread's ring, if any.
/// `None` also while the thread's locals are being destroyed.
pub(crate) fn try_current() -> Option<Rc<Ring>> {
    RING.try_with(|r| r.try_borrow().ok().and_then(|r| r.clone()))
        .ok()
        .flatten()
}
