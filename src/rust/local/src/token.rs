//! Access tokens: JWT-shaped, HMAC-SHA256-signed with a key only this emulator knows.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde_json::{json, Value};

/// Lifetime of every token issued, as Entra ID reports it.
pub const TOKEN_LIFETIME_S: i64 = 3599;

/// Who a token is for.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: String,
    /// Object id of the service principal, user or managed identity.
    pub object_id: String,
    /// Application (client) id.
    pub app_id: String,
}

pub struct TokenSigner {
    key: hmac::Key,
}

/// Why a bearer token was refused (ARM maps these to its error codes).
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
    WrongAudience(String),
    WrongTenant(String),
}

/// `https://management.azure.com/.default` -> `https://management.azure.com`.
pub fn audience_of_scope(scope: &str) -> String {
    scope.strip_suffix("/.default").unwrap_or(scope).to_string()
}

/// Audiences compare equal with or without a trailing slash.
pub fn same_audience(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

impl TokenSigner {
    pub fn new() -> Self {
        let key = crate::util::random_bytes::<32>();
        TokenSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        }
    }

    /// Issues a token; returns it with its expiry (epoch seconds).
    pub fn issue(&self, who: &Principal, audience: &str, extra: &[(&str, Value)]) -> (String, i64) {
        let now = crate::util::now_epoch();
        let exp = now + TOKEN_LIFETIME_S;
        let mut claims = json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{}/", who.tenant_id),
            "tid": who.tenant_id,
            "oid": who.object_id,
            "appid": who.app_id,
            "sub": who.object_id,
            "iat": now,
            "nbf": now,
            "exp": exp,
        });
        for (k, v) in extra {
            claims[*k] = v.clone();
        }
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let sig = hmac::sign(&self.key, signing_input.as_bytes());
        (
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
            exp,
        )
    }

    /// Checks signature, expiry, tenant and audience; returns the claims.
    pub fn verify(&self, token: &str, tenant: &str, audience: &str) -> Result<Value, TokenError> {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err(TokenError::Malformed);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(parts[2])
            .map_err(|_| TokenError::Malformed)?;
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        hmac::verify(&self.key, signing_input.as_bytes(), &sig)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Value = URL_SAFE_NO_PAD
            .decode(parts[1])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let exp = claims["exp"].as_i64().ok_or(TokenError::Malformed)?;
        if exp <= crate::util::now_epoch() {
            return Err(TokenError::Expired);
        }
        let tid = claims["tid"].as_str().unwrap_or_default();
        if !tid.eq_ignore_ascii_case(tenant) {
            return Err(TokenError::WrongTenant(tid.to_string()));
        }
        let aud = claims["aud"].as_str().unwrap_or_default();
        if !same_audience(aud, audience) {
            return Err(TokenError::WrongAudience(aud.to_string()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Principal {
        Principal {
            tenant_id: "t".into(),
            object_id: "o".into(),
            app_id: "a".into(),
        }
    }

    #[test]
    fn round_trip_and_audience() {
        let s = TokenSigner::new();
        let (tok, _) = s.issue(&who(), "https://management.azure.com", &[]);
        assert!(s.verify(&tok, "t", "https://management.azure.com/").is_ok());
        assert!(matches!(
            s.verify(&tok, "t", "https://storage.azure.com"),
            Err(TokenError::WrongAudience(_))
        ));
        assert!(matches!(
            s.verify(&tok, "other", "https://management.azure.com"),
            Err(TokenError::WrongTenant(_))
        ));
        let other = TokenSigner::new();
        assert_eq!(
            other.verify(&tok, "t", "https://management.azure.com"),
            Err(TokenError::BadSignature)
        );
        assert_eq!(s.verify("abc", "t", "x"), Err(TokenError::Malformed));
    }
}
