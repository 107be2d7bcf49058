//! A scripted operation: a queue of [`Action`]s and a default.
//!
//! Each call to [`Handler::run`] performs the next queued action, or the
//! default once the queue is empty. [`Handler::seq`] replaces the queue, so
//! a test scripts an operation in one call; [`Handler::set_handler`]
//! replaces the whole behaviour with a function.
//!
//! ```
//! use weft::mock::{Action, Handler};
//!
//! weft::mock::run(|_env| {
//!     let h = Handler::new(Action::Return(0));
//!     h.seq([Action::Return(1), Action::yield_then(Action::Return(2))]);
//!     assert_eq!((h.run()?, h.run()?, h.run()?, h.run()?), (1, 2, 0, 0));
//!     h.set_default(Action::Return(9));
//!     assert_eq!(h.run()?, 9);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use weft_core::Result;

use crate::action::Action;

/// A function replacing a handler's script.
type Custom<T> = Rc<dyn Fn() -> Result<T>>;

/// A mocked operation's script (Eio's `Eio_mock.Handler`).
pub struct Handler<T> {
    queue: RefCell<VecDeque<Action<T>>>,
    default: RefCell<Action<T>>,
    custom: RefCell<Option<Custom<T>>>,
}

impl<T: fmt::Debug> fmt::Debug for Handler<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("queue", &self.queue.borrow())
            .field("default", &self.default.borrow())
            .field("custom", &self.custom.borrow().is_some())
            .finish()
    }
}

impl<T: Clone> Handler<T> {
    /// A handler that performs `default` every time until scripted.
    pub fn new(default: Action<T>) -> Handler<T> {
        Handler {
            queue: RefCell::new(VecDeque::new()),
            default: RefCell::new(default),
            custom: RefCell::new(None),
        }
    }

    /// Scripts the next calls: each call performs the next of `actions`,
    /// then the default once they are used up. Replaces any earlier script
    /// (and any function set with [`set_handler`](Handler::set_handler)).
    pub fn seq(&self, actions: impl IntoIterator<Item = Action<T>>) {
        *self.custom.borrow_mut() = None;
        *self.queue.borrow_mut() = actions.into_iter().collect();
    }

    /// Sets the action performed when no scripted action is left.
    pub fn set_default(&self, action: Action<T>) {
        *self.default.borrow_mut() = action;
    }

    /// Replaces the behaviour with `f`, called on every run (until the next
    /// [`seq`](Handler::seq)).
    pub fn set_handler(&self, f: impl Fn() -> Result<T> + 'static) {
        *self.custom.borrow_mut() = Some(Rc::new(f));
    }

    /// Performs the next action.
    pub fn run(&self) -> Result<T> {
        let custom = self.custom.borrow().clone();
        if let Some(f) = custom {
            return f();
        }
        let next = self.queue.borrow_mut().pop_front();
        match next {
            Some(action) => action.run(),
            None => self.run_default(),
        }
    }

    /// Performs the default action, whatever is queued.
    pub fn run_default(&self) -> Result<T> {
        let action = self.default.borrow().clone();
        action.run()
    }

    /// How many scripted actions are left.
    pub fn remaining(&self) -> usize {
        self.queue.borrow().len()
    }
}
