//! Domains: running work on other OS threads, each with its own scheduler.
//!
//! Fibers never migrate between threads. To use another core, hand a
//! `Send` closure to [`DomainMgr::run`]: it runs on a new OS thread with its
//! own scheduler and backend, while the calling fiber waits (other fibers
//! keep running). Cancelling the caller cancels the work in the other
//! domain, and the caller still waits for it to stop, so nothing outlives
//! its scope. [`ExecutorPool`] keeps a set of domains busy with jobs.
//!
//! ```
//! use weft::fiber;
//!
//! fn sum_to(n: u64) -> u64 {
//!     (1..=n).sum()
//! }
//!
//! weft::run(|env| {
//!     let dm = env.domain_mgr();
//!     let (a, b) = fiber::pair(
//!         || dm.run(|| Ok(sum_to(100_000))),
//!         || dm.run(|| Ok(sum_to(50_000))),
//!     )?;
//!     assert_eq!((a, b), (5_000_050_000, 1_250_025_000));
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::sync::{Arc, Mutex};

use crate::backend::ExternalWork;
use crate::cancel::protect;
use crate::error::{Error, ErrorKind, Result};
use crate::fiber;
use crate::sync::{Promise, Resolver};

/// A body to run in a new domain.
pub type DomainMain = Box<dyn FnOnce() + Send>;

/// What a backend provides to start domains.
pub trait DomainBackend: Send + Sync + 'static {
    /// Starts a new OS thread running a fresh scheduler on this backend,
    /// and runs `main` as its main fiber.
    fn spawn(&self, main: DomainMain) -> Result<()>;
}

/// The capability to start domains.
#[derive(Clone)]
pub struct DomainMgr {
    backend: Arc<dyn DomainBackend>,
}

impl std::fmt::Debug for DomainMgr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DomainMgr")
    }
}

type Slot<T> = Mutex<Option<Result<T>>>;

fn take<T>(p: &Promise<Slot<T>>) -> Result<T> {
    match p
        .peek()
        .and_then(|m| m.lock().unwrap_or_else(|e| e.into_inner()).take())
    {
        Some(r) => r,
        None => Err(Error::msg(ErrorKind::Closed, "domain result already taken")),
    }
}

impl DomainMgr {
    /// A `DomainMgr` backed by `backend` (backends use this).
    pub fn new(backend: Arc<dyn DomainBackend>) -> DomainMgr {
        DomainMgr { backend }
    }

    /// Runs `f` in a new domain and returns its result. If the calling
    /// fiber is cancelled, `f`'s domain is cancelled too, and this waits for
    /// it to finish before returning. A panic in `f` becomes
    /// `ErrorKind::Panic`.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let (result, set_result) = Promise::<Slot<T>>::new();
        let (cancel, set_cancel) = Promise::<Error>::new();
        let external = ExternalWork::begin();
        self.backend.spawn(Box::new(move || {
            let r = run_cancellable(&cancel, f);
            let _ = set_result.resolve(Mutex::new(Some(r)));
            drop(external);
        }))?;
        await_forwarding_cancel(&result, &set_cancel)
    }
}

/// Runs `f` in the current (new) domain until it finishes or `cancel` is
/// resolved, whichever comes first.
fn run_cancellable<T>(cancel: &Promise<Error>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let guarded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fiber::first(
            || {
                let reason = cancel.wait()?.clone();
                Err(Error::cancelled(reason))
            },
            f,
        )
    }));
    match guarded {
        Ok(r) => r,
        Err(p) => Err(
            Error::msg(ErrorKind::Panic, crate::switch::panic_message(&p))
                .context("in another domain"),
        ),
    }
}

/// Waits for `result`; if this fiber is cancelled meanwhile, passes the
/// cancellation on through `set_cancel` and keeps waiting (protected).
fn await_forwarding_cancel<T>(
    result: &Promise<Slot<T>>,
    set_cancel: &Resolver<Error>,
) -> Result<T> {
    match result.wait() {
        Ok(_) => take(result),
        Err(e) if e.is_cancelled() => {
            let reason = e.cancel_reason().cloned().unwrap_or_else(|| e.clone());
            let _ = set_cancel.resolve(reason);
            let _ = protect(|| result.wait().map(|_| ()));
            // The other side's outcome is dropped: this fiber was cancelled.
            Err(e)
        }
        Err(e) => Err(e),
    }
}

mod pool;
pub use pool::ExecutorPool;
