//! weft's io_uring backend (Linux).
//!
//! Each scheduler thread owns one io_uring. A fiber's IO operation is one
//! SQE: the fiber queues it and suspends; the scheduler submits every SQE
//! queued during a turn in one `io_uring_enter`, which also collects the
//! completions and — when nothing is runnable — waits for the next one or
//! for the next timer. Other threads wake it through an eventfd.
//!
//! Two layers, as in every weft backend:
//!
//! - [`ops`]: file descriptors ([`ops::Fd`]) and fiber-suspending
//!   operations on them, with the cancellation rule that makes stack
//!   buffers safe: a cancelled operation submits `IORING_OP_ASYNC_CANCEL`
//!   and its fiber still waits for the original completion, so the kernel
//!   never writes into memory that has been freed, and a result that
//!   arrived anyway (bytes read, an accepted socket) is kept for the next
//!   read or accept on that fd instead of being lost or leaked.
//! - the [`Env`] on top: [`run`] hands `main` the network, the filesystem
//!   (`fs` and `cwd`) and child processes (waited for through pidfds polled
//!   on the ring), all through the ring; domains (each a new thread with
//!   its own ring), the kernel's random generator and the standard
//!   streams. `flow::copy` between two of this backend's files, sockets or
//!   pipes moves the bytes with `IORING_OP_SPLICE` (see `copy` in the
//!   source; [`RingStats::spliced_bytes`] counts them).
//!
//! Every capability of the [`Env`] runs on io_uring
//! ([`MISSING_CAPABILITIES`] is empty), so `weft::run` chooses this backend
//! wherever [`probe`] succeeds.
//!
//! ```
//! # if weft_uring::probe().is_err() { return; }
//! use std::time::Duration;
//!
//! weft_uring::run(&weft_core::RunConfig::default(), |env| {
//!     assert_eq!(env.backend_id(), "uring");
//!     env.mono_clock().sleep(Duration::from_millis(1))?;
//!     let (a, b) = env.net().socketpair()?;
//!     weft_core::flow::Sink::write_all(&a, b"ping")?;
//!     let mut buf = [0u8; 4];
//!     weft_core::flow::Source::read_exact(&b, &mut buf)?;
//!     assert_eq!(&buf, b"ping");
//!     // One ring per thread; its counters show the batching.
//!     let stats = weft_uring::stats()?;
//!     assert!(stats.ops >= 2);
//!     Ok(())
//! })
//! .unwrap();
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod copy;
mod driver;
mod fs;
mod net;
pub mod ops;
mod probe;
mod process;
mod ring;

use std::rc::Rc;
use std::sync::Arc;

pub use probe::probe;
pub use ring::{RingOptions, RingStats, Setup};
#[doc(hidden)]
pub use weft_posix::force_fs_walker;

use weft_core::{Env, Result, RunConfig};

/// Capabilities of the [`Env`] that this backend does not provide yet:
/// using them under `run` fails with an error naming the backend. While
/// this is not empty, `weft::Backend::from_env` prefers POSIX. (Empty: the
/// backend provides everything.)
pub const MISSING_CAPABILITIES: &[&str] = &[];

/// Runs `main` on the io_uring backend on this thread, with default ring
/// sizes. Fails with a clear error (see [`probe`]) if the kernel or the
/// sandbox does not allow io_uring.
pub fn run<T>(config: &RunConfig, main: impl FnOnce(&Env) -> Result<T>) -> Result<T> {
    run_with_options(config, &RingOptions::default(), main)
}

/// Like [`run`], with explicit ring sizes (domains started from `main`
/// use the same).
///
/// ```
/// # if weft_uring::probe().is_err() { return; }
/// use weft_uring::RingOptions;
///
/// // A tiny submission queue still runs any number of operations: a full
/// // queue is submitted early, never refused.
/// let small = RingOptions { sq_entries: 4, cq_entries: 8 };
/// weft_uring::run_with_options(&weft_core::RunConfig::default(), &small, |env| {
///     let (a, b) = env.net().socketpair()?;
///     weft_core::flow::Sink::write_all(&a, &[7u8; 100])?;
///     drop(a);
///     assert_eq!(weft_core::flow::Source::read_all(&b)?.len(), 100);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub fn run_with_options<T>(
    config: &RunConfig,
    ring_options: &RingOptions,
    main: impl FnOnce(&Env) -> Result<T>,
) -> Result<T> {
    probe()?;
    let (uring, setup) = ring::build(ring_options).map_err(probe::setup_error)?;
    let ring = Rc::new(ring::Ring::new(uring, setup));
    // Dropped after the scheduler: the ring outlives every fiber.
    let _installed = ring::install(ring.clone());
    let driver = driver::UringDriver::new(ring)?;
    let (fs, cwd) = fs::dirs();
    let env = Env::for_backend("uring")
        .with_fs(fs, cwd)
        .with_secure_random(weft_core::random::SecureRandom::new(Arc::new(
            weft_posix::unix::OsRandom,
        )))
        .with_domain_mgr(weft_core::domain::DomainMgr::new(Arc::new(UringDomains {
            config: config.clone(),
            ring: ring_options.clone(),
        })))
        .with_net(weft_core::net::Net::new(Arc::new(net::UringNet)))
        .with_process_mgr(weft_core::process::ProcessMgr::new(Arc::new(
            process::UringProcessMgr::new(),
        )));
    weft_core::run_scheduler(Box::new(driver), config, || main(&env))
}

/// The counters of the current thread's ring.
///
/// Fails outside [`run`].
pub fn stats() -> Result<RingStats> {
    Ok(ring::current()?.stats())
}

/// The task-work mode the current thread's ring was set up with.
///
/// Fails outside [`run`].
pub fn setup() -> Result<Setup> {
    Ok(ring::current()?.setup())
}

/// Starts domains on new threads, each with its own ring.
struct UringDomains {
    config: RunConfig,
    ring: RingOptions,
}

impl weft_core::domain::DomainBackend for UringDomains {
    fn spawn(&self, main: weft_core::domain::DomainMain) -> Result<()> {
        let config = self.config.clone();
        let ring = self.ring.clone();
        weft_posix::unix::spawn_domain_thread(move || {
            run_with_options(&config, &ring, |_env| {
                main();
                Ok(())
            })
        })
    }
}
