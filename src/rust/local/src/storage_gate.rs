//! The storage gate: Azure Storage's checks of a bearer token, in front of Azurite.
//!
//! Azurite started with `--oauth basic` accepts any bearer token: one with a bad
//! signature, one of another tenant or for another audience, and one of a principal
//! without a data role. Azure Storage refuses all of them: a token it cannot validate
//! with 401 `InvalidAuthenticationInfo` (and a `WWW-Authenticate` challenge), a valid
//! token whose principal holds no "Storage Blob Data" role covering the account or
//! container with 403 `AuthorizationPermissionMismatch` (Microsoft's "Authorize access
//! to blobs using Microsoft Entra ID" and the Blob service error codes reference; the
//! messages and the `AuthenticationErrorDetail` wording are from memory of Azure's
//! answers). The gate terminates TLS with the emulator's certificate, checks bearer
//! tokens against the emulator's own signing key, tenant and role assignments, and
//! forwards everything else untouched: Shared Key and SAS requests are Azurite's to
//! check. Each client connection gets its own connection to Azurite, so bodies stream
//! through both ways and a broken client connection breaks the upstream one.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use crate::state::Inner;
use crate::token::{same_audience, TokenError};
use crate::util;

/// The audience Azure Storage accepts for every account (besides the account's own
/// blob endpoint URL).
const STORAGE_AUDIENCE: &str = "https://storage.azure.com";

/// Built-in data roles of Blob Storage, by role definition GUID: (GUID, may write).
const DATA_ROLES: [(&str, bool); 3] = [
    // Storage Blob Data Owner
    ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", true),
    // Storage Blob Data Contributor
    ("ba92f5b4-2d11-453d-a403-e96b0029c9fe", true),
    // Storage Blob Data Reader
    ("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", false),
];

/// Listens on a free port of 127.0.0.1 and forwards to Azurite at `upstream` (HTTPS,
/// trusted through `connector`) until the emulator shuts down. Returns the port.
pub async fn start(
    inner: Arc<Inner>,
    connector: TlsConnector,
    upstream: SocketAddr,
) -> std::io::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let mut shutdown = inner.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => return,
            };
            let Ok((client, _)) = accepted else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (inner, connector) = (inner.clone(), connector.clone());
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = serve(inner, connector, upstream, client) => {}
                    _ = shutdown.changed() => {}
                }
            });
        }
    });
    Ok(port)
}

type Upstream = hyper::client::conn::http1::SendRequest<Incoming>;

async fn serve(
    inner: Arc<Inner>,
    connector: TlsConnector,
    upstream: SocketAddr,
    client: TcpStream,
) {
    let _ = client.set_nodelay(true);
    let handshake = tokio::time::timeout(Duration::from_secs(10), inner.tls.accept(client)).await;
    let Ok(Ok(client)) = handshake else { return };
    // The connection to Azurite, opened at the first request and again when Azurite
    // has closed it (it closes idle ones after a few seconds; the client may keep its
    // own open longer). HTTP/1.1 serves one request at a time, so the lock never
    // waits long.
    let slot: Arc<tokio::sync::Mutex<Option<Upstream>>> = Arc::default();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (inner, connector, slot) = (inner.clone(), connector.clone(), slot.clone());
        async move {
            if let Some(refusal) = refusal(&inner, &req) {
                return Ok::<_, std::io::Error>(refusal.map(Either::Right));
            }
            let mut slot = slot.lock().await;
            let open = match slot.as_mut() {
                Some(sender) => !sender.is_closed() && sender.ready().await.is_ok(),
                None => false,
            };
            if !open {
                *slot = Some(connect(&connector, upstream).await?);
            }
            let sender = slot
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no connection to Azurite"))?;
            sender.ready().await.map_err(std::io::Error::other)?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(std::io::Error::other)?;
            Ok(resp.map(Either::Left))
        }
    });
    // Body frames arrive a TLS record at a time: flattening them into one buffer
    // (rather than vectored writes of many small pieces) means fewer, larger writes.
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .writev(false)
        .serve_connection(TokioIo::new(client), service)
        .await;
}

