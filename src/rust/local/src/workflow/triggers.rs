//! Triggers that fire by themselves: `Recurrence` timers (and the polling of the
//! azureblob trigger), restarted whenever a workflow is saved, enabled, disabled or
//! deleted.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::engine::start_run;
use super::recurrence::Recurrence;
use super::validate::canonical_type;
use crate::state::Inner;
use crate::util;

/// Stops the workflow's timers and, when it is enabled, starts new ones. `saved`:
/// the workflow was just saved or enabled (a recurrence without start time or
/// schedule then fires at once, as in Azure).
pub fn reschedule(inner: &Arc<Inner>, wf_key: &str, saved: bool) {
    let (generation, wf) = {
        let mut world = inner.world();
        let g = world.workflow_timers.entry(wf_key.to_string()).or_insert(0);
        *g += 1;
        let generation = *g;
        (generation, world.resources.get(wf_key).cloned())
    };
    let Some(wf) = wf else {
        return;
    };
    if !is_enabled(&wf) {
        return;
    }
    let Some(triggers) = wf["properties"]["definition"]["triggers"].as_object() else {
        return;
    };
    let now = OffsetDateTime::now_utc();
    for (name, t) in triggers {
        let ty = t["type"]
            .as_str()
            .and_then(|x| canonical_type(x, super::validate::TRIGGER_TYPES));
        let Ok(recurrence) = Recurrence::parse(&t["recurrence"]) else {
            continue;
        };
        match ty {
            Some("Recurrence") => {
                tokio::spawn(timer(
                    inner.clone(),
                    wf_key.to_string(),
                    generation,
                    name.clone(),
                    recurrence,
                    now,
                    saved,
                    None,
                ));
            }
            Some("ApiConnection") => {
                tokio::spawn(timer(
                    inner.clone(),
                    wf_key.to_string(),
                    generation,
                    name.clone(),
                    recurrence,
                    now,
                    true,
                    Some(t.clone()),
                ));
            }
            _ => {}
        }
    }
}

pub fn is_enabled(wf: &Value) -> bool {
    wf["properties"]["state"]
        .as_str()
        .is_none_or(|s| s.eq_ignore_ascii_case("enabled"))
}

/// The timer still stands: same generation, and the workflow still exists enabled
/// (a deleted resource group takes its workflows without restarting timers).
fn current(inner: &Inner, wf_key: &str, generation: u64) -> bool {
    let world = inner.world();
    world.workflow_timers.get(wf_key) == Some(&generation)
        && world.resources.get(wf_key).is_some_and(is_enabled)
}

/// Fires a trigger on its schedule until the workflow changes or the emulator stops.
/// `poll`: the trigger is the azureblob polling trigger (checks for blobs on each
/// tick and starts one run per new or changed blob).
#[allow(clippy::too_many_arguments)]
async fn timer(
    inner: Arc<Inner>,
    wf_key: String,
    generation: u64,
    name: String,
    recurrence: Recurrence,
    saved: OffsetDateTime,
    fire_now: bool,
    poll: Option<Value>,
) {
    let mut shutdown = inner.shutdown.clone();
    let mut seen = super::blob::Seen::default();
    if fire_now && (recurrence.fires_on_save() || poll.is_some()) {
        fire(&inner, &wf_key, &name, saved, poll.as_ref(), &mut seen).await;
    }
    let mut last = saved;
    loop {
        let Some(next) = recurrence.next_after(saved, last) else {
            return;
        };
        let wait = (next - OffsetDateTime::now_utc())
            .try_into()
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        if !current(&inner, &wf_key, generation) {
            return;
        }
        fire(&inner, &wf_key, &name, next, poll.as_ref(), &mut seen).await;
        last = next;
    }
}

async fn fire(
    inner: &Arc<Inner>,
    wf_key: &str,
    name: &str,
    scheduled: OffsetDateTime,
    poll: Option<&Value>,
    seen: &mut super::blob::Seen,
) {
    match poll {
        None => {
            let _ = start_run(inner, wf_key, name, json!({"headers": {}}), Some(scheduled));
        }
        Some(trigger) => {
            let start = util::now_rfc3339();
            match super::blob::poll(inner, wf_key, trigger, seen).await {
                // A poll that finds nothing new is a Skipped history, one that fails
                // a Failed one; each run it starts records its own (Succeeded).
                Ok(bodies) if bodies.is_empty() => {
                    record_history(inner, wf_key, name, &start, Some(scheduled), Err(None));
                }
                Ok(bodies) => {
                    for body in bodies {
                        let _ = start_run(
                            inner,
                            wf_key,
                            name,
                            json!({"headers": {}, "body": body}),
                            Some(scheduled),
                        );
                    }
                }
                Err(message) => {
                    record_history(
                        inner,
                        wf_key,
                        name,
                        &start,
                        Some(scheduled),
                        Err(Some(&message)),
                    );
                }
            }
        }
    }
}

/// Most histories kept per trigger (Azure keeps them for the retention period).
const HISTORIES_KEPT: usize = 500;

/// Records one evaluation of a trigger as `GET .../triggers/{t}/histories` lists it
/// (Logic swagger 2019-05-01, `WorkflowTriggerHistory`): `Ok(run)` fired that run;
/// `Err(None)` was skipped (nothing to fire); `Err(Some(message))` failed.
pub fn record_history(
    inner: &Inner,
    wf_key: &str,
    trigger: &str,
    start: &str,
    scheduled: Option<OffsetDateTime>,
    outcome: Result<(&str, &str), Option<&str>>,
) {
    let mut world = inner.world();
    let Some(wf_id) = world
        .resources
        .get(wf_key)
        .and_then(|w| w["id"].as_str().map(str::to_string))
    else {
        return;
    };
    let end = util::now_rfc3339();
    let (name, mut props) = match outcome {
        Ok((run_name, run_id)) => (
            run_name.to_string(),
            json!({"status": "Succeeded", "code": "OK", "fired": true,
                "run": {"id": run_id, "name": run_name, "type": "Microsoft.Logic/workflows/runs"}}),
        ),
        Err(None) => (
            super::engine::new_run_name(),
            json!({"status": "Skipped", "code": "NotSpecified", "fired": false}),
        ),
        Err(Some(message)) => (
            super::engine::new_run_name(),
            json!({"status": "Failed", "code": "BadRequest", "fired": false,
                "error": {"code": "BadRequest", "message": message}}),
        ),
    };
    props["startTime"] = json!(start);
    props["endTime"] = json!(end);
    if let Some(s) = scheduled {
        props["scheduledTime"] = json!(util::rfc3339(s));
    }
    props["correlation"] = json!({"clientTrackingId": name});
    let key = format!("{wf_key}/triggers/{}", trigger.to_ascii_lowercase());
    let list = world.trigger_histories.entry(key).or_default();
    list.push(json!({
        "id": format!("{wf_id}/triggers/{trigger}/histories/{name}"),
        "name": name,
        "type": "Microsoft.Logic/workflows/triggers/histories",
        "properties": props,
    }));
    if list.len() > HISTORIES_KEPT {
        list.remove(0);
    }
}
