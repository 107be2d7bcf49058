//! Steady-state hot paths allocate nothing: a TCP round trip through a
//! server fiber (plain and through a buffered writer), a promise round trip,
//! a fork and a yield. A counting global allocator counts this thread's
//! allocations only (the stack helper and other threads allocate
//! independently), after a warm-up that lets pools and queues reach their
//! working sizes.
//!
//! Real backends only: the mock's in-memory network queues what is sent in
//! buffers of its own, a cost of the test double rather than of weft.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rstest::rstest;
use weft::flow::{Sink, Source};
use weft::sync::Promise;
use weft::{fiber, Backend, Switch};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; counting touches only a thread-local `Cell` (const-initialised,
// without a destructor, so it is usable at any point of a thread's life).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded from our caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded from our caller.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded from our caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

const WARM_UP: usize = 200;
const MEASURED: usize = 2000;

/// Runs `step` `WARM_UP` times, then returns how many allocations the next
/// `MEASURED` steps made on this thread.
fn allocations_in_steady_state(mut step: impl FnMut() -> weft::Result<()>) -> weft::Result<u64> {
    for _ in 0..WARM_UP {
        step()?;
    }
    let before = allocs();
    for _ in 0..MEASURED {
        step()?;
    }
    Ok(allocs() - before)
}

/// Allocations over the steady state of a client that sends `request` and
/// reads a `reply_len`-byte reply from a server fiber running `serve` on the
/// accepted loopback connection.
fn round_trips_over_tcp(
    backend: Backend,
    request: &'static [u8],
    reply_len: usize,
    serve: impl Fn(&weft::net::Stream) -> weft::Result<()>,
) -> u64 {
    weft::run_with(backend, |env| {
        let listener = env.net().listen(&"127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        Switch::run(|sw| {
            sw.fork(|| serve(&listener.accept()?.0));
            let client = env.net().connect(&addr)?;
            let mut got = vec![0u8; reply_len];
            allocations_in_steady_state(|| {
                client.write_all(request)?;
                client.read_exact(&mut got)
            })
        })
    })
    .unwrap()
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn a_tcp_round_trip_allocates_nothing(#[case] backend: Backend) {
    let n = round_trips_over_tcp(backend, &[7u8; 64], 64, |conn| {
        let mut buf = [0u8; 256];
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok(()),
                n => conn.write_all(&buf[..n])?,
            }
        }
    });
    assert_eq!(n, 0, "allocations in {MEASURED} echo round trips");
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn a_buffered_response_allocates_nothing(#[case] backend: Backend) {
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    // The server answers each 4-byte request through a buffered writer,
    // whose writer fiber sends while the server reads on.
    let n = round_trips_over_tcp(backend, b"GET\n", RESPONSE.len(), |conn| {
        weft::buf_write::with_flow(conn, |w| {
            let mut req = [0u8; 4];
            loop {
                let mut got = 0;
                while got < req.len() {
                    match conn.read(&mut req[got..])? {
                        0 => return Ok(()),
                        n => got += n,
                    }
                }
                w.bytes(RESPONSE)?;
            }
        })
    });
    assert_eq!(n, 0, "allocations in {MEASURED} buffered responses");
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn fibers_promises_and_yields_allocate_nothing(#[case] backend: Backend) {
    let n = weft::run_with(backend, |_env| {
        Switch::run(|sw| {
            allocations_in_steady_state(|| {
                let (p, r) = Promise::<usize>::new();
                sw.fork(move || {
                    std::hint::black_box(*p.wait()?);
                    Ok(())
                });
                let _ = r.resolve(1);
                fiber::yield_now()
            })
        })
    })
    .unwrap();
    assert_eq!(
        n, 0,
        "allocations in {MEASURED} fork + promise + yield rounds"
    );
}
