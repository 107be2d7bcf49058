//! The operating-system calls behind fiber stacks, and the two limits they
//! run into.
//!
//! Everything here is decided at run time, not by `cfg`: the kernel is asked
//! to install a lightweight guard page (`madvise(MADV_GUARD_INSTALL)`, Linux
//! 6.13+), and if it answers `EINVAL` the guard is made the old way, with
//! `mprotect(PROT_NONE)`. An mprotect guard splits its mapping in two, and
//! the kernel caps a process's mappings at `vm.max_map_count` (65530 by
//! default), so mprotect guards are counted against a [`MapBudget`] read
//! from `/proc/sys/vm/max_map_count` once, with headroom left for the rest
//! of the process. When it runs out, `spawn` fails with an error that names
//! the sysctl; a stack is never handed out without its guard.
//!
//! Two knobs force the fallback so that both paths can be tested on a new
//! kernel: the environment variable `WEFT_STACK_GUARDS=mprotect` (read once
//! per process), and, inside weft-core's own tests, a per-pool
//! [`GuardChoice::Mprotect`].

use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, ErrorKind, Result};

/// `MADV_GUARD_INSTALL` from Linux's uapi headers (6.13+). Kernels and
/// systems without it reject the value with `EINVAL`.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// `MADV_NOHUGEPAGE` from Linux's uapi headers: keeps transparent huge
/// pages (under `enabled=always`) from backing a 4 KiB stack with 2 MiB.
/// Other systems reject it with `EINVAL`, which is ignored.
const MADV_NOHUGEPAGE: libc::c_int = 15;

/// The environment variable that forces mprotect guards (`mprotect`).
pub(crate) const GUARDS_ENV: &str = "WEFT_STACK_GUARDS";

/// The system page size.
#[inline]
pub(crate) fn page_size() -> usize {
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    page_size_slow()
}

/// The system's page size, once known.
static PAGE: AtomicUsize = AtomicUsize::new(0);

/// Asks the system for the page size (once per process, in practice).
#[cold]
fn page_size_slow() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if p > 0 { p as usize } else { 4096 };
    assert!(p.is_power_of_two(), "page size {p} is not a power of two");
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// Maps `len` bytes of fresh, private, zero-filled, readable and writable
/// memory with no swap reservation. Returns its address.
pub(crate) fn map_anon(len: usize) -> io::Result<usize> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: an anonymous mapping at an address of the kernel's choosing
    // cannot overlap memory anything else owns.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let addr = p as usize;
    // SAFETY: the range was just mapped by us; the advice changes how it is
    // backed, not its contents. Failure (no THP support) is harmless.
    let _ = unsafe { libc::madvise(p, len, MADV_NOHUGEPAGE) };
    Ok(addr)
}

