//! Runs the same workloads on weft, tokio and may, side by side in one run,
//! and prints figures and ratios (see `--help`).
//!
//! Every measurement runs in a child process of this same binary
//! (`--child WORKLOAD IMPL`): a runtime that crashes or runs out of memory
//! (may at ~32,700 coroutines) costs one table cell, not the run, and no
//! runtime's threads, caches or global state leak into another's figures.
//! Servers are children too; the load generators run here.

mod chart;
mod doc;
mod echo;
mod files;
mod http;
mod micro;
mod parked;
mod report;
mod runner;
mod saved;

use std::time::Duration;

use report::Measure;

/// Run-wide settings, from the command line.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Shorter runs and smaller sizes (about a minute in all).
    pub quick: bool,
    /// Workload groups or names to run; empty: all.
    pub only: Vec<String>,
    /// Where to write the results section and chart (`--write-doc`).
    pub write_doc: Option<std::path::PathBuf>,
    /// Seconds of load for each server and file measurement.
    pub load_secs: f64,
    /// Repetitions of each micro-benchmark inside one child (the child
    /// reports their median).
    pub reps: usize,
    /// Rounds: every runtime is measured once per round, runtimes
    /// interleaved, and the median over rounds is reported, so that load
    /// from elsewhere that comes and goes hits all runtimes alike.
    pub rounds: usize,
    /// Size of the file for random reads, in MiB.
    pub file_mib: u64,
    /// Fibers/tasks in the parked-fibers workload.
    pub parked: usize,
    /// Where the data file goes.
    pub data_dir: std::path::PathBuf,
    /// Measure nothing: report the last run again (`--redraw`).
    pub redraw: bool,
}

const USAGE: &str = "\
usage: bench-compare/run [--quick] [--only LIST] [--write-doc [DOC_DIR]] [--secs S] [--reps N]
                        [--rounds R] [--file-mib M] [--parked N] [--data-dir DIR] [--redraw]

Runs each workload on weft (io_uring and POSIX backends), tokio (current_thread;
multi_thread with 2 workers on the servers) and may (1 worker), in one run, and
prints figures and the speed-up of each against tokio current_thread.

  --quick          one round, short runs, smaller sizes (under a minute)
  --only LIST      comma-separated groups or workloads:
                   micro (yield, spawn, promise, stream), echo, http, files, parked
  --write-doc DIR  rewrite the generated section of DIR/benchmarks.md and
                   write DIR/benchmarks.svg (default DIR: doc/ of the weft repo)
  --secs S         seconds of load per server/file measurement (default 2, quick 1)
  --reps N         repetitions of a micro-benchmark in one process, median kept (default 3)
  --rounds R       rounds over all runtimes, interleaved; the median round is
                   reported (default 3, quick 1)
  --file-mib M     size of the random-read file (default 1024, quick 256)
  --parked N       fibers/tasks in the parked workload (default 1000000, quick 200000)
  --data-dir DIR   where to put the data file (default: bench-compare/target/bench-data)
  --redraw         measure nothing: print the last run's table again (and, with
                   --write-doc, rewrite the doc and chart from it); every run is
                   saved in bench-compare/target/last-run.tsv

The HTTP workload uses wrk (apt-get install -y wrk) when it is on PATH, else a
built-in keep-alive load generator (64 blocking connections).";

