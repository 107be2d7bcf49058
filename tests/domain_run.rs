//! Conformance: domains and the executor pool, on every backend.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rstest::rstest;
use weft::domain::ExecutorPool;
use weft::sync::Stream;
use weft::{fiber, time, Backend, ErrorKind, Switch};

fn sum_to(n: u64) -> u64 {
    (1..=n).sum()
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn domains_compute_in_parallel(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let dm = env.domain_mgr();
        let (a, b) = fiber::pair(
            || dm.run(|| Ok(sum_to(100_000))),
            || dm.run(|| Ok(sum_to(50_000))),
        )?;
        assert_eq!((a, b), (5_000_050_000, 1_250_025_000));
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn errors_and_panics_come_back(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let dm = env.domain_mgr();
        let e = dm
            .run(|| Err::<(), _>(weft::Error::msg(ErrorKind::InvalidInput, "bad job")))
            .unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::InvalidInput);
        let e = dm
            .run(|| -> weft::Result<()> { panic!("boom in a domain") })
            .unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Panic);
        assert!(e.to_string().contains("boom in a domain"), "{e}");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn cancelling_the_caller_cancels_the_domain_and_waits_for_it(#[case] backend: Backend) {
    let stopped = Arc::new(AtomicUsize::new(0));
    let s2 = stopped.clone();
    weft::run_with(backend, |env| {
        let dm = env.domain_mgr();
        let clock = env.mono_clock();
        let err = time::with_timeout(clock, Duration::from_millis(20), || {
            dm.run(move || {
                let e = fiber::await_cancel();
                s2.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(e)
            })
        })
        .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        // `run` returned only after the domain saw its cancellation.
        assert_eq!(stopped.load(Ordering::SeqCst), 1);
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn streams_and_promises_cross_domains(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let dm = env.domain_mgr();
        let to_worker: Stream<u64> = Stream::new(0);
        let from_worker: Stream<u64> = Stream::new(4);
        let (tw, fw) = (to_worker.clone(), from_worker.clone());
        Switch::run(|sw| {
            sw.fork_daemon(move || {
                dm.run(move || loop {
                    let x = tw.take()?;
                    fw.add(x * 2)?;
                })
            });
            for i in 0..1000 {
                to_worker.add(i)?;
                assert_eq!(from_worker.take()?, i * 2);
            }
            Ok(())
        })
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn executor_pool_runs_jobs_and_respects_weights(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        Switch::run(|sw| {
            let pool = ExecutorPool::new(sw, &env.domain_mgr(), 2)?;
            let (a, b) = fiber::pair(
                || pool.submit(1.0, || Ok(sum_to(100_000))),
                || pool.submit(1.0, || Ok(sum_to(50_000))),
            )?;
            assert_eq!((a, b), (5_000_050_000, 1_250_025_000));
            // At most one weight-1.0 job runs per worker at once.
            let running = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            fiber::iter(8, 0..8, |_| {
                let (running, peak) = (running.clone(), peak.clone());
                pool.submit(1.0, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
            })?;
            assert!(
                peak.load(Ordering::SeqCst) <= 2,
                "peak {}",
                peak.load(Ordering::SeqCst)
            );
            for bad in [-0.1, 1.5, f64::NAN] {
                let e = pool.submit(bad, || Ok(())).unwrap_err();
                assert_eq!(e.kind(), &ErrorKind::InvalidInput, "{bad}");
            }
            Ok(())
        })
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_pool_needs_a_domain(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        Switch::run(|sw| {
            let e = ExecutorPool::new(sw, &env.domain_mgr(), 0).unwrap_err();
            assert_eq!(e.kind(), &ErrorKind::InvalidInput);
            Ok(())
        })
    })
    .unwrap();
}
