//! Embedding llxprt without its REPL: the simulated providers on loopback, the services from
//! [`llxprt::compose::compose`], two Gemini accounts signed in through the real OAuth flow, and
//! one message that fails over from the rate-limited first account to the second.
//!
//! `cargo run --example sign_in_and_send` (CI runs it). It exits non-zero when anything in the
//! story does not happen as told. Every line it shows goes through the terminal adapter's
//! prompt, as the REPL's would.

use std::sync::Arc;

use anyhow::{ensure, Context as _};
use llxprt::compose::{compose, BrowserChoice, Composition};
use llxprt_application::ports::{ChatMessage, ChatRequest, Role, UserPrompt};
use llxprt_application::services::SendTarget;
use llxprt_domain::{
    resolve_credential, BucketId, BucketName, ChatProvider, CredentialSources, OAuthProvider,
};
use llxprt_simulator::sandbox::{settings_overrides, SandboxBrowser};
use llxprt_simulator::{ForcedFailure, Simulator};
use llxprt_terminal::TerminalPrompt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sim = Simulator::start()
        .await
        .context("starting the simulated providers")?;
    let home = tempfile::tempdir()?;
    let mut composition = Composition::new(home.path());
    composition.overrides = settings_overrides(&sim);
    composition.browser = BrowserChoice::Given(Arc::new(SandboxBrowser::new(sim.clone())));
    composition.loopback = true;
    let services = compose(composition)?;
    let prompt = TerminalPrompt::output_only();

    let gemini = OAuthProvider::Gemini;
    let buckets = [BucketName::parse("work1")?, BucketName::parse("work2")?];
    for bucket in &buckets {
        // The simulated browser consents as the provider's login account.
        sim.set_login_account(gemini, bucket.as_str());
        let token = services
            .auth
            .login(&BucketId::new(gemini, bucket.clone()), &prompt)
            .await?;
        let left = token.seconds_left(services.clock.now());
        prompt.show(&format!(
            "signed in to {gemini}/{bucket} (token valid for {left} s)"
        ));
    }

    // work1's next request meets a rate limit.
    sim.fail_next_chat_requests(
        gemini,
        "work1",
        1,
        ForcedFailure::RateLimited {
            retry_after_secs: 60,
        },
    );

    let credential = resolve_credential(CredentialSources {
        provider: ChatProvider::Gemini,
        command_line: None,
        profile_key: None,
        settings_key: None,
        env: Vec::new(),
        oauth_enabled: false,
        profile_buckets: buckets.to_vec(),
    });
    let target = SendTarget::new(ChatProvider::Gemini, credential);
    let request = ChatRequest {
        model: ChatProvider::Gemini.default_model().to_owned(),
        messages: vec![ChatMessage {
            role: Role::User,
            text: "hello from an embedder".to_owned(),
        }],
    };
    // Gemini answers in one piece (only streaming protocols pass text to the prompt as it comes).
    let reply = services.chat.send(&target, &request, &prompt).await?;
    prompt.show(&reply.text);
    services.chat.flush_statistics().await;

    let (first, second) = (sim.counters(gemini, "work1"), sim.counters(gemini, "work2"));
    prompt.show(&format!(
        "work1 saw {} chat request(s), work2 {}",
        first.chat_requests, second.chat_requests
    ));
    ensure!(
        reply.text.contains("work2"),
        "the reply did not come from work2: {}",
        reply.text
    );
    ensure!(
        first.chat_requests == 1 && second.chat_requests == 1,
        "expected one request on each account"
    );
    let stats = services.chat.statistics().await?;
    let work2 = BucketId::new(gemini, buckets[1].clone());
    ensure!(
        stats.get(&work2).is_some_and(|s| s.requests == 1),
        "stats.json does not count work2's request"
    );
    prompt.show("failover from work1 to work2: ok");
    Ok(())
}
