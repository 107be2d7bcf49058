//! Streams: bounded multi-producer, multi-consumer queues that work across
//! fibers and threads.
//!
//! [`add`](Stream::add) waits while the stream is full; [`take`](Stream::take)
//! waits while it is empty. With capacity 0 every `add` waits for a `take`
//! (a rendezvous). [`try_add`](Stream::try_add) and
//! [`take_nonblocking`](Stream::take_nonblocking) never wait. Cancellation
//! never loses or duplicates an item: a cancelled `add` does not deliver its
//! item, and a cancelled `take` does not consume one.
//!
//! ```
//! use weft::{fiber, sync::Stream, traceln};
//!
//! weft::mock::run(|_env| {
//!     let stream = Stream::new(2);
//!     fiber::both(
//!         || {
//!             for i in 1..=5 {
//!                 traceln!("Adding {i}...");
//!                 stream.add(i)?;
//!             }
//!             Ok(())
//!         },
//!         || {
//!             for _ in 1..=5 {
//!                 let x = stream.take()?;
//!                 traceln!("Got {x}");
//!                 fiber::yield_now()?;
//!             }
//!             Ok(())
//!         },
//!     )
//! })
//! .unwrap();
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use super::spin::{SpinGuard, SpinLock};

use crate::backend::{suspend_with_cancel, Resumer};
use crate::error::{Error, Result};

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// Fibers waiting in `take`, oldest first.
    takers: VecDeque<Resumer<T>>,
    /// Fibers waiting in `add`, each with the item it wants to add.
    adders: VecDeque<(Resumer<()>, T)>,
}

/// A bounded MPMC queue. Cloning gives another handle to the same stream.
///
/// Not to be confused with [`net::Stream`](crate::net::Stream), a connected
/// socket; the two share a name because each follows its own module's
/// vocabulary (Eio's `Stream` and stream sockets). Name them by module
/// (`sync::Stream`, `net::Stream`) when both are in use.
///
/// ```
/// use weft::{fiber, sync::Stream};
///
/// weft::mock::run(|_env| {
///     let lines = Stream::new(2);
///     let (_, received) = fiber::pair(
///         || {
///             for l in ["a", "b", "c"] {
///                 lines.add(l)?; // waits while two are queued
///             }
///             Ok(())
///         },
///         || (0..3).map(|_| lines.take()).collect::<weft::Result<Vec<_>>>(),
///     )?;
///     assert_eq!(received, ["a", "b", "c"]);
///     assert_eq!(lines.take_nonblocking(), None);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct Stream<T> {
    state: Arc<SpinLock<State<T>>>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            state: self.state.clone(),
        }
    }
}

impl<T> Stream<T> {
    /// A stream holding at most `capacity` items (0: a rendezvous).
    pub fn new(capacity: usize) -> Stream<T> {
        Stream {
            state: Arc::new(SpinLock::new(State {
                items: VecDeque::with_capacity(capacity.min(1024)),
                capacity,
                takers: VecDeque::new(),
                adders: VecDeque::new(),
            })),
        }
    }

    fn lock(&self) -> SpinGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state torn (every
        // critical section is a handful of queue operations); the guard
        // unlocks as it unwinds.
        self.state.lock()
    }

    /// Adds `item`, waiting while the stream is full. On `Err(Cancelled)`
    /// the item was not added (and is dropped).
    pub fn add(&self, item: T) -> Result<()> {
        let mut item = Some(item);
        {
            let mut st = self.lock();
            if let Some(v) = Self::offer(&mut st, item.take().expect("item")) {
                item = Some(v);
            } else {
                return Ok(());
            }
        }
        let item = item.expect("item");
        let mut slot = Some(item);
        suspend_with_cancel(
            "stream add",
            |r| {
                let v = slot.take().expect("item");
                let mut st = self.lock();
                // Re-check under the lock: a taker may have come meanwhile.
                match Self::offer(&mut st, v) {
                    None => {
                        drop(st);
                        let _ = r.resume(());
                    }
                    Some(v) => st.adders.push_back((r, v)),
                }
            },
            |r, reason| {
                let mut st = self.lock();
                if let Some(i) = st.adders.iter().position(|(x, _)| x.same_wait(r)) {
                    // Still queued: withdraw the item, never to be delivered.
                    let _ = st.adders.remove(i);
                    drop(st);
                    let _ = r.fail(Error::cancelled(reason.clone()));
                }
                // Otherwise a taker already took the item and resumed us.
            },
        )
    }

