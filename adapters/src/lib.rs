//! The adapters of llxprt: implementations of the application's ports.
//!
//! Only this crate knows JSON, HTTP, files and terminals.

pub mod chat;
pub mod settings;
pub mod simulator;
pub mod store;
