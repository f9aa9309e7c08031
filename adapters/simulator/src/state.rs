//! Everything the simulator remembers: accounts, codes, tokens, device codes, keys, counters.
//!
//! All of it sits behind one mutex and no method awaits, so every protocol step (use a refresh
//! token once, consume a code once) is atomic with respect to concurrent requests.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use llxprt_domain::{ChatProvider, OAuthProvider};
use serde_json::{json, Value};

use super::usage::{AccountUsage, UsageError, UsageSetting, WindowReport};
use super::wire::{self, OAuthError};
use super::{Counters, Endpoints, ForcedFailure, Pause, SimulatorConfig};

/// How a preset device authorization ends instead of waiting for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DeviceOutcome {
    Denied,
    Expired,
}

struct ProviderState {
    login_account: String,
    token_lifetime_secs: u64,
    deny_next_consent: bool,
    next_device: Option<DeviceOutcome>,
    hold_next_refresh: bool,
    /// Device polls still to be answered `slow_down` whatever their timing.
    slow_down_polls: u32,
}

impl ProviderState {
    fn from_config(cfg: &SimulatorConfig) -> Self {
        Self {
            login_account: cfg.login_account.clone(),
            token_lifetime_secs: cfg.token_lifetime_secs,
            deny_next_consent: false,
            next_device: None,
            hold_next_refresh: false,
            slow_down_polls: 0,
        }
    }
}

#[derive(Default)]
struct Account {
    /// Tokens granted in an earlier epoch were revoked.
    epoch: u64,
    counters: Counters,
    failures: VecDeque<ForcedFailure>,
    slow: VecDeque<SlowReply>,
    usage: AccountUsage,
}

/// A wait imposed on one answer to a chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SlowReply {
    pub(super) delay: Duration,
    pub(super) pause: Pause,
}

/// How an admitted chat request is to be answered, beyond the reply itself.
pub(super) struct Admission {
    /// The failure forced on it instead of a reply.
    pub(super) failure: Option<ForcedFailure>,
    /// The wait imposed on its answer.
    pub(super) slow: Option<SlowReply>,
}

/// An authorization code waiting for its exchange.
#[derive(Debug, Clone)]
pub(super) struct AuthCode {
    pub(super) provider: OAuthProvider,
    pub(super) account: String,
    pub(super) client_id: String,
    pub(super) redirect_uri: String,
    pub(super) challenge: String,
    pub(super) state: Option<String>,
    pub(super) scope: String,
    issued: Instant,
    used: bool,
}

/// What a new authorization code is for.
pub(super) struct NewCode<'a> {
    pub(super) provider: OAuthProvider,
    pub(super) account: &'a str,
    pub(super) client_id: &'a str,
    pub(super) redirect_uri: &'a str,
    pub(super) challenge: &'a str,
    pub(super) state: Option<&'a str>,
    pub(super) scope: &'a str,
}

struct AccessGrant {
    provider: OAuthProvider,
    account: String,
    epoch: u64,
    expires_at: Instant,
}

struct RefreshGrant {
    provider: OAuthProvider,
    account: String,
    client_id: String,
    scope: String,
    epoch: u64,
    used: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DeviceStatus {
    Pending,
    Approved(String),
    Denied,
    Expired,
    Consumed,
}

struct DeviceGrant {
    provider: OAuthProvider,
    user_code: String,
    client_id: String,
    /// Qwen's PKCE challenge; Codex's device login hands out its own verifier instead.
    challenge: Option<String>,
    scope: String,
    expires_at: Instant,
    interval_secs: u64,
    last_poll: Option<Instant>,
    status: DeviceStatus,
}

/// A device code just issued.
pub(super) struct IssuedDevice {
    pub(super) device_code: String,
    pub(super) user_code: String,
    pub(super) interval_secs: u64,
    pub(super) expires_in_secs: u64,
}

/// Why a bearer token opened nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    Unknown,
    Expired,
    Revoked,
}

/// What visiting a device page did.
pub(super) enum Approval {
    Approved(String),
    Denied,
    Expired,
    Unknown,
}

/// What a Codex device poll found.
pub(super) enum CodexPoll {
    Pending,
    Denied,
    Expired,
    Unknown,
    WrongUserCode,
    Consumed,
    Approved {
        authorization_code: String,
        code_challenge: String,
        code_verifier: String,
    },
}

