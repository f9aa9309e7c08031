//! Integration tests of the built `llxprt` binary: one test binary, one module per area.

// Helpers here are test code too: a step that fails is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod command_line;
mod line_mode;
mod pty;
mod readme;
mod statistics;
mod support;
