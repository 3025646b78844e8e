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

impl Env {
    /// Starts a manual run; returns its name.
    async fn run_now(&self, wf: &str, trigger: &str, body: Option<Value>) -> String {
        let url = format!(
            "{}{}/triggers/{trigger}/run?{LOGIC}",
            self.azure.https_endpoint(),
            self.wf(wf)
        );
        let mut req = self.http.post(url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 202);
        resp.headers()["x-ms-workflow-run-id"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// Polls the run until it is no longer Running (bounded).
    async fn wait_run(&self, wf: &str, run: &str) -> Value {
        for _ in 0..600 {
            let (status, body) = self
                .arm(
                    Method::GET,
                    &format!("{}/runs/{run}?{LOGIC}", self.wf(wf)),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            if body["properties"]["status"] != "Running" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("run {run} never ended");
    }

    async fn action(&self, wf: &str, run: &str, action: &str) -> Value {
        let (status, body) = self
            .arm(
                Method::GET,
                &format!("{}/runs/{run}/actions/{action}?{LOGIC}", self.wf(wf)),
                None,
            )
            .await;
        assert_eq!(status, 200, "{action}: {body}");
        body["properties"].clone()
    }

    async fn repetitions(&self, wf: &str, run: &str, action: &str) -> Vec<Value> {
        let (status, body) = self
            .arm(
                Method::GET,
                &format!(
                    "{}/runs/{run}/actions/{action}/repetitions?{LOGIC}",
                    self.wf(wf)
                ),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["value"].as_array().unwrap().clone()
    }

    /// The trigger's histories, newest first.
    async fn histories(&self, wf: &str, trigger: &str) -> Vec<Value> {
        let (status, body) = self
            .arm(
                Method::GET,
                &format!("{}/triggers/{trigger}/histories?{LOGIC}", self.wf(wf)),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["value"].as_array().unwrap().clone()
    }

    /// Waits (bounded: 60 s) until the trigger has a history that `matches`.
    async fn wait_history(&self, wf: &str, trigger: &str, matches: impl Fn(&[Value]) -> bool) {
        for _ in 0..600 {
            if matches(&self.histories(wf, trigger).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no such history: {:?}", self.histories(wf, trigger).await);
    }

    async fn runs(&self, wf: &str, query: &str) -> Vec<Value> {
        let (status, body) = self
            .arm(
                Method::GET,
                &format!("{}/runs?{LOGIC}{query}", self.wf(wf)),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["value"].as_array().unwrap().clone()
    }
}

/// A Wait inside an Until can read its interval from an array parameter by
/// `iterationIndexes()` (0 for the first iteration), as the scoring workflow's
/// backing-off checks do; the last entry repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_waits_follow_the_iteration_index() {
    let env = start().await;
    let mut def = manual(json!({
        "Init": {"type": "InitializeVariable", "inputs": {"variables": [{"name": "seen", "type": "array", "value": []}]}},
        "Poll": {"type": "Until", "runAfter": {"Init": ["Succeeded"]},
            "expression": "@equals(length(variables('seen')), 4)", "limit": {"count": 10, "timeout": "PT1M"},
            "actions": {
                "Delay": {"type": "Wait", "inputs": {"interval": {
                    "count": "@parameters('waits')[min(iterationIndexes('Poll'), sub(length(parameters('waits')), 1))]",
                    "unit": "Second"}}},
                "Note": {"type": "AppendToArrayVariable", "runAfter": {"Delay": ["Succeeded"]},
                    "inputs": {"name": "seen", "value": "@mul(iterationIndexes('Poll'), 10)"}}
            }},
    }));
    def["parameters"] = json!({"waits": {"type": "Array", "defaultValue": [1, 0, 2]}});
    def["outputs"] = json!({"seen": {"type": "Array", "value": "@variables('seen')"}});
    let (status, body) = env.put_workflow("waits", def).await;
    assert_eq!(status, 201, "{body}");
    let run = env.run_now("waits", "manual", None).await;
    let done = env.wait_run("waits", &run).await;
    assert_eq!(done["properties"]["status"], "Succeeded", "{done}");
    assert_eq!(
        done["properties"]["outputs"]["seen"]["value"],
        json!([0, 10, 20, 30])
    );
    let mut waits: Vec<(String, Value)> = env
        .repetitions("waits", &run, "Delay")
        .await
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["properties"]["inputs"]["interval"]["count"].clone(),
            )
        })
        .collect();
    waits.sort_by(|a, b| a.0.cmp(&b.0));
    let counts: Vec<Value> = waits.into_iter().map(|(_, c)| c).collect();
    assert_eq!(counts, vec![json!(1), json!(0), json!(2), json!(2)]);
    // Outside an Until that holds it, iterationIndexes is refused when saved.
    let (status, err) = env
        .put_workflow(
            "loose",
            manual(json!({"C": {"type": "Compose", "inputs": "@iterationIndexes('Poll')"}})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'until'"),
        "{err}"
    );
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_run_executes_the_control_flow() {
    let env = start().await;
    let mut def = manual(json!({
        "Init_n": {"type": "InitializeVariable", "inputs": {"variables": [{"name": "n", "type": "integer", "value": 0}]}},
        "Init_list": {"type": "InitializeVariable", "runAfter": {"Init_n": ["Succeeded"]},
            "inputs": {"variables": [{"name": "list", "type": "array", "value": []}]}},
        "Compose": {"type": "Compose", "runAfter": {"Init_list": ["Succeeded"]},
            "inputs": {"answer": "@add(triggerBody()?['base'], 1)", "text": "run @{workflow()['run']['name']}"}},
        "Loop": {"type": "Foreach", "foreach": "@range(0, 5)", "runAfter": {"Compose": ["Succeeded"]},
            "runtimeConfiguration": {"concurrency": {"repetitions": 2}},
            "actions": {
                "Inc": {"type": "IncrementVariable", "inputs": {"name": "n", "value": "@items('Loop')"}},
                "Append": {"type": "AppendToArrayVariable", "runAfter": {"Inc": ["Succeeded"]},
                    "inputs": {"name": "list", "value": "@xpath(1)"}}
            }},
        "Pause": {"type": "Wait", "runAfter": {"Loop": ["Succeeded"]}, "inputs": {"interval": {"count": 1, "unit": "Second"}}},
        "Poll": {"type": "Until", "expression": "@greater(variables('n'), 13)", "limit": {"count": 10, "timeout": "PT1M"},
            "runAfter": {"Pause": ["Succeeded"]},
            "actions": {"Bump": {"type": "IncrementVariable", "inputs": {"name": "n"}}}},
        "Check": {"type": "If", "runAfter": {"Poll": ["Succeeded"]},
            "expression": {"and": [{"equals": ["@variables('n')", 14]}, {"greater": ["@length(variables('list'))", 4]}]},
            "actions": {"Yes": {"type": "Compose", "inputs": "@body('Compose')['answer']"}},
            "else": {"actions": {"No": {"type": "Terminate", "inputs": {"runStatus": "Failed"}}}}},
        "Never": {"type": "Compose", "inputs": 1, "runAfter": {"Compose": ["Failed"]}},
        "After_never": {"type": "Compose", "inputs": "@outputs('Yes')", "runAfter": {"Never": ["Skipped"], "Check": ["Succeeded"]}},
    }));
    // `xpath` is not a supported function: the PUT is refused; then fixed.
    let (status, err) = env.put_workflow("flow", def.clone()).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'xpath'"));
    def["actions"]["Loop"]["actions"]["Append"]["inputs"]["value"] = json!("@items('Loop')");
    def["outputs"] = json!({"n": {"type": "Int", "value": "@variables('n')"}, "list": {"type": "Array", "value": "@variables('list')"}});
    let (status, body) = env.put_workflow("flow", def).await;
    assert_eq!(status, 201, "{body}");

    let run = env
        .run_now("flow", "manual", Some(json!({"base": 41})))
        .await;
    let done = env.wait_run("flow", &run).await;
    let p = &done["properties"];
    assert_eq!(p["status"], "Succeeded", "{done}");
    assert_eq!(p["trigger"]["name"], "manual");
    assert_eq!(p["trigger"]["outputs"]["body"]["base"], 41);
    assert_eq!(p["outputs"]["n"]["value"], 14);
    let mut list: Vec<i64> = p["outputs"]["list"]["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    list.sort();
    assert_eq!(list, vec![0, 1, 2, 3, 4]);
    assert!(p["endTime"].is_string() && p["startTime"].is_string());

    let compose = env.action("flow", &run, "Compose").await;
    assert_eq!(compose["status"], "Succeeded");
    assert_eq!(compose["outputs"]["answer"], 42);
    assert_eq!(compose["outputs"]["text"], format!("run {run}").as_str());
    let lp = env.action("flow", &run, "Loop").await;
    assert_eq!(lp["status"], "Succeeded");
    assert_eq!(lp["repetitionCount"], 5);
    let reps = env.repetitions("flow", &run, "Loop").await;
    assert_eq!(reps.len(), 5);
    assert_eq!(reps[0]["name"], "000000");
    assert_eq!(
        reps[4]["properties"]["repetitionIndexes"][0]["itemIndex"],
        4
    );
    let inc = env.repetitions("flow", &run, "Inc").await;
    assert_eq!(inc.len(), 5);
    assert!(inc.iter().all(|r| r["properties"]["status"] == "Succeeded"));
    let poll = env.action("flow", &run, "Poll").await;
    assert_eq!(poll["status"], "Succeeded");
    assert_eq!(poll["repetitionCount"], 4);
    assert_eq!(env.repetitions("flow", &run, "Bump").await.len(), 4);
    assert_eq!(
        env.action("flow", &run, "Pause").await["status"],
        "Succeeded"
    );
    let check = env.action("flow", &run, "Check").await;
    assert_eq!(check["status"], "Succeeded");
    assert_eq!(check["inputs"]["expressionResult"], true);
    assert_eq!(env.action("flow", &run, "Yes").await["outputs"], 42);
    assert_eq!(env.action("flow", &run, "No").await["status"], "Skipped");
    let never = env.action("flow", &run, "Never").await;
    assert_eq!(never["status"], "Skipped");
    assert_eq!(never["error"]["code"], "ActionConditionFailed");
    let after = env.action("flow", &run, "After_never").await;
    assert_eq!(after["status"], "Succeeded");
    assert_eq!(after["outputs"], 42);

    let (status, actions) = env
        .arm(
            Method::GET,
            &format!("{}/runs/{run}/actions?{LOGIC}", env.wf("flow")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(actions["value"].as_array().unwrap().len(), 14);
    let (status, err) = env
        .arm(
            Method::GET,
            &format!("{}/runs/{run}/actions/Nope?{LOGIC}", env.wf("flow")),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "WorkflowRunActionNotFound");
    env.azure.shutdown().await;
}

/// A Terminate that ends the run while nothing else is running stops the actions
/// that would start after it. (The stop signal once was lost when no action was
/// waiting on it, and a 1-hour Wait started after the Terminate: CI of the
/// orchestration change saw `terminate_and_failure_paths` hang so.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_actions_that_have_not_started() {
    let env = start().await;
    let (status, body) = env
        .put_workflow(
            "stop-first",
            manual(json!({
                "Stop": {"type": "Terminate", "inputs": {"runStatus": "Cancelled"}},
                "A": {"type": "Compose", "inputs": "a"},
                "Slow": {"type": "Wait", "runAfter": {"A": ["Succeeded"]},
                    "inputs": {"interval": {"count": 1, "unit": "Hour"}}},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for _ in 0..5 {
        let run = env.run_now("stop-first", "manual", None).await;
        let done = env.wait_run("stop-first", &run).await;
        assert_eq!(done["properties"]["status"], "Cancelled", "{done}");
    }
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_and_failure_paths() {
    let env = start().await;
    // Terminate ends the run at once with its status and error.
    let (status, body) = env
        .put_workflow(
            "term",
            manual(json!({
                "A": {"type": "Compose", "inputs": "a"},
                "Stop": {"type": "Terminate", "runAfter": {"A": ["Succeeded"]},
                    "inputs": {"runStatus": "Failed", "runError": {"code": "Custom", "message": "stopped on purpose"}}},
                // Longer than any test run: only the Terminate can end it, however
                // loaded the machine (a 30 s wait once ended first).
                "Slow": {"type": "Wait", "inputs": {"interval": {"count": 1, "unit": "Hour"}}},
                "After": {"type": "Compose", "inputs": "b", "runAfter": {"Stop": ["Succeeded"]}},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let run = env.run_now("term", "manual", None).await;
    let done = env.wait_run("term", &run).await;
    assert_eq!(done["properties"]["status"], "Failed", "{done}");
    assert_eq!(done["properties"]["error"]["code"], "Custom");
    assert_eq!(done["properties"]["error"]["message"], "stopped on purpose");
    assert_eq!(
        env.action("term", &run, "Slow").await["status"],
        "Cancelled"
    );
    let (status, _) = env
        .arm(
            Method::GET,
            &format!("{}/runs/{run}/actions/After?{LOGIC}", env.wf("term")),
            None,
        )
        .await;
    assert_eq!(status, 404, "an action after Terminate never runs");

    // A failed Foreach iteration fails the loop; the cleanup after it still runs,
    // and the run ends Failed because the success path was skipped.
    let (status, body) = env
        .put_workflow(
            "fail",
            manual(json!({
                "Loop": {"type": "Foreach", "foreach": "@createArray('1', 'x', '3')",
                    "actions": {"Parse": {"type": "Compose", "inputs": "@int(items('Loop'))"}}},
                "Done": {"type": "Compose", "inputs": "ok", "runAfter": {"Loop": ["Succeeded"]}},
                "Cleanup": {"type": "Compose", "inputs": "@result('Loop')", "runAfter": {"Loop": ["Failed", "TimedOut"]}},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let run = env.run_now("fail", "manual", None).await;
    let done = env.wait_run("fail", &run).await;
    assert_eq!(done["properties"]["status"], "Failed", "{done}");
    assert_eq!(done["properties"]["error"]["code"], "ActionFailed");
    let lp = env.action("fail", &run, "Loop").await;
    assert_eq!(lp["status"], "Failed");
    let reps = env.repetitions("fail", &run, "Loop").await;
    let statuses: Vec<&str> = reps
        .iter()
        .map(|r| r["properties"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["Succeeded", "Failed", "Succeeded"]);
    let parse = env.repetitions("fail", &run, "Parse").await;
    assert_eq!(parse[1]["properties"]["error"]["code"], "InvalidTemplate");
    assert_eq!(env.action("fail", &run, "Done").await["status"], "Skipped");
    let cleanup = env.action("fail", &run, "Cleanup").await;
    assert_eq!(cleanup["status"], "Succeeded");
    assert_eq!(cleanup["outputs"].as_array().unwrap().len(), 3);

    // The same failure handled on the only path: the run succeeds (Logic Apps'
    // try/catch pattern).
    let (status, _) = env
        .put_workflow(
            "handled",
            manual(json!({
                "Try": {"type": "Scope", "actions": {"Bad": {"type": "Compose", "inputs": "@int('x')"}}},
                "Catch": {"type": "Compose", "inputs": "@result('Try')[0]['status']", "runAfter": {"Try": ["Failed"]}},
            })),
        )
        .await;
    assert_eq!(status, 201);
    let run = env.run_now("handled", "manual", None).await;
    let done = env.wait_run("handled", &run).await;
    assert_eq!(done["properties"]["status"], "Succeeded", "{done}");
    assert_eq!(env.action("handled", &run, "Try").await["status"], "Failed");
    assert_eq!(
        env.action("handled", &run, "Catch").await["outputs"],
        "Failed"
    );

    // Run history: newest first, $top, $filter.
    env.run_now("handled", "manual", None).await;
    let all = env.runs("handled", "").await;
    assert_eq!(all.len(), 2);
    assert!(
        all[0]["properties"]["startTime"].as_str() >= all[1]["properties"]["startTime"].as_str()
    );
    assert_eq!(env.runs("handled", "&$top=1").await.len(), 1);
    assert_eq!(
        env.runs("fail", "&$filter=status%20eq%20'Failed'")
            .await
            .len(),
        1
    );
    assert_eq!(
        env.runs("fail", "&$filter=status%20eq%20'Succeeded'")
            .await
            .len(),
        0
    );
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_actions_manage_a_container_group_as_the_workflow_identity() {
    let env = start().await;
    let sub = env.sub();
    let group = format!(
        "https://management.azure.com{sub}/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/@{{variables('group')}}"
    );
    let msi =
        json!({"type": "ManagedServiceIdentity", "audience": "https://management.azure.com/"});
    let def = manual(json!({
        "Name": {"type": "InitializeVariable", "inputs": {"variables": [{"name": "group", "type": "string",
            "value": "@concat('job-', toLower(formatDateTime(utcNow(), 'yyyyMMddHHmmss')))"}]}},
        "Create": {"type": "Http", "runAfter": {"Name": ["Succeeded"]}, "inputs": {
            "method": "PUT", "uri": format!("{group}?api-version=2023-05-01"),
            "headers": {"Content-Type": "application/json"},
            "body": {"location": "westeurope", "properties": {"osType": "Linux", "restartPolicy": "Never",
                "containers": [{"name": "job", "properties": {"image": "local/sh:1",
                    "command": ["sh", "-c", "echo scored @{triggerBody()?['rows']} rows"],
                    "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}}}}]}},
            "authentication": msi}},
        "Poll": {"type": "Until", "runAfter": {"Create": ["Succeeded"]},
            "expression": "@equals(body('Get')?['properties']?['instanceView']?['state'], 'Succeeded')",
            "limit": {"count": 60, "timeout": "PT2M"},
            "actions": {
                "Pause": {"type": "Wait", "inputs": {"interval": {"count": 1, "unit": "Second"}}},
                "Get": {"type": "Http", "runAfter": {"Pause": ["Succeeded"]}, "inputs": {
                    "method": "GET", "uri": format!("{group}?api-version=2023-05-01"), "authentication": msi}}
            }},
        "Logs": {"type": "Http", "runAfter": {"Poll": ["Succeeded"]}, "inputs": {
            "method": "GET", "uri": format!("{group}/containers/job/logs?api-version=2023-05-01"), "authentication": msi}},
        "Delete": {"type": "Http", "runAfter": {"Logs": ["Succeeded", "Failed"]}, "inputs": {
            "method": "DELETE", "uri": format!("{group}?api-version=2023-05-01"), "authentication": msi}},
    }));
    let (status, wf) = env.put_workflow("score", def).await;
    assert_eq!(status, 201, "{wf}");
    let principal = wf["identity"]["principalId"].as_str().unwrap().to_string();

    // Without a role the identity may not create anything.
    let run = env
        .run_now("score", "manual", Some(json!({"rows": 3})))
        .await;
    let done = env.wait_run("score", &run).await;
    assert_eq!(done["properties"]["status"], "Failed", "{done}");
    let create = env.action("score", &run, "Create").await;
    assert_eq!(create["status"], "Failed");
    assert_eq!(create["outputs"]["statusCode"], 403);
    assert_eq!(
        create["outputs"]["body"]["error"]["code"],
        "AuthorizationFailed"
    );
    assert_eq!(env.action("score", &run, "Poll").await["status"], "Skipped");

    // Contributor on the resource group.
    let ra = format!("{sub}/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/0b7b1c7e-6a1d-4c38-9e3f-3f2d7d1c9a01?api-version=2022-04-01");
    let (status, body) = env
        .arm(
            Method::PUT,
            &ra,
            Some(json!({"properties": {"roleDefinitionId": format!("{sub}/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c"),
                "principalId": principal, "principalType": "ServicePrincipal"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let run = env
        .run_now("score", "manual", Some(json!({"rows": 3})))
        .await;
    let done = env.wait_run("score", &run).await;
    assert_eq!(done["properties"]["status"], "Succeeded", "{done}");
    let create = env.action("score", &run, "Create").await;
    assert_eq!(create["outputs"]["statusCode"], 201);
    assert_eq!(create["code"], "Created");
    let name = create["outputs"]["body"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("job-"), "{name}");
    // The definition's URI is kept; the request went to the emulator.
    assert!(create["inputs"]["uri"]
        .as_str()
        .unwrap()
        .starts_with("https://management.azure.com/"));
    let poll = env.action("score", &run, "Poll").await;
    assert!(poll["repetitionCount"].as_u64().unwrap() >= 1);
    let logs = env.action("score", &run, "Logs").await;
    assert_eq!(logs["outputs"]["body"]["content"], "scored 3 rows\n");
    let delete = env.action("score", &run, "Delete").await;
    assert_eq!(delete["status"], "Succeeded");
    let (status, _) = env
        .arm(
            Method::GET,
            &format!("{sub}/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/{name}?api-version=2023-05-01"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // The workflow's calls went through the emulator's front door.
    let journal = env.azure.journal();
    assert!(journal.iter().any(|e| e.method == "PUT"
        && e.path.ends_with(&format!("/containerGroups/{name}"))
        && e.status == 201));
    assert!(journal
        .iter()
        .any(|e| e.method == "PUT" && e.path.contains("/containerGroups/job-") && e.status == 403));
    assert!(journal
        .iter()
        .any(|e| e.method == "DELETE" && e.path.ends_with(&format!("/containerGroups/{name}"))));
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurrence_fires_on_its_own_until_disabled() {
    let env = start().await;
    let (status, body) = env
        .put_workflow(
            "tick",
            json!({"triggers": {"Every_2s": {"type": "Recurrence", "recurrence": {"frequency": "Second", "interval": 2}}},
                "actions": {"Now": {"type": "Compose", "inputs": "@trigger()['scheduledTime']"}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // No start time: it fires at once on save, then every 2 seconds. Waits for the
    // second run (bounded), not for a fixed time a loaded machine may overrun.
    let mut runs = Vec::new();
    for _ in 0..300 {
        runs = env.runs("tick", "").await;
        if runs.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(runs.len() >= 2, "{} runs", runs.len());
    assert!(runs
        .iter()
        .all(|r| r["properties"]["trigger"]["name"] == "Every_2s"));
    let scheduled = runs[0]["properties"]["trigger"]["scheduledTime"]
        .as_str()
        .unwrap();
    // Fires on even-second boundaries counted from the save.
    assert!(scheduled.ends_with('Z'), "{scheduled}");

    let (status, _) = env
        .arm(
            Method::POST,
            &format!("{}/disable?{LOGIC}", env.wf("tick")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = env.runs("tick", "").await.len();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        env.runs("tick", "").await.len(),
        count,
        "a disabled workflow fired"
    );
    // Manual runs of a disabled workflow are refused.
    let (status, err) = env
        .arm(
            Method::POST,
            &format!("{}/triggers/Every_2s/run?{LOGIC}", env.wf("tick")),
            None,
        )
        .await;
    assert_eq!(status, 409, "{err}");
    // Enabled again, it fires again.
    let (status, _) = env
        .arm(
            Method::POST,
            &format!("{}/enable?{LOGIC}", env.wf("tick")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(env.runs("tick", "").await.len() > count);
    // Deleting the workflow stops its timer (nothing left to fire).
    let (status, _) = env
        .arm(Method::DELETE, &format!("{}?{LOGIC}", env.wf("tick")), None)
        .await;
    assert_eq!(status, 200);
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trigger_callback_url_starts_a_run() {
    let env = start().await;
    let (status, body) = env
        .put_workflow(
            "hook",
            manual(json!({"Echo": {"type": "Compose", "inputs": "@triggerBody()?['model']"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, cb) = env
        .arm(
            Method::POST,
            &format!("{}/triggers/manual/listCallbackUrl?{LOGIC}", env.wf("hook")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{cb}");
    let url = cb["value"].as_str().unwrap().to_string();
    assert!(url.contains("&sig="), "{url}");
    // No bearer token: the signature is the credential.
    let resp = env
        .http
        .post(&url)
        .json(&json!({"model": "iris"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let run = resp.headers()["x-ms-workflow-run-id"]
        .to_str()
        .unwrap()
        .to_string();
    let done = env.wait_run("hook", &run).await;
    assert_eq!(done["properties"]["status"], "Succeeded");
    assert_eq!(env.action("hook", &run, "Echo").await["outputs"], "iris");

    let forged = format!("{}x", url);
    let resp = env
        .http
        .post(&forged)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let unsigned = url.split("&sig=").next().unwrap().to_string();
    let resp = env
        .http
        .post(&unsigned)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Recurrence triggers have no callback URL.
    let (status, _) = env
        .put_workflow(
            "rec",
            json!({"triggers": {"r": {"type": "Recurrence", "recurrence": {"frequency": "Day", "interval": 1, "startTime": "2099-01-01T00:00:00Z"}}}, "actions": {}}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = env
        .arm(
            Method::POST,
            &format!("{}/triggers/r/listCallbackUrl?{LOGIC}", env.wf("rec")),
            None,
        )
        .await;
    assert_eq!(status, 400);
    // ... but can be run by hand.
    let run = env.run_now("rec", "r", None).await;
    assert_eq!(
        env.wait_run("rec", &run).await["properties"]["status"],
        "Succeeded"
    );
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aci_connector_runs_a_container_group() {
    let env = start().await;
    let sub = env.sub();
    let connection = |name: &str, version: &str, body: Value| {
        let path = format!(
            "{sub}/resourceGroups/rg/providers/Microsoft.Web/connections/{name}?api-version={version}"
        );
        let env = &env;
        async move { env.arm(Method::PUT, &path, Some(body)).await }
    };
    let api = |name: &str| {
        format!("{sub}/providers/Microsoft.Web/locations/westeurope/managedApis/{name}")
    };
    // Only the managed-identity shapes Microsoft documents are accepted: a single-
    // authentication connector (aci) as "Alternative" parameter values, a multi-
    // authentication one (azureblob) as the managedIdentityAuth parameter set, which
    // needs api-version 2018-07-01-preview; kind V1 (consumption).
    let refused = [
        (
            "blob-alt",
            "2018-07-01-preview",
            json!({"location": "westeurope", "kind": "V1", "properties": {
            "api": {"id": api("azureblob")}, "parameterValueType": "Alternative"}}),
            "managedIdentityAuth",
        ),
        (
            "blob-old",
            "2016-06-01",
            json!({"location": "westeurope", "properties": {
            "api": {"id": api("azureblob")}, "parameterValueSet": {"name": "managedIdentityAuth", "values": {}}}}),
            "2018-07-01-preview",
        ),
        (
            "blob-v2",
            "2018-07-01-preview",
            json!({"location": "westeurope", "kind": "V2", "properties": {
            "api": {"id": api("azureblob")}, "parameterValueSet": {"name": "managedIdentityAuth", "values": {}}}}),
            "V1",
        ),
        (
            "aci-set",
            "2018-07-01-preview",
            json!({"location": "westeurope", "properties": {
            "api": {"id": api("aci")}, "parameterValueSet": {"name": "managedIdentityAuth", "values": {}}}}),
            "Alternative",
        ),
        (
            "aci-far",
            "2018-07-01-preview",
            json!({"location": "westeurope", "properties": {
            "api": {"id": format!("{sub}/providers/Microsoft.Web/locations/northeurope/managedApis/aci")},
            "parameterValueType": "Alternative"}}),
            "location",
        ),
    ];
    for (name, version, body, says) in refused {
        let (status, err) = connection(name, version, body).await;
        assert_eq!(status, 400, "{name}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(says),
            "{name}: {err}"
        );
    }
    let (status, body) = connection("blob-mi", "2018-07-01-preview", json!({"location": "westeurope", "kind": "V1",
        "properties": {"api": {"id": api("azureblob")}, "parameterValueSet": {"name": "managedIdentityAuth", "values": {}}}})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], "V1");
    let (status, body) = connection("aci", "2018-07-01-preview", json!({"location": "westeurope", "kind": "V1",
        "properties": {"displayName": "aci", "api": {"id": api("aci")}, "parameterValueType": "Alternative"}})).await;
    assert_eq!(status, 201, "{body}");
    let conn = "@parameters('$connections')['aci']['connectionId']";
    let group = format!(
        "/subscriptions/@{{encodeURIComponent('{}')}}/resourceGroups/@{{encodeURIComponent('rg')}}/providers/Microsoft.ContainerInstance/containerGroups/@{{encodeURIComponent('aci-job')}}",
        env.azure.config().subscription_id
    );
    let definition = json!({
        "parameters": {"$connections": {"type": "Object", "defaultValue": {}}},
        "triggers": {"manual": {"type": "Request", "kind": "Http"}},
        "actions": {
            "Create": {"type": "ApiConnection", "inputs": {"host": {"connection": {"name": conn}}, "method": "put",
                "path": group, "queries": {"x-ms-api-version": "2023-05-01"},
                "body": {"location": "westeurope", "properties": {"osType": "Linux", "restartPolicy": "Never",
                    "containers": [{"name": "job", "properties": {"image": "local/sh:1", "command": ["sh", "-c", "echo via connector"],
                        "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}}}}]}}}},
            "Wait_done": {"type": "Until", "runAfter": {"Create": ["Succeeded"]},
                "expression": "@equals(body('Get')?['properties']?['instanceView']?['state'], 'Succeeded')",
                "limit": {"count": 100, "timeout": "PT2M"},
                "actions": {
                    "Pause": {"type": "Wait", "inputs": {"interval": {"count": 1, "unit": "Second"}}},
                    "Get": {"type": "ApiConnection", "runAfter": {"Pause": ["Succeeded"]}, "inputs": {"host": {"connection": {"name": conn}},
                        "method": "get", "path": group, "queries": {"x-ms-api-version": "2023-05-01"}}}}},
            "Logs": {"type": "ApiConnection", "runAfter": {"Wait_done": ["Succeeded"]}, "inputs": {"host": {"connection": {"name": conn}},
                "method": "get", "path": format!("{group}/containers/@{{encodeURIComponent('job')}}/logs"), "queries": {"x-ms-api-version": "2023-05-01"}}},
            "Delete": {"type": "ApiConnection", "runAfter": {"Logs": ["Succeeded", "Failed"]}, "inputs": {"host": {"connection": {"name": conn}},
                "method": "delete", "path": group, "queries": {"x-ms-api-version": "2023-05-01"}}},
        },
    });
    let connections = json!({"$connections": {"value": {"aci": {
        "connectionId": format!("{sub}/resourceGroups/rg/providers/Microsoft.Web/connections/aci"),
        "connectionName": "aci",
        "connectionProperties": {"authentication": {"type": "ManagedServiceIdentity"}},
        "id": format!("{sub}/providers/Microsoft.Web/locations/westeurope/managedApis/aci")}}}});
    let (status, wf) = env
        .arm(
            Method::PUT,
            &format!("{}?{LOGIC}", env.wf("aci")),
            Some(
                json!({"location": "westeurope", "identity": {"type": "SystemAssigned"},
                "properties": {"definition": definition, "parameters": connections}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{wf}");
    let principal = wf["identity"]["principalId"].as_str().unwrap();
    let (status, _) = env
        .arm(
            Method::PUT,
            &format!("{sub}/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/4f8a3c1e-2b7d-4e6f-9a0b-1c2d3e4f5a6b?api-version=2022-04-01"),
            Some(json!({"properties": {"roleDefinitionId": format!("{sub}/providers/Microsoft.Authorization/roleDefinitions/5d977122-f97e-4b4d-a52f-6b43003ddb4d"),
                "principalId": principal}})),
        )
        .await;
    assert_eq!(status, 201);
    let run = env.run_now("aci", "manual", None).await;
    let done = env.wait_run("aci", &run).await;
    assert_eq!(done["properties"]["status"], "Succeeded", "{done}");
    assert_eq!(
        env.action("aci", &run, "Create").await["outputs"]["statusCode"],
        201
    );
    assert_eq!(
        env.action("aci", &run, "Logs").await["outputs"]["body"]["content"],
        "via connector\n"
    );
    assert_eq!(
        env.action("aci", &run, "Delete").await["outputs"]["statusCode"],
        200
    );

    // A connector other than aci is refused when the workflow is saved.
    let mut other = connections.clone();
    other["$connections"]["value"]["aci"]["id"] = json!(format!(
        "{sub}/providers/Microsoft.Web/locations/westeurope/managedApis/office365"
    ));
    let (status, err) = env
        .arm(
            Method::PUT,
            &format!("{}?{LOGIC}", env.wf("o365")),
            Some(
                json!({"location": "westeurope", "identity": {"type": "SystemAssigned"},
                "properties": {"definition": definition, "parameters": other}}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "WorkflowNotSupportedByLocalAzure");
    env.azure.shutdown().await;
}

const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Shared Key for a request to Azurite's devstoreaccount1 (path-style URL).
fn azurite_auth(
    method: &str,
    path_and_query: &str,
    len: usize,
    ct: &str,
    ms: &[(&str, &str)],
) -> String {
    use base64::Engine;
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut s = format!(
        "{method}\n\n\n{}\n\n{ct}\n\n\n\n\n\n\n",
        if len == 0 {
            String::new()
        } else {
            len.to_string()
        }
    );
    let mut headers: Vec<_> = ms.to_vec();
    headers.sort();
    for (k, v) in headers {
        s.push_str(&format!("{k}:{v}\n"));
    }
    s.push_str(&format!("/devstoreaccount1{path}"));
    let mut q: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    q.sort();
    for (k, v) in q {
        s.push_str(&format!("\n{k}:{v}"));
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let sig = ring::hmac::sign(&k, s.as_bytes());
    format!(
        "SharedKey devstoreaccount1:{}",
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    )
}

async fn azurite_put(http: &reqwest::Client, port: u16, path_and_query: &str, body: &str) -> u16 {
    let date = httpdate_now();
    let ct = if body.is_empty() { "" } else { "text/csv" };
    let mut ms = vec![("x-ms-date", date.as_str()), ("x-ms-version", "2025-05-05")];
    if !body.is_empty() {
        ms.push(("x-ms-blob-type", "BlockBlob"));
    }
    let auth = azurite_auth(
        "PUT",
        &format!("/devstoreaccount1{path_and_query}"),
        body.len(),
        ct,
        &ms,
    );
    let mut req = http
        .put(format!(
            "http://127.0.0.1:{port}/devstoreaccount1{path_and_query}"
        ))
        .header("authorization", auth)
        .body(body.to_string());
    for (k, v) in &ms {
        req = req.header(*k, *v);
    }
    if !ct.is_empty() {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    resp.status().as_u16()
}

fn httpdate_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = now.div_euclid(86400);
    let secs = now.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_trigger_fires_for_new_and_changed_blobs() {
    let have_azurite = std::process::Command::new("sh")
        .args(["-c", "command -v azurite-blob"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_azurite {
        eprintln!("azurite-blob not installed: skipping the blob trigger test");
        return;
    }
    let env = start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut azurite = tokio::process::Command::new("azurite-blob")
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--loose",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--disableTelemetry",
            "--silent",
        ])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "Azurite did not start");
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(
        azurite_put(&plain, port, "/input?restype=container", "").await,
        201
    );

    env.azure
        .add_storage_account(serverless_local::SeededStorageAccount {
            resource_group: "rg-data".into(),
            name: "devstoreaccount1".into(),
            blob_endpoint: format!("http://127.0.0.1:{port}/devstoreaccount1/"),
            location: "westeurope".into(),
        })
        .unwrap();
    env.azure
        .set_storage_account_key("devstoreaccount1", AZURITE_KEY)
        .unwrap();
    let sub = env.sub();
    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("{sub}/resourceGroups/rg/providers/Microsoft.Web/connections/azureblob?api-version=2016-06-01"),
            // An account-key connection: this Azurite is plain HTTP without OAuth (the
            // R tests poll with the managed-identity connection schedule_scoring makes).
            Some(json!({"location": "westeurope", "properties": {"displayName": "blob",
                "api": {"id": format!("{sub}/providers/Microsoft.Web/locations/westeurope/managedApis/azureblob")},
                "parameterValues": {"accountName": "devstoreaccount1", "accessKey": AZURITE_KEY}}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["properties"]["parameterValues"]
            .get("accessKey")
            .is_none(),
        "{body}"
    );
    let definition = json!({
        "parameters": {"$connections": {"type": "Object"}},
        "triggers": {"When_a_blob_is_added_or_modified": {"type": "ApiConnection",
            "inputs": {"host": {"connection": {"name": "@parameters('$connections')['azureblob']['connectionId']"}},
                "method": "get",
                "path": "/v2/datasets/@{encodeURIComponent(encodeURIComponent('AccountNameFromSettings'))}/triggers/batch/onupdatedfile",
                "queries": {"folderId": "/input", "maxFileCount": 10}},
            "recurrence": {"frequency": "Second", "interval": 1},
            "splitOn": "@triggerBody()"}},
        "actions": {"Seen": {"type": "Compose", "inputs": "@concat(triggerBody()?['Path'], ':', string(triggerBody()?['Size']))"}},
    });
    let (status, wf) = env
        .arm(
            Method::PUT,
            &format!("{}?{LOGIC}", env.wf("onblob")),
            Some(json!({"location": "westeurope", "identity": {"type": "SystemAssigned"},
                "properties": {"definition": definition, "parameters": {"$connections": {"value": {"azureblob": {
                    "connectionId": format!("{sub}/resourceGroups/rg/providers/Microsoft.Web/connections/azureblob"),
                    "connectionName": "azureblob",
                    "connectionProperties": {"authentication": {"type": "ManagedServiceIdentity"}},
                    "id": format!("{sub}/providers/Microsoft.Web/locations/westeurope/managedApis/azureblob")}}}}}})),
        )
        .await;
    assert_eq!(status, 201, "{wf}");
    // The first poll only takes stock (a Skipped history); blobs after it fire one
    // run each.
    let trigger = "When_a_blob_is_added_or_modified";
    env.wait_history("onblob", trigger, |h| !h.is_empty()).await;
    let first = &env.histories("onblob", trigger).await[0];
    assert_eq!(first["properties"]["status"], "Skipped", "{first}");
    assert_eq!(first["properties"]["fired"], false);
    assert_eq!(
        first["type"],
        "Microsoft.Logic/workflows/triggers/histories"
    );
    assert_eq!(env.runs("onblob", "").await.len(), 0);
    assert_eq!(
        azurite_put(&plain, port, "/input/a.csv", "x,y\n1,2\n").await,
        201
    );
    assert_eq!(azurite_put(&plain, port, "/input/b.csv", "x\n").await, 201);
    let mut runs = Vec::new();
    for _ in 0..600 {
        runs = env.runs("onblob", "").await;
        if runs.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        runs.len(),
        2,
        "{:?}",
        env.azure
            .journal()
            .iter()
            .filter(|e| e.method == "POLL")
            .collect::<Vec<_>>()
    );
    let mut seen = Vec::new();
    for r in &runs {
        let name = r["name"].as_str().unwrap();
        env.wait_run("onblob", name).await;
        seen.push(
            env.action("onblob", name, "Seen").await["outputs"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let body = &r["properties"]["trigger"]["outputs"]["body"];
        assert!(
            body["LastModified"].as_str().unwrap().ends_with('Z'),
            "{body}"
        );
    }
    seen.sort();
    assert_eq!(seen, vec!["/input/a.csv:8", "/input/b.csv:2"]);
    // Each run has a fired history naming it (a history of a fired trigger has the
    // run's name).
    let histories = env.histories("onblob", trigger).await;
    for r in &runs {
        let h = histories
            .iter()
            .find(|h| h["name"] == r["name"])
            .unwrap_or_else(|| panic!("no history for run {}", r["name"]));
        assert_eq!(h["properties"]["status"], "Succeeded");
        assert_eq!(h["properties"]["fired"], true);
        assert_eq!(h["properties"]["run"]["name"], r["name"]);
    }
    let (status, one) = env
        .arm(
            Method::GET,
            &format!(
                "{}/triggers/{trigger}/histories/{}?{LOGIC}",
                env.wf("onblob"),
                runs[0]["name"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["properties"]["run"]["name"], runs[0]["name"]);
    assert_eq!(
        env.arm(
            Method::GET,
            &format!("{}/triggers/Nope/histories?{LOGIC}", env.wf("onblob")),
            None
        )
        .await
        .0,
        404
    );
    // A changed blob fires again; an unchanged folder does not.
    assert_eq!(
        azurite_put(&plain, port, "/input/a.csv", "x,y\n1,2\n3,4\n").await,
        201
    );
    for _ in 0..600 {
        if env.runs("onblob", "").await.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then a poll that finds nothing new (Skipped, newer than the third run's
    // history), and no fourth run.
    env.wait_history("onblob", trigger, |h| {
        h.first()
            .is_some_and(|newest| newest["properties"]["status"] == "Skipped")
            && h.iter()
                .filter(|x| x["properties"]["fired"] == true)
                .count()
                == 3
    })
    .await;
    assert_eq!(env.runs("onblob", "").await.len(), 3);
    let _ = azurite.kill().await;
    env.azure.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_can_be_cancelled() {
    let env = start().await;
    let (status, body) = env
        .put_workflow(
            "slow",
            manual(json!({
                "Loop": {"type": "Foreach", "foreach": "@createArray('a', 'b')",
                    "runtimeConfiguration": {"concurrency": {"repetitions": 1}},
                    "actions": {"Nap": {"type": "Wait", "inputs": {"interval": {"count": 30, "unit": "Second"}}}}},
                "Next": {"type": "Compose", "inputs": 1, "runAfter": {"Loop": ["Succeeded", "Failed"]}},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let run = env.run_now("slow", "manual", None).await;
    // Wait (bounded: 30 s) until the first iteration runs; until Nap has started, its
    // repetitions are a 404 (a loaded machine once asked before it had).
    let reps = format!(
        "{}/runs/{run}/actions/Nap/repetitions?{LOGIC}",
        env.wf("slow")
    );
    for _ in 0..600 {
        let (status, body) = env.arm(Method::GET, &reps, None).await;
        if status == 200 && body["value"].as_array().is_some_and(|v| v.len() == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rep = env.repetitions("slow", &run, "Nap").await;
    assert_eq!(rep[0]["properties"]["status"], "Running");
    let (status, body) = env
        .arm(
            Method::GET,
            &format!(
                "{}/runs/{run}/actions/Nap/repetitions/000000?{LOGIC}",
                env.wf("slow")
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["properties"]["repetitionIndexes"][0]["scopeName"],
        "Loop"
    );

    let cancel = format!("{}/runs/{run}/cancel?{LOGIC}", env.wf("slow"));
    let (status, _) = env.arm(Method::POST, &cancel, None).await;
    assert_eq!(status, 200);
    let done = env.wait_run("slow", &run).await;
    assert_eq!(done["properties"]["status"], "Cancelled", "{done}");
    assert_eq!(env.action("slow", &run, "Nap").await["status"], "Cancelled");
    assert_eq!(
        env.action("slow", &run, "Loop").await["status"],
        "Cancelled"
    );
    // Nothing after the cancelled loop ran, and a finished run cannot be cancelled.
    assert_eq!(env.repetitions("slow", &run, "Nap").await.len(), 1);
    let (status, _) = env
        .arm(
            Method::GET,
            &format!("{}/runs/{run}/actions/Next?{LOGIC}", env.wf("slow")),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, err) = env.arm(Method::POST, &cancel, None).await;
    assert_eq!(status, 409, "{err}");
    let (status, err) = env
        .arm(
            Method::GET,
            &format!("{}/runs/08584nope/actions?{LOGIC}", env.wf("slow")),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "WorkflowRunNotFound");
    env.azure.shutdown().await;
}
