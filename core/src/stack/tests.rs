//! Unit tests of the stack layer: slab layout, both kinds of guard pages,
//! the mapping budget, reuse and trimming. Faults are provoked only in child
//! processes (this test binary re-run with `WEFT_STACK_TEST_CHILD` set);
//! in-process, a guard page is recognised by the kernel refusing to read it
//! (`write(2)` from it into a pipe fails with `EFAULT`).

use std::process::Command;
use std::sync::Arc;

use corosensei::stack::Stack;

use super::os::{self, GuardChoice, MapBudget};
use super::overflow;
use super::*;

const KIB: usize = 1024;

/// A pool with its own unlimited budget, so tests can read its use.
fn pool(size: usize, max_idle: usize, guards: GuardChoice) -> (StackPool, Arc<MapBudget>) {
    let budget = Arc::new(MapBudget::new(Some(65530), usize::MAX / 4));
    let p = StackPool::with_guards(size, max_idle, guards, budget.clone());
    (p, budget)
}

/// Whether the kernel can read the byte at `addr` (false for guard pages).
fn readable(addr: usize) -> bool {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the kernel checks the source address itself: an inaccessible
    // one fails with EFAULT instead of faulting us.
    let r = unsafe { libc::write(fds[1], addr as *const libc::c_void, 1) };
    // SAFETY: closing the descriptors we just opened.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    r == 1
}

/// Lines of `/proc/self/maps` that overlap `[from, to)`.
fn mappings_in(from: usize, to: usize) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            let a = usize::from_str_radix(a, 16).unwrap();
            let b = usize::from_str_radix(b, 16).unwrap();
            a < to && b > from
        })
        .count()
}

fn markers_available() -> bool {
    // Any earlier install decided it; make sure one has been tried.
    let (mut p, _) = pool(64 * KIB, 8, GuardChoice::Auto);
    let s = p.get(None).unwrap();
    p.put(s);
    os::markers_supported()
}

#[test]
fn slab_layout() {
    let page = os::page_size();
    let (mut p, _) = pool(64 * KIB, 8, GuardChoice::Auto);
    let stacks: Vec<_> = (0..3).map(|_| p.get(None).unwrap()).collect();
    for w in stacks.windows(2) {
        assert_eq!(
            w[1].guard().0,
            w[0].top(),
            "slots are adjacent, guard first"
        );
    }
    for s in &stacks {
        assert_eq!(s.size(), 64 * KIB);
        assert_eq!(s.top() - s.guard().0, 64 * KIB + page);
        assert_eq!(s.top() % page, 0);
        assert_eq!(s.base().get(), s.top() - slab::TOP_RESERVE, "the reserve");
        assert_eq!(s.base().get() % corosensei::stack::STACK_ALIGNMENT, 0);
        assert_eq!(s.limit().get(), s.guard().0, "limit includes the guard");
        assert_eq!(s.limit().get() % corosensei::stack::STACK_ALIGNMENT, 0);
        assert_eq!(overflow::guard_page_at(s.guard().0 + 17), Some(s.guard().0));
        assert_eq!(overflow::guard_page_at(s.bottom()), None);
        assert_eq!(overflow::guard_page_at(s.top() - 1), None);
    }
    let (from, to) = p.classes[0].slabs[0].range();
    assert_eq!(p.classes[0].slabs[0].capacity(), FIRST_SLAB_STACKS);
    assert_eq!(p.classes[0].slabs[0].stack_size(), 64 * KIB);
    assert!(stacks.iter().all(|s| s.guard().0 >= from && s.top() <= to));
    for s in stacks {
        p.put(s);
    }
}

