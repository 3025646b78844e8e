//! CSV as in RFC 4180: a header line, fields separated by commas, and fields that
//! hold a comma, a quote or a line break put in quotes (a quote inside doubled).
//!
//! Reading splits the data into chunks of whole records and parses them on every
//! core; writing formats blocks of rows in parallel and writes them in order.
//!
//! Missing values are an empty field or `NA`, as `data.table::fread()` reads them by
//! default; a quoted `"NA"` or `""` is a string. Without a hint a column gets the
//! narrowest type that holds all its values: logical (`TRUE`/`FALSE`/`T`/`F`/
//! `true`/`false`), integer, double, else character. A column with no values at
//! all is logical, as in R.

use super::{
    check_shard, fits_integer, hinted, split_point, threads, Column, ColumnType, Nullable, Strings,
    Table,
};
use crate::{Error, Result};
use memchr::{memchr, memchr2, memchr2_iter, memrchr};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

/// Below this many bytes per chunk, another thread costs more than it saves.
const MIN_CHUNK_BYTES: usize = 1 << 20;

/// About this many bytes of text per block when writing.
const WRITE_BLOCK_BYTES: usize = 2 << 20;

/// Read a whole CSV file. `hint` gives the wanted type of some columns by name;
/// the others are inferred.
pub fn read_csv(bytes: &[u8], hint: &[(String, ColumnType)]) -> Result<Table> {
    read_csv_rows(bytes, hint, 0, 1)
}

/// Read the records of shard `shard` (0-based) of `shards`: the data after the
/// header is cut into `shards` byte ranges of equal size, each moved forward to the
/// next record start, so every record belongs to exactly one shard. Inference sees
/// only this shard's rows: pass a hint when every shard must agree on the types.
pub fn read_csv_rows(
    bytes: &[u8],
    hint: &[(String, ColumnType)],
    shard: usize,
    shards: usize,
) -> Result<Table> {
    read_records(bytes, hint, shard, shards, 0)
}

/// [`read_csv_rows`], numbering lines as if `lines_before` lines came before the
/// first record (a chunk of a bigger file reports the file's line numbers).
fn read_records(
    bytes: &[u8],
    hint: &[(String, ColumnType)],
    shard: usize,
    shards: usize,
    lines_before: usize,
) -> Result<Table> {
    check_shard(shard, shards)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(Table::default());
    }
    let (names, body) = read_header(bytes)?;
    let fail = |bad: Bad| bad.into_error(bytes, &names, lines_before);
    let quotes = memchr(b'"', &bytes[body..]).is_some();

    let len = bytes.len() - body;
    let ends = [
        body + split_point(len, shard, shards),
        body + split_point(len, shard + 1, shards),
    ];
    let ends = record_starts(bytes, body, &ends, quotes).map_err(fail)?;
    let (lo, hi) = (ends[0], ends[1]);

    let chunks = threads().min((hi - lo) / MIN_CHUNK_BYTES).max(1);
    let targets: Vec<usize> = (1..chunks)
        .map(|k| lo + split_point(hi - lo, k, chunks))
        .collect();
    let mut bounds = vec![lo];
    bounds.extend(record_starts(bytes, lo, &targets, quotes).map_err(fail)?);
    bounds.push(hi);
    let chunks: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();

    let hints: Vec<Option<ColumnType>> = names.iter().map(|n| hinted(hint, n)).collect();
    let mut parsed = parallel(&chunks, |&(start, end)| {
        // The first chunk's vectors get room for every row, so the others are
        // appended to them in place (untouched capacity costs no memory).
        let rows = match start == lo {
            true => estimate_rows(bytes, lo, hi),
            false => estimate_rows(bytes, start, end),
        };
        let mut columns: Vec<ColumnParser> =
            hints.iter().map(|h| ColumnParser::new(*h, rows)).collect();
        let n = parse_chunk(bytes, start, end, &mut columns)?;
        Ok((n, columns))
    })?
    .into_iter()
    .collect::<std::result::Result<Vec<_>, Bad>>()
    .map_err(fail)?;

    let types: Vec<ColumnType> = hints
        .iter()
        .enumerate()
        .map(|(c, h)| {
            h.unwrap_or_else(|| {
                parsed
                    .iter()
                    .map(|(_, cols)| cols[c].data.inferred())
                    .fold(None, join)
                    .unwrap_or(ColumnType::Logical)
            })
        })
        .collect();

    // A column read as numbers in one chunk and text in another is character: read
    // the texts of those chunks again (rare, so not worth keeping texts on the way).
    let again: Vec<(usize, Vec<bool>)> = parsed
        .iter()
        .enumerate()
        .filter_map(|(k, (_, cols))| {
            let need: Vec<bool> = cols
                .iter()
                .zip(&types)
                .map(|(col, t)| {
                    *t == ColumnType::Character
                        && !matches!(col.data, Builder::Character(_) | Builder::Missing(_))
                })
                .collect();
            need.iter().any(|x| *x).then_some((k, need))
        })
        .collect();
    if !again.is_empty() {
        let texts = parallel(&again, |(k, need)| {
            let (start, end) = chunks[*k];
            let rows = parsed[*k].0;
            let mut columns: Vec<ColumnParser> = need
                .iter()
                .map(|n| match n {
                    true => ColumnParser::new(Some(ColumnType::Character), rows),
                    false => ColumnParser::skip(),
                })
                .collect();
            parse_chunk(bytes, start, end, &mut columns)?;
            Ok(columns)
        })?;
        for ((k, need), columns) in again.iter().zip(texts) {
            let columns = columns.map_err(fail)?;
            for (c, col) in columns.into_iter().enumerate() {
                if need[c] {
                    parsed[*k].1[c].data = col.data;
                }
            }
        }
    }

    let total: usize = parsed.iter().map(|(n, _)| n).sum();
    let mut columns = Vec::with_capacity(names.len());
    for (c, t) in types.iter().enumerate() {
        let parts: Vec<Builder> = parsed
            .iter_mut()
            .map(|(_, cols)| std::mem::replace(&mut cols[c].data, Builder::Skip))
            .collect();
        columns.push(assemble(*t, parts, total)?);
    }
    Table::new(names, columns)
}

/// A CSV file read in chunks of whole records of about `chunk_bytes` each (more when
/// one record is longer), each parsed as a table of its own under the file's header:
/// memory follows the chunk, not the file. The hint applies to every chunk; the other
/// columns' types are inferred per chunk, so a column can read as integer in one chunk
/// and double in the next (their CSV text is the same).
pub struct CsvChunks {
    file: File,
    /// The header record, without a byte order mark, put before every chunk.
    header: Vec<u8>,
    hint: Vec<(String, ColumnType)>,
    chunk_bytes: usize,
    /// Where the next chunk starts, the file's length, and the lines before `pos`.
    pos: u64,
    len: u64,
    lines: usize,
    started: bool,
}

