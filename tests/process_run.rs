//! Conformance: running child processes — the Eio README examples, output
//! capture, exit codes and signals, environment and working directory,
//! standard streams, spawn failures. Runs on every backend with a process
//! manager (the mock's scripted processes are still to come).

use std::io::{BufRead, BufReader, Write};

use rstest::rstest;
use weft::flow::{self, Sink, Source};
use weft::process::{Command, ExitStatus, ProcessError, Stdio, SIGKILL, SIGTERM};
use weft::{Backend, ErrorKind, Switch};

fn argv(args: &[&str]) -> Command<'static> {
    Command::from_argv(args).unwrap()
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn readme_echo_hello(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let proc_mgr = env.process_mgr();
        proc_mgr.run(&["echo", "hello"])
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn readme_tr_reads_stdin_from_a_string_source(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn readme_parse_out_a_line(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn readme_exit_3_names_the_command(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn output_captures_stdout(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let proc_mgr = env.process_mgr();
        let cmd = argv(&["printf", "a\\nb"]);
        assert_eq!(proc_mgr.output(cmd)?, b"a\nb");
        // `output` captures stdout whatever the command said about it.
        let cmd = argv(&["echo", "captured"]).stdout(Stdio::Null);
        assert_eq!(proc_mgr.output_string(cmd)?, "captured\n");
        let cmd = argv(&["printf", "\\377"]);
        let err = proc_mgr.output_string(cmd).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidInput, "{err}");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn exit_codes_are_reported(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn a_signal_death_is_reported(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn signal_and_kill_a_running_child(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn pid_is_the_childs(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn environment_is_set_removed_and_cleared(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let proc_mgr = env.process_mgr();
        let show = "echo \"${WEFT_A-unset} ${WEFT_B-unset} ${HOME-unset}\"";
        let cmd = argv(&["sh", "-c", show])
            .env("WEFT_A", "one two")
            .env("WEFT_B", "x")
            .env_remove("WEFT_B")
            .env_remove("HOME");
        assert_eq!(proc_mgr.output_string(cmd)?, "one two unset unset\n");

        let cmd = argv(&["/usr/bin/env"]).env_clear().env("ONLY", "this");
        assert_eq!(proc_mgr.output_string(cmd)?, "ONLY=this\n");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn working_directory(#[case] backend: Backend) {
    // Per backend: the cases run in parallel.
    let dir =
        std::env::temp_dir().join(format!("weft-proc-cwd-{}-{backend:?}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let canonical = dir.canonicalize().unwrap();
    weft::run_with(backend, |env| {
        let proc_mgr = env.process_mgr();
        let pwd = proc_mgr.output_string(argv(&["pwd", "-P"]).current_dir("/"))?;
        assert_eq!(pwd, "/\n");
        let pwd = proc_mgr.output_string(argv(&["pwd", "-P"]).current_dir(&dir))?;
        assert_eq!(pwd.trim_end(), canonical.to_str().unwrap());

        let missing = dir.join("does-not-exist");
        let err = proc_mgr
            .run_with(argv(&["pwd"]).current_dir(&missing))
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::SpawnFailed));
        Ok(())
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn stdio_null_and_sinks(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn pipes_are_flows_and_std_io(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn large_data_flows_both_ways_at_once(#[case] backend: Backend) {
    // Far more than a pipe holds: stdin is written while stdout is read.
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    weft::run_with(backend, |env| {
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
fn a_child_that_ignores_its_input_is_fine(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let big = vec![b'x'; 1 << 20];
        let cmd = argv(&["true"]).stdin_from(flow::string_source(big));
        env.process_mgr().run_with(cmd)
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn a_missing_program_fails_to_spawn(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let proc_mgr = env.process_mgr();
        let cmd = argv(&["weft-no-such-program", "--flag"]);
        let err = proc_mgr.spawn(&cmd).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::SpawnFailed));
        assert_eq!(
            err.contexts().collect::<Vec<_>>(),
            ["spawning command: weft-no-such-program --flag"]
        );
        assert!(
            err.raw_os_error().is_some(),
            "the OS error is kept: {err:?}"
        );

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
fn spawn_refuses_flows_and_empty_argv(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn spawn_in_pumps_flows_in_the_callers_switch(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
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
fn children_can_be_spawned_in_another_domain(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let proc_mgr = env.process_mgr();
        let out = env
            .domain_mgr()
            .run(move || proc_mgr.output_string(argv(&["echo", "Hello from another domain"])))?;
        assert_eq!(out, "Hello from another domain\n");
        Ok(())
    })
    .unwrap();
}
