//! The scoring workflow: snapshots of the definition rendered for one schedule per
//! connector (the same body the local Azure runs is the one Azure gets), and
//! `schedule::apply` against the local Azure: the workflow is written disabled, its
//! identity gets its roles, then it is enabled; a second apply writes nothing.
//! After an intended template change, re-run with `UPDATE_SNAPSHOTS=1` and review.

use serverless_core::arm::ArmClient;
use serverless_core::auth::{self, CredentialSpec, Endpoints};
use serverless_core::logic::schedule::{self, Connector, ScheduleRequest, Trigger};
use serverless_core::plan::Action;
use serverless_core::{ErrorKind, Progress};
use serverless_local::{Config, LocalAzure};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../..")
        .join(path)
}

fn request(subscription: &str, trigger: Trigger, connector: Connector) -> ScheduleRequest {
    let env = BTreeMap::from([
        ("SERVERLESS_DEPLOYMENT".to_string(), "churn".to_string()),
        (
            "SERVERLESS_MODEL_VERSION".into(),
            "20261127T030000Z-1a2b3c4d".into(),
        ),
        ("SERVERLESS_MODEL_SHA256".into(), "ab".repeat(32)),
        ("SERVERLESS_STORAGE_ACCOUNT".into(), "churnstore".into()),
        (
            "SERVERLESS_BLOB_ENDPOINT".into(),
            "https://churnstore.blob.core.windows.net".into(),
        ),
        ("SERVERLESS_CONTAINER".into(), "models".into()),
        ("SERVERLESS_INPUT_PATTERN".into(), "data/in/*.csv".into()),
        ("SERVERLESS_OUTPUT".into(), "data/out/".into()),
        (
            "AZURE_CLIENT_ID".into(),
            "00000000-0000-0000-0000-0000000000c1".into(),
        ),
    ]);
    ScheduleRequest {
        subscription: subscription.into(),
        resource_group: "rg-scoring".into(),
        location: "westeurope".into(),
        name: "churn-scoring".into(),
        deployment: "churn".into(),
        trigger,
        connector,
        shards: 2,
        max_parallel: None,
        image: "serverlessacr.azurecr.io/serverless-runtime:0123456789abcdef".into(),
        login_server: "serverlessacr.azurecr.io".into(),
        identity_id: format!("/subscriptions/{subscription}/resourceGroups/rg-scoring/providers/Microsoft.ManagedIdentity/userAssignedIdentities/serverless-scoring"),
        cpu: 1.0,
        memory_gb: 1.5,
        env,
        storage_account: "churnstore".into(),
        arm_endpoint: "https://management.azure.com".into(),
        blob_endpoint: "https://churnstore.blob.core.windows.net/".into(),
        container: "models".into(),
        poll_seconds: 10,
        first_check_s: None,
        timeout_s: 3600,
        template: std::fs::read_to_string(repo_file("inst/templates/workflow.json.hbs")).unwrap(),
        dry_run: false,
    }
}

fn weekdays() -> Trigger {
    Trigger::Schedule {
        cron: "0 3 * * 1-5".into(),
        time_zone: "Europe/Vienna".into(),
    }
}