impl CsvChunks {
    pub fn open(file: File, hint: &[(String, ColumnType)], chunk_bytes: usize) -> Result<Self> {
        let io = |e| Error::io("cannot read the CSV file", e);
        let len = file.metadata().map_err(io)?.len();
        let mut chunks = CsvChunks {
            file,
            header: Vec::new(),
            hint: hint.to_vec(),
            chunk_bytes: chunk_bytes.max(1),
            pos: 0,
            len,
            lines: 0,
            started: false,
        };
        let mut probe = 64 << 10;
        let header = loop {
            let bytes = chunks.read_at(0, probe)?;
            let at_end = bytes.len() as u64 == len;
            match record_end(&bytes, false) {
                Some(end) => break bytes[..end].to_vec(),
                None if at_end => break bytes,
                None => probe *= 2,
            }
        };
        chunks.pos = header.len() as u64;
        chunks.lines = memchr::memchr_iter(b'\n', &header).count();
        let bom = if header.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        chunks.header = header[bom..].to_vec();
        if !chunks.header.is_empty() {
            read_header(&chunks.header)?;
        }
        Ok(chunks)
    }

    /// The next chunk's rows; the first call always gives a table (perhaps without
    /// rows), later ones `None` after the last record.
    pub fn next_chunk(&mut self) -> Result<Option<Table>> {
        if self.pos >= self.len && self.started {
            return Ok(None);
        }
        self.started = true;
        if self.header.is_empty() {
            return Ok(Some(Table::default()));
        }
        let h = self.header.len();
        let mut want = self.chunk_bytes;
        let mut bytes = Vec::new();
        loop {
            let n = want.min(self.len.saturating_sub(self.pos) as usize);
            bytes.clear();
            bytes.reserve_exact(h + n);
            bytes.extend_from_slice(&self.header);
            bytes.resize(h + n, 0);
            self.file
                .read_exact_at(&mut bytes[h..], self.pos)
                .map_err(|e| Error::io("cannot read the CSV file", e))?;
            if self.pos + n as u64 >= self.len {
                break;
            }
            match record_end(&bytes[h..], true) {
                Some(end) => break bytes.truncate(h + end),
                None => want = want.saturating_mul(2),
            }
        }
        let header_lines = memchr::memchr_iter(b'\n', &self.header).count();
        let table = read_records(&bytes, &self.hint, 0, 1, self.lines - header_lines)?;
        self.lines += memchr::memchr_iter(b'\n', &bytes[h..]).count();
        self.pos += (bytes.len() - h) as u64;
        Ok(Some(table))
    }

    fn read_at(&self, at: u64, n: usize) -> Result<Vec<u8>> {
        let n = n.min(self.len.saturating_sub(at) as usize);
        let mut buf = vec![0; n];
        self.file
            .read_exact_at(&mut buf, at)
            .map_err(|e| Error::io("cannot read the CSV file", e))?;
        Ok(buf)
    }
}

/// Just past the line break that ends the first (or the last) whole record in
/// `bytes`, which start at a record start; `None` when no record ends in them. A line
/// break inside quotes ends no record; a doubled quote flips the state twice.
fn record_end(bytes: &[u8], last: bool) -> Option<usize> {
    if memchr(b'"', bytes).is_none() {
        let at = match last {
            true => memrchr(b'\n', bytes),
            false => memchr(b'\n', bytes),
        };
        return at.map(|i| i + 1);
    }
    let mut quoted = false;
    let mut found = None;
    for i in memchr2_iter(b'"', b'\n', bytes) {
        if bytes[i] == b'"' {
            quoted = !quoted;
        } else if !quoted {
            found = Some(i + 1);
            if !last {
                break;
            }
        }
    }
    found
}

/// Where a parse went wrong: a byte offset (turned into a line number only when
/// reporting) and the column, if one is to blame.
#[derive(Debug)]
struct Bad {
    offset: usize,
    column: Option<usize>,
    message: String,
}

impl Bad {
    fn at(offset: usize, message: impl Into<String>) -> Bad {
        Bad {
            offset,
            column: None,
            message: message.into(),
        }
    }

    /// The error, naming the line of `bytes` (plus `lines_before`) and the column.
    fn into_error(self, bytes: &[u8], names: &[String], lines_before: usize) -> Error {
        let upto = &bytes[..self.offset.min(bytes.len())];
        let line = 1 + lines_before + memchr::memchr_iter(b'\n', upto).count();
        match self.column.and_then(|c| names.get(c)) {
            Some(name) => Error::input(format!("line {line}, column \"{name}\": {}", self.message)),
            None => Error::input(format!("line {line}: {}", self.message)),
        }
    }
}

/// The column names, and the offset where the data starts.
fn read_header(bytes: &[u8]) -> Result<(Vec<String>, usize)> {
    let mut reader = Reader::new(bytes, 0, bytes.len());
    let mut names = Vec::new();
    loop {
        let (span, last) = reader
            .field()
            .map_err(|bad| bad.into_error(bytes, &[], 0))?;
        let name = std::str::from_utf8(reader.text(&span))
            .map_err(|_| Error::input("line 1: the header is not valid UTF-8 text"))?;
        names.push(name.to_owned());
        if last {
            return Ok((names, reader.pos));
        }
    }
}

/// For each target offset, the first record start at or after it (or the end of the
/// data). `from` must be a record start. With quotes in the data, the scan follows
/// them from `from`, so a line break inside a quoted field is never taken for a
/// record end; it also rejects misplaced quotes, which would mislead that scan.
fn record_starts(
    bytes: &[u8],
    from: usize,
    targets: &[usize],
    quotes: bool,
) -> std::result::Result<Vec<usize>, Bad> {
    let len = bytes.len();
    if !quotes {
        return Ok(targets
            .iter()
            .map(|&t| {
                if t <= from {
                    from
                } else if t >= len {
                    len
                } else if bytes[t - 1] == b'\n' {
                    t
                } else {
                    memchr(b'\n', &bytes[t..]).map_or(len, |i| t + i + 1)
                }
            })
            .collect());
    }
    let mut out = Vec::with_capacity(targets.len());
    let mut pending = targets.iter().copied().peekable();
    let mut record = from;
    let mut pos = from;
    let mut quoted = false;
    loop {
        while pending.next_if(|&t| t <= record).is_some() {
            out.push(record);
        }
        match pending.peek() {
            None => return Ok(out),
            Some(&t) if t >= len => break,
            Some(_) => {}
        }
        let Some(i) = memchr2(b'"', b'\n', &bytes[pos..]).map(|i| pos + i) else {
            break;
        };
        pos = i + 1;
        if bytes[i] == b'\n' {
            if !quoted {
                record = pos;
            }
        } else if !quoted {
            if i > from && !matches!(bytes[i - 1], b',' | b'\n') {
                return Err(Bad::at(i, "a quote inside an unquoted field"));
            }
            quoted = true;
        } else if bytes.get(i + 1) == Some(&b'"') {
            pos = i + 2;
        } else {
            if !matches!(bytes.get(i + 1), None | Some(b',' | b'\n' | b'\r')) {
                return Err(Bad::at(
                    i + 1,
                    "expected a comma or a line end after a closing quote",
                ));
            }
            quoted = false;
        }
    }
    out.extend(pending.map(|_| len));
    Ok(out)
}

