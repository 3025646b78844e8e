//! Scoring schedules: a Consumption Logic App per schedule that, when its trigger
//! fires, runs one container group per shard, keeps their logs and deletes them.
//!
//! The definition is rendered from `inst/templates/workflow.json.hbs`; this module
//! fills in the values (each JSON-encoded, and escaped where Logic Apps would read an
//! `@` as an expression), writes the workflow and grants its identity the roles it
//! needs. The same rendered body is what a dry run returns and what the local Azure
//! executes.

use crate::aci::{ContainerSpec, GroupSpec};
use crate::arm::{api, ArmClient};
use crate::error::{Error, Result};
use crate::identity;
use crate::plan::{Action, Plan};
use crate::progress::Progress;
use crate::BoxFuture;
use handlebars::Handlebars;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

use super::recurrence::cron_to_recurrence;

/// The Blob service version of the workflow's own blob writes.
const BLOB_VERSION: &str = "2021-08-06";
/// The foreach loop variable, as `items()` names it.
const LOOP: &str = "For_each_shard";
/// Logic Apps' cap on an Until loop's `limit.count` (Logic Apps limits and
/// configuration, "Until iterations").
const MAX_UNTIL_COUNT: u32 = 5000;

/// The longest wait between two checks of a running group once checks back off.
const MAX_BACKOFF_S: u32 = 60;
/// The workflow parameter holding the Until loop's waits, in seconds.
const WAITS_PARAMETER: &str = "pollWaitSeconds";

/// Azure's limit on a Foreach's concurrency.
const MAX_SHARDS: u32 = 50;

/// Built-in roles the workflow's identity gets.
pub mod roles {
    /// Azure Container Instances Contributor Role: create, read and delete groups.
    pub const ACI_CONTRIBUTOR: &str = "5d977122-f97e-4b4d-a52f-6b43003ddb4d";
    /// Managed Identity Operator: assign the scoring identity to the groups.
    pub const MANAGED_IDENTITY_OPERATOR: &str = "f1a07417-d97a-45cb-824c-7a7467783830";
    pub use crate::identity::roles::STORAGE_BLOB_DATA_CONTRIBUTOR;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Connector {
    /// Http actions to ARM with the workflow's managed identity.
    Http,
    /// The managed `aci` connector (a `Microsoft.Web/connections` resource).
    Aci,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Trigger {
    /// A five-field cron line read in an IANA time zone.
    Schedule { cron: String, time_zone: String },
    /// New or changed blobs directly under `folder` (`container/prefix/`), polled
    /// every `poll_minutes`.
    Blob {
        folder: String,
        #[serde(default = "one")]
        poll_minutes: u32,
    },
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScheduleRequest {
    pub subscription: String,
    pub resource_group: String,
    pub location: String,
    /// The workflow's name.
    pub name: String,
    pub deployment: String,
    pub trigger: Trigger,
    pub connector: Connector,
    pub shards: u32,
    /// Container groups running at once (the Foreach's concurrency): `None` is
    /// [`crate::score::DEFAULT_MAX_PARALLEL`], as for `score_now()`.
    #[serde(default)]
    pub max_parallel: Option<u32>,
    pub image: String,
    pub login_server: String,
    /// Resource id of the user-assigned identity the containers run as.
    pub identity_id: String,
    pub cpu: f64,
    pub memory_gb: f64,
    /// The job's environment that does not change between runs (literal values).
    pub env: BTreeMap<String, String>,
    pub storage_account: String,
    /// Resource Manager's endpoint, from the target (`https://management.azure.com`,
    /// a sovereign cloud's, or the local Azure's): the workflow calls ARM there.
    pub arm_endpoint: String,
    /// The storage account's blob endpoint, from the target (a custom domain, a
    /// sovereign cloud's, the local Azure's): run logs and summaries go there.
    pub blob_endpoint: String,
    /// The container holding models, run logs and summaries.
    pub container: String,
    /// Seconds between the first checks of a running group; later checks back off.
    pub poll_seconds: u32,
    /// Seconds from creating a group to its first check (a shard's usual duration):
    /// `None` is `poll_seconds`.
    #[serde(default)]
    pub first_check_s: Option<u32>,
    /// How long one shard may run before the run gives up on it (and deletes it).
    pub timeout_s: u32,
    /// The text of `workflow.json.hbs`.
    pub template: String,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleResult {
    pub plan: Plan,
    /// The workflow resource body as sent (or as it would be sent).
    pub workflow: Value,
    pub workflow_id: String,
    pub trigger_name: String,
    pub principal_id: Option<String>,
    pub recurrence: Option<Value>,
}

pub fn workflow_path(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Logic/workflows/{name}"
    )
}

fn connection_path(req: &ScheduleRequest, api_name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Web/connections/{}-{api_name}",
        req.subscription, req.resource_group, req.name
    )
}

fn managed_api_id(req: &ScheduleRequest, api_name: &str) -> String {
    format!(
        "/subscriptions/{}/providers/Microsoft.Web/locations/{}/managedApis/{api_name}",
        req.subscription, req.location
    )
}

/// The trigger's name in the definition.
pub fn trigger_name(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::Schedule { .. } => "Recurrence",
        Trigger::Blob { .. } => "When_a_blob_is_added",
    }
}

/// A literal string as Logic Apps reads it: a leading `@` and any `@{` would start
/// an expression, so they are doubled.
pub fn escape_literal(s: &str) -> String {
    let s = s.replace("@{", "@@{");
    if s.starts_with('@') && !s.starts_with("@@{") {
        format!("@{s}")
    } else {
        s
    }
}

/// Workflow and connection names: Logic Apps allows letters, digits, `-`, `_`, `.`
/// and `()`, up to 80 characters; serveRless keeps to lowercase, digits and dashes.
pub fn check_schedule_name(name: &str) -> Result<()> {
    let ok = (3..=60).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::input(format!(
            "schedule name `{name}` is invalid: use 3 to 60 lowercase letters, digits and dashes, not starting or ending with a dash"
        )))
    }
}

