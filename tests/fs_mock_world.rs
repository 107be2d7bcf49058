//! Whole programs on the mock backend's in-memory filesystem: Eio's
//! "Filesystem Access" README examples as exact traces (the same on every
//! run), a tiny file server mixing the in-memory network and filesystem,
//! and a domain writing through a `Dir` it was handed — all with no real
//! IO, and nothing left open afterwards.

use std::time::{Duration, SystemTime};

use weft::buf_read::BufReader;
use weft::flow::{Shutdown, ShutdownKind, Sink, Source};
use weft::fs::{Create, Path};
use weft::mock::{Config, MemFs, MemNet};
use weft::net::ServerOptions;
use weft::{traceln, Switch};

fn try_mkdir(path: &Path) {
    match path.mkdir(0o700) {
        Ok(()) => traceln!("mkdir {path} : ok"),
        Err(e) => traceln!("{e}"),
    }
}

fn try_save(path: &Path, data: &str) {
    match path.save(data, Create::Exclusive(0o600)) {
        Ok(()) => traceln!("save {path} : ok"),
        Err(e) => traceln!("{e}"),
    }
}

/// Traces what `stat` says about `path`, times as seconds of mock time.
fn trace_stat(path: &Path) -> weft::Result<()> {
    let st = path.stat()?;
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    traceln!(
        "{path}: {}, {} bytes, {:o}, inode {}, modified at {}s",
        st.kind,
        st.size,
        st.perm,
        st.ino,
        secs(st.mtime)
    );
    Ok(())
}

/// Runs `main` traced on `fs` and checks that it left nothing open.
fn run_on(fs: &MemFs, main: impl FnOnce(&weft::Env) -> weft::Result<()>) -> Vec<String> {
    let (r, trace) = Config::new().fs(fs.clone()).run_traced(main);
    r.unwrap();
    assert_eq!(fs.open_handles(), 0, "nothing left open");
    trace
}

/// The README's examples, each its own run as there, on one filesystem;
/// returns every trace line and the final tree.
fn readme_world() -> (Vec<String>, Vec<String>) {
    let fs = MemFs::new();
    let mut trace = Vec::new();
    trace.extend(run_on(&fs, |env| {
        let path = env.cwd() / "test.txt";
        traceln!("Saving to {path}");
        path.save("line one\nline two\n", Create::Exclusive(0o600))?;
        path.with_lines(|lines| {
            for line in lines {
                traceln!("Processing {:?}", line?);
            }
            Ok(())
        })
    }));
    trace.extend(run_on(&fs, |env| {
        let cwd = env.cwd();
        try_mkdir(&(&cwd / "dir1"));
        try_mkdir(&(&cwd / "../dir2"));
        try_mkdir(&(&cwd / "/tmp/dir3"));
        Ok(())
    }));
    // The README makes these with `Unix.symlink`, outside the program.
    fs.symlink("/work/link-to-dir1", "dir1").unwrap();
    fs.symlink("/work/link-to-tmp", "/tmp").unwrap();
    trace.extend(run_on(&fs, |env| {
        let cwd = env.cwd();
        try_save(&(&cwd / "dir1/file1"), "A");
        try_save(&(&cwd / "link-to-dir1/file2"), "B");
        try_save(&(&cwd / "link-to-tmp/file3"), "C");
        Ok(())
    }));
    trace.extend(run_on(&fs, |env| {
        let dir1 = (env.cwd() / "dir1").open_dir()?;
        try_save(&(&dir1 / "file4"), "D");
        try_save(&(&dir1 / "../file5"), "E");
        Ok(())
    }));
    // Metadata comes from the virtual clock.
    trace.extend(run_on(&fs, |env| {
        let cwd = env.cwd();
        trace_stat(&(&cwd / "dir1/file1"))?;
        env.clock().sleep(Duration::from_secs(5))?;
        (&cwd / "dir1/file1").save("AA", Create::OrTruncate(0o600))?;
        trace_stat(&(&cwd / "link-to-dir1/file1"))?;
        trace_stat(&(&cwd / "dir1"))
    }));
    (trace, fs.paths("/").unwrap())
}

#[test]
fn the_readme_examples_trace_exactly_and_the_same_every_time() {
    let (trace, tree) = readme_world();
    let denied = "fs: permission denied, the path leads outside the directory";
    assert_eq!(
        trace,
        [
            "Saving to <cwd:test.txt>".to_owned(),
            r#"Processing "line one""#.to_owned(),
            r#"Processing "line two""#.to_owned(),
            "mkdir <cwd:dir1> : ok".to_owned(),
            format!("{denied}, creating directory <cwd:../dir2>"),
            format!("{denied}, creating directory <cwd:/tmp/dir3>"),
            "save <cwd:dir1/file1> : ok".to_owned(),
            "save <cwd:link-to-dir1/file2> : ok".to_owned(),
            format!("{denied}, opening <cwd:link-to-tmp/file3>"),
            "save <dir1:file4> : ok".to_owned(),
            format!("{denied}, opening <dir1:../file5>"),
            "<cwd:dir1/file1>: regular file, 1 bytes, 600, inode 11, modified at 0s".to_owned(),
            "mock time is now 5".to_owned(),
            "<cwd:link-to-dir1/file1>: regular file, 2 bytes, 600, inode 11, modified at 5s"
                .to_owned(),
            "<cwd:dir1>: directory, 4096 bytes, 700, inode 8, modified at 0s".to_owned(),
        ]
    );
    assert_eq!(
        tree,
        [
            "dev/",
            "dev/null",
            "dev/zero",
            "tmp/",
            "work/",
            "work/dir1/",
            "work/dir1/file1",
            "work/dir1/file2",
            "work/dir1/file4",
            "work/link-to-dir1 -> dir1",
            "work/link-to-tmp -> /tmp",
            "work/test.txt",
        ]
    );
    assert_eq!(readme_world(), (trace, tree), "deterministic");
}

