//! Running the built binary with its own `LLXPRT_HOME`, stdin and a time limit.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Long enough for a loaded CI machine; reaching it means the program hung.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// The binary with a clean environment: `home` as `LLXPRT_HOME` and `HOME`, and none of the
/// caller's llxprt settings, provider keys or browser.
pub(crate) fn llxprt(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_llxprt"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let is_key = name.ends_with("_API_KEY") || name == "DASHSCOPE_API_KEY";
        if name.starts_with("LLXPRT_") || is_key || name == "BROWSER" {
            command.env_remove(&name);
        }
    }
    command.env("LLXPRT_HOME", home).env("HOME", home);
    command
}

/// What a finished run printed and how it ended.
pub(crate) struct Run {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Every line printed, stdout's then stderr's.
    pub(crate) fn lines(&self) -> Vec<&str> {
        self.stdout.lines().chain(self.stderr.lines()).collect()
    }

    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `llxprt ARGS` with `stdin` piped in (so not a terminal), killing it at [`LIMIT`].
pub(crate) fn run(home: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = llxprt(home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_owned();
    // The program may stop reading early (/quit): a refused write is not a failure.
    let writer = thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let read = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).expect("output is UTF-8");
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("llxprt {args:?} did not finish within {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    let run = Run {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "llxprt {args:?} panicked:\n{}",
        run.stderr
    );
    run
}
