//! The ARM front door: authentication, api-version, error shape and routing.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::{json, Value};

use crate::state::Inner;
use crate::token::TokenError;
use crate::util::{self, json_response};
use crate::{aci, acr, logic, resources};

/// An ARM error: `{"error":{"code","message","target"?}}`.
#[derive(Debug)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ArmError {
        ArmError {
            status,
            code: code.to_string(),
            message: message.into(),
            target: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ArmError {
        ArmError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A required property missing from the request body, named by its JSON path.
    pub fn missing(path: &str) -> ArmError {
        let (parent, field) = path.rsplit_once('.').unwrap_or(("", path));
        ArmError::bad_request(
            "InvalidRequestContent",
            format!(
                "The request content was invalid and could not be deserialized: 'Required property '{field}' not found in JSON. Path '{parent}'.'"
            ),
        )
        .with_target(path)
    }

    pub fn invalid(path: &str, message: impl Into<String>) -> ArmError {
        ArmError::bad_request("InvalidRequestContent", message).with_target(path)
    }

    pub fn with_target(mut self, target: &str) -> ArmError {
        self.target = Some(target.to_string());
        self
    }

    pub fn into_response(self) -> Response<Body> {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(t) = self.target {
            error["target"] = json!(t);
        }
        json_response(self.status, &json!({ "error": error }))
    }
}

pub type ArmResult = Result<Response<Body>, ArmError>;

/// A resource type the emulator knows, with the api-versions it accepts.
pub struct ResourceType {
    pub namespace: &'static str,
    pub type_name: &'static str,
    pub api_versions: &'static [&'static str],
}

impl ResourceType {
    /// `Microsoft.ContainerInstance/containerGroups`
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.type_name)
    }
    pub fn key(&self) -> String {
        self.full_name().to_ascii_lowercase()
    }
}

pub const RESOURCE_GROUP_API_VERSIONS: &[&str] = &[
    "2019-05-01",
    "2019-10-01",
    "2020-06-01",
    "2020-10-01",
    "2021-01-01",
    "2021-04-01",
    "2022-09-01",
    "2023-07-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-03-01",
    "2025-04-01",
];

pub const TYPES: &[ResourceType] = &[
    ResourceType {
        namespace: "Microsoft.ContainerInstance",
        type_name: "containerGroups",
        api_versions: &["2021-10-01", "2022-09-01", "2023-05-01"],
    },
    ResourceType {
        namespace: "Microsoft.ManagedIdentity",
        type_name: "userAssignedIdentities",
        api_versions: &["2018-11-30", "2023-01-31", "2024-11-30"],
    },
    ResourceType {
        namespace: "Microsoft.Authorization",
        type_name: "roleAssignments",
        api_versions: &["2020-04-01-preview", "2022-04-01"],
    },
    ResourceType {
        namespace: "Microsoft.ContainerRegistry",
        type_name: "registries",
        api_versions: &["2019-04-01", "2019-05-01", "2023-07-01", "2025-04-01"],
    },
    // Seeded only (Config::storage_accounts): readable, never created here.
    ResourceType {
        namespace: "Microsoft.Storage",
        type_name: "storageAccounts",
        api_versions: &["2023-01-01", "2023-05-01", "2024-01-01", "2025-01-01"],
    },
    ResourceType {
        namespace: "Microsoft.Logic",
        type_name: "workflows",
        api_versions: &["2016-06-01", "2019-05-01"],
    },
    ResourceType {
        namespace: "Microsoft.Web",
        type_name: "connections",
        api_versions: &["2016-06-01", "2018-07-01-preview"],
    },
];

pub fn resource_type(key: &str) -> Option<&'static ResourceType> {
    TYPES.iter().find(|t| t.key() == key)
}

/// One authenticated ARM request, with its path split into segments.
pub struct ArmRequest {
    pub inner: Arc<Inner>,
    pub method: Method,
    /// Path segments as sent (names keep their case).
    pub segs: Vec<String>,
    /// The same, lowercased, for matching.
    pub lower: Vec<String>,
    pub query: Vec<(String, String)>,
    pub api_version: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Object id of the caller (from the token), for `createdBy` fields.
    pub caller: String,
}

impl ArmRequest {
    pub fn query(&self, key: &str) -> Option<&str> {
        util::form_get(&self.query, key)
    }

