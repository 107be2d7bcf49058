//! Clocks, sleeping and timeouts.
//!
//! [`Clock`] is the wall clock and [`MonoClock`] the monotonic one; both
//! come from the [`Env`](crate::Env). Under the mock backend both are
//! virtual: time stands still while any fiber can run, and jumps to the next
//! deadline when none can.
//!
//! ```
//! use std::time::Duration;
//! use weft::traceln;
//!
//! weft::mock::run(|env| {
//!     let clock = env.clock();
//!     traceln!("Sleeping for five seconds...");
//!     clock.sleep(Duration::from_secs(5))?;
//!     traceln!("Resumed");
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use crate::backend::suspend_with_cancel;
use crate::error::{Error, ErrorKind, Result};
use crate::fiber;
use crate::sched;

/// Suspends the current fiber until the monotonic clock reaches `deadline`
/// (nanoseconds on the driver's clock).
pub(crate) fn sleep_until_ns(deadline: u64) -> Result<()> {
    let s = sched::current()?;
    s.check_cancelled()?;
    if s.now() >= deadline {
        return fiber::yield_now();
    }
    let key = Cell::new(None);
    suspend_with_cancel(
        "sleep",
        |r| key.set(Some(s.add_timer(deadline, r))),
        |r, reason| {
            if let Some(k) = key.get() {
                s.remove_timer(k);
            }
            let _ = r.fail(Error::cancelled(reason.clone()));
        },
    )
}

/// Sleeps the current fiber for `d` on the scheduler's clock. For pauses
/// inside weft itself (a retry back-off); user code sleeps through a clock
/// capability.
pub(crate) fn sleep_ns(d: Duration) -> Result<()> {
    let s = sched::current()?;
    sleep_until_ns(s.now().saturating_add(duration_ns(d)))
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The wall clock (`SystemTime`). A capability: get it from the `Env`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    _private: (),
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock { _private: () }
    }

    /// The current time.
    pub fn now(&self) -> Result<SystemTime> {
        Ok(sched::current()?.wall_clock())
    }

    /// The current time as seconds since the Unix epoch.
    pub fn now_secs(&self) -> Result<f64> {
        let t = self.now()?;
        Ok(t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0))
    }

    /// Suspends the current fiber for `d`. A cancellation point: a
    /// cancelled sleep returns `Err(Cancelled)` at once.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    ///
    /// weft::mock::run(|env| {
    ///     let clock = env.clock();
    ///     clock.sleep(Duration::from_secs(90))?; // virtual time: instant
    ///     let now = clock.now()?.duration_since(UNIX_EPOCH).unwrap();
    ///     assert_eq!(now, Duration::from_secs(90));
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn sleep(&self, d: Duration) -> Result<()> {
        let s = sched::current()?;
        sleep_until_ns(s.now().saturating_add(duration_ns(d)))
    }

    /// Suspends the current fiber until the wall clock reads `t` (measured
    /// as a duration from now on the monotonic clock).
    pub fn sleep_until(&self, t: SystemTime) -> Result<()> {
        let s = sched::current()?;
        let d = t.duration_since(s.wall_clock()).unwrap_or(Duration::ZERO);
        sleep_until_ns(s.now().saturating_add(duration_ns(d)))
    }
}

/// A reading of the monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// Time since the clock's origin.
    pub fn since_origin(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_ns(d)))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

/// The monotonic clock. A capability: get it from the `Env`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonoClock {
    _private: (),
}

impl MonoClock {
    pub(crate) fn new() -> MonoClock {
        MonoClock { _private: () }
    }

    /// The current reading.
    pub fn now(&self) -> Result<Instant> {
        Ok(Instant(sched::current()?.now()))
    }

    /// Suspends the current fiber for `d`. A cancellation point: a
    /// cancelled sleep returns `Err(Cancelled)` at once.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// weft::run(|env| {
    ///     let clock = env.mono_clock();
    ///     let start = clock.now()?;
    ///     clock.sleep(Duration::from_millis(5))?;
    ///     assert!(clock.now()?.duration_since(start) >= Duration::from_millis(5));
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn sleep(&self, d: Duration) -> Result<()> {
        let s = sched::current()?;
        sleep_until_ns(s.now().saturating_add(duration_ns(d)))
    }

    /// Suspends the current fiber until the clock reaches `t`.
    pub fn sleep_until(&self, t: Instant) -> Result<()> {
        sleep_until_ns(t.0)
    }
}

/// Runs `f`, cancelling it if it has not finished after `d`; then returns
/// `Err(Timeout)`. Inside `f`, the cancellation's
/// [`cancel_reason`](Error::cancel_reason) is that timeout, so it reads
/// `cancelled: timeout, timed out after 1s`.
///
/// ```
/// use std::time::Duration;
/// weft::mock::run(|env| {
///     let clock = env.mono_clock();
///     let r = weft::time::with_timeout(clock, Duration::from_secs(1), || {
///         clock.sleep(Duration::from_secs(10))?;
///         Ok("slow")
///     });
///     assert!(r.unwrap_err().is_timeout());
///     Ok(())
/// })
/// .unwrap();
/// ```
pub fn with_timeout<T>(clock: MonoClock, d: Duration, f: impl FnOnce() -> Result<T>) -> Result<T> {
    // The timer branch yields `None` rather than failing, so that when the
    // deadline and `f`'s success land in the same scheduler turn the value
    // wins: a completed read is returned, never dropped.
    let timeout = || Error::new(ErrorKind::Timeout).context(format!("timed out after {d:?}"));
    // `f`, if still running when the timer wins, is cancelled because of
    // the timeout, and says so.
    let r = fiber::first_with_reason(
        || {
            clock.sleep(d)?;
            Ok(None)
        },
        || f().map(Some),
        |a, b| a.or(b),
        timeout,
    )?;
    r.ok_or_else(timeout)
}
