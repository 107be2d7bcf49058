//! Tests of the error type: kinds, combination, messages, conversions.

use super::*;
use std::mem::size_of;
use ErrorKind::*;

const _: () = {
    const fn assert_thread_safe<T: Send + Sync + 'static>() {}
    assert_thread_safe::<Error>();
    assert_thread_safe::<ErrorKind>();
};

fn kinds(err: &Error) -> Vec<ErrorKind> {
    err.errors().iter().map(|e| e.kind().clone()).collect()
}

#[test]
fn one_pointer_wide() {
    assert_eq!(size_of::<Error>(), size_of::<usize>());
    assert_eq!(size_of::<Option<Error>>(), size_of::<usize>());
    assert_eq!(size_of::<Result<()>>(), size_of::<usize>());
}

#[test]
fn display_with_source_and_contexts() {
    let os = io::Error::from_raw_os_error(libc::ECONNREFUSED);
    let os_text = os.to_string();
    let err = Error::with_source(Net(NetError::ConnectionRefused), os)
        .context("connecting to tcp:127.0.0.1:80")
        .context("fetching http://example.com/");
    assert_eq!(
        err.to_string(),
        format!(
            "net: connection refused ({os_text}), \
             connecting to tcp:127.0.0.1:80, fetching http://example.com/"
        )
    );
}

#[test]
fn display_of_every_kind() {
    let cases: [(Error, &str); 15] = [
        (Cancelled.into(), "cancelled"),
        (Timeout.into(), "timeout"),
        (Deadlock.into(), "deadlock"),
        (Closed.into(), "closed"),
        (Poisoned.into(), "poisoned"),
        (InvalidInput.into(), "invalid input"),
        (
            NetError::ResolveFailed.into(),
            "net: name resolution failed",
        ),
        (NetError::AddrInUse.into(), "net: address in use"),
        (FsError::NotFound.into(), "fs: not found"),
        (FsError::ReadOnly.into(), "fs: read-only file system"),
        (
            ProcessError::Exited(3).into(),
            "process: exited with code 3",
        ),
        (
            ProcessError::Signaled(9).into(),
            "process: killed by signal 9",
        ),
        (ProcessError::SpawnFailed.into(), "process: could not spawn"),
        (Io.into(), "io error"),
        (Panic.into(), "panic"),
    ];
    for (err, text) in cases {
        assert_eq!(err.to_string(), text);
    }
    let deadlock = Error::msg(Deadlock, "fiber 2 waits on promise 7");
    assert_eq!(deadlock.to_string(), "deadlock, fiber 2 waits on promise 7");
    let reason = Error::msg(Panic, "boom").context("in worker");
    let cancelled = Error::cancelled(reason).context("reading");
    assert_eq!(
        cancelled.to_string(),
        "cancelled: panic, boom, in worker, reading"
    );
    let multi = Error::from(FsError::Busy).combine(Error::msg(Panic, "x"));
    let multi = multi.context("in switch");
    assert_eq!(
        multi.to_string(),
        "multiple errors: [fs: resource busy; panic, x], in switch"
    );
}

