//! extendr bindings for serveRless. Converts R values to core types and back, owns the
//! tokio runtime and the job handles; speaks no HTTP itself.
//!
//! Every function returns `list(ok = TRUE, value =)` or `list(ok = FALSE, error =)`
//! (see `convert.rs`); long ones return a job handle that R polls (see `job.rs`).

mod convert;
mod job;
mod table;

use convert::{error_to_robj, from_robj, result_to_robj, robj_result, robj_to_json};
use extendr_api::prelude::*;
use job::{Job, Poll};
use serde_json::{json, Value};
use serverless_core::aci::{self, GroupSpec};
use serverless_core::arm::ArmClient;
use serverless_core::auth::{self, CredentialSpec, Endpoints};
use serverless_core::blob::{split_path, Storage, StorageConfig, UploadOptions};
use serverless_core::logic::schedule;
use serverless_core::{cost, deploy, score, store, Error};
use std::path::PathBuf;
use std::time::Duration;

/// Run a binding body; a panic becomes an internal-error result, never panic text.
/// (extendr's panic hook, registered in entrypoint.c, keeps the report itself quiet.)
/// Check string arguments at the boundary (`convert::text`): a bad one returns its
/// error as the binding's result.
macro_rules! text {
    ($($arg:ident),+) => {
        $(
            let $arg = match convert::text(&$arg, stringify!($arg)) {
                Ok(s) => s,
                Err(e) => return error_to_robj(&e),
            };
        )+
    };
}

fn guard(body: impl FnOnce() -> Robj + std::panic::UnwindSafe) -> Robj {
    std::panic::catch_unwind(body).unwrap_or_else(|_| {
        error_to_robj(&Error::internal(
            "internal error in serveRless (this is a bug; please report it)",
        ))
    })
}

fn storage_from(config: &Robj) -> Result<Storage, Error> {
    let config: StorageConfig = from_robj(config, "storage configuration")?;
    Storage::new(config, None)
}

/// Start a job from a fallible setup (parsed before any network call) and its work.
fn start<Fut>(
    setup: Result<Storage, Error>,
    work: impl FnOnce(Storage, std::sync::Arc<serverless_core::Progress>) -> Fut,
) -> Robj
where
    Fut: std::future::Future<Output = Result<Value, Error>> + Send + 'static,
{
    let job = match setup {
        Ok(storage) => Job::spawn(|progress| work(storage, progress)),
        Err(e) => Job::done(Err(e)),
    };
    ExternalPtr::new(job).into()
}

fn to_value<T: serde::Serialize>(x: T) -> Result<Value, Error> {
    serde_json::to_value(x).map_err(|e| Error::internal(format!("cannot encode a result: {e}")))
}

/// Poll a job for up to `wait_ms` milliseconds.
/// @noRd
#[extendr]
fn job_poll(job: Robj, wait_ms: i32) -> Robj {
    guard(move || {
        let Ok(job) = ExternalPtr::<Job>::try_from(job) else {
            return error_to_robj(&Error::internal("not a serveRless job handle"));
        };
        let notices = job.progress().take_notices();
        let steps = job.progress().take_steps();
        let log = job.progress().take_log();
        let progress = job.progress().snapshot();
        let state = job.poll(Duration::from_millis(wait_ms.max(0) as u64));
        let progress = list!(
            done = progress.done as f64,
            total = progress.total as f64,
            status = progress.status,
            notices = notices,
            steps = steps,
            log = log
        );
        match state {
            Poll::Running => list!(finished = false, progress = progress).into(),
            Poll::Done(result) => list!(
                finished = true,
                progress = progress,
                result = result_to_robj(result)
            )
            .into(),
        }
    })
}

/// Cancel a running job.
/// @noRd
#[extendr]
fn job_cancel(job: Robj) -> Robj {
    guard(move || {
        if let Ok(job) = ExternalPtr::<Job>::try_from(job) {
            job.cancel();
        }
        Robj::from(())
    })
}

/// Check a model name against the naming rule (no network).
/// @noRd
#[extendr]
fn rs_check_model_name(name: Robj) -> Robj {
    text!(name);
    let name = name.to_string();
    guard(move || result_to_robj(store::check_model_name(&name).map(|_| Value::Null)))
}

/// Check a `container/path` blob path (no network).
/// @noRd
#[extendr]
fn rs_check_blob_path(path: Robj) -> Robj {
    text!(path);
    let path = path.to_string();
    guard(move || {
        result_to_robj(split_path(&path).map(|(c, b)| json!({"container": c, "blob": b})))
    })
}

/// @noRd
#[extendr]
fn rs_ensure_container(storage: Robj, container: Robj) -> Robj {
    text!(container);
    let container = container.to_string();
    guard(move || {
        start(storage_from(&storage), move |s, _| async move {
            s.ensure_container(&container).await.map(|_| Value::Null)
        })
    })
}

