//! Large transfers: block uploads in parallel, streamed from disk and resumable; ranged
//! downloads in parallel, streamed to disk and verified.
//!
//! Resuming works because block ids are derived from the block's index and MD5: a
//! re-run asks the service which blocks it already holds uncommitted and sends only
//! the others. The blob becomes visible only when the block list is committed, so an
//! interrupted upload never looks complete.

use super::{md5_digest, not_found_hint, not_found_hint_for, sas::Access, Storage};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::BoxFuture;
use azure_core::http::{Etag, RequestContent};
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientStageBlockOptions, BlockListType,
    BlockLookupList,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::num::NonZero;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

/// Metadata key holding the sha256 of the whole blob, checked on every download.
pub const SHA256_METADATA: &str = "sha256";

#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Never overwrite: commit with `If-None-Match: *`.
    pub if_none_match: bool,
    pub content_type: String,
    pub block_size: usize,
    /// Blocks in flight at once; memory use is about `block_size * concurrency`.
    pub concurrency: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            if_none_match: false,
            content_type: "application/octet-stream".into(),
            block_size: 4 * 1024 * 1024,
            concurrency: 8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Bytes per ranged GET.
    pub partition_size: usize,
    /// Ranged GETs in flight; the crate buffers up to twice this many partitions.
    pub parallel: usize,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        // Measured against Azurite (bench/): fewer, larger ranges beat many small ones.
        DownloadOptions {
            partition_size: 16 * 1024 * 1024,
            parallel: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UploadOutcome {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub blocks: usize,
    /// Blocks actually sent (fewer than `blocks` when resuming).
    pub blocks_sent: usize,
    pub bytes_sent: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DownloadOutcome {
    pub path: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// Whether a stored sha256 was there to check against.
    pub verified: bool,
}

fn block_id(index: usize, md5: &[u8]) -> Vec<u8> {
    // Same length for every block (a service rule), unique per index and content.
    format!("{index:06}-{}", hex::encode(md5)).into_bytes()
}

impl Storage {
    /// Upload a local file to `container/blob` as a block blob.
    pub fn upload_file<'a>(
        &'a self,
        file: &'a Path,
        container: &'a str,
        blob: &'a str,
        options: &'a UploadOptions,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<UploadOutcome>> {
        Box::pin(async move {
            self.check(Access::Write)?;
            let mut reader = tokio::fs::File::open(file)
                .await
                .map_err(|e| Error::io(format!("cannot open `{}`", file.display()), e))?;
            let size = reader
                .metadata()
                .await
                .map_err(|e| Error::io(format!("cannot read `{}`", file.display()), e))?
                .len();
            let client = Arc::new(self.blob_client(container, blob)?.block_blob_client());
            progress.begin(format!("uploading {container}/{blob}"), size);

            // Blocks the service already holds uncommitted from an interrupted run.
            let held: HashSet<Vec<u8>> = match client
                .get_block_list(BlockListType::Uncommitted, None)
                .await
            {
                Ok(rsp) => rsp
                    .into_model()?
                    .uncommitted_blocks
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|b| b.name)
                    .collect(),
                Err(e) => {
                    let e = Error::from(e);
                    if e.code.as_deref() == Some("BlobNotFound") {
                        HashSet::new()
                    } else {
                        return Err(not_found_hint(e, container, &self.account));
                    }
                }
            };
            let held = Arc::new(held);

            let block_size = options.block_size.max(1);
            let mut sha = Sha256::new();
            let mut ids: Vec<Vec<u8>> = Vec::new();
            let mut in_flight: JoinSet<Result<u64>> = JoinSet::new();
            let mut bytes_sent = 0u64;
            let mut blocks_sent = 0usize;
            let mut remaining = size;
            let mut index = 0usize;

            while remaining > 0 || index == 0 {
                let len = remaining.min(block_size as u64) as usize;
                let mut buf = BytesMut::zeroed(len);
                reader
                    .read_exact(&mut buf)
                    .await
                    .map_err(|e| Error::io(format!("reading `{}`", file.display()), e))?;
                remaining -= len as u64;
                let data: Bytes = buf.freeze();
                sha.update(&data);
                let md5 = md5_digest(&data);
                let id = block_id(index, &md5);
                ids.push(id.clone());
                index += 1;
                if held.contains(&id) {
                    progress.advance(len as u64);
                } else {
                    // Bound memory: wait for a slot before reading further.
                    while in_flight.len() >= options.concurrency.max(1) {
                        let sent = join_one(&mut in_flight).await?;
                        progress.advance(sent);
                        bytes_sent += sent;
                        blocks_sent += 1;
                    }
                    let client = client.clone();
                    let progress_len = len as u64;
                    in_flight.spawn(async move {
                        let opts = BlockBlobClientStageBlockOptions {
                            transactional_content_md5: Some(md5),
                            ..Default::default()
                        };
                        client
                            .stage_block(&id, progress_len, data.into(), Some(opts))
                            .await
                            .map_err(Error::from)?;
                        Ok(progress_len)
                    });
                }
                if len == 0 {
                    break; // an empty file is one empty block
                }
            }
            // Progress counts blocks as they land.
            while !in_flight.is_empty() {
                let sent = join_one(&mut in_flight).await?;
                progress.advance(sent);
                bytes_sent += sent;
                blocks_sent += 1;
            }
            let sha256 = hex::encode(sha.finalize());

            let commit = BlockBlobClientCommitBlockListOptions {
                if_none_match: options.if_none_match.then(|| Etag::from("*")),
                blob_content_type: Some(options.content_type.clone()),
                metadata: Some(HashMap::from([(
                    SHA256_METADATA.to_string(),
                    sha256.clone(),
                )])),
                ..Default::default()
            };
            let list = BlockLookupList {
                latest: Some(ids.clone()),
                ..Default::default()
            };
            client
                .commit_block_list(RequestContent::try_from(list)?, Some(commit))
                .await
                .map_err(|e| not_found_hint(Error::from(e), container, &self.account))?;
            Ok(UploadOutcome {
                path: format!("{container}/{blob}"),
                size,
                sha256,
                blocks: ids.len(),
                blocks_sent,
                bytes_sent,
            })
        })
    }

    /// Download `container/blob` to `file`, via `file.part` renamed on success, checking
    /// the stored sha256 when there is one (or `expected_sha256` when given).
    pub fn download_file<'a>(
        &'a self,
        container: &'a str,
        blob: &'a str,
        file: &'a Path,
        expected_sha256: Option<&'a str>,
        options: &'a DownloadOptions,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<DownloadOutcome>> {
        Box::pin(async move {
            self.check(Access::Read)?;
            let client = self.blob_client(container, blob)?;
            // Size, stored sha256 and etag first: the ranged download that follows is
            // pinned to this etag, so a blob replaced meanwhile fails instead of mixing.
            let props = client.get_properties(None).await.map_err(|e| {
                not_found_hint_for(Error::from(e), container, Some(blob), &self.account)
            })?;
            let size = props.content_length()?.unwrap_or(0);
            let stored = props.metadata()?.get(SHA256_METADATA).cloned();
            let etag = props.etag()?;
            let expected = expected_sha256.map(str::to_owned).or(stored);
            let options = BlobClientDownloadOptions {
                parallel: NonZero::new(options.parallel.max(1)),
                partition_size: NonZero::new(options.partition_size.max(1)),
                if_match: etag,
                ..Default::default()
            };
            let result = client.download(Some(options)).await.map_err(|e| {
                not_found_hint_for(Error::from(e), container, Some(blob), &self.account)
            })?;
            progress.begin(format!("downloading {container}/{blob}"), size);

            let part = part_path(file);
            // A plain file written in place: tokio's file type would hop to the blocking
            // pool for every chunk.
            let mut out = std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(&part)
                    .map_err(|e| Error::io(format!("cannot create `{}`", part.display()), e))?,
            );
            let mut sha = Sha256::new();
            let mut received = 0u64;
            let mut body = result.body;
            let written: Result<()> = async {
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(Error::from)?;
                    tokio::task::block_in_place(|| {
                        sha.update(&chunk);
                        out.write_all(&chunk)
                    })
                    .map_err(|e| Error::io(format!("writing `{}`", part.display()), e))?;
                    received += chunk.len() as u64;
                    progress.advance(chunk.len() as u64);
                }
                out.flush()
                    .map_err(|e| Error::io(format!("writing `{}`", part.display()), e))
            }
            .await;
            drop(out);
            let fail = |e: Error| {
                let _ = std::fs::remove_file(&part);
                Err(e)
            };
            if let Err(e) = written {
                return fail(e);
            }
            let sha256 = hex::encode(sha.finalize());
            if received != size {
                return fail(Error::integrity(format!(
                    "download of `{container}/{blob}` was cut short: {received} of {size} bytes"
                )));
            }
            if let Some(expected) = &expected {
                if !expected.eq_ignore_ascii_case(&sha256) {
                    return fail(Error::integrity(format!(
                    "`{container}/{blob}` is corrupt: its sha256 is {sha256} but {expected} was recorded"
                )));
                }
            }
            tokio::fs::rename(&part, file).await.map_err(|e| {
                Error::io(format!("cannot move download to `{}`", file.display()), e)
            })?;
            Ok(DownloadOutcome {
                path: format!("{container}/{blob}"),
                file: file.display().to_string(),
                size,
                sha256,
                verified: expected.is_some(),
            })
        })
    }
}

