//! The run engine: executes a workflow definition on the emulator's tokio runtime
//! and records runs, actions and repetitions as the Logic Apps runs API shows them.
//!
//! Semantics follow Logic Apps:
//! - an action starts when every action in its `runAfter` has ended; it runs when
//!   each ended in one of the listed statuses (default `Succeeded`), else it is
//!   `Skipped`; independent actions run in parallel;
//! - `If`, `Scope`, `Foreach` and `Until` hold nested graphs; `Foreach` runs its
//!   iterations with the configured concurrency (default 20);
//! - `Terminate` ends the run at once (running actions become `Cancelled`);
//! - the status of a run (and of a scope) is that of the last actions executed on
//!   each path: every tail action (one no other action runs after) counts with its
//!   own status, and a skipped tail with the status of the actions it depended on.
//!   So a failure handled by an action that runs after it (`runAfter: Failed`)
//!   leaves the run `Succeeded`, while a failure whose only followers were skipped
//!   fails it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::connectors::{aci_operation, connection_key};
use super::expr::{self, to_text, values_equal, Context};
use super::http::{self, Outgoing, Retry};
use super::validate::{canonical_type, check_condition, parse_duration, ACTION_TYPES};
use crate::state::Inner;
use crate::token::Principal;
use crate::util;

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One run as the runs API serves it.
pub struct RunRecord {
    /// `{id, name, type, properties}`.
    pub run: Value,
    /// Action records by lowercased name (the latest repetition for loops).
    pub actions: HashMap<String, Value>,
    /// Repetition records by lowercased action name, in execution order.
    pub repetitions: HashMap<String, Vec<Value>>,
    /// Cancels the run (`POST .../runs/{id}/cancel`); `None` once it has ended.
    pub cancel: Option<watch::Sender<bool>>,
}

impl RunRecord {
    pub fn new(run: Value) -> RunRecord {
        RunRecord {
            run,
            actions: HashMap::new(),
            repetitions: HashMap::new(),
            cancel: None,
        }
    }

    pub fn name(&self) -> &str {
        self.run["name"].as_str().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
    Skipped,
    TimedOut,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "Succeeded",
            Status::Failed => "Failed",
            Status::Skipped => "Skipped",
            Status::TimedOut => "TimedOut",
            Status::Cancelled => "Cancelled",
        }
    }

    fn severity(self) -> u8 {
        match self {
            Status::Succeeded | Status::Skipped => 0,
            Status::Cancelled => 1,
            Status::TimedOut => 2,
            Status::Failed => 3,
        }
    }
}

/// How a run was stopped before its graph ended.
#[derive(Clone)]
enum Stop {
    Terminated {
        status: Status,
        error: Option<(String, String)>,
    },
    Cancelled,
}

/// A run in progress.
struct Run {
    inner: Arc<Inner>,
    wf_key: String,
    wf_id: String,
    wf_name: String,
    location: String,
    identity: Value,
    run_name: String,
    run_id: String,
    definition: Value,
    parameters: Map<String, Value>,
    trigger: Value,
    variables: Mutex<HashMap<String, (String, Value)>>,
    scope_results: Mutex<HashMap<String, Vec<Value>>>,
    /// Definition type of every action, by lowercased name.
    types: HashMap<String, &'static str>,
    stop_tx: watch::Sender<bool>,
    stop: Mutex<Option<Stop>>,
}

/// What expressions see at one point of the graph.
#[derive(Clone)]
struct Frame {
    /// Action results visible here, innermost last (a Foreach iteration has its own).
    results: Vec<Arc<Mutex<HashMap<String, Value>>>>,
    /// Enclosing Foreach loops: lowercased name and current item.
    items: Vec<(String, Value)>,
    /// Repetition indexes of enclosing loops: loop name and index.
    indexes: Vec<(String, usize)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Ctx<'a> {
    run: &'a Run,
    frame: &'a Frame,
}

impl Context for Ctx<'_> {
    fn parameter(&self, name: &str) -> Option<Value> {
        self.run.parameters.get(name).cloned()
    }

    fn action(&self, name: &str) -> Option<Value> {
        let key = name.to_ascii_lowercase();
        self.frame
            .results
            .iter()
            .rev()
            .find_map(|r| lock(r).get(&key).cloned())
    }

    fn body(&self, name: &str) -> Option<Value> {
        let a = self.action(name)?;
        // A Compose action's outputs are the composed value itself.
        if self.run.types.get(&name.to_ascii_lowercase()) == Some(&"Compose") {
            return Some(a["outputs"].clone());
        }
        Some(a["outputs"]["body"].clone())
    }

    fn trigger(&self) -> Option<Value> {
        Some(self.run.trigger.clone())
    }

    fn item(&self, loop_name: &str) -> Option<Value> {
        let key = loop_name.to_ascii_lowercase();
        self.frame
            .items
            .iter()
            .rev()
            .find(|(n, _)| *n == key)
            .map(|(_, v)| v.clone())
    }

    fn iteration(&self, loop_name: &str) -> Option<usize> {
        let key = loop_name.to_ascii_lowercase();
        if self.run.types.get(&key) != Some(&"Until") {
            return None;
        }
        self.frame
            .indexes
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(&key))
            .map(|(_, i)| *i)
    }

    fn variable(&self, name: &str) -> Option<Value> {
        lock(&self.run.variables)
            .get(&name.to_ascii_lowercase())
            .map(|(_, v)| v.clone())
    }

    fn workflow(&self) -> Value {
        json!({
            "id": self.run.wf_id,
            "name": self.run.wf_name,
            "type": "Microsoft.Logic/workflows",
            "location": self.run.location,
            "run": {"id": self.run.run_id, "name": self.run.run_name, "type": "Microsoft.Logic/workflows/runs"},
        })
    }

    fn scope_result(&self, name: &str) -> Option<Value> {
        lock(&self.run.scope_results)
            .get(&name.to_ascii_lowercase())
            .map(|v| Value::Array(v.clone()))
    }
}

/// The result of one action execution.
struct Outcome {
    status: Status,
    code: String,
    error: Option<(String, String)>,
    inputs: Option<Value>,
    outputs: Option<Value>,
    extra: Map<String, Value>,
}