/// @noRd
#[extendr]
fn rs_blob_upload(storage: Robj, file: Robj, path: Robj, overwrite: bool) -> Robj {
    text!(file, path);
    let (file, path) = (PathBuf::from(file), path.to_string());
    guard(move || {
        start(storage_from(&storage), move |s, progress| async move {
            let (container, blob) = split_path(&path)?;
            let options = UploadOptions {
                if_none_match: !overwrite,
                ..Default::default()
            };
            to_value(
                s.upload_file(&file, container, blob, &options, &progress)
                    .await?,
            )
        })
    })
}

/// @noRd
#[extendr]
fn rs_blob_download(storage: Robj, path: Robj, file: Robj) -> Robj {
    text!(path, file);
    let (file, path) = (PathBuf::from(file), path.to_string());
    guard(move || {
        start(storage_from(&storage), move |s, progress| async move {
            let (container, blob) = split_path(&path)?;
            to_value(
                s.download_file(container, blob, &file, None, &Default::default(), &progress)
                    .await?,
            )
        })
    })
}

/// What shard `shard` of `shards` of one blob reads: a CSV's header and byte range
/// cut at line ends, or a Parquet file's footer and row groups (a sparse file).
/// @noRd
#[extendr]
fn rs_blob_download_share(
    storage: Robj,
    path: Robj,
    file: Robj,
    format: Robj,
    shard: i32,
    shards: i32,
) -> Robj {
    text!(path, file, format);
    let (file, path, format) = (PathBuf::from(file), path.to_string(), format.to_string());
    guard(move || {
        start(storage_from(&storage), move |s, progress| async move {
            let (container, blob) = split_path(&path)?;
            let (shard, shards) = (u64::try_from(shard), u64::try_from(shards));
            let (Ok(shard), Ok(shards)) = (shard, shards) else {
                return Err(Error::input("`shard` and `shards` must be positive"));
            };
            let options = Default::default();
            let share = match format.as_str() {
                "csv" => {
                    s.download_csv_share(container, blob, &file, shard, shards, &options, &progress)
                        .await?
                }
                "parquet" => {
                    s.download_parquet_share(
                        container, blob, &file, shard, shards, &options, &progress,
                    )
                    .await?
                }
                other => {
                    return Err(Error::input(format!(
                        "a {other} file cannot be read in parts"
                    )))
                }
            };
            to_value(share)
        })
    })
}

/// @noRd
#[extendr]
fn rs_blob_list(storage: Robj, container: Robj, prefix: Robj) -> Robj {
    text!(container, prefix);
    let (container, prefix) = (container.to_string(), prefix.to_string());
    guard(move || {
        start(storage_from(&storage), move |s, _| async move {
            to_value(s.list(&container, &prefix).await?)
        })
    })
}

/// Fails unless the container exists.
/// @noRd
#[extendr]
fn rs_check_container(storage: Robj, container: Robj) -> Robj {
    text!(container);
    guard(move || {
        start(storage_from(&storage), move |s, _| async move {
            s.check_container(&container).await.map(|_| Value::Null)
        })
    })
}

/// @noRd
#[extendr]
fn rs_blob_delete(storage: Robj, path: Robj) -> Robj {
    text!(path);
    let path = path.to_string();
    guard(move || {
        start(storage_from(&storage), move |s, _| async move {
            let (container, blob) = split_path(&path)?;
            s.delete(container, blob).await.map(|_| Value::Null)
        })
    })
}

/// @noRd
#[extendr]
fn rs_store_model(storage: Robj, container: Robj, name: Robj, file: Robj, meta: Robj) -> Robj {
    text!(container, name, file);
    let (container, name, file) = (container.to_string(), name.to_string(), PathBuf::from(file));
    let meta = robj_to_json(&meta);
    guard(move || {
        start(storage_from(&storage), move |s, progress| async move {
            to_value(
                s.store_model(&container, &name, &file, meta?, &progress)
                    .await?,
            )
        })
    })
}

/// @noRd
#[extendr]
fn rs_model_versions(storage: Robj, container: Robj, name: Robj) -> Robj {
    text!(container, name);
    let (container, name) = (container.to_string(), name.to_string());
    guard(move || {
        start(storage_from(&storage), move |s, _| async move {
            to_value(s.model_versions(&container, &name).await?)
        })
    })
}

/// @noRd
#[extendr]
fn rs_load_model(storage: Robj, container: Robj, name: Robj, version: Robj, dest: Robj) -> Robj {
    text!(container, name, version, dest);
    let (container, name, version, dest) = (
        container.to_string(),
        name.to_string(),
        version.to_string(),
        PathBuf::from(dest),
    );
    guard(move || {
        start(storage_from(&storage), move |s, progress| async move {
            to_value(
                s.load_model(&container, &name, &version, &dest, &progress)
                    .await?,
            )
        })
    })
}

