//! Checks a workflow definition when it is saved (PUT): Azure's own checks (shape,
//! expressions, references, `runAfter`) and the emulator's limits. Anything the
//! engine cannot run is refused with `WorkflowNotSupportedByLocalAzure`, so a
//! definition is never accepted and then silently run differently.

use std::collections::{HashMap, HashSet};

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::expr::{check_value, literal_references};
use super::recurrence::Recurrence;
use crate::arm::ArmError;

/// Action types this engine runs.
pub const ACTION_TYPES: &[&str] = &[
    "Http",
    "ApiConnection",
    "Until",
    "If",
    "Wait",
    "Foreach",
    "Scope",
    "Compose",
    "InitializeVariable",
    "IncrementVariable",
    "AppendToArrayVariable",
    "SetVariable",
    "Terminate",
];

/// Trigger types this engine runs.
pub const TRIGGER_TYPES: &[&str] = &["Recurrence", "Request", "ApiConnection"];

/// Types Azure knows but this engine does not run (a different error than a typo).
const AZURE_ONLY_TYPES: &[&str] = &[
    "Response",
    "Switch",
    "Select",
    "Query",
    "Table",
    "Join",
    "ParseJson",
    "Function",
    "Workflow",
    "HttpWebhook",
    "ApiConnectionWebhook",
    "ApiManagement",
    "JavaScriptCode",
    "Xslt",
    "Liquid",
    "FlatFileDecoding",
    "FlatFileEncoding",
    "XmlValidation",
    "IntegrationAccountArtifactLookup",
    "DecrementVariable",
    "AppendToStringVariable",
    "Expression",
    "SendToBatch",
    "Batch",
    "SlidingWindow",
    "ChunkText",
    "ParseDocument",
];

/// Azure's limits: actions per workflow and nesting depth of scopes.
const MAX_ACTIONS: usize = 500;
const MAX_NESTING: usize = 8;

pub const RUN_AFTER_STATUSES: &[&str] = &["Succeeded", "Failed", "Skipped", "TimedOut"];
const VARIABLE_TYPES: &[&str] = &["string", "integer", "float", "boolean", "array", "object"];
const PARAMETER_TYPES: &[&str] = &[
    "string",
    "securestring",
    "int",
    "float",
    "bool",
    "array",
    "object",
    "secureobject",
];

fn invalid_template(message: impl Into<String>) -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "InvalidTemplate",
        format!("The template validation failed: '{}'.", message.into()),
    )
}

fn not_supported(message: impl Into<String>) -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "WorkflowNotSupportedByLocalAzure",
        message.into(),
    )
}

fn action_invalid(name: &str, why: &str) -> ArmError {
    invalid_template(format!("The template action '{name}' is not valid: {why}"))
}

fn trigger_invalid(name: &str, why: &str) -> ArmError {
    invalid_template(format!("The template trigger '{name}' is not valid: {why}"))
}

