//! Conformance: running child processes — the Eio README examples, output
//! capture, exit codes and signals, environment and working directory,
//! standard streams, spawn failures. Runs on every backend: under the mock,
//! programs are its built-ins (`echo`, `cat`, `tr`, `sort`, `sleep`, `env`,
//! `pwd`, ...) plus the `sh` below.

use std::io::{BufRead, BufReader, Write};

use rstest::rstest;
use weft::flow::{self, Sink, Source};
use weft::mock::{Invocation, Programs};
use weft::process::{Command, ExitStatus, ProcessError, Stdio, SIGKILL, SIGTERM};
use weft::{Backend, Env, ErrorKind, Switch};

fn argv(args: &[&str]) -> Command<'static> {
    Command::from_argv(args).unwrap()
}

/// Runs `main` on `backend`; under the mock, with [`mock_sh`] as `sh`.
fn run<T>(backend: Backend, main: impl FnOnce(&Env) -> weft::Result<T>) -> weft::Result<T> {
    match backend {
        Backend::Mock => {
            let programs = Programs::new();
            programs.register("sh", mock_sh);
            weft::mock::Config::new().programs(programs).run(main)
        }
        real => weft::run_with(real, main),
    }
}

/// The mock world's `sh` for this file: it knows exactly the scripts the
/// cases below give `sh -c` (where no built-in program does the job), and
/// refuses any other.
fn mock_sh(p: &Invocation) -> weft::Result<ExitStatus> {
    let [flag, script] = p.args() else {
        p.complain("sh: the mock sh takes -c SCRIPT");
        return Ok(ExitStatus::Exited(2));
    };
    assert_eq!(flag, "-c");
    if let Some(code) = script.strip_prefix("exit ") {
        return Ok(ExitStatus::Exited(code.parse().unwrap()));
    }
    match script.as_str() {
        "kill -9 $$" => {
            p.raise(SIGKILL)?;
            unreachable!("SIGKILL ends the process");
        }
        "echo $$" => p.stdout().write_all(format!("{}\n", p.pid()).as_bytes())?,
        "echo out; echo err >&2" => {
            p.stdout().write_all(b"out\n")?;
            p.stderr().write_all(b"err\n")?;
        }
        other => {
            p.complain(&format!("sh: the mock sh does not know {other:?}"));
            return Ok(ExitStatus::Exited(2));
        }
    }
    Ok(ExitStatus::Exited(0))
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn readme_echo_hello(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        proc_mgr.run(&["echo", "hello"])
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn readme_tr_reads_stdin_from_a_string_source(#[case] backend: Backend) {
    run(backend, |env| {
        let out = flow::buffer_sink();
        let tr = argv(&["tr", "a-z", "A-Z"])
            .stdin_from(flow::string_source("One two three\n"))
            .stdout_to(&out);
        env.process_mgr().run_with(tr)?;
        assert_eq!(out.contents_string(), "ONE TWO THREE\n");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn readme_parse_out_a_line(#[case] backend: Backend) {
    run(backend, |env| {
        let line = env
            .process_mgr()
            .parse_out(argv(&["echo", "hello"]), 1024, |r| r.line())?;
        assert_eq!(line, "hello");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn readme_exit_3_names_the_command(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        let err = proc_mgr.run(&["sh", "-c", "exit 3"]).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::Exited(3)));
        assert_eq!(
            err.contexts().collect::<Vec<_>>(),
            [r#"running command: sh -c "exit 3""#]
        );
        let err = proc_mgr
            .parse_out(argv(&["sh", "-c", "exit 3"]), 1024, |r| r.take_all())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"process: exited with code 3, running command: sh -c "exit 3""#
        );
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn output_captures_stdout(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        let cmd = argv(&["echo", "-ne", "a\\nb"]);
        assert_eq!(proc_mgr.output(cmd)?, b"a\nb");
        // `output` captures stdout whatever the command said about it.
        let cmd = argv(&["echo", "captured"]).stdout(Stdio::Null);
        assert_eq!(proc_mgr.output_string(cmd)?, "captured\n");
        let cmd = argv(&["echo", "-ne", "\\0377"]);
        let err = proc_mgr.output_string(cmd).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidInput, "{err}");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn exit_codes_are_reported(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        for code in [0, 1, 2, 42, 255] {
            let cmd = argv(&["sh", "-c", &format!("exit {code}")]);
            let status = proc_mgr.status(cmd)?;
            assert_eq!(status, ExitStatus::Exited(code));
            assert_eq!(status.success(), code == 0);
            assert_eq!(status.code(), Some(code));
        }
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_signal_death_is_reported(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        let status = proc_mgr.status(argv(&["sh", "-c", "kill -9 $$"]))?;
        assert_eq!(status, ExitStatus::Signaled(9));
        assert_eq!(status.signal(), Some(9));
        let err = proc_mgr.run(&["sh", "-c", "kill -9 $$"]).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::Signaled(9)));
        assert_eq!(
            err.to_string(),
            r#"process: killed by signal 9, running command: sh -c "kill -9 $$""#
        );
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn signal_and_kill_a_running_child(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        let child = proc_mgr.spawn(&argv(&["sleep", "100"]))?;
        assert_eq!(child.try_wait()?, None);
        child.signal(SIGTERM)?;
        assert_eq!(child.wait()?, ExitStatus::Signaled(SIGTERM));
        // Once reaped, signalling is a no-op and the status stays.
        child.kill()?;
        assert_eq!(child.wait()?, ExitStatus::Signaled(SIGTERM));
        assert_eq!(child.try_wait()?, Some(ExitStatus::Signaled(SIGTERM)));

        // One fiber waits while another kills.
        let child = proc_mgr.spawn(&argv(&["sleep", "100"]))?;
        let (status, ()) = weft::fiber::pair(|| child.wait(), || child.kill())?;
        assert_eq!(status, ExitStatus::Signaled(SIGKILL));
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn pid_is_the_childs(#[case] backend: Backend) {
    run(backend, |env| {
        let cmd = argv(&["sh", "-c", "echo $$"]).stdout(Stdio::Pipe);
        let child = env.process_mgr().spawn(&cmd)?;
        let out = child.stdout().unwrap().read_all()?;
        assert_eq!(out.trim(), child.pid().to_string());
        assert!(child.wait()?.success());
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn environment_is_set_removed_and_cleared(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        let cmd = argv(&["env"])
            .env("WEFT_A", "one two")
            .env("WEFT_B", "x")
            .env_remove("WEFT_B")
            .env_remove("HOME");
        let out = proc_mgr.output_string(cmd)?;
        let vars: Vec<&str> = out.lines().collect();
        assert!(vars.contains(&"WEFT_A=one two"), "{out}");
        assert!(!vars.iter().any(|v| v.starts_with("WEFT_B=")), "{out}");
        assert!(!vars.iter().any(|v| v.starts_with("HOME=")), "{out}");
        // The rest of the parent's environment is passed on.
        assert!(vars.iter().any(|v| v.starts_with("PATH=")), "{out}");

        let cmd = argv(&["env"]).env_clear().env("ONLY", "this");
        assert_eq!(proc_mgr.output_string(cmd)?, "ONLY=this\n");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn working_directory(#[case] backend: Backend) {
    // Per backend: the cases run in parallel. Under the mock, /tmp is the
    // in-memory one.
    let tmp = match backend {
        Backend::Mock => std::path::PathBuf::from("/tmp"),
        _ => std::env::temp_dir(),
    };
    let dir = tmp.join(format!("weft-proc-cwd-{}-{backend:?}", std::process::id()));
    let link = tmp.join(format!(
        "weft-proc-cwd-link-{}-{backend:?}",
        std::process::id()
    ));
    run(backend, |env| {
        let (dir_s, link_s) = (dir.to_str().unwrap(), link.to_str().unwrap());
        (env.fs() / dir_s).mkdir(0o755)?;
        (env.fs() / dir_s / "file").save("", weft::fs::Create::Exclusive(0o644))?;
        (env.fs() / link_s).symlink(dir_s)?;
        let canonical = match backend {
            Backend::Mock => dir.clone(),
            _ => dir.canonicalize().unwrap(),
        };
        let proc_mgr = env.process_mgr();
        let pwd = proc_mgr.output_string(argv(&["pwd", "-P"]).current_dir("/"))?;
        assert_eq!(pwd, "/\n");
        let pwd = proc_mgr.output_string(argv(&["pwd", "-P"]).current_dir(&dir))?;
        assert_eq!(pwd.trim_end(), canonical.to_str().unwrap());
        // Symlinks in the path are followed.
        let pwd = proc_mgr.output_string(argv(&["pwd", "-P"]).current_dir(&link))?;
        assert_eq!(pwd.trim_end(), canonical.to_str().unwrap());

        for bad in [dir.join("does-not-exist"), dir.join("file")] {
            let err = proc_mgr
                .run_with(argv(&["pwd"]).current_dir(&bad))
                .unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::SpawnFailed));
        }
        (env.fs() / link_s).unlink()?;
        (env.fs() / dir_s).rmtree()
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn stdio_null_and_sinks(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        // stdin from /dev/null: `cat` sees end of file at once.
        let cat = argv(&["cat"]).stdin(Stdio::Null);
        assert_eq!(proc_mgr.output_string(cat)?, "");

        let both = "echo out; echo err >&2";
        let cmd = argv(&["sh", "-c", both]).stderr(Stdio::Null);
        assert_eq!(proc_mgr.output_string(cmd)?, "out\n");

        let (out, err) = (flow::buffer_sink(), flow::buffer_sink());
        let cmd = argv(&["sh", "-c", both]).stdout_to(&out).stderr_to(&err);
        proc_mgr.run_with(cmd)?;
        assert_eq!(out.contents_string(), "out\n");
        assert_eq!(err.contents_string(), "err\n");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn pipes_are_flows_and_std_io(#[case] backend: Backend) {
    run(backend, |env| {
        let cmd = argv(&["cat"]).stdin(Stdio::Pipe).stdout(Stdio::Pipe);
        let mut child = env.process_mgr().spawn(&cmd)?;
        assert!(child.stderr().is_none());
        let stdin = child.take_stdin().unwrap();
        stdin.write_all(b"flow line\n")?;
        writeln!(&stdin, "std line")?;
        stdin.close()?;
        let lines: Vec<String> = BufReader::new(child.stdout().unwrap())
            .lines()
            .collect::<Result<_, _>>()?;
        assert_eq!(lines, ["flow line", "std line"]);
        assert!(child.wait()?.success());
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn large_data_flows_both_ways_at_once(#[case] backend: Backend) {
    // Far more than a pipe holds: stdin is written while stdout is read.
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    run(backend, |env| {
        let out = flow::buffer_sink();
        let cat = argv(&["cat"])
            .stdin_from(flow::string_source(data.clone()))
            .stdout_to(&out);
        env.process_mgr().run_with(cat)?;
        assert!(out.contents() == data, "cat gave back what it was given");

        // The same with the pipes of a spawned child, in two fibers.
        let cmd = argv(&["cat"]).stdin(Stdio::Pipe).stdout(Stdio::Pipe);
        let mut child = env.process_mgr().spawn(&cmd)?;
        let stdin = child.take_stdin().unwrap();
        let mut got = Vec::new();
        Switch::run(|sw| {
            sw.fork(|| {
                stdin.write_all(&data)?;
                stdin.close()
            });
            child.stdout().unwrap().read_to_end(&mut got)?;
            Ok(())
        })?;
        assert!(got == data);
        assert!(child.wait()?.success());
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_child_that_ignores_its_input_is_fine(#[case] backend: Backend) {
    run(backend, |env| {
        let big = vec![b'x'; 1 << 20];
        let cmd = argv(&["true"]).stdin_from(flow::string_source(big));
        env.process_mgr().run_with(cmd)
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_missing_program_fails_to_spawn(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        let cmd = argv(&["weft-no-such-program", "--flag"]);
        let err = proc_mgr.spawn(&cmd).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::SpawnFailed));
        assert_eq!(
            err.contexts().collect::<Vec<_>>(),
            ["spawning command: weft-no-such-program --flag"]
        );
        let source = err
            .source_error()
            .and_then(|e| e.downcast_ref::<std::io::Error>());
        assert_eq!(
            source.map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound),
            "{err:?}"
        );
        if backend != Backend::Mock {
            assert!(
                err.raw_os_error().is_some(),
                "the OS error is kept: {err:?}"
            );
        }

        let err = proc_mgr.run(&["weft-no-such-program"]).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::SpawnFailed));
        assert!(err.to_string().contains("weft-no-such-program"), "{err}");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn spawn_refuses_flows_and_empty_argv(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        let cmd = argv(&["cat"]).stdin_from(flow::string_source("x"));
        let err = proc_mgr.spawn(&cmd).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidInput);
        assert!(err.to_string().contains("spawn_in"), "{err}");
        let err = proc_mgr.run(&[]).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidInput);
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn spawn_in_pumps_flows_in_the_callers_switch(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        let out = flow::buffer_sink();
        let status = Switch::run(|sw| {
            let cmd = argv(&["sort"])
                .stdin_from(flow::string_source("b\nc\na\n"))
                .stdout_to(&out);
            let child = proc_mgr.spawn_in(sw, cmd)?;
            assert!(child.stdin().is_none() && child.stdout().is_none());
            child.wait()
        })?;
        assert!(status.success());
        // The switch joined the copying fibers: the output is complete.
        assert_eq!(out.contents_string(), "a\nb\nc\n");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn children_can_be_spawned_in_another_domain(#[case] backend: Backend) {
    run(backend, |env| {
        let proc_mgr = env.process_mgr();
        let out = env
            .domain_mgr()
            .run(move || proc_mgr.output_string(argv(&["echo", "Hello from another domain"])))?;
        assert_eq!(out, "Hello from another domain\n");
        Ok(())
    })
    .unwrap();
}