impl ScheduleRequest {
    pub fn validate(&self) -> Result<()> {
        check_schedule_name(&self.name)?;
        if !(1..=MAX_SHARDS).contains(&self.shards) {
            return Err(Error::input(format!(
                "{} shards: a schedule runs 1 to {MAX_SHARDS} shards (a Foreach's concurrency limit)",
                self.shards
            )));
        }
        if self.poll_seconds == 0 || self.timeout_s < self.poll_seconds {
            return Err(Error::input(format!(
                "poll every {} s with a timeout of {} s: the poll must be at least 1 s and the timeout at least one poll",
                self.poll_seconds, self.timeout_s
            )));
        }
        for (what, endpoint) in [("ARM", &self.arm_endpoint), ("blob", &self.blob_endpoint)] {
            let url = url::Url::parse(endpoint).ok();
            if !url
                .as_ref()
                .is_some_and(|u| u.scheme() == "https" && u.host().is_some())
            {
                return Err(Error::input(format!(
                    "the {what} endpoint `{endpoint}` is not an https URL"
                )));
            }
        }
        if self.first_check_s == Some(0) {
            return Err(Error::input(
                "the first check must be at least 1 s after the group is created",
            ));
        }
        let polls = self.poll_count();
        if polls > MAX_UNTIL_COUNT {
            return Err(Error::input(format!(
                "checking every {} s (backing off to {} s) for up to {} s takes {polls} checks; a Logic App's Until loop allows at most {MAX_UNTIL_COUNT}: use a larger poll_seconds or a shorter timeout",
                self.poll_seconds,
                self.poll_seconds.max(MAX_BACKOFF_S),
                self.timeout_s,
            )));
        }
        if let Trigger::Blob { folder, .. } = &self.trigger {
            if !folder.ends_with('/') || folder.starts_with('/') {
                return Err(Error::input(format!(
                    "a blob trigger watches a folder: `{folder}` must be `container/` or `container/folder/`"
                )));
            }
            crate::blob::check_container_name(folder.split('/').next().unwrap_or(""))?;
        }
        self.group_spec().validate()
    }

    /// The Until loop's waits before each check: the first check after
    /// `first_check_s`, then `poll_seconds`, twice it, three times, ... up to
    /// [`MAX_BACKOFF_S`] (or `poll_seconds` if longer); the last wait repeats. A shard
    /// that runs as long as usual is seen done at its first check, and a long one
    /// costs a few checks, not one every `poll_seconds`.
    pub fn poll_waits(&self) -> Vec<u32> {
        let poll = self.poll_seconds.max(1);
        let cap = poll.max(MAX_BACKOFF_S);
        let first = self
            .first_check_s
            .unwrap_or(poll)
            .clamp(1, self.timeout_s.max(1));
        let mut waits = vec![first];
        let mut next = poll;
        loop {
            waits.push(next.min(cap));
            if next >= cap {
                break waits;
            }
            next += poll;
        }
    }

