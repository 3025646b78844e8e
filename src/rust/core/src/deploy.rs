//! `deploy_model()`: store the model, make sure its runtime image exists, record the
//! deployment. Every step first reads, then decides (recorded in a [`Plan`]), then
//! writes unless this is a dry run, so the plan of a dry run is what the real run does.
//!
//! Shared per target (created once, reused by every deployment): the registry, the
//! scoring identity and its two role assignments (AcrPull on the registry, Storage Blob
//! Data Contributor on the storage account). Per deployment: the model versions, the
//! record `deployments/<name>.json`, and the images when their specs are new: the base
//! image (R + serveRless, compiled once per R and serveRless source) and the runtime
//! image `FROM` it with the model's packages. Build logs are kept in the container at
//! `builds/<repository>/<tag>.log`.

use crate::acr;
use crate::arm::ArmClient;
use crate::blob::Storage;
use crate::error::{Error, Result};
use crate::identity::{self, roles, Identity};
use crate::plan::{Action, Plan};
use crate::progress::Progress;
use crate::store::{self, Manifest};
use crate::templates::{self, RuntimeSpec, BASE_REPOSITORY, RUNTIME_REPOSITORY};
use crate::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// What R sends (plain data; the bundle is already serialized to `bundle_path`).
#[derive(Debug, Clone, Deserialize)]
pub struct DeployRequest {
    pub name: String,
    pub container: String,
    pub subscription: String,
    pub resource_group: String,
    pub location: String,
    pub storage_account: String,
    /// The registry's name; by default one derived from the subscription and group.
    #[serde(default)]
    pub registry: Option<String>,
    #[serde(default = "default_identity")]
    pub identity: String,
    pub cpu: f64,
    pub memory_gb: f64,
    pub spec: RuntimeSpec,
    pub dockerfile_template: String,
    pub base_dockerfile_template: String,
    pub install_script: String,
    /// The serveRless source tarball (by default the one kept at install time).
    pub serverless_tarball_path: PathBuf,
    pub bundle_path: PathBuf,
    #[serde(default)]
    pub meta: Value,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "default_build_timeout")]
    pub build_timeout_s: f64,
}

fn default_identity() -> String {
    "serverless-scoring".into()
}

fn default_build_timeout() -> f64 {
    3600.0
}

/// The record kept in Blob Storage at `deployments/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deployment {
    pub name: String,
    pub model_version: String,
    pub model_sha256: String,
    pub image: String,
    pub registry: String,
    pub login_server: String,
    pub runtime_hash: String,
    /// The base image the runtime image is `FROM` (empty in records written before).
    #[serde(default)]
    pub base_image: String,
    pub cpu: f64,
    pub memory_gb: f64,
    pub identity_id: String,
    pub identity_client_id: String,
    pub storage_account: String,
    pub container: String,
    pub resource_group: String,
    pub location: String,
    pub spec: RuntimeSpec,
    /// The model's input columns as R described them (`meta.ptype`), so a deployment
    /// read back checks `newdata` as the one returned by deploy does.
    #[serde(default)]
    pub ptype: Value,
    pub created: String,
    pub updated: String,
}