/// Bytes fetched by the first ranged GET that looks for a line end at a shard's edge
/// (most rows are shorter); each further GET fetches twice as many, up to 1 MiB.
const LINE_PROBE: u64 = 256;

#[derive(Debug, Clone, Serialize)]
pub struct ShareOutcome {
    pub path: String,
    pub file: String,
    /// The blob's size.
    pub size: u64,
    /// This shard's rows: bytes `start..end` of the blob (after its header line).
    pub start: u64,
    pub end: u64,
    /// Bytes fetched in all: the header, the rows and the probes at their edges.
    pub bytes_downloaded: u64,
}

/// Reads a CSV blob's header and rows in ranges, all pinned to one etag.
struct RangeReader<'a> {
    client: &'a azure_storage_blob::BlobClient,
    etag: Option<Etag>,
    size: u64,
    fetched: u64,
}

impl RangeReader<'_> {
    async fn bytes(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        let options = BlobClientDownloadOptions {
            range: Some(range.into()),
            if_match: self.etag.clone(),
            ..Default::default()
        };
        let mut body = self.client.download(Some(options)).await?.body;
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.map_err(Error::from)?);
        }
        self.fetched += out.len() as u64;
        Ok(out)
    }

    /// Streams bytes `range` into `out` (ranged GETs in parallel, as `options` say),
    /// checking that all of them came; `what` names the blob in errors.
    async fn copy(
        &mut self,
        range: std::ops::Range<u64>,
        options: &DownloadOptions,
        out: &mut impl Write,
        what: &str,
        progress: &Progress,
    ) -> Result<()> {
        let ranged = BlobClientDownloadOptions {
            range: Some(range.clone().into()),
            parallel: NonZero::new(options.parallel.max(1)),
            partition_size: NonZero::new(options.partition_size.max(1)),
            if_match: self.etag.clone(),
            ..Default::default()
        };
        let mut body = self.client.download(Some(ranged)).await?.body;
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(Error::from)?;
            tokio::task::block_in_place(|| out.write_all(&chunk))
                .map_err(|e| Error::io(format!("writing the download of `{what}`"), e))?;
            received += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
        self.fetched += received;
        if received != range.end - range.start {
            return Err(Error::integrity(format!(
                "download of `{what}` bytes {}..{} was cut short: {received} bytes",
                range.start, range.end
            )));
        }
        Ok(())
    }

    /// The position just after the first `\n` at or after `from` (the blob's size if
    /// there is none), and the bytes read to find it.
    async fn line_end(&mut self, from: u64) -> Result<(u64, Vec<u8>)> {
        let mut seen = Vec::new();
        let mut at = from;
        let mut probe = LINE_PROBE;
        while at < self.size {
            let chunk = self.bytes(at..(at + probe).min(self.size)).await?;
            probe = (probe * 2).min(1 << 20);
            if chunk.is_empty() {
                break;
            }
            if let Some(i) = memchr::memchr(b'\n', &chunk) {
                seen.extend_from_slice(&chunk[..=i]);
                return Ok((at + i as u64 + 1, seen));
            }
            at += chunk.len() as u64;
            seen.extend_from_slice(&chunk);
        }
        Ok((self.size, seen))
    }
}

