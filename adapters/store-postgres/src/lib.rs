//! llxprt's team store: OAuth tokens, bucket health and statistics in one PostgreSQL database
//! that every machine of a person or a team points at ([`PostgresStore`]).
//!
//! - One refresher per bucket across machines: [`TokenStore::lock`] is a session advisory lock
//!   on a connection of its own, which ends with its holder's connection.
//! - Tokens are sealed with the team key by a [`TokenSealer`] (associated data: the bucket); the
//!   database keeps the key's check value, so a wrong key is refused before any token is read.
//! - The schema is migrated at start ([`SCHEMA_VERSION`]), safely when machines start at once.
//!
//! The token store passes the contract suite of `llxprt_application::testkit::token_store`.
//!
//! [`TokenStore::lock`]: llxprt_application::ports::TokenStore::lock

mod address;
mod schema;
mod sealer;
mod store;

pub use address::{AddressError, StoreAddress};
pub use schema::SCHEMA_VERSION;
pub use sealer::{SealError, TokenSealer};
pub use store::{OpenError, PostgresOptions, PostgresStore};
