//! The generic resource store and the simple resource types: subscriptions, resource
//! groups, providers, generic listing, identities, registries, connections and role
//! assignments.

use axum::http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::arm::{
    check_api_version, not_found_path, resource_type, ArmError, ArmRequest, ArmResult,
    ResourceType, RESOURCE_GROUP_API_VERSIONS, TYPES,
};
use crate::state::{Inner, Operation, OperationKind};
use crate::util::{self, empty_response, json_response, set_header};

/// Identity of one typed resource in a resource group.
pub struct ResourceRef {
    /// Canonical id as Azure returns it.
    pub id: String,
    /// Lowercased id: the store key.
    pub key: String,
    pub name: String,
}

pub fn resource_ref(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ResourceRef {
    let name = req.segs[7].clone();
    let id = format!(
        "/subscriptions/{}/resourceGroups/{rg}/providers/{}/{name}",
        req.subscription_id(),
        ty.full_name()
    );
    ResourceRef {
        key: id.to_ascii_lowercase(),
        id,
        name,
    }
}

fn rg_key(inner: &Inner, rg: &str) -> String {
    format!(
        "/subscriptions/{}/resourcegroups/{}",
        inner.config.subscription_id, rg
    )
    .to_ascii_lowercase()
}

fn check_rg_api(req: &ArmRequest) -> Result<(), ArmError> {
    check_api_version(req, "resource groups", RESOURCE_GROUP_API_VERSIONS)
}

fn rg_not_found(name: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceGroupNotFound",
        format!("Resource group '{name}' could not be found."),
    )
}

pub fn resource_not_found(rg: &str, ty: &ResourceType, name: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            ty.full_name()
        ),
    )
}

/// The resource group's name as created, or 404 `ResourceGroupNotFound`.
pub fn existing_resource_group(req: &ArmRequest, name: &str) -> Result<String, ArmError> {
    let key = rg_key(&req.inner, name);
    req.inner
        .world()
        .resources
        .get(&key)
        .and_then(|v| v["name"].as_str().map(str::to_string))
        .ok_or_else(|| rg_not_found(name))
}

/// `location` is required; ARM normalises it ("West Europe" -> "westeurope").
pub fn required_location(body: &Value) -> Result<String, ArmError> {
    match body["location"].as_str() {
        Some(l) if !l.trim().is_empty() => {
            let l = l.to_ascii_lowercase().replace(' ', "");
            if AZURE_LOCATIONS.contains(&l.as_str()) {
                Ok(l)
            } else {
                Err(ArmError::bad_request(
                    "LocationNotAvailableForResourceType",
                    format!("The provided location '{l}' is not available. List the available regions with 'az account list-locations'."),
                )
                .with_target("location"))
            }
        }
        _ => Err(ArmError::bad_request(
            "LocationRequired",
            "The location property is required for this definition.",
        )
        .with_target("location")),
    }
}

/// Azure's public regions (ARM names), as `az account list-locations` lists them.
const AZURE_LOCATIONS: &[&str] = &[
    "australiacentral",
    "australiacentral2",
    "australiaeast",
    "australiasoutheast",
    "austriaeast",
    "belgiumcentral",
    "brazilsouth",
    "brazilsoutheast",
    "canadacentral",
    "canadaeast",
    "centralindia",
    "centralus",
    "chilecentral",
    "eastasia",
    "eastus",
    "eastus2",
    "francecentral",
    "francesouth",
    "germanynorth",
    "germanywestcentral",
    "indonesiacentral",
    "israelcentral",
    "italynorth",
    "japaneast",
    "japanwest",
    "koreacentral",
    "koreasouth",
    "malaysiawest",
    "mexicocentral",
    "newzealandnorth",
    "northcentralus",
    "northeurope",
    "norwayeast",
    "norwaywest",
    "polandcentral",
    "qatarcentral",
    "southafricanorth",
    "southafricawest",
    "southcentralus",
    "southeastasia",
    "southindia",
    "spaincentral",
    "swedencentral",
    "swedensouth",
    "switzerlandnorth",
    "switzerlandwest",
    "uaecentral",
    "uaenorth",
    "uksouth",
    "ukwest",
    "westcentralus",
    "westeurope",
    "westindia",
    "westus",
    "westus2",
    "westus3",
];

/// Tags must be an object of strings (absent means none).
pub fn tags_of(body: &Value) -> Result<Option<Value>, ArmError> {
    match &body["tags"] {
        Value::Null => Ok(None),
        Value::Object(m) if m.values().all(Value::is_string) => Ok(Some(body["tags"].clone())),
        _ => Err(ArmError::invalid(
            "tags",
            "The request content was invalid: 'tags' must be an object whose values are strings.",
        )),
    }
}

pub fn get_subscription(req: &ArmRequest) -> ArmResult {
    check_rg_api(req)?;
    let c = &req.inner.config;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": format!("/subscriptions/{}", c.subscription_id),
            "subscriptionId": c.subscription_id,
            "tenantId": c.tenant_id,
            "displayName": "Local Azure",
            "state": "Enabled",
        }),
    ))
}

