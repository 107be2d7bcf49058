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

#![deny(unsafe_op_in_unsafe_fn)]

pub use weft_core::{
    backend, buf_read, buf_write, cancel, domain, env, error, fiber, flow, fs, net, process,
    random, stdio, switch, sync, systhread, time, trace, traceln, Env, Error, ErrorKind, FsError,
    NetError, ProcessError, Result, ResultExt, RunConfig, Switch,
};

/// A backend weft can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Linux io_uring (not available yet: selecting it is an error).
    Uring,
    /// Readiness-based IO on epoll (`polling`).
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

    /// The backend `run` picks: `WEFT_BACKEND` if set, else the best this
    /// machine supports (today: POSIX).
    pub fn from_env() -> Result<Backend> {
        match std::env::var("WEFT_BACKEND") {
            Ok(v) if !v.trim().is_empty() => Backend::from_name(&v),
            _ => Ok(Backend::Posix),
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
pub fn run_with<T>(backend: Backend, main: impl FnOnce(&Env) -> Result<T>) -> Result<T> {
    match backend {
        Backend::Posix => weft_posix::run(&RunConfig::default(), main),
        Backend::Mock => weft_mock::run(main),
        Backend::Uring => Err(Error::msg(
            ErrorKind::InvalidInput,
            "the io_uring backend is not available in this build yet; use WEFT_BACKEND=posix",
        )),
    }
}

/// The deterministic mock backend: virtual time, deadlock detection and
/// captured traces, for tests.
pub mod mock {
    pub use weft_mock::{
        run, run_traced, Action, Config, Conn, CopyMethod, Flow, Handler, ListeningSocket, MemFs,
        MemNet, Net, OpenResources,
    };
}