    /// The JSON object body of a PUT/PATCH; ARM only speaks `application/json`.
    pub fn json_body(&self) -> Result<Value, ArmError> {
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/json") {
            return Err(ArmError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!("The content media type '{ct}' is not supported. Only 'application/json' is supported."),
            ));
        }
        let value: Value = serde_json::from_slice(&self.body).map_err(|e| {
            ArmError::bad_request(
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: '{e}'."),
            )
        })?;
        if !value.is_object() {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: the body must be a JSON object.",
            ));
        }
        Ok(value)
    }

    /// The JSON body, checked against Microsoft's model of `operation`'s body at this
    /// request's api-version when it is vendored (see `schema.rs`); a body that does not
    /// match gets ARM's 400 `InvalidRequestContent`.
    pub fn checked_body(&self, operation: &str) -> Result<Value, ArmError> {
        let body = self.json_body()?;
        crate::schema::check_request(operation, &self.api_version, &body)
            .map_err(|m| ArmError::bad_request("InvalidRequestContent", m.to_string()))?;
        Ok(body)
    }

    pub fn subscription_id(&self) -> &str {
        &self.inner.config.subscription_id
    }
}

fn auth_error(_inner: &Inner, code: &str, message: &str, _www_error: &str) -> ArmError {
    ArmError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// Checks the bearer token; returns the caller's object id.
fn authenticate(inner: &Inner, headers: &HeaderMap) -> Result<String, ArmError> {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(auth_error(
            inner,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            "invalid_token",
        ));
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return Err(auth_error(
            inner,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            "invalid_token",
        ));
    };
    match inner.signer.verify(
        token.trim(),
        &inner.config.tenant_id,
        "https://management.azure.com",
    ) {
        Ok(claims) => Ok(claims["oid"].as_str().unwrap_or_default().to_string()),
        Err(TokenError::Expired) => Err(auth_error(
            inner,
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
            "invalid_token",
        )),
        Err(TokenError::WrongAudience(aud)) => Err(auth_error(
            inner,
            "InvalidAuthenticationToken",
            &format!("The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."),
            "invalid_token",
        )),
        Err(TokenError::WrongTenant(tid)) => Err(auth_error(
            inner,
            "InvalidAuthenticationTokenTenant",
            &format!("The access token is from the wrong issuer 'https://sts.windows.net/{tid}/'. It must match the tenant 'https://sts.windows.net/{}/' associated with this subscription.", inner.config.tenant_id),
            "invalid_token",
        )),
        Err(TokenError::Malformed) | Err(TokenError::BadSignature) => Err(auth_error(
            inner,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
            "invalid_token",
        )),
    }
}

/// Fallback handler of the HTTPS listener: everything that is not an identity call.
pub async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let base = inner.https_base.clone();
    let tenant = inner.config.tenant_id.clone();
    let mut resp = match route(inner, method, uri, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if resp.status() == StatusCode::UNAUTHORIZED {
        let challenge = format!(
            "Bearer authorization_uri=\"{base}/{tenant}\", error=\"invalid_token\", error_description=\"The access token is missing or invalid.\""
        );
        util::set_header(&mut resp, "www-authenticate", &challenge);
    }
    resp
}

async fn route(
    inner: Arc<Inner>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ArmResult {
    let caller = authenticate(&inner, &headers)?;
    let query = util::parse_form(uri.query().unwrap_or_default().as_bytes());
    let Some(api_version) = util::form_get(&query, "api-version").map(str::to_string) else {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if !is_well_formed_api_version(&api_version) {
        return Err(invalid_api_version(&api_version, "this request", &[]));
    }
    let segs: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| s.to_string())
        })
        .collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    authorize(&inner, &caller, &method, &lower)?;
    let req = ArmRequest {
        inner,
        method,
        segs,
        lower,
        query,
        api_version,
        headers,
        body,
        caller,
    };
    dispatch(&req).await
}

/// Built-in roles the emulator understands, by role definition GUID.
const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const ACI_CONTRIBUTOR: &str = "5d977122-f97e-4b4d-a52f-6b43003ddb4d";
const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
const LOGIC_APP_CONTRIBUTOR: &str = "87a39d53-fc1b-424a-814c-f7e04687dc9e";

/// Does `role` allow a read or a write in provider namespace `ns` (lowercase)?
fn role_allows(role: &str, ns: &str, write: bool) -> bool {
    match role {
        OWNER => true,
        CONTRIBUTOR => !(write && ns == "microsoft.authorization"),
        READER => !write,
        ACI_CONTRIBUTOR => !write || ns == "microsoft.containerinstance",
        USER_ACCESS_ADMINISTRATOR => !write || ns == "microsoft.authorization",
        LOGIC_APP_CONTRIBUTOR => !write || ns == "microsoft.logic" || ns == "microsoft.web",
        _ => false,
    }
}

