//! The model store: versioned bundles in Blob Storage.
//!
//! Layout (DESIGN.md §3), in the target's container:
//! `models/<name>/<version>/bundle` (zstd-compressed R serialization) and
//! `models/<name>/<version>/manifest.json`, written after the bundle. A version is
//! visible only once its manifest exists, so readers never see half a version.
//! Version ids are `<UTC timestamp>-<first 8 hex of the bundle's sha256>`, which sort
//! by time. Writes use `If-None-Match: *`: two writers never clobber each other.

use crate::blob::{Storage, UploadOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// Bundles are compressed with zstd at this level (fast, and deterministic so that an
/// unchanged model gives an identical bundle and is not uploaded again).
const ZSTD_LEVEL: i32 = 3;

/// The manifest of one stored version. `meta` carries what the R side knows (class,
/// packages, R version, ptype) and is stored as given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub created: String,
    pub sha256: String,
    /// Bytes stored (compressed).
    pub size: u64,
    /// Bytes of the R serialization.
    pub uncompressed_size: u64,
    pub compression: String,
    #[serde(default)]
    pub meta: Value,
}

/// What `store_model()` did.
#[derive(Debug, Clone, Serialize)]
pub struct StoreOutcome {
    pub manifest: Manifest,
    /// True when the newest version already held this exact bundle.
    pub reused: bool,
    pub bytes_sent: u64,
}

/// The naming rule for models: it becomes part of blob paths and, later, of Azure
/// resource names and tags, so it is the strictest of those.
pub fn check_model_name(name: &str) -> Result<()> {
    if crate::blob::is_container_like_name(name) {
        Ok(())
    } else {
        Err(Error::input(format!(
            "model name `{name}` is invalid: use 3 to 63 lowercase letters, digits and single dashes, starting and ending with a letter or digit"
        )))
    }
}

fn model_prefix(name: &str) -> String {
    format!("models/{name}/")
}

fn version_id(now: OffsetDateTime, sha256: &str) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}{:03}Z-{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond(),
        &sha256[..8]
    )
}

/// Compress `src` into `dst` with zstd, returning (sha256 of dst, dst size, src size).
fn compress_file(src: &Path, dst: &Path) -> Result<(String, u64, u64)> {
    let input = std::fs::File::open(src)
        .map_err(|e| Error::io(format!("cannot open `{}`", src.display()), e))?;
    let uncompressed = input.metadata().map(|m| m.len()).unwrap_or(0);
    let out = std::fs::File::create(dst)
        .map_err(|e| Error::io(format!("cannot create `{}`", dst.display()), e))?;
    let hashing = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, out),
        sha: Sha256::new(),
        written: 0,
    };
    let mut encoder = zstd::stream::write::Encoder::new(hashing, ZSTD_LEVEL)
        .map_err(|e| Error::io("starting compression", e))?;
    // Workers make compression parallel; the output stays deterministic.
    let _ = encoder.multithread(2);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, input);
    std::io::copy(&mut reader, &mut encoder).map_err(|e| Error::io("compressing the bundle", e))?;
    let mut hashing = encoder
        .finish()
        .map_err(|e| Error::io("compressing the bundle", e))?;
    hashing
        .inner
        .flush()
        .map_err(|e| Error::io("writing the bundle", e))?;
    Ok((
        hex::encode(hashing.sha.finalize()),
        hashing.written,
        uncompressed,
    ))
}

struct HashingWriter<W: Write> {
    inner: W,
    sha: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn decompress_file(src: &Path, dst: &Path) -> Result<()> {
    let input = std::fs::File::open(src)
        .map_err(|e| Error::io(format!("cannot open `{}`", src.display()), e))?;
    let mut decoder = zstd::stream::read::Decoder::new(input)
        .map_err(|e| Error::io("starting decompression", e))?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(dst)
            .map_err(|e| Error::io(format!("cannot create `{}`", dst.display()), e))?,
    );
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = decoder
            .read(&mut buf)
            .map_err(|e| Error::integrity(format!("the bundle does not decompress: {e}")))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(format!("writing `{}`", dst.display()), e))?;
    }
    out.flush()
        .map_err(|e| Error::io(format!("writing `{}`", dst.display()), e))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Error::internal("a background task failed unexpectedly"))?
}

