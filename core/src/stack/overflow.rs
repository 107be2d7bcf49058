//! Stack overflow detection: a fault in a guard page becomes a message
//! naming the fiber, instead of a bare `SIGSEGV`.
//!
//! Three pieces, all usable from a signal handler (no allocation, no locks,
//! only `write(2)`, `sigaction(2)` and `abort(3)`):
//!
//! - **A handler** for `SIGSEGV` and `SIGBUS`, installed once per process
//!   with `SA_SIGINFO | SA_ONSTACK` the first time a scheduler starts. It
//!   checks whether the fault address is in a guard page of a weft stack; if
//!   so it writes `weft: fiber stack overflow in fiber #N "name" (forked at
//!   file:line:col)` to standard error and aborts. Any other fault is not
//!   ours: the handler puts back the previous disposition (Rust's own
//!   overflow handler, or the default action) and returns, so the faulting
//!   instruction runs again and the fault is handled as if weft were not
//!   there.
//! - **An alternate signal stack** per scheduler thread ([`prepare_thread`]),
//!   since the handler cannot run on the stack that just overflowed. A stack
//!   the thread already has (Rust gives one to the threads it starts) is
//!   kept.
//! - **What is running**: the running fiber's [`FiberLabel`] (id, name,
//!   spawn site, guard page), found through the scheduler's own pointer to
//!   the running fiber (registered once per run with [`watch`]), and a
//!   lock-free
//!   registry of every slab (start, end, slot stride), so a fault in the
//!   guard of another stack is recognised too.
//!
//! Limits: the registry holds 4096 slabs (4 TiB of stacks at 1 GiB a
//! slab); a guard fault in a slab beyond that is still a fault, reported as
//! a plain `SIGSEGV`. If a program installs its own `SIGSEGV` handler after
//! weft's, weft's is not called.

use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::panic::Location;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

use super::os;

/// What the overflow handler says about a fiber. Embedded in the fiber's
/// control block; only read while that fiber runs.
pub(crate) struct FiberLabel {
    id: Cell<u64>,
    name: Cell<(*const u8, usize)>,
    site: Cell<Option<&'static Location<'static>>>,
    /// Start of the fiber's guard page.
    guard: Cell<usize>,
}

impl Default for FiberLabel {
    fn default() -> Self {
        FiberLabel {
            id: Cell::new(0),
            name: Cell::new((ptr::null(), 0)),
            site: Cell::new(None),
            guard: Cell::new(0),
        }
    }
}

impl FiberLabel {
    /// Describes the fiber with id `id` whose stack's guard page starts at
    /// `guard`.
    ///
    /// # Safety
    /// `name` stays valid and unchanged until the label is set again or
    /// cleared (the handler reads it while the fiber runs).
    #[inline]
    pub(crate) unsafe fn set(
        &self,
        id: u64,
        name: Option<&str>,
        site: Option<&'static Location<'static>>,
        guard: usize,
    ) {
        self.id.set(id);
        self.name
            .set(name.map_or((ptr::null(), 0), |n| (n.as_ptr(), n.len())));
        self.site.set(site);
        self.guard.set(guard);
    }

    /// Start of the guard page of the stack the label was last set for.
    #[inline]
    pub(crate) fn guard(&self) -> usize {
        self.guard.get()
    }

    /// Forgets the name (before the string it points to is dropped).
    #[inline]
    pub(crate) fn clear(&self) {
        self.name.set((ptr::null(), 0));
        self.site.set(None);
    }
}

thread_local! {
    /// Where this thread's scheduler keeps its pointer to the running
    /// fiber's label (null while no fiber runs), or null outside a run.
    /// Set once per run: the scheduler's own writes on every switch are
    /// all that tracks the running fiber.
    static RUNNING: Cell<*const Cell<*const FiberLabel>> = const { Cell::new(ptr::null()) };
}

