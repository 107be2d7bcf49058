//! Capabilities: code handed a `Dir` can reach that directory and what is
//! below it, and nothing else.
//!
//! The program makes a scratch directory under the system's temporary
//! directory, opens it as a new sandbox, and gives only that `Dir` to an
//! "untrusted" function. Inside, it works normally; every way out (`..`,
//! absolute paths, symlinks pointing outside) is refused with a
//! `PermissionDenied` error that names the path. Needs no setup, and
//! removes the scratch directory at the end.
//!
//! ```text
//! cargo run --example sandbox
//! ```

use weft::fs::{Create, Dir};
use weft::{ErrorKind, FsError, Result};

/// Untrusted code: it only has `dir`. No `Env`, so no network, no
/// processes, no other files.
fn untrusted(dir: &Dir) -> Result<()> {
    // Ordinary work inside the sandbox is fine.
    (dir / "notes").mkdir(0o700)?;
    (dir / "notes/today.txt").save("buy milk\n", Create::IfMissing(0o600))?;
    println!(
        "inside: read {:?}",
        (dir / "notes/today.txt").load_string()?
    );
    // A symlink that stays inside is followed.
    (dir / "latest").symlink("notes/today.txt")?;
    println!(
        "inside: through a symlink {:?}",
        (dir / "latest").load_string()?
    );

    // Attempts to get out.
    (dir / "escape").symlink("/etc")?; // making the link is allowed...
    for path in [
        "../outside.txt",
        "/etc/passwd",
        "notes/../../outside.txt",
        "escape/passwd",
    ] {
        match (dir / path).load_string() {
            Ok(_) => panic!("{path}: escaped the sandbox"),
            Err(e) => {
                // ...following it out is not.
                assert_eq!(e.kind(), &ErrorKind::Fs(FsError::PermissionDenied), "{e}");
                println!("refused: {e}");
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    weft::run(|env| {
        // `env.fs()` is the whole filesystem: only `main` holds it.
        let tmp = std::env::temp_dir();
        let tmp = tmp.to_str().expect("temporary directory is UTF-8");
        let scratch = env.fs() / tmp / format!("weft-sandbox-{}", std::process::id());
        scratch.mkdirs(0o700)?;
        println!("sandbox at {scratch}");
        // `open_dir` makes a new capability rooted at the scratch directory.
        let result = scratch.open_dir().and_then(|dir| untrusted(&dir));
        scratch.rmtree()?;
        result
    })
}
