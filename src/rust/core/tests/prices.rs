//! `fetch_prices` against the local Azure's Retail Prices API: filters, paging,
//! unit normalisation and left-out rows give the same prices as the built-in table.

use serverless_core::auth::Endpoints;
use serverless_core::cost;
use serverless_local::{Config, LocalAzure};

fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-12 + 1e-9 * b.abs(), "{a} != {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_prices_match_the_builtin_table() {
    let dir = std::env::temp_dir().join(format!("serverless-prices-{}", std::process::id()));
    let local = LocalAzure::start(Config::new(&dir)).await.unwrap();
    let endpoints = Endpoints {
        authority_host: local.https_endpoint(),
        arm: local.https_endpoint(),
        ca_pem: Some(local.ca_pem()),
    };
    let http = endpoints.http_client().unwrap();

    let fetched = cost::fetch_prices(&http, &local.https_endpoint(), "eastus")
        .await
        .unwrap();
    let builtin = cost::builtin_prices("eastus").unwrap();
    close(fetched.aci_vcpu_second, builtin.aci_vcpu_second);
    close(fetched.aci_gb_second, builtin.aci_gb_second);
    close(fetched.logic_builtin_action, builtin.logic_builtin_action);
    close(fetched.logic_standard_action, builtin.logic_standard_action);
    close(fetched.logic_free_builtin_actions, 4000.0);
    assert_eq!(fetched.vms.len(), builtin.vms.len());
    for (f, b) in fetched.vms.iter().zip(&builtin.vms) {
        assert_eq!(f.sku, b.sku);
        close(f.per_hour, b.per_hour);
    }
    assert!(fetched.source.ends_with("/api/retail/prices"));

    let sweden = cost::fetch_prices(&http, &local.https_endpoint(), "swedencentral")
        .await
        .unwrap();
    close(sweden.aci_vcpu_second, 0.0466 / 3600.0);
    assert!(sweden.vms.is_empty());

    // A region the price list has nothing for names the missing meter.
    let err = cost::fetch_prices(&http, &local.https_endpoint(), "westeurope")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("westeurope"), "{err}");
    // A region that is not a region name is refused before any request.
    let err = cost::fetch_prices(&http, "https://127.0.0.1:9", "West Europe")
        .await
        .unwrap_err();
    assert_eq!(err.kind, serverless_core::ErrorKind::Input);

    local.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
