//! Running the built binary with its own `LLXPRT_HOME`, stdin and a time limit; and [`Lab`],
//! children of the binary talking to a provider simulator in the test process.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use llxprt::compose::{compose, BrowserChoice, Composition, Services};
use llxprt_application::ports::{Browser, BrowserError, PromptError, UserPrompt};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Secret, Token};
use llxprt_simulator::sandbox::settings_overrides;
use llxprt_simulator::{Consent, Counters, Simulator, SimulatorConfig, SimulatorHandle};
use llxprt_store_file::FileTokenStore;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

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

    /// This run, once the test has failed if `what` (the program run) panicked.
    fn unless_panicked(self, what: &str) -> Self {
        assert!(
            !self.stderr.contains("panicked"),
            "{what} panicked:\n{}",
            self.stderr
        );
        self
    }
}

/// Runs `llxprt ARGS` with `stdin` piped in (so not a terminal), killing it at [`LIMIT`].
pub(crate) fn run(home: &Path, args: &[&str], stdin: &str) -> Run {
    run_with(home, args, &[], stdin)
}

/// [`run`] with `env` added to the child's environment.
pub(crate) fn run_with(home: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let mut command = llxprt(home);
    command.args(args).envs(env.iter().copied());
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
    Run {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
    .unless_panicked(&format!("llxprt {args:?}"))
}

// ---------------------------------------------------------------------------------------------
// Against the provider simulator: the built binary as child processes, over real HTTP.

/// How long one step of a child may take (an answer, a question, the end of its run). Reaching
/// it means the program hung; it is far above what a loaded machine needs.
pub(crate) const STEP: Duration = Duration::from_secs(60);

/// The port Codex falls back to, fixed in the binary; the simulator accepts it too.
const CODEX_FALLBACK_PORT: u16 = 1457;

/// One test's world: a provider simulator in this process, a home for the children, and every
/// line the children printed (to check that none holds a secret).
pub(crate) struct Lab {
    pub(crate) sim: SimulatorHandle,
    home: tempfile::TempDir,
    overrides: Vec<(String, String)>,
    printed: Arc<Mutex<Vec<String>>>,
}

impl Lab {
    /// Starts the simulator; Codex's callback goes to a port that was free a moment ago, so
    /// tests running at once do not fight over 1455.
    pub(crate) async fn start() -> Lab {
        let codex_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sim = Simulator::start_with(SimulatorConfig {
            codex_callback_ports: vec![codex_port, CODEX_FALLBACK_PORT],
            ..SimulatorConfig::default()
        })
        .await
        .unwrap();
        let mut overrides = settings_overrides(&sim);
        overrides.push((
            "providers.codex.oauth.callback_port".to_owned(),
            codex_port.to_string(),
        ));
        Lab {
            sim,
            home: tempfile::tempdir().unwrap(),
            overrides,
            printed: Arc::default(),
        }
    }

    pub(crate) fn home(&self) -> &Path {
        self.home.path()
    }

    /// `llxprt ARGS` in this lab's home, every provider pointed at the simulator with `--set`,
    /// with `env` added to the child's environment only. `BROWSER=true` with a display makes
    /// every flow "open" its page and wait, and the test plays the browser from the printed URL.
    pub(crate) fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        self.command_in(self.home(), args, env)
    }

    /// Adds `--set NAME=VALUE` to every child's command line and to [`Lab::services`].
    pub(crate) fn with_setting(mut self, name: &str, value: &str) -> Lab {
        self.overrides.push((name.to_owned(), value.to_owned()));
        self
    }

    /// [`Lab::command`] in another home (a second machine of the same user or team).
    pub(crate) fn command_in(&self, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = llxprt(home);
        for name in [
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "WAYLAND_DISPLAY",
            "SSH_CONNECTION",
            "SSH_TTY",
        ] {
            command.env_remove(name);
        }
        command
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("DISPLAY", ":0")
            .env("BROWSER", "true");
        for (name, value) in &self.overrides {
            command.arg("--set").arg(format!("{name}={value}"));
        }
        command.args(args).envs(env.iter().copied());
        command
    }

    /// Starts `llxprt ARGS` with piped stdin (line mode unless ARGS say otherwise).
    pub(crate) fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        self.spawn_in(self.home(), args, env)
    }

    /// [`Lab::spawn`] in another home.
    pub(crate) fn spawn_in(&self, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut process = tokio::process::Command::from(self.command_in(home, args, env))
            .kill_on_drop(true)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let lines: Lines = Arc::default();
        let readers = vec![
            read_lines(process.stdout.take().unwrap(), 0, &lines, &self.printed),
            read_lines(process.stderr.take().unwrap(), 1, &lines, &self.printed),
        ];
        Child {
            what: format!("llxprt {args:?}"),
            nobrowser: args.contains(&"--nobrowser"),
            stdin: process.stdin.take(),
            process,
            lines,
            seen: [0, 0],
            readers,
            end: None,
        }
    }

    /// A line-mode session (with `env`) in which the profile `team` over `buckets` of
    /// `provider` is saved and loaded.
    pub(crate) async fn team(
        &self,
        provider: &str,
        buckets: &[&str],
        env: &[(&str, &str)],
    ) -> Child {
        let mut child = self.spawn(&[], env);
        child
            .command(&format!("/provider {provider}"), "Provider set")
            .await;
        child
            .command(
                &format!("/profile save model team {}", buckets.join(" ")),
                "Profile team saved",
            )
            .await;
        child
            .command("/profile load team", "Profile team loaded")
            .await;
        child
    }

    /// Runs `llxprt ARGS` with `input` as its lines and waits for its end.
    pub(crate) async fn run(&self, args: &[&str], env: &[(&str, &str)], input: &[&str]) -> Run {
        let mut child = self.spawn(args, env);
        for line in input {
            child.send(line).await;
        }
        child.finish().await
    }

    /// [`Lab::run`] in another home.
    pub(crate) async fn run_in(
        &self,
        home: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        input: &[&str],
    ) -> Run {
        let mut child = self.spawn_in(home, args, env);
        for line in input {
            child.send(line).await;
        }
        child.finish().await
    }

    /// The token store the children use.
    pub(crate) fn store(&self) -> FileTokenStore {
        FileTokenStore::new(self.home().join("oauth"))
    }

    /// The services over this lab's home, wired by the binary's own factory from the same
    /// settings the children get, with `browser` opening sign-in pages.
    pub(crate) fn services(&self, browser: Arc<dyn Browser>) -> Services {
        compose(Composition {
            overrides: self.overrides.clone(),
            browser: BrowserChoice::Given(browser),
            loopback: true,
            callback_timeout: Some(STEP),
            ..Composition::new(self.home())
        })
        .unwrap()
    }

    /// Signs `bucket` of `provider` in here in the test process, as the simulated account of
    /// the same name, and saves the token where the children look for it.
    pub(crate) async fn seed(&self, provider: OAuthProvider, bucket: &str) -> Token {
        self.sim.set_login_account(provider, bucket);
        let user = Arc::new(ConsentingUser {
            sim: self.sim.clone(),
            pasteboard: Mutex::default(),
        });
        let services = self.services(user.clone());
        tokio::time::timeout(
            STEP,
            services
                .auth
                .login(&bucket_id(provider, bucket), user.as_ref()),
        )
        .await
        .expect("the sign-in finished in time")
        .expect("the sign-in succeeded")
    }

    /// As [`Lab::seed`], but the access token is already expired (its refresh token is good).
    pub(crate) async fn seed_expired(&self, provider: OAuthProvider, bucket: &str) -> Token {
        self.sim.set_token_lifetime(provider, 0);
        let token = self.seed(provider, bucket).await;
        self.sim.set_token_lifetime(provider, 3600);
        token
    }

    pub(crate) fn counters(&self, provider: OAuthProvider, account: &str) -> Counters {
        self.sim.counters(provider, account)
    }

    /// No line any child printed holds a token, code, verifier or key the simulator issued.
    pub(crate) fn assert_no_secret_leaked(&self) {
        let secrets = self.sim.issued_secrets();
        assert!(!secrets.is_empty(), "the simulator issued nothing to check");
        let printed = self.printed.lock().unwrap();
        assert!(!printed.is_empty(), "no child printed anything");
        for line in printed.iter() {
            for secret in &secrets {
                assert!(
                    !line.contains(secret.expose()),
                    "an issued secret leaked into: {line:?}"
                );
            }
        }
    }
}

