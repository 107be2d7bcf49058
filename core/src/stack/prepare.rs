//! Preparing never-used stack slots ahead of demand, on a helper thread.
//!
//! A fresh slot costs the kernel two things before a fiber can park on it:
//! its guard marker (`MADV_GUARD_INSTALL`) and the first write fault on its
//! top page (a page allocated and zeroed). On a 2-vCPU guest that is about
//! 3 µs per slot, three quarters of the cost of spawning a fiber onto a
//! fresh stack. When a scheduler is spawning many fibers onto fresh slots,
//! a helper thread does that work for the slots just ahead of it
//! (`MADV_GUARD_INSTALL`, then `MADV_POPULATE_WRITE` of the top page), so
//! it runs on another core while the scheduler runs fibers.
//!
//! The owner never waits for the helper: a slot in a chunk the helper has
//! finished already has its guard; any other slot gets its guard from the
//! owner as before. The helper works from the far end of the window down
//! and stops where it meets the owner coming up, so they split the work
//! without agreeing on a boundary. Installing a guard twice is harmless (the
//! guard page is never stack memory), and populating a page that is already
//! resident changes nothing, so a collision costs time, never correctness.
//! Memory spent ahead is bounded: the helper is asked to run at most as far
//! ahead as the number of fresh slots already taken, and only once a size
//! class has handed out [`START_AFTER`] of them, so a program with a few
//! hundred fibers never starts it.
//!
//! Only marker guards are prepared: `mprotect` guards change the mapping
//! count, which the owner's budget accounts for.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use super::os;

/// Fresh slots a size class hands out before the helper is asked to help.
pub(crate) const START_AFTER: usize = 256;

/// Most slots the helper is asked to prepare ahead of the owner.
const MAX_AHEAD: usize = 4096;

/// Slots per unit of work: the helper claims a chunk before preparing it.
const CHUNK: usize = 16;

const UNTOUCHED: u8 = 0;
const CLAIMED: u8 = 1;
const DONE: u8 = 2;

/// The helper's view of one slab.
pub(crate) struct SlabPrep {
    start: usize,
    stride: usize,
    capacity: usize,
    /// Per chunk of [`CHUNK`] slots: untouched, being prepared, or done
    /// (every slot in it has its guard and, unless the owner got there
    /// first, a resident top page).
    chunks: Box<[AtomicU8]>,
    /// Slots the owner has handed out: the helper leaves their chunks.
    taken: AtomicUsize,
    /// True once the slab is unmapped. The helper touches the mapping only
    /// while holding this lock and seeing `false`.
    unmapped: Mutex<bool>,
}

impl SlabPrep {
    pub(crate) fn new(start: usize, stride: usize, capacity: usize) -> Arc<SlabPrep> {
        Arc::new(SlabPrep {
            start,
            stride,
            capacity,
            chunks: (0..capacity.div_ceil(CHUNK))
                .map(|_| AtomicU8::new(UNTOUCHED))
                .collect(),
            taken: AtomicUsize::new(0),
            unmapped: Mutex::new(false),
        })
    }

    /// True if slot `i` already has its guard.
    #[inline]
    pub(crate) fn is_prepared(&self, i: usize) -> bool {
        self.chunks[i / CHUNK].load(Ordering::Acquire) == DONE
    }

    /// Records that the owner handed out slots `[0, taken)`.
    #[inline]
    pub(crate) fn set_taken(&self, taken: usize) {
        self.taken.store(taken, Ordering::Relaxed);
    }

    /// Stops the helper from touching the slab; returns once it no longer
    /// does. Called before the slab is unmapped.
    pub(crate) fn retire(&self) {
        *self.unmapped.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// Prepares the chunks below slot `to`, from the top down, until it
    /// meets the owner coming up: the owner takes slots in address order,
    /// so starting at the far end splits the window between the two
    /// without either waiting (the owner prepares its own slots until it
    /// reaches the helper's).
    fn prepare(&self, to: usize) {
        let page = os::page_size();
        let mut chunk = to.min(self.capacity).div_ceil(CHUNK);
        while chunk > 0 {
            chunk -= 1;
            let first = chunk * CHUNK;
            // The owner is in or past this chunk: everything below is its.
            if first < self.taken.load(Ordering::Relaxed) + CHUNK {
                return;
            }
            if self.chunks[chunk]
                .compare_exchange(UNTOUCHED, CLAIMED, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let gone = self.unmapped.lock().unwrap_or_else(|e| e.into_inner());
            if *gone {
                return;
            }
            let mut ok = true;
            for i in first..(first + CHUNK).min(self.capacity) {
                let limit = self.start + i * self.stride;
                // SAFETY: the slab is mapped (`unmapped` is false and we hold
                // its lock, which `retire` takes before the unmap). The guard
                // page of a slot is never stack memory, whoever holds the
                // slot, so marking it (again) is harmless.
                if unsafe { os::install_guard_marker(limit) }.is_err() {
                    ok = false;
                    break;
                }
                // SAFETY: as above; populating only faults the page in (one
                // already resident, in use or not, is left as it is).
                unsafe { os::populate_write(limit + self.stride - page, page) };
            }
            drop(gone);
            // A chunk that failed stays claimed: the owner guards its slots.
            if ok {
                self.chunks[chunk].store(DONE, Ordering::Release);
            } else {
                return;
            }
        }
    }
}

struct Job {
    slab: Arc<SlabPrep>,
    to: usize,
}

/// The process-wide helper thread, started on first use.
fn helper() -> Option<&'static Mutex<Sender<Job>>> {
    static HELPER: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
    HELPER
        .get_or_init(|| {
            if std::env::var_os("WEFT_STACK_PREPARE").is_some_and(|v| v == "off") {
                return None;
            }
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("weft-stack-prep".into())
                .spawn(move || serve(rx))
                .ok()
                .map(|_| Mutex::new(tx))
        })
        .as_ref()
}

fn serve(rx: Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        job.slab.prepare(job.to);
        IDLE.fetch_add(1, Ordering::Release);
    }
}

/// Jobs finished by the helper (tests wait on it).
static IDLE: AtomicUsize = AtomicUsize::new(0);
/// Jobs sent to the helper.
static SENT: AtomicUsize = AtomicUsize::new(0);

/// Asks the helper, if any, to prepare the slots of `slab` below `to`
/// that the owner has not reached.
pub(crate) fn request(slab: &Arc<SlabPrep>, to: usize) {
    if !os::markers_supported() {
        return;
    }
    if let Some(tx) = helper() {
        let job = Job {
            slab: slab.clone(),
            to,
        };
        if tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .is_ok()
        {
            SENT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How far ahead of the owner to ask for, given how many fresh slots its
/// size class has handed out so far (`None`: too few to bother).
pub(crate) fn window(demand: usize) -> Option<usize> {
    (demand >= START_AFTER).then(|| demand.min(MAX_AHEAD))
}

/// Waits until the helper has finished every job sent so far (tests).
#[cfg(test)]
pub(crate) fn wait_idle() {
    while IDLE.load(Ordering::Acquire) < SENT.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
