//! The services: use cases that orchestrate the ports and follow the domain's decisions.

pub mod auth_service;
pub mod token_service;

pub use auth_service::{AuthError, AuthService};
pub use token_service::{FlowRegistry, TokenError, TokenService};
