//! A million fibers: each parks on a promise (or a sleep), then all are
//! released and joined. Prints the time taken, the resident memory per
//! fiber and the number of memory mappings.
//!
//! ```text
//! cargo run --release --example many_fibers                 # 1,000,000 fibers
//! cargo run --release --example many_fibers -- --n 100000 --stack 65536
//! cargo run --release --example many_fibers -- --run-stack 65536   # RunConfig::stack_size
//! cargo run --release --example many_fibers -- --max-idle 0     # RunConfig::max_idle_stacks
//! cargo run --release --example many_fibers -- --park sleep
//! WEFT_BACKEND=mock cargo run --release --example many_fibers
//! WEFT_STACK_GUARDS=mprotect cargo run --release --example many_fibers   # old-kernel path
//! WEFT_STACK_PREPARE=off cargo run --release --example many_fibers     # no helper thread
//! cargo run --release --example many_fibers -- --floor      # kernel floor first
//! ```
//!
//! Every fiber has a guarded stack of the default size (256 KiB of address
//! space) unless `--stack` (per fiber, `ForkOptions::stack_size`) or
//! `--run-stack` (the run's default, `RunConfig::stack_size`) says
//! otherwise. "Bytes per fiber" is the growth
//! of the process's peak resident set (`VmHWM` after the run less `VmRSS`
//! before it) divided by N; page tables (`VmPTE`) are shown apart, as the
//! kernel does not count them as resident.
//!
//! `--floor` first times the kernel work alone, with no weft code: map
//! slabs of the same layout, install N guard pages, touch one page of
//! each stack, give the pages back (`MADV_DONTNEED`). A parked fiber needs
//! at least that, so on a given machine it is the bar to compare with.

use std::time::{Duration, Instant};

use weft::switch::ForkOptions;
use weft::sync::Promise;
use weft::{Backend, Env, RunConfig, Switch};

struct Args {
    n: usize,
    stack: Option<usize>,
    run_stack: Option<usize>,
    max_idle: Option<usize>,
    sleep: bool,
    floor: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        n: 1_000_000,
        stack: None,
        run_stack: None,
        max_idle: None,
        sleep: false,
        floor: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> String {
            it.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--n" => args.n = number(&value("--n")),
            "--stack" => args.stack = Some(number(&value("--stack"))),
            "--run-stack" => args.run_stack = Some(number(&value("--run-stack"))),
            "--max-idle" => args.max_idle = Some(number(&value("--max-idle"))),
            "--park" => match value("--park").as_str() {
                "sleep" => args.sleep = true,
                "promise" => args.sleep = false,
                other => usage(&format!("--park {other}: expected promise or sleep")),
            },
            "--floor" => args.floor = true,
            "-h" | "--help" => usage(""),
            n if n.chars().all(|c| c.is_ascii_digit() || c == '_') => args.n = number(n),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args
}

fn number(s: &str) -> usize {
    s.replace('_', "")
        .parse()
        .unwrap_or_else(|_| usage(&format!("{s}: not a number")))
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("many_fibers: {msg}");
    }
    eprintln!(
        "usage: many_fibers [N | --n N] [--stack BYTES] [--run-stack BYTES] \
         [--max-idle STACKS] [--park promise|sleep] [--floor]"
    );
    std::process::exit(2)
}

/// `VmRSS`, `VmHWM` and `VmPTE` of this process, in bytes.
fn memory() -> (usize, usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"), field("VmPTE:"))
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

/// Times the kernel work a parked fiber's stack needs, without weft: one
/// guard page (`MADV_GUARD_INSTALL`) and one touched page per stack, in
/// slabs of 1 GiB, then `MADV_DONTNEED` and `munmap`.
fn kernel_floor(n: usize, size: usize) -> Duration {
    let page = 4096;
    let stride = size.div_ceil(page) * page + page;
    let per_slab = ((1 << 30) / stride).max(1);
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(per_slab);
        let len = k * stride;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        // SAFETY: a fresh anonymous mapping, used only here and unmapped
        // below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap failed");
        let p = p.cast::<u8>();
        for i in 0..k {
            // SAFETY: slot `i` lies inside the mapping; 102 is
            // MADV_GUARD_INSTALL, the write lands in the slot's top page.
            unsafe {
                libc::madvise(p.add(i * stride).cast(), page, 102);
                p.add((i + 1) * stride - 64).write_volatile(1);
            }
        }
        // SAFETY: the mapping is ours and nothing refers into it any more.
        unsafe {
            libc::madvise(p.add(page).cast(), len - page, libc::MADV_DONTNEED);
            libc::munmap(p.cast(), len);
        }
        left -= k;
    }
    start.elapsed()
}

