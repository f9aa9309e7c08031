//! The services: use cases that orchestrate the ports and follow the domain's decisions.

pub mod auth_service;
pub mod chat_service;
pub mod credentials;
pub mod messages;
pub mod token_service;

pub use auth_service::{AuthError, AuthService};
pub use chat_service::{ChatClients, ChatService, SendError, SendTarget};
pub use credentials::{CredentialContext, CredentialService};
pub use messages::{MessageError, MessageService, MessageTarget, Sent};
pub use token_service::{FlowRegistry, TokenError, TokenService};
