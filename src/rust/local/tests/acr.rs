//! End-to-end tests of the emulated registries (names, ACR Tasks quick builds, the
//! registry data plane, container groups pulling built images) and of seeded storage
//! accounts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use serverless_local::{Config, LocalAzure, SeededStorageAccount};

const ARM_SCOPE: &str = "https://management.azure.com/.default";
const ACR: &str = "api-version=2025-04-01";
const TASKS: &str = "api-version=2019-04-01";
const ACI: &str = "api-version=2023-05-01";
const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

/// A temporary directory removed on drop.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "serverless-acr-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

struct Env {
    azure: LocalAzure,
    http: reqwest::Client,
    /// Every bearer or registry token the test saw, to check the journal for.
    seen_tokens: std::sync::Mutex<Vec<String>>,
    _dir: TempDir,
}

async fn start_with(tag: &str, edit: impl FnOnce(&mut Config)) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir(tag);
    let mut config = Config::new(dir.0.join("work"));
    edit(&mut config);
    let azure = LocalAzure::start(config).await.expect("emulator starts");
    let ca = reqwest::Certificate::from_pem(azure.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .unwrap();
    Env {
        azure,
        http,
        seen_tokens: std::sync::Mutex::new(Vec::new()),
        _dir: dir,
    }
}