pub fn valid_rg_name(name: &str) -> bool {
    (1..=90).contains(&name.chars().count())
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

fn is_resource_group(v: &Value) -> bool {
    v["type"] == "Microsoft.Resources/resourceGroups"
}

pub fn list_resource_groups(req: &ArmRequest) -> ArmResult {
    check_rg_api(req)?;
    let value: Vec<Value> = req
        .inner
        .world()
        .resources
        .values()
        .filter(|v| is_resource_group(v))
        .cloned()
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "value": value })))
}

pub async fn resource_group(req: &ArmRequest) -> ArmResult {
    check_rg_api(req)?;
    let name = req.segs[3].clone();
    let key = rg_key(&req.inner, &name);
    let existing = req.inner.world().resources.get(&key).cloned();
    match req.method {
        Method::GET => existing
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(|| rg_not_found(&name)),
        Method::HEAD => Ok(empty_response(if existing.is_some() {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::NOT_FOUND
        })),
        Method::PUT => {
            if !valid_rg_name(&name) {
                return Err(ArmError::bad_request(
                    "InvalidResourceGroupName",
                    format!("Resource group name '{name}' is invalid. It must be 1-90 characters of letters, digits, '-', '_', '.', '(' and ')', and must not end with '.'."),
                ));
            }
            // ResourceGroups_CreateOrUpdate's body is a ResourceGroup (see schema.rs).
            let body = req.checked_body("Microsoft.Resources/resourceGroups")?;
            let location = required_location(&body)?;
            let tags = tags_of(&body)?;
            let (status, name) = match &existing {
                Some(v) => {
                    let old = v["location"].as_str().unwrap_or_default();
                    if old != location {
                        return Err(ArmError::new(
                            StatusCode::CONFLICT,
                            "InvalidResourceGroupLocation",
                            format!("Invalid resource group location '{location}'. The Resource group already exists in location '{old}'."),
                        ));
                    }
                    (
                        StatusCode::OK,
                        v["name"].as_str().unwrap_or(&name).to_string(),
                    )
                }
                None => (StatusCode::CREATED, name),
            };
            let mut rg = json!({
                "id": format!("/subscriptions/{}/resourceGroups/{name}", req.subscription_id()),
                "name": name,
                "type": "Microsoft.Resources/resourceGroups",
                "location": location,
                "properties": {"provisioningState": "Succeeded"},
            });
            if let Some(t) = tags {
                rg["tags"] = t;
            }
            req.inner.world().resources.insert(key, rg.clone());
            Ok(json_response(status, &rg))
        }
        Method::PATCH => {
            let Some(mut rg) = existing else {
                return Err(rg_not_found(&name));
            };
            let body = req.json_body()?;
            if let Some(t) = tags_of(&body)? {
                rg["tags"] = t;
            }
            req.inner.world().resources.insert(key, rg.clone());
            Ok(json_response(StatusCode::OK, &rg))
        }
        Method::DELETE => {
            if existing.is_none() {
                return Err(rg_not_found(&name));
            }
            delete_resource_group(&req.inner, &key).await;
            let url = new_location_operation(req, 1, 200);
            let mut resp = empty_response(StatusCode::ACCEPTED);
            set_header(&mut resp, "location", &url);
            set_header(&mut resp, "retry-after", "1");
            Ok(resp)
        }
        _ => Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The HTTP method is not supported for resource groups.",
        )),
    }
}

/// Removes a resource group and everything in it, killing its container processes.
async fn delete_resource_group(inner: &std::sync::Arc<Inner>, key: &str) {
    let prefix = format!("{key}/");
    let groups: Vec<String> = {
        let mut world = inner.world();
        world
            .resources
            .retain(|k, _| k != key && !k.starts_with(&prefix));
        world.workflow_runs.retain(|k, _| !k.starts_with(&prefix));
        world
            .trigger_histories
            .retain(|k, _| !k.starts_with(&prefix));
        world
            .registry_passwords
            .retain(|k, _| !k.starts_with(&prefix));
        world
            .groups
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect()
    };
    for g in groups {
        crate::aci::remove_group_runtime(inner, &g).await;
    }
    crate::acr::remove_runtimes_under(inner, &prefix).await;
}

/// Registers a `Location`-polled operation that answers 202 `remaining` times.
pub fn new_location_operation(req: &ArmRequest, remaining: u32, final_status: u16) -> String {
    let id = util::new_uuid();
    req.inner.world().operations.insert(
        id.clone(),
        Operation {
            kind: OperationKind::Countdown {
                remaining,
                final_status,
            },
            polls: 0,
            start_time: util::now_rfc3339(),
        },
    );
    format!(
        "{}/subscriptions/{}/operationresults/{id}?api-version={}",
        req.inner.https_base,
        req.subscription_id(),
        req.api_version
    )
}

