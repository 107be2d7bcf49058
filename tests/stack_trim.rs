//! Conformance: the memory of idle stacks past `RunConfig::max_idle_stacks`
//! goes back to the OS when the scheduler runs out of work, or a second
//! after they went idle while it stays busy — not as each fiber finishes, so
//! a burst of finishing fibers leaves warm stacks for the next burst.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rstest::rstest;
use weft::sync::Promise;
use weft::{fiber, Backend, Env, RunConfig, Switch};

const MAX_IDLE: usize = 8;
/// Idle stacks that may stay resident: the pool's `MAX_IDLE`, plus as many
/// kept with spare control blocks and as many parked workers.
const RESIDENT_BOUND: usize = 3 * MAX_IDLE;
const BURST: usize = 1_000;

fn run_with_config<T>(backend: Backend, main: impl FnOnce(&Env) -> weft::Result<T>) -> T {
    let config = RunConfig {
        max_idle_stacks: MAX_IDLE,
        ..RunConfig::default()
    };
    let r = match backend {
        Backend::Posix => weft_posix::run(&config, main),
        Backend::Uring => weft::uring::run(&config, main),
        Backend::Mock => weft::mock::Config::new()
            .max_idle_stacks(MAX_IDLE)
            .run(main),
    };
    r.unwrap()
}

/// Whether the page holding `addr` is resident.
fn resident(addr: usize) -> bool {
    let page = 4096;
    let mut v = 0u8;
    // SAFETY: mincore only writes one byte to `v` (one page asked about);
    // the address is page-aligned and lies in a mapped stack slab.
    let r = unsafe { libc::mincore((addr & !(page - 1)) as *mut _, 1, &mut v) };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    v & 1 == 1
}

fn count_resident(addrs: &[usize]) -> usize {
    addrs.iter().filter(|&&a| resident(a)).count()
}

/// Runs `BURST` fibers at once, each dirtying a few KiB of its own stack,
/// until they have all finished; returns an address in each one's dirtied
/// stack.
fn burst() -> weft::Result<Vec<usize>> {
    let addrs = RefCell::new(Vec::with_capacity(BURST));
    let (go, release) = Promise::<()>::new();
    Switch::run(|sw| {
        for _ in 0..BURST {
            sw.fork(|| {
                let buf = std::hint::black_box([7u8; 3000]);
                addrs.borrow_mut().push(buf.as_ptr() as usize);
                go.wait()?;
                std::hint::black_box(&buf);
                Ok(())
            });
        }
        release.resolve(()).unwrap();
        Ok(())
    })?;
    Ok(addrs.into_inner())
}

/// Waits (blocking the thread, not the fiber, so the scheduler does not
/// go idle meanwhile) until at most `RESIDENT_BOUND` of `addrs` are
/// resident; the helper thread gives the memory back asynchronously.
fn wait_trimmed(addrs: &[usize], within: Duration) -> usize {
    let start = Instant::now();
    loop {
        let n = count_resident(addrs);
        if n <= RESIDENT_BOUND || start.elapsed() > within {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn an_idle_scheduler_gives_the_excess_back(#[case] backend: Backend) {
    run_with_config(backend, |env| {
        let addrs = burst()?;
        // Busy all along (the finishing fibers kept it so): nothing trimmed.
        let warm = count_resident(&addrs);
        assert!(
            warm > BURST / 2,
            "{backend:?}: only {warm} of {BURST} stacks still resident right after the burst"
        );
        // Nothing to run while this sleeps: the scheduler trims.
        env.mono_clock().sleep(Duration::from_millis(1))?;
        let left = wait_trimmed(&addrs, Duration::from_secs(10));
        assert!(
            left <= RESIDENT_BOUND,
            "{backend:?}: {left} idle stacks still resident after going idle"
        );
        // The trimmed stacks are reused, and work.
        let again = burst()?;
        assert_eq!(again.len(), BURST);
        Ok(())
    });
}

/// Only on the real backends: the mock's clock stands still while fibers
/// run, so a scheduler that never goes idle never sees a second pass.
#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn a_busy_scheduler_gives_the_excess_back_after_a_second(#[case] backend: Backend) {
    run_with_config(backend, |_env| {
        let addrs = burst()?;
        let idle_since = Instant::now();
        // Keep the scheduler busy: this fiber yields, so it is always
        // runnable and the scheduler never blocks.
        let mut left = BURST;
        while idle_since.elapsed() < Duration::from_secs(10) {
            for _ in 0..1_000 {
                fiber::yield_now()?;
            }
            left = count_resident(&addrs);
            if left <= RESIDENT_BOUND {
                break;
            }
        }
        let took = idle_since.elapsed();
        assert!(
            left <= RESIDENT_BOUND,
            "{backend:?}: {left} idle stacks still resident after {took:?} busy"
        );
        // The second runs from when the scheduler first saw the excess,
        // during the burst: allow for a slow burst, but not for trimming
        // at once.
        assert!(
            took >= Duration::from_millis(500),
            "{backend:?}: trimmed after {took:?}, before the second had passed"
        );
        Ok(())
    });
}
