//! A `Dir` used on a system thread, which runs no scheduler: its
//! operations go to a small ring of that thread. In a test binary of its
//! own: the pooled thread keeps that ring (an fd) while the pool keeps the
//! thread, which would upset the fd counts of other tests.

use weft_core::fs::Create;
use weft_core::{Result, RunConfig};

/// Directory and file operations from a system thread, through its own
/// ring.
#[test]
fn a_dir_works_on_a_system_thread() {
    if weft_uring::probe().is_err() {
        return;
    }
    let real = std::env::temp_dir().join(format!("weft-uring-fs-systhread-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&real);
    std::fs::create_dir_all(&real).unwrap();
    let names = weft_uring::run(&RunConfig::default(), |env| {
        let d = (env.fs() / real.to_str().unwrap()).open_dir()?;
        weft_core::systhread::run(move || -> Result<Vec<String>> {
            (&d / "sub").mkdir(0o700)?;
            (&d / "sub/sys").save("x", Create::Exclusive(0o600))?;
            let mut names = d.path().read_dir()?;
            names.push((&d / "sub/sys").load_string()?);
            Ok(names)
        })?
    });
    let _ = std::fs::remove_dir_all(&real);
    assert_eq!(names.unwrap(), ["sub", "x"]);
}