impl Outcome {
    fn ok() -> Outcome {
        Outcome {
            status: Status::Succeeded,
            code: "OK".into(),
            error: None,
            inputs: None,
            outputs: None,
            extra: Map::new(),
        }
    }

    fn failed(code: &str, message: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Failed,
            code: code.into(),
            error: Some((code.into(), message.into())),
            ..Outcome::ok()
        }
    }

    fn scope(status: Status) -> Outcome {
        match status {
            Status::Failed | Status::TimedOut => Outcome {
                status: Status::Failed,
                ..Outcome::failed(
                    "ActionFailed",
                    "An action failed. No dependent actions succeeded.",
                )
            },
            Status::Cancelled => Outcome {
                status: Status::Cancelled,
                code: "Cancelled".into(),
                ..Outcome::ok()
            },
            _ => Outcome::ok(),
        }
    }

    fn with_inputs(mut self, inputs: Value) -> Outcome {
        self.inputs = Some(inputs);
        self
    }
}

fn template_error(action: &str, part: &str, e: String) -> Outcome {
    Outcome::failed(
        "InvalidTemplate",
        format!("Unable to process template language expressions in action '{action}' {part} at line '1' and column '1': '{e}'."),
    )
}

/// A new Azure-style run name: digits that decrease with time (newest sort first),
/// `CU`, two digits.
pub(crate) fn new_run_name() -> String {
    let nanos = u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0);
    let reversed = 9_999_999_999_999_999_999u64.saturating_sub(nanos);
    let r = util::random_bytes::<3>();
    format!(
        "08584{reversed:019}{:05}CU{:02}",
        u32::from(r[0]) * 256 + u32::from(r[1]),
        r[2] % 100
    )
}

fn collect_types(actions: &Value, out: &mut HashMap<String, &'static str>) {
    let Some(m) = actions.as_object() else {
        return;
    };
    for (name, a) in m {
        if let Some(t) = a["type"]
            .as_str()
            .and_then(|t| canonical_type(t, ACTION_TYPES))
        {
            out.insert(name.to_ascii_lowercase(), t);
        }
        collect_types(&a["actions"], out);
        collect_types(&a["else"]["actions"], out);
    }
}

/// The parameter values a run sees: `properties.parameters[name].value`, else the
/// definition's `defaultValue`.
pub fn resolve_parameters(wf: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(decl) = wf["properties"]["definition"]["parameters"].as_object() {
        for (name, d) in decl {
            if let Some(v) = d.get("defaultValue") {
                out.insert(name.clone(), v.clone());
            }
        }
    }
    if let Some(values) = wf["properties"]["parameters"].as_object() {
        for (name, v) in values {
            out.insert(name.clone(), v["value"].clone());
        }
    }
    out
}

/// Starts a run of the stored workflow `wf_key` (lowercased id) from `trigger_name`
/// with the trigger's outputs; returns the run's name.
pub fn start_run(
    inner: &Arc<Inner>,
    wf_key: &str,
    trigger_name: &str,
    trigger_outputs: Value,
    scheduled: Option<OffsetDateTime>,
) -> Result<String, String> {
    let Some(wf) = inner.world().resources.get(wf_key).cloned() else {
        return Err(format!("no workflow {wf_key}"));
    };
    let wf_id = wf["id"].as_str().unwrap_or_default().to_string();
    let version = wf["properties"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let run_name = new_run_name();
    let run_id = format!("{wf_id}/runs/{run_name}");
    let now = util::now_rfc3339();
    let mut trigger_record = json!({
        "name": trigger_name,
        "startTime": now,
        "endTime": now,
        "correlation": {"clientTrackingId": run_name},
        "code": "OK",
        "status": "Succeeded",
        "originHistoryName": run_name,
    });
    if let Some(s) = scheduled {
        trigger_record["scheduledTime"] = json!(util::rfc3339(s));
    }
    if !trigger_outputs.is_null() {
        trigger_record["outputs"] = trigger_outputs.clone();
    }
    let run_json = json!({
        "id": run_id,
        "name": run_name,
        "type": "Microsoft.Logic/workflows/runs",
        "properties": {
            "waitEndTime": now,
            "startTime": now,
            "status": "Running",
            "correlation": {"clientTrackingId": run_name},
            "workflow": {
                "id": format!("{wf_id}/versions/{version}"),
                "name": version,
                "type": "Microsoft.Logic/workflows/versions",
            },
            "trigger": trigger_record,
            "outputs": {},
        },
    });
    let (stop_tx, _) = watch::channel(false);
    let mut record = RunRecord::new(run_json);
    record.cancel = Some(stop_tx.clone());
    inner
        .world()
        .workflow_runs
        .entry(wf_key.to_string())
        .or_default()
        .push(record);
    let mut types = HashMap::new();
    collect_types(&wf["properties"]["definition"]["actions"], &mut types);
    let run = Arc::new(Run {
        inner: inner.clone(),
        wf_key: wf_key.to_string(),
        wf_name: wf["name"].as_str().unwrap_or_default().to_string(),
        location: wf["location"].as_str().unwrap_or_default().to_string(),
        wf_id,
        identity: wf["identity"].clone(),
        run_name: run_name.clone(),
        run_id: run_id.clone(),
        definition: wf["properties"]["definition"].clone(),
        parameters: resolve_parameters(&wf),
        trigger: trigger_record,
        variables: Mutex::new(HashMap::new()),
        scope_results: Mutex::new(HashMap::new()),
        types,
        stop_tx,
        stop: Mutex::new(None),
    });
    tokio::spawn(execute(run));
    super::triggers::record_history(
        inner,
        wf_key,
        trigger_name,
        &now,
        scheduled,
        Ok((&run_name, &run_id)),
    );
    Ok(run_name)
}

/// Cancels a running run; false when it is not running.
pub fn cancel_run(inner: &Inner, wf_key: &str, run_name: &str) -> Option<bool> {
    let world = inner.world();
    let rec = world
        .workflow_runs
        .get(wf_key)?
        .iter()
        .find(|r| r.name().eq_ignore_ascii_case(run_name))?;
    Some(match &rec.cancel {
        Some(tx) => {
            let _ = tx.send_replace(true);
            true
        }
        None => false,
    })
}

impl Run {
    fn is_stopped(&self) -> bool {
        *self.stop_tx.borrow()
    }

    async fn stopped(&self) {
        let mut rx = self.stop_tx.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    fn halt(&self, why: Stop) {
        lock(&self.stop).get_or_insert(why);
        // `send` leaves the value unchanged when no receiver exists (no action is
        // waiting yet): an action started after the halt would then never see it.
        let _ = self.stop_tx.send_replace(true);
    }

    fn with_record(&self, f: impl FnOnce(&mut RunRecord)) {
        let mut world = self.inner.world();
        if let Some(rec) = world
            .workflow_runs
            .get_mut(&self.wf_key)
            .and_then(|runs| runs.iter_mut().find(|r| r.name() == self.run_name))
        {
            f(rec);
        }
    }

    fn principal(&self, user_identity: Option<&str>) -> Result<(Principal, String), String> {
        let tenant = self.inner.config.tenant_id.clone();
        match user_identity {
            Some(id) => {
                let entry = self.identity["userAssignedIdentities"]
                    .as_object()
                    .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(id)))
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        format!(
                            "The user-assigned identity '{id}' is not assigned to the workflow."
                        )
                    })?;
                Ok((
                    Principal {
                        tenant_id: tenant,
                        object_id: entry["principalId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        app_id: entry["clientId"].as_str().unwrap_or_default().to_string(),
                    },
                    id.to_string(),
                ))
            }
            None => {
                let p = self.identity["principalId"]
                    .as_str()
                    .ok_or("The workflow has no system-assigned managed identity.")?;
                Ok((
                    Principal {
                        tenant_id: tenant,
                        object_id: p.to_string(),
                        app_id: p.to_string(),
                    },
                    self.wf_id.clone(),
                ))
            }
        }
    }
}

