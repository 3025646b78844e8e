//! The public Azure Retail Prices API (`GET /api/retail/prices?$filter=...`), for
//! `fetch_prices()` against the local Azure.
//!
//! It serves a small catalogue shaped as the real API answers: rows with the units
//! the real meters use (which vary: `1 Hour`, `100 GB Seconds`, `10K`), tiered rows
//! (a $0 free tier and a priced tier), Windows and Spot rows a client must leave
//! out, and pages of at most [`PAGE`] items linked by `NextPageLink`. The filter
//! grammar is the subset the real API documents: `field eq 'value'` joined by `and`,
//! with an `or` group of one field in parentheses. Anything else is a 400.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::state::Inner;
use crate::util::{self, json_response};

/// Items per page (the real API pages at 100; smaller here so paging is exercised).
const PAGE: usize = 4;

const FIELDS: [&str; 5] = [
    "serviceName",
    "armRegionName",
    "priceType",
    "armSkuName",
    "skuName",
];

pub async fn retail_prices(State(inner): State<Arc<Inner>>, RawQuery(q): RawQuery) -> Response {
    let query = util::parse_form(q.unwrap_or_default().as_bytes());
    let filter = util::form_get(&query, "$filter").unwrap_or_default();
    let skip: usize = match util::form_get(&query, "$skip").map(|s| s.parse()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return bad_request("$skip must be a whole number"),
    };
    let conditions = match parse_filter(filter) {
        Ok(c) => c,
        Err(msg) => return bad_request(&msg),
    };
    let rows: Vec<Value> = catalogue()
        .into_iter()
        .filter(|row| {
            conditions.iter().all(|(field, values)| {
                // The filter says `priceType`; the items call it `type`.
                let key = if field == "priceType" {
                    "type"
                } else {
                    field.as_str()
                };
                values.iter().any(|v| row[key].as_str() == Some(v.as_str()))
            })
        })
        .collect();
    let page: Vec<Value> = rows.iter().skip(skip).take(PAGE).cloned().collect();
    let next = (skip + PAGE < rows.len()).then(|| {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("$filter", filter)
            .append_pair("$skip", &(skip + PAGE).to_string())
            .finish();
        format!("{}/api/retail/prices?{q}", inner.https_base)
    });
    json_response(
        StatusCode::OK,
        &json!({
            "BillingCurrency": "USD",
            "CustomerEntityId": "Default",
            "CustomerEntityType": "Retail",
            "Items": page,
            "NextPageLink": next,
            "Count": page.len(),
        }),
    )
}

fn bad_request(message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"Error": {"Code": "BadRequest", "Message": message}}),
    )
}

/// `a eq 'x' and (b eq 'y' or b eq 'z')` as `[(a, [x]), (b, [y, z])]`.
fn parse_filter(filter: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out = Vec::new();
    for term in split_outside_quotes(filter, " and ") {
        let term = term.trim();
        let inner = term
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or(term);
        let mut field = None;
        let mut values = Vec::new();
        for part in split_outside_quotes(inner, " or ") {
            let (f, v) = part
                .trim()
                .split_once(" eq ")
                .ok_or_else(|| format!("Invalid filter term `{part}`"))?;
            let v = v
                .trim()
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .ok_or_else(|| format!("Invalid filter value `{v}`: quote it"))?;
            let f = f.trim();
            if !FIELDS.contains(&f) {
                return Err(format!("Invalid filter field `{f}`"));
            }
            if field.is_some_and(|g| g != f) {
                return Err(format!("An `or` group mixes fields: `{inner}`"));
            }
            field = Some(f);
            values.push(v.to_string());
        }
        out.push((field.unwrap_or_default().to_string(), values));
    }
    Ok(out)
}