/// Unmaps `[addr, addr + len)`.
///
/// # Safety
/// The range was mapped by [`map_anon`] and nothing refers into it any more.
pub(crate) unsafe fn unmap(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: by the caller's contract, the range is ours and unused.
    if unsafe { libc::munmap(addr as *mut libc::c_void, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the memory of `[addr, addr + len)` back to the OS; the next touch
/// reads zeros. Guard pages in the range (either kind) stay guards.
///
/// # Safety
/// The range lies in a mapping of ours and holds nothing anyone still needs.
pub(crate) unsafe fn discard(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: by the caller's contract the contents are dead; DONTNEED on a
    // private anonymous mapping only drops pages.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs a guard marker on the page at `addr` (`MADV_GUARD_INSTALL`);
/// no fallback. Used by the helper that prepares slots ahead of use.
///
/// # Safety
/// The page lies in a mapping of ours and is never used as memory.
pub(crate) unsafe fn install_guard_marker(addr: usize) -> io::Result<()> {
    loop {
        // SAFETY: by the caller's contract the page is ours and unused.
        let r =
            unsafe { libc::madvise(addr as *mut libc::c_void, page_size(), MADV_GUARD_INSTALL) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) {
            return Err(e);
        }
    }
}

/// `process_madvise(2)`'s number in Linux's generic system call table,
/// which every architecture shares for calls numbered 424 and up.
const SYS_PROCESS_MADVISE: libc::c_long = 440;

/// `PIDFD_SELF_THREAD_GROUP` from Linux's uapi headers (6.15+): "this
/// process" for calls that take a pidfd, with no descriptor to open (and
/// none that a forked child could inherit pointing at its parent).
const PIDFD_SELF_PROCESS: libc::c_int = -10001;

/// Ranges per `process_madvise` call: enough to amortise the call, small
/// enough for the array to sit on a fiber's stack (the owner calls this
/// while spawning, on the parent fiber's stack, which may be 16 KiB).
const MAX_IOV: usize = 32;

/// Whether `process_madvise(PIDFD_SELF_PROCESS, ..)` works here: 0 not yet
/// known, 1 yes, 2 no (before Linux 6.15, or not Linux).
static BATCH_MADVISE: AtomicU8 = AtomicU8::new(0);

/// Installs guard markers on the pages at `pages` (page-aligned
/// addresses), with one `process_madvise` call per 32 pages where the
/// kernel has it (a system call per page costs about a third of a guard's
/// price), else one `madvise` each. Stops at the first failure.
///
/// Only called once the kernel has accepted `MADV_GUARD_INSTALL` (so this
/// is Linux 6.13 or newer, where the system call number means
/// `process_madvise`).
///
/// # Safety
/// Every page lies in a mapping of ours and is never used as memory.
pub(crate) unsafe fn install_guard_markers(pages: &[usize]) -> io::Result<()> {
    debug_assert_eq!(KERNEL_MARKERS.load(Ordering::Relaxed), 1);
    let page = page_size();
    let mut rest = pages;
    while !rest.is_empty() && BATCH_MADVISE.load(Ordering::Relaxed) != 2 {
        let n = rest.len().min(MAX_IOV);
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOV];
        for (v, &p) in iov.iter_mut().zip(&rest[..n]) {
            *v = libc::iovec {
                iov_base: p as *mut libc::c_void,
                iov_len: page,
            };
        }
        // SAFETY: `iov` holds `n` initialised entries, each one page the
        // caller vouches for.
        let r = unsafe { process_madvise(&iov[..n], MADV_GUARD_INSTALL) };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                // No PIDFD_SELF (before 6.15), or advice refused through
                // process_madvise: one madvise per page from now on.
                Some(libc::EBADF) | Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EPERM) => {
                    BATCH_MADVISE.store(2, Ordering::Relaxed);
                    break;
                }
                _ => return Err(e),
            }
        }
        BATCH_MADVISE.store(1, Ordering::Relaxed);
        // A short count means the kernel stopped early; go on from there
        // (one page at a time if it did nothing at all).
        let done = (r as usize / page).min(n);
        if done == 0 {
            break;
        }
        rest = &rest[done..];
    }
    for &p in rest {
        // SAFETY: forwarded from our caller.
        unsafe { install_guard_marker(p)? };
    }
    Ok(())
}

/// `process_madvise(PIDFD_SELF, iov, advice)`: one system call for many
/// ranges of this process. Returns the bytes advised, or -1 with `errno` set.
///
/// # Safety
/// As for `madvise` with `advice` on every range in `iov`; the kernel only
/// reads the array.
unsafe fn process_madvise(iov: &[libc::iovec], advice: libc::c_int) -> isize {
    // (`syscall` is deprecated on macOS, which never gets here: guard
    // markers are Linux 6.13+.)
    #[allow(deprecated)]
    // SAFETY: forwarded from our caller; `iov` is a valid array of
    // `iov.len()` entries.
    let r = unsafe {
        libc::syscall(
            SYS_PROCESS_MADVISE as _,
            PIDFD_SELF_PROCESS,
            iov.as_ptr(),
            iov.len(),
            advice,
            0u32,
        )
    };
    r as isize
}

