//! Scoring runs: one ACI container group per shard, all started at once, waited for,
//! their logs and exit codes collected, and deleted. The job inside each container is
//! `serveRless::run_scoring_job()`; R computes each shard's environment (the job's
//! contract), this module runs the groups.
//!
//! No group outlives its run unless asked (`keep`): failures, timeouts and
//! cancellations delete them too, so nothing stays behind to be billed.

use crate::aci::{self, ContainerSpec, GroupSpec};
use crate::arm::{api, ArmClient};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Container groups created or polled at once.
const CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Deserialize)]
pub struct RunRequest {
    pub subscription: String,
    pub resource_group: String,
    pub location: String,
    pub deployment: String,
    pub run_id: String,
    pub image: String,
    pub login_server: String,
    /// Resource id of the user-assigned identity the containers run as.
    pub identity_id: String,
    pub cpu: f64,
    pub memory_gb: f64,
    pub shards: Vec<ShardRequest>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShardRequest {
    pub index: u32,
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub secure_env: BTreeMap<String, String>,
}

/// One shard's state as last seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardState {
    pub index: u32,
    /// The group's resource path.
    pub group: String,
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    pub state: String,
    pub exit_code: Option<i64>,
    pub started: Option<String>,
    pub finished: Option<String>,
    #[serde(default)]
    pub logs: Option<String>,
    #[serde(default)]
    pub deleted: bool,
}

impl ShardState {
    /// Finished, one way or the other.
    pub fn done(&self) -> bool {
        matches!(self.state.as_str(), "Succeeded" | "Failed")
    }
}

/// The container group of one shard: `<deployment>-<run id>-<shard>`, within ACI's
/// 63-character limit.
pub fn group_name(deployment: &str, run_id: &str, index: u32) -> String {
    let suffix = format!("-{run_id}-{index}");
    let keep = 63usize.saturating_sub(suffix.len());
    let head: String = deployment.chars().take(keep).collect();
    format!("{}{suffix}", head.trim_end_matches('-'))
}

fn group_spec(req: &RunRequest, shard: &ShardRequest) -> GroupSpec {
    let mut tags = req.tags.clone();
    tags.insert("serverless-deployment".into(), req.deployment.clone());
    tags.insert("serverless-run".into(), req.run_id.clone());
    GroupSpec {
        subscription: req.subscription.clone(),
        resource_group: req.resource_group.clone(),
        name: group_name(&req.deployment, &req.run_id, shard.index),
        location: req.location.clone(),
        containers: vec![ContainerSpec {
            name: "score".into(),
            image: req.image.clone(),
            command: vec![],
            cpu: req.cpu,
            memory_gb: req.memory_gb,
            env: shard.env.clone(),
            secure_env: shard.secure_env.clone(),
        }],
        identity: Some(req.identity_id.clone()),
        registry_identities: vec![(req.login_server.clone(), req.identity_id.clone())],
        tags,
    }
}

/// Deletes groups when dropped before [`Cleanup::disarm`]: an interrupted or failed
/// run still removes what it created.
struct Cleanup {
    arm: Arc<ArmClient>,
    paths: Vec<String>,
    armed: bool,
}

impl Cleanup {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed || self.paths.is_empty() {
            return;
        }
        let (arm, paths) = (self.arm.clone(), std::mem::take(&mut self.paths));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                for path in paths {
                    let _ = aci::delete_group(&arm, &path).await;
                }
            });
        }
    }
}

/// Creates every shard's group. On any failure the ones created are deleted.
pub async fn start(arm: Arc<ArmClient>, req: &RunRequest) -> Result<Vec<ShardState>> {
    if req.shards.is_empty() {
        return Err(Error::input("a run needs at least one shard"));
    }
    let specs: Vec<GroupSpec> = req.shards.iter().map(|s| group_spec(req, s)).collect();
    for spec in &specs {
        spec.validate()?;
    }
    let mut cleanup = Cleanup {
        arm: arm.clone(),
        paths: specs.iter().map(GroupSpec::path).collect(),
        armed: true,
    };
    let created: Result<Vec<()>> = in_batches(&specs, |spec| async {
        aci::create_group(&arm, spec).await.map(|_| ())
    })
    .await
    .into_iter()
    .collect();
    if let Err(e) = created {
        // Delete now, not in the background: the caller sees a clean state.
        for path in std::mem::take(&mut cleanup.paths) {
            let _ = aci::delete_group(&arm, &path).await;
        }
        return Err(e.context(format!("starting run {}", req.run_id)));
    }
    cleanup.disarm();
    Ok(specs
        .iter()
        .zip(&req.shards)
        .map(|(spec, shard)| ShardState {
            index: shard.index,
            group: spec.path(),
            state: "Pending".into(),
            exit_code: None,
            started: None,
            finished: None,
            logs: None,
            deleted: false,
        })
        .collect())
}

