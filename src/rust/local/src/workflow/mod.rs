//! Executing Logic Apps workflows: the expression language, definition validation
//! and the run engine.

pub(crate) mod connectors;
pub mod expr;
pub(crate) mod recurrence;
pub(crate) mod validate;
