//! Paths of the splice copy that the public API cannot reach on demand: a
//! sink that refuses to splice after the fill has put bytes in the
//! intermediate pipe (real sinks that refuse, such as `/dev/full`, also
//! refuse `write`, so they cannot show that the bytes survive).

use std::cell::Cell;
use std::io::SeekFrom;

use weft_core::flow::{self, Sink, Source};
use weft_core::fs::{Create, OpenOut};
use weft_core::{fiber, RunConfig};

thread_local! {
    static REFUSE_DRAIN: Cell<bool> = const { Cell::new(false) };
}

pub(super) fn refuse_drain() -> bool {
    REFUSE_DRAIN.with(Cell::get)
}

/// Runs `main` on io_uring with every drain refused.
fn run_refusing(main: impl FnOnce(&weft_core::Env) -> weft_core::Result<()>) {
    if crate::probe().is_err() {
        return;
    }
    REFUSE_DRAIN.with(|r| r.set(true));
    let r = crate::run(&RunConfig::default(), main);
    REFUSE_DRAIN.with(|r| r.set(false));
    r.unwrap();
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Copies `src` into `dst`, closes `dst`, and meanwhile reads everything
/// that comes out of `dst`'s peer `dst_r`: (bytes copied, bytes received).
fn copy_and_collect(
    src: &impl Source,
    dst: impl Sink,
    dst_r: &impl Source,
) -> weft_core::Result<(u64, Vec<u8>)> {
    fiber::pair(
        || {
            let n = flow::copy(src, &dst)?;
            drop(dst);
            Ok(n)
        },
        || {
            let mut v = Vec::new();
            dst_r.read_to_end(&mut v)?;
            Ok(v)
        },
    )
}

/// From a socket: the chunk in the pipe goes back in front of the socket's
/// stream, and the buffer copy sends it first.
#[test]
fn bytes_held_when_the_sink_refuses_go_back_to_a_socket() {
    let want = pattern(3 << 20);
    run_refusing(|env| {
        let (src_w, src) = env.net().socketpair()?;
        let (dst, dst_r) = env.net().socketpair()?;
        let ((), (n, got)) = fiber::pair(
            || {
                src_w.write_all(&want)?;
                drop(src_w);
                Ok(())
            },
            || copy_and_collect(&src, dst, &dst_r),
        )?;
        assert_eq!(n, want.len() as u64);
        assert!(got == want, "nothing lost or reordered");
        let stats = crate::stats()?;
        assert!(stats.spliced_bytes > 0, "a fill had spliced");
        assert!(
            stats.spliced_bytes < want.len() as u64,
            "then the buffer copy"
        );
        Ok(())
    });
}

/// From a file: its position never moved past the chunk in the pipe.
#[test]
fn bytes_held_when_the_sink_refuses_are_read_again_from_a_file() {
    let path = std::env::temp_dir().join(format!("weft-uring-refuse-{}", std::process::id()));
    let want = pattern(2 << 20);
    run_refusing(|env| {
        let p = env.fs() / path.to_str().unwrap();
        let file = p.open_out(OpenOut::new(Create::OrTruncate(0o600)))?;
        file.write_all(&want)?;
        file.seek(SeekFrom::Start(10))?;
        let (dst, dst_r) = env.net().socketpair()?;
        let (n, got) = copy_and_collect(&file, dst, &dst_r)?;
        assert_eq!(n, (want.len() - 10) as u64);
        assert!(got == want[10..]);
        assert!(crate::stats()?.spliced_bytes > 0);
        p.unlink()
    });
    let _ = std::fs::remove_file(&path);
}