pub(super) struct State {
    cfg: SimulatorConfig,
    urls: Endpoints,
    providers: BTreeMap<OAuthProvider, ProviderState>,
    accounts: HashMap<(OAuthProvider, String), Account>,
    codes: HashMap<String, AuthCode>,
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    /// Qwen device codes and Codex device auth ids.
    devices: HashMap<String, DeviceGrant>,
    api_keys: HashMap<(ChatProvider, String), String>,
    secrets: BTreeSet<String>,
    /// The newest requests received, for tests of what clients send.
    seen: VecDeque<super::SeenRequest>,
    /// Gemini accounts that are not simply set up for Code Assist.
    code_assist: HashMap<String, super::CodeAssistAccount>,
    /// Gemini accounts' projects where they differ from [`gemini_project`].
    projects: HashMap<String, String>,
    /// Onboarding operations: name → (account, project, polls left before done).
    operations: HashMap<String, (String, String, u32)>,
    /// When the simulator started (Unix seconds): the usage windows reset at fixed moments
    /// after it.
    started: u64,
}

impl State {
    pub(super) fn new(cfg: SimulatorConfig, urls: Endpoints) -> Self {
        let providers = OAuthProvider::ALL
            .into_iter()
            .map(|p| (p, ProviderState::from_config(&cfg)))
            .collect();
        let mut state = Self {
            cfg,
            urls,
            providers,
            accounts: HashMap::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            devices: HashMap::new(),
            api_keys: HashMap::new(),
            secrets: BTreeSet::new(),
            seen: VecDeque::new(),
            code_assist: HashMap::new(),
            projects: HashMap::new(),
            operations: HashMap::new(),
            started: wire::now_unix(),
        };
        for key in state.cfg.api_keys.clone() {
            state.add_api_key(key.provider, key.key.expose(), &key.account);
        }
        state
    }

    pub(super) fn cfg(&self) -> &SimulatorConfig {
        &self.cfg
    }

    pub(super) fn urls(&self) -> &Endpoints {
        &self.urls
    }

    /// The client id `provider` accepts.
    pub(super) fn client_id(&self, provider: OAuthProvider) -> &str {
        self.cfg
            .client_ids
            .get(&provider)
            .map_or_else(|| SimulatorConfig::real_client_id(provider), String::as_str)
    }

    fn provider(&mut self, provider: OAuthProvider) -> &mut ProviderState {
        let cfg = &self.cfg;
        self.providers
            .entry(provider)
            .or_insert_with(|| ProviderState::from_config(cfg))
    }

    fn account(&mut self, provider: OAuthProvider, account: &str) -> &mut Account {
        self.accounts
            .entry((provider, account.to_owned()))
            .or_default()
    }

    fn remember(&mut self, secret: &str) {
        self.secrets.insert(secret.to_owned());
    }

    // ---- controls ----

    pub(super) fn set_login_account(&mut self, provider: OAuthProvider, account: &str) {
        self.provider(provider).login_account = account.to_owned();
    }

    pub(super) fn login_account(&mut self, provider: OAuthProvider) -> &str {
        &self.provider(provider).login_account
    }

    pub(super) fn set_token_lifetime(&mut self, provider: OAuthProvider, seconds: u64) {
        self.provider(provider).token_lifetime_secs = seconds;
    }

    pub(super) fn deny_next_consent(&mut self, provider: OAuthProvider) {
        self.provider(provider).deny_next_consent = true;
    }

    pub(super) fn slow_down_next_polls(&mut self, provider: OAuthProvider, count: u32) {
        self.provider(provider).slow_down_polls += count;
    }

    pub(super) fn hold_next_refresh(&mut self, provider: OAuthProvider) {
        self.provider(provider).hold_next_refresh = true;
    }

    pub(super) fn take_hold_next_refresh(&mut self, provider: OAuthProvider) -> bool {
        std::mem::take(&mut self.provider(provider).hold_next_refresh)
    }

    pub(super) fn preset_next_device(&mut self, provider: OAuthProvider, outcome: DeviceOutcome) {
        self.provider(provider).next_device = Some(outcome);
    }

    pub(super) fn expire_access_tokens(&mut self, provider: OAuthProvider, account: &str) {
        let now = Instant::now();
        for grant in self.access.values_mut() {
            if grant.provider == provider && grant.account == account {
                grant.expires_at = now;
            }
        }
    }

    pub(super) fn revoke(&mut self, provider: OAuthProvider, account: &str) {
        self.account(provider, account).epoch += 1;
    }