impl Deployment {
    /// The same deployment, ignoring when it was written.
    fn same_as(&self, other: &Deployment) -> bool {
        let strip = |d: &Deployment| Deployment {
            created: String::new(),
            updated: String::new(),
            ..d.clone()
        };
        strip(self) == strip(other)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeployOutcome {
    pub deployment: Deployment,
    pub plan: Plan,
    pub dry_run: bool,
    /// True when the runtime image was built (or would be, in a dry run).
    pub built: bool,
    pub build: Option<acr::BuildOutcome>,
    /// True when the base image was built (or would be).
    pub base_built: bool,
    pub base_build: Option<acr::BuildOutcome>,
    pub model_reused: bool,
    pub bytes_sent: u64,
    pub arm_calls: u64,
    pub dockerfile: String,
    pub base_dockerfile: String,
}

/// Where a build's log is kept: `builds/<repository>/<tag>.log`.
pub fn build_log_blob(repository: &str, tag: &str) -> String {
    format!("builds/{repository}/{tag}.log")
}

pub fn deployment_blob(name: &str) -> String {
    format!("deployments/{name}.json")
}

/// ACI's limits for one container group.
pub fn check_resources(cpu: f64, memory_gb: f64) -> Result<()> {
    if !(1.0..=4.0).contains(&cpu) {
        return Err(Error::input(format!(
            "cpu = {cpu} is outside what Azure Container Instances allows: 1 to 4 cores"
        )));
    }
    let tenths = memory_gb * 10.0;
    if !(0.5..=16.0).contains(&memory_gb) || (tenths - tenths.round()).abs() > 1e-6 {
        return Err(Error::input(format!(
            "memory_gb = {memory_gb} is outside what Azure Container Instances allows: 0.5 to 16 GB in steps of 0.1"
        )));
    }
    Ok(())
}

/// Tags of the resources shared by all deployments of a target. They carry no
/// deployment name, so undeploying one model never removes them.
fn shared_tags(role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("serverless-shared".to_string(), role.to_string()),
        ("created-by".to_string(), "serveRless".to_string()),
    ])
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// What `validate` works out before any network call.
struct Checked {
    registry: String,
    base_hash: String,
    hash: String,
    base_dockerfile: String,
}

/// Everything checkable without the network, in one place.
fn validate(req: &DeployRequest) -> Result<Checked> {
    store::check_model_name(&req.name)?;
    check_resources(req.cpu, req.memory_gb)?;
    let registry = req
        .registry
        .clone()
        .unwrap_or_else(|| acr::default_registry_name(&req.subscription, &req.resource_group));
    acr::check_registry_name(&registry)?;
    crate::aci::check_name("identity", &req.identity)?;
    let base_hash = req
        .spec
        .base_hash(&[&req.base_dockerfile_template, &req.install_script]);
    let hash = req
        .spec
        .hash(&base_hash, &[&req.dockerfile_template, &req.install_script]);
    let base_dockerfile =
        templates::render_base_dockerfile(&req.base_dockerfile_template, &req.spec, &base_hash)?;
    // The runtime Dockerfile names the registry's login server, known later; rendering
    // it here with a stand-in catches template errors before any call.
    templates::render_dockerfile(
        &req.dockerfile_template,
        &req.spec,
        &hash,
        "registry.invalid/base:x",
        &base_hash,
    )?;
    let path = &req.serverless_tarball_path;
    if !path.is_file() {
        return Err(Error::input(format!(
            "the serveRless source tarball `{}` does not exist",
            path.display()
        )));
    }
    // The tarball is what the spec (and so the base's tag) says it is.
    let expected = req
        .spec
        .serverless_tarball
        .as_ref()
        .map(|t| t.sha256.as_str());
    let actual = templates::file_sha256(path)?;
    if expected != Some(actual.as_str()) {
        return Err(Error::integrity(format!(
            "the serveRless source tarball `{}` has sha256 {actual}, not the {} recorded for it",
            path.display(),
            expected.unwrap_or("(none)")
        )));
    }
    Ok(Checked {
        registry,
        base_hash,
        hash,
        base_dockerfile,
    })
}

pub fn deploy<'a>(
    storage: &'a Storage,
    arm: &'a ArmClient,
    req: &'a DeployRequest,
    progress: &'a Progress,
) -> BoxFuture<'a, Result<DeployOutcome>> {
    Box::pin(async move {
        let Checked {
            registry: registry_name,
            base_hash,
            hash,
            base_dockerfile,
        } = validate(req)?;
        let calls_before = arm.stats.calls.load(Ordering::Relaxed);
        let dry = req.dry_run;
        let mut plan = Plan::default();
        let (sub, rg) = (req.subscription.as_str(), req.resource_group.as_str());

        // 1. The model version.
        let (manifest, model_reused, bytes_sent) = if dry {
            let (sha256, existing) = storage
                .plan_model(&req.container, &req.name, &req.bundle_path)
                .await?;
            match existing {
                Some(m) => {
                    plan.add(
                        "model version",
                        model_id(req, &m.version),
                        Action::Unchanged,
                        "identical to the newest version",
                    );
                    (m, true, 0)
                }
                None => {
                    let version = format!("(new)-{}", &sha256[..8]);
                    plan.add(
                        "model version",
                        model_id(req, &version),
                        Action::Create,
                        "bundle + manifest.json",
                    );
                    let m = Manifest {
                        name: req.name.clone(),
                        version,
                        created: now(),
                        sha256,
                        size: 0,
                        uncompressed_size: 0,
                        compression: "zstd".into(),
                        meta: Value::Null,
                    };
                    (m, false, 0)
                }
            }
        } else {
            progress.step(format!("storing model `{}`", req.name));
            let out = storage
                .store_model(
                    &req.container,
                    &req.name,
                    &req.bundle_path,
                    req.meta.clone(),
                    progress,
                )
                .await?;
            let action = if out.reused {
                Action::Unchanged
            } else {
                Action::Create
            };
            plan.add(
                "model version",
                model_id(req, &out.manifest.version),
                action,
                "bundle + manifest.json",
            );
            (out.manifest, out.reused, out.bytes_sent)
        };

        // 2. The registry, before the other resources: a taken name stops us early.
        let registry_path = acr::registry_path(sub, rg, &registry_name);
        let registry = match acr::get_registry(arm, &registry_path).await? {
            Some(r) => {
                plan.add("registry", &r.id, Action::Unchanged, &r.login_server);
                Some(r)
            }
            None => {
                plan.add(
                    "registry",
                    &registry_path,
                    Action::Create,
                    "Basic SKU, admin user disabled",
                );
                if dry {
                    acr::check_name_available(arm, sub, &registry_name).await?;
                    None
                } else {
                    progress.step(format!("creating registry {}", registry_name));
                    Some(
                        acr::create_registry(
                            arm,
                            sub,
                            &registry_path,
                            &registry_name,
                            &req.location,
                            &shared_tags("registry"),
                        )
                        .await?,
                    )
                }
            }
        };

        // 3. The scoring identity.
        let identity_path = identity::identity_path(sub, rg, &req.identity);
        let identity = match identity::get_identity(arm, &identity_path).await? {
            Some(i) => {
                plan.add("identity", &i.id, Action::Unchanged, "scoring identity");
                Some(i)
            }
            None => {
                plan.add(
                    "identity",
                    &identity_path,
                    Action::Create,
                    "user-assigned identity the scoring containers run as",
                );
                if dry {
                    None
                } else {
                    progress.step(format!("creating identity {}", req.identity));
                    Some(
                        identity::create_identity(
                            arm,
                            &identity_path,
                            &req.location,
                            &shared_tags("identity"),
                        )
                        .await?,
                    )
                }
            }
        };

        // 4. Its two roles.
        let storage_scope = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{}",
        req.storage_account
    );
        let grants = [
            (
                registry
                    .as_ref()
                    .map_or(registry_path.clone(), |r| r.id.clone()),
                roles::ACR_PULL,
                "AcrPull: the scoring containers pull the runtime image",
            ),
            (
                storage_scope,
                roles::STORAGE_BLOB_DATA_CONTRIBUTOR,
                "Storage Blob Data Contributor: they read models and data, write predictions",
            ),
        ];
        for (scope, role, why) in grants {
            let granted = match &identity {
                Some(i) => identity::has_role(arm, &scope, role, &i.principal_id).await?,
                None => false,
            };
            let id = format!(
                "{scope}/providers/Microsoft.Authorization/roleAssignments/{}",
                identity::assignment_name(
                    &scope,
                    role,
                    identity
                        .as_ref()
                        .map_or("(new identity)", |i| &i.principal_id)
                )
            );
            if granted {
                plan.add("role assignment", id, Action::Unchanged, why);
            } else {
                plan.add("role assignment", id, Action::Create, why);
                if let (false, Some(i)) = (dry, &identity) {
                    identity::assign_role(arm, sub, &scope, role, &i.principal_id).await?;
                }
            }
        }

        // 5. The images: the base (R + serveRless, compiled once), then the runtime image
        //    FROM it with the model's packages. ACR Tasks pulls a base from the registry
        //    the run belongs to with the run's own access ("Automate container image builds
        //    when a base image is updated", Azure Container Registry docs).
        let login_server = registry
            .as_ref()
            .map(|r| r.login_server.clone())
            .unwrap_or_else(|| format!("{}.azurecr.io", registry_name.to_ascii_lowercase()));
        let base_image = format!("{login_server}/{BASE_REPOSITORY}:{base_hash}");
        let image = format!("{login_server}/{RUNTIME_REPOSITORY}:{hash}");
        let dockerfile = templates::render_dockerfile(
            &req.dockerfile_template,
            &req.spec,
            &hash,
            &base_image,
            &base_hash,
        )?;
        let registry_ref = registry
            .as_ref()
            .map(|r| acr::registry_path(sub, rg, &r.name));
        let tarball_name = req
            .spec
            .serverless_tarball
            .as_ref()
            .map(|t| t.file_name.clone())
            .unwrap_or_default();
        let base_files = || -> Result<Vec<(String, Vec<u8>)>> {
            let tarball = std::fs::read(&req.serverless_tarball_path).map_err(|e| {
                Error::io(
                    format!("reading `{}`", req.serverless_tarball_path.display()),
                    e,
                )
            })?;
            Ok(vec![
                (
                    "Dockerfile".to_string(),
                    base_dockerfile.as_bytes().to_vec(),
                ),
                (
                    "install-pinned.R".to_string(),
                    req.install_script.as_bytes().to_vec(),
                ),
                (tarball_name.clone(), tarball),
            ])
        };
        let (base_built, base_build) = ensure_image(
            storage,
            arm,
            req,
            &mut plan,
            registry_ref.as_deref(),
            &login_server,
            ImageWork {
                kind: "base image",
                repository: BASE_REPOSITORY,
                tag: &base_hash,
                detail: format!(
                "ACR Tasks build: R {}, serveRless {} compiled from its source, {} pinned packages",
                req.spec.r_version,
                req.spec.serverless_version,
                req.spec.base_packages.len()
            ),
                unchanged: "R and serveRless unchanged",
            },
            base_files,
            progress,
        )
        .await?;
        let runtime_files = || -> Result<Vec<(String, Vec<u8>)>> {
            Ok(vec![
                ("Dockerfile".to_string(), dockerfile.as_bytes().to_vec()),
                (
                    "install-pinned.R".to_string(),
                    req.install_script.as_bytes().to_vec(),
                ),
            ])
        };
        let (built, build) = ensure_image(
            storage,
            arm,
            req,
            &mut plan,
            registry_ref.as_deref(),
            &login_server,
            ImageWork {
                kind: "image",
                repository: RUNTIME_REPOSITORY,
                tag: &hash,
                detail: format!(
                    "ACR Tasks build on the base: {} pinned packages, no Rust",
                    req.spec.packages.len()
                ),
                unchanged: "runtime spec unchanged",
            },
            runtime_files,
            progress,
        )
        .await?;

        // 6. The deployment record, written last: it points at things that now exist.
        let blob = deployment_blob(&req.name);
        let previous: Option<Deployment> = match storage.get_bytes(&req.container, &blob).await {
            Ok(bytes) => serde_json::from_slice(&bytes).ok(),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let stamp = now();
        let deployment = Deployment {
            name: req.name.clone(),
            model_version: manifest.version.clone(),
            model_sha256: manifest.sha256.clone(),
            image: image.clone(),
            registry: registry_name.clone(),
            login_server,
            runtime_hash: hash,
            base_image,
            cpu: req.cpu,
            memory_gb: req.memory_gb,
            identity_id: identity
                .as_ref()
                .map_or(identity_path.clone(), |i: &Identity| i.id.clone()),
            identity_client_id: identity
                .as_ref()
                .map_or(String::new(), |i| i.client_id.clone()),
            storage_account: req.storage_account.clone(),
            container: req.container.clone(),
            resource_group: req.resource_group.clone(),
            location: req.location.clone(),
            spec: req.spec.clone(),
            ptype: req.meta.get("ptype").cloned().unwrap_or(Value::Null),
            created: previous
                .as_ref()
                .map_or(stamp.clone(), |p| p.created.clone()),
            updated: stamp,
        };
        let record_id = format!("{}/{blob}", req.container);
        match &previous {
            Some(p) if p.same_as(&deployment) => {
                plan.add("blob", record_id, Action::Unchanged, "deployment record");
            }
            _ => {
                let action = if previous.is_some() {
                    Action::Update
                } else {
                    Action::Create
                };
                plan.add("blob", record_id, action, "deployment record");
                if !dry {
                    let body = serde_json::to_vec_pretty(&deployment).map_err(|e| {
                        Error::internal(format!("cannot write the deployment record: {e}"))
                    })?;
                    storage
                        .put_bytes(&req.container, &blob, body, "application/json", false)
                        .await?;
                }
            }
        }

        Ok(DeployOutcome {
            deployment,
            plan,
            dry_run: dry,
            built,
            build,
            base_built,
            base_build,
            model_reused,
            bytes_sent,
            arm_calls: arm.stats.calls.load(Ordering::Relaxed) - calls_before,
            dockerfile,
            base_dockerfile,
        })
    })
}

