//! Streams: bounded and zero-capacity queues, waiting readers and writers,
//! non-blocking takes, and cancellation that never loses nor duplicates an
//! item (Eio's `tests/stream.md` and the points).

use std::time::Duration;

use weft::sync::Stream;
use weft::time::with_timeout;
use weft::{cancel, fiber, mock, traceln, Error, ErrorKind, Result, Switch};

fn failure(msg: &'static str) -> Error {
    Error::msg(ErrorKind::Io, msg)
}

fn add(t: &Stream<i32>, v: i32) -> Result<()> {
    traceln!("Adding {v} to stream");
    match t.add(v) {
        Ok(()) => {
            traceln!("Added {v} to stream");
            Ok(())
        }
        Err(e) => {
            traceln!("{e}");
            Err(e)
        }
    }
}

fn take(t: &Stream<i32>) -> Result<i32> {
    traceln!("Reading from stream");
    match t.take() {
        Ok(v) => {
            traceln!("Got {v} from stream");
            Ok(v)
        }
        Err(e) => {
            traceln!("{e}");
            Err(e)
        }
    }
}

fn take_nonblocking(t: &Stream<i32>) -> Option<i32> {
    traceln!("Reading from stream");
    let v = t.take_nonblocking();
    match v {
        Some(v) => traceln!("Got {v} from stream"),
        None => traceln!("Got None from stream"),
    }
    v
}

fn try_add(t: &Stream<i32>, v: i32) -> Option<i32> {
    match t.try_add(v) {
        Ok(()) => {
            traceln!("Added {v} without waiting");
            None
        }
        Err(back) => {
            traceln!("Full: got {back} back");
            Some(back)
        }
    }
}

#[test]
fn simple_non_blocking_case() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(2);
        add(&t, 1)?;
        add(&t, 2)?;
        take(&t)?;
        take(&t)?;
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Adding 1 to stream",
            "Added 1 to stream",
            "Adding 2 to stream",
            "Added 2 to stream",
            "Reading from stream",
            "Got 1 from stream",
            "Reading from stream",
            "Got 2 from stream",
        ]
    );
}

#[test]
fn readers_wait_while_the_stream_is_empty() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(2);
        add(&t, 1)?;
        fiber::both(
            || {
                take(&t)?;
                take(&t)?;
                Ok(())
            },
            || add(&t, 2),
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Adding 1 to stream",
            "Added 1 to stream",
            "Reading from stream",
            "Got 1 from stream",
            "Reading from stream",
            "Adding 2 to stream",
            "Added 2 to stream",
            "Got 2 from stream",
        ]
    );
}

#[test]
fn writers_wait_while_the_stream_is_full() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(3);
        add(&t, 1)?;
        fiber::both(
            || {
                add(&t, 2)?;
                add(&t, 3)?;
                add(&t, 4)
            },
            || {
                for _ in 0..4 {
                    take(&t)?;
                }
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Adding 1 to stream",
            "Added 1 to stream",
            "Adding 2 to stream",
            "Added 2 to stream",
            "Adding 3 to stream",
            "Added 3 to stream",
            "Adding 4 to stream",
            "Reading from stream",
            "Got 1 from stream",
            "Reading from stream",
            "Got 2 from stream",
            "Reading from stream",
            "Got 3 from stream",
            "Reading from stream",
            "Got 4 from stream",
            "Added 4 to stream",
        ]
    );
}

#[test]
fn a_zero_capacity_stream_is_synchronous() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(0);
        fiber::both(
            || {
                add(&t, 1)?;
                add(&t, 2)
            },
            || {
                take(&t)?;
                take(&t)?;
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Adding 1 to stream",
            "Reading from stream",
            "Got 1 from stream",
            "Reading from stream",
            "Added 1 to stream",
            "Adding 2 to stream",
            "Added 2 to stream",
            "Got 2 from stream",
        ]
    );
}

#[test]
fn zero_capacity_add_waits_for_a_taker() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let t = Stream::new(0);
        fiber::both(
            || {
                t.add("item")?;
                traceln!("add returned at {:?}", clock.now()?.since_origin());
                Ok(())
            },
            || {
                traceln!("len with an adder waiting: {}", t.len());
                clock.sleep(Duration::from_secs(5))?;
                traceln!("took {}", t.take()?);
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "len with an adder waiting: 0",
            "mock time is now 5",
            "took item",
            "add returned at 5s",
        ]
    );
}

