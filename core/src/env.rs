//! The environment handed to `main`: every capability to reach the outside
//! world.
//!
//! weft has no ambient authority: a function can only use the clock, the
//! network or the filesystem if it is given the capability. The `Env` holds
//! them all; pass on only what each part of the program needs.

use crate::time::{Clock, MonoClock};

/// The capabilities of a running program.
#[derive(Clone, Debug)]
pub struct Env {
    clock: Clock,
    mono_clock: MonoClock,
    backend_id: &'static str,
}

impl Env {
    /// Builds an environment. Backends call this when they start `main`.
    #[doc(hidden)]
    pub fn for_backend(backend_id: &'static str) -> Env {
        Env {
            clock: Clock::new(),
            mono_clock: MonoClock::new(),
            backend_id,
        }
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
