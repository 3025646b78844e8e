//! Logic Apps workflows (`Microsoft.Logic/workflows`): definitions and run history.
//! Executing workflows is not done here; runs are recorded (trigger) or added by the
//! executor through [`crate::LocalAzure::add_workflow_run`].

use axum::http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::arm::{not_found_path, ArmError, ArmRequest, ArmResult, ResourceType};
use crate::resources::{
    patch_tags, required_location, resolve_identity, resource_not_found, resource_ref, tags_of,
};
use crate::state::Inner;
use crate::util::{self, empty_response, json_response};

fn validate(body: &Value) -> Result<String, ArmError> {
    let props = &body["properties"];
    if !props.is_object() {
        return Err(ArmError::missing("properties"));
    }
    let def = &props["definition"];
    if !def.is_object() {
        return Err(ArmError::missing("properties.definition"));
    }
    for part in ["triggers", "actions"] {
        if !def[part].is_object() {
            return Err(ArmError::bad_request(
                "InvalidWorkflowDefinition",
                format!("The workflow definition is not valid: '{part}' must be an object."),
            )
            .with_target(&format!("properties.definition.{part}")));
        }
    }
    match props["state"].as_str() {
        None => Ok("Enabled".into()),
        Some(s) if ["enabled", "disabled"].contains(&s.to_ascii_lowercase().as_str()) => {
            Ok(s.into())
        }
        Some(s) => Err(ArmError::invalid(
            "properties.state",
            format!("The workflow state '{s}' is not valid. Use 'Enabled' or 'Disabled'."),
        )),
    }
}

/// PUT/GET/PATCH/DELETE `.../workflows/{name}`.
pub fn workflow(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ArmResult {
    let r = resource_ref(req, rg, ty);
    let existing = req.inner.world().resources.get(&r.key).cloned();
    match req.method {
        Method::GET => existing
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(|| resource_not_found(rg, ty, &r.name)),
        Method::DELETE => {
            let mut world = req.inner.world();
            world.workflow_runs.remove(&r.key);
            Ok(match world.resources.remove(&r.key) {
                Some(_) => empty_response(StatusCode::OK),
                None => empty_response(StatusCode::NO_CONTENT),
            })
        }
        Method::PATCH => patch_tags(req, existing, &r, rg, ty),
        Method::PUT => {
            let body = req.json_body()?;
            let location = required_location(&body)?;
            let tags = tags_of(&body)?;
            let state = validate(&body)?;
            let identity = resolve_identity(
                &req.inner,
                &body["identity"],
                existing.as_ref().map(|e| &e["identity"]),
            )?;
            crate::workflow::validate::validate(&body["properties"], &identity)?;
            let now = util::now_rfc3339();
            let created = existing
                .as_ref()
                .and_then(|e| e["properties"]["createdTime"].as_str().map(str::to_string))
                .unwrap_or_else(|| now.clone());
            let mut props = body["properties"].as_object().cloned().unwrap_or_default();
            props.insert("state".into(), json!(state));
            props.insert("provisioningState".into(), json!("Succeeded"));
            props.insert("createdTime".into(), json!(created));
            props.insert("changedTime".into(), json!(now));
            props.insert("version".into(), json!(util::new_uuid().replace('-', "")));
            props.insert(
                "accessEndpoint".into(),
                json!(format!("{}{}", req.inner.https_base, r.id)),
            );
            let mut out = Map::new();
            out.insert("id".into(), json!(r.id));
            out.insert("name".into(), json!(r.name));
            out.insert("type".into(), json!(ty.full_name()));
            out.insert("location".into(), json!(location));
            if let Some(t) = tags {
                out.insert("tags".into(), t);
            }
            if !identity.is_null() {
                out.insert("identity".into(), identity);
            }
            out.insert("properties".into(), Value::Object(props));
            let v = Value::Object(out);
            req.inner.world().resources.insert(r.key, v.clone());
            let status = if existing.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(json_response(status, &v))
        }
        _ => Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The HTTP method is not supported for workflows.",
        )),
    }
}

fn new_run(workflow_id: &str, trigger: &str, status: &str) -> Value {
    let name = format!(
        "0858{}",
        util::new_uuid().replace('-', "").to_ascii_uppercase()
    );
    let now = util::now_rfc3339();
    json!({
        "id": format!("{workflow_id}/runs/{name}"),
        "name": name,
        "type": "Microsoft.Logic/workflows/runs",
        "properties": {
            "startTime": now,
            "status": status,
            "correlation": {"clientTrackingId": name},
            "trigger": {"name": trigger, "startTime": now, "status": "Succeeded"},
            "outputs": {},
        },
    })
}

