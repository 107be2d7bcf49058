//! Conformance: `env.cwd()`, confined to the process's working directory.
//!
//! The working directory is shared by every test in the process, so this
//! test never changes it: it works only inside a uniquely named
//! subdirectory, removed at the end (also on failure).

#[path = "fs_support/mod.rs"]
mod support;

use rstest::rstest;
use support::{assert_denied, serial};
use weft::fs::Create;
use weft::Backend;

/// Removes the test's subdirectory of the working directory on drop.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[rstest]
#[case::posix(Backend::Posix)]
fn cwd_is_confined_to_the_working_directory(#[case] backend: Backend) {
    let _serial = serial();
    let name = format!("weft-fs-cwd-test-{}", std::process::id());
    let real = std::env::current_dir().unwrap().join(&name);
    let _cleanup = Cleanup(real.clone());
    let before = support::settled_fds();
    weft::run_with(backend, |env| {
        let cwd = env.cwd();
        assert_eq!(cwd.label(), "cwd");
        let top = &cwd / name.as_str();
        assert_eq!(top.to_string(), format!("<cwd:{name}>"));
        top.mkdir(0o700)?;
        (&top / "dir1").mkdir(0o700)?;
        (&top / "dir1/file1").save("A", Create::Exclusive(0o600))?;
        assert_eq!(std::fs::read(real.join("dir1/file1")).unwrap(), b"A");
        assert!(cwd.path().read_dir()?.contains(&name));
        assert_eq!((&top / "dir1").read_dir()?, ["file1"]);

        // Inside, `..` is fine as long as it stays below the cwd.
        let back = &cwd / format!("{name}/dir1/../dir1/file1");
        assert_eq!(back.load_string()?, "A");
        // No way above the working directory.
        assert_denied((&cwd / "..").read_dir(), "reading directory <cwd:..>");
        assert_denied(
            (&cwd / "../x").mkdir(0o700),
            "creating directory <cwd:../x>",
        );
        let abs = real.join("dir1/file1");
        let abs = abs.to_str().unwrap();
        assert_denied((&cwd / abs).load(), &format!("opening <cwd:{abs}>"));
        std::os::unix::fs::symlink("..", real.join("up")).unwrap();
        assert_denied((&top / "up/../x").stat(), "examining");
        assert_eq!((&top / "up").stat()?.kind, weft::fs::FileKind::Directory);

        // A sub-Dir of cwd is confined to itself.
        let dir1 = (&top / "dir1").open_dir()?;
        assert_denied((&dir1 / "../up").lstat(), "examining <dir1:../up>");

        top.rmtree()?;
        assert!(!real.exists());
        Ok(())
    })
    .unwrap();
    support::assert_fds_settle(before);
}