/// A guess at the number of records in `start..end`, from the first 64 KiB.
fn estimate_rows(bytes: &[u8], start: usize, end: usize) -> usize {
    let sample = &bytes[start..end.min(start + (64 << 10))];
    if sample.is_empty() {
        return 0;
    }
    let lines = memchr::memchr_iter(b'\n', sample).count().max(1);
    let rows = (end - start) as u128 * lines as u128 / sample.len() as u128;
    (rows as usize).saturating_add(rows as usize / 10 + 16)
}

/// Run `f` on every item, the first on this thread and the others on their own.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Result<Vec<R>> {
    if items.len() <= 1 {
        return Ok(items.iter().map(f).collect());
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items[1..].iter().map(|it| s.spawn(move || f(it))).collect();
        let first = f(&items[0]);
        let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        let mut out = vec![first];
        for result in joined {
            out.push(result.map_err(|_| Error::internal("a table worker thread failed"))?);
        }
        Ok(out)
    })
}

/// A field's place in the data; `escaped` means its text is in the reader's scratch
/// buffer (doubled quotes made single).
struct Span {
    start: usize,
    end: usize,
    quoted: bool,
    escaped: bool,
}

/// Reads fields from `bytes[pos..end]`, where `end` is a record boundary.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    scratch: Vec<u8>,
}

/// Bytes that end an unquoted field or are not allowed in one.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b',' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'"' as usize] = true;
    t
};

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], pos: usize, end: usize) -> Self {
        Reader {
            bytes,
            pos,
            end,
            scratch: Vec::new(),
        }
    }

    fn text(&self, span: &Span) -> &[u8] {
        if span.escaped {
            &self.scratch
        } else {
            &self.bytes[span.start..span.end]
        }
    }

    /// Skip an empty line; true if there was one.
    fn skip_blank_line(&mut self) -> bool {
        let rest = &self.bytes[self.pos..self.end];
        let n = if rest.starts_with(b"\n") {
            1
        } else if rest.starts_with(b"\r\n") {
            2
        } else {
            return false;
        };
        self.pos += n;
        true
    }

    /// The next field, and whether it was the last of its record.
    fn field(&mut self) -> std::result::Result<(Span, bool), Bad> {
        let bytes = self.bytes;
        let start = self.pos;
        if start < self.end && bytes[start] == b'"' {
            return self.quoted_field();
        }
        let mut i = start;
        while i < self.end && !SPECIAL[bytes[i] as usize] {
            i += 1;
        }
        let span = |end: usize| Span {
            start,
            end: if end > start && bytes[end - 1] == b'\r' {
                end - 1
            } else {
                end
            },
            quoted: false,
            escaped: false,
        };
        if i == self.end {
            self.pos = self.end;
            return Ok((span(i), true));
        }
        match bytes[i] {
            b',' => {
                self.pos = i + 1;
                Ok((
                    Span {
                        start,
                        end: i,
                        quoted: false,
                        escaped: false,
                    },
                    false,
                ))
            }
            b'\n' => {
                self.pos = i + 1;
                Ok((span(i), true))
            }
            _ => Err(Bad::at(i, "a quote inside an unquoted field")),
        }
    }

    fn quoted_field(&mut self) -> std::result::Result<(Span, bool), Bad> {
        let bytes = self.bytes;
        let open = self.pos;
        let content = open + 1;
        let mut from = content;
        let mut escaped = false;
        loop {
            let Some(q) = memchr(b'"', &bytes[from..self.end]).map(|i| from + i) else {
                return Err(Bad::at(open, "a quoted field is not closed"));
            };
            if q + 1 < self.end && bytes[q + 1] == b'"' {
                if !escaped {
                    self.scratch.clear();
                    escaped = true;
                }
                // Keep one of the two quotes.
                self.scratch.extend_from_slice(&bytes[from..=q]);
                from = q + 2;
                continue;
            }
            if escaped {
                self.scratch.extend_from_slice(&bytes[from..q]);
            }
            let span = Span {
                start: content,
                end: q,
                quoted: true,
                escaped,
            };
            let after = q + 1;
            let rest = &bytes[after..self.end];
            let (skip, last) = match rest {
                [] => (0, true),
                [b',', ..] => (1, false),
                [b'\n', ..] | [b'\r'] => (1, true),
                [b'\r', b'\n', ..] => (2, true),
                _ => {
                    return Err(Bad::at(
                        after,
                        "expected a comma or a line end after a closing quote",
                    ))
                }
            };
            self.pos = after + skip;
            return Ok((span, last));
        }
    }
}

/// Parse the records in `start..end` into `columns`; returns how many there were.
fn parse_chunk(
    bytes: &[u8],
    start: usize,
    end: usize,
    columns: &mut [ColumnParser],
) -> std::result::Result<usize, Bad> {
    let ncol = columns.len();
    let mut reader = Reader::new(bytes, start, end);
    let mut rows = 0;
    while reader.pos < end {
        let record = reader.pos;
        // A blank line is a record only when a record can be one empty field.
        if ncol > 1 && reader.skip_blank_line() {
            continue;
        }
        for (c, column) in columns.iter_mut().enumerate() {
            let last = match column.fast(&bytes[reader.pos..end]) {
                Some((n, last)) => {
                    reader.pos += n;
                    last
                }
                None => {
                    let (span, last) = reader.field()?;
                    column
                        .push(reader.text(&span), span.quoted)
                        .map_err(|message| Bad {
                            offset: span.start,
                            column: Some(c),
                            message,
                        })?;
                    last
                }
            };
            if last && c + 1 < ncol {
                return Err(Bad::at(
                    record,
                    format!("expected {ncol} fields, found {}", c + 1),
                ));
            }
            if !last && c + 1 == ncol {
                let mut found = ncol + 1;
                while !reader.field()?.1 {
                    found += 1;
                }
                return Err(Bad::at(
                    record,
                    format!("expected {ncol} fields, found {found}"),
                ));
            }
        }
        rows += 1;
    }
    Ok(rows)
}

/// One column's values in one chunk.
enum Builder {
    /// Only missing values so far (while inferring).
    Missing(usize),
    Logical(Vec<Option<bool>>),
    Integer(Nullable<i32>),
    Double(Nullable<f64>),
    Character(Strings),
    /// Text after numbers or logicals: the column is character, and a second pass
    /// collects this chunk's texts. Holds the number of values.
    Retext(usize),
    /// Not wanted in this pass.
    Skip,
}

impl Builder {
    /// The type the values seen so far need; `None` when all were missing.
    fn inferred(&self) -> Option<ColumnType> {
        match self {
            Builder::Missing(_) | Builder::Skip => None,
            Builder::Logical(_) => Some(ColumnType::Logical),
            Builder::Integer(_) => Some(ColumnType::Integer),
            Builder::Double(_) => Some(ColumnType::Double),
            Builder::Character(_) | Builder::Retext(_) => Some(ColumnType::Character),
        }
    }
}

/// The type that holds values of both types: integers widen to doubles; logicals
/// and numbers together, or anything with text, are character (as fread does).
fn join(a: Option<ColumnType>, b: Option<ColumnType>) -> Option<ColumnType> {
    use ColumnType::*;
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) if x == y => Some(x),
        (Some(Integer), Some(Double)) | (Some(Double), Some(Integer)) => Some(Double),
        _ => Some(Character),
    }
}

