//! weft's deterministic backend, for tests.
//!
//! Under the mock backend a program's schedule is a pure function of its
//! inputs: fibers run in weft's deterministic order, time is virtual (it
//! stands still while any fiber can run and jumps to the next timer when
//! none can, tracing `mock time is now N`), and when nothing can ever run
//! again the run stops with a `Deadlock` error naming every blocked fiber
//! and what it waits on, instead of hanging.
//!
//! This is the reference implementation of the backend contract
//! (`weft_core::backend`): a new contributor should read it first.
//!
//! ```
//! use std::time::Duration;
//!
//! let (result, trace) = weft_mock::Config::new().run_traced(|env| {
//!     weft_core::traceln!("Sleeping for five seconds...");
//!     env.clock().sleep(Duration::from_secs(5))?;
//!     weft_core::traceln!("Resumed");
//!     Ok(())
//! });
//! result.unwrap();
//! assert_eq!(trace, ["Sleeping for five seconds...", "mock time is now 5", "Resumed"]);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, SystemTime};

pub mod action;
pub mod flow;
pub mod fs;
pub mod handler;
pub mod net;
pub mod process;
pub mod scripted_net;

pub use action::Action;
pub use flow::{CopyMethod, Flow};
pub use fs::MemFs;
pub use handler::Handler;
pub use net::{MemNet, OpenResources};
pub use process::{Invocation, Programs};
pub use scripted_net::{Conn, ListeningSocket, Net};

use weft_core::backend::{Driver, Park, Parked, Unpark};
use weft_core::{Env, Result, RunConfig};

/// Where trace lines go.
#[derive(Clone)]
enum TraceSink {
    /// Printed to standard output as `+line` (captured by the test harness).
    Print,
    /// Collected for the caller.
    Capture(Arc<Mutex<Vec<String>>>),
}

/// Options for a mock run.
#[derive(Clone)]
pub struct Config {
    run: RunConfig,
    external_wait: Option<Duration>,
    seed: u64,
    net: Option<MemNet>,
    fs: Option<MemFs>,
    programs: Option<Programs>,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("run", &self.run)
            .field("external_wait", &self.external_wait)
            .finish()
    }
}

impl Config {
    /// The defaults: closed world (no other thread will wake us unless it
    /// declared itself with `ExternalWork`), default stacks.
    pub fn new() -> Config {
        Config {
            run: RunConfig::default(),
            external_wait: None,
            seed: 0,
            net: None,
            fs: None,
            programs: None,
        }
    }

    /// Seeds the mock's random source (`env.secure_random()`); the same seed
    /// gives the same bytes.
    pub fn seed(mut self, seed: u64) -> Config {
        self.seed = seed;
        self
    }

    /// Runs on `net` instead of a fresh in-memory network, so a test can
    /// inspect it afterwards ([`MemNet::open_resources`]) or prepare it
    /// ([`MemNet::add_host`]).
    pub fn net(mut self, net: MemNet) -> Config {
        self.net = Some(net);
        self
    }

    /// Runs on `fs` instead of a fresh in-memory filesystem (an empty
    /// `/work` as the working directory, see [`MemFs`]), so a test can
    /// prepare it ([`MemFs::write`]) or inspect it afterwards
    /// ([`MemFs::read`], [`MemFs::open_handles`]).
    pub fn fs(mut self, fs: MemFs) -> Config {
        self.fs = Some(fs);
        self
    }

    /// Runs with `programs` as the mock world's programs instead of a fresh
    /// [`Programs::new`] (the built-ins), so a test can register its own
    /// ([`Programs::register`]) or change the environment processes start
    /// with. See [`process`].
    pub fn programs(mut self, programs: Programs) -> Config {
        self.programs = Some(programs);
        self
    }