    pub(super) fn fail_next(
        &mut self,
        provider: OAuthProvider,
        account: &str,
        count: u32,
        failure: ForcedFailure,
    ) {
        let failures = &mut self.account(provider, account).failures;
        failures.extend(std::iter::repeat_n(failure, count as usize));
    }

    pub(super) fn slow_next(
        &mut self,
        provider: OAuthProvider,
        account: &str,
        count: u32,
        slow: SlowReply,
    ) {
        let queued = &mut self.account(provider, account).slow;
        queued.extend(std::iter::repeat_n(slow, count as usize));
    }

    pub(super) fn counters(&self, provider: OAuthProvider, account: &str) -> Counters {
        self.accounts
            .get(&(provider, account.to_owned()))
            .map(|a| a.counters)
            .unwrap_or_default()
    }

    pub(super) fn provider_counters(&self, provider: OAuthProvider) -> Counters {
        let mut total = Counters::default();
        for ((p, _), account) in &self.accounts {
            if *p == provider {
                total.add(&account.counters);
            }
        }
        total
    }

    pub(super) fn add_api_key(&mut self, provider: ChatProvider, key: &str, account: &str) {
        self.remember(key);
        self.api_keys
            .insert((provider, key.to_owned()), account.to_owned());
    }

    pub(super) fn remove_api_key(&mut self, provider: ChatProvider, key: &str) {
        self.api_keys.remove(&(provider, key.to_owned()));
    }

    pub(super) fn saw_request(&mut self, seen: super::SeenRequest) {
        if self.seen.len() >= super::identity::KEPT {
            self.seen.pop_front();
        }
        self.seen.push_back(seen);
    }

    pub(super) fn requests_seen(&self) -> Vec<super::SeenRequest> {
        self.seen.iter().cloned().collect()
    }

    pub(super) fn secrets(&self) -> Vec<String> {
        self.secrets.iter().cloned().collect()
    }

    // ---- authorization codes ----

    /// Counts a visit of the authorize page and names the account that would consent.
    pub(super) fn authorize_hit(&mut self, provider: OAuthProvider) -> String {
        let account = self.login_account(provider).to_owned();
        self.account(provider, &account).counters.authorize_hits += 1;
        account
    }

    pub(super) fn take_deny_next_consent(&mut self, provider: OAuthProvider) -> bool {
        std::mem::take(&mut self.provider(provider).deny_next_consent)
    }

    pub(super) fn issue_code(&mut self, new: NewCode<'_>) -> String {
        let code = format!("sim-code-{}", wire::random_token(32));
        self.remember(&code);
        let record = AuthCode {
            provider: new.provider,
            account: new.account.to_owned(),
            client_id: new.client_id.to_owned(),
            redirect_uri: new.redirect_uri.to_owned(),
            challenge: new.challenge.to_owned(),
            state: new.state.map(str::to_owned),
            scope: new.scope.to_owned(),
            issued: Instant::now(),
            used: false,
        };
        self.codes.insert(code.clone(), record);
        code
    }

    /// Takes an authorization code for an exchange. A code is spent the first time it is
    /// presented, whatever the outcome, so a failed exchange cannot be retried with it.
    pub(super) fn redeem_code(
        &mut self,
        provider: OAuthProvider,
        code: &str,
    ) -> Result<AuthCode, OAuthError> {
        let lifetime = Duration::from_secs(self.cfg.code_lifetime_secs);
        let Some(record) = self.codes.get_mut(code).filter(|c| c.provider == provider) else {
            return Err(OAuthError::invalid_grant("unknown authorization code"));
        };
        if std::mem::replace(&mut record.used, true) {
            return Err(OAuthError::invalid_grant("authorization code already used"));
        }
        if record.issued.elapsed() >= lifetime {
            return Err(OAuthError::invalid_grant("authorization code expired"));
        }
        Ok(record.clone())
    }

    // ---- tokens ----

