//! What scoring costs: Container Instances vCPU- and GB-seconds plus Logic App
//! action executions, priced from a dated built-in table or from the public Azure
//! Retail Prices API (`https://prices.azure.com/api/retail/prices`, no sign-in).
//!
//! Logic App actions are counted from the rendered workflow itself (the same JSON
//! `schedule_scoring()` writes), walking the path a run takes when every shard
//! succeeds: `Foreach` multiplies by its `range(1, n)`, `Until` by the polls its
//! `Wait` makes over the run's duration, actions whose `runAfter` needs a failure are
//! skipped, and a condition takes the branch that does least.

use crate::logic::recurrence::{Frequency, Recurrence};
use crate::BoxFuture;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Azure bills a month as 730 hours.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Prices for one region, in `currency` per second or per action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    pub region: String,
    pub currency: String,
    /// When the prices were taken (a date, or the fetch time).
    pub as_of: String,
    /// `"built-in"` or the Retail Prices API endpoint they came from.
    pub source: String,
    pub aci_vcpu_second: f64,
    pub aci_gb_second: f64,
    pub logic_builtin_action: f64,
    pub logic_standard_action: f64,
    /// Built-in actions free each month (the API's `tierMinimumUnits`).
    pub logic_free_builtin_actions: f64,
    pub vms: Vec<VmPrice>,
    /// What is assumed rather than read from a price list.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// An always-on Linux VM, pay-as-you-go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmPrice {
    pub sku: String,
    pub vcpus: f64,
    pub memory_gb: f64,
    pub per_hour: f64,
}

/// The VM sizes compared against: the small general-purpose sizes a team would
/// otherwise leave running for scoring (vCPUs, GiB).
const VM_SIZES: [(&str, f64, f64); 4] = [
    ("Standard_B1s", 1.0, 1.0),
    ("Standard_B1ms", 1.0, 2.0),
    ("Standard_B2s", 2.0, 4.0),
    ("Standard_D2s_v5", 2.0, 8.0),
];

/// Regions the built-in table has.
pub const BUILTIN_REGIONS: [&str; 2] = ["eastus", "swedencentral"];

/// The dated built-in price table (USD, Linux, pay-as-you-go).
pub fn builtin_prices(region: &str) -> Result<Prices> {
    let per_hour = |p: f64| p / 3600.0;
    let vm = |sku: &str, price: f64| {
        let (_, vcpus, memory_gb) = VM_SIZES.iter().find(|(s, _, _)| *s == sku).unwrap();
        VmPrice {
            sku: sku.to_string(),
            vcpus: *vcpus,
            memory_gb: *memory_gb,
            per_hour: price,
        }
    };
    let base = |aci_vcpu_hour: f64, aci_gb_hour: f64| Prices {
        region: region.to_string(),
        currency: "USD".into(),
        as_of: "2026-01".into(),
        source: "built-in".into(),
        aci_vcpu_second: per_hour(aci_vcpu_hour),
        aci_gb_second: per_hour(aci_gb_hour),
        logic_builtin_action: 0.000025,
        logic_standard_action: 0.000125,
        logic_free_builtin_actions: 4000.0,
        vms: Vec::new(),
        notes: Vec::new(),
    };
    match region {
        "eastus" => Ok(Prices {
            vms: vec![
                vm("Standard_B1s", 0.0104),
                vm("Standard_B1ms", 0.0207),
                vm("Standard_B2s", 0.0416),
                vm("Standard_D2s_v5", 0.096),
            ],
            ..base(0.0405, 0.00445)
        }),
        "swedencentral" => Ok(Prices {
            notes: vec![
                "Logic App action prices are East US's (not captured for this region)".into(),
                "no VM prices in the built-in table for this region".into(),
            ],
            ..base(0.0466, 0.00511)
        }),
        other => Err(Error::input(format!(
            "the built-in price table has no region `{other}` (it has {})",
            BUILTIN_REGIONS.join(", ")
        ))),
    }
}

// ---------------------------------------------------------------------------
// Retail Prices API