async fn start(tag: &str) -> Env {
    start_with(tag, |_| {}).await
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.azure.https_endpoint())
    }

    fn sub(&self) -> String {
        format!("/subscriptions/{}", self.azure.config().subscription_id)
    }

    fn remember(&self, token: &str) {
        self.seen_tokens.lock().unwrap().push(token.to_string());
    }

    async fn token(&self) -> String {
        let c = self.azure.config();
        let body: Value = self
            .http
            .post(self.url(&format!("/{}/oauth2/v2.0/token", c.tenant_id)))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", c.client_id.as_str()),
                ("client_secret", c.client_secret.as_str()),
                ("scope", ARM_SCOPE),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = body["access_token"].as_str().unwrap().to_string();
        self.remember(&token);
        token
    }

    async fn arm(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = self.token().await;
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create_rg(&self, rg: &str) {
        let (status, body) = self
            .arm(
                Method::PUT,
                &format!("{}/resourcegroups/{rg}?api-version=2021-04-01", self.sub()),
                Some(json!({"location": "westeurope"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    fn registry_path(&self, rg: &str, name: &str) -> String {
        format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}",
            self.sub()
        )
    }

    /// Creates a registry; returns its loginServer.
    async fn create_registry(&self, rg: &str, name: &str, admin: bool) -> String {
        let (status, body) = self
            .arm(
                Method::PUT,
                &format!("{}?{ACR}", self.registry_path(rg, name)),
                Some(json!({"location": "westeurope", "sku": {"name": "Basic"},
                    "properties": {"adminUserEnabled": admin}})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["properties"]["loginServer"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Uploads a build context; returns its relativePath.
    async fn upload(&self, registry: &str, context: &[u8]) -> String {
        let (status, body) = self
            .arm(
                Method::POST,
                &format!("{registry}/listBuildSourceUploadUrl?{TASKS}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let url = body["uploadUrl"].as_str().unwrap();
        let resp = self
            .http
            .put(url)
            .header("x-ms-blob-type", "BlockBlob")
            .body(context.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        assert!(resp.headers().contains_key("etag"));
        body["relativePath"].as_str().unwrap().to_string()
    }

    /// Schedules a quick build; returns (status, run).
    async fn schedule(&self, registry: &str, source: &str, image: &str) -> (u16, Value) {
        self.arm(
            Method::POST,
            &format!("{registry}/scheduleRun?{TASKS}"),
            Some(json!({
                "type": "DockerBuildRequest",
                "imageNames": [image],
                "isPushEnabled": true,
                "noCache": false,
                "sourceLocation": source,
                "dockerFilePath": "Dockerfile",
                "platform": {"os": "Linux", "architecture": "amd64"},
                "agentConfiguration": {"cpu": 2},
            })),
        )
        .await
    }

    /// Polls the run until it is terminal.
    async fn wait_run(&self, registry: &str, run_id: &str) -> Value {
        for _ in 0..200 {
            let (status, run) = self
                .arm(
                    Method::GET,
                    &format!("{registry}/runs/{run_id}?{TASKS}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{run}");
            let s = run["properties"]["status"].as_str().unwrap();
            if ["Succeeded", "Failed", "Canceled", "Error", "Timeout"].contains(&s) {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("run {run_id} never finished");
    }

    /// The whole log of a run, through its log SAS URL.
    async fn run_log(&self, registry: &str, run_id: &str) -> String {
        let (status, link) = self
            .arm(
                Method::POST,
                &format!("{registry}/runs/{run_id}/listLogSasUrl?{TASKS}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{link}");
        let resp = self
            .http
            .get(link["logLink"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    /// Builds `files` (with their Dockerfile) into `image`; returns the finished run and
    /// its log.
    async fn build(&self, registry: &str, files: &[(&str, &str)], image: &str) -> (Value, String) {
        let source = self.upload(registry, &tar_gz(files)).await;
        let (status, run) = self.schedule(registry, &source, image).await;
        assert_eq!(status, 200, "{run}");
        let run_id = run["properties"]["runId"].as_str().unwrap().to_string();
        let done = self.wait_run(registry, &run_id).await;
        let log = self.run_log(registry, &run_id).await;
        (done, log)
    }

    async fn role_assignment(&self, scope: &str, role: &str, principal: &str) {
        let path = format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
            uuid_like()
        );
        let (status, body) = self
            .arm(
                Method::PUT,
                &path,
                Some(json!({"properties": {
                    "roleDefinitionId": format!("{}/providers/Microsoft.Authorization/roleDefinitions/{role}", self.sub()),
                    "principalId": principal,
                    "principalType": "ServicePrincipal",
                }})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Creates a user-assigned identity; returns (resource id, principal id).
    async fn identity(&self, rg: &str, name: &str) -> (String, String) {
        let id = format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            self.sub()
        );
        let (status, body) = self
            .arm(
                Method::PUT,
                &format!("{id}?api-version=2023-01-31"),
                Some(json!({"location": "westeurope"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            id,
            body["properties"]["principalId"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    }

    fn journal_text(&self) -> String {
        serde_json::to_string(&self.azure.journal()).unwrap()
    }

    fn assert_journal_clean(&self) {
        let journal = self.journal_text();
        for t in self.seen_tokens.lock().unwrap().iter() {
            assert!(
                !journal.contains(t.as_str()),
                "a token leaked into the journal"
            );
        }
        assert!(!journal.contains(&self.azure.config().client_secret));
    }
}

fn uuid_like() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let h = format!("{:032x}", n ^ 0x5a5a_1234_9876_abcd_0f0f_3c3c_7e7e_1111);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A gzipped tar of `files` (path, content).
fn tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, content.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A fake host R library holding `pkgs` (name, version).
fn fake_library(dir: &Path, pkgs: &[(&str, &str)]) -> PathBuf {
    let lib = dir.join("Rlib");
    for (name, version) in pkgs {
        let pkg = lib.join(name);
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(
            pkg.join("DESCRIPTION"),
            format!(
                "Package: {name}\nType: Package\nTitle: A fake\nVersion: {version}\nLicense: MIT\n"
            ),
        )
        .unwrap();
    }
    lib
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_storage_account_takes_role_assignments() {
    let env = start_with("storage", |c| {
        c.storage_accounts = vec![SeededStorageAccount {
            resource_group: "rg-data".into(),
            name: "devstoreaccount1".into(),
            blob_endpoint: "http://127.0.0.1:10000/devstoreaccount1/".into(),
            location: "West Europe".into(),
        }];
    })
    .await;
    let sub = env.sub();
    let (status, rg) = env
        .arm(
            Method::GET,
            &format!("{sub}/resourcegroups/rg-data?api-version=2021-04-01"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rg["location"], "westeurope");
    let account = format!(
        "{sub}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
    );
    for v in ["2023-01-01", "2023-05-01", "2024-01-01", "2025-01-01"] {
        let (status, body) = env
            .arm(Method::GET, &format!("{account}?api-version={v}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["properties"]["primaryEndpoints"]["blob"],
            "http://127.0.0.1:10000/devstoreaccount1/"
        );
        assert_eq!(body["kind"], "StorageV2");
        assert_eq!(body["sku"]["name"], "Standard_LRS");
        assert_eq!(body["properties"]["provisioningState"], "Succeeded");
    }
    let (status, _) = env
        .arm(
            Method::GET,
            &format!("{account}?api-version=2021-04-01"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = env
        .arm(
            Method::DELETE,
            &format!("{account}?api-version=2023-05-01"),
            None,
        )
        .await;
    assert_eq!(status, 405, "{body}");
    let (status, list) = env
        .arm(
            Method::GET,
            &format!("{sub}/resources?api-version=2021-04-01&$filter=resourceType%20eq%20'Microsoft.Storage/storageAccounts'"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["value"].as_array().unwrap().len(), 1, "{list}");
    let (status, list) = env
        .arm(
            Method::GET,
            &format!("{sub}/resourceGroups/rg-data/resources?api-version=2021-04-01"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["value"][0]["name"], "devstoreaccount1");

    env.create_rg("rg").await;
    let (_, principal) = env.identity("rg", "job-id").await;
    env.role_assignment(&account, "ba92f5b4-2d11-453d-a403-e96b0029c9fe", &principal)
        .await;
    let missing = format!(
        "{sub}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/nosuchaccount/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
        uuid_like()
    );
    let (status, body) = env
        .arm(
            Method::PUT,
            &missing,
            Some(json!({"properties": {"roleDefinitionId": format!("{sub}/providers/Microsoft.Authorization/roleDefinitions/{READER}"), "principalId": principal}})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    env.azure.shutdown().await;
}
