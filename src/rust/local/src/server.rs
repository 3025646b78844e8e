//! Listeners and the per-request wrapper that applies faults, stamps request ids and
//! writes the journal.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::faults::Fault;
use crate::journal::{body_for_journal, JournalEntry};
use crate::state::Inner;
use crate::util;

/// Accepts connections until `shutdown` flips; wraps them in TLS when `tls` is given.
/// `arm` marks the listener whose non-identity calls are ARM (faults, rate-limit headers).
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    inner: Arc<Inner>,
    mut shutdown: watch::Receiver<bool>,
    arm: bool,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let app = app.clone();
        let inner = inner.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await;
                    if let Ok(Ok(tls_stream)) = handshake {
                        serve_connection(tls_stream, app, inner, arm, shutdown).await;
                    }
                }
                None => serve_connection(stream, app, inner, arm, shutdown).await,
            }
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    app: Router,
    inner: Arc<Inner>,
    arm: bool,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        handle_request(inner.clone(), app.clone(), req, arm)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = shutdown.changed() => {}
    }
}

/// Identity calls (token, device code, managed identity) are never faulted, nor are
/// the blob-style ACR source uploads and log reads, nor workflow callback URLs
/// (services other than ARM).
fn is_not_arm_path(path: &str) -> bool {
    path.contains("/oauth2/")
        || path.starts_with("/msi/")
        || path.starts_with("/_acr/")
        || path.starts_with("/workflows/")
}

pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    let q = query?;
    util::form_get(&util::parse_form(q.as_bytes()), key).map(str::to_string)
}

async fn handle_request(
    inner: Arc<Inner>,
    app: Router,
    req: Request<Incoming>,
    arm: bool,
) -> Result<Response<Body>, std::io::Error> {
    let time = util::now_rfc3339();
    let (parts, body) = req.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let path = parts.uri.path().to_string();
    let api_version = query_param(parts.uri.query(), "api-version");
    let query = crate::journal::redact_query(parts.uri.query());
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let journal_body = body_for_journal(&path, content_type.as_deref(), &bytes);
    let correlation = parts
        .headers
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(util::new_uuid);
    let method = parts.method.to_string();
    let is_arm = arm && !is_not_arm_path(&path);

    let record = |status: u16| {
        let entry = JournalEntry {
            time: time.clone(),
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            api_version: api_version.clone(),
            status,
            body: journal_body.clone(),
        };
        inner
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    };

    let fault = if is_arm {
        let (fault, latency) = {
            let mut faults = inner.faults.lock().unwrap_or_else(|e| e.into_inner());
            (faults.decide(), faults.faults.latency_ms)
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        fault
    } else {
        Fault::None
    };

    let mut resp = match fault {
        Fault::Reset => {
            record(0);
            // Failing the service makes hyper close the socket without a response.
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected connection reset",
            ));
        }
        Fault::Throttle => {
            let mut r = crate::arm::ArmError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type. Please retry after 1 seconds.",
            )
            .into_response();
            util::set_header(&mut r, "retry-after", "1");
            r
        }
        Fault::ServerError(code) => {
            let (status, code, msg) = if code == 503 {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The service is temporarily unavailable. Please retry.",
                )
            } else {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    "Encountered internal server error. Please try again.",
                )
            };
            crate::arm::ArmError::new(status, code, msg).into_response()
        }
        Fault::None => {
            let req = Request::from_parts(parts, Body::from(bytes));
            match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    };
    let request_id = util::new_uuid();
    util::set_header(&mut resp, "x-ms-request-id", &request_id);
    util::set_header(&mut resp, "x-ms-correlation-request-id", &correlation);
    if is_arm {
        util::set_header(
            &mut resp,
            "x-ms-ratelimit-remaining-subscription-reads",
            "249",
        );
        util::set_header(
            &mut resp,
            "x-ms-ratelimit-remaining-subscription-writes",
            "199",
        );
    }
    record(resp.status().as_u16());
    Ok(resp)
}
