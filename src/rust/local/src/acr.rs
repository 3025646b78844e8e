//! Azure Container Registry beyond the plain resource: registry names, a data-plane
//! listener per registry (see [`crate::registry`]), and ACR Tasks quick builds
//! (source upload, `scheduleRun`, runs, their logs), whose images are recorded for
//! the registry's data plane and for container groups that pull them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::arm::{check_api_version, ArmError, ArmRequest, ArmResult, ResourceType};
use crate::dockerfile::{self, ImageConfig};
use crate::resources::{
    self, new_location_operation, required_location, resource_not_found, resource_ref, tags_of,
    ResourceRef,
};
use crate::state::Inner;
use crate::util::{self, empty_response, json_response, set_header};

/// ACR Tasks (runs, `scheduleRun`, source upload) exist in these api-versions only.
pub const TASKS_API_VERSIONS: &[&str] = &["2019-04-01", "2019-06-01-preview"];

/// `checkNameAvailability` api-versions.
const NAME_CHECK_API_VERSIONS: &[&str] = &["2019-05-01", "2023-07-01", "2025-04-01"];

/// The storage service version the SAS URLs claim.
const SAS_VERSION: &str = "2025-11-05";

/// How long a refresh token from `/oauth2/exchange` and an access token live.
pub const REFRESH_TOKEN_LIFETIME_S: i64 = 3 * 3600;
pub const ACCESS_TOKEN_LIFETIME_S: i64 = 75 * 60;

/// Delay between two chunks of a build log, so a polling client sees it grow.
const STEP_DELAY: Duration = Duration::from_millis(120);

/// A SAS the emulator issued: its query fields and when it expires.
#[derive(Clone)]
pub struct Sas {
    sp: &'static str,
    se: String,
    sig: String,
    expires: i64,
}

impl Sas {
    fn new(sp: &'static str) -> Sas {
        let expires = util::now_epoch() + 3600;
        let se = OffsetDateTime::from_unix_timestamp(expires)
            .map(util::rfc3339)
            .unwrap_or_default();
        use base64::Engine;
        let sig = base64::engine::general_purpose::STANDARD.encode(util::random_bytes::<32>());
        Sas {
            sp,
            se,
            sig,
            expires,
        }
    }

    fn query(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("sv", SAS_VERSION)
            .append_pair("se", &self.se)
            .append_pair("sr", "b")
            .append_pair("sp", self.sp)
            .append_pair("sig", &self.sig)
            .finish()
    }

    /// Like a real SAS, every signed field must come back unchanged: the signature
    /// covers them all.
    fn matches(&self, query: &[(String, String)]) -> bool {
        let get = |k| util::form_get(query, k);
        get("sig") == Some(self.sig.as_str())
            && get("sv") == Some(SAS_VERSION)
            && get("se") == Some(self.se.as_str())
            && get("sr") == Some("b")
            && get("sp") == Some(self.sp)
    }
}

/// An issued source upload slot (`listBuildSourceUploadUrl`).
pub struct Upload {
    sas: Sas,
    data: Option<Bytes>,
}

/// One ACR Tasks run.
pub struct Run {
    pub id: String,
    pub status: &'static str,
    create_time: String,
    start_time: Option<String>,
    finish_time: Option<String>,
    started: Option<Instant>,
    architecture: String,
    cpu: u64,
    timeout: u64,
    output_images: Vec<Value>,
    log: String,
    log_sas: Vec<Sas>,
}

fn is_terminal(status: &str) -> bool {
    matches!(
        status,
        "Succeeded" | "Failed" | "Canceled" | "Error" | "Timeout"
    )
}

/// An image in a registry: what a build recorded.
pub struct Image {
    pub digest: String,
    pub manifest: Vec<u8>,
    pub config_digest: String,
    pub config_blob: Vec<u8>,
    pub config: ImageConfig,
}

/// What a registry's data plane hands out.
pub struct RefreshGrant {
    pub expires: i64,
}

pub struct AccessGrant {
    /// `(type, name, actions)`, e.g. `("repository", "app", ["pull"])`.
    pub scopes: Vec<(String, String, Vec<String>)>,
    pub expires: i64,
}

/// The live side of a registry.
pub struct RegistryRuntime {
    /// As created (the resource's `name`).
    pub name: String,
    pub id: String,
    /// `127.0.0.1:PORT` of its data-plane listener.
    pub login_server: String,
    shutdown: watch::Sender<bool>,
    listener: Option<JoinHandle<()>>,
    uploads: HashMap<String, Upload>,
    pub runs: Vec<Run>,
    next_run: u64,
    /// repository -> tag -> image.
    pub images: BTreeMap<String, BTreeMap<String, Arc<Image>>>,
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    pub access_tokens: HashMap<String, AccessGrant>,
}

/// The login server of a registry (by lowercased id) that has a listener.
pub fn login_server(inner: &Inner, key: &str) -> Option<String> {
    inner
        .world()
        .registries
        .get(key)
        .map(|r| r.login_server.clone())
}

