//! Benchmark (bench/run.sh): 200 concurrent container-group creates against the local
//! Azure with 20% throttling and 5% server errors. Every create must end Succeeded and
//! exactly 200 groups must exist afterwards (retries never duplicate). Prints calls/s
//! and the retry count.

use serde_json::Value;
use serverless_core::aci::{self, ContainerSpec, GroupSpec};
use serverless_core::arm::{api, ArmClient};
use serverless_core::auth::{self, CredentialSpec, Endpoints};
use serverless_local::{Config, Faults, LocalAzure};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GROUPS: usize = 200;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::temp_dir().join(format!("serverless-bench-aci-{}", std::process::id()));
    let config = Config::new(&dir);
    let local = LocalAzure::start(config.clone()).await.expect("emulator");
    let endpoints = Endpoints {
        authority_host: local.https_endpoint(),
        arm: local.https_endpoint(),
        ca_pem: Some(local.ca_pem()),
    };
    let spec = CredentialSpec::ClientSecret {
        tenant: config.tenant_id.clone(),
        client_id: config.client_id.clone(),
        client_secret: config.client_secret.clone(),
    };
    let cred = auth::credential(&spec, &endpoints, Default::default()).unwrap();
    let mut arm = ArmClient::new(&endpoints, cred).unwrap();
    arm.retry.poll_interval = Duration::from_millis(500);
    let arm = Arc::new(arm);
    let sub = config.subscription_id.clone();
    aci::ensure_resource_group(&arm, &sub, "rg-bench", "westeurope", &BTreeMap::new())
        .await
        .unwrap();
    // A subscription whose quota was raised for this: ACI's default (100 groups, 100
    // cores a region) would refuse half of the creates.
    local.set_aci_quota(serverless_local::AciQuota {
        container_groups: 1000,
        standard_cores: 1000.0,
    });
    local.set_faults(Faults {
        throttle: 0.2,
        server_errors: 0.05,
        latency_ms: 0,
        resets: 0.0,
        seed: 42,
        evict: 0.0,
    });
    let calls_before = arm.stats.calls.load(Ordering::Relaxed);

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..GROUPS {
        let arm = arm.clone();
        let sub = sub.clone();
        tasks.spawn(async move {
            let spec = GroupSpec {
                subscription: sub,
                resource_group: "rg-bench".into(),
                name: format!("bench-{i:03}"),
                location: "westeurope".into(),
                containers: vec![ContainerSpec {
                    name: "job".into(),
                    image: "serverless-runtime:bench".into(),
                    command: vec!["true".into()],
                    cpu: 1.0,
                    memory_gb: 1.0,
                    env: BTreeMap::new(),
                    secure_env: BTreeMap::new(),
                }],
                identity: None,
                registry_identities: vec![],
                tags: BTreeMap::from([("serverless-deployment".into(), "bench".into())]),
                spot: false,
            };
            aci::create_group(&arm, &spec).await
        });
    }
    let mut succeeded = 0;
    let mut failed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(group)
                if group.pointer("/properties/provisioningState")
                    == Some(&Value::from("Succeeded")) =>
            {
                succeeded += 1
            }
            Ok(group) => failed.push(format!("not succeeded: {}", group["name"])),
            Err(e) => failed.push(e.message),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let calls = arm.stats.calls.load(Ordering::Relaxed) - calls_before;
    let retries = arm.stats.retries.load(Ordering::Relaxed);
    local.set_faults(Faults {
        throttle: 0.0,
        server_errors: 0.0,
        latency_ms: 0,
        resets: 0.0,
        seed: 0,
        evict: 0.0,
    });
    let list = arm
        .get(
            &format!("/subscriptions/{sub}/resourceGroups/rg-bench/providers/Microsoft.ContainerInstance/containerGroups"),
            api::CONTAINER_INSTANCE,
        )
        .await
        .unwrap();
    let existing = list["value"].as_array().map(Vec::len).unwrap_or(0);
    println!("container groups created concurrently: {GROUPS} (throttle 0.2, server errors 0.05)");
    println!("succeeded: {succeeded}, failed: {}", failed.len());
    println!("groups that exist afterwards: {existing}");
    println!(
        "ARM calls: {calls} in {secs:.1} s = {:.1} calls/s; retries: {retries}",
        calls as f64 / secs
    );
    for f in failed.iter().take(5) {
        println!("  failure: {f}");
    }
    record(&[
        (
            format!("{GROUPS} concurrent container-group creates (20% 429, 5% 5xx): ARM calls/s"),
            calls as f64 / secs,
            "calls/s",
            "higher",
            format!("{calls} calls, {retries} retries; {succeeded} succeeded, {existing} groups exist afterwards"),
        ),
        (
            format!("{GROUPS} concurrent container-group creates (20% 429, 5% 5xx): wall"),
            secs,
            "s",
            "lower",
            "every create must succeed, no duplicates".to_string(),
        ),
    ]);
    local.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if succeeded != GROUPS || existing != GROUPS {
        std::process::exit(1);
    }
}

/// Appends rows to the results file bench/run.sh names (see bench/record.R for the
/// columns); no peer for this figure.
fn record(rows: &[(String, f64, &str, &str, String)]) {
    use std::io::Write;
    let Ok(path) = std::env::var("SERVERLESS_BENCH_RESULTS") else {
        return;
    };
    let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    else {
        return;
    };
    for (figure, value, unit, better, note) in rows {
        let _ = writeln!(
            f,
            "aci_creates\t{figure}\t{value:.1}\t\tNA\t{unit}\t{better}\t{note}"
        );
    }
}
