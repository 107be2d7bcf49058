//! `traceln!`: debug output that never switches fibers.
//!
//! A trace line is written atomically (one line never interleaves with
//! another, even across threads) and without suspending, so adding tracing
//! to deterministic code does not change its schedule. The mock backend
//! captures the lines so tests can compare them with the expected trace.
//!
//! ```
//! weft::mock::run(|_env| {
//!     weft::traceln!("x = {}", 1);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::io::Write;

use crate::sched;

/// Writes one trace line: to the backend if it captures traces (the mock
/// does), else to standard error prefixed with `+`.
pub fn emit(args: std::fmt::Arguments<'_>) {
    let line = match args.as_str() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(args.to_string()),
    };
    if let Ok(s) = sched::current() {
        if s.trace(&line) {
            return;
        }
    }
    // `eprintln!` goes through the test harness's capture when there is one;
    // the lock makes the line atomic with respect to other threads.
    let stderr = std::io::stderr();
    let _lock = stderr.lock();
    eprintln!("+{line}");
    let _ = std::io::stderr().flush();
}

/// Prints a trace line (like `eprintln!`, but atomic, never switching
/// fibers, and captured by the mock backend).
#[macro_export]
macro_rules! traceln {
    ($($arg:tt)*) => {
        $crate::trace::emit(::std::format_args!($($arg)*))
    };
}
