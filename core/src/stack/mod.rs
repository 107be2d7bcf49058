//! Fiber stacks: guarded, carved from large slabs, pooled and reused.
//!
//! Every fiber runs on its own stack, with a guard page below it so that an
//! overflow faults instead of overwriting a neighbour. A fresh `mmap`ped
//! stack costs microseconds and, made the usual way (`mmap` + `mprotect`),
//! two memory mappings; `vm.max_map_count` caps a process at 65530 by
//! default, so that way stops near 32,700 fibers. weft does better:
//!
//! - **Slabs** ([`slab`]): one mapping holds thousands of stacks of one size
//!   (a slab per size class), each with its guard installed by
//!   `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+), which costs no mapping.
//!   A million guarded stacks take a few hundred slabs, and the kernel merges
//!   adjacent ones: the whole process had 42 mappings with a million fibers
//!   parked (`examples/many_fibers.rs`). On older kernels
//!   guards fall back to `mprotect`, counted against a budget drawn from
//!   `vm.max_map_count`; past it, spawning fails with an error that names
//!   the sysctl ([`os`]).
//! - **A pool** ([`StackPool`], one per scheduler): a finished fiber's stack
//!   goes back on a LIFO list and the next spawn of that size takes it, warm
//!   (pages already resident, nothing to fault in). Past `max_idle` idle
//!   stacks per size, the coldest are given back to the OS in batches with
//!   `madvise(MADV_DONTNEED)` (guards survive it) and reused after the warm
//!   ones. Memory is only resident where a fiber has touched it: a parked
//!   fiber costs the pages its deepest call reached, usually one.
//! - **Preparation ahead** ([`prepare`]): once a scheduler has spawned a few
//!   hundred fibers onto never-used slots, a helper thread installs the
//!   guards and faults in the top pages of the slots just ahead, on another
//!   core (`WEFT_STACK_PREPARE=off` disables it).
//! - **Overflow reports** ([`overflow`]): a fault in any guard page prints
//!   `fiber stack overflow` with the fiber's name or spawn site, then aborts.
//!
//! Stack size is chosen per run ([`RunConfig::stack_size`], default
//! [`DEFAULT_STACK_SIZE`]) and per fiber
//! ([`ForkOptions::stack_size`](crate::switch::ForkOptions::stack_size)).
//! The size is address space, not memory: the default 256 KiB stack of a
//! fiber that only ever uses 3 KiB costs 4 KiB of memory.
//!
//! ```
//! use weft::switch::ForkOptions;
//! use weft::Switch;
//!
//! weft::mock::run(|_env| {
//!     Switch::run(|sw| {
//!         // A fiber that recurses deeply asks for a bigger stack.
//!         sw.fork_with(ForkOptions::new().name("parser").stack_size(4 << 20), || {
//!             fn depth(n: u32) -> u32 {
//!                 let pad = std::hint::black_box([n; 16]);
//!                 if n == 0 { 0 } else { 1 + depth(n - 1) + pad[0] - n }
//!             }
//!             assert_eq!(depth(10_000), 10_000);
//!             Ok(())
//!         });
//!         Ok(())
//!     })
//! })
//! .unwrap();
//! ```
//!
//! [`RunConfig::stack_size`]: crate::RunConfig::stack_size

pub(crate) mod os;
pub(crate) mod overflow;
mod prepare;
pub(crate) mod slab;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;

use os::{GuardChoice, MapBudget};
use slab::{Slab, SlabStack};

use crate::error::Result;

/// The stack size used when neither the fiber nor the run asks for another.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Smallest stack a fiber may ask for.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// A guarded fiber stack.
pub(crate) type FiberStack = SlabStack;

/// Stacks in the first slab of a size class; each later slab doubles, up to
/// [`slab::MAX_SLAB_BYTES`].
const FIRST_SLAB_STACKS: usize = 16;

/// Idle stacks past `max_idle` are trimmed in batches of at least this many,
/// so one `madvise` covers many (adjacent stacks coalesce).
const TRIM_BATCH: usize = 64;

/// The stacks of one size.
struct SizeClass {
    size: usize,
    /// Slabs of this size; only the last one may have never-used slots.
    slabs: Vec<Slab>,
    /// Idle stacks with their memory, most recently used at the back.
    warm: VecDeque<SlabStack>,
    /// Idle stacks whose memory went back to the OS (guards kept).
    cold: Vec<SlabStack>,
    /// Never-used slots handed out so far (how hard spawning is pushing).
    fresh_taken: usize,
}

/// Per-scheduler pool of stacks, by size.
pub(crate) struct StackPool {
    default_size: usize,
    max_idle: usize,
    classes: Vec<SizeClass>,
    /// Stacks handed out and not given back.
    outstanding: usize,
    guards: GuardChoice,
    budget: Arc<MapBudget>,
}

impl StackPool {
    /// A pool whose stacks are `default_size` bytes unless asked otherwise,
    /// keeping at most `max_idle` idle stacks per size resident. Also makes
    /// sure this thread can report stack overflows.
    pub(crate) fn new(default_size: usize, max_idle: usize) -> Self {
        Self::with_guards(
            default_size,
            max_idle,
            GuardChoice::from_env(),
            MapBudget::global(),
        )
    }

