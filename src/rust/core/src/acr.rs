//! Azure Container Registry: the registry resource, image lookups on its data plane,
//! and image builds with ACR Tasks (no local Docker).
//!
//! Builds follow the quick-build flow: `listBuildSourceUploadUrl` -> PUT the context
//! tar.gz to that URL -> `scheduleRun` (DockerBuildRequest) -> poll the run while
//! streaming its log. Lookups use the registry's token exchange with the caller's
//! Entra ID token, so no registry password is ever used.

use crate::arm::{api, ArmClient};
use crate::auth;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Run states after which a run never changes.
const TERMINAL: [&str; 5] = ["Succeeded", "Failed", "Canceled", "Error", "Timeout"];

/// Lines of the build log carried by the error of a failed build.
const LOG_TAIL_LINES: usize = 25;

#[derive(Debug, Clone, Serialize)]
pub struct Registry {
    pub id: String,
    pub name: String,
    pub login_server: String,
}

/// Registry names: 5 to 50 letters and digits (Azure's rule; they are global).
pub fn check_registry_name(name: &str) -> Result<()> {
    if (5..=50).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(Error::input(format!(
            "registry name `{name}` is invalid: use 5 to 50 letters and digits (no dashes)"
        )))
    }
}

/// A registry name for a target that names none: registry names are global, so it is
/// derived from the subscription and resource group (stable, and unlikely to clash).
pub fn default_registry_name(subscription: &str, resource_group: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(
        format!(
            "{}/{}",
            subscription.to_ascii_lowercase(),
            resource_group.to_ascii_lowercase()
        )
        .as_bytes(),
    );
    format!("serverless{}", &hex::encode(digest)[..12])
}

pub fn registry_path(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}

fn registry_from(v: &Value) -> Result<Registry> {
    let field = |p: &str| crate::arm::string_field(v, p, "registry");
    Ok(Registry {
        id: field("/id")?,
        name: field("/name")?,
        login_server: field("/properties/loginServer")?,
    })
}

/// The registry, or `None` when it does not exist.
pub async fn get_registry(arm: &ArmClient, path: &str) -> Result<Option<Registry>> {
    match arm.get_opt(path, api::CONTAINER_REGISTRY).await? {
        Some(v) => registry_from(&v).map(Some),
        None => Ok(None),
    }
}

/// Whether a registry name is free. A taken or invalid name is an input error, as the
/// user picked it (or can pick another with `az_target(registry =)`).
pub async fn check_name_available(arm: &ArmClient, subscription: &str, name: &str) -> Result<()> {
    let path = format!(
        "/subscriptions/{subscription}/providers/Microsoft.ContainerRegistry/checkNameAvailability"
    );
    let body = json!({"name": name, "type": "Microsoft.ContainerRegistry/registries"});
    let rsp = arm
        .post(&path, api::CONTAINER_REGISTRY, Some(&body))
        .await?;
    if rsp["nameAvailable"].as_bool() == Some(true) {
        return Ok(());
    }
    let reason = rsp["reason"].as_str().unwrap_or("NotAvailable");
    let message = rsp["message"].as_str().unwrap_or("");
    Err(Error::input(format!(
        "registry name `{name}` cannot be used ({reason}): {message} Choose another with az_target(registry = )"
    )))
}

/// Creates the registry: Basic SKU, admin user disabled (pulls use managed identities).
pub async fn create_registry(
    arm: &ArmClient,
    subscription: &str,
    path: &str,
    name: &str,
    location: &str,
    tags: &BTreeMap<String, String>,
) -> Result<Registry> {
    check_name_available(arm, subscription, name).await?;
    let body = json!({
        "location": location,
        "sku": {"name": "Basic"},
        "tags": tags,
        "properties": {"adminUserEnabled": false},
    });
    let v = arm.put(path, api::CONTAINER_REGISTRY, &body).await?;
    registry_from(&v)
}

fn base_url(login_server: &str) -> String {
    format!("https://{login_server}")
}

