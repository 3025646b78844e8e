//! Container groups (`Microsoft.ContainerInstance/containerGroups`) whose containers run
//! as local processes: one process group per container, output to a log file.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::arm::{
    check_api_version, not_found_path, ArmError, ArmRequest, ArmResult, ResourceType,
};
use crate::resources::{
    new_location_operation, render, required_location, resolve_identity, resource_not_found,
    resource_ref, tags_of,
};
use crate::state::{Inner, MsiIdentity, Operation, OperationKind, World};
use crate::token::Principal;
use crate::util::{self, empty_response, json_response, set_header};

/// Environment variables passed through from the emulator's own environment.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "R_LIBS", "R_LIBS_USER", "LANG"];

/// What is needed to run one container (secrets included; never rendered).
#[derive(Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The most memory its processes may hold together: `limits.memoryInGB`, else
    /// `requests.memoryInGB` (ACI's rule). Past it the container is killed (137).
    pub memory_bytes: u64,
    /// Evict it once it runs (a Spot group that `local_azure_faults(evict =)` chose).
    pub evict: bool,
}

#[derive(Clone, Debug)]
pub struct ContainerState {
    pub state: &'static str,
    pub start_time: Option<String>,
    pub finish_time: Option<String>,
    pub exit_code: Option<i32>,
    pub detail: String,
    pub restart_count: u32,
    pub log_path: Option<PathBuf>,
    pub pid: Option<i32>,
}

/// The live side of a container group.
pub struct GroupRuntime {
    /// Bumped on every (re)start; tasks of an older generation stop updating state.
    pub generation: u64,
    pub provisioning: &'static str,
    pub stopped: bool,
    pub restart_policy: String,
    pub specs: Vec<ContainerSpec>,
    pub containers: Vec<ContainerState>,
    pub spec_digest: String,
    pub identities: Vec<MsiIdentity>,
    pub msi_secret: Option<String>,
    pub kill: Option<watch::Sender<bool>>,
    pub tasks: Vec<JoinHandle<()>>,
}

fn waiting() -> ContainerState {
    ContainerState {
        state: "Waiting",
        start_time: None,
        finish_time: None,
        exit_code: None,
        detail: "Pulling".into(),
        restart_count: 0,
        log_path: None,
        pid: None,
    }
}

fn group_state(rt: &GroupRuntime) -> &'static str {
    if rt.stopped {
        return "Stopped";
    }
    if rt.provisioning == "Pending" {
        return "Pending";
    }
    if rt.containers.iter().any(|c| c.state != "Terminated") {
        return "Running";
    }
    let all_ok = rt.containers.iter().all(|c| c.exit_code == Some(0));
    match rt.restart_policy.to_ascii_lowercase().as_str() {
        "never" | "onfailure" if all_ok => "Succeeded",
        "never" => "Failed",
        _ => "Running",
    }
}

/// The stored group with its live provisioning state and instance views.
pub fn with_instance_view(mut group: Value, rt: &GroupRuntime) -> Value {
    group["properties"]["provisioningState"] = json!(rt.provisioning);
    group["properties"]["instanceView"] = json!({"events": [], "state": group_state(rt)});
    if let Some(containers) = group["properties"]["containers"].as_array_mut() {
        for (c, st) in containers.iter_mut().zip(&rt.containers) {
            let mut current = json!({"state": st.state, "detailStatus": st.detail});
            if let Some(t) = &st.start_time {
                current["startTime"] = json!(t);
            }
            if let Some(t) = &st.finish_time {
                current["finishTime"] = json!(t);
            }
            if let Some(code) = st.exit_code {
                current["exitCode"] = json!(code);
            }
            c["properties"]["instanceView"] = json!({
                "restartCount": st.restart_count,
                "currentState": current,
                "events": [],
            });
        }
    }
    group
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn valid_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn positive_number(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x > 0.0)
}

/// A container as the body gives it, before its image is resolved.
struct Draft {
    name: String,
    image: String,
    command: Option<Vec<String>>,
    env: Vec<(String, String)>,
    memory_bytes: u64,
}

