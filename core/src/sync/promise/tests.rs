//! Real-thread stress tests of the promise block's reference counting and
//! lock bit (no runtime: waits on plain threads block the thread).

use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

/// A value that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `a` and `b` on two threads released at the same moment.
fn race(a: impl FnOnce() + Send + 'static, b: impl FnOnce() + Send + 'static) {
    let go = Arc::new(Barrier::new(2));
    let go2 = go.clone();
    let t = thread::spawn(move || {
        go2.wait();
        a();
    });
    go.wait();
    b();
    t.join().unwrap();
}

const ROUNDS: usize = 5_000;

#[test]
fn the_last_resolver_and_the_last_promise_dropped_together_free_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    for i in 0..ROUNDS {
        let (p, r) = Promise::new();
        if i % 2 == 0 {
            // Resolved: the resolver's drop takes the one-step path.
            r.resolve(Counted(drops.clone())).ok().unwrap();
        }
        // Unresolved (odd rounds): the resolver's drop abandons the promise
        // while the promise handle may be freeing the block.
        race(move || drop(r), move || drop(p));
    }
    // A leaked block would keep its value; a double free would drop twice.
    assert_eq!(drops.load(Ordering::Relaxed), ROUNDS / 2);
}

#[test]
fn resolver_clones_dropped_together_abandon_exactly_once() {
    for _ in 0..ROUNDS / 5 {
        let (p, r1) = Promise::<u32>::new();
        let r2 = r1.clone();
        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn(move || tx.send(p.wait().copied()).unwrap());
        race(move || drop(r1), move || drop(r2));
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the waiter was never told the promise was abandoned");
        assert_eq!(*got.unwrap_err().kind(), ErrorKind::Closed);
        waiter.join().unwrap();
    }
}

#[test]
fn a_resolve_racing_a_thread_that_starts_waiting_always_wakes_it() {
    for i in 0..ROUNDS / 5 {
        let (p, r) = Promise::new();
        let p2 = p.clone();
        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn(move || tx.send(*p2.wait().unwrap()).unwrap());
        race(move || r.resolve(i).unwrap(), move || drop(p));
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a waiter missed the resolve");
        assert_eq!(got, i);
        waiter.join().unwrap();
    }
}

#[test]
fn racing_resolvers_one_wins_and_the_others_get_their_value_back() {
    for _ in 0..ROUNDS / 5 {
        let (p, r) = Promise::<usize>::new();
        let go = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|k| {
                let (r, go) = (r.clone(), go.clone());
                thread::spawn(move || {
                    go.wait();
                    match r.resolve(k) {
                        Ok(()) => Some(k),
                        Err(AlreadyResolved(v)) => {
                            assert_eq!(v, k);
                            None
                        }
                    }
                })
            })
            .collect();
        drop(r);
        let winners: Vec<usize> = threads
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(winners.len(), 1);
        assert_eq!(p.peek(), Some(&winners[0]));
        assert_eq!(*p.wait().unwrap(), winners[0]);
    }
}

#[test]
fn many_clones_on_many_threads_drop_the_value_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    for _ in 0..ROUNDS / 50 {
        let (p, r) = Promise::new();
        let go = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|k| {
                let (p, r, go) = (p.clone(), r.clone(), go.clone());
                let drops = drops.clone();
                thread::spawn(move || {
                    go.wait();
                    if k == 0 {
                        r.resolve(Counted(drops)).ok().unwrap();
                    } else {
                        drop(r);
                    }
                    assert!(p.wait().is_ok());
                })
            })
            .collect();
        drop((p, r));
        for t in threads {
            t.join().unwrap();
        }
    }
    assert_eq!(drops.load(Ordering::Relaxed), ROUNDS / 50);
}

#[test]
fn an_already_resolved_promise_frees_its_value_with_its_last_clone() {
    let drops = Arc::new(AtomicUsize::new(0));
    let p = Promise::resolved(Counted(drops.clone()));
    let q = p.clone();
    assert!(p.is_resolved());
    drop(p);
    assert_eq!(drops.load(Ordering::Relaxed), 0);
    drop(q);
    assert_eq!(drops.load(Ordering::Relaxed), 1);
}

#[test]
fn a_freed_block_is_reused_by_the_next_promise_of_its_size() {
    let (p, r) = Promise::<u64>::new();
    let first = p.inner.as_ptr() as usize;
    drop((p, r));
    // Same size class, different value type: the cached block comes back.
    let (q, s) = Promise::<[u32; 2]>::new();
    assert_eq!(q.inner.as_ptr() as usize, first);
    drop((q, s));
}

#[test]
fn the_block_cache_keeps_a_bounded_number_of_blocks() {
    let layout = Layout::new::<Inner<u64>>();
    let blocks: Vec<_> = (0..100).map(|_| cache::alloc_block(layout)).collect();
    for &b in &blocks {
        // SAFETY: fresh blocks from `alloc_block` with this layout, unused.
        unsafe { cache::free_block(b, layout) };
    }
    // The list filled up with the first PER_CLASS blocks freed (they come
    // back newest first); the allocator got the rest.
    let n = cache::PER_CLASS as usize;
    let again: Vec<_> = (0..n).map(|_| cache::alloc_block(layout)).collect();
    let kept: Vec<_> = blocks[..n].iter().rev().copied().collect();
    assert_eq!(again, kept);
    for b in again {
        // SAFETY: as above.
        unsafe { cache::free_block(b, layout) };
    }
}

#[test]
fn blocks_freed_on_other_threads_and_odd_layouts_work() {
    #[derive(Debug, PartialEq)]
    #[repr(align(64))]
    struct OverAligned(u8);
    for _ in 0..200 {
        let (p, r) = Promise::new();
        let (big, big_r) = Promise::new();
        let (odd, odd_r) = Promise::new();
        // Allocated here, resolved, waited for and freed on other threads
        // (whose caches take the blocks and free them when they exit).
        let t = thread::spawn(move || {
            r.resolve(7u8).unwrap();
            big_r.resolve([9u64; 64]).unwrap();
            odd_r.resolve(OverAligned(3)).unwrap();
        });
        let u = thread::spawn(move || {
            assert_eq!(*p.wait().unwrap(), 7);
            assert_eq!(big.wait().unwrap()[63], 9);
            assert_eq!(*odd.wait().unwrap(), OverAligned(3));
            assert_eq!(odd.inner.as_ptr() as usize % 64, 0);
        });
        t.join().unwrap();
        u.join().unwrap();
    }
}
