//! The real services as they answer today (providers.md, "How the real services answer today"),
//! through the built binary against the simulator: honest identity, policy refusals and the
//! `[refused]` state, quota refusals, model refusals, CDN pages, Gemini's project and onboarding,
//! Qwen's polling and the terms notices.

use llxprt_domain::OAuthProvider;
use llxprt_simulator::{CodeAssistAccount, ForcedFailure, SIMULATED_BROWSER};

use crate::support::{reply, Child, Lab};

const ANTHROPIC: OAuthProvider = OAuthProvider::Anthropic;
const GEMINI: OAuthProvider = OAuthProvider::Gemini;
const QWEN: OAuthProvider = OAuthProvider::Qwen;
const CODEX: OAuthProvider = OAuthProvider::Codex;

async fn command(child: &mut Child, line: &str, expect: &str) {
    child.send(line).await;
    child.wait_for(expect).await;
}

fn health_json(lab: &Lab) -> serde_json::Value {
    let text = std::fs::read_to_string(lab.home().join("health.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_every_provider_says_it_comes_from_llxprt() {
    let lab = Lab::start().await;
    let mut child = lab.spawn(&[], &[]);
    for provider in [ANTHROPIC, GEMINI, QWEN, CODEX] {
        child.login(&lab, provider, "default").await;
        child.send(&format!("/auth {provider} enable")).await;
    }
    for (chat, account) in [
        ("anthropic", "user1"),
        ("gemini", "user1"),
        ("qwen", "user1"),
        ("openai", "user1"),
    ] {
        command(&mut child, &format!("/provider {chat}"), "Provider set").await;
        let name = if chat == "openai" { "codex" } else { chat };
        child.ask(&format!("hello {chat}"), name, account).await;
    }
    // The API key path too.
    command(&mut child, "/provider anthropic", "Provider set").await;
    child.send("/key sim-anthropic-key").await;
    child.ask("with a key", "anthropic", "api-key").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}\n{}", run.stdout, run.stderr);

    let seen = lab.sim.requests_seen();
    let from_llxprt: Vec<_> = seen
        .iter()
        .filter(|r| r.user_agent.as_deref() != Some(SIMULATED_BROWSER))
        .collect();
    let os = std::env::consts::OS;
    for request in &from_llxprt {
        let ua = request.user_agent.as_deref().unwrap_or("(none)");
        assert!(
            ua.starts_with("llxprt/") && ua.contains(&format!("({os}; ")),
            "{} {} said User-Agent {ua}",
            request.method,
            request.path
        );
    }
    let paths: Vec<&str> = from_llxprt.iter().map(|r| r.path.as_str()).collect();
    for expected in [
        "/anthropic/v1/oauth/token",
        "/anthropic/v1/messages",
        "/gemini/token",
        "/gemini/code-assist/v1internal:loadCodeAssist",
        "/gemini/code-assist/v1internal:streamGenerateContent",
        "/qwen/api/v1/oauth2/device/code",
        "/qwen/api/v1/oauth2/token",
        "/qwen/v1/chat/completions",
        "/codex/oauth/token",
        "/codex/backend-api/codex/responses",
    ] {
        assert!(
            paths.contains(&expected),
            "no request to {expected}: {paths:?}"
        );
    }
    let printed = format!("{}{}", run.stdout, run.stderr);
    assert!(!printed.contains("Claude Code,") && !printed.contains("claude-cli"));
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_refusal_marks_the_bucket_refused_once_hands_over_and_a_login_clears_it() {
    let lab = Lab::start().await;
    lab.seed(ANTHROPIC, "w1").await;
    lab.seed(ANTHROPIC, "w2").await;
    let mut child = lab.team("anthropic", &["w1", "w2"], &[]).await;
    lab.sim
        .fail_next_chat_requests(ANTHROPIC, "w1", 1, ForcedFailure::PolicyRefusal);
    let chats = |bucket| lab.counters(ANTHROPIC, bucket).chat_requests;

    child.ask("first", "anthropic", "w2").await;
    child.ask("second", "anthropic", "w2").await;
    assert_eq!(
        (chats("w1"), chats("w2")),
        (1, 2),
        "a refused bucket is skipped"
    );
    command(
        &mut child,
        "/auth anthropic status",
        "[refused] w1 (credential only authorized for Claude Code)",
    )
    .await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let printed = format!("{}{}", run.stdout, run.stderr);
    let notices = printed
        .matches(
            "anthropic/w1 is refused by the provider (credential only authorized for Claude Code)",
        )
        .count();
    assert_eq!(notices, 1, "{printed}");
    assert!(printed.contains("ANTHROPIC_API_KEY"), "{printed}");
    assert_eq!(
        health_json(&lab)["buckets"]["anthropic/w1"]["state"],
        "refused"
    );

    // Another process sees the mark; a new login of the bucket clears it.
    let status = lab.run(&["auth", "anthropic", "status"], &[], &[]).await;
    assert!(status.stdout.contains("[refused] w1"), "{}", status.stdout);
    let mut child = lab.team("anthropic", &["w1", "w2"], &[]).await;
    lab.sim.set_login_account(ANTHROPIC, "w1");
    child.login(&lab, ANTHROPIC, "w1").await;
    child.ask("third", "anthropic", "w1").await;
    command(&mut child, "/auth anthropic status", "[ok] w1").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(chats("w1"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_extra_usage_is_a_quota_refusal_that_says_what_to_do() {
    let lab = Lab::start().await;
    lab.seed(ANTHROPIC, "w1").await;
    lab.seed(ANTHROPIC, "w2").await;
    let mut child = lab.team("anthropic", &["w1", "w2"], &[]).await;
    lab.sim
        .fail_next_chat_requests(ANTHROPIC, "w1", 1, ForcedFailure::ExtraUsageExhausted);
    child.ask("hello", "anthropic", "w2").await;
    command(&mut child, "/auth anthropic status", "[cooldown] w1").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("claude.ai/settings/usage"),
        "{}",
        run.stderr
    );
    assert_eq!(lab.counters(ANTHROPIC, "w1").chat_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwens_ended_tier_is_refused_after_one_refresh_and_names_dashscope() {
    let lab = Lab::start().await;
    lab.seed(QWEN, "default").await;
    lab.sim
        .fail_next_chat_requests(QWEN, "default", 2, ForcedFailure::PolicyRefusal);
    let run = lab
        .run(
            &[],
            &[],
            &[
                "/auth qwen enable",
                "/provider qwen",
                "hello",
                "again",
                "/auth qwen status",
            ],
        )
        .await;
    assert_eq!(run.code(), Some(1), "the messages failed: {}", run.stdout);
    let counters = lab.counters(QWEN, "default");
    assert_eq!((counters.chat_requests, counters.refreshes), (2, 1));
    assert!(
        run.stderr.contains("Qwen's free OAuth tier has ended"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("DASHSCOPE_API_KEY"), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("[refused] default (Qwen's free OAuth tier has ended)"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_refusal_is_the_users_to_fix_and_codex_defaults_to_a_model_it_offers() {
    let lab = Lab::start().await;
    lab.seed(CODEX, "c1").await;
    lab.seed(CODEX, "c2").await;
    let mut child = lab.team("openai", &["c1", "c2"], &[]).await;
    // No model chosen: the default is one every ChatGPT plan is offered.
    child.ask("hello", "codex", "c1").await;
    command(&mut child, "/model gpt-5", "gpt-5").await;
    child.send("hello again").await;
    child.wait_for("/model").await;
    command(&mut child, "/auth codex status", "[ok] c1").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(1), "{}", run.stdout);
    assert!(
        run.stderr.contains("'gpt-5' model is not supported"),
        "{}",
        run.stderr
    );
    let sent = lab
        .sim
        .requests_seen()
        .iter()
        .filter(|r| r.path == "/codex/backend-api/codex/responses")
        .count();
    assert_eq!(sent, 2, "one answer and one refusal, no retry");
    assert_eq!(lab.counters(CODEX, "c2").chat_requests, 0, "no switch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdn_page_and_a_5xx_mark_no_bucket() {
    let lab = Lab::start().await;
    lab.seed(ANTHROPIC, "w1").await;
    lab.seed(ANTHROPIC, "w2").await;
    let mut child = lab.team("anthropic", &["w1", "w2"], &[]).await;
    lab.sim
        .fail_next_chat_requests(ANTHROPIC, "w1", 1, ForcedFailure::CdnChallenge);
    lab.sim
        .fail_next_chat_requests(ANTHROPIC, "w1", 1, ForcedFailure::ServerError);
    child.send("one").await;
    child.wait_for("proxy or CDN").await;
    child.send("two").await;
    child.wait_for("(500)").await;
    child.ask("three", "anthropic", "w1").await;
    command(&mut child, "/auth anthropic status", "[ok] w1").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(1), "{}", run.stdout);
    assert_eq!(lab.counters(ANTHROPIC, "w1").chat_requests, 3);
    assert_eq!(lab.counters(ANTHROPIC, "w2").chat_requests, 0);
    assert!(!run.stdout.contains("[needs login]"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_info_and_an_http_date_cool_the_bucket_down_that_long() {
    let lab = Lab::start().await;
    for bucket in ["g1", "g2"] {
        lab.seed(GEMINI, bucket).await;
    }
    let hour = 3600;
    lab.sim.fail_next_chat_requests(
        GEMINI,
        "g1",
        1,
        ForcedFailure::RateLimited {
            retry_after_secs: hour,
        },
    );
    let mut child = lab.team("gemini", &["g1", "g2"], &[]).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    child.ask("hello", "gemini", "g2").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let until = health_json(&lab)["buckets"]["gemini/g1"]["until"]
        .as_i64()
        .unwrap();
    assert!(
        until >= before + hour as i64 - 5,
        "cooled only until {until}"
    );

    lab.seed(ANTHROPIC, "w1").await;
    lab.seed(ANTHROPIC, "w2").await;
    lab.sim.fail_next_chat_requests(
        ANTHROPIC,
        "w1",
        1,
        ForcedFailure::RateLimitedUntilDate {
            retry_after_secs: hour,
        },
    );
    let mut child = lab.team("anthropic", &["w1", "w2"], &[]).await;
    child.ask("hello", "anthropic", "w2").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let until = health_json(&lab)["buckets"]["anthropic/w1"]["until"]
        .as_i64()
        .unwrap();
    assert!(
        until >= before + hour as i64 - 5,
        "cooled only until {until}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_sends_the_project_onboards_new_accounts_and_explains_refusals() {
    let lab = Lab::start().await;
    for account in ["work", "fresh", "personal", "school"] {
        lab.seed(GEMINI, account).await;
    }
    lab.sim
        .set_code_assist_account("work", CodeAssistAccount::NeedsProject);
    lab.sim
        .set_code_assist_account("fresh", CodeAssistAccount::NewFreeTier);
    lab.sim
        .set_code_assist_account("personal", CodeAssistAccount::Personal);
    lab.sim
        .set_code_assist_account("school", CodeAssistAccount::Ineligible);

    // Without a project, the Workspace account's message names the setting.
    let ask = |bucket: &str, text: &str| {
        vec![
            "/provider gemini".to_owned(),
            format!("/profile save model g-{bucket} {bucket}"),
            format!("/profile load g-{bucket}"),
            text.to_owned(),
        ]
    };
    let lines = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join("\n");
    let run = lab.run(&[], &[], &[&lines(&ask("work", "hello"))]).await;
    assert!(
        run.stderr.contains("providers.gemini.project"),
        "{}",
        run.stderr
    );
    let run = lab
        .run(
            &[],
            &[("GOOGLE_CLOUD_PROJECT", "my-team-project")],
            &[&lines(&ask("work", "hello"))],
        )
        .await;
    assert!(
        run.stdout.contains(&reply("gemini", "work", "hello")),
        "{}\n{}",
        run.stdout,
        run.stderr
    );

    // A new free-tier account is onboarded once, without a project.
    let run = lab
        .run(
            &[],
            &[("GOOGLE_CLOUD_PROJECT", "my-team-project")],
            &[&lines(&ask("fresh", "hi"))],
        )
        .await;
    assert!(
        run.stdout.contains(&reply("gemini", "fresh", "hi")),
        "{}\n{}",
        run.stdout,
        run.stderr
    );

    // A personal account is refused to llxprt; an ineligible one says why.
    let run = lab.run(&[], &[], &[&lines(&ask("personal", "hi"))]).await;
    assert!(
        run.stderr.contains("client no longer supported"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("GEMINI_API_KEY"), "{}", run.stderr);
    let status = lab.run(&["auth", "gemini", "status"], &[], &[]).await;
    assert!(
        status.stdout.contains("[refused] personal"),
        "{}",
        status.stdout
    );
    let run = lab.run(&[], &[], &[&lines(&ask("school", "hi"))]).await;
    assert!(
        run.stderr.contains("managed by an organization"),
        "{}",
        run.stderr
    );

    let seen = lab.sim.requests_seen();
    assert_eq!(
        seen.iter()
            .filter(|r| r.path == "/gemini/code-assist/v1internal:onboardUser")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen_polling_honours_slow_down_over_429_and_login_shows_the_terms() {
    let lab = Lab::start().await;
    lab.sim.slow_down_next_device_polls(QWEN, 1);
    let mut child = lab.spawn(&[], &[]);
    child.login(&lab, QWEN, "default").await;
    child.send("/auth anthropic login").await;
    child.sign_in(&lab, ANTHROPIC).await;
    child.wait_for("Logged in to anthropic/default").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(
        lab.sim.provider_counters(QWEN).device_slow_downs,
        1,
        "the longer interval was kept: no second slow_down"
    );
    let out = run.stdout;
    let terms = out
        .find("Qwen's free OAuth tier ended")
        .expect("Qwen's notice");
    let visit = out.find("Visit: ").unwrap();
    assert!(terms < visit, "the notice comes before the URL:\n{out}");
    let terms = out
        .find("Anthropic reserves Claude subscriptions")
        .expect("Anthropic's notice");
    let url = out
        .find(&lab.sim.endpoints().anthropic.authorize_url)
        .unwrap();
    assert!(terms < url, "the notice comes before the URL:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_anthropic_token_endpoint_answers_404_and_the_login_says_so() {
    let lab = Lab::start().await;
    let old = format!(
        "providers.anthropic.oauth.token_url={}",
        lab.sim.endpoints().anthropic.old_token_url
    );
    let mut child = lab.spawn(&["--set", &old], &[]);
    child.send("/auth anthropic login").await;
    child.sign_in(&lab, ANTHROPIC).await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(1), "{}", run.stdout);
    assert!(
        run.stderr.contains("404") && run.stderr.contains("providers.anthropic.oauth.token_url"),
        "{}",
        run.stderr
    );
    assert_eq!(lab.sim.provider_counters(ANTHROPIC).token_exchanges, 0);
    assert!(lab
        .sim
        .requests_seen()
        .iter()
        .any(|r| r.path == "/anthropic/console/v1/oauth/token"));
}
