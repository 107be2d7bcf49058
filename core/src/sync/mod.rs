//! Synchronisation between fibers, on one thread or across threads.
//!
//! Every primitive here works across OS threads (a fiber on one domain may
//! wait for another domain, or for a plain `std::thread`), and every wait is
//! a cancellation point that never loses a value.

mod promise;
mod stream;

pub use promise::{AlreadyResolved, Promise, Resolver};
pub use stream::Stream;
