//! Logic Apps workflows (`Microsoft.Logic/workflows`): definitions (checked by
//! [`crate::workflow::validate`]), triggers, runs executed by
//! [`crate::workflow::engine`], and the runs API.

use axum::http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::arm::{not_found_path, ArmError, ArmRequest, ArmResult, ResourceType};
use crate::resources::{
    patch_tags, required_location, resolve_identity, resource_not_found, resource_ref, tags_of,
};
use crate::state::Inner;
use crate::util::{self, empty_response, json_response};
use crate::workflow::engine::{self, RunRecord};
use crate::workflow::triggers;

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
            let removed = {
                let mut world = req.inner.world();
                for run in world.workflow_runs.remove(&r.key).unwrap_or_default() {
                    if let Some(cancel) = run.cancel {
                        let _ = cancel.send_replace(true);
                    }
                }
                world.workflow_access.retain(|_, (wf, _)| *wf != r.key);
                let prefix = format!("{}/", r.key);
                world
                    .trigger_histories
                    .retain(|k, _| !k.starts_with(&prefix));
                world.resources.remove(&r.key)
            };
            triggers::reschedule(&req.inner, &r.key, false);
            Ok(match removed {
                Some(_) => empty_response(StatusCode::OK),
                None => empty_response(StatusCode::NO_CONTENT),
            })
        }
        Method::PATCH => patch_tags(req, existing, &r, rg, ty),
        Method::PUT => {
            // Workflows_CreateOrUpdate's body is a Workflow (see schema.rs).
            let body = req.checked_body("Microsoft.Logic/workflows")?;
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
            // The access id names the workflow in its callback URLs (like Azure's
            // `https://prod-NN.REGION.logic.azure.com/workflows/{accessId}`).
            let access_id = existing
                .as_ref()
                .and_then(|e| e["properties"]["accessEndpoint"].as_str())
                .and_then(|a| a.rsplit('/').next())
                .map(str::to_string)
                .unwrap_or_else(|| util::new_uuid().replace('-', ""));
            props.insert(
                "accessEndpoint".into(),
                json!(format!("{}/workflows/{access_id}", req.inner.https_base)),
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
            {
                let mut world = req.inner.world();
                world.resources.insert(r.key.clone(), v.clone());
                world
                    .workflow_access
                    .entry(access_id.to_ascii_lowercase())
                    .or_insert_with(|| (r.key.clone(), util::new_secret()));
            }
            triggers::reschedule(&req.inner, &r.key, true);
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

fn run_not_found(workflow: &str, run: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "WorkflowRunNotFound",
        format!("The workflow '{workflow}' run '{run}' could not be found."),
    )
}

/// One run's record (cloned out of the store), by name in any case.
fn find_run<T>(
    req: &ArmRequest,
    key: &str,
    run: &str,
    f: impl FnOnce(&RunRecord) -> T,
) -> Option<T> {
    let world = req.inner.world();
    world
        .workflow_runs
        .get(key)?
        .iter()
        .find(|r| r.name().eq_ignore_ascii_case(run))
        .map(f)
}

/// `sig` of a trigger's callback URL: HMAC-SHA256 of the trigger name under the
/// workflow's access key.
fn callback_signature(key: &str, trigger: &str) -> String {
    use base64::Engine;
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let tag = ring::hmac::sign(&k, trigger.to_ascii_lowercase().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
}

fn disabled(name: &str) -> ArmError {
    ArmError::new(
        StatusCode::CONFLICT,
        "WorkflowDisabled",
        format!("The workflow '{name}' is disabled: enable it before running its triggers."),
    )
}

/// The trigger outputs of a request: its headers and its body (JSON when it parses).
fn request_outputs(headers: &axum::http::HeaderMap, body: &[u8]) -> Value {
    let mut h = Map::new();
    for (k, v) in headers {
        if k == "authorization" {
            continue;
        }
        if let Ok(v) = v.to_str() {
            h.insert(k.as_str().to_string(), json!(v));
        }
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice::<Value>(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    };
    json!({"headers": h, "body": body})
}

/// `.../workflows/{name}/{enable|disable|runs...|triggers...}`
pub fn workflow_sub(req: &ArmRequest, rg: &str, ty: &ResourceType, rest: &[&str]) -> ArmResult {
    let r = resource_ref(req, rg, ty);
    let Some(wf) = req.inner.world().resources.get(&r.key).cloned() else {
        return Err(resource_not_found(rg, ty, &r.name));
    };
    let m = &req.method;
    let seg = |i: usize| req.segs.get(8 + i).cloned().unwrap_or_default();
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
            triggers::reschedule(&req.inner, &r.key, *action == "enable");
            Ok(empty_response(StatusCode::OK))
        }
        ["runs"] if m == Method::GET => {
            let mut runs: Vec<Value> = req
                .inner
                .world()
                .workflow_runs
                .get(&r.key)
                .map(|runs| runs.iter().map(|x| x.run.clone()).collect())
                .unwrap_or_default();
            runs.reverse();
            if let Some(filter) = req.query("$filter").filter(|f| !f.trim().is_empty()) {
                let status = filter
                    .trim()
                    .strip_prefix("status eq '")
                    .or_else(|| filter.trim().strip_prefix("Status eq '"))
                    .and_then(|rest| rest.strip_suffix('\''));
                let Some(status) = status else {
                    return Err(ArmError::bad_request(
                        "InvalidFilterInQueryString",
                        format!("The $filter '{filter}' is not supported. Supported: status eq 'Failed' (or another run status)."),
                    ));
                };
                runs.retain(|run| {
                    run["properties"]["status"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case(status))
                });
            }
            if let Some(top) = req.query("$top") {
                let Ok(top) = top.parse::<usize>() else {
                    return Err(ArmError::bad_request(
                        "InvalidQueryParameterValue",
                        format!(
                            "The value '{top}' of query parameter '$top' is not a valid integer."
                        ),
                    ));
                };
                runs.truncate(top);
            }
            Ok(json_response(StatusCode::OK, &json!({ "value": runs })))
        }
        ["runs", run] if m == Method::GET => find_run(req, &r.key, run, |x| x.run.clone())
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(|| run_not_found(&r.name, &seg(1))),
        ["runs", run, "cancel"] if m == Method::POST => {
            match engine::cancel_run(&req.inner, &r.key, run) {
                None => Err(run_not_found(&r.name, &seg(1))),
                Some(true) => Ok(empty_response(StatusCode::OK)),
                Some(false) => Err(ArmError::new(
                    StatusCode::CONFLICT,
                    "WorkflowRunCannotBeCancelled",
                    format!(
                        "The workflow run '{}' cannot be cancelled because it is not running.",
                        seg(1)
                    ),
                )),
            }
        }
        ["runs", run, "actions"] if m == Method::GET => {
            let mut actions = find_run(req, &r.key, run, |x| {
                x.actions.values().cloned().collect::<Vec<_>>()
            })
            .ok_or_else(|| run_not_found(&r.name, &seg(1)))?;
            actions.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            Ok(json_response(StatusCode::OK, &json!({ "value": actions })))
        }
        ["runs", run, "actions", action, rest @ ..] if m == Method::GET => {
            let found = find_run(req, &r.key, run, |x| {
                (
                    x.actions.get(*action).cloned(),
                    x.repetitions.get(*action).cloned().unwrap_or_default(),
                )
            })
            .ok_or_else(|| run_not_found(&r.name, &seg(1)))?;
            let action_not_found = || {
                ArmError::new(
                    StatusCode::NOT_FOUND,
                    "WorkflowRunActionNotFound",
                    format!(
                        "The workflow '{}' run '{}' action '{}' could not be found.",
                        r.name,
                        seg(1),
                        seg(3)
                    ),
                )
            };
            let Some(record) = found.0 else {
                return Err(action_not_found());
            };
            match rest {
                [] => Ok(json_response(StatusCode::OK, &record)),
                ["repetitions"] => Ok(json_response(StatusCode::OK, &json!({ "value": found.1 }))),
                ["repetitions", rep] => found
                    .1
                    .iter()
                    .find(|x| x["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(rep)))
                    .map(|v| json_response(StatusCode::OK, v))
                    .ok_or_else(|| {
                        ArmError::new(
                            StatusCode::NOT_FOUND,
                            "WorkflowRunActionRepetitionNotFound",
                            format!("The workflow '{}' run '{}' action '{}' repetition '{}' could not be found.", r.name, seg(1), seg(3), seg(5)),
                        )
                    }),
                _ => Err(not_found_path()),
            }
        }
        ["triggers", trigger, "histories", rest @ ..] if m == Method::GET && rest.len() <= 1 => {
            // WorkflowTriggerHistories_List / _Get (Logic swagger 2019-05-01): newest
            // first, `$top` honoured.
            let known = wf["properties"]["definition"]["triggers"]
                .as_object()
                .is_some_and(|t| t.keys().any(|k| k.eq_ignore_ascii_case(trigger)));
            if !known {
                return Err(ArmError::new(
                    StatusCode::NOT_FOUND,
                    "WorkflowTriggerNotFound",
                    format!(
                        "The workflow '{}' trigger '{}' could not be found.",
                        r.name,
                        seg(1)
                    ),
                ));
            }
            let key = format!("{}/triggers/{}", r.key, trigger.to_ascii_lowercase());
            let mut histories: Vec<Value> = req
                .inner
                .world()
                .trigger_histories
                .get(&key)
                .cloned()
                .unwrap_or_default();
            histories.reverse();
            if let [name] = rest {
                return histories
                    .into_iter()
                    .find(|h| {
                        h["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    })
                    .map(|h| json_response(StatusCode::OK, &h))
                    .ok_or_else(|| {
                        ArmError::new(
                            StatusCode::NOT_FOUND,
                            "WorkflowTriggerHistoryNotFound",
                            format!(
                                "The workflow '{}' trigger '{}' history '{}' could not be found.",
                                r.name,
                                seg(1),
                                seg(3)
                            ),
                        )
                    });
            }
            if let Some(top) = req.query("$top") {
                let Ok(top) = top.parse::<usize>() else {
                    return Err(ArmError::bad_request(
                        "InvalidQueryParameterValue",
                        format!(
                            "The value '{top}' of query parameter '$top' is not a valid integer."
                        ),
                    ));
                };
                histories.truncate(top);
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({ "value": histories }),
            ))
        }
        ["triggers", trigger, action @ ("run" | "listcallbackurl")] if m == Method::POST => {
            let triggers = wf["properties"]["definition"]["triggers"].as_object();
            let Some((name, t)) =
                triggers.and_then(|t| t.iter().find(|(k, _)| k.eq_ignore_ascii_case(trigger)))
            else {
                return Err(ArmError::new(
                    StatusCode::NOT_FOUND,
                    "WorkflowTriggerNotFound",
                    format!(
                        "The workflow '{}' trigger '{}' could not be found.",
                        r.name,
                        seg(1)
                    ),
                ));
            };
            if *action == "listcallbackurl" {
                if !t["type"]
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case("Request"))
                {
                    return Err(ArmError::bad_request(
                        "WorkflowTriggerCallbackNotSupported",
                        format!("The workflow trigger '{name}' of type '{}' has no callback URL; only Request triggers do.", t["type"].as_str().unwrap_or_default()),
                    ));
                }
                let access = req
                    .inner
                    .world()
                    .workflow_access
                    .iter()
                    .find(|(_, (wf, _))| *wf == r.key)
                    .map(|(id, (_, k))| (id.clone(), k.clone()));
                let Some((access_id, key)) = access else {
                    return Err(not_found_path());
                };
                let url = format!(
                    "{}/workflows/{access_id}/triggers/{name}/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers%2F{name}%2Frun&sv=1.0&sig={}",
                    req.inner.https_base,
                    callback_signature(&key, name)
                );
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({ "value": url, "method": t["inputs"]["method"].as_str().unwrap_or("POST"), "basePath": format!("{}/workflows/{access_id}/triggers/{name}/paths/invoke", req.inner.https_base), "queries": {"api-version": "2016-10-01", "sp": format!("/triggers/{name}/run"), "sv": "1.0"} }),
                ));
            }
            if !triggers::is_enabled(&wf) {
                return Err(disabled(&r.name));
            }
            let outputs = request_outputs(&req.headers, &req.body);
            let run = engine::start_run(&req.inner, &r.key, name, outputs, None).map_err(|e| {
                ArmError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", e)
            })?;
            let mut resp = empty_response(StatusCode::ACCEPTED);
            util::set_header(&mut resp, "x-ms-workflow-run-id", &run);
            Ok(resp)
        }
        _ => Err(not_found_path()),
    }
}

/// `POST /workflows/{accessId}/triggers/{trigger}/paths/invoke?...&sig=...`: the
/// callback URL of a Request trigger (no bearer token: the signature is the key).
pub async fn invoke(
    axum::extract::State(inner): axum::extract::State<std::sync::Arc<Inner>>,
    axum::extract::Path((access_id, trigger)): axum::extract::Path<(String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let query = util::parse_form(query.unwrap_or_default().as_bytes());
    let access = inner
        .world()
        .workflow_access
        .get(&access_id.to_ascii_lowercase())
        .cloned();
    let Some(sig) = util::form_get(&query, "sig") else {
        return ArmError::new(
            StatusCode::UNAUTHORIZED,
            "DirectApiAuthorizationRequired",
            "The request must be authenticated only by Shared Access scheme.",
        )
        .into_response();
    };
    let Some((wf_key, key)) = access else {
        return ArmError::new(
            StatusCode::NOT_FOUND,
            "WorkflowNotFound",
            format!("The workflow with access id '{access_id}' could not be found."),
        )
        .into_response();
    };
    let valid = {
        use base64::Engine;
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .is_ok_and(|tag| {
                ring::hmac::verify(&k, trigger.to_ascii_lowercase().as_bytes(), &tag).is_ok()
            })
    };
    if !valid {
        return ArmError::new(
            StatusCode::UNAUTHORIZED,
            "DirectApiInvalidAuthorizationSignature",
            "The provided shared access key signature is not valid.",
        )
        .into_response();
    }
    let Some(wf) = inner.world().resources.get(&wf_key).cloned() else {
        return not_found_path().into_response();
    };
    let name = wf["properties"]["definition"]["triggers"]
        .as_object()
        .and_then(|t| {
            t.iter()
                .find(|(k, v)| {
                    k.eq_ignore_ascii_case(&trigger)
                        && v["type"]
                            .as_str()
                            .is_some_and(|x| x.eq_ignore_ascii_case("Request"))
                })
                .map(|(k, _)| k.clone())
        });
    let Some(name) = name else {
        return ArmError::new(
            StatusCode::NOT_FOUND,
            "WorkflowTriggerNotFound",
            format!("The workflow trigger '{trigger}' could not be found."),
        )
        .into_response();
    };
    if !triggers::is_enabled(&wf) {
        return disabled(wf["name"].as_str().unwrap_or_default()).into_response();
    }
    match engine::start_run(
        &inner,
        &wf_key,
        &name,
        request_outputs(&headers, &body),
        None,
    ) {
        Ok(run) => {
            let mut resp = empty_response(StatusCode::ACCEPTED);
            util::set_header(&mut resp, "x-ms-workflow-run-id", &run);
            util::set_header(
                &mut resp,
                "x-ms-workflow-id",
                wf["id"].as_str().unwrap_or_default(),
            );
            util::set_header(
                &mut resp,
                "x-ms-workflow-name",
                wf["name"].as_str().unwrap_or_default(),
            );
            resp
        }
        Err(e) => ArmError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", e)
            .into_response(),
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
    if run["name"].is_null() {
        run["name"] = json!(format!(
            "08584{}CU00",
            util::new_uuid().replace('-', "").to_ascii_uppercase()
        ));
    }
    if run["id"].is_null() {
        run["id"] = json!(format!(
            "{id}/runs/{}",
            run["name"].as_str().unwrap_or_default()
        ));
    }
    if run["type"].is_null() {
        run["type"] = json!("Microsoft.Logic/workflows/runs");
    }
    world
        .workflow_runs
        .entry(key)
        .or_default()
        .push(RunRecord::new(run));
    Ok(())
}
