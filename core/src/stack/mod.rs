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
//!   (pages already resident, nothing to fault in). The scheduler keeps up
//!   to 16 default-size stacks out of the pool, with the control blocks of
//!   the fibers that finished on them, for the next spawns. Past `max_idle` idle
//!   stacks per size, the coldest are given back to the OS in batches with
//!   `madvise(MADV_DONTNEED)` (guards survive it) and reused after the warm
//!   ones — when the scheduler runs out of work, or a second after they
//!   went idle while it stays busy ([`StackPool::trim_excess`]). Memory is
//!   only resident where a fiber has touched it: a parked fiber costs the
//!   pages its deepest call reached, usually one.
//! - **A helper thread** ([`helper`]) does the kernel's share on another
//!   core: once a scheduler has spawned a few hundred fibers onto
//!   never-used slots, it installs the guards and faults in the top pages
//!   of the slots just ahead ([`prepare`]); it gives trimmed stacks' memory
//!   back, and unmaps the slabs of a pool that is dropped
//!   (`WEFT_STACK_PREPARE=off` disables it).
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

mod helper;
pub(crate) mod os;
pub(crate) mod overflow;
mod prepare;
pub(crate) mod slab;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;

use helper::Returned;
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
    /// The next slab, mapped early so that the helper can prepare its first
    /// slots before the last slab runs out.
    next_slab: Option<Slab>,
    /// Idle stacks with their memory, most recently used at the back.
    warm: VecDeque<SlabStack>,
    /// Idle stacks whose memory went back to the OS (guards kept).
    cold: Vec<SlabStack>,
    /// Trimmed stacks the helper has discarded, on their way to `cold`.
    back: Arc<Returned>,
    /// Stacks sent to the helper to discard and not yet moved to `cold`.
    in_flight: usize,
    /// Never-used slots handed out so far (how hard spawning is pushing).
    fresh_taken: usize,
}

impl SizeClass {
    fn new(size: usize) -> SizeClass {
        SizeClass {
            size,
            slabs: Vec::new(),
            next_slab: None,
            warm: VecDeque::new(),
            cold: Vec::new(),
            back: Arc::default(),
            in_flight: 0,
            fresh_taken: 0,
        }
    }

    /// Moves the stacks the helper has finished discarding to `cold`.
    fn take_back(&mut self) {
        if self.back.any() {
            self.in_flight -= self.back.take_into(&mut self.cold);
        }
    }
}

/// Per-scheduler pool of stacks, by size.
pub(crate) struct StackPool {
    default_size: usize,
    max_idle: usize,
    /// By size; `classes[0]` is the default size's (made up front, so that
    /// the common spawn and finish find it without a search).
    classes: Vec<SizeClass>,
    /// Stacks handed out and not given back.
    outstanding: usize,
    guards: GuardChoice,
    budget: Arc<MapBudget>,
    /// Set by `put` once some size holds a batch of idle stacks past
    /// `max_idle`; cleared by `trim_excess` when none does.
    excess: bool,
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
        let default_size = round_size(default_size);
        StackPool {
            default_size,
            max_idle,
            classes: vec![SizeClass::new(default_size)],
            outstanding: 0,
            guards,
            budget,
            excess: false,
        }
    }

    pub(crate) fn default_size(&self) -> usize {
        self.default_size
    }

    /// Takes an idle stack of `size` (or the default): the warmest first,
    /// then one whose memory was returned, then a never-used slot of a slab
    /// (mapping a new slab when the last one is full).
    #[inline]
    pub(crate) fn get(&mut self, size: Option<usize>) -> Result<FiberStack> {
        // Most spawns: a warm stack of the default size.
        if size.is_none() {
            if let Some(s) = self.classes[0].warm.pop_back() {
                self.outstanding += 1;
                return Ok(s);
            }
        }
        self.get_slow(size)
    }

    /// [`get`](Self::get) when the default size's warm list cannot serve.
    fn get_slow(&mut self, size: Option<usize>) -> Result<FiberStack> {
        let size = size.map(round_size).unwrap_or(self.default_size);
        let class = match self.classes.iter().position(|c| c.size == size) {
            Some(i) => &mut self.classes[i],
            None => {
                self.classes.push(SizeClass::new(size));
                self.classes.last_mut().expect("just pushed")
            }
        };
        if class.warm.is_empty() && class.cold.is_empty() {
            class.take_back();
        }
        let stack = match class.warm.pop_back().or_else(|| class.cold.pop()) {
            Some(s) => s,
            None => fresh(class, self.guards, &self.budget)
                .map_err(|e| e.context(format!("allocating a {size}-byte fiber stack")))?,
        };
        self.outstanding += 1;
        Ok(stack)
    }

    /// Returns a stack for reuse.
    #[inline]
    pub(crate) fn put(&mut self, stack: FiberStack) {
        // Most finishes: a default-size stack that needs no trimming.
        let class = &mut self.classes[0];
        if stack.size() == class.size
            && class.warm.len() + 1 < self.max_idle.saturating_add(TRIM_BATCH)
        {
            self.outstanding -= 1;
            class.warm.push_back(stack);
            return;
        }
        self.put_slow(stack);
    }

    /// [`put`](Self::put) of another size, or one past the idle bound.
    fn put_slow(&mut self, stack: FiberStack) {
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
            self.excess = true;
        }
    }

    /// True when some size holds at least a batch of idle stacks past
    /// `max_idle`: [`trim_excess`](Self::trim_excess) has work to do.
    #[inline]
    pub(crate) fn has_excess(&self) -> bool {
        self.excess
    }

    /// Gives the memory of idle stacks past `max_idle` back to the OS, the
    /// coldest first. `idle` says the scheduler has nothing to run: then all
    /// of the excess goes (to the helper thread when there is one: nothing
    /// adds to it meanwhile). While the scheduler is busy, a call trims at
    /// most what the helper may have in flight, or else a few batches here,
    /// and `has_excess` stays true until the rest is done.
    pub(crate) fn trim_excess(&mut self, idle: bool) {
        // Off to the helper only with marker guards: mprotect-guarded slabs
        // are unmapped synchronously (see `Slab::release`).
        let offload = self.guards == GuardChoice::Auto && os::markers_known_good();
        let cap = match (offload, idle) {
            (false, _) => 0,
            (true, true) => usize::MAX,
            (true, false) => self.max_idle.max(4 * TRIM_BATCH),
        };
        let mut more = false;
        for class in &mut self.classes {
            let excess = class.warm.len().saturating_sub(self.max_idle);
            if excess == 0 || (!idle && excess < TRIM_BATCH) {
                continue;
            }
            class.take_back();
            let room = cap.saturating_sub(class.in_flight);
            let n = if idle {
                excess
            } else if room >= TRIM_BATCH {
                excess.min(room)
            } else {
                // The helper is behind (or absent): a few batches here.
                excess.min(4 * TRIM_BATCH)
            };
            trim(class, n, cap);
            more |= class.warm.len() >= self.max_idle.saturating_add(TRIM_BATCH);
        }
        self.excess = more;
    }

    /// Stacks handed out and not given back.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Idle stacks held, warm or not (for tests and diagnostics); those
    /// being discarded by the helper count.
    pub(crate) fn idle_count(&self) -> usize {
        self.classes
            .iter()
            .map(|c| c.warm.len() + c.cold.len() + c.in_flight)
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
            let pending = class.in_flight != 0;
            for slab in class.slabs.into_iter().chain(class.next_slab) {
                // SAFETY: `outstanding` is zero, so every stack handed out
                // from this pool's slabs has come back (those the helper is
                // discarding were sent to it before this, and `pending`
                // makes the unmap queue behind them).
                unsafe { slab.release(&self.budget, pending) };
            }
        }
    }
}

