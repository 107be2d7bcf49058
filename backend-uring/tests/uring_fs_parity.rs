//! The io_uring filesystem behaves exactly as the POSIX one: one script of
//! operations — ordinary ones and ones that fail every way they can
//! (escapes, loops, trailing slashes, wrong kinds, NUL bytes, names taken)
//! — runs on a fresh copy of the same tree under each backend, and every
//! outcome (the value, or the error's kind and whole message with its
//! context) must be the same, line for line. Both confinement modes are
//! compared: `openat2` (`IORING_OP_OPENAT2`) and the shared walker.

use std::io::{Seek, SeekFrom};
use std::sync::atomic::{AtomicUsize, Ordering};

use weft_core::flow::{Sink, Source};
use weft_core::fs::{Create, Dir, OpenOut, Stat};
use weft_core::{Env, Result, RunConfig};

/// Tests here share the per-thread walker switches: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Clone, Copy, Debug, PartialEq)]
enum Which {
    Posix,
    Uring,
}

/// A fresh scratch tree (made with `std::fs`), removed on drop.
struct Tree(String);

impl Tree {
    fn new() -> Tree {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!("weft-parity-{}-{n}", std::process::id()));
        let base = base.to_str().unwrap().to_owned();
        let root = format!("{base}/root");
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(format!("{root}/dir/sub")).unwrap();
        std::fs::create_dir_all(format!("{base}/outside")).unwrap();
        std::fs::write(format!("{root}/file"), "contents").unwrap();
        std::fs::write(format!("{root}/dir/inner"), "inner").unwrap();
        std::fs::write(format!("{base}/outside/secret"), "secret").unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, format!("{root}/{name}")).unwrap()
        };
        link("file", "to-file");
        link("dir", "to-dir");
        link("dir/", "to-dir-slash");
        link("missing", "dangling");
        link("loop", "loop");
        link("../outside/secret", "out-rel");
        link(&format!("{base}/outside/secret"), "out-abs");
        link("dir/sub/../../file", "winding");
        link("/proc/self/root", "magic");
        Tree(base)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a `Stat` says that is the same for two copies of a tree.
fn stat_line(st: &Stat) -> String {
    format!(
        "{:?} size={} perm={:o} nlink={}",
        st.kind, st.size, st.perm, st.nlink
    )
}

/// One step of the script's second part.
type Step = Box<dyn Fn(&Dir) -> Result<String>>;