/// `GET /subscriptions/{s}/operationresults/{id}`: 202 until done, then the final status.
pub fn location_operation(req: &ArmRequest, id: &str) -> ArmResult {
    let mut world = req.inner.world();
    let Some(op) = world.operations.get_mut(id) else {
        return Err(not_found_path());
    };
    op.polls += 1;
    match &mut op.kind {
        OperationKind::Countdown {
            remaining,
            final_status,
        } => {
            if *remaining > 0 {
                *remaining -= 1;
                drop(world);
                let mut resp = empty_response(StatusCode::ACCEPTED);
                let url = format!(
                    "{}/subscriptions/{}/operationresults/{id}?api-version={}",
                    req.inner.https_base,
                    req.subscription_id(),
                    req.api_version
                );
                set_header(&mut resp, "location", &url);
                set_header(&mut resp, "retry-after", "1");
                Ok(resp)
            } else {
                let status = StatusCode::from_u16(*final_status).unwrap_or(StatusCode::OK);
                Ok(empty_response(status))
            }
        }
        OperationKind::AciProvision { .. } => Err(not_found_path()),
    }
}

pub fn provider(req: &ArmRequest) -> ArmResult {
    check_rg_api(req)?;
    let ns = &req.segs[3];
    let Some(t) = TYPES.iter().find(|t| t.namespace.eq_ignore_ascii_case(ns)) else {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceNamespace",
            format!("The resource namespace '{ns}' is invalid."),
        ));
    };
    let registered = !req
        .inner
        .world()
        .unregistered
        .contains(&ns.to_ascii_lowercase());
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": format!("/subscriptions/{}/providers/{}", req.subscription_id(), t.namespace),
            "namespace": t.namespace,
            "registrationState": if registered { "Registered" } else { "NotRegistered" },
        }),
    ))
}

pub fn register_provider(req: &ArmRequest) -> ArmResult {
    check_rg_api(req)?;
    let ns = &req.segs[3];
    let Some(t) = TYPES.iter().find(|t| t.namespace.eq_ignore_ascii_case(ns)) else {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceNamespace",
            format!("The resource namespace '{ns}' is invalid."),
        ));
    };
    req.inner
        .world()
        .unregistered
        .remove(&ns.to_ascii_lowercase());
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": format!("/subscriptions/{}/providers/{}", req.subscription_id(), t.namespace),
            "namespace": t.namespace,
            "registrationState": "Registered",
        }),
    ))
}

/// One clause of a `$filter`.
enum FilterClause {
    TagName(String),
    TagValue(String),
    ResourceType(String),
    Name(String),
    Location(String),
}

fn parse_filter(filter: &str) -> Result<Vec<FilterClause>, ArmError> {
    let invalid = || {
        ArmError::bad_request(
            "InvalidFilterInQueryString",
            format!("The $filter '{filter}' is not supported. Supported: tagName eq 'x' [and tagValue eq 'y'], resourceType eq 'T', name eq 'n', location eq 'l'."),
        )
    };
    let mut clauses = Vec::new();
    let lower = filter.to_ascii_lowercase();
    // Split on " and " outside quotes, using positions found in the lowercase copy.
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let bytes = lower.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            in_quote = !in_quote;
        } else if !in_quote && lower[i..].starts_with(" and ") {
            parts.push(&filter[start..i]);
            i += 5;
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&filter[start..]);
    for part in parts {
        let part = part.trim();
        let (field, value) = part.split_once(" eq ").ok_or_else(invalid)?;
        let value = value.trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .ok_or_else(invalid)?
            .replace("''", "'");
        clauses.push(match field.trim().to_ascii_lowercase().as_str() {
            "tagname" => FilterClause::TagName(value),
            "tagvalue" => FilterClause::TagValue(value),
            "resourcetype" => FilterClause::ResourceType(value),
            "name" => FilterClause::Name(value),
            "location" => FilterClause::Location(value),
            _ => return Err(invalid()),
        });
    }
    let has_tag_name = clauses
        .iter()
        .any(|c| matches!(c, FilterClause::TagName(_)));
    if clauses
        .iter()
        .any(|c| matches!(c, FilterClause::TagValue(_)))
        && !has_tag_name
    {
        return Err(invalid());
    }
    Ok(clauses)
}

fn matches_filter(v: &Value, clauses: &[FilterClause]) -> bool {
    let tag_name = clauses.iter().find_map(|c| match c {
        FilterClause::TagName(n) => Some(n.as_str()),
        _ => None,
    });
    let tag_value = v["tags"].as_object().and_then(|tags| {
        tag_name.and_then(|n| {
            tags.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str().unwrap_or_default().to_string())
        })
    });
    clauses.iter().all(|c| match c {
        FilterClause::TagName(_) => tag_value.is_some(),
        FilterClause::TagValue(x) => tag_value.as_deref() == Some(x.as_str()),
        FilterClause::ResourceType(t) => v["type"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(t)),
        FilterClause::Name(n) => v["name"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(n)),
        FilterClause::Location(l) => v["location"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(l)),
    })
}

