//! Throughput of `flow::copy` from a file: to a TCP socket on the loopback
//! (whose peer discards what it reads) and to `/dev/null`.
//!
//! ```text
//! cargo run --release --example copy_throughput -- [--size-mib N] [--dir D]
//!     [--backend uring|posix] [--buffer] [--runs R]
//! ```
//!
//! `--buffer` copies with `flow::copy_with_buffer` (the generic 64 KiB
//! buffer loop, what `copy` did before it could splice) instead of
//! `flow::copy`. The file is created once, filled with non-zero bytes, and
//! read once before timing so that it is in the page cache.

use std::time::Instant;

use weft::flow::{self, Shutdown, ShutdownKind, Source};
use weft::fs::{Create, OpenOut};
use weft::{Backend, Env};

struct Args {
    size_mib: u64,
    dir: String,
    backend: Backend,
    buffer: bool,
    runs: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        size_mib: 1024,
        dir: std::env::temp_dir().to_string_lossy().into_owned(),
        backend: Backend::Uring,
        buffer: false,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--size-mib" => a.size_mib = value()?.parse().map_err(|e| format!("{e}"))?,
            "--dir" => a.dir = value()?,
            "--runs" => a.runs = value()?.parse().map_err(|e| format!("{e}"))?,
            "--backend" => {
                a.backend = match value()?.as_str() {
                    "uring" => Backend::Uring,
                    "posix" => Backend::Posix,
                    other => return Err(format!("unknown backend {other:?}")),
                }
            }
            "--buffer" => a.buffer = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn copy(args: &Args, src: &weft::fs::File, dst: &(impl flow::Sink + ?Sized)) -> weft::Result<u64> {
    if args.buffer {
        flow::copy_with_buffer(src, dst)
    } else {
        flow::copy(src, dst)
    }
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn bench(env: &Env, args: &Args) -> weft::Result<()> {
    let path = env.fs() / args.dir.as_str() / format!("weft-copy-bench-{}", std::process::id());
    let size = args.size_mib << 20;
    {
        let f = path.open_out(OpenOut::new(Create::OrTruncate(0o600)))?;
        let chunk: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253 + 1) as u8).collect();
        for _ in 0..args.size_mib {
            flow::Sink::write_all(&f, &chunk)?;
        }
        // Warm the page cache.
        let mut sink = vec![0u8; 1 << 20];
        f.seek(std::io::SeekFrom::Start(0))?;
        while f.read(&mut sink)? > 0 {}
    }
    let how = if args.buffer {
        "buffer loop"
    } else {
        "flow::copy"
    };
    let result = (|| {
        for run in 0..args.runs {
            let src = path.open_in()?;
            let listener = env.net().listen(&"127.0.0.1:0".parse()?)?;
            let addr = listener.local_addr()?;
            let (tx, (rx, _)) =
                weft::fiber::pair(|| env.net().connect(&addr), || listener.accept())?;
            let t0 = Instant::now();
            let (n, got) = weft::fiber::pair(
                || {
                    let n = copy(args, &src, &tx)?;
                    tx.shutdown(ShutdownKind::Write)?;
                    Ok(n)
                },
                || {
                    let mut buf = vec![0u8; 1 << 20];
                    let mut total = 0u64;
                    loop {
                        match rx.read(&mut buf)? {
                            0 => return Ok(total),
                            n => total += n as u64,
                        }
                    }
                },
            )?;
            let secs = t0.elapsed().as_secs_f64();
            assert_eq!((n, got), (size, size));
            println!(
                "run {run}: file -> tcp   {how:11} {:8.0} MB/s ({secs:.3} s)",
                mb_per_s(n, secs)
            );

            let src = path.open_in()?;
            let null = (env.fs() / "/dev/null").open_out(OpenOut::new(Create::Never))?;
            let t0 = Instant::now();
            let n = copy(args, &src, &null)?;
            let secs = t0.elapsed().as_secs_f64();
            assert_eq!(n, size);
            println!(
                "run {run}: file -> null  {how:11} {:8.0} MB/s ({secs:.3} s)",
                mb_per_s(n, secs)
            );
        }
        Ok(())
    })();
    path.unlink()?;
    if args.backend == Backend::Uring {
        let stats = weft::uring::stats()?;
        println!(
            "io_uring splices: {} moving {} MiB",
            stats.splices,
            stats.spliced_bytes >> 20
        );
    }
    result
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("copy_throughput: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "{} MiB file, backend {:?}, {} runs",
        args.size_mib, args.backend, args.runs
    );
    if let Err(e) = weft::run_with(args.backend, |env| bench(env, &args)) {
        eprintln!("copy_throughput: {e}");
        std::process::exit(1);
    }
}