struct ColumnParser {
    /// The type asked for; `None` infers it.
    hint: Option<ColumnType>,
    /// Expected number of values, to size vectors once.
    capacity: usize,
    data: Builder,
}

impl ColumnParser {
    fn new(hint: Option<ColumnType>, capacity: usize) -> Self {
        let data = match hint {
            None => Builder::Missing(0),
            Some(ColumnType::Logical) => Builder::Logical(Vec::with_capacity(capacity)),
            Some(ColumnType::Integer) => Builder::Integer(Nullable::with_capacity(capacity)),
            Some(ColumnType::Double) => Builder::Double(Nullable::with_capacity(capacity)),
            // CSV holds dates as text; the scoring job converts them to the ptype.
            Some(ColumnType::Character | ColumnType::Date | ColumnType::DateTime) => {
                Builder::Character(Strings::with_capacity(capacity, 0))
            }
        };
        ColumnParser {
            hint,
            capacity,
            data,
        }
    }

    fn skip() -> Self {
        ColumnParser {
            hint: None,
            capacity: 0,
            data: Builder::Skip,
        }
    }

    /// Parse a plain number where it stands, without finding the field's end first:
    /// the common case of numeric columns. Returns the bytes taken (with the comma or
    /// line end) and whether the record ended; `None` leaves the field to `push`,
    /// which accepts everything this does, and more.
    fn fast(&mut self, rest: &[u8]) -> Option<(usize, bool)> {
        match &mut self.data {
            Builder::Double(v) => {
                let lead = match rest.first()? {
                    b'-' | b'+' => *rest.get(1)?,
                    b => *b,
                };
                // Words (Inf, NA) and quoted fields take the general path.
                if !(lead.is_ascii_digit() || lead == b'.') {
                    return None;
                }
                let (value, n) = fast_float2::parse_partial::<f64, _>(rest).ok()?;
                let (skip, last) = after_value(rest, n)?;
                v.push(Some(value));
                Some((n + skip, last))
            }
            Builder::Integer(v) => {
                let (value, n) = integer_prefix(rest)?;
                let (skip, last) = after_value(rest, n)?;
                v.push(Some(value));
                Some((n + skip, last))
            }
            _ => None,
        }
    }

    fn push(&mut self, text: &[u8], quoted: bool) -> std::result::Result<(), String> {
        let value = trim(text);
        // Quoting makes a field a string, not a missing value; hinted non-character
        // columns have no use for that string, so there it is missing too.
        let na = value.is_empty() || value == b"NA";
        let missing = na && !quoted;
        match &mut self.data {
            Builder::Skip => {}
            Builder::Retext(n) => *n += 1,
            Builder::Character(v) => v.push(if missing { None } else { Some(string(text)?) }),
            Builder::Logical(v) if self.hint.is_some() => v.push(match na {
                true => None,
                false => Some(
                    parse_logical(value)
                        .ok_or_else(|| expected("a logical (TRUE or FALSE)", text))?,
                ),
            }),
            Builder::Integer(v) if self.hint.is_some() => v.push(match na {
                true => None,
                false => Some(
                    parse_integer(value)
                        .or_else(|| integral_double(value))
                        .ok_or_else(|| expected("an integer", text))?,
                ),
            }),
            Builder::Double(v) if self.hint.is_some() => v.push(match na {
                true => None,
                false => Some(parse_double(value).ok_or_else(|| expected("a number", text))?),
            }),
            Builder::Missing(n) => {
                if missing {
                    *n += 1;
                } else {
                    let n = *n;
                    self.data = self.first_value(n, text, value)?;
                }
            }
            Builder::Logical(v) => match (missing, parse_logical(value)) {
                (true, _) => v.push(None),
                (false, Some(b)) => v.push(Some(b)),
                (false, None) => self.data = Builder::Retext(v.len() + 1),
            },
            Builder::Integer(v) => {
                if missing {
                    v.push(None);
                } else if let Some(i) = parse_integer(value) {
                    v.push(Some(i));
                } else if let Some(d) = parse_double(value) {
                    let mut w = Nullable::with_capacity(self.capacity.max(v.len() + 1));
                    w.append(&v.map(f64::from));
                    w.push(Some(d));
                    self.data = Builder::Double(w);
                } else {
                    self.data = Builder::Retext(v.len() + 1);
                }
            }
            Builder::Double(v) => match (missing, parse_double(value)) {
                (true, _) => v.push(None),
                (false, Some(d)) => v.push(Some(d)),
                (false, None) => self.data = Builder::Retext(v.len() + 1),
            },
        }
        Ok(())
    }

    /// The builder for the first value after `missing` missing ones.
    fn first_value(
        &self,
        missing: usize,
        text: &[u8],
        value: &[u8],
    ) -> std::result::Result<Builder, String> {
        fn start<T: Copy + Default>(capacity: usize, missing: usize, value: T) -> Nullable<T> {
            let mut v = Nullable::with_capacity(capacity.max(missing + 1));
            v.push_missing(missing);
            v.push(Some(value));
            v
        }
        let cap = self.capacity;
        Ok(if let Some(b) = parse_logical(value) {
            let mut v = Vec::with_capacity(cap.max(missing + 1));
            v.resize(missing, None);
            v.push(Some(b));
            Builder::Logical(v)
        } else if let Some(i) = parse_integer(value) {
            Builder::Integer(start(cap, missing, i))
        } else if let Some(d) = parse_double(value) {
            Builder::Double(start(cap, missing, d))
        } else {
            let mut v = Strings::with_capacity(cap.max(missing + 1), 0);
            v.push_missing(missing);
            v.push(Some(string(text)?));
            Builder::Character(v)
        })
    }
}

/// One column from its chunks, in order.
fn assemble(t: ColumnType, parts: Vec<Builder>, total: usize) -> Result<Column> {
    let column = match t {
        ColumnType::Logical => gather(parts, total, |part| match part {
            Builder::Logical(v) => Some(v),
            _ => None,
        })
        .map(Column::Logical),
        ColumnType::Integer => gather_nullable(parts, total, |part| match part {
            Builder::Integer(v) => Some(v),
            _ => None,
        })
        .map(Column::Integer),
        ColumnType::Double => gather_nullable(parts, total, |part| match part {
            Builder::Double(v) => Some(v),
            Builder::Integer(v) => Some(v.map(f64::from)),
            _ => None,
        })
        .map(Column::Double),
        ColumnType::Character | ColumnType::Date | ColumnType::DateTime => {
            gather_strings(parts, total).map(Column::Character)
        }
    };
    column.ok_or_else(|| Error::internal("CSV chunks disagree on a column's type"))
}

