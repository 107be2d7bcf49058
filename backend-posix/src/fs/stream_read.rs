//! Reads of files that cannot seek (FIFOs, terminals, character devices),
//! which lose nothing when cancelled.
//!
//! Such a read runs `read(2)` on a system thread and moves the kernel's
//! position; a fiber cancelled meanwhile returns at once while the call goes
//! on. So the call never hands its bytes to the fiber directly: it appends
//! them to the file's stash, and the fiber takes what it can from there.
//! Whatever a cancelled read took from the kernel stays in the stash for the
//! next read, and a read that starts while a cancelled one is still blocked
//! in the kernel waits for it first (so bytes keep their order).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use weft_core::sync::{Promise, Resolver};
use weft_core::Result;

#[derive(Default)]
struct State {
    bytes: VecDeque<u8>,
    /// Resolved when the read on the system thread (if any) has finished.
    in_flight: Option<Promise<()>>,
}

/// The stash of one file, shared with its reads in flight.
#[derive(Clone, Default)]
pub(super) struct StreamStash {
    state: Arc<Mutex<State>>,
}

impl StreamStash {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section is a few queue operations: a panic cannot
        // leave the state torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves up to `buf.len()` stashed bytes into `buf`.
    fn take(&self, buf: &mut [u8]) -> usize {
        let mut st = self.lock();
        let n = buf.len().min(st.bytes.len());
        for (dst, src) in buf.iter_mut().zip(st.bytes.drain(..n)) {
            *dst = src;
        }
        n
    }

    /// Reads from `file` at the kernel's position: stashed bytes first, else
    /// one `read(2)` of at most `max` bytes on a system thread through
    /// `blocking` (which returns `Err(Cancelled)` if the fiber is cancelled
    /// while the call goes on).
    pub(super) fn read(
        &self,
        file: &Arc<std::fs::File>,
        buf: &mut [u8],
        max: usize,
        blocking: impl FnOnce(Box<dyn FnMut() -> io::Result<usize> + Send>) -> Result<usize>,
    ) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let earlier = self.lock().in_flight.clone();
        if let Some(done) = earlier {
            done.wait()?;
        }
        let n = self.take(buf);
        if n > 0 {
            return Ok(n);
        }
        let (done, resolver) = Promise::new();
        self.lock().in_flight = Some(done);
        let mut call = StashingRead {
            stash: self.clone(),
            file: file.clone(),
            len: buf.len().min(max),
            resolver: Some(resolver),
        };
        blocking(Box::new(move || call.run()))?;
        Ok(self.take(buf))
    }
}

/// The call a system thread runs: `read(2)` into the stash.
struct StashingRead {
    stash: StreamStash,
    file: Arc<std::fs::File>,
    len: usize,
    resolver: Option<Resolver<()>>,
}

impl StashingRead {
    fn run(&mut self) -> io::Result<usize> {
        let mut data = vec![0u8; self.len];
        let r = (&*self.file).read(&mut data);
        if let Err(e) = &r {
            if e.kind() == io::ErrorKind::Interrupted {
                return r;
            }
        }
        let mut st = self.stash.lock();
        if let Ok(n) = r {
            st.bytes.extend(&data[..n]);
        }
        st.in_flight = None;
        drop(st);
        if let Some(done) = self.resolver.take() {
            let _ = done.resolve(());
        }
        r
    }
}