/// The API record of an action from its expression-shaped result.
fn action_record(run: &Run, name: &str, result: &Value, extra: &Map<String, Value>) -> Value {
    let mut props = Map::new();
    for key in [
        "startTime",
        "endTime",
        "status",
        "code",
        "error",
        "inputs",
        "outputs",
    ] {
        if let Some(v) = result.get(key).filter(|v| !v.is_null()) {
            props.insert(key.into(), v.clone());
        }
    }
    props.insert(
        "correlation".into(),
        json!({"actionTrackingId": result["trackingId"], "clientTrackingId": run.run_name}),
    );
    for (k, v) in extra {
        props.insert(k.clone(), v.clone());
    }
    json!({
        "id": format!("{}/actions/{name}", run.run_id),
        "name": name,
        "type": "Microsoft.Logic/workflows/runs/actions",
        "properties": props,
    })
}

fn repetition_name(indexes: &[(String, usize)]) -> String {
    indexes
        .iter()
        .map(|(_, i)| format!("{i:06}"))
        .collect::<Vec<_>>()
        .join("-")
}

fn repetition_indexes(indexes: &[(String, usize)]) -> Value {
    Value::Array(
        indexes
            .iter()
            .map(|(s, i)| json!({"scopeName": s, "itemIndex": i}))
            .collect(),
    )
}

/// Stores an action's result where expressions and the runs API find it.
fn record(run: &Run, frame: &Frame, name: &str, result: Value, extra: Map<String, Value>) {
    let key = name.to_ascii_lowercase();
    if let Some(r) = frame.results.last() {
        lock(r).insert(key.clone(), result.clone());
    }
    let api = action_record(run, name, &result, &extra);
    let repetition = (!frame.indexes.is_empty()).then(|| {
        let rep_name = repetition_name(&frame.indexes);
        let mut props = api["properties"].clone();
        props["repetitionIndexes"] = repetition_indexes(&frame.indexes);
        json!({
            "id": format!("{}/actions/{name}/repetitions/{rep_name}", run.run_id),
            "name": rep_name,
            "type": "Microsoft.Logic/workflows/runs/actions/repetitions",
            "properties": props,
        })
    });
    run.with_record(|rec| {
        rec.actions.insert(key.clone(), api);
        if let Some(rep) = repetition {
            let list = rec.repetitions.entry(key).or_default();
            match list.iter_mut().find(|r| r["name"] == rep["name"]) {
                Some(existing) => *existing = rep,
                None => list.push(rep),
            }
            // Iterations finish in any order; the API lists them by index, as the
            // Foreach's own repetitions are.
            list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        }
    });
}

fn result_value(
    name: &str,
    start: &str,
    end: Option<&str>,
    status: &str,
    o: Option<&Outcome>,
) -> Value {
    let mut v = json!({
        "name": name,
        "startTime": start,
        "status": status,
        "trackingId": util::new_uuid(),
        "clientTrackingId": "",
    });
    if let Some(e) = end {
        v["endTime"] = json!(e);
    }
    if let Some(o) = o {
        v["code"] = json!(o.code);
        if let Some(i) = &o.inputs {
            v["inputs"] = i.clone();
        }
        if let Some(out) = &o.outputs {
            v["outputs"] = out.clone();
        }
        if let Some((code, message)) = &o.error {
            v["error"] = json!({"code": code, "message": message});
        }
    }
    v
}

/// Marks an action (and everything nested in it) skipped.
fn record_skipped(run: &Run, frame: &Frame, name: &str, def: &Value, why: &str) {
    let now = util::now_rfc3339();
    let o = Outcome {
        status: Status::Skipped,
        code: "ActionSkipped".into(),
        error: Some(("ActionConditionFailed".into(), why.to_string())),
        ..Outcome::ok()
    };
    record(
        run,
        frame,
        name,
        result_value(name, &now, Some(&now), "Skipped", Some(&o)),
        Map::new(),
    );
    for nested in [&def["actions"], &def["else"]["actions"]] {
        if let Some(m) = nested.as_object() {
            for (n, d) in m {
                record_skipped(
                    run,
                    frame,
                    n,
                    d,
                    &format!("The execution of template action '{n}' is skipped: its parent action '{name}' did not run."),
                );
            }
        }
    }
}