/// A never-used stack from the class's last slab, or from the next one.
fn fresh(class: &mut SizeClass, guards: GuardChoice, budget: &MapBudget) -> Result<SlabStack> {
    class.fresh_taken += 1;
    let demand = class.fresh_taken;
    if class.slabs.last().is_none_or(Slab::is_full) {
        let slab = match class.next_slab.take() {
            Some(s) => s,
            None => map_next(class, budget)?,
        };
        class.slabs.push(slab);
    }
    let slab = class.slabs.last_mut().expect("a slab with a free slot");
    let s = slab
        .take_fresh(guards, budget)?
        .expect("a slab that is not full has a free slot");
    if guards == GuardChoice::Auto && os::markers_known_good() {
        let beyond = slab.ask_ahead(demand);
        if beyond > 0 {
            // The window runs past this slab: map the next one now so the
            // helper need not stop at the boundary. (If the address space
            // is short, it waits until it is needed.)
            if class.next_slab.is_none() {
                class.next_slab = map_next(class, budget).ok();
            }
            if let Some(next) = &mut class.next_slab {
                next.request_to(beyond);
            }
        }
    }
    Ok(s)
}

/// Maps the class's next slab, each one twice the last, up to
/// [`slab::MAX_SLAB_BYTES`].
fn map_next(class: &SizeClass, budget: &MapBudget) -> Result<Slab> {
    let capacity = FIRST_SLAB_STACKS << class.slabs.len().min(20);
    Slab::map(class.size, capacity, budget)
}

/// Gives the memory of the `n` coldest warm stacks back to the OS: on the
/// helper thread while at most `cap` stacks would then be on their way
/// there (which bounds the memory waiting to be given back), else here.
fn trim(class: &mut SizeClass, n: usize, cap: usize) {
    let mut batch: Vec<SlabStack> = class.warm.drain(..n).collect();
    class.take_back();
    if class.in_flight + n <= cap {
        match helper::discard(batch, &class.back) {
            Ok(()) => {
                class.in_flight += n;
                return;
            }
            Err(stacks) => batch = stacks,
        }
    }
    // SAFETY: these stacks are idle (given back by their fibers), so their
    // contents are dead, and they lie in our slabs, which are mapped.
    unsafe { slab::discard_idle(&batch) };
    class.cold.extend(batch);
}

fn round_size(size: usize) -> usize {
    let page = os::page_size();
    let size = size.max(MIN_STACK_SIZE);
    size.checked_add(page - 1)
        .map_or(usize::MAX & !(page - 1), |s| s & !(page - 1))
}
