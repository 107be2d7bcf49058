//! The per-thread scheduler: fibers, the run queue, timers, and the loop that
//! drives a backend's [`Driver`].
//!
//! One scheduler runs on each OS thread that hosts fibers, and fibers never
//! leave it. The run queue is FIFO; `fork` puts the child first and its parent
//! right behind it. An IO/timer turn comes round once per pass over the queue,
//! so fibers that keep yielding cannot starve timers or IO. When nothing is
//! runnable the driver blocks until IO, the next timer, or a wake-up from
//! another thread.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::Location;
use std::ptr;
use std::rc::Rc;
use std::sync::Arc;

use corosensei::Coroutine;
use slotmap::SlotMap;

use crate::backend::{Driver, RawHook, Resumer, Shared, WakeSlot};
use crate::cancel::CancelCtx;
use crate::error::{Error, ErrorKind, Result};
use crate::local::Locals;
use crate::stack::{overflow, FiberStack, StackPool, DEFAULT_STACK_SIZE};

mod control;
mod run_loop;
mod run_queue;
mod spawn;
mod timers;
mod worker;
pub(crate) use control::Members;
use control::{no_ctx, Fiber};
use run_queue::RunQueue;

slotmap::new_key_type! {
    /// A fiber's key in its scheduler.
    pub(crate) struct FiberKey;
}

type Coro = Coroutine<(), (), (), FiberStack>;

/// Options for a new fiber.
#[derive(Default)]
pub(crate) struct SpawnOpts {
    pub(crate) name: Option<std::borrow::Cow<'static, str>>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) site: Option<&'static Location<'static>>,
}

/// Spare control blocks that keep their fiber's stack, at most (and at
/// most `max_idle_stacks`): enough for the fibers that finish and are
/// replaced in one burst, while the pool keeps the rest.
const SPARE_STACKS: usize = 16;

/// Run-time configuration shared by every backend.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Stack size of fibers that do not ask for another.
    pub stack_size: usize,
    /// Idle stacks kept resident per size for reuse (and up to 32 more of
    /// the default size, kept with finished fibers' control blocks and
    /// parked workers for the next spawn). Past this, the memory of the
    /// least recently used idle stacks goes back to the OS (they stay in
    /// the pool, guarded, for reuse): as soon as the scheduler has nothing
    /// to run, or a second after they went idle if it stays busy, so that
    /// a burst of fibers finishing and another starting reuses warm stacks.
    pub max_idle_stacks: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            stack_size: DEFAULT_STACK_SIZE,
            max_idle_stacks: 4096,
        }
    }
}

/// A fiber just made by [`Scheduler::spawn`], to be queued.
#[derive(Clone, Copy)]
pub(crate) struct NewFiber(*const Fiber);

pub(crate) struct Scheduler {
    fibers: RefCell<SlotMap<FiberKey, Rc<Fiber>>>,
    /// Runnable fibers' control blocks. Every entry points to a fiber in
    /// `fibers` (whose `Rc` keeps it alive) that is not running and is queued
    /// only once: a fiber is queued by itself just before it switches away
    /// (yield, fork), by whoever claims its wait (one claim per wait), or
    /// once when it is made; and it leaves `fibers` only after it returns,
    /// which it can only do after being popped. Pointers rather than keys
    /// spare the table lookup on every switch.
    run_queue: RunQueue<*const Fiber>,
    /// The running fiber's control block; the fiber table keeps it alive.
    current_fiber: Cell<*const Fiber>,
    root_done: Cell<bool>,
    timers: RefCell<BTreeMap<(u64, u64), Resumer<()>>>,
    timer_seq: Cell<u64>,
    next_id: Cell<u64>,
    shared: Arc<Shared>,
    driver: RefCell<Box<dyn Driver>>,
    stacks: RefCell<StackPool>,
    /// Control blocks of finished fibers, for reuse (with their wake slots).
    spare_fibers: RefCell<Vec<Rc<Fiber>>>,
    /// Spare blocks that also hold their fiber's stack, of the default
    /// size, for default-size spawns (their stacks count as idle).
    stacked_spares: RefCell<Vec<Rc<Fiber>>>,
    /// Parked workers (see `worker`), for the next default-size fork.
    spare_workers: RefCell<Vec<Rc<Fiber>>>,
    /// At most this many spare blocks hold a stack (and at most this many
    /// workers are parked).
    spare_stack_cap: usize,
    /// The pool's default stack size (the size spare blocks keep).
    stack_size: usize,
    pub(crate) root_ctx: Rc<CancelCtx>,
    /// The parent of every detached fiber's context (see `crate::detached`).
    pub(crate) detached_ctx: Rc<CancelCtx>,
    /// Detached fibers that have not returned yet.
    detached_live: Cell<usize>,
    /// Fibers to run before the next IO/timer turn.
    budget: Cell<usize>,
    /// When a busy scheduler first saw idle stacks past the pool's bound
    /// (see `trim_stacks`).
    excess_since: Cell<Option<u64>>,
    /// The deadlock (or other fatal condition) that ended the run.
    fatal: RefCell<Option<Error>>,
}

