//! Readiness waits on file descriptors.
//!
//! A [`Registration`] ties a nonblocking fd to this thread's poller. A fiber
//! that gets `EAGAIN` calls [`Registration::wait`] and is resumed when the
//! fd becomes ready (or fails with `Cancelled` if its context is cancelled
//! first).
//!
//! An fd is registered once, edge-triggered, for both directions, so a wait
//! costs no system call (one-shot interest would need an `epoll_ctl` to
//! re-arm it before every wait: one more system call per request of a
//! server). An edge that arrives while nobody waits in its direction is
//! remembered, and the next wait in that direction returns at once and
//! forgets it: the caller retries its operation, and waits for real if it
//! gets `EAGAIN` again. No edge can be missed between a caller's `EAGAIN`
//! and its wait: events are only dispatched by this thread's scheduler,
//! which does not run while the caller goes from one to the other.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use slotmap::{DefaultKey, Key, KeyData, SlotMap};
use smallvec::SmallVec;

use crate::epoll::{Epoll, Ready};
use weft_core::backend::{suspend_with_cancel, Resumer};
use weft_core::{Error, ErrorKind, Result};

/// Which readiness to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// The fd can be read (or accepted on) without blocking.
    Readable,
    /// The fd can be written (or a connect has finished) without blocking.
    Writable,
}

/// A direction's waiters. Nearly always one fiber, kept inline: the edge
/// that wakes it takes the list, and a `Vec` would then allocate afresh at
/// the next wait (one allocation per request of a server).
type WaitList = SmallVec<[Resumer<()>; 1]>;

#[derive(Default)]
struct Waiters {
    readers: WaitList,
    writers: WaitList,
    /// An edge arrived in this direction while nobody waited for it.
    read_edge: bool,
    write_edge: bool,
    /// A read found the receive queue empty (it returned less than asked)
    /// and no edge has arrived since: the next read waits first instead of
    /// trying a `recv` that would fail with `EAGAIN`.
    read_drained: bool,
    /// The peer has finished sending (or the socket failed): reads never
    /// block again, so the fd is never taken for drained.
    read_closed: bool,
}

pub(crate) struct Reactor {
    poller: Arc<Epoll>,
    /// Indexed by the registration key (the poller's event key).
    sources: RefCell<SlotMap<DefaultKey, (RawFd, Waiters)>>,
    /// Fibers waiting for readiness, over all sources. With none, a
    /// non-blocking poll has nothing to find and is skipped.
    waiting: Cell<usize>,
}

thread_local! {
    static REACTOR: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
}

/// Clears the thread's reactor when dropped.
pub(crate) struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        REACTOR.with(|r| r.borrow_mut().take());
    }
}

pub(crate) fn install(r: Rc<Reactor>) -> Installed {
    REACTOR.with(|slot| *slot.borrow_mut() = Some(r));
    Installed
}

fn current() -> Result<Rc<Reactor>> {
    REACTOR.with(|r| r.borrow().clone()).ok_or_else(|| {
        Error::msg(
            ErrorKind::InvalidInput,
            "no POSIX reactor on this thread (not running on the posix backend)",
        )
    })
}

impl Reactor {
    pub(crate) fn new(poller: Arc<Epoll>) -> Reactor {
        Reactor {
            poller,
            sources: RefCell::new(SlotMap::new()),
            waiting: Cell::new(0),
        }
    }

    /// True if some fiber waits for an fd to become ready.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiting.get() > 0
    }

    pub(crate) fn poller(&self) -> &Epoll {
        &self.poller
    }

    /// Wakes the waiters an edge is for, or remembers the edge for the
    /// next wait in its direction.
    pub(crate) fn dispatch(&self, ev: Ready) {
        if ev.read_closed {
            if let Some((_, w)) = self.sources.borrow_mut().get_mut(slot_key(ev.key)) {
                w.read_closed = true;
            }
        }
        if ev.readable {
            self.edge(ev.key, Interest::Readable);
        }
        if ev.writable {
            self.edge(ev.key, Interest::Writable);
        }
    }

    fn edge(&self, key: usize, interest: Interest) {
        let woken = {
            let mut sources = self.sources.borrow_mut();
            let Some((_, w)) = sources.get_mut(slot_key(key)) else {
                return;
            };
            if interest == Interest::Readable {
                w.read_drained = false;
            }
            let (waiters, edge) = w.side(interest);
            if waiters.is_empty() {
                *edge = true;
                return;
            }
            std::mem::take(waiters)
        };
        self.waiting.set(self.waiting.get() - woken.len());
        let mut delivered = false;
        for r in woken {
            delivered |= r.resume(()).is_ok();
        }
        if !delivered {
            // Every waiter had been cancelled already: keep the edge, or
            // the next wait would sleep through data that is there.
            if let Some((_, w)) = self.sources.borrow_mut().get_mut(slot_key(key)) {
                *w.side(interest).1 = true;
            }
        }
    }
}

impl Waiters {
    fn side(&mut self, interest: Interest) -> (&mut WaitList, &mut bool) {
        match interest {
            Interest::Readable => (&mut self.readers, &mut self.read_edge),
            Interest::Writable => (&mut self.writers, &mut self.write_edge),
        }
    }
}

