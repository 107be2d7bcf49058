//! The programs every mock world starts with, each behaving like its
//! coreutils namesake for the common cases:
//!
//! | program | does |
//! |---|---|
//! | `echo [-n] [-e] ARG...` | prints its arguments; `-n`: no newline; `-e`: `\n`, `\t`, `\\`, `\0NNN`, `\c` and friends |
//! | `cat [FILE or -]...` | copies the files (or stdin) to stdout |
//! | `true`, `false` | exit with 0, 1 |
//! | `exit [N]` | exits with `N` modulo 256 (a shell's `exit`, as a program) |
//! | `sleep N[smhd]...` | sleeps for the sum, on the run's virtual clock |
//! | `env [-i] [-u NAME] [NAME=VALUE]... [PROGRAM ARG...]` | prints the environment, or runs a program in a changed one |
//! | `pwd [-L or -P]` | prints the working directory (symlinks resolved) |
//! | `tr [-d] SET1 [SET2]` | translates or deletes bytes; sets take ranges (`a-z`) and `\n`, `\t`, `\\` |
//! | `sort` | sorts the lines of stdin (or of its files) bytewise |
//!
//! Errors are reported on stderr in the coreutils manner (`cat: x: No
//! such file or directory`) with exit code 1 (`env`: 127 for an unknown
//! program, `exit`: 2 for a non-numeric argument).

use std::collections::BTreeMap;
use std::time::Duration;

use weft_core::flow::Source;
use weft_core::process::ExitStatus;
use weft_core::{ErrorKind, FsError, Result};

use super::{Invocation, Programs};

const OK: Result<ExitStatus> = Ok(ExitStatus::Exited(0));
const FAILED: Result<ExitStatus> = Ok(ExitStatus::Exited(1));

/// Registers the built-in programs in `p`.
pub(crate) fn install(p: &Programs) {
    p.register("echo", echo);
    p.register("cat", cat);
    p.register("true", |_| OK);
    p.register("false", |_| FAILED);
    p.register("exit", exit);
    p.register("sleep", sleep);
    p.register("env", env);
    p.register("pwd", pwd);
    p.register("tr", tr);
    p.register("sort", sort);
}

/// What `strerror` says for the errors programs report.
fn describe(e: &weft_core::Error) -> String {
    match e.kind() {
        ErrorKind::Fs(FsError::NotFound) => "No such file or directory".into(),
        ErrorKind::Fs(FsError::IsADirectory) => "Is a directory".into(),
        ErrorKind::Fs(FsError::PermissionDenied) => "Permission denied".into(),
        ErrorKind::Fs(FsError::NotADirectory) => "Not a directory".into(),
        _ => e.to_string(),
    }
}

fn echo(p: &Invocation) -> Result<ExitStatus> {
    let mut args = p.args();
    let (mut newline, mut escapes) = (true, false);
    // Leading options, as coreutils reads them: only words made of the
    // letters n, e and E count; anything else is printed.
    while let Some(first) = args.first() {
        let Some(letters) = first.strip_prefix('-') else {
            break;
        };
        if letters.is_empty() || !letters.chars().all(|c| matches!(c, 'n' | 'e' | 'E')) {
            break;
        }
        for c in letters.chars() {
            match c {
                'n' => newline = false,
                'e' => escapes = true,
                _ => escapes = false,
            }
        }
        args = &args[1..];
    }
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if escapes {
            if unescape_echo(a, &mut out) {
                // `\c`: no more output, not even the newline.
                p.stdout().write_all(&out)?;
                return OK;
            }
        } else {
            out.extend_from_slice(a.as_bytes());
        }
    }
    if newline {
        out.push(b'\n');
    }
    p.stdout().write_all(&out)?;
    OK
}