fn run_after(def: &Value) -> Vec<(String, Vec<String>)> {
    def["runAfter"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(dep, s)| {
                    let statuses = s
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_ascii_lowercase))
                                .collect()
                        })
                        .unwrap_or_default();
                    (dep.clone(), statuses)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one graph of actions to its end (or until the run stops); returns every
/// action's final status.
fn run_graph(
    run: Arc<Run>,
    actions: Arc<Map<String, Value>>,
    frame: Frame,
) -> BoxFut<HashMap<String, Status>> {
    Box::pin(async move {
        let mut done: HashMap<String, Status> = HashMap::new();
        let mut started: HashSet<String> = HashSet::new();
        let mut set: JoinSet<(String, Status)> = JoinSet::new();
        let mut names: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            let mut progressed = true;
            while progressed && !run.is_stopped() {
                progressed = false;
                for (name, def) in actions.iter() {
                    if started.contains(name) {
                        continue;
                    }
                    let deps = run_after(def);
                    if !deps.iter().all(|(d, _)| done.contains_key(d)) {
                        continue;
                    }
                    started.insert(name.clone());
                    let unmet = deps.iter().find_map(|(dep, allowed)| {
                        let actual = done.get(dep).copied().unwrap_or(Status::Skipped);
                        let ok = if allowed.is_empty() {
                            actual == Status::Succeeded
                        } else {
                            allowed.iter().any(|a| a.eq_ignore_ascii_case(actual.as_str()))
                        };
                        (!ok).then(|| {
                            let expected = if allowed.is_empty() {
                                "'Succeeded'".to_string()
                            } else {
                                def["runAfter"][dep]
                                    .as_array()
                                    .map(|a| a.iter().map(|s| format!("'{}'", to_text(s))).collect::<Vec<_>>().join(", "))
                                    .unwrap_or_default()
                            };
                            format!(
                                "The execution of template action '{name}' is skipped: the 'runAfter' condition for action '{dep}' is not satisfied. Expected status values {expected} and actual value '{}'.",
                                actual.as_str()
                            )
                        })
                    });
                    match unmet {
                        Some(why) => {
                            record_skipped(&run, &frame, name, def, &why);
                            done.insert(name.clone(), Status::Skipped);
                            progressed = true;
                        }
                        None => {
                            let handle = set.spawn(execute_action(
                                run.clone(),
                                name.clone(),
                                def.clone(),
                                frame.clone(),
                            ));
                            names.insert(handle.id(), name.clone());
                        }
                    }
                }
            }
            match set.join_next_with_id().await {
                Some(Ok((_, (name, status)))) => {
                    done.insert(name, status);
                }
                Some(Err(e)) => {
                    // A panicking action task: record it failed rather than lose it.
                    if let Some(name) = names.get(&e.id()).cloned() {
                        let now = util::now_rfc3339();
                        let o = Outcome::failed(
                            "InternalError",
                            "The local Azure failed while running this action.",
                        );
                        record(
                            &run,
                            &frame,
                            &name,
                            result_value(&name, &now, Some(&now), "Failed", Some(&o)),
                            Map::new(),
                        );
                        done.insert(name, Status::Failed);
                    }
                }
                None => break,
            }
        }
        done
    })
}

/// The status of a graph by the tail rule (see the module docs).
fn graph_status(actions: &Map<String, Value>, done: &HashMap<String, Status>) -> Status {
    let depended: HashSet<&str> = actions
        .values()
        .filter_map(|a| a["runAfter"].as_object())
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    fn effective(
        name: &str,
        actions: &Map<String, Value>,
        done: &HashMap<String, Status>,
        depth: usize,
    ) -> Status {
        match done.get(name) {
            Some(Status::Skipped) if depth < 1000 => actions
                .get(name)
                .and_then(|a| a["runAfter"].as_object())
                .map(|m| {
                    m.keys()
                        .map(|d| effective(d, actions, done, depth + 1))
                        .max_by_key(|s| s.severity())
                        .unwrap_or(Status::Succeeded)
                })
                .unwrap_or(Status::Succeeded),
            Some(s) => *s,
            // Never started (the run stopped first): no say.
            None => Status::Succeeded,
        }
    }
    actions
        .keys()
        .filter(|n| !depended.contains(n.as_str()))
        .map(|n| effective(n, actions, done, 0))
        .max_by_key(|s| s.severity())
        .unwrap_or(Status::Succeeded)
}

fn execute_action(
    run: Arc<Run>,
    name: String,
    def: Value,
    frame: Frame,
) -> BoxFut<(String, Status)> {
    Box::pin(async move {
        let start = util::now_rfc3339();
        record(
            &run,
            &frame,
            &name,
            result_value(&name, &start, None, "Running", None),
            Map::new(),
        );
        let outcome = tokio::select! {
            biased;
            o = perform(run.clone(), name.clone(), def, frame.clone()) => o,
            _ = run.stopped() => Outcome {
                status: Status::Cancelled,
                code: "Cancelled".into(),
                ..Outcome::ok()
            },
        };
        let end = util::now_rfc3339();
        let status = outcome.status;
        let extra = outcome.extra.clone();
        record(
            &run,
            &frame,
            &name,
            result_value(&name, &start, Some(&end), status.as_str(), Some(&outcome)),
            extra,
        );
        (name, status)
    })
}

fn eval(run: &Run, frame: &Frame, v: &Value) -> Result<Value, String> {
    expr::evaluate_value(v, &Ctx { run, frame })
}

