//! The process-wide helper thread, `weft-stack-prep`, that does the kernel's
//! share of stack work away from the scheduler threads.
//!
//! Three kinds of job, taken in the order they were sent:
//!
//! - **Prepare** slots ahead of a scheduler that is spawning onto fresh
//!   stacks (guards installed, top pages faulted in; see [`super::prepare`]).
//! - **Discard** the memory of idle stacks trimmed from a pool
//!   (`MADV_DONTNEED`). The pool hands the stacks over with the job and
//!   gets them back, cold, through a [`Returned`] list once their pages are
//!   gone, so no stack is ever handed out while its memory is being zapped.
//! - **Unmap** a slab whose pool has been dropped.
//!
//! Zapping a page costs about as much as faulting it in, so a scheduler
//! that finishes a million fibers would otherwise spend about half its time
//! in `madvise` and `munmap`. Order matters once: a pool's discards are sent
//! before its unmaps, so a slab is never unmapped under a discard.
//!
//! There is no helper when `WEFT_STACK_PREPARE=off`, when its thread could
//! not be started, or in a child forked from a process that had one (the
//! thread did not survive the fork); then every caller does the work itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use super::os::{self, MapBudget};
use super::prepare::SlabPrep;
use super::slab::{self, SlabStack};

/// Work for the helper.
pub(crate) enum Job {
    /// Prepare the never-used slots of a slab below `to`.
    Prepare { slab: Arc<SlabPrep>, to: usize },
    /// Give the memory of these idle stacks back to the OS, then return them
    /// through `back`.
    Discard {
        stacks: Vec<SlabStack>,
        back: Arc<Returned>,
    },
    /// Unmap `[start, start + len)` (a slab no stack of which is in use) and
    /// refund `charged` mappings to `budget`.
    Unmap {
        start: usize,
        len: usize,
        charged: usize,
        budget: Arc<MapBudget>,
    },
}

/// Stacks coming back to a pool from a discard, cold.
#[derive(Default)]
pub(crate) struct Returned {
    stacks: Mutex<Vec<SlabStack>>,
    /// How many `stacks` holds, readable without the lock.
    count: AtomicUsize,
}

impl Returned {
    /// True if there is anything to take.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) != 0
    }

    /// Moves every returned stack into `to`; returns how many.
    pub(crate) fn take_into(&self, to: &mut Vec<SlabStack>) -> usize {
        let mut v = self.stacks.lock().unwrap_or_else(|e| e.into_inner());
        let n = v.len();
        to.append(&mut v);
        self.count.store(0, Ordering::Release);
        n
    }

    fn give(&self, mut stacks: Vec<SlabStack>) {
        let mut v = self.stacks.lock().unwrap_or_else(|e| e.into_inner());
        v.append(&mut stacks);
        self.count.store(v.len(), Ordering::Release);
    }
}

struct Queue {
    jobs: VecDeque<Job>,
    /// The helper is waiting on `wake` (only then does a sender notify it:
    /// a futex wake per job would cost more than some jobs).
    sleeping: bool,
}

struct Helper {
    /// The process that started the thread.
    pid: u32,
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// The helper of this process, if it has been started.
static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();

/// The helper of this process, started on first use.
fn helper() -> Option<&'static Helper> {
    let h = (*HELPER.get_or_init(|| {
        if std::env::var_os("WEFT_STACK_PREPARE").is_some_and(|v| v == "off") {
            return None;
        }
        let h: &'static Helper = Box::leak(Box::new(Helper {
            pid: std::process::id(),
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                sleeping: false,
            }),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("weft-stack-prep".into())
            .spawn(move || serve(h))
            .ok()
            .map(|_| h)
    }))?;
    // A forked child has our memory but not our thread (and perhaps a
    // queue lock held by a thread that is gone): it works alone.
    (h.pid == std::process::id()).then_some(h)
}

/// Queues `job` for the helper; gives it back if there is none, for the
/// caller to do itself.
pub(crate) fn send(job: Job) -> Result<(), Job> {
    match helper() {
        Some(h) => {
            h.push(job);
            Ok(())
        }
        None => Err(job),
    }
}

/// Like [`send`], but only to a helper already started: a program that
/// never needed one (a few hundred fibers) does not start a thread just to
/// unmap a small slab at the end of its run.
pub(crate) fn send_if_started(job: Job) -> Result<(), Job> {
    if HELPER.get().is_none() {
        return Err(job);
    }
    send(job)
}

