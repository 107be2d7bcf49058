//! The examples of the Eio README (fibers, cancellation, racing, switches,
//! promises, the concurrent cache, streams, the worker pool, the mock clock)
//! rewritten for weft, each checked against its exact mock trace.

use std::time::Duration;

use weft::sync::{Promise, Resolver, Stream};
use weft::time::with_timeout;
use weft::{fiber, mock, traceln, Error, ErrorKind, Result, Switch};

/// The README's concurrent cache, the very code of `examples/cache`: the
/// promise goes into the table before anything can switch fibers, so a
/// second request for the same key waits for the first fetch instead of
/// starting another.
#[path = "../examples/cache/promise_cache.rs"]
mod promise_cache;
use promise_cache::Cache;

/// A plain failure, like OCaml's `failwith`.
fn failure(msg: &'static str) -> Error {
    Error::msg(ErrorKind::Io, msg)
}

#[test]
fn fibers_both_interleave() {
    let (r, trace) = mock::run_traced(|_env| {
        fiber::both(
            || {
                for x in 1..=3 {
                    traceln!("x = {x}");
                    fiber::yield_now()?;
                }
                Ok(())
            },
            || {
                for y in 1..=3 {
                    traceln!("y = {y}");
                    fiber::yield_now()?;
                }
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        ["x = 1", "y = 1", "x = 2", "y = 2", "x = 3", "y = 3"]
    );
}

#[test]
fn cancellation_both_with_a_failing_fiber() {
    let (r, trace) = mock::run_traced(|_env| {
        fiber::both(
            || {
                for x in 1..=3 {
                    traceln!("x = {x}");
                    fiber::yield_now()?;
                }
                Ok(())
            },
            || Err(failure("Simulated error")),
        )
    });
    let err = r.unwrap_err();
    // The first fiber's Cancelled is only the echo of the failure: the
    // failure itself is what `both` reports.
    assert_eq!(err.kind(), &ErrorKind::Io);
    assert_eq!(err.to_string(), "io error, Simulated error");
    assert_eq!(trace, ["x = 1"]);
}

#[test]
fn cancellation_failing_fiber_first() {
    // The mirror image: the failing function is forked first, so the other
    // one never gets past its first suspension point.
    let (r, trace) = mock::run_traced(|_env| {
        fiber::both(
            || {
                fiber::yield_now()?;
                Err(failure("Simulated error"))
            },
            || {
                for y in 1..=3 {
                    traceln!("y = {y}");
                    fiber::yield_now()?;
                }
                Ok(())
            },
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated error");
    assert_eq!(trace, ["y = 1"]);
}

#[test]
fn racing_first() {
    let (r, trace) = mock::run_traced(|_env| {
        let x = fiber::first(
            || {
                traceln!("first fiber delayed...");
                fiber::yield_now()?;
                traceln!("delay over");
                Ok("a")
            },
            || Ok("b"),
        )?;
        traceln!("x = {x:?}");
        Ok(x)
    });
    assert_eq!(r.unwrap(), "b");
    assert_eq!(trace, ["first fiber delayed...", "x = \"b\""]);
}

#[test]
fn switches_interleave_and_wait() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork(|| {
                for i in 1..=3 {
                    traceln!("i = {i}");
                    fiber::yield_now()?;
                }
                Ok(())
            });
            traceln!("First thread forked");
            sw.fork(|| {
                for j in 1..=3 {
                    traceln!("j = {j}");
                    fiber::yield_now()?;
                }
                Ok(())
            });
            traceln!("Second thread forked; top-level code is finished");
            Ok(())
        })?;
        traceln!("Switch is finished");
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "i = 1",
            "First thread forked",
            "j = 1",
            "Second thread forked; top-level code is finished",
            "i = 2",
            "j = 2",
            "i = 3",
            "j = 3",
            "Switch is finished",
        ]
    );
}

#[test]
fn promises_wait_then_resolve() {
    let (r, trace) = mock::run_traced(|_env| {
        let (promise, resolver) = Promise::new();
        fiber::both(
            || {
                traceln!("Waiting for promise...");
                let x = promise.wait()?;
                traceln!("x = {x}");
                Ok(())
            },
            || {
                traceln!("Resolving promise");
                resolver.resolve(42).unwrap();
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        ["Waiting for promise...", "Resolving promise", "x = 42"]
    );
}

#[test]
fn concurrent_cache() {
    let fetch = |url: &str| -> Result<String> {
        traceln!("Fetching {url:?}...");
        fiber::yield_now()?; // simulate work
        traceln!("Got response for {url:?}");
        if url == "http://example.com" {
            Ok("<h1>Example.com</h1>".to_string())
        } else {
            Err(failure("404 Not Found"))
        }
    };
    let (r, trace) = mock::run_traced(|_env| {
        let cache = Cache::new(fetch);
        let test = |url: &str| {
            traceln!("Requesting {url}...");
            match cache.get(url) {
                Ok(page) => traceln!("{url} -> {page}"),
                Err(e) => traceln!("{url} -> {e}"),
            }
            Ok(())
        };
        let urls = [
            "http://example.com",
            "http://example.com",
            "http://bad.com",
            "http://bad.com",
        ];
        fiber::iter(usize::MAX, urls, test)
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Requesting http://example.com...",
            "Fetching \"http://example.com\"...",
            "Requesting http://example.com...",
            "Requesting http://bad.com...",
            "Fetching \"http://bad.com\"...",
            "Requesting http://bad.com...",
            "Got response for \"http://example.com\"",
            "http://example.com -> <h1>Example.com</h1>",
            "Got response for \"http://bad.com\"",
            "http://bad.com -> io error, 404 Not Found",
            "http://example.com -> <h1>Example.com</h1>",
            "http://bad.com -> io error, 404 Not Found",
        ]
    );
}

#[test]
fn streams_bounded_queue() {
    let (r, trace) = mock::run_traced(|_env| {
        let stream = Stream::new(2);
        fiber::both(
            || {
                for i in 1..=5 {
                    traceln!("Adding {i}...");
                    stream.add(i)?;
                }
                Ok(())
            },
            || {
                for _ in 1..=5 {
                    let x = stream.take()?;
                    traceln!("Got {x}");
                    fiber::yield_now()?;
                }
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Adding 1...",
            "Adding 2...",
            "Adding 3...",
            "Got 1",
            "Adding 4...",
            "Got 2",
            "Adding 5...",
            "Got 3",
            "Got 4",
            "Got 5",
        ]
    );
}

type Job = (u32, Resolver<String>);

fn handle_job(request: u32) -> Result<String> {
    fiber::yield_now()?; // simulated work
    Ok(format!("Processed:{request}"))
}

fn run_worker(id: &str, stream: &Stream<Job>) -> Result<()> {
    loop {
        let (request, reply) = stream.take()?;
        traceln!("Worker {id} processing request {request}");
        let _ = reply.resolve(handle_job(request)?);
    }
}

fn submit(stream: &Stream<Job>, request: u32) -> Result<String> {
    let (reply, resolve_reply) = Promise::new();
    stream.add((request, resolve_reply))?;
    reply.wait().cloned()
}

/// The README's worker pool, with both workers as daemon fibers on the
/// calling thread instead of in other domains.
///
/// In the README each worker runs `Domain_manager.run` inside its daemon
/// fiber; here the workers are ordinary daemon fibers, and the trace follows
/// from weft's documented order alone: `fork` runs the child until it
/// suspends, and the parent resumes next, ahead of everything already
/// queued; a resumed fiber goes to the back of the run queue. Worker A
/// becomes ready and blocks in `take`, then worker B. Each client hands its
/// job straight to the oldest waiting worker (capacity 0: a rendezvous), and
/// the worker runs once the client and the `yield_now` of the loop have let
/// the queue come round to it.
///
/// The single-domain schedule turns out to print the same eleven lines as the
/// multi-domain README. There, the order is the one the README observed from
/// its domains; here it is fixed, so any change to fork order, wake-up order
/// or the stream's FIFO hand-off changes this trace.
#[test]
fn worker_pool_single_domain() {
    let (r, trace) = mock::run_traced(|_env| {
        let stream: Stream<Job> = Stream::new(0);
        Switch::run(|sw| {
            let stream = &stream;
            let spawn_worker = |name: &'static str| {
                sw.fork_daemon(move || {
                    traceln!("Worker {name} ready");
                    run_worker(name, stream)
                })
            };
            spawn_worker("A");
            spawn_worker("B");
            Switch::run(|sw| {
                for i in 1..=3 {
                    sw.fork(move || {
                        traceln!("Client {i} submitting job...");
                        traceln!("Client {i} got {}", submit(stream, i)?);
                        Ok(())
                    });
                    fiber::yield_now()?;
                }
                Ok(())
            })
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Worker A ready",
            "Worker B ready",
            "Client 1 submitting job...",
            "Worker A processing request 1",
            "Client 2 submitting job...",
            "Worker B processing request 2",
            "Client 3 submitting job...",
            "Client 1 got Processed:1",
            "Worker A processing request 3",
            "Client 2 got Processed:2",
            "Client 3 got Processed:3",
        ]
    );
}

#[test]
fn mock_clock_sleep() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.clock();
        traceln!("Sleeping for five seconds...");
        clock.sleep(Duration::from_secs(5))?;
        traceln!("Resumed");
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Sleeping for five seconds...",
            "mock time is now 5",
            "Resumed"
        ]
    );
}

#[test]
fn with_timeout_expires() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let r = with_timeout(clock, Duration::from_secs(1), || {
            traceln!("Starting slow operation");
            clock.sleep(Duration::from_secs(10))?;
            traceln!("Slow operation finished");
            Ok("slow")
        });
        match &r {
            Ok(v) => traceln!("Got {v}"),
            Err(e) => traceln!("Error: {e}"),
        }
        traceln!("Now {:?}", clock.now()?.since_origin());
        r
    });
    let err = r.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(
        trace,
        [
            "Starting slow operation",
            "mock time is now 1",
            "Error: timeout, timed out after 1s",
            "Now 1s",
        ]
    );
}

#[test]
fn with_timeout_in_time() {
    // The operation finishes first: the timer is cancelled and removed, so
    // virtual time never jumps to the 10 s deadline.
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let v = with_timeout(clock, Duration::from_secs(10), || {
            clock.sleep(Duration::from_secs(1))?;
            traceln!("Fast operation finished");
            Ok("fast")
        })?;
        traceln!("Got {v}");
        clock.sleep(Duration::from_secs(1))?;
        Ok(v)
    });
    assert_eq!(r.unwrap(), "fast");
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "Fast operation finished",
            "Got fast",
            "mock time is now 2",
        ]
    );
}