    /// How many times the Until loop may check a shard: enough waits to cover the
    /// timeout, and once more.
    fn poll_count(&self) -> u32 {
        let waits: Vec<f64> = self.poll_waits().into_iter().map(f64::from).collect();
        let checks = checks_to_cover(&waits, f64::from(self.timeout_s)) + 1.0;
        checks.min(f64::from(u32::MAX)) as u32
    }

    fn workflow_path(&self) -> String {
        workflow_path(&self.subscription, &self.resource_group, &self.name)
    }

    fn storage_scope(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
            self.subscription, self.resource_group, self.storage_account
        )
    }

    fn resource_group_scope(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.subscription, self.resource_group
        )
    }

    /// The group of one shard of one run: the deployment's name (cut so the whole
    /// fits ACI's 63 characters), the run's name (33 characters), the shard.
    fn group_name_expr(&self) -> String {
        let head: String = self.deployment.chars().take(24).collect();
        format!(
            "concat('{}-', toLower(workflow()['run']['name']), '-', string(items('{LOOP}')))",
            head.trim_end_matches('-')
        )
    }

    /// The container group, with a placeholder name (the name is an expression) and
    /// the job's per-run environment as expressions.
    fn group_spec(&self) -> GroupSpec {
        let mut env: BTreeMap<String, String> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), escape_literal(v)))
            .collect();
        env.insert(
            "SERVERLESS_RUN_ID".into(),
            "@{workflow()['run']['name']}".into(),
        );
        env.insert("SERVERLESS_SHARD".into(), format!("@{{items('{LOOP}')}}"));
        env.insert("SERVERLESS_SHARDS".into(), self.shards.to_string());
        // Each run writes under its own folder, so no run overwrites another's.
        if let Some(output) = self.env.get("SERVERLESS_OUTPUT") {
            env.insert(
                "SERVERLESS_OUTPUT".into(),
                format!("{}@{{workflow()['run']['name']}}/", escape_literal(output)),
            );
        }
        if let Trigger::Blob { .. } = &self.trigger {
            // The connector's Path is `/<container>/<blob>`; the job wants
            // `<container>/<blob>`.
            env.insert(
                "SERVERLESS_INPUTS".into(),
                "@{substring(triggerBody()?['Path'], 1)}".into(),
            );
            env.insert("SERVERLESS_ROWS".into(), String::new());
        }
        let mut tags = BTreeMap::new();
        tags.insert("serverless-deployment".into(), self.deployment.clone());
        tags.insert("serverless-schedule".into(), self.name.clone());
        tags.insert(
            "serverless-run".into(),
            "@{workflow()['run']['name']}".into(),
        );
        GroupSpec {
            subscription: self.subscription.clone(),
            resource_group: self.resource_group.clone(),
            name: "placeholder".into(),
            location: self.location.clone(),
            containers: vec![ContainerSpec {
                name: "score".into(),
                image: self.image.clone(),
                command: vec![],
                cpu: self.cpu,
                memory_gb: self.memory_gb,
                env,
                secure_env: BTreeMap::new(),
            }],
            identity: Some(self.identity_id.clone()),
            registry_identities: vec![(self.login_server.clone(), self.identity_id.clone())],
            tags,
            // Scheduled runs do not retry a shard, so they do not risk eviction.
            spot: false,
        }
    }

    fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::new();
        tags.insert("serverless-deployment".into(), self.deployment.clone());
        tags.insert("serverless-schedule".into(), self.name.clone());
        tags
    }

    fn connections(&self) -> Value {
        let mut c = serde_json::Map::new();
        let mut add = |api_name: &str| {
            c.insert(
                api_name.to_string(),
                json!({
                    "connectionId": connection_path(self, api_name),
                    "connectionName": format!("{}-{api_name}", self.name),
                    "connectionProperties": {"authentication": {"type": "ManagedServiceIdentity"}},
                    "id": managed_api_id(self, api_name),
                }),
            );
        };
        if self.connector == Connector::Aci {
            add("aci");
        }
        if let Trigger::Blob { .. } = self.trigger {
            add("azureblob");
        }
        Value::Object(c)
    }
}

