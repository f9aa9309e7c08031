//! Test support for embedders and adapters (feature `testkit`): an honest in-memory double of
//! every port, and the contract suites every implementation of a store port passes.
//!
//! The doubles keep state as the real adapters do and can be told to fail:
//! [`MemoryTokenStore`], [`MemoryStatsStore`], [`MemoryHealthStore`], [`MemoryConfigStore`],
//! [`FakeOAuthFlow`], [`RecordingBrowser`], [`FakeChatClient`], [`ScriptedPrompt`], [`ManualClock`].
//!
//! The suites panic on the first broken promise, like any test: [`token_store`] (one case per
//! promise) and [`token_store_model`] (random sequences checked against a model) for token
//! stores, [`persistence_stores`] for statistics and health stores, [`config_store`] for
//! settings, profiles and key files. Enable the feature in dev-dependencies only.

mod browser;
mod chat_client;
mod clock;
pub mod config_store;
mod faults;
mod memory_config_store;
mod memory_persistence;
mod memory_token_store;
mod oauth_flow;
pub mod persistence_stores;
mod prompt;
pub mod token_store;
pub mod token_store_model;

pub use browser::RecordingBrowser;
pub use chat_client::{FakeChatClient, Sender};
pub use clock::ManualClock;
pub use memory_config_store::{ConfigOperation, MemoryConfigStore};
pub use memory_persistence::{
    unavailable, MemoryHealthStore, MemoryStatsStore, PersistenceOperation,
};
pub use memory_token_store::{MemoryTokenStore, StoreOperation};
pub use oauth_flow::{FakeOAuthFlow, FAKE_TOKEN_LIFETIME_SECONDS};
pub use prompt::{ScriptedPrompt, Shown};
