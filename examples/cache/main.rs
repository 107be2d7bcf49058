//! A concurrent cache built on promises.
//!
//! The first request for a key stores a promise in the table *before* it
//! starts fetching, so concurrent requests for the same key wait for that
//! one fetch instead of starting their own. Errors are cached the same way
//! (a real cache might evict them).
//!
//! ```text
//! cargo run --example cache
//! ```

mod promise_cache;

use std::cell::Cell;
use std::time::Duration;

use weft::time::MonoClock;
use weft::{fiber, Error, ErrorKind, Result};

use promise_cache::Cache;

/// A slow lookup (a database, a web service...), simulated with a sleep.
fn slow_lookup(clock: MonoClock, fetches: &Cell<u32>, key: &str) -> Result<String> {
    fetches.set(fetches.get() + 1);
    println!("  fetching {key}...");
    clock.sleep(Duration::from_millis(50))?;
    match key {
        "ocaml" => Ok("1996".to_string()),
        "rust" => Ok("2015".to_string()),
        _ => Err(Error::msg(
            ErrorKind::InvalidInput,
            format!("no such language: {key}"),
        )),
    }
}

fn main() -> Result<()> {
    weft::run(|env| {
        let clock = env.mono_clock();
        let fetches = Cell::new(0);
        let cache = Cache::new(|key: &str| slow_lookup(clock, &fetches, key));
        let t0 = clock.now()?;

        // Eight requests at once, for three different keys.
        let keys = [
            "rust", "ocaml", "rust", "cobol", "rust", "ocaml", "cobol", "rust",
        ];
        let answers = fiber::map(keys.len(), keys, |key| Ok((key, cache.get(key))))?;
        for (key, answer) in answers {
            match answer {
                Ok(year) => println!("{key}: first released in {year}"),
                Err(e) => println!("{key}: {e}"),
            }
        }
        let took = clock.now()?.duration_since(t0);
        println!(
            "{} requests, {} fetches, {took:?}",
            keys.len(),
            fetches.get()
        );
        assert_eq!(fetches.get(), 3);
        // Later requests are answered from the table at once.
        println!("rust again: {}", cache.get("rust")?);
        assert_eq!(fetches.get(), 3);
        Ok(())
    })
}