/// Checks an Until loop makes before `seconds` have passed, when the wait before
/// the n-th check is `waits[n]` and the last wait repeats: at least one. Shared by
/// the loop's limit and `estimate_cost()`'s count, so both read the waits alike.
pub fn checks_to_cover(waits: &[f64], seconds: f64) -> f64 {
    let Some(&last) = waits.last() else {
        return 1.0;
    };
    let (mut covered, mut checks) = (0.0, 0.0);
    for w in waits {
        if covered >= seconds && checks > 0.0 {
            return checks;
        }
        covered += w;
        checks += 1.0;
    }
    checks + ((seconds - covered).max(0.0) / last).ceil()
}

/// Renders the workflow resource body (location, tags, identity, definition,
/// `$connections`) in the given state (`Enabled` or `Disabled`).
pub fn render(req: &ScheduleRequest, state: &str) -> Result<Value> {
    req.validate()?;
    let recurrence = match &req.trigger {
        Trigger::Schedule { cron, time_zone } => {
            let r = cron_to_recurrence(cron, time_zone)?;
            Some(serde_json::to_value(r).map_err(|e| Error::internal(e.to_string()))?)
        }
        Trigger::Blob { .. } => None,
    };
    let blob = match &req.trigger {
        Trigger::Blob {
            folder,
            poll_minutes,
        } => json!({
            "path": format!(
                "/v2/datasets/@{{encodeURIComponent(encodeURIComponent('{}'))}}/triggers/batch/onupdatedfile",
                req.storage_account
            ),
            "folder_id": escape_literal(&format!("/{}", folder.trim_end_matches('/'))),
            "poll_minutes": poll_minutes,
        }),
        Trigger::Schedule { .. } => Value::Null,
    };
    let spec = req.group_spec();
    let group_path_literal = spec.path();
    let group_base = group_path_literal.trim_end_matches("/placeholder");
    let name_expr = req.group_name_expr();
    let arm = req.arm_endpoint.trim_end_matches('/');
    let group_uri = format!(
        "{arm}{group_base}/@{{{name_expr}}}?api-version={}",
        api::CONTAINER_INSTANCE
    );
    let logs_uri = format!(
        "{arm}{group_base}/@{{{name_expr}}}/containers/score/logs?api-version={}",
        api::CONTAINER_INSTANCE
    );
    // The aci connector's paths encode each segment, as the designer writes them.
    let group_path = format!(
        "/subscriptions/@{{encodeURIComponent('{}')}}/resourceGroups/@{{encodeURIComponent('{}')}}/providers/Microsoft.ContainerInstance/containerGroups/@{{encodeURIComponent({name_expr})}}",
        req.subscription, req.resource_group
    );
    let logs_path = format!("{group_path}/containers/@{{encodeURIComponent('score')}}/logs");
    let runs = format!(
        "{}/{}/runs/{}/@{{workflow()['run']['name']}}",
        req.blob_endpoint.trim_end_matches('/'),
        req.container,
        req.deployment
    );
    let state_of = "body('Get_group')?['properties']?['instanceView']?['state']";
    let container_state =
        "body('Get_group')?['properties']?['containers']?[0]?['properties']?['instanceView']?['currentState']";
    let poll_count = req.poll_count();
    let data = json!({
        "location": req.location,
        "tags": req.tags(),
        "state": state,
        "recurrence": recurrence,
        "blob": blob,
        "aci": req.connector == Connector::Aci,
        "api_version": api::CONTAINER_INSTANCE,
        "foreach": format!("@range(1, {})", req.shards),
        // Logic Apps runs at most this many iterations of a Foreach at once (1-50).
        "shards": req
            .shards
            .min(req.max_parallel.unwrap_or(crate::score::DEFAULT_MAX_PARALLEL))
            .clamp(1, 50),
        "group": {
            "uri": group_uri,
            "logs_uri": logs_uri,
            "path": group_path,
            "logs_path": logs_path,
            "body": spec.body(),
        },
        "arm_auth": {"type": "ManagedServiceIdentity", "audience": crate::arm::arm_audience(&req.arm_endpoint)},
        "storage_auth": {"type": "ManagedServiceIdentity", "audience": "https://storage.azure.com/"},
        "until": format!(
            "@or(equals({state_of}, 'Succeeded'), equals({state_of}, 'Failed'), equals({state_of}, 'Stopped'), equals(body('Get_group')?['properties']?['provisioningState'], 'Failed'))"
        ),
        "poll": {
            "parameter": WAITS_PARAMETER,
            "waits": req.poll_waits(),
            // The n-th check waits the n-th entry (the last one repeats).
            "wait": format!(
                "@parameters('{WAITS_PARAMETER}')[min(iterationIndexes('Until_terminated'), sub(length(parameters('{WAITS_PARAMETER}')), 1))]"
            ),
            "count": poll_count,
            "timeout": format!("PT{}S", req.timeout_s),
        },
        "blobs": {
            "log_uri": format!("{runs}/shard-@{{items('{LOOP}')}}.log"),
            "summary_uri": format!("{runs}/summary.json"),
            "version": BLOB_VERSION,
        },
        "shard_ok": format!("@equals({state_of}, 'Succeeded')"),
        "record": {
            "ran": {
                "shard": format!("@items('{LOOP}')"),
                "group": format!("@{name_expr}"),
                "state": format!("@coalesce({state_of}, 'Unknown')"),
                // When the group was created: with `finished`, how long a shard
                // usually takes, for the first check of later schedules.
                "created": "@actions('Create_group')?['endTime']",
                "exit_code": format!("@{container_state}?['exitCode']"),
                "started": format!("@{container_state}?['startTime']"),
                "finished": format!("@{container_state}?['finishTime']"),
            },
            "not_created": {
                "shard": format!("@items('{LOOP}')"),
                "group": format!("@{name_expr}"),
                "state": "Failed",
                "error": "@{coalesce(body('Create_group')?['error']?['message'], 'the container group could not be created')}",
            },
        },
        "summary": {
            "run_id": "@{workflow()['run']['name']}",
            "schedule": req.name,
            "deployment": req.deployment,
            "model_version": escape_literal(req.env.get("SERVERLESS_MODEL_VERSION").map_or("", String::as_str)),
            "trigger": trigger_name(&req.trigger),
            "shards": "@variables('shards')",
            "failed": "@variables('failed')",
            "written": "@{utcNow()}",
        },
        "failure_message": format!(
            "@{{concat(string(length(variables('failed'))), ' of {} shards failed; logs: runs/{}/', workflow()['run']['name'], '/')}}",
            req.shards, req.deployment
        ),
        "connections": req.connections(),
    });
    let mut hb = Handlebars::new();
    hb.register_escape_fn(handlebars::no_escape);
    hb.set_strict_mode(true);
    hb.register_helper("json", Box::new(json_helper));
    let text = hb
        .render_template(&req.template, &data)
        .map_err(|e| Error::internal(format!("cannot render the workflow template: {e}")))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::internal(format!(
            "the workflow template rendered invalid JSON ({e}); check inst/templates/workflow.json.hbs"
        ))
    })
}

