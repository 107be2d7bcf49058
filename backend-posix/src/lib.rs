//! weft's POSIX backend: readiness-based IO on epoll.
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
mod epoll;
mod fs;
mod net;
mod process;
mod reactor;
pub mod unix;

pub use reactor::{Interest, Registration};

#[doc(hidden)]
pub use unix::fs::force_walker as force_fs_walker;

use weft_core::{Env, Result, RunConfig};

/// Runs `main` on the POSIX backend on this thread.
pub fn run<T>(config: &RunConfig, main: impl FnOnce(&Env) -> Result<T>) -> Result<T> {
    let driver = driver::PosixDriver::new()?;
    let _installed = reactor::install(driver.reactor());
    let (fs, cwd) = fs::dirs();
    let env = Env::for_backend("posix")
        .with_fs(fs, cwd)
        .with_secure_random(weft_core::random::SecureRandom::new(std::sync::Arc::new(
            unix::OsRandom,
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
        unix::spawn_domain_thread(move || {
            run(&config, |_env| {
                main();
                Ok(())
            })
        })
    }
}