impl Storage {
    /// Store the serialized bundle in `serialized` as a new version of `name`, or
    /// return the newest version when it holds the identical bundle.
    pub fn store_model<'a>(
        &'a self,
        container: &'a str,
        name: &'a str,
        serialized: &'a Path,
        meta: Value,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<StoreOutcome>> {
        Box::pin(async move {
            check_model_name(name)?;
            progress.begin(format!("compressing model `{name}`"), 0);
            let compressed = sibling(serialized, ".zst");
            let (src, dst) = (serialized.to_path_buf(), compressed.clone());
            let (sha256, size, uncompressed_size) =
                blocking(move || compress_file(&src, &dst)).await?;
            let result = self
                .store_compressed(
                    container,
                    name,
                    &compressed,
                    sha256,
                    size,
                    uncompressed_size,
                    meta,
                    progress,
                )
                .await;
            let _ = std::fs::remove_file(&compressed);
            result
        })
    }

    /// What `store_model` would do, without writing: the bundle's sha256 and the
    /// newest version when it already holds this exact bundle.
    pub async fn plan_model(
        &self,
        container: &str,
        name: &str,
        serialized: &Path,
    ) -> Result<(String, Option<Manifest>)> {
        check_model_name(name)?;
        let compressed = sibling(serialized, ".zst");
        let (src, dst) = (serialized.to_path_buf(), compressed.clone());
        let hashed = blocking(move || compress_file(&src, &dst)).await;
        let _ = std::fs::remove_file(&compressed);
        let (sha256, _, _) = hashed?;
        let newest = self.model_versions(container, name).await?.pop();
        Ok((sha256.clone(), newest.filter(|m| m.sha256 == sha256)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_compressed(
        &self,
        container: &str,
        name: &str,
        compressed: &Path,
        sha256: String,
        size: u64,
        uncompressed_size: u64,
        meta: Value,
        progress: &Progress,
    ) -> Result<StoreOutcome> {
        if let Some(newest) = self.model_versions(container, name).await?.pop() {
            if newest.sha256 == sha256 {
                return Ok(StoreOutcome {
                    manifest: newest,
                    reused: true,
                    bytes_sent: 0,
                });
            }
        }
        let now = OffsetDateTime::now_utc();
        let version = version_id(now, &sha256);
        let dir = format!("{}{version}", model_prefix(name));
        let options = UploadOptions {
            if_none_match: true,
            ..Default::default()
        };
        let bytes_sent = match self
            .upload_file(
                compressed,
                container,
                &format!("{dir}/bundle"),
                &options,
                progress,
            )
            .await
        {
            Ok(outcome) => {
                if outcome.sha256 != sha256 {
                    return Err(Error::integrity(
                        "the bundle changed on disk while it was uploaded",
                    ));
                }
                outcome.bytes_sent
            }
            // The same version id (same millisecond, same content) was written by
            // another process: its bundle is ours byte for byte.
            Err(e) if e.is_conflict() => 0,
            Err(e) => return Err(e.context(format!("storing model `{name}`"))),
        };
        let manifest = Manifest {
            name: name.to_string(),
            version,
            created: now.format(&Rfc3339).unwrap_or_default(),
            sha256,
            size,
            uncompressed_size,
            compression: "zstd".into(),
            meta,
        };
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::internal(format!("cannot write the manifest: {e}")))?;
        match self
            .put_bytes(
                container,
                &format!("{dir}/manifest.json"),
                body,
                "application/json",
                true,
            )
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.context(format!("storing the manifest of model `{name}`"))),
        }
        Ok(StoreOutcome {
            manifest,
            reused: false,
            bytes_sent,
        })
    }

