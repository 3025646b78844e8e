//! Logic Apps: the parts of a workflow definition serveRless writes, built in
//! plain Rust so they can be checked without Azure.
//!
//! Scheduled scoring runs as a Consumption Logic App whose trigger is a
//! `Recurrence`; [`recurrence`] turns the user's cron line into one.

mod cron;
pub mod recurrence;
mod time_zone;

pub use recurrence::{
    cron_to_recurrence, known_time_zones, windows_time_zone, Frequency, Recurrence, Schedule,
    WeekDay,
};
