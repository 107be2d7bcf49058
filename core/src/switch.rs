//! Switches: structured concurrency.
//!
//! A [`Switch`] groups fibers. [`Switch::run`] returns only after every fiber
//! forked in it has finished, so fibers may borrow from the enclosing scope
//! exactly as threads do under `std::thread::scope`. The first failure (an
//! `Err` returned by a fiber, [`Switch::fail`], or a panic) cancels the
//! switch: every other fiber in it sees `Err(Cancelled)` at its next
//! suspension point. `run` then returns the failures, combined in the order
//! they happened, or re-raises the first panic once everything has stopped.
//!
//! ```
//! use weft::{fiber, traceln, Switch};
//!
//! weft::mock::run(|_env| {
//!     let mut total = 0;
//!     let counts = [1, 2, 3];
//!     let sum = std::cell::Cell::new(0);
//!     Switch::run(|sw| {
//!         for c in &counts {
//!             let sum = &sum;                 // borrowed by the fibers
//!             sw.fork(move || {
//!                 fiber::yield_now()?;
//!                 sum.set(sum.get() + c);
//!                 Ok(())
//!             });
//!         }
//!         Ok(())
//!     })?;
//!     total += sum.get();
//!     traceln!("total = {total}");
//!     assert_eq!(total, 6);
//!     Ok(())
//! })
//! .unwrap();
//! ```
//!
//! Fibers cannot outlive the switch, so they cannot hold on to borrows that
//! end with it:
//!
//! ```compile_fail
//! use weft::Switch;
//! weft::mock::run(|_env| {
//!     let mut escaped = None;
//!     Switch::run(|sw| {
//!         escaped = Some(sw);    // the switch cannot leave `run`
//!         Ok(())
//!     })
//! }).unwrap();
//! ```
//!
//! ```compile_fail
//! use weft::Switch;
//! weft::mock::run(|_env| {
//!     Switch::run(|sw| {
//!         let local = String::from("dies at the end of this closure");
//!         sw.fork(|| { println!("{local}"); Ok(()) });   // borrows too short-lived
//!         Ok(())
//!     })
//! }).unwrap();
//! ```

use std::any::Any;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::Rc;

use crate::backend::{suspend_uncancellable, Resumer};
use crate::cancel::{protect, CancelCtx};
use crate::error::{Error, ErrorKind, Result};
use crate::sched::{self, SpawnOpts};
use crate::sync::Promise;

/// Options for one fiber: a name (shown in deadlock reports) and a stack size.
#[derive(Clone, Debug, Default)]
pub struct ForkOptions {
    name: Option<Cow<'static, str>>,
    stack_size: Option<usize>,
}

impl ForkOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the fiber.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the fiber's stack size in bytes (rounded up to whole pages; at
    /// least 16 KiB).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }
}

/// A release hook with its lifetime erased (see `on_release`).
type ReleaseHook = Box<dyn FnOnce() + 'static>;

struct State {
    name: Option<Cow<'static, str>>,
    ctx: Rc<CancelCtx>,
    /// Non-daemon fibers still running, the body of `run` included.
    live: Cell<usize>,
    daemons: Cell<usize>,
    errors: RefCell<Vec<Error>>,
    panic: RefCell<Option<Box<dyn Any + Send>>>,
    joiner: RefCell<Option<Resumer<()>>>,
    stopping_daemons: Cell<bool>,
    /// The first `Cancelled` a fiber returned because the switch was
    /// cancelled from outside: `run` reports it (as Eio does) unless there
    /// is a real failure to report instead.
    echo: RefCell<Option<Error>>,
    finished: Cell<bool>,
    hooks: RefCell<Vec<ReleaseHook>>,
}

/// A group of fibers whose lifetimes end with [`Switch::run`].
///
/// `'sw` is the lifetime of the switch itself; fibers forked in it may
/// borrow anything that lives at least that long. `'env` is the lifetime of
/// what the switch's creator borrows.
pub struct Switch<'sw, 'env: 'sw> {
    state: State,
    _scope: PhantomData<&'sw mut &'sw ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl std::fmt::Debug for Switch<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("name", &self.state.name)
            .field("fibers", &self.state.live.get())
            .field("daemons", &self.state.daemons.get())
            .field("cancelled", &self.state.ctx.is_cancelled())
            .finish()
    }
}

