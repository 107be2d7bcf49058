//! A failing fiber cancels its siblings.
//!
//! Three fibers share a switch. One of them fails; the switch cancels the
//! other two, which see the cancellation as an ordinary error value
//! (`Err(Cancelled)`) at their next suspension point, clean up and return.
//! `Switch::run` then returns the original failure, not the echoes.
//!
//! ```text
//! cargo run --example switch_failure
//! ```

use std::time::Duration;

use weft::time::MonoClock;
use weft::{Error, ErrorKind, Result, ResultExt, Switch};

/// Ticks until cancelled. Cancellation is just an error from `sleep`; we
/// look at it, say goodbye and pass it on with `?`.
fn ticker(clock: MonoClock) -> Result<()> {
    for i in 1.. {
        if let Err(e) = clock.sleep(Duration::from_millis(20)) {
            println!("ticker: stopping after {} ticks ({e})", i - 1);
            assert!(e.is_cancelled());
            return Err(e);
        }
        println!("ticker: tick {i}");
    }
    unreachable!()
}

/// A slow job holding a resource that must be given back however it ends.
fn slow_job(sw: &Switch<'_, '_>, clock: MonoClock) -> Result<()> {
    // `on_release` hooks run when the switch finishes, even when cancelled.
    sw.on_release(|| println!("slow job: released its resource"))?;
    clock.sleep(Duration::from_secs(10))?; // cancelled long before this
    println!("slow job: finished (not printed)");
    Ok(())
}

/// Checks a configuration value, and fails.
fn validate(clock: MonoClock) -> Result<()> {
    clock.sleep(Duration::from_millis(50))?;
    let port = "80x";
    port.parse::<u16>()
        .map_err(|e| Error::with_source(ErrorKind::InvalidInput, e))
        .context(format!("parsing port {port:?}"))?;
    Ok(())
}

fn main() -> Result<()> {
    weft::run(|env| {
        let clock = env.mono_clock();
        let result = Switch::run(|sw| {
            sw.fork(|| ticker(clock));
            sw.fork(|| slow_job(sw, clock));
            sw.fork(|| validate(clock));
            Ok(())
        });

        // The switch reports the failure that started it all; the
        // siblings' `Cancelled` errors are not mixed in.
        let err = result.expect_err("validate fails");
        println!("switch failed: {err}");
        assert_eq!(err.kind(), &ErrorKind::InvalidInput);
        assert!(!err.is_cancelled());

        // After a failed switch the program goes on as usual.
        let finished = clock.now()?;
        println!("still running at {:?}", finished.since_origin());
        Ok(())
    })
}