/// Queues the discard of `stacks`, to come back through `back`; gives them
/// back if there is no helper.
pub(crate) fn discard(stacks: Vec<SlabStack>, back: &Arc<Returned>) -> Result<(), Vec<SlabStack>> {
    match helper() {
        Some(h) => {
            h.push(Job::Discard {
                stacks,
                back: back.clone(),
            });
            Ok(())
        }
        None => Err(stacks),
    }
}

impl Helper {
    fn push(&self, job: Job) {
        SENT.fetch_add(1, Ordering::Relaxed);
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.jobs.push_back(job);
        if q.sleeping {
            self.wake.notify_one();
        }
    }
}

/// Most discard jobs done together (each holds up to a few hundred stacks).
const MAX_DISCARDS: usize = 64;

fn serve(h: &'static Helper) {
    let mut q = h.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let Some(job) = q.jobs.pop_front() else {
            q.sleeping = true;
            q = h.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            q.sleeping = false;
            continue;
        };
        let mut n = 1;
        let job = match job {
            // Discards waiting next to each other are done as one, so
            // adjacent stacks from several trims share a range and all the
            // ranges a TLB flush. (Only those at the front: a later unmap
            // must still come after them.)
            Job::Discard { stacks, back } => {
                let mut batch = vec![(stacks, back)];
                while batch.len() < MAX_DISCARDS {
                    match q.jobs.pop_front() {
                        Some(Job::Discard { stacks, back }) => batch.push((stacks, back)),
                        Some(other) => {
                            q.jobs.push_front(other);
                            break;
                        }
                        None => break,
                    }
                }
                n = batch.len();
                Work::Discards(batch)
            }
            other => Work::One(other),
        };
        drop(q);
        #[cfg(test)]
        drop(HOLD.lock().unwrap_or_else(|e| e.into_inner()));
        // A panic here is a bug (a failed debug assertion); it must not take
        // the thread down with it, or every later job would wait forever.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
            Work::One(job) => run(job),
            Work::Discards(batch) => discard_together(batch),
        }));
        DONE.fetch_add(n, Ordering::Release);
        q = h.queue.lock().unwrap_or_else(|e| e.into_inner());
    }
}

enum Work {
    One(Job),
    Discards(Vec<(Vec<SlabStack>, Arc<Returned>)>),
}

/// Discards the stacks of several jobs together, then returns each job's
/// stacks to its pool.
fn discard_together(batch: Vec<(Vec<SlabStack>, Arc<Returned>)>) {
    // SAFETY: the pools gave these stacks up with their jobs: they are
    // idle (their fibers have finished, their contents are dead) and no one
    // else holds them until `back` returns them. Their slabs are mapped: a
    // pool sends a slab's unmap after every discard of its stacks, and this
    // thread runs jobs in order (it merges only discards at the front).
    unsafe { slab::discard_idle(batch.iter().flat_map(|(stacks, _)| stacks)) };
    for (stacks, back) in batch {
        back.give(stacks);
    }
}

fn run(job: Job) {
    match job {
        Job::Prepare { slab, to } => slab.prepare(to),
        Job::Discard { stacks, back } => discard_together(vec![(stacks, back)]),
        Job::Unmap {
            start,
            len,
            charged,
            budget,
        } => {
            // SAFETY: the pool that sent this owned the slab and had every
            // stack of it back (see `Slab::release`); earlier jobs that
            // touch it (prepares, discards) have run.
            if unsafe { os::unmap(start, len) }.is_ok() {
                budget.refund(charged);
            }
        }
    }
}

/// Jobs sent to the helper.
static SENT: AtomicUsize = AtomicUsize::new(0);
/// Jobs the helper has finished.
static DONE: AtomicUsize = AtomicUsize::new(0);

/// Held by a test to keep the helper from starting its next job.
#[cfg(test)]
pub(crate) static HOLD: Mutex<()> = Mutex::new(());

/// Waits until the helper has finished every job sent so far (tests).
#[cfg(test)]
pub(crate) fn wait_idle() {
    let sent = SENT.load(Ordering::Relaxed);
    while DONE.load(Ordering::Acquire) < sent {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