/// Role-based access for managed identities (workflows and container groups calling
/// ARM with their own tokens): they may do only what their role assignments at the
/// target's scope or above allow, as in Azure. The emulator's service principal and
/// device-code user stand for the subscription's owner and are not checked.
/// Long-running operation status URLs are readable by whoever started them.
fn authorize(
    inner: &Inner,
    caller: &str,
    method: &Method,
    lower: &[String],
) -> Result<(), ArmError> {
    if caller.eq_ignore_ascii_case(&inner.service_principal_id)
        || caller.eq_ignore_ascii_case(&inner.device_user_id)
    {
        return Ok(());
    }
    if lower.iter().any(|s| s == "operationresults")
        || (lower.iter().any(|s| s == "locations") && lower.iter().any(|s| s == "operations"))
    {
        return Ok(());
    }
    let write = !(method == Method::GET || method == Method::HEAD);
    let provider = lower.iter().rposition(|s| s == "providers");
    let (ns, action) = match provider.and_then(|i| lower.get(i + 1).map(|ns| (i, ns))) {
        Some((i, ns)) => {
            let kind = match *method {
                Method::GET | Method::HEAD => "read",
                Method::DELETE => "delete",
                Method::POST => "action",
                _ => "write",
            };
            let ty: Vec<&str> = lower[i + 1..]
                .iter()
                .enumerate()
                .filter(|(j, _)| *j == 0 || j % 2 == 1)
                .map(|(_, s)| s.as_str())
                .collect();
            (ns.clone(), format!("{}/{kind}", ty.join("/")))
        }
        None => (
            "microsoft.resources".to_string(),
            format!(
                "Microsoft.Resources/subscriptions/resourceGroups/{}",
                if write { "write" } else { "read" }
            ),
        ),
    };
    let scope = format!("/{}", lower.join("/"));
    let allowed = inner
        .world()
        .roles_at(caller, &scope)
        .iter()
        .any(|guid| role_allows(guid, &ns, write));
    if allowed {
        return Ok(());
    }
    Err(ArmError::new(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        format!("The client '{caller}' with object id '{caller}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."),
    ))
}

fn is_well_formed_api_version(v: &str) -> bool {
    let date = v.get(..10).unwrap_or("");
    let rest = v.get(10..).unwrap_or("");
    date.len() == 10
        && date.chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        })
        && (rest.is_empty() || rest == "-preview" || rest == "-beta" || rest == "-alpha")
}

pub fn invalid_api_version(v: &str, what: &str, supported: &[&str]) -> ArmError {
    let list = supported.join(", ");
    ArmError::bad_request(
        "InvalidApiVersionParameter",
        format!(
            "The api-version '{v}' is invalid for {what}. The supported versions are '{list}'."
        ),
    )
}

pub fn check_api_version(req: &ArmRequest, what: &str, supported: &[&str]) -> Result<(), ArmError> {
    if supported.contains(&req.api_version.as_str()) {
        Ok(())
    } else {
        Err(invalid_api_version(&req.api_version, what, supported))
    }
}

pub fn not_found_path() -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        "The requested resource was not found.",
    )
}

fn method_not_allowed(req: &ArmRequest) -> ArmError {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "The HTTP method '{}' is not supported for this resource.",
            req.method
        ),
    )
}

async fn dispatch(req: &ArmRequest) -> ArmResult {
    let l: Vec<&str> = req.lower.iter().map(String::as_str).collect();
    if l.first() != Some(&"subscriptions") || l.len() < 2 {
        return Err(not_found_path());
    }
    if !l[1].eq_ignore_ascii_case(req.subscription_id()) {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{}' could not be found.", req.segs[1]),
        ));
    }
    // Role assignments live under any scope.
    if let Some(i) = (2..l.len()).find(|&i| {
        l[i] == "providers"
            && l.get(i + 1) == Some(&"microsoft.authorization")
            && l.get(i + 2) == Some(&"roleassignments")
    }) {
        return resources::role_assignment(req, i).await;
    }
    let m = &req.method;
    match &l[2..] {
        [] if m == Method::GET => resources::get_subscription(req),
        ["resourcegroups"] if m == Method::GET => resources::list_resource_groups(req),
        ["resources"] if m == Method::GET => resources::list_generic(req, None),
        ["resourcegroups", _] => resources::resource_group(req).await,
        ["resourcegroups", _, "resources"] if m == Method::GET => {
            resources::list_generic(req, Some(&req.segs[3]))
        }
        ["providers", _] if m == Method::GET => resources::provider(req),
        ["providers", _, "register"] if m == Method::POST => resources::register_provider(req),
        ["providers", "microsoft.containerregistry", "checknameavailability"]
            if m == Method::POST =>
        {
            acr::check_name(req)
        }
        ["providers", "microsoft.containerinstance", "locations", _, "operations", id]
            if m == Method::GET =>
        {
            aci::async_operation(req, id)
        }
        ["providers", "microsoft.containerinstance", "locations", _, "usages"]
            if m == Method::GET =>
        {
            aci::usages(req, &req.segs[5])
        }
        ["operationresults", id] if m == Method::GET => resources::location_operation(req, id),
        ["resourcegroups", _, "providers", ns, ty, ..] => {
            let key = format!("{ns}/{ty}");
            typed_resource(req, &key).await
        }
        [..] => Err(not_found_path()),
    }
}

