//! Rendering what we send to Azure from the package's handlebars templates
//! (`inst/templates/`): the Dockerfiles of the base and runtime images and their build
//! contexts.
//!
//! Two images, so that Rust is compiled once: the **base** (`serverless-base:<hash>`)
//! holds R, serveRless's own packages and serveRless compiled from its source tarball;
//! it is built once per (R, base image, serveRless source). A **runtime** image
//! (`serverless-runtime:<hash>`) is `FROM` the base and only adds the model's packages.
//! Each tag is the hash of what goes into the image, so models with the same packages
//! share one image and an unchanged spec never builds again.

use crate::error::{Error, Result};
use handlebars::Handlebars;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;

/// The repository of runtime images in the registry.
pub const RUNTIME_REPOSITORY: &str = "serverless-runtime";

/// The repository of base images (R + serveRless) in the registry.
pub const BASE_REPOSITORY: &str = "serverless-base";

/// One R package at the version installed in the user's library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagePin {
    pub name: String,
    pub version: String,
}

/// Everything that makes one runtime image (and its base) differ from another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSpec {
    /// R major.minor, e.g. `4.2`.
    pub r_version: String,
    /// The image with R that the base starts from, e.g. `rocker/r-ver:4.2.2`.
    pub base_image: String,
    /// The CRAN-like repository the pinned packages come from, as the user gave it.
    pub repo: String,
    /// The Linux distribution of `base_image` (e.g. `jammy`), when known: Posit
    /// Package Manager then serves Linux binaries.
    #[serde(default)]
    pub distro: Option<String>,
    /// The model's packages that the base does not hold, in install order.
    pub packages: Vec<PackagePin>,
    /// serveRless's own dependencies, in install order: they go into the base.
    #[serde(default)]
    pub base_packages: Vec<PackagePin>,
    /// Debian/Ubuntu packages the model's R packages need to build, where known.
    #[serde(default)]
    pub system_libraries: Vec<String>,
    pub serverless_version: String,
    /// File name and sha256 of the serveRless source tarball put in the base's build
    /// context. (Optional only so that records written before it still read.)
    #[serde(default)]
    pub serverless_tarball: Option<TarballRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarballRef {
    pub file_name: String,
    pub sha256: String,
}

/// Is `url` a Posit Package Manager repository URL (`https://<host>/<repo>/<snapshot>`)?
/// Returns `(prefix up to the repo name, snapshot)`.
fn ppm_parts(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("https://")?;
    let host = rest.split('/').next()?;
    if !(host == "packagemanager.posit.co"
        || host == "p3m.dev"
        || host == "packagemanager.rstudio.com")
    {
        return None;
    }
    let trimmed = url.trim_end_matches('/');
    if trimmed.contains("/__linux__/") {
        return None;
    }
    let (prefix, snapshot) = trimmed.rsplit_once('/')?;
    // `https://host/cran/latest`: the prefix must still hold the repository name.
    (prefix.len() > "https://".len() + host.len()).then_some((prefix, snapshot))
}

/// The URL the packages are installed from: for a Posit Package Manager repository and
/// a known distribution, its Linux binaries (`<repo>/__linux__/<distro>/<snapshot>`, as
/// P3M documents); otherwise the repository as given (sources).
pub fn install_repo(repo: &str, distro: Option<&str>) -> String {
    match (ppm_parts(repo), distro) {
        (Some((prefix, snapshot)), Some(d)) => format!("{prefix}/__linux__/{d}/{snapshot}"),
        _ => repo.trim_end_matches('/').to_string(),
    }
}

