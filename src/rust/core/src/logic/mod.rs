//! Logic Apps: scheduled and event-driven scoring as Consumption workflows.
//!
//! [`recurrence`] turns the user's cron line into a Recurrence trigger;
//! [`schedule`] renders the workflow from its template, writes it with the roles
//! its identity needs, and manages its runs.

mod cron;
pub mod recurrence;
pub mod schedule;
mod time_zone;

pub use recurrence::{
    cron_to_recurrence, known_time_zones, windows_time_zone, Frequency, Recurrence, Schedule,
    WeekDay,
};