/// Canonical spelling of a type name (Azure compares types case-insensitively).
pub fn canonical_type(ty: &str, known: &[&'static str]) -> Option<&'static str> {
    known.iter().find(|k| k.eq_ignore_ascii_case(ty)).copied()
}

/// What one action is, for reference checks.
struct ActionInfo {
    ty: &'static str,
    /// Names (lowercase) of the enclosing Foreach and Until loops.
    loops: Vec<String>,
}

struct Walker<'a> {
    actions: HashMap<String, ActionInfo>,
    /// Current nesting depth while collecting.
    depth: usize,
    variables: HashSet<String>,
    parameters: &'a Map<String, Value>,
    connections: Value,
    system_identity: bool,
    user_identities: Vec<String>,
}

/// Checks `properties` of a workflow PUT (`definition`, `parameters`) against the
/// workflow's resolved `identity`.
pub fn validate(props: &Value, identity: &Value) -> Result<(), ArmError> {
    let def = &props["definition"];
    let Some(def_obj) = def.as_object() else {
        return Err(ArmError::missing("properties.definition"));
    };
    for key in def_obj.keys() {
        if !matches!(
            key.as_str(),
            "$schema"
                | "contentVersion"
                | "parameters"
                | "triggers"
                | "actions"
                | "outputs"
                | "description"
        ) {
            if key == "staticResults" {
                return Err(not_supported(
                    "The local Azure does not support 'staticResults' (static results for testing) in workflow definitions.",
                ));
            }
            return Err(invalid_template(format!(
                "Could not find member '{key}' on object of type 'FlowTemplate'. Path 'definition.{key}'"
            )));
        }
    }
    let empty = Map::new();
    let parameters = match &def["parameters"] {
        Value::Null => &empty,
        Value::Object(m) => m,
        _ => {
            return Err(invalid_template(
                "The definition 'parameters' must be an object.",
            ))
        }
    };
    for (name, p) in parameters {
        let ty = p["type"].as_str().unwrap_or_default();
        if !PARAMETER_TYPES.contains(&ty.to_ascii_lowercase().as_str()) {
            return Err(invalid_template(format!(
                "The template parameter '{name}' has type '{ty}'; the type must be one of String, SecureString, Int, Float, Bool, Array, Object or SecureObject."
            )));
        }
    }
    let mut connections = Value::Null;
    match &props["parameters"] {
        Value::Null => {}
        Value::Object(values) => {
            for (name, v) in values {
                if !parameters.contains_key(name) {
                    return Err(invalid_template(format!(
                        "The workflow parameter '{name}' is not declared in the definition's parameters."
                    )));
                }
                if !v.is_object() || v.get("value").is_none() {
                    return Err(ArmError::invalid(
                        &format!("properties.parameters.{name}"),
                        format!(
                            "The workflow parameter '{name}' must be an object with a 'value'."
                        ),
                    ));
                }
                if name == "$connections" {
                    connections = v["value"].clone();
                }
            }
        }
        _ => {
            return Err(ArmError::invalid(
                "properties.parameters",
                "The workflow 'parameters' must be an object.",
            ))
        }
    }
    if connections.is_null() {
        connections = parameters
            .get("$connections")
            .map(|p| p["defaultValue"].clone())
            .unwrap_or(Value::Null);
    }
    let identity_type = identity["type"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut w = Walker {
        actions: HashMap::new(),
        depth: 0,
        variables: HashSet::new(),
        parameters,
        connections,
        system_identity: identity_type.contains("systemassigned"),
        user_identities: identity["userAssignedIdentities"]
            .as_object()
            .map(|m| m.keys().map(|k| k.to_ascii_lowercase()).collect())
            .unwrap_or_default(),
    };

    let triggers = def["triggers"]
        .as_object()
        .ok_or_else(|| invalid_template("The definition 'triggers' must be an object."))?;
    if triggers.len() > 10 {
        return Err(invalid_template(
            "The workflow has more than 10 triggers; at most 10 are allowed.",
        ));
    }
    let actions = def["actions"]
        .as_object()
        .ok_or_else(|| invalid_template("The definition 'actions' must be an object."))?;
    // First pass: names, types and loops, so references can be checked in any order.
    w.collect(actions, &[], true)?;
    for (name, trigger) in triggers {
        w.trigger(name, trigger)?;
    }
    w.check_scope(actions)?;
    if let Err((path, e)) = check_value(&def["outputs"], "outputs") {
        return Err(invalid_template(format!(
            "The template output at '{path}' is not valid: {e}"
        )));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 80
        && !name.chars().any(|c| {
            matches!(c, '<' | '>' | '%' | '&' | '\\' | '?' | '/' | ':' | '*') || c.is_control()
        })
}

impl Walker<'_> {
    fn collect(
        &mut self,
        actions: &Map<String, Value>,
        loops: &[String],
        top: bool,
    ) -> Result<(), ArmError> {
        self.depth += 1;
        // The top level plus eight nested levels.
        if self.depth > MAX_NESTING + 1 {
            return Err(invalid_template(format!(
                "The workflow nests scopes, conditions and loops more than {MAX_NESTING} levels deep."
            )));
        }
        for (name, a) in actions {
            if !valid_name(name) {
                return Err(action_invalid(
                    name,
                    "the action name must be 1 to 80 characters and must not contain '<', '>', '%', '&', '\\', '?', '/', ':' or '*'.",
                ));
            }
            let Some(obj) = a.as_object() else {
                return Err(action_invalid(name, "an action must be a JSON object."));
            };
            let raw = obj.get("type").and_then(Value::as_str).unwrap_or_default();
            let ty = match canonical_type(raw, ACTION_TYPES) {
                Some(t) => t,
                None if AZURE_ONLY_TYPES.iter().any(|t| t.eq_ignore_ascii_case(raw)) => {
                    return Err(not_supported(format!(
                        "The local Azure cannot run action '{name}': the action type '{raw}' is not supported. Supported action types: {}.",
                        ACTION_TYPES.join(", ")
                    )))
                }
                None if raw.is_empty() => {
                    return Err(action_invalid(name, "the required property 'type' is missing."))
                }
                None => {
                    return Err(action_invalid(
                        name,
                        &format!("the action type '{raw}' is not a valid workflow action type."),
                    ))
                }
            };
            let lower = name.to_ascii_lowercase();
            if self.actions.contains_key(&lower) {
                return Err(invalid_template(format!(
                    "The action name '{name}' is used more than once; action names must be unique across the workflow."
                )));
            }
            self.actions.insert(
                lower.clone(),
                ActionInfo {
                    ty,
                    loops: loops.to_vec(),
                },
            );
            if ty == "InitializeVariable" {
                if !top {
                    return Err(action_invalid(
                        name,
                        "'InitializeVariable' actions are only allowed at the top level of the workflow, not inside a scope, condition or loop.",
                    ));
                }
                if let Some(v) = a["inputs"]["variables"].as_array() {
                    for var in v {
                        if let Some(n) = var["name"].as_str() {
                            self.variables.insert(n.to_ascii_lowercase());
                        }
                    }
                }
            }
            let mut inner_loops = loops.to_vec();
            if matches!(ty, "Foreach" | "Until") {
                inner_loops.push(lower);
            }
            for key in ["actions"] {
                if let Some(inner) = a[key].as_object() {
                    self.collect(inner, &inner_loops, false)?;
                }
            }
            if let Some(inner) = a["else"]["actions"].as_object() {
                self.collect(inner, &inner_loops, false)?;
            }
        }
        if self.actions.len() > MAX_ACTIONS {
            return Err(invalid_template(format!(
                "The workflow has more than {MAX_ACTIONS} actions."
            )));
        }
        self.depth -= 1;
        Ok(())
    }

    /// Checks every expression string in `v` and the references it makes.
    fn expressions(
        &self,
        v: &Value,
        path: &str,
        owner: &str,
        loops: &[String],
    ) -> Result<(), ArmError> {
        if let Err((at, e)) = check_value(v, path) {
            return Err(invalid_template(format!(
                "Unable to parse template language expression in '{owner}' at '{at}': {e}"
            )));
        }
        let mut strings = Vec::new();
        collect_strings(v, &mut strings);
        for s in strings {
            for target in ["body", "outputs", "actions"]
                .iter()
                .flat_map(|f| literal_references(s, f))
            {
                if !self.actions.contains_key(&target.to_ascii_lowercase()) {
                    return Err(invalid_template(format!(
                        "The action '{target}' referenced by '{owner}' is not defined in the template."
                    )));
                }
            }
            for target in literal_references(s, "result") {
                let ok = self
                    .actions
                    .get(&target.to_ascii_lowercase())
                    .is_some_and(|a| matches!(a.ty, "Scope" | "Foreach" | "Until" | "If"));
                if !ok {
                    return Err(invalid_template(format!(
                        "The template function 'result' in '{owner}' must name a Scope, Foreach, Until or If action; '{target}' is not one."
                    )));
                }
            }
            let encloses = |target: &str, ty: &str| {
                let lower = target.to_ascii_lowercase();
                loops.contains(&lower) && self.actions.get(&lower).is_some_and(|a| a.ty == ty)
            };
            for target in literal_references(s, "iterationIndexes") {
                if !encloses(&target, "Until") {
                    return Err(invalid_template(format!(
                        "The template language function 'iterationIndexes' in '{owner}' must refer to an 'until' action that contains it; '{target}' does not."
                    )));
                }
            }
            for target in literal_references(s, "items") {
                if !encloses(&target, "Foreach") {
                    return Err(invalid_template(format!(
                        "The template language function 'items' in '{owner}' must refer to a 'foreach' action that contains it; '{target}' does not."
                    )));
                }
            }
            for target in literal_references(s, "variables") {
                if !self.variables.contains(&target.to_ascii_lowercase()) {
                    return Err(invalid_template(format!(
                        "The variable '{target}' used in '{owner}' is not initialized by any 'InitializeVariable' action."
                    )));
                }
            }
            for target in literal_references(s, "parameters") {
                if !self.parameters.contains_key(&target) {
                    return Err(invalid_template(format!(
                        "The workflow parameter '{target}' used in '{owner}' is not declared in the definition."
                    )));
                }
            }
        }
        Ok(())
    }

    fn trigger(&self, name: &str, t: &Value) -> Result<(), ArmError> {
        if !valid_name(name) {
            return Err(trigger_invalid(name, "the trigger name is not valid."));
        }
        let Some(obj) = t.as_object() else {
            return Err(trigger_invalid(name, "a trigger must be a JSON object."));
        };
        for key in obj.keys() {
            match key.as_str() {
                "type"
                | "kind"
                | "inputs"
                | "recurrence"
                | "metadata"
                | "description"
                | "conditions"
                | "splitOn"
                | "operationOptions"
                | "runtimeConfiguration"
                | "correlation" => {}
                other => {
                    return Err(trigger_invalid(
                        name,
                        &format!("Could not find member '{other}' on the trigger."),
                    ))
                }
            }
        }
        for unsupported in [
            "conditions",
            "operationOptions",
            "runtimeConfiguration",
            "correlation",
        ] {
            if obj.contains_key(unsupported) {
                return Err(not_supported(format!(
                    "The local Azure cannot run trigger '{name}': the trigger property '{unsupported}' is not supported."
                )));
            }
        }
        let raw = t["type"].as_str().unwrap_or_default();
        let Some(ty) = canonical_type(raw, TRIGGER_TYPES) else {
            return Err(not_supported(format!(
                "The local Azure cannot run trigger '{name}': the trigger type '{raw}' is not supported. Supported trigger types: Recurrence, Request (kind Http) and ApiConnection (azureblob 'when a blob is added or modified')."
            )));
        };
        self.expressions(&t["inputs"], "inputs", name, &[])?;
        match ty {
            "Recurrence" => {
                if obj.contains_key("splitOn") || obj.contains_key("inputs") {
                    return Err(trigger_invalid(
                        name,
                        "a Recurrence trigger takes only 'recurrence'.",
                    ));
                }
                Recurrence::parse(&t["recurrence"]).map_err(|e| trigger_invalid(name, &e))?;
            }
            "Request" => {
                match t["kind"].as_str() {
                    None => {}
                    Some(k) if k.eq_ignore_ascii_case("http") => {}
                    Some(k) => {
                        return Err(not_supported(format!(
                            "The local Azure cannot run trigger '{name}': Request triggers of kind '{k}' are not supported (only 'Http')."
                        )))
                    }
                }
                if obj.contains_key("splitOn") || obj.contains_key("recurrence") {
                    return Err(not_supported(format!(
                        "The local Azure cannot run trigger '{name}': 'splitOn' and 'recurrence' are not supported on Request triggers."
                    )));
                }
                if let Some(inputs) = t["inputs"].as_object() {
                    for key in inputs.keys() {
                        if !matches!(key.as_str(), "schema" | "method" | "relativePath") {
                            return Err(trigger_invalid(
                                name,
                                &format!("the Request trigger input '{key}' is not valid."),
                            ));
                        }
                    }
                    if inputs.contains_key("relativePath") {
                        return Err(not_supported(format!(
                            "The local Azure cannot run trigger '{name}': 'relativePath' is not supported."
                        )));
                    }
                }
            }
            _ => self.blob_trigger(name, t)?,
        }
        Ok(())
    }

    /// The `azureblob` "when a blob is added or modified (properties only)" trigger.
    fn blob_trigger(&self, name: &str, t: &Value) -> Result<(), ArmError> {
        let api = self.connection_api(name, &t["inputs"]["host"]["connection"]["name"])?;
        if api != "azureblob" {
            return Err(not_supported(format!(
                "The local Azure cannot run trigger '{name}': ApiConnection triggers of the '{api}' connector are not supported (only azureblob 'when a blob is added or modified')."
            )));
        }
        let path = t["inputs"]["path"].as_str().unwrap_or_default();
        let method = t["inputs"]["method"].as_str().unwrap_or_default();
        if !method.eq_ignore_ascii_case("get")
            || super::connectors::blob_trigger_account(path).is_none()
        {
            return Err(not_supported(format!(
                "The local Azure cannot run trigger '{name}': the azureblob operation '{method} {path}' is not supported (only GET /v2/datasets/@{{encodeURIComponent('ACCOUNT')}}/triggers/batch/onupdatedfile)."
            )));
        }
        if !t["inputs"]["queries"]["folderId"].is_string() {
            return Err(trigger_invalid(
                name,
                "the azureblob trigger needs the query 'folderId'.",
            ));
        }
        match &t["splitOn"] {
            Value::Null => {}
            Value::String(s) if s.replace(' ', "").eq_ignore_ascii_case("@triggerBody()") => {}
            other => {
                return Err(not_supported(format!(
                    "The local Azure cannot run trigger '{name}': splitOn '{other}' is not supported (only '@triggerBody()')."
                )))
            }
        }
        Recurrence::parse(&t["recurrence"]).map_err(|e| trigger_invalid(name, &e))?;
        Ok(())
    }

    /// The managed API name (`aci`, `azureblob`) of an ApiConnection's
    /// `host.connection.name`, through the `$connections` parameter.
    fn connection_api(&self, owner: &str, name: &Value) -> Result<String, ArmError> {
        let Some(expr) = name.as_str() else {
            return Err(action_invalid(
                owner,
                "'inputs.host.connection.name' is required.",
            ));
        };
        let Some(key) = super::connectors::connection_key(expr) else {
            return Err(not_supported(format!(
                "The local Azure cannot run '{owner}': the connection name must be of the form @parameters('$connections')['NAME']['connectionId']."
            )));
        };
        let Some(conn) = self.connections.as_object().and_then(|m| m.get(&key)) else {
            return Err(invalid_template(format!(
                "The API connection '{key}' used by '{owner}' is not in the '$connections' parameter."
            )));
        };
        let api = conn["id"]
            .as_str()
            .and_then(|id| id.rsplit('/').next())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if conn["connectionId"].as_str().is_none() {
            return Err(invalid_template(format!(
                "The API connection '{key}' used by '{owner}' has no 'connectionId'."
            )));
        }
        let auth = conn["connectionProperties"]["authentication"]["type"]
            .as_str()
            .unwrap_or_default();
        if !auth.eq_ignore_ascii_case("ManagedServiceIdentity") {
            return Err(not_supported(format!(
                "The local Azure cannot run '{owner}': API connection '{key}' must use connectionProperties.authentication.type 'ManagedServiceIdentity' (connections with stored secrets are not supported)."
            )));
        }
        self.identity_ok(
            owner,
            &conn["connectionProperties"]["authentication"]["identity"],
        )?;
        Ok(api)
    }

    fn identity_ok(&self, owner: &str, identity: &Value) -> Result<(), ArmError> {
        match identity.as_str() {
            Some(id) if !self.user_identities.contains(&id.to_ascii_lowercase()) => {
                Err(invalid_template(format!(
                    "'{owner}' uses the user-assigned identity '{id}', which is not assigned to the workflow."
                )))
            }
            Some(_) => Ok(()),
            None if self.system_identity => Ok(()),
            None => Err(invalid_template(format!(
                "'{owner}' authenticates with the workflow's managed identity, but the workflow has no system-assigned identity (set identity.type to 'SystemAssigned')."
            ))),
        }
    }

    fn check_scope(&self, actions: &Map<String, Value>) -> Result<(), ArmError> {
        // runAfter: sibling names, known statuses, no cycles.
        for (name, a) in actions {
            match &a["runAfter"] {
                Value::Null => {}
                Value::Object(after) => {
                    for (dep, statuses) in after {
                        if !actions.contains_key(dep) {
                            return Err(invalid_template(format!(
                                "The 'runAfter' property of template action '{name}' contains non-existent action: '{dep}'."
                            )));
                        }
                        if dep == name {
                            return Err(action_invalid(name, "an action cannot run after itself."));
                        }
                        let Some(list) = statuses.as_array() else {
                            return Err(action_invalid(
                                name,
                                &format!("the 'runAfter' statuses of '{dep}' must be an array."),
                            ));
                        };
                        for s in list {
                            let ok = s.as_str().is_some_and(|s| {
                                RUN_AFTER_STATUSES.iter().any(|k| k.eq_ignore_ascii_case(s))
                            });
                            if !ok {
                                return Err(action_invalid(
                                    name,
                                    &format!(
                                        "the 'runAfter' status '{}' of '{dep}' is not valid; use Succeeded, Failed, Skipped or TimedOut.",
                                        s.as_str().map(str::to_string).unwrap_or_else(|| s.to_string())
                                    ),
                                ));
                            }
                        }
                    }
                }
                _ => return Err(action_invalid(name, "'runAfter' must be an object.")),
            }
        }
        if let Some(cycle) = find_cycle(actions) {
            return Err(invalid_template(format!(
                "The template action '{cycle}' is part of a cycle of 'runAfter' dependencies."
            )));
        }
        for (name, a) in actions {
            self.action(name, a)?;
        }
        Ok(())
    }

    fn action(&self, name: &str, a: &Value) -> Result<(), ArmError> {
        let Some(info) = self.actions.get(&name.to_ascii_lowercase()) else {
            return Err(action_invalid(
                name,
                "the action is not where it was found.",
            ));
        };
        let ty = info.ty;
        let obj = a.as_object().cloned().unwrap_or_default();
        let mut allowed: Vec<&str> = vec!["type", "runAfter", "metadata", "description", "inputs"];
        match ty {
            "If" => allowed.extend(["expression", "actions", "else"]),
            "Until" => allowed.extend(["expression", "limit", "actions"]),
            "Foreach" => allowed.extend([
                "foreach",
                "actions",
                "runtimeConfiguration",
                "operationOptions",
            ]),
            "Scope" => allowed.push("actions"),
            "Http" => allowed.push("operationOptions"),
            _ => {}
        }
        for key in obj.keys() {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            if matches!(
                key.as_str(),
                "limit"
                    | "runtimeConfiguration"
                    | "operationOptions"
                    | "trackedProperties"
                    | "retryPolicy"
                    | "expression"
                    | "actions"
                    | "else"
                    | "foreach"
            ) {
                return Err(not_supported(format!(
                    "The local Azure cannot run action '{name}': the property '{key}' is not supported on '{ty}' actions."
                )));
            }
            return Err(action_invalid(
                name,
                &format!("Could not find member '{key}' on an action of type '{ty}'."),
            ));
        }
        let inputs = &a["inputs"];
        self.expressions(inputs, "inputs", name, &info.loops)?;
        let needs_inputs = |fields: &[&str]| -> Result<(), ArmError> {
            for f in fields {
                if inputs.get(*f).is_none() {
                    return Err(action_invalid(
                        name,
                        &format!("the required input '{f}' is missing."),
                    ));
                }
            }
            Ok(())
        };
        let only_inputs = |fields: &[&str]| -> Result<(), ArmError> {
            if !inputs.is_null() && !inputs.is_object() {
                return Err(action_invalid(name, "'inputs' must be an object."));
            }
            for key in inputs
                .as_object()
                .map(|m| m.keys().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if !fields.contains(&key.as_str()) {
                    return Err(not_supported(format!(
                        "The local Azure cannot run action '{name}': the input '{key}' is not supported on '{ty}' actions (supported: {}).",
                        fields.join(", ")
                    )));
                }
            }
            Ok(())
        };
        match ty {
            "Http" => {
                only_inputs(&[
                    "method",
                    "uri",
                    "headers",
                    "queries",
                    "body",
                    "authentication",
                    "retryPolicy",
                ])?;
                needs_inputs(&["method", "uri"])?;
                if let Some(m) = inputs["method"].as_str() {
                    let ok = super::expr::is_expression(m)
                        || ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
                            .contains(&m.to_ascii_uppercase().as_str());
                    if !ok {
                        return Err(action_invalid(
                            name,
                            &format!("the HTTP method '{m}' is not valid."),
                        ));
                    }
                }
                self.authentication(name, &inputs["authentication"])?;
                retry_policy(name, &inputs["retryPolicy"])?;
                if let Some(o) = obj.get("operationOptions") {
                    let ok = o.as_str().is_some_and(|s| {
                        s.split(',')
                            .all(|x| x.trim().eq_ignore_ascii_case("DisableAsyncPattern"))
                    });
                    if !ok {
                        return Err(not_supported(format!(
                            "The local Azure cannot run action '{name}': operationOptions '{o}' is not supported (only 'DisableAsyncPattern')."
                        )));
                    }
                }
            }
            "ApiConnection" => {
                only_inputs(&[
                    "host",
                    "method",
                    "path",
                    "queries",
                    "body",
                    "headers",
                    "retryPolicy",
                ])?;
                needs_inputs(&["host", "method", "path"])?;
                let api = self.connection_api(name, &inputs["host"]["connection"]["name"])?;
                if api != "aci" {
                    return Err(not_supported(format!(
                        "The local Azure cannot run action '{name}': ApiConnection actions of the '{api}' connector are not supported (only 'aci')."
                    )));
                }
                let method = inputs["method"].as_str().unwrap_or_default();
                let path = inputs["path"].as_str().unwrap_or_default();
                if super::connectors::aci_operation(method, path).is_none() {
                    return Err(not_supported(format!(
                        "The local Azure cannot run action '{name}': the aci operation '{method} {path}' is not supported (supported: put/get/delete of .../providers/Microsoft.ContainerInstance/containerGroups/NAME and get of .../containerGroups/NAME/containers/CONTAINER/logs)."
                    )));
                }
                retry_policy(name, &inputs["retryPolicy"])?;
            }
            "Compose" if a.get("inputs").is_none() => {
                return Err(action_invalid(
                    name,
                    "the required property 'inputs' is missing.",
                ));
            }
            "InitializeVariable" => {
                only_inputs(&["variables"])?;
                let Some(vars) = inputs["variables"].as_array().filter(|v| v.len() == 1) else {
                    return Err(action_invalid(
                        name,
                        "'inputs.variables' must be an array with exactly one variable.",
                    ));
                };
                let var = &vars[0];
                if !var["name"].is_string() {
                    return Err(action_invalid(name, "the variable 'name' is required."));
                }
                let ty = var["type"].as_str().unwrap_or_default();
                if !VARIABLE_TYPES.contains(&ty.to_ascii_lowercase().as_str()) {
                    return Err(action_invalid(
                        name,
                        &format!("the variable type '{ty}' is not valid; use String, Integer, Float, Boolean, Array or Object."),
                    ));
                }
            }
            "IncrementVariable" | "SetVariable" | "AppendToArrayVariable" => {
                only_inputs(&["name", "value"])?;
                let Some(var) = inputs["name"].as_str() else {
                    return Err(action_invalid(name, "the input 'name' is required."));
                };
                if !self.variables.contains(&var.to_ascii_lowercase()) {
                    return Err(action_invalid(
                        name,
                        &format!("the variable '{var}' is not initialized by any 'InitializeVariable' action."),
                    ));
                }
                if ty != "IncrementVariable" && inputs.get("value").is_none() {
                    return Err(action_invalid(name, "the input 'value' is required."));
                }
            }
            "Terminate" => {
                only_inputs(&["runStatus", "runError"])?;
                let status = inputs["runStatus"].as_str().unwrap_or_default();
                if !["Failed", "Cancelled", "Succeeded"]
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(status))
                {
                    return Err(action_invalid(name, &format!("the run status '{status}' is not valid; use Failed, Cancelled or Succeeded.")));
                }
                if !inputs["runError"].is_null() && !status.eq_ignore_ascii_case("Failed") {
                    return Err(action_invalid(
                        name,
                        "'runError' is only allowed when runStatus is 'Failed'.",
                    ));
                }
            }
            "Wait" => {
                only_inputs(&["interval"])?;
                let interval = &inputs["interval"];
                if inputs.get("interval").is_none() {
                    return Err(not_supported(format!(
                        "The local Azure cannot run action '{name}': only Wait with 'interval' (count, unit) is supported."
                    )));
                }
                let unit = interval["unit"].as_str().unwrap_or_default();
                if !["Second", "Minute", "Hour", "Day", "Week", "Month"]
                    .iter()
                    .any(|u| u.eq_ignore_ascii_case(unit))
                {
                    return Err(action_invalid(name, &format!("the wait unit '{unit}' is not valid; use Second, Minute, Hour, Day, Week or Month.")));
                }
                let count_ok = interval["count"].as_i64().is_some_and(|c| c >= 0)
                    || interval["count"]
                        .as_str()
                        .is_some_and(super::expr::is_expression);
                if !count_ok {
                    return Err(action_invalid(
                        name,
                        "the wait 'count' must be a non-negative integer.",
                    ));
                }
            }
            "If" => {
                if a.get("inputs").is_some() {
                    return Err(action_invalid(name, "an If action has no 'inputs'."));
                }
                self.condition(name, &a["expression"], &info.loops)?;
                self.nested(name, &a["actions"], true)?;
                if let Some(e) = a.get("else") {
                    let Some(eo) = e.as_object() else {
                        return Err(action_invalid(name, "'else' must be an object."));
                    };
                    if eo.keys().any(|k| k != "actions") {
                        return Err(action_invalid(name, "'else' takes only 'actions'."));
                    }
                    self.nested(name, &e["actions"], true)?;
                }
            }
            "Until" => {
                self.condition(name, &a["expression"], &info.loops)?;
                let limit = &a["limit"];
                if !limit.is_null() {
                    let Some(l) = limit.as_object() else {
                        return Err(action_invalid(name, "'limit' must be an object."));
                    };
                    for (k, v) in l {
                        match k.as_str() {
                            "count" => {
                                let ok = v.as_i64().is_some_and(|c| (1..=5000).contains(&c))
                                    || v.as_str().is_some_and(super::expr::is_expression);
                                if !ok {
                                    return Err(action_invalid(name, "the Until 'limit.count' must be an integer from 1 to 5000."));
                                }
                            }
                            "timeout" => {
                                let ok = v.as_str().is_some_and(|s| {
                                    super::expr::is_expression(s) || parse_duration(s).is_some()
                                });
                                if !ok {
                                    return Err(action_invalid(name, &format!("the Until 'limit.timeout' '{v}' is not an ISO 8601 duration such as 'PT1H'.")));
                                }
                            }
                            other => {
                                return Err(action_invalid(
                                    name,
                                    &format!("the Until limit property '{other}' is not valid."),
                                ))
                            }
                        }
                    }
                    self.expressions(limit, "limit", name, &info.loops)?;
                }
                self.nested(name, &a["actions"], false)?;
            }
            "Foreach" => {
                let Some(f) = a["foreach"].as_str() else {
                    return Err(action_invalid(name, "the required property 'foreach' (an expression giving an array) is missing."));
                };
                self.expressions(&Value::String(f.to_string()), "foreach", name, &info.loops)?;
                if let Some(rc) = obj.get("runtimeConfiguration") {
                    let reps = &rc["concurrency"]["repetitions"];
                    let only_concurrency = rc
                        .as_object()
                        .is_some_and(|m| m.keys().all(|k| k == "concurrency"))
                        && rc["concurrency"]
                            .as_object()
                            .is_some_and(|m| m.keys().all(|k| k == "repetitions"));
                    if !only_concurrency {
                        return Err(not_supported(format!(
                            "The local Azure cannot run action '{name}': only runtimeConfiguration.concurrency.repetitions is supported on Foreach."
                        )));
                    }
                    if !reps.as_i64().is_some_and(|r| (1..=50).contains(&r)) {
                        return Err(action_invalid(name, "'runtimeConfiguration.concurrency.repetitions' must be an integer from 1 to 50."));
                    }
                }
                if let Some(o) = obj.get("operationOptions") {
                    if !o
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case("Sequential"))
                    {
                        return Err(not_supported(format!(
                            "The local Azure cannot run action '{name}': operationOptions '{o}' is not supported (only 'Sequential')."
                        )));
                    }
                }
                self.nested(name, &a["actions"], false)?;
            }
            "Scope" => self.nested(name, &a["actions"], true)?,
            _ => {}
        }
        Ok(())
    }

    fn nested(&self, name: &str, actions: &Value, may_be_empty: bool) -> Result<(), ArmError> {
        match actions {
            Value::Object(m) => {
                if m.is_empty() && !may_be_empty {
                    return Err(action_invalid(
                        name,
                        "'actions' must contain at least one action.",
                    ));
                }
                self.check_scope(m)
            }
            Value::Null if may_be_empty => Ok(()),
            _ => Err(action_invalid(name, "'actions' must be an object.")),
        }
    }

    fn condition(&self, name: &str, e: &Value, loops: &[String]) -> Result<(), ArmError> {
        match e {
            Value::String(s) => {
                if !super::expr::is_expression(s) {
                    return Err(action_invalid(name, "the 'expression' must be an expression (starting with '@') or a condition object."));
                }
                self.expressions(e, "expression", name, loops)
            }
            Value::Object(_) => {
                check_condition(e).map_err(|why| action_invalid(name, &why))?;
                self.expressions(e, "expression", name, loops)
            }
            Value::Null => Err(action_invalid(
                name,
                "the required property 'expression' is missing.",
            )),
            _ => Err(action_invalid(
                name,
                "the 'expression' must be a string or a condition object.",
            )),
        }
    }

    fn authentication(&self, name: &str, auth: &Value) -> Result<(), ArmError> {
        if auth.is_null() {
            return Ok(());
        }
        let ty = auth["type"].as_str().unwrap_or_default();
        if !ty.eq_ignore_ascii_case("ManagedServiceIdentity") {
            return Err(not_supported(format!(
                "The local Azure cannot run action '{name}': the authentication type '{ty}' is not supported (only ManagedServiceIdentity)."
            )));
        }
        if let Some(m) = auth.as_object() {
            for k in m.keys() {
                if !matches!(k.as_str(), "type" | "audience" | "identity") {
                    return Err(action_invalid(name, &format!("the authentication property '{k}' is not valid for ManagedServiceIdentity.")));
                }
            }
        }
        self.identity_ok(name, &auth["identity"])
    }
}

