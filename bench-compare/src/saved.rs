//! The last run's figures, saved as tab-separated lines in
//! `target/last-run.tsv`, so that `--redraw` can print the table and
//! rewrite the doc and chart again without measuring (after a change to the
//! report or chart code, say).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::doc::RunInfo;
use crate::report::{Imp, Measure, Work};

/// Where the last run is saved.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("last-run.tsv")
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// Writes `info` and `all` to `path`.
pub fn save(path: &Path, info: &RunInfo, all: &[Measure]) -> std::io::Result<()> {
    let mut s = String::new();
    for (k, v) in &info.machine {
        let _ = writeln!(s, "machine\t{}\t{}", clean(k), clean(v));
    }
    for a in &info.args {
        let _ = writeln!(s, "arg\t{}", clean(a));
    }
    let _ = writeln!(s, "run\telapsed_s\t{}", info.elapsed_s);
    let _ = writeln!(s, "run\trounds\t{}", info.rounds);
    let _ = writeln!(s, "run\tload_secs\t{}", info.load_secs);
    let _ = writeln!(s, "run\treps\t{}", info.reps);
    let _ = writeln!(s, "run\tquick\t{}", info.quick);
    let _ = writeln!(s, "run\tparked\t{}", info.parked);
    for m in all {
        let v = m.value.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            s,
            "result\t{}\t{}\t{v}\t{}",
            m.work.key(),
            m.imp.key(),
            clean(&m.note)
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, s)
}

/// Reads what [`save`] wrote.
pub fn load(path: &Path) -> Result<(RunInfo, Vec<Measure>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut info = RunInfo::default();
    let mut all = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = || format!("{}:{}: cannot read {line:?}", path.display(), n + 1);
        match f.as_slice() {
            ["machine", k, v] => info.machine.push((k.to_string(), v.to_string())),
            ["arg", a] => info.args.push(a.to_string()),
            ["run", k, v] => match *k {
                "elapsed_s" => info.elapsed_s = v.parse().map_err(|_| bad())?,
                "rounds" => info.rounds = v.parse().map_err(|_| bad())?,
                "load_secs" => info.load_secs = v.parse().map_err(|_| bad())?,
                "reps" => info.reps = v.parse().map_err(|_| bad())?,
                "quick" => info.quick = v.parse().map_err(|_| bad())?,
                "parked" => info.parked = v.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            },
            ["result", w, i, v, note] => all.push(Measure {
                work: Work::from_key(w).ok_or_else(bad)?,
                imp: Imp::from_key(i).ok_or_else(bad)?,
                value: if *v == "-" {
                    None
                } else {
                    Some(v.parse().map_err(|_| bad())?)
                },
                note: note.to_string(),
            }),
            _ => return Err(bad()),
        }
    }
    Ok((info, all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_run_loads_back_the_same() {
        let info = RunInfo {
            machine: vec![("CPU".into(), "Some CPU, 2 CPUs".into())],
            args: vec!["--write-doc".into()],
            elapsed_s: 141.5,
            rounds: 3,
            load_secs: 2.0,
            reps: 3,
            quick: false,
            parked: 1_000_000,
        };
        let all = vec![
            Measure {
                work: Work::Echo,
                imp: Imp::WeftUring,
                value: Some(80942.5),
                note: "a\tnote\nwith breaks".into(),
            },
            Measure {
                work: Work::ParkedTime,
                imp: Imp::May,
                value: None,
                note: String::new(),
            },
        ];
        let p =
            std::env::temp_dir().join(format!("bench-compare-saved-{}.tsv", std::process::id()));
        save(&p, &info, &all).unwrap();
        let (info2, all2) = load(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(info2, info);
        assert_eq!(all2.len(), 2);
        assert_eq!(all2[0].value, Some(80942.5));
        assert_eq!(all2[0].note, "a note with breaks");
        assert_eq!(
            (all2[1].work, all2[1].imp, all2[1].value),
            (Work::ParkedTime, Imp::May, None)
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_the_line() {
        let p = std::env::temp_dir().join(format!("bench-compare-bad-{}.tsv", std::process::id()));
        std::fs::write(&p, "run\trounds\t3\nresult\tnope\tmay\t1\t\n").unwrap();
        let e = load(&p).err().unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(e.contains(":2: cannot read"), "{e}");
    }
}