pub(crate) fn bucket_id(provider: OAuthProvider, bucket: &str) -> BucketId {
    BucketId::new(provider, BucketName::parse(bucket).unwrap())
}

/// The reply the simulator gives to `text` from `account` of `provider` (`anthropic`,
/// `gemini`, `qwen`, `codex` or `openai`).
pub(crate) fn reply(provider: &str, account: &str, text: &str) -> String {
    format!("[simulated {provider}/{account}] you said: {text}")
}

/// Every line of a child so far: (0 = stdout, 1 = stderr, the line).
type Lines = Arc<Mutex<Vec<(usize, String)>>>;

fn read_lines(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    stream: usize,
    lines: &Lines,
    printed: &Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    let (lines, printed) = (lines.clone(), printed.clone());
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(pipe);
        let mut bytes = Vec::new();
        // Decoded lossily, so that a stray byte neither stops the reading nor hides what follows
        // from the checks for secrets.
        while reader.read_until(b'\n', &mut bytes).await.unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&bytes);
            let line = text.strip_suffix('\n').unwrap_or(&text);
            let line = line.strip_suffix('\r').unwrap_or(line).to_owned();
            bytes.clear();
            printed.lock().unwrap().push(line.clone());
            lines.lock().unwrap().push((stream, line));
        }
    })
}