/// A registry access token for `scope`, from the caller's Entra ID token.
async fn registry_token(arm: &ArmClient, login_server: &str, scope: &str) -> Result<String> {
    let aad = arm.access_token().await?;
    let tenant = auth::jwt_claims(&aad)
        .and_then(|c| c["tid"].as_str().map(str::to_string))
        .unwrap_or_default();
    let http = arm.http();
    let rsp = http
        .post(format!("{}/oauth2/exchange", base_url(login_server)))
        .form(&[
            ("grant_type", "access_token"),
            ("service", login_server),
            ("tenant", tenant.as_str()),
            ("access_token", aad.as_str()),
        ])
        .send()
        .await
        .map_err(|e| connection_error(login_server, e))?;
    let refresh = token_field(rsp, "refresh_token", login_server).await?;
    let rsp = http
        .post(format!("{}/oauth2/token", base_url(login_server)))
        .form(&[
            ("grant_type", "refresh_token"),
            ("service", login_server),
            ("scope", scope),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .map_err(|e| connection_error(login_server, e))?;
    token_field(rsp, "access_token", login_server).await
}

fn connection_error(host: &str, e: reqwest::Error) -> Error {
    Error::azure(
        0,
        None,
        format!(
            "connection to registry {host} failed: {}",
            crate::error::redact(&e.to_string())
        ),
    )
}

async fn token_field(rsp: reqwest::Response, field: &str, host: &str) -> Result<String> {
    let status = rsp.status();
    let body: Value = rsp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(Error {
            kind: ErrorKind::Auth,
            ..Error::azure(
                status.as_u16(),
                None,
                format!("registry {host} refused the token exchange ({status}); the identity needs AcrPush or Contributor on the registry"),
            )
        });
    }
    body[field].as_str().map(str::to_string).ok_or_else(|| {
        Error::azure(
            status.as_u16(),
            None,
            format!("registry {host} returned no {field}"),
        )
    })
}

/// Whether `repository:tag` exists in the registry (a HEAD on its manifest).
pub async fn image_exists(
    arm: &ArmClient,
    login_server: &str,
    repository: &str,
    tag: &str,
) -> Result<bool> {
    let token = registry_token(arm, login_server, &format!("repository:{repository}:pull")).await?;
    let rsp = arm
        .http()
        .head(format!(
            "{}/v2/{repository}/manifests/{tag}",
            base_url(login_server)
        ))
        .bearer_auth(token)
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .map_err(|e| connection_error(login_server, e))?;
    match rsp.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        s => Err(Error::azure(
            s.as_u16(),
            None,
            format!("registry {login_server} answered {s} for {repository}:{tag}"),
        )),
    }
}

/// What an ACR Tasks build did.
#[derive(Debug, Clone, Serialize)]
pub struct BuildOutcome {
    pub run_id: String,
    pub status: String,
    pub seconds: f64,
    pub context_bytes: u64,
    /// The whole build log, redacted.
    pub log: Vec<String>,
}

impl BuildOutcome {
    /// A build that did not succeed is an Azure error carrying the log's tail.
    pub fn succeeded(&self) -> Result<()> {
        if self.status == "Succeeded" {
            return Ok(());
        }
        let tail = &self.log[self.log.len().saturating_sub(LOG_TAIL_LINES)..];
        Err(Error::azure(
            200,
            Some(format!("Build{}", self.status)),
            format!(
                "the image build (ACR Tasks run {}) ended {}. Last lines of its log:\n{}",
                self.run_id,
                self.status,
                tail.join("\n")
            ),
        ))
    }
}

/// Builds `image` (`repository:tag`) from a gzipped build context with ACR Tasks,
/// streaming the build log to `progress`. The outcome says whether the build
/// succeeded ([`BuildOutcome::succeeded`]) and carries the whole log.
pub async fn build_image(
    arm: &ArmClient,
    registry_path: &str,
    context_tar_gz: Vec<u8>,
    image: &str,
    timeout: Duration,
    progress: &Progress,
) -> Result<BuildOutcome> {
    let started = Instant::now();
    let context_bytes = context_tar_gz.len() as u64;
    let upload = arm
        .post(
            &format!("{registry_path}/listBuildSourceUploadUrl"),
            api::CONTAINER_REGISTRY_TASKS,
            None,
        )
        .await?;
    let (Some(url), Some(relative)) = (
        upload["uploadUrl"].as_str(),
        upload["relativePath"].as_str(),
    ) else {
        return Err(Error::azure(
            200,
            None,
            "listBuildSourceUploadUrl returned no uploadUrl",
        ));
    };
    progress.begin("uploading the build context", context_bytes);
    let rsp = arm
        .http()
        .put(url)
        .header("x-ms-blob-type", "BlockBlob")
        .header("content-type", "application/gzip")
        .body(context_tar_gz)
        .send()
        .await
        .map_err(|e| connection_error("build source storage", e))?;
    if !rsp.status().is_success() {
        return Err(Error::azure(
            rsp.status().as_u16(),
            None,
            format!("uploading the build context failed ({})", rsp.status()),
        ));
    }
    progress.advance(context_bytes);

    let request = json!({
        "type": "DockerBuildRequest",
        "imageNames": [image],
        "isPushEnabled": true,
        "noCache": false,
        "sourceLocation": relative,
        "dockerFilePath": "Dockerfile",
        "platform": {"os": "Linux", "architecture": "amd64"},
        "agentConfiguration": {"cpu": 2},
        "timeout": timeout.as_secs().clamp(300, 28800),
    });
    let run = arm
        .post(
            &format!("{registry_path}/scheduleRun"),
            api::CONTAINER_REGISTRY_TASKS,
            Some(&request),
        )
        .await?;
    let run_id = run["properties"]["runId"]
        .as_str()
        .or(run["name"].as_str())
        .ok_or_else(|| Error::azure(200, None, "scheduleRun returned no run id"))?
        .to_string();
    progress.step(format!("building {image} with ACR Tasks (run {run_id})"));
    progress.begin(format!("building {image}"), 0);

    let run_path = format!("{registry_path}/runs/{run_id}");
    let mut log = LogFollower::default();
    let status = loop {
        let run = arm.get(&run_path, api::CONTAINER_REGISTRY_TASKS).await?;
        let status = run["properties"]["status"]
            .as_str()
            .unwrap_or("Queued")
            .to_string();
        if status != "Queued" {
            // Logs are best effort: a log that cannot be read never fails a build.
            let _ = log.follow(arm, &run_path, progress).await;
        }
        if TERMINAL.contains(&status.as_str()) {
            let _ = log.follow(arm, &run_path, progress).await;
            break status;
        }
        if started.elapsed() > timeout {
            let _ = arm
                .post(
                    &format!("{run_path}/cancel"),
                    api::CONTAINER_REGISTRY_TASKS,
                    None,
                )
                .await;
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the image build (run {run_id}) did not finish in {} s and was cancelled",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    Ok(BuildOutcome {
        run_id,
        status,
        seconds: started.elapsed().as_secs_f64(),
        context_bytes,
        log: log.into_lines(),
    })
}