/// Read a CSV or Parquet file into a named list of vectors: the rows of shard
/// `shard` of `shards` (1-based; 1 of 1 is the whole file). `hint` is NULL or a
/// named character vector of column types, used for CSV.
/// @noRd
#[extendr]
fn rs_read_table(path: Robj, format: Robj, hint: Robj, shard: i32, shards: i32) -> Robj {
    text!(path, format);
    let (path, format) = (path.to_string(), format.to_string());
    guard(move || robj_result(table::read(&path, &format, &hint, shard, shards)))
}

/// Write a named list of atomic vectors to a CSV or Parquet file.
/// @noRd
#[extendr]
fn rs_write_table(columns: Robj, path: Robj, format: Robj) -> Robj {
    text!(path, format);
    let (path, format) = (path.to_string(), format.to_string());
    guard(move || result_to_robj(table::write(&columns, &path, &format)))
}

/// A reader of a file's shard in chunks of about `chunk_bytes`: an external pointer
/// for `rs_table_next()`. CSV files are read whole (their shards are downloaded as
/// files); Parquet files by shard `shard` of `shards` (1-based).
/// @noRd
#[extendr]
fn rs_table_chunks(
    path: Robj,
    format: Robj,
    hint: Robj,
    shard: i32,
    shards: i32,
    chunk_bytes: f64,
) -> Robj {
    text!(path, format);
    guard(move || {
        robj_result(
            table::Chunks::open(&path, &format, &hint, shard, shards, chunk_bytes)
                .map(|c| ExternalPtr::new(std::sync::Mutex::new(c)).into()),
        )
    })
}

/// The next chunk of a reader from `rs_table_chunks()` as a named list, or NULL
/// after the last.
/// @noRd
#[extendr]
fn rs_table_next(chunks: Robj) -> Robj {
    guard(move || {
        let Ok(chunks) = ExternalPtr::<std::sync::Mutex<table::Chunks>>::try_from(chunks) else {
            return error_to_robj(&Error::input(
                "not a table reader (or one restored from a file)",
            ));
        };
        let mut chunks = match chunks.lock() {
            Ok(c) => c,
            Err(_) => return error_to_robj(&Error::internal("a table reader failed earlier")),
        };
        robj_result(chunks.next_chunk())
    })
}

/// A writer of a CSV or Parquet file, chunk by chunk: an external pointer for
/// `rs_table_write()` and `rs_table_finish()`.
/// @noRd
#[extendr]
fn rs_table_writer(path: Robj, format: Robj) -> Robj {
    text!(path, format);
    guard(move || {
        robj_result(
            table::TableWriter::create(&path, &format)
                .map(|w| ExternalPtr::new(std::sync::Mutex::new(w)).into()),
        )
    })
}

/// Append a chunk (a named list of atomic vectors) to a table writer; with
/// `finish = TRUE` instead close the file: its rows and bytes.
/// @noRd
#[extendr]
fn rs_table_write(writer: Robj, columns: Robj, finish: bool) -> Robj {
    guard(move || {
        let Ok(writer) = ExternalPtr::<std::sync::Mutex<table::TableWriter>>::try_from(writer)
        else {
            return error_to_robj(&Error::input(
                "not a table writer (or one restored from a file)",
            ));
        };
        let mut writer = match writer.lock() {
            Ok(w) => w,
            Err(_) => return error_to_robj(&Error::internal("a table writer failed earlier")),
        };
        match finish {
            true => result_to_robj(writer.finish()),
            false => result_to_robj(writer.write(&columns).map(|_| Value::Null)),
        }
    })
}

/// How to reach ARM: endpoints plus a credential, as R describes them.
#[derive(serde::Deserialize)]
struct ArmConfig {
    #[serde(default)]
    endpoints: Endpoints,
    credential: CredentialSpec,
}

fn arm_config(config: &Robj) -> Result<ArmConfig, Error> {
    from_robj(config, "Azure configuration")
}

fn arm_client(
    config: &ArmConfig,
    progress: &serverless_core::Progress,
) -> Result<ArmClient, Error> {
    let cred = auth::credential(&config.credential, &config.endpoints, progress.notices())?;
    ArmClient::new(&config.endpoints, cred)
}

/// Start a job that needs no storage (ARM, identity).
fn start_job<Fut>(work: impl FnOnce(std::sync::Arc<serverless_core::Progress>) -> Fut) -> Robj
where
    Fut: std::future::Future<Output = Result<Value, Error>> + Send + 'static,
{
    ExternalPtr::new(Job::spawn(work)).into()
}