/// Validates a container group body; returns its containers.
fn validate(body: &Value) -> Result<Vec<Draft>, ArmError> {
    let props = &body["properties"];
    if !props.is_object() {
        return Err(ArmError::missing("properties"));
    }
    match props["osType"].as_str() {
        None => return Err(ArmError::missing("properties.osType")),
        Some(os) if !["linux", "windows"].contains(&os.to_ascii_lowercase().as_str()) => {
            return Err(ArmError::invalid(
                "properties.osType",
                format!("The value '{os}' of 'properties.osType' is not valid. Use 'Linux' or 'Windows'."),
            ))
        }
        _ => {}
    }
    // ContainerGroupPriority (2023-05-01): "Regular" or "Spot".
    let priority = &props["priority"];
    let known = |p: &str| ["regular", "spot"].contains(&p.to_ascii_lowercase().as_str());
    if !priority.is_null() && !priority.as_str().is_some_and(known) {
        let shown = priority
            .as_str()
            .map_or_else(|| priority.to_string(), str::to_string);
        return Err(ArmError::invalid(
            "properties.priority",
            format!("The value '{shown}' of 'properties.priority' is not valid. Use 'Regular' or 'Spot'."),
        ));
    }
    if let Some(p) = props["restartPolicy"].as_str() {
        if !["always", "onfailure", "never"].contains(&p.to_ascii_lowercase().as_str()) {
            return Err(ArmError::invalid(
                "properties.restartPolicy",
                format!("The value '{p}' of 'properties.restartPolicy' is not valid. Use 'Always', 'OnFailure' or 'Never'."),
            ));
        }
    }
    let containers =
        match props["containers"].as_array() {
            None => return Err(ArmError::missing("properties.containers")),
            Some(c) if c.is_empty() => return Err(ArmError::invalid(
                "properties.containers",
                "The container group must have at least one container in 'properties.containers'.",
            )),
            Some(c) => c,
        };
    let mut specs = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let at = |field: &str| format!("properties.containers[{i}].{field}");
        let Some(name) = c["name"].as_str() else {
            return Err(ArmError::missing(&at("name")));
        };
        if !valid_dns_label(name) {
            return Err(ArmError::bad_request(
                "InvalidContainerName",
                format!("The container name '{name}' in container group is invalid. The container name must contain no more than 63 characters and must match the regex '[a-z0-9]([-a-z0-9]*[a-z0-9])?' (e.g. 'my-name')."),
            ));
        }
        if specs.iter().any(|s: &Draft| s.name == name) {
            return Err(ArmError::bad_request(
                "DuplicateContainerName",
                format!("The container name '{name}' is used more than once."),
            ));
        }
        let cp = &c["properties"];
        let Some(image) = cp["image"].as_str().filter(|s| !s.trim().is_empty()) else {
            return Err(ArmError::missing(&at("properties.image")));
        };
        let requests = &cp["resources"]["requests"];
        for field in ["cpu", "memoryInGB"] {
            if requests[field].is_null() {
                return Err(ArmError::missing(&at(&format!(
                    "properties.resources.requests.{field}"
                ))));
            }
            if !positive_number(&requests[field]) {
                return Err(ArmError::invalid(
                    &at(&format!("properties.resources.requests.{field}")),
                    format!(
                        "The '{field}' request of container '{name}' must be a positive number."
                    ),
                ));
            }
        }
        let limits = &cp["resources"]["limits"];
        if !limits["memoryInGB"].is_null() && !positive_number(&limits["memoryInGB"]) {
            return Err(ArmError::invalid(
                &at("properties.resources.limits.memoryInGB"),
                format!("The 'memoryInGB' limit of container '{name}' must be a positive number."),
            ));
        }
        let memory_gb = limits["memoryInGB"]
            .as_f64()
            .or(requests["memoryInGB"].as_f64())
            .unwrap_or(0.0);
        let memory_bytes = (memory_gb * 1024.0 * 1024.0 * 1024.0) as u64;
        let command = match &cp["command"] {
            Value::Null => None,
            Value::Array(argv) if argv.iter().all(Value::is_string) => Some(
                argv.iter()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect::<Vec<_>>(),
            ),
            _ => {
                return Err(ArmError::invalid(
                    &at("properties.command"),
                    format!("The 'command' of container '{name}' must be an array of strings."),
                ))
            }
        };
        let mut env = Vec::new();
        if let Some(vars) = cp["environmentVariables"].as_array() {
            for (j, var) in vars.iter().enumerate() {
                let Some(var_name) = var["name"].as_str() else {
                    return Err(ArmError::missing(&at(&format!(
                        "properties.environmentVariables[{j}].name"
                    ))));
                };
                let value = var["value"]
                    .as_str()
                    .or(var["secureValue"].as_str())
                    .unwrap_or_default();
                env.push((var_name.to_string(), value.to_string()));
            }
        }
        specs.push(Draft {
            name: name.to_string(),
            image: image.trim().to_string(),
            command,
            env,
            memory_bytes,
        });
    }
    Ok(specs)
}

/// Roles that let a principal pull from a registry: AcrPull, AcrPush, Contributor, Owner.
const PULL_ROLES: &[&str] = &[
    "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "8311e382-0749-4cb8-b61a-304f252e45ec",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
];

/// Does `principal` hold a pull role at `scope_id` (lowercased) or above it?
fn can_pull(world: &World, principal: &str, scope_id: &str) -> bool {
    world
        .roles_at(principal, scope_id)
        .iter()
        .any(|guid| PULL_ROLES.contains(&guid.as_str()))
}