/// Is `name` used by a registry other than `except` (a lowercased id), or taken by
/// "another tenant" (`Config::taken_registry_names`)?
fn name_taken(inner: &Inner, name: &str, except: Option<&str>) -> bool {
    if inner
        .config
        .taken_registry_names
        .iter()
        .any(|t| t.eq_ignore_ascii_case(name))
    {
        return true;
    }
    inner.world().resources.iter().any(|(k, v)| {
        v["type"] == "Microsoft.ContainerRegistry/registries"
            && v["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && Some(k.as_str()) != except
    })
}

/// `POST /subscriptions/{s}/providers/Microsoft.ContainerRegistry/checkNameAvailability`
pub fn check_name(req: &ArmRequest) -> ArmResult {
    check_api_version(
        req,
        "resource type 'Microsoft.ContainerRegistry/checkNameAvailability'",
        NAME_CHECK_API_VERSIONS,
    )?;
    if req
        .inner
        .world()
        .unregistered
        .contains("microsoft.containerregistry")
    {
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "MissingSubscriptionRegistration",
            "The subscription is not registered to use namespace 'Microsoft.ContainerRegistry'. See https://aka.ms/rps-not-found for how to register subscriptions.",
        ));
    }
    let body = req.json_body()?;
    let Some(name) = body["name"].as_str() else {
        return Err(ArmError::missing("name"));
    };
    match body["type"].as_str() {
        None => return Err(ArmError::missing("type")),
        Some(t) if !t.eq_ignore_ascii_case("Microsoft.ContainerRegistry/registries") => {
            return Err(ArmError::invalid(
                "type",
                format!("The resource type '{t}' is not valid here. Use 'Microsoft.ContainerRegistry/registries'."),
            ))
        }
        _ => {}
    }
    let reply = if !resources::valid_registry_name(name) {
        json!({
            "nameAvailable": false,
            "reason": "Invalid",
            "message": "The registry name must be between 5 and 50 characters and contain only alphanumeric characters.",
        })
    } else if name_taken(&req.inner, name, None) {
        json!({
            "nameAvailable": false,
            "reason": "AlreadyExists",
            "message": format!("The registry {name} is already in use."),
        })
    } else {
        json!({ "nameAvailable": true })
    };
    Ok(json_response(StatusCode::OK, &reply))
}

/// PUT/GET/PATCH/DELETE `.../registries/{name}`: the plain resource, plus its
/// data-plane listener.
pub async fn registry(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ArmResult {
    let r = resource_ref(req, rg, ty);
    match req.method {
        Method::PUT => {
            // Everything that can refuse the PUT is checked before a listener starts.
            // Registries_Create's body is a Registry (see schema.rs).
            let body = req.checked_body("Microsoft.ContainerRegistry/registries")?;
            required_location(&body)?;
            tags_of(&body)?;
            resources::validate_registry(&r.name, &body)?;
            if name_taken(&req.inner, &r.name, Some(&r.key)) {
                // The emulator's choice of code and message: clients are expected to
                // ask checkNameAvailability first.
                return Err(ArmError::new(
                    StatusCode::CONFLICT,
                    "AlreadyInUse",
                    format!("The registry {} is already in use.", r.name),
                ));
            }
            ensure_runtime(&req.inner, &r).await?;
            resources::simple_resource(req, rg, ty)
        }
        Method::DELETE => {
            let resp = resources::simple_resource(req, rg, ty)?;
            remove_runtime(&req.inner, &r.key).await;
            Ok(resp)
        }
        _ => resources::simple_resource(req, rg, ty),
    }
}

/// Starts the registry's data-plane listener unless it runs already.
async fn ensure_runtime(inner: &Arc<Inner>, r: &ResourceRef) -> Result<(), ArmError> {
    if inner.world().registries.contains_key(&r.key) {
        return Ok(());
    }
    let internal = |e: std::io::Error| {
        ArmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            format!("The local Azure could not start the registry's listener: {e}"),
        )
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(internal)?;
    let port = listener.local_addr().map_err(internal)?.port();
    let login_server = format!("127.0.0.1:{port}");
    let (tx, rx) = watch::channel(false);
    let mut world = inner.world();
    if world.registries.contains_key(&r.key) {
        // A concurrent PUT won; this listener is dropped unused.
        return Ok(());
    }
    let app = crate::registry::router(inner.clone(), r.key.clone(), login_server.clone());
    let handle = tokio::spawn(crate::server::accept_loop(
        listener,
        Some(inner.tls.clone()),
        app,
        inner.clone(),
        rx,
        false,
    ));
    world.registries.insert(
        r.key.clone(),
        RegistryRuntime {
            name: r.name.clone(),
            id: r.id.clone(),
            login_server,
            shutdown: tx,
            listener: Some(handle),
            uploads: HashMap::new(),
            runs: Vec::new(),
            next_run: 0,
            images: BTreeMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
        },
    );
    Ok(())
}

async fn stop(mut rt: RegistryRuntime) {
    let _ = rt.shutdown.send_replace(true);
    if let Some(h) = rt.listener.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }
}

/// Stops a registry's listener and forgets its uploads, runs and images.
pub async fn remove_runtime(inner: &Inner, key: &str) {
    let rt = inner.world().registries.remove(key);
    if let Some(rt) = rt {
        stop(rt).await;
    }
}

