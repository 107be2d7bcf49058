//! A small per-thread cache of freed promise blocks.
//!
//! A promise round trip allocates one block and frees it; on glibc that is
//! about 140 instructions of `malloc` + `free` out of ~1,500 for a whole
//! fork + wait + resolve + switch (callgrind), against ~20 for popping and
//! pushing a thread-local list. Blocks are grouped by size class (16-byte
//! steps up to 256 bytes), so promises of different value types share
//! lists, and each list keeps at most [`PER_CLASS`] blocks: at worst a few
//! KiB per thread. Blocks come from and go back to the global allocator with
//! their class's layout, so a block allocated on one thread may be cached
//! and reused on another. Larger or over-aligned blocks bypass the cache.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::Cell;
use std::ptr::{self, NonNull};

const STEP: usize = 16;
const CLASSES: usize = 16;
/// Blocks kept per size class.
pub(super) const PER_CLASS: u8 = 16;

/// A cached block's first word links it to the next.
struct Free {
    next: *mut Free,
}

struct Lists {
    heads: [Cell<*mut Free>; CLASSES],
    lens: [Cell<u8>; CLASSES],
}

impl Drop for Lists {
    fn drop(&mut self) {
        for class in 0..CLASSES {
            let mut p = self.heads[class].replace(ptr::null_mut());
            while !p.is_null() {
                // SAFETY: every block on the list is a live, unused
                // allocation of this class's layout, linked through its
                // first word by `free`; the list owns it.
                let next = unsafe { (*p).next };
                // SAFETY: as above: allocated with `class_layout(class)`.
                unsafe { dealloc(p.cast(), class_layout(class)) };
                p = next;
            }
        }
    }
}

thread_local! {
    static LISTS: Lists = const {
        Lists {
            heads: [const { Cell::new(ptr::null_mut()) }; CLASSES],
            lens: [const { Cell::new(0) }; CLASSES],
        }
    };
}

/// The size class of `layout`, if it is cached.
#[inline]
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > STEP || layout.size() > STEP * CLASSES || layout.size() == 0 {
        return None;
    }
    Some((layout.size() - 1) / STEP)
}

#[inline]
fn class_layout(class: usize) -> Layout {
    // SAFETY: the size is a non-zero multiple of 16 below 4 KiB and the
    // alignment a power of two.
    unsafe { Layout::from_size_align_unchecked((class + 1) * STEP, STEP) }
}

/// Allocates a block for `layout` (non-zero size).
#[inline]
pub(super) fn alloc_block(layout: Layout) -> NonNull<u8> {
    let Some(class) = class_of(layout) else {
        return raw_alloc(layout);
    };
    let cached = LISTS
        .try_with(|l| {
            let head = l.heads[class].get();
            if head.is_null() {
                return head;
            }
            // SAFETY: a non-null head is a cached block (see `Lists::drop`).
            l.heads[class].set(unsafe { (*head).next });
            l.lens[class].set(l.lens[class].get() - 1);
            head
        })
        .unwrap_or(ptr::null_mut());
    match NonNull::new(cached) {
        Some(p) => p.cast(),
        None => raw_alloc(class_layout(class)),
    }
}

fn raw_alloc(layout: Layout) -> NonNull<u8> {
    // SAFETY: callers pass layouts of non-zero size.
    let p = unsafe { alloc(layout) };
    NonNull::new(p).unwrap_or_else(|| handle_alloc_error(layout))
}

/// Frees a block that `alloc_block(layout)` returned.
///
/// # Safety
/// `p` came from `alloc_block` with this `layout`, is no longer used, and
/// its contents have been dropped.
#[inline]
pub(super) unsafe fn free_block(p: NonNull<u8>, layout: Layout) {
    let Some(class) = class_of(layout) else {
        // SAFETY: uncached blocks come straight from `alloc(layout)`.
        unsafe { dealloc(p.as_ptr(), layout) };
        return;
    };
    let kept = LISTS
        .try_with(|l| {
            let len = l.lens[class].get();
            if len >= PER_CLASS {
                return false;
            }
            let f = p.as_ptr().cast::<Free>();
            // SAFETY: the block is at least 16 bytes and 16-aligned (its
            // class's layout) and unused, so its first word can hold the
            // link.
            unsafe {
                f.write(Free {
                    next: l.heads[class].get(),
                })
            };
            l.heads[class].set(f);
            l.lens[class].set(len + 1);
            true
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: cached-class blocks are allocated with their class layout.
        unsafe { dealloc(p.as_ptr(), class_layout(class)) };
    }
}