fn perform(run: Arc<Run>, name: String, def: Value, frame: Frame) -> BoxFut<Outcome> {
    Box::pin(async move {
        let ty = def["type"]
            .as_str()
            .and_then(|t| canonical_type(t, ACTION_TYPES))
            .unwrap_or_default();
        match ty {
            "Compose" => match eval(&run, &frame, &def["inputs"]) {
                Ok(v) => Outcome {
                    inputs: Some(v.clone()),
                    outputs: Some(v),
                    ..Outcome::ok()
                },
                Err(e) => template_error(&name, "inputs", e),
            },
            "InitializeVariable"
            | "SetVariable"
            | "IncrementVariable"
            | "AppendToArrayVariable" => variable_action(&run, &frame, &name, ty, &def),
            "Terminate" => {
                let inputs = match eval(&run, &frame, &def["inputs"]) {
                    Ok(v) => v,
                    Err(e) => return template_error(&name, "inputs", e),
                };
                let status = match inputs["runStatus"]
                    .as_str()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    Some("failed") => Status::Failed,
                    Some("cancelled") => Status::Cancelled,
                    _ => Status::Succeeded,
                };
                let error = (status == Status::Failed).then(|| {
                    (
                        inputs["runError"]["code"]
                            .as_str()
                            .unwrap_or("Terminated")
                            .to_string(),
                        inputs["runError"]["message"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                });
                run.halt(Stop::Terminated { status, error });
                Outcome::ok().with_inputs(inputs)
            }
            "Wait" => {
                let inputs = match eval(&run, &frame, &def["inputs"]) {
                    Ok(v) => v,
                    Err(e) => return template_error(&name, "inputs", e),
                };
                let count = inputs["interval"]["count"]
                    .as_u64()
                    .or_else(|| {
                        inputs["interval"]["count"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                    })
                    .unwrap_or(0);
                let unit = match inputs["interval"]["unit"]
                    .as_str()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    Some("minute") => 60,
                    Some("hour") => 3600,
                    Some("day") => 86_400,
                    Some("week") => 604_800,
                    Some("month") => 2_592_000,
                    _ => 1,
                };
                tokio::time::sleep(Duration::from_secs(count.saturating_mul(unit))).await;
                Outcome::ok().with_inputs(inputs)
            }
            "Scope" => {
                let actions = Arc::new(def["actions"].as_object().cloned().unwrap_or_default());
                let done = run_graph(run.clone(), actions.clone(), frame.clone()).await;
                set_scope_result(&run, &frame, &name, &actions);
                Outcome::scope(graph_status(&actions, &done))
            }
            "If" => {
                let result = match condition(&run, &frame, &def["expression"]) {
                    Ok(b) => b,
                    Err(e) => return template_error(&name, "expression", e),
                };
                let (taken, other) = if result {
                    (&def["actions"], &def["else"]["actions"])
                } else {
                    (&def["else"]["actions"], &def["actions"])
                };
                if let Some(m) = other.as_object() {
                    for (n, d) in m {
                        record_skipped(&run, &frame, n, d, &format!("The execution of template action '{n}' is skipped: the branch of '{name}' it is in was not taken."));
                    }
                }
                let actions = Arc::new(taken.as_object().cloned().unwrap_or_default());
                let done = run_graph(run.clone(), actions.clone(), frame.clone()).await;
                set_scope_result(&run, &frame, &name, &actions);
                Outcome::scope(graph_status(&actions, &done))
                    .with_inputs(json!({"expressionResult": result}))
            }
            "Foreach" => foreach(run, name, def, frame).await,
            "Until" => until(run, name, def, frame).await,
            "Http" => http_action(&run, &frame, &name, &def).await,
            "ApiConnection" => aci_action(&run, &frame, &name, &def).await,
            other => Outcome::failed(
                "ActionTypeNotSupported",
                format!("The local Azure cannot run actions of type '{other}'."),
            ),
        }
    })
}

fn set_scope_result(run: &Run, frame: &Frame, name: &str, actions: &Map<String, Value>) {
    let ctx = Ctx { run, frame };
    let results: Vec<Value> = actions.keys().filter_map(|n| ctx.action(n)).collect();
    lock(&run.scope_results).insert(name.to_ascii_lowercase(), results);
}

/// An `If`/`Until` expression: an expression string or a condition object.
fn condition(run: &Run, frame: &Frame, e: &Value) -> Result<bool, String> {
    if e.is_object() {
        check_condition(e)?;
        return condition_object(run, frame, e, 0);
    }
    match eval(run, frame, e)? {
        Value::Bool(b) => Ok(b),
        // Azure accepts the strings 'true'/'false' here too.
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(format!(
            "The expression must evaluate to a boolean; it gave a value of type '{}'.",
            expr::type_name(&other)
        )),
    }
}

fn condition_object(run: &Run, frame: &Frame, c: &Value, depth: usize) -> Result<bool, String> {
    let Some((op, arg)) = c.as_object().and_then(|m| m.iter().next()) else {
        return Err("The condition is empty.".into());
    };
    if depth > 32 {
        return Err("The condition is nested too deeply.".into());
    }
    match op.as_str() {
        "and" | "or" => {
            let mut acc = op == "and";
            for item in arg.as_array().into_iter().flatten() {
                let b = condition_object(run, frame, item, depth + 1)?;
                acc = if op == "and" { acc && b } else { acc || b };
            }
            Ok(acc)
        }
        "not" => Ok(!condition_object(run, frame, arg, depth + 1)?),
        _ => {
            let vals = eval(run, frame, arg)?;
            let a = &vals[0];
            let b = &vals[1];
            let cmp = |f: &str| -> Result<bool, String> {
                let e = format!(
                    "@{f}(json('{}'), json('{}'))",
                    a.to_string().replace('\'', "''"),
                    b.to_string().replace('\'', "''")
                );
                Ok(expr::evaluate(&e, &Ctx { run, frame })? == Value::Bool(true))
            };
            match op.as_str() {
                "equals" => Ok(values_equal(a, b)),
                "greater" => cmp("greater"),
                "less" => cmp("less"),
                "greaterOrEquals" => Ok(values_equal(a, b) || cmp("greater")?),
                "lessOrEquals" => Ok(values_equal(a, b) || cmp("less")?),
                "contains" => cmp("contains"),
                "startsWith" => Ok(to_text(a).starts_with(&to_text(b))),
                "endsWith" => Ok(to_text(a).ends_with(&to_text(b))),
                other => Err(format!(
                    "The condition operator '{other}' is not supported."
                )),
            }
        }
    }
}

fn variable_action(run: &Run, frame: &Frame, name: &str, ty: &str, def: &Value) -> Outcome {
    let inputs = match eval(run, frame, &def["inputs"]) {
        Ok(v) => v,
        Err(e) => return template_error(name, "inputs", e),
    };
    let fits = |vtype: &str, v: &Value| match vtype {
        "string" => v.is_string(),
        "integer" => v.as_i64().is_some(),
        "float" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    };
    let invalid =
        |msg: String| Outcome::failed("InvalidVariableValue", msg).with_inputs(inputs.clone());
    if ty == "InitializeVariable" {
        let var = &inputs["variables"][0];
        let vname = var["name"].as_str().unwrap_or_default().to_string();
        let vtype = var["type"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let value = match var.get("value") {
            Some(v) if !v.is_null() => v.clone(),
            _ => match vtype.as_str() {
                "string" => json!(""),
                "integer" => json!(0),
                "float" => json!(0.0),
                "boolean" => json!(false),
                "array" => json!([]),
                _ => json!({}),
            },
        };
        if !fits(&vtype, &value) {
            return invalid(format!(
                "The variable '{vname}' of type '{vtype}' cannot be initialized or updated with a value of type '{}'.",
                expr::type_name(&value)
            ));
        }
        lock(&run.variables).insert(vname.to_ascii_lowercase(), (vtype, value));
        return Outcome::ok().with_inputs(inputs);
    }
    let vname = inputs["name"].as_str().unwrap_or_default().to_string();
    let value = inputs.get("value").cloned().unwrap_or(Value::Null);
    let updated: Result<Value, String> = {
        let mut vars = lock(&run.variables);
        match vars.get_mut(&vname.to_ascii_lowercase()) {
            None => Err(format!("The variable '{vname}' is not initialized.")),
            Some((vtype, current)) => {
                let new = match ty {
                    "SetVariable" if fits(vtype, &value) => Ok(value),
                    "SetVariable" => Err(format!(
                        "The variable '{vname}' of type '{vtype}' cannot be initialized or updated with a value of type '{}'.",
                        expr::type_name(&value)
                    )),
                    "IncrementVariable" => {
                        let by = if value.is_null() { json!(1) } else { value };
                        let sum = match vtype.as_str() {
                            "integer" => current
                                .as_i64()
                                .zip(by.as_i64())
                                .and_then(|(a, b)| a.checked_add(b))
                                .map(Value::from),
                            "float" => current
                                .as_f64()
                                .zip(by.as_f64())
                                .and_then(|(a, b)| serde_json::Number::from_f64(a + b))
                                .map(Value::Number),
                            _ => None,
                        };
                        sum.ok_or_else(|| format!(
                            "The variable '{vname}' of type '{vtype}' cannot be incremented by '{}': only integer and float variables, by a number of their type.",
                            to_text(&by)
                        ))
                    }
                    _ => match current {
                        Value::Array(items) => {
                            let mut items = items.clone();
                            items.push(value);
                            Ok(Value::Array(items))
                        }
                        _ => Err(format!(
                            "The variable '{vname}' is of type '{vtype}'; AppendToArrayVariable needs an array variable."
                        )),
                    },
                };
                if let Ok(v) = &new {
                    *current = v.clone();
                }
                new
            }
        }
    };
    let new = match updated {
        Ok(v) => v,
        Err(msg) => return invalid(msg),
    };
    Outcome {
        outputs: Some(json!({"body": {"name": vname, "value": new}})),
        ..Outcome::ok()
    }
    .with_inputs(inputs)
}

/// Largest number of Foreach items (Azure's limit for Consumption workflows).
const MAX_FOREACH_ITEMS: usize = 100_000;

async fn foreach(run: Arc<Run>, name: String, def: Value, frame: Frame) -> Outcome {
    let items = match eval(&run, &frame, &def["foreach"]) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            return Outcome::failed(
                "InvalidTemplate",
                format!(
                    "The execution of template action '{name}' failed: the result of the evaluation of 'foreach' expression '{}' is of type '{}'. The result must be a valid array.",
                    to_text(&def["foreach"]),
                    expr::type_name(&other)
                ),
            )
        }
        Err(e) => return template_error(&name, "foreach", e),
    };
    if items.len() > MAX_FOREACH_ITEMS {
        return Outcome::failed(
            "InvalidTemplate",
            format!("The 'foreach' of action '{name}' gave {} items; at most {MAX_FOREACH_ITEMS} are allowed.", items.len()),
        );
    }
    let sequential = def["operationOptions"]
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("Sequential"));
    let concurrency = if sequential {
        1
    } else {
        def["runtimeConfiguration"]["concurrency"]["repetitions"]
            .as_u64()
            .unwrap_or(20)
            .clamp(1, 50) as usize
    };
    let actions = Arc::new(def["actions"].as_object().cloned().unwrap_or_default());
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut set: JoinSet<Status> = JoinSet::new();
    let lower = name.to_ascii_lowercase();
    let count = items.len();
    let all_results = Arc::new(Mutex::new(Vec::new()));
    for (i, item) in items.into_iter().enumerate() {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        if run.is_stopped() {
            break;
        }
        let mut f = frame.clone();
        f.results.push(Arc::new(Mutex::new(HashMap::new())));
        f.items.push((lower.clone(), item));
        f.indexes.push((name.clone(), i));
        let (run, actions, name, all_results) = (
            run.clone(),
            actions.clone(),
            name.clone(),
            all_results.clone(),
        );
        set.spawn(async move {
            let start = util::now_rfc3339();
            let done = run_graph(run.clone(), actions.clone(), f.clone()).await;
            let status = graph_status(&actions, &done);
            drop(permit);
            let ctx = Ctx { run: &run, frame: &f };
            let results: Vec<Value> = actions.keys().filter_map(|n| ctx.action(n)).collect();
            lock(&all_results).extend(results);
            // The iteration as a repetition of the Foreach itself.
            let rep_name = repetition_name(&f.indexes);
            let rep = json!({
                "id": format!("{}/actions/{name}/repetitions/{rep_name}", run.run_id),
                "name": rep_name,
                "type": "Microsoft.Logic/workflows/runs/actions/repetitions",
                "properties": {
                    "startTime": start,
                    "endTime": util::now_rfc3339(),
                    "status": if status.severity() >= Status::TimedOut.severity() { "Failed" } else { status.as_str() },
                    "code": if status == Status::Succeeded { "OK" } else { "ActionFailed" },
                    "repetitionIndexes": repetition_indexes(&f.indexes),
                    "inputs": f.items.last().map(|(_, v)| v.clone()).unwrap_or(Value::Null),
                },
            });
            let key = name.to_ascii_lowercase();
            run.with_record(|rec| {
                let list = rec.repetitions.entry(key).or_default();
                list.push(rep);
                list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            });
            status
        });
    }
    let mut worst = Status::Succeeded;
    while let Some(r) = set.join_next().await {
        let s = r.unwrap_or(Status::Failed);
        if s.severity() > worst.severity() {
            worst = s;
        }
    }
    lock(&run.scope_results).insert(lower, lock(&all_results).clone());
    let mut o = Outcome::scope(worst);
    o.extra.insert("repetitionCount".into(), json!(count));
    o
}