/// The `$filter`s one region needs: Container Instances, Logic Apps and the VMs.
pub fn retail_filters(region: &str) -> Vec<String> {
    let skus = VM_SIZES
        .iter()
        .map(|(s, _, _)| format!("armSkuName eq '{s}'"))
        .collect::<Vec<_>>()
        .join(" or ");
    let common = format!("armRegionName eq '{region}' and priceType eq 'Consumption'");
    vec![
        format!("serviceName eq 'Container Instances' and {common}"),
        format!("serviceName eq 'Logic Apps' and {common}"),
        format!("serviceName eq 'Virtual Machines' and {common} and ({skus})"),
    ]
}

/// One row of the API's `Items`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetailItem {
    #[serde(default)]
    pub currency_code: String,
    #[serde(default)]
    pub retail_price: f64,
    #[serde(default)]
    pub tier_minimum_units: f64,
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub product_name: String,
    #[serde(default)]
    pub sku_name: String,
    #[serde(default)]
    pub arm_sku_name: String,
    #[serde(default)]
    pub meter_name: String,
    #[serde(default)]
    pub unit_of_measure: String,
    #[serde(default, rename = "type")]
    pub price_type: String,
}

/// A page of the API: its items and the link to the next page, if any.
pub fn parse_retail_page(page: &Value) -> Result<(Vec<RetailItem>, Option<String>)> {
    let items = page
        .get("Items")
        .ok_or_else(|| Error::azure(200, None, "the price list has no `Items`"))?;
    let items: Vec<RetailItem> = serde_json::from_value(items.clone())
        .map_err(|e| Error::azure(200, None, format!("unexpected price list item: {e}")))?;
    let next = page["NextPageLink"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok((items, next))
}

/// How many seconds (or GB-seconds, or actions) one `unitOfMeasure` stands for:
/// `"1 Hour"` is 3600, `"100 GB Seconds"` 100, `"10K"` 10,000.
pub fn unit_quantity(unit: &str) -> Option<f64> {
    let mut words = unit.split_whitespace();
    let count = words.next()?;
    let (digits, scale) = match count.chars().last()? {
        'K' => (&count[..count.len() - 1], 1e3),
        'M' => (&count[..count.len() - 1], 1e6),
        _ => (count, 1.0),
    };
    let n: f64 = digits.parse().ok()?;
    let rest: Vec<&str> = words.filter(|w| *w != "GB").collect();
    let seconds = match rest.as_slice() {
        [] => 1.0,
        [w] => match w.trim_end_matches('s') {
            "Second" => 1.0,
            "Minute" => 60.0,
            "Hour" => 3600.0,
            "Day" => 86400.0,
            _ => return None,
        },
        _ => return None,
    };
    Some(n * scale * seconds)
}

fn per_unit(item: &RetailItem) -> Result<f64> {
    let q = unit_quantity(&item.unit_of_measure).ok_or_else(|| {
        Error::azure(
            200,
            None,
            format!(
                "unknown unit `{}` for the meter `{}`",
                item.unit_of_measure, item.meter_name
            ),
        )
    })?;
    Ok(item.retail_price / q)
}

/// Builds a region's prices from the API's rows (all pages of [`retail_filters`]).
/// Windows, Spot and Low Priority rows are left out; of several rows for one meter the
/// highest price counts (the free tier is a $0 row), except VMs, where the lowest
/// Linux pay-as-you-go row counts (the comparison should not flatter serverless).
pub fn prices_from_retail(
    region: &str,
    items: &[RetailItem],
    source: &str,
    as_of: &str,
) -> Result<Prices> {
    let linux = |i: &&RetailItem| {
        let names = format!("{} {} {}", i.product_name, i.sku_name, i.meter_name);
        !(names.contains("Windows") || names.contains("Spot") || names.contains("Low Priority"))
            && (i.price_type.is_empty() || i.price_type == "Consumption")
    };
    let meter = |service: &str, sku: &str, name: &str| -> Result<(f64, f64)> {
        let rows: Vec<&RetailItem> = items
            .iter()
            .filter(linux)
            .filter(|i| i.service_name == service && i.meter_name == name)
            .filter(|i| sku.is_empty() || i.sku_name == sku)
            .collect();
        if rows.is_empty() {
            return Err(Error::azure(
                200,
                None,
                format!("the price list for `{region}` has no `{service}` meter `{name}`"),
            ));
        }
        // A tiered meter has a $0 row and a priced row starting at the free units.
        let (mut price, mut free) = (0.0_f64, 0.0_f64);
        for r in rows {
            let p = per_unit(r)?;
            if p > 0.0 {
                price = price.max(p);
                free = free.max(r.tier_minimum_units);
            }
        }
        Ok((price, free))
    };
    let (vcpu, _) = meter("Container Instances", "Standard", "Standard vCPU Duration")?;
    let (gb, _) = meter(
        "Container Instances",
        "Standard",
        "Standard Memory Duration",
    )?;
    let (builtin, free) = meter("Logic Apps", "", "Consumption Built-in Actions")?;
    let (standard, _) = meter("Logic Apps", "", "Consumption Standard Connector Actions")?;
    let mut vms = Vec::new();
    for (sku, vcpus, memory_gb) in VM_SIZES {
        let best = items
            .iter()
            .filter(linux)
            .filter(|i| i.service_name == "Virtual Machines" && i.arm_sku_name == sku)
            .filter_map(|i| per_unit(i).ok().map(|p| p * 3600.0))
            .filter(|p| *p > 0.0)
            .fold(f64::INFINITY, f64::min);
        if best.is_finite() {
            vms.push(VmPrice {
                sku: sku.to_string(),
                vcpus,
                memory_gb,
                per_hour: best,
            });
        }
    }
    let currency = items
        .iter()
        .map(|i| i.currency_code.clone())
        .find(|c| !c.is_empty())
        .unwrap_or_else(|| "USD".into());
    Ok(Prices {
        region: region.to_string(),
        currency,
        as_of: as_of.to_string(),
        source: source.to_string(),
        aci_vcpu_second: vcpu,
        aci_gb_second: gb,
        logic_builtin_action: builtin,
        logic_standard_action: standard,
        logic_free_builtin_actions: free,
        vms,
        notes: Vec::new(),
    })
}

/// Fetches a region's prices, following `NextPageLink` (at most 20 pages a filter).
pub fn fetch_prices<'a>(
    http: &'a reqwest::Client,
    endpoint: &'a str,
    region: &'a str,
) -> BoxFuture<'a, Result<Prices>> {
    Box::pin(async move {
        check_region(region)?;
        let base = format!("{}/api/retail/prices", endpoint.trim_end_matches('/'));
        let mut items = Vec::new();
        for filter in retail_filters(region) {
            let mut url = url::Url::parse_with_params(&base, [("$filter", filter.as_str())])
                .map_err(|e| Error::input(format!("invalid price endpoint `{endpoint}`: {e}")))?
                .to_string();
            for page in 0.. {
                if page == 20 {
                    return Err(Error::azure(
                        200,
                        None,
                        "the price list has more than 20 pages",
                    ));
                }
                let value = get_json(http, &url).await?;
                let (mut rows, next) = parse_retail_page(&value)?;
                items.append(&mut rows);
                match next {
                    Some(n) => url = n,
                    None => break,
                }
            }
        }
        let now = time::OffsetDateTime::now_utc();
        let as_of = format!(
            "{:04}-{:02}-{:02}",
            now.year(),
            now.month() as u8,
            now.day()
        );
        prices_from_retail(region, &items, &base, &as_of)
    })
}

