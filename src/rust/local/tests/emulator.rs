//! End-to-end tests of the emulator over real HTTPS/HTTP on 127.0.0.1.

use std::time::Duration;

use serde_json::{json, Value};
use serverless_local::{Config, Faults, LocalAzure};

const ARM_SCOPE: &str = "https://management.azure.com/.default";
const ACI: &str = "api-version=2023-05-01";

struct Env {
    azure: LocalAzure,
    http: reqwest::Client,
    _dir: TempDir,
}

/// A temporary directory removed on drop (no extra dependency for this).
struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!(
        "serverless-local-test-{}-{}",
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
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .unwrap();
    Env {
        azure,
        http,
        _dir: TempDir(dir),
    }
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.azure.https_endpoint())
    }

    fn sub(&self) -> String {
        format!("/subscriptions/{}", self.azure.config().subscription_id)
    }

    async fn token_response(&self, secret: &str) -> reqwest::Response {
        let c = self.azure.config();
        self.http
            .post(self.url(&format!("/{}/oauth2/v2.0/token", c.tenant_id)))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", c.client_id.as_str()),
                ("client_secret", secret),
                ("scope", ARM_SCOPE),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn token(&self) -> String {
        let secret = self.azure.config().client_secret.clone();
        let body: Value = self.token_response(&secret).await.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn arm(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let token = self.token().await;
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, headers, value)
    }

    async fn create_rg(&self, rg: &str) {
        let (status, _, _) = self
            .arm(
                reqwest::Method::PUT,
                &format!("{}/resourcegroups/{rg}?api-version=2021-04-01", self.sub()),
                Some(json!({"location": "westeurope", "tags": {"serverless-deployment": "m"}})),
            )
            .await;
        assert_eq!(status, 201);
    }

    fn group_path(&self, rg: &str, name: &str) -> String {
        format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups/{name}",
            self.sub()
        )
    }

    /// Polls GET on the group until `done` holds (bounded).
    async fn wait_group(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..100 {
            let (status, _, body) = self
                .arm(reqwest::Method::GET, &format!("{path}?{ACI}"), None)
                .await;
            assert_eq!(status, 200, "{body}");
            if done(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("group {path} never reached the expected state");
    }
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn job_group(command: Value, env: Value) -> Value {
    json!({
        "location": "westeurope",
        "tags": {"serverless-deployment": "m"},
        "properties": {
            "osType": "Linux",
            "restartPolicy": "Never",
            "containers": [{
                "name": "job",
                "properties": {
                    "image": "local/sh:1",
                    "command": command,
                    "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}},
                    "environmentVariables": env,
                }
            }]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_has_arm_audience() {
    let env = start().await;
    let resp = env
        .token_response(&env.azure.config().client_secret.clone())
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], "https://management.azure.com");
    assert_eq!(c["tid"], env.azure.config().tenant_id.as_str());
    assert_eq!(
        c["iss"],
        format!("https://sts.windows.net/{}/", env.azure.config().tenant_id)
    );
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_expired_secret_is_invalid_client_without_echo() {
    let env = start().await;
    let resp = env.token_response("not-the-secret-xyz").await;
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"], json!([7000215]));
    assert!(!text.contains("not-the-secret-xyz"));

    env.azure.set_secret_expired(true);
    let resp = env
        .token_response(&env.azure.config().client_secret.clone())
        .await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error_codes"], json!([7000222]));

    let resp = env
        .http
        .post(env.url("/no-such-tenant/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "x"),
            ("client_secret", "y"),
            ("scope", ARM_SCOPE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error_codes"], json!([90002]));
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_code_is_pending_then_gives_a_token() {
    let env = start().await;
    let tenant = env.azure.config().tenant_id.clone();
    let start: Value = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/devicecode")))
        .form(&[
            ("client_id", "public-app"),
            (
                "scope",
                "https://management.azure.com/.default offline_access",
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(start["interval"], 1);
    let code = start["device_code"].as_str().unwrap().to_string();
    let poll = || {
        env.http
            .post(env.url(&format!("/{tenant}/oauth2/v2.0/token")))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", "public-app"),
                ("device_code", code.as_str()),
            ])
            .send()
    };
    for _ in 0..2 {
        let resp = poll().await.unwrap();
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "authorization_pending");
        assert_eq!(body["error_codes"], json!([70016]));
    }
    let resp = poll().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["aud"],
        "https://management.azure.com"
    );
    assert!(body["refresh_token"].is_string());

    let resp = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", "public-app"),
            ("device_code", "bogus"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "bad_verification_code");
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_requires_api_version_and_a_valid_bearer() {
    let env = start().await;
    let path = format!("{}/resourcegroups/rg1", env.sub());
    let (status, headers, body) = env.arm(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "MissingApiVersionParameter");
    assert!(headers.contains_key("x-ms-request-id"));
    assert!(headers.contains_key("x-ms-correlation-request-id"));

    let url = env.url(&format!("{path}?api-version=2021-04-01"));
    let resp = env.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AuthenticationFailed");

    let resp = env
        .http
        .get(&url)
        .bearer_auth("a.b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    // A storage token is not an ARM token.
    let c = env.azure.config().clone();
    let storage: Value = env
        .http
        .post(env.url(&format!("/{}/oauth2/v2.0/token", c.tenant_id)))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
            ("scope", "https://storage.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = env
        .http
        .get(&url)
        .bearer_auth(storage["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_group_create_get_delete() {
    let env = start().await;
    let path = format!(
        "{}/resourcegroups/rg-Test?api-version=2021-04-01",
        env.sub()
    );
    env.create_rg("rg-Test").await;
    let (status, _, _) = env
        .arm(
            reqwest::Method::PUT,
            &path,
            Some(json!({"location": "westeurope"})),
        )
        .await;
    assert_eq!(status, 200);
    let upper = format!(
        "{}/resourceGroups/RG-TEST?api-version=2021-04-01",
        env.sub()
    );
    let (status, _, body) = env.arm(reqwest::Method::GET, &upper, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "rg-Test");
    assert_eq!(body["properties"]["provisioningState"], "Succeeded");
    let (status, headers, _) = env.arm(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 202);
    let location = headers["location"].to_str().unwrap().to_string();
    let token = env.token().await;
    let mut final_status = 0;
    for _ in 0..10 {
        final_status = env
            .http
            .get(&location)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if final_status != 202 {
            break;
        }
    }
    assert_eq!(final_status, 200);
    let (status, _, body) = env.arm(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ResourceGroupNotFound");
    let bad_sub = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/x?api-version=2021-04-01";
    let (status, _, body) = env.arm(reqwest::Method::GET, bad_sub, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "SubscriptionNotFound");
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_group_runs_a_process_to_completion() {
    let env = start().await;
    env.create_rg("rg").await;
    let path = env.group_path("rg", "job-1");
    let body = job_group(
        json!(["sh", "-c", "echo value=$X; echo secret=$S"]),
        json!([{"name": "X", "value": "hello-aci"}, {"name": "S", "secureValue": "s3cr3t-value"}]),
    );
    let (status, headers, created) = env
        .arm(
            reqwest::Method::PUT,
            &format!("{path}?{ACI}"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["properties"]["provisioningState"], "Pending");
    assert!(!created.to_string().contains("s3cr3t-value"));
    assert_eq!(headers["retry-after"], "1");
    let op = headers["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(op.contains("/providers/Microsoft.ContainerInstance/locations/westeurope/operations/"));

    let token = env.token().await;
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let s: Value = env
            .http
            .get(&op)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let st = s["status"].as_str().unwrap().to_string();
        statuses.push(st.clone());
        if st != "InProgress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(statuses.first().map(String::as_str), Some("InProgress"));
    assert_eq!(statuses.last().map(String::as_str), Some("Succeeded"));

    let done = env
        .wait_group(&path, |g| {
            g["properties"]["containers"][0]["properties"]["instanceView"]["currentState"]["state"]
                == "Terminated"
        })
        .await;
    assert_eq!(done["properties"]["provisioningState"], "Succeeded");
    let current =
        &done["properties"]["containers"][0]["properties"]["instanceView"]["currentState"];
    assert_eq!(current["exitCode"], 0);
    assert_eq!(done["properties"]["instanceView"]["state"], "Succeeded");
    assert!(!done.to_string().contains("s3cr3t-value"));

    let (status, _, logs) = env
        .arm(
            reqwest::Method::GET,
            &format!("{path}/containers/job/logs?{ACI}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let content = logs["content"].as_str().unwrap();
    assert!(content.contains("value=hello-aci"), "{content}");
    let (_, _, tail) = env
        .arm(
            reqwest::Method::GET,
            &format!("{path}/containers/job/logs?{ACI}&tail=1"),
            None,
        )
        .await;
    assert_eq!(
        tail["content"].as_str().unwrap().trim(),
        "secret=s3cr3t-value"
    );

    // Same body again: idempotent.
    let (status, _, _) = env
        .arm(reqwest::Method::PUT, &format!("{path}?{ACI}"), Some(body))
        .await;
    assert_eq!(status, 200);

    let (status, _, list) = env
        .arm(
            reqwest::Method::GET,
            &format!(
                "{}/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups?{ACI}",
                env.sub()
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["value"].as_array().unwrap().len(), 1);

    let (status, _, _) = env
        .arm(reqwest::Method::DELETE, &format!("{path}?{ACI}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = env
        .arm(reqwest::Method::DELETE, &format!("{path}?{ACI}"), None)
        .await;
    assert_eq!(status, 204);

    let journal = serde_json::to_string(&env.azure.journal()).unwrap();
    assert!(journal.contains("REDACTED"));
    assert!(!journal.contains("s3cr3t-value"));
    assert!(!journal.contains(&env.azure.config().client_secret));
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_kills_a_running_container() {
    let env = start().await;
    env.create_rg("rg").await;
    let path = env.group_path("rg", "sleeper");
    let marker = std::env::temp_dir().join(format!("sl-marker-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let script = format!("sleep 3; touch {}", marker.display());
    let (status, _, _) = env
        .arm(
            reqwest::Method::PUT,
            &format!("{path}?{ACI}"),
            Some(job_group(json!(["sh", "-c", script]), json!([]))),
        )
        .await;
    assert_eq!(status, 201);
    env.wait_group(&path, |g| {
        g["properties"]["containers"][0]["properties"]["instanceView"]["currentState"]["state"]
            == "Running"
    })
    .await;
    let (status, _, _) = env
        .arm(reqwest::Method::DELETE, &format!("{path}?{ACI}"), None)
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(!marker.exists(), "the process survived the delete");
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_group_without_os_type_is_rejected() {
    let env = start().await;
    env.create_rg("rg").await;
    let mut body = job_group(json!(["true"]), json!([]));
    body["properties"].as_object_mut().unwrap().remove("osType");
    let (status, _, err) = env
        .arm(
            reqwest::Method::PUT,
            &format!("{}?{ACI}", env.group_path("rg", "bad")),
            Some(body),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "InvalidRequestContent");
    assert!(err["error"]["message"].as_str().unwrap().contains("osType"));

    let (status, _, err) = env
        .arm(
            reqwest::Method::PUT,
            &format!("{}?{ACI}", env.group_path("rg", "Bad_Name")),
            Some(job_group(json!(["true"]), json!([]))),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "InvalidContainerGroupName");

    let (status, _, err) = env
        .arm(
            reqwest::Method::PUT,
            &format!("{}?{ACI}", env.group_path("nope", "ok")),
            Some(job_group(json!(["true"]), json!([]))),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "ResourceGroupNotFound");

    let (status, _, err) = env
        .arm(
            reqwest::Method::GET,
            &format!("{}?api-version=2099-01-01", env.group_path("rg", "ok")),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "InvalidApiVersionParameter");
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_serves_the_container() {
    let env = start().await;
    env.create_rg("rg").await;
    let uami = format!(
        "{}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/job-id",
        env.sub()
    );
    let (status, _, identity) = env
        .arm(
            reqwest::Method::PUT,
            &format!("{uami}?api-version=2023-01-31"),
            Some(json!({"location": "westeurope"})),
        )
        .await;
    assert_eq!(status, 201);
    let client_id = identity["properties"]["clientId"]
        .as_str()
        .unwrap()
        .to_string();

    let have_curl = std::process::Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let script = if have_curl {
        // The token; the same through a proxy (refused); and with App Service's
        // `mi_res_id` selector, which IMDS does not know (ignored: the only identity).
        r#"T="$SERVERLESS_IMDS_ENDPOINT/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com"; curl -s -H "Metadata: true" "$T"; echo; curl -s -H "Metadata: true" -H "X-Forwarded-For: 10.0.0.1" "$T"; echo; curl -s -H "Metadata: true" "$T&mi_res_id=/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other"; echo; echo "app-service:${IDENTITY_ENDPOINT:-none}""#
    } else {
        r#"echo "{\"client_id\":\"$SERVERLESS_IMDS_ENDPOINT\"}"; echo "app-service:${IDENTITY_ENDPOINT:-none}""#
    };
    let mut body = job_group(json!(["sh", "-c", script]), json!([]));
    body["identity"] =
        json!({"type": "UserAssigned", "userAssignedIdentities": {uami.clone(): {}}});
    let path = env.group_path("rg", "msi-job");
    let (status, _, created) = env
        .arm(reqwest::Method::PUT, &format!("{path}?{ACI}"), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    env.wait_group(&path, |g| {
        g["properties"]["instanceView"]["state"] == "Succeeded"
    })
    .await;
    let (_, _, logs) = env
        .arm(
            reqwest::Method::GET,
            &format!("{path}/containers/job/logs?{ACI}"),
            None,
        )
        .await;
    let content = logs["content"].as_str().unwrap();
    let first = content.lines().next().unwrap_or_default();
    let reply: Value =
        serde_json::from_str(first.trim()).unwrap_or_else(|_| panic!("not JSON: {content}"));
    if have_curl {
        assert_eq!(reply["client_id"], client_id.as_str());
        assert!(reply["expires_on"].is_string() && reply["expires_in"].is_string());
        let c = claims(reply["access_token"].as_str().unwrap());
        assert_eq!(c["aud"], "https://storage.azure.com");
        assert_eq!(c["oid"], identity["properties"]["principalId"]);
        let line = |i: usize| -> Value {
            let l = content.lines().nth(i).unwrap_or_default();
            serde_json::from_str(l.trim())
                .unwrap_or_else(|_| panic!("line {i} not JSON: {content}"))
        };
        let proxied = line(1);
        assert_eq!(proxied["error"], "invalid_request", "{content}");
        assert!(
            proxied["error_description"]
                .as_str()
                .unwrap()
                .contains("proxy"),
            "{content}"
        );
        assert_eq!(line(2)["client_id"], client_id.as_str(), "{content}");
    } else {
        let endpoint = reply["client_id"].as_str().unwrap();
        assert!(
            endpoint.starts_with(&env.azure.identity_endpoint()),
            "{endpoint}"
        );
    }
    let token_path =
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com";
    let unknown = format!("{}/not-a-group{token_path}", env.azure.identity_endpoint());
    // Without the Metadata header, no token; nor for a group that is not running.
    for (url, metadata) in [(unknown.clone(), false), (unknown, true)] {
        let mut req = env.http.get(url);
        if metadata {
            req = req.header("Metadata", "true");
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
        let why = if metadata {
            "Identity not found"
        } else {
            "Required metadata header not specified"
        };
        assert_eq!(body["error_description"], why);
    }
    // No App Service endpoint: ACI does not set one.
    assert!(
        content.trim_end().ends_with("app-service:none"),
        "{content}"
    );
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_throttle_and_reset() {
    let env = start().await;
    let token = env.token().await;
    let url = env.url(&format!(
        "{}/resourcegroups?api-version=2021-04-01",
        env.sub()
    ));
    env.azure.set_faults(Faults {
        throttle: 1.0,
        seed: 7,
        ..Faults::default()
    });
    let resp = env.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");

    // Identity calls are never faulted.
    assert!(!env.token().await.is_empty());

    env.azure.set_faults(Faults {
        resets: 1.0,
        seed: 7,
        ..Faults::default()
    });
    let result = env.http.get(&url).bearer_auth(&token).send().await;
    assert!(
        result.is_err(),
        "expected a dropped connection, got {result:?}"
    );

    // A throttled PUT has no effect.
    env.azure.set_faults(Faults {
        throttle: 1.0,
        seed: 1,
        ..Faults::default()
    });
    let rg = env.url(&format!(
        "{}/resourcegroups/never?api-version=2021-04-01",
        env.sub()
    ));
    let resp = env
        .http
        .put(&rg)
        .bearer_auth(&token)
        .json(&json!({"location": "westeurope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    env.azure.set_faults(Faults::default());
    let resp = env.http.get(&rg).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    let statuses: Vec<u16> = env.azure.journal().iter().map(|e| e.status).collect();
    assert!(statuses.contains(&429) && statuses.contains(&0));
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_and_tag_listing_and_other_types() {
    let env = start().await;
    env.create_rg("rg").await;
    let sub = env.sub();
    let wf = format!("{sub}/resourceGroups/rg/providers/Microsoft.Logic/workflows/wf1");
    let (status, _, workflow) = env
        .arm(
            reqwest::Method::PUT,
            &format!("{wf}?api-version=2019-05-01"),
            Some(json!({"location": "westeurope", "tags": {"serverless-deployment": "m"}, "identity": {"type": "SystemAssigned"},
                "properties": {"state": "Enabled", "definition": {"triggers": {"manual": {"type": "Request"}}, "actions": {}}}})),
        )
        .await;
    assert_eq!(status, 201, "{workflow}");
    let principal = workflow["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, _) = env
        .arm(
            reqwest::Method::POST,
            &format!("{wf}/triggers/manual/run?api-version=2019-05-01"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let (_, _, runs) = env
        .arm(
            reqwest::Method::GET,
            &format!("{wf}/runs?api-version=2019-05-01"),
            None,
        )
        .await;
    // An empty definition may already have finished.
    let status = runs["value"][0]["properties"]["status"].as_str().unwrap();
    assert!(["Running", "Succeeded"].contains(&status), "{status}");

    let ra = format!("{sub}/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/6f1c4d8e-2b1a-4c3d-9e8f-0a1b2c3d4e5f?api-version=2022-04-01");
    let ra_body = json!({"properties": {"roleDefinitionId": format!("{sub}/providers/Microsoft.Authorization/roleDefinitions/5d977122-f97e-4b4d-a52f-6b43003ddb4d"), "principalId": principal, "principalType": "ServicePrincipal"}});
    let (status, _, _) = env
        .arm(reqwest::Method::PUT, &ra, Some(ra_body.clone()))
        .await;
    assert_eq!(status, 201);
    let (status, _, _) = env
        .arm(reqwest::Method::PUT, &ra, Some(ra_body.clone()))
        .await;
    assert_eq!(status, 200);
    let other = ra.replace("6f1c4d8e", "7f1c4d8e");
    let (status, _, err) = env.arm(reqwest::Method::PUT, &other, Some(ra_body)).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "RoleAssignmentExists");

    let reg = format!("{sub}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myacr01?api-version=2025-04-01");
    let (status, _, registry) = env
        .arm(
            reqwest::Method::PUT,
            &reg,
            Some(json!({"location": "westeurope", "sku": {"name": "Basic"}})),
        )
        .await;
    assert_eq!(status, 201);
    // Each registry has its own data-plane listener.
    assert!(registry["properties"]["loginServer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let creds = reg.replace("?api", "/listCredentials?api");
    let (status, _, _) = env.arm(reqwest::Method::POST, &creds, None).await;
    assert_eq!(status, 400);

    let list = format!("{sub}/resourceGroups/rg/resources?api-version=2021-04-01&$filter=tagName%20eq%20'serverless-deployment'%20and%20tagValue%20eq%20'm'");
    let (status, _, tagged) = env.arm(reqwest::Method::GET, &list, None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = tagged["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids[0].ends_with("/workflows/wf1"));

    let journal = env.azure.journal();
    assert!(journal.iter().any(|e| e.method == "PUT"
        && e.path.ends_with("/workflows/wf1")
        && e.api_version.as_deref() == Some("2019-05-01")
        && e.status == 201));
    assert!(journal.iter().all(|e| !e.path.contains('?')));
    let token_call = journal
        .iter()
        .find(|e| e.path.ends_with("/oauth2/v2.0/token"))
        .unwrap();
    assert_eq!(
        token_call.body.as_ref().unwrap()["client_secret"],
        "REDACTED"
    );
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_provider_needs_registration() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("sl-unreg-{}", std::process::id()));
    let mut config = Config::new(&dir);
    config.unregistered_providers = vec!["Microsoft.ContainerInstance".into()];
    let azure = LocalAzure::start(config).await.unwrap();
    let env = Env {
        http: reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(azure.ca_pem().as_bytes()).unwrap(),
            )
            .timeout(Duration::from_secs(20))
            .no_proxy()
            .build()
            .unwrap(),
        azure,
        _dir: TempDir(dir),
    };
    env.create_rg("rg").await;
    let path = format!("{}?{ACI}", env.group_path("rg", "g"));
    let (status, _, err) = env.arm(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "MissingSubscriptionRegistration");
    let (status, _, reg) = env
        .arm(
            reqwest::Method::POST,
            &format!(
                "{}/providers/Microsoft.ContainerInstance/register?api-version=2021-04-01",
                env.sub()
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(reg["registrationState"], "Registered");
    let (status, _, _) = env.arm(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 404);
    env.azure.shutdown().await;
}

/// Polls GET on the group until its first container has terminated (bounded: 90 s,
/// enough for R to start and allocate on a loaded machine).
async fn wait_terminated(env: &Env, path: &str) -> Value {
    for _ in 0..900 {
        let (status, _, body) = env
            .arm(reqwest::Method::GET, &format!("{path}?{ACI}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        if body["properties"]["containers"][0]["properties"]["instanceView"]["currentState"]
            ["state"]
            == "Terminated"
        {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("group {path} never terminated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_is_killed_with_137() {
    let env = start().await;
    env.create_rg("rg").await;
    // R touches every page of a 480 MB vector (numeric() zero-fills it).
    let allocate = "x <- numeric(6e7); cat('allocated\\n'); Sys.sleep(120)";
    let with_memory = |name: &str, requests: f64, limits: Option<f64>, script: &str| {
        let mut body = job_group(json!(["Rscript", "-e", script]), json!([]));
        let res = &mut body["properties"]["containers"][0]["properties"]["resources"];
        res["requests"]["memoryInGB"] = json!(requests);
        if let Some(l) = limits {
            res["limits"] = json!({"memoryInGB": l});
        }
        (env.group_path("rg", name), body)
    };

    let (path, body) = with_memory("oom", 0.25, None, allocate);
    let (status, _, created) = env
        .arm(reqwest::Method::PUT, &format!("{path}?{ACI}"), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    let done = wait_terminated(&env, &path).await;
    let current =
        &done["properties"]["containers"][0]["properties"]["instanceView"]["currentState"];
    assert_eq!(current["exitCode"], 137, "{current}");
    assert_eq!(current["detailStatus"], "OOMKilled");
    assert_eq!(
        done["properties"]["instanceView"]["state"], "Failed",
        "{done}"
    );
    let (_, _, logs) = env
        .arm(
            reqwest::Method::GET,
            &format!("{path}/containers/job/logs?{ACI}"),
            None,
        )
        .await;
    assert!(
        logs["content"]
            .as_str()
            .unwrap()
            .contains("exceeded its memory (0.25 GB)"),
        "{logs}"
    );

    // A limit above the request is what the container may use (ACI's rule).
    let (path, body) = with_memory(
        "roomy",
        0.25,
        Some(1.0),
        "x <- numeric(6e7); cat('allocated\\n')",
    );
    let (status, _, created) = env
        .arm(reqwest::Method::PUT, &format!("{path}?{ACI}"), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    let done = wait_terminated(&env, &path).await;
    let current =
        &done["properties"]["containers"][0]["properties"]["instanceView"]["currentState"];
    assert_eq!(current["exitCode"], 0, "{current}");

    let (path, mut body) = with_memory("bad-limit", 0.25, None, "1");
    body["properties"]["containers"][0]["properties"]["resources"]["limits"] =
        json!({"memoryInGB": -1});
    let (status, _, err) = env
        .arm(reqwest::Method::PUT, &format!("{path}?{ACI}"), Some(body))
        .await;
    assert_eq!(status, 400, "{err}");
    env.azure.shutdown().await;
}

/// A stand-in for Azurite behind the storage gate: HTTPS with the emulator's
/// certificate; answers every request 200 with "METHOD PATH AUTH-SCHEME BODY-BYTES" and
/// counts the requests it saw.
async fn fake_azurite(azure: &LocalAzure) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use http_body_util::BodyExt;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (cert, key) = azure.tls_cert_and_key();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let scheme = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.split(' ').next())
                                .unwrap_or("none")
                                .to_string();
                            let line = format!("{} {} {scheme}", req.method(), req.uri().path());
                            let bytes = req.into_body().collect().await?.to_bytes().len();
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                                hyper::body::Bytes::from(format!("{line} {bytes}")),
                            )))
                        }
                    },
                );
                // Like Azurite, it closes connections left idle (here after 200 ms).
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_millis(200))
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, seen)
}

/// Azurite (`--oauth basic`) takes any bearer token; the storage gate in front of it
/// refuses what Azure Storage refuses: a token that is not the tenant's (forged, or of
/// another tenant), one for another audience, and one whose principal has no Blob data
/// role (403), or only a reader's for a write. Shared Key, SAS and anonymous requests,
/// and tokens with the role, reach Azurite with their bodies whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_gate_refuses_the_tokens_azure_storage_refuses() {
    use std::sync::atomic::Ordering;
    let env = start().await;
    env.create_rg("rg").await;
    let (upstream, seen) = fake_azurite(&env.azure).await;
    let gate = env.azure.start_storage_gate(upstream).await.unwrap();
    env.azure
        .add_storage_account(serverless_local::SeededStorageAccount {
            resource_group: "rg".into(),
            name: "acct1".into(),
            blob_endpoint: format!("https://127.0.0.1:{gate}/acct1"),
            location: "westeurope".into(),
        })
        .unwrap();
    let blob = format!("https://127.0.0.1:{gate}/acct1/data/in.csv");
    let send = |method: reqwest::Method, auth: Option<String>, body: Vec<u8>| {
        let mut req = env.http.request(method, &blob).body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            (status, headers, resp.text().await.unwrap())
        }
    };
    let token_for = |scope: &'static str| {
        let c = env.azure.config();
        let req = env
            .http
            .post(env.url(&format!("/{}/oauth2/v2.0/token", c.tenant_id)))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", c.client_id.as_str()),
                ("client_secret", c.client_secret.as_str()),
                ("scope", scope),
            ]);
        async move {
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            body["access_token"].as_str().unwrap().to_string()
        }
    };

    // Through to Azurite: no credential, Shared Key, and the tenant's own token for
    // storage, with a 3 MB body whole.
    let (status, _, text) = send(reqwest::Method::GET, None, vec![]).await;
    assert_eq!(
        (status, text.as_str()),
        (200, "GET /acct1/data/in.csv none 0")
    );
    let (status, _, text) = send(
        reqwest::Method::GET,
        Some("SharedKey acct1:c2ln".into()),
        vec![],
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (200, "GET /acct1/data/in.csv SharedKey 0")
    );
    let storage = token_for("https://storage.azure.com/.default").await;
    let (status, _, text) = send(
        reqwest::Method::PUT,
        Some(format!("Bearer {storage}")),
        vec![7u8; 3 << 20],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, format!("PUT /acct1/data/in.csv Bearer {}", 3 << 20));
    // After Azurite has closed its side of an idle connection, the client's next
    // request on its own (still open) connection to the gate goes through.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, _, text) = send(reqwest::Method::GET, None, vec![]).await;
    assert_eq!(
        (status, text.as_str()),
        (200, "GET /acct1/data/in.csv none 0")
    );
    let through = seen.load(Ordering::SeqCst);
    assert_eq!(through, 4);

    // Refused with 401 and a challenge: forged, another tenant's, another audience's.
    let other = {
        let dir =
            std::env::temp_dir().join(format!("serverless-gate-other-{}", std::process::id()));
        let other = LocalAzure::start(Config::new(&dir)).await.unwrap();
        let c = other.config().clone();
        let ca = reqwest::Certificate::from_pem(other.ca_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .no_proxy()
            .build()
            .unwrap();
        let body: Value = http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                other.https_endpoint(),
                c.tenant_id
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", c.client_id.as_str()),
                ("client_secret", c.client_secret.as_str()),
                ("scope", "https://storage.azure.com/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        other.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        body["access_token"].as_str().unwrap().to_string()
    };
    let arm = token_for(ARM_SCOPE).await;
    // The tenant's token with its claims changed (another principal), signature kept.
    let forged = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = storage.split('.').collect();
        let mut c = claims(&storage);
        c["oid"] = json!("00000000-0000-0000-0000-000000000001");
        format!("{}.{}.{}", parts[0], b64.encode(c.to_string()), parts[2])
    };
    for (token, detail) in [
        ("forged".to_string(), "not well formed"),
        (forged, "Signature validation failed"),
        (other, "Signature validation failed"),
        (arm, "Audience validation failed"),
    ] {
        let (status, headers, text) = send(
            reqwest::Method::GET,
            Some(format!("Bearer {token}")),
            vec![],
        )
        .await;
        assert_eq!(status, 401, "{text}");
        assert_eq!(headers["x-ms-error-code"], "InvalidAuthenticationInfo");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("resource_id=https://storage.azure.com"),
            "{challenge}"
        );
        assert!(
            text.contains("<Code>InvalidAuthenticationInfo</Code>"),
            "{text}"
        );
        assert!(text.contains(detail), "{detail}: {text}");
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        through,
        "a refused request reached Azurite"
    );

    // Managed identities: tokens from the identity endpoint of a container that has
    // two, one without roles and one with Storage Blob Data Reader on the account.
    let have_curl = std::process::Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_curl {
        eprintln!("curl not found: the managed-identity part is not run");
        return;
    }
    let mut identities = Vec::new();
    for name in ["no-role", "reader"] {
        let id = format!(
            "{}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            env.sub()
        );
        let (status, _, created) = env
            .arm(
                reqwest::Method::PUT,
                &format!("{id}?api-version=2023-01-31"),
                Some(json!({"location": "westeurope"})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let p = &created["properties"];
        identities.push((
            id,
            p["clientId"].as_str().unwrap().to_string(),
            p["principalId"].as_str().unwrap().to_string(),
        ));
    }
    let account = format!(
        "{}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct1",
        env.sub()
    );
    let (status, _, assigned) = env
        .arm(
            reqwest::Method::PUT,
            &format!(
                "{account}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
                "0a1b2c3d-0000-4000-8000-000000000001"
            ),
            Some(json!({"properties": {
                "roleDefinitionId": format!("{}/providers/Microsoft.Authorization/roleDefinitions/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", env.sub()),
                "principalId": identities[1].2,
                "principalType": "ServicePrincipal"
            }})),
        )
        .await;
    assert_eq!(status, 201, "{assigned}");
    let script = identities
        .iter()
        .map(|(_, client_id, _)| {
            format!(
                r#"curl -s -H "Metadata: true" "$SERVERLESS_IMDS_ENDPOINT/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com&client_id={client_id}"; echo"#
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut body = job_group(json!(["sh", "-c", script]), json!([]));
    let assigned: serde_json::Map<String, Value> = identities
        .iter()
        .map(|(id, _, _)| (id.clone(), json!({})))
        .collect();
    body["identity"] = json!({"type": "UserAssigned", "userAssignedIdentities": assigned});
    let path = env.group_path("rg", "tokens");
    let (status, _, created) = env
        .arm(reqwest::Method::PUT, &format!("{path}?{ACI}"), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    wait_terminated(&env, &path).await;
    let (_, _, logs) = env
        .arm(
            reqwest::Method::GET,
            &format!("{path}/containers/job/logs?{ACI}"),
            None,
        )
        .await;
    let content = logs["content"].as_str().unwrap().to_string();
    let tokens: Vec<String> = content
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l.trim()).unwrap_or_else(|_| panic!("not JSON: {content}"));
            v["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("no token: {content}"))
                .to_string()
        })
        .collect();
    assert_eq!(tokens.len(), 2, "{content}");
    let expect_refused = |(status, headers, text): (u16, reqwest::header::HeaderMap, String)| {
        assert_eq!(status, 403, "{text}");
        assert_eq!(
            headers["x-ms-error-code"],
            "AuthorizationPermissionMismatch"
        );
        assert!(
            text.contains("<Code>AuthorizationPermissionMismatch</Code>"),
            "{text}"
        );
    };
    expect_refused(
        send(
            reqwest::Method::GET,
            Some(format!("Bearer {}", tokens[0])),
            vec![],
        )
        .await,
    );
    let (status, _, text) = send(
        reqwest::Method::GET,
        Some(format!("Bearer {}", tokens[1])),
        vec![],
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (200, "GET /acct1/data/in.csv Bearer 0")
    );
    expect_refused(
        send(
            reqwest::Method::PUT,
            Some(format!("Bearer {}", tokens[1])),
            vec![1, 2, 3],
        )
        .await,
    );
    assert_eq!(seen.load(Ordering::SeqCst), through + 1);
    env.azure.shutdown().await;
}
