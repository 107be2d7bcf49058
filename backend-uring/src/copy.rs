//! `flow::copy` in the kernel: when both the source and the sink are
//! files, sockets or pipes of this backend, the bytes move with
//! `IORING_OP_SPLICE` and never enter user memory.
//!
//! A sink's [`copy_from`](weft_core::flow::Sink::copy_from) recognises a
//! source of its own backend through [`Source::backing`]; anything else (a
//! buffered reader, an in-memory source) is copied through a buffer
//! ([`copy_with_buffer`]).
//!
//! Splice needs a pipe at one end. When the source or the sink is a pipe
//! (a child's stdout, say), each splice goes straight from one to the
//! other. Otherwise (a file sent to a socket, a socket written to a file)
//! the bytes go through an intermediate pipe of this copy: a *fill* splices
//! a chunk from the source into it, then *drains* splice the chunk on to
//! the sink until it is empty. Before a splice reads a socket or pipe (or
//! writes one), a poll waits for it to be readable (writable), so that the
//! splice — which the kernel runs on one of its worker threads, where it
//! may block — does not park a worker on an idle connection.
//!
//! Files use (and advance) the position this backend keeps for them in
//! user space, at explicit offsets; the copy holds the file's turn at the
//! position for each chunk, so fibers sharing the file see whole chunks
//! (with two files, both turns, always taken in the same order).
//!
//! Because every splice is a round trip to a kernel worker thread, a
//! regular file with less than 64 KiB left to copy goes through a buffer:
//! one read and one write, done inline, are cheaper.
//!
//! # What a cancelled or failed copy keeps
//!
//! No byte is lost. Every byte taken from the source has either reached the
//! sink or is given back to the source, where the next read returns it:
//! a file's position only advances past bytes the sink took, and bytes
//! that were in the intermediate pipe when a drain was cancelled (or
//! failed) are read out of it and put in front of the socket's or pipe's
//! stream (its stash, as for a cancelled read — see [`ops`](crate::ops)).
//! An operation in flight is cancelled with `AsyncCancel` and its
//! completion awaited (the ops layer's rule), so the count of bytes that
//! moved is always known. The cancelled copy then reports `Cancelled`.
//!
//! # Fallbacks
//!
//! A source or sink that cannot splice (the kernel says `EINVAL` — many
//! `/proc` files, `/dev/full`, a file opened to append —, `EOPNOTSUPP` or
//! `ENOSYS`) is copied through a buffer from where the splices stopped,
//! after any bytes in the intermediate pipe have been given back to the
//! source. A nonblocking fd that says `EAGAIN` is polled and retried.

use std::os::fd::AsRawFd;

use weft_core::flow::{copy_with_buffer, Sink, Source};
use weft_core::sync::Permit;
use weft_core::{Error, ErrorKind, Result};

use crate::fs::file::{UringFile, KERNEL_POS};
use crate::net::UringStream;
use crate::ops::{self, Fd, FdRef};
use crate::process::Pipe;

/// Bytes asked for in one splice straight from or to a pipe.
const DIRECT_CHUNK: usize = 1 << 20;
/// The size asked for the intermediate pipe (the default maximum an
/// unprivileged process may set, `/proc/sys/fs/pipe-max-size`).
const PIPE_SIZE: i32 = 1 << 20;