/// Azure's defaults for Until: 60 iterations, one hour.
const UNTIL_COUNT: u64 = 60;
const UNTIL_TIMEOUT: Duration = Duration::from_secs(3600);

async fn until(run: Arc<Run>, name: String, def: Value, frame: Frame) -> Outcome {
    let limit = match eval(&run, &frame, &def["limit"]) {
        Ok(v) => v,
        Err(e) => return template_error(&name, "limit", e),
    };
    let count = limit["count"]
        .as_u64()
        .or_else(|| limit["count"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(UNTIL_COUNT)
        .clamp(1, 5000);
    let timeout = limit["timeout"]
        .as_str()
        .and_then(parse_duration)
        .unwrap_or(UNTIL_TIMEOUT);
    let actions = Arc::new(def["actions"].as_object().cloned().unwrap_or_default());
    let began = Instant::now();
    let mut iterations = 0u64;
    let mut last;
    loop {
        let mut f = frame.clone();
        f.indexes.push((name.clone(), iterations as usize));
        let done = run_graph(run.clone(), actions.clone(), f.clone()).await;
        // An Until's status is that of its last iteration: an earlier failure that a
        // later iteration recovered from does not fail the loop.
        last = graph_status(&actions, &done);
        iterations += 1;
        set_scope_result(&run, &frame, &name, &actions);
        match condition(&run, &frame, &def["expression"]) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                let mut o = template_error(&name, "expression", e);
                o.extra.insert("repetitionCount".into(), json!(iterations));
                return o;
            }
        }
        // Azure ends an Until that reaches its count or timeout as Succeeded (with a
        // warning in the designer), not TimedOut: so does the emulator.
        if iterations >= count || began.elapsed() >= timeout || run.is_stopped() {
            break;
        }
    }
    let mut o = Outcome::scope(last);
    o.extra.insert("repetitionCount".into(), json!(iterations));
    o
}