/// An ARM region name (`westeurope`), before it goes into a filter.
pub fn check_region(region: &str) -> Result<()> {
    let ok = (2..=40).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::input(format!(
            "`{region}` is not an Azure region name: lowercase letters and digits, such as `westeurope`"
        )))
    }
}

/// GET with a few retries on throttling, server errors and dropped connections.
async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value> {
    let mut last = None;
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(250 << attempt)).await;
        }
        match http.get(url).send().await {
            Ok(resp) if resp.status().is_success() => {
                return resp.json().await.map_err(|e| {
                    Error::azure(200, None, format!("the price list is not JSON: {e}"))
                });
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let err = Error::azure(status, None, format!("the price list answered {status}"));
                if status != 429 && status < 500 {
                    return Err(err);
                }
                last = Some(err);
            }
            Err(e) => {
                last = Some(Error::new(
                    crate::ErrorKind::Io,
                    format!("cannot reach the price list: {e}"),
                ))
            }
        }
    }
    Err(last.unwrap())
}

// ---------------------------------------------------------------------------
// Counting a workflow's actions

/// Logic App action executions, by meter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Actions {
    pub builtin: f64,
    pub standard: f64,
}

impl std::ops::AddAssign for Actions {
    fn add_assign(&mut self, o: Actions) {
        self.builtin += o.builtin;
        self.standard += o.standard;
    }
}