/// Appends `s` with `echo -e`'s escapes decoded; true at `\c`.
fn unescape_echo(s: &str, out: &mut Vec<u8>) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        let c = b[i];
        i += 1;
        let byte = match c {
            b'\\' => b'\\',
            b'a' => 0x07,
            b'b' => 0x08,
            b'c' => return true,
            b'e' => 0x1b,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0' => {
                // Up to three octal digits after the 0.
                let mut v: u32 = 0;
                let mut n = 0;
                while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                    v = v * 8 + u32::from(b[i] - b'0');
                    i += 1;
                    n += 1;
                }
                (v & 0xff) as u8
            }
            other => {
                out.push(b'\\');
                other
            }
        };
        out.push(byte);
    }
    false
}

/// Opens each operand (`-` is stdin) and hands it to `f`; errors are
/// reported as `NAME: OPERAND: reason` and make the exit code 1.
fn each_input(p: &Invocation, mut f: impl FnMut(&dyn Source) -> Result<()>) -> Result<ExitStatus> {
    let files = p.args().iter().filter(|a| !a.starts_with('-') || *a == "-");
    let files: Vec<&String> = files.collect();
    if files.is_empty() {
        f(p.stdin())?;
        return OK;
    }
    let mut status = ExitStatus::Exited(0);
    for name in files {
        if name == "-" {
            f(p.stdin())?;
            continue;
        }
        match (p.dir() / name.as_str()).open_in() {
            Ok(file) => match f(&file) {
                Err(e) if matches!(e.kind(), ErrorKind::Fs(_)) => {
                    p.complain(&format!("{}: {name}: {}", p.program(), describe(&e)));
                    status = ExitStatus::Exited(1);
                }
                other => other?,
            },
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => {
                p.complain(&format!("{}: {name}: {}", p.program(), describe(&e)));
                status = ExitStatus::Exited(1);
            }
        }
    }
    Ok(status)
}

fn cat(p: &Invocation) -> Result<ExitStatus> {
    each_input(p, |src| p.stdout().copy_from(src).map(|_| ()))
}

fn exit(p: &Invocation) -> Result<ExitStatus> {
    let Some(arg) = p.args().first() else {
        return OK;
    };
    match arg.parse::<i64>() {
        Ok(n) => Ok(ExitStatus::Exited(n.rem_euclid(256) as i32)),
        Err(_) => {
            p.complain(&format!("exit: {arg}: numeric argument required"));
            Ok(ExitStatus::Exited(2))
        }
    }
}

/// `N`, `N.M`, with an optional unit suffix, as coreutils `sleep` takes.
fn parse_interval(s: &str) -> Option<Duration> {
    let (num, unit) = match s.char_indices().last()? {
        (i, c @ ('s' | 'm' | 'h' | 'd')) => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let scale = match unit {
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86400.0,
        _ => 1.0,
    };
    Duration::try_from_secs_f64(n * scale).ok()
}

fn sleep(p: &Invocation) -> Result<ExitStatus> {
    if p.args().is_empty() {
        p.complain("sleep: missing operand");
        return FAILED;
    }
    let mut total = Duration::ZERO;
    for a in p.args() {
        match parse_interval(a) {
            Some(d) => total = total.saturating_add(d),
            None => {
                p.complain(&format!("sleep: invalid time interval '{a}'"));
                return FAILED;
            }
        }
    }
    p.sleep(total)?;
    OK
}

fn env(p: &Invocation) -> Result<ExitStatus> {
    let mut vars: BTreeMap<String, String> = p.vars().clone();
    let mut args = p.args().iter();
    let mut rest: Vec<String> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-i" | "--ignore-environment" | "-" => vars.clear(),
            "-u" | "--unset" => match args.next() {
                Some(name) => {
                    vars.remove(name);
                }
                None => {
                    p.complain("env: option requires an argument -- 'u'");
                    return Ok(ExitStatus::Exited(125));
                }
            },
            _ if a.starts_with("--unset=") => {
                vars.remove(&a["--unset=".len()..]);
            }
            _ => match a.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    vars.insert(k.to_owned(), v.to_owned());
                }
                _ => {
                    rest.push(a.clone());
                    rest.extend(args.cloned());
                    break;
                }
            },
        }
    }
    if rest.is_empty() {
        let mut out = String::new();
        for (k, v) in &vars {
            out.push_str(&format!("{k}={v}\n"));
        }
        p.stdout().write_all(out.as_bytes())?;
        return OK;
    }
    match p.exec(&rest, vars) {
        Some(status) => status,
        None => {
            p.complain(&format!("env: '{}': No such file or directory", rest[0]));
            Ok(ExitStatus::Exited(127))
        }
    }
}

