//! Fiber stacks: guarded, pooled and reused.
//!
//! A fresh `mmap` + `mprotect` stack costs microseconds; a pooled one costs
//! nanoseconds. Every stack has a guard page below it, so an overflow faults
//! instead of corrupting a neighbour. Finished fibers return their stacks
//! here; past `max_idle` idle stacks per size, stacks are unmapped.

use corosensei::stack::DefaultStack;

use crate::error::{Error, ErrorKind, Result};

/// The stack size used when neither the fiber nor the run asks for another.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Smallest stack a fiber may ask for.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// A guarded fiber stack.
pub(crate) type FiberStack = DefaultStack;

/// Per-scheduler pool of idle stacks, by size.
pub(crate) struct StackPool {
    default_size: usize,
    max_idle: usize,
    /// `(size, idle stacks)`; a handful of sizes at most.
    idle: Vec<(usize, Vec<FiberStack>)>,
}

impl StackPool {
    pub(crate) fn new(default_size: usize, max_idle: usize) -> Self {
        StackPool {
            default_size: round_size(default_size),
            max_idle,
            idle: Vec::new(),
        }
    }

    pub(crate) fn default_size(&self) -> usize {
        self.default_size
    }

    /// Takes an idle stack of `size` (or the default), or maps a new one.
    pub(crate) fn get(&mut self, size: Option<usize>) -> Result<FiberStack> {
        let size = size.map(round_size).unwrap_or(self.default_size);
        if let Some((_, list)) = self.idle.iter_mut().find(|(s, _)| *s == size) {
            if let Some(stack) = list.pop() {
                return Ok(stack);
            }
        }
        DefaultStack::new(size).map_err(|e| {
            Error::with_source(ErrorKind::Io, e)
                .context(format!("allocating a {size}-byte fiber stack"))
        })
    }

    /// Returns a stack for reuse.
    pub(crate) fn put(&mut self, stack: FiberStack) {
        let size = stack_size(&stack);
        match self.idle.iter_mut().find(|(s, _)| *s == size) {
            Some((_, list)) if list.len() < self.max_idle => list.push(stack),
            Some(_) => drop(stack),
            None => self.idle.push((size, vec![stack])),
        }
    }

    /// Number of idle stacks held (for tests and diagnostics).
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.iter().map(|(_, l)| l.len()).sum()
    }
}

fn round_size(size: usize) -> usize {
    let size = size.max(MIN_STACK_SIZE);
    (size + 4095) & !4095
}

/// Usable size of a stack (without its guard page).
fn stack_size(stack: &FiberStack) -> usize {
    use corosensei::stack::Stack;
    // DefaultStack's limit includes the guard page.
    stack.base().get() - stack.limit().get() - 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_stacks() {
        let mut pool = StackPool::new(64 * 1024, 8);
        let s = pool.get(None).unwrap();
        let base = {
            use corosensei::stack::Stack;
            s.base()
        };
        pool.put(s);
        assert_eq!(pool.idle_count(), 1);
        let s2 = pool.get(None).unwrap();
        use corosensei::stack::Stack;
        assert_eq!(s2.base(), base, "the idle stack is handed out again");
        assert_eq!(pool.idle_count(), 0);
    }

    #[test]
    fn sizes_are_separate_and_bounded() {
        let mut pool = StackPool::new(64 * 1024, 2);
        let a: Vec<_> = (0..3).map(|_| pool.get(Some(32 * 1024)).unwrap()).collect();
        for s in a {
            pool.put(s);
        }
        assert_eq!(
            pool.idle_count(),
            2,
            "idle stacks past max_idle are unmapped"
        );
        let d = pool.get(None).unwrap();
        assert_eq!(stack_size(&d), 64 * 1024);
    }
}