/// Get a token for `scope`; returns what it is like, never the token itself.
/// @noRd
#[extendr]
fn rs_token_info(config: Robj, scope: Robj) -> Robj {
    text!(scope);
    let scope = scope.to_string();
    guard(move || {
        let config = arm_config(&config);
        start_job(move |progress| async move {
            let config = config?;
            let cred = auth::credential(&config.credential, &config.endpoints, progress.notices())?;
            let token = auth::token(cred.as_ref(), &scope).await?;
            let claims = auth::jwt_claims(token.token.secret());
            Ok(json!({
                "scope": scope,
                "expires_on": token.expires_on.unix_timestamp(),
                "audience": claims.as_ref().and_then(|c| c.get("aud").cloned()),
                "tenant": claims.as_ref().and_then(|c| c.get("tid").cloned()),
                "length": token.token.secret().len(),
            }))
        })
    })
}

/// Run a container group to completion, collect its logs, delete it.
/// @noRd
#[extendr]
fn rs_aci_run(config: Robj, spec: Robj, timeout_s: f64) -> Robj {
    let spec: Result<GroupSpec, Error> = from_robj(&spec, "container group");
    guard(move || {
        let config = arm_config(&config);
        start_job(move |progress| async move {
            let (config, spec) = (config?, spec?);
            spec.validate()?;
            let arm = arm_client(&config, &progress)?;
            progress.begin(format!("running container group {}", spec.name), 0);
            aci::ensure_resource_group(
                &arm,
                &spec.subscription,
                &spec.resource_group,
                &spec.location,
                &spec.tags,
            )
            .await?;
            let results =
                aci::run_group(&arm, &spec, Duration::from_secs_f64(timeout_s.max(1.0))).await?;
            to_value(results)
        })
    })
}

/// The sha256 of a file (no network).
/// @noRd
#[extendr]
fn rs_file_sha256(path: Robj) -> Robj {
    text!(path);
    let path = PathBuf::from(path);
    guard(move || result_to_robj(serverless_core::templates::file_sha256(&path).map(Value::String)))
}

/// Parse JSON text into R lists and vectors (the package has no JSON dependency).
/// @noRd
#[extendr]
fn rs_json_parse(text: Robj) -> Robj {
    text!(text);
    let text = text.to_string();
    guard(move || {
        result_to_robj(
            serde_json::from_str::<Value>(&text)
                .map_err(|e| Error::input(format!("not valid JSON: {e}"))),
        )
    })
}

/// Format R lists and vectors as pretty JSON text.
/// @noRd
#[extendr]
fn rs_json_format(x: Robj) -> Robj {
    let value = robj_to_json(&x);
    guard(move || {
        result_to_robj(value.and_then(|value| {
            serde_json::to_string_pretty(&value)
                .map(Value::String)
                .map_err(|e| Error::internal(format!("cannot format JSON: {e}")))
        }))
    })
}

/// Deploy a model: store it, make sure its runtime image exists, record it. The
/// request is validated before any network call.
/// @noRd
#[extendr]
fn rs_deploy_model(storage: Robj, config: Robj, request: Robj) -> Robj {
    let request: Result<deploy::DeployRequest, Error> = from_robj(&request, "deployment request");
    guard(move || {
        let storage = storage_from(&storage);
        let config = arm_config(&config);
        start_job(move |progress| async move {
            let (storage, config, request) = (storage?, config?, request?);
            let arm = arm_client(&config, &progress)?;
            to_value(deploy::deploy(&storage, &arm, &request, &progress).await?)
        })
    })
}

/// The deployment record of a model, or NULL.
/// @noRd
#[extendr]
fn rs_get_deployment(storage: Robj, container: Robj, name: Robj) -> Robj {
    text!(container, name);
    let (container, name) = (container.to_string(), name.to_string());
    guard(move || {
        start(storage_from(&storage), move |s, _| async move {
            to_value(deploy::get_deployment(&s, &container, &name).await?)
        })
    })
}

fn arm_shared(
    config: &ArmConfig,
    progress: &serverless_core::Progress,
) -> Result<std::sync::Arc<ArmClient>, Error> {
    arm_client(config, progress).map(std::sync::Arc::new)
}

/// Start a scoring run (one container group per shard) and, with `wait`, follow it
/// to the end. Returns the shards' states.
/// @noRd
#[extendr]
fn rs_score_run(config: Robj, request: Robj, wait: bool, keep: bool, timeout_s: f64) -> Robj {
    let request: Result<score::RunRequest, Error> = from_robj(&request, "scoring run");
    guard(move || {
        let config = arm_config(&config);
        start_job(move |progress| async move {
            let (config, request) = (config?, request?);
            let arm = arm_shared(&config, &progress)?;
            let timeout = Duration::from_secs_f64(timeout_s.max(1.0));
            to_value(score::run(arm, &request, wait, keep, timeout, &progress).await?)
        })
    })
}

