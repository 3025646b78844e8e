//! Snapshot of the Dockerfile rendered for a randomForest model: any change to the
//! template or the rendering shows up here as a diff to review. After an intended
//! change, re-run with `UPDATE_SNAPSHOTS=1` and commit the new snapshot.

use serverless_core::templates::{render_dockerfile, PackagePin, RuntimeSpec};
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

#[test]
fn random_forest_dockerfile_matches_snapshot() {
    let template = std::fs::read_to_string(repo_file("inst/templates/Dockerfile.hbs")).unwrap();
    let installer = std::fs::read_to_string(repo_file("inst/templates/install-pinned.R")).unwrap();
    let spec = RuntimeSpec {
        r_version: "4.2".into(),
        base_image: "rocker/r-ver:4.2.2".into(),
        repo: "https://packagemanager.posit.co/cran/latest".into(),
        packages: vec![
            pin("R6", "2.5.1"),
            pin("cli", "3.6.0"),
            pin("ps", "1.7.2"),
            pin("processx", "3.8.0"),
            pin("rlang", "1.0.6"),
            pin("withr", "2.5.0"),
            pin("randomForest", "4.7-1.1"),
        ],
        system_libraries: vec![],
        serverless_version: "0.1.0".into(),
        serverless_repo: "https://cloud.r-project.org".into(),
        serverless_tarball: None,
    };
    let hash = spec.hash(&[&template, &installer]);
    let rendered = render_dockerfile(&template, &spec, &hash).unwrap();
    let snapshot = repo_file("src/rust/core/tests/snapshots/Dockerfile-randomForest");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot)
        .expect("no snapshot yet: run with UPDATE_SNAPSHOTS=1 and review it");
    assert_eq!(
        rendered, expected,
        "the rendered Dockerfile changed; review and re-run with UPDATE_SNAPSHOTS=1"
    );
    // What the snapshot must keep saying, whatever else changes.
    assert!(rendered.contains("FROM rocker/r-ver:4.2.2 AS deps"));
    assert!(rendered.contains("    randomForest==4.7-1.1"));
    assert!(rendered.contains("USER serverless"));
    assert!(!rendered.to_lowercase().contains("password"));
}
