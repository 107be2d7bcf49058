//! Standard input, output and error as flows.
//!
//! Reads and writes go through the system-thread pool, so a slow terminal
//! or a full pipe suspends only the fiber using it. A read cancelled while
//! the system thread waits for input keeps that input for the next read:
//! nothing typed is lost.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result};
use crate::flow::{Sink, Source};
use crate::systhread::{self, JobResult};

const CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct StdinState {
    /// A read started on a system thread and not yet consumed.
    pending: Option<JobResult<std::io::Result<Vec<u8>>>>,
    /// Bytes read but not yet handed out.
    leftover: Vec<u8>,
}

/// The process's standard input. A capability: get it from the `Env`.
#[derive(Clone, Default)]
pub struct Stdin {
    state: Arc<Mutex<StdinState>>,
}

impl std::fmt::Debug for Stdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stdin")
    }
}

impl Stdin {
    pub(crate) fn new() -> Stdin {
        Stdin::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StdinState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Source for Stdin {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let job = {
            let mut st = self.lock();
            if !st.leftover.is_empty() {
                let n = buf.len().min(st.leftover.len());
                buf[..n].copy_from_slice(&st.leftover[..n]);
                st.leftover.drain(..n);
                return Ok(n);
            }
            match &st.pending {
                Some(p) => p.clone(),
                None => {
                    let p = systhread::spawn(|| {
                        let mut v = vec![0u8; CHUNK];
                        let n = std::io::stdin().lock().read(&mut v)?;
                        v.truncate(n);
                        Ok(v)
                    })?;
                    st.pending = Some(p.clone());
                    p
                }
            }
        };
        // Cancelled here: the read stays pending for the next caller.
        job.wait()?;
        let mut st = self.lock();
        if st.pending.as_ref().is_some_and(|p| p.is_resolved()) {
            st.pending = None;
        }
        let data = match systhread::take_result(&job) {
            Ok(r) => r.map_err(|e| Error::from(e).context("reading standard input"))?,
            // Another reader of the same job took its data: it is in
            // `leftover` now (or was handed out), so read again from there.
            Err(e) if e.kind() == &ErrorKind::Closed => {
                drop(st);
                return self.read(buf);
            }
            Err(e) => return Err(e),
        };
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        st.leftover.extend_from_slice(&data[n..]);
        Ok(n)
    }
}

impl std::io::Read for Stdin {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(Source::read(self, buf)?)
    }
}

/// Which standard output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Out,
    Err,
}

/// The process's standard output or error. A capability: get it from the
/// `Env`.
#[derive(Clone, Copy, Debug)]
pub struct StdOutput {
    which: Which,
}

impl StdOutput {
    pub(crate) fn stdout() -> StdOutput {
        StdOutput { which: Which::Out }
    }

    pub(crate) fn stderr() -> StdOutput {
        StdOutput { which: Which::Err }
    }
}

impl Sink for StdOutput {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&self, buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let data = buf.to_vec();
        let which = self.which;
        let r = systhread::run(move || match which {
            Which::Out => {
                let mut o = std::io::stdout().lock();
                o.write_all(&data).and_then(|()| o.flush())
            }
            Which::Err => std::io::stderr().lock().write_all(&data),
        })?;
        r.map_err(|e| {
            Error::from(e).context(match which {
                Which::Out => "writing standard output",
                Which::Err => "writing standard error",
            })
        })
    }
}

impl std::io::Write for StdOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(Sink::write(self, buf)?)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