    /// Default stack size for fibers, in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Config {
        self.run.stack_size = bytes;
        self
    }

    /// Idle stacks kept resident per size for reuse; see
    /// [`RunConfig::max_idle_stacks`](weft_core::RunConfig::max_idle_stacks).
    ///
    /// ```
    /// use std::time::Duration;
    /// use weft::{fiber, Switch};
    ///
    /// let idle = weft::mock::Config::new()
    ///     .max_idle_stacks(8)
    ///     .run(|env| {
    ///         // 200 fibers suspended at once, each on its own stack.
    ///         Switch::run(|sw| {
    ///             for _ in 0..200 {
    ///                 sw.fork(fiber::yield_now);
    ///             }
    ///             Ok(())
    ///         })?;
    ///         // Nothing to run while this sleeps: the memory of the idle
    ///         // stacks past 8 goes back to the OS.
    ///         env.mono_clock().sleep(Duration::from_millis(1))?;
    ///         Ok(fiber::stats()?.idle_stacks)
    ///     })
    ///     .unwrap();
    /// // The stacks themselves stay in the pool, guarded, for reuse.
    /// assert!(idle >= 200);
    /// ```
    pub fn max_idle_stacks(mut self, n: usize) -> Config {
        self.run.max_idle_stacks = n;
        self
    }

    /// When no fiber can run and no timer is pending, wait up to `d` of real
    /// time for a wake-up from another OS thread before reporting a
    /// deadlock. Use it for tests that hand resumers or promises to plain
    /// `std::thread`s without declaring them with
    /// `weft_core::backend::ExternalWork`.
    pub fn external_wait(mut self, d: Duration) -> Config {
        self.external_wait = Some(d);
        self
    }

    /// Runs `main` under the mock backend, printing trace lines to standard
    /// output (prefixed with `+`).
    pub fn run<T>(&self, main: impl FnOnce(&Env) -> Result<T>) -> Result<T> {
        self.run_with_sink(TraceSink::Print, main)
    }

    /// Runs `main` and returns its result together with every trace line
    /// (without the `+`), including the mock clock's.
    pub fn run_traced<T>(&self, main: impl FnOnce(&Env) -> Result<T>) -> (Result<T>, Vec<String>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let r = self.run_with_sink(TraceSink::Capture(lines.clone()), main);
        let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()));
        (r, lines)
    }

    fn run_with_sink<T>(&self, sink: TraceSink, main: impl FnOnce(&Env) -> Result<T>) -> Result<T> {
        let driver = MockDriver {
            now: 0,
            sink,
            unparker: Arc::new(ThreadUnpark(std::thread::current())),
            external_wait: self.external_wait,
        };
        let net = self.net.clone().unwrap_or_default();
        let fs = self.fs.clone().unwrap_or_default();
        let programs = self.programs.clone().unwrap_or_default();
        // Domains started from this run share its in-memory network,
        // filesystem and programs.
        let domain_config = self
            .clone()
            .net(net.clone())
            .fs(fs.clone())
            .programs(programs.clone());
        let (fs_dir, cwd_dir) = fs.dirs();
        let env = Env::for_backend("mock")
            .with_net(weft_core::net::Net::new(Arc::new(net)))
            .with_fs(fs_dir, cwd_dir)
            .with_process_mgr(weft_core::process::ProcessMgr::new(Arc::new(
                process::MockProcessMgr { programs, fs },
            )))
            .with_secure_random(weft_core::random::SecureRandom::new(Arc::new(
                weft_core::random::SeededRandom::new(self.seed),
            )))
            .with_domain_mgr(weft_core::domain::DomainMgr::new(Arc::new(MockDomains(
                domain_config,
            ))));
        weft_core::run_scheduler(Box::new(driver), &self.run, || main(&env))
    }
}

/// Domains under the mock: each runs its own mock scheduler on a new OS
/// thread. A domain is an open world (its parent may wake it at any time),
/// so deadlock detection covers each domain's own fibers only while it has
/// no cross-domain waits; a domain waiting on another is never reported.
struct MockDomains(Config);

