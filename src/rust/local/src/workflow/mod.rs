//! Executing Logic Apps (Consumption) workflows: the expression language
//! ([`expr`], public), definition checks at PUT, the run engine, triggers and the
//! managed connectors the package uses.
//!
//! Supported (anything else is refused at PUT with `WorkflowNotSupportedByLocalAzure`
//! or Azure's `InvalidTemplate`, never run differently):
//! - triggers: `Recurrence` (Second..Month, interval, startTime, schedule, Windows
//!   time zones with EU/US daylight saving), `Request` (kind Http, callback URL) and
//!   the `azureblob` "when a blob is added or modified (properties only)" polling
//!   trigger; any trigger can be run by hand (`POST .../triggers/{t}/run`);
//! - actions: `Http` (managed identity authentication, retries, 202 + Location
//!   polling), `ApiConnection` of the `aci` connector, `Until`, `If`, `Wait`
//!   (interval), `Foreach`, `Scope`, `Compose`, `InitializeVariable`,
//!   `IncrementVariable`, `AppendToArrayVariable`, `SetVariable`, `Terminate`, with
//!   `runAfter` on Succeeded, Failed, Skipped and TimedOut.
//!
//! Differences from Azure: action and trigger inputs and outputs are inline in the
//! runs API (Azure links them as `inputsLink`/`outputsLink`); HTTP requests only go
//! to this emulator's ARM, seeded storage accounts and loopback addresses; retry
//! intervals are scaled down; a recurrence without start time fires on minute
//! (second) boundaries counted from the save rather than at the save's exact second.

pub(crate) mod blob;
pub(crate) mod connectors;
pub(crate) mod engine;
pub mod expr;
pub(crate) mod http;
pub(crate) mod recurrence;
pub(crate) mod triggers;
pub(crate) mod validate;
