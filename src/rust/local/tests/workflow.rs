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
                    "inputs": {"name": "list", "value": "@mul(1)"}}
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
    // `mul` is not a supported function: the PUT is refused; then fixed.
    let (status, err) = env.put_workflow("flow", def.clone()).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("'mul'"));
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
                "Slow": {"type": "Wait", "inputs": {"interval": {"count": 30, "unit": "Second"}}},
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
    // No start time: it fires at once on save, then every 2 seconds.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let runs = env.runs("tick", "").await;
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