impl std::ops::Mul<f64> for Actions {
    type Output = Actions;
    fn mul(self, k: f64) -> Actions {
        Actions {
            builtin: self.builtin * k,
            standard: self.standard * k,
        }
    }
}

impl Actions {
    fn one(kind: &str) -> Actions {
        if kind.starts_with("ApiConnection") {
            Actions {
                builtin: 0.0,
                standard: 1.0,
            }
        } else {
            Actions {
                builtin: 1.0,
                standard: 0.0,
            }
        }
    }
    fn total(&self) -> f64 {
        self.builtin + self.standard
    }
}

/// What a workflow's trigger costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TriggerCount {
    /// Trigger executions billed with each run (a Recurrence firing).
    pub per_run: Actions,
    /// Checks billed every month whether or not they start a run (a polling trigger).
    pub polls_per_month: Actions,
    /// Runs a month when the trigger is a schedule.
    pub runs_per_month: Option<f64>,
}

/// Actions one run executes (its trigger excluded), for a run lasting `duration_s`.
pub fn count_run_actions(workflow: &Value, duration_s: f64) -> Result<Actions> {
    let definition = definition(workflow)?;
    let actions = definition
        .get("actions")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::input("the workflow has no actions"))?;
    let run = RunShape {
        duration_s,
        parameters: definition.get("parameters"),
    };
    count_scope(actions, &run)
}

/// What a count needs beside the actions: how long the run lasts, and the
/// definition's parameters (a Wait's interval may read its waits from one).
struct RunShape<'a> {
    duration_s: f64,
    parameters: Option<&'a Value>,
}

/// What the workflow's trigger costs.
pub fn count_trigger(workflow: &Value) -> Result<TriggerCount> {
    let triggers = definition(workflow)?
        .get("triggers")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::input("the workflow has no trigger"))?;
    let (_, trigger) = triggers
        .iter()
        .next()
        .ok_or_else(|| Error::input("the workflow has no trigger"))?;
    let kind = trigger["type"].as_str().unwrap_or_default();
    // A polling trigger's recurrence has no time zone; it does not change the count.
    let mut recurrence = trigger["recurrence"].clone();
    if let Some(r) = recurrence.as_object_mut() {
        r.entry("timeZone").or_insert_with(|| "UTC".into());
        // A workflow that went through R may hold one-element lists as scalars, and
        // whole numbers as doubles.
        if let Some(Value::Object(s)) = r.get_mut("schedule") {
            for v in s.values_mut() {
                if !v.is_array() {
                    *v = Value::Array(vec![v.take()]);
                }
                for x in v.as_array_mut().into_iter().flatten() {
                    if let Some(n) = x.as_f64().filter(|n| n.fract() == 0.0 && *n >= 0.0) {
                        *x = Value::from(n as u64);
                    }
                }
            }
        }
        if let Some(n) = r.get("interval").and_then(Value::as_f64) {
            r.insert("interval".into(), Value::from(n as u64));
        }
    }
    let recurrence: Option<Recurrence> = serde_json::from_value(recurrence).ok();
    let fires = recurrence.as_ref().map(fires_per_month);
    Ok(match kind {
        "Recurrence" => TriggerCount {
            per_run: Actions::one(kind),
            polls_per_month: Actions::default(),
            runs_per_month: fires,
        },
        // A polling trigger is billed for each check, including the one that fires.
        _ => TriggerCount {
            per_run: Actions::default(),
            polls_per_month: Actions::one(kind) * fires.unwrap_or(0.0),
            runs_per_month: None,
        },
    })
}

