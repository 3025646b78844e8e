//! Executing Logic Apps workflows: the expression language, definition validation
//! and the run engine.

pub(crate) mod blob;
pub(crate) mod connectors;
pub(crate) mod engine;
pub mod expr;
pub(crate) mod http;
pub(crate) mod recurrence;
pub(crate) mod triggers;
pub(crate) mod validate;
