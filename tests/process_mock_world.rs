//! Child processes in the mock world: programs registered by the test,
//! exact traces of spawns, output and exits on virtual time, the working
//! directory in the in-memory filesystem, signals, how a program's errors
//! become its exit status, and processes ending with their run.

use std::time::Duration;

use weft::flow::{self, Source};
use weft::mock::{Config, Invocation, MemFs, Programs};
use weft::process::{Command, ExitStatus, ProcessError, Stdio, SIGKILL, SIGTERM};
use weft::{traceln, ErrorKind, Switch};

/// A program that shows what it was given: its arguments, a variable, its
/// working directory and pid, then its stdin upper-cased, on stdout, and a
/// note on stderr. Exits with the number of its arguments.
fn show(p: &Invocation) -> weft::Result<ExitStatus> {
    let input = p.stdin().read_all()?;
    let mut out = format!(
        "{} {:?} GREETING={} cwd={} pid={}\n",
        p.program(),
        p.args(),
        p.var("GREETING").unwrap_or("unset"),
        p.cwd(),
        p.pid()
    );
    out.push_str(&input.to_uppercase());
    p.stdout().write_all(out.as_bytes())?;
    p.stderr().write_all(b"note\n")?;
    Ok(ExitStatus::Exited(p.args().len() as i32))
}

#[test]
fn a_registered_program_gets_its_arguments_env_cwd_and_streams() {
    let programs = Programs::new();
    programs.register("show", show);
    programs.env("GREETING", "hi");
    let fs = MemFs::new();
    fs.mkdirs("/srv/data").unwrap();
    fs.symlink("/work/data", "/srv/data").unwrap();
    let config = Config::new().programs(programs.clone()).fs(fs.clone());
    config
        .run(|env| {
            let pm = env.process_mgr();
            let (out, err) = (flow::buffer_sink(), flow::buffer_sink());
            let cmd = Command::new("show")
                .args(["a", "b c"])
                .current_dir("data") // relative to /work, through a symlink
                .stdin_from(flow::string_source("some input\n"))
                .stdout_to(&out)
                .stderr_to(&err);
            assert_eq!(pm.status(cmd)?, ExitStatus::Exited(2));
            assert_eq!(
                out.contents_string(),
                "show [\"a\", \"b c\"] GREETING=hi cwd=/srv/data pid=2\nSOME INPUT\n"
            );
            assert_eq!(err.contents_string(), "note\n");

            // The environment as the command changes it, the default cwd;
            // `run` helpers check the exit code and name the command.
            let cmd = Command::new("show").env_clear().stderr(Stdio::Null);
            assert_eq!(
                pm.output_string(cmd)?,
                "show [] GREETING=unset cwd=/work pid=3\n"
            );
            let cmd = Command::new("show").arg("x").env("GREETING", "yo");
            let err = pm.output_string(cmd.stderr(Stdio::Null)).unwrap_err();
            assert_eq!(
                err.to_string(),
                "process: exited with code 1, running command: show x"
            );
            assert!(programs.running().is_empty());
            Ok(())
        })
        .unwrap();
    assert_eq!(fs.open_handles(), 0, "each process let go of its cwd");
}

#[test]
fn spawns_output_and_exits_are_traced_on_virtual_time() {
    let (r, trace) = Config::new().run_traced(|env| {
        let pm = env.process_mgr();
        pm.run(&["echo", "hello", "world"])?;
        let err = pm.run(&["false"]).unwrap_err();
        traceln!("{err}");
        let start = env.mono_clock().now()?;
        pm.run(&["sleep", "1.5"])?;
        traceln!("slept {:?}", env.mono_clock().now()?.duration_since(start));
        let child = pm.spawn(&Command::new("sleep").arg("100"))?;
        child.signal(SIGTERM)?;
        traceln!("{}", child.wait()?);
        pm.run(&["cat", "missing"]).unwrap_err();
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "process: spawn echo hello world",
            r#"process: echo: stdout "hello world\n""#,
            "process: echo exited with code 0",
            "process: spawn false",
            "process: false exited with code 1",
            "process: exited with code 1, running command: false",
            "process: spawn sleep 1.5",
            "mock time is now 1.5",
            "process: sleep exited with code 0",
            "slept 1.5s",
            "process: spawn sleep 100",
            "process: sleep killed by signal 15",
            "killed by signal 15",
            "process: spawn cat missing",
            r#"process: cat: stderr "cat: missing: No such file or directory\n""#,
            "process: cat exited with code 1",
        ]
    );
}

