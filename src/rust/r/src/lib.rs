//! extendr bindings for serveRless. Converts R values to core types and back, owns the
//! tokio runtime and the job handles; speaks no HTTP itself.
//!
//! Every function returns `list(ok = TRUE, value =)` or `list(ok = FALSE, error =)`
//! (see `convert.rs`); long ones return a job handle that R polls (see `job.rs`).

mod convert;
mod job;

use convert::{error_to_robj, result_to_robj, robj_to_json};
use extendr_api::prelude::*;
use job::{Job, Poll};
use serde_json::{json, Value};
use serverless_core::blob::{split_path, Storage, StorageConfig, UploadOptions};
use serverless_core::{store, Error};
use std::path::PathBuf;
use std::time::Duration;

/// Run a binding body; a panic becomes an internal-error result, never panic text.
/// (extendr's panic hook, registered in entrypoint.c, keeps the report itself quiet.)
fn guard(body: impl FnOnce() -> Robj + std::panic::UnwindSafe) -> Robj {
    std::panic::catch_unwind(body).unwrap_or_else(|_| {
        error_to_robj(&Error::internal(
            "internal error in serveRless (this is a bug; please report it)",
        ))
    })
}

fn storage_from(config: &Robj) -> Result<Storage, Error> {
    let config: StorageConfig = serde_json::from_value(robj_to_json(config))
        .map_err(|e| Error::input(format!("invalid storage configuration: {e}")))?;
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
        let progress = job.progress().snapshot();
        let state = job.poll(Duration::from_millis(wait_ms.max(0) as u64));
        let progress = list!(
            done = progress.done as f64,
            total = progress.total as f64,
            status = progress.status
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
fn rs_check_model_name(name: &str) -> Robj {
    let name = name.to_string();
    guard(move || result_to_robj(store::check_model_name(&name).map(|_| Value::Null)))
}

/// Check a `container/path` blob path (no network).
/// @noRd
#[extendr]
fn rs_check_blob_path(path: &str) -> Robj {
    let path = path.to_string();
    guard(move || {
        result_to_robj(split_path(&path).map(|(c, b)| json!({"container": c, "blob": b})))
    })
}

/// @noRd
#[extendr]
fn rs_ensure_container(storage: Robj, container: &str) -> Robj {
    let container = container.to_string();
    guard(move || {
        start(storage_from(&storage), move |s, _| async move {
            s.ensure_container(&container).await.map(|_| Value::Null)
        })
    })
}

/// @noRd
#[extendr]
fn rs_blob_upload(storage: Robj, file: &str, path: &str, overwrite: bool) -> Robj {
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
fn rs_blob_download(storage: Robj, path: &str, file: &str) -> Robj {
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

/// @noRd
#[extendr]
fn rs_blob_list(storage: Robj, container: &str, prefix: &str) -> Robj {
    let (container, prefix) = (container.to_string(), prefix.to_string());
    guard(move || {
        start(storage_from(&storage), move |s, _| async move {
            to_value(s.list(&container, &prefix).await?)
        })
    })
}

/// @noRd
#[extendr]
fn rs_blob_delete(storage: Robj, path: &str) -> Robj {
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
fn rs_store_model(storage: Robj, container: &str, name: &str, file: &str, meta: Robj) -> Robj {
    let (container, name, file) = (container.to_string(), name.to_string(), PathBuf::from(file));
    let meta = robj_to_json(&meta);
    guard(move || {
        start(storage_from(&storage), move |s, progress| async move {
            to_value(
                s.store_model(&container, &name, &file, meta, &progress)
                    .await?,
            )
        })
    })
}

/// @noRd
#[extendr]
fn rs_model_versions(storage: Robj, container: &str, name: &str) -> Robj {
    let (container, name) = (container.to_string(), name.to_string());
    guard(move || {
        start(storage_from(&storage), move |s, _| async move {
            to_value(s.model_versions(&container, &name).await?)
        })
    })
}

/// @noRd
#[extendr]
fn rs_load_model(storage: Robj, container: &str, name: &str, version: &str, dest: &str) -> Robj {
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

extendr_module! {
    mod serveRless;
    fn job_poll;
    fn job_cancel;
    fn rs_check_model_name;
    fn rs_check_blob_path;
    fn rs_ensure_container;
    fn rs_blob_upload;
    fn rs_blob_download;
    fn rs_blob_list;
    fn rs_blob_delete;
    fn rs_store_model;
    fn rs_model_versions;
    fn rs_load_model;
}