    /// Like [`new`](Self::new), with the guard method and mapping budget
    /// given (tests force the mprotect fallback and tiny budgets).
    pub(crate) fn with_guards(
        default_size: usize,
        max_idle: usize,
        guards: GuardChoice,
        budget: Arc<MapBudget>,
    ) -> Self {
        overflow::prepare_thread();
        StackPool {
            default_size: round_size(default_size),
            max_idle,
            classes: Vec::new(),
            outstanding: 0,
            guards,
            budget,
        }
    }

    pub(crate) fn default_size(&self) -> usize {
        self.default_size
    }

    /// Takes an idle stack of `size` (or the default): the warmest first,
    /// then one whose memory was returned, then a never-used slot of a slab
    /// (mapping a new slab when the last one is full).
    pub(crate) fn get(&mut self, size: Option<usize>) -> Result<FiberStack> {
        let size = size.map(round_size).unwrap_or(self.default_size);
        let class = match self.classes.iter().position(|c| c.size == size) {
            Some(i) => &mut self.classes[i],
            None => {
                self.classes.push(SizeClass {
                    size,
                    slabs: Vec::new(),
                    warm: VecDeque::new(),
                    cold: Vec::new(),
                    fresh_taken: 0,
                });
                self.classes.last_mut().expect("just pushed")
            }
        };
        let stack = match class.warm.pop_back().or_else(|| class.cold.pop()) {
            Some(s) => s,
            None => fresh(class, self.guards, &self.budget)
                .map_err(|e| e.context(format!("allocating a {size}-byte fiber stack")))?,
        };
        self.outstanding += 1;
        Ok(stack)
    }

    /// Returns a stack for reuse.
    pub(crate) fn put(&mut self, stack: FiberStack) {
        self.outstanding -= 1;
        let size = stack.size();
        let Some(class) = self.classes.iter_mut().find(|c| c.size == size) else {
            debug_assert!(
                false,
                "a stack came back to a pool that has no slab of its size"
            );
            return;
        };
        class.warm.push_back(stack);
        if class.warm.len() >= self.max_idle.saturating_add(TRIM_BATCH) {
            let n = class.warm.len() - self.max_idle;
            trim(class, n);
        }
    }

    /// Idle stacks held, warm or not (for tests and diagnostics).
    pub(crate) fn idle_count(&self) -> usize {
        self.classes
            .iter()
            .map(|c| c.warm.len() + c.cold.len())
            .sum()
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        if self.outstanding != 0 {
            // Some fiber never finished (its coroutine was leaked when the
            // run ended): its stack must stay mapped, so every slab stays.
            return;
        }
        for class in self.classes.drain(..) {
            for slab in class.slabs {
                // SAFETY: `outstanding` is zero, so every stack handed out
                // from this pool's slabs has come back.
                unsafe { slab.release(&self.budget) };
            }
        }
    }
}

/// A never-used stack from the class's last slab, or from a new one.
fn fresh(class: &mut SizeClass, guards: GuardChoice, budget: &MapBudget) -> Result<SlabStack> {
    class.fresh_taken += 1;
    let demand = class.fresh_taken;
    if let Some(slab) = class.slabs.last_mut() {
        if let Some(s) = slab.take_fresh(guards, budget, demand)? {
            return Ok(s);
        }
    }
    let capacity = FIRST_SLAB_STACKS << class.slabs.len().min(20);
    let mut slab = Slab::map(class.size, capacity, budget)?;
    let s = slab.take_fresh(guards, budget, demand);
    class.slabs.push(slab);
    Ok(s?.expect("a new slab has a free slot"))
}

/// Gives the memory of the `n` coldest warm stacks back to the OS.
fn trim(class: &mut SizeClass, n: usize) {
    let mut batch: Vec<SlabStack> = class.warm.drain(..n).collect();
    batch.sort_unstable_by_key(|s| s.top());
    let mut i = 0;
    while i < batch.len() {
        // Adjacent slots form one range: [bottom of the first, top of the
        // last), the guards between them included (DONTNEED keeps guards).
        let mut j = i;
        while j + 1 < batch.len() && batch[j + 1].guard().0 == batch[j].top() {
            j += 1;
        }
        let (from, to) = (batch[i].bottom(), batch[j].top());
        // SAFETY: these stacks are idle (given back by their fibers), so
        // their contents are dead, and the range lies in our slabs.
        if let Err(e) = unsafe { os::discard(from, to - from) } {
            debug_assert!(false, "MADV_DONTNEED failed: {e}");
        }
        i = j + 1;
    }
    class.cold.extend(batch);
}

fn round_size(size: usize) -> usize {
    let page = os::page_size();
    let size = size.max(MIN_STACK_SIZE);
    size.checked_add(page - 1)
        .map_or(usize::MAX & !(page - 1), |s| s & !(page - 1))
}
