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

/// The registry data plane's token flow: ARM token -> refresh token -> access token.
async fn registry_access_token(env: &Env, login_server: &str, scopes: &[&str]) -> String {
    let arm = env.token().await;
    let resp = env
        .http
        .post(format!("https://{login_server}/oauth2/exchange"))
        .form(&[
            ("grant_type", "access_token"),
            ("service", login_server),
            ("tenant", env.azure.config().tenant_id.as_str()),
            ("access_token", arm.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    env.remember(&refresh);
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("service", login_server),
        ("refresh_token", refresh.as_str()),
    ];
    for s in scopes {
        form.push(("scope", s));
    }
    let resp = env
        .http
        .post(format!("https://{login_server}/oauth2/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_string();
    env.remember(&access);
    access
}

const RUNTIME_DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
# The serveRless runtime image.
FROM rocker/r-ver:4.2.2
LABEL org.opencontainers.image.source="https://example.org/serveRless"
ENV GREETING=hello \
    RUNTIME=local
RUN install2.r --error jsonlite==1.8.8 \
    R6==2.5.1
COPY scoring.R /srv/scoring.R
WORKDIR /srv
USER 1000
CMD ["Rscript", "-e", "serveRless::run_scoring_job()"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_names_are_checked() {
    let env = start_with("names", |c| {
        c.taken_registry_names = vec!["ContosoAcr".into()];
    })
    .await;
    env.create_rg("rg").await;
    env.create_rg("rg2").await;
    let check = format!(
        "{}/providers/Microsoft.ContainerRegistry/checkNameAvailability",
        env.sub()
    );
    let ask = |name: &str, version: &str| {
        let path = format!("{check}?api-version={version}");
        let body = json!({"name": name, "type": "Microsoft.ContainerRegistry/registries"});
        let env = &env;
        async move { env.arm(Method::POST, &path, Some(body)).await }
    };
    let (status, body) = ask("myregistry01", "2025-04-01").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"nameAvailable": true}));
    let (_, body) = ask("my-registry", "2023-07-01").await;
    assert_eq!(body["nameAvailable"], false);
    assert_eq!(body["reason"], "Invalid");
    let (_, body) = ask("abc", "2025-04-01").await;
    assert_eq!(body["reason"], "Invalid");
    let (_, body) = ask("contosoacr", "2025-04-01").await;
    assert_eq!(body["reason"], "AlreadyExists");
    assert_eq!(
        body["message"],
        "The registry contosoacr is already in use."
    );
    let (status, _) = ask("myregistry01", "2016-01-01").await;
    assert_eq!(status, 400);
    let (status, body) = env
        .arm(
            Method::POST,
            &format!("{check}?{ACR}"),
            Some(json!({"name": "x12345", "type": "Microsoft.Storage/storageAccounts"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    env.create_registry("rg", "myregistry01", false).await;
    let (_, body) = ask("MyRegistry01", "2025-04-01").await;
    assert_eq!(body["reason"], "AlreadyExists");
    // The same name in another resource group, or a taken one, is refused.
    for (rg, name) in [("rg2", "myregistry01"), ("rg", "contosoacr")] {
        let (status, body) = env
            .arm(
                Method::PUT,
                &format!("{}?{ACR}", env.registry_path(rg, name)),
                Some(json!({"location": "westeurope", "sku": {"name": "Basic"}})),
            )
            .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "AlreadyInUse");
    }
    // Re-PUT of the same registry keeps its login server.
    let first = env
        .arm(
            Method::GET,
            &format!("{}?{ACR}", env.registry_path("rg", "myregistry01")),
            None,
        )
        .await
        .1["properties"]["loginServer"]
        .clone();
    let (status, again) = env
        .arm(
            Method::PUT,
            &format!("{}?{ACR}", env.registry_path("rg", "myregistry01")),
            Some(json!({"location": "westeurope", "sku": {"name": "Standard"}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["properties"]["loginServer"], first);
    // Deleting it stops its listener and frees the name.
    let ls = first.as_str().unwrap().to_string();
    let resp = env
        .http
        .get(format!("https://{ls}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (status, _) = env
        .arm(
            Method::DELETE,
            &format!("{}?{ACR}", env.registry_path("rg", "myregistry01")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(env
        .http
        .get(format!("https://{ls}/v2/"))
        .send()
        .await
        .is_err());
    let (_, body) = ask("myregistry01", "2025-04-01").await;
    assert_eq!(body["nameAvailable"], true);
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_build_streams_its_log_and_pushes_the_image() {
    let env = start("build").await;
    env.create_rg("rg").await;
    let ls = env.create_registry("rg", "buildacr01", false).await;
    assert!(ls.starts_with("127.0.0.1:"), "{ls}");
    let reg = env.registry_path("rg", "buildacr01");

    let context = tar_gz(&[
        ("Dockerfile", RUNTIME_DOCKERFILE),
        ("scoring.R", "run <- function() 1\n"),
    ]);
    let source = env.upload(&reg, &context).await;
    assert!(
        source.starts_with("source/") && source.ends_with(".tar.gz"),
        "{source}"
    );
    let (status, run) = env
        .schedule(&reg, &source, "serverless-runtime:v1-{{.Run.ID}}")
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["properties"]["status"], "Queued");
    assert_eq!(run["properties"]["runId"], "cb1");
    assert_eq!(run["name"], "cb1");
    assert_eq!(run["type"], "Microsoft.ContainerRegistry/registries/runs");
    assert_eq!(run["properties"]["runType"], "QuickBuild");

    // Follow the log with Range reads while the build runs.
    let (status, link) = env
        .arm(
            Method::POST,
            &format!("{reg}/runs/cb1/listLogSasUrl?{TASKS}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let link = link["logLink"].as_str().unwrap().to_string();
    assert!(
        link.contains("/_acr/logs/buildacr01/cb1?") && link.contains("sp=r"),
        "{link}"
    );
    let mut followed = String::new();
    let mut reads_with_data = 0;
    let mut statuses = Vec::new();
    for _ in 0..400 {
        let (_, r) = env
            .arm(Method::GET, &format!("{reg}/runs/cb1?{TASKS}"), None)
            .await;
        let s = r["properties"]["status"].as_str().unwrap().to_string();
        if statuses.last() != Some(&s) {
            statuses.push(s.clone());
        }
        let resp = env
            .http
            .get(&link)
            .header("range", format!("bytes={}-", followed.len()))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            206 => {
                let range = resp.headers()["content-range"]
                    .to_str()
                    .unwrap()
                    .to_string();
                assert!(
                    range.starts_with(&format!("bytes {}-", followed.len())),
                    "{range}"
                );
                followed.push_str(&resp.text().await.unwrap());
                reads_with_data += 1;
            }
            416 => {
                let range = resp.headers()["content-range"]
                    .to_str()
                    .unwrap()
                    .to_string();
                assert_eq!(range, format!("bytes */{}", followed.len()));
                if s == "Succeeded" || s == "Failed" {
                    break;
                }
            }
            other => panic!("unexpected log status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("Succeeded"),
        "{statuses:?}\n{followed}"
    );
    assert!(statuses.contains(&"Running".to_string()), "{statuses:?}");
    assert!(reads_with_data >= 3, "the log did not grow step by step");
    let whole = env.run_log(&reg, "cb1").await;
    assert_eq!(whole, followed);
    for needle in [
        "Downloading source code...",
        "Step 1/8 : FROM rocker/r-ver:4.2.2",
        "jsonlite 1.8.8",
        "R6 2.5.1",
        &format!("Successfully tagged {ls}/serverless-runtime:v1-cb1"),
        &format!("Successfully pushed image: {ls}/serverless-runtime:v1-cb1"),
        "Run ID: cb1 was successful after",
    ] {
        assert!(whole.contains(needle), "missing {needle:?} in\n{whole}");
    }
    let first_line = whole.lines().next().unwrap();
    assert!(
        first_line.len() > 20 && first_line[..4].parse::<u32>().is_ok() && &first_line[4..5] == "/",
        "{first_line}"
    );

    let (_, done) = env
        .arm(Method::GET, &format!("{reg}/runs/cb1?{TASKS}"), None)
        .await;
    let props = &done["properties"];
    assert!(props["startTime"].is_string() && props["finishTime"].is_string());
    assert_eq!(
        props["platform"],
        json!({"os": "linux", "architecture": "amd64"})
    );
    let out = &props["outputImages"][0];
    assert_eq!(out["registry"], ls.as_str());
    assert_eq!(out["repository"], "serverless-runtime");
    assert_eq!(out["tag"], "v1-cb1");
    let digest = out["digest"].as_str().unwrap().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // The data plane: challenge, token flow, manifests and tags.
    let resp = env
        .http
        .get(format!("https://{ls}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"].to_str().unwrap(),
        format!("Bearer realm=\"https://{ls}/oauth2/token\",service=\"{ls}\"")
    );
    let bad = env
        .http
        .post(format!("https://{ls}/oauth2/exchange"))
        .form(&[
            ("grant_type", "access_token"),
            ("service", ls.as_str()),
            ("access_token", "not.a.token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let access = registry_access_token(&env, &ls, &["repository:serverless-runtime:pull"]).await;
    let manifest_url = format!("https://{ls}/v2/serverless-runtime/manifests/v1-cb1");
    let head = env
        .http
        .head(&manifest_url)
        .bearer_auth(&access)
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["docker-content-digest"], digest.as_str());
    let length: usize = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 100, "HEAD keeps the manifest's length");
    assert_eq!(
        head.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let get = env
        .http
        .get(&manifest_url)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let manifest: Value = get.json().await.unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        "rocker/r-ver:4.2.2"
    );
    let by_digest = env
        .http
        .get(format!(
            "https://{ls}/v2/serverless-runtime/manifests/{digest}"
        ))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(by_digest.status(), 200);
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: Value = env
        .http
        .get(format!(
            "https://{ls}/v2/serverless-runtime/blobs/{config_digest}"
        ))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config["config"]["Cmd"],
        json!(["Rscript", "-e", "serveRless::run_scoring_job()"])
    );
    assert_eq!(
        config["config"]["Env"],
        json!(["GREETING=hello", "RUNTIME=local"])
    );
    assert_eq!(config["config"]["User"], "1000");

    let missing = env
        .http
        .get(format!("https://{ls}/v2/serverless-runtime/manifests/nope"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");
    assert_eq!(
        body["errors"][0]["message"],
        "manifest tagged by \"nope\" is not found"
    );
    let tags: Value = env
        .http
        .get(format!("https://{ls}/v2/serverless-runtime/tags/list"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        tags,
        json!({"name": "serverless-runtime", "tags": ["v1-cb1"]})
    );
    // A token for another repository does not cover this one.
    let other = registry_access_token(&env, &ls, &["repository:other:pull"]).await;
    for token in [other.as_str(), "forged"] {
        let resp = env
            .http
            .head(&manifest_url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .ends_with(",scope=\"repository:serverless-runtime:pull\""));
    }
    let unknown_repo = env
        .http
        .get(format!("https://{ls}/v2/other/tags/list"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_repo.status(), 404);
    let body: Value = unknown_repo.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN");

    // A rebuild of the tag replaces it.
    let source = env.upload(&reg, &context).await;
    let (_, run) = env
        .schedule(&reg, &source, "serverless-runtime:v1-cb1")
        .await;
    assert_eq!(run["properties"]["runId"], "cb2");
    let done = env.wait_run(&reg, "cb2").await;
    assert_eq!(done["properties"]["status"], "Succeeded");
    let new_digest = done["properties"]["outputImages"][0]["digest"]
        .as_str()
        .unwrap();
    assert_ne!(new_digest, digest);
    let head = env
        .http
        .head(&manifest_url)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["docker-content-digest"], new_digest);

    let journal = env.azure.journal();
    let upload = journal
        .iter()
        .find(|e| e.method == "PUT" && e.path.starts_with("/_acr/source/"))
        .unwrap();
    assert_eq!(
        upload.body,
        Some(Value::String(format!("<{} bytes>", context.len())))
    );
    assert!(journal
        .iter()
        .any(|e| e.path == "/oauth2/exchange"
            && e.body.as_ref().unwrap()["access_token"] == "REDACTED"));
    env.assert_journal_clean();
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_builds_say_why() {
    let dir = temp_dir("rlib");
    let lib = fake_library(&dir.0, &[("jsonlite", "1.8.7")]);
    let env = start_with("fail", |c| {
        c.r_library_paths = vec![dir.0.join("no-such-lib"), lib.clone()];
    })
    .await;
    env.create_rg("rg").await;
    env.create_registry("rg", "failacr01", false).await;
    let reg = env.registry_path("rg", "failacr01");

    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("scoring.R", "1")], "failed to find Dockerfile"),
        (
            vec![("Dockerfile", "FROM Rocker/R-Ver:4.2.2\nCMD [\"true\"]\n")],
            "invalid reference format",
        ),
        (
            vec![(
                "Dockerfile",
                "FROM r-base\nRUN install2.r jsonlite=1.8.8 x==1.0\n",
            )],
            "invalid package pin 'x==1.0'",
        ),
        (
            vec![(
                "Dockerfile",
                "FROM r-base\nRUN install2.r nosuchpkg==1.0.0\n",
            )],
            "ERROR: package 'nosuchpkg' is not available",
        ),
        (
            vec![("Dockerfile", "FROM r-base\nCOPY model.rds /srv/\n")],
            "COPY failed: file not found in build context",
        ),
        (
            vec![("Dockerfile", "FROM r-base\nFETCH something\n")],
            "unknown instruction: FETCH",
        ),
    ];
    for (i, (files, needle)) in cases.iter().enumerate() {
        let (run, log) = env.build(&reg, files, "serverless-runtime:bad").await;
        let id = format!("cb{}", i + 1);
        assert_eq!(run["properties"]["runId"], id.as_str());
        assert_eq!(run["properties"]["status"], "Failed", "{log}");
        assert!(run["properties"]["outputImages"].is_null());
        assert!(log.contains(needle), "missing {needle:?} in\n{log}");
        assert!(
            log.contains(&format!("Run ID: {id} failed after"))
                && log.contains("Error: failed during run, err: exit status 1"),
            "{log}"
        );
    }
    // A pin the host has in another version only warns.
    let (run, log) = env
        .build(
            &reg,
            &[(
                "Dockerfile",
                "FROM r-base\nRUN install2.r jsonlite==1.8.8\nCMD [\"true\"]\n",
            )],
            "serverless-runtime:ok",
        )
        .await;
    assert_eq!(run["properties"]["status"], "Succeeded", "{log}");
    assert!(
        log.contains("locally the host's jsonlite 1.8.7 is used"),
        "{log}"
    );
    // No failed build left an image behind.
    let ls = run["properties"]["outputImages"][0]["registry"]
        .as_str()
        .unwrap()
        .to_string();
    let access = registry_access_token(&env, &ls, &["repository:serverless-runtime:pull"]).await;
    let tags: Value = env
        .http
        .get(format!("https://{ls}/v2/serverless-runtime/tags/list"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["ok"]));
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_logs_need_their_sas_and_runs_are_validated() {
    let env = start("sas").await;
    env.create_rg("rg").await;
    env.create_registry("rg", "sasacr01", false).await;
    let reg = env.registry_path("rg", "sasacr01");
    let (status, body) = env
        .arm(
            Method::POST,
            &format!("{reg}/listBuildSourceUploadUrl?{TASKS}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let url = body["uploadUrl"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!(
        "{}/_acr/source/sasacr01/source/",
        env.azure.https_endpoint()
    )));
    for field in ["sv=2025-11-05", "sr=b", "sp=cw", "se=", "sig="] {
        assert!(url.contains(field), "{url}");
    }
    let rel = body["relativePath"].as_str().unwrap().to_string();
    assert!(url.contains(&rel));
    let (status, _) = env
        .arm(
            Method::POST,
            &format!("{reg}/listBuildSourceUploadUrl?{ACR}"),
            None,
        )
        .await;
    assert_eq!(status, 400, "tasks need their own api-version");
    let context = tar_gz(&[("Dockerfile", "FROM alpine:3.20\nCMD [\"sleep\", \"1\"]\n")]);

    let (base, query) = url.split_once('?').unwrap();
    let forged: String = query
        .split('&')
        .map(|kv| {
            if kv.starts_with("sig=") {
                "sig=AAAA".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    let resp = env
        .http
        .put(format!("{base}?{forged}"))
        .header("x-ms-blob-type", "BlockBlob")
        .body(context.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-ms-error-code"], "AuthenticationFailed");
    let resp = env
        .http
        .put(base)
        .header("x-ms-blob-type", "BlockBlob")
        .body(context.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = env
        .http
        .put(&url)
        .body(context.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-ms-error-code"], "MissingRequiredHeader");

    // Nothing was stored: the source is not usable yet.
    let (status, err) = env.schedule(&reg, &rel, "app:1").await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "InvalidSourceLocation");
    let resp = env
        .http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(context.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let schedule = |body: Value| {
        let path = format!("{reg}/scheduleRun?{TASKS}");
        let env = &env;
        async move { env.arm(Method::POST, &path, Some(body)).await }
    };
    let good = json!({"type": "DockerBuildRequest", "imageNames": ["app:1"], "isPushEnabled": true,
        "sourceLocation": rel, "dockerFilePath": "Dockerfile", "platform": {"os": "Linux"}});
    // A FileTaskRunRequest is checked as one (the spec's RunRequest subtypes): without
    // its taskFilePath it is an invalid body; with it, one the local Azure cannot run.
    let bad_type = json!({"type": "FileTaskRunRequest", "sourceLocation": rel,
        "platform": {"os": "Linux"}});
    let (status, err) = schedule(bad_type).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "InvalidRequestContent", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("taskFilePath"),
        "{err}"
    );
    let file_task = json!({"type": "FileTaskRunRequest", "taskFilePath": "acb.yaml",
        "sourceLocation": rel, "platform": {"os": "Linux"}});
    let (status, err) = schedule(file_task).await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("only DockerBuildRequest"));
    for (field, value) in [
        ("imageNames", json!([])),
        ("imageNames", json!(["App:1"])),
        ("imageNames", json!(["app:-x"])),
        ("sourceLocation", json!("source/elsewhere.tar.gz")),
        ("platform", json!({"os": "Windows"})),
        ("platform", json!({})),
        ("dockerFilePath", json!("../Dockerfile")),
        ("isPushEnabled", json!("yes")),
        // 2019-04-01's Architecture has amd64, x86 and arm only.
        ("platform", json!({"os": "Linux", "architecture": "arm64"})),
        ("timeout", json!(60)),
    ] {
        let mut body = good.clone();
        body[field] = value.clone();
        let (status, err) = schedule(body).await;
        assert_eq!(status, 400, "{field}={value}: {err}");
    }
    // The spec requires dockerFilePath (there is no default Dockerfile).
    let mut no_dockerfile = good.clone();
    no_dockerfile
        .as_object_mut()
        .unwrap()
        .remove("dockerFilePath");
    let (status, err) = schedule(no_dockerfile).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "InvalidRequestContent", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Required property 'dockerFilePath'"),
        "{err}"
    );
    let (status, err) = env
        .arm(Method::GET, &format!("{reg}/runs/cb1?{TASKS}"), None)
        .await;
    assert_eq!(
        status, 404,
        "no run was created by a refused request: {err}"
    );

    // Cancel a run while it is queued or running.
    let (status, run) = schedule(good.clone()).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["properties"]["runId"], "cb1");
    let (status, _) = env
        .arm(
            Method::POST,
            &format!("{reg}/runs/cb1/cancel?{TASKS}"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let done = env.wait_run(&reg, "cb1").await;
    assert_eq!(done["properties"]["status"], "Canceled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, still) = env
        .arm(Method::GET, &format!("{reg}/runs/cb1?{TASKS}"), None)
        .await;
    assert_eq!(still["properties"]["status"], "Canceled");
    let (status, _) = env
        .arm(
            Method::POST,
            &format!("{reg}/runs/cb9/cancel?{TASKS}"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // The log link checks its signature too.
    let (_, link) = env
        .arm(
            Method::POST,
            &format!("{reg}/runs/cb1/listLogSasUrl?{TASKS}"),
            None,
        )
        .await;
    let link = link["logLink"].as_str().unwrap();
    let (log_base, _) = link.split_once('?').unwrap();
    let resp = env
        .http
        .get(format!(
            "{log_base}?sv=2025-11-05&sr=b&sp=r&sig=bm9wZQ%3D%3D"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = env.http.get(link).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Run ID: cb1 was canceled"));

    // A second build of the same upload gets the next id and runs through.
    let mut second = good.clone();
    second["imageNames"] = json!(["app:{{.Run.ID}}"]);
    let (_, run) = schedule(second).await;
    assert_eq!(run["properties"]["runId"], "cb2");
    let done = env.wait_run(&reg, "cb2").await;
    assert_eq!(done["properties"]["status"], "Succeeded");
    assert_eq!(done["properties"]["outputImages"][0]["tag"], "cb2");
    let (_, list) = env
        .arm(
            Method::GET,
            &format!("{reg}/runs?api-version=2019-06-01-preview"),
            None,
        )
        .await;
    assert_eq!(list["value"][0]["name"], "cb2");
    assert_eq!(list["value"][1]["name"], "cb1");
    env.assert_journal_clean();
    env.azure.shutdown().await;
}

fn image_group(image: &str, command: Option<Value>) -> Value {
    let mut container = json!({
        "name": "job",
        "properties": {
            "image": image,
            "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}},
            "environmentVariables": [{"name": "FROM_GROUP", "value": "group"}],
        }
    });
    if let Some(c) = command {
        container["properties"]["command"] = c;
    }
    json!({
        "location": "westeurope",
        "properties": {
            "osType": "Linux",
            "restartPolicy": "Never",
            "containers": [container],
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_groups_pull_built_images() {
    let env = start("aci").await;
    env.create_rg("rg").await;
    let ls = env.create_registry("rg", "runacr01", true).await;
    let reg = env.registry_path("rg", "runacr01");
    let (run, log) = env
        .build(
            &reg,
            &[(
                "Dockerfile",
                "FROM alpine:3.20\nENV GREETING=hi FROM_GROUP=image PATH=/nonexistent/bin:$PATH\nCMD [\"sh\", \"-c\", \"echo $GREETING from $FROM_GROUP\"]\n",
            )],
            "serverless-runtime:1",
        )
        .await;
    assert_eq!(run["properties"]["status"], "Succeeded", "{log}");
    let image = format!("{ls}/serverless-runtime:1");
    let (uami, principal) = env.identity("rg", "puller").await;
    let group = |name: &str| {
        format!(
            "{}/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/{name}?{ACI}",
            env.sub()
        )
    };
    let with_identity = |mut body: Value, image_identity: &str| {
        body["identity"] =
            json!({"type": "UserAssigned", "userAssignedIdentities": {uami.clone(): {}}});
        body["properties"]["imageRegistryCredentials"] =
            json!([{"server": ls.clone(), "identity": image_identity}]);
        body
    };
    let inaccessible = |err: &Value, image: &str, group: &str| {
        assert_eq!(err["error"]["code"], "InaccessibleImage", "{err}");
        assert_eq!(
            err["error"]["message"],
            format!("The image '{image}' in container group '{group}' is not accessible. Please check the image and registry credential.")
        );
    };

    // No credential for the registry.
    let (status, err) = env
        .arm(Method::PUT, &group("g1"), Some(image_group(&image, None)))
        .await;
    assert_eq!(status, 400);
    inaccessible(&err, &image, "g1");
    // An identity without a pull role.
    let (status, err) = env
        .arm(
            Method::PUT,
            &group("g1"),
            Some(with_identity(image_group(&image, None), &uami)),
        )
        .await;
    assert_eq!(status, 400);
    inaccessible(&err, &image, "g1");
    // A role on a scope that does not cover the registry does not count.
    env.role_assignment(&reg, READER, &principal).await;
    let (status, _) = env
        .arm(
            Method::PUT,
            &group("g1"),
            Some(with_identity(image_group(&image, None), &uami)),
        )
        .await;
    assert_eq!(status, 400);
    env.role_assignment(&reg, ACR_PULL, &principal).await;
    // A tag that was never built.
    let missing = format!("{ls}/serverless-runtime:2");
    let (status, err) = env
        .arm(
            Method::PUT,
            &group("g1"),
            Some(with_identity(image_group(&missing, None), &uami)),
        )
        .await;
    assert_eq!(status, 400);
    inaccessible(&err, &missing, "g1");
    // An identity that is not the group's.
    let (other_uami, _) = env.identity("rg", "other").await;
    let (status, _) = env
        .arm(
            Method::PUT,
            &group("g1"),
            Some(with_identity(image_group(&image, None), &other_uami)),
        )
        .await;
    assert_eq!(status, 400);

    // The built image runs its own CMD, with its ENV under the group's variables.
    let (status, created) = env
        .arm(
            Method::PUT,
            &group("g1"),
            Some(with_identity(image_group(&image, None), &uami)),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let path = group("g1");
    let mut state = Value::Null;
    for _ in 0..100 {
        let (_, g) = env.arm(Method::GET, &path, None).await;
        state = g["properties"]["instanceView"]["state"].clone();
        if state == "Succeeded" || state == "Failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "Succeeded");
    let logs_path = path.replace(&format!("?{ACI}"), &format!("/containers/job/logs?{ACI}"));
    let (_, logs) = env.arm(Method::GET, &logs_path, None).await;
    assert_eq!(logs["content"].as_str().unwrap().trim(), "hi from group");

    // A command replaces the image's (like docker run --entrypoint).
    let (status, _) = env
        .arm(
            Method::PUT,
            &group("g2"),
            Some(with_identity(
                image_group(&image, Some(json!(["sh", "-c", "echo custom $GREETING"]))),
                &uami,
            )),
        )
        .await;
    assert_eq!(status, 201);
    // Admin user credentials work as well.
    let (status, creds) = env
        .arm(Method::POST, &format!("{reg}/listCredentials?{ACR}"), None)
        .await;
    assert_eq!(status, 200);
    let password = creds["passwords"][0]["value"].as_str().unwrap().to_string();
    env.remember(&password);
    let tags = env
        .http
        .get(format!("https://{ls}/v2/serverless-runtime/tags/list"))
        .basic_auth("runacr01", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(tags.status(), 200, "the admin user reads the data plane");
    let mut admin = image_group(&image, None);
    admin["properties"]["imageRegistryCredentials"] =
        json!([{"server": ls.clone(), "username": "runacr01", "password": "wrong"}]);
    let (status, _) = env
        .arm(Method::PUT, &group("g3"), Some(admin.clone()))
        .await;
    assert_eq!(status, 400);
    admin["properties"]["imageRegistryCredentials"][0]["password"] = json!(password);
    let (status, created) = env.arm(Method::PUT, &group("g3"), Some(admin)).await;
    assert_eq!(status, 201, "{created}");
    assert!(!created.to_string().contains(&password));
    // Images elsewhere still need a command.
    let (status, err) = env
        .arm(
            Method::PUT,
            &group("g4"),
            Some(image_group(
                "mcr.microsoft.com/azurelinux/base/core:3.0",
                None,
            )),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "LocalAzureCommandRequired");

    let path2 = group("g2");
    for _ in 0..100 {
        let (_, g) = env.arm(Method::GET, &path2, None).await;
        if g["properties"]["instanceView"]["state"] == "Succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs_path = path2.replace(&format!("?{ACI}"), &format!("/containers/job/logs?{ACI}"));
    let (_, logs) = env.arm(Method::GET, &logs_path, None).await;
    assert_eq!(logs["content"].as_str().unwrap().trim(), "custom hi");
    env.assert_journal_clean();
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_role_on_the_resource_group_covers_its_registries() {
    let dir = temp_dir("rgscope-lib");
    let lib = fake_library(&dir.0, &[("R6", "2.5.1")]);
    let env = start_with("rgscope", |c| c.r_library_paths = vec![lib.clone()]).await;
    env.create_rg("rg").await;
    let ls = env.create_registry("rg", "scopeacr01", false).await;
    let reg = env.registry_path("rg", "scopeacr01");
    let (run, log) = env
        .build(
            &reg,
            &[(
                "Dockerfile",
                "FROM alpine\nRUN install2.r R6==2.5.1\nENTRYPOINT [\"sh\", \"-c\"]\nCMD [\"test -f $R_LIBS/R6/DESCRIPTION\"]\n",
            )],
            "job:latest",
        )
        .await;
    assert_eq!(run["properties"]["status"], "Succeeded", "{log}");
    let (uami, principal) = env.identity("rg", "puller").await;
    env.role_assignment(
        &format!("{}/resourceGroups/rg", env.sub()),
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        &principal,
    )
    .await;
    let mut body = image_group(&format!("{ls}/job"), None);
    body["identity"] =
        json!({"type": "UserAssigned", "userAssignedIdentities": {uami.clone(): {}}});
    body["properties"]["imageRegistryCredentials"] = json!([{"server": ls, "identity": uami}]);
    let path = format!(
        "{}/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/rg-scope?{ACI}",
        env.sub()
    );
    let (status, created) = env.arm(Method::PUT, &path, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let mut state = Value::Null;
    for _ in 0..100 {
        let (_, g) = env.arm(Method::GET, &path, None).await;
        state = g["properties"]["instanceView"]["state"].clone();
        if state == "Succeeded" || state == "Failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "Succeeded");
    // Deleting the resource group stops the registry's listener.
    let (status, _) = env
        .arm(
            Method::DELETE,
            &format!("{}/resourcegroups/rg?api-version=2021-04-01", env.sub()),
            None,
        )
        .await;
    assert_eq!(status, 202);
    assert!(env
        .http
        .get(format!("https://{ls}/v2/"))
        .send()
        .await
        .is_err());
    env.azure.shutdown().await;
}

/// Locally a container sees only the R packages its image's build installed (pins, and
/// a package a later stage copies from the stage that installed it), as in Azure, and
/// starts `Rscript` as the image's R by absolute path: the emulator's `r_bin_dir`, not
/// the `Rscript` on PATH (a failing stub under `R CMD check --as-cran`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_see_only_the_r_packages_their_image_installed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("imagelib");
    let lib = fake_library(
        &dir.0,
        &[("R6", "2.5.1"), ("glue", "1.6.1"), ("cli", "3.6.1")],
    );
    let bin = dir.0.join("R-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let rscript = bin.join("Rscript");
    std::fs::write(
        &rscript,
        "#!/bin/sh\necho \"image R: $*\"\necho \"site=$R_LIBS_SITE user=$R_LIBS_USER\"\nls \"$R_LIBS\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&rscript, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = start_with("imagelib", |c| {
        c.r_library_paths = vec![lib.clone()];
        c.r_bin_dir = Some(bin.clone());
    })
    .await;
    env.create_rg("rg").await;
    let ls = env.create_registry("rg", "libacr01", false).await;
    let reg = env.registry_path("rg", "libacr01");
    let (run, log) = env
        .build(
            &reg,
            &[(
                "Dockerfile",
                "FROM alpine AS build\nRUN install2.r cli==3.6.1\n\
                 FROM alpine\nRUN install2.r R6==2.5.1\n\
                 COPY --from=build /opt/lib/cli /usr/local/lib/R/site-library/cli\n\
                 CMD [\"Rscript\", \"score.R\"]\n",
            )],
            "job:latest",
        )
        .await;
    assert_eq!(run["properties"]["status"], "Succeeded", "{log}");
    let (uami, principal) = env.identity("rg", "puller").await;
    env.role_assignment(&reg, ACR_PULL, &principal).await;
    let mut body = image_group(&format!("{ls}/job"), None);
    body["identity"] =
        json!({"type": "UserAssigned", "userAssignedIdentities": {uami.clone(): {}}});
    body["properties"]["imageRegistryCredentials"] = json!([{"server": ls, "identity": uami}]);
    let path = format!(
        "{}/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/libs?{ACI}",
        env.sub()
    );
    let (status, created) = env.arm(Method::PUT, &path, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let mut state = Value::Null;
    for _ in 0..300 {
        let (_, g) = env.arm(Method::GET, &path, None).await;
        state = g["properties"]["instanceView"]["state"].clone();
        if state == "Succeeded" || state == "Failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs_path = path.replace(&format!("?{ACI}"), &format!("/containers/job/logs?{ACI}"));
    let (_, logs) = env.arm(Method::GET, &logs_path, None).await;
    let content = logs["content"].as_str().unwrap_or_default().to_string();
    assert_eq!(state, "Succeeded", "{content}");
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines[0], "image R: score.R", "{content}");
    let (site, user) = lines[1].split_once(' ').unwrap();
    let private = site.strip_prefix("site=").unwrap();
    assert_eq!(user, format!("user={private}"));
    assert!(!private.starts_with(&*lib.to_string_lossy()), "{private}");
    // Its library holds what the build installed, and not the rest of the host's.
    let mut held: Vec<&str> = lines[2..].to_vec();
    held.sort();
    assert_eq!(held, ["R6", "cli"], "{content}");
    assert_eq!(
        std::fs::read_link(Path::new(private).join("R6")).unwrap(),
        lib.join("R6")
    );
    env.azure.shutdown().await;
}

/// A CRAN-like repository on loopback: `src/contrib/PACKAGES` and one archived file.
/// Serves `requests` requests (HTTP/1.0, one per connection), then stops.
fn serve_repository(
    packages: &'static str,
    requests: usize,
) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cran", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        for conn in listener.incoming().take(requests) {
            let mut conn = conn.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 1024];
            while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&raw).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = match path.as_str() {
                "/cran/src/contrib/PACKAGES" => ("200 OK", packages.to_string()),
                "/cran/src/contrib/Archive/glue/glue_1.6.1.tar.gz" => ("200 OK", "tarball".into()),
                _ => ("404 Not Found", "not found".into()),
            };
            let _ = write!(
                conn,
                "HTTP/1.0 {status}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_refuse_what_a_real_build_would_fail_on() {
    let env = start("strict").await;
    env.create_rg("rg").await;
    let ls = env.create_registry("rg", "strictacr01", false).await;
    let reg = env.registry_path("rg", "strictacr01");

    // serveRless 0.1.0's default Dockerfile installed serveRless from a repository,
    // which does not serve it: the real build fails, so the local one does.
    let old = include_str!("fixtures/Dockerfile-0.1.0-default");
    let installer = "# the pinned installer\n";
    let (run, log) = env
        .build(
            &reg,
            &[("Dockerfile", old), ("install-pinned.R", installer)],
            "serverless-runtime:old",
        )
        .await;
    assert_eq!(run["properties"]["status"], "Failed", "{log}");
    assert!(
        log.contains("package 'serveRless' is not available")
            && log.contains("https://cloud.r-project.org cannot serve it"),
        "{log}"
    );

    // A base image of the registry itself must have been pushed...
    let child = format!("FROM {ls}/serverless-base:abc\nUSER serverless\n");
    let (run, log) = env
        .build(&reg, &[("Dockerfile", &child)], "serverless-runtime:child")
        .await;
    assert_eq!(run["properties"]["status"], "Failed", "{log}");
    assert!(log.contains("serverless-base:abc: not found"), "{log}");
    // ... and once it is, the new image starts from its configuration.
    let base = "FROM r-base\nENV SERVERLESS_BASE=1\nCMD [\"Rscript\", \"-e\", \"1\"]\n";
    let (run, log) = env
        .build(&reg, &[("Dockerfile", base)], "serverless-base:abc")
        .await;
    assert_eq!(run["properties"]["status"], "Succeeded", "{log}");
    let (run, log) = env
        .build(&reg, &[("Dockerfile", &child)], "serverless-runtime:child")
        .await;
    assert_eq!(run["properties"]["status"], "Succeeded", "{log}");
    let access = registry_access_token(&env, &ls, &["repository:serverless-runtime:pull"]).await;
    let manifest: Value = env
        .http
        .get(format!(
            "https://{ls}/v2/serverless-runtime/manifests/child"
        ))
        .bearer_auth(&access)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: Value = env
        .http
        .get(format!(
            "https://{ls}/v2/serverless-runtime/blobs/{config_digest}"
        ))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["config"]["Env"], json!(["SERVERLESS_BASE=1"]));
    assert_eq!(config["config"]["Cmd"], json!(["Rscript", "-e", "1"]));
    assert_eq!(config["config"]["User"], "serverless");
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        format!("{ls}/serverless-base:abc")
    );

    // A COPY of a file the context lacks; an R CMD INSTALL of a tarball it lacks.
    let (_, log) = env
        .build(
            &reg,
            &[(
                "Dockerfile",
                "FROM r-base\nCOPY serveRless_0.1.0.tar.gz /tmp/\n",
            )],
            "serverless-runtime:nocopy",
        )
        .await;
    assert!(log.contains("COPY failed"), "{log}");
    let (run, log) = env
        .build(
            &reg,
            &[(
                "Dockerfile",
                "FROM r-base\nRUN R CMD INSTALL /tmp/serveRless_0.1.0.tar.gz\n",
            )],
            "serverless-runtime:noinstall",
        )
        .await;
    assert_eq!(run["properties"]["status"], "Failed", "{log}");
    assert!(
        log.contains("invalid package '/tmp/serveRless_0.1.0.tar.gz'"),
        "{log}"
    );

    // A loopback repository's index: a current version and an archived one are there,
    // a version it lacks fails the step as install-pinned.R would.
    let packages = "Package: glue\nVersion: 1.6.2\n\nPackage: cli\nVersion: 3.6.0\n";
    let (repo, server) = serve_repository(packages, 4);
    let pins = |p: &str| {
        format!("FROM r-base\nCOPY install-pinned.R /tmp/install-pinned.R\nRUN Rscript /tmp/install-pinned.R {repo} {p}\n")
    };
    let good = pins("glue==1.6.2 glue==1.6.1 cli==3.6.0");
    let (run, log) = env
        .build(
            &reg,
            &[("Dockerfile", &good), ("install-pinned.R", installer)],
            "serverless-runtime:pins",
        )
        .await;
    assert_eq!(run["properties"]["status"], "Succeeded", "{log}");
    assert!(
        log.contains("serveRless: installing glue 1.6.1 (source)"),
        "{log}"
    );
    let bad = pins("cli==3.5.0");
    let (run, log) = env
        .build(
            &reg,
            &[("Dockerfile", &bad), ("install-pinned.R", installer)],
            "serverless-runtime:pins",
        )
        .await;
    assert_eq!(run["properties"]["status"], "Failed", "{log}");
    assert!(
        log.contains(&format!("package 'cli' 3.5.0 is not available from {repo}")),
        "{log}"
    );
    server.join().unwrap();
    env.azure.shutdown().await;
}