/// Reads a run's log as it grows (the log is a blob; `Range` reads fetch what is new).
#[derive(Default)]
struct LogFollower {
    url: Option<String>,
    offset: u64,
    partial: String,
    lines: Vec<String>,
}

impl LogFollower {
    async fn follow(&mut self, arm: &ArmClient, run_path: &str, progress: &Progress) -> Result<()> {
        if self.url.is_none() {
            let v = arm
                .post(
                    &format!("{run_path}/listLogSasUrl"),
                    api::CONTAINER_REGISTRY_TASKS,
                    None,
                )
                .await?;
            self.url = v["logLink"].as_str().map(str::to_string);
        }
        let Some(url) = &self.url else {
            return Ok(());
        };
        let rsp = arm
            .http()
            .get(url)
            .header("range", format!("bytes={}-", self.offset))
            .header("x-ms-version", crate::blob::API_VERSION)
            .send()
            .await
            .map_err(|e| connection_error("build log storage", e))?;
        if rsp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(()); // nothing new yet
        }
        if !rsp.status().is_success() {
            return Ok(());
        }
        let whole = rsp.status() == StatusCode::OK;
        let bytes = rsp
            .bytes()
            .await
            .map_err(|e| connection_error("build log storage", e))?;
        // A 200 is the whole log: skip what we already have.
        let new = if whole {
            bytes.get(self.offset as usize..).unwrap_or_default()
        } else {
            &bytes[..]
        };
        self.offset += new.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(new));
        let mut complete = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            complete.push(crate::error::redact(line.trim_end()));
        }
        self.lines.extend(complete.iter().cloned());
        progress.log_lines(complete);
        Ok(())
    }

    /// Every line, the unfinished last one included.
    fn into_lines(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            let last = crate::error::redact(&self.partial);
            self.lines.push(last);
        }
        self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_follow_azure_rules() {
        assert!(check_registry_name("srvless0a1b2c").is_ok());
        for bad in ["abc", "has-dash", "under_score", &"a".repeat(51)] {
            let e = check_registry_name(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Input, "{bad}");
            assert!(e.message.contains(bad), "{}", e.message);
        }
    }

    #[test]
    fn a_failed_build_carries_the_tail_of_its_whole_log() {
        let f = LogFollower {
            lines: (1..=30).map(|i| format!("line {i}")).collect(),
            partial: "partial".into(),
            ..Default::default()
        };
        let outcome = BuildOutcome {
            run_id: "cb1".into(),
            status: "Failed".into(),
            seconds: 1.0,
            context_bytes: 1,
            log: f.into_lines(),
        };
        assert_eq!(outcome.log.len(), 31);
        let e = outcome.succeeded().unwrap_err();
        assert_eq!(e.code.as_deref(), Some("BuildFailed"));
        assert!(
            e.message.ends_with("line 29\nline 30\npartial"),
            "{}",
            e.message
        );
        assert!(e.message.contains("line 7\n") && !e.message.contains("line 6\n"));
    }
}
