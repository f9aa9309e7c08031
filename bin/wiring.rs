//! Wiring: builds the shell the front end drives, from the command line, the environment and
//! the settings. The only place that knows which adapter serves which port.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use llxprt_adapters::chat::{self as chat, ChatEndpoints, HttpOptions};
use llxprt_adapters::clock::LocalClock;
use llxprt_adapters::health::FileHealthStore;
use llxprt_adapters::oauth::{
    AnthropicConfig, AnthropicFlow, BrowserEnv, CodexConfig, CodexFlow, GeminiConfig, GeminiFlow,
    OAuthHttp, QwenConfig, QwenFlow, SystemBrowser,
};
use llxprt_adapters::repl::TerminalPrompt;
use llxprt_adapters::sandbox::{self, SandboxBrowser};
use llxprt_adapters::settings::FileConfigStore;
use llxprt_adapters::simulator::{Simulator, SimulatorHandle};
use llxprt_adapters::stats::FileStatsStore;
use llxprt_adapters::store::FileTokenStore;
use llxprt_application::ports::{Browser, Clock, ConfigStore, UserPrompt};
use llxprt_application::services::{
    AuthService, ChatClients, ChatService, FlowRegistry, TokenService,
};
use llxprt_application::session::{Session, SessionOptions, SessionServices};
use llxprt_application::settings::Settings;
use llxprt_application::shell::Shell;
use llxprt_domain::{ProfileName, Secret};

use crate::cli::Cli;

/// The port Codex falls back to when its callback port is busy: the only other one on the
/// provider's allow-list.
const CODEX_FALLBACK_PORT: u16 = 1457;

/// What the front end needs, and what must live as long as it runs.
pub(crate) struct Wired {
    /// The shell every front end runs lines through.
    pub(crate) shell: Arc<dyn Shell>,
    /// `$LLXPRT_HOME/history`.
    pub(crate) history: PathBuf,
    /// Sending; its statistics must be flushed before the process exits.
    pub(crate) chat: Arc<ChatService>,
    /// The sandbox's throwaway home, removed at exit.
    _sandbox_home: Option<tempfile::TempDir>,
    /// The sandbox's simulated providers, stopped at exit.
    _simulator: Option<SimulatorHandle>,
}

/// Builds everything from the command line.
pub(crate) async fn wire(cli: &Cli) -> anyhow::Result<Wired> {
    let env = process_environment();
    let (simulator, sandbox_home) = if cli.sandbox {
        let sim = Simulator::start()
            .await
            .context("could not start the simulated providers")?;
        let home = match env.get("LLXPRT_HOME") {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix("llxprt-sandbox-")
                    .tempdir()?,
            ),
        };
        (Some(sim), home)
    } else {
        (None, None)
    };
    let home = match (&sandbox_home, env.get("LLXPRT_HOME")) {
        (Some(temp), _) => temp.path().to_owned(),
        (None, Some(home)) => PathBuf::from(home),
        (None, None) => env
            .get("HOME")
            .map(|dir| PathBuf::from(dir).join(".llxprt"))
            .context("cannot find the home directory; set LLXPRT_HOME")?,
    };

    let mut overrides = simulator
        .as_ref()
        .map(sandbox::settings_overrides)
        .unwrap_or_default();
    let mut key_setting = None;
    for setting in &cli.settings {
        if setting.name.replace('_', "-") == "auth-key" {
            key_setting = Some(Secret::new(setting.value.clone()));
        } else {
            overrides.push((setting.name.clone(), setting.value.clone()));
        }
    }
    let config: Arc<dyn ConfigStore> =
        Arc::new(FileConfigStore::new(home.clone(), env.clone(), overrides));
    let settings = config.load_settings()?;
    let key = match (&cli.key, &cli.keyfile) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(path)) => Some(
            config
                .read_key_file(&path.to_string_lossy())
                .context("--keyfile")?,
        ),
        (None, None) => key_setting,
    };

    let clock: Arc<dyn Clock> = Arc::new(LocalClock::system());
    let sandbox_browser = simulator.clone().map(SandboxBrowser::new).map(Arc::new);
    let browser: Arc<dyn Browser> = match &sandbox_browser {
        Some(browser) if !cli.nobrowser => browser.clone(),
        _ => Arc::new(SystemBrowser::new(
            BrowserEnv::from_process(),
            cli.nobrowser,
        )),
    };
    let oauth_http = if cli.sandbox {
        OAuthHttp::direct()?
    } else {
        OAuthHttp::new()?
    };
    let flows = flows(&settings, &oauth_http, &browser, &clock)?;
    let store = Arc::new(FileTokenStore::new(home.join("oauth")));
    let tokens = Arc::new(TokenService::new(
        store.clone(),
        flows.clone(),
        clock.clone(),
    ));
    let auth = Arc::new(AuthService::new(store, flows));
    let chat = Arc::new(
        ChatService::new(
            tokens,
            auth.clone(),
            chat_clients(&settings, cli.sandbox)?,
            clock.clone(),
            Arc::new(FileStatsStore::new(&home)),
        )
        .with_health_store(Arc::new(FileHealthStore::new(&home))),
    );

    let session = Session::new(
        SessionServices {
            config,
            auth,
            chat: chat.clone(),
            clock,
            env,
        },
        SessionOptions {
            provider: cli.provider,
            model: cli.model.clone(),
            key,
        },
    );
    let profile = cli
        .profile
        .as_deref()
        .map(ProfileName::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--profile: {e}"))?;
    let asked_for = profile.is_some();
    if let Err(error) = session.start(profile) {
        // A profile named on the command line is what the run is about: without it, stop. A
        // broken default profile only warns, so the commands that repair it still run.
        if asked_for {
            anyhow::bail!(error);
        }
        TerminalPrompt::output_only().show_error(&format!("Error: {error}"));
    }
    let mut shell: Arc<dyn Shell> = Arc::new(session);
    if let (Some(browser), Some(sim)) = (&sandbox_browser, &simulator) {
        // A one-shot run's output is only its answer, ready for a pipe.
        let one_shot = cli.prompt.is_some() || !cli.words.is_empty();
        if !one_shot {
            TerminalPrompt::output_only().show(&format!(
                "Sandbox: every provider is simulated at {} (home {}). Type /sandbox for its controls, /help for commands.",
                sim.endpoints().root,
                home.display()
            ));
        }
        shell = Arc::new(browser.shell(shell, !cli.nobrowser));
    }
    Ok(Wired {
        shell,
        history: home.join("history"),
        chat,
        _sandbox_home: sandbox_home,
        _simulator: simulator,
    })
}

