//! Integration tests of the built `llxprt` binary: one test binary, one module per area.

// Helpers here are test code too: a step that fails is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_files;
mod browser;
mod command_line;
mod commands;
mod failover;
mod killed_refresh;
mod line_mode;
mod messaging;
mod no_leaks;
mod pty;
mod quota;
mod readme;
mod refresh;
mod security;
mod signin;
mod statistics;
mod stats;
mod storage;
mod streaming;
mod support;
mod team_store;
mod today;
