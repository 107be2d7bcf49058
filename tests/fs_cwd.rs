//! Conformance: `env.cwd()`, confined to the working directory (the
//! process's under POSIX, `/work` under the mock).
//!
//! The working directory is shared by every test in the process, so this
//! test never changes it: it works only inside a uniquely named
//! subdirectory, removed at the end (also on failure).

#[path = "fs_support/mod.rs"]
mod support;

use rstest::rstest;
use support::{assert_denied, serial, Host, Resolve};
use weft::fs::Create;
use weft::Backend;

/// Removes the test's subdirectory of the working directory on drop.
struct Cleanup<'h>(&'h Host, String);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.0.remove_all(&self.1);
    }
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn cwd_is_confined_to_the_working_directory(#[case] backend: Backend) {
    let _serial = serial();
    let host = Host::new(backend);
    let name = format!("weft-fs-cwd-test-{}", std::process::id());
    let real = format!("{}/{name}", host.cwd());
    let _cleanup = Cleanup(&host, real.clone());
    host.run(backend, Resolve::Kernel, |env| {
        let cwd = env.cwd();
        assert_eq!(cwd.label(), "cwd");
        let top = &cwd / name.as_str();
        assert_eq!(top.to_string(), format!("<cwd:{name}>"));
        top.mkdir(0o700)?;
        (&top / "dir1").mkdir(0o700)?;
        (&top / "dir1/file1").save("A", Create::Exclusive(0o600))?;
        assert_eq!(host.read(format!("{real}/dir1/file1")), b"A");
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
        let abs = format!("{real}/dir1/file1");
        assert_denied(
            (&cwd / abs.as_str()).load(),
            &format!("opening <cwd:{abs}>"),
        );
        host.symlink("..", format!("{real}/up"));
        assert_denied((&top / "up/../x").stat(), "examining");
        assert_eq!((&top / "up").stat()?.kind, weft::fs::FileKind::Directory);

        // A sub-Dir of cwd is confined to itself.
        let dir1 = (&top / "dir1").open_dir()?;
        assert_denied((&dir1 / "../up").lstat(), "examining <dir1:../up>");

        top.rmtree()?;
        assert!(!host.exists(&real));
        Ok(())
    });
}
