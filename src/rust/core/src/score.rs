//! Scoring runs: one ACI container group per shard, at most `max_parallel` at once
//! (the others queue), waited for, their logs and exit codes collected, and deleted.
//! A shard that fails in a way a second try can mend (killed, out of memory, storage
//! errors, a group that failed to provision or vanished) runs again, up to `retries`
//! times, in a new group. The job inside each container is
//! `serveRless::run_scoring_job()`; R computes each shard's environment (the job's
//! contract), this module runs the groups.
//!
//! No group outlives its run unless asked (`keep`): failures, timeouts and
//! cancellations delete them too, so nothing stays behind to be billed.

use crate::aci::{self, ContainerSpec, GroupSpec};
use crate::arm::{api, ArmClient};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::BoxFuture;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Container groups created or polled at once (HTTP requests in flight).
const CONCURRENCY: usize = 8;

/// Groups running at once when the request does not say: ACI's smallest regional
/// quotas (a new subscription's standard cores) allow about this many one-vCPU groups.
pub const DEFAULT_MAX_PARALLEL: u32 = 10;

/// Most re-runs of one shard.
pub const MAX_RETRIES: u32 = 10;

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
    /// Groups running at once; `None`: [`DEFAULT_MAX_PARALLEL`].
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// Re-runs of a shard whose failure a retry can mend.
    #[serde(default)]
    pub retries: u32,
    /// Run the shards as Spot container groups (evicted ones are retried as failed).
    #[serde(default)]
    pub spot: bool,
}