/// The environment as text; variables that are not valid Unicode are skipped (no provider
/// setting or key can be one).
fn process_environment() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn flows(
    settings: &Settings,
    http: &OAuthHttp,
    browser: &Arc<dyn Browser>,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<FlowRegistry> {
    let p = &settings.providers;
    let mut flows = FlowRegistry::new();
    flows.register(Arc::new(AnthropicFlow::new(
        AnthropicConfig {
            authorize_url: p.anthropic.oauth.authorize_url.clone(),
            token_url: p.anthropic.oauth.token_url.clone(),
            client_id: p.anthropic.oauth.client_id.clone(),
            redirect_uri: p.anthropic.oauth.redirect_uri.clone(),
            scopes: p.anthropic.oauth.scopes.clone(),
        },
        http.clone(),
        browser.clone(),
        clock.clone(),
    )?));
    flows.register(Arc::new(GeminiFlow::new(
        GeminiConfig {
            authorize_url: p.gemini.oauth.authorize_url.clone(),
            token_url: p.gemini.oauth.token_url.clone(),
            client_id: p.gemini.oauth.client_id.clone(),
            client_secret: p.gemini.oauth.client_secret.clone(),
            scopes: p.gemini.oauth.scopes.clone(),
        },
        http.clone(),
        browser.clone(),
        clock.clone(),
    )?));
    flows.register(Arc::new(QwenFlow::new(
        QwenConfig {
            device_authorization_url: p.qwen.oauth.device_authorization_url.clone(),
            token_url: p.qwen.oauth.token_url.clone(),
            client_id: p.qwen.oauth.client_id.clone(),
            scopes: p.qwen.oauth.scopes.clone(),
        },
        http.clone(),
        browser.clone(),
        clock.clone(),
    )?));
    flows.register(Arc::new(CodexFlow::new(
        CodexConfig {
            issuer: p.codex.oauth.issuer.clone(),
            client_id: p.codex.oauth.client_id.clone(),
            scopes: p.codex.oauth.scopes.clone(),
            callback_port: p.codex.oauth.callback_port,
            fallback_port: CODEX_FALLBACK_PORT,
        },
        http.clone(),
        browser.clone(),
        clock.clone(),
    )?));
    Ok(flows)
}

fn chat_clients(settings: &Settings, sandbox: bool) -> anyhow::Result<ChatClients> {
    let p = &settings.providers;
    let url = |name: &str, text: &str| {
        url::Url::parse(text).with_context(|| format!("setting {name} is not a URL: {text}"))
    };
    let endpoints = ChatEndpoints {
        anthropic: chat::AnthropicConfig {
            base_url: url("providers.anthropic.base_url", &p.anthropic.base_url)?,
        },
        gemini: chat::GeminiConfig {
            base_url: url("providers.gemini.base_url", &p.gemini.base_url)?,
            code_assist_base_url: url(
                "providers.gemini.code_assist_base_url",
                &p.gemini.code_assist_base_url,
            )?,
        },
        qwen: chat::QwenConfig {
            base_url: url("providers.qwen.base_url", &p.qwen.base_url)?,
        },
        openai: chat::OpenAiConfig {
            base_url: url("providers.openai.base_url", &p.openai.base_url)?,
            codex_base_url: url("providers.codex.base_url", &p.codex.base_url)?,
        },
    };
    let http = chat::http_client(HttpOptions {
        connect_timeout: std::time::Duration::from_secs(10),
        read_timeout: std::time::Duration::from_secs(120),
        // A proxy cannot reach the simulator on loopback.
        system_proxy: !sandbox,
    })?;
    Ok(chat::chat_clients(endpoints, &http))
}