fn check_snapshot(name: &str, body: &serde_json::Value) {
    let text = serde_json::to_string_pretty(body).unwrap() + "\n";
    let path = repo_file(&format!("src/rust/core/tests/snapshots/{name}"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .expect("no snapshot yet: run with UPDATE_SNAPSHOTS=1 and review it");
    assert_eq!(
        text, expected,
        "the rendered workflow {name} changed; review and re-run with UPDATE_SNAPSHOTS=1"
    );
}

const SUB: &str = "00000000-0000-0000-0000-00000000aaaa";

#[test]
fn http_schedule_workflow_matches_snapshot() {
    let body = schedule::render(&request(SUB, weekdays(), Connector::Http), "Enabled").unwrap();
    check_snapshot("workflow-http-schedule.json", &body);
    let def = &body["properties"]["definition"];
    // What must hold whatever else changes.
    let r = &def["triggers"]["Recurrence"]["recurrence"];
    assert_eq!(r["frequency"], "Week");
    assert_eq!(r["timeZone"], "W. Europe Standard Time");
    assert_eq!(r["schedule"]["hours"], serde_json::json!([3]));
    let each = &def["actions"]["For_each_shard"];
    assert_eq!(each["foreach"], "@range(1, 2)");
    let delete = &each["actions"]["Delete_group"];
    assert_eq!(delete["inputs"]["method"], "DELETE");
    assert_eq!(
        delete["runAfter"]["If_shard_failed"],
        serde_json::json!(["Succeeded", "Failed", "Skipped", "TimedOut"])
    );
    let text = body.to_string();
    for secret in [
        "sig=",
        "password",
        "AccountKey",
        "secureValue",
        "clientSecret",
    ] {
        assert!(!text.contains(secret), "{secret} in the workflow");
    }
}

#[test]
fn aci_blob_workflow_matches_snapshot() {
    let trigger = Trigger::Blob {
        folder: "data/in/".into(),
        poll_minutes: 1,
    };
    let body = schedule::render(&request(SUB, trigger, Connector::Aci), "Enabled").unwrap();
    check_snapshot("workflow-aci-blob.json", &body);
    let def = &body["properties"]["definition"];
    let t = &def["triggers"]["When_a_blob_is_added"];
    assert_eq!(t["inputs"]["queries"]["folderId"], "/data/in");
    let create = &def["actions"]["For_each_shard"]["actions"]["Create_group"];
    assert_eq!(create["type"], "ApiConnection");
    let env = create["inputs"]["body"]["properties"]["containers"][0]["properties"]
        ["environmentVariables"]
        .as_array()
        .unwrap();
    let input = env
        .iter()
        .find(|e| e["name"] == "SERVERLESS_INPUTS")
        .unwrap();
    assert_eq!(input["value"], "@{substring(triggerBody()?['Path'], 1)}");
    let conns = &body["properties"]["parameters"]["$connections"]["value"];
    assert!(conns["aci"]["connectionId"].is_string());
    assert!(conns["azureblob"]["connectionId"].is_string());
}

#[test]
fn endpoints_come_from_the_target() {
    // A sovereign cloud: no call may go to the public cloud's hosts.
    let mut req = request(SUB, weekdays(), Connector::Http);
    req.arm_endpoint = "https://management.usgovcloudapi.net/".into();
    req.blob_endpoint = "https://churnstore.blob.core.usgovcloudapi.net".into();
    let body = schedule::render(&req, "Enabled").unwrap();
    let mut uris = Vec::new();
    collect_uris(&body, &mut uris);
    assert!(uris.len() >= 4, "{uris:?}");
    for uri in &uris {
        assert!(
            uri.starts_with("https://management.usgovcloudapi.net/subscriptions/")
                || uri.starts_with("https://churnstore.blob.core.usgovcloudapi.net/models/runs/"),
            "{uri}"
        );
    }
    // Resource Manager tokens are for that cloud's audience (storage's is the same
    // in every cloud).
    let mut audiences = Vec::new();
    collect_key(&body, "audience", &mut audiences);
    audiences.sort();
    audiences.dedup();
    assert_eq!(
        audiences,
        [
            "https://management.usgovcloudapi.net/",
            "https://storage.azure.com/"
        ]
    );
    req.blob_endpoint = "churnstore".into();
    let e = schedule::render(&req, "Enabled").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Input);
    assert!(
        e.message.contains("`churnstore` is not an https URL"),
        "{}",
        e.message
    );
}

/// Every string value of `key` anywhere in `v`.
fn collect_key(v: &serde_json::Value, key: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                match (k == key, x.as_str()) {
                    (true, Some(s)) => out.push(s.to_string()),
                    _ => collect_key(x, key, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| collect_key(x, key, out)),
        _ => {}
    }
}

/// Every `uri` an action of the workflow calls.
fn collect_uris(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x.as_str()) {
                    ("uri", Some(uri)) => out.push(uri.to_string()),
                    _ => collect_uris(x, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| collect_uris(x, out)),
        _ => {}
    }
}