/// A file server on the in-memory network, serving a confined directory of
/// the in-memory filesystem: each client sends a file name on a line; the
/// server replies `OK <length>` and the contents, or `ERR <kind>`.
fn file_server_world() -> Vec<String> {
    let fs = MemFs::new();
    fs.mkdirs("/work/public/docs").unwrap();
    fs.write("/work/public/hello.txt", "hello, world\n")
        .unwrap();
    fs.write("/work/public/docs/a.txt", "A\n").unwrap();
    fs.write("/work/secret", "hunter2\n").unwrap();
    fs.symlink("/work/public/sneaky", "../secret").unwrap();
    let net = MemNet::new();
    let (r, trace) = Config::new()
        .fs(fs.clone())
        .net(net.clone())
        .run_traced(|env| {
            let public = (env.cwd() / "public").open_dir()?;
            let listener = env.net().listen(&"127.0.0.1:8080".parse()?)?;
            let addr = listener.local_addr()?;
            Switch::run(|sw| {
                sw.fork_daemon(|| {
                    weft::net::run_server(&listener, ServerOptions::default(), |conn, peer| {
                        let name = BufReader::new(&conn, 1024).line()?;
                        traceln!("server: {peer} asks for {name:?}");
                        match (&public / name.as_str()).load() {
                            Ok(data) => {
                                conn.write_all(format!("OK {}\n", data.len()).as_bytes())?;
                                conn.write_all(&data)
                            }
                            Err(e) => {
                                traceln!("server: {e}");
                                conn.write_all(format!("ERR {}\n", e.kind()).as_bytes())
                            }
                        }
                    })
                });
                let requests = [
                    "hello.txt",
                    "docs/../docs/a.txt",
                    "../secret",
                    "/work/secret",
                    "sneaky",
                    "missing.txt",
                ];
                for name in requests {
                    let conn = env.net().connect(&addr)?;
                    conn.write_all(format!("{name}\n").as_bytes())?;
                    conn.shutdown(ShutdownKind::Write)?;
                    traceln!("client: {name} -> {:?}", conn.read_all()?);
                }
                Ok(())
            })
        });
    r.unwrap();
    assert_eq!(fs.open_handles(), 0, "nothing left open on the fs");
    let open = net.open_resources();
    assert!(open.is_empty(), "left open on the network: {open:?}");
    assert_eq!(fs.read("/work/secret").unwrap(), b"hunter2\n");
    trace
}

#[test]
fn a_file_server_serves_its_directory_and_nothing_else() {
    let trace = file_server_world();
    let denied = "fs: permission denied, the path leads outside the directory";
    let expected = [
        r#"server: tcp:127.0.0.1:49152 asks for "hello.txt""#.to_owned(),
        r#"client: hello.txt -> "OK 13\nhello, world\n""#.to_owned(),
        r#"server: tcp:127.0.0.1:49153 asks for "docs/../docs/a.txt""#.to_owned(),
        r#"client: docs/../docs/a.txt -> "OK 2\nA\n""#.to_owned(),
        r#"server: tcp:127.0.0.1:49154 asks for "../secret""#.to_owned(),
        format!("server: {denied}, opening <public:../secret>"),
        r#"client: ../secret -> "ERR fs: permission denied\n""#.to_owned(),
        r#"server: tcp:127.0.0.1:49155 asks for "/work/secret""#.to_owned(),
        format!("server: {denied}, opening <public:/work/secret>"),
        r#"client: /work/secret -> "ERR fs: permission denied\n""#.to_owned(),
        r#"server: tcp:127.0.0.1:49156 asks for "sneaky""#.to_owned(),
        format!("server: {denied}, opening <public:sneaky>"),
        r#"client: sneaky -> "ERR fs: permission denied\n""#.to_owned(),
        r#"server: tcp:127.0.0.1:49157 asks for "missing.txt""#.to_owned(),
        "server: fs: not found, opening <public:missing.txt>".to_owned(),
        r#"client: missing.txt -> "ERR fs: not found\n""#.to_owned(),
    ];
    assert_eq!(trace, expected);
    assert_eq!(file_server_world(), trace, "deterministic");
}

/// Domains started from a mock run share its filesystem: a `Dir` handed to
/// one works there, and the domain's own `fs` and `cwd` are released when
/// it ends.
#[test]
fn a_domain_writes_through_a_dir_it_was_handed() {
    let fs = MemFs::new();
    Config::new()
        .fs(fs.clone())
        .run(|env| {
            (env.cwd() / "out").mkdir(0o755)?;
            let out = (env.cwd() / "out").open_dir()?;
            let sent = out.clone();
            let n = env.domain_mgr().run(move || {
                (&sent / "from-domain").save("hi", Create::Exclusive(0o644))?;
                Ok((&sent / "from-domain").stat()?.size)
            })?;
            assert_eq!(n, 2);
            assert_eq!((&out / "from-domain").load_string()?, "hi");
            Ok(())
        })
        .unwrap();
    assert_eq!(fs.read("/work/out/from-domain").unwrap(), b"hi");
    // The domain's thread lets go of its own `fs` and `cwd` just after
    // handing back its result.
    for _ in 0..200 {
        if fs.open_handles() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(fs.open_handles(), 0);
}