impl<'env> Switch<'_, 'env> {
    /// Runs `f` with a new switch, then waits for every fiber forked in it,
    /// runs its release hooks (last registered first), and returns `f`'s
    /// value — or the switch's failures, combined in order.
    ///
    /// If any fiber panicked, the first panic is re-raised here after all
    /// the others have been cancelled and joined.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weft::{Error, ErrorKind, Switch};
    ///
    /// weft::mock::run(|env| {
    ///     let clock = env.mono_clock();
    ///     // Every fiber has finished when `run` returns: the value is final.
    ///     let results = std::cell::RefCell::new(Vec::new());
    ///     Switch::run(|sw| {
    ///         for n in [3, 1, 2] {
    ///             let results = &results;
    ///             sw.fork(move || {
    ///                 clock.sleep(Duration::from_secs(n))?;
    ///                 results.borrow_mut().push(n);
    ///                 Ok(())
    ///             });
    ///         }
    ///         Ok(())
    ///     })?;
    ///     assert_eq!(results.into_inner(), [1, 2, 3]);
    ///
    ///     // A failing fiber cancels the others; `run` returns its error.
    ///     let r = Switch::run(|sw| {
    ///         sw.fork(|| clock.sleep(Duration::from_secs(100)));
    ///         sw.fork(|| Err(Error::msg(ErrorKind::InvalidInput, "no")));
    ///         Ok(())
    ///     });
    ///     assert_eq!(r.unwrap_err().kind(), &ErrorKind::InvalidInput);
    ///     assert_eq!(clock.now()?.since_origin(), Duration::from_secs(3), "nobody slept 100 s");
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn run<T, F>(f: F) -> Result<T>
    where
        F: for<'sw> FnOnce(&'sw Switch<'sw, 'env>) -> Result<T>,
    {
        Self::run_inner(None, true, f)
    }

    /// Like [`Switch::run`], with a name that appears in diagnostics.
    pub fn run_named<T, F>(name: impl Into<Cow<'static, str>>, f: F) -> Result<T>
    where
        F: for<'sw> FnOnce(&'sw Switch<'sw, 'env>) -> Result<T>,
    {
        Self::run_inner(Some(name.into()), true, f)
    }

    /// Like [`Switch::run`], but fibers cut short by a cancellation from
    /// outside do not make it fail: for racing combinators, whose losers
    /// are cancelled on purpose.
    pub(crate) fn run_racing<T, F>(f: F) -> Result<T>
    where
        F: for<'sw> FnOnce(&'sw Switch<'sw, 'env>) -> Result<T>,
    {
        Self::run_inner(None, false, f)
    }

    fn run_inner<T, F>(name: Option<Cow<'static, str>>, report_echo: bool, f: F) -> Result<T>
    where
        F: for<'sw> FnOnce(&'sw Switch<'sw, 'env>) -> Result<T>,
    {
        let sched = sched::current()?;
        let parent = sched.current_ctx();
        // As in Eio, a switch cannot start in a cancelled context: `f` does
        // not run at all (use `cancel::protect` for clean-up that must).
        parent.check()?;
        let ctx = CancelCtx::child(&parent, false);
        let sw = Switch {
            state: State {
                name,
                ctx: ctx.clone(),
                live: Cell::new(1),
                daemons: Cell::new(0),
                errors: RefCell::new(Vec::new()),
                panic: RefCell::new(None),
                joiner: RefCell::new(None),
                stopping_daemons: Cell::new(false),
                echo: RefCell::new(None),
                finished: Cell::new(false),
                hooks: RefCell::new(Vec::new()),
            },
            _scope: PhantomData,
            _env: PhantomData,
        };
        let old = sched.enter_ctx(ctx);
        // Whatever happens below, no fiber may outlive `sw`: the body's
        // panic is caught and re-raised only after the join.
        let body = catch_unwind(AssertUnwindSafe(|| f(&sw)));
        let mut body_err = None;
        let value = match body {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                sw.state.record(e.clone());
                body_err = Some(e);
                None
            }
            Err(p) => {
                sw.state.record_panic(p);
                None
            }
        };
        sw.state.fiber_done(false);
        sw.state.join();
        sw.state.release();
        sched.enter_ctx(old);

        if let Some(p) = sw.state.panic.borrow_mut().take() {
            std::panic::resume_unwind(p);
        }
        let errors = std::mem::take(&mut *sw.state.errors.borrow_mut());
        if !errors.is_empty() {
            let e = Error::multiple(errors);
            return Err(match &sw.state.name {
                Some(n) => e.context(format!("in switch \"{n}\"")),
                None => e,
            });
        }
        let echo = sw.state.echo.borrow_mut().take().filter(|_| report_echo);
        match (value, body_err, echo) {
            // A fiber was cut short by a cancellation from outside: the
            // switch's work is not complete, whatever the body returned.
            (_, _, Some(echo)) => Err(echo),
            (Some(v), _, None) => Ok(v),
            (None, Some(e), None) => Err(e),
            (None, None, None) => unreachable!("no value and no error"),
        }
    }
}

