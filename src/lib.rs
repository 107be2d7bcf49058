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
    backend, cancel, env, error, fiber, flow, switch, sync, time, trace, traceln, Env, Error, ErrorKind,
    FsError, NetError, ProcessError, Result, ResultExt, RunConfig, Switch,
};

/// The deterministic mock backend: virtual time, deadlock detection and
/// captured traces, for tests.
pub mod mock {
    pub use weft_mock::{run, run_traced, Config};
}
