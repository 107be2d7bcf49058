//! Slabs: one memory mapping holding many guarded stacks.
//!
//! A slab is a single `mmap(PROT_READ | PROT_WRITE, MAP_PRIVATE |
//! MAP_ANONYMOUS | MAP_NORESERVE)` cut into `capacity` slots of `stride =
//! page + size` bytes. Each slot is a guard page with a stack above it
//! (stacks grow down, so the guard catches the overflow):
//!
//! ```text
//!  start                                                          start + len
//!  | guard | stack 0 (size bytes) | guard | stack 1 | ... | guard | stack n-1 |
//!  ^limit0                        ^base0  ^limit1   ^base1
//! ```
//!
//! The top [`TOP_RESERVE`] bytes of each slot are not part of its stack:
//! the helper thread writes there to fault a slot's top page in ahead of
//! use, without ever touching memory a fiber owns (see [`super::prepare`]).
//!
//! Nothing is resident until touched, and no swap is reserved, so a slab
//! for thousands of stacks costs address space only. Slots are handed out
//! in address order; a slot's guard is installed the first time it is
//! handed out (so the guards of slots never used cost nothing), either as a
//! page-table marker (`MADV_GUARD_INSTALL`, the slab stays one mapping) or,
//! on older kernels, with `mprotect` (two more mappings per guard, counted
//! against the [`MapBudget`]). A slot is only ever handed out with its guard
//! in place, and guards stay for the slab's lifetime.
//!
//! Slabs are registered with the overflow handler (see [`super::overflow`])
//! so a fault in any of their guard pages is reported as a fiber stack
//! overflow.

use std::num::NonZeroUsize;
use std::sync::Arc;

use corosensei::stack::{Stack, StackPointer};

use super::helper::{self, Job};
use super::os::{self, GuardChoice, GuardKind, MapBudget};
use super::overflow;
use super::prepare::{self, SlabPrep};
use crate::error::{Error, ErrorKind, Result};

/// Bytes at the top of each slot that are not part of its stack (a
/// multiple of the stack alignment, so the stack's base stays aligned).
pub(crate) const TOP_RESERVE: usize = 64;

/// A stack in a slab: `[limit, limit + page)` is its guard page,
/// `[limit + page, base)` its memory, and `[base, base + TOP_RESERVE)` the
/// slot's reserve. Owned by one fiber at a time; freed by giving it back to
/// the pool it came from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SlabStack {
    base: StackPointer,
    limit: StackPointer,
}

impl SlabStack {
    /// The slot's size less its guard page: the size class it belongs to.
    /// (The stack proper is [`TOP_RESERVE`] bytes less.)
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.top() - self.limit.get() - os::page_size()
    }

    /// The guard page, as `[start, end)`.
    #[inline]
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.limit.get(), self.limit.get() + os::page_size())
    }

    /// Lowest usable address (just above the guard).
    #[inline]
    pub(crate) fn bottom(&self) -> usize {
        self.limit.get() + os::page_size()
    }

    /// The slot's end (exclusive); the stack starts growing down
    /// [`TOP_RESERVE`] bytes below it.
    #[inline]
    pub(crate) fn top(&self) -> usize {
        self.base.get() + TOP_RESERVE
    }
}

/// Gives the memory of idle stacks back to the OS (guards kept). Adjacent
/// stacks, in whatever order they come, make one range (their guards
/// included: DONTNEED keeps guards), and all the ranges go in as few system
/// calls as the kernel allows.
///
/// # Safety
/// The stacks are idle (no fiber runs on them, their contents are dead)
/// and their slabs are mapped.
pub(crate) unsafe fn discard_idle<'a>(stacks: impl IntoIterator<Item = &'a SlabStack>) {
    let mut slots: Vec<(usize, usize, usize)> = stacks
        .into_iter()
        .map(|s| (s.guard().0, s.bottom(), s.top()))
        .collect();
    slots.sort_unstable();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (guard, bottom, top) in slots {
        match ranges.last_mut() {
            // Adjacent slots: this one's guard starts at the last one's top.
            Some((from, len)) if *from + *len == guard => *len = top - *from,
            _ => ranges.push((bottom, top - bottom)),
        }
    }
    // SAFETY: by the caller's contract these stacks' contents are dead, and
    // each range lies in their (mapped) slabs: it runs from the bottom of
    // one idle stack to the top of another, across only idle stacks and
    // the guard pages between them.
    if let Err(e) = unsafe { os::discard_ranges(&ranges) } {
        debug_assert!(false, "MADV_DONTNEED failed: {e}");
    }
}