impl<'sw> Switch<'sw, '_> {
    /// Forks a fiber that runs `f` at once; the caller continues as soon as
    /// the new fiber suspends or finishes. An `Err` from `f` fails the switch.
    ///
    /// If the switch has already been cancelled (or has failed), `f` is
    /// dropped without running and the caller continues, as in Eio: the
    /// fiber's failure would only have echoed the switch's own.
    ///
    /// ```
    /// use weft::{fiber, traceln, Switch};
    ///
    /// let (result, trace) = weft::mock::run_traced(|_env| {
    ///     let name = String::from("child");
    ///     Switch::run(|sw| {
    ///         sw.fork(|| {
    ///             traceln!("{name}: runs first"); // borrows `name`
    ///             fiber::yield_now()?;
    ///             traceln!("{name}: resumed");
    ///             Ok(())
    ///         });
    ///         traceln!("parent: runs once the child waits");
    ///         Ok(())
    ///     })
    /// });
    /// result.unwrap();
    /// assert_eq!(trace, ["child: runs first", "parent: runs once the child waits", "child: resumed"]);
    /// ```
    #[track_caller]
    pub fn fork<F>(&'sw self, f: F)
    where
        F: FnOnce() -> Result<()> + 'sw,
    {
        if self.refuse_fork().is_none() {
            self.fork_inner(false, ForkOptions::default(), Location::caller(), f)
        }
    }

    /// Like [`fork`](Switch::fork), with a name and stack size.
    #[track_caller]
    pub fn fork_with<F>(&'sw self, opts: ForkOptions, f: F)
    where
        F: FnOnce() -> Result<()> + 'sw,
    {
        if self.refuse_fork().is_none() {
            self.fork_inner(false, opts, Location::caller(), f)
        }
    }

    /// Forks a daemon fiber: it does not keep the switch open, and is
    /// cancelled (silently) once every non-daemon fiber has finished. Like
    /// [`fork`](Switch::fork), does nothing on a cancelled switch.
    #[track_caller]
    pub fn fork_daemon<F>(&'sw self, f: F)
    where
        F: FnOnce() -> Result<()> + 'sw,
    {
        if self.refuse_fork().is_none() {
            self.fork_inner(true, ForkOptions::default(), Location::caller(), f)
        }
    }

    /// Forks a fiber whose result goes to the returned promise instead of
    /// failing the switch. A panic still fails the switch. On a cancelled
    /// switch `f` does not run and the promise holds `Err(Cancelled)`.
    #[track_caller]
    pub fn fork_promise<T, F>(&'sw self, f: F) -> Promise<Result<T>>
    where
        T: 'sw,
        F: FnOnce() -> Result<T> + 'sw,
    {
        let (promise, resolver) = Promise::new();
        if let Some(cancelled) = self.refuse_fork() {
            let _ = resolver.resolve(Err(cancelled));
            return promise;
        }
        self.fork_inner(
            false,
            ForkOptions::default(),
            Location::caller(),
            move || {
                let _ = resolver.resolve(f());
                Ok(())
            },
        );
        promise
    }

    /// Forks even if the switch is cancelled: the fiber then sees the
    /// cancellation at its first cancellation point. For the racing
    /// combinators, which start every function they are given (Eio's
    /// `fork_raw`).
    #[track_caller]
    pub(crate) fn fork_raw<F>(&'sw self, f: F)
    where
        F: FnOnce() -> Result<()> + 'sw,
    {
        self.fork_inner(false, ForkOptions::default(), Location::caller(), f)
    }

    /// The cancellation to report instead of forking, if the switch is off.
    #[inline]
    fn refuse_fork(&self) -> Option<Error> {
        assert!(
            !self.state.finished.get(),
            "fork on a switch that has finished (from a release hook?)"
        );
        self.state.ctx.check().err()
    }

    fn fork_inner<F>(
        &'sw self,
        daemon: bool,
        opts: ForkOptions,
        site: &'static Location<'static>,
        f: F,
    ) where
        F: FnOnce() -> Result<()> + 'sw,
    {
        let st = &self.state;
        assert!(
            !st.finished.get(),
            "fork on a switch that has finished (from a release hook?)"
        );
        let sched = match sched::current() {
            Ok(s) => s,
            Err(e) => {
                st.record(e);
                return;
            }
        };
        if daemon {
            st.daemons.set(st.daemons.get() + 1);
        } else {
            st.live.set(st.live.get() + 1);
        }
        let locals = sched.current_locals();
        let body = move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => st.record(e),
                Err(p) => st.record_panic(p),
            }
            st.fiber_done(daemon);
        };
        let spawn_opts = SpawnOpts {
            name: opts.name,
            stack_size: opts.stack_size,
            site: Some(site),
        };
        // SAFETY: `body` borrows `self` and `f`'s captures, which live for
        // 'sw; `Switch::run` does not return (nor let `self` die) before every
        // fiber counted in `live`/`daemons` has called `fiber_done`, which is
        // the last thing `body` does with them.
        if let Err(e) = unsafe { sched.fork_now(st.ctx.clone(), locals, spawn_opts, body) } {
            st.record(e.context("forking a fiber"));
            st.fiber_done(daemon);
        }
    }

    /// Registers `hook` to run when the switch finishes, after all its
    /// fibers. Hooks run last-registered-first, in a protected context, so
    /// they run to completion even if they suspend while the switch is being
    /// cancelled.
    ///
    /// On a switch that has already finished, `hook` runs at once and the
    /// call returns an error.
    pub fn on_release(&self, hook: impl FnOnce() + 'sw) -> Result<()> {
        if self.state.finished.get() {
            protect(hook);
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                "on_release on a finished switch: the hook ran at once",
            ));
        }
        let hook: Box<dyn FnOnce() + 'sw> = Box::new(hook);
        // SAFETY: only the lifetime changes. Hooks are run (and so dropped)
        // by `release` inside `Switch::run`, or dropped with the switch at the
        // end of `run`, while everything living for 'sw is still alive; the
        // erasure only stops the drop checker from demanding that 'sw
        // outlive the switch's own storage.
        let hook: ReleaseHook = unsafe { std::mem::transmute(hook) };
        self.state.hooks.borrow_mut().push(hook);
        Ok(())
    }

    /// Fails the switch with `error`, cancelling its fibers. `run` will
    /// return it (combined with any other failures).
    pub fn fail(&self, error: Error) {
        self.state.record(error);
    }

    /// `Err(Cancelled)` if the switch has been cancelled or has failed.
    pub fn check(&self) -> Result<()> {
        self.state.ctx.check()
    }

    /// The switch's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.state.name.as_deref()
    }
}