impl RuntimeSpec {
    /// Checks what ends up in a Dockerfile, so nothing can inject instructions.
    pub fn validate(&self) -> Result<()> {
        let plain = |what: &str, s: &str, extra: &str| -> Result<()> {
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
            {
                return Err(Error::input(format!("{what} `{s}` is not valid")));
            }
            Ok(())
        };
        plain("R version", &self.r_version, ".")?;
        plain("base image", &self.base_image, "._-/:@")?;
        plain("repository URL", &self.repo, ".:/_-~%")?;
        if !(self.repo.starts_with("https://") || self.repo.starts_with("http://")) {
            return Err(Error::input(format!(
                "repository URL `{}` is not an http(s) URL",
                self.repo
            )));
        }
        if let Some(d) = &self.distro {
            plain("distribution", d, "-")?;
        }
        plain("serveRless version", &self.serverless_version, ".-")?;
        for p in self.packages.iter().chain(&self.base_packages) {
            plain("package name", &p.name, ".")?;
            plain("package version", &p.version, ".-")?;
        }
        for lib in &self.system_libraries {
            plain("system library", lib, ".+-")?;
        }
        let Some(t) = &self.serverless_tarball else {
            return Err(Error::input(
                "the runtime spec names no serveRless source tarball",
            ));
        };
        plain("tarball name", &t.file_name, "._-")?;
        if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::input("the tarball's sha256 is not 64 hex digits"));
        }
        Ok(())
    }

    /// Where the pinned packages are installed from.
    pub fn install_repo(&self) -> String {
        install_repo(&self.repo, self.distro.as_deref())
    }

    /// The base image's tag: 16 hex digits of the sha256 of what goes into it (R, the
    /// base image, serveRless's packages and source) and of its templates.
    pub fn base_hash(&self, templates: &[&str]) -> String {
        let key = json!({
            "r_version": self.r_version,
            "base_image": self.base_image,
            "install_repo": self.install_repo(),
            "packages": self.base_packages,
            "serverless_version": self.serverless_version,
            "serverless_tarball": self.serverless_tarball,
        });
        digest16(&key, templates)
    }

    /// The runtime image's tag: the base's tag, the model's packages, system libraries
    /// and repository, and the templates.
    pub fn hash(&self, base_hash: &str, templates: &[&str]) -> String {
        let key = json!({
            "base": base_hash,
            "install_repo": self.install_repo(),
            "packages": self.packages,
            "system_libraries": self.system_libraries,
        });
        digest16(&key, templates)
    }
}

fn digest16(key: &serde_json::Value, templates: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(key).unwrap_or_default());
    for t in templates {
        h.update([0u8]);
        h.update(t.as_bytes());
    }
    hex::encode(h.finalize())[..16].to_string()
}

fn handlebars() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    // A Dockerfile is not HTML; values are validated instead of escaped.
    hb.register_escape_fn(handlebars::no_escape);
    hb.set_strict_mode(true);
    hb
}

/// Renders the base image's Dockerfile (`Dockerfile-base.hbs`).
pub fn render_base_dockerfile(template: &str, spec: &RuntimeSpec, hash: &str) -> Result<String> {
    spec.validate()?;
    let tarball = spec.serverless_tarball.as_ref().expect("validated");
    let data = json!({
        "hash": hash,
        "r_version": spec.r_version,
        "base_image": spec.base_image,
        "repo": spec.install_repo(),
        "packages": spec.base_packages,
        "package_count": spec.base_packages.len(),
        "serverless_version": spec.serverless_version,
        "tarball": tarball.file_name,
        "tarball_sha256": tarball.sha256,
    });
    handlebars()
        .render_template(template, &data)
        .map_err(|e| Error::internal(format!("cannot render the base Dockerfile template: {e}")))
}

/// Renders a runtime image's Dockerfile (`Dockerfile.hbs`) on the base image `base`
/// (a full reference, `<login server>/serverless-base:<base hash>`).
pub fn render_dockerfile(
    template: &str,
    spec: &RuntimeSpec,
    hash: &str,
    base: &str,
    base_hash: &str,
) -> Result<String> {
    spec.validate()?;
    if !base
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
    {
        return Err(Error::input(format!("base image `{base}` is not valid")));
    }
    let data = json!({
        "hash": hash,
        "base": base,
        "base_hash": base_hash,
        "repo": spec.install_repo(),
        "packages": spec.packages,
        "package_count": spec.packages.len(),
        "system_libraries": spec.system_libraries,
    });
    handlebars()
        .render_template(template, &data)
        .map_err(|e| Error::internal(format!("cannot render the Dockerfile template: {e}")))
}

/// The sha256 (hex) of a file, read in blocks.
pub fn file_sha256(path: &std::path::Path) -> Result<String> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open `{}`", path.display()), e))?;
    let mut sha = Sha256::new();
    std::io::copy(&mut file, &mut sha)
        .map_err(|e| Error::io(format!("reading `{}`", path.display()), e))?;
    Ok(hex::encode(sha.finalize()))
}

