//! Preparing never-used stack slots ahead of demand, on the helper thread.
//!
//! A fresh slot costs the kernel two things before a fiber can park on it:
//! its guard marker (`MADV_GUARD_INSTALL`) and the first write fault on its
//! top page (a page allocated and zeroed). On a 2-vCPU guest that is about
//! 2-3 µs per slot, most of the cost of spawning a fiber onto a fresh
//! stack. When a scheduler is spawning many fibers onto fresh slots, the
//! helper ([`super::helper`]) does that work for the slots just ahead of
//! it, on another core, a chunk of [`CHUNK`] slots at a time: the chunk's
//! guards in one `process_madvise` call, then one write into each slot's
//! top page.
//!
//! That write lands in the slot's *reserve*, the top bytes of the slot that
//! are never part of its stack ([`slab::TOP_RESERVE`]), so it can never
//! race with a fiber: whoever holds the slot, the helper writes only bytes
//! no one else reads or writes. (A plain write faults a page in for less
//! than `MADV_POPULATE_WRITE` does, and unlike it needs no system call.)
//!
//! The owner never waits for the helper: a slot in a chunk marked done
//! already has its guard; for any other slot the owner installs the guard
//! itself, a whole chunk at a time when it can claim the chunk first. The
//! helper works from the far end of the window down and stops where it
//! meets the owner coming up, so they split the work without agreeing on a
//! boundary. Installing a guard twice is harmless (the guard page is never
//! stack memory), so a collision costs time, never correctness. Memory
//! spent ahead is bounded: the helper is asked to run at most as far ahead
//! as the number of fresh slots already taken (across slabs: the pool maps
//! the next slab early so the window can run on into it), and only once a
//! size class has handed out [`START_AFTER`] of them, so a program with a
//! few hundred fibers never starts it.
//!
//! Only marker guards are prepared: `mprotect` guards change the mapping
//! count, which the owner's budget accounts for.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::helper::{self, Job};
use super::{os, slab};

/// Fresh slots a size class hands out before the helper is asked to help.
pub(crate) const START_AFTER: usize = 256;

/// Most slots the helper is asked to prepare ahead of the owner.
const MAX_AHEAD: usize = 4096;

/// Slots per unit of work: the helper (or the owner) claims a chunk before
/// installing its guards.
pub(crate) const CHUNK: usize = 16;

const UNTOUCHED: u8 = 0;
const CLAIMED: u8 = 1;
const DONE: u8 = 2;

/// The helper's view of one slab.
pub(crate) struct SlabPrep {
    start: usize,
    stride: usize,
    capacity: usize,
    /// Per chunk of [`CHUNK`] slots: untouched, being prepared, or done
    /// (every slot in it has its guard and, if the helper did it, a
    /// resident top page).
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

    /// Called by the owner at slot `i`, the first of its chunk, when that
    /// chunk is not done: claims the chunk and installs all its guards in
    /// one go. False if the helper has the chunk or a guard failed (the
    /// owner then guards its slots one by one, as without a helper).
    pub(crate) fn owner_prepare_chunk(&self, i: usize) -> bool {
        let chunk = i / CHUNK;
        if i % CHUNK != 0
            || self.chunks[chunk]
                .compare_exchange(UNTOUCHED, CLAIMED, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        // SAFETY: the owner calls this while its slab is mapped (it unmaps
        // only after `retire`, on its own thread). The chunk's slots from
        // `i` on have never been handed out; guard pages are never memory.
        if unsafe { self.install_guards(chunk) }.is_err() {
            return false; // stays claimed: the helper leaves it alone
        }
        self.chunks[chunk].store(DONE, Ordering::Release);
        true
    }

    /// Installs the guards of every slot of `chunk`.
    ///
    /// # Safety
    /// The slab is mapped.
    unsafe fn install_guards(&self, chunk: usize) -> std::io::Result<()> {
        let first = chunk * CHUNK;
        let last = (first + CHUNK).min(self.capacity);
        let mut pages = [0usize; CHUNK];
        for (p, i) in pages.iter_mut().zip(first..last) {
            *p = self.start + i * self.stride;
        }
        // SAFETY: every page is the guard page of a slot of this slab,
        // which the caller vouches is mapped; a guard page is never stack
        // memory, whoever holds the slot, so marking it (again) is harmless.
        unsafe { os::install_guard_markers(&pages[..last - first]) }
    }

    /// Prepares the chunks below slot `to`, from the top down, until it
    /// meets the owner coming up: the owner takes slots in address order,
    /// so starting at the far end splits the window between the two
    /// without either waiting (the owner prepares its own slots until it
    /// reaches the helper's).
    pub(crate) fn prepare(&self, to: usize) {
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
            // SAFETY: the slab is mapped (`unmapped` is false and we hold
            // its lock, which `retire` takes before the unmap).
            if unsafe { self.install_guards(chunk) }.is_err() {
                // Stays claimed: the owner guards these slots itself.
                return;
            }
            for i in first..(first + CHUNK).min(self.capacity) {
                let top = self.start + (i + 1) * self.stride;
                // SAFETY: as above, the slab is mapped; the byte is in the
                // slot's reserve, above its stack, which no fiber and no
                // other thread ever reads or writes, so this write races
                // with nothing. It faults the top page in (or finds it
                // there, if the owner got to the slot first).
                unsafe { ((top - slab::TOP_RESERVE) as *mut u8).write_volatile(0) };
            }
            drop(gone);
            self.chunks[chunk].store(DONE, Ordering::Release);
        }
    }
}

/// Asks the helper, if any, to prepare the slots of `slab` below `to`
/// that the owner has not reached.
pub(crate) fn request(slab: &Arc<SlabPrep>, to: usize) {
    if !os::markers_known_good() {
        return;
    }
    let _ = helper::send(Job::Prepare {
        slab: slab.clone(),
        to,
    });
}

/// How far ahead of the owner to ask for, given how many fresh slots its
/// size class has handed out so far (`None`: too few to bother).
pub(crate) fn window(demand: usize) -> Option<usize> {
    (demand >= START_AFTER).then(|| demand.min(MAX_AHEAD))
}