/// Same for every registry whose id starts with `prefix` (a deleted resource group).
pub async fn remove_runtimes_under(inner: &Inner, prefix: &str) {
    let gone: Vec<RegistryRuntime> = {
        let mut world = inner.world();
        let keys: Vec<String> = world
            .registries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.iter()
            .filter_map(|k| world.registries.remove(k))
            .collect()
    };
    for rt in gone {
        stop(rt).await;
    }
}

/// Shutdown: stops every registry listener and waits for them.
pub async fn stop_all(inner: &Inner) {
    remove_runtimes_under(inner, "").await;
}

/// Drop: tells every registry listener to stop.
pub fn stop_all_now(inner: &Inner) {
    for rt in inner.world().registries.values() {
        let _ = rt.shutdown.send_replace(true);
    }
}

/// The registry resource and its runtime must both exist.
fn existing_registry(
    req: &ArmRequest,
    rg: &str,
    ty: &ResourceType,
) -> Result<ResourceRef, ArmError> {
    let r = resource_ref(req, rg, ty);
    let world = req.inner.world();
    if !world.resources.contains_key(&r.key) || !world.registries.contains_key(&r.key) {
        return Err(resource_not_found(rg, ty, &r.name));
    }
    Ok(r)
}

fn compact_timestamp(t: OffsetDateTime) -> String {
    t.format(time::macros::format_description!(
        "[year][month][day][hour][minute][second]"
    ))
    .unwrap_or_default()
}

fn log_timestamp() -> String {
    OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]/[month]/[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default()
}

/// `POST .../registries/{r}/listBuildSourceUploadUrl`
pub fn upload_url(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ArmResult {
    let r = existing_registry(req, rg, ty)?;
    let relative = format!(
        "source/{}/{}.tar.gz",
        compact_timestamp(OffsetDateTime::now_utc()),
        util::new_uuid()
    );
    let sas = Sas::new("cw");
    let url = format!(
        "{}/_acr/source/{}/{relative}?{}",
        req.inner.https_base,
        r.name.to_ascii_lowercase(),
        sas.query()
    );
    if let Some(rt) = req.inner.world().registries.get_mut(&r.key) {
        rt.uploads
            .insert(relative.clone(), Upload { sas, data: None });
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "uploadUrl": url, "relativePath": relative }),
    ))
}

/// What a build task needs, taken from the `scheduleRun` request.
struct Job {
    source: Bytes,
    dockerfile_path: String,
    /// `(repository, tag)`
    images: Vec<(String, String)>,
    push: bool,
    build_args: Vec<(String, String)>,
    target: Option<String>,
}

/// `repo[:tag]` with `{{.Run.ID}}` filled in; the tag defaults to `latest` as in Docker.
fn parse_image_name(name: &str, run_id: &str) -> Result<(String, String), ArmError> {
    let name = name.replace("{{.Run.ID}}", run_id);
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (name.clone(), "latest".to_string()),
    };
    if !dockerfile::valid_repository(&repo) {
        return Err(ArmError::invalid(
            "imageNames",
            format!("The image name '{name}' is invalid: the repository must be lowercase letters, digits and separators ('.', '_', '__', '-', '/'), without the registry."),
        ));
    }
    if !dockerfile::valid_tag(&tag) {
        return Err(ArmError::invalid(
            "imageNames",
            format!("The image name '{name}' is invalid: a tag is 1-128 of [A-Za-z0-9_.-] and does not start with '.' or '-'."),
        ));
    }
    Ok((repo, tag))
}