fn json_helper(
    h: &handlebars::Helper,
    _: &Handlebars,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let v = h
        .param(0)
        .ok_or_else(|| handlebars::RenderErrorReason::ParamNotFoundForIndex("json", 0))?;
    let text = serde_json::to_string(v.value())
        .map_err(|e| handlebars::RenderErrorReason::Other(e.to_string()))?;
    out.write(&text)?;
    Ok(())
}

/// The grants of the workflow's identity: (scope, role, why).
fn grants(req: &ScheduleRequest) -> Vec<(String, &'static str, &'static str)> {
    vec![
        (
            req.resource_group_scope(),
            roles::ACI_CONTRIBUTOR,
            "ACI Contributor: the workflow creates and deletes the scoring groups",
        ),
        (
            req.identity_id.clone(),
            roles::MANAGED_IDENTITY_OPERATOR,
            "Managed Identity Operator: the groups run as the scoring identity",
        ),
        (
            req.storage_scope(),
            roles::STORAGE_BLOB_DATA_CONTRIBUTOR,
            "Storage Blob Data Contributor: run logs and summaries (and the blob trigger)",
        ),
    ]
}

/// Creates or updates the schedule: connections, the workflow (disabled until its
/// identity has its roles, so no run starts without them), role assignments, then
/// enables it. With `dry_run`, only reads and returns the plan.
pub fn apply<'a>(
    arm: &'a ArmClient,
    req: &'a ScheduleRequest,
    progress: &'a Progress,
) -> BoxFuture<'a, Result<ScheduleResult>> {
    Box::pin(async move {
        let body = render(req, "Enabled")?;
        let path = req.workflow_path();
        let mut plan = Plan::default();

        let existing = arm.get_opt(&path, api::LOGIC).await?;
        if let Some(wf) = &existing {
            let owner = wf["tags"]["serverless-deployment"].as_str().unwrap_or("");
            if owner != req.deployment {
                return Err(Error::input(format!(
                "a workflow named `{}` already exists in resource group `{}` and {}: choose another `name`",
                req.name,
                req.resource_group,
                if owner.is_empty() {
                    "was not made by serveRless".to_string()
                } else {
                    format!("schedules deployment `{owner}`")
                }
            )));
            }
        }
        let connections: Vec<(String, Value)> = req
            .connections()
            .as_object()
            .map(|m| {
                m.keys()
                    .map(|api_name| {
                        // Managed-identity connections as Microsoft documents them for
                        // consumption Logic Apps (kind V1): azureblob has several
                        // authentication types, so it names its parameter set; aci has
                        // one, so it is the "Alternative" parameter values.
                        let mut body = json!({
                            "location": req.location,
                            "kind": "V1",
                            "tags": req.tags(),
                            "properties": {
                                "displayName": format!("{} ({api_name})", req.name),
                                "api": {"id": managed_api_id(req, api_name)},
                            }
                        });
                        if api_name == "azureblob" {
                            body["properties"]["parameterValueSet"] =
                                json!({"name": "managedIdentityAuth", "values": {}});
                        } else {
                            body["properties"]["parameterValueType"] = json!("Alternative");
                        }
                        (connection_path(req, api_name), body)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (cpath, _) in &connections {
            let have = arm.get_opt(cpath, api::WEB_CONNECTIONS).await?.is_some();
            plan.add(
                "connection",
                cpath,
                if have {
                    Action::Unchanged
                } else {
                    Action::Create
                },
                "managed API connection, authenticated as the workflow",
            );
        }
        let same = existing.as_ref().is_some_and(|wf| {
            wf["properties"]["definition"] == body["properties"]["definition"]
                && wf["properties"]["state"] == "Enabled"
        });
        plan.add(
            "workflow",
            &path,
            match (&existing, same) {
                (None, _) => Action::Create,
                (Some(_), true) => Action::Unchanged,
                (Some(_), false) => Action::Update,
            },
            format!("Logic App, trigger {}", trigger_name(&req.trigger)),
        );
        let principal = existing
            .as_ref()
            .and_then(|wf| wf["identity"]["principalId"].as_str())
            .map(str::to_string);
        for (scope, role, why) in grants(req) {
            let granted = match &principal {
                Some(p) => identity::has_role(arm, &scope, role, p).await?,
                None => false,
            };
            let id = format!(
                "{scope}/providers/Microsoft.Authorization/roleAssignments/{}",
                identity::assignment_name(
                    &scope,
                    role,
                    principal.as_deref().unwrap_or("(new workflow identity)")
                )
            );
            plan.add(
                "role assignment",
                id,
                if granted {
                    Action::Unchanged
                } else {
                    Action::Create
                },
                why,
            );
        }
        let recurrence = body["properties"]["definition"]["triggers"]["Recurrence"]["recurrence"]
            .as_object()
            .map(|m| Value::Object(m.clone()));
        let mut result = ScheduleResult {
            plan,
            workflow: body.clone(),
            workflow_id: path.clone(),
            trigger_name: trigger_name(&req.trigger).to_string(),
            principal_id: principal.clone(),
            recurrence,
        };
        if req.dry_run || !result.plan.changes() {
            return Ok(result);
        }

        for (cpath, cbody) in &connections {
            arm.put(cpath, api::WEB_CONNECTIONS, cbody).await?;
        }
        progress.step(format!("Writing workflow {}", req.name));
        let mut disabled = body.clone();
        disabled["properties"]["state"] = json!("Disabled");
        let written = arm.put(&path, api::LOGIC, &disabled).await?;
        let principal_id = written["identity"]["principalId"]
            .as_str()
            .ok_or_else(|| {
                Error::azure(
                    200,
                    None,
                    "the workflow was written without a system-assigned identity",
                )
            })?
            .to_string();
        for (scope, role, _) in grants(req) {
            identity::assign_role(arm, &req.subscription, &scope, role, &principal_id).await?;
        }
        progress.step(format!(
            "Granted the workflow's identity its {} roles",
            grants(req).len()
        ));
        arm.post(&format!("{path}/enable"), api::LOGIC, None)
            .await?;
        result.principal_id = Some(principal_id);
        Ok(result)
    })
}

/// Fires the trigger now and returns the new run's name (a Recurrence trigger starts
/// a run at once; the run is found in the runs list).
pub fn trigger_now<'a>(
    arm: &'a ArmClient,
    workflow: &'a str,
    trigger: &'a str,
) -> BoxFuture<'a, Result<String>> {
    Box::pin(async move {
        let before: Vec<String> = run_names(arm, workflow).await?;
        arm.post(
            &format!("{workflow}/triggers/{trigger}/run"),
            api::LOGIC,
            None,
        )
        .await?;
        for _ in 0..60 {
            let now = run_names(arm, workflow).await?;
            if let Some(new) = now.into_iter().find(|n| !before.contains(n)) {
                return Ok(new);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::azure(
            202,
            None,
            format!("the trigger `{trigger}` was fired but no run started within 30 s"),
        ))
    })
}

async fn run_names(arm: &ArmClient, workflow: &str) -> Result<Vec<String>> {
    Ok(runs(arm, workflow, 50)
        .await?
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect())
}

/// The newest runs (up to `top`), as the runs API returns them.
pub fn runs<'a>(
    arm: &'a ArmClient,
    workflow: &'a str,
    top: u32,
) -> BoxFuture<'a, Result<Vec<Value>>> {
    Box::pin(async move {
        let v = arm
            .get(&format!("{workflow}/runs?$top={top}"), api::LOGIC)
            .await?;
        Ok(v["value"].as_array().cloned().unwrap_or_default())
    })
}

