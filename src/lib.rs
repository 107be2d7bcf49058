//! weft: direct-style, structured-concurrency IO for Rust.
//!
//! Write ordinary synchronous Rust; run many thousands of fibers per thread.
//! Any call, however deep, may suspend on IO, a timer, a promise or a stream
//! while other fibers run. Switches bound fiber lifetimes (so fibers may
//! borrow from the scope that forks them), failures cancel siblings, and
//! every suspension point is a cancellation point.
//!
//! ```
//! use weft::{fiber, traceln};
//!
//! weft::mock::run(|_env| {
//!     let (a, b) = fiber::pair(|| Ok(1), || Ok(2))?;
//!     traceln!("{a} + {b} = {}", a + b);
//!     Ok(())
//! })
//! .unwrap();
//! ```
//!
//! Most programs start with `use weft::prelude::*;` (see [`prelude`]): the
//! flow traits whose methods sockets and files need, and the common types.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod prelude;

pub use weft_core::{
    backend, buf_read, buf_write, cancel, domain, env, error, fiber, flow, fs, net, process,
    random, stdio, switch, sync, systhread, time, trace, traceln, Env, Error, ErrorKind, FsError,
    NetError, ProcessError, Result, ResultExt, RunConfig, Switch,
};

/// A backend weft can run on.
///
/// [`run`] picks one at run time ([`Backend::from_env`]): `WEFT_BACKEND`
/// (`uring`, `posix` or `mock`) if set, else io_uring where the kernel
/// allows it and the io_uring backend provides every capability, else
/// POSIX. [`run_with`] takes one explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Linux io_uring: one ring per scheduler thread, submissions batched
    /// once per scheduler turn. Needs Linux 5.15 or later with io_uring
    /// allowed (see [`weft_uring::probe`]); every capability runs on it.
    Uring,
    /// Readiness-based IO on epoll: the fallback, and
    /// `WEFT_BACKEND=posix`.
    Posix,
    /// The deterministic mock backend.
    Mock,
}

impl Backend {
    /// Parses a `WEFT_BACKEND` value: `uring`, `posix` or `mock`.
    pub fn from_name(name: &str) -> Result<Backend> {
        match name.trim().to_ascii_lowercase().as_str() {
            "uring" | "io_uring" | "io-uring" => Ok(Backend::Uring),
            "posix" | "epoll" => Ok(Backend::Posix),
            "mock" => Ok(Backend::Mock),
            other => Err(Error::msg(
                ErrorKind::InvalidInput,
                format!("unknown backend {other:?} (expected uring, posix or mock)"),
            )
            .context("reading WEFT_BACKEND")),
        }
    }

    /// The backend `run` picks: `WEFT_BACKEND` if set, else
    /// [`Backend::best`].
    ///
    /// `WEFT_BACKEND=uring` fails here, with the reason, when io_uring
    /// cannot start on this machine (kernel too old, `io_uring_setup`
    /// refused by seccomp, the locked-memory limit or the sysctl
    /// `kernel.io_uring_disabled`).
    pub fn from_env() -> Result<Backend> {
        match std::env::var("WEFT_BACKEND") {
            Ok(v) if !v.trim().is_empty() => {
                let b = Backend::from_name(&v)?;
                if b == Backend::Uring {
                    weft_uring::probe().map_err(|e| {
                        e.context("WEFT_BACKEND=uring asks for io_uring, which cannot start here")
                    })?;
                }
                Ok(b)
            }
            _ => Ok(Backend::best()),
        }
    }

    /// The best backend for this machine: io_uring if [`weft_uring::probe`]
    /// succeeds and the io_uring backend provides every capability of the
    /// `Env`; otherwise POSIX.
    pub fn best() -> Backend {
        if weft_uring::MISSING_CAPABILITIES.is_empty() && weft_uring::probe().is_ok() {
            Backend::Uring
        } else {
            Backend::Posix
        }
    }
}

/// Runs `main` on the backend chosen at run time (see [`Backend::from_env`]).
///
/// ```
/// weft::run(|env| {
///     weft::traceln!("running on {}", env.backend_id());
///     Ok(())
/// })
/// .unwrap();
/// ```
pub fn run<T>(main: impl FnOnce(&Env) -> Result<T>) -> Result<T> {
    run_with(Backend::from_env()?, main)
}

/// Runs `main` on the given backend.
///
/// For programs that must not run on some backend, or tests that run the
/// same code on each; [`run`] leaves the choice to `WEFT_BACKEND` and the
/// machine.
///
/// ```
/// use weft::{Backend, ErrorKind, ProcessError};
///
/// let id = weft::run_with(Backend::Posix, |env| Ok(env.backend_id())).unwrap();
/// assert_eq!(id, "posix");
///
/// // On the mock backend, programs are simulated: `false` is a built-in,
/// // and `run` fails on its non-zero exit as it would on a real backend.
/// let err = weft::run_with(Backend::Mock, |env| env.process_mgr().run(&["false"])).unwrap_err();
/// assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::Exited(1)));
/// ```
pub fn run_with<T>(backend: Backend, main: impl FnOnce(&Env) -> Result<T>) -> Result<T> {
    match backend {
        Backend::Posix => weft_posix::run(&RunConfig::default(), main),
        Backend::Mock => weft_mock::run(main),
        Backend::Uring => weft_uring::run(&RunConfig::default(), main),
    }
}

/// The deterministic mock backend: virtual time, deadlock detection and
/// captured traces, for tests.
pub mod mock {
    pub use weft_mock::{
        run, run_traced, Action, Config, Conn, CopyMethod, Flow, Handler, Invocation,
        ListeningSocket, MemFs, MemNet, Net, OpenResources, Programs,
    };
}

/// The io_uring backend's own API: probing, ring sizes and counters, and
/// the low-level fiber-suspending operations.
pub mod uring {
    pub use weft_uring::{
        ops, probe, run, run_with_options, setup, stats, RingOptions, RingStats, Setup,
        MISSING_CAPABILITIES,
    };
}

/// The README's examples, compiled and run as doc-tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The guide (`doc/guide.md`), its examples compiled and run as doc-tests.
#[doc = include_str!("../doc/guide.md")]
#[cfg(doctest)]
pub struct GuideDoctests;