#[test]
fn slabs_grow_and_sizes_are_separate() {
    let (mut p, budget) = pool(64 * KIB, 1000, GuardChoice::Auto);
    let a: Vec<_> = (0..FIRST_SLAB_STACKS + 1)
        .map(|_| p.get(None).unwrap())
        .collect();
    let b = p.get(Some(20 * KIB)).unwrap();
    assert_eq!(b.size(), 20 * KIB, "sizes round up to pages");
    assert_eq!(p.classes.len(), 2);
    assert_eq!(p.classes[0].slabs.len(), 2);
    assert_eq!(p.classes[0].slabs[1].capacity(), 2 * FIRST_SLAB_STACKS);
    for s in a {
        p.put(s);
    }
    p.put(b);
    assert_eq!(p.idle_count(), FIRST_SLAB_STACKS + 2);
    drop(p);
    helper::wait_idle(); // the helper unmaps them
    assert_eq!(budget.used(), 0, "every slab was unmapped");
}

#[test]
fn guard_pages_are_inaccessible_in_both_modes() {
    for guards in [GuardChoice::Auto, GuardChoice::Mprotect] {
        let (mut p, _) = pool(32 * KIB, 8, guards);
        let s = p.get(None).unwrap();
        assert!(!readable(s.guard().0), "{guards:?}: guard start");
        assert!(!readable(s.guard().1 - 1), "{guards:?}: guard end");
        assert!(readable(s.bottom()), "{guards:?}: stack bottom");
        assert!(readable(s.top() - 1), "{guards:?}: stack top");
        p.put(s);
    }
}

#[test]
fn marker_guards_keep_one_mapping_mprotect_guards_split_it() {
    if !markers_available() {
        eprintln!("skipped half: this kernel lacks MADV_GUARD_INSTALL");
    } else {
        let (mut p, budget) = pool(32 * KIB, 100, GuardChoice::Auto);
        let stacks: Vec<_> = (0..FIRST_SLAB_STACKS)
            .map(|_| p.get(None).unwrap())
            .collect();
        let (from, to) = p.classes[0].slabs[0].range();
        assert_eq!(mappings_in(from, to), 1, "marker guards cost no mapping");
        assert_eq!(budget.used(), 1, "one slab, one mapping");
        stacks.into_iter().for_each(|s| p.put(s));
    }
    let (mut p, budget) = pool(32 * KIB, 100, GuardChoice::Mprotect);
    let stacks: Vec<_> = (0..4).map(|_| p.get(None).unwrap()).collect();
    let (from, to) = p.classes[0].slabs[0].range();
    // guard, stack, guard, stack, guard, stack, guard, stack + untouched rest
    assert_eq!(mappings_in(from, to), 8);
    assert_eq!(
        budget.used(),
        1 + 2 * 4,
        "the budget over-counts, never under"
    );
    stacks.into_iter().for_each(|s| p.put(s));
    drop(p);
    assert_eq!(budget.used(), 0);
}

#[test]
fn exhausted_budget_is_a_clear_error() {
    // One slab plus three mprotect guards fit in seven mappings.
    let budget = Arc::new(MapBudget::new(Some(65530), 7));
    let mut p = StackPool::with_guards(32 * KIB, 8, GuardChoice::Mprotect, budget.clone());
    let ok: Vec<_> = (0..3).map(|_| p.get(None).unwrap()).collect();
    let err = p.get(None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("vm.max_map_count = 65530"), "{msg}");
    assert!(msg.contains("sysctl -w vm.max_map_count="), "{msg}");
    assert!(msg.contains("fiber stack"), "{msg}");
    assert_eq!(err.raw_os_error(), Some(libc::ENOMEM));
    // Stacks given back are reused without new mappings.
    ok.into_iter().for_each(|s| p.put(s));
    let again: Vec<_> = (0..3).map(|_| p.get(None).unwrap()).collect();
    assert!(p.get(None).is_err());
    again.into_iter().for_each(|s| p.put(s));
    drop(p);
    assert_eq!(budget.used(), 0);
}

