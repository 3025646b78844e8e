//! A registry's data plane, served on its own listener (`loginServer` =
//! `127.0.0.1:PORT`): the ACR token flow (`/oauth2/exchange` of an ARM token for a
//! refresh token, `/oauth2/token` for a repository-scoped access token) and the
//! read side of the OCI distribution API (manifests, tags, config blobs, catalog).
//! Images only arrive through ACR Tasks builds, so pushes are refused.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use axum::Router;
use serde_json::{json, Value};

use crate::acr::{
    AccessGrant, Image, RefreshGrant, ACCESS_TOKEN_LIFETIME_S, REFRESH_TOKEN_LIFETIME_S,
};
use crate::state::Inner;
use crate::util::{self, json_response, set_header};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub struct RegistryCtx {
    inner: Arc<Inner>,
    /// Lowercased registry id.
    key: String,
    login_server: String,
}

pub fn router(inner: Arc<Inner>, key: String, login_server: String) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(Arc::new(RegistryCtx {
            inner,
            key,
            login_server,
        }))
}

/// The distribution API's error body: `{"errors":[{"code","message","detail"}]}`.
fn errors(status: StatusCode, code: &str, message: &str, detail: Value) -> Response<Body> {
    json_response(
        status,
        &json!({"errors": [{"code": code, "message": message, "detail": detail}]}),
    )
}

/// A 401 with the challenge that tells a client where to get a token, and for what.
fn challenge(ctx: &RegistryCtx, scope: Option<&str>, message: &str) -> Response<Body> {
    let detail = match scope {
        Some(s) => {
            let parts: Vec<&str> = s.splitn(3, ':').collect();
            json!([{"Type": parts.first(), "Name": parts.get(1), "Action": parts.get(2)}])
        }
        None => Value::Null,
    };
    let mut resp = errors(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message, detail);
    let mut value = format!(
        "Bearer realm=\"https://{ls}/oauth2/token\",service=\"{ls}\"",
        ls = ctx.login_server
    );
    if let Some(s) = scope {
        value.push_str(&format!(",scope=\"{s}\""));
    }
    set_header(&mut resp, "www-authenticate", &value);
    resp
}

async fn handle(
    State(ctx): State<Arc<RegistryCtx>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let path = uri.path().to_string();
    let query = util::parse_form(uri.query().unwrap_or_default().as_bytes());
    let mut resp = match (path.as_str(), &method) {
        ("/oauth2/exchange", &Method::POST) => exchange(&ctx, &body),
        ("/oauth2/token", &Method::POST) => token(&ctx, &body),
        ("/oauth2/exchange" | "/oauth2/token", _) => errors(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "The local Azure registry issues tokens only through POST /oauth2/exchange and POST /oauth2/token.",
            Value::Null,
        ),
        (p, m) if p == "/v2" || p.starts_with("/v2/") => {
            let mut r = distribution(&ctx, m, p, &query, &headers);
            set_header(&mut r, "docker-distribution-api-version", "registry/2.0");
            r
        }
        _ => errors(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource was not found.",
            Value::Null,
        ),
    };
    if method == Method::HEAD {
        // HEAD answers carry the headers of the GET, and no body.
        *resp.body_mut() = Body::empty();
    }
    resp
}

fn oauth_error(status: StatusCode, message: &str) -> Response<Body> {
    let code = if status == StatusCode::UNAUTHORIZED {
        "UNAUTHORIZED"
    } else {
        "BAD_REQUEST"
    };
    errors(status, code, message, Value::Null)
}

/// Checks `service` (must be this registry) on a token request: the refusal, if any.
fn service_refusal(ctx: &RegistryCtx, form: &[(String, String)]) -> Option<Response<Body>> {
    match util::form_get(form, "service") {
        None => Some(oauth_error(
            StatusCode::BAD_REQUEST,
            "The 'service' parameter is required.",
        )),
        Some(s) if s.eq_ignore_ascii_case(&ctx.login_server) => None,
        Some(s) => Some(oauth_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "The service '{s}' is not this registry ('{}').",
                ctx.login_server
            ),
        )),
    }
}

