//! Running things side by side: `fiber::both` waits for both, `fiber::first`
//! takes the first result and cancels the other, `time::with_timeout` races
//! an operation against the clock.
//!
//! ```text
//! cargo run --example racing
//! ```

use std::time::Duration;

use weft::time::{with_timeout, MonoClock};
use weft::{fiber, Result};

/// Pretends to fetch `what` from somewhere that takes `delay` to answer.
/// Sleeping is a suspension point: other fibers run meanwhile, and a
/// cancellation arrives here as `Err(Cancelled)`, which `?` carries out.
fn fetch(clock: MonoClock, what: &str, delay: Duration) -> Result<String> {
    let r = clock.sleep(delay);
    if let Err(e) = &r {
        println!("  {what}: stopped early ({e})");
    }
    r?;
    println!("  {what}: done after {delay:?}");
    Ok(format!("{what} data"))
}

fn main() -> Result<()> {
    weft::run(|env| {
        let clock = env.mono_clock();
        let ms = Duration::from_millis;
        let t0 = clock.now()?;
        let elapsed = || clock.now().map(|t| t.duration_since(t0));

        // Both run at once: the pair takes as long as the slower one
        // (about 60 ms), not the sum.
        println!("both:");
        let (a, b) = fiber::pair(
            || fetch(clock, "users", ms(60)),
            || fetch(clock, "orders", ms(40)),
        )?;
        println!("  got {a:?} and {b:?} after {:?}", elapsed()?);

        // The first to succeed wins; the other is cancelled at its next
        // suspension point and has finished by the time `first` returns.
        println!("first:");
        let t1 = clock.now()?;
        let winner = fiber::first(
            || fetch(clock, "primary mirror", ms(80)),
            || fetch(clock, "backup mirror", ms(20)),
        )?;
        let took = clock.now()?.duration_since(t1);
        println!("  {winner:?} won after {took:?}");

        // Any number of racers: `fiber::any` returns the first success.
        let replicas = [
            ("replica a", ms(30)),
            ("replica b", ms(10)),
            ("replica c", ms(50)),
        ];
        println!("any:");
        let fastest = fiber::any(
            replicas
                .iter()
                .map(|&(name, delay)| move || fetch(clock, name, delay)),
        )?;
        println!("  fastest: {fastest:?}");

        // A timeout is a race against the clock. The error says it was one.
        println!("with_timeout:");
        match with_timeout(clock, ms(25), || fetch(clock, "slow report", ms(500))) {
            Ok(v) => println!("  unexpectedly got {v:?}"),
            Err(e) if e.is_timeout() => println!("  gave up: {e}"),
            Err(e) => return Err(e),
        }
        println!("total {:?}", elapsed()?);
        Ok(())
    })
}
