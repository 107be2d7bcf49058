//! Waiting for a change of state in the in-memory network.
//!
//! Every blocking operation of the mock network (read, write, accept,
//! connect on a full backlog, `recv_from`) has the same shape: look at some
//! state behind a `std::sync::Mutex`; if the operation can complete, do it
//! under the lock and return; otherwise suspend the fiber until someone
//! changes that state, then look again. [`wait_until`] is that loop, built on
//! the backend contract (`weft_core::backend::suspend_with_cancel`) exactly
//! as `weft_core::sync::Stream` is:
//!
//! * The waiting fiber's [`Resumer`] goes into a [`Waiters`] list inside the
//!   locked state. Whoever changes the state wakes *all* waiters of that list
//!   ([`Waiters::wake_all`]); each re-checks. Waking everyone means a wake-up
//!   is never lost to a waiter that was cancelled after it was chosen.
//! * The state is checked a second time inside `register`, under the lock,
//!   so a change made by another thread between the first check and the
//!   registration is not missed. If the operation can complete then, it
//!   completes there and the fiber is resumed at once.
//! * The cancel hook takes the lock and removes its own entry. If the entry
//!   is still there, nobody has woken the fiber, so it fails with
//!   `Cancelled` having done nothing. If the entry is gone, a wake-up won the
//!   race: the fiber resumes normally and simply checks again (and fails
//!   with `Cancelled` at its next suspension if it still cannot complete).
//!
//! Because an operation only ever changes state in the `poll` function, under
//! the lock, and only when it completes, a cancelled operation has no effect:
//! a cancelled read consumed no bytes, a cancelled write wrote none, a
//! cancelled accept took no connection.
//!
//! ```
//! use std::time::Duration;
//! use weft::flow::{Sink, Source};
//!
//! weft::mock::run(|env| {
//!     let (a, b) = env.net().socketpair()?;
//!     let mut buf = [0u8; 8];
//!     let err = weft::time::with_timeout(env.mono_clock(), Duration::from_secs(1), || {
//!         b.read(&mut buf)
//!     })
//!     .unwrap_err();
//!     assert!(err.is_timeout());
//!     a.write_all(b"kept")?;
//!     let n = b.read(&mut buf)?;
//!     assert_eq!(&buf[..n], b"kept");
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};

use weft_core::backend::{suspend_with_cancel, Resumer};
use weft_core::{Error, Result};

/// Fibers waiting for one kind of change (bytes to read, room to write, a
/// connection to accept, …), oldest first.
#[derive(Default)]
pub(crate) struct Waiters(Vec<Resumer<()>>);

impl Waiters {
    /// Wakes every waiter; each re-checks the state it waits on.
    pub(crate) fn wake_all(&mut self) {
        for r in self.0.drain(..) {
            // A waiter whose wait was already claimed (by its cancel hook)
            // is simply forgotten.
            let _ = r.resume(());
        }
    }

    /// Removes the entry of the wait `r` belongs to; true if it was there.
    fn remove(&mut self, r: &Resumer<()>) -> bool {
        match self.0.iter().position(|x| x.same_wait(r)) {
            Some(i) => {
                self.0.remove(i);
                true
            }
            None => false,
        }
    }
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} waiting", self.0.len())
    }
}

/// State that has [`Waiters`] lists, found again by a key.
pub(crate) trait WaitState {
    /// Names one waiter list (for instance "readers of pipe 0").
    type Key: Copy;

    /// The list `key` names, or `None` if it no longer exists (its owner was
    /// closed, and woke every waiter as it went).
    fn waiters(&mut self, key: Self::Key) -> Option<&mut Waiters>;
}

/// What one check of the state found.
pub(crate) enum Poll<T, K> {
    /// The operation completed with this value.
    Ready(T),
    /// The operation must wait on the list named by this key.
    Pending(K),
}

/// Locks `m`, ignoring poisoning: every critical section in the mock network
/// is a handful of queue operations that cannot leave the state torn.
pub(crate) fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `poll` under the lock until it is ready, suspending the fiber in
/// between (see the [module docs](self)). `what` names the wait in deadlock
/// reports. An error from `poll` ends the wait.
pub(crate) fn wait_until<S, T>(
    m: &Mutex<S>,
    what: &'static str,
    mut poll: impl FnMut(&mut S) -> Result<Poll<T, S::Key>>,
) -> Result<T>
where
    S: WaitState,
{
    loop {
        if let Poll::Ready(v) = poll(&mut lock(m))? {
            return Ok(v);
        }
        // Set by `register`, read by the hook: both run on this fiber's
        // thread, never at the same time.
        let key: Cell<Option<S::Key>> = Cell::new(None);
        let mut early: Option<Result<T>> = None;
        suspend_with_cancel(
            what,
            |r| {
                let mut st = lock(m);
                match poll(&mut st) {
                    Ok(Poll::Pending(k)) => {
                        if let Some(w) = st.waiters(k) {
                            key.set(Some(k));
                            w.0.push(r);
                            return;
                        }
                        // The list is gone: look again at once.
                    }
                    done => {
                        early = Some(done.map(|p| match p {
                            Poll::Ready(v) => v,
                            Poll::Pending(_) => unreachable!("matched above"),
                        }));
                    }
                }
                drop(st);
                let _ = r.resume(());
            },
            |r, reason| {
                let Some(k) = key.get() else { return };
                let mut st = lock(m);
                let removed = st.waiters(k).is_some_and(|w| w.remove(r));
                drop(st);
                if removed {
                    let _ = r.fail(Error::cancelled(reason.clone()));
                }
            },
        )?;
        if let Some(done) = early {
            return done;
        }
    }
}
