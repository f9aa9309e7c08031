//! Token stores: the file store (the default) and the in-memory store.
//!
//! Both pass the contract suite of `llxprt_application::testkit::token_store`.

mod file;
pub mod json;
mod memory;

pub use file::{FileTokenStore, DEFAULT_SETTLE_TIME, MAX_TOKEN_FILE_BYTES};
pub use memory::MemoryTokenStore;