/// `POST .../registries/{r}/scheduleRun` with a `DockerBuildRequest`.
pub fn schedule_run(req: &ArmRequest, rg: &str, ty: &ResourceType) -> ArmResult {
    let r = existing_registry(req, rg, ty)?;
    // Registries_ScheduleRun's body is a RunRequest (see schema.rs).
    let body = req.checked_body("Microsoft.ContainerRegistry/registries/scheduleRun")?;
    match body["type"].as_str() {
        None => return Err(ArmError::missing("type")),
        Some("DockerBuildRequest") => {}
        Some(t) => {
            return Err(ArmError::bad_request(
                "LocalAzureUnsupportedRunRequest",
                format!("The local Azure supports only DockerBuildRequest runs (quick builds); '{t}' is not supported."),
            )
            .with_target("type"))
        }
    }
    let Some(source) = body["sourceLocation"].as_str() else {
        return Err(ArmError::missing("sourceLocation"));
    };
    let dockerfile_path = match &body["dockerFilePath"] {
        Value::Null => "Dockerfile".to_string(),
        Value::String(p)
            if !p.trim().is_empty() && !p.starts_with('/') && !p.split('/').any(|s| s == "..") =>
        {
            p.clone()
        }
        _ => {
            return Err(ArmError::invalid(
                "dockerFilePath",
                "'dockerFilePath' must be a relative path inside the build context.",
            ))
        }
    };
    let names: Vec<&str> = match body["imageNames"].as_array() {
        None => return Err(ArmError::missing("imageNames")),
        Some(a) if a.is_empty() => {
            return Err(ArmError::invalid(
                "imageNames",
                "'imageNames' must name at least one image (repository:tag).",
            ))
        }
        Some(a) => {
            if !a.iter().all(Value::is_string) {
                return Err(ArmError::invalid(
                    "imageNames",
                    "'imageNames' must be strings.",
                ));
            }
            a.iter().filter_map(Value::as_str).collect()
        }
    };
    let platform = &body["platform"];
    let os = match platform["os"].as_str() {
        None => return Err(ArmError::missing("platform.os")),
        Some(os) => os,
    };
    match os.to_ascii_lowercase().as_str() {
        "linux" => {}
        "windows" => {
            return Err(ArmError::invalid(
                "platform.os",
                "The local Azure builds Linux images only.",
            ))
        }
        _ => {
            return Err(ArmError::invalid(
                "platform.os",
                format!(
                    "The value '{os}' of 'platform.os' is not valid. Use 'Linux' or 'Windows'."
                ),
            ))
        }
    }
    let architecture = match platform["architecture"].as_str() {
        None => "amd64".to_string(),
        Some(a) if ["amd64", "x86", "386", "arm", "arm64"].contains(&a.to_ascii_lowercase().as_str()) => {
            a.to_ascii_lowercase()
        }
        Some(a) => {
            return Err(ArmError::invalid(
                "platform.architecture",
                format!("The value '{a}' of 'platform.architecture' is not valid. Use amd64, x86, 386, arm or arm64."),
            ))
        }
    };
    let flag = |field: &str, default: bool| match &body[field] {
        Value::Null => Ok(default),
        Value::Bool(b) => Ok(*b),
        _ => Err(ArmError::invalid(
            field,
            format!("'{field}' must be a boolean."),
        )),
    };
    let push = flag("isPushEnabled", true)?;
    flag("noCache", false)?;
    let timeout = match &body["timeout"] {
        Value::Null => 3600,
        v => match v.as_u64() {
            Some(t) if (300..=28800).contains(&t) => t,
            _ => {
                return Err(ArmError::invalid(
                    "timeout",
                    "'timeout' must be a number of seconds between 300 and 28800.",
                ))
            }
        },
    };
    let cpu = body["agentConfiguration"]["cpu"].as_u64().unwrap_or(2);
    let mut build_args = Vec::new();
    if let Some(args) = body["arguments"].as_array() {
        for (i, a) in args.iter().enumerate() {
            let Some(name) = a["name"].as_str() else {
                return Err(ArmError::missing(&format!("arguments[{i}].name")));
            };
            let Some(value) = a["value"].as_str() else {
                return Err(ArmError::missing(&format!("arguments[{i}].value")));
            };
            build_args.push((name.to_string(), value.to_string()));
        }
    } else if !body["arguments"].is_null() {
        return Err(ArmError::invalid(
            "arguments",
            "'arguments' must be an array.",
        ));
    }
    let target = match &body["target"] {
        Value::Null => None,
        Value::String(t) => Some(t.clone()),
        _ => return Err(ArmError::invalid("target", "'target' must be a string.")),
    };

    let mut world = req.inner.world();
    let Some(rt) = world.registries.get_mut(&r.key) else {
        return Err(resource_not_found(rg, ty, &r.name));
    };
    let Some(data) = rt.uploads.get(source).and_then(|u| u.data.clone()) else {
        return Err(ArmError::bad_request(
            "InvalidSourceLocation",
            format!("The source location '{source}' is not a build context uploaded to registry '{}'. Upload a tar.gz to the URL from listBuildSourceUploadUrl and pass its relativePath (the local Azure does not fetch Git or remote sources).", r.name),
        )
        .with_target("sourceLocation"));
    };
    let run_id = format!("cb{}", rt.next_run + 1);
    let images = names
        .iter()
        .map(|n| parse_image_name(n, &run_id))
        .collect::<Result<Vec<_>, _>>()?;
    rt.next_run += 1;
    let run = Run {
        id: run_id.clone(),
        status: "Queued",
        create_time: util::now_rfc3339(),
        start_time: None,
        finish_time: None,
        started: None,
        architecture,
        cpu,
        timeout,
        output_images: Vec::new(),
        log: String::new(),
        log_sas: Vec::new(),
    };
    let rendered = run_json(&rt.id, &run);
    rt.runs.push(run);
    drop(world);
    let job = Job {
        source: data,
        dockerfile_path,
        images,
        push,
        build_args,
        target,
    };
    tokio::spawn(execute(req.inner.clone(), r.key.clone(), run_id, job));
    Ok(json_response(StatusCode::OK, &rendered))
}

fn run_json(registry_id: &str, run: &Run) -> Value {
    let mut props = json!({
        "runId": run.id,
        "status": run.status,
        "lastUpdatedTime": util::now_rfc3339(),
        "runType": "QuickBuild",
        "createTime": run.create_time,
        "provisioningState": "Succeeded",
        "isArchiveEnabled": false,
        "platform": {"os": "linux", "architecture": run.architecture},
        "agentConfiguration": {"cpu": run.cpu},
        "timeout": run.timeout,
    });
    if let Some(t) = &run.start_time {
        props["startTime"] = json!(t);
    }
    if let Some(t) = &run.finish_time {
        props["finishTime"] = json!(t);
    }
    if run.status == "Succeeded" && !run.output_images.is_empty() {
        props["outputImages"] = json!(run.output_images);
    }
    json!({
        "id": format!("{registry_id}/runs/{}", run.id),
        "type": "Microsoft.ContainerRegistry/registries/runs",
        "name": run.id,
        "properties": props,
    })
}