/// A gzipped tar of the build context: `(path in the context, bytes)`. Entries carry
/// fixed times and modes, so the same context always gives the same bytes.
pub fn context_tar_gz(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| Error::io("writing the build context", e);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes.as_slice())
            .map_err(io)?;
    }
    let mut gz = tar.into_inner().map_err(io)?;
    gz.flush().map_err(io)?;
    gz.finish().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RuntimeSpec {
        RuntimeSpec {
            r_version: "4.2".into(),
            base_image: "rocker/r-ver:4.2.2".into(),
            repo: "https://packagemanager.posit.co/cran/latest".into(),
            distro: Some("jammy".into()),
            packages: vec![PackagePin {
                name: "randomForest".into(),
                version: "4.7-1.1".into(),
            }],
            base_packages: vec![PackagePin {
                name: "cli".into(),
                version: "3.6.0".into(),
            }],
            system_libraries: vec![],
            serverless_version: "0.1.0".into(),
            serverless_tarball: Some(TarballRef {
                file_name: "serveRless_0.1.0.tar.gz".into(),
                sha256: "a".repeat(64),
            }),
        }
    }

    #[test]
    fn base_hash_ignores_the_model_and_runtime_hash_follows_the_base() {
        let a = spec();
        let mut b = spec();
        b.packages[0].version = "4.7-1.2".into();
        // A model's packages never change the base.
        assert_eq!(a.base_hash(&["t"]), b.base_hash(&["t"]));
        let base = a.base_hash(&["t"]);
        assert_eq!(a.hash(&base, &["t"]), spec().hash(&base, &["t"]));
        assert_ne!(a.hash(&base, &["t"]), b.hash(&base, &["t"]));
        assert_ne!(a.hash(&base, &["t"]), a.hash("other", &["t"]));
        assert_ne!(a.hash(&base, &["t"]), a.hash(&base, &["u"]));
        // A new serveRless source is a new base, and so a new runtime image.
        let mut c = spec();
        c.serverless_tarball.as_mut().unwrap().sha256 = "b".repeat(64);
        assert_ne!(a.base_hash(&["t"]), c.base_hash(&["t"]));
        assert_eq!(base.len(), 16);
    }

    #[test]
    fn binaries_come_from_p3m_linux_urls() {
        let ppm = "https://packagemanager.posit.co/cran/latest";
        assert_eq!(
            install_repo(ppm, Some("jammy")),
            "https://packagemanager.posit.co/cran/__linux__/jammy/latest"
        );
        assert_eq!(
            install_repo("https://p3m.dev/cran/2024-06-03/", Some("noble")),
            "https://p3m.dev/cran/__linux__/noble/2024-06-03"
        );
        // Unknown distribution, another repository, or a URL that already names one.
        assert_eq!(install_repo(ppm, None), ppm);
        assert_eq!(
            install_repo("https://cloud.r-project.org", Some("jammy")),
            "https://cloud.r-project.org"
        );
        let linux = "https://p3m.dev/cran/__linux__/jammy/latest";
        assert_eq!(install_repo(linux, Some("jammy")), linux);
        assert_eq!(
            install_repo("https://p3m.dev/latest", Some("jammy")),
            "https://p3m.dev/latest"
        );
    }

    #[test]
    fn values_that_could_inject_instructions_are_refused() {
        let mut s = spec();
        s.packages[0].name = "x\nRUN curl evil".into();
        assert!(render_dockerfile("{{hash}}", &s, "h", "b", "h").is_err());
        let mut s = spec();
        s.base_image = "ubuntu; rm -rf /".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.repo = "ftp://mirror.example.org/cran".into();
        assert!(s.validate().unwrap_err().message.contains("http(s)"));
        let mut s = spec();
        s.serverless_tarball = None;
        assert!(render_base_dockerfile("{{hash}}", &s, "h").is_err());
        assert!(render_dockerfile("x", &spec(), "h", "reg.io/b:1\nRUN x", "h").is_err());
    }

    #[test]
    fn context_is_deterministic_and_readable() {
        let files = vec![("Dockerfile".to_string(), b"FROM x\n".to_vec())];
        let a = context_tar_gz(&files).unwrap();
        assert_eq!(a, context_tar_gz(&files).unwrap());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(a.as_slice()));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["Dockerfile"]);
    }
}