    /// Issues an access token (and a refresh token when `with_refresh`) to the account, counting
    /// an exchange or a refresh, and answers the token endpoint's JSON.
    pub(super) fn grant(
        &mut self,
        provider: OAuthProvider,
        account: &str,
        scope: &str,
        with_refresh: bool,
        is_refresh: bool,
    ) -> Value {
        let lifetime = self.provider(provider).token_lifetime_secs;
        let epoch = self.account(provider, account).epoch;
        let counters = &mut self.account(provider, account).counters;
        if is_refresh {
            counters.refreshes += 1;
        } else {
            counters.token_exchanges += 1;
        }
        let access_token = match provider {
            OAuthProvider::Anthropic => format!("sk-ant-oat01-sim-{}", wire::random_token(40)),
            OAuthProvider::Gemini => format!("ya29.sim-{}", wire::random_token(40)),
            OAuthProvider::Qwen => format!("sim-qwen-at-{}", wire::random_token(40)),
            OAuthProvider::Codex => format!("sim-codex-at-{}", wire::random_token(40)),
        };
        self.remember(&access_token);
        self.access.insert(
            access_token.clone(),
            AccessGrant {
                provider,
                account: account.to_owned(),
                epoch,
                expires_at: Instant::now() + Duration::from_secs(lifetime),
            },
        );
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        });
        if with_refresh {
            let refresh_token = match provider {
                OAuthProvider::Anthropic => {
                    format!("sk-ant-ort01-sim-{}", wire::random_token(40))
                }
                OAuthProvider::Gemini => format!("1//sim-{}", wire::random_token(40)),
                OAuthProvider::Qwen => format!("sim-qwen-rt-{}", wire::random_token(40)),
                OAuthProvider::Codex => format!("sim-codex-rt-{}", wire::random_token(40)),
            };
            self.remember(&refresh_token);
            let client_id = self.client_id(provider).to_owned();
            self.refresh.insert(
                refresh_token.clone(),
                RefreshGrant {
                    provider,
                    account: account.to_owned(),
                    client_id,
                    scope: scope.to_owned(),
                    epoch,
                    used: false,
                },
            );
            body["refresh_token"] = json!(refresh_token);
        }
        match provider {
            OAuthProvider::Qwen => body["resource_url"] = json!(self.urls.qwen.resource_url),
            OAuthProvider::Codex => {
                let id_token = self.codex_id_token(account, lifetime);
                self.remember(&id_token);
                body["id_token"] = json!(id_token);
            }
            OAuthProvider::Anthropic | OAuthProvider::Gemini => {}
        }
        body
    }

    fn codex_id_token(&self, account: &str, lifetime: u64) -> String {
        let now = wire::now_unix();
        wire::unsigned_jwt(&json!({
            "iss": self.urls.codex.issuer,
            "aud": [self.client_id(OAuthProvider::Codex)],
            "sub": format!("sim|{account}"),
            "email": email_of(account),
            "email_verified": true,
            "iat": now,
            "exp": now + lifetime,
            "https://api.openai.com/auth": {
                "chatgpt_account_id": codex_account_id(account),
                "chatgpt_plan_type": "plus",
                "chatgpt_user_id": format!("user-sim-{account}"),
            },
        }))
    }

    /// Spends a refresh token and names its account and scope. Rotating providers (Anthropic,
    /// Codex) accept each refresh token once; the error of a reused one is `reused_error`.
    pub(super) fn use_refresh_token(
        &mut self,
        provider: OAuthProvider,
        token: &str,
        client_id: &str,
        requested_scope: Option<&str>,
        reused_error: OAuthError,
        revoked_error: OAuthError,
    ) -> Result<(String, String), OAuthError> {
        let rotates = rotates(provider);
        let Some(grant) = self
            .refresh
            .get_mut(token)
            .filter(|g| g.provider == provider)
        else {
            return Err(OAuthError::invalid_grant("unknown refresh token"));
        };
        if grant.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        // A refresh may narrow the scope (RFC 6749 §6), never widen it.
        let scope = match requested_scope {
            None => grant.scope.clone(),
            Some(requested) => {
                let granted: Vec<&str> = grant.scope.split(' ').collect();
                if requested
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .any(|s| !granted.contains(&s))
                {
                    return Err(OAuthError::invalid_scope(
                        "the requested scope exceeds the granted one",
                    ));
                }
                requested.to_owned()
            }
        };
        let (account, epoch) = (grant.account.clone(), grant.epoch);
        let was_used = grant.used;
        let current_epoch = self.account(provider, &account).epoch;
        if epoch != current_epoch {
            self.account(provider, &account).counters.rejected_refreshes += 1;
            return Err(revoked_error);
        }
        if rotates && was_used {
            self.account(provider, &account)
                .counters
                .reused_refresh_tokens += 1;
            tracing::debug!(%provider, account, "reused refresh token refused");
            return Err(reused_error);
        }
        if rotates {
            if let Some(grant) = self.refresh.get_mut(token) {
                grant.used = true;
            }
        }
        Ok((account, scope))
    }

    // ---- device codes ----

    /// Issues a device code (Qwen) or device auth id (Codex) for the login account's approval,
    /// taking a preset denial or expiry.
    pub(super) fn issue_device(
        &mut self,
        provider: OAuthProvider,
        client_id: &str,
        challenge: Option<String>,
        scope: &str,
    ) -> IssuedDevice {
        let account = self.login_account(provider).to_owned();
        self.account(provider, &account)
            .counters
            .device_code_requests += 1;
        let status = match self.provider(provider).next_device.take() {
            Some(DeviceOutcome::Denied) => DeviceStatus::Denied,
            Some(DeviceOutcome::Expired) => DeviceStatus::Expired,
            None => DeviceStatus::Pending,
        };
        let device_code = match provider {
            OAuthProvider::Codex => format!("deviceauth_sim_{}", wire::random_token(32)),
            _ => format!("sim-device-{}", wire::random_token(40)),
        };
        self.remember(&device_code);
        let user_code = wire::user_code();
        let issued = IssuedDevice {
            device_code: device_code.clone(),
            user_code: user_code.clone(),
            interval_secs: self.cfg.device_interval_secs,
            expires_in_secs: self.cfg.device_expires_in_secs,
        };
        self.devices.insert(
            device_code,
            DeviceGrant {
                provider,
                user_code,
                client_id: client_id.to_owned(),
                challenge,
                scope: scope.to_owned(),
                expires_at: Instant::now() + Duration::from_secs(issued.expires_in_secs),
                interval_secs: issued.interval_secs,
                last_poll: None,
                status,
            },
        );
        issued
    }

    /// The user visited the device page with `user_code`: approve as the login account, unless
    /// the code was preset to fail or has run out.
    pub(super) fn approve_device(&mut self, provider: OAuthProvider, user_code: &str) -> Approval {
        let account = self.login_account(provider).to_owned();
        let wanted = normalize_user_code(user_code);
        let Some(device) = self
            .devices
            .values_mut()
            .find(|d| d.provider == provider && normalize_user_code(&d.user_code) == wanted)
        else {
            return Approval::Unknown;
        };
        if Instant::now() >= device.expires_at {
            device.status = DeviceStatus::Expired;
        }
        match &device.status {
            DeviceStatus::Pending => {
                device.status = DeviceStatus::Approved(account.clone());
                Approval::Approved(account)
            }
            DeviceStatus::Approved(by) => Approval::Approved(by.clone()),
            DeviceStatus::Denied => Approval::Denied,
            DeviceStatus::Expired | DeviceStatus::Consumed => Approval::Expired,
        }
    }

    /// One poll of Qwen's token endpoint with the device grant (RFC 8628 §3.5).
    pub(super) fn poll_qwen_device(
        &mut self,
        device_code: &str,
        client_id: &str,
        verifier_check: impl FnOnce(&str) -> Result<(), OAuthError>,
    ) -> Result<Value, OAuthError> {
        let slow_down_secs = self.cfg.device_slow_down_secs;
        let forced_slow_down = {
            let provider = self.provider(OAuthProvider::Qwen);
            let forced = provider.slow_down_polls > 0;
            provider.slow_down_polls = provider.slow_down_polls.saturating_sub(1);
            forced
        };
        let Some(device) = self
            .devices
            .get_mut(device_code)
            .filter(|d| d.provider == OAuthProvider::Qwen)
        else {
            return Err(OAuthError::invalid_grant("unknown device_code"));
        };
        if device.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "the device_code was issued to another client",
            ));
        }
        let now = Instant::now();
        if now >= device.expires_at && device.status != DeviceStatus::Consumed {
            device.status = DeviceStatus::Expired;
        }
        let denial = |error: &'static str, description: &str| {
            Err(OAuthError::new(StatusCode::BAD_REQUEST, error, description))
        };
        match device.status {
            DeviceStatus::Consumed => {
                return Err(OAuthError::invalid_grant("device_code already used"))
            }
            DeviceStatus::Expired => return denial("expired_token", "the device code has expired"),
            DeviceStatus::Denied => return denial("access_denied", "the user denied the request"),
            DeviceStatus::Pending | DeviceStatus::Approved(_) => {}
        }
        let too_soon = device.last_poll.is_some_and(|last| {
            now.duration_since(last) < Duration::from_secs(device.interval_secs)
        });
        device.last_poll = Some(now);
        if too_soon || forced_slow_down {
            device.interval_secs += slow_down_secs;
            let login = self.login_account(OAuthProvider::Qwen).to_owned();
            self.account(OAuthProvider::Qwen, &login)
                .counters
                .device_slow_downs += 1;
            // Qwen sends slow_down as 429 (a polling signal, not a rate limit of the account).
            return Err(OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "polling too fast; add 5 seconds to the interval",
            ));
        }
        let DeviceStatus::Approved(account) = device.status.clone() else {
            return denial("authorization_pending", "the user has not approved yet");
        };
        if let Some(challenge) = device.challenge.clone() {
            verifier_check(&challenge)?;
        }
        device.status = DeviceStatus::Consumed;
        let scope = device.scope.clone();
        Ok(self.grant(OAuthProvider::Qwen, &account, &scope, true, false))
    }

    /// One poll of Codex's device token endpoint. On approval it mints an authorization code
    /// for `{issuer}/deviceauth/callback` and hands out the verifier that goes with it.
    pub(super) fn poll_codex_device(&mut self, device_auth_id: &str, user_code: &str) -> CodexPoll {
        let Some(device) = self
            .devices
            .get_mut(device_auth_id)
            .filter(|d| d.provider == OAuthProvider::Codex)
        else {
            return CodexPoll::Unknown;
        };
        if device.user_code != user_code {
            return CodexPoll::WrongUserCode;
        }
        let now = Instant::now();
        device.last_poll = Some(now);
        if now >= device.expires_at && device.status != DeviceStatus::Consumed {
            device.status = DeviceStatus::Expired;
        }
        let account = match &device.status {
            DeviceStatus::Pending => return CodexPoll::Pending,
            DeviceStatus::Denied => return CodexPoll::Denied,
            DeviceStatus::Expired => return CodexPoll::Expired,
            DeviceStatus::Consumed => return CodexPoll::Consumed,
            DeviceStatus::Approved(account) => account.clone(),
        };
        device.status = DeviceStatus::Consumed;
        let client_id = device.client_id.clone();
        let code_verifier = wire::random_token(64);
        self.remember(&code_verifier);
        let code_challenge = wire::s256(&code_verifier);
        let redirect_uri = format!("{}/deviceauth/callback", self.urls.codex.issuer);
        let authorization_code = self.issue_code(NewCode {
            provider: OAuthProvider::Codex,
            account: &account,
            client_id: &client_id,
            redirect_uri: &redirect_uri,
            challenge: &code_challenge,
            state: None,
            scope: CODEX_SCOPES.join(" ").as_str(),
        });
        CodexPoll::Approved {
            authorization_code,
            code_challenge,
            code_verifier,
        }
    }

    /// Records a verifier the simulator was shown, for the leak checks.
    pub(super) fn saw_verifier(&mut self, verifier: Option<&str>) {
        if let Some(verifier) = verifier {
            self.remember(verifier);
        }
    }

    // ---- chat ----

    /// The account an access token belongs to, if it is valid for `provider` now; a refusal of
    /// a known account's token counts against it.
    pub(super) fn authenticate_bearer(
        &mut self,
        provider: OAuthProvider,
        token: &str,
    ) -> Result<String, Rejection> {
        let Some(grant) = self.access.get(token).filter(|g| g.provider == provider) else {
            return Err(Rejection::Unknown);
        };
        let (account, epoch, expires_at) = (grant.account.clone(), grant.epoch, grant.expires_at);
        let current = self.account(provider, &account);
        let rejection = if epoch != current.epoch {
            Rejection::Revoked
        } else if Instant::now() >= expires_at {
            Rejection::Expired
        } else {
            return Ok(account);
        };
        current.counters.rejected_chat_requests += 1;
        Err(rejection)
    }

    /// The account an API key belongs to.
    pub(super) fn authenticate_key(&self, provider: ChatProvider, key: &str) -> Option<String> {
        self.api_keys.get(&(provider, key.to_owned())).cloned()
    }

    /// Counts an authenticated chat request and says whether a failure or a wait was forced on
    /// it.
    pub(super) fn admit(&mut self, provider: OAuthProvider, account: &str) -> Admission {
        let account = self.account(provider, account);
        account.counters.chat_requests += 1;
        Admission {
            failure: account.failures.pop_front(),
            slow: account.slow.pop_front(),
        }
    }

    pub(super) fn set_usage(
        &mut self,
        provider: OAuthProvider,
        account: &str,
        settings: &[UsageSetting],
    ) -> Result<(), UsageError> {
        let started = self.started;
        self.account(provider, account)
            .usage
            .set(provider, settings, started, wire::now_unix())
    }

    /// The account's usage windows as an answer reports them now.
    pub(super) fn usage(&mut self, provider: OAuthProvider, account: &str) -> Vec<WindowReport> {
        let started = self.started;
        self.account(provider, account)
            .usage
            .report(provider, started, wire::now_unix())
    }

    pub(super) fn count_usage_refusal(&mut self, provider: OAuthProvider, account: &str) {
        self.account(provider, account)
            .counters
            .usage_limit_refusals += 1;
    }

    pub(super) fn count_streamed_reply(&mut self, provider: OAuthProvider, account: &str) {
        self.account(provider, account).counters.streamed_replies += 1;
    }

    pub(super) fn set_code_assist_account(
        &mut self,
        account: &str,
        kind: super::CodeAssistAccount,
    ) {
        self.code_assist.insert(account.to_owned(), kind);
    }

    pub(super) fn code_assist_account(&self, account: &str) -> super::CodeAssistAccount {
        self.code_assist.get(account).copied().unwrap_or_default()
    }

    /// The project generateContent accepts for the account.
    pub(super) fn project_of(&self, account: &str) -> String {
        self.projects
            .get(account)
            .cloned()
            .unwrap_or_else(|| gemini_project(account))
    }

    /// Starts onboarding `account` into `project`; done after one poll.
    pub(super) fn start_onboarding(&mut self, account: &str, project: &str) -> String {
        let name = format!("operations/onboard-sim-{}", wire::random_token(10));
        self.operations
            .insert(name.clone(), (account.to_owned(), project.to_owned(), 1));
        name
    }

    /// One poll of an onboarding operation of `account`: `Some(Some(project))` once done (the
    /// account is then set up), `Some(None)` while running, `None` for an unknown one.
    pub(super) fn poll_onboarding(&mut self, account: &str, name: &str) -> Option<Option<String>> {
        let (owner, project, left) = self.operations.get_mut(name)?;
        if owner != account {
            return None;
        }
        if *left > 0 {
            *left -= 1;
            return Some(None);
        }
        let project = project.clone();
        self.projects.insert(account.to_owned(), project.clone());
        self.code_assist
            .insert(account.to_owned(), super::CodeAssistAccount::SetUp);
        Some(Some(project))
    }

    pub(super) fn use_project(&mut self, account: &str, project: &str) {
        self.projects.insert(account.to_owned(), project.to_owned());
    }

    pub(super) fn count_load_code_assist(&mut self, account: &str) {
        self.account(OAuthProvider::Gemini, account)
            .counters
            .load_code_assist += 1;
    }
}