/// Condition objects of `If` and `Until`: `and`/`or` of lists, `not`, and the
/// comparisons `equals`, `greater`, `greaterOrEquals`, `less`, `lessOrEquals`,
/// `contains`, `startsWith`, `endsWith`, each with two operands.
pub fn check_condition(c: &Value) -> Result<(), String> {
    check_condition_at(c, 0)
}

fn check_condition_at(c: &Value, depth: usize) -> Result<(), String> {
    if depth > 32 {
        return Err("the condition is nested too deeply.".into());
    }
    let Some(m) = c.as_object().filter(|m| m.len() == 1) else {
        return Err(format!(
            "the condition '{c}' must be an object with exactly one operator."
        ));
    };
    let Some((op, arg)) = m.iter().next() else {
        return Err("the condition is empty.".into());
    };
    match op.as_str() {
        "and" | "or" => {
            let Some(items) = arg.as_array().filter(|a| !a.is_empty()) else {
                return Err(format!("the '{op}' condition needs a non-empty array."));
            };
            items.iter().try_for_each(|i| check_condition_at(i, depth + 1))
        }
        "not" => check_condition_at(arg, depth + 1),
        "equals" | "greater" | "greaterOrEquals" | "less" | "lessOrEquals" | "contains" | "startsWith" | "endsWith" => {
            if arg.as_array().is_some_and(|a| a.len() == 2) {
                Ok(())
            } else {
                Err(format!("the '{op}' condition needs an array of two operands."))
            }
        }
        other => Err(format!(
            "the condition operator '{other}' is not supported; use and, or, not, equals, greater, greaterOrEquals, less, lessOrEquals, contains, startsWith or endsWith."
        )),
    }
}