/// A new HTTP/1.1 connection to Azurite over TLS.
async fn connect(connector: &TlsConnector, upstream: SocketAddr) -> std::io::Result<Upstream> {
    let tcp = TcpStream::connect(upstream).await?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let tls = connector.connect(name, tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Azure Storage's answer to a request whose bearer token it would refuse; `None`
/// for a request it would let through (or that carries no bearer token).
fn refusal(inner: &Inner, req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    // Path-style URLs, as Azurite serves them: /{account}/{container}/{blob}.
    let account = req
        .uri()
        .path()
        .split('/')
        .find(|s| !s.is_empty())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let claims = match validate(inner, token.trim(), &account) {
        Ok(claims) => claims,
        Err(detail) => return Some(unauthenticated(inner, detail)),
    };
    let principal = claims["oid"].as_str().unwrap_or_default();
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    if data_role_allows(inner, principal, &account, write) {
        None
    } else {
        Some(forbidden())
    }
}

/// The token's claims, or why Azure Storage would not accept it. Its audience is
/// `https://storage.azure.com` or the account's own blob endpoint.
fn validate(inner: &Inner, token: &str, account: &str) -> Result<Value, &'static str> {
    let tenant = &inner.config.tenant_id;
    let own = format!("https://{account}.blob.core.windows.net");
    let result = match inner.signer.verify(token, tenant, STORAGE_AUDIENCE) {
        Err(TokenError::WrongAudience(aud)) if same_audience(&aud, &own) => {
            inner.signer.verify(token, tenant, &own)
        }
        other => other,
    };
    result.map_err(|e| match e {
        TokenError::Malformed => "The access token is not well formed.",
        TokenError::BadSignature => "Signature validation failed.",
        TokenError::Expired => "Lifetime validation failed. The token is expired.",
        TokenError::WrongTenant(_) => "Issuer validation failed. Issuer did not match.",
        TokenError::WrongAudience(_) => "Audience validation failed. Audience did not match.",
    })
}

/// Does `principal` hold a Blob data role (one that writes, for a write) at the
/// account's scope or above? (Azure also takes assignments on a container, which the
/// emulator's Resource Manager cannot create: blob containers are not among its
/// resources.) The emulator's own service principal and device-code user stand for
/// the subscription's owner with the data roles granted, as they stand for it on
/// Resource Manager.
fn data_role_allows(inner: &Inner, principal: &str, account: &str, write: bool) -> bool {
    if principal.eq_ignore_ascii_case(&inner.service_principal_id)
        || principal.eq_ignore_ascii_case(&inner.device_user_id)
    {
        return true;
    }
    let world = inner.world();
    let Some(account_id) = world
        .storage_account(account)
        .and_then(|v| v["id"].as_str())
        .map(str::to_ascii_lowercase)
    else {
        return false;
    };
    world.roles_at(principal, &account_id).iter().any(|role| {
        DATA_ROLES
            .iter()
            .any(|(guid, writes)| role == guid && (*writes || !write))
    })
}

fn storage_error(
    status: StatusCode,
    code: &str,
    message: &str,
    detail: Option<&str>,
) -> Response<Full<Bytes>> {
    let request_id = util::new_uuid();
    let detail = detail
        .map(|d| format!("<AuthenticationErrorDetail>{d}</AuthenticationErrorDetail>"))
        .unwrap_or_default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{message}\nRequestId:{request_id}\nTime:{}</Message>{detail}</Error>",
        util::now_rfc3339()
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("content-type", "application/xml");
    set("x-ms-error-code", code);
    set("x-ms-request-id", &request_id);
    resp
}

fn unauthenticated(inner: &Inner, detail: &str) -> Response<Full<Bytes>> {
    let mut resp = storage_error(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationInfo",
        "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
        Some(detail),
    );
    let challenge = format!(
        "Bearer authorization_uri={}/{}/oauth2/authorize resource_id={STORAGE_AUDIENCE}",
        inner.https_base, inner.config.tenant_id
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert("www-authenticate", v);
    }
    resp
}

fn forbidden() -> Response<Full<Bytes>> {
    storage_error(
        StatusCode::FORBIDDEN,
        "AuthorizationPermissionMismatch",
        "This request is not authorized to perform this operation using this permission.",
        None,
    )
}
