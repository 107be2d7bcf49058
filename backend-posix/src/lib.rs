//! weft's POSIX backend: readiness-based IO on `polling` (epoll on Linux).
//!
//! Fibers block on file descriptors through [`Registration`]: a
//! nonblocking operation that would block waits for readiness, then
//! retries. The driver sleeps in `epoll_wait` until IO is ready, the next
//! timer is due, or another thread wakes it (an `eventfd` write, which is
//! async-signal-safe).
//!
//! This is the fallback backend where io_uring is unavailable, and the one
//! `WEFT_BACKEND=posix` selects. On top of the readiness layer it provides
//! the whole `Env`: sockets (TCP, UDP, Unix) wait for readiness; file
//! operations and name lookups, which have no readiness to wait for, run on
//! [system threads](weft_core::systhread), suspending only the calling
//! fiber; child processes are waited for through their pidfd (or by polling
//! where there is none).
//!
//! ```
//! use std::time::Duration;
//! weft_posix::run(&weft_core::RunConfig::default(), |env| {
//!     env.mono_clock().sleep(Duration::from_millis(1))?;
//!     assert_eq!(env.backend_id(), "posix");
//!     Ok(())
//! })
//! .unwrap();
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod driver;
mod fs;
mod net;
mod process;
mod reactor;

pub use reactor::{Interest, Registration};

#[doc(hidden)]
pub use fs::force_walker as force_fs_walker;

use weft_core::{Env, Result, RunConfig};

/// Runs `main` on the POSIX backend on this thread.
pub fn run<T>(config: &RunConfig, main: impl FnOnce(&Env) -> Result<T>) -> Result<T> {
    let driver = driver::PosixDriver::new()?;
    let _installed = reactor::install(driver.reactor());
    let (fs, cwd) = fs::dirs();
    let env = Env::for_backend("posix")
        .with_fs(fs, cwd)
        .with_secure_random(weft_core::random::SecureRandom::new(std::sync::Arc::new(
            OsRandom,
        )))
        .with_domain_mgr(weft_core::domain::DomainMgr::new(std::sync::Arc::new(
            PosixDomains(config.clone()),
        )))
        .with_net(weft_core::net::Net::new(std::sync::Arc::new(net::PosixNet)))
        .with_process_mgr(weft_core::process::ProcessMgr::new(std::sync::Arc::new(
            process::PosixProcessMgr::new(),
        )));
    weft_core::run_scheduler(Box::new(driver), config, || main(&env))
}

/// Starts domains on new threads, each with its own POSIX scheduler.
struct PosixDomains(RunConfig);

impl weft_core::domain::DomainBackend for PosixDomains {
    fn spawn(&self, main: weft_core::domain::DomainMain) -> Result<()> {
        let config = self.0.clone();
        std::thread::Builder::new()
            .name("weft-domain".into())
            .spawn(move || {
                let r = run(&config, |_env| {
                    main();
                    Ok(())
                });
                if let Err(e) = r {
                    eprintln!("weft: domain failed to run: {e}");
                }
            })
            .map(|_| ())
            .map_err(|e| {
                weft_core::Error::with_source(weft_core::ErrorKind::Io, e)
                    .context("starting a domain thread")
            })
    }
}

/// The kernel's random generator (`getrandom(2)`).
struct OsRandom;

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
                return Err(weft_core::Error::from(e).context("reading random bytes"));
            }
            buf = &mut buf[n as usize..];
        }
        Ok(())
    }
}