/// The registry host of an image reference (`host[:port]/...`), if it names one.
fn image_host(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// Turns drafts into runnable specs. Images of an emulated registry must be pullable
/// (a credential for the registry, a pull role or the admin password, a built tag)
/// and run their recorded ENTRYPOINT+CMD with their ENV; other images cannot run
/// here, so their `command` is required.
fn resolve_images(
    inner: &Inner,
    group: &str,
    body: &Value,
    identity: &Value,
    drafts: Vec<Draft>,
) -> Result<Vec<ContainerSpec>, ArmError> {
    let creds = body["properties"]["imageRegistryCredentials"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut specs = Vec::new();
    for (i, d) in drafts.into_iter().enumerate() {
        let target = format!("properties.containers[{i}].properties.command");
        let world = inner.world();
        let registry = image_host(&d.image).and_then(|host| {
            world
                .registries
                .iter()
                .find(|(_, rt)| rt.login_server.eq_ignore_ascii_case(host))
        });
        let Some((reg_key, rt)) = registry else {
            // No images run here: the argv is what we execute.
            let command = d.command.filter(|c| !c.is_empty()).ok_or_else(|| {
                ArmError::bad_request(
                    "LocalAzureCommandRequired",
                    format!("Container '{}': the local Azure runs containers as local processes and can only run images built in its own registries, so 'properties.command' (an argv array of strings) is required for '{}'.", d.name, d.image),
                )
                .with_target(&target)
            })?;
            specs.push(ContainerSpec {
                name: d.name,
                command,
                env: d.env,
                memory_bytes: d.memory_bytes,
                evict: false,
            });
            continue;
        };
        let inaccessible = || {
            ArmError::bad_request(
                "InaccessibleImage",
                format!("The image '{}' in container group '{group}' is not accessible. Please check the image and registry credential.", d.image),
            )
        };
        let cred = creds.iter().find(|c| {
            c["server"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(&rt.login_server))
        });
        let Some(cred) = cred else {
            return Err(inaccessible());
        };
        let allowed = if let Some(uami) = cred["identity"].as_str() {
            // Only a user-assigned identity of the group itself can pull.
            identity["userAssignedIdentities"]
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(uami)))
                .and_then(|(_, v)| v["principalId"].as_str())
                .is_some_and(|p| can_pull(&world, p, reg_key))
        } else {
            let admin = world
                .resources
                .get(reg_key)
                .is_some_and(|r| r["properties"]["adminUserEnabled"] == json!(true));
            let user_ok = cred["username"]
                .as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(&rt.name));
            let password_ok = cred["password"].as_str().is_some_and(|p| {
                world
                    .registry_passwords
                    .get(reg_key)
                    .is_some_and(|ps| ps.iter().any(|x| x == p))
            });
            admin && user_ok && password_ok
        };
        if !allowed {
            return Err(inaccessible());
        }
        let reference = crate::dockerfile::parse_reference(&d.image).map_err(|_| inaccessible())?;
        let tags = rt.images.get(&reference.repository);
        let image = match (&reference.digest, &reference.tag) {
            (Some(digest), _) => tags.and_then(|t| t.values().find(|img| img.digest == *digest)),
            (None, tag) => tags.and_then(|t| t.get(tag.as_deref().unwrap_or("latest"))),
        };
        let Some(image) = image else {
            return Err(inaccessible());
        };
        // ACI's `command` is like `docker run --entrypoint`: it replaces the image's
        // ENTRYPOINT and CMD. Without it the image's own run.
        let command = match d.command.filter(|c| !c.is_empty()) {
            Some(c) => c,
            None => {
                let cfg = &image.config;
                let argv: Vec<String> = cfg
                    .entrypoint
                    .iter()
                    .flatten()
                    .chain(cfg.cmd.iter().flatten())
                    .cloned()
                    .collect();
                if argv.is_empty() {
                    return Err(ArmError::bad_request(
                        "LocalAzureCommandRequired",
                        format!("Container '{}': the image '{}' has neither ENTRYPOINT nor CMD, so 'properties.command' is required.", d.name, d.image),
                    )
                    .with_target(&target));
                }
                argv
            }
        };
        // The image runs the host's programs and the host's R, by absolute path, with a
        // library of only the R packages its build installed (R's own are in R's
        // `.Library`). An image PATH keeps the host's PATH behind it, R's bin first.
        // Then the image's ENV, which the group's variables override.
        let mut env = Vec::new();
        if let Some(lib) = image_library(inner, image).map_err(|e| {
            ArmError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "LocalAzureImageLibrary",
                format!(
                    "Container '{}': the local Azure could not lay out the R library of '{}': {e}",
                    d.name, d.image
                ),
            )
        })? {
            let lib = lib.to_string_lossy().into_owned();
            for var in ["R_LIBS", "R_LIBS_USER", "R_LIBS_SITE"] {
                env.push((var.to_string(), lib.clone()));
            }
        }
        let r_bin = inner.config.r_bin_dir.as_ref();
        let host_path = std::env::var("PATH").unwrap_or_default();
        let host_path = match r_bin {
            Some(bin) => format!("{}:{host_path}", bin.to_string_lossy()),
            None => host_path,
        };
        let image_path = image.config.env.iter().any(|(k, _)| k == "PATH");
        if !image_path {
            env.push(("PATH".to_string(), host_path.clone()));
        }
        for (k, v) in &image.config.env {
            let v = match k.as_str() {
                "PATH" if !host_path.is_empty() => format!("{v}:{host_path}"),
                _ => v.clone(),
            };
            env.push((k.clone(), v));
        }
        env.extend(d.env);
        let mut command = command;
        if let (Some(bin), Some(first)) = (r_bin, command.first_mut()) {
            if first == "R" || first == "Rscript" {
                *first = bin.join(&*first).to_string_lossy().into_owned();
            }
        }
        specs.push(ContainerSpec {
            name: d.name,
            command,
            env,
            memory_bytes: d.memory_bytes,
            evict: false,
        });
    }
    Ok(specs)
}

/// The R library a container of `image` sees: a directory of links to the host's copy
/// of each R package the image's build installed, made once per image. A package the
/// image lacks is then missing here as in Azure. `None` without a host library.
fn image_library(inner: &Inner, image: &crate::acr::Image) -> std::io::Result<Option<PathBuf>> {
    let libs = &inner.config.r_library_paths;
    if libs.is_empty() {
        return Ok(None);
    }
    let id = image.digest.trim_start_matches("sha256:");
    let dir = inner
        .config
        .work_dir
        .join("r-libraries")
        .join(&id[..id.len().min(16)]);
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    // Laid out aside and renamed into place, so a container never sees half of it.
    let partial = dir.with_extension(format!("partial-{}", &util::new_uuid()[..8]));
    std::fs::create_dir_all(&partial)?;
    for (pkg, _) in &image.config.pins {
        if let Some((_, lib)) = crate::dockerfile::host_version(libs, pkg) {
            std::os::unix::fs::symlink(lib.join(pkg), partial.join(pkg))?;
        }
    }
    if let Err(e) = std::fs::rename(&partial, &dir) {
        let _ = std::fs::remove_dir_all(&partial);
        if !dir.is_dir() {
            return Err(e);
        }
    }
    Ok(Some(dir))
}