/// The script. Each line is one outcome.
fn script(env: &Env, base: &str) -> Result<Vec<String>> {
    let top = env.fs() / format!("{base}/root");
    let d = top.open_dir()?;
    let mut out = Vec::new();
    let mut note = |what: String, r: Result<String>| {
        let line = match r {
            Ok(v) => format!("{what}: ok {v}"),
            Err(e) => format!("{what}: {:?}: {e}", e.kind()),
        };
        out.push(line.replace(base, "<base>"));
    };
    let paths = [
        "",
        ".",
        "..",
        "file",
        "file/",
        "file/.",
        "dir",
        "dir/",
        "dir/..",
        "dir/../..",
        "dir/sub/../inner",
        "missing",
        "missing/x",
        "to-file",
        "to-file/",
        "to-dir",
        "to-dir/",
        "to-dir-slash",
        "to-dir/inner",
        "dangling",
        "dangling/",
        "loop",
        "loop/x",
        "out-rel",
        "out-abs",
        "winding",
        "magic",
        "magic/etc",
        "/etc/passwd",
        "a\u{0}b",
        "//file",
        "./dir/./sub/",
        "dir//inner//",
    ];
    let long = "x/".repeat(2100);
    let paths: Vec<&str> = paths.iter().copied().chain([long.as_str()]).collect();
    for dir in [&d, &env.fs()] {
        let prefix = if dir.label() == "fs" {
            format!("{base}/root/")
        } else {
            String::new()
        };
        for p in &paths {
            let p = if p.starts_with('/') || p.is_empty() && dir.label() == "fs" {
                p.to_string()
            } else {
                format!("{prefix}{p}")
            };
            let path = dir / p.as_str();
            note(format!("load {path}"), path.load_string());
            note(format!("stat {path}"), path.stat().map(|s| stat_line(&s)));
            note(format!("lstat {path}"), path.lstat().map(|s| stat_line(&s)));
            note(
                format!("read_dir {path}"),
                path.read_dir().map(|mut v| {
                    v.sort();
                    v.join(",")
                }),
            );
            note(format!("read_link {path}"), path.read_link());
            note(
                format!("open_dir {path}"),
                path.open_dir().map(|d| d.label().to_owned()),
            );
            note(
                format!("open_out never {path}"),
                path.open_out(OpenOut::new(Create::Never))
                    .and_then(|f| f.stat().map(|s| stat_line(&s))),
            );
        }
    }
    // Creating and removing, in order (each step sees the previous ones).
    let steps: Vec<(&str, Step)> = vec![
        (
            "save exclusive new",
            Box::new(|d| {
                (d / "new")
                    .save("1", Create::Exclusive(0o600))
                    .map(|()| String::new())
            }),
        ),
        (
            "save exclusive taken",
            Box::new(|d| {
                (d / "new")
                    .save("2", Create::Exclusive(0o600))
                    .map(|()| String::new())
            }),
        ),
        (
            "save exclusive dangling",
            Box::new(|d| {
                (d / "dangling")
                    .save("2", Create::Exclusive(0o600))
                    .map(|()| String::new())
            }),
        ),
        (
            "save if-missing dangling",
            Box::new(|d| {
                (d / "dangling")
                    .save("2", Create::IfMissing(0o600))
                    .map(|()| String::new())
            }),
        ),
        (
            "save trailing slash",
            Box::new(|d| {
                (d / "newdir/")
                    .save("x", Create::IfMissing(0o600))
                    .map(|()| String::new())
            }),
        ),
        (
            "save into a file",
            Box::new(|d| {
                (d / "file/x")
                    .save("x", Create::IfMissing(0o600))
                    .map(|()| String::new())
            }),
        ),
        (
            "save on a dir",
            Box::new(|d| {
                (d / "dir")
                    .save("x", Create::OrTruncate(0o600))
                    .map(|()| String::new())
            }),
        ),
        (
            "append",
            Box::new(|d| {
                (d / "new").save_with("+a", OpenOut::append(Create::Never))?;
                (d / "new").load_string()
            }),
        ),
        (
            "mkdir taken",
            Box::new(|d| (d / "dir").mkdir(0o700).map(|()| String::new())),
        ),
        (
            "mkdir via link",
            Box::new(|d| (d / "to-dir/made").mkdir(0o700).map(|()| String::new())),
        ),
        (
            "mkdir out",
            Box::new(|d| (d / "out-rel/x").mkdir(0o700).map(|()| String::new())),
        ),
        (
            "mkdir dangling",
            Box::new(|d| (d / "dangling").mkdir(0o700).map(|()| String::new())),
        ),
        (
            "mkdir dot",
            Box::new(|d| (d / "dir/.").mkdir(0o700).map(|()| String::new())),
        ),
        (
            "mkdirs",
            Box::new(|d| (d / "m/n/o").mkdirs(0o700).map(|()| String::new())),
        ),
        (
            "mkdirs through a file",
            Box::new(|d| (d / "file/n").mkdirs(0o700).map(|()| String::new())),
        ),
        (
            "rmdir non-empty",
            Box::new(|d| (d / "dir").rmdir().map(|()| String::new())),
        ),
        (
            "rmdir file",
            Box::new(|d| (d / "file").rmdir().map(|()| String::new())),
        ),
        (
            "rmdir link",
            Box::new(|d| (d / "to-dir").rmdir().map(|()| String::new())),
        ),
        (
            "unlink dir",
            Box::new(|d| (d / "m").unlink().map(|()| String::new())),
        ),
        (
            "unlink missing",
            Box::new(|d| (d / "nothing").unlink().map(|()| String::new())),
        ),
        (
            "unlink slash",
            Box::new(|d| (d / "new/").unlink().map(|()| String::new())),
        ),
        (
            "unlink link",
            Box::new(|d| (d / "to-file").unlink().map(|()| String::new())),
        ),
        (
            "symlink taken",
            Box::new(|d| (d / "file").symlink("x").map(|()| String::new())),
        ),
        (
            "symlink nul",
            Box::new(|d| (d / "l").symlink("a\0b").map(|()| String::new())),
        ),
        (
            "symlink",
            Box::new(|d| {
                (d / "l").symlink("dir/inner")?;
                (d / "l").load_string()
            }),
        ),
        (
            "rename onto dir",
            Box::new(|d| (d / "file").rename(&(d / "dir")).map(|()| String::new())),
        ),
        (
            "rename dir onto file",
            Box::new(|d| (d / "dir").rename(&(d / "file")).map(|()| String::new())),
        ),
        (
            "rename into itself",
            Box::new(|d| {
                (d / "dir")
                    .rename(&(d / "dir/sub/x"))
                    .map(|()| String::new())
            }),
        ),
        (
            "rename missing",
            Box::new(|d| (d / "nothing").rename(&(d / "x")).map(|()| String::new())),
        ),
        (
            "rename out",
            Box::new(|d| (d / "new").rename(&(d / "../x")).map(|()| String::new())),
        ),
        (
            "rename",
            Box::new(|d| {
                (d / "new").rename(&(d / "dir/sub/moved"))?;
                (d / "dir/sub/moved").load_string()
            }),
        ),
        (
            "rmtree dot",
            Box::new(|d| (d / "dir/..").rmtree().map(|()| String::new())),
        ),
        (
            "rmtree missing",
            Box::new(|d| (d / "nothing").rmtree().map(|()| String::new())),
        ),
        (
            "rmtree link",
            Box::new(|d| {
                (d / "to-dir").rmtree()?;
                Ok(format!("{:?}", (d / "dir/inner").load_string()?))
            }),
        ),
        (
            "rmtree",
            Box::new(|d| {
                (d / "dir").rmtree()?;
                let mut v = d.path().read_dir()?;
                v.sort();
                Ok(v.join(","))
            }),
        ),
        (
            "file io",
            Box::new(|d| {
                let f = (d / "io").open_out(OpenOut::new(Create::Exclusive(0o640)))?;
                f.write_all(b"0123456789")?;
                let mut lines = vec![format!(
                    "{:?}",
                    f.seek(SeekFrom::Current(-100)).map_err(|e| e.to_string())
                )];
                lines.push(format!("{:?}", f.seek(SeekFrom::End(-3))));
                lines.push(format!("{:?}", f.read_all()));
                f.set_len(4)?;
                lines.push(format!("{:?}", (&f).stream_position()));
                lines.push(format!(
                    "{:?}",
                    f.set_len(u64::MAX).map_err(|e| e.to_string())
                ));
                lines.push(stat_line(&f.stat()?));
                f.close()?;
                let ro = (d / "io").open_in()?;
                lines.push(format!("{:?}", ro.write(b"x").map_err(|e| e.to_string())));
                lines.push(format!("{:?}", ro.set_len(0).map_err(|e| e.to_string())));
                Ok(lines.join(" | "))
            }),
        ),
    ];
    for (what, step) in &steps {
        note(what.to_string(), step(&d));
    }
    Ok(out)
}

