//! Test support for other teams' adapters: contract suites every port implementation passes.
//!
//! Enabled by the `testkit` feature, for dev-dependencies only. The suites panic on the first
//! broken promise, like any test.

mod memory_token_store;
pub mod token_store;

pub use memory_token_store::MemoryTokenStore;