fn retry_policy(name: &str, p: &Value) -> Result<(), ArmError> {
    if p.is_null() {
        return Ok(());
    }
    let ty = p["type"].as_str().unwrap_or_default().to_ascii_lowercase();
    match ty.as_str() {
        "none" => Ok(()),
        "fixed" | "exponential" => {
            let count_ok = p["count"].as_i64().is_some_and(|c| (1..=90).contains(&c));
            let interval_ok = p["interval"].as_str().and_then(parse_duration).is_some();
            if count_ok && interval_ok {
                Ok(())
            } else {
                Err(action_invalid(name, "a fixed or exponential retry policy needs 'count' (1 to 90) and 'interval' (an ISO 8601 duration)."))
            }
        }
        _ => Err(action_invalid(
            name,
            &format!(
                "the retry policy type '{}' is not valid; use none, fixed or exponential.",
                p["type"]
            ),
        )),
    }
}

/// ISO 8601 durations as Logic Apps writes them (`PT1H`, `P1D`, `PT30S`, `P1DT2H`);
/// years and months count as 365 and 30 days.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let rest = s.trim().strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    if date.is_empty() && time.is_none_or(str::is_empty) {
        return None;
    }
    let mut secs = 0f64;
    let mut parse_part = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let (_, mult) = units.iter().find(|(u, _)| *u == c)?;
                let n: f64 = num.parse().ok()?;
                secs += n * mult;
                num.clear();
            }
        }
        num.is_empty().then_some(())
    };
    parse_part(
        date,
        &[
            ('Y', 365.0 * 86400.0),
            ('M', 30.0 * 86400.0),
            ('W', 7.0 * 86400.0),
            ('D', 86400.0),
        ],
    )?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        parse_part(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    (secs.is_finite() && secs <= 1e10).then(|| std::time::Duration::from_secs_f64(secs))
}