/// A running `llxprt`: the test types its lines and reads what it prints as it goes. Each step
/// (a wait, the end) may take [`STEP`]; [`Child::within`] also bounds the whole run. Killed when
/// dropped.
pub(crate) struct Child {
    what: String,
    /// Started with `--nobrowser`: a browser sign-in asks for the redirect to be pasted.
    nobrowser: bool,
    process: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    lines: Lines,
    /// Per stream, how many lines [`Child::line_where`] has already gone past.
    seen: [usize; 2],
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// When the whole run must be over, if [`Child::within`] said.
    end: Option<Instant>,
}

impl Child {
    /// Bounds the whole run, from now to its end, by `limit`.
    pub(crate) fn within(mut self, limit: Duration) -> Self {
        self.end = Some(Instant::now() + limit);
        self
    }

    /// When a step that starts now must be over.
    fn deadline(&self) -> Instant {
        let step = Instant::now() + STEP;
        self.end.map_or(step, |end| end.min(step))
    }

    /// Types one line.
    pub(crate) async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Waits for a line (on stdout or stderr) that satisfies `wanted` and comes after the lines
    /// earlier waits matched, and returns it. Kills the child and fails at the deadline.
    pub(crate) async fn line_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = self.deadline();
        loop {
            let found = {
                let lines = self.lines.lock().unwrap();
                let mut counted = [0, 0];
                let mut found = None;
                for (stream, line) in lines.iter() {
                    counted[*stream] += 1;
                    if counted[*stream] > self.seen[*stream] && wanted(line) {
                        found = Some((*stream, counted[*stream], line.clone()));
                        break;
                    }
                }
                found
            };
            if let Some((stream, position, line)) = found {
                self.seen[stream] = position;
                return line;
            }
            if Instant::now() > deadline {
                let _ = self.process.kill().await;
                panic!(
                    "{} never printed {what}; it printed:\n{}",
                    self.what,
                    self.printed()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Types a line and waits for a line containing `expect`, which it returns.
    pub(crate) async fn command(&mut self, line: &str, expect: &str) -> String {
        self.send(line).await;
        self.wait_for(expect).await
    }

    /// [`Child::line_where`] for a line containing `needle`.
    pub(crate) async fn wait_for(&mut self, needle: &str) -> String {
        self.line_where(&format!("{needle:?}"), |l| l.contains(needle))
            .await
    }

    /// Everything printed so far, stdout and stderr interleaved as they arrived.
    pub(crate) fn printed(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let lines: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        lines.join("\n")
    }

    /// Plays the user and the browser of a sign-in this child has just started (with
    /// `/auth P login` or a message that signs in lazily), and returns the address it printed
    /// for the user to open.
    pub(crate) async fn sign_in(&mut self, lab: &Lab, provider: OAuthProvider) -> String {
        let e = lab.sim.endpoints();
        let authorize = match provider {
            OAuthProvider::Anthropic => e.anthropic.authorize_url.clone(),
            OAuthProvider::Gemini => e.gemini.authorize_url.clone(),
            OAuthProvider::Codex => format!("{}/oauth/authorize", e.codex.issuer),
            OAuthProvider::Qwen => {
                // A device flow: opening the page with the code approves it.
                let visit = self
                    .line_where("the page to visit", |l| l.starts_with("Visit: "))
                    .await;
                let code = self
                    .line_where("the code to enter", |l| l.starts_with("Enter code: "))
                    .await;
                let visit = visit.trim_start_matches("Visit: ").to_owned();
                let code = code.trim_start_matches("Enter code: ");
                let page = lab
                    .sim
                    .browse(&format!("{visit}?user_code={code}"))
                    .await
                    .unwrap();
                assert_eq!(page.status, 200, "{}", page.body);
                return visit;
            }
        };
        let url = self
            .line_where("the authorize URL", |l| l.starts_with(&authorize))
            .await;
        match (provider, lab.sim.consent(&url).await.unwrap()) {
            (OAuthProvider::Anthropic, Consent::CodeShown(code)) => {
                self.line_where("the code question", |l| {
                    l.starts_with("Paste the authorization code:")
                })
                .await;
                self.send(code.expose()).await;
            }
            (OAuthProvider::Gemini, Consent::CodeShown(code)) => {
                // No browser here: Google's code page showed the code to paste.
                self.line_where("the code question", |l| {
                    l.starts_with("Paste the authorization code:")
                })
                .await;
                self.send(code.expose()).await;
            }
            (OAuthProvider::Gemini | OAuthProvider::Codex, Consent::Redirect(callback)) => {
                if self.nobrowser {
                    // No browser opened: the user pastes where the browser was sent.
                    self.line_where("the redirect question", |l| {
                        l.starts_with("Paste the redirect URL")
                    })
                    .await;
                    self.send(callback.expose()).await;
                } else {
                    // The browser lands on the child's own callback server.
                    let page = lab.sim.browse(callback.expose()).await.unwrap();
                    assert_eq!(page.status, 200, "{}", page.body);
                }
            }
            (_, other) => panic!("{provider}'s page did not end as its sign-in does: {other:?}"),
        }
        url
    }

    /// `/auth P login BUCKET` through this child, played to its end, as whichever account the
    /// simulator signs in; returns the address printed for the user to open.
    pub(crate) async fn login(
        &mut self,
        lab: &Lab,
        provider: OAuthProvider,
        bucket: &str,
    ) -> String {
        if bucket == "default" {
            self.send(&format!("/auth {provider} login")).await;
        } else {
            self.send(&format!("/auth {provider} login {bucket}")).await;
        }
        let url = self.sign_in(lab, provider).await;
        self.wait_for(&format!("Logged in to {provider}/{bucket}"))
            .await;
        url
    }

    /// Types `text` as a message and waits for the reply from `account` of `provider`.
    pub(crate) async fn ask(&mut self, text: &str, provider: &str, account: &str) {
        self.send(text).await;
        self.wait_for(&reply(provider, account, text)).await;
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub(crate) async fn kill(mut self) {
        self.process.kill().await.unwrap();
    }

    /// Ends the input and waits for the child to exit. Kills it and fails at the deadline.
    pub(crate) async fn finish(mut self) -> Run {
        drop(self.stdin.take());
        let deadline = tokio::time::Instant::from_std(self.deadline());
        let status = match tokio::time::timeout_at(deadline, self.process.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = self.process.kill().await;
                panic!(
                    "{} did not finish; it printed:\n{}",
                    self.what,
                    self.printed()
                );
            }
        };
        for reader in self.readers.drain(..) {
            reader.await.unwrap();
        }
        let text = |wanted: usize| {
            let lines = self.lines.lock().unwrap();
            let mut text = String::new();
            for (_, line) in lines.iter().filter(|(stream, _)| *stream == wanted) {
                text.push_str(line);
                text.push('\n');
            }
            text
        };
        Run {
            status,
            stdout: text(0),
            stderr: text(1),
        }
        .unless_panicked(&self.what)
    }
}

/// Plays, in the test process, a user whose browser consents to every page: it follows
/// redirects to the flow's callback, approves device codes, and pastes the code a page showed.
struct ConsentingUser {
    sim: SimulatorHandle,
    pasteboard: Mutex<Option<Secret>>,
}

#[async_trait]
impl Browser for ConsentingUser {
    async fn open(&self, url: &str) -> Result<(), BrowserError> {
        let failed = |e: &dyn std::fmt::Display| BrowserError::LaunchFailed(e.to_string());
        match self.sim.consent(url).await.map_err(|e| failed(&e))? {
            Consent::Redirect(callback) => {
                self.sim
                    .browse(callback.expose())
                    .await
                    .map_err(|e| failed(&e))?;
            }
            Consent::CodeShown(code) => *self.pasteboard.lock().unwrap() = Some(code),
            // A device page: visiting it approved the code.
            Consent::Page(_) => {}
        }
        Ok(())
    }
}

#[async_trait]
impl UserPrompt for ConsentingUser {
    fn show(&self, _line: &str) {}

    fn waiting(&self, _what: &str, _done: bool) {}

    async fn ask(&self, _question: &str) -> Result<String, PromptError> {
        let code = self.pasteboard.lock().unwrap().take();
        code.map(|c| c.expose().to_owned())
            .ok_or_else(|| PromptError::NoInput("no code was shown".to_owned()))
    }
}