#[test]
fn cancel_reading_from_a_stream() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(1);
        let r = fiber::both(
            || {
                take(&t)?;
                Ok(())
            },
            || Err(failure("Cancel")),
        );
        assert_eq!(r.unwrap_err().to_string(), "io error, Cancel");
        traceln!("Cancelled");
        add(&t, 2)?;
        take(&t)?;
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Reading from stream",
            "cancelled: io error, Cancel",
            "Cancelled",
            "Adding 2 to stream",
            "Added 2 to stream",
            "Reading from stream",
            "Got 2 from stream",
        ]
    );
}

#[test]
fn cancel_writing_to_a_stream() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(1);
        let r = fiber::both(
            || {
                add(&t, 1)?;
                add(&t, 2)
            },
            || Err(failure("Cancel")),
        );
        assert!(r.is_err());
        traceln!("Cancelled");
        take(&t)?;
        add(&t, 3)?;
        take(&t)?;
        traceln!("left: {:?}", t.take_nonblocking());
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Adding 1 to stream",
            "Added 1 to stream",
            "Adding 2 to stream",
            "cancelled: io error, Cancel",
            "Cancelled",
            "Reading from stream",
            "Got 1 from stream",
            "Adding 3 to stream",
            "Added 3 to stream",
            "Reading from stream",
            "Got 3 from stream",
            "left: None",
        ]
    );
}

#[test]
fn cancel_writing_to_a_zero_capacity_stream() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(0);
        let r = fiber::both(|| add(&t, 1), || Err(failure("Cancel")));
        assert!(r.is_err());
        traceln!("Cancelled");
        fiber::both(
            || add(&t, 2),
            || {
                take(&t)?;
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Adding 1 to stream",
            "cancelled: io error, Cancel",
            "Cancelled",
            "Adding 2 to stream",
            "Reading from stream",
            "Got 2 from stream",
            "Added 2 to stream",
        ]
    );
}

#[test]
fn using_a_stream_in_a_cancelled_context() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(0);
        cancel::sub(|c| {
            c.cancel(failure("Cancel"));
            let _ = add(&t, 1);
            let _ = take(&t);
            // The stream is still usable (nothing was left half-done).
            cancel::protect(|| {
                fiber::both(
                    || add(&t, 1),
                    || {
                        take(&t)?;
                        Ok(())
                    },
                )
            })
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Adding 1 to stream",
            "cancelled: io error, Cancel",
            "Reading from stream",
            "cancelled: io error, Cancel",
            "Adding 1 to stream",
            "Reading from stream",
            "Got 1 from stream",
            "Added 1 to stream",
        ]
    );
}

#[test]
fn readers_queue_up() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(0);
        Switch::run(|sw| {
            for name in ["a", "b", "c"] {
                let t = &t;
                sw.fork(move || {
                    take(t)?;
                    traceln!("{name} done");
                    Ok(())
                });
            }
            add(&t, 1)?;
            add(&t, 2)?;
            add(&t, 3)
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Reading from stream",
            "Reading from stream",
            "Reading from stream",
            "Adding 1 to stream",
            "Added 1 to stream",
            "Adding 2 to stream",
            "Added 2 to stream",
            "Adding 3 to stream",
            "Added 3 to stream",
            "Got 1 from stream",
            "a done",
            "Got 2 from stream",
            "b done",
            "Got 3 from stream",
            "c done",
        ]
    );
}

#[test]
fn writers_queue_up() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(0);
        Switch::run(|sw| {
            for v in 1..=3 {
                let t = &t;
                sw.fork(move || add(t, v));
            }
            for _ in 0..3 {
                take(&t)?;
            }
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Adding 1 to stream",
            "Adding 2 to stream",
            "Adding 3 to stream",
            "Reading from stream",
            "Got 1 from stream",
            "Reading from stream",
            "Got 2 from stream",
            "Reading from stream",
            "Got 3 from stream",
            "Added 1 to stream",
            "Added 2 to stream",
            "Added 3 to stream",
        ]
    );
}

#[test]
fn cancelling_a_waiting_writer_keeps_the_buffered_item() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(1);
        add(&t, 0)?;
        Switch::run(|_sw| {
            let r = fiber::both(|| add(&t, 1), || Err(failure("Cancel")));
            assert!(r.is_err());
            traceln!("Cancelled");
            take(&t)?;
            add(&t, 2)?;
            take(&t)?;
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Adding 0 to stream",
            "Added 0 to stream",
            "Adding 1 to stream",
            "cancelled: io error, Cancel",
            "Cancelled",
            "Reading from stream",
            "Got 0 from stream",
            "Adding 2 to stream",
            "Added 2 to stream",
            "Reading from stream",
            "Got 2 from stream",
        ]
    );
}