/// Concatenate the chunks' values (`take` gives them in the column's type); chunks
/// with only missing values add `None`s. The first chunk's vector is kept, and the
/// others are appended to it.
fn gather<T: Clone>(
    parts: Vec<Builder>,
    total: usize,
    take: impl Fn(Builder) -> Option<Vec<Option<T>>>,
) -> Option<Vec<Option<T>>> {
    let mut out: Option<Vec<Option<T>>> = None;
    for part in parts {
        let v = out.get_or_insert_with(|| Vec::with_capacity(total));
        match part {
            Builder::Missing(n) => v.resize(v.len() + n, None),
            part if v.is_empty() => {
                let mut first = take(part)?;
                first.reserve(total.saturating_sub(first.len()));
                *v = first;
            }
            part => v.extend(take(part)?),
        }
    }
    Some(out.unwrap_or_default())
}

/// `gather` for numbers.
fn gather_nullable<T: Copy + Default>(
    parts: Vec<Builder>,
    total: usize,
    take: impl Fn(Builder) -> Option<Nullable<T>>,
) -> Option<Nullable<T>> {
    let mut out: Option<Nullable<T>> = None;
    for part in parts {
        let v = out.get_or_insert_with(|| Nullable::with_capacity(total));
        match part {
            Builder::Missing(n) => v.push_missing(n),
            part if v.is_empty() => *v = take(part)?,
            part => v.append(&take(part)?),
        }
    }
    Some(out.unwrap_or_default())
}

/// `gather` for strings.
fn gather_strings(parts: Vec<Builder>, total: usize) -> Option<Strings> {
    let mut out: Option<Strings> = None;
    for part in parts {
        let v = out.get_or_insert_with(|| Strings::with_capacity(total, 0));
        match part {
            Builder::Missing(n) => v.push_missing(n),
            Builder::Character(first) if v.is_empty() => *v = first,
            Builder::Character(more) => v.append(&more),
            _ => return None,
        }
    }
    Some(out.unwrap_or_default())
}

/// What follows a value that ends `n` bytes into `rest`: the bytes to skip and
/// whether the record ended. `None` unless the field ends there.
fn after_value(rest: &[u8], n: usize) -> Option<(usize, bool)> {
    match rest.get(n..)? {
        [] => Some((0, true)),
        [b',', ..] => Some((1, false)),
        [b'\n', ..] | [b'\r'] => Some((1, true)),
        [b'\r', b'\n', ..] => Some((2, true)),
        _ => None,
    }
}

/// An integer at the start of `bytes` (sign and digits, within R's range), and its
/// length.
fn integer_prefix(bytes: &[u8]) -> Option<(i32, usize)> {
    let sign = usize::from(matches!(bytes.first()?, b'-' | b'+'));
    let digits = bytes[sign..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len() - sign);
    let n = sign + digits;
    Some((parse_integer(&bytes[..n])?, n))
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
    let Some(start) = start else {
        return &[];
    };
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(start);
    &b[start..=end]
}

fn string(text: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(text).map_err(|_| "the text is not valid UTF-8".to_string())
}

fn expected(what: &str, text: &[u8]) -> String {
    const MAX: usize = 40;
    let shown = String::from_utf8_lossy(&text[..text.len().min(MAX)]);
    let more = if text.len() > MAX { "..." } else { "" };
    format!("expected {what}, found \"{shown}{more}\"")
}

fn parse_logical(b: &[u8]) -> Option<bool> {
    match b {
        b"TRUE" | b"True" | b"true" | b"T" => Some(true),
        b"FALSE" | b"False" | b"false" | b"F" => Some(false),
        _ => None,
    }
}

/// Optional sign and decimal digits, within R's integer range.
fn parse_integer(b: &[u8]) -> Option<i32> {
    let (negative, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + i64::from(d);
        if v > i64::from(i32::MAX) + 1 {
            return None;
        }
    }
    let v = if negative { -v } else { v };
    fits_integer(v).then_some(v as i32)
}

/// A decimal number (Rust's parser rounds correctly), or `Inf`, `-Inf`, `NaN` as R
/// writes them. Words are matched exactly, so a name like `Nan` stays text.
fn parse_double(b: &[u8]) -> Option<f64> {
    let (negative, unsigned) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    match unsigned.first()? {
        b'0'..=b'9' | b'.' => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => match unsigned {
            b"Inf" | b"inf" | b"Infinity" | b"INF" => Some(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }),
            b"NaN" | b"nan" | b"NAN" if unsigned.len() == b.len() => Some(f64::NAN),
            _ => None,
        },
    }
}

/// A number with no fractional part that R's integer holds (e.g. `3.0`, as written
/// by tools that store integers with missing values as floats).
fn integral_double(b: &[u8]) -> Option<i32> {
    let d = parse_double(b)?;
    let fits = d.fract() == 0.0 && d > f64::from(i32::MIN) && d <= f64::from(i32::MAX);
    fits.then_some(d as i32)
}

/// Write `table` as CSV: a header, `NA` for missing values, doubles in the shortest
/// form that reads back exactly, logicals as `TRUE`/`FALSE`.
pub fn write_csv(table: &Table, out: &mut impl Write) -> Result<()> {
    write_csv_header(table, out)?;
    write_csv_rows(table, out)
}

/// Write the header line of `table` (nothing for a table without columns).
pub fn write_csv_header(table: &Table, out: &mut impl Write) -> Result<()> {
    table.check()?;
    if table.ncol() == 0 {
        return Ok(());
    }
    let mut header = Vec::new();
    for (j, name) in table.names.iter().enumerate() {
        if j > 0 {
            header.push(b',');
        }
        put_string(&mut header, name);
    }
    header.push(b'\n');
    out.write_all(&header)
        .map_err(|e| Error::io("cannot write the CSV output", e))
}