/// One run.
pub fn run<'a>(
    arm: &'a ArmClient,
    workflow: &'a str,
    run: &'a str,
) -> BoxFuture<'a, Result<Value>> {
    Box::pin(async move { arm.get(&format!("{workflow}/runs/{run}"), api::LOGIC).await })
}

/// Enables or disables the workflow's trigger.
pub fn set_enabled<'a>(
    arm: &'a ArmClient,
    workflow: &'a str,
    enabled: bool,
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let op = if enabled { "enable" } else { "disable" };
        arm.post(&format!("{workflow}/{op}"), api::LOGIC, None)
            .await
            .map(|_| ())
    })
}

/// Deletes a schedule: its workflow's role assignments (they would be left
/// pointing at a deleted identity), the workflow, its connections. Returns the ids
/// removed.
pub fn delete<'a>(arm: &'a ArmClient, workflow: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
    Box::pin(async move {
        let mut removed = Vec::new();
        let Some(wf) = arm.get_opt(workflow, api::LOGIC).await? else {
            return Ok(removed);
        };
        // Stop new runs first.
        let _ = set_enabled(arm, workflow, false).await;
        // Then the runs in flight, and the container groups they started: deleting a
        // workflow leaves those groups running (and billed) in Azure. Workflow Runs -
        // List ($filter on status) and Cancel, Microsoft.Logic 2019-05-01
        // (logic.json, specification/logic/resource-manager).
        let running = arm
            .get(
                &format!("{workflow}/runs?$filter=status%20eq%20'Running'"),
                api::LOGIC,
            )
            .await?;
        for run in running["value"].as_array().into_iter().flatten() {
            if let Some(name) = run["name"].as_str() {
                // A run that ended meanwhile answers 409: nothing to cancel.
                match arm
                    .post(&format!("{workflow}/runs/{name}/cancel"), api::LOGIC, None)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.status == Some(409) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let parts: Vec<&str> = workflow.split('/').collect();
        if let (Some(sub), Some(rg), Some(schedule)) = (
            parts.get(2),
            parts.get(4),
            wf["tags"]["serverless-schedule"].as_str(),
        ) {
            for r in tagged_with(arm, sub, rg, "serverless-schedule", schedule).await? {
                let is_group = r["type"].as_str().is_some_and(|t| {
                    t.eq_ignore_ascii_case("microsoft.containerinstance/containergroups")
                });
                if let (true, Some(id)) = (is_group, r["id"].as_str()) {
                    arm.delete(id, api::CONTAINER_INSTANCE).await?;
                    removed.push(id.to_string());
                }
            }
        }
        if let Some(principal) = wf["identity"]["principalId"].as_str() {
            // Listed at the resource group (which holds every scope `apply` granted on,
            // and returns assignments below it too): Reader there is enough, where a
            // subscription-wide list needs rights over the whole subscription.
            let group = workflow.split('/').take(5).collect::<Vec<_>>().join("/");
            let list = arm
            .get(
                &format!(
                    "{group}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId%20eq%20'{principal}'"
                ),
                api::AUTHORIZATION,
            )
            .await?;
            for a in list["value"].as_array().into_iter().flatten() {
                if let Some(id) = a["id"].as_str() {
                    arm.delete(id, api::AUTHORIZATION).await?;
                    removed.push(id.to_string());
                }
            }
        }
        let connections: Vec<String> = wf["properties"]["parameters"]["$connections"]["value"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|c| c["connectionId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        arm.delete(workflow, api::LOGIC).await?;
        removed.push(workflow.to_string());
        for c in connections {
            arm.delete(&c, api::WEB_CONNECTIONS).await?;
            removed.push(c);
        }
        Ok(removed)
    })
}

/// Resources in a resource group tagged `serverless-deployment = deployment`.
pub async fn tagged(
    arm: &ArmClient,
    subscription: &str,
    resource_group: &str,
    deployment: &str,
) -> Result<Vec<Value>> {
    tagged_with(
        arm,
        subscription,
        resource_group,
        "serverless-deployment",
        deployment,
    )
    .await
}

/// Resources in a resource group tagged `tag = value` (Resources - List By Resource
/// Group, `$filter=tagName eq .. and tagValue eq ..`).
async fn tagged_with(
    arm: &ArmClient,
    subscription: &str,
    resource_group: &str,
    tag: &str,
    value: &str,
) -> Result<Vec<Value>> {
    let path = format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/resources?$filter=tagName%20eq%20'{tag}'%20and%20tagValue%20eq%20'{value}'"
    );
    let v = arm.get(&path, api::RESOURCES).await?;
    Ok(v["value"].as_array().cloned().unwrap_or_default())
}

/// Removes everything tagged for a deployment: schedules (with their role
/// assignments and connections), then container groups and anything else left.
pub fn undeploy<'a>(
    arm: &'a ArmClient,
    subscription: &'a str,
    resource_group: &'a str,
    deployment: &'a str,
    progress: &'a Progress,
) -> BoxFuture<'a, Result<Vec<String>>> {
    Box::pin(async move {
        let mut removed = Vec::new();
        let resources = tagged(arm, subscription, resource_group, deployment).await?;
        let kind = |r: &Value| r["type"].as_str().unwrap_or_default().to_ascii_lowercase();
        for r in resources
            .iter()
            .filter(|r| kind(r) == "microsoft.logic/workflows")
        {
            if let Some(id) = r["id"].as_str() {
                progress.step(format!(
                    "Deleting schedule {}",
                    r["name"].as_str().unwrap_or(id)
                ));
                removed.extend(delete(arm, id).await?);
            }
        }
        // Whatever is still tagged (groups of runs in flight, stray connections).
        for r in tagged(arm, subscription, resource_group, deployment).await? {
            let Some(id) = r["id"].as_str() else { continue };
            let version = match kind(&r).as_str() {
                "microsoft.containerinstance/containergroups" => api::CONTAINER_INSTANCE,
                "microsoft.web/connections" => api::WEB_CONNECTIONS,
                "microsoft.logic/workflows" => api::LOGIC,
                _ => continue,
            };
            arm.delete(id, version).await?;
            removed.push(id.to_string());
        }
        Ok(removed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cannot_become_expressions() {
        assert_eq!(escape_literal("data/in/"), "data/in/");
        assert_eq!(escape_literal("@home"), "@@home");
        assert_eq!(escape_literal("a@{b}"), "a@@{b}");
        assert_eq!(escape_literal("@{x}"), "@@{x}");
        assert_eq!(escape_literal("x@y"), "x@y");
    }

    #[test]
    fn schedule_names() {
        assert!(check_schedule_name("churn-nightly").is_ok());
        for bad in [
            "ab",
            "Churn",
            "-churn",
            "churn-",
            "churn_x",
            &"a".repeat(61),
        ] {
            let e = check_schedule_name(bad).unwrap_err();
            assert!(e.message.contains(bad), "{}", e.message);
        }
    }
}