/// Gives the memory of every range `(addr, len)` back to the OS, like
/// [`discard`], with one `process_madvise` call per 512 ranges where the
/// kernel has it. Each `madvise` call that drops pages ends with a TLB
/// flush, which in a multithreaded process interrupts every other CPU
/// running it; one call for many ranges flushes once.
///
/// # Safety
/// Every range lies in a mapping of ours and holds nothing anyone still
/// needs.
pub(crate) unsafe fn discard_ranges(ranges: &[(usize, usize)]) -> io::Result<()> {
    const BATCH: usize = 512;
    for batch in ranges.chunks(BATCH) {
        if BATCH_MADVISE.load(Ordering::Relaxed) != 2 && markers_known_good() && batch.len() > 1 {
            let iov: Vec<libc::iovec> = batch
                .iter()
                .map(|&(a, l)| libc::iovec {
                    iov_base: a as *mut libc::c_void,
                    iov_len: l,
                })
                .collect();
            let total: usize = batch.iter().map(|r| r.1).sum();
            // SAFETY: `iov` describes the ranges the caller vouches for.
            let r = unsafe { process_madvise(&iov, libc::MADV_DONTNEED) };
            if r >= 0 && r as usize == total {
                BATCH_MADVISE.store(1, Ordering::Relaxed);
                continue;
            }
            if r < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EBADF) | Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EPERM)
                ) {
                    BATCH_MADVISE.store(2, Ordering::Relaxed);
                }
            }
            // Partly done or refused: do the batch range by range (dropping
            // pages already dropped changes nothing).
        }
        for &(a, l) in batch {
            // SAFETY: forwarded from our caller.
            unsafe { discard(a, l)? };
        }
    }
    Ok(())
}

/// How guard pages are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardChoice {
    /// `MADV_GUARD_INSTALL` where the kernel has it, else mprotect.
    Auto,
    /// Always mprotect (the fallback path, forced).
    Mprotect,
}

impl GuardChoice {
    /// The process-wide choice: `Mprotect` if `WEFT_STACK_GUARDS=mprotect`.
    pub(crate) fn from_env() -> GuardChoice {
        static CHOICE: OnceLock<GuardChoice> = OnceLock::new();
        *CHOICE.get_or_init(|| match std::env::var(GUARDS_ENV) {
            Ok(v) if v.trim().eq_ignore_ascii_case("mprotect") => GuardChoice::Mprotect,
            _ => GuardChoice::Auto,
        })
    }
}

/// Which kind of guard a page got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardKind {
    /// A page-table guard marker: no extra mapping.
    Marker,
    /// A `PROT_NONE` page: its mapping split in two.
    Mprotect,
}

/// What this kernel was found to support: 0 not yet known, 1 guard
/// markers, 2 mprotect only.
static KERNEL_MARKERS: AtomicU8 = AtomicU8::new(0);

/// True while guard markers are worth trying.
pub(crate) fn markers_supported() -> bool {
    KERNEL_MARKERS.load(Ordering::Relaxed) != 2
}

/// True once the kernel has installed a guard marker.
pub(crate) fn markers_known_good() -> bool {
    KERNEL_MARKERS.load(Ordering::Relaxed) == 1
}

/// Turns `[addr, addr + page)` into a guard page.
///
/// Tries `MADV_GUARD_INSTALL` (unless `choice` forbids it or the kernel has
/// already refused it), else `mprotect(PROT_NONE)` after charging two
/// mappings to `budget`.
///
/// # Safety
/// The page lies in a mapping of ours and nothing lives in it.
pub(crate) unsafe fn install_guard(
    addr: usize,
    choice: GuardChoice,
    budget: &MapBudget,
) -> Result<GuardKind> {
    let page = page_size();
    let ptr = addr as *mut libc::c_void;
    if choice == GuardChoice::Auto && markers_supported() {
        for _ in 0..8 {
            // SAFETY: by the caller's contract the page is ours and unused;
            // installing a marker only discards its (absent) contents.
            if unsafe { libc::madvise(ptr, page, MADV_GUARD_INSTALL) } == 0 {
                KERNEL_MARKERS.store(1, Ordering::Relaxed);
                return Ok(GuardKind::Marker);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                Some(libc::EINVAL) => {
                    // No guard markers here (kernel < 6.13, not Linux, or a
                    // locked mapping): use mprotect from now on.
                    KERNEL_MARKERS.store(2, Ordering::Relaxed);
                    break;
                }
                _ => {
                    return Err(Error::with_source(ErrorKind::Io, e)
                        .context("installing a fiber stack's guard page (MADV_GUARD_INSTALL)"))
                }
            }
        }
    }
    // Splitting one mapping into three costs two more.
    budget.charge(2)?;
    // SAFETY: as above; the page becomes inaccessible, which is the point.
    if unsafe { libc::mprotect(ptr, page, libc::PROT_NONE) } != 0 {
        let e = io::Error::last_os_error();
        budget.refund(2);
        let mut err = Error::with_source(ErrorKind::Io, e)
            .context("installing a fiber stack's guard page (mprotect)");
        if err.raw_os_error() == Some(libc::ENOMEM) {
            err = err.context(budget.advice());
        }
        return Err(err);
    }
    Ok(GuardKind::Mprotect)
}