/// One end of a copy: a flow of this backend.
#[derive(Clone, Copy)]
pub(crate) enum End<'a> {
    /// A file, with the position kept in user space.
    File(&'a UringFile),
    /// A connected stream socket.
    Socket(&'a Fd),
    /// A pipe to or from a child.
    Pipe(&'a Fd),
}

impl<'a> End<'a> {
    /// The end behind `src`, if it is a flow of this backend.
    fn of_source(src: &'a dyn Source) -> Option<End<'a>> {
        let b = src.backing()?;
        if let Some(f) = b.downcast::<UringFile>() {
            return Some(End::File(f));
        }
        if let Some(s) = b.downcast::<UringStream>() {
            return Some(End::Socket(&s.fd));
        }
        b.downcast::<Pipe>().map(|p| End::Pipe(&p.fd))
    }

    fn fd(self) -> &'a FdRef {
        match self {
            End::File(f) => f.fd(),
            End::Socket(fd) | End::Pipe(fd) => fd,
        }
    }

    /// What kind of fd this end is (a FIFO opened as a file is a pipe; it
    /// then uses the kernel's position from now on).
    fn kind(self) -> Result<Kind> {
        match self {
            End::Pipe(_) => Ok(Kind::Pipe),
            End::Socket(_) => Ok(Kind::Other),
            End::File(f) => {
                let raw = f.fd().as_raw_fd();
                // SAFETY: an all-zero `stat` is a valid buffer for fstat.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: `raw` is open (the file is borrowed) and `st` is
                // a valid, exclusively borrowed stat buffer.
                if unsafe { libc::fstat(raw, &mut st) } != 0 {
                    return Err(Error::from(std::io::Error::last_os_error())
                        .context("copy: checking the file type"));
                }
                match st.st_mode & libc::S_IFMT {
                    libc::S_IFIFO => {
                        f.use_kernel_position();
                        Ok(Kind::Pipe)
                    }
                    libc::S_IFREG => Ok(Kind::Regular {
                        size: u64::try_from(st.st_size).unwrap_or(0),
                    }),
                    _ => Ok(Kind::Other),
                }
            }
        }
    }

    /// Whether a splice on this end could block (a socket or a pipe): it is
    /// polled first.
    fn waits(self) -> bool {
        match self {
            End::File(_) => false,
            End::Socket(_) | End::Pipe(_) => true,
        }
    }

    /// The turn at the file's position, for files.
    fn turn(self) -> Result<Option<Permit<'a>>> {
        match self {
            End::File(f) => f.turn().map(Some),
            _ => Ok(None),
        }
    }

    /// The offset a splice on this end uses: the file's position, or `None`
    /// for the fd's own (kernel) position.
    fn offset(self) -> Result<Option<u64>> {
        match self {
            End::File(f) => Ok(Some(f.offset()?).filter(|&o| o != KERNEL_POS)),
            _ => Ok(None),
        }
    }

    /// Records that `n` bytes moved at `off`.
    fn advance(self, off: Option<u64>, n: usize) {
        if let End::File(f) = self {
            f.advance(off.unwrap_or(KERNEL_POS), n);
        }
    }

    /// Handles `ESPIPE` from a splice at an explicit offset: the file cannot
    /// seek, so it uses the kernel's position from now on. True if the
    /// splice should be retried.
    fn retry_without_offset(self, e: &Error, off: Option<u64>) -> bool {
        match self {
            End::File(f) if off.is_some() && e.raw_os_error() == Some(libc::ESPIPE) => {
                f.use_kernel_position();
                true
            }
            _ => false,
        }
    }

    /// Whether bytes given back must go into the fd's stash (its reads use
    /// the kernel's position); a file read at a user-space position needs
    /// nothing: the position was not advanced past them.
    fn gives_back_to_stash(self) -> Result<bool> {
        Ok(self.offset()?.is_none())
    }
}

/// What an end's fd is, as far as the copy cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pipe,
    /// A regular file of `size` bytes (`0` for most `/proc` files, whatever
    /// they hold).
    Regular {
        size: u64,
    },
    Other,
}

/// Below this many bytes left in a regular file, the copy goes through a
/// buffer: a read and a write done inline cost less than two splices, which
/// the kernel always hands to a worker thread (and a pipe to set up).
const SMALL_FILE: u64 = 64 * 1024;

/// The turns at the position of the file ends, taken in a fixed order (by
/// fd number) so that two copies between the same two files in opposite
/// directions cannot each hold one turn and wait for the other.
fn turns<'a>(src: End<'a>, dst: End<'a>) -> Result<(Option<Permit<'a>>, Option<Permit<'a>>)> {
    if src.fd().raw() <= dst.fd().raw() {
        let s = src.turn()?;
        Ok((s, dst.turn()?))
    } else {
        let d = dst.turn()?;
        Ok((src.turn()?, d))
    }
}

/// Whether the kernel refused to splice these fds, so that a buffer must
/// be used instead.
fn refused(e: &Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)
    )
}

fn is_again(e: &Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN)
}