/// `GET /subscriptions/{s}[/resourceGroups/{rg}]/resources`: every tracked resource
/// (not role assignments), in the short form ARM lists them.
pub fn list_generic(req: &ArmRequest, rg: Option<&str>) -> ArmResult {
    check_rg_api(req)?;
    let prefix = match rg {
        Some(name) => {
            let canonical = existing_resource_group(req, name)?;
            format!("{}/providers/", rg_key(&req.inner, &canonical))
        }
        None => format!(
            "/subscriptions/{}/resourcegroups/",
            req.subscription_id().to_ascii_lowercase()
        ),
    };
    let clauses = match req.query("$filter") {
        Some(f) if !f.trim().is_empty() => parse_filter(f)?,
        _ => Vec::new(),
    };
    let value: Vec<Value> = req
        .inner
        .world()
        .resources
        .iter()
        .filter(|(k, v)| {
            k.starts_with(&prefix)
                && k.contains("/providers/")
                && !k.contains("/providers/microsoft.authorization/")
                && !is_resource_group(v)
        })
        .map(|(_, v)| v)
        .filter(|v| matches_filter(v, &clauses))
        .map(|v| {
            let mut short = Map::new();
            for field in [
                "id", "name", "type", "location", "tags", "identity", "sku", "kind",
            ] {
                if !v[field].is_null() {
                    short.insert(field.to_string(), v[field].clone());
                }
            }
            Value::Object(short)
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "value": value })))
}

