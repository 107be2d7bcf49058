//! Conversions between [`Error`] and [`std::io::Error`]: OS errors map to
//! portable kinds (keeping the OS error as the source), and a weft error
//! wrapped in an `io::Error` comes back unchanged.

use std::io;

use super::{Error, ErrorKind, FsError, NetError};

impl Error {
    /// The closest [`io::ErrorKind`], for converting into an [`io::Error`].
    fn io_kind(&self) -> io::ErrorKind {
        let portable = match &self.inner.kind {
            ErrorKind::Timeout => Some(io::ErrorKind::TimedOut),
            ErrorKind::Deadlock => Some(io::ErrorKind::Deadlock),
            ErrorKind::Net(NetError::InvalidAddress) | ErrorKind::Fs(FsError::InvalidPath) => {
                Some(io::ErrorKind::InvalidInput)
            }
            kind => IO_KINDS.iter().find(|(_, k)| k == kind).map(|(io, _)| *io),
        };
        let from_source = || Some(self.source_error()?.downcast_ref::<io::Error>()?.kind());
        portable
            .or_else(from_source)
            .unwrap_or(io::ErrorKind::Other)
    }
}

/// Portable `io::ErrorKind`s and their weft kinds; the first entry for a weft
/// kind is also used to convert back.
const IO_KINDS: &[(io::ErrorKind, ErrorKind)] = {
    use io::ErrorKind as K;
    use ErrorKind::{Fs, Net};
    &[
        (K::NotFound, Fs(FsError::NotFound)),
        (K::PermissionDenied, Fs(FsError::PermissionDenied)),
        (K::AlreadyExists, Fs(FsError::AlreadyExists)),
        (K::NotADirectory, Fs(FsError::NotADirectory)),
        (K::IsADirectory, Fs(FsError::IsADirectory)),
        (K::DirectoryNotEmpty, Fs(FsError::DirectoryNotEmpty)),
        (K::ReadOnlyFilesystem, Fs(FsError::ReadOnly)),
        (K::StorageFull, Fs(FsError::NoSpace)),
        (K::FileTooLarge, Fs(FsError::FileTooLarge)),
        (K::ResourceBusy, Fs(FsError::Busy)),
        (K::ExecutableFileBusy, Fs(FsError::Busy)),
        (K::CrossesDevices, Fs(FsError::CrossesDevices)),
        (K::ConnectionRefused, Net(NetError::ConnectionRefused)),
        (K::ConnectionReset, Net(NetError::ConnectionReset)),
        (K::ConnectionAborted, Net(NetError::ConnectionAborted)),
        (K::BrokenPipe, Net(NetError::BrokenPipe)),
        (K::NotConnected, Net(NetError::NotConnected)),
        (K::AddrInUse, Net(NetError::AddrInUse)),
        (K::AddrNotAvailable, Net(NetError::AddrNotAvailable)),
        (K::HostUnreachable, Net(NetError::HostUnreachable)),
        (K::NetworkUnreachable, Net(NetError::NetworkUnreachable)),
        (K::NetworkDown, Net(NetError::NetworkUnreachable)),
        (K::TimedOut, Net(NetError::TimedOut)),
        (K::InvalidInput, ErrorKind::InvalidInput),
        (K::UnexpectedEof, ErrorKind::EndOfFile),
    ]
};

/// Errnos that stable `io::ErrorKind` leaves uncategorized (`libc` gives
/// each platform's values, so no per-OS table is needed here).
const ERRNOS: &[(i32, FsError)] = &[
    (libc::ENFILE, FsError::TooManyOpenFiles),
    (libc::EMFILE, FsError::TooManyOpenFiles),
    (libc::ENAMETOOLONG, FsError::InvalidPath),
    (libc::ELOOP, FsError::TooManySymlinks),
];

/// Maps the OS error to a portable kind and keeps it as the source; an
/// `io::Error` that wraps a weft [`Error`] gives back that error unchanged.
impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        let err = match err.downcast::<Error>() {
            Ok(weft) => return weft,
            Err(err) => err,
        };
        let errno = err.raw_os_error();
        let kind = match IO_KINDS.iter().find(|(io, _)| *io == err.kind()) {
            Some((_, kind)) => kind.clone(),
            None => match ERRNOS.iter().find(|(n, _)| Some(*n) == errno) {
                Some((_, fs)) => ErrorKind::Fs(*fs),
                None => ErrorKind::Io,
            },
        };
        Error::with_source(kind, err)
    }
}

/// Wraps the error, with the closest [`io::ErrorKind`], so that converting
/// back with `Error::from` returns it with its context intact.
impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        io::Error::new(err.io_kind(), err)
    }
}