impl Storage {
    /// Downloads to `file` a CSV blob's header line and the `shard`-th of `shards`
    /// byte ranges of its rows, each range cut at line ends, so that the shards' rows
    /// are the file's rows, each once and in order, and all shards together download
    /// about the file's size. A line break inside a quoted field would be cut there:
    /// such a file fails to parse rather than split wrongly.
    #[allow(clippy::too_many_arguments)]
    pub fn download_csv_share<'a>(
        &'a self,
        container: &'a str,
        blob: &'a str,
        file: &'a Path,
        shard: u64,
        shards: u64,
        options: &'a DownloadOptions,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<ShareOutcome>> {
        Box::pin(async move {
            self.check(Access::Read)?;
            if shards == 0 || shard == 0 || shard > shards {
                return Err(Error::input(format!(
                    "shard {shard} of {shards} is not a shard of a run"
                )));
            }
            let client = self.blob_client(container, blob)?;
            let props = client.get_properties(None).await.map_err(|e| {
                not_found_hint_for(Error::from(e), container, Some(blob), &self.account)
            })?;
            let size = props.content_length()?.unwrap_or(0);
            let mut reader = RangeReader {
                client: &client,
                etag: props.etag()?,
                size,
                fetched: 0,
            };
            let (header_end, header) = reader.line_end(0).await?;
            let body = size - header_end;
            // The rows' bytes split evenly; a row belongs to the shard its first byte
            // falls in, so each edge moves to the end of the row it cuts.
            let cut = |p: u64| header_end + body * p / shards;
            let (from, to) = (cut(shard - 1), cut(shard));
            let start = if from <= header_end {
                header_end
            } else {
                reader.line_end(from - 1).await?.0
            };
            // The bytes read to find the end are this shard's last ones: kept, not
            // downloaded again.
            let (end, tail, ranged_end) = if to >= size {
                (size, Vec::new(), size)
            } else {
                let (end, tail) = reader.line_end(to - 1).await?;
                (end, tail, to - 1)
            };
            let part = part_path(file);
            let mut out = std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(&part)
                    .map_err(|e| Error::io(format!("cannot create `{}`", part.display()), e))?,
            );
            let written: Result<()> = async {
                out.write_all(&header)
                    .map_err(|e| Error::io(format!("writing `{}`", part.display()), e))?;
                // No row starts in this shard's bytes (more shards than rows): the header.
                if end > start && ranged_end > start {
                    progress.begin(
                        format!("downloading {container}/{blob} (part {shard} of {shards})"),
                        ranged_end - start,
                    );
                    let what = format!("{container}/{blob}");
                    reader
                        .copy(start..ranged_end, options, &mut out, &what, progress)
                        .await?;
                }
                if end > start {
                    out.write_all(&tail)
                        .map_err(|e| Error::io(format!("writing `{}`", part.display()), e))?;
                }
                out.flush()
                    .map_err(|e| Error::io(format!("writing `{}`", part.display()), e))
            }
            .await;
            drop(out);
            if let Err(e) = written {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
            tokio::fs::rename(&part, file).await.map_err(|e| {
                Error::io(format!("cannot move download to `{}`", file.display()), e)
            })?;
            Ok(ShareOutcome {
                path: format!("{container}/{blob}"),
                file: file.display().to_string(),
                size,
                start,
                end,
                bytes_downloaded: reader.fetched,
            })
        })
    }
}

