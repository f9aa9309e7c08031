//! The ports and services of llxprt.
//!
//! Services orchestrate sign-in, refresh and sending over the ports in [`ports`]; the decisions
//! themselves come from `llxprt-domain`. This crate does no I/O of its own: every file, socket,
//! clock and terminal is reached through a port.

#![warn(missing_docs)]

pub mod commands;
pub mod ports;
pub mod presenter;
pub mod services;
pub mod session;
pub mod settings;
pub mod shell;

#[cfg(test)]
mod test_support;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