impl weft_core::domain::DomainBackend for MockDomains {
    fn spawn(&self, main: weft_core::domain::DomainMain) -> Result<()> {
        let config = self.0.clone();
        std::thread::Builder::new()
            .name("weft-mock-domain".into())
            .spawn(move || {
                let r = config.run(|_env| {
                    let _open_world = weft_core::backend::ExternalWork::begin();
                    main();
                    Ok(())
                });
                if let Err(e) = r {
                    eprintln!("weft: mock domain failed: {e}");
                }
            })
            .map(|_| ())
            .map_err(|e| {
                weft_core::Error::with_source(weft_core::ErrorKind::Io, e)
                    .context("starting a mock domain thread")
            })
    }
}

/// Runs `main` under the mock backend with default settings. Trace lines
/// are printed (use [`run_traced`] to get them back).
///
/// ```
/// use std::time::Duration;
/// use weft::{fiber, sync::Promise, ErrorKind};
///
/// // Virtual time: an hour passes at once.
/// let elapsed = weft::mock::run(|env| {
///     let clock = env.mono_clock();
///     clock.sleep(Duration::from_secs(3600))?;
///     Ok(clock.now()?.since_origin())
/// })
/// .unwrap();
/// assert_eq!(elapsed, Duration::from_secs(3600));
///
/// // A run that can never finish stops with a deadlock report.
/// let err = weft::mock::run(|_env| {
///     let (p, _r) = Promise::<()>::new();
///     fiber::both(|| p.wait().map(drop), || p.wait().map(drop))
/// })
/// .unwrap_err();
/// assert_eq!(err.kind(), &ErrorKind::Deadlock);
/// ```
pub fn run<T>(main: impl FnOnce(&Env) -> Result<T>) -> Result<T> {
    Config::new().run(main)
}

/// Runs `main` under the mock backend and returns the trace lines too.
pub fn run_traced<T>(main: impl FnOnce(&Env) -> Result<T>) -> (Result<T>, Vec<String>) {
    Config::new().run_traced(main)
}

struct ThreadUnpark(Thread);

impl Unpark for ThreadUnpark {
    fn unpark(&self) {
        // std's thread parker on Linux is an atomic swap plus a futex wake:
        // no locks, no allocation, so it is safe from a signal handler.
        self.0.unpark();
    }
}

struct MockDriver {
    /// Virtual monotonic time, in nanoseconds.
    now: u64,
    sink: TraceSink,
    unparker: Arc<ThreadUnpark>,
    external_wait: Option<Duration>,
}

impl MockDriver {
    fn emit(&mut self, line: &str) {
        match &self.sink {
            TraceSink::Print => println!("+{line}"),
            TraceSink::Capture(v) => v
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.to_string()),
        }
    }

    /// Blocks for a real wake-up from another thread, for at most `d`.
    fn wait_external(&self, d: Option<Duration>) {
        match d {
            Some(d) => std::thread::park_timeout(d),
            None => std::thread::park(),
        }
    }
}

impl Driver for MockDriver {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn now(&self) -> u64 {
        self.now
    }

    fn wall_clock(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.now)
    }

    fn park(&mut self, park: Park, external: bool) -> Parked {
        match park {
            Park::Poll => Parked::Ok,
            Park::Until(deadline) => {
                if external {
                    // Another thread may still wake us before the deadline;
                    // it is real work, so let it happen before time jumps.
                    self.wait_external(Some(Duration::from_millis(1)));
                }
                if deadline > self.now {
                    self.now = deadline;
                    let secs = deadline as f64 / 1e9;
                    self.emit(&format!("mock time is now {secs}"));
                }
                Parked::Ok
            }
            Park::Forever => {
                if external {
                    self.wait_external(None);
                    Parked::Ok
                } else if let Some(d) = self.external_wait {
                    let start = std::time::Instant::now();
                    self.wait_external(Some(d));
                    if start.elapsed() >= d {
                        Parked::Stuck
                    } else {
                        Parked::Ok
                    }
                } else {
                    Parked::Stuck
                }
            }
        }
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        self.unparker.clone()
    }

    fn trace(&mut self, line: &str) -> bool {
        self.emit(line);
        true
    }
}