#[test]
fn refusals_are_input_errors() {
    let mut req = request(SUB, weekdays(), Connector::Http);
    req.trigger = Trigger::Schedule {
        cron: "0 3 1 * 1".into(),
        time_zone: "UTC".into(),
    };
    let e = schedule::render(&req, "Enabled").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Input);
    assert!(e.message.contains("day-of-month"), "{}", e.message);
    req.trigger = Trigger::Schedule {
        cron: "0 3 * * *".into(),
        time_zone: "Mars/Olympus".into(),
    };
    let e = schedule::render(&req, "Enabled").unwrap_err();
    assert!(e.message.contains("Mars/Olympus"), "{}", e.message);
    req.trigger = weekdays();
    req.shards = 0;
    let e = schedule::render(&req, "Enabled").unwrap_err();
    assert!(e.message.contains("0 shards"), "{}", e.message);
    req.shards = 2;
    req.name = "Bad_Name".into();
    let e = schedule::render(&req, "Enabled").unwrap_err();
    assert!(e.message.contains("Bad_Name"), "{}", e.message);
    // An Until loop's limit.count is at most 5,000 (Logic Apps limits). Checks back
    // off to a minute, so a day polled from every second needs 1,472 of them; only a
    // longer timeout than R allows is refused.
    req.name = "churn-nightly".into();
    (req.poll_seconds, req.timeout_s) = (1, 86_400);
    let body = schedule::render(&req, "Enabled").unwrap();
    let until = &body["properties"]["definition"]["actions"]["For_each_shard"]["actions"]
        ["Until_terminated"];
    assert_eq!(until["limit"]["count"], 1472);
    req.timeout_s = 400_000;
    let e = schedule::render(&req, "Enabled").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Input);
    assert!(e.message.contains("6699 checks"), "{}", e.message);
    req.poll_seconds = 81;
    let body = schedule::render(&req, "Enabled").unwrap();
    let until = &body["properties"]["definition"]["actions"]["For_each_shard"]["actions"]
        ["Until_terminated"];
    assert_eq!(until["limit"]["count"], 4940);
    req.first_check_s = Some(0);
    let e = schedule::render(&req, "Enabled").unwrap_err();
    assert!(e.message.contains("first check"), "{}", e.message);
}

/// The waits before each check: the first after the shard's usual duration, then
/// backing off by `poll_seconds` to a minute; the Wait reads them by iteration.
#[test]
fn checks_start_at_the_usual_duration_and_back_off() {
    let mut req = request(SUB, weekdays(), Connector::Http);
    assert_eq!(req.poll_waits(), vec![10, 10, 20, 30, 40, 50, 60]);
    req.first_check_s = Some(95);
    assert_eq!(req.poll_waits(), vec![95, 10, 20, 30, 40, 50, 60]);
    req.poll_seconds = 25;
    assert_eq!(req.poll_waits(), vec![95, 25, 50, 60]);
    req.poll_seconds = 300;
    assert_eq!(req.poll_waits(), vec![95, 300]);
    // The first check is never after the timeout.
    req.first_check_s = Some(100_000);
    assert_eq!(req.poll_waits()[0], 3600);

    let mut req = request(SUB, weekdays(), Connector::Http);
    req.first_check_s = Some(95);
    let body = schedule::render(&req, "Enabled").unwrap();
    let def = &body["properties"]["definition"];
    assert_eq!(
        def["parameters"]["pollWaitSeconds"],
        serde_json::json!({"type": "Array", "defaultValue": [95, 10, 20, 30, 40, 50, 60]})
    );
    let until = &def["actions"]["For_each_shard"]["actions"]["Until_terminated"];
    let delay = &until["actions"]["Delay"]["inputs"]["interval"];
    assert_eq!(delay["unit"], "Second");
    assert_eq!(
        delay["count"],
        "@parameters('pollWaitSeconds')[min(iterationIndexes('Until_terminated'), sub(length(parameters('pollWaitSeconds')), 1))]"
    );
    // 95 + 10 + ... + 60 = 305 s in 7 checks, then 55 a minute apart to 3,600 s, and one more.
    assert_eq!(until["limit"]["count"], 63);
}

#[test]
fn shards_run_at_most_max_parallel_at_once() {
    let repetitions = |shards: u32, max_parallel: Option<u32>| {
        let mut req = request(SUB, weekdays(), Connector::Http);
        req.shards = shards;
        req.max_parallel = max_parallel;
        let body = schedule::render(&req, "Enabled").unwrap();
        let each = &body["properties"]["definition"]["actions"]["For_each_shard"];
        assert_eq!(each["foreach"], format!("@range(1, {shards})"));
        each["runtimeConfiguration"]["concurrency"]["repetitions"].clone()
    };
    assert_eq!(repetitions(2, None), 2);
    assert_eq!(repetitions(12, None), 10);
    assert_eq!(repetitions(12, Some(3)), 3);
    assert_eq!(repetitions(12, Some(40)), 12);
}