#[test]
fn stacks_are_reused_lifo() {
    let (mut p, _) = pool(64 * KIB, 8, GuardChoice::Auto);
    let a = p.get(None).unwrap();
    let b = p.get(None).unwrap();
    let (ta, tb) = (a.top(), b.top());
    p.put(a);
    p.put(b);
    assert_eq!(p.idle_count(), 2);
    assert_eq!(p.get(None).unwrap().top(), tb, "the warmest stack first");
    assert_eq!(p.get(None).unwrap().top(), ta);
    assert_eq!(p.idle_count(), 0);
    // (dropping a pool with stacks out leaks its slabs: see below)
}

/// The address ranges of the slabs of the pool's first size class (the
/// next slab included).
fn slab_ranges(p: &StackPool) -> Vec<(usize, usize)> {
    let c = &p.classes[0];
    c.slabs
        .iter()
        .chain(&c.next_slab)
        .map(|s| s.range())
        .collect()
}

/// Whether this process has a helper thread (tests can switch it off).
fn helper_enabled() -> bool {
    std::env::var_os("WEFT_STACK_PREPARE").is_none_or(|v| v != "off")
}

/// The word just below a stack's base: the first its fiber would write.
fn first_word(s: &SlabStack) -> *mut u64 {
    (s.base().get() - 8) as *mut u64
}

#[test]
fn idle_stacks_past_the_bound_are_discarded_and_keep_their_guards() {
    for guards in [GuardChoice::Auto, GuardChoice::Mprotect] {
        let max_idle = 4;
        let (mut p, _) = pool(16 * KIB, max_idle, guards);
        let n = max_idle + TRIM_BATCH;
        let stacks: Vec<_> = (0..n).map(|_| p.get(None).unwrap()).collect();
        let tops: Vec<usize> = stacks.iter().map(|s| s.top()).collect();
        for s in &stacks {
            // SAFETY: the stack is ours (handed out, not running).
            unsafe { first_word(s).write(0xfeed) };
        }
        for s in stacks {
            p.put(s);
        }
        // Nothing is trimmed until the scheduler asks.
        assert!(p.has_excess(), "{guards:?}");
        assert_eq!(p.classes[0].warm.len(), n, "{guards:?}");
        p.trim_excess(false);
        assert!(!p.has_excess(), "{guards:?}");
        assert_eq!(p.idle_count(), n);
        assert_eq!(p.classes[0].warm.len(), max_idle, "{guards:?}");
        let offloaded = guards == GuardChoice::Auto && os::markers_known_good() && helper_enabled();
        if offloaded {
            // Marker-guarded stacks are discarded by the helper.
            assert_eq!(p.classes[0].in_flight, n - max_idle);
            assert!(p.classes[0].cold.is_empty());
            helper::wait_idle();
            p.classes[0].take_back();
            assert_eq!(p.classes[0].in_flight, 0);
        }
        assert_eq!(p.classes[0].cold.len(), n - max_idle, "{guards:?}");
        let warm: Vec<usize> = p.classes[0].warm.iter().map(|s| s.top()).collect();
        assert_eq!(warm, tops[n - max_idle..], "the most recent stay warm");
        for s in &p.classes[0].cold {
            // SAFETY: idle stack of ours; DONTNEED made it read as zeros.
            let v = unsafe { first_word(s).read() };
            assert_eq!(v, 0, "{guards:?}: memory went back to the OS");
            assert!(
                !readable(s.guard().0),
                "{guards:?}: guard survives DONTNEED"
            );
        }
        for s in &p.classes[0].warm {
            // SAFETY: idle stack of ours, not discarded.
            let v = unsafe { first_word(s).read() };
            assert_eq!(v, 0xfeed, "{guards:?}: warm stacks keep their pages");
        }
        // Warm ones are handed out first, then the cold ones.
        let again: Vec<_> = (0..n).map(|_| p.get(None).unwrap()).collect();
        assert_eq!(again[0].top(), tops[n - 1]);
        assert!(again.iter().all(|s| !readable(s.guard().0)));
        again.into_iter().for_each(|s| p.put(s));
    }
}

