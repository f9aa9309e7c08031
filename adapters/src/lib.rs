//! The adapters of llxprt: implementations of the application's ports.
//!
//! Only this crate knows JSON, HTTP, files and terminals.

pub mod chat;
pub mod clock;
mod fsutil;
pub mod health;
mod html;
pub mod oauth;
pub mod repl;
pub mod sandbox;
pub mod settings;
pub mod simulator;
pub mod stats;
pub mod store;
