//! The "docker build" of ACR Tasks quick builds: reads the uploaded context, parses
//! the Dockerfile and checks what a real build would trip over that can be known
//! without running it: unknown instructions, bad image references, a base image of
//! its own registry that was never pushed, missing COPY sources, serveRless installed
//! from a package repository (it is published in none), an `R CMD INSTALL` or
//! `sha256sum -c` of a tarball the context does not hold as named, R package pins the
//! host cannot honour, and pins a loopback repository's `PACKAGES` index lacks.
//! Nothing is executed: the image is only its configuration, because the emulated
//! containers run the host's programs (and R with the host's library). What it cannot
//! know: whether a public repository (CRAN, Posit Package Manager) has a version or a
//! binary of it, whether system libraries suffice, and anything else a RUN step does.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::PathBuf;

/// What an image runs and carries, as recorded in the registry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    /// External base images (`FROM`s that are not earlier stages), in order.
    pub base_images: Vec<String>,
    /// The R packages its RUN steps install beyond R's own: pins (`pkg==version`) and
    /// `R CMD INSTALL`ed tarballs, in order. Locally its containers see only these.
    pub pins: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub exposed_ports: Vec<String>,
}

/// What to build.
pub struct BuildInput<'a> {
    /// The uploaded `tar.gz`.
    pub context: &'a [u8],
    pub dockerfile_path: &'a str,
    pub build_args: &'a [(String, String)],
    pub target: Option<&'a str>,
    pub r_library_paths: &'a [PathBuf],
    /// The login server of the registry the build runs in, and the images it holds
    /// (`(repository, tag)`): a `FROM` of this registry must name one of them.
    pub own_registry: Option<&'a str>,
    pub own_images: &'a HashMap<(String, String), ImageConfig>,
}

/// The outcome of a build, as log chunks (one per step) and maybe an image.
#[derive(Debug, Default)]
pub struct Build {
    /// Set when the build could not start (bad archive, no Dockerfile): log lines.
    pub scan_error: Option<Vec<String>>,
    /// The `docker build` output, one chunk per step (plus a leading one).
    pub steps: Vec<Vec<String>>,
    /// Present when every step passed.
    pub image: Option<ImageConfig>,
}

/// Regular files and directories of the build context (normalised relative paths),
/// and the bytes of its tarballs (what `R CMD INSTALL` and `sha256sum` read).
struct Context {
    files: BTreeSet<String>,
    dirs: BTreeSet<String>,
    tarballs: HashMap<String, Vec<u8>>,
}

/// `./a//b/` -> `a/b`; `None` for paths leaving the context.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Reads the context's paths, and the Dockerfile's text if it is there.
fn read_context(bytes: &[u8], dockerfile: &str) -> Result<(Context, Option<String>), String> {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut archive = tar::Archive::new(gz);
    let mut ctx = Context {
        files: BTreeSet::new(),
        dirs: BTreeSet::new(),
        tarballs: HashMap::new(),
    };
    let mut text = None;
    let entries = archive.entries().map_err(|e| e.to_string())?;
    for entry in entries {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = normalize(&raw) else {
            continue;
        };
        if path.is_empty() {
            continue;
        }
        // Every ancestor is a directory of the context.
        let mut prefix = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            ctx.dirs.insert(prefix.clone());
        }
        if entry.header().entry_type().is_dir() {
            ctx.dirs.insert(path);
            continue;
        }
        if path == dockerfile {
            let mut s = String::new();
            entry
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            text = Some(s);
        } else if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            ctx.tarballs.insert(path.clone(), bytes);
        }
        ctx.files.insert(path);
    }
    Ok((ctx, text))
}

/// Shell-style wildcard match of one path (`*` and `?` never match `/`).
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pattern[1..], text)
                || (text.first().is_some_and(|c| *c != b'/') && wildcard(pattern, &text[1..]))
        }
        (Some(b'?'), Some(c)) if *c != b'/' => wildcard(&pattern[1..], &text[1..]),
        (Some(p), Some(c)) if p == c => wildcard(&pattern[1..], &text[1..]),
        _ => false,
    }
}

impl Context {
    fn has(&self, source: &str) -> bool {
        let Some(src) = normalize(source) else {
            return false;
        };
        if src.is_empty() {
            return true;
        }
        if src.contains(['*', '?']) {
            return self
                .files
                .iter()
                .chain(self.dirs.iter())
                .any(|p| wildcard(src.as_bytes(), p.as_bytes()));
        }
        self.files.contains(&src) || self.dirs.contains(&src)
    }

    /// The tarball a path inside the image came from, by file name (the templates
    /// COPY `x.tar.gz` to `/tmp/x.tar.gz`).
    fn tarball_named(&self, image_path: &str) -> Option<(&str, &[u8])> {
        let name = image_path.rsplit('/').next()?;
        self.tarballs
            .iter()
            .find(|(p, _)| p.rsplit('/').next() == Some(name))
            .map(|(p, b)| (p.as_str(), b.as_slice()))
    }
}

/// `Package` and `Version` of the R package in a source or binary tarball.
fn tarball_package(bytes: &[u8]) -> Option<(String, String)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.to_string_lossy().into_owned();
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() == 2 && parts[1] == "DESCRIPTION" {
            let mut text = String::new();
            entry.read_to_string(&mut text).ok()?;
            let field = |f: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(f))
                    .map(|v| v.trim().to_string())
            };
            return Some((field("Package:")?, field("Version:")?));
        }
    }
    None
}

/// A CRAN-like repository the build can read: plain http on a loopback address.
fn loopback_repo(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(name, "127.0.0.1" | "localhost")
        .then(|| (host.to_string(), format!("/{}", path.trim_end_matches('/'))))
}