fn parse_opts() -> Opts {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Opts {
        quick: false,
        only: Vec::new(),
        write_doc: None,
        load_secs: 0.0,
        reps: 0,
        rounds: 0,
        file_mib: 0,
        parked: 0,
        data_dir: manifest.join("target").join("bench-data"),
        redraw: false,
    };
    let mut args = std::env::args().skip(1).peekable();
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage_exit(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--redraw" => o.redraw = true,
            "--only" => o.only = value("--only").split(',').map(str::to_owned).collect(),
            "--write-doc" => {
                o.write_doc = Some(match args.peek() {
                    Some(d) if !d.starts_with("--") => args.next().unwrap().into(),
                    _ => manifest
                        .parent()
                        .map_or(manifest.join("doc"), |p| p.join("doc")),
                })
            }
            "--secs" => o.load_secs = num(&value("--secs")),
            "--reps" => o.reps = num::<f64>(&value("--reps")) as usize,
            "--rounds" => o.rounds = num::<f64>(&value("--rounds")) as usize,
            "--file-mib" => o.file_mib = num::<f64>(&value("--file-mib")) as u64,
            "--parked" => o.parked = num::<f64>(&value("--parked").replace('_', "")) as usize,
            "--data-dir" => o.data_dir = value("--data-dir").into(),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => usage_exit(&format!("unknown argument {other:?}")),
        }
    }
    let pick = |set: f64, quick: f64, full: f64| match (set > 0.0, o.quick) {
        (true, _) => set,
        (false, true) => quick,
        (false, false) => full,
    };
    o.load_secs = pick(o.load_secs, 1.0, 2.0);
    o.reps = pick(o.reps as f64, 3.0, 3.0) as usize;
    o.rounds = pick(o.rounds as f64, 1.0, 3.0) as usize;
    o.file_mib = pick(o.file_mib as f64, 256.0, 1024.0) as u64;
    o.parked = pick(o.parked as f64, 200_000.0, 1_000_000.0) as usize;
    let known = [
        "micro", "yield", "spawn", "promise", "stream", "echo", "http", "files", "parked",
    ];
    for w in &o.only {
        if !known.contains(&w.as_str()) {
            usage_exit(&format!(
                "--only: unknown workload {w:?} (known: {})",
                known.join(", ")
            ));
        }
    }
    o
}

fn num<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage_exit(&format!("{s:?}: not a number")))
}

fn usage_exit(msg: &str) -> ! {
    eprintln!("bench-compare: {msg}\n\n{USAGE}");
    std::process::exit(2)
}

impl Opts {
    /// Whether the workload `name` (in group `group`) is selected.
    pub fn wants(&self, group: &str, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == group || w == name)
    }

    /// How long each server/file measurement loads its target.
    pub fn load(&self) -> Duration {
        Duration::from_secs_f64(self.load_secs)
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--child") {
        // A single measurement, asked for by the parent run.
        std::process::exit(runner::child_main(&argv[2..]));
    }
    let opts = parse_opts();
    let (info, results) = if opts.redraw {
        match saved::load(&saved::path()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench-compare: --redraw: {e}");
                std::process::exit(1);
            }
        }
    } else {
        measure(&opts)
    };
    report::PARKED_N.store(info.parked, std::sync::atomic::Ordering::Relaxed);
    println!();
    report::print_table(&results);
    println!("\nwhole run: {:.0} s", info.elapsed_s);
    if let Some(dir) = &opts.write_doc {
        match doc::write_doc(dir, &info, &results) {
            Ok(()) => println!(
                "wrote {0}/benchmarks.md (results section) and {0}/benchmarks.svg",
                dir.display()
            ),
            Err(e) => {
                eprintln!("bench-compare: writing the doc in {}: {e}", dir.display());
                std::process::exit(1);
            }
        }
    }
}

/// Runs the selected workloads; saves and returns the figures.
fn measure(opts: &Opts) -> (doc::RunInfo, Vec<Measure>) {
    report::PARKED_N.store(opts.parked, std::sync::atomic::Ordering::Relaxed);
    let started = std::time::Instant::now();
    doc::print_machine();
    let mut results: Vec<Measure> = Vec::new();
    micro::run_all(opts, &mut results);
    if opts.wants("echo", "echo") {
        echo::run_all(opts, &mut results);
    }
    if opts.wants("http", "http") {
        http::run_all(opts, &mut results);
    }
    if opts.wants("files", "files") {
        files::run_all(opts, &mut results);
    }
    if opts.wants("parked", "parked") {
        parked::run_all(opts, &mut results);
    }
    let info = doc::RunInfo::current(opts, started.elapsed());
    if let Err(e) = saved::save(&saved::path(), &info, &results) {
        eprintln!("bench-compare: could not save the run: {e}");
    }
    (info, results)
}
