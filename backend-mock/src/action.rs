//! Scripted results for mocks: what a mocked operation does when called.
//!
//! An [`Action`] is one scripted outcome — return a value, fail, yield to
//! other fibers first, wait for a promise, or run a function. A
//! [`Handler`](crate::Handler) holds a queue of them for one operation (a
//! mock flow's reads, say) and plays them back in order.
//!
//! ```
//! use weft::mock::Action;
//! use weft::{Error, ErrorKind};
//!
//! weft::mock::run(|_env| {
//!     assert_eq!(Action::Return(1).run()?, 1);
//!     assert_eq!(Action::yield_then(Action::Return(2)).run()?, 2);
//!     assert_eq!(Action::run_fn(|| Ok(3)).run()?, 3);
//!     let failed: weft::Result<i32> = Action::Error(Error::new(ErrorKind::Closed)).run();
//!     assert_eq!(failed.unwrap_err().kind(), &ErrorKind::Closed);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::fmt;
use std::rc::Rc;

use weft_core::fiber;
use weft_core::sync::Promise;
use weft_core::{Error, Result};

/// One scripted outcome of a mocked operation (Eio's `Eio_mock.Action`).
pub enum Action<T> {
    /// Return this value.
    Return(T),
    /// Fail with this error. For a mock flow's reads, an error of kind
    /// `EndOfFile` means end of stream (Eio's ``Raise End_of_file``).
    Error(Error),
    /// Yield to the other fibers (`fiber::yield_now`), then do the inner
    /// action.
    YieldThen(Box<Action<T>>),
    /// Wait for the promise and return its result (a copy of it).
    Await(Promise<Result<T>>),
    /// Call the function and return its result.
    Run(Rc<dyn Fn() -> Result<T>>),
}

impl<T> Action<T> {
    /// `Return(value.into())`, e.g. `Action::ret("(packet 1)")` for a
    /// mock flow's `Vec<u8>` reads.
    pub fn ret(value: impl Into<T>) -> Action<T> {
        Action::Return(value.into())
    }

    /// [`YieldThen`](Action::YieldThen), without the `Box::new`.
    pub fn yield_then(then: Action<T>) -> Action<T> {
        Action::YieldThen(Box::new(then))
    }

    /// [`Run`](Action::Run), without the `Rc::new`.
    pub fn run_fn(f: impl Fn() -> Result<T> + 'static) -> Action<T> {
        Action::Run(Rc::new(f))
    }
}

impl<T: Clone> Action<T> {
    /// Performs the action. Yielding and awaiting are cancellation points.
    pub fn run(self) -> Result<T> {
        match self {
            Action::Return(v) => Ok(v),
            Action::Error(e) => Err(e),
            Action::YieldThen(then) => {
                fiber::yield_now()?;
                then.run()
            }
            Action::Await(p) => p.wait_result(),
            Action::Run(f) => f(),
        }
    }
}

impl<T: Clone> Clone for Action<T> {
    fn clone(&self) -> Self {
        match self {
            Action::Return(v) => Action::Return(v.clone()),
            Action::Error(e) => Action::Error(e.clone()),
            Action::YieldThen(then) => Action::YieldThen(then.clone()),
            Action::Await(p) => Action::Await(p.clone()),
            Action::Run(f) => Action::Run(f.clone()),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Action<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Return(v) => f.debug_tuple("Return").field(v).finish(),
            Action::Error(e) => f.debug_tuple("Error").field(e).finish(),
            Action::YieldThen(then) => f.debug_tuple("YieldThen").field(then).finish(),
            Action::Await(_) => f.write_str("Await(..)"),
            Action::Run(_) => f.write_str("Run(..)"),
        }
    }
}