/// Runs `main` on the backend `WEFT_BACKEND` (or the machine) picks, with
/// `config`.
fn run_with_config<T>(
    config: &RunConfig,
    main: impl FnOnce(&Env) -> weft::Result<T>,
) -> weft::Result<T> {
    match Backend::from_env()? {
        Backend::Uring => weft::uring::run(config, main),
        Backend::Posix => weft_posix::run(config, main),
        Backend::Mock => weft::mock::Config::new()
            .stack_size(config.stack_size)
            .run(main),
    }
}

fn main() {
    let args = parse_args();
    let n = args.n;
    let mut config = RunConfig::default();
    if let Some(s) = args.run_stack {
        config.stack_size = s;
    }
    if let Some(m) = args.max_idle {
        config.max_idle_stacks = m;
    }
    if args.floor {
        let size = args.stack.unwrap_or(config.stack_size);
        let t = kernel_floor(n, size);
        println!(
            "kernel floor for {n} stacks (guard + one touched page + DONTNEED each): {:.3} s",
            t.as_secs_f64()
        );
    }
    let (rss_before, _, pte_before) = memory();
    let maps_before = mappings();
    let start = Instant::now();
    let mut parked_at = Duration::ZERO;
    let mut parked = (0, 0, 0, 0);
    let r = run_with_config(&config, |env| {
        let backend = env.backend_id().to_string();
        let stack = args.stack.unwrap_or(weft::fiber::stats()?.stack_size);
        let clock = env.mono_clock();
        let (promise, resolver) = Promise::<()>::new();
        let mut opts = ForkOptions::new();
        if let Some(s) = args.stack {
            opts = opts.stack_size(s);
        }
        Switch::run(|sw| {
            for _ in 0..n {
                if args.sleep {
                    sw.fork_with(opts.clone(), || clock.sleep(Duration::from_millis(10)));
                } else {
                    sw.fork_with(opts.clone(), || promise.wait().map(|_| ()));
                }
            }
            parked_at = start.elapsed();
            let (rss, _, pte) = memory();
            parked = (rss, pte, mappings(), weft::fiber::stats()?.fibers);
            if !args.sleep {
                let _ = resolver.resolve(());
            }
            Ok(())
        })?;
        Ok((backend, stack))
    });
    let total = start.elapsed();
    let (backend, stack) = match r {
        Ok(b) => b,
        Err(e) => {
            eprintln!("many_fibers: {e}");
            std::process::exit(1);
        }
    };
    let (_, hwm_after, _) = memory();
    let (rss_parked, pte_parked, maps_parked, fibers_parked) = parked;
    let per = |bytes: usize| bytes.saturating_sub(rss_before) / n.max(1);
    println!(
        "{n} fibers on {backend}, each parked on a {}, stack {} bytes",
        if args.sleep { "sleep" } else { "promise" },
        stack
    );
    println!(
        "  spawned and parked: {:.3} s ({fibers_parked} fibers alive)",
        parked_at.as_secs_f64()
    );
    println!("  released and joined: {:.3} s total", total.as_secs_f64());
    println!(
        "  {} bytes per fiber (peak resident growth: VmHWM {} MiB - VmRSS before {} MiB)",
        per(hwm_after),
        hwm_after >> 20,
        rss_before >> 20
    );
    println!(
        "  {} bytes per fiber resident while parked; page tables {} bytes per fiber",
        per(rss_parked),
        pte_parked.saturating_sub(pte_before) / n.max(1)
    );
    println!("  memory mappings: {maps_before} before, {maps_parked} while parked");
}