#[test]
fn stacks_being_discarded_are_not_handed_out_until_they_are_back() {
    if !markers_available() || !helper_enabled() {
        return;
    }
    let max_idle = 4;
    let (mut p, _) = pool(16 * KIB, max_idle, GuardChoice::Auto);
    let n = max_idle + TRIM_BATCH;
    let stacks: Vec<_> = (0..n).map(|_| p.get(None).unwrap()).collect();
    let tops: Vec<usize> = stacks.iter().map(|s| s.top()).collect();
    let held = helper::HOLD.lock().unwrap_or_else(|e| e.into_inner());
    for s in stacks {
        p.put(s);
    }
    p.trim_excess(false); // the 64 coldest go to the (held) helper
    assert_eq!(p.classes[0].in_flight, TRIM_BATCH);
    // While their discard waits, spawning takes the warm stacks, then
    // fresh slots, never one that is about to be zapped.
    let busy: Vec<_> = (0..n).map(|_| p.get(None).unwrap()).collect();
    for s in &busy {
        assert!(
            !tops[..TRIM_BATCH].contains(&s.top()),
            "a stack was handed out while its memory was being discarded"
        );
        // SAFETY: the stack is ours (handed out, not running).
        unsafe { first_word(s).write(0xbeef) };
    }
    drop(held);
    helper::wait_idle();
    for s in &busy {
        // SAFETY: as above.
        let v = unsafe { first_word(s).read() };
        assert_eq!(v, 0xbeef, "no discard hit a stack in use");
    }
    busy.into_iter().for_each(|s| p.put(s));
    // The discarded ones come back cold, guarded, and are handed out again.
    let again: Vec<_> = (0..3 * n).map(|_| p.get(None).unwrap()).collect();
    let back: Vec<_> = again
        .iter()
        .filter(|s| tops[..TRIM_BATCH].contains(&s.top()))
        .collect();
    assert_eq!(back.len(), TRIM_BATCH, "every discarded stack is reused");
    for s in back {
        assert!(!readable(s.guard().0), "still guarded");
        // SAFETY: as above.
        let v = unsafe { first_word(s).read() };
        assert_eq!(v, 0, "its memory was discarded");
    }
    again.into_iter().for_each(|s| p.put(s));
}

#[test]
fn a_pool_dropped_with_discards_queued_is_unmapped_after_them() {
    if !markers_available() || !helper_enabled() {
        return;
    }
    let (mut p, budget) = pool(16 * KIB, 4, GuardChoice::Auto);
    let stacks: Vec<_> = (0..200).map(|_| p.get(None).unwrap()).collect();
    let ranges = slab_ranges(&p);
    let held = helper::HOLD.lock().unwrap_or_else(|e| e.into_inner());
    for s in stacks {
        p.put(s);
    }
    p.trim_excess(false);
    assert!(p.classes[0].in_flight > 0);
    drop(p);
    // The unmaps wait behind the discards: every slab is still mapped.
    for &(from, to) in &ranges {
        assert_eq!(
            mappings_in(from, to),
            1,
            "a slab was unmapped under a discard"
        );
    }
    assert_eq!(budget.used(), ranges.len());
    drop(held);
    helper::wait_idle();
    assert_eq!(budget.used(), 0, "the helper unmapped every slab");
}

