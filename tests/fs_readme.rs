//! Conformance: the "Filesystem Access" examples of Eio's README (and its
//! `Atomic_file` mutex example), each in a fresh scratch directory opened
//! as the confined root (standing in for `cwd`, which `fs_cwd` tests).

#[path = "fs_support/mod.rs"]
mod support;

use rstest::rstest;
use support::{assert_denied, with_scratch, Resolve};
use weft::fs::{Create, Path};
use weft::sync::Mutex;
use weft::{fiber, traceln, Backend};

fn try_mkdir(path: &Path) -> String {
    match path.mkdir(0o700) {
        Ok(()) => format!("mkdir {path} : ok"),
        Err(e) => e.to_string(),
    }
}

fn try_save(path: &Path, data: &str) -> String {
    match path.save(data, Create::Exclusive(0o600)) {
        Ok(()) => format!("save {path} : ok"),
        Err(e) => e.to_string(),
    }
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn save_then_stream_lines(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "readme-lines",
        |_env, root, scratch| {
            let path = root / "test.txt";
            assert_eq!(path.to_string(), format!("<{}:test.txt>", scratch.label()));
            traceln!("Saving to {path}");
            path.save("line one\nline two\n", Create::Exclusive(0o600))?;
            let seen = path.with_lines(|lines| {
                let mut seen = Vec::new();
                for line in lines {
                    let line = line?;
                    traceln!("Processing {line:?}");
                    seen.push(line);
                }
                Ok(seen)
            })?;
            assert_eq!(seen, ["line one", "line two"]);
            assert_eq!(scratch.mode(scratch.join("test.txt")) & 0o777, 0o600);
            Ok(())
        },
    );
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn mkdir_only_below_the_root(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "readme-mkdir",
        |_env, root, scratch| {
            let label = scratch.label();
            let outside = format!("{}-dir3", scratch.as_str());
            assert_eq!(
                try_mkdir(&(root / "dir1")),
                format!("mkdir <{label}:dir1> : ok")
            );
            assert!(scratch.is_dir(scratch.join("dir1")));
            let up = try_mkdir(&(root / "../dir2"));
            assert!(
                up.starts_with("fs: permission denied")
                    && up.ends_with(&format!("creating directory <{label}:../dir2>")),
                "{up}"
            );
            let abs = try_mkdir(&(root / outside.as_str()));
            assert!(
                abs.starts_with("fs: permission denied")
                    && abs.ends_with(&format!("creating directory <{label}:{outside}>")),
                "{abs}"
            );
            assert!(!scratch.exists(&outside));
            assert!(!scratch.exists(scratch.sibling("dir2")));
            Ok(())
        },
    );
}

#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn symlinks_are_checked_too(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(
        backend,
        resolve,
        "readme-symlinks",
        |_env, root, scratch| {
            (root / "dir1").mkdir(0o700)?;
            scratch.symlink("dir1", scratch.join("link-to-dir1"));
            scratch.symlink(&scratch.outside, scratch.join("link-to-tmp"));
            let label = scratch.label();
            assert_eq!(
                try_save(&(root / "dir1/file1"), "A"),
                format!("save <{label}:dir1/file1> : ok")
            );
            assert_eq!(
                try_save(&(root / "link-to-dir1/file2"), "B"),
                format!("save <{label}:link-to-dir1/file2> : ok")
            );
            assert_denied(
                (root / "link-to-tmp/file3").save("C", Create::Exclusive(0o600)),
                &format!("opening <{label}:link-to-tmp/file3>"),
            );
            assert_eq!(scratch.read(scratch.join("dir1/file1")), b"A");
            assert_eq!(scratch.read(scratch.join("dir1/file2")), b"B");
            assert!(!scratch.exists(scratch.out("file3")));
            Ok(())
        },
    );
}

#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn open_dir_makes_a_smaller_sandbox(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(
        backend,
        resolve,
        "readme-open-dir",
        |_env, root, scratch| {
            (root / "dir1").mkdir(0o700)?;
            let dir1 = (root / "dir1").open_dir()?;
            assert_eq!(dir1.label(), "dir1");
            assert_eq!(try_save(&(&dir1 / "file4"), "D"), "save <dir1:file4> : ok");
            assert_denied(
                (&dir1 / "../file5").save("E", Create::Exclusive(0o600)),
                "opening <dir1:../file5>",
            );
            assert_eq!(scratch.read(scratch.join("dir1/file4")), b"D");
            assert!(!scratch.exists(scratch.join("file5")));
            Ok(())
        },
    );
}

/// Eio's `Atomic_file`: a mutex keeps a load from seeing a half-done save.
#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn atomic_file_with_a_mutex(#[case] backend: Backend) {
    struct AtomicFile {
        path: Path,
        mutex: Mutex<()>,
    }
    impl AtomicFile {
        fn save(&self, data: &str) -> weft::Result<()> {
            self.mutex
                .use_rw(true, |_| self.path.save(data, Create::OrTruncate(0o644)))
        }
        fn load(&self) -> weft::Result<String> {
            self.mutex.use_ro(|_| self.path.load_string())
        }
    }
    with_scratch(
        backend,
        Resolve::Kernel,
        "readme-atomic",
        |_env, root, _| {
            let t = AtomicFile {
                path: root / "data",
                mutex: Mutex::new(()),
            };
            let loaded = std::cell::RefCell::new(String::new());
            fiber::both(
                || t.save("some data"),
                || {
                    *loaded.borrow_mut() = t.load()?;
                    Ok(())
                },
            )?;
            assert_eq!(*loaded.borrow(), "some data");
            Ok(())
        },
    );
}