/// Groups to run at once by default: 10, or fewer when the region's Container
/// Instances quota has less room. Returns `list(max_parallel, reason)`.
/// @noRd
#[extendr]
fn rs_score_default_parallel(
    config: Robj,
    subscription: &str,
    location: &str,
    cpu: f64,
    spot: bool,
) -> Robj {
    let (subscription, location) = (subscription.to_string(), location.to_string());
    guard(move || {
        let config = arm_config(&config);
        start_job(move |progress| async move {
            let arm = arm_client(&config?, &progress)?;
            let (at_once, reason) =
                score::default_parallel(&arm, &subscription, &location, cpu, spot).await;
            Ok(serde_json::json!({"max_parallel": at_once, "reason": reason}))
        })
    })
}

/// One step of a run: refresh its shards; finished ones have their logs collected
/// and groups deleted (unless `keep`), retryable failures are queued again, and queued
/// shards start while there is room.
/// @noRd
#[extendr]
fn rs_score_status(config: Robj, request: Robj, shards: Robj, keep: bool) -> Robj {
    let request: Result<score::RunRequest, Error> = from_robj(&request, "scoring run");
    let shards: Result<Vec<score::ShardState>, Error> = from_robj(&shards, "run state");
    guard(move || {
        let config = arm_config(&config);
        start_job(move |progress| async move {
            let (config, request, shards) = (config?, request?, shards?);
            let arm = arm_shared(&config, &progress)?;
            to_value(score::advance(&arm, &request, &shards, keep).await?)
        })
    })
}

/// GET a Resource Manager path (for listings in diagnostics and tests).
/// @noRd
#[extendr]
fn rs_arm_get(config: Robj, path: Robj, api_version: Robj) -> Robj {
    text!(path, api_version);
    let (path, api_version) = (path.to_string(), api_version.to_string());
    guard(move || {
        let config = arm_config(&config);
        start_job(move |progress| async move {
            let config = config?;
            let arm = arm_client(&config, &progress)?;
            arm.get(&path, &api_version).await
        })
    })
}

/// Price a scoring workload (no network): `request` is a `cost::CostRequest`,
/// `prices` a `cost::Prices`.
/// @noRd
#[extendr]
fn rs_cost_estimate(request: Robj, prices: Robj) -> Robj {
    let parsed = from_robj::<cost::CostRequest>(&request, "cost request").and_then(|r| {
        let p = from_robj::<cost::Prices>(&prices, "price table")?;
        Ok((r, p))
    });
    guard(move || {
        result_to_robj(
            parsed
                .and_then(|(r, p)| cost::estimate(&r, &p))
                .and_then(to_value),
        )
    })
}

/// The built-in price table for a region (no network).
/// @noRd
#[extendr]
fn rs_builtin_prices(region: Robj) -> Robj {
    text!(region);
    let region = region.to_string();
    guard(move || result_to_robj(cost::builtin_prices(&region).and_then(to_value)))
}

/// Fetch a region's prices from the Retail Prices API at `endpoint` (trusting the
/// local Azure's CA when `endpoints` carries one).
/// @noRd
#[extendr]
fn rs_fetch_prices(endpoints: Robj, endpoint: Robj, region: Robj) -> Robj {
    text!(endpoint, region);
    let endpoints = from_robj::<Endpoints>(&endpoints, "endpoints");
    let (endpoint, region) = (endpoint.to_string(), region.to_string());
    guard(move || {
        start_job(move |_progress| async move {
            let http = endpoints?.http_client()?;
            to_value(cost::fetch_prices(&http, &endpoint, &region).await?)
        })
    })
}

/// A cron line as the Recurrence of a Logic App trigger (no network).
/// @noRd
#[extendr]
fn rs_cron_recurrence(cron: Robj, time_zone: Robj) -> Robj {
    text!(cron, time_zone);
    let (cron, time_zone) = (cron.to_string(), time_zone.to_string());
    guard(move || {
        result_to_robj(
            serverless_core::logic::cron_to_recurrence(&cron, &time_zone).and_then(to_value),
        )
    })
}

fn schedule_request(request: &Robj) -> Result<schedule::ScheduleRequest, Error> {
    from_robj(request, "schedule")
}

/// Render a schedule's workflow without any network call (for dry runs and cost).
/// @noRd
#[extendr]
fn rs_schedule_render(request: Robj) -> Robj {
    let request = schedule_request(&request);
    guard(move || result_to_robj(request.and_then(|r| schedule::render(&r, "Enabled"))))
}

/// Create or update a schedule's workflow (or plan it, with `dry_run`).
/// @noRd
#[extendr]
fn rs_schedule_apply(config: Robj, request: Robj) -> Robj {
    let request = schedule_request(&request);
    guard(move || {
        let config = arm_config(&config);
        start_job(move |progress| async move {
            let (config, request) = (config?, request?);
            let arm = arm_client(&config, &progress)?;
            to_value(schedule::apply(&arm, &request, &progress).await?)
        })
    })
}

