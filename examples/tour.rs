//! A tour of weft in one program: fibers, a TCP server with clients, files
//! in a confined directory, a subprocess, a timeout, and errors that say
//! what went wrong. Runs with no setup and prints what happens.
//!
//! ```text
//! cargo run --release --example tour
//! WEFT_BACKEND=posix cargo run --release --example tour
//! ```

use std::cell::Cell;
use std::time::Duration;

use weft::buf_read::BufReader;
use weft::fs::{Create, Dir};
use weft::net::{self, Addr, Net, ServerOptions};
use weft::prelude::*; // flow traits, Env, Switch, Result, Error, ErrorKind...
use weft::process::{Command, ProcessMgr};
use weft::time::{with_timeout, MonoClock};
use weft::{fiber, flow, FsError};

fn main() -> Result<()> {
    // `weft::run` starts a scheduler on this thread and runs `main` as its
    // first fiber. Everything that reaches the outside world comes from the
    // `Env` it is given; the functions below get only what they need.
    weft::run(|env| {
        println!("weft tour, on the {} backend", env.backend_id());
        let clock = env.mono_clock();
        let t0 = clock.now()?;
        fibers(clock)?;
        tcp(&env.net())?;
        files(env)?;
        subprocess(&env.process_mgr())?;
        timeout(clock, &env.process_mgr())?;
        errors(&env.net())?;
        println!("\ndone in {:?}", clock.now()?.duration_since(t0));
        Ok(())
    })
}

/// Fibers are plain functions. They run one at a time on this thread and
/// switch only where they would wait.
fn fibers(clock: MonoClock) -> Result<()> {
    println!("\n1. fibers");
    fiber::both(
        || {
            for i in 1..=3 {
                println!("   tortoise: step {i}");
                clock.sleep(Duration::from_millis(30))?;
            }
            Ok(())
        },
        || {
            for i in 1..=3 {
                println!("   hare: step {i}");
                clock.sleep(Duration::from_millis(20))?;
            }
            Ok(())
        },
    )?;

    // A switch bounds the lifetime of the fibers forked in it, so they may
    // borrow from the enclosing scope (here `words` and `letters`).
    let words = ["structured", "concurrency", "borrows", "safely"];
    let letters = Cell::new(0);
    Switch::run(|sw| {
        for w in &words {
            sw.fork(|| {
                fiber::yield_now()?;
                letters.set(letters.get() + w.len());
                Ok(())
            });
        }
        Ok(())
    })?;
    println!(
        "   {} fibers counted {} letters",
        words.len(),
        letters.get()
    );
    Ok(())
}

/// A server that upper-cases lines, and three clients talking to it at
/// once. Sockets are `std::io::Read + Write` and weft flows.
fn tcp(netw: &Net) -> Result<()> {
    println!("\n2. a TCP server and three clients");
    let listener = netw.listen(&"127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    println!("   listening on {addr}");
    let shout = |conn: net::Stream, _peer: Addr| -> Result<()> {
        // A buffered reader with a limit: a client cannot make the server
        // buffer an endless line.
        let mut reader = BufReader::new(&conn, 1024);
        while !reader.at_end_of_input()? {
            let line = reader.line()?;
            conn.write_all(format!("{}\n", line.to_uppercase()).as_bytes())?;
        }
        Ok(())
    };
    Switch::run(|sw| {
        // The server runs until the switch ends (a daemon fiber), serving
        // each connection in a fiber of its own.
        sw.fork_daemon(|| net::run_server(&listener, ServerOptions::default(), shout));
        let names = ["ada", "grace", "barbara"];
        let replies = fiber::map(names.len(), names, |name| {
            let conn = netw.connect(&addr)?;
            conn.write_all(format!("hello from {name}\n").as_bytes())?;
            conn.shutdown(ShutdownKind::Write)?;
            conn.read_all()
        })?;
        for reply in replies {
            print!("   server replied: {reply}");
        }
        Ok(())
    })
}

/// Files, in a scratch directory that is also a sandbox.
fn files(env: &Env) -> Result<()> {
    println!("\n3. files in a confined directory");
    let tmp = std::env::temp_dir();
    let scratch = env.fs()
        / tmp.to_str().expect("UTF-8 temp dir")
        / format!("weft-tour-{}", std::process::id());
    scratch.mkdirs(0o700)?;
    // `open_dir` gives a capability for that directory alone.
    let result = scratch.open_dir().and_then(|dir| use_files(&dir));
    scratch.rmtree()?;
    result
}

fn use_files(dir: &Dir) -> Result<()> {
    let log = dir / "log.txt";
    log.save("started\n", Create::Exclusive(0o600))?;
    // Write through a `File` too: it is a flow and `std::io::Write`.
    let f = log.open_out(weft::fs::OpenOut::append(Create::Never))?;
    f.write_all(b"wrote a line\nwrote another\n")?;
    f.close()?;
    let mut n = 0;
    log.with_lines(|lines| {
        for line in lines {
            n += 1;
            println!("   {log} line {n}: {}", line?);
        }
        Ok(())
    })?;
    println!("   {} contains {:?}", dir.path(), dir.path().read_dir()?);
    // The sandbox holds: `..`, absolute paths and outward symlinks fail.
    let err = (dir / "../elsewhere.txt")
        .save("x", Create::IfMissing(0o600))
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Fs(FsError::PermissionDenied));
    println!("   refused: {err}");
    Ok(())
}

/// A child process, its input from a string and its output into a buffer,
/// while this fiber waits (others keep running).
fn subprocess(pm: &ProcessMgr) -> Result<()> {
    println!("\n4. a subprocess");
    let sorted = flow::buffer_sink();
    let sort = Command::new("sort")
        .stdin_from(flow::string_source("pear\napple\nfig\n"))
        .stdout_to(&sorted);
    pm.run_with(sort)?;
    println!("   sort printed {:?}", sorted.contents_string());
    let kernel = pm.parse_out(Command::new("uname").arg("-sr"), 1024, |r| r.line())?;
    println!("   uname -sr: {kernel}");
    Ok(())
}

/// A timeout cancels what it wraps. A child process owned by the cancelled
/// code is killed as the code unwinds; nothing is left running.
fn timeout(clock: MonoClock, pm: &ProcessMgr) -> Result<()> {
    println!("\n5. a timeout");
    let t = clock.now()?;
    let r = with_timeout(clock, Duration::from_millis(100), || {
        let child = pm.spawn(&Command::new("sleep").arg("30"))?;
        println!("   started `sleep 30` as pid {}", child.pid());
        child.wait()
    });
    let err = r.unwrap_err();
    assert!(err.is_timeout());
    println!(
        "   {err} (after {:?}); the child was killed",
        clock.now()?.duration_since(t)
    );
    Ok(())
}

/// Errors carry a kind you can match on and the context they passed
/// through.
fn errors(netw: &Net) -> Result<()> {
    println!("\n6. errors");
    // A port that was free a moment ago: nobody listens there now.
    let addr = netw.listen(&"127.0.0.1:0".parse()?)?.local_addr()?;
    let err = netw.connect(&addr).unwrap_err();
    println!("   {err}");
    println!("   kind: {:?}", err.kind());
    // `{:?}` is the report `fn main() -> weft::Result<()>` prints when it
    // fails: the outermost context, then its causes.
    let err = err.context("checking that nobody listens");
    println!("   as main would report it:");
    for line in format!("Error: {err:?}").lines() {
        println!("   | {line}");
    }
    Ok(())
}
