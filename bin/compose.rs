//! The one factory that turns settings and a home directory into the wired services.
//!
//! The choice of each port's adapter is made here and only here: the binary, the benchmarks
//! and the tests all call [`compose`], so what they exercise is what users run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use llxprt_application::ports::{
    Browser, Clock, HealthStore, KeyFiles, ProfileStore, SettingsStore, StatsStore, StoreCatalog,
    TokenStore,
};
use llxprt_application::services::{
    AuthService, ChatClients, ChatService, FlowRegistry, TokenService,
};
use llxprt_application::session::SessionServices;
use llxprt_application::settings::{Settings, StorageBackend};
use llxprt_clock::LocalClock;
use llxprt_providers::chat::{self, ChatEndpoints, HttpOptions};
use llxprt_providers::oauth::{
    AnthropicConfig, AnthropicFlow, BrowserEnv, CodexConfig, CodexFlow, GeminiConfig, GeminiFlow,
    OAuthHttp, QwenConfig, QwenFlow, SystemBrowser,
};
use llxprt_seal::KeyFile;
use llxprt_settings::FileConfigStore;
use llxprt_store_file::{FileHealthStore, FileStatsStore, DEFAULT_REVALIDATE_AFTER};
use llxprt_store_postgres::{PostgresOptions, PostgresStore, StoreAddress};

use crate::stores::{CurrentStore, Stores};

/// The port Codex falls back to when its callback port is busy: the only other one on the
/// provider's allow-list.
pub const CODEX_FALLBACK_PORT: u16 = 1457;

/// Which browser opens sign-in pages.
#[derive(Clone)]
pub enum BrowserChoice {
    /// `$BROWSER`, then the platform's opener; `nobrowser` never launches one (the user pastes).
    System {
        /// `--nobrowser`.
        nobrowser: bool,
    },
    /// A browser the caller plays (the sandbox's consenting browser, a test's or a benchmark's).
    Given(Arc<dyn Browser>),
}

/// What [`compose`] needs to know.
#[derive(Clone)]
pub struct Composition {
    /// `$LLXPRT_HOME`: tokens, settings, profiles, statistics and health live under it.
    pub home: PathBuf,
    /// The environment, as text (settings overrides, API key variables).
    pub env: BTreeMap<String, String>,
    /// `NAME=VALUE` settings that override the file and the environment (`--set`).
    pub overrides: Vec<(String, String)>,
    /// Who opens sign-in pages.
    pub browser: BrowserChoice,
    /// Every provider is on loopback (the sandbox, tests, benchmarks): no system proxy.
    pub loopback: bool,
    /// How long a loopback sign-in waits for its callback; the flows' default when `None`.
    pub callback_timeout: Option<Duration>,
}

impl Composition {
    /// A composition for `home` with no environment, no overrides and the system browser.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            env: BTreeMap::new(),
            overrides: Vec::new(),
            browser: BrowserChoice::System { nobrowser: false },
            loopback: false,
            callback_timeout: None,
        }
    }
}

/// The wired services.
#[derive(Clone)]
pub struct Services {
    /// The settings as loaded at start (file, environment, overrides).
    pub settings: Settings,
    /// Settings.
    pub config: Arc<dyn SettingsStore>,
    /// Saved profiles.
    pub profiles: Arc<dyn ProfileStore>,
    /// Key files.
    pub key_files: Arc<dyn KeyFiles>,
    /// Where tokens are kept.
    pub store: Arc<dyn TokenStore>,
    /// Every store of the home, and which one is in use (`/storage`).
    pub storage: Arc<dyn StoreCatalog>,
    /// A valid token per bucket.
    pub tokens: Arc<TokenService>,
    /// Sign-in and sign-out.
    pub auth: Arc<AuthService>,
    /// Sending, with failover and statistics.
    pub chat: Arc<ChatService>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The environment the services were composed with.
    pub env: BTreeMap<String, String>,
    /// `$LLXPRT_HOME`.
    pub home: PathBuf,
    /// Security warnings for the user (a token file others could read, made private again),
    /// found when the home was checked before anything was read from it.
    pub warnings: Vec<String>,
}

impl Services {
    /// What a [`llxprt_application::session::Session`] is built on.
    pub fn session_services(&self) -> SessionServices {
        SessionServices {
            settings: self.config.clone(),
            profiles: self.profiles.clone(),
            key_files: self.key_files.clone(),
            auth: self.auth.clone(),
            chat: self.chat.clone(),
            clock: self.clock.clone(),
            env: self.env.clone(),
            storage: self.storage.clone(),
        }
    }
}

/// Why the services could not be composed: one line for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComposeError(String);

impl ComposeError {
    fn new(error: impl std::fmt::Display) -> Self {
        Self(error.to_string())
    }
}