/// `.../resourceGroups/{rg}/providers/{ns}/{type}[/{name}[/...]]`
async fn typed_resource(req: &ArmRequest, key: &str) -> ArmResult {
    let ns = &req.lower[5];
    if req.inner.world().unregistered.contains(ns.as_str()) {
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "MissingSubscriptionRegistration",
            format!(
                "The subscription is not registered to use namespace '{}'. See https://aka.ms/rps-not-found for how to register subscriptions.",
                req.segs[5]
            ),
        ));
    }
    let Some(ty) = resource_type(key) else {
        if TYPES.iter().any(|t| t.namespace.eq_ignore_ascii_case(ns)) {
            return Err(ArmError::bad_request(
                "InvalidResourceType",
                format!(
                    "The resource type '{}' could not be found in the namespace '{}' for api version '{}'.",
                    req.segs[6], req.segs[5], req.api_version
                ),
            ));
        }
        return Err(ArmError::bad_request(
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location 'global' and API version '{}' for type '{}'.",
                req.api_version, req.segs[6]
            ),
        ));
    };
    let rest: Vec<&str> = req.lower[7..].iter().map(String::as_str).collect();
    // ACR Tasks (runs, quick builds) have api-versions of their own.
    let tasks = ty.type_name == "registries"
        && matches!(
            rest.get(1),
            Some(&("listbuildsourceuploadurl" | "schedulerun" | "runs"))
        );
    if tasks {
        check_api_version(
            req,
            "resource type 'Microsoft.ContainerRegistry/registries/runs'",
            acr::TASKS_API_VERSIONS,
        )?;
    } else {
        check_api_version(
            req,
            &format!("resource type '{}'", ty.full_name()),
            ty.api_versions,
        )?;
    }
    let rg = resources::existing_resource_group(req, &req.segs[3])?;
    let m = &req.method;
    match (ty.type_name, rest.as_slice()) {
        (_, []) if m == Method::GET => resources::list_of_type(req, &rg, ty),
        ("containerGroups", [_]) => aci::container_group(req, &rg, ty).await,
        ("containerGroups", [_, action]) if m == Method::POST => {
            aci::action(req, &rg, ty, action).await
        }
        ("containerGroups", [_, "containers", _, "logs"]) if m == Method::GET => {
            aci::logs(req, &rg, ty).await
        }
        ("workflows", [_]) => logic::workflow(req, &rg, ty),
        ("workflows", [_, ..]) => logic::workflow_sub(req, &rg, ty, &rest[1..]),
        ("registries", [_]) => acr::registry(req, &rg, ty).await,
        ("registries", [_, "listcredentials"]) if m == Method::POST => {
            resources::registry_credentials(req, &rg, ty)
        }
        ("registries", [_, "listbuildsourceuploadurl"]) if m == Method::POST => {
            acr::upload_url(req, &rg, ty)
        }
        ("registries", [_, "schedulerun"]) if m == Method::POST => {
            acr::schedule_run(req, &rg, ty)
        }
        ("registries", [_, "runs"]) if m == Method::GET => acr::runs(req, &rg, ty, None, None),
        ("registries", [_, "runs", _]) if m == Method::GET => {
            acr::runs(req, &rg, ty, Some(&req.segs[9]), None)
        }
        ("registries", [_, "runs", _, action @ ("listlogsasurl" | "cancel")])
            if m == Method::POST =>
        {
            acr::runs(req, &rg, ty, Some(&req.segs[9]), Some(action))
        }
        ("storageAccounts", [_]) if m == Method::GET => resources::simple_resource(req, &rg, ty),
        ("storageAccounts", [_]) => Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "LocalAzureStorageAccountsAreSeeded",
            "The local Azure only serves the storage accounts it was started with (Config::storage_accounts); it cannot create, change or delete them.",
        )),
        (_, [_]) => resources::simple_resource(req, &rg, ty),
        (_, [_, ..]) if m == Method::GET => Err(not_found_path()),
        _ => Err(method_not_allowed(req)),
    }
}