/// Whether `provider`'s refresh tokens rotate (single use).
pub(super) fn rotates(provider: OAuthProvider) -> bool {
    matches!(provider, OAuthProvider::Anthropic | OAuthProvider::Codex)
}

/// The ChatGPT account id of a simulated Codex account.
pub(super) fn codex_account_id(account: &str) -> String {
    format!("acct-sim-{account}")
}

/// The Code Assist project of a simulated Gemini account.
pub(super) fn gemini_project(account: &str) -> String {
    format!("sim-project-{account}")
}

fn email_of(account: &str) -> String {
    if account.contains('@') {
        account.to_owned()
    } else {
        format!("{account}@sim.example")
    }
}

fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

pub(super) const ANTHROPIC_SCOPES: &[&str] =
    &["org:create_api_key", "user:profile", "user:inference"];
pub(super) const GEMINI_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
];
pub(super) const QWEN_SCOPES: &[&str] = &["openid", "profile", "email", "model.completion"];
pub(super) const CODEX_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// The documented scopes of `provider`.
pub(super) fn scopes(provider: OAuthProvider) -> &'static [&'static str] {
    match provider {
        OAuthProvider::Anthropic => ANTHROPIC_SCOPES,
        OAuthProvider::Gemini => GEMINI_SCOPES,
        OAuthProvider::Qwen => QWEN_SCOPES,
        OAuthProvider::Codex => CODEX_SCOPES,
    }
}
