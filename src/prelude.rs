//! The names almost every weft program needs, in one import:
//!
//! ```
//! use weft::prelude::*;
//! ```
//!
//! It brings in the flow traits, whose methods (`read`, `write_all`,
//! `read_all`, `shutdown`, ...) are only callable with the trait in scope,
//! [`ResultExt`] for `.context(...)` on any `Result`, and the types that
//! appear in most signatures: [`Env`], [`Switch`], [`Result`], [`Error`] and
//! [`ErrorKind`].
//!
//! It deliberately brings in no `Stream`: `weft::net::Stream` (a socket) and
//! `weft::sync::Stream` (a queue between fibers) share that name, so name
//! them through their modules. Nor does it bring in `std::io::Read` or
//! `Write`: sockets and files implement those too, and with both sets of
//! traits in scope a call such as `write_all` would be ambiguous.
//!
//! ```compile_fail
//! use weft::prelude::*;
//! // No `Stream` here: say `weft::net::Stream` or `weft::sync::Stream`.
//! let _unnamed: Option<Stream<u8>> = None;
//! ```
//!
//! ```
//! use weft::net;
//! use weft::prelude::*;
//!
//! fn greet(conn: &net::Stream) -> Result<()> {
//!     conn.write_all(b"hello\n").context("greeting")?;
//!     conn.shutdown(ShutdownKind::Write)
//! }
//!
//! weft::run_with(weft::Backend::Mock, |env: &Env| {
//!     let (a, b) = env.net().socketpair()?;
//!     Switch::run(|sw| {
//!         sw.fork(|| greet(&a));
//!         assert_eq!(b.read_all()?, "hello\n");
//!         Ok(())
//!     })
//! })
//! .unwrap();
//! ```

pub use weft_core::flow::{Shutdown, ShutdownKind, Sink, Source};
pub use weft_core::{Env, Error, ErrorKind, Result, ResultExt, Switch};
