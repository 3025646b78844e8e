//! serveRless core: every Azure call the package makes, in plain Rust, and the
//! table I/O of scoring jobs.
//!
//! No R types here (the `r` crate converts); one module per Azure service, plus
//! `table` (CSV and Parquet).

pub mod aci;
pub mod acr;
pub mod arm;
pub mod auth;
pub mod blob;
pub mod cost;
pub mod deploy;
pub mod error;
pub mod identity;
pub mod logic;
pub mod plan;
pub mod progress;
pub mod score;
pub mod store;
pub mod table;
pub mod templates;

pub use error::{Error, ErrorKind, Result};
pub use progress::Progress;

/// A boxed future: what the public async operations the R bindings call return.
/// Boxed here, the state machine is compiled once, in this crate (in parallel with
/// the emulator), instead of again in the bindings crate at the end of a clean build,
/// where it was most of that crate's code (bench/RESULTS.md).
/// (futures' own alias: `Pin<Box<dyn Future<Output = T> + Send + 'a>>`.)
pub use futures::future::BoxFuture;

/// Makes ring the process's rustls crypto provider, once. reqwest is built without a
/// provider of its own (see the workspace Cargo.toml), so every HTTP client is made
/// after this; calling it again, or after someone else installed one, does nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