/// GET over HTTP/1.0 from a loopback repository: the body, or `None` for a non-2xx.
fn loopback_get(host: &str, path: &str) -> Result<Option<Vec<u8>>, String> {
    use std::io::Write;
    use std::net::{TcpStream, ToSocketAddrs};
    let timeout = std::time::Duration::from_secs(10);
    let addr = host
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut conn = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    conn.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let ok = head
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'));
    Ok(ok.then(|| raw[split + 4..].to_vec()))
}

/// What a loopback repository holds: `PACKAGES` (name -> current version), and
/// whether an older version is in its `Archive`.
struct RepoIndex {
    host: String,
    path: String,
    current: HashMap<String, String>,
}

impl RepoIndex {
    fn read(url: &str) -> Option<Result<RepoIndex, String>> {
        let (host, path) = loopback_repo(url)?;
        let body = match loopback_get(&host, &format!("{path}/src/contrib/PACKAGES")) {
            Ok(Some(b)) => b,
            Ok(None) => return Some(Err(format!("{url}/src/contrib/PACKAGES was not found"))),
            Err(e) => return Some(Err(format!("cannot read {url}/src/contrib/PACKAGES: {e}"))),
        };
        let text = String::from_utf8_lossy(&body);
        let mut current = HashMap::new();
        for record in text.split("\n\n") {
            let field = |f: &str| {
                record
                    .lines()
                    .find_map(|l| l.strip_prefix(f))
                    .map(|v| v.trim().to_string())
            };
            if let (Some(p), Some(v)) = (field("Package:"), field("Version:")) {
                current.insert(p, v);
            }
        }
        Some(Ok(RepoIndex {
            host,
            path,
            current,
        }))
    }

    fn has(&self, pkg: &str, version: &str) -> bool {
        if self
            .current
            .get(pkg)
            .is_some_and(|v| same_version(v, version))
        {
            return true;
        }
        let archived = format!(
            "{}/src/contrib/Archive/{pkg}/{pkg}_{version}.tar.gz",
            self.path
        );
        matches!(loopback_get(&self.host, &archived), Ok(Some(_)))
    }
}

/// Does this RUN install serveRless from a package repository? Returns the repository
/// named, if any.
fn installs_serverless_from_repo(run: &str) -> Option<Option<String>> {
    const INSTALLERS: &[&str] = &[
        "install.packages(",
        "install2.r",
        "pak::",
        "remotes::install_",
        "BiocManager::install(",
    ];
    if !run.contains("serveRless") || !INSTALLERS.iter().any(|i| run.contains(i)) {
        return None;
    }
    let repo = run.split("repos").nth(1).and_then(|rest| {
        let start = rest.find(['"', '\''])?;
        let quote = rest[start..].chars().next()?;
        let body = &rest[start + 1..];
        body.find(quote).map(|end| body[..end].to_string())
    });
    Some(repo)
}

/// One Dockerfile instruction, continuation lines joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// 1-based line where it starts.
    pub line: usize,
    /// Uppercased.
    pub keyword: String,
    pub args: String,
}

/// Docker's default PATH (what most base images set).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The instructions a local build understands.
const KNOWN: &[&str] = &[
    "FROM",
    "RUN",
    "COPY",
    "ENV",
    "ARG",
    "LABEL",
    "USER",
    "WORKDIR",
    "CMD",
    "ENTRYPOINT",
    "EXPOSE",
];

/// Docker instructions the local build does not do (they fail the build, with a
/// message saying so rather than "unknown").
const UNSUPPORTED: &[&str] = &[
    "ADD",
    "VOLUME",
    "HEALTHCHECK",
    "SHELL",
    "STOPSIGNAL",
    "ONBUILD",
    "MAINTAINER",
];

/// Splits a Dockerfile into instructions: parser directives (`# syntax=`,
/// `# escape=`), comments, blank lines and escaped line continuations.
pub fn parse(text: &str) -> Result<(Vec<Instruction>, char), String> {
    let mut escape = '\\';
    let mut lines = text.lines().enumerate().peekable();
    // Parser directives: only at the very top, before any comment or blank line.
    while let Some((_, line)) = lines.peek() {
        let Some(rest) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            break;
        }
        if key == "escape" {
            escape = match value.trim() {
                "\\" => '\\',
                "`" => '`',
                other => return Err(format!("invalid ESCAPE '{other}'. Must be ` or \\")),
            };
        }
        lines.next();
    }
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in lines {
        let trimmed = line.trim();
        if pending.is_some() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            // Blank and comment lines inside a continuation are dropped.
            continue;
        }
        if pending.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let body = line.trim_end();
        let (body, continues) = match body.strip_suffix(escape) {
            Some(b) => (b, true),
            None => (body, false),
        };
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        acc.push_str(if acc.is_empty() {
            body.trim_start()
        } else {
            body
        });
        if continues {
            pending = Some((start, acc));
        } else {
            out.push(instruction(start, &acc)?);
        }
    }
    if let Some((start, acc)) = pending {
        out.push(instruction(start, &acc)?);
    }
    Ok((out, escape))
}

fn instruction(line: usize, text: &str) -> Result<Instruction, String> {
    let (word, args) = match text.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (text, ""),
    };
    let keyword = word.to_ascii_uppercase();
    if UNSUPPORTED.contains(&keyword.as_str()) {
        return Err(format!(
            "dockerfile parse error line {line}: the local Azure does not support the {keyword} instruction (supported: {})",
            KNOWN.join(", ")
        ));
    }
    if !KNOWN.contains(&keyword.as_str()) {
        return Err(format!(
            "dockerfile parse error line {line}: unknown instruction: {word}"
        ));
    }
    Ok(Instruction {
        line,
        keyword,
        args: args.to_string(),
    })
}