thread_local! {
    static CURRENT: Cell<*const Scheduler> = const { Cell::new(ptr::null()) };
}

/// The scheduler of this thread.
///
/// The reference is only used while `run` is on this thread's stack (fibers
/// only exist inside it), which is what makes the `'static` harmless.
#[inline]
pub(crate) fn current() -> Result<&'static Scheduler> {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() {
        return Err(not_in_runtime());
    }
    // SAFETY: CURRENT is non-null only while `run_scheduler` holds the
    // Scheduler on its stack frame, and it resets CURRENT before returning.
    Ok(unsafe { &*p })
}

/// Kept out of line so the hot callers of [`current`] stay small enough to
/// inline (each call frame left between a fiber and its switch costs a
/// mispredicted return when it resumes).
#[cold]
#[inline(never)]
fn not_in_runtime() -> Error {
    Error::msg(
        ErrorKind::InvalidInput,
        "not inside a weft runtime (call this from a fiber started by weft::run)",
    )
}

/// True when called inside a weft runtime.
#[inline]
pub(crate) fn in_runtime() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}

/// Queues `fiber` if this thread runs the scheduler that owns `shared`;
/// false if it does not (the caller then wakes it through `shared`).
#[inline]
pub(crate) fn wake_local(shared: &Arc<Shared>, fiber: FiberKey) -> bool {
    match current() {
        Ok(s) if Arc::ptr_eq(&s.shared, shared) => {
            s.queue_key(fiber);
            true
        }
        _ => false,
    }
}

impl Scheduler {
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn now(&self) -> u64 {
        self.driver.borrow().now()
    }

    pub(crate) fn wall_clock(&self) -> std::time::SystemTime {
        self.driver.borrow().wall_clock()
    }

    #[inline]
    pub(crate) fn current_key(&self) -> FiberKey {
        self.cur().key.get()
    }

    /// The running fiber.
    #[inline]
    fn cur(&self) -> &Fiber {
        let p = self.current_fiber.get();
        assert!(!p.is_null(), "no fiber is running");
        // SAFETY: `current_fiber` is set by `run_fiber` from an `Rc<Fiber>`
        // held by the fiber table, and cleared before that entry can be
        // removed (entries are removed only after their fiber returns).
        unsafe { &*p }
    }

    /// `Err(Cancelled)` if the current fiber's context is cancelled.
    #[inline]
    pub(crate) fn check_cancelled(&self) -> Result<()> {
        let ctx = self.cur().ctx();
        if ctx.is_cancelled() {
            return ctx.check_slow();
        }
        Ok(())
    }

    pub(crate) fn current_ctx(&self) -> Rc<CancelCtx> {
        self.cur().ctx_rc()
    }

    #[inline]
    pub(crate) fn current_locals(&self) -> Locals {
        self.cur().locals()
    }

    /// Replaces the current fiber's bindings, returning the old ones.
    pub(crate) fn replace_current_locals(&self, locals: Locals) -> Locals {
        self.cur().set_locals(locals)
    }

    /// Moves the current fiber into `ctx`, returning the context it left.
    pub(crate) fn enter_ctx(&self, ctx: Rc<CancelCtx>) -> Rc<CancelCtx> {
        let f = self.cur();
        f.leave(f.ctx().members());
        f.join(ctx.members());
        f.set_ctx(ctx).unwrap_or_else(|| no_ctx())
    }

    /// The running fiber's wake slot (made on first use). Its control block
    /// keeps a counted reference until the fiber finishes (lent to the
    /// frame of a `suspend_listed` wait while that lasts), which
    /// `suspend_with_cancel` relies on.
    pub(crate) fn current_wake_slot(&self) -> Arc<WakeSlot> {
        let key = self.current_key();
        self.cur()
            .wake_or_insert(|| Arc::new(WakeSlot::new(key, self.shared.clone())))
    }