/// A nonblocking file descriptor registered with this thread's poller.
///
/// Drop it before closing the fd.
pub struct Registration {
    reactor: Rc<Reactor>,
    key: usize,
    fd: RawFd,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("fd", &self.fd)
            .field("key", &self.key)
            .finish()
    }
}

impl Registration {
    /// Registers `fd` (which must be nonblocking) with the current thread's
    /// poller.
    ///
    /// # Safety
    /// `fd` must be an open descriptor and stay open until the registration
    /// is dropped.
    pub unsafe fn new(fd: RawFd) -> Result<Registration> {
        let reactor = current()?;
        let slot = reactor
            .sources
            .borrow_mut()
            .insert((fd, Waiters::default()));
        let key = event_key(slot);
        // SAFETY: forwarded from our caller: fd is open and outlives the
        // registration, whose Drop deletes it from the poller.
        let added = reactor.poller.add(fd, key);
        if let Err(e) = added {
            reactor.sources.borrow_mut().remove(slot);
            return Err(Error::from(e).context(format!(
                "registering fd {fd} with epoll (edge-triggered, both directions)"
            )));
        }
        Ok(Registration { reactor, key, fd })
    }

    /// Waits until the fd is ready for `interest`.
    pub fn wait(&self, interest: Interest) -> Result<()> {
        if !weft_core::backend::in_runtime() {
            // Only this thread's scheduler polls the fd: blocking here
            // would never end.
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                "waiting for fd readiness outside the weft runtime that registered it",
            ));
        }
        let what = match interest {
            Interest::Readable => "fd readable",
            Interest::Writable => "fd writable",
        };
        {
            let mut sources = self.reactor.sources.borrow_mut();
            let (_, w) = sources.get_mut(slot_key(self.key)).expect("registered");
            if std::mem::take(w.side(interest).1) {
                // Ready since the caller last looked, perhaps: let it retry.
                // Still a cancellation point, as every wait is.
                drop(sources);
                return weft_core::fiber::check();
            }
        }
        suspend_with_cancel(
            what,
            |r| {
                let mut sources = self.reactor.sources.borrow_mut();
                let (_, w) = sources.get_mut(slot_key(self.key)).expect("registered");
                w.side(interest).0.push(r);
                self.reactor.waiting.set(self.reactor.waiting.get() + 1);
            },
            |r, reason| {
                let mut sources = self.reactor.sources.borrow_mut();
                if let Some((_, w)) = sources.get_mut(slot_key(self.key)) {
                    let before = w.readers.len() + w.writers.len();
                    w.readers.retain(|x| !x.same_wait(r));
                    w.writers.retain(|x| !x.same_wait(r));
                    let gone = before - (w.readers.len() + w.writers.len());
                    self.reactor.waiting.set(self.reactor.waiting.get() - gone);
                }
                drop(sources);
                let _ = r.fail(Error::cancelled(reason.clone()));
            },
        )
    }

    /// True if a read found the fd drained ([`mark_read_drained`]) and no
    /// edge has arrived since: a read should [`wait`](Self::wait) first.
    ///
    /// [`mark_read_drained`]: Self::mark_read_drained
    pub(crate) fn read_drained(&self) -> bool {
        let sources = self.reactor.sources.borrow();
        sources
            .get(slot_key(self.key))
            .is_some_and(|(_, w)| w.read_drained)
    }

    /// Records that a read just emptied the fd's receive queue (a stream
    /// read that returned fewer bytes than asked for). Ignored once the
    /// peer has finished sending: the end of the stream brings no new edge.
    pub(crate) fn mark_read_drained(&self) {
        let mut sources = self.reactor.sources.borrow_mut();
        if let Some((_, w)) = sources.get_mut(slot_key(self.key)) {
            if !w.read_closed {
                // Edges seen so far were for data this read consumed; any
                // later one is still in epoll and clears the mark.
                w.read_drained = true;
                w.read_edge = false;
            }
        }
    }

    /// Records that reads will no longer block (this side shut reading).
    pub(crate) fn mark_read_closed(&self) {
        let mut sources = self.reactor.sources.borrow_mut();
        if let Some((_, w)) = sources.get_mut(slot_key(self.key)) {
            w.read_closed = true;
            w.read_drained = false;
        }
    }

    /// The registered descriptor.
    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The fd is still open (see `new`'s contract).
        let _ = self.reactor.poller.delete(self.fd);
        let removed = self.reactor.sources.borrow_mut().remove(slot_key(self.key));
        if let Some((_, w)) = removed {
            // Nobody can be waiting on a registration being dropped (waits
            // borrow it), but be safe: fail rather than strand them.
            let n = w.readers.len() + w.writers.len();
            self.reactor.waiting.set(self.reactor.waiting.get() - n);
            for r in w.readers.into_iter().chain(w.writers) {
                let _ = r.fail(Error::msg(ErrorKind::Closed, "fd closed while waiting"));
            }
        }
    }
}

/// The poller's event key for a slot (slot keys fit in 64 bits).
fn event_key(k: DefaultKey) -> usize {
    k.data().as_ffi() as usize
}

fn slot_key(key: usize) -> DefaultKey {
    KeyData::from_ffi(key as u64).into()
}
