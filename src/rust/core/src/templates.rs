//! Rendering what we send to Azure from the package's handlebars templates
//! (`inst/templates/`): the scoring runtime's Dockerfile and its build context.
//!
//! The runtime spec is everything that changes the image. Its hash names the image
//! (`serverless-runtime:<hash>`), so models with the same spec share one image and an
//! unchanged spec never builds again.

use crate::error::{Error, Result};
use handlebars::Handlebars;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;

/// The repository of runtime images in the registry.
pub const RUNTIME_REPOSITORY: &str = "serverless-runtime";

/// One R package at the version installed in the user's library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagePin {
    pub name: String,
    pub version: String,
}

/// Everything that makes one runtime image differ from another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSpec {
    /// R major.minor, e.g. `4.2`.
    pub r_version: String,
    pub base_image: String,
    /// The CRAN-like repository the pinned packages come from.
    pub repo: String,
    /// In install order (dependencies first).
    pub packages: Vec<PackagePin>,
    /// Debian/Ubuntu packages the R packages need to build, where known.
    #[serde(default)]
    pub system_libraries: Vec<String>,
    pub serverless_version: String,
    /// Where serveRless comes from: a repository, unless a source tarball is given.
    pub serverless_repo: String,
    /// File name and sha256 of a serveRless source tarball placed in the build context.
    #[serde(default)]
    pub serverless_tarball: Option<TarballRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarballRef {
    pub file_name: String,
    pub sha256: String,
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
        plain(
            "serveRless repository URL",
            &self.serverless_repo,
            ".:/_-~%",
        )?;
        plain("serveRless version", &self.serverless_version, ".-")?;
        for p in &self.packages {
            plain("package name", &p.name, ".")?;
            plain("package version", &p.version, ".-")?;
        }
        for lib in &self.system_libraries {
            plain("system library", lib, ".+-")?;
        }
        if let Some(t) = &self.serverless_tarball {
            plain("tarball name", &t.file_name, "._-")?;
        }
        Ok(())
    }

    /// The image tag: 16 hex digits of the sha256 of the spec and the templates.
    pub fn hash(&self, templates: &[&str]) -> String {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(self).unwrap_or_default());
        for t in templates {
            h.update([0u8]);
            h.update(t.as_bytes());
        }
        hex::encode(h.finalize())[..16].to_string()
    }
}

/// Renders the Dockerfile template for a spec with the given hash.
pub fn render_dockerfile(template: &str, spec: &RuntimeSpec, hash: &str) -> Result<String> {
    spec.validate()?;
    let mut hb = Handlebars::new();
    // A Dockerfile is not HTML; values are validated above instead of escaped.
    hb.register_escape_fn(handlebars::no_escape);
    hb.set_strict_mode(true);
    let data = json!({
        "hash": hash,
        "r_version": spec.r_version,
        "base_image": spec.base_image,
        "repo": spec.repo,
        "packages": spec.packages,
        "package_count": spec.packages.len(),
        "system_libraries": spec.system_libraries,
        "serverless_version": spec.serverless_version,
        "serverless_repo": spec.serverless_repo,
        "serverless_tarball": spec.serverless_tarball.as_ref().map(|t| t.file_name.clone()),
    });
    hb.render_template(template, &data)
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
            packages: vec![PackagePin {
                name: "randomForest".into(),
                version: "4.7-1.1".into(),
            }],
            system_libraries: vec![],
            serverless_version: "0.1.0".into(),
            serverless_repo: "https://cloud.r-project.org".into(),
            serverless_tarball: None,
        }
    }

    #[test]
    fn hash_changes_with_packages_and_templates() {
        let a = spec();
        let mut b = spec();
        b.packages[0].version = "4.7-1.2".into();
        assert_eq!(a.hash(&["t"]), spec().hash(&["t"]));
        assert_ne!(a.hash(&["t"]), b.hash(&["t"]));
        assert_ne!(a.hash(&["t"]), a.hash(&["u"]));
        assert_eq!(a.hash(&["t"]).len(), 16);
    }

    #[test]
    fn values_that_could_inject_instructions_are_refused() {
        let mut s = spec();
        s.packages[0].name = "x\nRUN curl evil".into();
        assert!(render_dockerfile("{{hash}}", &s, "h").is_err());
        let mut s = spec();
        s.base_image = "ubuntu; rm -rf /".into();
        assert!(s.validate().is_err());
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