/// `POST /oauth2/exchange`: an ARM token (issued by this emulator, checked as ARM
/// checks it) for a registry refresh token.
fn exchange(ctx: &RegistryCtx, body: &[u8]) -> Response<Body> {
    let form = util::parse_form(body);
    match util::form_get(&form, "grant_type") {
        Some("access_token") => {}
        Some(g) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                &format!("The grant_type '{g}' is not supported here; use 'access_token'."),
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "The 'grant_type' parameter is required.",
            )
        }
    }
    if let Some(r) = service_refusal(ctx, &form) {
        return r;
    }
    let tenant = &ctx.inner.config.tenant_id;
    if let Some(t) = util::form_get(&form, "tenant") {
        if !t.eq_ignore_ascii_case(tenant) {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                &format!("The tenant '{t}' is not the registry's tenant."),
            );
        }
    }
    let Some(aad) = util::form_get(&form, "access_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "The 'access_token' parameter is required.",
        );
    };
    if let Err(e) = ctx
        .inner
        .signer
        .verify(aad.trim(), tenant, "https://management.azure.com")
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            &format!("The access token is not valid for this registry: {e:?}."),
        );
    }
    let refresh = util::new_secret();
    let mut world = ctx.inner.world();
    let Some(rt) = world.registries.get_mut(&ctx.key) else {
        return oauth_error(StatusCode::NOT_FOUND, "The registry does not exist.");
    };
    let now = util::now_epoch();
    rt.refresh_tokens.retain(|_, g| g.expires > now);
    rt.refresh_tokens.insert(
        refresh.clone(),
        RefreshGrant {
            expires: now + REFRESH_TOKEN_LIFETIME_S,
        },
    );
    json_response(StatusCode::OK, &json!({ "refresh_token": refresh }))
}

/// `type:name:actions`, e.g. `repository:app:pull,push` or `registry:catalog:*`.
fn parse_scope(s: &str) -> Option<(String, String, Vec<String>)> {
    let (ty, rest) = s.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if !matches!(ty, "repository" | "registry") || name.is_empty() || actions.is_empty() {
        return None;
    }
    Some((
        ty.to_string(),
        name.to_string(),
        actions.split(',').map(str::to_string).collect(),
    ))
}

/// `POST /oauth2/token`: a refresh token (from the exchange) for an access token
/// covering the requested scopes.
fn token(ctx: &RegistryCtx, body: &[u8]) -> Response<Body> {
    let form = util::parse_form(body);
    match util::form_get(&form, "grant_type") {
        Some("refresh_token") => {}
        Some(g) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                &format!("The grant_type '{g}' is not supported here; use 'refresh_token'."),
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "The 'grant_type' parameter is required.",
            )
        }
    }
    if let Some(r) = service_refusal(ctx, &form) {
        return r;
    }
    let Some(refresh) = util::form_get(&form, "refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "The 'refresh_token' parameter is required.",
        );
    };
    let mut scopes = Vec::new();
    for (k, v) in &form {
        if !k.eq_ignore_ascii_case("scope") {
            continue;
        }
        for s in v.split_whitespace() {
            match parse_scope(s) {
                Some(x) => scopes.push(x),
                None => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        &format!("The scope '{s}' is not valid: use repository:<name>:<actions> or registry:catalog:*."),
                    )
                }
            }
        }
    }
    let mut world = ctx.inner.world();
    let Some(rt) = world.registries.get_mut(&ctx.key) else {
        return oauth_error(StatusCode::NOT_FOUND, "The registry does not exist.");
    };
    let now = util::now_epoch();
    if rt
        .refresh_tokens
        .get(refresh)
        .is_none_or(|g| g.expires <= now)
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "The refresh token is not valid for this registry (or has expired).",
        );
    }
    let access = util::new_secret();
    rt.access_tokens.retain(|_, g| g.expires > now);
    rt.access_tokens.insert(
        access.clone(),
        AccessGrant {
            scopes,
            expires: now + ACCESS_TOKEN_LIFETIME_S,
        },
    );
    json_response(StatusCode::OK, &json!({ "access_token": access }))
}

/// Is the request authorised for `scope` (`None`: any valid credential)? A bearer
/// access token whose scopes cover it, or the admin user's Basic credentials.
fn authorized(ctx: &RegistryCtx, headers: &HeaderMap, scope: Option<(&str, &str, &str)>) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let world = ctx.inner.world();
    if let Some(token) = value.strip_prefix("Bearer ") {
        let Some(grant) = world
            .registries
            .get(&ctx.key)
            .and_then(|rt| rt.access_tokens.get(token.trim()))
        else {
            return false;
        };
        if grant.expires <= util::now_epoch() {
            return false;
        }
        return match scope {
            None => true,
            Some((ty, name, action)) => grant.scopes.iter().any(|(t, n, actions)| {
                t == ty && n == name && actions.iter().any(|a| a == action || a == "*")
            }),
        };
    }
    if let Some(b64) = value.strip_prefix("Basic ") {
        use base64::Engine;
        let Some(decoded) = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return false;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return false;
        };
        let Some(reg) = world.resources.get(&ctx.key) else {
            return false;
        };
        return reg["properties"]["adminUserEnabled"] == json!(true)
            && reg["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(user))
            && world
                .registry_passwords
                .get(&ctx.key)
                .is_some_and(|p| p.iter().any(|x| x == password));
    }
    false
}