fn split_outside_quotes<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut i) = (0, false, 0);
    let bytes = s.as_bytes();
    while i < s.len() {
        if bytes[i] == b'\'' {
            quoted = !quoted;
        } else if !quoted && s[i..].starts_with(sep) {
            parts.push(&s[start..i]);
            i += sep.len();
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// One meter's row: service, product, sku, ARM sku, meter, unit, price, free units.
struct Row<'a>(
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    f64,
    f64,
);

/// The rows: East US and Sweden Central, as the real API spells them.
#[rustfmt::skip] // a table reads better one row a line
fn catalogue() -> Vec<Value> {
    let mut rows = Vec::new();
    let (aci, la, vm) = ("Container Instances", "Logic Apps", "Virtual Machines");
    for (region, vcpu_hour, gb_hour) in [("eastus", 0.0405, 0.00445), ("swedencentral", 0.0466, 0.00511)] {
        let meters = [
            Row(aci, aci, "Standard", "", "Standard vCPU Duration", "1 Hour", vcpu_hour, 0.0),
            // Memory in 100 GB-second units, as some regions list it.
            Row(aci, aci, "Standard", "", "Standard Memory Duration", "100 GB Seconds", gb_hour / 36.0, 0.0),
            Row(aci, "Container Instances Windows", "Standard", "", "Standard Windows Software Duration", "1 Second", 0.000012, 0.0),
            // Tiered: free up to 4,000 a month, then priced.
            Row(la, la, "Consumption", "", "Consumption Built-in Actions", "1", 0.0, 0.0),
            Row(la, la, "Consumption", "", "Consumption Built-in Actions", "1", 0.000025, 4000.0),
            Row(la, la, "Consumption", "", "Consumption Standard Connector Actions", "10K", 1.25, 0.0),
            Row(la, la, "Consumption", "", "Consumption Enterprise Connector Actions", "1", 0.001, 0.0),
        ];
        rows.extend(meters.iter().map(|m| item(region, m)));
    }
    for (sku, price) in [("B1s", 0.0104), ("B1ms", 0.0207), ("B2s", 0.0416), ("D2s v5", 0.096)] {
        let arm = format!("Standard_{}", sku.replace(' ', "_"));
        let series = if sku.starts_with('B') { "BS Series" } else { "Dsv5 Series" };
        let (linux, windows) = (format!("{vm} {series}"), format!("{vm} {series} Windows"));
        let spot = format!("{sku} Spot");
        // The Linux row, and the Windows and Spot rows a client must leave out.
        for m in [
            Row(vm, &linux, sku, &arm, sku, "1 Hour", price, 0.0),
            Row(vm, &windows, sku, &arm, sku, "1 Hour", price * 1.6, 0.0),
            Row(vm, &linux, &spot, &arm, &spot, "1 Hour", price * 0.2, 0.0),
        ] {
            rows.push(item("eastus", &m));
        }
    }
    rows
}

fn item(
    region: &str,
    Row(service, product, sku, arm_sku, meter, unit, price, tier): &Row,
) -> Value {
    json!({
        "currencyCode": "USD",
        "tierMinimumUnits": tier,
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": region,
        "location": region,
        "effectiveStartDate": "2025-01-01T00:00:00Z",
        "meterName": meter,
        "productName": product,
        "skuName": sku,
        "armSkuName": arm_sku,
        "serviceName": service,
        "unitOfMeasure": unit,
        "type": "Consumption",
        "isPrimaryMeterRegion": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_as_the_api_documents() {
        let f = parse_filter(
            "serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' and (armSkuName eq 'Standard_B1s' or armSkuName eq 'Standard_B2s')",
        )
        .unwrap();
        assert_eq!(f[2].1, ["Standard_B1s", "Standard_B2s"]);
        assert!(parse_filter("serviceName eq Logic").is_err());
        assert!(parse_filter("meterId eq 'x'").is_err());
        assert!(parse_filter("(serviceName eq 'a' or skuName eq 'b')").is_err());
        // `and` inside a quoted value is part of the value.
        assert_eq!(
            parse_filter("skuName eq 'a and b'").unwrap()[0].1,
            ["a and b"]
        );
    }
}