// SAFETY: a `SlabStack` is only created by `Slab::take_fresh`, for a slot
// whose guard page `[limit, limit + page)` has just been installed (a marker
// or PROT_NONE; neither is ever removed while the slab is mapped), and the
// slab stays mapped while any of its stacks is outside the pool (the pool
// leaks its slabs rather than unmap them under a live stack). `limit` is
// the slot's start, so the range `[limit, base)` includes the guard, as the
// trait requires. `limit` is a page multiple (the mapping is page-aligned
// and the stride is a page multiple) and `base` is the slot's end, also a
// page multiple, less `TOP_RESERVE` (64), so both are aligned to
// `STACK_ALIGNMENT` (16 or less). The usable part, `base - limit - page`,
// is at least weft's `MIN_STACK_SIZE` (16 KiB) less 64 bytes, above
// corosensei's 4 KiB minimum. Each slot is handed to one `SlabStack` at a
// time, so no two coroutines share memory; the reserve above `base` is
// outside the stack, so the helper's writes there touch nothing a
// coroutine uses.
unsafe impl Stack for SlabStack {
    #[inline]
    fn base(&self) -> StackPointer {
        self.base
    }

    #[inline]
    fn limit(&self) -> StackPointer {
        self.limit
    }
}

/// Largest slab mapping (address space only: nothing is reserved).
pub(crate) const MAX_SLAB_BYTES: usize = 1 << 30;

/// One mapping of `capacity` guarded stack slots.
pub(crate) struct Slab {
    start: usize,
    len: usize,
    stride: usize,
    capacity: usize,
    /// Slots `[0, next)` have their guards and have been handed out.
    next: usize,
    /// Mappings charged to the budget (released with the slab).
    charged: usize,
    /// Where the overflow handler knows this slab.
    registered: Option<usize>,
    /// Shared with the helper that prepares slots ahead (made once the slab
    /// has handed out enough fresh slots to be worth it).
    prep: Option<Arc<SlabPrep>>,
    /// Slots `[0, requested)` have been asked of the helper.
    requested: usize,
    /// Where the window last asked for ended, maybe past this slab.
    wanted: usize,
}