fn definition(workflow: &Value) -> Result<&Value> {
    workflow
        .pointer("/properties/definition")
        .or_else(|| workflow.get("definition"))
        .ok_or_else(|| Error::input("not a workflow: no `properties.definition`"))
}

/// How often a Recurrence fires in a 730-hour month.
pub fn fires_per_month(r: &Recurrence) -> f64 {
    let s = r.schedule.clone().unwrap_or_default();
    let n = |len: usize| len.max(1) as f64;
    let interval = r.interval.max(1) as f64;
    let per_day = n(s.hours.len()) * n(s.minutes.len());
    match r.frequency {
        Frequency::Minute => HOURS_PER_MONTH * 60.0 / interval,
        Frequency::Hour => HOURS_PER_MONTH / interval * n(s.minutes.len()),
        Frequency::Day => HOURS_PER_MONTH / 24.0 / interval * per_day,
        Frequency::Week => HOURS_PER_MONTH / 168.0 / interval * n(s.week_days.len()) * per_day,
        // Days 29-31 are skipped in shorter months; ignored here.
        Frequency::Month => n(s.month_days.len()) * per_day / interval,
    }
}

/// The actions of one scope on the success path, in `runAfter` order.
fn count_scope(actions: &serde_json::Map<String, Value>, run: &RunShape) -> Result<Actions> {
    // Status of each action on the success path: Succeeded or Skipped.
    let mut ran: std::collections::HashMap<&str, bool> = Default::default();
    let mut total = Actions::default();
    let mut pending: Vec<&String> = actions.keys().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for name in pending {
            let action = &actions[name];
            let after = action["runAfter"].as_object();
            let ready = after.is_none_or(|a| a.keys().all(|k| ran.contains_key(k.as_str())));
            if !ready {
                rest.push(name);
                continue;
            }
            let runs = after.is_none_or(|a| {
                a.iter().all(|(pred, states)| {
                    let want = if ran[pred.as_str()] {
                        "Succeeded"
                    } else {
                        "Skipped"
                    };
                    match states {
                        Value::Array(s) => s.iter().any(|x| x.as_str() == Some(want)),
                        // One state, as a workflow that went through R may hold it.
                        one => one.as_str() == Some(want),
                    }
                })
            });
            if runs {
                total += count_action(action, run)?;
            }
            ran.insert(name.as_str(), runs);
        }
        if rest.len() == before {
            return Err(Error::input(format!(
                "the workflow's runAfter never lets `{}` run",
                rest[0]
            )));
        }
        pending = rest;
    }
    Ok(total)
}

fn count_action(action: &Value, run: &RunShape) -> Result<Actions> {
    let kind = action["type"].as_str().unwrap_or_default();
    let scope = |pointer: &str| -> Result<Actions> {
        match action.pointer(pointer).and_then(Value::as_object) {
            Some(a) => count_scope(a, run),
            None => Ok(Actions::default()),
        }
    };
    let body = || scope("/actions");
    let mut n = Actions::one(kind);
    match kind {
        "Foreach" => n += body()? * foreach_count(action),
        "Until" => n += body()? * until_count(action, run),
        "Scope" => n += body()?,
        "If" => {
            let (yes, no) = (body()?, scope("/else/actions")?);
            n += if yes.total() <= no.total() { yes } else { no };
        }
        _ => {}
    }
    Ok(n)
}

