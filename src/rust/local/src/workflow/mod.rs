//! Executing Logic Apps workflows: the expression language, definition validation
//! and the run engine.

pub mod expr;
