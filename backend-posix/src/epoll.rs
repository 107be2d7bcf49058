//! The readiness source: an epoll instance, edge-triggered, plus an eventfd
//! through which other threads wake it.
//!
//! Written against epoll directly rather than through a portable poller for
//! two things a server pays for on every request: one system call per wait
//! (a portable poller re-arms its timer and wake-up descriptors around each
//! `epoll_wait`, five calls in all), and `EPOLLRDHUP`, which tells a drained
//! socket from one whose peer has finished sending, so a short read can stand
//! for "drained" without an extra `recv` that fails with `EAGAIN`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The key the wake-up eventfd is registered under. Registrations use
/// slot-map keys, which are all ones only for slot 4,294,967,295 — a slot a
/// reactor never reaches (one per registered descriptor).
const NOTIFY_KEY: u64 = u64::MAX;

/// What epoll reported for one registered descriptor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    pub(crate) key: usize,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer will send nothing more (or the socket failed): reads will
    /// not block from now on.
    pub(crate) read_closed: bool,
}

/// The events of one wait.
pub(crate) struct Events {
    list: Vec<libc::epoll_event>,
}

impl Events {
    pub(crate) fn new() -> Events {
        Events {
            list: Vec::with_capacity(1024),
        }
    }

    /// The descriptors reported ready (the wake-up descriptor left out).
    pub(crate) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        self.list.iter().filter_map(|ev| {
            let (bits, key) = (ev.events, ev.u64);
            if key == NOTIFY_KEY {
                return None;
            }
            let err = bits & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            Some(Ready {
                key: key as usize,
                readable: err || bits & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0,
                writable: err || bits & libc::EPOLLOUT as u32 != 0,
                read_closed: err || bits & libc::EPOLLRDHUP as u32 != 0,
            })
        })
    }
}

pub(crate) struct Epoll {
    epfd: OwnedFd,
    /// Written by other threads to wake a wait; registered edge-triggered.
    notifier: OwnedFd,
    /// A wake-up was written since the last wait returned: further ones
    /// until the next return need no write (its edge is still to come).
    notified: AtomicBool,
    /// `epoll_pwait2` (Linux 5.11) is missing: wait with `epoll_wait` and
    /// millisecond timeouts rounded up.
    no_pwait2: AtomicBool,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: plain system calls; each result is checked before use and
        // becomes owned by exactly one `OwnedFd`.
        let epfd = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: as above.
        let notifier = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        let ep = Epoll {
            epfd,
            notifier,
            notified: AtomicBool::new(false),
            no_pwait2: AtomicBool::new(false),
        };
        ep.ctl(
            libc::EPOLL_CTL_ADD,
            ep.notifier.as_raw_fd(),
            (libc::EPOLLIN | libc::EPOLLET) as u32,
            NOTIFY_KEY,
        )?;
        Ok(ep)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: `ev` is a valid event for the duration of the call; epoll
        // checks `fd` itself (a closed fd fails with EBADF).
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Watches `fd` for both directions, edge-triggered, under `key`.
    pub(crate) fn add(&self, fd: RawFd, key: usize) -> io::Result<()> {
        let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        self.ctl(libc::EPOLL_CTL_ADD, fd, events as u32, key as u64)
    }

    /// Stops watching `fd`.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits for events, at most `timeout` (forever if `None`), into
    /// `events`. An interrupted wait returns without events.
    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.list.clear();
        let cap = events.list.capacity();
        let max = libc::c_int::try_from(cap).unwrap_or(libc::c_int::MAX);
        let buf = events.list.as_mut_ptr();
        let n = if self.no_pwait2.load(Ordering::Relaxed) {
            self.wait_ms(buf, max, timeout)
        } else {
            let ts = timeout.map(|t| libc::timespec {
                tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: t.subsec_nanos().into(),
            });
            let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
            // SAFETY: `buf` has room for `max` events; `tsp` is null or
            // points to a timespec alive for the call; no signal mask.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    self.epfd.as_raw_fd(),
                    buf,
                    max,
                    tsp,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                self.no_pwait2.store(true, Ordering::Relaxed);
                self.wait_ms(buf, max, timeout)
            } else {
                r as libc::c_int
            }
        };
        // Awake again: the next wake-up must write. A swap, not a store, so
        // that a waker that skipped its write because of the flag published
        // its wake-up to this thread (it queued it before its swap).
        self.notified.swap(false, Ordering::AcqRel);
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(e),
            };
        }
        // SAFETY: the kernel initialised the first `n` (≤ capacity) events.
        unsafe { events.list.set_len(n as usize) };
        Ok(())
    }

    fn wait_ms(
        &self,
        buf: *mut libc::epoll_event,
        max: libc::c_int,
        timeout: Option<Duration>,
    ) -> libc::c_int {
        let ms = timeout.map_or(-1, |t| {
            // Round up: waking before the deadline would only wait again.
            let ms = t.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        });
        // SAFETY: `buf` has room for `max` events.
        unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), buf, max, ms) }
    }

    /// Wakes the current or next wait: one `write` to the eventfd, the
    /// first time since the last wait returned (async-signal-safe: an atomic
    /// swap and a `write`). The eventfd is never read: registered
    /// edge-triggered, every write is an edge of its own, reported by the
    /// next wait even if this one has already returned. (Reading it back
    /// after a wait could swallow a write made just before the read, and
    /// with it the only edge that would have ended a later sleep.)
    pub(crate) fn notify(&self) -> io::Result<()> {
        if self.notified.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let one: u64 = 1;
        loop {
            // SAFETY: writes 8 bytes from a live u64 to our eventfd.
            let r = unsafe {
                libc::write(
                    self.notifier.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                // The counter is full (after 2^64 - 2 wake-ups): reset it
                // and write again, so that the write makes an edge.
                io::ErrorKind::WouldBlock => self.reset_notifier(),
                _ => {
                    self.notified.store(false, Ordering::Release);
                    return Err(e);
                }
            }
        }
    }

    fn reset_notifier(&self) {
        let mut buf = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64.
        let _ = unsafe {
            libc::read(
                self.notifier.as_raw_fd(),
                (&mut buf as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}