fn pwd(p: &Invocation) -> Result<ExitStatus> {
    p.stdout().write_all(format!("{}\n", p.cwd()).as_bytes())?;
    OK
}

/// Expands a `tr` set: ranges and backslash escapes.
fn tr_set(s: &str) -> Vec<u8> {
    let mut raw = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            raw.push(match b[i + 1] {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                other => other,
            });
            i += 2;
        } else {
            raw.push(b[i]);
            i += 1;
        }
    }
    let mut set = Vec::new();
    let mut j = 0;
    while j < raw.len() {
        if j + 2 < raw.len() && raw[j + 1] == b'-' && raw[j] <= raw[j + 2] {
            set.extend(raw[j]..=raw[j + 2]);
            j += 3;
        } else {
            set.push(raw[j]);
            j += 1;
        }
    }
    set
}

fn tr(p: &Invocation) -> Result<ExitStatus> {
    let (delete, sets) = match p.args() {
        [flag, rest @ ..] if flag == "-d" => (true, rest),
        all => (false, all),
    };
    let mut map: [Option<u8>; 256] = std::array::from_fn(|i| Some(i as u8));
    match (delete, sets) {
        (true, [set1]) => {
            for c in tr_set(set1) {
                map[usize::from(c)] = None;
            }
        }
        (false, [set1, set2]) => {
            let (from, to) = (tr_set(set1), tr_set(set2));
            let Some(&last) = to.last() else {
                p.complain("tr: when not truncating set1, string2 must be non-empty");
                return FAILED;
            };
            for (k, c) in from.iter().enumerate() {
                map[usize::from(*c)] = Some(*to.get(k).unwrap_or(&last));
            }
        }
        _ => {
            p.complain("tr: missing operand");
            return FAILED;
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = p.stdin().read(&mut buf)?;
        if n == 0 {
            return OK;
        }
        let out: Vec<u8> = buf[..n]
            .iter()
            .filter_map(|b| map[usize::from(*b)])
            .collect();
        p.stdout().write_all(&out)?;
    }
}

fn sort(p: &Invocation) -> Result<ExitStatus> {
    let mut all = Vec::new();
    let status = each_input(p, |src| src.read_to_end(&mut all).map(|_| ()))?;
    let mut lines: Vec<&[u8]> = all.split_inclusive(|&b| b == b'\n').collect();
    lines.sort_by(|a, b| {
        a.strip_suffix(b"\n")
            .unwrap_or(a)
            .cmp(b.strip_suffix(b"\n").unwrap_or(b))
    });
    let mut out = Vec::with_capacity(all.len() + 1);
    for l in lines {
        out.extend_from_slice(l);
        if !l.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    p.stdout().write_all(&out)?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_interval("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_interval("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_interval("1.5h"), Some(Duration::from_secs(5400)));
        for bad in ["", "x", "-1", "1x", "s", "inf", "nan"] {
            assert_eq!(parse_interval(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn echo_escapes() {
        let mut out = Vec::new();
        assert!(!unescape_echo(r"a\nb\tc\\d\0101\q", &mut out));
        assert_eq!(out, b"a\nb\tc\\dA\\q");
        let mut out = Vec::new();
        assert!(unescape_echo(r"stop\chere", &mut out));
        assert_eq!(out, b"stop");
        let mut out = Vec::new();
        unescape_echo(r"\0377", &mut out);
        assert_eq!(out, [0xff]);
    }

    #[test]
    fn tr_sets() {
        assert_eq!(tr_set("a-e"), b"abcde");
        assert_eq!(tr_set(r"x\n-"), b"x\n-");
        assert_eq!(tr_set("z-a"), b"z-a", "a reversed range is literal");
    }
}