/// A busy scheduler's trim goes in steps the helper can take (or a few
/// batches at a time when it is behind), so one call never stalls on a
/// huge excess; an idle one hands over all of it, below a batch too.
#[test]
fn busy_trims_go_in_steps_and_an_idle_trim_takes_the_rest() {
    if !markers_available() || !helper_enabled() {
        return;
    }
    let max_idle = 4;
    let step = 4 * TRIM_BATCH; // the helper's cap, as max_idle is smaller
    let n = max_idle + 2 * step + 10;
    let (mut p, _) = pool(16 * KIB, max_idle, GuardChoice::Auto);
    let stacks: Vec<_> = (0..n).map(|_| p.get(None).unwrap()).collect();
    let held = helper::HOLD.lock().unwrap_or_else(|e| e.into_inner());
    stacks.into_iter().for_each(|s| p.put(s));
    let class = |p: &StackPool| (p.classes[0].warm.len(), p.classes[0].in_flight);
    p.trim_excess(false);
    assert_eq!(class(&p), (n - step, step), "first step to the helper");
    assert!(p.has_excess());
    // The helper is held, so its share is full: a few batches here.
    p.trim_excess(false);
    assert_eq!(class(&p), (n - 2 * step, step));
    assert_eq!(p.classes[0].cold.len(), step, "discarded here");
    // 10 left past the bound: less than a batch, so a busy trim is done.
    assert!(!p.has_excess());
    p.trim_excess(false);
    assert_eq!(class(&p).0, max_idle + 10);
    // An idle trim takes them too.
    p.trim_excess(true);
    assert_eq!(class(&p), (max_idle, step + 10));
    drop(held);
    helper::wait_idle();
    p.classes[0].take_back();
    assert_eq!(p.classes[0].cold.len(), n - max_idle);
    assert_eq!(p.idle_count(), n);
}

#[test]
fn many_ranges_are_discarded_in_one_go_and_nothing_else() {
    let page = os::page_size();
    let len = 40 * page;
    let start = os::map_anon(len).unwrap();
    for i in 0..40 {
        // SAFETY: inside our fresh mapping.
        unsafe { ((start + i * page) as *mut u8).write(7) };
    }
    // Pages 1, 5-7, 20 and 30-38: four ranges, one call where possible.
    let ranges = [(1, 1), (5, 3), (20, 1), (30, 9)];
    let bytes: Vec<(usize, usize)> = ranges
        .iter()
        .map(|&(p0, n)| (start + p0 * page, n * page))
        .collect();
    // SAFETY: the ranges are in our mapping and we no longer need them.
    unsafe { os::discard_ranges(&bytes).unwrap() };
    for i in 0..40 {
        let dropped = ranges.iter().any(|&(p0, n)| (p0..p0 + n).contains(&i));
        // SAFETY: inside our mapping.
        let v = unsafe { ((start + i * page) as *const u8).read() };
        assert_eq!(v, if dropped { 0 } else { 7 }, "page {i}");
    }
    // SAFETY: ours, and nothing refers into it.
    unsafe { os::unmap(start, len).unwrap() };
}

#[test]
fn discards_of_two_pools_done_together_go_back_to_their_own_pools() {
    if !markers_available() || !helper_enabled() {
        return;
    }
    let max_idle = 4;
    let n = max_idle + TRIM_BATCH;
    let (mut a, _) = pool(16 * KIB, max_idle, GuardChoice::Auto);
    let (mut b, _) = pool(16 * KIB, max_idle, GuardChoice::Auto);
    let sa: Vec<_> = (0..n).map(|_| a.get(None).unwrap()).collect();
    let sb: Vec<_> = (0..n).map(|_| b.get(None).unwrap()).collect();
    let tops_a: Vec<usize> = sa.iter().map(|s| s.top()).collect();
    let tops_b: Vec<usize> = sb.iter().map(|s| s.top()).collect();
    for s in sa.iter().chain(&sb) {
        // SAFETY: the stack is ours (handed out, not running).
        unsafe { first_word(s).write(0xfeed) };
    }
    // Held, so that both discards wait in the queue and are merged.
    let held = helper::HOLD.lock().unwrap_or_else(|e| e.into_inner());
    sa.into_iter().for_each(|s| a.put(s));
    sb.into_iter().for_each(|s| b.put(s));
    a.trim_excess(false);
    b.trim_excess(false);
    drop(held);
    helper::wait_idle();
    for (p, tops) in [(&mut a, &tops_a), (&mut b, &tops_b)] {
        p.classes[0].take_back();
        assert_eq!(p.classes[0].in_flight, 0);
        let mut cold: Vec<usize> = p.classes[0].cold.iter().map(|s| s.top()).collect();
        cold.sort_unstable();
        let mut want = tops[..TRIM_BATCH].to_vec();
        want.sort_unstable();
        assert_eq!(cold, want, "each pool gets its own stacks back");
        for s in &p.classes[0].cold {
            // SAFETY: idle stack of ours, discarded.
            assert_eq!(unsafe { first_word(s).read() }, 0);
        }
    }
}

