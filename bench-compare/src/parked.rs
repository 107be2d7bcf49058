//! A million parked fibers/tasks: each waits on one shared signal; once all
//! are parked the signal fires and all are joined. Reports the time from
//! the first spawn to the last join, and the growth of peak resident memory
//! per fiber. Each runtime runs in its own process: may is expected to die
//! near 32,700 coroutines (two memory mappings per stack against
//! `vm.max_map_count` = 65530), and reports how far it got.

use std::time::{Duration, Instant};

use crate::report::{Imp, Measure, Work};
use crate::runner::{emit, interleaved_with, note, run_child, ChildReport};
use crate::Opts;

/// Spawns between two progress reports (`RESULT spawned k`).
const PROGRESS: usize = 1000;

/// Measures every runtime, once per round, runtimes interleaved (like the
/// other workloads): the median round is kept and the range noted. On a VM
/// whose balloon returns freed memory to the host, the first run after an
/// idle spell pays a host fault for every page it touches; it shows in the
/// range rather than deciding the figure.
pub fn run_all(opts: &Opts, out: &mut Vec<Measure>) {
    let imps = [Imp::WeftUring, Imp::WeftPosix, Imp::TokioCt, Imp::May];
    out.extend(interleaved_with(
        Work::ParkedTime,
        Some(Work::ParkedMem),
        &imps,
        opts.rounds,
        |imp| {
            let r = run_child(
                &["parked", imp.key(), &opts.parked.to_string()],
                Duration::from_secs(180),
                Some(Duration::from_secs(20)),
            );
            outcome(&r, opts.parked)
        },
    ));
}

/// One child's figures (seconds in all, bytes per task) and note, or why it
/// stopped and how far it got.
fn outcome(r: &ChildReport, n: usize) -> Result<(f64, Option<f64>, String), String> {
    let mut notes = r.notes.clone();
    if let Some(f) = &r.failure {
        notes.push(f.clone());
    }
    let note = notes.join("; ");
    match (&r.failure, r.get("total_s")) {
        (None, Some(total)) => Ok((total, r.get("bytes_per"), note)),
        _ => {
            let got = r.get("spawned").unwrap_or(0.0) as u64;
            Err(format!("stopped after {got} of {n} spawned: {note}"))
        }
    }
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Child side: parks `n` fibers on `imp`; emits `spawn_s` (all parked),
/// `total_s` (all joined), `bytes_per` (peak resident growth per fiber) and,
/// as it goes, `spawned`.
pub fn child(imp: &str, n: usize) -> Result<(), String> {
    let n = n.max(1);
    let (rss0, _) = memory();
    let start = Instant::now();
    let parked_at = match Imp::from_key(imp) {
        Some(Imp::WeftUring) => weft_parked(weft::Backend::Uring, n, start)?,
        Some(Imp::WeftPosix) => weft_parked(weft::Backend::Posix, n, start)?,
        Some(Imp::TokioCt) => tokio_parked(n, start)?,
        Some(Imp::May) => may_parked(n, start)?,
        _ => return Err(format!("no parked workload for {imp}")),
    };
    let total = start.elapsed();
    let (_, hwm) = memory();
    emit("spawn_s", parked_at.as_secs_f64());
    emit("total_s", total.as_secs_f64());
    emit("bytes_per", hwm.saturating_sub(rss0) as f64 / n as f64);
    note(&format!(
        "{n} parked; all parked after {:.2} s",
        parked_at.as_secs_f64()
    ));
    Ok(())
}

fn weft_parked(backend: weft::Backend, n: usize, start: Instant) -> Result<Duration, String> {
    use weft::sync::Promise;
    weft::run_with(backend, |_env| {
        let (signal, fire) = Promise::<()>::new();
        let mut parked_at = Duration::ZERO;
        weft::Switch::run(|sw| {
            for i in 0..n {
                sw.fork(|| signal.wait().map(|_| ()));
                if (i + 1) % PROGRESS == 0 {
                    emit("spawned", (i + 1) as f64);
                }
            }
            // Forked fibers run at once, up to their wait: all are parked.
            parked_at = start.elapsed();
            emit("spawned", n as f64);
            let _ = fire.resolve(());
            Ok(())
        })?;
        Ok(parked_at)
    })
    .map_err(|e| e.to_string())
}

fn tokio_parked(n: usize, start: Instant) -> Result<Duration, String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let rt = crate::http::tokio_runtime(false)?;
    rt.block_on(async {
        let (fire, signal) = tokio::sync::watch::channel(false);
        let parked = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            if (i + 1) % PROGRESS == 0 {
                emit("spawned", (i + 1) as f64);
            }
            let (mut signal, parked) = (signal.clone(), parked.clone());
            handles.push(tokio::spawn(async move {
                parked.fetch_add(1, Ordering::Relaxed);
                let _ = signal.wait_for(|v| *v).await;
            }));
        }
        // Let every task run up to its wait.
        while parked.load(Ordering::Relaxed) < n {
            tokio::task::yield_now().await;
        }
        let parked_at = start.elapsed();
        emit("spawned", n as f64);
        fire.send(true).map_err(|e| e.to_string())?;
        for h in handles {
            h.await.map_err(|e| e.to_string())?;
        }
        Ok(parked_at)
    })
}