/// `.../workflows/{name}/{enable|disable|runs|triggers...}`
pub fn workflow_sub(req: &ArmRequest, rg: &str, ty: &ResourceType, rest: &[&str]) -> ArmResult {
    let r = resource_ref(req, rg, ty);
    let Some(wf) = req.inner.world().resources.get(&r.key).cloned() else {
        return Err(resource_not_found(rg, ty, &r.name));
    };
    let m = &req.method;
    match rest {
        [action @ ("enable" | "disable")] if m == Method::POST => {
            let state = if *action == "enable" {
                "Enabled"
            } else {
                "Disabled"
            };
            if let Some(v) = req.inner.world().resources.get_mut(&r.key) {
                v["properties"]["state"] = json!(state);
                v["properties"]["changedTime"] = json!(util::now_rfc3339());
            }
            Ok(empty_response(StatusCode::OK))
        }
        ["runs"] if m == Method::GET => {
            let mut runs = req
                .inner
                .world()
                .workflow_runs
                .get(&r.key)
                .cloned()
                .unwrap_or_default();
            runs.reverse();
            if let Some(status) = req
                .query("$filter")
                .and_then(|f| f.split_once("status eq '"))
                .and_then(|(_, rest)| rest.split_once('\''))
                .map(|(s, _)| s.to_string())
            {
                runs.retain(|run| {
                    run["properties"]["status"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case(&status))
                });
            }
            if let Some(top) = req.query("$top").and_then(|t| t.parse::<usize>().ok()) {
                runs.truncate(top);
            }
            Ok(json_response(StatusCode::OK, &json!({ "value": runs })))
        }
        ["runs", run] if m == Method::GET => req
            .inner
            .world()
            .workflow_runs
            .get(&r.key)
            .and_then(|runs| {
                runs.iter()
                    .find(|x| {
                        x["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(run))
                    })
                    .cloned()
            })
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(|| {
                ArmError::new(
                    StatusCode::NOT_FOUND,
                    "WorkflowRunNotFound",
                    format!(
                        "The workflow '{}' run '{}' could not be found.",
                        r.name, req.segs[9]
                    ),
                )
            }),
        ["triggers", trigger, action @ ("run" | "listcallbackurl")] if m == Method::POST => {
            let triggers = wf["properties"]["definition"]["triggers"].as_object();
            let Some((name, _)) =
                triggers.and_then(|t| t.iter().find(|(k, _)| k.eq_ignore_ascii_case(trigger)))
            else {
                return Err(ArmError::new(
                    StatusCode::NOT_FOUND,
                    "WorkflowTriggerNotFound",
                    format!(
                        "The workflow '{}' trigger '{}' could not be found.",
                        r.name, req.segs[9]
                    ),
                ));
            };
            if *action == "listcallbackurl" {
                let url = format!(
                    "{}{}/triggers/{name}/invoke?api-version=2016-10-01&sp=%2Ftriggers%2F{name}%2Frun&sv=1.0&sig={}",
                    req.inner.https_base,
                    r.id,
                    util::new_secret()
                );
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({ "value": url, "method": "POST" }),
                ));
            }
            let run = new_run(&r.id, name, "Running");
            req.inner
                .world()
                .workflow_runs
                .entry(r.key.clone())
                .or_default()
                .push(run);
            Ok(empty_response(StatusCode::ACCEPTED))
        }
        _ => Err(not_found_path()),
    }
}

/// Adds a run record to a workflow (by id, any case).
pub fn add_run(inner: &Inner, workflow_id: &str, mut run: Value) -> Result<(), String> {
    let key = workflow_id.trim_end_matches('/').to_ascii_lowercase();
    let mut world = inner.world();
    let Some(wf) = world.resources.get(&key) else {
        return Err(format!("no workflow {workflow_id}"));
    };
    if wf["type"] != "Microsoft.Logic/workflows" {
        return Err(format!("{workflow_id} is not a workflow"));
    }
    let id = wf["id"].as_str().unwrap_or(workflow_id).to_string();
    if !run.is_object() {
        return Err("a run must be a JSON object".into());
    }
    let template = new_run(&id, "manual", "Running");
    if run["name"].is_null() {
        run["name"] = template["name"].clone();
    }
    if run["id"].is_null() {
        run["id"] = json!(format!(
            "{id}/runs/{}",
            run["name"].as_str().unwrap_or_default()
        ));
    }
    if run["type"].is_null() {
        run["type"] = template["type"].clone();
    }
    world.workflow_runs.entry(key).or_default().push(run);
    Ok(())
}