/// Write the rows of `table`, without a header: chunks of one table are written
/// one after the other under one header.
pub fn write_csv_rows(table: &Table, out: &mut impl Write) -> Result<()> {
    table.check()?;
    let io = |e| Error::io("cannot write the CSV output", e);
    if table.ncol() == 0 {
        return Ok(());
    }
    let nrow = table.nrow();
    let block = (WRITE_BLOCK_BYTES / row_bytes(table)).max(256);
    let mut buffers: Vec<(Vec<u8>, usize, usize)> = vec![(Vec::new(), 0, 0); threads()];
    let mut start = 0;
    while start < nrow {
        for (k, (_, lo, hi)) in buffers.iter_mut().enumerate() {
            *lo = (start + k * block).min(nrow);
            *hi = (*lo + block).min(nrow);
        }
        start = buffers.last().map_or(nrow, |b| b.2);
        std::thread::scope(|s| {
            let mut work = buffers.iter_mut();
            let first = work.next();
            let handles: Vec<_> = work
                .map(|(buf, lo, hi)| s.spawn(move || format_rows(table, *lo, *hi, buf)))
                .collect();
            if let Some((buf, lo, hi)) = first {
                format_rows(table, *lo, *hi, buf);
            }
            let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
            joined
                .into_iter()
                .try_for_each(|j| j)
                .map_err(|_| Error::internal("a table worker thread failed"))
        })?;
        for (buf, _, _) in &buffers {
            out.write_all(buf).map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

/// A guess at the bytes per row, to size the blocks.
fn row_bytes(table: &Table) -> usize {
    let width: usize = table
        .columns
        .iter()
        .map(|c| match c {
            Column::Logical(_) => 6,
            Column::Integer(_) => 8,
            Column::Double(_) => 20,
            Column::Character(v) => v.text_len() / v.len().max(1) + 3,
            Column::Date(_) => 11,
            Column::DateTime(..) => 28,
        })
        .sum();
    width.max(1)
}

fn format_rows(table: &Table, lo: usize, hi: usize, buf: &mut Vec<u8>) {
    let mut doubles = ryu::Buffer::new();
    let mut integers = itoa::Buffer::new();
    // Per number column, where the next missing value is among its positions.
    let mut next: Vec<usize> = table
        .columns
        .iter()
        .map(|c| match c {
            Column::Integer(v) => v.missing().partition_point(|&m| m < lo),
            Column::Double(v) => v.missing().partition_point(|&m| m < lo),
            Column::Date(v) => v.missing().partition_point(|&m| m < lo),
            Column::DateTime(v, _) => v.missing().partition_point(|&m| m < lo),
            _ => 0,
        })
        .collect();
    let mut missing = |positions: &[usize], j: usize, row: usize| {
        let hit = positions.get(next[j]) == Some(&row);
        next[j] += usize::from(hit);
        hit
    };
    buf.clear();
    for row in lo..hi {
        for (j, column) in table.columns.iter().enumerate() {
            if j > 0 {
                buf.push(b',');
            }
            match column {
                Column::Logical(v) => buf.extend_from_slice(match v[row] {
                    Some(true) => b"TRUE",
                    Some(false) => b"FALSE",
                    None => b"NA",
                }),
                Column::Integer(v) => match missing(v.missing(), j, row) {
                    false => buf.extend_from_slice(integers.format(v.values()[row]).as_bytes()),
                    true => buf.extend_from_slice(b"NA"),
                },
                Column::Double(v) => match (!missing(v.missing(), j, row)).then(|| v.values()[row])
                {
                    Some(d) if d.is_finite() => {
                        buf.extend_from_slice(doubles.format_finite(d).as_bytes())
                    }
                    Some(d) if d.is_nan() => buf.extend_from_slice(b"NaN"),
                    Some(d) if d > 0.0 => buf.extend_from_slice(b"Inf"),
                    Some(_) => buf.extend_from_slice(b"-Inf"),
                    None => buf.extend_from_slice(b"NA"),
                },
                Column::Character(v) => match v.get(row) {
                    Some(s) => put_string(buf, s),
                    None => buf.extend_from_slice(b"NA"),
                },
                Column::Date(v) => match missing(v.missing(), j, row) {
                    false => super::format_date(v.values()[row], buf),
                    true => buf.extend_from_slice(b"NA"),
                },
                Column::DateTime(v, _) => match missing(v.missing(), j, row) {
                    false => super::format_datetime(v.values()[row], buf),
                    true => buf.extend_from_slice(b"NA"),
                },
            }
        }
        buf.push(b'\n');
    }
}

/// A string field, quoted when it must be to read back the same: separators,
/// quotes, line breaks, and texts that would otherwise read as missing.
fn put_string(buf: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let quote = b.is_empty()
        || trim(b) == b"NA"
        || trim(b).len() != b.len()
        || b.iter().any(|c| matches!(c, b',' | b'"' | b'\n' | b'\r'));
    if !quote {
        buf.extend_from_slice(b);
        return;
    }
    buf.push(b'"');
    for &c in b {
        if c == b'"' {
            buf.push(b'"');
        }
        buf.push(c);
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chr(values: &[Option<&str>]) -> Column {
        Column::Character(values.iter().copied().collect())
    }

    fn hint(pairs: &[(&str, ColumnType)]) -> Vec<(String, ColumnType)> {
        pairs.iter().map(|(n, t)| (n.to_string(), *t)).collect()
    }

    fn roundtrip(table: &Table) -> Table {
        let mut out = Vec::new();
        write_csv(table, &mut out).unwrap();
        let types: Vec<(String, ColumnType)> = table
            .names
            .iter()
            .zip(&table.columns)
            .map(|(n, c)| (n.clone(), c.column_type()))
            .collect();
        read_csv(&out, &types).unwrap()
    }

    fn sample() -> Table {
        Table::new(
            vec![
                "lgl".into(),
                "int".into(),
                "dbl".into(),
                "chr".into(),
                "odd \"name\", too".into(),
            ],
            vec![
                Column::Logical(vec![Some(true), None, Some(false), Some(true), None, None]),
                Column::Integer(
                    vec![
                        Some(1),
                        Some(-7),
                        None,
                        Some(i32::MAX),
                        Some(i32::MIN + 1),
                        Some(0),
                    ]
                    .into_iter()
                    .collect(),
                ),
                Column::Double(
                    vec![
                        Some(0.1),
                        Some(1.0 / 3.0),
                        Some(1e-300),
                        Some(-0.0),
                        Some(9_007_199_254_740_993.0),
                        None,
                    ]
                    .into_iter()
                    .collect(),
                ),
                chr(&[
                    Some("plain"),
                    Some("with, comma"),
                    Some("with \"quotes\""),
                    Some("two\nlines\r\nhere"),
                    None,
                    Some(""),
                ]),
                chr(&[
                    Some("NA"),
                    Some(" NA"),
                    Some("  padded "),
                    Some("ünïcödé"),
                    Some("\""),
                    None,
                ]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn roundtrip_keeps_every_value_and_missing() {
        let table = sample();
        let back = roundtrip(&table);
        assert_eq!(back, table);
        // -0.0 == 0.0, so check the sign bit too.
        let Column::Double(v) = &back.columns[2] else {
            panic!("not double")
        };
        assert!(v.get(3).unwrap().is_sign_negative());
    }

    #[test]
    fn roundtrip_infers_the_same_types_without_a_hint() {
        let table = sample();
        let mut out = Vec::new();
        write_csv(&table, &mut out).unwrap();
        assert_eq!(read_csv(&out, &[]).unwrap(), table);
    }

    #[test]
    fn doubles_are_exact() {
        let values = [
            0.1,
            1.0 / 3.0,
            1e-300,
            -0.0,
            2f64.powi(53) + 2.0,
            1e300,
            5e-324,
            f64::MAX,
            123456789.0,
            -2.5e-7,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let table = Table::new(
            vec!["x".into()],
            vec![Column::Double(values.iter().map(|v| Some(*v)).collect())],
        )
        .unwrap();
        let mut out = Vec::new();
        write_csv(&table, &mut out).unwrap();
        let back = read_csv(&out, &[]).unwrap();
        let Column::Double(v) = &back.columns[0] else {
            panic!("not double: {back:?}")
        };
        for (a, b) in values.iter().zip(v.iter()) {
            assert_eq!(a.to_bits(), b.unwrap().to_bits(), "{a} came back as {b:?}");
        }
        let nan = Table::new(
            vec!["x".into()],
            vec![Column::Double(vec![Some(f64::NAN)].into_iter().collect())],
        )
        .unwrap();
        let mut out = Vec::new();
        write_csv(&nan, &mut out).unwrap();
        assert_eq!(out, b"x\nNaN\n");
        let back = read_csv(&out, &[]).unwrap();
        assert!(matches!(&back.columns[0], Column::Double(v) if v.get(0).unwrap().is_nan()));
    }

    #[test]
    fn writes_plain_text() {
        let table = Table::new(
            vec!["a".into(), "b".into(), "c".into(), "d".into()],
            vec![
                Column::Logical(vec![Some(true), None]),
                Column::Integer(vec![Some(42), None].into_iter().collect()),
                Column::Double(vec![Some(1.5), Some(3.0)].into_iter().collect()),
                chr(&[Some("x,y"), None]),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        write_csv(&table, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,b,c,d\nTRUE,42,1.5,\"x,y\"\nNA,NA,3.0,NA\n"
        );
    }

    #[test]
    fn writes_dates_as_iso_text_that_reads_back_as_text() {
        let table = Table::new(
            vec!["day".into(), "at".into()],
            vec![
                Column::Date(vec![Some(19_782), None, Some(-1)].into_iter().collect()),
                Column::DateTime(
                    vec![Some(1_709_214_307_250_000), Some(0), None]
                        .into_iter()
                        .collect(),
                    "Europe/Vienna".into(),
                ),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        write_csv(&table, &mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "day,at\n2024-02-29,2024-02-29T13:45:07.25Z\nNA,1970-01-01T00:00:00Z\n\
             1969-12-31,NA\n"
        );
        let back = read_csv(&out, &hint(&[("day", ColumnType::Date)])).unwrap();
        assert_eq!(
            back.columns[0],
            chr(&[Some("2024-02-29"), None, Some("1969-12-31")])
        );
        assert_eq!(back.columns[1].column_type(), ColumnType::Character);
    }

    #[test]
    fn infers_column_types() {
        let csv = b"l,i,d,s,n,big,mixed,lnum\n\
                    T,1,1.5,a,,2147483647,1,TRUE\n\
                    false,NA,NA,NA,NA,2147483648,x,2\n\
                    true,-3, 2e3 ,b,,1,2.5,NA\n";
        let t = read_csv(csv, &[]).unwrap();
        let types: Vec<ColumnType> = t.columns.iter().map(Column::column_type).collect();
        use ColumnType::*;
        assert_eq!(
            types,
            [Logical, Integer, Double, Character, Logical, Double, Character, Character]
        );
        assert_eq!(
            t.columns[1],
            Column::Integer(vec![Some(1), None, Some(-3)].into_iter().collect())
        );
        assert_eq!(
            t.columns[2],
            Column::Double(vec![Some(1.5), None, Some(2000.0)].into_iter().collect())
        );
        assert_eq!(t.columns[4], Column::Logical(vec![None, None, None]));
        assert_eq!(t.columns[6], chr(&[Some("1"), Some("x"), Some("2.5")]));
        assert_eq!(t.columns[7], chr(&[Some("TRUE"), Some("2"), None]));
        // R's NA_integer_ is no integer value.
        let t = read_csv(b"x\n-2147483648\n", &[]).unwrap();
        assert_eq!(
            t.columns[0],
            Column::Double(vec![Some(-2147483648.0)].into_iter().collect())
        );
        // Words that only look like special doubles stay text.
        let t = read_csv(b"x\nNaN\nInf\n-Inf\n", &[]).unwrap();
        assert!(matches!(&t.columns[0], Column::Double(v) if v.get(1) == Some(f64::INFINITY)));
        let t = read_csv(b"x\nNan\n", &[]).unwrap();
        assert_eq!(t.columns[0], chr(&[Some("Nan")]));
    }

    #[test]
    fn hints_choose_the_type() {
        let csv = b"a,b,c,d\n1,1,1,TRUE\n2,,3.0,F\nNA,x,NA,NA\n";
        let h = hint(&[
            ("a", ColumnType::Double),
            ("b", ColumnType::Character),
            ("c", ColumnType::Integer),
            ("d", ColumnType::Logical),
            ("not there", ColumnType::Integer),
        ]);
        let t = read_csv(csv, &h).unwrap();
        assert_eq!(
            t.columns[0],
            Column::Double(vec![Some(1.0), Some(2.0), None].into_iter().collect())
        );
        assert_eq!(t.columns[1], chr(&[Some("1"), None, Some("x")]));
        assert_eq!(
            t.columns[2],
            Column::Integer(vec![Some(1), Some(3), None].into_iter().collect())
        );
        assert_eq!(
            t.columns[3],
            Column::Logical(vec![Some(true), Some(false), None])
        );
    }

    #[test]
    fn hint_mismatches_name_line_and_column() {
        let csv = b"a,b\n1,2\n3,4.5\n";
        let err = read_csv(csv, &hint(&[("b", ColumnType::Integer)])).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Input);
        assert_eq!(
            err.message,
            "line 3, column \"b\": expected an integer, found \"4.5\""
        );
        let err = read_csv(b"a\nyes\n", &hint(&[("a", ColumnType::Logical)])).unwrap_err();
        assert!(
            err.message.contains("expected a logical"),
            "{}",
            err.message
        );
        let err = read_csv(b"a\n1\nabc\n", &hint(&[("a", ColumnType::Double)])).unwrap_err();
        assert_eq!(
            err.message,
            "line 3, column \"a\": expected a number, found \"abc\""
        );
    }

    #[test]
    fn quoting_and_line_endings() {
        let csv = b"\xEF\xBB\xBFname,\"note\"\r\n\
                    \"a, b\",\"say \"\"hi\"\"\"\r\n\
                    c,\"multi\r\nline\"\r\n\
                    \"\",NA\r\n\
                    \"NA\",\r\n";
        let t = read_csv(csv, &[]).unwrap();
        assert_eq!(t.names, ["name", "note"]);
        assert_eq!(
            t.columns[0],
            chr(&[Some("a, b"), Some("c"), Some(""), Some("NA")])
        );
        assert_eq!(
            t.columns[1],
            chr(&[Some("say \"hi\""), Some("multi\r\nline"), None, None])
        );
    }

    #[test]
    fn blank_lines_and_edges() {
        let t = read_csv(b"a,b\n1,2\n\n3,4", &[]).unwrap();
        assert_eq!(
            t.columns[0],
            Column::Integer(vec![Some(1), Some(3)].into_iter().collect())
        );
        // One column: a blank line is a missing value.
        let t = read_csv(b"a\n1\n\n3\n", &[]).unwrap();
        assert_eq!(
            t.columns[0],
            Column::Integer(vec![Some(1), None, Some(3)].into_iter().collect())
        );
        let t = read_csv(b"a,b\n", &[]).unwrap();
        assert_eq!(t.nrow(), 0);
        assert_eq!(t.columns[0], Column::Logical(vec![]));
        let t = read_csv(b"a,b", &hint(&[("b", ColumnType::Double)])).unwrap();
        assert_eq!(t.columns[1], Column::Double(vec![].into_iter().collect()));
        assert_eq!(read_csv(b"", &[]).unwrap(), Table::default());
    }

    #[test]
    fn malformed_input_names_the_line() {
        let cases: [(&[u8], &str); 7] = [
            (b"a,b,c\n1,2,3\n4,5\n", "line 3: expected 3 fields, found 2"),
            (b"a,b\n1,2\n3,4,5,6\n", "line 3: expected 2 fields, found 4"),
            (
                b"a,b\n1,2\n\"3,4\n5,6\n",
                "line 3: a quoted field is not closed",
            ),
            (
                b"a,b\n1,\"2\"x\n",
                "line 2: expected a comma or a line end after a closing quote",
            ),
            (b"a,b\n1,2\"\n", "line 2: a quote inside an unquoted field"),
            (
                b"a,b\n\"x\ny\",1\nz,2,3\n",
                "line 4: expected 2 fields, found 3",
            ),
            (
                b"a\n\xff\n",
                "line 2, column \"a\": the text is not valid UTF-8",
            ),
        ];
        for (csv, message) in cases {
            let err = read_csv(csv, &[]).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::Input);
            assert_eq!(err.message, message);
        }
    }

    /// Rows with quoted line breaks everywhere, big enough for several chunks.
    fn big_csv(rows: usize, quoted: bool) -> (Vec<u8>, Vec<i32>) {
        let mut csv = b"id,x,s\n".to_vec();
        let mut ids = Vec::new();
        for i in 0..rows {
            let id = i as i32;
            ids.push(id);
            let s = if quoted && i % 3 == 0 {
                format!("\"line\n{i}, \"\"q\"\"\"")
            } else {
                format!("s{i}")
            };
            csv.extend_from_slice(format!("{id},{},{s}\n", i as f64 / 7.0).as_bytes());
        }
        (csv, ids)
    }

    #[test]
    fn shards_cover_every_row_once() {
        for quoted in [false, true] {
            let (csv, ids) = big_csv(2000, quoted);
            let h = hint(&[("id", ColumnType::Integer), ("s", ColumnType::Character)]);
            let whole = read_csv(&csv, &h).unwrap();
            for shards in 1..=7 {
                let mut seen = Vec::new();
                let mut strings = Vec::new();
                for shard in 0..shards {
                    let t = read_csv_rows(&csv, &h, shard, shards).unwrap();
                    let Column::Integer(v) = &t.columns[0] else {
                        panic!("id not integer")
                    };
                    seen.extend(v.iter().map(|x| x.unwrap()));
                    let Column::Character(s) = &t.columns[2] else {
                        panic!("s not character")
                    };
                    strings.extend(s.iter().map(|x| x.map(str::to_owned)));
                }
                assert_eq!(seen, ids, "shards = {shards}, quoted = {quoted}");
                assert_eq!(
                    Column::Character(strings.into_iter().collect()),
                    whole.columns[2]
                );
            }
        }
        assert!(read_csv_rows(b"a\n1\n", &[], 2, 2).is_err());
    }

    #[test]
    fn parallel_chunks_agree_with_one_chunk() {
        // Over MIN_CHUNK_BYTES per thread, with the type changing late in the file.
        for quoted in [false, true] {
            let (mut csv, _) = big_csv(120_000, quoted);
            csv.extend_from_slice(b"1.5,x,late text\n");
            let t = read_csv(&csv, &[]).unwrap();
            assert_eq!(t.nrow(), 120_001);
            assert_eq!(t.columns[0].column_type(), ColumnType::Double);
            assert_eq!(t.columns[1].column_type(), ColumnType::Character);
            let Column::Character(x) = &t.columns[1] else {
                panic!("x not character")
            };
            assert_eq!(x.get(7), Some("1"));
            assert_eq!(x.get(120_000), Some("x"));
            let mut out = Vec::new();
            write_csv(&t, &mut out).unwrap();
            assert_eq!(read_csv(&out, &[]).unwrap(), t);
        }
    }

    fn temp_file(name: &str, bytes: &[u8]) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("serverless-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        (path, file)
    }

    fn all_chunks(bytes: &[u8], hint: &[(String, ColumnType)], chunk: usize) -> Vec<Table> {
        let (path, file) = temp_file(&format!("chunks-{chunk}.csv"), bytes);
        let mut chunks = CsvChunks::open(file, hint, chunk).unwrap();
        let mut out = Vec::new();
        while let Some(t) = chunks.next_chunk().unwrap() {
            out.push(t);
        }
        std::fs::remove_file(path).unwrap();
        out
    }

    #[test]
    fn chunks_hold_every_record_once_whatever_the_chunk_size() {
        // A byte order mark, quoted line breaks and commas, doubled quotes, CRLF, and
        // no line break at the end.
        let mut text = b"\xEF\xBB\xBFid,\"note, long\",x\r\n".to_vec();
        for i in 0..200 {
            match i % 4 {
                0 => text.extend(format!("{i},\"two\nlines\",{i}.5\n").bytes()),
                1 => text.extend(format!("{i},\"say \"\"hi\"\"\",NA\r\n").bytes()),
                2 => text.extend(format!("{i},,{i}\n").bytes()),
                _ => text.extend(format!("{i},plain {i},-{i}e3\n").bytes()),
            }
        }
        text.extend(b"200,last,1");
        let hint = hint(&[("x", ColumnType::Double)]);
        let whole = read_csv(&text, &hint).unwrap();
        assert_eq!(whole.nrow(), 201);
        for chunk in [1, 10, 100, 1000, 1 << 20] {
            let got = all_chunks(&text, &hint, chunk);
            assert_eq!(
                got.iter().map(Table::nrow).sum::<usize>(),
                201,
                "chunk {chunk}"
            );
            assert_eq!(got[0].names, whole.names);
            let mut joined = Vec::new();
            write_csv_header(&got[0], &mut joined).unwrap();
            for t in &got {
                write_csv_rows(t, &mut joined).unwrap();
            }
            let mut expected = Vec::new();
            write_csv(&whole, &mut expected).unwrap();
            assert_eq!(
                String::from_utf8(joined).unwrap(),
                String::from_utf8(expected).unwrap()
            );
            if chunk == 1 {
                // Each read doubles until a record ends in it, so a chunk holds a
                // record or a few, never none.
                assert!(got.len() >= 100 && got.iter().all(|t| t.nrow() > 0));
            }
            if chunk == 1 << 20 {
                assert_eq!(got.len(), 1);
            }
        }
    }

    #[test]
    fn a_chunk_reports_the_files_line_numbers() {
        let mut text = b"a,b\n".to_vec();
        for i in 0..100 {
            text.extend(format!("{i},{i}\n").bytes());
        }
        text.extend(b"100,\"unclosed\n");
        let (path, file) = temp_file("lines.csv", &text);
        let mut chunks = CsvChunks::open(file, &[], 64).unwrap();
        let e = loop {
            match chunks.next_chunk() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error"),
                Err(e) => break e.to_string(),
            }
        };
        std::fs::remove_file(path).unwrap();
        assert!(e.contains("line 102"), "{e}");
    }

    #[test]
    fn a_header_only_file_gives_one_table_without_rows() {
        let got = all_chunks(b"a,b\n", &[], 4);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].names, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(got[0].nrow(), 0);
        let got = all_chunks(b"", &[], 4);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ncol(), 0);
    }
}
