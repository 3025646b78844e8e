//! The estimator's arithmetic against cases worked out by hand.

use super::*;
use serde_json::json;

fn snapshot(name: &str) -> Value {
    let path = format!("{}/tests/snapshots/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Two shards of 1 vCPU and 1.5 GB: the shape most cases use.
fn request(duration_s: f64, runs_per_month: Option<f64>, workflow: Option<Value>) -> CostRequest {
    CostRequest {
        cpu: 1.0,
        memory_gb: 1.5,
        duration_s,
        shards: 2.0,
        runs_per_month,
        workflow,
    }
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} != {b}");
}

#[test]
fn units_normalise_to_seconds_or_counts() {
    assert_eq!(unit_quantity("1 Hour"), Some(3600.0));
    assert_eq!(unit_quantity("1 GB Hour"), Some(3600.0));
    assert_eq!(unit_quantity("100 Seconds"), Some(100.0));
    assert_eq!(unit_quantity("100 GB Seconds"), Some(100.0));
    assert_eq!(unit_quantity("1 Second"), Some(1.0));
    assert_eq!(unit_quantity("1"), Some(1.0));
    assert_eq!(unit_quantity("10K"), Some(10_000.0));
    assert_eq!(unit_quantity("1/Month"), None);
    assert_eq!(unit_quantity("1 GB/Month"), None);
}

#[test]
fn container_instances_only_by_hand() {
    // 1 vCPU, 1.5 GB, 600 s, 2 shards, 30 runs, East US:
    // 1 * 600 * 2 = 1200 vCPU-s at 0.0405/3600 = 0.0135
    // 1.5 * 600 * 2 = 1800 GB-s at 0.00445/3600 = 0.002225
    let p = builtin_prices("eastus").unwrap();
    let req = request(600.0, Some(30.0), None);
    let e = estimate(&req, &p).unwrap();
    close(e.per_run.aci_vcpu_seconds, 1200.0);
    close(e.per_run.aci_gb_seconds, 1800.0);
    close(e.per_run.aci_vcpu_cost, 0.0135);
    close(e.per_run.aci_gb_cost, 0.002225);
    close(e.per_run.logic_cost, 0.0);
    close(e.per_run.total, 0.015725);
    close(e.per_month.total, 0.47175);
    close(e.fixed_per_month, 0.0);
    // VMs with at least 1 vCPU and 1.5 GB, cheapest first: B1ms then B2s.
    let skus: Vec<&str> = e.alternatives.iter().map(|a| a.sku.as_str()).collect();
    assert_eq!(skus, ["Standard_B1ms", "Standard_B2s"]);
    close(e.alternatives[0].per_month, 0.0207 * 730.0); // 15.111
    close(
        e.alternatives[0].break_even_runs.unwrap(),
        15.111 / 0.015725,
    ); // 960.95
}

#[test]
fn http_schedule_actions_by_hand() {
    // The snapshot: 2 shards, checks after 10, 10, 20, 30, 40, 50, 60 s (the
    // parameter pollWaitSeconds), weekdays at 03:00.
    // Per shard with a 60 s run: Create_group 1, Until 1 + 4 checks (10 + 10 + 20 + 30
    // = 70 s) x (Delay + Get_group) = 9, Get_logs 1, Write_logs 1, Record_shard 1,
    // If_shard_failed 1 (empty branch), Delete_group 1 = 15; the Record_*_failure
    // actions are skipped.
    // Top level: 2 Initialize + Foreach + Write_summary + If_any_shard_failed = 5.
    let w = snapshot("workflow-http-schedule.json");
    let a = count_run_actions(&w, 60.0).unwrap();
    assert_eq!(
        a,
        Actions {
            builtin: 5.0 + 2.0 * 15.0,
            standard: 0.0
        }
    );
    // A shorter run checks less: 30 s is 3 checks (40 s), so 2 x (15 - 2) + 5.
    assert_eq!(
        count_run_actions(&w, 30.0).unwrap().builtin,
        5.0 + 2.0 * 13.0
    );
    let t = count_trigger(&w).unwrap();
    assert_eq!(
        t.per_run,
        Actions {
            builtin: 1.0,
            standard: 0.0
        }
    );
    close(t.runs_per_month.unwrap(), 730.0 / 168.0 * 5.0); // 21.73 weekdays a month

    let p = builtin_prices("eastus").unwrap();
    let req = request(60.0, None, Some(w));
    let e = estimate(&req, &p).unwrap();
    close(e.per_run.builtin_actions, 36.0); // 35 + the Recurrence firing
    close(e.per_run.logic_cost, 36.0 * 0.000025); // 0.0009
    close(e.per_run.aci_vcpu_cost, 120.0 * 0.0405 / 3600.0); // 0.00135
    close(e.per_run.aci_gb_cost, 180.0 * 0.00445 / 3600.0); // 0.0002225
    close(e.per_run.total, 0.0009 + 0.00135 + 0.0002225);
    close(e.runs_per_month, 730.0 / 168.0 * 5.0);
    close(e.per_month.total, e.per_run.total * 730.0 / 168.0 * 5.0);
}

/// A Wait whose interval indexes a parameter's array by iteration: the checks follow
/// the array, its last entry repeating; a fixed interval, the same every check.
#[test]
fn backing_off_checks_by_hand() {
    let waits = json!({"pollWaitSeconds": {"type": "Array", "defaultValue": [95, 10, 20, 60]}});
    let count = "@parameters('pollWaitSeconds')[min(iterationIndexes('U'), 3)]";
    let until = |count: Value| {
        json!({"properties": {"definition": {"parameters": waits.clone(), "actions": {
            "U": {"type": "Until", "expression": "@true", "limit": {"count": 100}, "actions": {
                "Delay": {"type": "Wait", "inputs": {"interval": {"count": count, "unit": "Second"}}},
                "Get": {"type": "Http", "runAfter": {"Delay": ["Succeeded"]}}}}}}}})
    };
    let checks = |w: &Value, d: f64| (count_run_actions(w, d).unwrap().builtin - 1.0) / 2.0;
    let w = until(json!(count));
    // 95 s: seen at the first check; 96 s: at the second (105 s); 200 s: 95 + 10 + 20
    // + 60 = 185, and one more minute.
    assert_eq!(checks(&w, 95.0), 1.0);
    assert_eq!(checks(&w, 96.0), 2.0);
    assert_eq!(checks(&w, 200.0), 5.0);
    // The Until's limit still caps them.
    assert_eq!(checks(&w, 1e6), 100.0);
    assert_eq!(checks(&until(json!(10)), 200.0), 20.0);
}

#[test]
fn aci_connector_blob_trigger_by_hand() {
    // Per shard, 60 s: Create_group (std), Until (b) + 4 checks x (Delay b + Get_group
    // std), Get_logs (std), Write_logs (b), Record_shard (b), If (b), Delete_group
    // (std): builtin 1 + 4 + 1 + 1 + 1 = 8, standard 1 + 4 + 1 + 1 = 7. Top level: 5
    // built-in.
    let w = snapshot("workflow-aci-blob.json");
    let a = count_run_actions(&w, 60.0).unwrap();
    assert_eq!(
        a,
        Actions {
            builtin: 5.0 + 16.0,
            standard: 14.0
        }
    );
    // The blob trigger polls every minute, run or not: 730 * 60 standard checks a month.
    let t = count_trigger(&w).unwrap();
    assert_eq!(t.per_run, Actions::default());
    assert_eq!(
        t.polls_per_month,
        Actions {
            builtin: 0.0,
            standard: 43_800.0
        }
    );
    assert_eq!(t.runs_per_month, None);

    let p = builtin_prices("eastus").unwrap();
    let req = request(60.0, Some(10.0), Some(w.clone()));
    let e = estimate(&req, &p).unwrap();
    close(e.fixed_per_month, 43_800.0 * 0.000125); // 5.475
    close(e.per_run.logic_cost, 21.0 * 0.000025 + 14.0 * 0.000125); // 0.002275
    close(
        e.per_month.total,
        5.475 + 10.0 * (0.002275 + 120.0 * 0.0405 / 3600.0 + 180.0 * 0.00445 / 3600.0),
    );
    // Break-even against B1ms: (15.111 - 5.475) / per run.
    close(
        e.alternatives[0].break_even_runs.unwrap(),
        (15.111 - 5.475) / e.per_run.total,
    );
    // A blob trigger has no schedule: runs_per_month must be given.
    let err = estimate(
        &CostRequest {
            runs_per_month: None,
            ..req
        },
        &p,
    )
    .unwrap_err();
    assert!(err.to_string().contains("runs_per_month"), "{err}");
}

#[test]
fn recurrences_fire_per_730_hour_month() {
    let fires =
        |cron: &str| fires_per_month(&crate::logic::cron_to_recurrence(cron, "UTC").unwrap());
    close(fires("* * * * *"), 43_800.0);
    close(fires("*/15 * * * *"), 2_920.0);
    close(fires("5 * * * *"), 730.0);
    close(fires("0 3 * * *"), 730.0 / 24.0); // 30.42 days
    close(fires("0 3,15 * * *"), 730.0 / 12.0);
    close(fires("0 3 * * 1-5"), 730.0 / 168.0 * 5.0);
    close(fires("0 3 1 * *"), 1.0);
}

#[test]
fn retail_rows_become_prices() {
    let page = json!({
        "Items": [
            {"currencyCode": "USD", "retailPrice": 0.0405, "unitOfMeasure": "1 Hour",
             "serviceName": "Container Instances", "skuName": "Standard",
             "meterName": "Standard vCPU Duration", "productName": "Container Instances", "type": "Consumption"},
            {"currencyCode": "USD", "retailPrice": 0.0001236, "unitOfMeasure": "100 GB Seconds",
             "serviceName": "Container Instances", "skuName": "Standard",
             "meterName": "Standard Memory Duration", "productName": "Container Instances", "type": "Consumption"},
            {"currencyCode": "USD", "retailPrice": 0.012, "unitOfMeasure": "1 Second",
             "serviceName": "Container Instances", "skuName": "Standard",
             "meterName": "Standard Windows Software Duration", "productName": "Container Instances Windows", "type": "Consumption"},
            {"currencyCode": "USD", "retailPrice": 0.0, "tierMinimumUnits": 0.0, "unitOfMeasure": "1",
             "serviceName": "Logic Apps", "skuName": "Consumption", "meterName": "Consumption Built-in Actions", "type": "Consumption"},
            {"currencyCode": "USD", "retailPrice": 0.000025, "tierMinimumUnits": 4000.0, "unitOfMeasure": "1",
             "serviceName": "Logic Apps", "skuName": "Consumption", "meterName": "Consumption Built-in Actions", "type": "Consumption"},
            {"currencyCode": "USD", "retailPrice": 1.25, "unitOfMeasure": "10K",
             "serviceName": "Logic Apps", "skuName": "Consumption", "meterName": "Consumption Standard Connector Actions", "type": "Consumption"},
            {"currencyCode": "USD", "retailPrice": 0.0104, "unitOfMeasure": "1 Hour", "armSkuName": "Standard_B1s",
             "serviceName": "Virtual Machines", "skuName": "B1s", "meterName": "B1s", "productName": "Virtual Machines BS Series", "type": "Consumption"},
            {"currencyCode": "USD", "retailPrice": 0.0124, "unitOfMeasure": "1 Hour", "armSkuName": "Standard_B1s",
             "serviceName": "Virtual Machines", "skuName": "B1s", "meterName": "B1s", "productName": "Virtual Machines BS Series Windows", "type": "Consumption"},
            {"currencyCode": "USD", "retailPrice": 0.0021, "unitOfMeasure": "1 Hour", "armSkuName": "Standard_B1s",
             "serviceName": "Virtual Machines", "skuName": "B1s Spot", "meterName": "B1s Spot", "productName": "Virtual Machines BS Series", "type": "Consumption"}
        ],
        "NextPageLink": null
    });
    let (items, next) = parse_retail_page(&page).unwrap();
    assert_eq!(next, None);
    let p = prices_from_retail("eastus", &items, "test", "2026-11-27").unwrap();
    close(p.aci_vcpu_second, 0.0405 / 3600.0);
    close(p.aci_gb_second, 0.0001236 / 100.0);
    close(p.logic_builtin_action, 0.000025);
    close(p.logic_free_builtin_actions, 4000.0);
    close(p.logic_standard_action, 0.000125);
    assert_eq!(p.vms.len(), 1, "Windows and Spot rows are left out");
    close(p.vms[0].per_hour, 0.0104);

    // A page without a meter the estimate needs is an error that names it.
    let err = prices_from_retail("eastus", &items[3..], "test", "x").unwrap_err();
    assert!(err.to_string().contains("Standard vCPU Duration"), "{err}");
}

#[test]
fn bad_input_is_refused() {
    let p = builtin_prices("eastus").unwrap();
    let req = CostRequest {
        cpu: 1.0,
        memory_gb: 1.0,
        duration_s: 0.0,
        shards: 1.0,
        runs_per_month: Some(1.0),
        workflow: None,
    };
    assert!(estimate(&req, &p)
        .unwrap_err()
        .to_string()
        .contains("duration_s"));
    assert!(builtin_prices("mars")
        .unwrap_err()
        .to_string()
        .contains("eastus"));
    assert!(check_region("West Europe").is_err());
    assert!(check_region("westeurope").is_ok());
}

/// One-element arrays as scalars, as a workflow comes back from R.
fn unbox(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.len() == 1 => unbox(&a[0]),
        // R numbers are doubles.
        Value::Number(n) => Value::from(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(unbox).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), unbox(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn counts_survive_one_element_lists_as_scalars() {
    for name in ["workflow-http-schedule.json", "workflow-aci-blob.json"] {
        let w = snapshot(name);
        let u = unbox(&w);
        assert_eq!(
            count_run_actions(&u, 60.0).unwrap(),
            count_run_actions(&w, 60.0).unwrap()
        );
        assert_eq!(count_trigger(&u).unwrap(), count_trigger(&w).unwrap());
    }
}
