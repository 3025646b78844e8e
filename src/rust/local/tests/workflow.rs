//! Logic Apps workflows executed by the emulator: validation at PUT, runs and their
//! history, triggers, HTTP actions with the workflow's managed identity.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use serverless_local::{Config, LocalAzure};

const ARM_SCOPE: &str = "https://management.azure.com/.default";
const LOGIC: &str = "api-version=2019-05-01";

struct Env {
    azure: LocalAzure,
    http: reqwest::Client,
    token: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!(
        "serverless-local-wf-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let azure = LocalAzure::start(Config::new(&dir))
        .await
        .expect("emulator starts");
    let ca = reqwest::Certificate::from_pem(azure.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap();
    let c = azure.config().clone();
    let reply: Value = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            azure.https_endpoint(),
            c.tenant_id
        ))
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
    let token = reply["access_token"].as_str().unwrap().to_string();
    let env = Env {
        azure,
        http,
        token,
        _dir: TempDir(dir),
    };
    let (status, _) = env
        .arm(
            Method::PUT,
            &format!("{}/resourcegroups/rg?api-version=2021-04-01", env.sub()),
            Some(json!({"location": "westeurope"})),
        )
        .await;
    assert_eq!(status, 201);
    env
}

impl Env {
    fn sub(&self) -> String {
        format!("/subscriptions/{}", self.azure.config().subscription_id)
    }

    fn wf(&self, name: &str) -> String {
        format!(
            "{}/resourceGroups/rg/providers/Microsoft.Logic/workflows/{name}",
            self.sub()
        )
    }

    async fn arm(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.azure.https_endpoint());
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn put_workflow(&self, name: &str, definition: Value) -> (u16, Value) {
        self.arm(
            Method::PUT,
            &format!("{}?{LOGIC}", self.wf(name)),
            Some(
                json!({"location": "westeurope", "identity": {"type": "SystemAssigned"},
                "properties": {"definition": definition}}),
            ),
        )
        .await
    }
}

fn manual(actions: Value) -> Value {
    json!({
        "$schema": "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#",
        "contentVersion": "1.0.0.0",
        "triggers": {"manual": {"type": "Request", "kind": "Http"}},
        "actions": actions,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_rejects_what_the_engine_cannot_run() {
    let env = start().await;
    let (status, err) = env
        .put_workflow(
            "bad1",
            manual(json!({"Reply": {"type": "Response", "inputs": {"statusCode": 200}}})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "WorkflowNotSupportedByLocalAzure");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'Reply'"));

    let (status, err) = env
        .put_workflow(
            "bad2",
            manual(json!({"C": {"type": "Compose", "inputs": "@{foo('x')}"}})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "InvalidTemplate");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("The template function 'foo' is not defined or not valid"));

    let (status, err) = env
        .put_workflow(
            "bad3",
            json!({"triggers": {"r": {"type": "Recurrence", "recurrence": {"frequency": "Day", "interval": 1, "timeZone": "Nowhere Standard Time"}}}, "actions": {}}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Nowhere"));

    // Nothing was stored.
    let (status, _) = env
        .arm(Method::GET, &format!("{}?{LOGIC}", env.wf("bad1")), None)
        .await;
    assert_eq!(status, 404);
    env.azure.shutdown().await;
}
