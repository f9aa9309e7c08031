//! Issue 11, item 6: time to the first piece of a streamed reply.
//!
//! `through_chat_service` is the time from `ChatService::send` (token, failover, the Anthropic
//! chat client, the stream reader) to the moment the first piece of text reaches the prompt;
//! `bare_stream` the time from a bare `reqwest` request with the same body and headers to the
//! moment the first `content_block_delta` event has arrived. Both read their stream to the end
//! (untimed), so both reuse their connections alike. Goal: at most 1.05×.

// A bench whose setup fails is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use common::{Ratio, Rig};
use criterion::Criterion;
use futures_util::StreamExt;
use llxprt_application::ports::{PromptError, UserPrompt};
use llxprt_domain::Token;

const GROUP: &str = "first_piece";

/// A prompt that notes when the first piece of a reply arrives.
#[derive(Default)]
struct FirstPiece {
    at: Mutex<Option<Instant>>,
}

#[async_trait]
impl UserPrompt for FirstPiece {
    fn show(&self, _line: &str) {}

    fn stream(&self, text: &str) {
        let mut at = self.at.lock().unwrap();
        if at.is_none() && !text.is_empty() {
            *at = Some(Instant::now());
        }
    }

    fn waiting(&self, _what: &str, _done: bool) {}

    async fn ask(&self, question: &str) -> Result<String, PromptError> {
        Err(PromptError::NoInput(question.to_owned()))
    }
}

/// A bare streaming request: the time until the first text delta has arrived.
async fn bare_first_piece(rig: &Rig, token: &Token) -> Duration {
    let url = format!("{}/v1/messages", rig.settings.providers.anthropic.base_url);
    let start = Instant::now();
    let response = rig
        .bare
        .post(url)
        .header("anthropic-version", "2023-06-01")
        .bearer_auth(token.access_token.expose())
        .header("anthropic-beta", "oauth-2025-04-20")
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .json(&common::anthropic_body(&common::hello()))
        .send()
        .await
        .expect("the simulator answers");
    assert!(response.status().is_success(), "{}", response.status());
    let mut stream = response.bytes_stream();
    let mut seen = Vec::new();
    let mut first = None;
    while let Some(chunk) = stream.next().await {
        seen.extend_from_slice(&chunk.expect("the stream goes on"));
        if first.is_none() && contains(&seen, b"\"text_delta\"") {
            first = Some(start.elapsed());
        }
    }
    first.expect("the stream carried a text delta")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn bench(c: &mut Criterion, rig: &Rig) {
    let token = rig.login("default");
    let target = rig.target(&[]);
    let through_service = || {
        let prompt = FirstPiece::default();
        let start = Instant::now();
        let reply = rig
            .rt
            .block_on(rig.chat.send(&target, &common::hello(), &prompt))
            .expect("the reply streams");
        assert!(reply.text.contains("you said: hello"), "{}", reply.text);
        let first = prompt.at.lock().unwrap().expect("a piece was streamed");
        first - start
    };
    // Once before measuring: the reply really streams in pieces through the service.
    through_service();

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("bare_stream", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rig.rt.block_on(bare_first_piece(rig, &token)))
                .sum::<Duration>()
        });
    });
    group.bench_function("through_chat_service", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| through_service()).sum::<Duration>());
    });
    group.finish();
}

fn main() {
    let started = SystemTime::now();
    let rig = Rig::new();
    let mut c = common::criterion();
    bench(&mut c, &rig);
    c.final_summary();
    common::report_ratios(
        GROUP,
        started,
        &[Ratio {
            subject: "through_chat_service",
            baseline: "bare_stream",
            goal: Some(1.05),
        }],
    );
}
