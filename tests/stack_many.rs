//! Many fibers at once: 100,000 parked fibers under the mock backend, each
//! on its own guarded stack, in a handful of memory mappings; stacks are
//! reused from round to round; stack sizes per run and per fiber.
//!
//! The million-fiber run is `examples/many_fibers.rs`, not a test.

use weft::switch::ForkOptions;
use weft::sync::Promise;
use weft::{fiber, mock, Switch};

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

/// Whether this kernel installs guard pages without new mappings (Linux
/// 6.13+), unless the fallback is forced.
fn guard_markers_expected() -> bool {
    if std::env::var_os("WEFT_STACK_GUARDS").is_some() {
        return false;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 13)
}

#[test]
fn a_hundred_thousand_parked_fibers() {
    // 100,000 mprotect guards would need 200,000 mappings, past the default
    // vm.max_map_count: on the fallback path, a number that fits.
    let markers = guard_markers_expected();
    let n: usize = if markers { 100_000 } else { 10_000 };
    let maps_before = mappings();
    let r = mock::run(|_env| {
        let (promise, resolver) = Promise::<u32>::new();
        let sum = std::cell::Cell::new(0u64);
        let mut peak = (0, 0);
        Switch::run(|sw| {
            for _ in 0..n {
                sw.fork(|| {
                    let v = promise.wait()?;
                    sum.set(sum.get() + u64::from(*v));
                    Ok(())
                });
            }
            peak = (fiber::stats()?.fibers, mappings());
            resolver.resolve(1).unwrap();
            Ok(())
        })?;
        assert_eq!(sum.get(), n as u64, "every fiber was released");
        Ok(peak)
    });
    let (fibers, maps_parked) = r.unwrap();
    assert!(fibers > n, "{fibers} fibers alive at the peak");
    if markers {
        // Other tests in this binary map memory too, but not thousands.
        let added = maps_parked.saturating_sub(maps_before);
        assert!(
            added < 1_000,
            "{added} mappings added for {n} guarded stacks"
        );
    }
}

#[test]
fn stacks_are_reused_round_after_round() {
    mock::run(|_env| {
        let mut idle_after = Vec::new();
        for _round in 0..3 {
            let (promise, resolver) = Promise::<()>::new();
            Switch::run(|sw| {
                for _ in 0..2_000 {
                    sw.fork(|| promise.wait().map(|_| ()));
                }
                resolver.resolve(()).unwrap();
                Ok(())
            })?;
            idle_after.push(fiber::stats()?.idle_stacks);
        }
        // Round one left its stacks idle; later rounds took them back
        // instead of mapping new ones, and gave them back again.
        assert!(idle_after[0] >= 2_000, "{idle_after:?}");
        assert_eq!(idle_after[0], idle_after[1], "{idle_after:?}");
        assert_eq!(idle_after[1], idle_after[2], "{idle_after:?}");
        Ok(())
    })
    .unwrap();
}

/// Uses about `kib` KiB of stack.
#[inline(never)]
fn use_stack(kib: usize) -> u64 {
    let buf = std::hint::black_box([kib as u8; 1024]);
    if kib <= 1 {
        return u64::from(buf[0]);
    }
    use_stack(kib - 1) + u64::from(buf[1023])
}

#[test]
fn stack_size_per_run_and_per_fiber() {
    let config = mock::Config::new().stack_size(64 * 1024);
    config
        .run(|_env| {
            assert_eq!(fiber::stats()?.stack_size, 64 * 1024);
            Switch::run(|sw| {
                sw.fork(|| {
                    // Fits in the run's 64 KiB default (debug frames are big:
                    // stay well below).
                    use_stack(16);
                    Ok(())
                });
                sw.fork_with(ForkOptions::new().stack_size(4 << 20), || {
                    // Needs far more than 64 KiB.
                    use_stack(1024);
                    Ok(())
                });
                Ok(())
            })
        })
        .unwrap();
}

/// A finished fiber's stack is idle whatever its size, including those
/// kept with spare control blocks for the next spawn, and a second round
/// of the same fibers maps nothing new.
#[test]
fn stacks_of_finished_fibers_are_idle_whatever_their_size() {
    mock::run(|_env| {
        let round = || {
            Switch::run(|sw| {
                for i in 0..40 {
                    let opts = if i % 2 == 0 {
                        ForkOptions::new()
                    } else {
                        ForkOptions::new().stack_size(64 * 1024)
                    };
                    sw.fork_with(opts, fiber::yield_now);
                }
                // All 40 are suspended at once here, each on its own stack.
                assert_eq!(fiber::stats()?.fibers, 41);
                Ok(())
            })
        };
        let before = fiber::stats()?.idle_stacks;
        round()?;
        let after = fiber::stats()?.idle_stacks;
        assert_eq!(after, before + 40, "every stack came back");
        round()?;
        assert_eq!(fiber::stats()?.idle_stacks, after, "and was reused");
        Ok(())
    })
    .unwrap();
}