impl State {
    fn cancel(&self, reason: Error) {
        if let Ok(s) = sched::current() {
            self.ctx.cancel(s, reason);
        }
    }

    /// Records a failure and cancels the switch. A `Cancelled` error from a
    /// fiber of a switch that is already cancelled is only the echo of that
    /// cancellation, and is dropped.
    fn record(&self, e: Error) {
        if e.is_cancelled() && self.ctx.is_cancelled() {
            // The echo of a cancellation: of our own failure (reported as
            // that failure), of stopping the daemons (silent by design), or
            // of a cancellation from outside (reported by `run`).
            if self.errors.borrow().is_empty() && !self.stopping_daemons.get() {
                self.echo.borrow_mut().get_or_insert(e);
            }
            return;
        }
        self.errors.borrow_mut().push(e.clone());
        self.cancel(e);
    }

    fn record_panic(&self, p: Box<dyn Any + Send>) {
        let msg = panic_message(&p);
        {
            let mut slot = self.panic.borrow_mut();
            if slot.is_none() {
                *slot = Some(p);
            }
        }
        self.cancel(Error::msg(ErrorKind::Panic, msg));
    }

    #[inline]
    fn fiber_done(&self, daemon: bool) {
        if daemon {
            self.daemons.set(self.daemons.get() - 1);
        } else {
            self.live.set(self.live.get() - 1);
        }
        // Most fibers finish while others keep the switch open.
        if self.live.get() == 0 {
            self.no_fiber_left();
        }
    }

    /// The rest of [`fiber_done`](Self::fiber_done), once no non-daemon
    /// fiber is left: stop the daemons, or wake the joiner.
    #[inline(never)]
    fn no_fiber_left(&self) {
        if self.daemons.get() > 0 && !self.stopping_daemons.get() {
            self.stopping_daemons.set(true);
            self.cancel(Error::msg(
                ErrorKind::Cancelled,
                "the switch's non-daemon fibers have finished",
            ));
        }
        if self.daemons.get() == 0 {
            if let Some(r) = self.joiner.borrow_mut().take() {
                let _ = r.resume(());
            }
        }
    }

    fn join(&self) {
        while self.live.get() + self.daemons.get() > 0 {
            let _ = suspend_uncancellable("switch to finish its fibers", |r| {
                *self.joiner.borrow_mut() = Some(r);
            });
        }
    }

    fn release(&self) {
        self.finished.set(true);
        loop {
            let hook = self.hooks.borrow_mut().pop();
            let Some(hook) = hook else { break };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| protect(hook))) {
                self.record_panic(p);
            }
        }
    }
}

/// The message of a panic payload, if it is a string. The error's kind
/// already says `panic`, so the message is not prefixed again.
pub(crate) fn panic_message(p: &Box<dyn Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(the panic payload is not a string)".to_string()
    }
}