#[test]
fn user_values_stay_literal() {
    let mut req = request(SUB, weekdays(), Connector::Http);
    req.env
        .insert("SERVERLESS_OUTPUT".into(), "@{workflow()}/out/".into());
    let body = schedule::render(&req, "Enabled").unwrap();
    assert!(body
        .to_string()
        .contains(r#""value":"@@{workflow()}/out/@{workflow()['run']['name']}/""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_writes_disabled_grants_roles_enables_and_is_idempotent() {
    let dir = std::env::temp_dir().join(format!("serverless-wf-{}", std::process::id()));
    let config = Config::new(&dir);
    let local = LocalAzure::start(config.clone()).await.unwrap();
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
    let arm = ArmClient::new(&endpoints, cred).unwrap();
    let progress = Progress::new();
    let sub = config.subscription_id.clone();
    serverless_core::aci::ensure_resource_group(
        &arm,
        &sub,
        "rg-scoring",
        "westeurope",
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    local
        .add_storage_account(serverless_local::SeededStorageAccount {
            resource_group: "rg-scoring".into(),
            name: "churnstore".into(),
            blob_endpoint: "https://127.0.0.1:9/churnstore/".into(),
            location: "westeurope".into(),
        })
        .unwrap();
    let uami = request(&sub, weekdays(), Connector::Http).identity_id;
    serverless_core::identity::create_identity(&arm, &uami, "westeurope", &BTreeMap::new())
        .await
        .unwrap();

    for connector in [Connector::Http, Connector::Aci] {
        let mut req = request(&sub, weekdays(), connector);
        req.name = format!("churn-{connector:?}").to_ascii_lowercase();
        // A dry run writes nothing and plans the creation.
        req.dry_run = true;
        let before = local.journal().len();
        let planned = schedule::apply(&arm, &req, &progress).await.unwrap();
        let writes = |from: usize| {
            local.journal()[from..]
                .iter()
                .filter(|e| e.method != "GET")
                .map(|e| format!("{} {}", e.method, e.path))
                .collect::<Vec<_>>()
        };
        assert!(
            writes(before).iter().all(|w| w.contains("/oauth2/")),
            "{:?}",
            writes(before)
        );
        assert!(planned
            .plan
            .items
            .iter()
            .all(|i| i.action == Action::Create));
        assert_eq!(
            planned
                .plan
                .items
                .iter()
                .filter(|i| i.kind == "role assignment")
                .count(),
            3
        );
        // The real run.
        req.dry_run = false;
        let before = local.journal().len();
        let done = schedule::apply(&arm, &req, &progress).await.unwrap();
        let principal = done.principal_id.clone().unwrap();
        let w = writes(before);
        let first_put = w
            .iter()
            .position(|x| x.starts_with("PUT") && x.contains("/workflows/"))
            .unwrap();
        let enable = w.iter().position(|x| x.ends_with("/enable")).unwrap();
        let roles: Vec<usize> = w
            .iter()
            .enumerate()
            .filter(|(_, x)| x.contains("roleAssignments"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(roles.len(), 3, "{w:?}");
        assert!(roles.iter().all(|&i| first_put < i && i < enable), "{w:?}");
        let stored = local
            .journal()
            .iter()
            .find(|e| e.method == "PUT" && e.path.contains("/workflows/"))
            .and_then(|e| e.body.clone())
            .unwrap();
        assert_eq!(stored["properties"]["state"], "Disabled");
        let live = arm.get(&done.workflow_id, "2019-05-01").await.unwrap();
        assert_eq!(live["properties"]["state"], "Enabled");
        assert_eq!(live["identity"]["principalId"], principal.as_str());
        // Again: nothing to do, nothing written.
        let before = local.journal().len();
        let again = schedule::apply(&arm, &req, &progress).await.unwrap();
        assert!(again
            .plan
            .items
            .iter()
            .all(|i| i.action == Action::Unchanged));
        assert!(
            writes(before).iter().all(|w| w.contains("/oauth2/")),
            "{:?}",
            writes(before)
        );
        // Another deployment may not take the name.
        let mut other = request(&sub, weekdays(), connector);
        other.name = req.name.clone();
        other.deployment = "fraud".into();
        let e = schedule::apply(&arm, &other, &progress).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Input);
        assert!(e.message.contains("churn"), "{}", e.message);
        // Deleting removes the workflow, its role assignments and connections.
        let removed = schedule::delete(&arm, &done.workflow_id).await.unwrap();
        assert_eq!(
            removed
                .iter()
                .filter(|r| r.contains("roleAssignments"))
                .count(),
            3
        );
        assert!(arm
            .get_opt(&done.workflow_id, "2019-05-01")
            .await
            .unwrap()
            .is_none());
        let left = arm
            .get(
                &format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId%20eq%20'{principal}'"),
                "2022-04-01",
            )
            .await
            .unwrap();
        assert_eq!(left["value"].as_array().unwrap().len(), 0, "{left}");
    }
    local.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