impl RunRequest {
    fn max_parallel(&self) -> usize {
        self.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL).max(1) as usize
    }

    fn validate(&self) -> Result<()> {
        if self.shards.is_empty() {
            return Err(Error::input("a run needs at least one shard"));
        }
        if self.max_parallel == Some(0) {
            return Err(Error::input("`max_parallel` must be at least 1"));
        }
        if self.retries > MAX_RETRIES {
            return Err(Error::input(format!(
                "`retries` must be at most {MAX_RETRIES}, not {}",
                self.retries
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShardRequest {
    pub index: u32,
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub secure_env: BTreeMap<String, String>,
    /// The try this run starts the shard at (a resumed run goes on counting); 0 is 1.
    #[serde(default)]
    pub first_attempt: u32,
}

/// One shard's state as last seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardState {
    pub index: u32,
    /// The resource path of the group of its current (or next) attempt.
    pub group: String,
    /// `Queued` (no group yet), `Pending`, `Running`, `Succeeded` or `Failed`.
    pub state: String,
    pub exit_code: Option<i64>,
    pub started: Option<String>,
    pub finished: Option<String>,
    #[serde(default)]
    pub logs: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    /// Which try this is (or, queued, will be): 1 for the first.
    #[serde(default)]
    pub attempt: u32,
    /// Exit codes of the attempts that were retried (`None`: no exit code).
    #[serde(default)]
    pub retried: Vec<Option<i64>>,
}

impl ShardState {
    /// Finished, one way or the other.
    pub fn done(&self) -> bool {
        matches!(self.state.as_str(), "Succeeded" | "Failed")
    }

    fn active(&self) -> bool {
        matches!(self.state.as_str(), "Pending" | "Running")
    }

    /// A failure another try may not repeat: killed (137, also out of memory), a
    /// storage error (4), or no exit code at all (the group failed to provision or
    /// vanished). Bad input (2) and a failing model (3) would fail again.
    fn retryable(&self) -> bool {
        self.state == "Failed" && matches!(self.exit_code, None | Some(4) | Some(137))
    }
}

/// The container group of one shard's attempt: `<deployment>-<run id>-<shard>`, and
/// `...-<shard>r<attempt>` for a retry, within ACI's 63-character limit.
pub fn group_name(deployment: &str, run_id: &str, index: u32) -> String {
    attempt_group_name(deployment, run_id, index, 1)
}

fn attempt_group_name(deployment: &str, run_id: &str, index: u32, attempt: u32) -> String {
    let suffix = if attempt <= 1 {
        format!("-{run_id}-{index}")
    } else {
        format!("-{run_id}-{index}r{attempt}")
    };
    let keep = 63usize.saturating_sub(suffix.len());
    let head: String = deployment.chars().take(keep).collect();
    format!("{}{suffix}", head.trim_end_matches('-'))
}

fn group_spec(req: &RunRequest, shard: &ShardRequest, attempt: u32) -> GroupSpec {
    let mut tags = req.tags.clone();
    tags.insert("serverless-deployment".into(), req.deployment.clone());
    tags.insert("serverless-run".into(), req.run_id.clone());
    let mut env = shard.env.clone();
    env.insert("SERVERLESS_ATTEMPT".into(), attempt.max(1).to_string());
    GroupSpec {
        subscription: req.subscription.clone(),
        resource_group: req.resource_group.clone(),
        name: attempt_group_name(&req.deployment, &req.run_id, shard.index, attempt),
        location: req.location.clone(),
        containers: vec![ContainerSpec {
            name: "score".into(),
            image: req.image.clone(),
            command: vec![],
            cpu: req.cpu,
            memory_gb: req.memory_gb,
            env,
            secure_env: shard.secure_env.clone(),
        }],
        identity: Some(req.identity_id.clone()),
        registry_identities: vec![(req.login_server.clone(), req.identity_id.clone())],
        tags,
        spot: req.spot,
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

/// The shard request of a state (by index).
fn request_of<'a>(req: &'a RunRequest, shard: &ShardState) -> Result<&'a ShardRequest> {
    req.shards
        .iter()
        .find(|s| s.index == shard.index)
        .ok_or_else(|| Error::internal(format!("shard {} is not in the run", shard.index)))
}

/// Creates the groups of queued shards while fewer than `max_parallel` are active.
/// On a failure the groups created here are deleted and the error returned.
async fn start_queued(
    arm: &Arc<ArmClient>,
    req: &RunRequest,
    shards: &mut [ShardState],
) -> Result<()> {
    let room = req
        .max_parallel()
        .saturating_sub(shards.iter().filter(|s| s.active()).count());
    let next: Vec<usize> = shards
        .iter()
        .enumerate()
        .filter(|(_, s)| s.state == "Queued")
        .map(|(i, _)| i)
        .take(room)
        .collect();
    let mut specs = Vec::with_capacity(next.len());
    for &i in &next {
        let attempt = shards[i].attempt.max(1);
        let spec = group_spec(req, request_of(req, &shards[i])?, attempt);
        spec.validate()?;
        specs.push((i, attempt, spec));
    }
    let mut cleanup = Cleanup {
        arm: arm.clone(),
        paths: specs.iter().map(|(_, _, s)| s.path()).collect(),
        armed: true,
    };
    let created: Result<Vec<()>> = in_batches(&specs, |(_, _, spec)| async {
        aci::create_group(arm, spec).await.map(|_| ())
    })
    .await
    .into_iter()
    .collect();
    if let Err(e) = created {
        // Delete now, not in the background: the caller sees a clean state.
        for path in std::mem::take(&mut cleanup.paths) {
            let _ = aci::delete_group(arm, &path).await;
        }
        return Err(e.context(format!("starting run {}", req.run_id)));
    }
    cleanup.disarm();
    for (i, attempt, spec) in specs {
        let s = &mut shards[i];
        s.group = spec.path();
        s.attempt = attempt;
        s.state = "Pending".into();
    }
    Ok(())
}

/// The shards of a new run, all queued (nothing created yet).
fn queued(req: &RunRequest) -> Result<Vec<ShardState>> {
    req.validate()?;
    req.shards
        .iter()
        .map(|shard| {
            let attempt = shard.first_attempt.max(1);
            let spec = group_spec(req, shard, attempt);
            spec.validate()?;
            Ok(ShardState {
                index: shard.index,
                group: spec.path(),
                state: "Queued".into(),
                exit_code: None,
                started: None,
                finished: None,
                logs: None,
                deleted: false,
                attempt,
                retried: Vec::new(),
            })
        })
        .collect()
}

/// Creates the first `max_parallel` shards' groups; the others stay queued until
/// [`advance`] finds room. On any failure the ones created are deleted.
pub async fn start(arm: Arc<ArmClient>, req: &RunRequest) -> Result<Vec<ShardState>> {
    let mut shards = queued(req)?;
    start_queued(&arm, req, &mut shards).await?;
    Ok(shards)
}

/// The current state of one shard's group (a deleted group keeps its last state).
async fn poll_one(arm: &ArmClient, shard: &ShardState) -> Result<ShardState> {
    if shard.deleted || shard.done() || shard.state == "Queued" {
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

/// Collects the logs of one finished attempt and deletes its group (unless `keep`).
async fn collect(arm: &ArmClient, mut s: ShardState, keep: bool) -> ShardState {
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
}

/// One step of a run: refreshes the active shards; a shard that just finished has
/// its logs collected and its group deleted (freeing room), and if its failure is
/// retryable and tries remain it is queued again, for a new group; then queued shards
/// start while there is room. Returns the new states.
pub fn advance<'a>(
    arm: &'a Arc<ArmClient>,
    req: &'a RunRequest,
    shards: &'a [ShardState],
    keep: bool,
) -> BoxFuture<'a, Result<Vec<ShardState>>> {
    Box::pin(async move {
        let before: Vec<bool> = shards.iter().map(ShardState::done).collect();
        let polled = poll(arm, shards).await?;
        let mut next = Vec::with_capacity(polled.len());
        for (s, was_done) in polled.into_iter().zip(before) {
            if was_done || !s.done() {
                next.push(s);
                continue;
            }
            let s = collect(arm, s, keep).await;
            let shard = request_of(req, &s)?;
            let tries = s.attempt.max(1).saturating_sub(shard.first_attempt.max(1)) + 1;
            if s.retryable() && tries <= req.retries {
                let attempt = s.attempt.max(1) + 1;
                let spec = group_spec(req, shard, attempt);
                let mut retried = s.retried.clone();
                retried.push(s.exit_code);
                next.push(ShardState {
                    group: spec.path(),
                    state: "Queued".into(),
                    exit_code: None,
                    started: None,
                    finished: None,
                    logs: None,
                    deleted: false,
                    attempt,
                    retried,
                    ..s
                });
            } else {
                next.push(s);
            }
        }
        start_queued(arm, req, &mut next).await?;
        Ok(next)
    })
}

/// Deletes every group of a run, finished or not (queued shards have none).
pub async fn delete_all(arm: &ArmClient, shards: &[ShardState]) -> Result<()> {
    let created: Vec<&ShardState> = shards.iter().filter(|s| s.state != "Queued").collect();
    in_batches(&created, |s| aci::delete_group(arm, &s.group))
        .await
        .into_iter()
        .collect()
}

/// Groups to run at once when the caller does not say: [`DEFAULT_MAX_PARALLEL`],
/// or fewer when the region's quota has room for fewer groups of `cpu` vCPUs (at
/// least 1: a create over the quota then fails with ACI's own error). With the
/// reason, when the quota lowered it.
pub fn default_parallel<'a>(
    arm: &'a ArmClient,
    subscription: &'a str,
    location: &'a str,
    cpu: f64,
    spot: bool,
) -> BoxFuture<'a, (u32, Option<String>)> {
    Box::pin(async move {
        let room = aci::quota_room(arm, subscription, location)
            .await
            .and_then(|r| r.groups_of(cpu, spot));
        match room {
        Some(r) if r < DEFAULT_MAX_PARALLEL => (
            r.max(1),
            Some(format!(
                "the Container Instances quota in {location} has room for {r} more group{} of {cpu} vCPU",
                if r == 1 { "" } else { "s" }
            )),
        ),
        _ => (DEFAULT_MAX_PARALLEL, None),
    }
    })
}

/// Starts a run and, with `wait`, follows it to the end: progress counts shards done,
/// retries and queued shards start as room frees up. Timeouts and cancellation delete
/// every group.
pub fn run<'a>(
    arm: Arc<ArmClient>,
    req: &'a RunRequest,
    wait: bool,
    keep: bool,
    timeout: Duration,
    progress: &'a Progress,
) -> BoxFuture<'a, Result<Vec<ShardState>>> {
    Box::pin(async move {
        let n = req.shards.len();
        let at_once = req.max_parallel().min(n);
        progress.step(format!(
            "starting {at_once} of {n} container group{} for run {}{}",
            if n == 1 { "" } else { "s" },
            req.run_id,
            if at_once < n {
                format!(" (at most {at_once} at once)")
            } else {
                String::new()
            }
        ));
        let mut shards = start(arm.clone(), req).await?;
        if !wait {
            return Ok(shards);
        }
        // Every group a shard may have (any attempt), deleted if this future is dropped.
        let all_paths = |shards: &[ShardState]| -> Vec<String> {
            if keep {
                vec![]
            } else {
                shards
                    .iter()
                    .filter(|s| s.state != "Queued")
                    .map(|s| s.group.clone())
                    .collect()
            }
        };
        let mut cleanup = Cleanup {
            arm: arm.clone(),
            paths: all_paths(&shards),
            armed: true,
        };
        let started = Instant::now();
        let total = n as u64;
        progress.begin(format!("scoring run {}: shards done", req.run_id), total);
        let mut reported = 0u64;
        loop {
            shards = advance(&arm, req, &shards, keep).await?;
            cleanup.paths = all_paths(&shards);
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
        cleanup.disarm();
        Ok(shards)
    })
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
        let retry = attempt_group_name(&"a".repeat(63), "20261127t021500-ab12cd", 12, 3);
        assert!(retry.ends_with("-12r3") && retry.len() <= 63, "{retry}");
        assert!(crate::aci::check_name("group", &retry).is_ok());
    }

    fn shard(state: &str, exit_code: Option<i64>) -> ShardState {
        ShardState {
            index: 1,
            group: String::new(),
            state: state.into(),
            exit_code,
            started: None,
            finished: None,
            logs: None,
            deleted: false,
            attempt: 1,
            retried: vec![],
        }
    }

    #[test]
    fn only_failures_a_retry_can_mend_are_retried() {
        for code in [None, Some(4), Some(137)] {
            assert!(shard("Failed", code).retryable(), "{code:?}");
        }
        for code in [Some(1), Some(2), Some(3)] {
            assert!(!shard("Failed", code).retryable(), "{code:?}");
        }
        assert!(!shard("Succeeded", Some(0)).retryable());
    }
}
