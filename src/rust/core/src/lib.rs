//! serveRless core: every Azure call the package makes, in plain Rust.
//!
//! No R types here (the `r` crate converts); one module per Azure service.

pub mod aci;
pub mod acr;
pub mod arm;
pub mod auth;
pub mod blob;
pub mod deploy;
pub mod error;
pub mod identity;
pub mod plan;
pub mod progress;
pub mod score;
pub mod store;
pub mod templates;

pub use error::{Error, ErrorKind, Result};
pub use progress::Progress;