fn header_pairs(headers: &Value) -> Vec<(String, String)> {
    headers
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), to_text(v))).collect())
        .unwrap_or_default()
}

fn with_queries(uri: &str, queries: &Value) -> String {
    let Some(q) = queries.as_object().filter(|q| !q.is_empty()) else {
        return uri.to_string();
    };
    let mut out = uri.to_string();
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    for (k, v) in q {
        out.push(sep);
        out.push_str(&expr::encode_uri_component(k));
        out.push('=');
        out.push_str(&expr::encode_uri_component(&to_text(v)));
        sep = '&';
    }
    out
}

fn http_outcome(inputs: Value, result: Result<http::Exchange, http::TransportError>) -> Outcome {
    match result {
        Ok(x) => {
            let outputs = json!({"statusCode": x.status, "headers": x.headers, "body": x.body});
            let mut o = if x.status >= 400 {
                Outcome::failed(
                    &http::status_code_name(x.status),
                    format!(
                        "The HTTP request failed with status code {} ({}).",
                        x.status,
                        http::status_code_name(x.status)
                    ),
                )
            } else {
                Outcome {
                    code: http::status_code_name(x.status),
                    ..Outcome::ok()
                }
            };
            o.outputs = Some(outputs);
            o.inputs = Some(inputs);
            if !x.retry_history.is_empty() {
                o.extra
                    .insert("retryHistory".into(), Value::Array(x.retry_history));
            }
            o
        }
        Err(t) => {
            let mut o = Outcome::failed(
                "BadGateway",
                format!("The HTTP request failed: {}", t.message),
            )
            .with_inputs(inputs);
            if !t.retry_history.is_empty() {
                o.extra
                    .insert("retryHistory".into(), Value::Array(t.retry_history));
            }
            o
        }
    }
}

async fn http_action(run: &Run, frame: &Frame, name: &str, def: &Value) -> Outcome {
    let inputs = match eval(run, frame, &def["inputs"]) {
        Ok(v) => v,
        Err(e) => return template_error(name, "inputs", e),
    };
    let method = inputs["method"]
        .as_str()
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return Outcome::failed(
            "InvalidTemplate",
            format!("The HTTP method '{method}' is not valid."),
        )
        .with_inputs(inputs);
    };
    let uri = with_queries(&to_text(&inputs["uri"]), &inputs["queries"]);
    let url = match http::rewrite(&run.inner, &uri) {
        Ok(u) => u,
        Err(e) => return Outcome::failed("BadRequest", e).with_inputs(inputs),
    };
    let auth = &inputs["authentication"];
    let bearer = if auth.is_null() {
        None
    } else {
        let audience = auth["audience"]
            .as_str()
            .unwrap_or("https://management.azure.com/");
        match run.principal(auth["identity"].as_str()) {
            Ok((p, mirid)) => Some(http::identity_token(&run.inner, &p, audience, &mirid)),
            Err(e) => {
                return Outcome::failed("ManagedServiceIdentityNotAvailable", e).with_inputs(inputs)
            }
        }
    };
    let async_pattern = !def["operationOptions"]
        .as_str()
        .is_some_and(|s| s.to_ascii_lowercase().contains("disableasyncpattern"));
    let out = Outgoing {
        method,
        url,
        headers: header_pairs(&inputs["headers"]),
        body: inputs["body"].clone(),
        bearer,
        retry: Retry::from_policy(&inputs["retryPolicy"]),
        async_pattern,
    };
    let result = http::send(&run.inner.http, &out).await;
    http_outcome(inputs, result)
}

