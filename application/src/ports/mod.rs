//! The ports: what the services need from the outside world, named by role.
//!
//! Adapters implement them; services depend only on these traits. Each port has one error type,
//! classified for the caller, never a leaked transport or file-system error.

pub mod chat;
pub mod clock;
pub mod config_store;
pub mod health_store;
pub mod oauth_flow;
pub mod persistence;
pub mod prompt;
pub mod stats_store;
pub mod token_store;

pub use chat::{ChatAuth, ChatClient, ChatError, ChatMessage, ChatReply, ChatRequest, Role};
pub use clock::Clock;
pub use config_store::{ConfigError, KeyFiles, ProfileStore, SettingsStore};
pub use health_store::HealthStore;
pub use oauth_flow::{Browser, BrowserError, FlowError, OAuthFlow, RefreshError};
pub use persistence::PersistenceError;
pub use prompt::{PromptError, UserPrompt};
pub use stats_store::StatsStore;
pub use token_store::{BucketLock, StoreError, TokenStore};