impl Slab {
    /// Maps a slab for up to `capacity` stacks of `size` bytes (a page
    /// multiple), halving the capacity while the kernel refuses the
    /// address space.
    pub(crate) fn map(size: usize, capacity: usize, budget: &MapBudget) -> Result<Slab> {
        let page = os::page_size();
        debug_assert!(size % page == 0 && size >= page);
        let Some(stride) = size.checked_add(page).filter(|&s| s <= isize::MAX as usize) else {
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                format!("fiber stack size {size} is too large"),
            ));
        };
        let mut capacity = capacity.clamp(1, (MAX_SLAB_BYTES / stride).max(1));
        budget.charge(1)?;
        loop {
            let len = stride * capacity;
            match os::map_anon(len) {
                Ok(start) => {
                    let registered = overflow::register(start, len, stride);
                    return Ok(Slab {
                        start,
                        len,
                        stride,
                        capacity,
                        next: 0,
                        charged: 1,
                        registered,
                        prep: None,
                        requested: 0,
                        wanted: 0,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && capacity > 1 => {
                    capacity /= 2;
                }
                Err(e) => {
                    budget.refund(1);
                    return Err(Error::with_source(ErrorKind::Io, e).context(format!(
                        "mapping a slab of {capacity} fiber stacks of {size} bytes"
                    )));
                }
            }
        }
    }

    /// Usable bytes of each stack.
    #[cfg(test)]
    pub(crate) fn stack_size(&self) -> usize {
        self.stride - os::page_size()
    }

    /// Stack slots in the mapping.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// True once every slot has been handed out at least once.
    pub(crate) fn is_full(&self) -> bool {
        self.next == self.capacity
    }

    /// The mapping, as `[start, end)`.
    #[cfg(test)]
    pub(crate) fn range(&self) -> (usize, usize) {
        (self.start, self.start + self.len)
    }

    /// Hands out the next never-used slot, after installing its guard.
    /// `None` if the slab is full.
    pub(crate) fn take_fresh(
        &mut self,
        choice: GuardChoice,
        budget: &MapBudget,
    ) -> Result<Option<SlabStack>> {
        if self.is_full() {
            return Ok(None);
        }
        let limit = self.start + self.next * self.stride;
        // With a helper at work, the owner installs the guards of a chunk
        // nobody has claimed in one call as it enters it.
        let prepared = self.prep.as_ref().is_some_and(|p| {
            p.is_prepared(self.next)
                || (choice == GuardChoice::Auto
                    && os::markers_known_good()
                    && p.owner_prepare_chunk(self.next))
        });
        let kind = if prepared {
            GuardKind::Marker
        } else {
            // SAFETY: the slot lies inside our mapping (`next < capacity`)
            // and has never been handed out, so nothing lives in its first
            // page.
            unsafe { os::install_guard(limit, choice, budget)? }
        };
        if kind == GuardKind::Mprotect {
            self.charged += 2;
        }
        self.next += 1;
        let base = limit + self.stride - TOP_RESERVE;
        Ok(Some(SlabStack {
            base: NonZeroUsize::new(base).expect("slab addresses are non-zero"),
            limit: NonZeroUsize::new(limit).expect("slab addresses are non-zero"),
        }))
    }

    /// Keeps the helper preparing slots ahead of `next` once the size class
    /// has handed out `demand` fresh slots, enough to be worth it (see
    /// [`prepare`]). Called after a fresh slot was taken with a marker
    /// guard. Returns how far the window reaches past this slab's end, for
    /// the pool to ask of the next slab.
    pub(crate) fn ask_ahead(&mut self, demand: usize) -> usize {
        let Some(window) = prepare::window(demand) else {
            return 0;
        };
        let next = self.next;
        self.prep_mut().set_taken(next);
        // Ask again once halfway through what was last asked for (which
        // may reach past this slab: then the rest is the next slab's).
        if self.next + window / 2 < self.wanted {
            return 0;
        }
        let want = self.next + window;
        self.wanted = want;
        self.request_to(want);
        want.saturating_sub(self.capacity)
    }

    /// Asks the helper to prepare the never-used slots below `to` (at most
    /// the whole slab), unless that was asked already.
    pub(crate) fn request_to(&mut self, to: usize) {
        let to = to.min(self.capacity);
        if to <= self.requested {
            return;
        }
        prepare::request(self.prep_mut(), to);
        self.requested = to;
    }

    fn prep_mut(&mut self) -> &Arc<SlabPrep> {
        let (start, stride, capacity) = (self.start, self.stride, self.capacity);
        self.prep
            .get_or_insert_with(|| SlabPrep::new(start, stride, capacity))
    }

    /// Whether the helper has prepared slot `i` (tests).
    #[cfg(test)]
    pub(crate) fn is_prepared(&self, i: usize) -> bool {
        self.prep.as_ref().is_some_and(|p| p.is_prepared(i))
    }

    /// The never-used slot `i`, as `(guard page, top)`, for tests.
    #[cfg(test)]
    pub(crate) fn slot(&self, i: usize) -> (usize, usize) {
        let limit = self.start + i * self.stride;
        (limit, limit + self.stride)
    }

    /// Unmaps the slab and returns its mappings to the budget, on the
    /// helper thread if there is one (after any job already sent to it).
    ///
    /// `discards_pending`: some discard of the pool's stacks may still be
    /// queued for the helper, so the unmap must queue behind it.
    ///
    /// # Safety
    /// No stack of this slab is in use: every one handed out has come back
    /// (or was never handed out), and any discard of its stacks was sent to
    /// the helper before this.
    pub(crate) unsafe fn release(self, budget: &Arc<MapBudget>, discards_pending: bool) {
        if let Some(p) = &self.prep {
            p.retire();
        }
        if let Some(i) = self.registered {
            overflow::unregister(i);
        }
        // Slabs with mprotect guards are unmapped here and now when
        // possible, so the budget they are charged to is refunded before
        // the next spawn. (Pending discards imply a started helper.)
        if self.charged == 1 || discards_pending {
            let job = Job::Unmap {
                start: self.start,
                len: self.len,
                charged: self.charged,
                budget: budget.clone(),
            };
            if helper::send_if_started(job).is_ok() {
                return;
            }
        }
        // Unmapping can only fail by needing a mapping it cannot have (a
        // split at the edges); then the slab is leaked, still guarded.
        // SAFETY: the mapping is ours (made in `map`) and, by the caller's
        // contract, no stack in it is in use.
        let unmapped = unsafe { os::unmap(self.start, self.len) }.is_ok();
        if unmapped {
            budget.refund(self.charged);
        }
    }
}