fn collect_strings<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(m) => m.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

fn find_cycle(actions: &Map<String, Value>) -> Option<String> {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    fn visit<'a>(
        name: &'a str,
        actions: &'a Map<String, Value>,
        state: &mut HashMap<&'a str, u8>,
    ) -> Option<String> {
        match state.get(name) {
            Some(1) => return Some(name.to_string()),
            Some(2) => return None,
            _ => {}
        }
        state.insert(name, 1);
        if let Some(after) = actions.get(name).and_then(|a| a["runAfter"].as_object()) {
            for dep in after.keys() {
                if actions.contains_key(dep) {
                    if let Some(c) = visit(dep, actions, state) {
                        return Some(c);
                    }
                }
            }
        }
        state.insert(name, 2);
        None
    }
    let mut state = HashMap::new();
    actions
        .keys()
        .find_map(|name| visit(name, actions, &mut state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(actions: Value) -> Value {
        json!({"definition": {"triggers": {"manual": {"type": "Request", "kind": "Http"}}, "actions": actions}})
    }

    fn sys() -> Value {
        json!({"type": "SystemAssigned", "principalId": "p"})
    }

    fn err(actions: Value) -> (String, String) {
        let e = validate(&props(actions), &sys()).unwrap_err();
        (e.code, e.message)
    }

    #[test]
    fn accepts_the_supported_set() {
        let actions = json!({
            "Init": {"type": "InitializeVariable", "inputs": {"variables": [{"name": "n", "type": "integer", "value": 0}]}},
            "Compose": {"type": "Compose", "inputs": "@variables('n')", "runAfter": {"Init": ["Succeeded"]}},
            "Loop": {"type": "Foreach", "foreach": "@createArray(1, 2)", "runAfter": {"Compose": ["Succeeded"]},
                "runtimeConfiguration": {"concurrency": {"repetitions": 2}},
                "actions": {"Inc": {"type": "IncrementVariable", "inputs": {"name": "n", "value": "@items('Loop')"}}}},
            "Poll": {"type": "Until", "expression": "@equals(1, 1)", "limit": {"count": 3, "timeout": "PT1M"},
                "runAfter": {"Loop": ["Succeeded", "Failed"]},
                "actions": {"Pause": {"type": "Wait", "inputs": {"interval": {"count": 1, "unit": "Second"}}}}},
            "Check": {"type": "If", "expression": {"and": [{"equals": ["@body('Compose')", 0]}]},
                "actions": {"Call": {"type": "Http", "inputs": {"method": "GET", "uri": "https://management.azure.com/x",
                    "authentication": {"type": "ManagedServiceIdentity", "audience": "https://management.azure.com/"}}}},
                "else": {"actions": {"Stop": {"type": "Terminate", "inputs": {"runStatus": "Failed", "runError": {"code": "X"}}}}},
                "runAfter": {"Poll": ["TimedOut", "Skipped", "Succeeded"]}},
            "Group": {"type": "Scope", "actions": {}, "runAfter": {"Check": ["Succeeded"]}},
        });
        validate(&props(actions), &sys()).unwrap();
    }

    #[test]
    fn rejects_unsupported_and_invalid() {
        let (code, msg) = err(json!({"R": {"type": "Response", "inputs": {}}}));
        assert_eq!(code, "WorkflowNotSupportedByLocalAzure");
        assert!(msg.contains("'R'") && msg.contains("Response"), "{msg}");
        let (code, _) = err(json!({"R": {"type": "Bogus"}}));
        assert_eq!(code, "InvalidTemplate");
        let (code, msg) = err(json!({"C": {"type": "Compose", "inputs": "@foo()"}}));
        assert_eq!(code, "InvalidTemplate");
        assert!(
            msg.contains("The template function 'foo' is not defined or not valid"),
            "{msg}"
        );
        let (_, msg) = err(json!({"C": {"type": "Compose", "inputs": "@body('Nope')"}}));
        assert!(msg.contains("'Nope'"), "{msg}");
        let (_, msg) =
            err(json!({"C": {"type": "Compose", "inputs": 1, "runAfter": {"X": ["Succeeded"]}}}));
        assert!(msg.contains("non-existent action: 'X'"), "{msg}");
        let (_, msg) = err(
            json!({"C": {"type": "Compose", "inputs": 1, "runAfter": {"D": ["Done"]}}, "D": {"type": "Compose", "inputs": 1}}),
        );
        assert!(msg.contains("'Done'"), "{msg}");
        let (_, msg) = err(
            json!({"A": {"type": "Compose", "inputs": 1, "runAfter": {"B": ["Succeeded"]}}, "B": {"type": "Compose", "inputs": 1, "runAfter": {"A": ["Succeeded"]}}}),
        );
        assert!(msg.contains("cycle"), "{msg}");
        let (code, msg) = err(
            json!({"H": {"type": "Http", "inputs": {"method": "GET", "uri": "x", "authentication": {"type": "Basic"}}}}),
        );
        assert_eq!(code, "WorkflowNotSupportedByLocalAzure");
        assert!(msg.contains("Basic"), "{msg}");
        let (_, msg) = err(
            json!({"S": {"type": "Scope", "actions": {"I": {"type": "InitializeVariable", "inputs": {"variables": [{"name": "v", "type": "string"}]}}}}}),
        );
        assert!(msg.contains("top level"), "{msg}");
        let (_, msg) =
            err(json!({"S": {"type": "SetVariable", "inputs": {"name": "v", "value": 1}}}));
        assert!(msg.contains("not initialized"), "{msg}");
        let (_, msg) = err(json!({"C": {"type": "Compose", "inputs": "@items('L')"}}));
        assert!(msg.contains("foreach"), "{msg}");
        // iterationIndexes names an Until that holds it, not a Foreach or a sibling.
        let until = |inner: &str| {
            json!({
                "L": {"type": "Foreach", "foreach": "@createArray(1)", "actions": {
                    "U": {"type": "Until", "expression": "@true", "limit": {"count": 2}, "actions": {
                        "W": {"type": "Wait", "inputs": {"interval": {"count": inner, "unit": "Second"}}}}}}},
            })
        };
        let (_, msg) = err(until("@iterationIndexes('L')"));
        assert!(msg.contains("'until'"), "{msg}");
        let (_, msg) = err(json!({"C": {"type": "Compose", "inputs": "@iterationIndexes('C')"}}));
        assert!(msg.contains("'until'"), "{msg}");
        assert!(validate(&props(until("@iterationIndexes('u')")), &Value::Null).is_ok());
        let (_, msg) = err(until("@items('U')"));
        assert!(msg.contains("foreach"), "{msg}");
        let (code, _) =
            err(json!({"W": {"type": "Wait", "inputs": {"until": {"timestamp": "2025-01-01"}}}}));
        assert_eq!(code, "WorkflowNotSupportedByLocalAzure");
        let (_, msg) = err(
            json!({"U": {"type": "Until", "expression": "@true", "limit": {"timeout": "1 hour"}, "actions": {"C": {"type": "Compose", "inputs": 1}}}}),
        );
        assert!(msg.contains("ISO 8601"), "{msg}");
        let (_, msg) =
            err(json!({"I": {"type": "If", "expression": {"xor": [true, false]}, "actions": {}}}));
        assert!(msg.contains("xor"), "{msg}");
        let (_, msg) = err(
            json!({"A": {"type": "Compose", "inputs": 1}, "B": {"type": "Scope", "actions": {"a": {"type": "Compose", "inputs": 1}}}}),
        );
        assert!(msg.contains("more than once"), "{msg}");
        // Managed identity without one on the workflow.
        let e = validate(
            &props(json!({"H": {"type": "Http", "inputs": {"method": "GET", "uri": "x", "authentication": {"type": "ManagedServiceIdentity"}}}})),
            &Value::Null,
        )
        .unwrap_err();
        assert!(e.message.contains("system-assigned"), "{}", e.message);
    }

    #[test]
    fn triggers() {
        let with = |t: Value| {
            validate(
                &json!({"definition": {"triggers": {"t": t}, "actions": {}}}),
                &sys(),
            )
        };
        with(json!({"type": "Recurrence", "recurrence": {"frequency": "Minute", "interval": 1}}))
            .unwrap();
        let e = with(
            json!({"type": "Recurrence", "recurrence": {"frequency": "Minute", "interval": 0}}),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidTemplate");
        let e = with(json!({"type": "HttpWebhook"})).unwrap_err();
        assert_eq!(e.code, "WorkflowNotSupportedByLocalAzure");
        let e = with(json!({"type": "Request", "kind": "Button"})).unwrap_err();
        assert_eq!(e.code, "WorkflowNotSupportedByLocalAzure");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT1H").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("P1DT2M").unwrap().as_secs(), 86520);
        assert_eq!(parse_duration("PT0.5S").unwrap().as_millis(), 500);
        assert!(parse_duration("P").is_none());
        assert!(parse_duration("PT").is_none());
        assert!(parse_duration("PT5").is_none());
        assert!(parse_duration("1H").is_none());
        assert!(parse_duration("PT5X").is_none());
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            proptest::sample::select(vec![
                "Compose",
                "If",
                "Foreach",
                "Until",
                "Scope",
                "Http",
                "Terminate",
                "Wait",
                "InitializeVariable",
                "SetVariable",
                "Succeeded",
                "Failed",
                "@body('a')",
                "@items('a')",
                "@{x(",
                "a",
                "actions",
                "runAfter",
                "ManagedServiceIdentity",
                "Recurrence",
                "Request",
                "ApiConnection",
                "@parameters('$connections')['a']['connectionId']",
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    proptest::sample::select(vec![
                        "type",
                        "inputs",
                        "actions",
                        "runAfter",
                        "else",
                        "expression",
                        "foreach",
                        "limit",
                        "a",
                        "b",
                        "variables",
                        "name",
                        "value",
                        "interval",
                        "count",
                        "unit",
                        "recurrence",
                        "frequency",
                        "schedule",
                        "host",
                        "connection",
                        "path",
                        "method",
                        "uri",
                        "authentication",
                        "runtimeConfiguration",
                        "concurrency",
                        "repetitions",
                    ])
                    .prop_map(str::to_string),
                    inner,
                    0..5,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        #[test]
        fn never_panics(actions in arb_json(), triggers in arb_json(), identity in arb_json()) {
            let _ = validate(&json!({"definition": {"triggers": triggers.clone(), "actions": actions.clone()}}), &identity);
            let _ = validate(&json!({"definition": {"triggers": {"t": triggers}, "actions": {"a": actions}}}), &sys());
        }
    }
}