    /// Adds `item` if that needs no waiting: it goes to a fiber waiting in
    /// [`take`](Stream::take), or into the buffer if there is room.
    /// Otherwise the stream is full (with capacity 0: no taker is waiting)
    /// and the item comes back as `Err(item)`, for the caller to drop, retry
    /// later or send elsewhere. Never suspends, so it is no cancellation
    /// point, and it may be called from any thread.
    ///
    /// Fibers already waiting in [`add`](Stream::add) keep their turn: while
    /// any wait, the stream is full and `try_add` fails.
    ///
    /// ```
    /// use weft::sync::Stream;
    ///
    /// let stream = Stream::new(1);
    /// assert_eq!(stream.try_add("first"), Ok(()));
    /// assert_eq!(stream.try_add("second"), Err("second")); // full
    /// assert_eq!(stream.take_nonblocking(), Some("first"));
    /// assert_eq!(stream.try_add("second"), Ok(()));
    /// ```
    pub fn try_add(&self, item: T) -> std::result::Result<(), T> {
        match Self::offer(&mut self.lock(), item) {
            None => Ok(()),
            Some(back) => Err(back),
        }
    }

    /// Hands `v` to a waiting taker or buffers it; gives it back if full.
    fn offer(st: &mut State<T>, v: T) -> Option<T> {
        let mut v = v;
        while let Some(taker) = st.takers.pop_front() {
            match taker.resume(v) {
                Ok(()) => return None,
                Err(back) => v = back,
            }
        }
        if st.items.len() < st.capacity {
            st.items.push_back(v);
            return None;
        }
        Some(v)
    }

    /// Takes the oldest item, waiting while the stream is empty.
    pub fn take(&self) -> Result<T> {
        {
            let mut st = self.lock();
            if let Some(v) = Self::poll_take(&mut st) {
                return Ok(v);
            }
        }
        suspend_with_cancel(
            "stream take",
            |r| {
                let mut st = self.lock();
                match Self::poll_take(&mut st) {
                    Some(v) => {
                        drop(st);
                        let _ = r.resume(v);
                    }
                    None => st.takers.push_back(r),
                }
            },
            |r, reason| {
                let mut st = self.lock();
                if let Some(i) = st.takers.iter().position(|x| x.same_wait(r)) {
                    let _ = st.takers.remove(i);
                    drop(st);
                    let _ = r.fail(Error::cancelled(reason.clone()));
                }
                // Otherwise an adder already handed us an item: keep it.
            },
        )
    }

    /// Takes an item from the buffer, or straight from a waiting adder, and
    /// moves one waiting adder's item into the space freed.
    fn poll_take(st: &mut State<T>) -> Option<T> {
        if let Some(v) = st.items.pop_front() {
            if let Some((adder, w)) = st.adders.pop_front() {
                st.items.push_back(w);
                let _ = adder.resume(());
            }
            return Some(v);
        }
        if let Some((adder, w)) = st.adders.pop_front() {
            let _ = adder.resume(());
            return Some(w);
        }
        None
    }

    /// Takes an item if one is available now, without waiting.
    pub fn take_nonblocking(&self) -> Option<T> {
        Self::poll_take(&mut self.lock())
    }

    /// Number of buffered items (not counting adders still waiting).
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True if no item is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity given to [`Stream::new`].
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Stream")
            .field("len", &st.items.len())
            .field("capacity", &st.capacity)
            .field("takers", &st.takers.len())
            .field("adders", &st.adders.len())
            .finish()
    }
}
