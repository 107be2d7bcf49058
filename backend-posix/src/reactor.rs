//! Readiness waits on file descriptors.
//!
//! A [`Registration`] ties a nonblocking fd to this thread's poller. A fiber
//! that gets `EAGAIN` calls [`Registration::wait`] and is resumed when the
//! fd becomes ready (or fails with `Cancelled` if its context is cancelled
//! first). Interest is armed one-shot, only while someone waits.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use polling::{Event, Poller};
use slotmap::{DefaultKey, Key, KeyData, SlotMap};
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

#[derive(Default)]
struct Waiters {
    readers: Vec<Resumer<()>>,
    writers: Vec<Resumer<()>>,
}

pub(crate) struct Reactor {
    poller: Arc<Poller>,
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
    pub(crate) fn new(poller: Arc<Poller>) -> Reactor {
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

    pub(crate) fn poller(&self) -> &Poller {
        &self.poller
    }

    /// Wakes the waiters an event is for, and re-arms for those left.
    pub(crate) fn dispatch(&self, ev: Event) {
        let woken = {
            let mut sources = self.sources.borrow_mut();
            let Some((fd, w)) = sources.get_mut(slot_key(ev.key)) else {
                return;
            };
            let mut woken = Vec::new();
            if ev.readable {
                woken.append(&mut w.readers);
            }
            if ev.writable {
                woken.append(&mut w.writers);
            }
            let fd = *fd;
            let interest = Self::interest(ev.key, w);
            drop(sources);
            self.waiting.set(self.waiting.get() - woken.len());
            // Registrations are one-shot: the event disarmed the fd, so only
            // waiters left for the other direction need it armed again.
            if interest.readable || interest.writable {
                self.rearm(fd, interest);
            }
            woken
        };
        for r in woken {
            let _ = r.resume(());
        }
    }

    fn interest(key: usize, w: &Waiters) -> Event {
        Event::new(key, !w.readers.is_empty(), !w.writers.is_empty())
    }

    fn rearm(&self, fd: RawFd, interest: Event) {
        // SAFETY: the fd stays open while its Registration exists (the
        // Registration's owner closes it only after dropping it), and it
        // was added to the poller in `Registration::new`.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = self.poller.modify(fd, interest);
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
        let added = unsafe { reactor.poller.add(fd, Event::none(key)) };
        if let Err(e) = added {
            reactor.sources.borrow_mut().remove(slot);
            return Err(Error::from(e).context(format!("registering fd {fd} with epoll")));
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
        suspend_with_cancel(
            what,
            |r| {
                let (fd, ev) = {
                    let mut sources = self.reactor.sources.borrow_mut();
                    let (fd, w) = sources.get_mut(slot_key(self.key)).expect("registered");
                    match interest {
                        Interest::Readable => w.readers.push(r),
                        Interest::Writable => w.writers.push(r),
                    }
                    (*fd, Reactor::interest(self.key, w))
                };
                self.reactor.waiting.set(self.reactor.waiting.get() + 1);
                self.reactor.rearm(fd, ev);
            },
            |r, reason| {
                let rearm = {
                    let mut sources = self.reactor.sources.borrow_mut();
                    sources.get_mut(slot_key(self.key)).map(|(fd, w)| {
                        let before = w.readers.len() + w.writers.len();
                        w.readers.retain(|x| !x.same_wait(r));
                        w.writers.retain(|x| !x.same_wait(r));
                        let gone = before - (w.readers.len() + w.writers.len());
                        self.reactor.waiting.set(self.reactor.waiting.get() - gone);
                        (*fd, Reactor::interest(self.key, w))
                    })
                };
                if let Some((fd, ev)) = rearm {
                    self.reactor.rearm(fd, ev);
                }
                let _ = r.fail(Error::cancelled(reason.clone()));
            },
        )
    }

    /// The registered descriptor.
    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: the fd is still open (see `new`'s contract).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let _ = self.reactor.poller.delete(fd);
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
