//! Plain-syscall helpers shared with the io_uring backend (`weft-uring`).
//!
//! Both Linux backends need the same plumbing where io_uring has no
//! opcode, or where the work is not IO at all: the `*at` wrappers and
//! directory listing ([`fs`]), child processes reaped through pidfds
//! ([`process`]), socket addresses and name resolution ([`net`]), the
//! kernel's random generator and domain threads (here). What differs
//! between the backends — how a fiber waits for a descriptor — is a
//! parameter of these helpers, so each piece of logic has one home.
//!
//! These are building blocks for weft's backends, not an application API:
//! applications get the same capabilities from the [`Env`](weft_core::Env).

pub mod fs;
pub mod net;
pub mod process;

use weft_core::{Error, ErrorKind, Result};

/// Starts a domain on a new thread named `weft-domain`: `run` runs the
/// domain's scheduler there (and its main fiber); an error it returns is
/// printed, as a detached thread has no one else to report to.
pub fn spawn_domain_thread(run: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name("weft-domain".into())
        .spawn(move || {
            if let Err(e) = run() {
                eprintln!("weft: domain failed to run: {e}");
            }
        })
        .map(|_| ())
        .map_err(|e| Error::with_source(ErrorKind::Io, e).context("starting a domain thread"))
}

/// The kernel's random generator (`getrandom(2)`).
#[derive(Debug, Default)]
pub struct OsRandom;

impl weft_core::random::RandomBackend for OsRandom {
    fn fill(&self, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
            let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::from(e).context("reading random bytes"));
            }
            buf = &mut buf[n as usize..];
        }
        Ok(())
    }
}
