//! The ARM client and credentials against the local Azure emulator (real HTTPS, real
//! processes): resources, long-running operations, retries, token refresh, provider
//! registration and error mapping.

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use serde_json::json;
use serverless_core::aci::{self, ContainerSpec, GroupSpec};
use serverless_core::arm::{api, ArmClient};
use serverless_core::auth::{self, CredentialSpec, Endpoints};
use serverless_core::score;
use serverless_core::ErrorKind;
use serverless_local::{Config, Faults, LocalAzure};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Env {
    local: LocalAzure,
    config: Config,
    endpoints: Endpoints,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(tag: &str, unregistered: &[&str]) -> Env {
    let dir = std::env::temp_dir().join(format!("serverless-arm-{tag}-{}", std::process::id()));
    let mut config = Config::new(&dir);
    config.unregistered_providers = unregistered.iter().map(|s| s.to_string()).collect();
    let local = LocalAzure::start(config.clone()).await.unwrap();
    let endpoints = Endpoints {
        authority_host: local.https_endpoint(),
        arm: local.https_endpoint(),
        ca_pem: Some(local.ca_pem()),
    };
    Env {
        local,
        config,
        endpoints,
        _dir: TempDir(dir),
    }
}

impl Env {
    fn secret_spec(&self) -> CredentialSpec {
        CredentialSpec::ClientSecret {
            tenant: self.config.tenant_id.clone(),
            client_id: self.config.client_id.clone(),
            client_secret: self.config.client_secret.clone(),
        }
    }

    fn arm(&self) -> ArmClient {
        let cred =
            auth::credential(&self.secret_spec(), &self.endpoints, Default::default()).unwrap();
        let mut arm = ArmClient::new(&self.endpoints, cred).unwrap();
        arm.retry.base_delay = Duration::from_millis(50);
        arm.retry.poll_interval = Duration::from_millis(200);
        arm.retry.lro_timeout = Duration::from_secs(20);
        arm
    }

    fn rg_path(&self, rg: &str) -> String {
        format!(
            "/subscriptions/{}/resourcegroups/{rg}",
            self.config.subscription_id
        )
    }

    fn group(&self, rg: &str, name: &str, script: &str) -> GroupSpec {
        GroupSpec {
            subscription: self.config.subscription_id.clone(),
            resource_group: rg.into(),
            name: name.into(),
            location: "westeurope".into(),
            containers: vec![ContainerSpec {
                name: "job".into(),
                image: "serverless-runtime:test".into(),
                command: vec!["sh".into(), "-c".into(), script.into()],
                cpu: 1.0,
                memory_gb: 1.5,
                env: BTreeMap::from([("X".into(), "hello-from-x".into())]),
                secure_env: BTreeMap::from([("S".into(), "very-secret-value".into())]),
            }],
            identity: None,
            registry_identities: vec![],
            tags: BTreeMap::from([("serverless-deployment".into(), "test".into())]),
            spot: false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_and_device_code_get_tokens() {
    let env = start("tokens", &[]).await;
    let cred = auth::credential(&env.secret_spec(), &env.endpoints, Default::default()).unwrap();
    let token = auth::token(cred.as_ref(), "https://management.azure.com/.default")
        .await
        .unwrap();
    let claims = auth::jwt_claims(token.token.secret()).unwrap();
    assert_eq!(claims["tid"], env.config.tenant_id.as_str());
    assert!(claims["aud"]
        .as_str()
        .unwrap()
        .starts_with("https://management.azure.com"));

    let notices: auth::Notices = Default::default();
    let device = CredentialSpec::DeviceCode {
        tenant: env.config.tenant_id.clone(),
        client_id: "04b07795-8ddb-461a-bbee-02f9e1bf7b46".into(),
    };
    let cred = auth::credential(&device, &env.endpoints, notices.clone()).unwrap();
    let token = tokio::time::timeout(
        Duration::from_secs(30),
        auth::token(cred.as_ref(), "https://management.azure.com/.default"),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(token.token.secret().split('.').count() == 3);
    let shown = notices.lock().unwrap().clone();
    assert_eq!(shown.len(), 1);

    let wrong = CredentialSpec::ClientSecret {
        tenant: env.config.tenant_id.clone(),
        client_id: env.config.client_id.clone(),
        client_secret: "wrong-secret-value".into(),
    };
    let cred = auth::credential(&wrong, &env.endpoints, Default::default()).unwrap();
    let err = auth::token(cred.as_ref(), "https://management.azure.com/.default")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(err.message.contains("AADSTS7000215"), "{}", err.message);
    assert!(!err.message.contains("wrong-secret-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_group_runs_via_async_operation_and_is_deleted() {
    let env = start("aci", &[]).await;
    let arm = env.arm();
    aci::ensure_resource_group(
        &arm,
        &env.config.subscription_id,
        "rg-aci",
        "westeurope",
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let spec = env.group("rg-aci", "job-echo", "echo \"X=$X\"; exit 3");
    let results = aci::run_group(&arm, &spec, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].state, "Terminated");
    assert_eq!(results[0].exit_code, Some(3));
    assert!(
        results[0].logs.contains("X=hello-from-x"),
        "{}",
        results[0].logs
    );
    // Deleted afterwards.
    assert!(arm
        .get_opt(&spec.path(), api::CONTAINER_INSTANCE)
        .await
        .unwrap()
        .is_none());
    // The async operation was polled, and the secure value never reached the journal.
    let journal = env.local.journal();
    assert!(journal.iter().any(|e| e.path.contains("/operations/")));
    let text = serde_json::to_string(&journal).unwrap();
    assert!(!text.contains("very-secret-value"));
    assert!(!text.contains(&env.config.client_secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_types_create_get_delete_and_location_polling() {
    let env = start("types", &[]).await;
    let arm = env.arm();
    let sub = env.config.subscription_id.clone();
    let rg = env.rg_path("rg-types");
    arm.put(&rg, api::RESOURCES, &json!({"location": "westeurope"}))
        .await
        .unwrap();
    let base = format!("/subscriptions/{sub}/resourceGroups/rg-types/providers");
    let identity = arm
        .put(
            &format!("{base}/Microsoft.ManagedIdentity/userAssignedIdentities/job-id"),
            api::MANAGED_IDENTITY,
            &json!({"location": "westeurope"}),
        )
        .await
        .unwrap();
    let principal = identity["properties"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let cases = vec![
        (
            format!("{base}/Microsoft.ContainerRegistry/registries/serverlessacr1"),
            api::CONTAINER_REGISTRY,
            json!({"location": "westeurope", "sku": {"name": "Basic"}, "properties": {"adminUserEnabled": false}}),
        ),
        (
            format!("{base}/Microsoft.Logic/workflows/wf-test"),
            api::LOGIC,
            json!({"location": "westeurope", "properties": {"state": "Enabled", "definition": {"triggers": {}, "actions": {}}}}),
        ),
        (
            format!("{base}/Microsoft.Web/connections/aci"),
            api::WEB_CONNECTIONS,
            json!({"location": "westeurope", "kind": "V1", "properties": {"displayName": "aci",
                "api": {"id": format!("/subscriptions/{sub}/providers/Microsoft.Web/locations/westeurope/managedApis/aci")},
                "parameterValueType": "Alternative"}}),
        ),
        (
            format!(
                "{rg}/providers/Microsoft.Authorization/roleAssignments/{}",
                serverless_core::arm::uuid_v4()
            ),
            api::AUTHORIZATION,
            json!({"properties": {"roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d"), "principalId": principal}}),
        ),
    ];
    for (path, version, body) in &cases {
        if let Err(e) = arm.put(path, version, body).await {
            panic!(
                "{path}: {e:?}\n{:#?}",
                env.local.journal().iter().rev().take(4).collect::<Vec<_>>()
            );
        }
        let got = arm.get(path, version).await.unwrap();
        assert!(
            got["id"].as_str().unwrap().eq_ignore_ascii_case(path),
            "{got}"
        );
        arm.put(path, version, body).await.unwrap(); // idempotent
        arm.delete(path, version).await.unwrap();
        assert!(
            arm.get_opt(path, version).await.unwrap().is_none(),
            "{path}"
        );
    }
    // Deleting a resource group answers 202 + Location, which the client follows.
    arm.delete(&rg, api::RESOURCES).await.unwrap();
    assert!(arm.get_opt(&rg, api::RESOURCES).await.unwrap().is_none());
    let journal = env.local.journal();
    assert!(journal
        .iter()
        .any(|e| e.method == "DELETE" && e.status == 202));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_server_errors_and_resets_are_retried() {
    let env = start("faults", &[]).await;
    let arm = env.arm();
    arm.put(
        &env.rg_path("rg-faults"),
        api::RESOURCES,
        &json!({"location": "westeurope"}),
    )
    .await
    .unwrap();
    env.local.set_faults(Faults {
        throttle: 0.25,
        server_errors: 0.25,
        latency_ms: 0,
        resets: 0.2,
        seed: 7,
        evict: 0.0,
    });
    for i in 0..12 {
        let path = env.rg_path(&format!("rg-faults-{i}"));
        arm.put(&path, api::RESOURCES, &json!({"location": "westeurope"}))
            .await
            .unwrap();
    }
    assert!(arm.stats.retries.load(Ordering::Relaxed) > 0);
    let statuses: Vec<u16> = env.local.journal().iter().map(|e| e.status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().any(|s| *s >= 500), "{statuses:?}");
    assert!(
        statuses.contains(&0),
        "a dropped connection is journaled as 0: {statuses:?}"
    );
    // Each resource group was created exactly once despite the retries.
    let created = env
        .local
        .journal()
        .iter()
        .filter(|e| e.method == "PUT" && e.status == 201)
        .count();
    assert_eq!(created, 13);

    // Throttling that outlasts the budget is its own error.
    env.local.set_faults(Faults {
        throttle: 1.0,
        server_errors: 0.0,
        latency_ms: 0,
        resets: 0.0,
        seed: 1,
        evict: 0.0,
    });
    let mut arm = env.arm();
    arm.retry.max_retries = 2;
    let err = arm
        .get(&env.rg_path("rg-faults"), api::RESOURCES)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Throttled);
}

/// Hands out a bad token first, then real ones: the client must refresh once on 401.
#[derive(Debug)]
struct StaleFirst {
    inner: Arc<dyn TokenCredential>,
    used_stale: AtomicBool,
}

#[async_trait::async_trait]
impl TokenCredential for StaleFirst {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if !self.used_stale.swap(true, Ordering::SeqCst) {
            return Ok(AccessToken::new(
                Secret::new("stale.token.value"),
                time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            ));
        }
        self.inner.get_token(scopes, options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_refreshes_once_and_errors_are_mapped() {
    let env = start("auth", &[]).await;
    let inner = auth::credential(&env.secret_spec(), &env.endpoints, Default::default()).unwrap();
    let cred = Arc::new(StaleFirst {
        inner,
        used_stale: AtomicBool::new(false),
    });
    let arm = ArmClient::new(&env.endpoints, cred).unwrap();
    arm.put(
        &env.rg_path("rg-auth"),
        api::RESOURCES,
        &json!({"location": "westeurope"}),
    )
    .await
    .unwrap();
    let statuses: Vec<u16> = env.local.journal().iter().map(|e| e.status).collect();
    assert!(statuses.contains(&401), "{statuses:?}");

    let missing = format!(
        "/subscriptions/{}/resourceGroups/rg-auth/providers/Microsoft.ContainerInstance/containerGroups/nope",
        env.config.subscription_id
    );
    let err = arm
        .get(&missing, api::CONTAINER_INSTANCE)
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Azure, Some(404)));
    assert_eq!(err.code.as_deref(), Some("ResourceNotFound"));
    assert!(err.request_id.is_some());

    // Azure rejects a container group without osType; so must we see it rejected.
    let arm = env.arm();
    let bad = json!({"location": "westeurope", "properties": {"containers": [
        {"name": "job", "properties": {"image": "x", "command": ["true"], "resources": {"requests": {"cpu": 1, "memoryInGB": 1}}}}]}});
    let err = arm
        .put(&missing, api::CONTAINER_INSTANCE, &bad)
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(400));
    assert!(err.message.contains("osType"), "{}", err.message);

    let err = arm
        .get(&env.rg_path("rg-auth"), "1999-01-01")
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_provider_registration_is_registered_and_retried() {
    let env = start("register", &["Microsoft.ContainerInstance"]).await;
    let arm = env.arm();
    aci::ensure_resource_group(
        &arm,
        &env.config.subscription_id,
        "rg-reg",
        "westeurope",
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let spec = env.group("rg-reg", "job-reg", "true");
    aci::run_group(&arm, &spec, Duration::from_secs(30))
        .await
        .unwrap();
    let journal = env.local.journal();
    assert!(journal.iter().any(|e| e.status == 409));
    assert!(journal.iter().any(|e| e.method == "POST"
        && e.path
            .ends_with("/providers/Microsoft.ContainerInstance/register")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_resource_group_keeps_its_tags() {
    let env = start("rg-tags", &[]).await;
    let arm = env.arm();
    let path = env.rg_path("rg-team");
    arm.put(
        &path,
        api::RESOURCES,
        &json!({"location": "westeurope", "tags": {"owner": "team-a", "cost-center": "42"}}),
    )
    .await
    .unwrap();
    let ours = BTreeMap::from([("serverless-deployment".to_string(), "mpg".to_string())]);
    aci::ensure_resource_group(
        &arm,
        &env.config.subscription_id,
        "rg-team",
        "westeurope",
        &ours,
    )
    .await
    .unwrap();
    let group = arm.get(&path, api::RESOURCES).await.unwrap();
    assert_eq!(
        group["tags"],
        json!({"owner": "team-a", "cost-center": "42"})
    );
    // A group that does not exist is created with our tags.
    aci::ensure_resource_group(
        &arm,
        &env.config.subscription_id,
        "rg-new",
        "westeurope",
        &ours,
    )
    .await
    .unwrap();
    let group = arm
        .get(&env.rg_path("rg-new"), api::RESOURCES)
        .await
        .unwrap();
    assert_eq!(group["tags"], json!({"serverless-deployment": "mpg"}));
}

/// The default `max_parallel` follows the region's quota (the usages API): 10 when
/// it has room, fewer when its free vCPUs or groups allow fewer, at least 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_parallel_follows_the_quota() {
    let env = start("quota", &[]).await;
    let arm = env.arm();
    let sub = env.config.subscription_id.clone();
    let at_once = |cpu: f64, spot: bool| {
        let (arm, sub) = (&arm, &sub);
        async move { score::default_parallel(arm, sub, "westeurope", cpu, spot).await }
    };
    assert_eq!(at_once(1.0, false).await, (10, None));
    env.local.set_aci_quota(serverless_local::AciQuota {
        container_groups: 100,
        standard_cores: 3.0,
    });
    let (n, why) = at_once(1.0, false).await;
    assert_eq!(n, 3);
    assert!(why.unwrap().contains("room for 3 more groups of 1 vCPU"));
    assert_eq!(at_once(2.0, false).await.0, 1);
    // Spot groups count against the group quota only.
    assert_eq!(at_once(2.0, true).await, (10, None));
    // A running group uses its cores; the usages API says so.
    aci::ensure_resource_group(&arm, &sub, "rg-quota", "westeurope", &BTreeMap::new())
        .await
        .unwrap();
    let spec = env.group("rg-quota", "job-quota", "sleep 30");
    aci::create_group(&arm, &spec).await.unwrap();
    let usages = arm
        .get(
            &format!("/subscriptions/{sub}/providers/Microsoft.ContainerInstance/locations/westeurope/usages"),
            "2023-05-01",
        )
        .await
        .unwrap();
    let current = |name: &str| {
        usages["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"]["value"] == name)
            .map(|u| {
                (
                    u["currentValue"].as_f64().unwrap(),
                    u["limit"].as_f64().unwrap(),
                )
            })
    };
    assert_eq!(current("ContainerGroups"), Some((1.0, 100.0)));
    assert_eq!(
        current("StandardCores"),
        Some((spec.containers[0].cpu, 3.0))
    );
    // No room at all: still 1 (the create then fails with ACI's quota error).
    env.local.set_aci_quota(serverless_local::AciQuota {
        container_groups: 1,
        standard_cores: 3.0,
    });
    assert_eq!(at_once(1.0, false).await.0, 1);
    let second = env.group("rg-quota", "job-quota-2", "true");
    let err = aci::create_group(&arm, &second).await.unwrap_err();
    assert!(
        err.message.contains("ContainerGroupQuotaReached"),
        "{}",
        err.message
    );
    aci::delete_group(&arm, &spec.path()).await.unwrap();
    env.local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_groups_say_so_and_the_local_azure_can_evict_them() {
    let env = start("spot", &[]).await;
    let arm = env.arm();
    aci::ensure_resource_group(
        &arm,
        &env.config.subscription_id,
        "rg-spot",
        "westeurope",
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let mut spec = env.group("rg-spot", "job-spot", "sleep 30; echo done");
    spec.spot = true;
    env.local.set_faults(Faults {
        evict: 1.0,
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let results = aci::run_group(&arm, &spec, Duration::from_secs(60))
        .await
        .unwrap();
    // Evicted while it ran: killed as by SIGKILL, long before its 30 s.
    assert_eq!(results[0].exit_code, Some(137));
    assert!(
        results[0].logs.contains("was evicted"),
        "{}",
        results[0].logs
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let put = env
        .local
        .journal()
        .into_iter()
        .find(|e| e.method == "PUT" && e.path.ends_with("/containerGroups/job-spot"))
        .expect("the group's PUT");
    assert_eq!(put.body.unwrap()["properties"]["priority"], "Spot");

    // Regular groups are never evicted.
    let regular = env.group("rg-spot", "job-regular", "echo done");
    let results = aci::run_group(&arm, &regular, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(results[0].exit_code, Some(0));

    // Only ContainerGroupPriority's values are accepted.
    let mut body = spec.body();
    body["properties"]["priority"] = serde_json::json!("Cheap");
    let err = arm
        .put(&spec.path(), api::CONTAINER_INSTANCE, &body)
        .await
        .unwrap_err();
    assert!(
        err.message.contains("properties.priority"),
        "{}",
        err.message
    );
}
