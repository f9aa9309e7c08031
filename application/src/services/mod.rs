//! The services: use cases that orchestrate the ports and follow the domain's decisions.

pub mod token_service;

pub use token_service::{FlowRegistry, TokenError, TokenService};