/// Iterations of a `Foreach` over `@range(1, n)`; 1 for anything else.
fn foreach_count(action: &Value) -> f64 {
    let expr = action["foreach"].as_str().unwrap_or_default();
    expr.strip_prefix("@range(")
        .and_then(|s| s.strip_suffix(')'))
        .and_then(|s| s.split(',').nth(1))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or(1.0)
}

/// Polls of an `Until` whose body waits: enough waits to cover the run's duration,
/// at most its `limit.count`.
fn until_count(action: &Value, run: &RunShape) -> f64 {
    let waits = action["actions"].as_object().and_then(|a| {
        a.values()
            .find(|x| x["type"] == "Wait")
            .map(|w| wait_sequence(&w["inputs"]["interval"], run.parameters))
    });
    let limit = action.pointer("/limit/count").and_then(Value::as_f64);
    let polls = match waits {
        Some(w) if w.iter().all(|s| *s > 0.0) && !w.is_empty() => {
            crate::logic::schedule::checks_to_cover(&w, run.duration_s)
        }
        _ => 1.0,
    };
    limit.map_or(polls, |l| polls.min(l))
}

/// The seconds a Wait waits before each check of its loop: its fixed interval, or
/// the array a `parameters('name')[...]` count indexes by iteration (the last
/// entry repeating), as `logic::schedule` renders backing-off checks.
fn wait_sequence(interval: &Value, parameters: Option<&Value>) -> Vec<f64> {
    let unit = unit_seconds(interval);
    if let Some(expr) = interval["count"].as_str() {
        let name = expr
            .strip_prefix("@parameters('")
            .and_then(|s| s.split('\'').next());
        let waits = name
            .and_then(|n| parameters?.get(n)?.get("defaultValue")?.as_array().cloned())
            .unwrap_or_default();
        return waits
            .iter()
            .filter_map(Value::as_f64)
            .map(|w| w * unit)
            .collect();
    }
    vec![wait_seconds(interval)]
}

fn wait_seconds(interval: &Value) -> f64 {
    interval["count"].as_f64().unwrap_or(0.0) * unit_seconds(interval)
}

fn unit_seconds(interval: &Value) -> f64 {
    match interval["unit"].as_str().unwrap_or_default() {
        "Second" => 1.0,
        "Minute" => 60.0,
        "Hour" => 3600.0,
        "Day" => 86400.0,
        _ => 0.0,
    }
}

// ---------------------------------------------------------------------------
// The estimate

/// What to estimate: one run's shape and how often it runs.
#[derive(Debug, Clone, Deserialize)]
pub struct CostRequest {
    pub cpu: f64,
    pub memory_gb: f64,
    /// Seconds each shard's container group runs.
    pub duration_s: f64,
    pub shards: f64,
    /// Runs a month; taken from the workflow's Recurrence when absent.
    #[serde(default)]
    pub runs_per_month: Option<f64>,
    /// The rendered Logic App workflow, for scheduled scoring.
    #[serde(default)]
    pub workflow: Option<Value>,
}

/// Quantities and their cost, for one run or one month.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Breakdown {
    pub aci_vcpu_seconds: f64,
    pub aci_gb_seconds: f64,
    pub builtin_actions: f64,
    pub standard_actions: f64,
    pub aci_vcpu_cost: f64,
    pub aci_gb_cost: f64,
    pub logic_cost: f64,
    pub total: f64,
}

impl Breakdown {
    fn priced(vcpu_s: f64, gb_s: f64, actions: Actions, p: &Prices) -> Breakdown {
        let aci_vcpu_cost = vcpu_s * p.aci_vcpu_second;
        let aci_gb_cost = gb_s * p.aci_gb_second;
        let logic_cost =
            actions.builtin * p.logic_builtin_action + actions.standard * p.logic_standard_action;
        Breakdown {
            aci_vcpu_seconds: vcpu_s,
            aci_gb_seconds: gb_s,
            builtin_actions: actions.builtin,
            standard_actions: actions.standard,
            aci_vcpu_cost,
            aci_gb_cost,
            logic_cost,
            total: aci_vcpu_cost + aci_gb_cost + logic_cost,
        }
    }
}