/// `GET .../resourceGroups/{rg}/providers/{ns}/{type}`
pub fn list_of_type(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ArmResult {
    let prefix = format!("{}/providers/{}/", rg_key(&req.inner, rg), ty.key());
    let keys: Vec<String> = req
        .inner
        .world()
        .resources
        .keys()
        .filter(|k| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
        .cloned()
        .collect();
    let value: Vec<Value> = keys.iter().filter_map(|k| render(&req.inner, k)).collect();
    Ok(json_response(StatusCode::OK, &json!({ "value": value })))
}

/// A stored resource as a GET returns it (container groups get their live state).
pub fn render(inner: &Inner, key: &str) -> Option<Value> {
    let world = inner.world();
    let stored = world.resources.get(key)?.clone();
    match world.groups.get(key) {
        Some(runtime) => Some(crate::aci::with_instance_view(stored, runtime)),
        None => Some(stored),
    }
}

/// Creates the configured storage accounts (and their resource groups) at start.
pub fn seed_storage_accounts(inner: &Inner) -> Result<(), String> {
    for sa in &inner.config.storage_accounts {
        seed_storage_account(inner, sa)?;
    }
    Ok(())
}

/// Creates one storage account (and its resource group when missing).
pub fn seed_storage_account(inner: &Inner, sa: &crate::SeededStorageAccount) -> Result<(), String> {
    let sub = &inner.config.subscription_id;
    {
        if !valid_rg_name(&sa.resource_group) {
            return Err(format!(
                "seeded storage account {}: invalid resource group name '{}'",
                sa.name, sa.resource_group
            ));
        }
        // Azure's rule: 3-24 lowercase letters and digits.
        if !(3..=24).contains(&sa.name.len())
            || !sa
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(format!(
                "invalid seeded storage account name '{}': it must be 3-24 lowercase letters and digits",
                sa.name
            ));
        }
        let location = sa.location.to_ascii_lowercase().replace(' ', "");
        if !AZURE_LOCATIONS.contains(&location.as_str()) {
            return Err(format!(
                "seeded storage account {}: unknown location '{}'",
                sa.name, sa.location
            ));
        }
        let mut world = inner.world();
        let key = rg_key(inner, &sa.resource_group);
        let rg_name = match world.resources.get(&key) {
            Some(rg) => rg["name"]
                .as_str()
                .unwrap_or(&sa.resource_group)
                .to_string(),
            None => {
                let rg = json!({
                    "id": format!("/subscriptions/{sub}/resourceGroups/{}", sa.resource_group),
                    "name": sa.resource_group,
                    "type": "Microsoft.Resources/resourceGroups",
                    "location": location,
                    "properties": {"provisioningState": "Succeeded"},
                });
                world.resources.insert(key.clone(), rg);
                sa.resource_group.clone()
            }
        };
        let id = format!(
            "/subscriptions/{sub}/resourceGroups/{rg_name}/providers/Microsoft.Storage/storageAccounts/{}",
            sa.name
        );
        if world.resources.contains_key(&id.to_ascii_lowercase()) {
            return Err(format!("storage account {} is seeded twice", sa.name));
        }
        let account = json!({
            "id": id,
            "name": sa.name,
            "type": "Microsoft.Storage/storageAccounts",
            "location": location,
            "kind": "StorageV2",
            "sku": {"name": "Standard_LRS", "tier": "Standard"},
            "properties": {
                "provisioningState": "Succeeded",
                "creationTime": util::now_rfc3339(),
                "primaryLocation": location,
                "statusOfPrimary": "available",
                "accessTier": "Hot",
                "supportsHttpsTrafficOnly": true,
                "minimumTlsVersion": "TLS1_2",
                "allowBlobPublicAccess": false,
                "primaryEndpoints": {"blob": sa.blob_endpoint},
            },
        });
        world.resources.insert(id.to_ascii_lowercase(), account);
    }
    Ok(())
}

/// Registers a principal (an identity's object id) that role assignments may name.
pub fn add_principal(inner: &Inner, object_id: &str) {
    inner.world().principals.insert(object_id.to_string());
}

/// Resolves a `SystemAssigned`/`UserAssigned` identity block: fills ids Azure generates.
/// User-assigned identities must exist.
pub fn resolve_identity(
    inner: &Inner,
    identity: &Value,
    existing: Option<&Value>,
) -> Result<Value, ArmError> {
    if identity.is_null() {
        return Ok(Value::Null);
    }
    let ty = identity["type"].as_str().unwrap_or_default();
    let lower = ty.to_ascii_lowercase().replace(' ', "");
    let system = lower.split(',').any(|t| t == "systemassigned");
    let user = lower.split(',').any(|t| t == "userassigned");
    if !system && !user && lower != "none" {
        return Err(ArmError::invalid(
            "identity.type",
            format!("The identity type '{ty}' is not supported. Use 'SystemAssigned', 'UserAssigned', 'SystemAssigned, UserAssigned' or 'None'."),
        ));
    }
    let mut out = json!({ "type": ty });
    if system {
        let principal = existing
            .and_then(|e| e["principalId"].as_str())
            .map(str::to_string)
            .unwrap_or_else(util::new_uuid);
        add_principal(inner, &principal);
        out["principalId"] = json!(principal);
        out["tenantId"] = json!(inner.config.tenant_id);
    }
    if user {
        let Some(ids) = identity["userAssignedIdentities"]
            .as_object()
            .filter(|m| !m.is_empty())
        else {
            return Err(ArmError::invalid(
                "identity.userAssignedIdentities",
                "The identity type 'UserAssigned' needs at least one entry in 'userAssignedIdentities'.",
            ));
        };
        let mut resolved = Map::new();
        for id in ids.keys() {
            let stored = inner
                .world()
                .resources
                .get(&id.to_ascii_lowercase())
                .cloned();
            let Some(uami) =
                stored.filter(|v| v["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities")
            else {
                return Err(ArmError::bad_request(
                    "FailedIdentityOperation",
                    format!("Identity operation for resource failed: the user assigned identity '{id}' was not found."),
                ));
            };
            resolved.insert(
                uami["id"].as_str().unwrap_or(id).to_string(),
                json!({
                    "principalId": uami["properties"]["principalId"],
                    "clientId": uami["properties"]["clientId"],
                }),
            );
        }
        out["userAssignedIdentities"] = Value::Object(resolved);
    }
    Ok(out)
}

/// Remove a resource, releasing the lock before the caller touches the world again
/// (a guard in a `match` scrutinee would live through the whole match).
fn remove_resource(req: &ArmRequest, key: &str) -> Option<Value> {
    req.inner.world().resources.remove(key)
}

/// PATCH of a stored resource: ARM lets only its tags change this way.
pub fn patch_tags(
    req: &ArmRequest,
    existing: Option<Value>,
    r: &ResourceRef,
    rg: &str,
    ty: &ResourceType,
) -> ArmResult {
    let Some(mut v) = existing else {
        return Err(resource_not_found(rg, ty, &r.name));
    };
    let body = req.json_body()?;
    if let Some(t) = tags_of(&body)? {
        v["tags"] = t;
    }
    req.inner.world().resources.insert(r.key.clone(), v.clone());
    Ok(json_response(StatusCode::OK, &v))
}

/// PUT/GET/PATCH/DELETE of identities, registries and connections.
pub fn simple_resource(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ArmResult {
    let r = resource_ref(req, rg, ty);
    let existing = req.inner.world().resources.get(&r.key).cloned();
    match req.method {
        Method::GET => existing
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(|| resource_not_found(rg, ty, &r.name)),
        Method::DELETE => Ok(match remove_resource(req, &r.key) {
            Some(_) => {
                req.inner.world().registry_passwords.remove(&r.key);
                empty_response(StatusCode::OK)
            }
            None => empty_response(StatusCode::NO_CONTENT),
        }),
        Method::PATCH => patch_tags(req, existing, &r, rg, ty),
        Method::PUT => {
            let body = req.checked_body(&ty.full_name())?;
            let location = required_location(&body)?;
            let tags = tags_of(&body)?;
            let mut v = match ty.type_name {
                "userAssignedIdentities" => build_identity(req, &r, &existing)?,
                "registries" => build_registry(&req.inner, &r, &body, &existing)?,
                "connections" => build_connection(req, &body, &location)?,
                _ => return Err(not_found_path()),
            };
            let obj = v.as_object_mut().ok_or_else(not_found_path)?;
            let mut out = Map::new();
            out.insert("id".into(), json!(r.id));
            out.insert("name".into(), json!(r.name));
            out.insert("type".into(), json!(ty.full_name()));
            out.insert("location".into(), json!(location));
            if let Some(t) = tags {
                out.insert("tags".into(), t);
            }
            out.append(obj);
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
            "The HTTP method is not supported for this resource.",
        )),
    }
}

fn build_identity(
    req: &ArmRequest,
    r: &ResourceRef,
    existing: &Option<Value>,
) -> Result<Value, ArmError> {
    let valid = (3..=128).contains(&r.name.len())
        && r.name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && r.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(ArmError::bad_request(
            "InvalidResourceName",
            format!("The resource name '{}' is invalid. It must be 3-128 letters, digits, '-' or '_', starting with a letter or digit.", r.name),
        ));
    }
    // Re-PUT keeps the identity: Azure never regenerates its ids.
    let props = match existing {
        Some(e) => e["properties"].clone(),
        None => json!({
            "tenantId": req.inner.config.tenant_id,
            "principalId": util::new_uuid(),
            "clientId": util::new_uuid(),
        }),
    };
    if let Some(p) = props["principalId"].as_str() {
        add_principal(&req.inner, p);
    }
    Ok(json!({ "properties": props }))
}

/// 5-50 letters and digits.
pub fn valid_registry_name(name: &str) -> bool {
    (5..=50).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Checks a registry PUT (name and SKU); returns the SKU name.
pub fn validate_registry(name: &str, body: &Value) -> Result<String, ArmError> {
    if !valid_registry_name(name) {
        return Err(ArmError::bad_request(
            "InvalidRegistryName",
            format!("Registry name '{name}' is invalid: it must be 5-50 alphanumeric characters."),
        ));
    }
    match body["sku"]["name"].as_str() {
        Some(s) if ["basic", "standard", "premium"].contains(&s.to_ascii_lowercase().as_str()) => {
            Ok(s.to_string())
        }
        Some(s) => Err(ArmError::invalid(
            "sku.name",
            format!("The SKU '{s}' is not valid. Use Basic, Standard or Premium."),
        )),
        None => Err(ArmError::missing("sku.name")),
    }
}

fn build_registry(
    inner: &Inner,
    r: &ResourceRef,
    body: &Value,
    existing: &Option<Value>,
) -> Result<Value, ArmError> {
    let sku = validate_registry(&r.name, body)?;
    let admin = body["properties"]["adminUserEnabled"]
        .as_bool()
        .unwrap_or(false);
    let created = existing
        .as_ref()
        .and_then(|e| e["properties"]["creationDate"].as_str().map(str::to_string))
        .unwrap_or_else(util::now_rfc3339);
    // The registry's own data-plane listener (started by the PUT handler).
    let login_server = crate::acr::login_server(inner, &r.key)
        .unwrap_or_else(|| format!("{}.azurecr.io", r.name.to_ascii_lowercase()));
    Ok(json!({
        "sku": {"name": sku, "tier": sku},
        "properties": {
            "loginServer": login_server,
            "creationDate": created,
            "provisioningState": "Succeeded",
            "adminUserEnabled": admin,
            "publicNetworkAccess": "Enabled",
            "anonymousPullEnabled": false,
        },
    }))
}

/// Connectors with several authentication types: managed identity is one named
/// parameter set. Those with one take `parameterValueType: Alternative`. ("Authenticate
/// with managed identities in Azure Logic Apps", ARM template section, and the
/// connectors' references.)
const MULTI_AUTH_CONNECTORS: &[&str] = &["azureblob"];
const SINGLE_AUTH_CONNECTORS: &[&str] = &["aci"];

/// A `Microsoft.Web/connections` body, held to the shapes Microsoft documents for a
/// consumption Logic App: `kind` V1; the managed API of the connection's location;
/// managed identity as the connector's documented parameter set (2018-07-01-preview
/// is the version that has `parameterValueSet`), or azureblob's account key.
fn build_connection(req: &ArmRequest, body: &Value, location: &str) -> Result<Value, ArmError> {
    let mut props = body["properties"].clone();
    if !props.is_object() {
        return Err(ArmError::missing("properties"));
    }
    if let Some(kind) = body.get("kind") {
        if kind.as_str() != Some("V1") {
            return Err(ArmError::invalid(
                "kind",
                format!("The connection kind '{}' is not valid for a consumption Logic App: use 'V1' ('V2' connections are for Standard logic apps).", crate::workflow::expr::to_text(kind)),
            ));
        }
    }
    let api_id = props["api"]["id"].as_str().unwrap_or_default().to_string();
    if api_id.is_empty() {
        return Err(ArmError::missing("properties.api.id"));
    }
    let api_segs: Vec<&str> = api_id.trim_matches('/').split('/').collect();
    let norm = |l: &str| l.replace(' ', "").to_ascii_lowercase();
    let connector = match api_segs.as_slice() {
        ["subscriptions", sub, "providers", p, "locations", loc, m, name]
            if p.eq_ignore_ascii_case("Microsoft.Web")
                && m.eq_ignore_ascii_case("managedApis")
                && sub.eq_ignore_ascii_case(&req.inner.config.subscription_id)
                && norm(loc) == norm(location) =>
        {
            name.to_ascii_lowercase()
        }
        _ => {
            return Err(ArmError::invalid(
                "properties.api.id",
                format!("The managed API '{api_id}' is not valid: use /subscriptions/{{subscription}}/providers/Microsoft.Web/locations/{{the connection's location}}/managedApis/{{api}}."),
            ))
        }
    };
    let value_set = props.get("parameterValueSet").cloned();
    if value_set.is_some() && req.api_version != "2018-07-01-preview" {
        return Err(ArmError::invalid(
            "properties.parameterValueSet",
            format!("The property 'parameterValueSet' is not supported in api-version '{}': use 2018-07-01-preview.", req.api_version),
        ));
    }
    let alternative = props["parameterValueType"].as_str() == Some("Alternative");
    if MULTI_AUTH_CONNECTORS.contains(&connector.as_str()) {
        let managed_identity = value_set.as_ref().is_some_and(|v| {
            v["name"] == "managedIdentityAuth"
                && v["values"].as_object().is_some_and(|m| m.is_empty())
        });
        let params = &props["parameterValues"];
        let account_key = params["accountName"].is_string() && params["accessKey"].is_string();
        if !managed_identity && !account_key {
            return Err(ArmError::bad_request(
                "InvalidConnectionParameters",
                format!("The connector '{connector}' has several authentication types: for managed identity use \"parameterValueSet\": {{\"name\": \"managedIdentityAuth\", \"values\": {{}}}} (api-version 2018-07-01-preview); for an account key, parameterValues accountName and accessKey."),
            ));
        }
    } else if SINGLE_AUTH_CONNECTORS.contains(&connector.as_str()) {
        if value_set.is_some() || !alternative {
            return Err(ArmError::bad_request(
                "InvalidConnectionParameters",
                format!("The connector '{connector}' has one authentication type: for managed identity use \"parameterValueType\": \"Alternative\", without parameterValueSet."),
            ));
        }
    } else {
        return Err(ArmError::bad_request(
            "InvalidConnectionParameters",
            format!(
                "The local Azure does not emulate the connector '{connector}' (only {}).",
                [MULTI_AUTH_CONNECTORS, SINGLE_AUTH_CONNECTORS]
                    .concat()
                    .join(", ")
            ),
        ));
    }
    // Secret parameter values (client secrets, keys) are write-only.
    if let Some(params) = props
        .get_mut("parameterValues")
        .and_then(Value::as_object_mut)
    {
        params.retain(|k, _| {
            let k = k.to_ascii_lowercase();
            !(k.contains("secret")
                || k.contains("key")
                || k.contains("password")
                || k.contains("token"))
        });
    }
    props["statuses"] = json!([{"status": "Connected"}]);
    props["overallStatus"] = json!("Connected");
    Ok(json!({ "kind": "V1", "properties": props }))
}

/// `POST .../registries/{r}/listCredentials`
pub fn registry_credentials(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ArmResult {
    let r = resource_ref(req, rg, ty);
    let Some(reg) = req.inner.world().resources.get(&r.key).cloned() else {
        return Err(resource_not_found(rg, ty, &r.name));
    };
    if reg["properties"]["adminUserEnabled"] != json!(true) {
        return Err(ArmError::bad_request(
            "UnAuthorizedForCredentialOperations",
            format!("Cannot perform credential operations for {} as admin user is disabled. Kindly enable admin user as per docs: https://docs.microsoft.com/en-us/azure/container-registry/container-registry-authentication#admin-account", r.id),
        ));
    }
    let passwords = req
        .inner
        .world()
        .registry_passwords
        .entry(r.key.clone())
        .or_insert_with(|| [util::new_secret(), util::new_secret()])
        .clone();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "username": r.name,
            "passwords": [
                {"name": "password", "value": passwords[0]},
                {"name": "password2", "value": passwords[1]},
            ],
        }),
    ))
}

