//! Shared access signatures: signing service SAS tokens from an account key, and
//! checking a user's SAS before use (expired or read-only tokens fail before any call).
//!
//! The official `azure_storage_blob` crate has no Shared Key credential, so a key is
//! turned into a short-lived container SAS here and the crate is handed SAS URLs.

use crate::error::{Error, Result};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

/// SAS version we sign with: the pre-2025-07-05 string-to-sign layout (azure-rest.md §6).
pub const SAS_VERSION: &str = "2022-11-02";

/// Permission letters of a service SAS in the service's canonical order.
const PERMISSION_ORDER: &str = "racwdxyltmeopi";

/// Permission letters of an account SAS in their canonical order, as the official
/// SDKs write them (Python's `AccountSasPermissions`: `rwdlac`, where a service SAS
/// has `racwdl`).
const ACCOUNT_PERMISSION_ORDER: &str = "rwdxylacupfti";

/// The fields of a service SAS that go into the signature.
#[derive(Debug, Clone)]
pub struct ServiceSas<'a> {
    pub account: &'a str,
    pub container: &'a str,
    /// `None` signs for the whole container (`sr=c`), else for one blob (`sr=b`).
    pub blob: Option<&'a str>,
    pub permissions: &'a str,
    pub start: OffsetDateTime,
    pub expiry: OffsetDateTime,
}

impl ServiceSas<'_> {
    /// The exact string the service signs (kept separate so tests can pin the layout).
    pub fn string_to_sign(&self) -> String {
        let resource = match self.blob {
            Some(blob) => format!("/blob/{}/{}/{}", self.account, self.container, blob),
            None => format!("/blob/{}/{}", self.account, self.container),
        };
        let permissions = canonical_permissions(self.permissions);
        let fields = [
            permissions.as_str(),
            &sas_time(self.start),
            &sas_time(self.expiry),
            &resource,
            "", // signed identifier
            "", // signed IP
            "", // signed protocol
            SAS_VERSION,
            self.signed_resource(),
            "", // snapshot time
            "", // encryption scope
            "", // rscc
            "", // rscd
            "", // rsce
            "", // rscl
            "", // rsct
        ];
        fields.join("\n")
    }

    fn signed_resource(&self) -> &'static str {
        if self.blob.is_some() {
            "b"
        } else {
            "c"
        }
    }

    /// The query string (no leading `?`), signed with the base64 account key.
    pub fn sign(&self, account_key_b64: &str) -> Result<String> {
        let sig = hmac_b64(account_key_b64, &self.string_to_sign())?;
        Ok(format!(
            "sv={}&sr={}&sp={}&st={}&se={}&sig={}",
            SAS_VERSION,
            self.signed_resource(),
            canonical_permissions(self.permissions),
            encode(&sas_time(self.start)),
            encode(&sas_time(self.expiry)),
            encode(&sig)
        ))
    }
}

/// An account SAS for the Blob service (`ss=b`, `srt=sco`): what an account key is
/// turned into for our own calls, since creating a container needs account scope.
#[derive(Debug, Clone)]
pub struct AccountSas<'a> {
    pub account: &'a str,
    pub permissions: &'a str,
    pub start: OffsetDateTime,
    pub expiry: OffsetDateTime,
}

impl AccountSas<'_> {
    pub fn string_to_sign(&self) -> String {
        // From version 2020-12-06 the encryption scope field (empty) ends the string.
        format!(
            "{}\n{}\nb\nsco\n{}\n{}\n\n\n{}\n\n",
            self.account,
            account_permissions(self.permissions),
            sas_time(self.start),
            sas_time(self.expiry),
            SAS_VERSION
        )
    }

    pub fn sign(&self, account_key_b64: &str) -> Result<String> {
        let sig = hmac_b64(account_key_b64, &self.string_to_sign())?;
        Ok(format!(
            "sv={}&ss=b&srt=sco&sp={}&st={}&se={}&sig={}",
            SAS_VERSION,
            account_permissions(self.permissions),
            encode(&sas_time(self.start)),
            encode(&sas_time(self.expiry)),
            encode(&sig)
        ))
    }
}

/// An account SAS valid from five minutes ago (clock skew) for `hours`.
pub fn account_sas(account: &str, key: &str, permissions: &str, hours: i64) -> Result<String> {
    let now = OffsetDateTime::now_utc();
    AccountSas {
        account,
        permissions,
        start: now - Duration::minutes(5),
        expiry: now + Duration::hours(hours),
    }
    .sign(key)
}