#[test]
fn non_blocking_take() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(1);
        take_nonblocking(&t);
        add(&t, 0)?;
        take_nonblocking(&t);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Reading from stream",
            "Got None from stream",
            "Adding 0 to stream",
            "Added 0 to stream",
            "Reading from stream",
            "Got 0 from stream",
        ]
    );
}

#[test]
fn non_blocking_take_from_a_zero_capacity_stream() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(0);
        take_nonblocking(&t);
        fiber::both(
            || add(&t, 0),
            || {
                take_nonblocking(&t);
                Ok(())
            },
        )?;
        take_nonblocking(&t);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Reading from stream",
            "Got None from stream",
            "Adding 0 to stream",
            "Reading from stream",
            "Got 0 from stream",
            "Added 0 to stream",
            "Reading from stream",
            "Got None from stream",
        ]
    );
}

#[test]
fn len_capacity_and_is_empty() {
    let r = mock::run(|_env| {
        let t = Stream::new(3);
        assert_eq!((t.len(), t.capacity(), t.is_empty()), (0, 3, true));
        t.add(1)?;
        t.add(2)?;
        assert_eq!((t.len(), t.is_empty()), (2, false));
        let t2 = t.clone();
        t2.add(3)?;
        assert_eq!(t.len(), 3);
        // A waiting adder is not counted.
        fiber::both(
            || t.add(4),
            || {
                assert_eq!(t.len(), 3);
                assert_eq!(t.take()?, 1);
                // The waiting adder's item moved into the freed slot.
                assert_eq!(t.len(), 3);
                Ok(())
            },
        )?;
        let mut rest = Vec::new();
        while let Some(v) = t2.take_nonblocking() {
            rest.push(v);
        }
        assert!(t.is_empty());
        Ok(rest)
    });
    assert_eq!(r.unwrap(), [2, 3, 4]);
}

#[test]
fn a_timed_out_add_never_delivers_its_item() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let t = Stream::new(1);
        t.add("first")?;
        let r = with_timeout(clock, Duration::from_secs(1), || t.add("timed out"));
        traceln!("add: {}", r.unwrap_err());
        traceln!("len: {}", t.len());
        traceln!("take: {}", t.take()?);
        traceln!("then: {:?}", t.take_nonblocking());
        // Room again: a new add is delivered, and only it.
        t.add("second")?;
        traceln!("take: {}", t.take()?);
        traceln!("then: {:?}", t.take_nonblocking());
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "add: timeout, timed out after 1s",
            "len: 1",
            "take: first",
            "then: None",
            "take: second",
            "then: None",
        ]
    );
}

#[test]
fn a_timed_out_zero_capacity_add_never_reaches_a_later_taker() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let t = Stream::new(0);
        let r = with_timeout(clock, Duration::from_secs(1), || t.add(1));
        traceln!("add: {}", r.unwrap_err());
        fiber::both(
            || {
                traceln!("took {}", t.take()?);
                Ok(())
            },
            || t.add(2),
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "add: timeout, timed out after 1s",
            "took 2"
        ]
    );
}

#[test]
fn a_cancelled_take_never_loses_an_item() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let t = Stream::new(1);
        let r = with_timeout(clock, Duration::from_secs(1), || t.take());
        traceln!("take: {}", r.unwrap_err());
        t.add(7)?;
        traceln!("len after add: {}", t.len());
        traceln!("next take: {}", t.take()?);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "take: timeout, timed out after 1s",
            "len after add: 1",
            "next take: 7",
        ]
    );
}

#[test]
fn cancelled_takers_among_waiting_takers() {
    // Three takers wait; the middle one is cancelled; two items go to the
    // other two, in order, and none is lost or duplicated.
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let t = Stream::new(0);
        let t = &t;
        Switch::run(|sw| {
            for i in 0..3u64 {
                sw.fork(move || {
                    let r = if i == 1 {
                        with_timeout(clock, Duration::from_secs(1), || t.take())
                    } else {
                        t.take()
                    };
                    match r {
                        Ok(v) => traceln!("taker {i} got {v}"),
                        Err(e) => traceln!("taker {i}: {e}"),
                    }
                    Ok(())
                });
            }
            clock.sleep(Duration::from_secs(2))?;
            t.add(10)?;
            t.add(20)?;
            traceln!("added both; left: {}", t.len());
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "taker 1: timeout, timed out after 1s",
            "mock time is now 2",
            "added both; left: 0",
            "taker 0 got 10",
            "taker 2 got 20",
        ]
    );
}