fn find_image(ctx: &RegistryCtx, repo: &str, reference: &str) -> Option<Arc<Image>> {
    let world = ctx.inner.world();
    let tags = world.registries.get(&ctx.key)?.images.get(repo)?;
    if reference.starts_with("sha256:") {
        tags.values().find(|i| i.digest == reference).cloned()
    } else {
        tags.get(reference).cloned()
    }
}

fn bytes_response(content_type: &str, digest: &str, bytes: Vec<u8>) -> Response<Body> {
    let len = bytes.len();
    let mut resp = Response::new(Body::from(bytes));
    set_header(&mut resp, "content-type", content_type);
    set_header(&mut resp, "docker-content-digest", digest);
    set_header(&mut resp, "content-length", &len.to_string());
    resp
}

/// `/v2/...`
fn distribution(
    ctx: &RegistryCtx,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Response<Body> {
    let rest = path.trim_start_matches("/v2").trim_start_matches('/');
    if rest.is_empty() {
        if !authorized(ctx, headers, None) {
            return challenge(ctx, None, "authentication required, visit https://aka.ms/acr/authorization for more information.");
        }
        return json_response(StatusCode::OK, &json!({}));
    }
    if rest == "_catalog" {
        if !authorized(ctx, headers, Some(("registry", "catalog", "*"))) {
            return challenge(ctx, Some("registry:catalog:*"), "authentication required, visit https://aka.ms/acr/authorization for more information.");
        }
        let repos: Vec<String> = ctx
            .inner
            .world()
            .registries
            .get(&ctx.key)
            .map(|rt| rt.images.keys().cloned().collect())
            .unwrap_or_default();
        return json_response(StatusCode::OK, &json!({ "repositories": repos }));
    }
    let (repo, kind, reference) = if let Some(repo) = rest.strip_suffix("/tags/list") {
        (repo, "tags", "")
    } else if let Some((repo, r)) = rest.rsplit_once("/manifests/") {
        (repo, "manifests", r)
    } else if let Some((repo, r)) = rest.rsplit_once("/blobs/") {
        (repo, "blobs", r)
    } else {
        return errors(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            Value::Null,
        );
    };
    let read = matches!(*method, Method::GET | Method::HEAD);
    let action = if read { "pull" } else { "push" };
    let scope = format!("repository:{repo}:{action}");
    if !authorized(ctx, headers, Some(("repository", repo, action))) {
        return challenge(
            ctx,
            Some(&scope),
            "authentication required, visit https://aka.ms/acr/authorization for more information.",
        );
    }
    if !read {
        return errors(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "The local Azure registry is read-only: its images are built with ACR Tasks (scheduleRun).",
            Value::Null,
        );
    }
    match kind {
        "manifests" => match find_image(ctx, repo, reference) {
            Some(img) => bytes_response(OCI_MANIFEST, &img.digest, img.manifest.clone()),
            None => errors(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                &format!("manifest tagged by \"{reference}\" is not found"),
                json!({"Tag": reference}),
            ),
        },
        "blobs" => {
            let blob = {
                let world = ctx.inner.world();
                world.registries.get(&ctx.key).and_then(|rt| {
                    rt.images.get(repo).and_then(|tags| {
                        tags.values()
                            .find(|i| i.config_digest == reference)
                            .map(|i| i.config_blob.clone())
                    })
                })
            };
            match blob {
                Some(b) => bytes_response("application/octet-stream", reference, b),
                None => errors(
                    StatusCode::NOT_FOUND,
                    "BLOB_UNKNOWN",
                    "blob unknown to registry",
                    json!(reference),
                ),
            }
        }
        _ => {
            let tags: Option<Vec<String>> = ctx
                .inner
                .world()
                .registries
                .get(&ctx.key)
                .and_then(|rt| rt.images.get(repo).map(|t| t.keys().cloned().collect()));
            let Some(mut tags) = tags else {
                return errors(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    &format!("repository \"{repo}\" is not found"),
                    json!({"name": repo}),
                );
            };
            if let Some(last) = util::form_get(query, "last") {
                tags.retain(|t| t.as_str() > last);
            }
            let mut next = None;
            if let Some(n) = util::form_get(query, "n").and_then(|n| n.parse::<usize>().ok()) {
                if tags.len() > n {
                    tags.truncate(n);
                    next = tags.last().cloned();
                }
            }
            let mut resp = json_response(StatusCode::OK, &json!({"name": repo, "tags": tags}));
            if let (Some(last), Some(n)) = (next, util::form_get(query, "n")) {
                set_header(
                    &mut resp,
                    "link",
                    &format!("</v2/{repo}/tags/list?last={last}&n={n}>; rel=\"next\""),
                );
            }
            resp
        }
    }
}
