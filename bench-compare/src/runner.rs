//! Child processes: each measurement runs in a fresh process of this binary,
//! reporting `RESULT name value` and `NOTE text` lines on stdout.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a finished child reported.
#[derive(Debug, Default)]
pub struct ChildReport {
    /// `RESULT name value` lines.
    pub values: HashMap<String, f64>,
    /// `NOTE text` lines, in order.
    pub notes: Vec<String>,
    /// Why the child did not finish cleanly (exit status, signal, timeout,
    /// last lines of stderr), if it did not.
    pub failure: Option<String>,
}

impl ChildReport {
    /// The value `name`, if reported.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// The value `name` and the notes, or why there is none.
    pub fn result(&self, name: &str) -> Result<(f64, String), String> {
        match (self.get(name), &self.failure) {
            (Some(v), None) => Ok((v, self.notes.join("; "))),
            (_, Some(f)) => Err(f.clone()),
            (None, None) => Err(format!("the child reported no {name}")),
        }
    }
}

/// Prints a result line for the parent (children use this).
pub fn emit(name: &str, value: f64) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "RESULT {name} {value}");
    let _ = out.flush();
}

/// Prints a note for the parent (children use this).
pub fn note(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "NOTE {text}");
    let _ = out.flush();
}

fn child_command(args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("path of the running harness");
    let mut c = Command::new(exe);
    c.arg("--child").args(args).env("RUST_BACKTRACE", "0");
    c
}

/// Runs a child measurement to the end, killing it after `timeout`, or
/// after `idle` without a line on its stdout (a hung child).
pub fn run_child(args: &[&str], timeout: Duration, idle: Option<Duration>) -> ChildReport {
    let mut cmd = child_command(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return ChildReport {
                failure: Some(format!("could not start the child: {e}")),
                ..ChildReport::default()
            }
        }
    };
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped stdout");
    let out_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take().expect("piped stderr");
    let err_thread = std::thread::spawn(move || {
        let mut tail: Vec<String> = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            tail.push(line);
            if tail.len() > 6 {
                tail.remove(0);
            }
        }
        tail
    });
    let deadline = Instant::now() + timeout;
    let mut last_line = Instant::now();
    let mut lines = Vec::new();
    let mut timed_out = None;
    let status = loop {
        let before = lines.len();
        lines.extend(rx.try_iter());
        if lines.len() > before {
            last_line = Instant::now();
        }
        let stalled = idle.is_some_and(|d| last_line.elapsed() >= d);
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline || stalled => {
                timed_out = Some(if stalled {
                    format!(
                        "no progress for {:.0} s",
                        idle.unwrap_or_default().as_secs_f64()
                    )
                } else {
                    format!("timed out after {:.0} s", timeout.as_secs_f64())
                });
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let _ = out_thread.join();
    lines.extend(rx.try_iter());
    let tail = err_thread.join().unwrap_or_default();
    let mut report = ChildReport::default();
    for line in lines {
        if let Some(rest) = line.strip_prefix("RESULT ") {
            let mut it = rest.splitn(2, ' ');
            if let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Ok(v) = v.trim().parse::<f64>() {
                    report.values.insert(k.to_owned(), v);
                }
            }
        } else if let Some(rest) = line.strip_prefix("NOTE ") {
            report.notes.push(rest.to_owned());
        }
    }
    let stderr_tail = tail.join(" | ");
    report.failure = if let Some(why) = timed_out {
        Some(if stderr_tail.is_empty() {
            why
        } else {
            format!("{why}: {stderr_tail}")
        })
    } else {
        match status {
            Some(s) if s.success() => None,
            Some(s) => Some(describe_status(s, &stderr_tail)),
            None => Some("could not wait for the child".into()),
        }
    };
    report
}

fn describe_status(s: std::process::ExitStatus, stderr_tail: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "failed".into(),
    };
    if stderr_tail.is_empty() {
        how
    } else {
        format!("{how}: {stderr_tail}")
    }
}

/// A server running in a child process; killed when dropped.
pub struct Server {
    child: Child,
    /// The TCP port it listens on, on 127.0.0.1.
    pub port: u16,
}

impl Server {
    /// Starts `--child serve KIND IMPL` and waits (up to 10 s) for its
    /// `LISTENING port` line.
    pub fn start(kind: &str, imp: &str) -> Result<Server, String> {
        let mut cmd = child_command(&["serve", kind, imp]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting the server: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            // Drain the rest so the server never blocks on a full pipe.
            for _ in lines.map_while(Result::ok) {}
        });
        let line = rx.recv_timeout(Duration::from_secs(10));
        let port = match line {
            Ok(Some(l)) => l
                .strip_prefix("LISTENING ")
                .and_then(|p| p.trim().parse().ok()),
            _ => None,
        };
        match port {
            Some(port) => Ok(Server { child, port }),
            None => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(format!(
                    "the server did not report a port (status {})",
                    status.map_or("unknown".into(), |s| s.to_string())
                ))
            }
        }
    }

    /// CPU time (user + system) the server process has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let utime: u64 = f.get(11)?.parse().ok()?;
        let stime: u64 = f.get(12)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some(Duration::from_secs_f64((utime + stime) as f64 / hz))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The median of sorted `v` (the mean of the middle two for an even count).