#[test]
fn guard_markers_install_in_batches() {
    if !markers_available() {
        return;
    }
    let page = os::page_size();
    let len = 80 * page;
    let start = os::map_anon(len).unwrap();
    // Every other page of 80: three calls of 32, 32 and 16 ranges... of 40.
    let pages: Vec<usize> = (0..40).map(|i| start + 2 * i * page).collect();
    // SAFETY: the pages are in our fresh mapping, which holds nothing.
    unsafe { os::install_guard_markers(&pages).unwrap() };
    for i in 0..80 {
        assert_eq!(readable(start + i * page), i % 2 == 1, "page {i}");
    }
    // SAFETY: ours, and nothing refers into it.
    unsafe { os::unmap(start, len).unwrap() };
}

#[test]
fn a_pool_dropped_with_stacks_out_leaks_its_slabs() {
    let (mut p, budget) = pool(16 * KIB, 8, GuardChoice::Auto);
    let s = p.get(None).unwrap();
    let (guard, top) = (s.guard().0, s.top());
    drop(p); // with `s` still out, as when a run ends with a fiber leaked
    assert!(readable(top - 1), "a leaked fiber's stack stays mapped");
    assert!(!readable(guard), "and guarded");
    assert!(budget.used() >= 1);
}

#[test]
fn sizes_round_up() {
    let page = os::page_size();
    assert_eq!(round_size(1), MIN_STACK_SIZE);
    assert_eq!(round_size(MIN_STACK_SIZE + 1), MIN_STACK_SIZE + page);
    assert_eq!(round_size(usize::MAX) % page, 0);
    let (mut p, _) = pool(16 * KIB, 8, GuardChoice::Auto);
    let err = p.get(Some(usize::MAX)).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
}

const CHILD_ENV: &str = "WEFT_STACK_TEST_CHILD";

/// Run by the tests below in a child process: writes into a guard page.
#[test]
fn child_writes_into_a_guard_page() {
    let guards = match std::env::var(CHILD_ENV).as_deref() {
        Ok("auto") => GuardChoice::Auto,
        Ok("mprotect") => GuardChoice::Mprotect,
        _ => return, // not in a child: nothing to do
    };
    let (mut p, _) = pool(16 * KIB, 8, guards);
    let s = p.get(None).unwrap();
    // SAFETY: not safe at all: this faults, on purpose, in a child process.
    unsafe { (s.guard().0 as *mut u8).add(100).write_volatile(1) };
    unreachable!("the write into a guard page did not fault");
}

#[test]
fn writing_into_a_guard_page_is_reported_and_aborts() {
    use std::os::unix::process::ExitStatusExt;
    for mode in ["auto", "mprotect"] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "stack::tests::child_writes_into_a_guard_page"])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, mode)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("weft: fiber stack overflow"),
            "{mode}: {stderr}"
        );
        assert!(
            stderr.contains("in the guard page of a weft fiber stack"),
            "{stderr}"
        );
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{mode}: {stderr}");
    }
}