/// The `aci` managed connector: its operations are ARM calls on this emulator, made
/// as the connection's managed identity.
async fn aci_action(run: &Run, frame: &Frame, name: &str, def: &Value) -> Outcome {
    let inputs = match eval(run, frame, &def["inputs"]) {
        Ok(v) => v,
        Err(e) => return template_error(name, "inputs", e),
    };
    let method = inputs["method"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let path = to_text(&inputs["path"]);
    if aci_operation(&method, &path).is_none() {
        return Outcome::failed(
            "BadRequest",
            format!("The aci operation '{method} {path}' is not supported."),
        )
        .with_inputs(inputs);
    }
    let key = def["inputs"]["host"]["connection"]["name"]
        .as_str()
        .and_then(connection_key)
        .unwrap_or_default();
    let conn = run
        .parameters
        .get("$connections")
        .map(|c| c[&key].clone())
        .unwrap_or(Value::Null);
    let connection_id = to_text(&conn["connectionId"]).to_ascii_lowercase();
    let stored = run.inner.world().resources.get(&connection_id).cloned();
    let Some(stored) = stored.filter(|c| c["type"] == "Microsoft.Web/connections") else {
        return Outcome::failed(
            "ApiConnectionNotFound",
            format!(
                "The API connection '{}' does not exist.",
                to_text(&conn["connectionId"])
            ),
        )
        .with_inputs(inputs);
    };
    let api = stored["properties"]["api"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !api.ends_with("/managedapis/aci") {
        return Outcome::failed(
            "ApiConnectionNotSupported",
            format!(
                "The API connection '{}' is not an 'aci' connection (its api is '{api}').",
                to_text(&conn["connectionId"])
            ),
        )
        .with_inputs(inputs);
    }
    let identity = conn["connectionProperties"]["authentication"]["identity"].as_str();
    let bearer = match run.principal(identity) {
        Ok((p, mirid)) => {
            http::identity_token(&run.inner, &p, "https://management.azure.com/", &mirid)
        }
        Err(e) => {
            return Outcome::failed("ManagedServiceIdentityNotAvailable", e).with_inputs(inputs)
        }
    };
    let mut queries = inputs["queries"].as_object().cloned().unwrap_or_default();
    let api_version = queries
        .remove("x-ms-api-version")
        .map(|v| to_text(&v))
        .unwrap_or_else(|| "2023-05-01".into());
    queries.insert("api-version".into(), json!(api_version));
    let uri = with_queries(
        &format!("{}{path}", run.inner.https_base),
        &Value::Object(queries),
    );
    let Ok(url) = reqwest::Url::parse(&uri) else {
        return Outcome::failed("BadRequest", format!("The path '{path}' is not valid."))
            .with_inputs(inputs);
    };
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return Outcome::failed("BadRequest", "The method is not valid.").with_inputs(inputs);
    };
    let out = Outgoing {
        method,
        url,
        headers: header_pairs(&inputs["headers"]),
        body: inputs["body"].clone(),
        bearer: Some(bearer),
        retry: Retry::from_policy(&inputs["retryPolicy"]),
        async_pattern: false,
    };
    let result = http::send(&run.inner.http, &out).await;
    http_outcome(inputs, result)
}

/// Runs the whole definition and settles the run's status.
async fn execute(run: Arc<Run>) {
    let actions = Arc::new(
        run.definition["actions"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let frame = Frame {
        results: vec![Arc::new(Mutex::new(HashMap::new()))],
        items: Vec::new(),
        indexes: Vec::new(),
    };
    let mut shutdown = run.inner.shutdown.clone();
    // Terminate and cancel stop the graph through `stop_tx`; shutdown drops it.
    let done = tokio::select! {
        done = run_graph(run.clone(), actions.clone(), frame.clone()) => Some(done),
        _ = shutdown.wait_for(|v| *v) => None,
    };
    let stop = lock(&run.stop).clone();
    let (status, error) = match (&stop, &done) {
        (Some(Stop::Terminated { status, error }), _) => (*status, error.clone()),
        (Some(Stop::Cancelled), _) | (None, None) => (Status::Cancelled, None),
        (None, Some(_)) if run.is_stopped() => (Status::Cancelled, None),
        (None, Some(done)) => match graph_status(&actions, done) {
            Status::Failed | Status::TimedOut => (
                Status::Failed,
                Some((
                    "ActionFailed".to_string(),
                    "An action failed. No dependent actions succeeded.".to_string(),
                )),
            ),
            Status::Cancelled => (Status::Cancelled, None),
            _ => (Status::Succeeded, None),
        },
    };
    run.halt(Stop::Cancelled);
    // Definition outputs, evaluated against the final state.
    let mut outputs = Map::new();
    if let Some(defs) = run.definition["outputs"].as_object() {
        for (k, o) in defs {
            if let Ok(v) = eval(&run, &frame, &o["value"]) {
                outputs.insert(k.clone(), json!({"type": o["type"], "value": v}));
            }
        }
    }
    let end = util::now_rfc3339();
    run.with_record(|rec| {
        let p = &mut rec.run["properties"];
        p["status"] = json!(status.as_str());
        p["endTime"] = json!(end);
        p["outputs"] = Value::Object(outputs);
        if let Some((code, message)) = &error {
            p["code"] = json!(code);
            p["error"] = json!({"code": code, "message": message});
        }
        rec.cancel = None;
        // Actions still running when the run ended were cancelled with it.
        for a in rec
            .actions
            .values_mut()
            .chain(rec.repetitions.values_mut().flatten())
        {
            if a["properties"]["status"] == "Running" {
                a["properties"]["status"] = json!("Cancelled");
                a["properties"]["code"] = json!("Cancelled");
                a["properties"]["endTime"] = json!(end);
            }
        }
    });
}
