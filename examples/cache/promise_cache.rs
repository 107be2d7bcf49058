//! The cache itself, kept apart from the example's driver so that
//! `tests/readme_examples.rs` runs this very code.
//!
//! The first request for a key stores a promise in the table *before* it
//! starts fetching (nothing can switch fibers in between), so concurrent
//! requests for the same key wait for that one fetch instead of starting
//! their own.

use std::cell::RefCell;
use std::collections::HashMap;

use weft::sync::Promise;
use weft::Result;

/// Caches the results of `fetch`. Fibers on one thread share it by
/// reference, so a `RefCell` suffices; a borrow is never held across a
/// suspension point.
pub struct Cache<F> {
    table: RefCell<HashMap<String, Promise<Result<String>>>>,
    fetch: F,
}

impl<F: Fn(&str) -> Result<String>> Cache<F> {
    /// An empty cache in front of `fetch`.
    pub fn new(fetch: F) -> Self {
        Cache {
            table: RefCell::new(HashMap::new()),
            fetch,
        }
    }

    /// The value for `key`: fetched by the first request, which every
    /// later (or concurrent) request for `key` waits for and shares.
    pub fn get(&self, key: &str) -> Result<String> {
        let existing = self.table.borrow().get(key).cloned();
        if let Some(pending) = existing {
            // Someone else is fetching (or has fetched) it: wait for them.
            return pending.wait_result();
        }
        let (promise, resolver) = Promise::new();
        self.table.borrow_mut().insert(key.to_string(), promise);
        let value = (self.fetch)(key);
        let _ = resolver.resolve(value.clone());
        value
    }
}
