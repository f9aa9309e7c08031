//! The provider simulator over real HTTP on loopback: every flow works for a correct client,
//! and every strictness rule refuses a broken one.

// Test helpers may go unused in one module or another, and like the tests they panic on
// whatever a correct simulator never does (clippy's test exemption covers only `#[test]`s).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
mod codex;
mod controls;
mod gemini;
mod identity;
mod oauth2_crate;
mod openai;
mod qwen;
mod slow;
mod streaming;
mod support;
mod usage;