/// The body as Azure stores and returns it: no secure values, no registry passwords.
fn public_body(body: &Value) -> Value {
    let mut out = body.clone();
    if let Some(containers) = out["properties"]["containers"].as_array_mut() {
        for c in containers {
            if let Some(vars) = c["properties"]["environmentVariables"].as_array_mut() {
                for v in vars {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("secureValue");
                    }
                }
            }
        }
    }
    if let Some(creds) = out["properties"]["imageRegistryCredentials"].as_array_mut() {
        for c in creds {
            if let Some(o) = c.as_object_mut() {
                o.remove("password");
            }
        }
    }
    out
}

/// PUT/GET/PATCH/DELETE `.../containerGroups/{name}`.
pub async fn container_group(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ArmResult {
    let r = resource_ref(req, rg, ty);
    let exists = req.inner.world().resources.contains_key(&r.key);
    match req.method {
        Method::GET => render(&req.inner, &r.key)
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(|| resource_not_found(rg, ty, &r.name)),
        Method::DELETE => {
            let Some(body) = render(&req.inner, &r.key) else {
                return Ok(empty_response(StatusCode::NO_CONTENT));
            };
            remove_group_runtime(&req.inner, &r.key).await;
            req.inner.world().resources.remove(&r.key);
            Ok(json_response(StatusCode::OK, &body))
        }
        Method::PATCH => {
            if !exists {
                return Err(resource_not_found(rg, ty, &r.name));
            }
            let body = req.json_body()?;
            if let Some(t) = tags_of(&body)? {
                if let Some(stored) = req.inner.world().resources.get_mut(&r.key) {
                    stored["tags"] = t;
                }
            }
            render(&req.inner, &r.key)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(|| resource_not_found(rg, ty, &r.name))
        }
        Method::PUT => put_group(req, rg, ty).await,
        _ => Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The HTTP method is not supported for container groups.",
        )),
    }
}

async fn put_group(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ArmResult {
    let r = resource_ref(req, rg, ty);
    if !valid_dns_label(&r.name) {
        return Err(ArmError::bad_request(
            "InvalidContainerGroupName",
            format!("The container group name '{}' is invalid. The container group name must contain no more than 63 characters and must match the regex '[a-z0-9]([-a-z0-9]*[a-z0-9])?' (e.g. 'my-name').", r.name),
        ));
    }
    // ContainerGroups_CreateOrUpdate's body is a ContainerGroup (see schema.rs).
    let body = req.checked_body("Microsoft.ContainerInstance/containerGroups")?;
    let location = required_location(&body)?;
    let tags = tags_of(&body)?;
    let drafts = validate(&body)?;
    let digest = sha256_hex(body.to_string().as_bytes());
    let existing = req.inner.world().resources.get(&r.key).cloned();
    let same = req
        .inner
        .world()
        .groups
        .get(&r.key)
        .is_some_and(|g| g.spec_digest == digest);
    if same {
        // Idempotent re-PUT: the running group is left alone.
        return render(&req.inner, &r.key)
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(|| resource_not_found(rg, ty, &r.name));
    }
    let identity = resolve_identity(
        &req.inner,
        &body["identity"],
        existing.as_ref().map(|e| &e["identity"]),
    )?;
    let mut specs = resolve_images(&req.inner, &r.name, &body, &identity, drafts)?;
    let spot = body["properties"]["priority"]
        .as_str()
        .is_some_and(|p| p.eq_ignore_ascii_case("spot"));
    if spot
        && req
            .inner
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decide_eviction()
    {
        for spec in &mut specs {
            spec.evict = true;
        }
    }
    if existing.is_some() {
        stop_processes(&req.inner, &r.key).await;
    }

    let mut stored = public_body(&body);
    let obj = stored.as_object_mut().ok_or_else(not_found_path)?;
    obj.insert("id".into(), json!(r.id));
    obj.insert("name".into(), json!(r.name));
    obj.insert("type".into(), json!(ty.full_name()));
    obj.insert("location".into(), json!(location));
    match tags {
        Some(t) => obj.insert("tags".into(), t),
        None => obj.remove("tags"),
    };
    if identity.is_null() {
        obj.remove("identity");
    } else {
        obj.insert("identity".into(), identity.clone());
    }
    let props = &mut stored["properties"];
    if props["restartPolicy"].is_null() {
        props["restartPolicy"] = json!("Always");
    }
    if props["sku"].is_null() {
        props["sku"] = json!("Standard");
    }
    let restart_policy = props["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_string();

    let identities = msi_identities(&req.inner, &identity);
    let generation = {
        let mut world = req.inner.world();
        if existing.is_none() {
            check_quota(
                &world,
                req.subscription_id(),
                &location,
                requested_cpu(&body),
                spot,
            )?;
        }
        let generation = world.groups.get(&r.key).map_or(1, |g| g.generation + 1);
        world.resources.insert(r.key.clone(), stored);
        world.groups.insert(
            r.key.clone(),
            GroupRuntime {
                generation,
                provisioning: "Pending",
                stopped: false,
                restart_policy,
                containers: specs.iter().map(|_| waiting()).collect(),
                specs,
                spec_digest: digest,
                identities,
                msi_secret: None,
                kill: None,
                tasks: Vec::new(),
            },
        );
        generation
    };
    let op_id = util::new_uuid();
    req.inner.world().operations.insert(
        op_id.clone(),
        Operation {
            kind: OperationKind::AciProvision {
                group_id: r.key.clone(),
                generation,
            },
            polls: 0,
            start_time: util::now_rfc3339(),
        },
    );
    spawn_provisioning(req.inner.clone(), r.key.clone(), generation);

    let body = render(&req.inner, &r.key).ok_or_else(not_found_path)?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut resp = json_response(status, &body);
    let url = format!(
        "{}/subscriptions/{}/providers/Microsoft.ContainerInstance/locations/{location}/operations/{op_id}?api-version={}",
        req.inner.https_base,
        req.subscription_id(),
        req.api_version
    );
    set_header(&mut resp, "azure-asyncoperation", &url);
    set_header(&mut resp, "retry-after", "1");
    Ok(resp)
}

/// What a subscription's container groups in one region use of its quota: how many
/// exist, and the vCPUs that regular-priority groups not yet ended request.
fn aci_usage(world: &crate::state::World, subscription: &str, location: &str) -> (u64, f64) {
    let prefix = format!("/subscriptions/{}/", subscription.to_ascii_lowercase());
    let mut groups = 0;
    let mut cores = 0.0;
    for (key, rt) in &world.groups {
        let Some(res) = world.resources.get(key) else {
            continue;
        };
        let here = res["location"]
            .as_str()
            .is_some_and(|l| l.eq_ignore_ascii_case(location));
        if !key.starts_with(&prefix) || !here {
            continue;
        }
        groups += 1;
        let spot = res["properties"]["priority"]
            .as_str()
            .is_some_and(|p| p.eq_ignore_ascii_case("spot"));
        if !spot && matches!(group_state(rt), "Pending" | "Running") {
            cores += requested_cpu(res);
        }
    }
    (groups, cores)
}

/// The vCPUs a group's containers request (`resources.requests.cpu`).
fn requested_cpu(group: &Value) -> f64 {
    group["properties"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["properties"]["resources"]["requests"]["cpu"].as_f64())
                .sum()
        })
        .unwrap_or(0.0)
}