/// One operation on an existing schedule's workflow: `trigger` (returns the new run's
/// name), `runs`, `run`, `enable`, `disable`, `delete`.
/// @noRd
#[extendr]
fn rs_schedule_call(config: Robj, workflow: Robj, op: Robj, arg: Robj) -> Robj {
    text!(workflow, op, arg);
    let (workflow, op, arg) = (workflow.to_string(), op.to_string(), arg.to_string());
    guard(move || {
        let config = arm_config(&config);
        start_job(move |progress| async move {
            let config = config?;
            let arm = arm_client(&config, &progress)?;
            match op.as_str() {
                "trigger" => to_value(schedule::trigger_now(&arm, &workflow, &arg).await?),
                "runs" => {
                    to_value(schedule::runs(&arm, &workflow, arg.parse().unwrap_or(50)).await?)
                }
                "run" => schedule::run(&arm, &workflow, &arg).await,
                "enable" | "disable" => {
                    schedule::set_enabled(&arm, &workflow, op == "enable").await?;
                    Ok(Value::Null)
                }
                "delete" => to_value(schedule::delete(&arm, &workflow).await?),
                other => Err(Error::internal(format!(
                    "unknown schedule operation {other}"
                ))),
            }
        })
    })
}

/// Delete everything in the resource group tagged for a deployment.
/// @noRd
#[extendr]
fn rs_undeploy(config: Robj, subscription: Robj, resource_group: Robj, deployment: Robj) -> Robj {
    text!(subscription, resource_group, deployment);
    let (sub, rg, dep) = (
        subscription.to_string(),
        resource_group.to_string(),
        deployment.to_string(),
    );
    guard(move || {
        let config = arm_config(&config);
        start_job(move |progress| async move {
            let config = config?;
            let arm = arm_client(&config, &progress)?;
            to_value(schedule::undeploy(&arm, &sub, &rg, &dep, &progress).await?)
        })
    })
}

/// The local Azure's control-plane emulator, held by R in the target.
struct LocalHandle(std::sync::Mutex<Option<serverless_local::LocalAzure>>);

