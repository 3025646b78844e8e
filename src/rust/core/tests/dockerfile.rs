//! Snapshots of the Dockerfiles rendered for a randomForest model (its runtime image)
//! and for its base image: any change to the templates or the rendering shows up here
//! as a diff to review. After an intended change, re-run with `UPDATE_SNAPSHOTS=1` and
//! commit the new snapshots.

use serverless_core::templates::{
    render_base_dockerfile, render_dockerfile, PackagePin, RuntimeSpec, TarballRef,
};
use std::path::PathBuf;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../..")
        .join(path)
}

fn pin(name: &str, version: &str) -> PackagePin {
    PackagePin {
        name: name.into(),
        version: version.into(),
    }
}

fn check_snapshot(name: &str, rendered: &str) {
    let snapshot = repo_file(&format!("src/rust/core/tests/snapshots/{name}"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot)
        .expect("no snapshot yet: run with UPDATE_SNAPSHOTS=1 and review it");
    assert_eq!(
        rendered, expected,
        "the rendered {name} changed; review and re-run with UPDATE_SNAPSHOTS=1"
    );
}

#[test]
fn random_forest_dockerfiles_match_snapshots() {
    let read = |f: &str| std::fs::read_to_string(repo_file(f)).unwrap();
    let template = read("inst/templates/Dockerfile.hbs");
    let base_template = read("inst/templates/Dockerfile-base.hbs");
    let installer = read("inst/templates/install-pinned.R");
    let spec = RuntimeSpec {
        r_version: "4.2".into(),
        base_image: "rocker/r-ver:4.2.2".into(),
        repo: "https://packagemanager.posit.co/cran/latest".into(),
        distro: Some("jammy".into()),
        packages: vec![pin("randomForest", "4.7-1.1")],
        base_packages: vec![
            pin("R6", "2.5.1"),
            pin("cli", "3.6.0"),
            pin("ps", "1.7.2"),
            pin("processx", "3.8.0"),
            pin("rlang", "1.0.6"),
            pin("withr", "2.5.0"),
        ],
        system_libraries: vec![],
        serverless_version: "0.1.0".into(),
        serverless_tarball: Some(TarballRef {
            file_name: "serveRless_0.1.0.tar.gz".into(),
            sha256: "0123456789abcdef".repeat(4),
        }),
    };
    let base_hash = spec.base_hash(&[&base_template, &installer]);
    let hash = spec.hash(&base_hash, &[&template, &installer]);
    let base_ref = format!("serverlessacr.azurecr.io/serverless-base:{base_hash}");
    let base = render_base_dockerfile(&base_template, &spec, &base_hash).unwrap();
    let runtime = render_dockerfile(&template, &spec, &hash, &base_ref, &base_hash).unwrap();
    check_snapshot("Dockerfile-base", &base);
    check_snapshot("Dockerfile-randomForest", &runtime);

    // What the snapshots must keep saying, whatever else changes.
    // The base compiles serveRless from the tarball in the context, checked by sha256;
    // it never asks a package repository for serveRless.
    assert!(base.contains("FROM rocker/r-ver:4.2.2 AS r"));
    assert!(base.contains("COPY serveRless_0.1.0.tar.gz /tmp/serveRless_0.1.0.tar.gz"));
    assert!(base.contains(&format!(
        "echo \"{}  /tmp/serveRless_0.1.0.tar.gz\" | sha256sum -c -",
        "0123456789abcdef".repeat(4)
    )));
    assert!(
        base.contains("R CMD INSTALL --library=/opt/serverless-lib /tmp/serveRless_0.1.0.tar.gz")
    );
    assert!(!base.contains("install.packages(\"serveRless\""));
    assert!(base.contains("https://packagemanager.posit.co/cran/__linux__/jammy/latest"));
    assert!(base.contains("    processx==3.8.0"));
    // The runtime image starts from the base, adds only the model's packages, as
    // binaries, and compiles no Rust.
    assert!(runtime.contains(&format!("FROM {base_ref}\n")));
    assert!(runtime.contains(
        "install-pinned.R https://packagemanager.posit.co/cran/__linux__/jammy/latest \\\n    randomForest==4.7-1.1"
    ));
    assert!(!runtime.contains("processx=="));
    for rust in ["rustup", "cargo", "R CMD INSTALL"] {
        assert!(!runtime.contains(rust), "{rust}");
    }
    assert!(runtime.contains("USER serverless"));
    for text in [&base, &runtime] {
        assert!(!text.to_lowercase().contains("password"));
    }
}