/// Whether the page holding `addr` is resident.
fn resident(addr: usize) -> bool {
    let page = os::page_size();
    let mut vec = [0u8; 1];
    // SAFETY: one page, one status byte; mincore only reports.
    let r = unsafe {
        libc::mincore(
            (addr & !(page - 1)) as *mut libc::c_void,
            page,
            vec.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    vec[0] & 1 == 1
}

#[test]
fn slots_ahead_of_heavy_spawning_are_prepared_by_the_helper() {
    if !markers_available() || std::env::var_os("WEFT_STACK_PREPARE").is_some() {
        return;
    }
    let (mut p, _) = pool(16 * KIB, 1 << 20, GuardChoice::Auto);
    // Below the threshold the helper is never asked.
    let few: Vec<_> = (0..prepare::START_AFTER - 1)
        .map(|_| p.get(None).unwrap())
        .collect();
    helper::wait_idle();
    {
        let class = &p.classes[0];
        let last = class.slabs.last().unwrap();
        assert!(!(0..last.capacity()).any(|i| last.is_prepared(i)));
    }
    // Past it, slots ahead of the owner get their guards (and top pages)
    // from the helper.
    let many: Vec<_> = (0..3000).map(|_| p.get(None).unwrap()).collect();
    helper::wait_idle();
    let class = &p.classes[0];
    let last_top = many.last().unwrap().top();
    let cur = class.slabs.len() - 1;
    let last = (0..class.slabs[cur].capacity())
        .position(|i| class.slabs[cur].slot(i).1 == last_top)
        .expect("the last stack came from the last slab");
    let mut ahead = 0;
    for (k, slab) in class.slabs.iter().chain(&class.next_slab).enumerate() {
        for i in 0..slab.capacity() {
            if slab.is_prepared(i) {
                let (guard, top) = slab.slot(i);
                assert!(!readable(guard), "a prepared slot has its guard");
                // Chunks wholly ahead of the owner are the helper's (the
                // owner guards the rest of its own chunk, nothing more),
                // and the helper faults their top pages in.
                let helpers = k > cur || (k == cur && i / prepare::CHUNK > last / prepare::CHUNK);
                if helpers {
                    ahead += 1;
                    assert!(resident(top - 1), "a prepared slot's top page is in");
                }
            }
        }
    }
    assert!(ahead > 0, "the helper prepared slots ahead of the owner");
    // 3,254 slots fill slabs of 16 to 1,024 (2,032) and 1,222 of the next,
    // of 2,048. Past its 1,017th the window (about 3,000 ahead) was asked
    // again, and ran past the slab's end: the slab after it is mapped
    // already and the helper has started on it.
    assert_eq!(class.slabs.len(), 8);
    let next = class
        .next_slab
        .as_ref()
        .expect("the next slab is mapped early");
    assert!(
        (0..next.capacity()).any(|i| next.is_prepared(i)),
        "the helper works on into the next slab"
    );
    // Every stack handed out is guarded, whoever installed the guard.
    for s in few.iter().chain(&many) {
        assert!(!readable(s.guard().0));
        assert!(readable(s.top() - 1));
    }
    // And the slots it prepared are handed out next, still guarded.
    let next: Vec<_> = (0..64).map(|_| p.get(None).unwrap()).collect();
    for s in &next {
        assert!(!readable(s.guard().0));
    }
    for s in few.into_iter().chain(many).chain(next) {
        p.put(s);
    }
}

#[test]
fn a_pool_dropped_while_the_helper_works_is_unmapped_safely() {
    if !markers_available() {
        return;
    }
    for _ in 0..4 {
        let (mut p, budget) = pool(16 * KIB, 1 << 20, GuardChoice::Auto);
        let stacks: Vec<_> = (0..3000).map(|_| p.get(None).unwrap()).collect();
        for s in stacks {
            p.put(s);
        }
        drop(p);
        // The slabs are gone (retiring them first stopped the helper; the
        // helper itself unmaps them, after its other jobs, and refunds
        // their mappings only once each unmap succeeded).
        helper::wait_idle();
        assert_eq!(budget.used(), 0);
    }
    helper::wait_idle();
}
