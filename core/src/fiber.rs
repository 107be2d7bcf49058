//! Fibers: running functions concurrently on one thread.
//!
//! Fibers are forked into a [`Switch`]; the functions here build the usual
//! shapes from it. Scheduling is deterministic: a new fiber runs at once, and
//! its parent resumes as soon as the child suspends.
//!
//! ```
//! use weft::{fiber, traceln};
//!
//! weft::mock::run(|_env| {
//!     fiber::both(
//!         || {
//!             for x in 1..=3 {
//!                 traceln!("x = {x}");
//!                 fiber::yield_now()?;
//!             }
//!             Ok(())
//!         },
//!         || {
//!             for y in 1..=3 {
//!                 traceln!("y = {y}");
//!                 fiber::yield_now()?;
//!             }
//!             Ok(())
//!         },
//!     )
//! })
//! .unwrap();
//! ```

use std::cell::{Cell, RefCell};

use crate::backend::suspend;
use crate::cancel;
use crate::error::{Error, ErrorKind, Result};
use crate::sched;
use crate::switch::Switch;

pub use crate::local::FiberLocal;
pub use crate::switch::ForkOptions;

/// Lets other fibers run: the current fiber goes to the back of the run
/// queue. A cancellation point: returns `Err(Cancelled)` once it runs again
/// if the fiber's context has been cancelled.
// Inlined into the caller so that, on resumption, no call frame is left
// to return through between the caller and the switch (each would be a
// mispredicted return: the switch leaves the return-stack predictor out of
// step). This halves the cost of a yield.
#[inline(always)]
pub fn yield_now() -> Result<()> {
    // One check, after the switch: a cancelled fiber that yields still
    // learns of it at once, and the common case pays for one check.
    sched::current()?.yield_now()
}

/// `Err(Cancelled)` if the current fiber's context has been cancelled.
pub fn check() -> Result<()> {
    sched::current()?.check_cancelled()
}

