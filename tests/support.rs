//! Running the built binary with its own `LLXPRT_HOME`, stdin and a time limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use llxprt_adapters::sandbox;
use llxprt_adapters::simulator::{Consent, Simulator, SimulatorConfig, SimulatorHandle};

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
    run_with(home, args, &[], stdin)
}

/// [`run`] with `env` added to the child's environment.
pub(crate) fn run_with(home: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let mut child = llxprt(home)
        .args(args)
        .envs(env.iter().copied())
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

/// `--set NAME=VALUE` arguments that point every provider at `sim`, Codex's callback at
/// `codex_port`, and never open a browser.
pub(crate) fn against(sim: &SimulatorHandle, codex_port: u16) -> Vec<String> {
    let mut args = vec!["--nobrowser".to_owned()];
    let port = (
        "providers.codex.oauth.callback_port".to_owned(),
        codex_port.to_string(),
    );
    for (name, value) in sandbox::settings_overrides(sim).into_iter().chain([port]) {
        args.push("--set".to_owned());
        args.push(format!("{name}={value}"));
    }
    args
}

/// A simulator that accepts Codex's callback on `codex_port` (and on 1457, its fallback).
pub(crate) async fn simulator(codex_port: u16) -> SimulatorHandle {
    Simulator::start_with(SimulatorConfig {
        codex_callback_ports: vec![codex_port, 1457],
        ..SimulatorConfig::default()
    })
    .await
    .expect("the simulator starts")
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A running `llxprt` whose stdin the test writes line by line while reading what it prints,
/// for conversations (a login that asks for a pasted code) and for killing it mid-way.
pub(crate) struct Driven {
    child: Child,
    stdin: Option<ChildStdin>,
    printed: mpsc::Receiver<String>,
    stdout: thread::JoinHandle<String>,
    stderr: thread::JoinHandle<String>,
    deadline: Instant,
}

impl Driven {
    /// Starts `llxprt ARGS` with `env` added to its environment; all of it must be done within
    /// [`LIMIT`] times `budget`.
    pub(crate) fn start(home: &Path, args: &[String], env: &[(&str, &str)], budget: u32) -> Self {
        let mut child = llxprt(home)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let (sender, printed) = mpsc::channel();
        let relay = |pipe: Box<dyn Read + Send>, sender: mpsc::Sender<String>| {
            thread::spawn(move || {
                let mut all = String::new();
                let mut reader = BufReader::new(pipe);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    all.push_str(&text);
                    let _ = sender.send(text.trim_end().to_owned());
                    line.clear();
                }
                all
            })
        };
        Self {
            stdin: child.stdin.take(),
            stdout: relay(Box::new(child.stdout.take().unwrap()), sender.clone()),
            stderr: relay(Box::new(child.stderr.take().unwrap()), sender),
            child,
            printed,
            deadline: Instant::now() + LIMIT * budget,
        }
    }

    /// Types one line.
    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        writeln!(stdin, "{line}").expect("llxprt reads its input");
        stdin.flush().unwrap();
    }

    /// Waits for a printed line (stdout or stderr) that satisfies `wanted`, and returns it.
    pub(crate) fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.printed.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("llxprt never printed {what}");
                }
            }
        }
    }

    /// Sends SIGKILL and reaps the process.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Closes stdin (end of input) and waits for the exit.
    pub(crate) fn finish(mut self) -> Run {
        drop(self.stdin.take());
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                panic!("llxprt did not finish in time");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let run = Run {
            status,
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "llxprt panicked:\n{}",
            run.stderr
        );
        run
    }
}

/// Runs `/auth PROVIDER login [BUCKET]` in `child` (started with [`against`]) and plays the
/// user: consents in the simulator as a browser on another device would, pastes what the
/// provider showed or where the browser was sent, or approves the device code.
pub(crate) fn sign_in(
    child: &mut Driven,
    sim: &SimulatorHandle,
    runtime: &tokio::runtime::Runtime,
    provider: &str,
    bucket: Option<&str>,
) {
    let e = sim.endpoints();
    child.send(&format!("/auth {provider} login {}", bucket.unwrap_or("")));
    let consent = |child: &mut Driven, authorize_url: &str| {
        let url = child.wait_for("the authorize URL", |l| l.starts_with(authorize_url));
        child.wait_for("the question", |l| l.starts_with("Paste the"));
        match runtime.block_on(sim.consent(&url)).expect("the page loads") {
            Consent::CodeShown(pasted) | Consent::Redirect(pasted) => {
                child.send(pasted.expose());
            }
            Consent::Page(page) => panic!("consent ended on a page: {}", page.status),
        }
    };
    match provider {
        "anthropic" => consent(child, &e.anthropic.authorize_url),
        "gemini" => consent(child, &e.gemini.authorize_url),
        "codex" => consent(child, &format!("{}/oauth/authorize", e.codex.issuer)),
        "qwen" => {
            let code = child.wait_for("the device code", |l| l.starts_with("Device code: "));
            let visit = child.wait_for("the page to visit", |l| l.starts_with("Visit: "));
            let page = format!(
                "{}?user_code={}",
                visit.trim_start_matches("Visit: "),
                code.trim_start_matches("Device code: ")
            );
            runtime
                .block_on(sim.browse(&page))
                .expect("the device page loads");
        }
        other => panic!("no sign-in script for {other}"),
    }
    child.wait_for("the login", |l| {
        l.contains(&format!("Logged in to {provider}"))
    });
}