fn guid_tail(id: &str) -> String {
    id.rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// `{scope}/providers/Microsoft.Authorization/roleAssignments[/{guid}]`; `i` is the
/// index of the `providers` segment.
pub async fn role_assignment(req: &ArmRequest, i: usize) -> ArmResult {
    let ty = resource_type("microsoft.authorization/roleassignments").ok_or_else(not_found_path)?;
    check_api_version(
        req,
        "resource type 'Microsoft.Authorization/roleAssignments'",
        ty.api_versions,
    )?;
    let scope = format!("/{}", req.segs[..i].join("/"));
    let scope_key = scope.to_ascii_lowercase();
    // The scope must exist: its resource group, and the resource when it is one.
    if i >= 4 && req.lower[2] == "resourcegroups" {
        existing_resource_group(req, &req.segs[3])?;
        if i > 4 && !req.inner.world().resources.contains_key(&scope_key) {
            return Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!("The scope '{scope}' does not exist."),
            ));
        }
    }
    let prefix = format!("{scope_key}/providers/microsoft.authorization/roleassignments/");
    let Some(name) = req.segs.get(i + 3).cloned() else {
        if req.method != Method::GET {
            return Err(not_found_path());
        }
        let principal = req.query("$filter").and_then(|f| {
            f.split_once("principalId eq '")
                .and_then(|(_, rest)| rest.split_once('\''))
                .map(|(p, _)| p.to_ascii_lowercase())
        });
        let value: Vec<Value> = req
            .inner
            .world()
            .resources
            .iter()
            .filter(|(k, _)| k.contains("/providers/microsoft.authorization/roleassignments/"))
            .filter(|(_, v)| {
                let s = v["properties"]["scope"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                scope_key.starts_with(&s) || s.starts_with(&scope_key)
            })
            .filter(|(_, v)| match &principal {
                Some(p) => v["properties"]["principalId"]
                    .as_str()
                    .unwrap_or_default()
                    .eq_ignore_ascii_case(p),
                None => true,
            })
            .map(|(_, v)| v.clone())
            .collect();
        return Ok(json_response(StatusCode::OK, &json!({ "value": value })));
    };
    if req.segs.len() > i + 4 {
        return Err(not_found_path());
    }
    let key = format!("{prefix}{}", name.to_ascii_lowercase());
    let existing = req.inner.world().resources.get(&key).cloned();
    let not_found = || {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "RoleAssignmentNotFound",
            format!("The role assignment '{name}' is not found."),
        )
    };
    match req.method {
        Method::GET => existing
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(not_found),
        Method::DELETE => Ok(match remove_resource(req, &key) {
            Some(v) => json_response(StatusCode::OK, &v),
            None => empty_response(StatusCode::NO_CONTENT),
        }),
        Method::PUT => {
            if !util::is_guid(&name) {
                return Err(ArmError::bad_request(
                    "InvalidRoleAssignmentId",
                    format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."),
                ));
            }
            // RoleAssignments_Create's body is RoleAssignmentCreateParameters.
            let body = req.checked_body("Microsoft.Authorization/roleAssignments")?;
            let props = &body["properties"];
            let Some(role) = props["roleDefinitionId"].as_str() else {
                return Err(ArmError::missing("properties.roleDefinitionId"));
            };
            let Some(principal) = props["principalId"].as_str() else {
                return Err(ArmError::missing("properties.principalId"));
            };
            let lower_role = role.to_ascii_lowercase();
            if !lower_role.contains("/providers/microsoft.authorization/roledefinitions/")
                || !util::is_guid(&guid_tail(role))
            {
                return Err(ArmError::bad_request(
                    "InvalidRoleDefinitionId",
                    format!("The role definition ID '{role}' is not valid."),
                ));
            }
            if !req
                .inner
                .world()
                .principals
                .contains(&principal.to_ascii_lowercase())
                && !req.inner.world().principals.contains(principal)
            {
                return Err(ArmError::bad_request(
                    "PrincipalNotFound",
                    format!("Principal {principal} does not exist in the directory {}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.", req.inner.config.tenant_id),
                ));
            }
            let same = |v: &Value| {
                guid_tail(
                    v["properties"]["roleDefinitionId"]
                        .as_str()
                        .unwrap_or_default(),
                ) == guid_tail(role)
                    && v["properties"]["principalId"]
                        .as_str()
                        .unwrap_or_default()
                        .eq_ignore_ascii_case(principal)
            };
            if let Some(v) = &existing {
                return if same(v) {
                    Ok(json_response(StatusCode::OK, v))
                } else {
                    Err(ArmError::new(
                        StatusCode::CONFLICT,
                        "RoleAssignmentUpdateNotPermitted",
                        "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                    ))
                };
            }
            let duplicate = req
                .inner
                .world()
                .resources
                .iter()
                .any(|(k, v)| k.starts_with(&prefix) && same(v));
            if duplicate {
                return Err(ArmError::new(
                    StatusCode::CONFLICT,
                    "RoleAssignmentExists",
                    "The role assignment already exists.",
                ));
            }
            let now = util::now_rfc3339();
            let v = json!({
                "id": format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
                "type": "Microsoft.Authorization/roleAssignments",
                "name": name,
                "properties": {
                    "roleDefinitionId": role,
                    "principalId": principal,
                    "principalType": props["principalType"].as_str().unwrap_or("ServicePrincipal"),
                    "scope": scope,
                    "condition": null,
                    "conditionVersion": null,
                    "createdOn": now,
                    "updatedOn": now,
                    "createdBy": req.caller,
                    "updatedBy": req.caller,
                    "delegatedManagedIdentityResourceId": null,
                    "description": props["description"].clone(),
                },
            });
            req.inner.world().resources.insert(key, v.clone());
            Ok(json_response(StatusCode::CREATED, &v))
        }
        _ => Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The HTTP method is not supported for role assignments.",
        )),
    }
}