fn median(v: &[f64]) -> Option<f64> {
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Entry point of a child: `--child WHAT ARGS...`. Returns the exit code.
pub fn child_main(args: &[String]) -> i32 {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = match a.as_slice() {
        ["micro", work, imp, n, reps] => micro::child(work, imp, parse(n), parse(reps)),
        ["serve", "echo", imp] => crate::echo::serve(imp),
        ["serve", "http", imp] => crate::http::serve(imp),
        ["files", imp, path, secs, readers] => {
            crate::files::child(imp, path, parse_f(secs), parse(readers))
        }
        ["parked", imp, n] => crate::parked::child(imp, parse(n)),
        _ => Err(format!("bad child arguments {a:?}")),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

use crate::micro;
use crate::report::{Imp, Measure, Work};

/// Measures `work` on each of `imps` once per round, runtimes interleaved
/// within a round, and keeps the median round of each (with the range in
/// the note). `one` returns a figure and a note, or why it failed.
pub fn interleaved(
    work: Work,
    imps: &[Imp],
    rounds: usize,
    mut one: impl FnMut(Imp) -> Result<(f64, String), String>,
) -> Vec<Measure> {
    interleaved_with(work, None, imps, rounds, |imp| {
        one(imp).map(|(v, note)| (v, None, note))
    })
}

/// Like [`interleaved`], where each run may also give a figure of a second
/// workload `also` (the server's CPU time per operation), reported as its
/// own row, median over rounds too.
pub fn interleaved_with(
    work: Work,
    also: Option<Work>,
    imps: &[Imp],
    rounds: usize,
    mut one: impl FnMut(Imp) -> Result<(f64, Option<f64>, String), String>,
) -> Vec<Measure> {
    let rounds = rounds.max(1);
    let mut got: Vec<Vec<f64>> = vec![Vec::new(); imps.len()];
    let mut extra: Vec<Vec<f64>> = vec![Vec::new(); imps.len()];
    let mut notes = vec![String::new(); imps.len()];
    let mut errors: Vec<Option<String>> = vec![None; imps.len()];
    for round in 1..=rounds {
        for (i, &imp) in imps.iter().enumerate() {
            let r = one(imp);
            if rounds > 1 {
                Measure {
                    work,
                    imp,
                    value: r.as_ref().ok().map(|(v, _, _)| *v),
                    note: r.as_ref().err().cloned().unwrap_or_default(),
                }
                .print_line_round(round, rounds);
            }
            match r {
                Ok((v, x, n)) => {
                    got[i].push(v);
                    extra[i].extend(x);
                    notes[i] = n;
                }
                Err(e) => errors[i] = Some(e),
            }
        }
    }
    let summarise = |work: Work, v: &mut Vec<f64>, last_note: &str, error: &Option<String>| {
        v.sort_by(f64::total_cmp);
        let mut note = Vec::new();
        if v.len() > 1 {
            note.push(format!(
                "median of {} rounds, range {}-{}",
                v.len(),
                crate::report::fmt_value(v[0], work),
                crate::report::fmt_value(v[v.len() - 1], work)
            ));
        }
        if !last_note.is_empty() {
            note.push(last_note.to_owned());
        }
        match error {
            Some(e) if v.is_empty() => note.push(e.clone()),
            Some(e) => note.push(format!("failed in a round: {e}")),
            None => {}
        }
        (median(v), note.join("; "))
    };
    let mut out = Vec::new();
    for (i, &imp) in imps.iter().enumerate() {
        let (value, note) = summarise(work, &mut got[i], &notes[i], &errors[i]);
        let m = Measure {
            work,
            imp,
            value,
            note,
        };
        m.print_line();
        out.push(m);
    }
    if let Some(also) = also {
        for (i, &imp) in imps.iter().enumerate() {
            let (value, note) = summarise(also, &mut extra[i], "", &errors[i]);
            let m = Measure {
                work: also,
                imp,
                value,
                note,
            };
            m.print_line();
            out.push(m);
        }
    }
    out
}

fn parse(s: &str) -> usize {
    s.parse().unwrap_or(0)
}

fn parse_f(s: &str) -> f64 {
    s.parse().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, 2.0, 9.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), Some(3.0));
    }

    #[test]
    fn interleaved_keeps_the_median_round_and_reports_failures() {
        let mut calls = Vec::new();
        let mut round = 0.0;
        let out = interleaved(Work::Echo, &[Imp::WeftUring, Imp::TokioCt], 3, |imp| {
            calls.push(imp);
            if imp == Imp::TokioCt {
                round += 1.0;
                if round == 2.0 {
                    return Err("boom".into());
                }
                return Ok((round * 10.0, String::new()));
            }
            Ok((5.0, "note".into()))
        });
        // A runtime that failed every round says why, once.
        let none = interleaved(Work::Echo, &[Imp::May], 2, |_| Err("no stack".into()));
        assert_eq!((none[0].value, none[0].note.as_str()), (None, "no stack"));
        // Runtimes alternate within each round.
        assert_eq!(calls, [Imp::WeftUring, Imp::TokioCt].repeat(3));
        assert_eq!(out[0].value, Some(5.0));
        assert!(
            out[0].note.contains("median of 3 rounds"),
            "{}",
            out[0].note
        );
        // Rounds 1 and 3 succeeded (10 and 30): their median is 20.
        assert_eq!(out[1].value, Some(20.0));
        assert!(
            out[1].note.contains("failed in a round: boom"),
            "{}",
            out[1].note
        );
    }
}
