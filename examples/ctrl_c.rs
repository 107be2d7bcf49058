//! Handling Ctrl-C: a signal handler broadcasts a `Condition`, and a fiber
//! waiting on it cancels the work.
//!
//! `Condition::broadcast` is async-signal-safe (no locks that could block,
//! no allocation), so the handler may call it directly. Nothing else
//! happens in the handler: the fibers do the rest in ordinary code.
//!
//! By default the program interrupts itself after a few steps (it sends
//! itself SIGINT, as a terminal would), so it finishes unattended; with
//! `--wait` it works until you press Ctrl-C:
//!
//! ```text
//! cargo run --example ctrl_c
//! cargo run --example ctrl_c -- --wait
//! ```

use std::time::Duration;

use weft::sync::Condition;
use weft::{fiber, Error, Result};

/// The work: 100 steps of 100 ms.
const STEPS: u32 = 100;

/// Broadcast by the SIGINT handler. A `static`, since a signal handler
/// cannot be handed arguments.
static INTERRUPTED: Condition = Condition::new();

extern "C" fn on_sigint(_signal: libc::c_int) {
    INTERRUPTED.broadcast();
}

/// Installs `on_sigint` for SIGINT.
fn install_handler() -> Result<()> {
    // SAFETY: `sigaction` is plain data; all-zero is a valid value (empty
    // mask, no flags) before we fill in the fields we use.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action` is initialised and names a handler that only calls
    // an async-signal-safe function; a null old-action pointer is allowed.
    let rc = unsafe { libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(
            Error::from(std::io::Error::last_os_error()).context("installing a SIGINT handler")
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let wait_for_user = std::env::args().any(|a| a == "--wait");
    // Read the broadcast count before the handler can run: `wait_since`
    // then sees any Ctrl-C from here on, even one that comes before the
    // waiting fiber has started.
    let seen = INTERRUPTED.sequence();
    install_handler()?;

    weft::run(|env| {
        let clock = env.mono_clock();
        // Whichever finishes first wins; the other is cancelled.
        let outcome = fiber::first(
            || {
                INTERRUPTED.wait_since(seen)?;
                println!("got SIGINT");
                Ok("interrupted; exiting cleanly")
            },
            || {
                for step in 1..=STEPS {
                    // Cancellation arrives here, as an error from `sleep`.
                    if let Err(e) = clock.sleep(Duration::from_millis(100)) {
                        println!("work: cancelled during step {step}, cleaning up");
                        return Err(e);
                    }
                    println!("work: step {step} of {STEPS} done");
                    if !wait_for_user && step == 3 {
                        interrupt_myself()?;
                    }
                }
                Ok("all the work is done")
            },
        )?;
        println!("{outcome}");
        Ok(())
    })
}

/// Sends SIGINT to this process, as pressing Ctrl-C in a terminal does.
fn interrupt_myself() -> Result<()> {
    println!("sending SIGINT to ourselves");
    // SAFETY: kill(2) on our own pid with SIGINT, whose handler is
    // installed; no memory is involved.
    if unsafe { libc::kill(libc::getpid(), libc::SIGINT) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::from(e).context("sending SIGINT"));
    }
    Ok(())
}