/// An always-on VM next to the serverless cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alternative {
    pub sku: String,
    pub vcpus: f64,
    pub memory_gb: f64,
    pub per_month: f64,
    /// Runs a month above which the VM is cheaper (None: never).
    pub break_even_runs: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub runs_per_month: f64,
    pub per_run: Breakdown,
    pub per_month: Breakdown,
    /// Monthly cost that does not depend on the number of runs (trigger polls).
    pub fixed_per_month: f64,
    /// What the monthly figure would save if all of it fell in the free built-in tier.
    pub free_tier_saving: f64,
    pub alternatives: Vec<Alternative>,
    pub prices: Prices,
}

/// Prices a run and a month of runs, and the nearest always-on VMs.
pub fn estimate(req: &CostRequest, prices: &Prices) -> Result<Estimate> {
    let positive = |x: f64, what: &str| {
        if x.is_finite() && x > 0.0 {
            Ok(x)
        } else {
            Err(Error::input(format!(
                "{what} must be a positive number, not {x}"
            )))
        }
    };
    let cpu = positive(req.cpu, "cpu")?;
    let memory_gb = positive(req.memory_gb, "memory_gb")?;
    let duration_s = positive(req.duration_s, "duration_s")?;
    let shards = positive(req.shards, "shards")?;

    let (run_actions, trigger) = match &req.workflow {
        Some(w) => (count_run_actions(w, duration_s)?, Some(count_trigger(w)?)),
        None => (Actions::default(), None),
    };
    let runs_per_month = match req.runs_per_month {
        Some(r) if r.is_finite() && r >= 0.0 => r,
        Some(r) => {
            return Err(Error::input(format!(
                "runs_per_month must be 0 or more, not {r}"
            )))
        }
        None => trigger.and_then(|t| t.runs_per_month).ok_or_else(|| {
            Error::input("runs_per_month is needed: nothing says how often this runs")
        })?,
    };
    let mut per_run_actions = run_actions;
    let mut polls = Actions::default();
    if let Some(t) = trigger {
        per_run_actions += t.per_run;
        polls = t.polls_per_month;
    }
    // Billed per second on what the group requests, for as long as it runs.
    let vcpu_s = cpu * duration_s * shards;
    let gb_s = memory_gb * duration_s * shards;
    let per_run = Breakdown::priced(vcpu_s, gb_s, per_run_actions, prices);
    let mut month_actions = per_run_actions * runs_per_month;
    month_actions += polls;
    let per_month = Breakdown::priced(
        vcpu_s * runs_per_month,
        gb_s * runs_per_month,
        month_actions,
        prices,
    );
    let fixed_per_month = Breakdown::priced(0.0, 0.0, polls, prices).total;
    let free_tier_saving =
        month_actions.builtin.min(prices.logic_free_builtin_actions) * prices.logic_builtin_action;

    let mut fits: Vec<&VmPrice> = prices
        .vms
        .iter()
        .filter(|v| v.vcpus >= cpu && v.memory_gb >= memory_gb)
        .collect();
    fits.sort_by(|a, b| a.per_hour.total_cmp(&b.per_hour));
    let alternatives = fits
        .into_iter()
        .take(2)
        .map(|v| {
            let per_month = v.per_hour * HOURS_PER_MONTH;
            let break_even_runs = (per_run.total > 0.0)
                .then(|| ((per_month - fixed_per_month) / per_run.total).max(0.0));
            Alternative {
                sku: v.sku.clone(),
                vcpus: v.vcpus,
                memory_gb: v.memory_gb,
                per_month,
                break_even_runs,
            }
        })
        .collect();
    Ok(Estimate {
        runs_per_month,
        per_run,
        per_month,
        fixed_per_month,
        free_tier_saving,
        alternatives,
        prices: prices.clone(),
    })
}

#[cfg(test)]
#[path = "cost_tests.rs"]
mod tests;