/// Waits until the current fiber is cancelled, and returns the
/// cancellation. Useful as the "forever" branch of [`first`].
pub fn await_cancel() -> Error {
    match suspend::<std::convert::Infallible>("cancellation", |_r| {}) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// Runs `f` and `g` concurrently (`f` first) and waits for both. If either
/// fails, the other is cancelled and the failure is returned.
///
/// ```
/// use std::time::Duration;
/// use weft::{fiber, Error, ErrorKind};
///
/// weft::mock::run(|env| {
///     let clock = env.mono_clock();
///     let nap = |s| clock.sleep(Duration::from_secs(s));
///     fiber::both(|| nap(1), || nap(2))?;
///     assert_eq!(clock.now()?.since_origin(), Duration::from_secs(2), "side by side");
///
///     let failed = fiber::both(|| nap(10), || Err(Error::new(ErrorKind::Closed)));
///     assert_eq!(failed.unwrap_err().kind(), &ErrorKind::Closed);
///     assert_eq!(clock.now()?.since_origin(), Duration::from_secs(2), "the nap was cancelled");
///     Ok(())
/// })
/// .unwrap();
/// ```
pub fn both(f: impl FnOnce() -> Result<()>, g: impl FnOnce() -> Result<()>) -> Result<()> {
    Switch::run(|sw| {
        sw.fork(f);
        // If `f` has already failed, `g` does not start (Eio's order).
        sw.check()?;
        g()
    })
}

/// Like [`both`], returning both results.
pub fn pair<A, B>(f: impl FnOnce() -> Result<A>, g: impl FnOnce() -> Result<B>) -> Result<(A, B)> {
    let a = Cell::new(None);
    let b = Switch::run(|sw| {
        sw.fork(|| {
            a.set(Some(f()?));
            Ok(())
        });
        sw.check()?;
        g()
    })?;
    match a.take() {
        Some(a) => Ok((a, b)),
        // `f` was cancelled from outside (a cancellation that is not a
        // failure of the switch): report it rather than a missing value.
        None => {
            check()?;
            Err(Error::msg(
                ErrorKind::Cancelled,
                "pair: the first function did not finish",
            ))
        }
    }
}

/// Runs every function concurrently, in order, and waits for all of them.
/// The first failure cancels the rest.
pub fn all<F>(fns: impl IntoIterator<Item = F>) -> Result<()>
where
    F: FnOnce() -> Result<()>,
{
    Switch::run(|sw| {
        for f in fns {
            sw.fork(f);
        }
        Ok(())
    })
}

/// Runs `f` and `g` concurrently and returns the result of the first to
/// succeed, cancelling the other. If both succeed before the cancellation
/// takes effect, the first result is kept (see [`first_with`] to combine).
/// A failure of either (other than the cancellation) is returned.
///
/// ```
/// use std::time::Duration;
/// use weft::{fiber, traceln};
///
/// let (result, trace) = weft::mock::run_traced(|env| {
///     let clock = env.mono_clock();
///     let from_cache = || {
///         clock.sleep(Duration::from_millis(5))?;
///         Ok("cached")
///     };
///     let from_origin = || {
///         let r = clock.sleep(Duration::from_millis(80));
///         traceln!("origin: {}", if r.is_err() { "cancelled" } else { "finished" });
///         r.map(|()| "fresh")
///     };
///     assert_eq!(fiber::first(from_cache, from_origin)?, "cached");
///     Ok(())
/// });
/// result.unwrap();
/// assert_eq!(trace, ["mock time is now 0.005", "origin: cancelled"]);
/// ```
pub fn first<T>(f: impl FnOnce() -> Result<T>, g: impl FnOnce() -> Result<T>) -> Result<T> {
    race([boxed(f), boxed(g)], &|a, _| a)
}

/// Like [`first`], with `combine` deciding what to return if both succeed.
pub fn first_with<T>(
    f: impl FnOnce() -> Result<T>,
    g: impl FnOnce() -> Result<T>,
    combine: impl Fn(T, T) -> T,
) -> Result<T> {
    race([boxed(f), boxed(g)], &combine)
}

/// [`first_with`], cancelling the loser with `reason()` (wrapped in a
/// cancellation) rather than "another fiber finished first": a timeout
/// says it is one.
pub(crate) fn first_with_reason<T>(
    f: impl FnOnce() -> Result<T>,
    g: impl FnOnce() -> Result<T>,
    combine: impl Fn(T, T) -> T,
    reason: impl Fn() -> Error,
) -> Result<T> {
    race_collect([boxed(f), boxed(g)], &combine, &reason)
}

/// Runs every function concurrently and returns the first success,
/// cancelling the others.
pub fn any<T, F>(fns: impl IntoIterator<Item = F>) -> Result<T>
where
    F: FnOnce() -> Result<T>,
{
    race(fns, &|a, _| a)
}

/// Like [`any`], but returns every success that happened before the
/// cancellation took effect, in the order they happened.
pub fn n_any<T, F>(fns: impl IntoIterator<Item = F>) -> Result<Vec<T>>
where
    F: FnOnce() -> Result<T>,
{
    let results = race_collect(
        fns.into_iter().map(|f| move || f().map(|v| vec![v])),
        &|mut a, b| {
            a.extend(b);
            a
        },
        &finished_first,
    )?;
    Ok(results)
}

type BoxedFn<'a, T> = Box<dyn FnOnce() -> Result<T> + 'a>;

fn boxed<'a, T>(f: impl FnOnce() -> Result<T> + 'a) -> BoxedFn<'a, T> {
    Box::new(f)
}

fn race<T, F>(fns: impl IntoIterator<Item = F>, combine: &dyn Fn(T, T) -> T) -> Result<T>
where
    F: FnOnce() -> Result<T>,
{
    race_collect(fns, combine, &finished_first)
}

/// Why the losers of a race are cancelled, unless the caller says better.
fn finished_first() -> Error {
    Error::msg(ErrorKind::Cancelled, "another fiber finished first")
}

fn race_collect<T, F>(
    fns: impl IntoIterator<Item = F>,
    combine: &dyn Fn(T, T) -> T,
    reason: &dyn Fn() -> Error,
) -> Result<T>
where
    F: FnOnce() -> Result<T>,
{
    let winner: RefCell<Option<T>> = RefCell::new(None);
    let mut count = 0usize;
    cancel::sub(|scope| {
        Switch::run_racing(|sw| {
            for f in fns {
                count += 1;
                let winner = &winner;
                // Every racer starts, even once another has won.
                sw.fork_raw(move || {
                    let v = f()?;
                    let mut w = winner.borrow_mut();
                    *w = Some(match w.take() {
                        None => v,
                        Some(prev) => combine(prev, v),
                    });
                    drop(w);
                    scope.cancel(reason());
                    Ok(())
                });
            }
            Ok(())
        })
    })?;
    match winner.into_inner() {
        Some(v) => Ok(v),
        None if count == 0 => Err(Error::msg(ErrorKind::InvalidInput, "no fibers to race")),
        None => {
            // Every fiber was cancelled from outside without finishing.
            check()?;
            Err(Error::msg(ErrorKind::Cancelled, "no racing fiber finished"))
        }
    }
}