/// Turns settings and a home directory into the wired services.
///
/// # Errors
///
/// The settings cannot be read or name a URL that is not one; an HTTP client cannot be built.
pub fn compose(composition: Composition) -> Result<Services, ComposeError> {
    let Composition {
        home,
        env,
        overrides,
        browser,
        loopback,
        callback_timeout,
    } = composition;
    // Like OpenSSH's StrictModes: a home, token, profile or settings file that another user
    // owns or can change is refused before anything is read from it.
    let audit = llxprt_fs::audit_home(&home)
        .map_err(|(path, e)| ComposeError(format!("refusing to use {}: {e}", path.display())))?;
    let files = Arc::new(FileConfigStore::new(home.clone(), env.clone(), overrides));
    let (config, profiles, key_files): (
        Arc<dyn SettingsStore>,
        Arc<dyn ProfileStore>,
        Arc<dyn KeyFiles>,
    ) = (files.clone(), files.clone(), files);
    let settings = config.load_settings().map_err(ComposeError::new)?;
    check_transport(&settings)?;
    let clock: Arc<dyn Clock> = Arc::new(LocalClock::system());
    let browser: Arc<dyn Browser> = match browser {
        BrowserChoice::Given(browser) => browser,
        BrowserChoice::System { nobrowser } => {
            Arc::new(SystemBrowser::new(BrowserEnv::from_process(), nobrowser))
        }
    };
    let oauth_http = if loopback {
        OAuthHttp::direct()
    } else {
        OAuthHttp::new()
    }
    .map_err(ComposeError::new)?;
    let flows = flows(&settings, &oauth_http, &browser, &clock, callback_timeout)?;
    // The one place the token store is chosen (`storage.backend`; see `stores`): the team store
    // keeps statistics and health too; every other store keeps them in the home's files.
    let stores = Stores::new(home.clone(), settings.storage.clone(), &env);
    let (stores, stats, health): (Arc<Stores>, Arc<dyn StatsStore>, Arc<dyn HealthStore>) =
        match settings.storage.backend {
            StorageBackend::Postgres => {
                let team = Arc::new(team_store(&settings, &env, &home)?);
                let address = team.address().to_string();
                let stores = Arc::new(stores.with_team(team.clone(), address));
                (stores, team.clone(), team)
            }
            _ => (
                Arc::new(stores),
                Arc::new(FileStatsStore::new(&home)),
                Arc::new(
                    FileHealthStore::new(&home).with_revalidate_after(DEFAULT_REVALIDATE_AFTER),
                ),
            ),
        };
    let store: Arc<dyn TokenStore> = Arc::new(CurrentStore(stores.clone()));
    let tokens = Arc::new(TokenService::new(
        store.clone(),
        flows.clone(),
        clock.clone(),
    ));
    let auth = Arc::new(AuthService::new(store.clone(), flows));
    let chat = Arc::new(
        ChatService::new(
            tokens.clone(),
            auth.clone(),
            chat_clients(&settings, &env, loopback)?,
            clock.clone(),
            stats,
        )
        .with_health_store(health),
    );
    Ok(Services {
        settings,
        config,
        profiles,
        key_files,
        store,
        storage: stores,
        tokens,
        auth,
        chat,
        clock,
        env,
        home,
        warnings: audit.warnings,
    })
}

/// Refuses a provider URL that would carry codes, tokens or keys in clear text over the
/// network: every one must be `https`, or `http` to this machine (the simulator, a local
/// proxy). A URL that does not parse is left to the flow or client that reads it to report.
fn check_transport(settings: &Settings) -> Result<(), ComposeError> {
    let p = &settings.providers;
    let urls = [
        ("providers.anthropic.base_url", &p.anthropic.base_url),
        (
            "providers.anthropic.oauth.authorize_url",
            &p.anthropic.oauth.authorize_url,
        ),
        (
            "providers.anthropic.oauth.token_url",
            &p.anthropic.oauth.token_url,
        ),
        (
            "providers.anthropic.oauth.redirect_uri",
            &p.anthropic.oauth.redirect_uri,
        ),
        ("providers.gemini.base_url", &p.gemini.base_url),
        (
            "providers.gemini.code_assist_base_url",
            &p.gemini.code_assist_base_url,
        ),
        (
            "providers.gemini.oauth.authorize_url",
            &p.gemini.oauth.authorize_url,
        ),
        (
            "providers.gemini.oauth.token_url",
            &p.gemini.oauth.token_url,
        ),
        ("providers.qwen.base_url", &p.qwen.base_url),
        (
            "providers.qwen.oauth.device_authorization_url",
            &p.qwen.oauth.device_authorization_url,
        ),
        ("providers.qwen.oauth.token_url", &p.qwen.oauth.token_url),
        ("providers.codex.base_url", &p.codex.base_url),
        ("providers.codex.oauth.issuer", &p.codex.oauth.issuer),
        ("providers.openai.base_url", &p.openai.base_url),
    ];
    for (name, text) in urls {
        let Ok(url) = url::Url::parse(text) else {
            continue;
        };
        if !llxprt_providers::is_safe_transport(&url) {
            return Err(ComposeError(format!(
                "setting {name} is {text}, which would send tokens and keys in clear text; \
                 use an https:// address (http:// is accepted only for this machine)"
            )));
        }
    }
    Ok(())
}