    /// All complete versions of `name` (those with a manifest), oldest first.
    pub fn model_versions<'a>(
        &'a self,
        container: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Manifest>>> {
        Box::pin(async move {
            check_model_name(name)?;
            let entries = self.list(container, &model_prefix(name)).await?;
            let mut paths: Vec<String> = entries
                .into_iter()
                .filter_map(|e| {
                    e.path
                        .strip_prefix(&format!("{container}/"))
                        .filter(|p| p.ends_with("/manifest.json"))
                        .map(str::to_owned)
                })
                .collect();
            paths.sort();
            let manifests: Vec<Manifest> = futures::stream::iter(paths)
                .map(|path| async move {
                    let bytes = self.get_bytes(container, &path).await?;
                    serde_json::from_slice::<Manifest>(&bytes).map_err(|e| {
                        Error::integrity(format!("manifest `{container}/{path}` is not valid: {e}"))
                    })
                })
                .buffered(8)
                .try_collect()
                .await?;
            Ok(manifests)
        })
    }

    /// The manifest of `version` ("latest" for the newest).
    pub async fn model_manifest(
        &self,
        container: &str,
        name: &str,
        version: &str,
    ) -> Result<Manifest> {
        check_model_name(name)?;
        if version == "latest" {
            return self.model_versions(container, name).await?.pop().ok_or_else(|| {
                Error::new(
                    ErrorKind::Input,
                    format!("model `{name}` has no stored versions in container `{container}`; store one with `store_model()`"),
                )
            });
        }
        let path = format!("{}{version}/manifest.json", model_prefix(name));
        match self.get_bytes(container, &path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::integrity(format!("manifest `{container}/{path}` is not valid: {e}"))
            }),
            Err(e) if e.is_not_found() && e.code.as_deref() == Some("BlobNotFound") => {
                Err(Error::input(format!(
                    "model `{name}` has no version `{version}`; see `model_versions(\"{name}\", target)`"
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Download and verify a version's bundle and write its R serialization to `dest`.
    pub fn load_model<'a>(
        &'a self,
        container: &'a str,
        name: &'a str,
        version: &'a str,
        dest: &'a Path,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<Manifest>> {
        Box::pin(async move {
            let manifest = self.model_manifest(container, name, version).await?;
            let compressed = sibling(dest, ".zst");
            let blob = format!("{}{}/bundle", model_prefix(name), manifest.version);
            self.download_file(
                container,
                &blob,
                &compressed,
                Some(&manifest.sha256),
                &Default::default(),
                progress,
            )
            .await
            .map_err(|e| {
                e.context(format!(
                    "loading model `{name}` version {}",
                    manifest.version
                ))
            })?;
            let (src, dst) = (compressed.clone(), dest.to_path_buf());
            let result = blocking(move || decompress_file(&src, &dst)).await;
            let _ = std::fs::remove_file(&compressed);
            result?;
            Ok(manifest)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn model_names_follow_the_blob_rule() {
        for ok in ["mpg", "churn-model-2", "a1b"] {
            assert!(check_model_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Mpg",
            "-mpg",
            "mpg-",
            "m--pg",
            "m_pg",
            "m pg",
            &"x".repeat(64),
        ] {
            let err = check_model_name(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Input);
            assert!(err.message.contains(bad), "{}", err.message);
        }
    }

    #[test]
    fn version_ids_sort_by_time_and_name_the_hash() {
        let sha = "0123456789abcdef";
        let a = version_id(datetime!(2026-11-26 23:05:01.002 UTC), sha);
        let b = version_id(datetime!(2026-11-26 23:05:01.010 UTC), sha);
        assert_eq!(a, "20261126T230501002Z-01234567");
        assert!(a < b);
    }

    #[test]
    fn compression_is_deterministic_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("serverless-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("bundle.rds");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let (sha1, size1, raw) = compress_file(&src, &dir.join("a.zst")).unwrap();
        let (sha2, size2, _) = compress_file(&src, &dir.join("b.zst")).unwrap();
        assert_eq!((sha1, size1, raw), (sha2, size2, data.len() as u64));
        decompress_file(&dir.join("a.zst"), &dir.join("out")).unwrap();
        assert_eq!(std::fs::read(dir.join("out")).unwrap(), data);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
