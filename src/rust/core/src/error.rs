//! One error type for every Azure call. Its `kind` maps 1:1 onto the R condition
//! classes of DESIGN.md §5 (`serverless_error_<kind>`), so the bindings never guess.

use serde::Serialize;

/// What went wrong, in the words of the R condition classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A bad argument, found before any network call.
    Input,
    /// Credentials missing, expired or not allowed to do this.
    Auth,
    /// The service answered with an error.
    Azure,
    /// The service kept answering 429 beyond the retry budget.
    Throttled,
    /// An operation did not finish in time.
    Timeout,
    /// The user cancelled (Ctrl-C).
    Interrupted,
    /// Data failed an integrity check (sha256 mismatch, truncated download).
    Integrity,
    /// Local file system trouble.
    Io,
    /// A bug in serveRless: never shows panic text, asks for a report.
    Internal,
}

/// An error with everything R needs to raise a classed condition.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// HTTP status, for `Azure` errors.
    pub status: Option<u16>,
    /// The service's error code (e.g. `BlobNotFound`).
    pub code: Option<String>,
    /// `x-ms-request-id`, to quote in a support ticket.
    pub request_id: Option<String>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            status: None,
            code: None,
            request_id: None,
        }
    }

    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, message)
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }

    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }

    pub fn io(context: impl std::fmt::Display, err: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {err}"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn azure(status: u16, code: Option<String>, message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Azure,
            message: message.into(),
            status: Some(status),
            code,
            request_id: None,
        }
    }

    /// Prefix the message with what we were doing, keeping the details.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// True when the service said the thing is not there.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// True when a conditional write lost the race (the blob already exists).
    pub fn is_conflict(&self) -> bool {
        matches!(self.status, Some(409) | Some(412))
    }
}

impl From<azure_core::Error> for Error {
    fn from(err: azure_core::Error) -> Self {
        use azure_core::error::ErrorKind as AzKind;
        match err.kind() {
            AzKind::HttpResponse {
                status,
                error_code,
                raw_response,
            } => {
                let status = u16::from(*status);
                let request_id = raw_response.as_ref().and_then(|r| {
                    r.headers()
                        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                            "x-ms-request-id",
                        ))
                        .map(str::to_owned)
                });
                let kind = match status {
                    401 | 403 => ErrorKind::Auth,
                    429 => ErrorKind::Throttled,
                    _ => ErrorKind::Azure,
                };
                let code = error_code.clone();
                let message = match &code {
                    Some(code) => format!("Azure Storage answered {status} {code}"),
                    None => format!("Azure Storage answered {status}"),
                };
                Error {
                    kind,
                    message,
                    status: Some(status),
                    code,
                    request_id,
                }
            }
            AzKind::Connection => Error::new(
                ErrorKind::Azure,
                format!(
                    "could not connect to Azure Storage: {}",
                    redact(&err.to_string())
                ),
            ),
            AzKind::Io => Error::new(ErrorKind::Io, redact(&err.to_string())),
            AzKind::Credential => Error::auth(redact(&err.to_string())),
            _ => Error::new(ErrorKind::Azure, redact(&err.to_string())),
        }
    }
}

/// Remove SAS signatures and other secrets from text that may quote a URL.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = find_secret_param(rest) {
        let (head, tail) = rest.split_at(pos);
        let eq = tail.find('=').map(|i| i + 1).unwrap_or(tail.len());
        out.push_str(head);
        out.push_str(&tail[..eq]);
        out.push_str("REDACTED");
        let end = tail[eq..]
            .find(['&', ';', ' ', '"', '\'', ')'])
            .map(|i| eq + i)
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn find_secret_param(text: &str) -> Option<usize> {
    ["sig=", "AccountKey=", "client_secret=", "access_token="]
        .iter()
        .filter_map(|p| text.find(p))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_sas_signature_in_urls() {
        let text = "GET http://h/acct/c/b?sv=2022-11-02&sig=abc%2Bdef&sp=r failed";
        let red = redact(text);
        assert!(!red.contains("abc%2Bdef"), "{red}");
        assert!(red.contains("sig=REDACTED&sp=r failed"), "{red}");
    }

    #[test]
    fn redacts_account_key_in_connection_strings() {
        let red = redact("AccountName=a;AccountKey=Zm9vYmFy;BlobEndpoint=x");
        assert_eq!(red, "AccountName=a;AccountKey=REDACTED;BlobEndpoint=x");
    }
}