/// Start the control-plane emulator on the runtime; returns its endpoints and the
/// emulated tenant's service principal.
/// @noRd
#[extendr]
fn rs_local_start(config: Robj) -> Robj {
    guard(move || {
        let cfg = match robj_to_json(&config) {
            Ok(cfg) => cfg,
            Err(e) => return error_to_robj(&e),
        };
        let Some(work_dir) = cfg.get("work_dir").and_then(Value::as_str) else {
            return error_to_robj(&Error::input("work_dir is required"));
        };
        let mut config = serverless_local::Config::new(work_dir);
        let strings = |key: &str| -> Vec<String> {
            cfg.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        config.taken_registry_names = strings("taken_registry_names");
        config.r_library_paths = strings("r_library_paths")
            .into_iter()
            .map(PathBuf::from)
            .collect();
        config.r_bin_dir = cfg
            .get("r_bin_dir")
            .and_then(Value::as_str)
            .map(PathBuf::from);

        let rt = match job::runtime() {
            Ok(rt) => rt,
            Err(e) => return error_to_robj(&e),
        };
        match rt.block_on(serverless_local::LocalAzure::start(config.clone())) {
            Err(e) => error_to_robj(&Error::new(
                serverless_core::ErrorKind::Internal,
                format!("the local Azure did not start: {e}"),
            )),
            Ok(local) => {
                let (tls_cert, tls_key) = local.tls_cert_and_key();
                let value = list!(
                    https = local.https_endpoint(),
                    tls_cert = tls_cert,
                    tls_key = tls_key,
                    identity = local.identity_endpoint(),
                    ca_pem = local.ca_pem(),
                    tenant_id = config.tenant_id.clone(),
                    subscription_id = config.subscription_id.clone(),
                    client_id = config.client_id.clone(),
                    client_secret = config.client_secret.clone(),
                    handle = ExternalPtr::new(LocalHandle(std::sync::Mutex::new(Some(local))))
                );
                list!(ok = true, value = value).into()
            }
        }
    })
}

/// Add a storage account to the emulated subscription (once Azurite listens).
/// @noRd
#[extendr]
fn rs_local_add_storage_account(handle: Robj, account: Robj) -> Robj {
    let a = match robj_to_json(&account) {
        Ok(a) => a,
        Err(e) => return error_to_robj(&e),
    };
    let field = |k: &str| a[k].as_str().unwrap_or_default().to_string();
    let account = serverless_local::SeededStorageAccount {
        resource_group: field("resource_group"),
        name: field("name"),
        blob_endpoint: field("blob_endpoint"),
        location: field("location"),
    };
    result_to_robj(
        with_local(handle, |local| local.add_storage_account(account)).and_then(|r| {
            r.map(|_| Value::Null).map_err(|e| {
                Error::internal(format!("the local Azure refused the storage account: {e}"))
            })
        }),
    )
}

/// Start the storage gate in front of Azurite (HTTPS on `port`); returns its port.
/// @noRd
#[extendr]
fn rs_local_storage_gate(handle: Robj, port: i32) -> Robj {
    guard(move || {
        let rt = match job::runtime() {
            Ok(rt) => rt,
            Err(e) => return error_to_robj(&e),
        };
        let Ok(port) = u16::try_from(port) else {
            return error_to_robj(&Error::input("the Azurite port is not a port number"));
        };
        result_to_robj(
            with_local(handle, |local| rt.block_on(local.start_storage_gate(port)))
                .and_then(|r| r.map(Value::from).map_err(Error::internal)),
        )
    })
}

fn with_local<T>(
    handle: Robj,
    f: impl FnOnce(&serverless_local::LocalAzure) -> T,
) -> Result<T, Error> {
    let ptr = ExternalPtr::<LocalHandle>::try_from(handle)
        .map_err(|_| Error::input("not a local Azure handle"))?;
    let guard = ptr.0.lock().unwrap_or_else(|e| e.into_inner());
    let local = guard
        .as_ref()
        .ok_or_else(|| Error::input("this local Azure has been stopped"))?;
    Ok(f(local))
}

/// Whether this handle's emulator is running (FALSE once stopped, or restored from a
/// file).
/// @noRd
#[extendr]
fn rs_local_alive(handle: Robj) -> bool {
    with_local(handle, |_| ()).is_ok()
}

/// @noRd
#[extendr]
fn rs_local_journal(handle: Robj) -> Robj {
    guard(move || {
        // Request bodies go to R as JSON text: one column of a data frame.
        let entries = with_local(handle, |l| {
            l.journal()
                .into_iter()
                .map(|e| {
                    let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
                    if let Some(body) = v.get_mut("body") {
                        if !body.is_null() {
                            *body = Value::String(body.to_string());
                        }
                    }
                    v
                })
                .collect::<Vec<_>>()
        });
        result_to_robj(entries.map(Value::Array))
    })
}

/// @noRd
#[extendr]
fn rs_local_faults(handle: Robj, faults: Robj) -> Robj {
    guard(move || {
        let f = match robj_to_json(&faults) {
            Ok(f) => f,
            Err(e) => return error_to_robj(&e),
        };
        let num = |k: &str| f.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let faults = serverless_local::Faults {
            throttle: num("throttle"),
            server_errors: num("server_errors"),
            latency_ms: num("latency_ms") as u64,
            resets: num("resets"),
            seed: num("seed") as u64,
            evict: num("evict"),
        };
        result_to_robj(with_local(handle, |l| l.set_faults(faults)).map(|_| Value::Null))
    })
}

/// Set the local Azure's Container Instances quota (every region).
/// @noRd
#[extendr]
fn rs_local_aci_quota(handle: Robj, container_groups: f64, standard_cores: f64) -> Robj {
    guard(move || {
        let quota = serverless_local::AciQuota {
            container_groups: container_groups as u64,
            standard_cores,
        };
        result_to_robj(with_local(handle, |l| l.set_aci_quota(quota)).map(|_| Value::Null))
    })
}

/// The loopback TCP proxy in front of Azurite, held by R in the target.
struct ProxyHandle(serverless_local::proxy::TcpProxy);

/// Start a TCP proxy on 127.0.0.1 to `port` (Azurite); returns its port and handle.
/// @noRd
#[extendr]
fn rs_local_proxy_start(port: i32) -> Robj {
    guard(move || {
        let rt = match job::runtime() {
            Ok(rt) => rt,
            Err(e) => return error_to_robj(&e),
        };
        let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port as u16));
        match rt.block_on(serverless_local::proxy::TcpProxy::start(upstream)) {
            Err(e) => error_to_robj(&Error::internal(format!(
                "the storage proxy did not start: {e}"
            ))),
            Ok(proxy) => {
                let port = i32::from(proxy.port());
                let value = list!(port = port, handle = ExternalPtr::new(ProxyHandle(proxy)));
                list!(ok = true, value = value).into()
            }
        }
    })
}

fn with_proxy<T>(
    handle: Robj,
    f: impl FnOnce(&serverless_local::proxy::TcpProxy) -> T,
) -> Result<T, Error> {
    let ptr = ExternalPtr::<ProxyHandle>::try_from(handle)
        .map_err(|_| Error::input("not a storage proxy handle"))?;
    Ok(f(&ptr.0))
}

/// Set the storage proxy's faults; returns (connections, connections faulted) so far.
/// @noRd
#[extendr]
fn rs_local_proxy_faults(handle: Robj, faults: Robj) -> Robj {
    guard(move || {
        let f = match robj_to_json(&faults) {
            Ok(f) => f,
            Err(e) => return error_to_robj(&e),
        };
        let num = |k: &str| f.get(k).and_then(Value::as_f64);
        let faults = serverless_local::proxy::ProxyFaults {
            delay_ms: num("delay_ms").unwrap_or(0.0) as u64,
            cut_after: num("cut_after").map(|v| v as u64),
            reset_after: num("reset_after").map(|v| v as u64),
            every: num("every").unwrap_or(1.0) as u64,
        };
        result_to_robj(with_proxy(handle, |p| {
            p.set_faults(faults);
            let (connections, faulted) = p.counts();
            json!({"connections": connections, "faulted": faulted})
        }))
    })
}

