//! The blob client and the model store against a real Azurite (started per test run on
//! a free loopback port). Azurite comes from the project's setup (`make setup`).

use serde_json::json;
use serverless_core::blob::{Storage, StorageConfig, UploadOptions};
use serverless_core::{ErrorKind, Progress};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

struct Azurite {
    child: Child,
    endpoint: String,
    dir: PathBuf,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn azurite(tag: &str) -> Azurite {
    let dir = std::env::temp_dir().join(format!("serverless-core-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = std::env::var("SERVERLESS_AZURITE").unwrap_or_else(|_| "azurite-blob".into());
    let mut child = Command::new(bin)
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--disableTelemetry",
            "--silent",
        ])
        .arg("--location")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("azurite-blob not found: run `make setup`");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut endpoint = None;
    for line in stdout.lines().take(20) {
        let line = line.unwrap();
        if let Some(pos) = line.find("listens on http://127.0.0.1:") {
            let url = line[pos + "listens on ".len()..].trim().to_string();
            endpoint = Some(format!("{url}/devstoreaccount1"));
            break;
        }
    }
    Azurite {
        child,
        endpoint: endpoint.expect("Azurite did not report its port"),
        dir,
    }
}

fn storage(az: &Azurite) -> Storage {
    Storage::new(
        StorageConfig {
            account: "devstoreaccount1".into(),
            endpoint: az.endpoint.clone(),
            key: Some(KEY.into()),
            sas: None,
            token: None,
            credential: None,
            endpoints: None,
            ca_pem: None,
            retry_seconds: None,
        },
        None,
    )
    .unwrap()
}

fn temp_file(dir: &std::path::Path, name: &str, len: usize) -> PathBuf {
    let path = dir.join(name);
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, data).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_list_delete() {
    let az = azurite("blob");
    let s = storage(&az);
    s.ensure_container("data").await.unwrap();
    s.ensure_container("data").await.unwrap(); // idempotent
    let file = temp_file(&az.dir, "in.bin", 9 * 1024 * 1024 + 5);
    let options = UploadOptions {
        block_size: 4 * 1024 * 1024,
        ..Default::default()
    };
    let progress = Progress::new();
    let up = s
        .upload_file(&file, "data", "in/file.bin", &options, &progress)
        .await
        .unwrap();
    assert_eq!(
        (up.blocks, up.blocks_sent, up.size),
        (3, 3, 9 * 1024 * 1024 + 5)
    );
    assert_eq!(progress.snapshot().done, up.size);

    let again = s
        .upload_file(
            &file,
            "data",
            "in/file.bin",
            &UploadOptions {
                if_none_match: true,
                ..options.clone()
            },
            &progress,
        )
        .await
        .unwrap_err();
    assert!(again.is_conflict(), "{again:?}");

    let out = az.dir.join("out.bin");
    let down = s
        .download_file(
            "data",
            "in/file.bin",
            &out,
            None,
            &Default::default(),
            &progress,
        )
        .await
        .unwrap();
    assert!(down.verified);
    assert_eq!(down.sha256, up.sha256);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());

