//! weft-core: the portable heart of weft.
//!
//! Fibers and their scheduler, switches, cancellation, synchronisation,
//! errors, capabilities, and the [`backend`] contract that io_uring, POSIX
//! and the mock backend implement. Users depend on the `weft` crate, which
//! re-exports all of this.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod backend;
pub mod buf_read;
pub mod buf_write;
pub mod cancel;
mod detached;
pub mod domain;
pub mod env;
pub mod error;
pub mod fiber;
pub mod flow;
pub mod fs;
mod local;
pub mod net;
pub mod process;
pub mod random;
mod sched;
mod stack;
mod std_io;
pub mod stdio;
pub mod switch;
pub mod sync;
pub mod systhread;
pub mod time;
pub mod trace;

pub use env::Env;
pub use error::{Error, ErrorKind, FsError, NetError, ProcessError, Result, ResultExt};
pub use sched::{run_scheduler, RunConfig};
pub use stack::{DEFAULT_STACK_SIZE, MIN_STACK_SIZE};
pub use switch::Switch;
