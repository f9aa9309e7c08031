//! The adapters of llxprt: implementations of the application's ports.
//!
//! Only this crate knows JSON, HTTP, files and terminals.

mod fsutil;
pub mod repl;
pub mod sandbox;
pub mod oauth;
pub mod chat;
pub mod settings;
pub mod simulator;
pub mod stats;
pub mod store;