#[test]
fn an_unknown_program_or_bad_cwd_fails_to_spawn() {
    let fs = MemFs::new();
    fs.write("/work/file", "").unwrap();
    Config::new()
        .fs(fs)
        .run(|env| {
            let pm = env.process_mgr();
            let err = pm.spawn(&Command::new("nope").arg("-x")).unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::SpawnFailed));
            assert_eq!(
                err.to_string(),
                "process: could not spawn (no program \"nope\" in the mock world), \
                 spawning command: nope -x"
            );
            // No PATH search: a path is a name like any other.
            assert!(pm.spawn(&Command::new("/usr/bin/env")).is_err());

            for (dir, why) in [
                ("missing", "fs: not found"),
                ("file", "fs: not a directory"),
            ] {
                let err = pm.spawn(&Command::new("pwd").current_dir(dir)).unwrap_err();
                assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::SpawnFailed));
                let msg = err.to_string();
                assert!(
                    msg.contains(why) && msg.contains(&format!("working directory {dir:?}")),
                    "{msg}"
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn signals_end_a_program_unless_ignored_by_default() {
    Config::new()
        .run(|env| {
            let pm = env.process_mgr();
            let child = pm.spawn(&Command::new("sleep").arg("10"))?;
            for sig in [0, 17, 28] {
                child.signal(sig)?; // existence check, SIGCHLD, SIGWINCH
            }
            let err = child.signal(19).unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::InvalidInput, "stopping: {err}");
            let err = child.signal(99).unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::InvalidInput, "{err}");
            assert_eq!(child.try_wait()?, None);
            // Nothing ended it: it sleeps its full ten seconds.
            let start = env.mono_clock().now()?;
            assert!(child.wait()?.success());
            assert_eq!(
                env.mono_clock().now()?.duration_since(start),
                Duration::from_secs(10)
            );
            Ok(())
        })
        .unwrap();

    let programs = Programs::new();
    programs.register("stubborn", |p| {
        let _ = p.sleep(Duration::from_secs(60));
        Ok(ExitStatus::Exited(0))
    });
    programs.register("raise", |p| {
        let sig: i32 = p.args()[0].parse().unwrap();
        p.raise(sig)?;
        Ok(ExitStatus::Exited(0))
    });
    Config::new()
        .programs(programs)
        .run(|env| {
            let pm = env.process_mgr();
            // The first terminating signal is the one reported, even if the
            // program swallows the cancellation and returns normally.
            let child = pm.spawn(&Command::new("stubborn"))?;
            weft::fiber::yield_now()?; // it starts sleeping
            child.signal(SIGTERM)?;
            child.kill()?;
            assert_eq!(child.wait()?, ExitStatus::Signaled(SIGTERM));

            // Killed before it ever ran.
            let child = pm.spawn(&Command::new("stubborn"))?;
            child.kill()?;
            assert_eq!(child.wait()?, ExitStatus::Signaled(SIGKILL));

            assert_eq!(
                pm.status(Command::new("raise").arg("15"))?,
                ExitStatus::Signaled(SIGTERM)
            );
            assert!(pm.status(Command::new("raise").arg("17"))?.success());
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_programs_failures_become_its_exit_status() {
    let programs = Programs::new();
    programs.register("fails", |p| {
        p.stdout().write_all(b"partial\n")?;
        Err(weft::Error::msg(ErrorKind::InvalidInput, "bad config"))
    });
    programs.register("yes", |p| loop {
        p.stdout().write_all(b"y\n")?;
    });
    programs.register("panics", |_| panic!("oops"));
    let (r, trace) = Config::new().programs(programs).run_traced(|env| {
        let pm = env.process_mgr();
        let err = flow::buffer_sink();
        let status = pm.status(Command::new("fails").stdout(Stdio::Null).stderr_to(&err))?;
        assert_eq!(status, ExitStatus::Exited(1));
        assert_eq!(err.contents_string(), "fails: invalid input, bad config\n");

        // Writing to a pipe nobody reads: SIGPIPE, as for a real `yes`.
        let mut child = pm.spawn(&Command::new("yes").stdout(Stdio::Pipe))?;
        let out = child.take_stdout().unwrap();
        let mut buf = [0u8; 4];
        out.read_exact(&mut buf)?;
        assert_eq!(&buf, b"y\ny\n");
        drop(out);
        assert_eq!(child.wait()?, ExitStatus::Signaled(13));

        assert_eq!(pm.status(Command::new("panics"))?, ExitStatus::Signaled(6));
        Ok(())
    });
    r.unwrap();
    assert!(
        trace.contains(&"process: panics: panicked: oops".to_string()),
        "{trace:?}"
    );
}

#[test]
fn builtins_behave_like_coreutils() {
    let fs = MemFs::new();
    fs.write("/work/a.txt", "alpha\n").unwrap();
    fs.write("/work/b.txt", "beta\n").unwrap();
    Config::new()
        .fs(fs)
        .run(|env| {
            let pm = env.process_mgr();
            let out = |argv: &[&str]| pm.output_string(Command::from_argv(argv).unwrap());
            assert_eq!(out(&["echo", "-n", "a", "b"])?, "a b");
            assert_eq!(out(&["echo", "-e", "x\\ty\\c", "z"])?, "x\ty");
            assert_eq!(out(&["echo", "-x", "--"])?, "-x --\n");
            assert_eq!(out(&["cat", "a.txt", "b.txt"])?, "alpha\nbeta\n");
            assert_eq!(out(&["env", "-i", "A=1", "B=2"])?, "A=1\nB=2\n");
            // `env` runs a program in the environment it made (exec).
            assert_eq!(out(&["env", "-i", "X=y", "env"])?, "X=y\n");
            assert_eq!(out(&["env", "-u", "HOME", "-u", "PATH"])?, "");
            let cmd = Command::new("sort").stdin_from(flow::string_source("b\na\nc"));
            assert_eq!(pm.output_string(cmd)?, "a\nb\nc\n");
            let cmd = Command::from_argv(["tr", "-d", "a-c"])?
                .stdin_from(flow::string_source("abcdxdcba"));
            assert_eq!(pm.output_string(cmd)?, "dxd");
            for (argv, code) in [
                (&["exit", "300"][..], 44),
                (&["exit", "x"][..], 2),
                (&["sleep", "1y"][..], 1),
                (&["sleep"][..], 1),
                (&["env", "no-such"][..], 127),
                (&["tr", "a"][..], 1),
            ] {
                let cmd = Command::from_argv(argv)?.stderr(Stdio::Null);
                assert_eq!(pm.status(cmd)?, ExitStatus::Exited(code), "{argv:?}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn processes_end_with_their_run() {
    let programs = Programs::new();
    let (child, trace) = Config::new().programs(programs.clone()).run_traced(|env| {
        let pm = env.process_mgr();
        let sleeper = pm.spawn(&Command::new("sleep").arg("100"))?;
        weft::fiber::yield_now()?;
        let echo = pm.spawn(&Command::new("echo").arg("late").stdout(Stdio::Pipe))?;
        Ok((sleeper, echo))
    });
    let (sleeper, echo) = child.unwrap();
    // The run killed both on its way out: the echo before it ever ran.
    assert_eq!(
        sleeper.try_wait().unwrap(),
        Some(ExitStatus::Signaled(SIGKILL))
    );
    assert_eq!(sleeper.wait().unwrap(), ExitStatus::Signaled(SIGKILL));
    assert_eq!(echo.stdout().unwrap().read_all().unwrap(), "");
    assert_eq!(echo.wait().unwrap(), ExitStatus::Signaled(SIGKILL));
    assert!(programs.running().is_empty());
    assert_eq!(
        trace,
        [
            "process: spawn sleep 100",
            "process: spawn echo late",
            // The echo was queued to start; the sleeper's cancelled sleep
            // queues it behind.
            "process: echo killed by signal 9",
            "process: sleep killed by signal 9",
        ]
    );
}

#[test]
fn a_process_waiting_forever_is_named_in_a_deadlock() {
    let err = Config::new()
        .run(|env| {
            let pm = env.process_mgr();
            let child = pm.spawn(&Command::new("cat").stdin(Stdio::Pipe))?;
            // Waiting without closing cat's stdin: nothing can happen.
            child.wait()
        })
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Deadlock);
    let msg = err.to_string();
    assert!(
        msg.contains("\"process 2 (cat)\" waiting on reading a mock pipe"),
        "{msg}"
    );
}

#[test]
fn children_of_a_domain_share_the_worlds_programs() {
    let programs = Programs::new();
    programs.register("whoami", |p| {
        p.stdout()
            .write_all(format!("pid {}", p.pid()).as_bytes())?;
        Ok(ExitStatus::Exited(0))
    });
    Config::new()
        .programs(programs)
        .run(|env| {
            let pm = env.process_mgr();
            assert_eq!(pm.output_string(Command::new("whoami"))?, "pid 2");
            let pm2 = pm.clone();
            let out = env
                .domain_mgr()
                .run(move || pm2.output_string(Command::new("whoami")))?;
            assert_eq!(out, "pid 3");
            Switch::run(|sw| {
                // Many at once, each with its own pipes.
                for i in 0..20 {
                    let pm = &pm;
                    sw.fork(move || {
                        let out = pm.output_string(Command::new("echo").arg(i.to_string()))?;
                        assert_eq!(out, format!("{i}\n"));
                        Ok(())
                    });
                }
                Ok(())
            })
        })
        .unwrap();
}