fn may_parked(n: usize, start: Instant) -> Result<Duration, String> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    may::config().set_workers(1);
    // may panics when it cannot map a stack, and unwinding past a million
    // live coroutines hangs: report and leave at once instead.
    static SPAWNED: AtomicUsize = AtomicUsize::new(0);
    std::panic::set_hook(Box::new(|info| {
        emit("spawned", SPAWNED.load(Ordering::Relaxed) as f64);
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("panic");
        eprintln!("may panicked: {msg}");
        // SAFETY: _exit ends the process without running any more Rust code.
        unsafe { libc::_exit(3) }
    }));
    let go = Arc::new(AtomicBool::new(false));
    let parked = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (go, parked) = (go.clone(), parked.clone());
        handles.push(may::go!(move || {
            parked.fetch_add(1, Ordering::Release);
            while !go.load(Ordering::Acquire) {
                may::coroutine::park();
            }
        }));
        SPAWNED.store(i + 1, Ordering::Relaxed);
        if (i + 1) % PROGRESS == 0 {
            emit("spawned", (i + 1) as f64);
        }
    }
    while parked.load(Ordering::Acquire) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    let parked_at = start.elapsed();
    emit("spawned", n as f64);
    go.store(true, Ordering::Release);
    for h in &handles {
        h.coroutine().unpark();
    }
    for h in handles {
        h.join()
            .map_err(|_| "a may coroutine panicked".to_string())?;
    }
    Ok(parked_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(values: &[(&str, f64)], failure: Option<&str>) -> ChildReport {
        ChildReport {
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            notes: vec!["1000 parked".into()],
            failure: failure.map(str::to_owned),
        }
    }

    #[test]
    fn a_finished_child_gives_time_memory_and_note() {
        let r = report(&[("total_s", 2.5), ("bytes_per", 4498.0)], None);
        assert_eq!(
            outcome(&r, 1000),
            Ok((2.5, Some(4498.0), "1000 parked".into()))
        );
    }

    #[test]
    fn a_child_that_stopped_says_how_far_it_got() {
        let r = report(&[("spawned", 327.0)], Some("exit status 3"));
        let e = outcome(&r, 1000).unwrap_err();
        assert!(
            e.starts_with("stopped after 327 of 1000 spawned:") && e.contains("exit status 3"),
            "{e}"
        );
        // Figures from a run that failed afterwards are not kept either.
        let r = report(&[("total_s", 2.5)], Some("killed"));
        assert!(outcome(&r, 1000).is_err());
    }
}
