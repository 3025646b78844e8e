//! Entra ID (token, device code, refresh token) and the managed-identity endpoint.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value};

use crate::state::{DeviceCode, Inner, MsiIdentity};
use crate::token::{audience_of_scope, Principal, TOKEN_LIFETIME_S};
use crate::util::{self, form_get, json_response};

/// The Entra ID error body (`error`, `error_description` starting with `AADSTSnnn:` ...).
fn aad_error(status: StatusCode, error: &str, code: u32, message: &str) -> Response<Body> {
    let trace_id = util::new_uuid();
    let correlation_id = util::new_uuid();
    let timestamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default();
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

fn missing_parameter(name: &str) -> Response<Body> {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

fn tenant_not_found(tenant: &str) -> Response<Body> {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

/// OpenID scopes carry no resource.
fn is_oidc_scope(s: &str) -> bool {
    matches!(s, "openid" | "profile" | "offline_access" | "email")
}

/// `https://management.azure.com/user_impersonation` -> `https://management.azure.com`.
fn resource_of_scope(scope: &str) -> String {
    if scope.ends_with("/.default") {
        return audience_of_scope(scope);
    }
    if let Some(rest) = scope.strip_prefix("https://") {
        if let Some((host, _)) = rest.split_once('/') {
            return format!("https://{host}");
        }
    }
    scope.to_string()
}

fn token_reply(inner: &Inner, who: &Principal, resource: &str, extra: &[(&str, Value)]) -> Value {
    let (token, _) = inner.signer.issue(who, resource, extra);
    json!({
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_S,
        "ext_expires_in": TOKEN_LIFETIME_S,
        "access_token": token,
    })
}

/// `POST /{tenant}/oauth2/v2.0/token`
pub async fn token(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response<Body> {
    let form = util::parse_form(&body);
    let Some(grant_type) = form_get(&form, "grant_type") else {
        return missing_parameter("grant_type");
    };
    let own_tenant = tenant.eq_ignore_ascii_case(&inner.config.tenant_id);
    let multi_tenant = matches!(
        tenant.to_ascii_lowercase().as_str(),
        "organizations" | "common"
    );
    match grant_type {
        "client_credentials" if own_tenant => client_credentials(&inner, &form),
        "urn:ietf:params:oauth:grant-type:device_code" if own_tenant || multi_tenant => {
            device_code_grant(&inner, &form)
        }
        "refresh_token" if own_tenant || multi_tenant => refresh_token_grant(&inner, &form),
        "client_credentials" | "urn:ietf:params:oauth:grant-type:device_code" | "refresh_token" => {
            tenant_not_found(&tenant)
        }
        other => aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
    }
}

fn client_credentials(inner: &Inner, form: &[(String, String)]) -> Response<Body> {
    let Some(client_id) = form_get(form, "client_id") else {
        return missing_parameter("client_id");
    };
    let Some(secret) = form_get(form, "client_secret") else {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    // The message names the app, never the secret that was sent.
    if client_id != inner.config.client_id || secret != inner.config.client_secret {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    if inner.secret_expired.load(Ordering::SeqCst) {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            &format!("The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app."),
        );
    }
    let Some(scope) = form_get(form, "scope") else {
        return missing_parameter("scope");
    };
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.len() != 1 || !scopes[0].ends_with("/.default") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        );
    }
    let who = Principal {
        tenant_id: inner.config.tenant_id.clone(),
        object_id: inner.service_principal_id.clone(),
        app_id: client_id.to_string(),
    };
    let reply = token_reply(
        inner,
        &who,
        &audience_of_scope(scopes[0]),
        &[("idtyp", json!("app"))],
    );
    json_response(StatusCode::OK, &reply)
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`
pub async fn device_code(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response<Body> {
    let known = tenant.eq_ignore_ascii_case(&inner.config.tenant_id)
        || matches!(
            tenant.to_ascii_lowercase().as_str(),
            "organizations" | "common"
        );
    if !known {
        return tenant_not_found(&tenant);
    }
    let form = util::parse_form(&body);
    let Some(client_id) = form_get(&form, "client_id") else {
        return missing_parameter("client_id");
    };
    let Some(scope) = form_get(&form, "scope") else {
        return missing_parameter("scope");
    };
    let device_code = util::new_secret();
    let user_code: String = util::random_bytes::<9>()
        .iter()
        .map(|b| (b'A' + b % 26) as char)
        .collect();
    let verification_uri = format!("{}/devicelogin", inner.https_base);
    inner.world().device_codes.insert(
        device_code.clone(),
        DeviceCode {
            client_id: client_id.to_string(),
            scope: scope.to_string(),
            pending_polls: inner.config.device_code_pending_polls,
            expires_at: util::now_epoch() + 900,
        },
    );
    json_response(
        StatusCode::OK,
        &json!({
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": verification_uri,
            "expires_in": 900,
            "interval": 1,
            "message": format!(
                "To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate. (Local Azure: the sign-in completes by itself.)"
            ),
        }),
    )
}

fn user_principal(inner: &Inner, client_id: &str) -> (Principal, Vec<(&'static str, Value)>) {
    let who = Principal {
        tenant_id: inner.config.tenant_id.clone(),
        object_id: inner.device_user_id.clone(),
        app_id: client_id.to_string(),
    };
    let extra = vec![
        ("upn", json!("user@local.azure")),
        ("name", json!("Local Azure User")),
        ("scp", json!("user_impersonation")),
        ("idtyp", json!("user")),
    ];
    (who, extra)
}

/// Token reply for a user, with a refresh token when `offline_access` was asked for.
fn user_token_reply(
    inner: &Inner,
    who: Principal,
    extra: Vec<(&'static str, Value)>,
    scope: &str,
) -> Response<Body> {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let resource = scopes
        .iter()
        .find(|s| !is_oidc_scope(s))
        .map(|s| resource_of_scope(s))
        .unwrap_or_else(|| "https://graph.microsoft.com".to_string());
    let mut reply = token_reply(inner, &who, &resource, &extra);
    reply["scope"] = json!(scope);
    if scopes.contains(&"offline_access") {
        let refresh = util::new_secret();
        inner
            .world()
            .refresh_tokens
            .insert(refresh.clone(), (who, extra));
        reply["refresh_token"] = json!(refresh);
    }
    json_response(StatusCode::OK, &reply)
}

fn device_code_grant(inner: &Inner, form: &[(String, String)]) -> Response<Body> {
    let Some(code) = form_get(form, "device_code") else {
        return missing_parameter("device_code");
    };
    let client_id = form_get(form, "client_id").unwrap_or_default();
    let bad_code = || {
        aad_error(
            StatusCode::BAD_REQUEST,
            "bad_verification_code",
            70000,
            "The provided value for the input parameter 'device_code' is not valid.",
        )
    };
    let scope = {
        let mut world = inner.world();
        let Some(entry) = world.device_codes.get_mut(code) else {
            return bad_code();
        };
        if entry.client_id != client_id {
            return bad_code();
        }
        if entry.expires_at <= util::now_epoch() {
            world.device_codes.remove(code);
            return aad_error(
                StatusCode::BAD_REQUEST,
                "expired_token",
                70020,
                "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
            );
        }
        if entry.pending_polls > 0 {
            entry.pending_polls -= 1;
            return aad_error(
                StatusCode::BAD_REQUEST,
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            );
        }
        // A device code is redeemed once.
        world
            .device_codes
            .remove(code)
            .map(|e| e.scope)
            .unwrap_or_default()
    };
    let (who, extra) = user_principal(inner, client_id);
    user_token_reply(inner, who, extra, &scope)
}

fn refresh_token_grant(inner: &Inner, form: &[(String, String)]) -> Response<Body> {
    let Some(refresh) = form_get(form, "refresh_token") else {
        return missing_parameter("refresh_token");
    };
    let Some(scope) = form_get(form, "scope") else {
        return missing_parameter("scope");
    };
    let found = inner.world().refresh_tokens.get(refresh).cloned();
    match found {
        Some((who, extra)) => user_token_reply(inner, who, extra, scope),
        None => aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        ),
    }
}

fn msi_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// `GET /imds/{secret}/metadata/identity/oauth2/token?api-version=...&resource=...`
/// with `Metadata: true`: the instance metadata service's token endpoint, the way
/// Azure Container Instances serves it to a container with a managed identity
/// (`http://169.254.169.254/metadata/identity/oauth2/token`; Microsoft's "How to use
/// managed identities with Azure Container Instances" and "How to use managed
/// identities for Azure resources on a VM to acquire an access token", which also
/// give the errors below). Locally the host is `SERVERLESS_IMDS_ENDPOINT`, whose last
/// segment says which container group asks (on Azure, the network does).
pub async fn instance_metadata_token(
    State(inner): State<Arc<Inner>>,
    Path(secret): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response<Body> {
    let query = util::parse_form(query.unwrap_or_default().as_bytes());
    if !headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return msi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    // IMDS refuses requests that came through a proxy.
    if headers.contains_key("x-forwarded-for") {
        return msi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Request is not allowed through a proxy: X-Forwarded-For header present",
        );
    }
    let Some(identities) = inner.world().msi_secrets.get(&secret).cloned() else {
        // Only a container with an identity reaches an identity endpoint.
        return msi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        );
    };
    if form_get(&query, "api-version").is_none() {
        return msi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = form_get(&query, "resource") else {
        return msi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    // IMDS's selectors of a user-assigned identity (App Service's `mi_res_id` and
    // `principal_id` are not IMDS parameters: like any unknown one, ignored).
    let client_id = form_get(&query, "client_id");
    let object_id = form_get(&query, "object_id");
    let res_id = form_get(&query, "msi_res_id");
    let chosen: Vec<&MsiIdentity> = identities
        .iter()
        .filter(|id| match (client_id, object_id, res_id) {
            (Some(c), _, _) => id.principal.app_id.eq_ignore_ascii_case(c),
            (_, Some(o), _) => id.principal.object_id.eq_ignore_ascii_case(o),
            (_, _, Some(r)) => id
                .resource_id
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(r)),
            // No selector: the system-assigned identity, else the only user-assigned one.
            _ => id.resource_id.is_none() || identities.len() == 1,
        })
        .collect();
    let Some(identity) = chosen.first() else {
        return msi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "No managed identity matches the request (or several do: name one with client_id).",
        );
    };
    let mut extra = vec![("idtyp", json!("app"))];
    if let Some(r) = &identity.resource_id {
        extra.push(("xms_mirid", json!(r)));
    }
    let (token, exp) =
        inner
            .signer
            .issue(&identity.principal, &audience_of_scope(resource), &extra);
    let now = util::now_epoch();
    let lifetime = (exp - now).max(0);
    // IMDS answers every number as a string.
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "client_id": identity.principal.app_id,
            "expires_in": lifetime.to_string(),
            "expires_on": exp.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}