impl Storage {
    /// Downloads to `file` what shard `shard` (1-based) of `shards` of a Parquet blob
    /// reads: its footer, then the column chunks of the row groups holding the
    /// shard's rows, each at its own offset in a sparse file of the blob's size (the
    /// rest is never read). `table::read_parquet_rows` with the same shard then reads
    /// the file as if it were whole.
    #[allow(clippy::too_many_arguments)]
    pub fn download_parquet_share<'a>(
        &'a self,
        container: &'a str,
        blob: &'a str,
        file: &'a Path,
        shard: u64,
        shards: u64,
        options: &'a DownloadOptions,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<ShareOutcome>> {
        Box::pin(async move {
            use std::io::{Seek, SeekFrom};
            self.check(Access::Read)?;
            if shards == 0 || shard == 0 || shard > shards {
                return Err(Error::input(format!(
                    "shard {shard} of {shards} is not a shard of a run"
                )));
            }
            let client = self.blob_client(container, blob)?;
            let props = client.get_properties(None).await.map_err(|e| {
                not_found_hint_for(Error::from(e), container, Some(blob), &self.account)
            })?;
            let size = props.content_length()?.unwrap_or(0);
            let mut reader = RangeReader {
                client: &client,
                etag: props.etag()?,
                size,
                fetched: 0,
            };
            let not_parquet =
                || Error::input(format!("`{container}/{blob}` is not a Parquet file"));
            // The file ends with the footer's length (4 bytes, little endian) and PAR1.
            if size < 12 {
                return Err(not_parquet());
            }
            let tail = reader.bytes(size - 8..size).await?;
            if tail.len() != 8 || &tail[4..] != b"PAR1" {
                return Err(not_parquet());
            }
            let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
            if footer_len + 12 > size {
                return Err(not_parquet());
            }
            let footer_at = size - 8 - footer_len;
            let footer = reader.bytes(footer_at..size - 8).await?;
            let index = |n: u64| usize::try_from(n).map_err(|_| Error::input("too many shards"));
            let ranges = crate::table::parquet_shard_byte_ranges(
                &footer,
                index(shard - 1)?,
                index(shards)?,
            )?;
            if ranges.iter().any(|r| r.end > footer_at) {
                return Err(Error::input(format!(
                "`{container}/{blob}` is not a valid Parquet file: a column chunk overlaps its footer"
            )));
            }

            let part = part_path(file);
            let written: Result<()> = async {
                let io = |e| Error::io(format!("writing `{}`", part.display()), e);
                let mut out = std::fs::File::create(&part).map_err(io)?;
                out.set_len(size).map_err(io)?;
                out.write_all(b"PAR1").map_err(io)?;
                out.seek(SeekFrom::Start(footer_at)).map_err(io)?;
                out.write_all(&footer).map_err(io)?;
                out.write_all(&tail).map_err(io)?;
                let total = ranges.iter().map(|r| r.end - r.start).sum();
                progress.begin(
                    format!("downloading {container}/{blob} (part {shard} of {shards})"),
                    total,
                );
                for r in &ranges {
                    out.seek(SeekFrom::Start(r.start)).map_err(io)?;
                    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut out);
                    let what = format!("{container}/{blob}");
                    reader
                        .copy(r.clone(), options, &mut out, &what, progress)
                        .await?;
                    out.flush().map_err(io)?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = written {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
            tokio::fs::rename(&part, file).await.map_err(|e| {
                Error::io(format!("cannot move download to `{}`", file.display()), e)
            })?;
            Ok(ShareOutcome {
                path: format!("{container}/{blob}"),
                file: file.display().to_string(),
                size,
                start: ranges.first().map_or(0, |r| r.start),
                end: ranges.last().map_or(0, |r| r.end),
                bytes_downloaded: reader.fetched,
            })
        })
    }
}

async fn join_one(set: &mut JoinSet<Result<u64>>) -> Result<u64> {
    match set.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) if e.is_cancelled() => Err(Error::new(ErrorKind::Interrupted, "cancelled")),
        Some(Err(_)) => Err(Error::internal("a block upload task failed unexpectedly")),
        None => Ok(0),
    }
}

fn part_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    file.with_file_name(name)
}