/// A new group over the region's quota is refused, as ACI refuses it. The code and
/// message are from memory of ACI's quota errors (not in the swagger).
/// Checked under the same lock that stores the group, so creates at once cannot both
/// take the last room.
fn check_quota(
    world: &crate::state::World,
    subscription: &str,
    location: &str,
    cpu: f64,
    spot: bool,
) -> Result<(), ArmError> {
    let quota = world.aci_quota.unwrap_or_default();
    let (groups, cores) = aci_usage(world, subscription, location);
    let refuse = |what: &str, limit: String, usage: String, requested: String| {
        ArmError::new(
            StatusCode::CONFLICT,
            "ContainerGroupQuotaReached",
            format!(
                "Resource type 'Microsoft.ContainerInstance/containerGroups' has reached the quota '{what}' in region '{location}'. Limit: '{limit}', Usage: '{usage}', Requested: '{requested}'."
            ),
        )
    };
    if groups + 1 > quota.container_groups {
        return Err(refuse(
            "ContainerGroups",
            quota.container_groups.to_string(),
            groups.to_string(),
            "1".into(),
        ));
    }
    if !spot && cores + cpu > quota.standard_cores + 1e-9 {
        return Err(refuse(
            "StandardCores",
            quota.standard_cores.to_string(),
            cores.to_string(),
            cpu.to_string(),
        ));
    }
    Ok(())
}

/// `GET /subscriptions/{s}/providers/Microsoft.ContainerInstance/locations/{l}/usages`
/// (Location_ListUsage, Microsoft.ContainerInstance 2023-05-01): `UsageListResult`
/// with one `Usage` (unit, currentValue, limit, name.value/localizedValue) per quota.
pub fn usages(req: &ArmRequest, location: &str) -> ArmResult {
    let versions = crate::arm::resource_type("microsoft.containerinstance/containergroups")
        .map(|t| t.api_versions)
        .unwrap_or(&[]);
    check_api_version(
        req,
        "resource type 'Microsoft.ContainerInstance/locations/usages'",
        versions,
    )?;
    let world = req.inner.world();
    let quota = world.aci_quota.unwrap_or_default();
    let (groups, cores) = aci_usage(&world, req.subscription_id(), location);
    let usage = |name: &str, label: &str, current: f64, limit: f64| {
        json!({
            "id": format!("/subscriptions/{}/providers/Microsoft.ContainerInstance/locations/{location}/usages/{name}", req.subscription_id()),
            "unit": "Count",
            "currentValue": current,
            "limit": limit,
            "name": {"value": name, "localizedValue": label},
        })
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"value": [
            usage("ContainerGroups", "Container Groups", groups as f64, quota.container_groups as f64),
            usage("StandardCores", "Standard Cores", cores, quota.standard_cores),
        ]}),
    ))
}

