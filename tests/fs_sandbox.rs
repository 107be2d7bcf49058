//! Conformance: confinement of `Dir`s. Every escape — `..`, absolute
//! paths, symlinks leading out (even one swapped in between two
//! operations), magic links — is refused with `PermissionDenied`, and
//! hostile names give clean errors. On POSIX each case runs with the
//! kernel's `openat2` and with the user-space walker forced; the mock's
//! in-memory filesystem must agree with both.

#[path = "fs_support/mod.rs"]
mod support;

use rstest::rstest;
use support::{assert_denied, assert_err, assert_fs_err, with_scratch, Resolve};
use weft::fs::{Create, FileKind, OpenOut};
use weft::{Backend, ErrorKind, FsError};

#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn dotdot_cannot_climb_out(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(backend, resolve, "sandbox-dotdot", |_env, root, scratch| {
        let l = scratch.label();
        (root / "a/b").mkdirs(0o700)?;
        (root / "a/file").save("inside", Create::Exclusive(0o600))?;
        let create = Create::Exclusive(0o600);
        let esc = format!("{l}-escaped");
        let escapes = [
            "..".to_owned(),
            format!("../{esc}"),
            "a/../..".to_owned(),
            format!("a/../../{esc}"),
            format!("a/b/../../../{esc}"),
            format!("./../{esc}"),
            format!("a//..//../{esc}"),
        ];
        for p in &escapes {
            let path = root / p;
            assert_denied(path.load(), &format!("opening <{l}:{p}>"));
            assert_denied(path.save("x", create), &format!("opening <{l}:{p}>"));
            assert_denied(path.mkdir(0o700), &format!("creating directory <{l}:{p}>"));
            assert_denied(path.mkdirs(0o700), &format!("creating directory <{l}:{p}>"));
            assert_denied(path.unlink(), &format!("removing file <{l}:{p}>"));
            assert_denied(path.rmdir(), &format!("removing directory <{l}:{p}>"));
            assert_denied(path.rmtree(), &format!("<{l}:{p}>"));
            assert_denied(path.stat(), &format!("examining <{l}:{p}>"));
            assert_denied(path.lstat(), &format!("examining <{l}:{p}>"));
            assert_denied(path.exists(), &format!("examining <{l}:{p}>"));
            assert_denied(path.read_dir(), &format!("reading directory <{l}:{p}>"));
            assert_denied(path.open_dir(), &format!("opening directory <{l}:{p}>"));
            assert_denied(
                path.read_link(),
                &format!("reading target of symlink <{l}:{p}>"),
            );
            assert_denied(
                path.symlink("a"),
                &format!("creating symlink <{l}:{p}> -> a"),
            );
            assert_denied(
                (root / "a/file").rename(&path),
                &format!("renaming <{l}:a/file> to <{l}:{p}>"),
            );
            assert_denied(
                path.rename(&(root / "a/moved")),
                &format!("renaming <{l}:{p}> to <{l}:a/moved>"),
            );
        }
        // `..` that stays inside is fine.
        assert_eq!((root / "a/b/../file").load_string()?, "inside");
        assert_eq!((root / "a/..").read_dir()?, ["a"]);
        assert_eq!((root / "a/b/..").stat()?.kind, FileKind::Directory);
        // Nothing was created next to the scratch directory.
        assert!(!scratch.exists(scratch.sibling(&esc)));
        assert_eq!(scratch.read(scratch.join("a/file")), b"inside");
        Ok(())
    });
}

#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn absolute_paths_are_refused(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(backend, resolve, "sandbox-abs", |env, root, scratch| {
        let l = scratch.label();
        let inside = scratch.join("file");
        scratch.write(&inside, "data");
        let inside = inside.as_str();
        // Even an absolute path that names a file inside the sandbox.
        assert_denied((root / inside).load(), &format!("opening <{l}:{inside}>"));
        assert_denied(
            (root / "/").read_dir(),
            &format!("reading directory <{l}:/>"),
        );
        assert_denied(
            (root / "/dev/null").open_in(),
            &format!("opening <{l}:/dev/null>"),
        );
        assert_denied((root / "//etc/passwd").stat(), "examining");
        assert_denied((root / "file" / "/etc").open_dir(), &format!("<{l}:/etc>"));
        // The unconfined fs may use them.
        assert_eq!((env.fs() / inside).load()?, b"data");
        assert_eq!((env.fs() / "/dev/null").load()?, b"");
        Ok(())
    });
}

