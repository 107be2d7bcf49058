//! The ring's limits are not the program's: more operations in flight than
//! ring entries, completions beyond the completion queue, and submissions
//! batched once per scheduler turn.

use std::cell::Cell;

use weft_core::{RunConfig, Switch};
use weft_uring::{ops, RingOptions, Setup};

fn tiny() -> RingOptions {
    RingOptions {
        sq_entries: 8,
        cq_entries: 16,
    }
}

#[test]
fn more_operations_in_flight_than_ring_entries() {
    weft_uring::run_with_options(&RunConfig::default(), &tiny(), |_env| {
        let pipes: Vec<(ops::Fd, ops::Fd)> = (0..100)
            .map(|_| ops::pipe())
            .collect::<weft_core::Result<_>>()?;
        let done = Cell::new(0);
        Switch::run(|sw| {
            // 100 reads in flight on a ring of 8 submission entries and 16
            // completion entries.
            for (i, (r, _)) in pipes.iter().enumerate() {
                let done = &done;
                sw.fork(move || {
                    let mut buf = [0u8; 8];
                    let n = r.read(&mut buf)?;
                    assert_eq!(&buf[..n], format!("p{i}").as_bytes());
                    done.set(done.get() + 1);
                    Ok(())
                });
            }
            let s = weft_uring::stats()?;
            assert!(
                s.sq_full_flushes > 0,
                "the full SQ was flushed early: {s:?}"
            );
            // Then 100 writes, all queued in one turn: every read completes
            // at once, overflowing the completion queue.
            for (i, (_, w)) in pipes.iter().enumerate() {
                sw.fork(move || {
                    w.write(format!("p{i}").as_bytes())?;
                    Ok(())
                });
            }
            Ok(())
        })?;
        assert_eq!(done.get(), 100);
        let s = weft_uring::stats()?;
        assert_eq!(s.in_flight, 0, "{s:?}");
        assert!(s.completions >= 200, "{s:?}");
        Ok(())
    })
    .unwrap();
}

#[test]
fn submissions_are_batched_once_per_turn() {
    weft_uring::run(&RunConfig::default(), |_env| {
        let pipes: Vec<(ops::Fd, ops::Fd)> = (0..64)
            .map(|_| ops::pipe())
            .collect::<weft_core::Result<_>>()?;
        let before = weft_uring::stats()?;
        Switch::run(|sw| {
            for (_, w) in &pipes {
                sw.fork(move || w.write(b"x").map(|_| ()));
            }
            Ok(())
        })?;
        let after = weft_uring::stats()?;
        let ops = after.ops - before.ops;
        let enters = after.enters - before.enters;
        assert_eq!(ops, 64);
        // The scheduler takes an IO turn at most every 64 fiber runs, and
        // each fork runs two (child, then parent): 64 forks make about 2
        // turns, each submitting everything queued since the last.
        assert!(
            enters * 4 <= ops,
            "64 writes took {enters} io_uring_enter calls; expected batches"
        );
        for (r, _) in &pipes {
            let mut b = [0u8; 1];
            assert_eq!(r.read(&mut b)?, 1);
        }
        Ok(())
    })
    .unwrap();
}

/// `(major, minor)` of the running kernel.
fn kernel_version() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = rel
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[test]
fn the_ring_uses_the_best_task_work_mode_the_kernel_has() {
    let setup = weft_uring::run(&RunConfig::default(), |_env| weft_uring::setup()).unwrap();
    let k = kernel_version();
    let expected = if k >= (6, 1) {
        Setup::DeferTaskrun
    } else if k >= (5, 19) {
        Setup::CoopTaskrun
    } else {
        Setup::Plain
    };
    assert_eq!(setup, expected, "kernel {k:?}");
}

#[test]
fn outside_a_run_the_ring_api_says_so() {
    let e = weft_uring::stats().unwrap_err();
    assert!(e.to_string().contains("no io_uring on this thread"), "{e}");
}