/// Splits an instruction's arguments into words the way Docker does for ENV, LABEL,
/// COPY, FROM...: quotes group and are removed, the escape character escapes, and
/// `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR:+word}` expand (not inside single quotes).
fn words(s: &str, vars: &HashMap<String, String>, escape: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '\'') | (None, '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, c) if c == escape => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => cur.push(c),
                }
            }
            (_, '$') => {
                in_word = true;
                cur.push_str(&expand_var(&mut chars, vars)?);
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err(format!(
            "unexpected end of statement while looking for matching quote in: {s}"
        ));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn expand_var(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    vars: &HashMap<String, String>,
) -> Result<String, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if chars.peek() == Some(&'{') {
        chars.next();
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if !is_name(c) {
                break;
            }
            name.push(c);
            chars.next();
        }
        let value = vars.get(&name).cloned().unwrap_or_default();
        match chars.next() {
            Some('}') => Ok(value),
            Some(':') => {
                let op = chars.next();
                let mut word = String::new();
                let mut depth = 0;
                loop {
                    match chars.next() {
                        Some('}') if depth == 0 => break,
                        Some(c) => {
                            if c == '{' {
                                depth += 1;
                            } else if c == '}' {
                                depth -= 1;
                            }
                            word.push(c);
                        }
                        None => return Err(format!("missing '}}' in ${{{name}")),
                    }
                }
                let word = words(&word, vars, '\\')?.join(" ");
                match op {
                    Some('-') => Ok(if value.is_empty() { word } else { value }),
                    Some('+') => Ok(if value.is_empty() {
                        String::new()
                    } else {
                        word
                    }),
                    _ => Err(format!("unsupported modifier in ${{{name}:...}}")),
                }
            }
            _ => Err(format!("missing '}}' in ${{{name}")),
        }
    } else {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if !is_name(c) {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            return Ok("$".into());
        }
        Ok(vars.get(&name).cloned().unwrap_or_default())
    }
}

/// `KEY=value ...` pairs (ENV, LABEL), or the legacy `KEY value with spaces` form.
fn key_values(
    keyword: &str,
    args: &str,
    vars: &HashMap<String, String>,
    escape: char,
) -> Result<Vec<(String, String)>, String> {
    let ws = words(args, vars, escape)?;
    if ws.is_empty() {
        return Err(format!("{keyword} requires at least one argument"));
    }
    if !ws[0].contains('=') {
        if keyword != "ENV" || ws.len() < 2 {
            return Err(format!(
                "{keyword} names can not be blank / must have a value"
            ));
        }
        return Ok(vec![(ws[0].clone(), ws[1..].join(" "))]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!(
                "Syntax error - can't find = in \"{w}\". Must be of the form: name=value"
            )),
        })
        .collect()
}