#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn symlinks_leading_out_are_refused(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(backend, resolve, "sandbox-links", |env, root, scratch| {
        scratch.write(scratch.out("secret"), "secret");
        let l = scratch.label();
        scratch.mkdirs(scratch.join("foo/bar"));
        scratch.write(scratch.join("foo/bar/file"), "ok");
        scratch.symlink(&scratch.outside, scratch.join("abs"));
        scratch.symlink("/", scratch.join("to-root"));
        let depth = scratch.depth();
        scratch.symlink("../".repeat(depth) + "etc", scratch.join("climb"));
        let rel_out = format!("../{}", scratch.outside_name());
        scratch.symlink(&rel_out, scratch.join("rel-out"));
        scratch.symlink("..", scratch.join("foo/up"));
        scratch.symlink("bar/file", scratch.join("foo/to-file"));
        scratch.symlink("foo/to-file", scratch.join("chain"));

        for p in [
            "abs/secret",
            "to-root/etc/passwd",
            "climb/passwd",
            "rel-out/secret",
        ] {
            assert_denied((root / p).load(), &format!("opening <{l}:{p}>"));
            assert_denied((root / p).stat(), &format!("examining <{l}:{p}>"));
            assert_denied((root / p).unlink(), &format!("removing file <{l}:{p}>"));
        }
        for p in ["abs", "to-root", "climb", "rel-out"] {
            // Following the link is refused; the link itself is ours.
            assert_denied((root / p).stat(), &format!("examining <{l}:{p}>"));
            assert_denied(
                (root / p).read_dir(),
                &format!("reading directory <{l}:{p}>"),
            );
            assert_denied(
                (root / p).open_dir(),
                &format!("opening directory <{l}:{p}>"),
            );
            assert_eq!((root / p).lstat()?.kind, FileKind::Symlink);
            assert!(!(root / p).read_link()?.is_empty());
        }
        assert_denied(
            (root / "abs/new").save("x", Create::Exclusive(0o600)),
            &format!("opening <{l}:abs/new>"),
        );
        assert_denied((root / "abs/newdir").mkdir(0o700), "creating directory");
        assert_denied((root / "abs/secret").rename(&(root / "stolen")), "renaming");
        assert_denied(
            (root / "abs/secret").rmtree(),
            &format!("removing <{l}:abs/secret>"),
        );

        // Links that stay inside are followed, even through `..`.
        assert_eq!((root / "chain").load_string()?, "ok");
        assert_eq!((root / "foo/up/foo/bar/file").load_string()?, "ok");
        assert_eq!((root / "foo/up").open_dir()?.label(), "up");
        assert_denied((root / "foo/up/..").stat(), "examining");
        assert_denied((root / "foo/up/../bar").open_dir(), "opening directory");

        // Unlinking a link that points out removes the link only.
        (root / "abs").unlink()?;
        assert_eq!(scratch.read(scratch.out("secret")), b"secret");
        assert!(!scratch.exists(scratch.out("new")) && !scratch.exists(scratch.out("newdir")));
        // The unconfined fs follows links anywhere.
        let via_fs = env.fs() / scratch.as_str() / "rel-out/secret";
        assert_eq!(via_fs.load_string()?, "secret");
        Ok(())
    });
}

#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn creating_through_a_dangling_link(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(backend, resolve, "sandbox-dangle", |_env, root, scratch| {
        scratch.symlink(scratch.out("created"), scratch.join("evil-abs"));
        scratch.symlink(
            format!("../{}/created", scratch.outside_name()),
            scratch.join("evil-rel"),
        );
        scratch.symlink("target", scratch.join("dangle"));
        for p in ["evil-abs", "evil-rel"] {
            for create in [Create::IfMissing(0o600), Create::OrTruncate(0o600)] {
                assert_denied((root / p).save("x", create), "opening");
            }
            // Exclusive creation never follows the final link.
            assert_fs_err(
                (root / p).save("x", Create::Exclusive(0o600)),
                FsError::AlreadyExists,
                "opening",
            );
        }
        assert!(!scratch.exists(scratch.out("created")));
        // A dangling link inside creates its target inside.
        (root / "dangle").save("made", Create::IfMissing(0o600))?;
        assert_eq!(scratch.read(scratch.join("target")), b"made");
        assert_eq!((root / "dangle").lstat()?.kind, FileKind::Symlink);
        Ok(())
    });
}

#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn symlink_loops_are_detected(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(backend, resolve, "sandbox-loops", |_env, root, scratch| {
        scratch.symlink("b", scratch.join("a"));
        scratch.symlink("a", scratch.join("b"));
        scratch.symlink("self", scratch.join("self"));
        scratch.symlink("deeper/x", scratch.join("deeper"));
        scratch.symlink("./loop/..", scratch.join("loop"));
        for p in ["a", "b", "self", "a/x", "self/x", "deeper", "loop"] {
            assert_fs_err((root / p).load(), FsError::TooManySymlinks, "opening");
            assert_fs_err((root / p).stat(), FsError::TooManySymlinks, "examining");
            assert_fs_err(
                (root / p).save("x", Create::IfMissing(0o600)),
                FsError::TooManySymlinks,
                "opening",
            );
        }
        // Long chains: 30 links are fine, 50 are too many (the limit is 40).
        scratch.write(scratch.join("end"), "end");
        for (name, n) in [("short", 30), ("long", 50)] {
            let mut prev = "end".to_owned();
            for i in 0..n {
                let link = format!("{name}{i}");
                scratch.symlink(&prev, scratch.join(&link));
                prev = link;
            }
        }
        assert_eq!((root / "short29").load()?, b"end");
        assert_fs_err(
            (root / "long49").load(),
            FsError::TooManySymlinks,
            "opening",
        );
        Ok(())
    });
}

