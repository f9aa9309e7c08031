//! Running the built binary with its own `LLXPRT_HOME`, stdin and a time limit.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Held by tests that sign in to Codex: its loopback listener may only use ports 1455 and 1457
/// (the provider's allow-list), so two such sign-ins at once are all that can run.
pub(crate) static CODEX_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let mut command = llxprt(home);
    command.args(args);
    run_command(command, stdin)
}

/// Runs `llxprt --sandbox ARGS` with `home` as its (kept) home and `stdin` piped in.
pub(crate) fn sandbox(home: &Path, args: &[&str], stdin: &str) -> Run {
    let mut command = llxprt(home);
    command.arg("--sandbox").args(args);
    run_command(command, stdin)
}

/// Runs a prepared [`llxprt`] command with `stdin` piped in, killing it at [`LIMIT`]; fails
/// the test if it panicked.
pub(crate) fn run_command(mut command: Command, stdin: &str) -> Run {
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut child = command
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

/// A running `llxprt` (stdin not a terminal) whose input is written line by line while its
/// output is read, for conversations that depend on what it printed. Killed when dropped.
pub(crate) struct Interactive {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
    seen: String,
}

impl Interactive {
    /// Starts a prepared [`llxprt`] command.
    pub(crate) fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let (lines, stdout) = std::sync::mpsc::channel();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in std::io::BufRead::lines(out) {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Self {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr: Some(stderr),
            seen: String::new(),
        }
    }

    /// Types one line.
    pub(crate) fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("input is still open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Reads printed lines until one satisfies `wanted`, and returns it.
    pub(crate) fn line_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} within {LIMIT:?}; printed so far:\n{}", self.seen),
            }
        }
    }

    /// Closes the input and waits for the end; returns everything printed.
    pub(crate) fn finish(mut self) -> Run {
        drop(self.stdin.take());
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "llxprt did not finish within {LIMIT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(5)) {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        let stderr = self.stderr.take().unwrap().join().unwrap();
        assert!(!stderr.contains("panicked"), "llxprt panicked:\n{stderr}");
        Run {
            status,
            stdout: std::mem::take(&mut self.seen),
            stderr,
        }
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