/// Applies `f` to the run while it is not finished; false when it is gone or over
/// (canceled, registry deleted), which stops the build.
fn with_run(inner: &Inner, key: &str, run_id: &str, f: impl FnOnce(&mut Run)) -> bool {
    let mut world = inner.world();
    let Some(run) = world
        .registries
        .get_mut(key)
        .and_then(|rt| rt.runs.iter_mut().find(|r| r.id == run_id))
    else {
        return false;
    };
    if is_terminal(run.status) {
        return false;
    }
    f(run);
    true
}

/// Appends lines to the run's log, then waits a little (the log grows step by step).
async fn emit(inner: &Inner, key: &str, run_id: &str, lines: &[String]) -> bool {
    let ok = with_run(inner, key, run_id, |run| {
        for l in lines {
            run.log.push_str(l);
            run.log.push('\n');
        }
    });
    if ok {
        tokio::time::sleep(STEP_DELAY).await;
    }
    ok
}

fn elapsed_s(run: &Run) -> u64 {
    run.started
        .map(|s| s.elapsed().as_secs_f64().round() as u64)
        .unwrap_or(0)
        .max(1)
}

/// Ends the run (unless it ended already, e.g. canceled).
fn finish(inner: &Inner, key: &str, run_id: &str, status: &'static str, outputs: Vec<Value>) {
    with_run(inner, key, run_id, |run| {
        let after = elapsed_s(run);
        let line = if status == "Succeeded" {
            format!("\nRun ID: {run_id} was successful after {after}s\n")
        } else {
            format!("\nRun ID: {run_id} failed after {after}s. Error: failed during run, err: exit status 1\n")
        };
        run.log.push_str(&line);
        run.status = status;
        run.finish_time = Some(util::now_rfc3339());
        run.output_images = outputs;
    });
}

fn failure_lines() -> Vec<String> {
    vec![
        format!(
            "{} Container failed during run: build. No retries remaining.",
            log_timestamp()
        ),
        "failed to run step ID: build: exit status 1".to_string(),
    ]
}