#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn a_link_swapped_between_operations_is_refused(
    #[case] backend: Backend,
    #[case] resolve: Resolve,
) {
    with_scratch(backend, resolve, "sandbox-swap", |_env, root, scratch| {
        (root / "dir1").mkdir(0o700)?;
        scratch.symlink("dir1", scratch.join("link"));
        let sub = (root / "link").open_dir()?;
        (root / "link/f1").save("1", Create::Exclusive(0o600))?;
        let file = (root / "link/f1").open_in()?;
        // Swap the link for one leading out (atomically, with a rename).
        scratch.symlink(&scratch.outside, scratch.join("link.new"));
        scratch.rename(scratch.join("link.new"), scratch.join("link"));
        assert_denied(
            (root / "link/f2").save("2", Create::Exclusive(0o600)),
            "opening",
        );
        assert_denied((root / "link").read_dir(), "reading directory");
        assert_denied((root / "link/f1").load(), "opening");
        assert!(!scratch.exists(scratch.out("f2")));
        // What was opened before the swap stays what it was.
        assert_eq!(std::io::read_to_string(&file).unwrap(), "1");
        assert_eq!((&sub / "f1").load_string()?, "1");
        // And a directory swapped under an open sub-Dir does not leak either.
        scratch.rename(scratch.join("dir1"), scratch.join("dir2"));
        assert_eq!((&sub / "f1").load_string()?, "1");
        assert_denied((&sub / "../link/x").load(), "opening");
        Ok(())
    });
}

/// Not on the mock: `/proc` and its magic links exist on the real
/// filesystem only (the mock's symlinks are plain ones, covered above).
#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
fn magic_links_are_not_followed(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(backend, resolve, "sandbox-magic", |env, _root, _scratch| {
        let proc_self = (env.fs() / "/proc/self").open_dir()?;
        for p in ["cwd", "root", "exe", "fd/0", "cwd/etc"] {
            let err = (&proc_self / p).load().expect_err("magic link followed");
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::Fs(FsError::PermissionDenied)
                        | ErrorKind::Fs(FsError::TooManySymlinks)
                ),
                "{p}: {err}"
            );
        }
        Ok(())
    });
}

#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn hostile_names(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(backend, resolve, "sandbox-names", |_env, root, scratch| {
        let l = scratch.label();
        let nul = root / "a\0b";
        assert_fs_err(nul.load(), FsError::InvalidPath, "opening <");
        assert_fs_err(
            nul.save("x", Create::IfMissing(0o600)),
            FsError::InvalidPath,
            "opening",
        );
        assert_fs_err(nul.mkdir(0o700), FsError::InvalidPath, "creating directory");
        assert_fs_err(nul.stat(), FsError::InvalidPath, "examining");
        assert_fs_err(nul.open_dir(), FsError::InvalidPath, "opening directory");
        assert_fs_err(
            (root / "ok").symlink("a\0b"),
            FsError::InvalidPath,
            "creating symlink",
        );
        assert_fs_err(nul.rename(&(root / "ok")), FsError::InvalidPath, "renaming");
        assert_fs_err((root / "ok").rename(&nul), FsError::InvalidPath, "renaming");

        let long_name = "n".repeat(300);
        let long = root / long_name.as_str();
        assert_fs_err(
            long.save("x", Create::IfMissing(0o600)),
            FsError::InvalidPath,
            "opening",
        );
        assert_fs_err(
            long.mkdir(0o700),
            FsError::InvalidPath,
            "creating directory",
        );
        assert_fs_err(long.stat(), FsError::InvalidPath, "examining");
        let long_path = "d/".repeat(3000) + "f";
        assert_fs_err(
            (root / long_path.as_str()).load(),
            FsError::InvalidPath,
            "opening",
        );

        // The empty path is the directory itself.
        (root / "f").save("x", Create::Exclusive(0o600))?;
        assert_eq!(root.path().stat()?.kind, FileKind::Directory);
        assert_eq!((root / "").read_dir()?, ["f"]);
        assert_eq!(root.path().open_dir()?.label(), l);
        assert_eq!((&root.path().open_dir()? / "f").load()?, b"x");
        assert_fs_err(
            root.path().mkdir(0o700),
            FsError::AlreadyExists,
            &format!("<{l}>"),
        );
        assert_fs_err(
            root.path().load(),
            FsError::IsADirectory,
            &format!("reading <{l}>"),
        );
        assert_err(
            root.path().rmtree(),
            ErrorKind::InvalidInput,
            &format!("<{l}>"),
        );
        assert_err((root / ".").rmtree(), ErrorKind::InvalidInput, "removing");
        assert_fs_err(
            root.path().open_out(OpenOut::new(Create::Never)),
            FsError::IsADirectory,
            "opening",
        );
        assert_eq!((root / "f").load()?, b"x", "nothing was removed");
        // Odd but harmless names.
        for name in ["-", " ", "a b", "\u{e9}t\u{e9}", "*", "\\", "..."] {
            (root / name).save(name, Create::Exclusive(0o600))?;
            assert_eq!((root / name).load_string()?, name);
        }
        Ok(())
    });
}