/// The exec form (`["a","b"]`) when the arguments are a JSON array of strings.
fn exec_form(args: &str) -> Option<Vec<String>> {
    if !args.trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(args).ok()
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`: one path component of a repository.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or any number of "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|x| x == '-');
        if !ok {
            return false;
        }
    }
    true
}

/// A repository path: lowercase components separated by `/`.
pub fn valid_repository(repo: &str) -> bool {
    !repo.is_empty() && repo.len() <= 255 && repo.split('/').all(valid_path_component)
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.split('.').all(label_ok)
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
}

/// An image reference split into its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    /// `host[:port]` when the reference names a registry.
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Parses `[registry[:port]/]path[:tag][@sha256:hex]`.
pub fn parse_reference(reference: &str) -> Result<ImageRef, String> {
    let invalid = |why: &str| format!("invalid reference format{why}");
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => {
            let hex = d
                .strip_prefix("sha256:")
                .ok_or_else(|| invalid(": only sha256 digests are supported"))?;
            if hex.len() != 64
                || !hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            {
                return Err(invalid(": invalid digest"));
            }
            (r, Some(d.to_string()))
        }
        None => (reference, None),
    };
    let (name, tag) = match rest.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
        _ => (rest, None),
    };
    if let Some(t) = &tag {
        if !valid_tag(t) {
            return Err(invalid(""));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let registry = if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        let host = parts.remove(0);
        if !valid_host(host) {
            return Err(invalid(""));
        }
        Some(host.to_string())
    } else {
        None
    };
    let repository = parts.join("/");
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid(": repository name must be lowercase"));
    }
    if !valid_repository(&repository) {
        return Err(invalid(""));
    }
    Ok(ImageRef {
        registry,
        repository,
        tag,
        digest,
    })
}

/// `^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]==[0-9]+([.-][0-9]+)+$`: an R package pin.
pub fn parse_pin(token: &str) -> Option<(String, String)> {
    let (name, version) = token.split_once("==")?;
    let nb = name.as_bytes();
    let name_ok = nb.len() >= 2
        && nb[0].is_ascii_alphabetic()
        && nb[nb.len() - 1].is_ascii_alphanumeric()
        && nb.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'.');
    let mut groups = version.split(['.', '-']);
    let numeric = |g: &str| !g.is_empty() && g.chars().all(|c| c.is_ascii_digit());
    let version_ok =
        groups.next().is_some_and(numeric) && version.contains(['.', '-']) && groups.all(numeric);
    (name_ok && version_ok).then(|| (name.to_string(), version.to_string()))
}

/// R's version order: numeric components, `.` and `-` alike.
fn same_version(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['.', '-'])
            .map(|p| p.trim().parse().unwrap_or(u64::MAX))
            .collect()
    };
    parts(a) == parts(b)
}

impl ImageConfig {
    /// Records that the image holds `pkg` at `version` (a later install replaces it).
    fn pin(&mut self, pkg: String, version: String) {
        self.pins.retain(|(p, _)| *p != pkg);
        self.pins.push((pkg, version));
    }
}

/// The `Version:` of `<lib>/<pkg>/DESCRIPTION` in the first library that has it.
pub(crate) fn host_version(libs: &[PathBuf], pkg: &str) -> Option<(String, PathBuf)> {
    for lib in libs {
        let path = lib.join(pkg).join("DESCRIPTION");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let version = text
            .lines()
            .find_map(|l| l.strip_prefix("Version:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        return Some((version, lib.clone()));
    }
    None
}

fn short_id() -> String {
    crate::util::random_bytes::<6>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One build stage: its name and what it has accumulated.
struct Stage {
    name: Option<String>,
    config: ImageConfig,
    /// ARGs and ENVs visible to later instructions.
    vars: HashMap<String, String>,
}

/// Runs the build "steps": every instruction is checked, none is executed.
pub fn build(input: &BuildInput<'_>) -> Build {
    let mut out = Build::default();
    let dockerfile = normalize(input.dockerfile_path).unwrap_or_default();
    let (ctx, text) = match read_context(input.context, &dockerfile) {
        Ok(x) => x,
        Err(e) => {
            out.scan_error = Some(vec![format!("failed to extract the build context: {e}")]);
            return out;
        }
    };
    let Some(text) = text else {
        out.scan_error = Some(vec![
            format!(
                "failed to find Dockerfile '{}' in the build context",
                input.dockerfile_path
            ),
            format!(
                "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat /workspace/{dockerfile}: no such file or directory"
            ),
        ]);
        return out;
    };
    let context_line = format!(
        "Sending build context to Docker daemon  {:.3}kB",
        input.context.len() as f64 / 1000.0
    );
    let (instructions, escape) = match parse(&text) {
        Ok(x) => x,
        Err(e) => {
            out.steps.push(vec![
                context_line,
                format!("Error response from daemon: {e}"),
            ]);
            return out;
        }
    };
    out.steps.push(vec![context_line]);
    if instructions.is_empty() {
        out.steps.push(vec![
            "Error response from daemon: the Dockerfile cannot be empty".into(),
        ]);
        return out;
    }
    let total = instructions.len();
    let build_args: HashMap<String, String> = input.build_args.iter().cloned().collect();
    let mut consumed: BTreeSet<String> = BTreeSet::new();
    let mut meta_vars: HashMap<String, String> = HashMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut reached_target = input.target.is_none();
    for (n, ins) in instructions.iter().enumerate() {
        if input.target.is_some() && ins.keyword == "FROM" && reached_target {
            // Everything after the target stage is not built.
            break;
        }
        let mut lines = vec![format!(
            "Step {}/{total} : {} {}",
            n + 1,
            ins.keyword,
            ins.args
        )];
        let result = step(
            ins,
            escape,
            &ctx,
            input,
            &build_args,
            &mut consumed,
            &mut meta_vars,
            &mut stages,
            &mut lines,
        );
        if let Err(e) = result {
            lines.extend(e);
            out.steps.push(lines);
            return out;
        }
        if let (Some(t), Some(stage)) = (input.target, stages.last()) {
            if ins.keyword == "FROM"
                && stage
                    .name
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(t))
            {
                reached_target = true;
            }
        }
        lines.push(format!(" ---> {}", short_id()));
        out.steps.push(lines);
    }
    if let Some(t) = input.target {
        if !reached_target {
            out.steps.push(vec![format!(
                "failed to reach build target {t} in Dockerfile"
            )]);
            return out;
        }
    }
    let unused: Vec<&String> = build_args
        .keys()
        .filter(|k| !consumed.contains(*k))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        out.steps.push(vec![format!(
            "[Warning] One or more build-args [{}] were not consumed",
            names.join(" ")
        )]);
    }
    out.image = stages.pop().map(|s| s.config);
    out
}

/// One instruction. Errors are the log lines that end the build.
#[allow(clippy::too_many_arguments)]
fn step(
    ins: &Instruction,
    escape: char,
    ctx: &Context,
    input: &BuildInput<'_>,
    build_args: &HashMap<String, String>,
    consumed: &mut BTreeSet<String>,
    meta_vars: &mut HashMap<String, String>,
    stages: &mut Vec<Stage>,
    lines: &mut Vec<String>,
) -> Result<(), Vec<String>> {
    let fail = |msg: String| vec![msg];
    let kw = ins.keyword.as_str();
    if kw == "ARG" && stages.is_empty() {
        // An ARG before the first FROM is only for FROM lines.
        let (name, value) = arg_decl(&ins.args, meta_vars, escape).map_err(fail)?;
        let value = build_args.get(&name).cloned().or(value).unwrap_or_default();
        if build_args.contains_key(&name) {
            consumed.insert(name.clone());
        }
        meta_vars.insert(name, value);
        return Ok(());
    }
    if kw == "FROM" {
        let ws = words(&ins.args, meta_vars, escape).map_err(fail)?;
        let ws: Vec<String> = ws
            .into_iter()
            .filter(|w| !w.starts_with("--platform="))
            .collect();
        let (image, alias) = match ws.as_slice() {
            [image] => (image.clone(), None),
            [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !ok {
                    return Err(fail(format!(
                        "invalid name for build stage: \"{name}\", name can't start with a number or contain symbols"
                    )));
                }
                (image.clone(), Some(name.to_ascii_lowercase()))
            }
            _ => {
                return Err(fail(
                    "FROM requires either one or three arguments".to_string(),
                ))
            }
        };
        let earlier = stages
            .iter()
            .find(|s| s.name.as_deref() == Some(image.to_ascii_lowercase().as_str()));
        let mut own_base = None;
        let config = match earlier {
            Some(s) => s.config.clone(),
            None => {
                let r = parse_reference(&image).map_err(fail)?;
                let own = r.registry.as_deref().zip(input.own_registry);
                if let Some((host, own)) = own.filter(|(h, o)| h.eq_ignore_ascii_case(o)) {
                    // An image of the registry the run is in: it must have been pushed,
                    // and the new image starts from its configuration.
                    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
                    let Some(base) = input.own_images.get(&(r.repository.clone(), tag.clone()))
                    else {
                        return Err(fail(format!(
                            "failed to solve: {host}/{}:{tag}: not found (manifest unknown: the registry {own} has no such tag)",
                            r.repository
                        )));
                    };
                    lines.push(format!(
                        "local Azure: {image} is an image of this registry; the new image starts from its configuration"
                    ));
                    own_base = Some(base.clone());
                    ImageConfig {
                        base_images: vec![image.clone()],
                        ..base.clone()
                    }
                } else {
                    ImageConfig {
                        base_images: vec![image.clone()],
                        ..ImageConfig::default()
                    }
                }
            }
        };
        // An external base image's own ENV is unknown; assume the usual PATH so that
        // `ENV PATH=/x:$PATH` keeps the standard directories.
        let vars = match (earlier, own_base) {
            (Some(s), _) => s.vars.clone(),
            (None, Some(base)) => {
                let mut v = HashMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]);
                v.extend(base.env.iter().cloned());
                v
            }
            (None, None) => HashMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]),
        };
        stages.push(Stage {
            name: alias,
            config,
            vars,
        });
        return Ok(());
    }
    let carried = if kw == "COPY" {
        copied_r_packages(&ins.args, stages)
    } else {
        Vec::new()
    };
    let Some(stage) = stages.last_mut() else {
        return Err(fail(format!(
            "dockerfile parse error line {}: {} before the first FROM: no build stage in current context",
            ins.line, ins.keyword
        )));
    };
    match kw {
        "ARG" => {
            let (name, value) = arg_decl(&ins.args, &stage.vars, escape).map_err(fail)?;
            // A stage's ARG without a default takes the global one of that name.
            let value = build_args
                .get(&name)
                .cloned()
                .or(value)
                .or_else(|| meta_vars.get(&name).cloned())
                .unwrap_or_default();
            if build_args.contains_key(&name) {
                consumed.insert(name.clone());
            }
            stage.vars.insert(name, value);
        }
        "ENV" => {
            for (k, v) in key_values("ENV", &ins.args, &stage.vars, escape).map_err(fail)? {
                stage.vars.insert(k.clone(), v.clone());
                stage.config.env.retain(|(x, _)| *x != k);
                stage.config.env.push((k, v));
            }
        }
        "LABEL" => {
            for (k, v) in key_values("LABEL", &ins.args, &stage.vars, escape).map_err(fail)? {
                stage.config.labels.retain(|(x, _)| *x != k);
                stage.config.labels.push((k, v));
            }
        }
        "USER" | "WORKDIR" => {
            let ws = words(&ins.args, &stage.vars, escape).map_err(fail)?;
            if ws.len() != 1 {
                return Err(fail(format!("{kw} requires exactly one argument")));
            }
            let value = ws[0].clone();
            if kw == "USER" {
                stage.config.user = Some(value);
            } else {
                let dir = match (&stage.config.workdir, value.starts_with('/')) {
                    (Some(prev), false) => format!("{}/{value}", prev.trim_end_matches('/')),
                    _ => value,
                };
                stage.config.workdir = Some(dir);
            }
        }
        "EXPOSE" => {
            let ws = words(&ins.args, &stage.vars, escape).map_err(fail)?;
            if ws.is_empty() {
                return Err(fail("EXPOSE requires at least one argument".into()));
            }
            for w in ws {
                let (port, proto) = w.split_once('/').unwrap_or((&w, "tcp"));
                let port_ok = port
                    .split_once('-')
                    .map_or(port.parse::<u16>().is_ok(), |(a, b)| {
                        a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok()
                    });
                if !port_ok
                    || !["tcp", "udp", "sctp"].contains(&proto.to_ascii_lowercase().as_str())
                {
                    return Err(fail(format!("Invalid containerPort: {w}")));
                }
                stage
                    .config
                    .exposed_ports
                    .push(format!("{port}/{}", proto.to_ascii_lowercase()));
            }
        }
        "CMD" | "ENTRYPOINT" => {
            let argv = exec_form(&ins.args)
                .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string(), ins.args.clone()]);
            if kw == "CMD" {
                stage.config.cmd = Some(argv);
            } else {
                stage.config.entrypoint = Some(argv);
            }
        }
        "COPY" => {
            let (flags, rest) = split_flags(&ins.args);
            let from_stage = flags.iter().any(|f| f.starts_with("--from="));
            let ws = match exec_form(rest) {
                Some(v) => v,
                None => words(rest, &stage.vars, escape).map_err(fail)?,
            };
            if ws.len() < 2 {
                return Err(fail("COPY requires at least two arguments, but only one was provided. Destination could not be determined.".into()));
            }
            if !from_stage {
                for src in &ws[..ws.len() - 1] {
                    if !ctx.has(src) {
                        return Err(fail(format!(
                            "COPY failed: file not found in build context or excluded by .dockerignore: stat {src}: file does not exist"
                        )));
                    }
                }
            }
            for (pkg, version) in carried {
                stage.config.pin(pkg, version);
            }
        }
        "RUN" => {
            let (_, rest) = split_flags(&ins.args);
            let shell = format!("/bin/sh -c {rest}");
            let tokens: Vec<String> = match exec_form(rest) {
                Some(v) => v
                    .iter()
                    .flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                    .collect(),
                None => rest.split_whitespace().map(str::to_string).collect(),
            };
            let container = short_id();
            lines.push(format!(" ---> Running in {container}"));
            let failed = |mut why: Vec<String>| {
                why.push(format!("The command '{shell}' returned a non-zero code: 1"));
                why
            };
            if let Some(repo) = installs_serverless_from_repo(rest) {
                let served = repo
                    .as_deref()
                    .and_then(RepoIndex::read)
                    .and_then(|r| r.ok())
                    .is_some_and(|r| r.current.contains_key("serveRless"));
                if !served {
                    let from = repo.unwrap_or_else(|| "the configured repositories".into());
                    return Err(failed(vec![
                        "Warning message:".into(),
                        "package 'serveRless' is not available for this version of R".into(),
                        format!("(local Azure: serveRless is published in no package repository, so {from} cannot serve it; put its source tarball in the build context and R CMD INSTALL it, as the default base Dockerfile does)"),
                    ]));
                }
            }
            for (pkg, version) in check_tarball_steps(rest, ctx, lines).map_err(failed)? {
                stage.config.pin(pkg, version);
            }
            let installer_repo = tokens
                .iter()
                .position(|t| t.ends_with("install-pinned.R"))
                .and_then(|i| tokens.get(i + 1))
                .cloned();
            let index = match installer_repo.as_deref().map(|r| (r, RepoIndex::read(r))) {
                Some((_, Some(Ok(index)))) => Some(index),
                Some((_, Some(Err(e)))) => {
                    return Err(failed(vec![format!("Error: {e}")]));
                }
                Some((repo, None)) => {
                    lines.push(format!(
                        "local Azure: {repo} is not a loopback repository, so which versions and binaries it serves cannot be checked here"
                    ));
                    None
                }
                None => None,
            };
            for tok in tokens.iter().filter(|t| t.contains("==")) {
                let Some((pkg, version)) = parse_pin(tok) else {
                    return Err(vec![
                        format!("ERROR: invalid package pin '{tok}': a pin is <R package>==<version>, e.g. jsonlite==1.8.8"),
                        format!("The command '{shell}' returned a non-zero code: 1"),
                    ]);
                };
                if let (Some(index), Some(repo)) = (&index, &installer_repo) {
                    if !index.has(&pkg, &version) {
                        return Err(failed(vec![format!(
                            "Error: package '{pkg}' {version} is not available from {repo}"
                        )]));
                    }
                }
                if let Some(repo) = &installer_repo {
                    // What install-pinned.R would say: P3M's __linux__ URLs serve binaries.
                    let kind = if repo.contains("/__linux__/") {
                        "binary"
                    } else {
                        "source"
                    };
                    lines.push(format!("serveRless: installing {pkg} {version} ({kind})"));
                }
                if input.r_library_paths.is_empty() {
                    lines.push(format!("Pinned R package {pkg} {version}"));
                } else {
                    match host_version(input.r_library_paths, &pkg) {
                        None => {
                            let libs: Vec<String> = input
                                .r_library_paths
                                .iter()
                                .map(|p| p.to_string_lossy().into_owned())
                                .collect();
                            return Err(vec![
                                format!("ERROR: package '{pkg}' is not available"),
                                format!(
                                    "(local Azure: images run the host's R with the host library [{}], which has no package '{pkg}')",
                                    libs.join(", ")
                                ),
                                format!("The command '{shell}' returned a non-zero code: 1"),
                            ]);
                        }
                        Some((host, lib)) if same_version(&host, &version) => lines.push(format!(
                            "Pinned R package {pkg} {version}: the host's {pkg} {host} ({}) is used",
                            lib.to_string_lossy()
                        )),
                        Some((host, lib)) => lines.push(format!(
                            "WARNING: {pkg} {version} is pinned, but locally the host's {pkg} {host} is used ({})",
                            lib.to_string_lossy()
                        )),
                    }
                }
                stage.config.pin(pkg, version);
            }
            lines.push(format!("Removing intermediate container {container}"));
        }
        _ => {
            return Err(fail(format!(
                "dockerfile parse error line {}: unknown instruction: {}",
                ins.line, ins.keyword
            )))
        }
    }
    Ok(())
}

/// `sha256sum -c` of `"<hex>  <path>"` and `R CMD INSTALL <tarball>` in a RUN: the
/// tarball must be in the context under that file name, match the checksum, and be an
/// R package. Installing serveRless from its source compiles its Rust library. The
/// packages installed, with their versions.
fn check_tarball_steps(
    run: &str,
    ctx: &Context,
    lines: &mut Vec<String>,
) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut installed = Vec::new();
    for part in run.split("&&") {
        let part = part.trim();
        if part.contains("sha256sum") && part.contains("-c") {
            let quoted = part.split('"').nth(1).unwrap_or_default();
            if let Some((hex, path)) = quoted.split_once("  ") {
                let Some((name, bytes)) = ctx.tarball_named(path.trim()) else {
                    return Err(vec![
                        format!("sha256sum: {}: No such file or directory", path.trim()),
                        format!("{}: FAILED open or read", path.trim()),
                    ]);
                };
                let actual = crate::acr::sha256_hex(bytes);
                if !actual.eq_ignore_ascii_case(hex.trim()) {
                    return Err(vec![
                        format!("{}: FAILED", path.trim()),
                        "sha256sum: WARNING: 1 computed checksum did NOT match".into(),
                        format!("(local Azure: {name} in the context has sha256 {actual})"),
                    ]);
                }
                lines.push(format!("{}: OK", path.trim()));
            }
        }
        let words: Vec<&str> = part.split_whitespace().collect();
        let Some(at) = words
            .windows(3)
            .position(|w| w[0].ends_with('R') && w[1] == "CMD" && w[2] == "INSTALL")
        else {
            continue;
        };
        let Some(path) = words[at + 3..].iter().find(|w| !w.starts_with('-')) else {
            return Err(vec!["ERROR: no packages specified".into()]);
        };
        let Some((_, bytes)) = ctx.tarball_named(path) else {
            return Err(vec![
                format!("Warning: invalid package '{path}'"),
                "Error: ERROR: no packages specified".into(),
            ]);
        };
        let Some((pkg, version)) = tarball_package(bytes) else {
            return Err(vec![format!(
                "Error: ERROR: cannot extract package from '{path}'"
            )]);
        };
        lines.push(format!(
            "* installing *source* package '{pkg}' {version} ..."
        ));
        if pkg == "serveRless" {
            lines.push(
                "local Azure: this step compiles serveRless's Rust library (cargo build --release)"
                    .into(),
            );
        }
        installed.push((pkg, version));
    }
    Ok(installed)
}

/// The R packages a `COPY --from=<stage> .../<pkg> <dest>` carries: each source whose
/// last segment is a package that stage installed (the base Dockerfile compiles
/// serveRless in a stage of its own and copies its installed directory).
fn copied_r_packages(args: &str, stages: &[Stage]) -> Vec<(String, String)> {
    let (flags, rest) = split_flags(args);
    let Some(from) = flags.iter().find_map(|f| f.strip_prefix("--from=")) else {
        return Vec::new();
    };
    let from = from.to_ascii_lowercase();
    let Some(source) = stages
        .iter()
        .find(|s| s.name.as_deref() == Some(from.as_str()))
    else {
        return Vec::new();
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let Some((_, sources)) = words.split_last() else {
        return Vec::new();
    };
    sources
        .iter()
        .filter_map(|src| {
            let name = src.trim_end_matches('/').rsplit('/').next()?;
            source.config.pins.iter().find(|(p, _)| p == name).cloned()
        })
        .collect()
}

/// `NAME[=default]`
fn arg_decl(
    args: &str,
    vars: &HashMap<String, String>,
    escape: char,
) -> Result<(String, Option<String>), String> {
    let ws = words(args, vars, escape)?;
    let [w] = ws.as_slice() else {
        return Err("ARG requires exactly one argument".into());
    };
    let (name, value) = match w.split_once('=') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (w.clone(), None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "ARG names can not be blank or contain symbols: {w}"
        ));
    }
    Ok((name, value))
}

/// Leading `--flag=value` words of COPY and RUN, and the rest.
fn split_flags(args: &str) -> (Vec<&str>, &str) {
    let mut flags = Vec::new();
    let mut rest = args.trim_start();
    while rest.starts_with("--") {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        flags.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (flags, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (path, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, content.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn run(files: &[(&str, &str)], libs: &[PathBuf]) -> Build {
        let ctx = tar_gz(files);
        build(&BuildInput {
            context: &ctx,
            dockerfile_path: "Dockerfile",
            build_args: &[],
            target: None,
            r_library_paths: libs,
            own_registry: None,
            own_images: &HashMap::new(),
        })
    }

    fn log(b: &Build) -> String {
        b.steps
            .iter()
            .chain(b.scan_error.iter())
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn parses_continuations_comments_and_directives() {
        let text = "# syntax=docker/dockerfile:1\n# a comment\nFROM rocker/r-ver:4.2.2\nRUN echo a \\\n  # inside\n    && echo b\n\nCMD [\"Rscript\", \"-e\", \"1\"]\n";
        let (ins, escape) = parse(text).unwrap();
        assert_eq!(escape, '\\');
        assert_eq!(ins.len(), 3);
        assert_eq!(ins[1].keyword, "RUN");
        assert_eq!(ins[1].line, 4);
        assert!(ins[1].args.starts_with("echo a"));
        assert!(ins[1].args.ends_with("&& echo b"));
        assert!(parse("FROM x\nFOO bar\n")
            .unwrap_err()
            .contains("unknown instruction: FOO"));
        assert!(parse("FROM x\nADD a b\n")
            .unwrap_err()
            .contains("does not support the ADD"));
    }

    #[test]
    fn references_and_pins() {
        for ok in [
            "rocker/r-ver:4.2.2",
            "ubuntu",
            "127.0.0.1:5000/serverless-runtime:abc",
            "mcr.microsoft.com/azure-cli@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "localhost/a/b_c:1.0-x",
        ] {
            assert!(parse_reference(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Rocker/r-ver",
            "rocker/r-ver:",
            "a::b",
            "x@sha256:12",
            "a//b",
            "-a",
            "r ver",
        ] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
        let r = parse_reference("127.0.0.1:5000/a/b:t").unwrap();
        assert_eq!(r.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(
            parse_pin("data.table==1.14.8"),
            Some(("data.table".into(), "1.14.8".into()))
        );
        assert_eq!(parse_pin("R6==2.5-1"), Some(("R6".into(), "2.5-1".into())));
        for bad in [
            "x==1.0",
            "jsonlite==1",
            "jsonlite==1.a",
            "1abc==1.0",
            "js.==1.0",
            "a==1.0==2",
            "==",
        ] {
            assert_eq!(parse_pin(bad), None, "{bad}");
        }
        assert!(same_version("1.2-3", "1.2.3"));
        assert!(!same_version("1.2.3", "1.2.4"));
    }

    #[test]
    fn records_the_image() {
        let dockerfile = "ARG R=4.2.2\nFROM rocker/r-ver:${R} AS base\nENV A=1 B=\"two words\"\nLABEL org.opencontainers.image.source=\"x\" v=$A\nRUN install2.r jsonlite==1.8.8 \\\n    R6==2.5.1\nCOPY app/ /app/\nCOPY *.R /srv/\nUSER 1000\nWORKDIR /srv\nCMD Rscript main.R\n";
        let b = run(
            &[
                ("Dockerfile", dockerfile),
                ("app/x.txt", "x"),
                ("main.R", "1"),
            ],
            &[],
        );
        let img = b.image.clone().unwrap_or_else(|| panic!("{}", log(&b)));
        assert_eq!(
            run(
                &[("Dockerfile", "FROM r\nENV PATH=/opt/x/bin:$PATH\n")],
                &[]
            )
            .image
            .unwrap()
            .env,
            vec![("PATH".into(), format!("/opt/x/bin:{DEFAULT_PATH}"))]
        );
        assert_eq!(img.base_images, vec!["rocker/r-ver:4.2.2".to_string()]);
        assert_eq!(
            img.env,
            vec![("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(img.labels[1], ("v".into(), "1".into()));
        assert_eq!(img.pins.len(), 2);
        assert_eq!(img.user.as_deref(), Some("1000"));
        assert_eq!(img.workdir.as_deref(), Some("/srv"));
        assert_eq!(
            img.cmd,
            Some(vec!["/bin/sh".into(), "-c".into(), "Rscript main.R".into()])
        );
        assert!(log(&b).contains("Step 2/10 : FROM rocker/r-ver:${R} AS base"));
    }

    #[test]
    fn failures() {
        let b = run(&[("other", "x")], &[]);
        assert!(b.image.is_none());
        assert!(log(&b).contains("failed to find Dockerfile"));
        let b = run(&[("Dockerfile", "FROM Rocker/R-ver\n")], &[]);
        assert!(log(&b).contains("invalid reference format"), "{}", log(&b));
        let b = run(&[("Dockerfile", "FROM r\nCOPY missing.R /x\n")], &[]);
        assert!(log(&b).contains("COPY failed"), "{}", log(&b));
        let b = run(&[("Dockerfile", "FROM r\nRUN install x==y\n")], &[]);
        assert!(
            log(&b).contains("invalid package pin 'x==y'"),
            "{}",
            log(&b)
        );
        let b = run(&[("Dockerfile", "RUN true\n")], &[]);
        assert!(log(&b).contains("no build stage"), "{}", log(&b));
        assert!(b.image.is_none());
    }

    /// A gzipped tar holding `<pkg>/DESCRIPTION`, as `R CMD build` makes.
    fn package_tarball(pkg: &str, version: &str) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let desc = format!("Package: {pkg}\nVersion: {version}\n");
        let mut h = tar::Header::new_gnu();
        h.set_size(desc.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("{pkg}/DESCRIPTION"), desc.as_bytes())
            .unwrap();
        b.into_inner().unwrap().finish().unwrap()
    }

    fn run_bytes(files: &[(&str, Vec<u8>)]) -> Build {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (path, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, content.as_slice()).unwrap();
        }
        let ctx = b.into_inner().unwrap().finish().unwrap();
        build(&BuildInput {
            context: &ctx,
            dockerfile_path: "Dockerfile",
            build_args: &[],
            target: None,
            r_library_paths: &[],
            own_registry: None,
            own_images: &HashMap::new(),
        })
    }

    #[test]
    fn source_tarballs_are_checked_and_installing_serverless_compiles_rust() {
        let tarball = package_tarball("serveRless", "0.1.0");
        let sha = crate::acr::sha256_hex(&tarball);
        let dockerfile = |sum: &str| {
            format!("FROM r\nCOPY serveRless_0.1.0.tar.gz /tmp/serveRless_0.1.0.tar.gz\nRUN echo \"{sum}  /tmp/serveRless_0.1.0.tar.gz\" | sha256sum -c - \\\n && R CMD INSTALL --library=/opt/lib /tmp/serveRless_0.1.0.tar.gz\n")
        };
        let b = run_bytes(&[
            ("Dockerfile", dockerfile(&sha).into_bytes()),
            ("serveRless_0.1.0.tar.gz", tarball.clone()),
        ]);
        assert!(b.image.is_some(), "{}", log(&b));
        assert!(log(&b).contains("/tmp/serveRless_0.1.0.tar.gz: OK"));
        assert!(log(&b).contains("* installing *source* package 'serveRless' 0.1.0"));
        assert!(log(&b).contains("compiles serveRless's Rust library"));
        // Another tarball under the same name fails the checksum, as sha256sum would.
        let b = run_bytes(&[
            ("Dockerfile", dockerfile(&sha).into_bytes()),
            (
                "serveRless_0.1.0.tar.gz",
                package_tarball("serveRless", "0.0.9"),
            ),
        ]);
        assert!(b.image.is_none());
        assert!(
            log(&b).contains("1 computed checksum did NOT match"),
            "{}",
            log(&b)
        );
        // Something that is not an R package cannot be installed.
        let junk = b"not a tarball".to_vec();
        let b = run_bytes(&[
            (
                "Dockerfile",
                dockerfile(&crate::acr::sha256_hex(&junk)).into_bytes(),
            ),
            ("serveRless_0.1.0.tar.gz", junk),
        ]);
        assert!(b.image.is_none());
        assert!(log(&b).contains("cannot extract package"), "{}", log(&b));
    }

    #[test]
    fn serverless_from_a_package_repository_is_refused() {
        for run in [
            "RUN Rscript -e 'install.packages(\"serveRless\", repos = \"https://cloud.r-project.org\")'",
            "RUN install2.r serveRless",
        ] {
            let b = run_bytes(&[("Dockerfile", format!("FROM r\n{run}\n").into_bytes())]);
            assert!(b.image.is_none(), "{run}");
            assert!(log(&b).contains("package 'serveRless' is not available"), "{}", log(&b));
        }
        // Other packages from a repository are fine.
        let b = run_bytes(&[(
            "Dockerfile",
            b"FROM r\nRUN Rscript -e 'install.packages(\"glue\")'\n".to_vec(),
        )]);
        assert!(b.image.is_some(), "{}", log(&b));
    }

    #[test]
    fn pins_against_the_host_library() {
        let dir = std::env::temp_dir().join(format!("sl-df-{}", crate::util::new_uuid()));
        let lib = dir.join("lib");
        std::fs::create_dir_all(lib.join("jsonlite")).unwrap();
        std::fs::write(
            lib.join("jsonlite/DESCRIPTION"),
            "Package: jsonlite\nVersion: 1.8.7\n",
        )
        .unwrap();
        let libs = vec![dir.join("empty"), lib];
        let b = run(
            &[("Dockerfile", "FROM r\nRUN install2.r jsonlite==1.8.8\n")],
            &libs,
        );
        assert!(b.image.is_some());
        assert!(log(&b).contains("locally the host's jsonlite 1.8.7 is used"));
        let b = run(
            &[("Dockerfile", "FROM r\nRUN install2.r nopkg==1.0\n")],
            &libs,
        );
        assert!(b.image.is_none());
        assert!(log(&b).contains("ERROR: package 'nopkg' is not available"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