fn hmac_b64(account_key_b64: &str, text: &str) -> Result<String> {
    let key = B64
        .decode(account_key_b64.trim())
        .map_err(|_| Error::input("the storage account key is not valid base64"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| Error::input("the storage account key is empty"))?;
    mac.update(text.as_bytes());
    Ok(B64.encode(mac.finalize().into_bytes()))
}

/// A container SAS valid from five minutes ago (clock skew) for `hours`.
pub fn container_sas(
    account: &str,
    key: &str,
    container: &str,
    permissions: &str,
    hours: i64,
) -> Result<String> {
    let now = OffsetDateTime::now_utc();
    ServiceSas {
        account,
        container,
        blob: None,
        permissions,
        start: now - Duration::minutes(5),
        expiry: now + Duration::hours(hours),
    }
    .sign(key)
}

fn canonical_permissions(perms: &str) -> String {
    PERMISSION_ORDER
        .chars()
        .filter(|c| perms.contains(*c))
        .collect()
}

fn account_permissions(perms: &str) -> String {
    ACCOUNT_PERMISSION_ORDER
        .chars()
        .filter(|c| perms.contains(*c))
        .collect()
}

fn sas_time(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What a user-supplied SAS token allows, read from its query parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SasInfo {
    pub permissions: String,
    pub expiry: Option<OffsetDateTime>,
}

/// Parse a SAS token (with or without a leading `?`); fails on anything that is not one.
pub fn parse_sas(token: &str) -> Result<SasInfo> {
    let token = token.trim().trim_start_matches('?');
    let mut permissions = None;
    let mut expiry = None;
    let mut has_sig = false;
    for (k, v) in url::form_urlencoded::parse(token.as_bytes()) {
        match k.as_ref() {
            "sp" => permissions = Some(v.into_owned()),
            "se" => {
                expiry = Some(OffsetDateTime::parse(&v, &Rfc3339).map_err(|_| {
                    Error::input(format!("the SAS token's expiry `se={v}` is not a UTC time"))
                })?)
            }
            "sig" => has_sig = true,
            _ => {}
        }
    }
    if !has_sig {
        return Err(Error::input(
            "the SAS token has no `sig=` signature; pass the query string from the portal or `az storage container generate-sas`",
        ));
    }
    Ok(SasInfo {
        permissions: permissions.unwrap_or_default(),
        expiry,
    })
}

/// What an operation needs from a SAS token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    List,
    Delete,
}

impl SasInfo {
    /// Fail before any call when the token is expired or lacks the needed permission.
    pub fn check(&self, access: Access) -> Result<()> {
        if let Some(expiry) = self.expiry {
            if expiry <= OffsetDateTime::now_utc() {
                return Err(Error::auth(format!(
                    "the SAS token expired at {}; create a new one",
                    sas_time(expiry)
                )));
            }
        }
        let (letters, what): (&[char], &str) = match access {
            Access::Read => (&['r'], "read (r)"),
            Access::Write => (&['w', 'c'], "write (w)"),
            Access::List => (&['l'], "list (l)"),
            Access::Delete => (&['d'], "delete (d)"),
        };
        if !letters.iter().any(|c| self.permissions.contains(*c)) {
            return Err(Error::auth(format!(
                "the SAS token allows only `sp={}` but this needs {what} permission; create a token with it",
                self.permissions
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> ServiceSas<'static> {
        ServiceSas {
            account: "devstoreaccount1",
            container: "serverless",
            blob: None,
            permissions: "wlrc",
            start: datetime!(2026-01-01 00:00:00 UTC),
            expiry: datetime!(2026-01-01 01:00:00 UTC),
        }
    }

    #[test]
    fn string_to_sign_follows_the_2020_12_06_layout() {
        let s = sample().string_to_sign();
        let lines: Vec<&str> = s.split('\n').collect();
        assert_eq!(lines.len(), 16);
        assert_eq!(lines[0], "rcwl", "permissions in canonical order");
        assert_eq!(lines[1], "2026-01-01T00:00:00Z");
        assert_eq!(lines[2], "2026-01-01T01:00:00Z");
        assert_eq!(lines[3], "/blob/devstoreaccount1/serverless");
        assert_eq!(lines[7], SAS_VERSION);
        assert_eq!(lines[8], "c");
    }

    #[test]
    fn signature_is_hmac_sha256_of_the_string_to_sign() {
        let key = B64.encode(b"not-a-real-key");
        let q = sample().sign(&key).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"not-a-real-key").unwrap();
        mac.update(sample().string_to_sign().as_bytes());
        let expected = encode(&B64.encode(mac.finalize().into_bytes()));
        assert!(q.ends_with(&format!("&sig={expected}")), "{q}");
        assert!(
            q.contains("sr=c&sp=rcwl&st=2026-01-01T00%3A00%3A00Z"),
            "{q}"
        );
    }

    #[test]
    fn account_sas_string_to_sign_layout() {
        let sas = AccountSas {
            account: "devstoreaccount1",
            permissions: "wrl",
            start: datetime!(2026-01-01 00:00:00 UTC),
            expiry: datetime!(2026-01-01 01:00:00 UTC),
        };
        assert_eq!(
            sas.string_to_sign(),
            format!("devstoreaccount1\nrwl\nb\nsco\n2026-01-01T00:00:00Z\n2026-01-01T01:00:00Z\n\n\n{SAS_VERSION}\n\n")
        );
        let q = sas.sign(&B64.encode(b"k")).unwrap();
        assert!(q.starts_with("sv=2022-11-02&ss=b&srt=sco&sp=rwl&"), "{q}");
    }

    #[test]
    fn parse_and_check_user_sas() {
        let info = parse_sas("?sv=2022-11-02&sp=r&se=2099-01-01T00:00:00Z&sig=x").unwrap();
        assert!(info.check(Access::Read).is_ok());
        let err = info.check(Access::Write).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::Auth);
        assert!(err.message.contains("sp=r"));

        let old = parse_sas("sp=rw&se=2001-01-01T00:00:00Z&sig=x").unwrap();
        let err = old.check(Access::Read).unwrap_err();
        assert!(err.message.contains("expired"), "{}", err.message);

        assert!(parse_sas("sp=rw").is_err(), "no signature");
    }
}