fn model_id(req: &DeployRequest, version: &str) -> String {
    format!("{}/models/{}/{version}", req.container, req.name)
}

/// One image `ensure_image` looks after.
struct ImageWork<'a> {
    kind: &'static str,
    repository: &'static str,
    tag: &'a str,
    detail: String,
    unchanged: &'static str,
}

/// Plans an image and builds it when it is missing (and this is no dry run), keeping
/// its build log in the container. Returns whether it is (or would be) built.
#[allow(clippy::too_many_arguments)]
async fn ensure_image(
    storage: &Storage,
    arm: &ArmClient,
    req: &DeployRequest,
    plan: &mut Plan,
    registry: Option<&str>,
    login_server: &str,
    work: ImageWork<'_>,
    files: impl FnOnce() -> Result<Vec<(String, Vec<u8>)>>,
    progress: &Progress,
) -> Result<(bool, Option<acr::BuildOutcome>)> {
    let reference = format!("{login_server}/{}:{}", work.repository, work.tag);
    let exists = match registry {
        Some(_) => acr::image_exists(arm, login_server, work.repository, work.tag).await?,
        None => false,
    };
    if exists {
        plan.add(work.kind, &reference, Action::Unchanged, work.unchanged);
        return Ok((false, None));
    }
    plan.add(work.kind, &reference, Action::Create, work.detail);
    let (false, Some(registry_path)) = (req.dry_run, registry) else {
        return Ok((true, None));
    };
    let context = templates::context_tar_gz(&files()?)?;
    let outcome = acr::build_image(
        arm,
        registry_path,
        context,
        &format!("{}:{}", work.repository, work.tag),
        Duration::from_secs_f64(req.build_timeout_s.max(60.0)),
        progress,
    )
    .await?;
    // Kept whatever the outcome, so a failed build can be read in full.
    let log = outcome.log.join("\n");
    storage
        .put_bytes(
            &req.container,
            &build_log_blob(work.repository, work.tag),
            log.into_bytes(),
            "text/plain; charset=utf-8",
            false,
        )
        .await?;
    outcome.succeeded()?;
    Ok((true, Some(outcome)))
}

/// The deployment record of `name`, or `None`.
pub fn get_deployment<'a>(
    storage: &'a Storage,
    container: &'a str,
    name: &'a str,
) -> BoxFuture<'a, Result<Option<Deployment>>> {
    Box::pin(async move {
        store::check_model_name(name)?;
        match storage.get_bytes(container, &deployment_blob(name)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::integrity(format!(
                    "the deployment record of `{name}` is not valid: {e}"
                ))
            }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aci_limits() {
        assert!(check_resources(1.0, 1.5).is_ok());
        assert!(check_resources(4.0, 16.0).is_ok());
        assert!(check_resources(2.0, 0.5).is_ok());
        for (cpu, mem) in [(0.5, 1.0), (5.0, 1.0), (1.0, 0.4), (1.0, 16.5), (1.0, 1.55)] {
            let e = check_resources(cpu, mem).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::Input, "{cpu} {mem}");
        }
    }
}