/// A share of the process's memory mappings (`vm.max_map_count`) that fiber
/// stacks may use: one per slab, two per mprotect guard page.
pub(crate) struct MapBudget {
    /// The kernel limit, when there is one.
    max_map_count: Option<usize>,
    /// Mappings weft may use.
    allowed: usize,
    used: AtomicUsize,
}

impl MapBudget {
    /// The process-wide budget: `max_map_count` less the mappings that exist
    /// when it is first needed, less an eighth (at least 1024) for the rest
    /// of the process. Unlimited where `/proc/sys/vm/max_map_count` does not
    /// exist.
    pub(crate) fn global() -> Arc<MapBudget> {
        static GLOBAL: OnceLock<Arc<MapBudget>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let max = std::fs::read_to_string("/proc/sys/vm/max_map_count")
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok());
                let allowed = match max {
                    None => usize::MAX / 4,
                    Some(max) => {
                        let existing = std::fs::read_to_string("/proc/self/maps")
                            .map(|s| s.lines().count())
                            .unwrap_or(0);
                        let headroom = (max / 8).max(1024);
                        max.saturating_sub(existing).saturating_sub(headroom)
                    }
                };
                Arc::new(MapBudget::new(max, allowed))
            })
            .clone()
    }

    /// A budget of `allowed` mappings under a kernel limit of `max_map_count`.
    pub(crate) fn new(max_map_count: Option<usize>, allowed: usize) -> MapBudget {
        MapBudget {
            max_map_count,
            allowed,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `n` mappings, or fails with an error naming `vm.max_map_count`.
    pub(crate) fn charge(&self, n: usize) -> Result<()> {
        let r = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                u.checked_add(n).filter(|&t| t <= self.allowed)
            });
        match r {
            Ok(_) => Ok(()),
            Err(_) => Err(self.exhausted()),
        }
    }

    /// Gives back `n` mappings.
    pub(crate) fn refund(&self, n: usize) {
        let prev = self.used.fetch_sub(n, Ordering::Relaxed);
        debug_assert!(prev >= n, "map budget refunded more than charged");
    }

    /// Mappings in use.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// What to do about it, naming the sysctl.
    fn advice(&self) -> String {
        let limit = match self.max_map_count {
            Some(m) => format!("vm.max_map_count = {m}"),
            None => "vm.max_map_count".to_string(),
        };
        format!(
            "fiber stacks have used weft's share of the process's memory mappings \
             ({limit}; {} allowed for stacks): guard pages are made with mprotect here \
             (no MADV_GUARD_INSTALL: Linux before 6.13, or {GUARDS_ENV}=mprotect), \
             and each costs two mappings; raise the limit \
             with `sysctl -w vm.max_map_count=1048576` (persist it in /etc/sysctl.d/), \
             or run on Linux 6.13 or newer",
            self.allowed
        )
    }

    fn exhausted(&self) -> Error {
        Error::with_source(ErrorKind::Io, io::Error::from_raw_os_error(libc::ENOMEM))
            .context(self.advice())
    }
}