/// The identities a group's containers may ask tokens for.
fn msi_identities(inner: &Inner, identity: &Value) -> Vec<MsiIdentity> {
    let mut out = Vec::new();
    if let Some(p) = identity["principalId"].as_str() {
        out.push(MsiIdentity {
            principal: Principal {
                tenant_id: inner.config.tenant_id.clone(),
                object_id: p.to_string(),
                app_id: util::new_uuid(),
            },
            resource_id: None,
        });
    }
    if let Some(users) = identity["userAssignedIdentities"].as_object() {
        for (id, u) in users {
            out.push(MsiIdentity {
                principal: Principal {
                    tenant_id: inner.config.tenant_id.clone(),
                    object_id: u["principalId"].as_str().unwrap_or_default().to_string(),
                    app_id: u["clientId"].as_str().unwrap_or_default().to_string(),
                },
                resource_id: Some(id.clone()),
            });
        }
    }
    out
}

/// After a short "pull", starts the containers and settles the provisioning state.
fn spawn_provisioning(inner: Arc<Inner>, key: String, generation: u64) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        start_containers(&inner, &key, generation);
    });
}

fn start_containers(inner: &Arc<Inner>, key: &str, generation: u64) {
    let (kill_tx, kill_rx) = watch::channel(false);
    let (specs, msi_env) = {
        let mut world = inner.world();
        let Some(rt) = world.groups.get_mut(key) else {
            return;
        };
        if rt.generation != generation {
            return;
        }
        rt.kill = Some(kill_tx);
        let msi_env = if rt.identities.is_empty() {
            None
        } else {
            let secret = util::new_secret();
            rt.msi_secret = Some(secret.clone());
            let ids = rt.identities.clone();
            world.msi_secrets.insert(secret.clone(), ids);
            Some(secret)
        };
        let specs = world
            .groups
            .get(key)
            .map(|g| g.specs.clone())
            .unwrap_or_default();
        (specs, msi_env)
    };
    let dir = inner.config.work_dir.join("containers").join(format!(
        "{}-{generation}-{}",
        sanitize(key),
        &util::new_uuid()[..8]
    ));
    let mut handles = Vec::new();
    for (index, spec) in specs.into_iter().enumerate() {
        let ctx = ContainerCtx {
            inner: inner.clone(),
            key: key.to_string(),
            generation,
            index,
            spec,
            dir: dir.clone(),
            msi_secret: msi_env.clone(),
        };
        handles.push(tokio::spawn(run_container(ctx, kill_rx.clone())));
    }
    let mut world = inner.world();
    if let Some(rt) = world.groups.get_mut(key) {
        if rt.generation == generation {
            rt.tasks.extend(handles);
            rt.provisioning = "Succeeded";
        }
    }
}

fn sanitize(key: &str) -> String {
    let tail: Vec<&str> = key.rsplit('/').take(1).collect();
    tail.concat()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct ContainerCtx {
    inner: Arc<Inner>,
    key: String,
    generation: u64,
    index: usize,
    spec: ContainerSpec,
    dir: PathBuf,
    msi_secret: Option<String>,
}

impl ContainerCtx {
    /// Applies `f` to this container's state if the group is still this generation.
    fn update(&self, f: impl FnOnce(&mut ContainerState)) {
        let mut world = self.inner.world();
        if let Some(rt) = world.groups.get_mut(&self.key) {
            if rt.generation == self.generation {
                if let Some(c) = rt.containers.get_mut(self.index) {
                    f(c);
                }
            }
        }
    }

    fn restart_policy(&self) -> String {
        self.inner
            .world()
            .groups
            .get(&self.key)
            .map(|g| g.restart_policy.to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// Runs one container: spawn, wait, record; restart as the policy says; die on kill.
async fn run_container(ctx: ContainerCtx, mut kill: watch::Receiver<bool>) {
    let cwd = ctx.dir.join(&ctx.spec.name);
    let log_path = ctx.dir.join(format!("{}.log", ctx.spec.name));
    let mut restarts = 0u32;
    loop {
        let started = spawn_process(&ctx, &cwd, &log_path, restarts > 0);
        let mut child = match started {
            Ok(child) => child,
            Err(e) => {
                let msg = format!("failed to start {:?}: {e}", ctx.spec.command);
                let _ = append_log(&log_path, &msg);
                let lp = log_path.clone();
                ctx.update(|c| {
                    c.state = "Terminated";
                    c.exit_code = Some(127);
                    c.start_time = Some(util::now_rfc3339());
                    c.finish_time = Some(util::now_rfc3339());
                    c.detail = format!("Error: {msg}");
                    c.log_path = Some(lp);
                });
                return;
            }
        };
        let pid = child.id().map(|p| p as i32);
        // The process leads its own group (see `spawn_process`).
        if let Some(pid) = pid {
            ctx.inner.reaper.watch_group(pid);
        }
        let lp = log_path.clone();
        ctx.update(|c| {
            c.state = "Running";
            c.start_time = Some(util::now_rfc3339());
            c.finish_time = None;
            c.exit_code = None;
            c.detail = String::new();
            c.log_path = Some(lp);
            c.pid = pid;
            c.restart_count = restarts;
        });
        let mut out_of_memory = false;
        let mut evicted = false;
        let (code, killed) = tokio::select! {
            // In this order, so that an eviction due now wins over the process's end.
            biased;
            _ = evict_when_running(ctx.spec.evict) => {
                // Azure takes a Spot group's capacity back: its processes are killed.
                kill_process_group(pid);
                let _ = child.start_kill();
                evicted = true;
                let _ = append_log(&log_path, &format!(
                    "serverless local Azure: Spot container '{}' was evicted", ctx.spec.name
                ));
                (exit_code(child.wait().await), false)
            }
            status = child.wait() => (exit_code(status), false),
            _ = wait_for_kill(&mut kill) => {
                kill_process_group(pid);
                let _ = child.start_kill();
                (exit_code(child.wait().await), true)
            }
            _ = memory_exceeded(pid, ctx.spec.memory_bytes) => {
                // As the kernel's OOM killer in an ACI container: SIGKILL, exit 137.
                kill_process_group(pid);
                let _ = child.start_kill();
                out_of_memory = true;
                let _ = append_log(&log_path, &format!(
                    "serverless local Azure: container '{}' exceeded its memory ({:.2} GB) and was killed",
                    ctx.spec.name,
                    ctx.spec.memory_bytes as f64 / 1024f64.powi(3)
                ));
                (exit_code(child.wait().await), false)
            }
        };
        // As in a container, the end of the main process ends every process in it.
        kill_process_group(pid);
        if let Some(pid) = pid {
            ctx.inner.reaper.forget_group(pid);
        }
        ctx.update(|c| {
            c.state = "Terminated";
            c.exit_code = Some(code);
            c.finish_time = Some(util::now_rfc3339());
            c.detail = if killed {
                "Killed".into()
            } else if out_of_memory {
                "OOMKilled".into()
            } else if evicted {
                "Evicted".into()
            } else if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            };
            c.pid = None;
        });
        let policy = ctx.restart_policy();
        let again = !killed && (policy == "always" || (policy == "onfailure" && code != 0));
        if !again {
            return;
        }
        // Back off like ACI does, and stop if killed meanwhile.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = wait_for_kill(&mut kill) => return,
        }
        restarts += 1;
    }
}

/// Returns at once for a container chosen for eviction (else never): it is evicted
/// as soon as it runs, so that no timing decides whether it finished first.
async fn evict_when_running(evict: bool) {
    if !evict {
        std::future::pending::<()>().await;
    }
}

/// How often a running container's memory is measured.
const MEMORY_SAMPLE: Duration = Duration::from_millis(200);

/// Returns once the processes of `pid`'s group together hold more than `limit`
/// bytes resident (never, where /proc is not there to measure).
async fn memory_exceeded(pid: Option<i32>, limit: u64) {
    let Some(pid) = pid.filter(|_| limit > 0 && cfg!(target_os = "linux")) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(MEMORY_SAMPLE).await;
        let rss = tokio::task::spawn_blocking(move || group_rss(pid))
            .await
            .unwrap_or(0);
        if rss > limit {
            return;
        }
    }
}

/// Resident bytes of every process whose process group is `pgid` (from /proc).
fn group_rss(pgid: i32) -> u64 {
    // `statm` counts pages.
    // SAFETY: sysconf(3) only reads a system constant.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(p) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, pgrp, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if rest
            .split_whitespace()
            .nth(2)
            .and_then(|g| g.parse::<i32>().ok())
            != Some(pgid)
        {
            continue;
        }
        if let Ok(statm) = std::fs::read_to_string(format!("/proc/{p}/statm")) {
            let resident = statm
                .split_whitespace()
                .nth(1)
                .and_then(|r| r.parse::<u64>().ok());
            total += resident.unwrap_or(0) * page;
        }
    }
    total
}