/// Makes `running` the place where the handler finds the label of the
/// fiber running on this thread, until [`unwatch`].
///
/// # Safety
/// `running` stays valid until `unwatch` is called on this thread, and
/// whenever it holds a non-null pointer, that points to the label of the
/// fiber running on this thread, alive for as long as the pointer stays.
pub(crate) unsafe fn watch(running: *const Cell<*const FiberLabel>) {
    RUNNING.with(|r| r.set(running));
}

/// Forgets what [`watch`] registered (before it goes away).
pub(crate) fn unwatch() {
    let _ = RUNNING.try_with(|r| r.set(ptr::null()));
}

/// The label of the fiber running on this thread, if any. Async-signal
/// safe.
fn running_label() -> *const FiberLabel {
    let cell = RUNNING.try_with(|r| r.get()).unwrap_or(ptr::null());
    if cell.is_null() {
        return ptr::null();
    }
    // SAFETY: a non-null RUNNING points to a cell that `watch`'s contract
    // keeps valid until it is reset.
    unsafe { (*cell).get() }
}

// ---- the slab registry ----------------------------------------------------

const REGISTRY_LEN: usize = 4096;
/// `start` of an entry being filled in or cleared.
const CLAIMED: usize = 1;

struct Entry {
    start: AtomicUsize,
    end: AtomicUsize,
    stride: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Entry = Entry {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    stride: AtomicUsize::new(0),
};

static REGISTRY: [Entry; REGISTRY_LEN] = [EMPTY; REGISTRY_LEN];
/// One past the highest entry ever used: the handler scans no further.
static REGISTRY_HIGH: AtomicUsize = AtomicUsize::new(0);

/// Makes the slab `[start, start + len)` of `stride`-byte slots, each
/// starting with a guard page, known to the handler. `None` if the registry
/// is full.
pub(crate) fn register(start: usize, len: usize, stride: usize) -> Option<usize> {
    for (i, e) in REGISTRY.iter().enumerate() {
        if e.start.load(Ordering::Relaxed) != 0 {
            continue;
        }
        if e.start
            .compare_exchange(0, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            e.end.store(start + len, Ordering::Relaxed);
            e.stride.store(stride, Ordering::Relaxed);
            e.start.store(start, Ordering::Release);
            REGISTRY_HIGH.fetch_max(i + 1, Ordering::Release);
            return Some(i);
        }
    }
    None
}

/// Forgets a slab (before it is unmapped).
pub(crate) fn unregister(i: usize) {
    let e = &REGISTRY[i];
    e.start.store(CLAIMED, Ordering::Release);
    e.end.store(0, Ordering::Relaxed);
    e.stride.store(0, Ordering::Relaxed);
    e.start.store(0, Ordering::Release);
}

/// The guard page of a registered slab that contains `addr`, if any.
/// Async-signal-safe.
pub(crate) fn guard_page_at(addr: usize) -> Option<usize> {
    let high = REGISTRY_HIGH.load(Ordering::Acquire).min(REGISTRY_LEN);
    for e in &REGISTRY[..high] {
        let start = e.start.load(Ordering::Acquire);
        if start <= CLAIMED || addr < start {
            continue;
        }
        let end = e.end.load(Ordering::Relaxed);
        let stride = e.stride.load(Ordering::Relaxed);
        if addr >= end || stride == 0 {
            continue;
        }
        let offset = (addr - start) % stride;
        if offset < os::page_size() {
            return Some(addr - offset);
        }
    }
    None
}

// ---- the handler ----------------------------------------------------------

const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// The dispositions our handler replaced, written once (by `sigaction`)
/// before the matching `PREV_READY` flag is raised.
struct PrevActions(UnsafeCell<[MaybeUninit<libc::sigaction>; 2]>);

// SAFETY: each element is written once, inside `INSTALL.call_once`, before
// its `PREV_READY` flag is set with Release; readers (the handler) read it
// only after seeing the flag with Acquire, and never write it.
unsafe impl Sync for PrevActions {}

static PREV: PrevActions = PrevActions(UnsafeCell::new([MaybeUninit::uninit(); 2]));
static PREV_READY: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
static INSTALL: Once = Once::new();

/// Installs the handler (once per process) and gives this thread an
/// alternate signal stack if it has none. Called when a scheduler starts.
pub(crate) fn prepare_thread() {
    INSTALL.call_once(install_handlers);
    altstack::ensure();
}

fn install_handlers() {
    for (i, &sig) in SIGNALS.iter().enumerate() {
        // SAFETY: an all-zero `sigaction` is a valid value (no flags, empty
        // mask) that we then fill in.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_fault as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `sa.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: `PREV` element `i` is written only here, once (we are
        // inside `INSTALL.call_once`), and read only after PREV_READY[i].
        let prev = unsafe { (*PREV.0.get())[i].as_mut_ptr() };
        // SAFETY: `sa` is a fully initialised action whose handler has the
        // SA_SIGINFO signature; `prev` points to writable storage for one
        // `sigaction`.
        if unsafe { libc::sigaction(sig, &sa, prev) } == 0 {
            PREV_READY[i].store(true, Ordering::Release);
        }
    }
}

/// Puts back the disposition we replaced for `sig` (the default action if
/// it is not known yet).
fn restore_previous(sig: libc::c_int) {
    let i = if sig == libc::SIGSEGV { 0 } else { 1 };
    if PREV_READY[i].load(Ordering::Acquire) {
        // SAFETY: the flag says element `i` was fully written by
        // `sigaction` and is never written again.
        let prev = unsafe { (*PREV.0.get())[i].as_ptr() };
        // SAFETY: `prev` is a valid action previously returned by the
        // kernel; sigaction is async-signal-safe.
        unsafe { libc::sigaction(sig, prev, ptr::null_mut()) };
    } else {
        // SAFETY: resetting to the default action has no preconditions.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // si_code > 0: raised by the kernel for a fault (not sent with kill).
    if code > 0 {
        let running = running_label();
        // SAFETY: a non-null label pointer (see `watch`) is the label of
        // the fiber that runs on this thread; its control block outlives
        // the resume during which the fault happened, and nothing writes
        // the label meanwhile (only the scheduler does, between resumes).
        let label = unsafe { running.as_ref() };
        let own_guard = label.is_some_and(|l| {
            let g = l.guard.get();
            g != 0 && addr >= g && addr < g + os::page_size()
        });
        if own_guard || guard_page_at(addr).is_some() {
            report(label, own_guard, addr);
        }
    }
    restore_previous(sig);
    if code <= 0 {
        // Sent, not raised by a fault: returning would not repeat it.
        // SAFETY: raise is async-signal-safe.
        unsafe { libc::raise(sig) };
    }
}

/// Writes the overflow message and aborts.
fn report(label: Option<&FiberLabel>, own_guard: bool, addr: usize) -> ! {
    let mut m = Msg::new();
    m.push(b"weft: fiber stack overflow");
    if !own_guard {
        m.push(b" (fault at 0x");
        m.push_hex(addr);
        m.push(b", in the guard page of a weft fiber stack)");
    }
    match label {
        Some(l) => {
            m.push(if own_guard {
                b" in fiber #"
            } else {
                b" while fiber #"
            });
            m.push_dec(l.id.get());
            let (p, n) = l.name.get();
            if !p.is_null() {
                // SAFETY: `FiberLabel::set`'s contract keeps the name valid
                // while the label may be read, which is now.
                let name = unsafe { std::slice::from_raw_parts(p, n) };
                m.push(b" \"");
                m.push(name);
                m.push(b"\"");
            }
            if let Some(site) = l.site.get() {
                m.push(b" (forked at ");
                m.push(site.file().as_bytes());
                m.push(b":");
                m.push_dec(site.line().into());
                m.push(b":");
                m.push_dec(site.column().into());
                m.push(b")");
            }
            if !own_guard {
                m.push(b" was running");
            }
        }
        None => m.push(b" outside any fiber"),
    }
    m.push(b"; aborting\n");
    m.write_stderr();
    // SAFETY: abort is async-signal-safe and never returns.
    unsafe { libc::abort() }
}

/// A message built on the (alternate) stack, without allocating.
struct Msg {
    buf: [u8; 512],
    len: usize,
}

impl Msg {
    fn new() -> Msg {
        Msg {
            buf: [0; 512],
            len: 0,
        }
    }

    fn push(&mut self, s: &[u8]) {
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_dec(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn push_hex(&mut self, v: usize) {
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = b"0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
        }
        self.push(&digits);
    }

    fn write_stderr(&mut self) {
        if self.len == self.buf.len() - 1 {
            self.buf[self.len - 1] = b'\n';
        }
        let mut off = 0;
        while off < self.len {
            // SAFETY: the pointer and length lie inside `buf`; write(2) is
            // async-signal-safe.
            let r = unsafe {
                libc::write(
                    libc::STDERR_FILENO,
                    self.buf[off..].as_ptr().cast(),
                    self.len - off,
                )
            };
            if r <= 0 {
                break;
            }
            off += r as usize;
        }
    }
}

mod altstack {
    //! One alternate signal stack per scheduler thread.

    use std::cell::RefCell;
    use std::ptr;

    use super::super::os;

    /// Usable bytes: the handler needs well under 2 KiB, the kernel's signal
    /// frame a few more (AVX-512 state).
    const SIZE: usize = 64 * 1024;
    /// An existing alternate stack at least this big is kept.
    const KEEP_EXISTING: usize = 8 * 1024;

    struct AltStack {
        map: usize,
        len: usize,
    }

    impl Drop for AltStack {
        fn drop(&mut self) {
            let sp = (self.map + os::page_size()) as *mut libc::c_void;
            // SAFETY: querying the current alternate stack has no
            // preconditions; `cur` is valid storage.
            let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            unsafe { libc::sigaltstack(ptr::null(), &mut cur) };
            if cur.ss_sp == sp {
                let off = libc::stack_t {
                    ss_sp: ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                // SAFETY: disabling the alternate stack of this thread (we
                // are not running on it: thread exit is not a handler).
                unsafe { libc::sigaltstack(&off, ptr::null_mut()) };
            }
            // SAFETY: the mapping is ours and no longer the signal stack.
            let _ = unsafe { os::unmap(self.map, self.len) };
        }
    }

    thread_local! {
        static ALT: RefCell<Option<AltStack>> = const { RefCell::new(None) };
    }

    /// Gives this thread an alternate signal stack unless it has one.
    pub(super) fn ensure() {
        let _ = ALT.try_with(|alt| {
            if alt.borrow().is_some() {
                return;
            }
            // SAFETY: all-zero is a valid `stack_t` for the kernel to fill.
            let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
            // SAFETY: querying only; `cur` is valid storage.
            unsafe { libc::sigaltstack(ptr::null(), &mut cur) };
            if cur.ss_flags & libc::SS_DISABLE == 0 && cur.ss_size >= KEEP_EXISTING {
                return;
            }
            let page = os::page_size();
            let len = page + SIZE;
            let Ok(map) = os::map_anon(len) else { return };
            // SAFETY: the first page of our fresh mapping becomes a guard
            // so a runaway handler faults instead of corrupting memory.
            unsafe { libc::mprotect(map as *mut libc::c_void, page, libc::PROT_NONE) };
            let new = libc::stack_t {
                ss_sp: (map + page) as *mut libc::c_void,
                ss_flags: 0,
                ss_size: SIZE,
            };
            // SAFETY: `new` describes memory we own for as long as the
            // thread-local `AltStack` lives, which disables it on drop.
            if unsafe { libc::sigaltstack(&new, ptr::null_mut()) } == 0 {
                *alt.borrow_mut() = Some(AltStack { map, len });
            } else {
                // SAFETY: not installed; still ours alone.
                let _ = unsafe { os::unmap(map, len) };
            }
        });
    }
}