    let bad = s
        .download_file(
            "data",
            "in/file.bin",
            &az.dir.join("bad.bin"),
            Some("00"),
            &Default::default(),
            &progress,
        )
        .await
        .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::Integrity);
    assert!(!az.dir.join("bad.bin").exists() && !az.dir.join("bad.bin.part").exists());

    let listed = s.list("data", "in/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, "data/in/file.bin");
    s.delete("data", "in/file.bin").await.unwrap();
    assert!(s.list("data", "in/").await.unwrap().is_empty());

    let missing = s.list("nosuch", "").await.unwrap_err();
    assert_eq!(missing.status, Some(404));
    assert!(missing
        .message
        .contains("container `nosuch` does not exist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_store_versions_dedupe_and_integrity() {
    let az = azurite("store");
    let s = storage(&az);
    s.ensure_container("serverless").await.unwrap();
    let progress = Progress::new();
    let a = temp_file(&az.dir, "a.rds", 100_000);
    let first = s
        .store_model(
            "serverless",
            "mpg",
            &a,
            json!({"model_class": ["lm"]}),
            &progress,
        )
        .await
        .unwrap();
    assert!(!first.reused);
    let same = s
        .store_model("serverless", "mpg", &a, json!({}), &progress)
        .await
        .unwrap();
    assert!(same.reused);
    assert_eq!(same.bytes_sent, 0);
    assert_eq!(same.manifest.version, first.manifest.version);

    let b = temp_file(&az.dir, "b.rds", 200_000);
    let second = s
        .store_model("serverless", "mpg", &b, json!({}), &progress)
        .await
        .unwrap();
    let versions = s.model_versions("serverless", "mpg").await.unwrap();
    let ids: Vec<_> = versions.iter().map(|m| m.version.clone()).collect();
    assert_eq!(
        ids,
        vec![
            first.manifest.version.clone(),
            second.manifest.version.clone()
        ]
    );
    assert_eq!(versions[0].meta["model_class"][0], "lm");

    let dest = az.dir.join("loaded.rds");
    let latest = s
        .load_model("serverless", "mpg", "latest", &dest, &progress)
        .await
        .unwrap();
    assert_eq!(latest.version, second.manifest.version);
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&b).unwrap());

    // Replace a bundle behind the store's back: loading must notice.
    let garbage = temp_file(&az.dir, "garbage", 50);
    let bundle = format!("models/mpg/{}/bundle", first.manifest.version);
    s.upload_file(
        &garbage,
        "serverless",
        &bundle,
        &UploadOptions::default(),
        &progress,
    )
    .await
    .unwrap();
    let err = s
        .load_model(
            "serverless",
            "mpg",
            &first.manifest.version,
            &dest,
            &progress,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Integrity);

    let unknown = s
        .load_model(
            "serverless",
            "mpg",
            "20000101T000000000Z-00000000",
            &dest,
            &progress,
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::Input);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_bounds_a_call_to_nothing() {
    // Port 9 (discard) has no listener here: every attempt is refused. With a
    // 1-second budget the call fails in seconds, not after the SDK's minute.
    let storage = Storage::new(
        StorageConfig {
            account: "devstoreaccount1".into(),
            endpoint: "http://127.0.0.1:9/devstoreaccount1".into(),
            key: Some(KEY.into()),
            sas: None,
            token: None,
            credential: None,
            endpoints: None,
            ca_pem: None,
            retry_seconds: Some(1.0),
        },
        None,
    )
    .unwrap();
    let started = std::time::Instant::now();
    assert!(storage.list("serverless", "").await.is_err());
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_shares_are_byte_ranges_cut_at_line_ends() {
    use serverless_core::blob::DownloadOptions;
    let az = azurite("csv-share");
    let s = storage(&az);
    s.ensure_container("data").await.unwrap();
    // Rows of uneven length (one far longer than a line probe), CRLF line ends, a
    // quoted comma, and no newline after the last row.
    let mut csv = String::from("id,text,x\r\n");
    for i in 0..20_000u32 {
        let text = match i {
            7 => "y".repeat(20_000),
            i if i % 3 == 0 => format!("\"a, {i}\""),
            _ => "b".repeat((i % 17) as usize),
        };
        csv.push_str(&format!("{i},{text},{}\r\n", f64::from(i) / 7.0));
    }
    csv.push_str("20000,last,0");
    let file = az.dir.join("big.csv");
    std::fs::write(&file, &csv).unwrap();
    let progress = Progress::new();
    s.upload_file(
        &file,
        "data",
        "in/big.csv",
        &UploadOptions::default(),
        &progress,
    )
    .await
    .unwrap();
    let header = "id,text,x\r\n";
    let rows = &csv[header.len()..];
    for shards in [1u64, 2, 4, 7] {
        let mut joined = String::new();
        let mut fetched = 0;
        let mut last_end = header.len() as u64;
        for shard in 1..=shards {
            let out = az.dir.join(format!("share-{shards}-{shard}.csv"));
            let share = s
                .download_csv_share(
                    "data",
                    "in/big.csv",
                    &out,
                    shard,
                    shards,
                    &DownloadOptions::default(),
                    &progress,
                )
                .await
                .unwrap();
            assert_eq!(share.start, last_end, "shards meet: {shards}/{shard}");
            last_end = share.end;
            fetched += share.bytes_downloaded;
            let text = std::fs::read_to_string(&out).unwrap();
            let body = text
                .strip_prefix(header)
                .expect("every share starts with the header");
            assert!(
                body.is_empty() || share.end == csv.len() as u64 || body.ends_with("\r\n"),
                "a share ends at a line end"
            );
            joined.push_str(body);
        }
        assert_eq!(last_end, csv.len() as u64);
        assert_eq!(
            joined, rows,
            "{shards} shards together are the rows, once, in order"
        );
        // The header and the probes at the edges are all that is read twice.
        assert!(
            fetched as f64 <= csv.len() as f64 * 1.05,
            "{shards} shards fetched {fetched} of {} bytes",
            csv.len()
        );
    }
    // More shards than rows: some get the header only; together still every row.
    std::fs::write(&file, "a\n1\n2\n").unwrap();
    s.upload_file(
        &file,
        "data",
        "in/tiny.csv",
        &UploadOptions::default(),
        &progress,
    )
    .await
    .unwrap();
    let mut joined = String::new();
    for shard in 1..=5 {
        let out = az.dir.join(format!("tiny-{shard}.csv"));
        s.download_csv_share(
            "data",
            "in/tiny.csv",
            &out,
            shard,
            5,
            &DownloadOptions::default(),
            &progress,
        )
        .await
        .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        joined.push_str(text.strip_prefix("a\n").unwrap());
    }
    assert_eq!(joined, "1\n2\n");
    let e = s
        .download_csv_share(
            "data",
            "in/big.csv",
            &az.dir.join("x.csv"),
            3,
            2,
            &DownloadOptions::default(),
            &progress,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Input);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_shares_download_only_their_row_groups() {
    use serverless_core::blob::DownloadOptions;
    use serverless_core::table::{read_parquet, read_parquet_rows, write_parquet, Column, Table};
    let az = azurite("parquet-share");
    let s = storage(&az);
    s.ensure_container("data").await.unwrap();
    // 600,000 rows: five row groups of the writer's 131,072 rows (the last shorter).
    let n = 600_000;
    let table = Table::new(
        vec!["i".into(), "x".into()],
        vec![
            Column::Integer((0..n).map(Some).collect()),
            Column::Double((0..n).map(|i| Some(f64::from(i).sqrt())).collect()),
        ],
    )
    .unwrap();
    let file = az.dir.join("big.parquet");
    write_parquet(&table, std::fs::File::create(&file).unwrap()).unwrap();
    let size = std::fs::metadata(&file).unwrap().len();
    let progress = Progress::new();
    s.upload_file(
        &file,
        "data",
        "in/big.parquet",
        &UploadOptions::default(),
        &progress,
    )
    .await
    .unwrap();
    let whole = read_parquet(std::fs::File::open(&file).unwrap()).unwrap();
    for shards in [1u64, 2, 4, 7] {
        let mut ids: Vec<Option<i32>> = Vec::new();
        let mut fetched = 0;
        for shard in 1..=shards {
            let out = az.dir.join(format!("pq-{shards}-{shard}.parquet"));
            let share = s
                .download_parquet_share(
                    "data",
                    "in/big.parquet",
                    &out,
                    shard,
                    shards,
                    &DownloadOptions::default(),
                    &progress,
                )
                .await
                .unwrap();
            fetched += share.bytes_downloaded;
            if shards > 1 {
                assert!(share.bytes_downloaded < size, "{shards}/{shard}: {share:?}");
            }
            let part = read_parquet_rows(
                std::fs::File::open(&out).unwrap(),
                shard as usize - 1,
                shards as usize,
            )
            .unwrap();
            match part.column("i").unwrap() {
                Column::Integer(v) => ids.extend(v.iter()),
                other => panic!("{:?}", other.column_type()),
            }
        }
        let expected: Vec<Option<i32>> = match whole.column("i").unwrap() {
            Column::Integer(v) => v.iter().collect(),
            other => panic!("{:?}", other.column_type()),
        };
        assert_eq!(
            ids, expected,
            "{shards} shards together are the rows, once, in order"
        );
        // Whole row groups per shard while there are enough: each group fetched once.
        if shards <= 5 {
            assert!(
                fetched as f64 <= size as f64 * 1.05,
                "{shards} shards fetched {fetched} of {size} bytes"
            );
        }
    }
    std::fs::write(&file, b"id\n1\n").unwrap();
    s.upload_file(
        &file,
        "data",
        "in/not.parquet",
        &UploadOptions::default(),
        &progress,
    )
    .await
    .unwrap();
    let e = s
        .download_parquet_share(
            "data",
            "in/not.parquet",
            &az.dir.join("x.parquet"),
            1,
            2,
            &DownloadOptions::default(),
            &progress,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Input, "{e:?}");
}