/// The current state of one shard's group (a deleted group keeps its last state).
async fn poll_one(arm: &ArmClient, shard: &ShardState) -> Result<ShardState> {
    if shard.deleted || shard.done() {
        return Ok(shard.clone());
    }
    let Some(group) = arm.get_opt(&shard.group, api::CONTAINER_INSTANCE).await? else {
        return Ok(ShardState {
            state: "Failed".into(),
            logs: Some("the container group no longer exists".into()),
            deleted: true,
            ..shard.clone()
        });
    };
    let cur = group.pointer("/properties/containers/0/properties/instanceView/currentState");
    let container_state = cur.and_then(|s| s["state"].as_str()).unwrap_or("Waiting");
    let exit_code = cur.and_then(|s| s["exitCode"].as_i64());
    let text = |k: &str| cur.and_then(|s| s[k].as_str()).map(str::to_string);
    let state = match (container_state, exit_code) {
        ("Terminated", Some(0)) => "Succeeded",
        ("Terminated", _) => "Failed",
        ("Running", _) => "Running",
        _ => {
            let provisioning = group
                .pointer("/properties/provisioningState")
                .and_then(Value::as_str)
                .unwrap_or("");
            if provisioning == "Failed" {
                "Failed"
            } else {
                "Pending"
            }
        }
    };
    Ok(ShardState {
        state: state.into(),
        exit_code,
        started: text("startTime"),
        finished: text("finishTime"),
        ..shard.clone()
    })
}

pub async fn poll(arm: &ArmClient, shards: &[ShardState]) -> Result<Vec<ShardState>> {
    in_batches(shards, |s| poll_one(arm, s))
        .await
        .into_iter()
        .collect()
}

/// Runs `f` over `items`, `CONCURRENCY` at a time, keeping their order.
async fn in_batches<'a, T, F, Fut, R>(items: &'a [T], f: F) -> Vec<R>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(CONCURRENCY) {
        out.extend(join_all(chunk.iter().map(&f)).await);
    }
    out
}

/// Collects the logs of finished shards and deletes their groups (unless `keep`).
pub async fn finish(arm: &ArmClient, shards: &[ShardState], keep: bool) -> Vec<ShardState> {
    in_batches(shards, |s| async move {
        let mut s = s.clone();
        if !s.done() || s.deleted {
            return s;
        }
        if s.logs.is_none() {
            s.logs = Some(aci::logs(arm, &s.group, "score").await.unwrap_or_default());
        }
        if !keep && aci::delete_group(arm, &s.group).await.is_ok() {
            s.deleted = true;
        }
        s
    })
    .await
}

/// Deletes every group of a run, finished or not.
pub async fn delete_all(arm: &ArmClient, shards: &[ShardState]) -> Result<()> {
    in_batches(shards, |s| aci::delete_group(arm, &s.group))
        .await
        .into_iter()
        .collect()
}

/// Starts a run and, with `wait`, follows it to the end: progress counts shards done,
/// then logs are collected and groups deleted. Timeouts and cancellation delete too.
pub async fn run(
    arm: Arc<ArmClient>,
    req: &RunRequest,
    wait: bool,
    keep: bool,
    timeout: Duration,
    progress: &Progress,
) -> Result<Vec<ShardState>> {
    progress.step(format!(
        "starting {} container group{} for run {}",
        req.shards.len(),
        if req.shards.len() == 1 { "" } else { "s" },
        req.run_id
    ));
    let mut shards = start(arm.clone(), req).await?;
    if !wait {
        return Ok(shards);
    }
    let cleanup = Cleanup {
        arm: arm.clone(),
        paths: if keep {
            vec![]
        } else {
            shards.iter().map(|s| s.group.clone()).collect()
        },
        armed: true,
    };
    let started = Instant::now();
    let total = shards.len() as u64;
    progress.begin(format!("scoring run {}: shards done", req.run_id), total);
    let mut reported = 0u64;
    loop {
        shards = poll(&arm, &shards).await?;
        let done = shards.iter().filter(|s| s.done()).count() as u64;
        progress.advance(done - reported);
        reported = done;
        if done == total {
            break;
        }
        if started.elapsed() > timeout {
            let _ = delete_all(&arm, &shards).await;
            cleanup.disarm();
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "run {} did not finish in {} s; its container groups were deleted",
                    req.run_id,
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shards = finish(&arm, &shards, keep).await;
    cleanup.disarm();
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_fit_aci() {
        let n = group_name("churn", "20261127t021500-ab12cd", 3);
        assert_eq!(n, "churn-20261127t021500-ab12cd-3");
        let long = group_name(&"a".repeat(63), "20261127t021500-ab12cd", 12);
        assert!(long.len() <= 63, "{long}");
        assert!(crate::aci::check_name("group", &long).is_ok());
    }
}