/// The OCI config blob and manifest of a built image; returns the image.
fn make_image(config: &ImageConfig, architecture: &str, run_id: &str) -> Image {
    let created = util::now_rfc3339();
    let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let labels: serde_json::Map<String, Value> = config
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let ports: serde_json::Map<String, Value> = config
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    let config_json = json!({
        "created": created,
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": env,
            "Entrypoint": config.entrypoint,
            "Cmd": config.cmd,
            "Labels": labels,
            "User": config.user.clone().unwrap_or_default(),
            "WorkingDir": config.workdir.clone().unwrap_or_default(),
            "ExposedPorts": ports,
        },
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created": created, "created_by": format!("local Azure quick build {run_id}")}],
    });
    let config_blob = serde_json::to_vec(&config_json).unwrap_or_default();
    let config_digest = format!("sha256:{}", sha256_hex(&config_blob));
    let pins: Vec<String> = config
        .pins
        .iter()
        .map(|(p, v)| format!("{p}=={v}"))
        .collect();
    let mut annotations = labels.clone();
    annotations.insert("org.opencontainers.image.created".into(), json!(created));
    if let Some(base) = config.base_images.last() {
        annotations.insert("org.opencontainers.image.base.name".into(), json!(base));
    }
    annotations.insert(
        "io.serverless.local.r-packages".into(),
        json!(pins.join(" ")),
    );
    annotations.insert("io.serverless.local.run-id".into(), json!(run_id));
    let manifest_json = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_blob.len(),
        },
        "layers": [],
        "annotations": annotations,
    });
    let manifest = serde_json::to_vec(&manifest_json).unwrap_or_default();
    Image {
        digest: format!("sha256:{}", sha256_hex(&manifest)),
        manifest,
        config_digest,
        config_blob,
        config: config.clone(),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The dependency report ACR prints at the end of a run.
fn dependencies(
    login_server: &str,
    images: &[(String, String)],
    digest: &str,
    bases: &[String],
) -> Vec<String> {
    let mut out = vec![format!(
        "{} The following dependencies were found:",
        log_timestamp()
    )];
    for (repo, tag) in images {
        out.push("- image:".into());
        out.push(format!("    registry: {login_server}"));
        out.push(format!("    repository: {repo}"));
        out.push(format!("    tag: {tag}"));
        out.push(format!("    digest: {digest}"));
        for base in bases {
            if let Ok(b) = dockerfile::parse_reference(base) {
                let registry = b
                    .registry
                    .unwrap_or_else(|| "registry.hub.docker.com".into());
                let repository =
                    if registry == "registry.hub.docker.com" && !b.repository.contains('/') {
                        format!("library/{}", b.repository)
                    } else {
                        b.repository
                    };
                out.push("  runtime-dependency:".into());
                out.push(format!("    registry: {registry}"));
                out.push(format!("    repository: {repository}"));
                out.push(format!(
                    "    tag: {}",
                    b.tag.unwrap_or_else(|| "latest".into())
                ));
                if let Some(d) = b.digest {
                    out.push(format!("    digest: {d}"));
                }
            }
        }
        out.push("  git: {}".into());
    }
    out
}

/// The build task: Queued -> Running -> Succeeded/Failed, the log growing as it goes.
async fn execute(inner: Arc<Inner>, key: String, run_id: String, job: Job) {
    // An agent picks the run up.
    tokio::time::sleep(STEP_DELAY).await;
    let Some((login_server, architecture, timeout)) = ({
        let mut world = inner.world();
        world.registries.get_mut(&key).and_then(|rt| {
            let ls = rt.login_server.clone();
            let run = rt.runs.iter_mut().find(|r| r.id == run_id)?;
            if is_terminal(run.status) {
                return None;
            }
            run.status = "Running";
            run.start_time = Some(util::now_rfc3339());
            run.started = Some(Instant::now());
            Some((ls, run.architecture.clone(), run.timeout))
        })
    }) else {
        return;
    };
    let ts = log_timestamp;
    let go = |lines: Vec<String>| {
        let inner = inner.clone();
        let key = key.clone();
        let run_id = run_id.clone();
        async move { emit(&inner, &key, &run_id, &lines).await }
    };
    if !go(vec![format!("{} Downloading source code...", ts())]).await {
        return;
    }
    if !go(vec![
        format!("{} Finished downloading source code", ts()),
        format!("{} Setting up Docker configuration...", ts()),
        format!("{} Successfully set up Docker configuration", ts()),
        format!("{} Logging in to registry: {login_server}", ts()),
        format!("{} Successfully logged into {login_server}", ts()),
        format!(
            "{} Executing step ID: build. Timeout(sec): {timeout}, Working directory: '', Network: ''",
            ts()
        ),
        format!("{} Scanning for dependencies...", ts()),
    ])
    .await
    {
        return;
    }
    let build_started = Instant::now();
    let libs = inner.config.r_library_paths.clone();
    // What this registry holds, for FROMs of its own images.
    let own_images: HashMap<(String, String), ImageConfig> = inner
        .world()
        .registries
        .get(&key)
        .map(|rt| {
            rt.images
                .iter()
                .flat_map(|(repo, tags)| {
                    tags.iter()
                        .map(move |(tag, img)| ((repo.clone(), tag.clone()), img.config.clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    let own_registry = login_server.clone();
    let Job {
        source,
        dockerfile_path,
        images,
        push,
        build_args,
        target,
    } = job;
    let built = tokio::task::spawn_blocking(move || {
        dockerfile::build(&dockerfile::BuildInput {
            context: &source,
            dockerfile_path: &dockerfile_path,
            build_args: &build_args,
            target: target.as_deref(),
            r_library_paths: &libs,
            own_registry: Some(&own_registry),
            own_images: &own_images,
        })
    })
    .await;
    let built = match built {
        Ok(b) => b,
        Err(e) => dockerfile::Build {
            scan_error: Some(vec![format!("the build failed: {e}")]),
            ..dockerfile::Build::default()
        },
    };
    if let Some(lines) = built.scan_error {
        let mut lines = lines;
        lines.extend(failure_lines());
        if go(lines).await {
            finish(&inner, &key, &run_id, "Failed", Vec::new());
        }
        return;
    }
    if !go(vec![
        format!("{} Successfully scanned dependencies", ts()),
        format!("{} Launching container with name: build", ts()),
    ])
    .await
    {
        return;
    }
    for chunk in built.steps {
        if !go(chunk).await {
            return;
        }
    }
    let Some(config) = built.image else {
        if go(failure_lines()).await {
            finish(&inner, &key, &run_id, "Failed", Vec::new());
        }
        return;
    };
    let image = Arc::new(make_image(&config, &architecture, &run_id));
    let mut lines = vec![format!(
        "Successfully built {}",
        &image.config_digest[7..19]
    )];
    for (repo, tag) in &images {
        lines.push(format!("Successfully tagged {login_server}/{repo}:{tag}"));
    }
    lines.push(format!("{} Successfully executed container: build", ts()));
    if !go(lines).await {
        return;
    }
    let build_elapsed = build_started.elapsed().as_secs_f64();
    let push_started = Instant::now();
    let mut outputs = Vec::new();
    if push {
        if !go(vec![format!(
            "{} Executing step ID: push. Timeout(sec): 3600, Working directory: '', Network: ''",
            ts()
        )])
        .await
        {
            return;
        }
        for (repo, tag) in &images {
            let reference = format!("{login_server}/{repo}:{tag}");
            let pushed = with_run(&inner, &key, &run_id, |_| {});
            if !pushed {
                return;
            }
            if let Some(rt) = inner.world().registries.get_mut(&key) {
                // A rebuild of a tag replaces it.
                rt.images
                    .entry(repo.clone())
                    .or_default()
                    .insert(tag.clone(), image.clone());
            }
            let lines = vec![
                format!("{} Pushing image: {reference}, attempt 1", ts()),
                format!("The push refers to repository [{login_server}/{repo}]"),
                format!(
                    "{tag}: digest: {} size: {}",
                    image.digest,
                    image.manifest.len()
                ),
                format!("{} Successfully pushed image: {reference}", ts()),
            ];
            if !go(lines).await {
                return;
            }
            outputs.push(json!({
                "registry": login_server,
                "repository": repo,
                "tag": tag,
                "digest": image.digest,
            }));
        }
    }
    let mut lines = vec![
        format!(
            "{} Step ID: build marked as successful (elapsed time in seconds: {build_elapsed:.6})",
            ts()
        ),
        format!("{} Populating digests for step ID: build...", ts()),
        format!("{} Successfully populated digests for step ID: build", ts()),
    ];
    if push {
        lines.push(format!(
            "{} Step ID: push marked as successful (elapsed time in seconds: {:.6})",
            ts(),
            push_started.elapsed().as_secs_f64()
        ));
    }
    lines.extend(dependencies(
        &login_server,
        &images,
        &image.digest,
        &config.base_images,
    ));
    if go(lines).await {
        finish(&inner, &key, &run_id, "Succeeded", outputs);
    }
}

fn run_not_found(r: &ResourceRef, rg: &str, run_id: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.ContainerRegistry/registries/{}/runs/{run_id}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            r.name
        ),
    )
}

/// `GET .../registries/{r}/runs[/{runId}]`, `POST .../runs/{runId}/{listLogSasUrl|cancel}`
pub fn runs(
    req: &ArmRequest,
    rg: &str,
    ty: &ResourceType,
    run_id: Option<&str>,
    action: Option<&str>,
) -> ArmResult {
    let r = existing_registry(req, rg, ty)?;
    let mut world = req.inner.world();
    let Some(rt) = world.registries.get_mut(&r.key) else {
        return Err(resource_not_found(rg, ty, &r.name));
    };
    let Some(run_id) = run_id else {
        let mut value: Vec<Value> = rt
            .runs
            .iter()
            .rev()
            .map(|run| run_json(&rt.id, run))
            .collect();
        if let Some(top) = req.query("$top").and_then(|t| t.parse::<usize>().ok()) {
            value.truncate(top);
        }
        return Ok(json_response(StatusCode::OK, &json!({ "value": value })));
    };
    let registry_name = rt.name.to_ascii_lowercase();
    let registry_id = rt.id.clone();
    let Some(run) = rt
        .runs
        .iter_mut()
        .find(|x| x.id.eq_ignore_ascii_case(run_id))
    else {
        return Err(run_not_found(&r, rg, run_id));
    };
    match action {
        None => Ok(json_response(StatusCode::OK, &run_json(&registry_id, run))),
        Some("listlogsasurl") => {
            let sas = Sas::new("r");
            let link = format!(
                "{}/_acr/logs/{registry_name}/{}?{}",
                req.inner.https_base,
                run.id,
                sas.query()
            );
            run.log_sas.push(sas);
            Ok(json_response(StatusCode::OK, &json!({ "logLink": link })))
        }
        Some("cancel") => {
            if !is_terminal(run.status) {
                let after = elapsed_s(run);
                run.log.push_str(&format!(
                    "\nRun ID: {} was canceled after {after}s\n",
                    run.id
                ));
                run.status = "Canceled";
                run.finish_time = Some(util::now_rfc3339());
            }
            drop(world);
            let url = new_location_operation(req, 0, 200);
            let mut resp = empty_response(StatusCode::ACCEPTED);
            set_header(&mut resp, "location", &url);
            Ok(resp)
        }
        Some(_) => Err(crate::arm::not_found_path()),
    }
}

/// A Blob-service style XML error.
fn blob_error(status: StatusCode, code: &str, message: &str, extra: &str) -> Response<Body> {
    let request_id = util::new_uuid();
    let body = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{message}\nRequestId:{request_id}\nTime:{}</Message>{extra}</Error>",
        util::now_rfc3339()
    );
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    set_header(&mut resp, "content-type", "application/xml");
    set_header(&mut resp, "x-ms-error-code", code);
    set_header(&mut resp, "x-ms-version", SAS_VERSION);
    resp
}

fn auth_failed(detail: &str) -> Response<Body> {
    blob_error(
        StatusCode::FORBIDDEN,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
        &format!("<AuthenticationErrorDetail>{detail}</AuthenticationErrorDetail>"),
    )
}

/// Checks a SAS against those issued for the blob: the refusal, if any.
fn sas_refusal(issued: &[&Sas], query: &[(String, String)]) -> Option<Response<Body>> {
    if util::form_get(query, "sig").is_none() {
        return Some(auth_failed("Signature fields not well formed."));
    }
    let Some(sas) = issued.iter().find(|s| s.matches(query)) else {
        return Some(auth_failed("Signature did not match."));
    };
    if sas.expires <= util::now_epoch() {
        return Some(auth_failed(&format!(
            "Signed expiry time [{}] must be after signed start time [{}]",
            sas.se,
            util::now_rfc3339()
        )));
    }
    None
}

fn http_date() -> String {
    OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default()
}

/// The blob-style endpoints on the main HTTPS listener, authorised by their SAS:
/// `PUT /_acr/source/{registry}/{relativePath}` (build context upload) and
/// `GET /_acr/logs/{registry}/{runId}` (run log, `Range: bytes=N-` honoured).
pub async fn blob(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let query = util::parse_form(uri.query().unwrap_or_default().as_bytes());
    let path = uri.path().trim_start_matches("/_acr/");
    let Some((kind, rest)) = path.split_once('/') else {
        return blob_error(
            StatusCode::BAD_REQUEST,
            "InvalidUri",
            "The requested URI does not represent any resource on the server.",
            "",
        );
    };
    let Some((registry, blob_name)) = rest.split_once('/') else {
        return blob_error(
            StatusCode::BAD_REQUEST,
            "InvalidUri",
            "The requested URI does not represent any resource on the server.",
            "",
        );
    };
    let mut world = inner.world();
    let Some(rt) = world
        .registries
        .values_mut()
        .find(|r| r.name.eq_ignore_ascii_case(registry))
    else {
        return blob_error(
            StatusCode::NOT_FOUND,
            "ContainerNotFound",
            "The specified container does not exist.",
            "",
        );
    };
    match (kind, &method) {
        ("source", &Method::PUT) => {
            let Some(upload) = rt.uploads.get_mut(blob_name) else {
                return auth_failed("Signature did not match.");
            };
            if let Some(resp) = sas_refusal(&[&upload.sas], &query) {
                return resp;
            }
            match headers.get("x-ms-blob-type").and_then(|v| v.to_str().ok()) {
                None => {
                    return blob_error(
                        StatusCode::BAD_REQUEST,
                        "MissingRequiredHeader",
                        "An HTTP header that's mandatory for this request is not specified.",
                        "<HeaderName>x-ms-blob-type</HeaderName>",
                    )
                }
                Some("BlockBlob") => {}
                Some(other) => {
                    return blob_error(
                        StatusCode::BAD_REQUEST,
                        "InvalidHeaderValue",
                        "The value for one of the HTTP headers is not in the correct format.",
                        &format!(
                        "<HeaderName>x-ms-blob-type</HeaderName><HeaderValue>{other}</HeaderValue>"
                    ),
                    )
                }
            }
            upload.data = Some(body);
            drop(world);
            let mut resp = empty_response(StatusCode::CREATED);
            let etag = format!(
                "\"0x{}\"",
                sha256_hex(&util::random_bytes::<8>())[..15].to_ascii_uppercase()
            );
            set_header(&mut resp, "etag", &etag);
            set_header(&mut resp, "last-modified", &http_date());
            set_header(&mut resp, "x-ms-version", SAS_VERSION);
            set_header(&mut resp, "x-ms-request-server-encrypted", "true");
            resp
        }
        ("logs", &Method::GET) | ("logs", &Method::HEAD) => {
            let Some(run) = rt.runs.iter().find(|r| r.id == blob_name) else {
                return blob_error(
                    StatusCode::NOT_FOUND,
                    "BlobNotFound",
                    "The specified blob does not exist.",
                    "",
                );
            };
            let issued: Vec<&Sas> = run.log_sas.iter().collect();
            if let Some(resp) = sas_refusal(&issued, &query) {
                return resp;
            }
            let log = run.log.clone().into_bytes();
            let complete = match run.status {
                "Succeeded" => Some("successful"),
                "Failed" | "Error" | "Timeout" => Some("failed"),
                "Canceled" => Some("canceled"),
                _ => None,
            };
            drop(world);
            log_response(&headers, log, complete)
        }
        _ => blob_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedHttpVerb",
            "The resource doesn't support specified Http Verb.",
            "",
        ),
    }
}

/// The log as an append blob: whole (200) or from `bytes=N-` (206, 416 past the end).
fn log_response(headers: &HeaderMap, log: Vec<u8>, complete: Option<&str>) -> Response<Body> {
    let len = log.len();
    let range = headers
        .get("x-ms-range")
        .or_else(|| headers.get("range"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (status, body, content_range) = match range {
        None => (StatusCode::OK, log, None),
        Some(r) => {
            let parsed = r.strip_prefix("bytes=").and_then(|spec| {
                let (a, b) = spec.split_once('-')?;
                let start: usize = a.trim().parse().ok()?;
                let end: Option<usize> = match b.trim() {
                    "" => None,
                    e => Some(e.parse().ok()?),
                };
                Some((start, end))
            });
            let Some((start, end)) = parsed else {
                return blob_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidHeaderValue",
                    "The value for one of the HTTP headers is not in the correct format.",
                    "<HeaderName>Range</HeaderName>",
                );
            };
            if start >= len || end.is_some_and(|e| e < start) {
                let mut resp = blob_error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                    "",
                );
                set_header(&mut resp, "content-range", &format!("bytes */{len}"));
                return resp;
            }
            let last = end.map_or(len - 1, |e| e.min(len - 1));
            (
                StatusCode::PARTIAL_CONTENT,
                log[start..=last].to_vec(),
                Some(format!("bytes {start}-{last}/{len}")),
            )
        }
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    set_header(&mut resp, "content-type", "text/plain; charset=utf-8");
    set_header(&mut resp, "accept-ranges", "bytes");
    set_header(&mut resp, "x-ms-blob-type", "AppendBlob");
    set_header(&mut resp, "x-ms-version", SAS_VERSION);
    set_header(&mut resp, "last-modified", &http_date());
    if let Some(c) = content_range {
        set_header(&mut resp, "content-range", &c);
    }
    // `az acr` watches this metadata to know that a log is complete.
    if let Some(c) = complete {
        set_header(&mut resp, "x-ms-meta-complete", c);
    }
    resp
}