    /// Takes the running fiber's wake slot (made on first use) out of its
    /// control block, for a wait that holds it in its frame; the fiber must
    /// give it back with [`put_wake_slot`](Self::put_wake_slot) before it
    /// suspends again or finishes.
    #[inline]
    pub(crate) fn take_wake_slot(&self) -> Arc<WakeSlot> {
        let taken = self.cur().take_wake();
        taken.unwrap_or_else(|| Arc::new(WakeSlot::new(self.current_key(), self.shared.clone())))
    }

    /// Gives back the slot [`take_wake_slot`](Self::take_wake_slot) took.
    #[inline]
    pub(crate) fn put_wake_slot(&self, slot: Arc<WakeSlot>) {
        self.cur().put_wake(slot);
    }

    /// Switches away from the current fiber until something queues it again.
    #[inline(always)]
    pub(crate) fn block_current(&self, what: &'static str, hook: Option<RawHook>) {
        let f = self.cur();
        f.waiting_on.set(what);
        f.hook.set(hook);
        self.switch_out();
        let f = self.cur();
        f.waiting_on.set("");
        f.hook.set(None);
    }

    /// Puts the current fiber at the back of the run queue, switches away,
    /// and once it runs again returns `Err(Cancelled)` if its context was
    /// cancelled.
    #[inline(always)]
    pub(crate) fn yield_now(&self) -> Result<()> {
        let f = self.cur();
        f.mark_queued();
        self.run_queue.push_back(f);
        Self::switch_out_of(f);
        // `f` is still this fiber's control block: the table keeps it
        // alive while the fiber exists, and it does not move.
        let ctx = f.ctx();
        if ctx.is_cancelled() {
            return ctx.check_slow();
        }
        Ok(())
    }

    /// Always inlined, as are its callers on the suspend paths: each call
    /// frame left between a fiber's code and the switch costs a mispredicted
    /// return when the fiber resumes (the stack switch leaves the CPU's
    /// return-address predictor out of step), and those dominate the cost of
    /// a switch.
    #[inline(always)]
    fn switch_out(&self) {
        Self::switch_out_of(self.cur());
    }

    /// [`switch_out`](Self::switch_out) of the running fiber `f`.
    #[inline(always)]
    fn switch_out_of(f: &Fiber) {
        let y = f.yielder.get();
        debug_assert!(!y.is_null());
        // SAFETY: `yielder` is set by the fiber's first instructions to its
        // coroutine's yielder, which lives on that fiber's stack for as long
        // as it runs, and we are on that fiber now.
        unsafe { (*y).suspend(()) }
    }

    /// Runs the hook of a suspended fiber because its context was cancelled.
    pub(crate) fn cancel_fiber(&self, key: FiberKey, reason: &Error) {
        let hook = self.fibers.borrow().get(key).and_then(|f| f.hook.take());
        if let Some(h) = hook {
            // SAFETY: a hook is only stored while its fiber is blocked in
            // `block_current`, which clears it before the frame that owns it
            // ends; the fiber is not running (cancel runs on the fiber that
            // cancels, whose own hook is always None while it runs).
            unsafe { h.call(reason) };
        }
    }

    /// Runs `child` at once; the current fiber continues right after it.
    #[inline(always)]
    pub(crate) fn run_child_first(&self, child: NewFiber) {
        let me = self.cur();
        {
            let q = &self.run_queue;
            me.mark_queued();
            q.push_front(me);
            // SAFETY: a new fiber's control block, held by the table.
            unsafe { (*child.0).mark_queued() };
            q.push_front(child.0);
        }
        Self::switch_out_of(me);
    }

    /// Queues a new fiber to run (used to start fibers without switching).
    #[inline]
    pub(crate) fn schedule(&self, fiber: NewFiber) {
        // SAFETY: a new fiber's control block, held by the table.
        unsafe { (*fiber.0).mark_queued() };
        self.run_queue.push_back(fiber.0);
    }

    /// Queues the fiber `key` (one whose wait was just claimed). Does
    /// nothing while the table is being torn down at the end of a run
    /// (values dropped then may still resolve promises), when no fiber will
    /// run again anyway.
    #[inline]
    pub(crate) fn queue_key(&self, key: FiberKey) {
        let Ok(fibers) = self.fibers.try_borrow() else {
            return;
        };
        if let Some(f) = fibers.get(key) {
            f.mark_queued();
            self.run_queue.push_back(Rc::as_ptr(f));
        }
    }