async fn wait_for_kill(kill: &mut watch::Receiver<bool>) {
    loop {
        if *kill.borrow() {
            return;
        }
        if kill.changed().await.is_err() {
            // Sender gone without a kill: never fire.
            std::future::pending::<()>().await;
        }
    }
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    match status {
        Ok(s) => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(sig) = s.signal() {
                    return 128 + sig;
                }
            }
            s.code().unwrap_or(-1)
        }
        Err(_) => -1,
    }
}

fn append_log(path: &PathBuf, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")
}

fn spawn_process(
    ctx: &ContainerCtx,
    cwd: &PathBuf,
    log_path: &PathBuf,
    append: bool,
) -> std::io::Result<tokio::process::Child> {
    std::fs::create_dir_all(cwd)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log_path)?;
    let log_err = log.try_clone()?;
    let argv = &ctx.spec.command;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true);
    for var in INHERITED_ENV {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    for (k, v) in &ctx.spec.env {
        cmd.env(k, v);
    }
    // ACI gives a container's identity through IMDS, not App Service's
    // IDENTITY_ENDPOINT; the host is the one thing local, so it is in the environment.
    if let Some(secret) = &ctx.msi_secret {
        cmd.env(
            "SERVERLESS_IMDS_ENDPOINT",
            format!("{}/{secret}", ctx.inner.identity_endpoint),
        );
    }
    // Own process group, so a kill reaches the children of `sh -c` too.
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.spawn()
}