/// Stop the storage proxy.
/// @noRd
#[extendr]
fn rs_local_proxy_stop(handle: Robj) -> Robj {
    guard(move || result_to_robj(with_proxy(handle, |p| p.stop()).map(|_| Value::Null)))
}

/// Stop the emulator and every process it started.
/// @noRd
#[extendr]
fn rs_local_stop(handle: Robj) -> Robj {
    guard(move || {
        let Ok(ptr) = ExternalPtr::<LocalHandle>::try_from(handle) else {
            return Robj::from(());
        };
        let local = ptr.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (Some(local), Ok(rt)) = (local, job::runtime()) {
            rt.block_on(local.shutdown());
        }
        Robj::from(())
    })
}

/// A watchdog that stops process `pid` (Azurite) with SIGTERM, then SIGKILL, if this
/// R session ends without stopping it (see `serverless_local::reaper`).
/// @noRd
#[extendr]
fn rs_local_watchdog(pid: i32) -> Robj {
    guard(move || match serverless_local::reaper::Reaper::start() {
        Ok(reaper) => {
            reaper.watch_service(pid);
            list!(ok = true, value = ExternalPtr::new(reaper)).into()
        }
        Err(e) => error_to_robj(&Error::internal(format!(
            "cannot start the process watchdog: {e}"
        ))),
    })
}

/// Stop the watchdog. `pid` (stopped already) is forgotten first, not signalled; with
/// `pid = -1` the watchdog stops the service itself (SIGTERM, waiting for its end).
/// @noRd
#[extendr]
fn rs_local_watchdog_stop(handle: Robj, pid: i32) -> Robj {
    guard(move || {
        if let Ok(reaper) = ExternalPtr::<serverless_local::reaper::Reaper>::try_from(handle) {
            if pid > 0 {
                reaper.forget_service(pid);
            }
            reaper.stop();
        }
        Robj::from(())
    })
}

/// A secret kept on this side of the boundary. R holds an external pointer to it;
/// `saveRDS()` and `serialize()` write external pointers as null, so no saved object
/// carries the secret, and a restored one finds nothing here.
struct Secret(String);

/// Seal a secret: an external pointer R can pass around but not see through.
/// @noRd
#[extendr]
fn rs_secret_seal(value: Robj) -> Robj {
    text!(value);
    guard(move || list!(ok = true, value = ExternalPtr::new(Secret(value))).into())
}

/// The secret behind a sealed pointer, or NULL when the pointer is null (restored from
/// a file) or not a secret.
/// @noRd
#[extendr]
fn rs_secret_open(secret: Robj) -> Robj {
    guard(move || match ExternalPtr::<Secret>::try_from(secret) {
        Ok(secret) => Robj::from(secret.0.as_str()),
        Err(_) => Robj::from(()),
    })
}

extendr_module! {
    mod serveRless;
    fn job_poll;
    fn job_cancel;
    fn rs_check_model_name;
    fn rs_check_blob_path;
    fn rs_ensure_container;
    fn rs_blob_upload;
    fn rs_blob_download;
    fn rs_blob_download_share;
    fn rs_blob_list;
    fn rs_blob_delete;
    fn rs_check_container;
    fn rs_store_model;
    fn rs_model_versions;
    fn rs_load_model;
    fn rs_read_table;
    fn rs_write_table;
    fn rs_table_chunks;
    fn rs_table_next;
    fn rs_table_writer;
    fn rs_table_write;
    fn rs_token_info;
    fn rs_aci_run;
    fn rs_file_sha256;
    fn rs_json_parse;
    fn rs_json_format;
    fn rs_deploy_model;
    fn rs_get_deployment;
    fn rs_score_run;
    fn rs_score_default_parallel;
    fn rs_score_status;
    fn rs_arm_get;
    fn rs_cron_recurrence;
    fn rs_cost_estimate;
    fn rs_builtin_prices;
    fn rs_fetch_prices;
    fn rs_schedule_render;
    fn rs_schedule_apply;
    fn rs_schedule_call;
    fn rs_undeploy;
    fn rs_local_start;
    fn rs_local_add_storage_account;
    fn rs_local_storage_gate;
    fn rs_local_alive;
    fn rs_local_journal;
    fn rs_local_faults;
    fn rs_local_aci_quota;
    fn rs_local_stop;
    fn rs_local_proxy_start;
    fn rs_local_proxy_faults;
    fn rs_local_proxy_stop;
    fn rs_local_watchdog;
    fn rs_local_watchdog_stop;
    fn rs_secret_seal;
    fn rs_secret_open;
}