/// The team store of `storage.url`, its tokens sealed with the storage key
/// (`LLXPRT_STORAGE_KEY_FILE`, else `storage.key_file`, else `$LLXPRT_HOME/storage.key`, made on
/// first use); its password from `PGPASSWORD` or the password file (`PGPASSFILE`, else
/// `~/.pgpass`). Connects before anything else, so an unreachable database or a wrong key is
/// one line at start.
fn team_store(
    settings: &Settings,
    env: &BTreeMap<String, String>,
    home: &std::path::Path,
) -> Result<PostgresStore, ComposeError> {
    let url = settings.storage.url.as_deref().ok_or_else(|| {
        ComposeError::new(
            "storage.backend is postgres but storage.url is not set; set it to postgres://USER@HOST:PORT/DB",
        )
    })?;
    let pgpass = env
        .get("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| PathBuf::from(h).join(".pgpass")));
    let address = StoreAddress::parse(
        url,
        env.get("PGPASSWORD").map(String::as_str),
        pgpass.as_deref(),
    )
    .map_err(ComposeError::new)?;
    let key_path = env
        .get("LLXPRT_STORAGE_KEY_FILE")
        .cloned()
        .or_else(|| settings.storage.key_file.clone())
        .map_or_else(|| home.join("storage.key"), PathBuf::from);
    let key = KeyFile::new(key_path)
        .load_or_create()
        .map_err(ComposeError::new)?
        .key;
    PostgresStore::open(PostgresOptions::new(address, Arc::new(key))).map_err(ComposeError::new)
}

fn flows(
    settings: &Settings,
    http: &OAuthHttp,
    browser: &Arc<dyn Browser>,
    clock: &Arc<dyn Clock>,
    callback_timeout: Option<Duration>,
) -> Result<FlowRegistry, ComposeError> {
    let p = &settings.providers;
    let mut flows = FlowRegistry::new();
    flows.register(Arc::new(
        AnthropicFlow::new(
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
        )
        .map_err(ComposeError::new)?,
    ));
    let gemini = GeminiFlow::new(
        GeminiConfig {
            authorize_url: p.gemini.oauth.authorize_url.clone(),
            token_url: p.gemini.oauth.token_url.clone(),
            client_id: p.gemini.oauth.client_id.clone(),
            client_secret: p.gemini.oauth.client_secret.clone(),
            scopes: p.gemini.oauth.scopes.clone(),
            manual_redirect_uri: p.gemini.oauth.manual_redirect_uri.clone(),
        },
        http.clone(),
        browser.clone(),
        clock.clone(),
    )
    .map_err(ComposeError::new)?;
    flows.register(Arc::new(match callback_timeout {
        Some(limit) => gemini.with_callback_timeout(limit),
        None => gemini,
    }));
    flows.register(Arc::new(
        QwenFlow::new(
            QwenConfig {
                device_authorization_url: p.qwen.oauth.device_authorization_url.clone(),
                token_url: p.qwen.oauth.token_url.clone(),
                client_id: p.qwen.oauth.client_id.clone(),
                scopes: p.qwen.oauth.scopes.clone(),
            },
            http.clone(),
            browser.clone(),
            clock.clone(),
        )
        .map_err(ComposeError::new)?,
    ));
    let codex = CodexFlow::new(
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
    )
    .map_err(ComposeError::new)?;
    flows.register(Arc::new(match callback_timeout {
        Some(limit) => codex.with_callback_timeout(limit),
        None => codex,
    }));
    Ok(flows)
}

/// The Google Cloud project for Code Assist: `providers.gemini.project`, else
/// `GOOGLE_CLOUD_PROJECT`, else `GOOGLE_CLOUD_PROJECT_ID`.
fn gemini_project(settings: &Settings, env: &BTreeMap<String, String>) -> Option<String> {
    settings.providers.gemini.project.clone().or_else(|| {
        ["GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT_ID"]
            .into_iter()
            .find_map(|name| env.get(name).filter(|v| !v.trim().is_empty()).cloned())
    })
}

fn chat_clients(
    settings: &Settings,
    env: &BTreeMap<String, String>,
    loopback: bool,
) -> Result<ChatClients, ComposeError> {
    let p = &settings.providers;
    let url = |name: &str, text: &str| {
        url::Url::parse(text)
            .map_err(|_| ComposeError(format!("setting {name} is not a URL: {text}")))
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
            project: gemini_project(settings, env),
            onboarding_poll: Duration::from_secs(5),
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
        connect_timeout: Duration::from_secs(10),
        // Restarts with every chunk: bounds a stalled reply, never a long one that keeps coming.
        read_timeout: settings.idle_timeout(),
        // A proxy cannot reach a provider on loopback.
        system_proxy: !loopback,
    })
    .map_err(ComposeError::new)?;
    Ok(if loopback {
        chat::sandbox_chat_clients(endpoints, &http)
    } else {
        chat::chat_clients(endpoints, &http)
    })
}