/// Copies `src` into `dst` (whose end is `dst_end`): by splicing if `src`
/// is a flow of this backend, else through a buffer.
pub(crate) fn copy<D: Sink + ?Sized>(src: &dyn Source, dst: &D, dst_end: End<'_>) -> Result<u64> {
    let Some(src_end) = End::of_source(src) else {
        return copy_with_buffer(src, dst);
    };
    let same_fd = src_end.fd().raw().is_some() && src_end.fd().raw() == dst_end.fd().raw();
    let appends = matches!(dst_end, End::File(f) if f.appends());
    if same_fd || appends {
        // A file copied onto itself would wait for its own turn; a file
        // opened to append refuses splices (EINVAL).
        return copy_with_buffer(src, dst);
    }
    let mut total = deliver_stash(src_end.fd(), dst)?;
    let copier = Copier {
        src: src_end,
        dst: dst_end,
    };
    let src_kind = src_end.kind()?;
    if let Kind::Regular { size } = src_kind {
        let left = size.saturating_sub(src_end.offset()?.unwrap_or(0));
        if left > 0 && left < SMALL_FILE {
            return Ok(total + copy_with_buffer(src, dst)?);
        }
    }
    let spliced = if src_kind == Kind::Pipe || dst_end.kind()? == Kind::Pipe {
        copier.direct(&mut total)?
    } else {
        copier.through_pipe(&mut total)?
    };
    match spliced {
        Spliced::All => Ok(total),
        Spliced::Refused => Ok(total + copy_with_buffer(src, dst)?),
    }
}

/// Writes the bytes cancelled reads left in `fd`'s stash (they come before
/// anything the kernel still holds), taking from the stash only what the
/// sink took.
fn deliver_stash<D: Sink + ?Sized>(fd: &FdRef, dst: &D) -> Result<u64> {
    let mut total = 0u64;
    let mut buf = Vec::new();
    while fd.stashed_bytes() > 0 {
        buf.resize(fd.stashed_bytes().min(64 * 1024), 0);
        let k = fd.peek_stash(&mut buf);
        let n = dst.write(&buf[..k])?;
        if n == 0 {
            return Err(Error::msg(ErrorKind::Closed, "sink accepted no bytes"));
        }
        fd.consume_stash(n);
        total += n as u64;
    }
    Ok(total)
}

/// How the splices ended.
enum Spliced {
    /// At the end of the source.
    All,
    /// The kernel refused to splice; the rest goes through a buffer.
    Refused,
}

struct Copier<'a> {
    src: End<'a>,
    dst: End<'a>,
}

