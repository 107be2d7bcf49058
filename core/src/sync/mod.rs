//! Synchronisation between fibers, on one thread or across threads.
//!
//! Every primitive here works across OS threads (a fiber on one domain may
//! wait for another domain, or for a plain `std::thread`), and every wait is
//! a cancellation point that never loses a value.

pub mod condition;
pub mod lazy;
pub mod mutex;
mod poison;
pub mod pool;
pub mod promise;
pub mod rwlock;
pub mod semaphore;
mod spin;
pub mod stream;
mod wait_queue;

pub use promise::{AlreadyResolved, Promise, Resolver};
pub use stream::Stream;

pub use condition::Condition;
pub use lazy::{Lazy, LazyCancel};
pub use mutex::{Mutex, MutexGuard};
pub use pool::Pool;
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{Permit, Semaphore};