    /// Emits one trace line through the driver, or to standard error.
    pub(crate) fn trace(&self, line: &str) -> bool {
        match self.driver.try_borrow_mut() {
            Ok(mut d) => d.trace(line),
            Err(_) => false,
        }
    }

    pub(crate) fn stack_default_size(&self) -> usize {
        self.stacks.borrow().default_size()
    }

    pub(crate) fn idle_stacks(&self) -> usize {
        self.stacks.borrow().idle_count()
            + self.stacked_spares.borrow().len()
            + self.spare_workers.borrow().len()
    }

    pub(crate) fn fiber_count(&self) -> usize {
        self.fibers.borrow().len()
    }

    pub(crate) fn detached_started(&self) {
        self.detached_live.set(self.detached_live.get() + 1);
    }

    pub(crate) fn detached_done(&self) {
        self.detached_live.set(self.detached_live.get() - 1);
    }
}

/// Runs `main` as the root fiber of a new scheduler on this thread, driven by
/// `driver`, and returns its result once it finishes.
///
/// This is the entry point every backend's `run` builds on. Fails if called
/// inside another runtime on the same thread.
pub fn run_scheduler<T>(
    driver: Box<dyn Driver>,
    config: &RunConfig,
    main: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if in_runtime() {
        return Err(Error::msg(
            ErrorKind::InvalidInput,
            "weft::run called inside a running weft runtime on the same thread",
        ));
    }
    let shared = Arc::new(Shared::new(driver.unparker()));
    let root_ctx = CancelCtx::root();
    let detached_ctx = CancelCtx::child(&root_ctx, false);
    let stacks = StackPool::new(config.stack_size, config.max_idle_stacks);
    let stack_size = stacks.default_size();
    let sched = Scheduler {
        fibers: RefCell::new(SlotMap::with_key()),
        run_queue: RunQueue::with_capacity(64, ptr::null()),
        current_fiber: Cell::new(ptr::null()),
        root_done: Cell::new(false),
        timers: RefCell::new(BTreeMap::new()),
        timer_seq: Cell::new(0),
        next_id: Cell::new(1),
        shared,
        driver: RefCell::new(driver),
        stacks: RefCell::new(stacks),
        spare_fibers: RefCell::new(Vec::new()),
        stacked_spares: RefCell::new(Vec::new()),
        spare_workers: RefCell::new(Vec::new()),
        spare_stack_cap: SPARE_STACKS.min(config.max_idle_stacks),
        stack_size,
        root_ctx,
        detached_ctx,
        detached_live: Cell::new(0),
        budget: Cell::new(1),
        excess_since: Cell::new(None),
        fatal: RefCell::new(None),
    };
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            overflow::unwatch();
            CURRENT.with(|c| c.set(ptr::null()));
        }
    }
    CURRENT.with(|c| c.set(&sched));
    let running: *const Cell<*const Fiber> = &sched.current_fiber;
    // SAFETY: `sched` outlives `_reset`, which unwatches first. The cell
    // is null or points to the running fiber's control block (set around
    // each resume by `run_fiber`, from the table's `Rc`), whose label is
    // its first field (`Fiber` is `repr(C)`, checked at compile time), and
    // a `Cell` of one thin pointer has the layout of a `Cell` of another.
    unsafe { overflow::watch(running.cast()) };
    let _reset = Reset;

    let mut result: Option<std::thread::Result<Result<T>>> = None;
    let slot = &mut result;
    let done = &sched.root_done;
    let body = move || {
        *slot = Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(main)));
        done.set(true);
    };
    let opts = SpawnOpts {
        name: Some("main".into()),
        ..SpawnOpts::default()
    };
    // SAFETY: `body` borrows `result` and `main`'s captures, all of which live
    // on this frame; `run_loop` returns only once the root fiber has finished
    // or has been leaked (never to run again).
    let root = unsafe { sched.spawn(sched.root_ctx.clone(), Locals::default(), opts, body)? };
    sched.schedule(root);
    sched.run_loop();
    let fatal = sched.fatal.borrow_mut().take();
    match (result, fatal) {
        (Some(Err(panic)), _) => std::panic::resume_unwind(panic),
        (_, Some(fatal)) => Err(fatal),
        (Some(Ok(r)), None) => r,
        (None, None) => Err(Error::msg(
            ErrorKind::Deadlock,
            "the main fiber never finished",
        )),
    }
}