impl Copier<'_> {
    /// Waits until `end` is ready for `events`, if a splice on it could
    /// block.
    fn ready(end: End<'_>, events: i16) -> Result<()> {
        if end.waits() {
            end.fd().poll(events)?;
        }
        Ok(())
    }

    /// Splices straight from the source to the sink (one of them is a
    /// pipe): every byte moved is in the sink, so nothing is ever held.
    fn direct(&self, total: &mut u64) -> Result<Spliced> {
        let (src, dst) = (self.src, self.dst);
        loop {
            let _turns = turns(src, dst)?;
            let (off_in, off_out) = (src.offset()?, dst.offset()?);
            Self::ready(src, libc::POLLIN)?;
            Self::ready(dst, libc::POLLOUT)?;
            let r = src.fd().splice_to(off_in, dst.fd(), off_out, DIRECT_CHUNK);
            let (n, cancelled) = match r {
                Ok(r) => r,
                Err(e) if src.retry_without_offset(&e, off_in) => continue,
                Err(e) if dst.retry_without_offset(&e, off_out) => continue,
                Err(e) if refused(&e) => return Ok(Spliced::Refused),
                Err(e) if is_again(&e) => {
                    Self::ready(dst, libc::POLLOUT)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            src.advance(off_in, n);
            dst.advance(off_out, n);
            *total += n as u64;
            if let Some(why) = cancelled {
                return Err(Error::cancelled(why));
            }
            if n == 0 {
                return Ok(Spliced::All);
            }
        }
    }

    /// Splices chunk by chunk through a pipe of this copy.
    fn through_pipe(&self, total: &mut u64) -> Result<Spliced> {
        let (src, dst) = (self.src, self.dst);
        let pipe = Intermediate::new()?;
        loop {
            let _turns = turns(src, dst)?;
            let off_in = src.offset()?;
            Self::ready(src, libc::POLLIN)?;
            let r = src.fd().splice_to(off_in, &pipe.w, None, pipe.capacity);
            let (n, cancelled) = match r {
                Ok(r) => r,
                Err(e) if src.retry_without_offset(&e, off_in) => continue,
                Err(e) if refused(&e) => return Ok(Spliced::Refused),
                Err(e) if is_again(&e) => continue,
                Err(e) => return Err(e),
            };
            if let Some(why) = cancelled {
                // Nothing was delivered: give the whole chunk back.
                self.give_back(&pipe, n)?;
                return Err(Error::cancelled(why));
            }
            if n == 0 {
                return Ok(Spliced::All);
            }
            match self.drain(&pipe, off_in, n, total) {
                Ok(()) => {}
                Err((left, e)) => {
                    self.give_back(&pipe, left)?;
                    return match e {
                        Some(e) => Err(e),
                        None => Ok(Spliced::Refused),
                    };
                }
            }
        }
    }

    /// Splices the `n` bytes in `pipe` (read from the source at `off_in`)
    /// on to the sink, advancing both positions as the sink takes them. On
    /// failure, says how many bytes are left in the pipe, and the error
    /// (`None` when the sink refused to splice).
    fn drain(
        &self,
        pipe: &Intermediate,
        mut off_in: Option<u64>,
        mut left: usize,
        total: &mut u64,
    ) -> std::result::Result<(), (usize, Option<Error>)> {
        let (src, dst) = (self.src, self.dst);
        while left > 0 {
            let off_out = dst.offset().map_err(|e| (left, Some(e)))?;
            Self::ready(dst, libc::POLLOUT).map_err(|e| (left, Some(e)))?;
            let r = if refuse_drain() {
                Err(Error::from(std::io::Error::from_raw_os_error(libc::EINVAL)))
            } else {
                pipe.r.splice_to(None, dst.fd(), off_out, left)
            };
            let (m, cancelled) = match r {
                Ok(r) => r,
                Err(e) if dst.retry_without_offset(&e, off_out) => continue,
                Err(e) if refused(&e) => return Err((left, None)),
                Err(e) if is_again(&e) => continue,
                Err(e) => return Err((left, Some(e))),
            };
            if m == 0 {
                let e = Error::msg(ErrorKind::Closed, "sink accepted no bytes");
                return Err((left, Some(e)));
            }
            dst.advance(off_out, m);
            src.advance(off_in, m);
            off_in = off_in.map(|o| o + m as u64);
            left -= m;
            *total += m as u64;
            if let Some(why) = cancelled {
                return Err((left, Some(Error::cancelled(why))));
            }
        }
        Ok(())
    }

    /// Gives the `n` bytes left in `pipe` back to the source: a socket's or
    /// pipe's next read returns them first; a file's position was not
    /// advanced past them, so there is nothing to do.
    fn give_back(&self, pipe: &Intermediate, n: usize) -> Result<()> {
        if n == 0 || !self.src.gives_back_to_stash()? {
            return Ok(());
        }
        let mut bytes = vec![0u8; n];
        // The bytes are in the pipe, so these reads complete at once; the
        // fiber may be cancelled, which must not stop them.
        weft_core::cancel::protect(|| pipe.r.read_exact_now(&mut bytes))?;
        self.src.fd().unread(&bytes);
        Ok(())
    }
}

/// The pipe between a source and a sink that are not pipes.
struct Intermediate {
    r: Fd,
    w: Fd,
    /// Bytes it holds (one fill).
    capacity: usize,
}

impl Intermediate {
    fn new() -> Result<Intermediate> {
        let (r, w) =
            ops::pipe().map_err(|e| e.context("copy: creating a pipe to splice through"))?;
        // SAFETY: fcntl on a pipe we own; no memory is passed. A refusal
        // (a lower pipe-max-size) keeps the default size.
        let size = unsafe {
            libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
            libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        let capacity = usize::try_from(size).unwrap_or(0).max(4096);
        Ok(Intermediate { r, w, capacity })
    }
}

impl FdRef {
    /// Reads exactly `buf.len()` bytes that are known to be there.
    fn read_exact_now(&self, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            match self.read(buf)? {
                0 => {
                    return Err(Error::msg(
                        ErrorKind::EndOfFile,
                        "copy: the splice pipe held fewer bytes than counted",
                    ))
                }
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }
}

/// Whether drains act as if the sink refused to splice (`EINVAL`), to test
/// that path with sinks that would accept.
#[cfg(not(test))]
#[inline]
fn refuse_drain() -> bool {
    false
}

#[cfg(test)]
use tests::refuse_drain;

#[cfg(test)]
mod tests;
