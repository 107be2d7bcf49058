//! Fiber-local values with scoped bindings.
//!
//! A [`FiberLocal`] is a key. [`with_binding`](FiberLocal::with_binding)
//! binds a value to it for the duration of a closure, in the current fiber
//! and in every fiber forked inside that closure (they inherit the bindings
//! their parent had when it forked them). Bindings are immutable and shared
//! cheaply: a fork copies one pointer.
//!
//! ```
//! use weft::{fiber::FiberLocal, Switch};
//!
//! static REQUEST_ID: FiberLocal<u64> = FiberLocal::new();
//!
//! weft::mock::run(|_env| {
//!     assert_eq!(REQUEST_ID.get(), None);
//!     REQUEST_ID.with_binding(7, || {
//!         Switch::run(|sw| {
//!             sw.fork(|| {
//!                 assert_eq!(REQUEST_ID.get().as_deref(), Some(&7)); // inherited
//!                 Ok(())
//!             });
//!             Ok(())
//!         })
//!     })?;
//!     assert_eq!(REQUEST_ID.get(), None); // the binding ended
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::any::Any;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sched;

struct Node {
    key: usize,
    /// `None` masks an outer binding (see `without_binding`).
    value: Option<Rc<dyn Any>>,
    next: Locals,
}

/// A fiber's bindings: an immutable list, newest first.
#[derive(Clone, Default)]
pub(crate) struct Locals(Option<Rc<Node>>);

impl Locals {
    /// True when nothing is bound.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn lookup(&self, key: usize) -> Option<Rc<dyn Any>> {
        let mut cur = self.0.as_ref();
        while let Some(n) = cur {
            if n.key == key {
                return n.value.clone();
            }
            cur = n.next.0.as_ref();
        }
        None
    }
}

static NEXT_KEY: AtomicUsize = AtomicUsize::new(1);

/// A key for a fiber-local value of type `T`. Usually a `static`.
pub struct FiberLocal<T: 'static> {
    id: AtomicUsize,
    _t: PhantomData<fn() -> T>,
}

impl<T: 'static> Default for FiberLocal<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: 'static> std::fmt::Debug for FiberLocal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FiberLocal")
            .field("id", &self.key())
            .finish()
    }
}

impl<T: 'static> FiberLocal<T> {
    /// A new key, distinct from every other.
    pub const fn new() -> Self {
        FiberLocal {
            id: AtomicUsize::new(0),
            _t: PhantomData,
        }
    }

    fn key(&self) -> usize {
        let id = self.id.load(Ordering::Acquire);
        if id != 0 {
            return id;
        }
        let fresh = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        match self
            .id
            .compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => fresh,
            Err(existing) => existing,
        }
    }

    /// The value bound in the current fiber, if any. `None` outside a fiber.
    pub fn get(&self) -> Option<Rc<T>> {
        let s = sched::current().ok()?;
        let v = s.current_locals().lookup(self.key())?;
        v.downcast::<T>().ok()
    }

    /// Runs `f` with `value` bound to this key in the current fiber (and in
    /// the fibers it forks). Outside a fiber, `f` just runs.
    pub fn with_binding<R>(&self, value: T, f: impl FnOnce() -> R) -> R {
        self.rebind(Some(Rc::new(value)), f)
    }

    /// Runs `f` with no value bound to this key.
    pub fn without_binding<R>(&self, f: impl FnOnce() -> R) -> R {
        self.rebind(None, f)
    }

    fn rebind<R>(&self, value: Option<Rc<dyn Any>>, f: impl FnOnce() -> R) -> R {
        let Ok(s) = sched::current() else { return f() };
        let key = self.key();
        let outer = s.current_locals();
        let old = s.replace_current_locals(Locals(Some(Rc::new(Node {
            key,
            value,
            next: outer,
        }))));
        struct Restore(Option<Locals>);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let (Some(old), Ok(s)) = (self.0.take(), sched::current()) {
                    s.replace_current_locals(old);
                }
            }
        }
        let _restore = Restore(Some(old));
        f()
    }
}