fn kill_process_group(pid: Option<i32>) {
    #[cfg(unix)]
    if let Some(pid) = pid.filter(|p| *p > 0) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory
        // is touched.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// Kills a group's processes and waits for their tasks; forgets its managed identity.
async fn stop_processes(inner: &Arc<Inner>, key: &str) {
    let tasks = {
        let mut world = inner.world();
        let Some(rt) = world.groups.get_mut(key) else {
            return;
        };
        if let Some(kill) = rt.kill.take() {
            let _ = kill.send_replace(true);
        }
        let secret = rt.msi_secret.take();
        let tasks: Vec<JoinHandle<()>> = rt.tasks.drain(..).collect();
        if let Some(s) = secret {
            world.msi_secrets.remove(&s);
        }
        tasks
    };
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
}

/// Kills a group's processes and drops its runtime (delete, resource group delete).
pub async fn remove_group_runtime(inner: &Arc<Inner>, key: &str) {
    stop_processes(inner, key).await;
    inner.world().groups.remove(key);
}

/// Kills every container process and waits for them (shutdown).
pub async fn kill_all(inner: &Arc<Inner>) {
    let keys: Vec<String> = inner.world().groups.keys().cloned().collect();
    for k in keys {
        stop_processes(inner, &k).await;
    }
}

/// Best-effort synchronous kill of every container process (Drop).
pub fn kill_all_now(inner: &Inner) {
    let mut world = inner.world();
    for rt in world.groups.values_mut() {
        if let Some(kill) = rt.kill.take() {
            let _ = kill.send_replace(true);
        }
        for c in &rt.containers {
            kill_process_group(c.pid);
        }
    }
}

/// `POST .../containerGroups/{n}/{start|stop|restart}`
pub async fn action(req: &ArmRequest, rg: &str, ty: &ResourceType, action: &str) -> ArmResult {
    let r = resource_ref(req, rg, ty);
    if !req.inner.world().groups.contains_key(&r.key) {
        return Err(resource_not_found(rg, ty, &r.name));
    }
    match action {
        "stop" => {
            stop_processes(&req.inner, &r.key).await;
            if let Some(rt) = req.inner.world().groups.get_mut(&r.key) {
                rt.stopped = true;
            }
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        "start" | "restart" => {
            stop_processes(&req.inner, &r.key).await;
            let generation = {
                let mut world = req.inner.world();
                let Some(rt) = world.groups.get_mut(&r.key) else {
                    return Err(resource_not_found(rg, ty, &r.name));
                };
                rt.generation += 1;
                rt.stopped = false;
                rt.provisioning = "Pending";
                rt.containers = rt.specs.iter().map(|_| waiting()).collect();
                rt.generation
            };
            spawn_provisioning(req.inner.clone(), r.key.clone(), generation);
            if action == "restart" {
                return Ok(empty_response(StatusCode::NO_CONTENT));
            }
            let url = new_location_operation(req, 1, 200);
            let mut resp = empty_response(StatusCode::ACCEPTED);
            set_header(&mut resp, "location", &url);
            set_header(&mut resp, "retry-after", "1");
            Ok(resp)
        }
        _ => Err(not_found_path()),
    }
}

/// `GET .../containerGroups/{n}/containers/{c}/logs[?tail=N]`
pub async fn logs(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ArmResult {
    let r = resource_ref(req, rg, ty);
    let container = req.segs[9].clone();
    let path = {
        let world = req.inner.world();
        let Some(rt) = world.groups.get(&r.key) else {
            return Err(resource_not_found(rg, ty, &r.name));
        };
        let Some(i) = rt.specs.iter().position(|s| s.name == container) else {
            return Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "ContainerNotFound",
                format!(
                    "The container '{container}' is not found in container group '{}'.",
                    r.name
                ),
            ));
        };
        rt.containers[i].log_path.clone()
    };
    let mut content = match path {
        Some(p) => tokio::fs::read(&p)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
        None => String::new(),
    };
    if let Some(tail) = req.query("tail").and_then(|t| t.parse::<usize>().ok()) {
        let lines: Vec<&str> = content.lines().collect();
        let start = lines.len().saturating_sub(tail);
        let mut tailed = lines[start..].join("\n");
        if !tailed.is_empty() && content.ends_with('\n') {
            tailed.push('\n');
        }
        content = tailed;
    }
    // ACI returns at most 4 MB of log.
    const MAX: usize = 4 * 1024 * 1024;
    if content.len() > MAX {
        let mut cut = content.len() - MAX;
        while !content.is_char_boundary(cut) {
            cut += 1;
        }
        content = content[cut..].to_string();
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "content": content }),
    ))
}

/// `GET /subscriptions/{s}/providers/Microsoft.ContainerInstance/locations/{l}/operations/{id}`
pub fn async_operation(req: &ArmRequest, id: &str) -> ArmResult {
    let versions = crate::arm::resource_type("microsoft.containerinstance/containergroups")
        .map(|t| t.api_versions)
        .unwrap_or(&[]);
    check_api_version(
        req,
        "resource type 'Microsoft.ContainerInstance/operations'",
        versions,
    )?;
    let mut world = req.inner.world();
    let Some(op) = world.operations.get_mut(id) else {
        return Err(not_found_path());
    };
    op.polls += 1;
    let first_poll = op.polls == 1;
    let start_time = op.start_time.clone();
    let OperationKind::AciProvision {
        group_id,
        generation,
    } = &op.kind
    else {
        return Err(not_found_path());
    };
    let (group_id, generation) = (group_id.clone(), *generation);
    let status = match world.groups.get(&group_id) {
        _ if first_poll => "InProgress",
        None => "Canceled",
        Some(rt) if rt.generation != generation => "Canceled",
        Some(rt) if rt.provisioning == "Pending" => "InProgress",
        Some(rt) if rt.provisioning == "Failed" => "Failed",
        Some(_) => "Succeeded",
    };
    let mut body = json!({
        "id": format!("/subscriptions/{}/providers/Microsoft.ContainerInstance/locations/{}/operations/{id}", req.subscription_id(), req.segs[5]),
        "name": id,
        "status": status,
        "startTime": start_time,
    });
    if status != "InProgress" {
        body["endTime"] = json!(util::now_rfc3339());
    }
    if status == "Failed" {
        body["error"] = json!({"code": "ContainerGroupDeploymentFailed", "message": "The container group failed to provision."});
    }
    Ok(json_response(StatusCode::OK, &body))
}
