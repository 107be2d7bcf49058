//! The scheduler's run queue: a growable ring of runnable fibers.
//!
//! Every fiber switch pushes one entry and pops one, so this is on the
//! hottest path there is. A power-of-two ring indexed by masking, with its
//! state in `Cell`s, costs a handful of instructions per operation, where a
//! `RefCell<VecDeque>` adds a borrow flag round trip and a wrap-around
//! comparison to each.

use std::cell::{Cell, UnsafeCell};

/// A FIFO ring of `T` (the scheduler queues fiber control block pointers).
pub(crate) struct RunQueue<T: Copy> {
    /// The ring; its length is a power of two.
    slots: UnsafeCell<Box<[T]>>,
    head: Cell<usize>,
    len: Cell<usize>,
    /// What fills unused slots.
    filler: T,
}

impl<T: Copy> RunQueue<T> {
    pub(crate) fn with_capacity(cap: usize, filler: T) -> RunQueue<T> {
        let cap = cap.max(1).next_power_of_two();
        RunQueue {
            filler,
            slots: UnsafeCell::new(vec![filler; cap].into_boxed_slice()),
            head: Cell::new(0),
            len: Cell::new(0),
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len.get() == 0
    }

    #[inline]
    pub(crate) fn push_back(&self, key: T) {
        if self.len.get() == self.slots_mut().len() {
            self.grow();
        }
        let slots = self.slots_mut();
        let i = (self.head.get() + self.len.get()) & (slots.len() - 1);
        // SAFETY: the length is a power of two, so masking with length - 1
        // yields an index below it.
        unsafe { *slots.get_unchecked_mut(i) = key };
        self.len.set(self.len.get() + 1);
    }

    #[inline]
    pub(crate) fn push_front(&self, key: T) {
        if self.len.get() == self.slots_mut().len() {
            self.grow();
        }
        let slots = self.slots_mut();
        let head = self.head.get().wrapping_sub(1) & (slots.len() - 1);
        // SAFETY: masked by a power-of-two length minus one, as above.
        unsafe { *slots.get_unchecked_mut(head) = key };
        self.head.set(head);
        self.len.set(self.len.get() + 1);
    }

    #[inline]
    pub(crate) fn pop_front(&self) -> Option<T> {
        if self.len.get() == 0 {
            return None;
        }
        let slots = self.slots_mut();
        let head = self.head.get();
        // SAFETY: `head` is always stored masked by the power-of-two length
        // minus one (here, in `push_front`, and reset to 0 by `grow`).
        let key = unsafe { *slots.get_unchecked(head) };
        self.head.set((head + 1) & (slots.len() - 1));
        self.len.set(self.len.get() - 1);
        Some(key)
    }

    /// Doubles the ring, unwrapping its contents to the front.
    #[cold]
    fn grow(&self) {
        let slots = self.slots_mut();
        let old_cap = slots.len();
        let mut bigger = vec![self.filler; old_cap * 2].into_boxed_slice();
        for (i, slot) in bigger.iter_mut().take(self.len.get()).enumerate() {
            *slot = slots[(self.head.get() + i) & (old_cap - 1)];
        }
        *slots = bigger;
        self.head.set(0);
    }

    #[inline]
    #[allow(clippy::mut_from_ref)]
    fn slots_mut(&self) -> &mut Box<[T]> {
        // SAFETY: `RunQueue` is not `Sync` (it holds an `UnsafeCell`), so
        // only this thread reaches it; every method uses the reference it
        // gets here without calling anything that could re-enter the queue,
        // and never returns it, so no two such references are ever alive.
        unsafe { &mut *self.slots.get() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> u64 {
        (1 << 32) | n
    }

    #[test]
    fn fifo_across_growth_and_wrap() {
        let q = RunQueue::with_capacity(2, 0u64);
        let mut expect = std::collections::VecDeque::new();
        let mut next = 0;
        for round in 0..50 {
            for _ in 0..(round % 7) + 1 {
                q.push_back(key(next));
                expect.push_back(next);
                next += 1;
            }
            if round % 3 == 0 {
                q.push_front(key(next));
                expect.push_front(next);
                next += 1;
            }
            for _ in 0..(round % 5) {
                let got = q.pop_front().map(|k| k & 0xffff_ffff);
                assert_eq!(got, expect.pop_front());
            }
            assert_eq!(q.len(), expect.len());
        }
        while let Some(k) = q.pop_front() {
            assert_eq!(Some(k & 0xffff_ffff), expect.pop_front());
        }
        assert!(q.is_empty() && expect.is_empty());
    }
}
