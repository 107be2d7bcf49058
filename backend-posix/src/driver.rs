//! The POSIX [`Driver`]: `epoll_wait` with the next timer as its timeout.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use weft_core::backend::{Driver, Park, Parked, Unpark};
use weft_core::{Error, ErrorKind, Result};

use crate::epoll::{Epoll, Events};
use crate::reactor::Reactor;

pub(crate) struct PosixDriver {
    reactor: Rc<Reactor>,
    events: Events,
    origin: Instant,
    unparker: Arc<PollerUnpark>,
}

struct PollerUnpark(Arc<Epoll>);

impl Unpark for PollerUnpark {
    fn unpark(&self) {
        // An atomic flag and an eventfd write: async-signal-safe.
        let _ = self.0.notify();
    }
}

impl PosixDriver {
    pub(crate) fn new() -> Result<PosixDriver> {
        let poller = Epoll::new().map_err(|e| {
            Error::with_source(ErrorKind::Io, e).context("creating the epoll instance")
        })?;
        let poller = Arc::new(poller);
        Ok(PosixDriver {
            reactor: Rc::new(Reactor::new(poller.clone())),
            events: Events::new(),
            origin: Instant::now(),
            unparker: Arc::new(PollerUnpark(poller)),
        })
    }

    pub(crate) fn reactor(&self) -> Rc<Reactor> {
        self.reactor.clone()
    }
}

impl Driver for PosixDriver {
    fn name(&self) -> &'static str {
        "posix"
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }

    fn park(&mut self, park: Park, _external: bool) -> Parked {
        let timeout = match park {
            // A poll finds nothing when no fiber waits on an fd (remote
            // wake-ups come through the scheduler's queue, not epoll).
            Park::Poll if !self.reactor.has_waiters() => return Parked::Ok,
            Park::Poll => Some(Duration::ZERO),
            Park::Until(deadline) => {
                Some(Duration::from_nanos(deadline.saturating_sub(self.now())))
            }
            // A real backend cannot tell a deadlock from a long wait: some
            // other thread, or the outside world, may still wake it.
            Park::Forever => None,
        };
        if let Err(e) = self.reactor.poller().wait(&mut self.events, timeout) {
            // An interrupted wait returns no events; anything else means
            // the epoll fd itself is broken, which no retry will mend.
            eprintln!("weft: epoll_wait failed: {e}");
            return Parked::Stuck;
        }
        for ev in self.events.iter() {
            self.reactor.dispatch(ev);
        }
        Parked::Ok
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        self.unparker.clone()
    }
}