fn outcomes(which: Which, walker: bool) -> Vec<String> {
    let tree = Tree::new();
    let base = tree.0.clone();
    let main = |env: &Env| script(env, &base);
    weft_posix::force_fs_walker(walker);
    weft_uring::force_fs_walker(walker);
    let r = match which {
        Which::Posix => weft_posix::run(&RunConfig::default(), main),
        Which::Uring => weft_uring::run(&RunConfig::default(), main),
    };
    weft_posix::force_fs_walker(false);
    weft_uring::force_fs_walker(false);
    r.unwrap_or_else(|e| panic!("{which:?}: {e}"))
}

fn compare(walker: bool) {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if weft_uring::probe().is_err() {
        eprintln!("skipped: io_uring is not usable here");
        return;
    }
    let posix = outcomes(Which::Posix, walker);
    let uring = outcomes(Which::Uring, walker);
    assert_eq!(posix.len(), uring.len());
    let diffs: Vec<String> = posix
        .iter()
        .zip(&uring)
        .filter(|(p, u)| p != u)
        .map(|(p, u)| format!("posix: {p}\nuring: {u}"))
        .collect();
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n\n")
    );
    // The script did fail in many ways, not just succeed.
    assert!(posix.iter().filter(|l| !l.contains(": ok")).count() > 100);
}

#[test]
fn every_outcome_matches_posix_with_openat2() {
    compare(false);
}

#[test]
fn every_outcome_matches_posix_with_the_walker() {
    compare(true);
}