#[test]
fn debug_shows_fields() {
    // The alternate form keeps the structure, for debugging.
    let err = Error::cancelled(Error::new(Timeout)).context("ctx");
    let text = format!("{err:#?}");
    assert!(
        text.starts_with(
            "Error {\n    kind: Cancelled,\n    reason: Error {\n        kind: Timeout,"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("    source: None,\n    context: [\n        \"ctx\",\n    ],\n}"),
        "{text}"
    );
}

#[test]
fn debug_reads_like_a_report() {
    let os = || io::Error::new(io::ErrorKind::ConnectionRefused, "refused by peer");
    let refused = || Error::with_source(Net(NetError::ConnectionRefused), os());
    let err = refused()
        .context("connecting to tcp:127.0.0.1:1")
        .context("fetching http://example.com/");
    assert_eq!(
        format!("{err:?}"),
        "fetching http://example.com/\n\nCaused by:\n    \
         0: connecting to tcp:127.0.0.1:1\n    \
         1: net: connection refused\n    \
         2: refused by peer"
    );
    // One cause is not numbered; no cause, no "Caused by".
    assert_eq!(format!("{:?}", Error::new(Closed)), "closed");
    assert_eq!(
        format!("{:?}", refused()),
        "net: connection refused\n\nCaused by:\n    refused by peer"
    );
    // The whole source chain is listed, outermost first.
    let inner = Error::with_source(Closed, io::Error::other("disk gone"));
    let outer = Error::with_source(Io, inner);
    assert_eq!(
        format!("{outer:?}"),
        "io error\n\nCaused by:\n    0: closed (disk gone)\n    1: disk gone"
    );
    let msg = Error::msg(InvalidInput, "max_fibers must be positive");
    assert_eq!(
        format!("{msg:?}"),
        "max_fibers must be positive\n\nCaused by:\n    invalid input"
    );
    // A cancellation's kind line carries its reason.
    let cancelled = Error::cancelled(Error::msg(Panic, "boom")).context("reading");
    assert_eq!(
        format!("{cancelled:?}"),
        "reading\n\nCaused by:\n    cancelled: panic, boom"
    );
    // Nested in other Debug output (`unwrap`, `assert_eq!` on a Result).
    let res: Result<()> = Err(Error::new(Timeout));
    assert_eq!(format!("{res:?}"), "Err(timeout)");
}

#[test]
fn cancellation_messages_do_not_repeat_cancelled() {
    let first = Error::msg(Cancelled, "another fiber finished first");
    assert_eq!(
        Error::cancelled(first.clone()).to_string(),
        "cancelled: another fiber finished first"
    );
    // A chain of cancellations names the cause once.
    let chain = Error::cancelled(Error::cancelled(Error::new(Timeout)).context("inner"));
    assert_eq!(chain.to_string(), "cancelled: timeout, inner");
    assert_eq!(
        Error::cancelled(Error::cancelled(first)).to_string(),
        "cancelled: another fiber finished first"
    );
    // A bare cancellation as the reason still says something.
    let bare = Error::cancelled(Error::new(Cancelled));
    assert_eq!(bare.to_string(), "cancelled: cancelled");
    // A cancellation without reason keeps its kind word.
    assert_eq!(
        Error::msg(Cancelled, "stopped").to_string(),
        "cancelled, stopped"
    );
    // Other reasons are unchanged.
    let io = Error::with_source(Io, io::Error::other("disk"));
    assert_eq!(
        Error::cancelled(io).context("c").to_string(),
        "cancelled: io error (disk), c"
    );
}

#[test]
fn contexts_innermost_first() {
    let err = Error::msg(InvalidInput, "a")
        .context(String::from("b"))
        .context("c");
    assert_eq!(err.contexts().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(Error::new(Closed).contexts().count(), 0);
}

#[test]
fn kind_equality_ignores_payloads() {
    let a = Error::cancelled(Error::new(Timeout));
    let b = Error::cancelled(Error::new(Closed));
    assert_eq!(a.kind(), b.kind());
    assert_ne!(Net(NetError::TimedOut), Timeout);
    assert_ne!(Fs(FsError::Busy), Fs(FsError::NoSpace));
    let m1 = Error::new(Closed).combine(Error::msg(Panic, "1"));
    let m2 = Error::new(Closed).combine(Error::msg(Panic, "2"));
    let m3 = Error::new(Panic).combine(Error::new(Closed));
    assert_eq!(m1.kind(), m2.kind());
    assert_ne!(m1.kind(), m3.kind());
}

#[test]
fn combine_flattens_and_keeps_order() {
    let ab = Error::new(Timeout).combine(Error::new(Closed));
    let cd = Error::new(Poisoned).combine(Error::new(Panic));
    let all = ab.combine(Error::new(Io)).combine(cd);
    assert_eq!(kinds(&all), [Timeout, Closed, Io, Poisoned, Panic]);
    assert!(all
        .errors()
        .iter()
        .all(|e| !matches!(e.kind(), Multiple(_))));
}

#[test]
fn combine_moves_multiple_context_onto_members() {
    let inner = Error::msg(Panic, "p")
        .combine(Error::new(Closed))
        .context("in switch A");
    let all = Error::new(Timeout).combine(inner);
    let ctx: Vec<Vec<&str>> = all
        .errors()
        .iter()
        .map(|e| e.contexts().collect())
        .collect();
    assert_eq!(ctx, [vec![], vec!["p", "in switch A"], vec!["in switch A"]]);
}

#[test]
fn combine_drops_cancellations_next_to_failures() {
    let fail = || Error::new(Closed);
    let cancel = |k| Error::cancelled(Error::new(k));
    assert_eq!(cancel(Timeout).combine(fail()).kind(), &Closed);
    assert_eq!(fail().combine(cancel(Timeout)).kind(), &Closed);
    let two = cancel(Timeout).combine(cancel(Panic));
    assert!(two.cancel_reason().unwrap().is_timeout());
    let mixed = Error::multiple(vec![
        cancel(Io),
        fail(),
        cancel(Io),
        Error::new(Timeout).combine(cancel(Io)),
    ]);
    assert_eq!(kinds(&mixed), [Closed, Timeout]);
}

#[test]
fn multiple_edge_cases() {
    let single = Error::multiple(vec![Error::new(Poisoned)]);
    assert_eq!(single.kind(), &Poisoned);
    assert_eq!(
        Error::multiple(vec![]).to_string(),
        "invalid input, no errors"
    );
    let cancels = Error::multiple(vec![
        Error::cancelled(Error::new(Closed)),
        Error::cancelled(Error::new(Timeout)),
    ]);
    assert_eq!(cancels.cancel_reason().unwrap().kind(), &Closed);
}

#[test]
fn errors_of_a_single_error_is_itself() {
    let err = Error::new(Closed);
    assert!(std::ptr::eq(&err.errors()[0], &err));
}

#[test]
fn clone_shares_the_source() {
    let err = Error::from(io::Error::from(io::ErrorKind::NotFound)).context("x");
    let copy = err.clone().context("y");
    let (a, b) = (err.source_error().unwrap(), copy.source_error().unwrap());
    assert!(std::ptr::addr_eq(a, b));
    assert_eq!(err.contexts().count(), 1);
    assert_eq!(copy.contexts().count(), 2);
}

#[test]
fn std_source_is_the_source() {
    let err = Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
    let source = StdError::source(&err).unwrap();
    assert_eq!(
        source.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::BrokenPipe
    );
    assert!(StdError::source(&Error::new(Closed)).is_none());
}

#[test]
fn io_kinds_map_to_weft_kinds() {
    use io::ErrorKind as K;
    let cases = [
        (K::NotFound, Fs(FsError::NotFound)),
        (K::PermissionDenied, Fs(FsError::PermissionDenied)),
        (K::AlreadyExists, Fs(FsError::AlreadyExists)),
        (K::DirectoryNotEmpty, Fs(FsError::DirectoryNotEmpty)),
        (K::StorageFull, Fs(FsError::NoSpace)),
        (K::ConnectionReset, Net(NetError::ConnectionReset)),
        (K::AddrInUse, Net(NetError::AddrInUse)),
        (K::TimedOut, Net(NetError::TimedOut)),
        (K::InvalidInput, InvalidInput),
        (K::UnexpectedEof, EndOfFile),
        (K::Interrupted, Io),
        (K::Other, Io),
    ];
    for (io_kind, kind) in cases {
        let err = Error::from(io::Error::new(io_kind, "oops"));
        assert_eq!(err.kind(), &kind, "{io_kind:?}");
        assert_eq!(err.raw_os_error(), None);
    }
}

#[test]
fn errno_mapping() {
    let cases = [
        (libc::ENOENT, Fs(FsError::NotFound)),
        (libc::EIO, Io),
        (libc::EXDEV, Fs(FsError::CrossesDevices)),
        (libc::ENFILE, Fs(FsError::TooManyOpenFiles)),
        (libc::EMFILE, Fs(FsError::TooManyOpenFiles)),
        (libc::ENAMETOOLONG, Fs(FsError::InvalidPath)),
        (libc::ELOOP, Fs(FsError::TooManySymlinks)),
        (libc::ECONNREFUSED, Net(NetError::ConnectionRefused)),
        (libc::EHOSTUNREACH, Net(NetError::HostUnreachable)),
    ];
    for (errno, kind) in cases {
        let err = Error::from(io::Error::from_raw_os_error(errno));
        assert_eq!(err.kind(), &kind, "errno {errno}");
        assert_eq!(err.raw_os_error(), Some(errno));
    }
}

#[test]
fn weft_to_io_kinds() {
    use io::ErrorKind as K;
    let cases = [
        (Error::new(Timeout), K::TimedOut),
        (Error::new(EndOfFile), K::UnexpectedEof),
        (Error::cancelled(Error::new(Timeout)), K::Other),
        (Error::from(FsError::ReadOnly), K::ReadOnlyFilesystem),
        (Error::from(NetError::InvalidAddress), K::InvalidInput),
        (Error::from(ProcessError::Exited(1)), K::Other),
        (Error::new(Io), K::Other),
    ];
    for (err, kind) in cases {
        assert_eq!(io::Error::from(err).kind(), kind);
    }
    // Kinds without a portable io kind fall back to the source's kind.
    let os = io::Error::from_raw_os_error(24);
    let os_kind = os.kind();
    assert_eq!(io::Error::from(Error::from(os)).kind(), os_kind);
}

#[test]
fn io_round_trip_gives_back_the_same_error() {
    let start = io::Error::from_raw_os_error(2);
    let weft = Error::from(start).context("opening /nope");
    let text = weft.to_string();
    let as_io = io::Error::from(weft.clone());
    assert_eq!(as_io.kind(), io::ErrorKind::NotFound);
    let back = Error::from(as_io);
    assert_eq!(back.to_string(), text);
    assert_eq!(back.raw_os_error(), Some(2));
    let (a, b) = (weft.source_error().unwrap(), back.source_error().unwrap());
    assert!(std::ptr::addr_eq(a, b));
    let wrapped = io::Error::other(Error::msg(Panic, "p"));
    assert_eq!(Error::from(wrapped).to_string(), "panic, p");
}

#[test]
fn result_ext_adds_context_lazily() {
    let res: io::Result<u8> = Err(io::ErrorKind::ConnectionAborted.into());
    let err = res
        .context("inner")
        .with_context(|| "outer".to_owned())
        .unwrap_err();
    assert_eq!(err.kind(), &Net(NetError::ConnectionAborted));
    assert_eq!(err.contexts().collect::<Vec<_>>(), ["inner", "outer"]);
    let ok: Result<u8> = Ok(1);
    let ok = ok.with_context(|| -> &'static str { panic!("evaluated on Ok") });
    assert_eq!(ok.unwrap(), 1);
    let weft: Result<()> = Err(NetError::NotConnected.into());
    assert_eq!(
        weft.context("c").unwrap_err().to_string(),
        "net: not connected, c"
    );
}