fn check_max_fibers(max_fibers: usize) -> Result<()> {
    if max_fibers == 0 {
        return Err(Error::msg(
            ErrorKind::InvalidInput,
            "max_fibers must be at least 1",
        ));
    }
    Ok(())
}

/// Calls `f` on every item, with up to `max_fibers` calls running at once,
/// started in order. The first failure cancels the rest.
///
/// ```
/// use weft::fiber;
/// weft::mock::run(|_env| {
///     let mut seen = Vec::new();
///     let cell = std::cell::RefCell::new(&mut seen);
///     fiber::iter(2, 1..=4, |i| {
///         fiber::yield_now()?;
///         cell.borrow_mut().push(i);
///         Ok(())
///     })?;
///     assert_eq!(seen, [1, 2, 3, 4]);
///     assert!(fiber::iter(0, 1..=4, |_| Ok(())).is_err(), "max_fibers 0 is an error");
///     Ok(())
/// })
/// .unwrap();
/// ```
pub fn iter<A, I, F>(max_fibers: usize, items: I, f: F) -> Result<()>
where
    I: IntoIterator<Item = A>,
    F: Fn(A) -> Result<()>,
{
    filter_map(max_fibers, items, |a| f(a).map(|()| None::<()>)).map(|_| ())
}

/// Like [`iter`], collecting the results in the order of the items.
pub fn map<A, B, I, F>(max_fibers: usize, items: I, f: F) -> Result<Vec<B>>
where
    I: IntoIterator<Item = A>,
    F: Fn(A) -> Result<B>,
{
    filter_map(max_fibers, items, |a| f(a).map(Some))
}

/// Like [`map`], keeping only the `Some` results, in the order of the items.
pub fn filter_map<A, B, I, F>(max_fibers: usize, items: I, f: F) -> Result<Vec<B>>
where
    I: IntoIterator<Item = A>,
    F: Fn(A) -> Result<Option<B>>,
{
    check_max_fibers(max_fibers)?;
    let source = RefCell::new(items.into_iter().enumerate());
    let results: RefCell<Vec<(usize, B)>> = RefCell::new(Vec::new());
    // Items taken but not processed yet, and whether the source has run
    // dry: together they tell whether every item was processed.
    let pending = Cell::new(0usize);
    let exhausted = Cell::new(false);
    let next = || {
        let n = source.borrow_mut().next();
        match n {
            Some(_) => pending.set(pending.get() + 1),
            None => exhausted.set(true),
        }
        n
    };
    Switch::run(|sw| {
        // Each worker fiber takes the next item when it finishes the last,
        // so at most `max_fibers` calls run at once and items start in order.
        for _ in 0..max_fibers {
            let Some(first) = next() else { break };
            let (results, f, next, pending) = (&results, &f, &next, &pending);
            sw.fork(move || {
                let mut item = first;
                loop {
                    let (i, a) = item;
                    if let Some(b) = f(a)? {
                        results.borrow_mut().push((i, b));
                    }
                    pending.set(pending.get() - 1);
                    let Some(n) = next() else { return Ok(()) };
                    // After a failure or a cancellation, start no further item.
                    sw.check()?;
                    item = n;
                }
            });
        }
        Ok(())
    })?;
    if pending.get() > 0 || !exhausted.get() {
        // A worker was cancelled from outside (a cancellation that is not a
        // failure of the switch): report it rather than partial results.
        check()?;
        return Err(Error::msg(
            ErrorKind::Cancelled,
            "stopped before every item was processed",
        ));
    }
    let mut r = results.into_inner();
    r.sort_by_key(|(i, _)| *i);
    Ok(r.into_iter().map(|(_, b)| b).collect())
}

/// A snapshot of the current thread's scheduler, for tests and diagnostics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Fibers alive (running, runnable or suspended), the main one included.
    pub fibers: usize,
    /// Idle stacks held for reuse (by the pool, or with the control blocks
    /// of finished fibers).
    pub idle_stacks: usize,
    /// Default stack size in bytes.
    pub stack_size: usize,
}

/// Reports on the current thread's scheduler.
pub fn stats() -> Result<SchedulerStats> {
    let s = sched::current()?;
    Ok(SchedulerStats {
        fibers: s.fiber_count(),
        idle_stacks: s.idle_stacks(),
        stack_size: s.stack_default_size(),
    })
}