#[test]
fn items_keep_their_order_across_waiting_writers() {
    let r = mock::run(|_env| {
        let t = Stream::new(2);
        let got = Switch::run(|sw| {
            for w in 0..3 {
                let t = &t;
                sw.fork(move || {
                    for i in 0..4 {
                        t.add(w * 10 + i)?;
                    }
                    Ok(())
                });
            }
            let mut got = Vec::new();
            for _ in 0..12 {
                got.push(t.take()?);
                fiber::yield_now()?;
            }
            Ok(got)
        })?;
        Ok(got)
    });
    let got = r.unwrap();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23],
        "every item exactly once"
    );
    for w in 0..3 {
        let from_w: Vec<_> = got.iter().filter(|v| *v / 10 == w).collect();
        assert!(
            from_w.windows(2).all(|p| p[0] < p[1]),
            "FIFO per writer: {got:?}"
        );
    }
}

#[test]
fn try_add_buffers_until_full_then_gives_the_item_back() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(2);
        try_add(&t, 1);
        try_add(&t, 2);
        try_add(&t, 3);
        take(&t)?;
        try_add(&t, 4);
        take(&t)?;
        take(&t)?;
        Ok(t.is_empty())
    });
    assert!(r.unwrap());
    assert_eq!(
        trace,
        [
            "Added 1 without waiting",
            "Added 2 without waiting",
            "Full: got 3 back",
            "Reading from stream",
            "Got 1 from stream",
            "Added 4 without waiting",
            "Reading from stream",
            "Got 2 from stream",
            "Reading from stream",
            "Got 4 from stream",
        ]
    );
}

#[test]
fn try_add_hands_the_item_to_a_waiting_taker() {
    // With capacity 0 there is no buffer: `try_add` succeeds only while a
    // taker waits, and then wakes it with the item.
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(0);
        try_add(&t, 1);
        fiber::both(
            || take(&t).map(drop),
            || {
                try_add(&t, 2);
                Ok(())
            },
        )?;
        try_add(&t, 3);
        Ok(t.take_nonblocking())
    });
    assert_eq!(r.unwrap(), None);
    assert_eq!(
        trace,
        [
            "Full: got 1 back",
            "Reading from stream",
            "Added 2 without waiting",
            "Got 2 from stream",
            "Full: got 3 back",
        ]
    );
}

#[test]
fn try_add_does_not_jump_ahead_of_waiting_adders() {
    let (r, trace) = mock::run_traced(|_env| {
        let t = Stream::new(1);
        add(&t, 1)?;
        Switch::run(|sw| {
            sw.fork(|| add(&t, 2));
            fiber::yield_now()?;
            // Adder 2 waits; a free slot made by `take` goes to it, so the
            // stream is full again for `try_add`.
            try_add(&t, 3);
            take(&t)?;
            try_add(&t, 4);
            Ok(())
        })?;
        take(&t)
    });
    assert_eq!(r.unwrap(), 2);
    assert_eq!(
        trace,
        [
            "Adding 1 to stream",
            "Added 1 to stream",
            "Adding 2 to stream",
            "Full: got 3 back",
            "Reading from stream",
            "Got 1 from stream",
            "Full: got 4 back",
            "Added 2 to stream",
            "Reading from stream",
            "Got 2 from stream",
        ]
    );
}

#[test]
fn try_add_in_a_cancelled_context_still_adds() {
    // `try_add` never waits, so it is no cancellation point (like
    // `take_nonblocking`): a cancelled fiber can still hand items over.
    let r = mock::run(|_env| {
        let t = Stream::new(1);
        let err = cancel::sub(|c| {
            c.cancel(failure("Cancel"));
            assert_eq!(t.try_add(7), Ok(()));
            assert_eq!(t.try_add(8), Err(8));
            t.add(9)
        })
        .unwrap_err();
        assert!(err.is_cancelled(), "{err}");
        Ok(t.take_nonblocking())
    });
    assert_eq!(r.unwrap(), Some(7));
}
