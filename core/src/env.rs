//! The environment handed to `main`: every capability to reach the outside
//! world.
//!
//! weft has no ambient authority: a function can only use the clock, the
//! network or the filesystem if it is given the capability. The `Env` holds
//! them all; pass on only what each part of the program needs.

use std::sync::Arc;

use crate::domain::{DomainBackend, DomainMain, DomainMgr};
use crate::error::{Error, ErrorKind, Result};
use crate::fs::Dir;
use crate::net::{Addr, DatagramImpl, ListenOptions, ListenerImpl, Net, NetBackend, StreamImpl};
use crate::process::{NoProcess, ProcessMgr};
use crate::random::{RandomBackend, SecureRandom};
use crate::stdio::{StdOutput, Stdin};
use crate::time::{Clock, MonoClock};

/// The capabilities of a running program.
///
/// `main` receives it from `weft::run`; pass on to each part of the program
/// only the capabilities it needs.
///
/// ```
/// use std::time::Duration;
/// use weft::flow::{self, Sink};
///
/// /// Needs a clock and somewhere to write; cannot touch files or the network.
/// fn countdown(clock: weft::time::MonoClock, out: &impl Sink) -> weft::Result<()> {
///     for n in (1..=3).rev() {
///         flow::copy_string(&format!("{n}...\n"), out)?;
///         clock.sleep(Duration::from_millis(1))?;
///     }
///     flow::copy_string("liftoff\n", out)
/// }
///
/// weft::run(|env| countdown(env.mono_clock(), &env.stdout())).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Env {
    clock: Clock,
    mono_clock: MonoClock,
    net: Net,
    fs: Dir,
    cwd: Dir,
    process_mgr: ProcessMgr,
    domain_mgr: DomainMgr,
    random: SecureRandom,
    stdin: Stdin,
    backend_id: &'static str,
}

impl Env {
    /// Builds an environment. Backends call this when they start `main`.
    #[doc(hidden)]
    pub fn for_backend(backend_id: &'static str) -> Env {
        Env {
            clock: Clock::new(),
            mono_clock: MonoClock::new(),
            net: Net::new(Arc::new(NoNet(backend_id))),
            fs: no_fs("fs", backend_id),
            cwd: no_fs("cwd", backend_id),
            process_mgr: ProcessMgr::new(Arc::new(NoProcess(backend_id))),
            domain_mgr: DomainMgr::new(Arc::new(NoDomains(backend_id))),
            random: SecureRandom::new(Arc::new(NoRandom(backend_id))),
            stdin: Stdin::new(),
            backend_id,
        }
    }

    /// Sets the network capability. Backends call this when they start `main`.
    #[doc(hidden)]
    pub fn with_net(mut self, net: Net) -> Env {
        self.net = net;
        self
    }

    /// The network.
    pub fn net(&self) -> Net {
        self.net.clone()
    }

    /// Sets the filesystem capabilities: `fs` (the whole filesystem) and
    /// `cwd` (confined to the working directory). Backends call this when
    /// they start `main`.
    #[doc(hidden)]
    pub fn with_fs(mut self, fs: Dir, cwd: Dir) -> Env {
        self.fs = fs;
        self.cwd = cwd;
        self
    }

    /// The whole filesystem: absolute paths are allowed, relative ones
    /// start at the process's working directory. See [`crate::fs`].
    pub fn fs(&self) -> Dir {
        self.fs.clone()
    }

    /// The working directory the program started in, confined: paths
    /// cannot reach above it with `..`, absolute paths or symlinks. See
    /// [`crate::fs`].
    pub fn cwd(&self) -> Dir {
        self.cwd.clone()
    }

    /// Sets the process manager. Backends call this when they start `main`.
    #[doc(hidden)]
    pub fn with_process_mgr(mut self, pm: ProcessMgr) -> Env {
        self.process_mgr = pm;
        self
    }

    /// The process manager: starts child processes.
    pub fn process_mgr(&self) -> ProcessMgr {
        self.process_mgr.clone()
    }

    /// Sets the domain manager. Backends call this when they start `main`.
    #[doc(hidden)]
    pub fn with_domain_mgr(mut self, dm: DomainMgr) -> Env {
        self.domain_mgr = dm;
        self
    }

    /// The domain manager: runs work on other OS threads.
    pub fn domain_mgr(&self) -> DomainMgr {
        self.domain_mgr.clone()
    }

    /// Sets the random source. Backends call this when they start `main`.
    #[doc(hidden)]
    pub fn with_secure_random(mut self, random: SecureRandom) -> Env {
        self.random = random;
        self
    }

    /// Random bytes: the OS's secure generator (seeded and deterministic
    /// under the mock backend).
    pub fn secure_random(&self) -> SecureRandom {
        self.random.clone()
    }

    /// Standard input.
    pub fn stdin(&self) -> Stdin {
        self.stdin.clone()
    }

    /// Standard output.
    pub fn stdout(&self) -> StdOutput {
        StdOutput::stdout()
    }

    /// Standard error.
    pub fn stderr(&self) -> StdOutput {
        StdOutput::stderr()
    }

    /// The wall clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The monotonic clock.
    pub fn mono_clock(&self) -> MonoClock {
        self.mono_clock
    }

    /// Which backend runs this program: `"mock"`, `"posix"` or `"uring"`.
    pub fn backend_id(&self) -> &'static str {
        self.backend_id
    }
}

/// The filesystem of a backend that has none (yet): every call says so.
fn no_fs(label: &str, backend_id: &str) -> Dir {
    let why = format!("the {backend_id} backend provides no filesystem");
    Dir::unavailable(label, why)
}

/// The network of a backend that has none (yet): every call says so.
struct NoNet(&'static str);

impl NoNet {
    fn err(&self) -> Error {
        Error::msg(
            ErrorKind::InvalidInput,
            format!("the {} backend provides no network", self.0),
        )
    }
}

impl NetBackend for NoNet {
    fn listen(&self, _: &Addr, _: &ListenOptions) -> Result<Box<dyn ListenerImpl>> {
        Err(self.err())
    }
    fn connect(&self, _: &Addr) -> Result<Box<dyn StreamImpl>> {
        Err(self.err())
    }
    fn getaddrinfo(&self, _: &str, _: &str) -> Result<Vec<Addr>> {
        Err(self.err())
    }
    fn bind_datagram(&self, _: &Addr) -> Result<Box<dyn DatagramImpl>> {
        Err(self.err())
    }
    fn socketpair(&self) -> Result<(Box<dyn StreamImpl>, Box<dyn StreamImpl>)> {
        Err(self.err())
    }
}

/// The domain manager of a backend that cannot start domains.
struct NoDomains(&'static str);

impl DomainBackend for NoDomains {
    fn spawn(&self, _main: DomainMain) -> Result<()> {
        Err(Error::msg(
            ErrorKind::InvalidInput,
            format!("the {} backend cannot start domains", self.0),
        ))
    }
}

/// The random source of a backend that has none.
struct NoRandom(&'static str);

impl RandomBackend for NoRandom {
    fn fill(&self, _buf: &mut [u8]) -> Result<()> {
        Err(Error::msg(
            ErrorKind::InvalidInput,
            format!("the {} backend provides no random source", self.0),
        ))
    }
}
