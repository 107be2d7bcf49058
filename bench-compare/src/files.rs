//! Random 4 KiB reads from a large file in the page cache, 64 readers at
//! once: weft (io_uring, POSIX), `tokio::fs` (seek + read on the blocking
//! pool), and tokio with `spawn_blocking(pread)`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::report::{Imp, Measure, Work};
use crate::runner::{emit, interleaved, note, run_child};
use crate::Opts;

const READERS: usize = 64;
const BLOCK: usize = 4096;

/// Makes (or reuses) the data file, reads it once to put it in the page
/// cache, and measures every runtime.
pub fn run_all(opts: &Opts, out: &mut Vec<Measure>) {
    let path = match data_file(&opts.data_dir, opts.file_mib) {
        Ok(p) => p,
        Err(e) => {
            println!("  random reads skipped: cannot make the data file: {e}");
            return;
        }
    };
    let imps = [
        Imp::WeftUring,
        Imp::WeftPosix,
        Imp::TokioCt,
        Imp::TokioPread,
    ];
    let path = path.to_str().expect("UTF-8 data path");
    let (secs, readers) = (opts.load_secs.to_string(), READERS.to_string());
    out.extend(interleaved(Work::Files, &imps, opts.rounds, |imp| {
        run_child(
            &["files", imp.key(), path, &secs, &readers],
            opts.load() + Duration::from_secs(60),
            None,
        )
        .result("reads_per_s")
    }));
}

/// `dir/random-<M>mib.dat`, created with pseudo-random content if missing
/// or of the wrong size, then read once so it sits in the page cache.
fn data_file(dir: &Path, mib: u64) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("random-{mib}mib.dat"));
    let want = mib << 20;
    let t = Instant::now();
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(want) {
        print!("  writing the {mib} MiB data file {} ...", path.display());
        let _ = std::io::stdout().flush();
        let mut f = std::fs::File::create(&path)?;
        let mut chunk = vec![0u8; 1 << 20];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..mib {
            for w in chunk.chunks_exact_mut(8) {
                x = xorshift(x);
                w.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&chunk)?;
        }
        f.sync_all()?;
        println!(" {:.1} s", t.elapsed().as_secs_f64());
    }
    // Into the page cache: the workload is "reads of a cached file".
    let mut f = std::fs::File::open(&path)?;
    let mut chunk = vec![0u8; 1 << 20];
    while f.read(&mut chunk)? > 0 {}
    Ok(path)
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The next random block-aligned offset below `blocks * BLOCK`.
fn next_offset(state: &mut u64, blocks: u64) -> u64 {
    *state = xorshift(*state);
    (*state % blocks) * BLOCK as u64
}

/// Child side: `readers` concurrent readers for `secs` seconds; emits
/// `reads_per_s`.
pub fn child(imp: &str, path: &str, secs: f64, readers: usize) -> Result<(), String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{path}: {e}"))?
        .len();
    let blocks = (len / BLOCK as u64).max(1);
    let dur = Duration::from_secs_f64(secs);
    let (reads, took) = match Imp::from_key(imp) {
        Some(Imp::WeftUring) => weft_reads(weft::Backend::Uring, path, blocks, dur, readers)?,
        Some(Imp::WeftPosix) => weft_reads(weft::Backend::Posix, path, blocks, dur, readers)?,
        Some(Imp::TokioCt) => tokio_fs_reads(path, blocks, dur, readers)?,
        Some(Imp::TokioPread) => tokio_pread_reads(path, blocks, dur, readers)?,
        _ => return Err(format!("no file workload for {imp}")),
    };
    emit("reads_per_s", reads as f64 / took.as_secs_f64());
    note(&format!("{readers} readers, {} MiB file", len >> 20));
    Ok(())
}

fn weft_reads(
    backend: weft::Backend,
    path: &str,
    blocks: u64,
    dur: Duration,
    readers: usize,
) -> Result<(u64, Duration), String> {
    use std::cell::Cell;
    weft::run_with(backend, |env| {
        let file = (env.fs() / path).open_in()?;
        let total = Cell::new(0u64);
        let start = Instant::now();
        let end = start + dur;
        weft::Switch::run(|sw| {
            for i in 0..readers {
                let (file, total) = (&file, &total);
                sw.fork(move || {
                    let mut buf = vec![0u8; BLOCK];
                    let mut rng = 0x2545_f491_4f6c_dd1d ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9);
                    while Instant::now() < end {
                        file.read_exact_at(&mut buf, next_offset(&mut rng, blocks))?;
                        total.set(total.get() + 1);
                    }
                    Ok(())
                });
            }
            Ok(())
        })?;
        Ok((total.get(), start.elapsed()))
    })
    .map_err(|e| e.to_string())
}

fn tokio_fs_reads(
    path: &str,
    blocks: u64,
    dur: Duration,
    readers: usize,
) -> Result<(u64, Duration), String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let rt = crate::http::tokio_runtime(false)?;
    rt.block_on(async {
        let start = Instant::now();
        let end = start + dur;
        let mut tasks = Vec::new();
        for i in 0..readers {
            let path = path.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut f = tokio::fs::File::open(&path).await?;
                let mut buf = vec![0u8; BLOCK];
                let mut rng = 0x2545_f491_4f6c_dd1d ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9);
                let mut n = 0u64;
                while Instant::now() < end {
                    f.seek(std::io::SeekFrom::Start(next_offset(&mut rng, blocks)))
                        .await?;
                    f.read_exact(&mut buf).await?;
                    n += 1;
                }
                Ok::<u64, std::io::Error>(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        Ok((total, start.elapsed()))
    })
}

fn tokio_pread_reads(
    path: &str,
    blocks: u64,
    dur: Duration,
    readers: usize,
) -> Result<(u64, Duration), String> {
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;
    let rt = crate::http::tokio_runtime(false)?;
    let file = Arc::new(std::fs::File::open(path).map_err(|e| e.to_string())?);
    rt.block_on(async {
        let start = Instant::now();
        let end = start + dur;
        let mut tasks = Vec::new();
        for i in 0..readers {
            let file = file.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; BLOCK];
                let mut rng = 0x2545_f491_4f6c_dd1d ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9);
                let mut n = 0u64;
                while Instant::now() < end {
                    let off = next_offset(&mut rng, blocks);
                    let f = file.clone();
                    buf = tokio::task::spawn_blocking(move || {
                        f.read_exact_at(&mut buf, off).map(|()| buf)
                    })
                    .await
                    .map_err(std::io::Error::other)??;
                    n += 1;
                }
                Ok::<u64, std::io::Error>(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        Ok((total, start.elapsed()))
    })
}
