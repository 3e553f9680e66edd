//! Access control: API tokens for people and automation, the role table, and the tower
//! layer that checks both on every call, REST calls included.

mod layer;
mod roles;
mod tokens;

pub use layer::{AuthLayer, AuthPolicy, Caller};
pub use roles::{Access, Role, access_for};
pub use tokens::{TokenEntry, TokenError, TokenFile, Tokens, generate_token};
