//! Maven: artifacts in the local repository (`~/.m2/repository/GROUP/PATH/ARTIFACT/VERSION/
//! ARTIFACT-VERSION[-CLASSIFIER].jar|.pom`). An artifact is promoted when its bytes hash to the
//! checksum the remote repository publishes beside it (`.sha512`, else `.sha256`, else `.sha1`:
//! Maven repository layout, "Checksums"), fetched from the repository over verified TLS, never
//! the checksum files in the session's layer. The repository is the host's `~/.m2/settings.xml`
//! mirror of `central` (`<mirrorOf>` `*`, `central` or `external:*`), else Maven Central.
//! Maven's bookkeeping (`_remote.repositories`, `*.lastUpdated`, `maven-metadata*.xml`,
//! `resolver-status.properties`) and checksum and signature files are not promoted: without
//! `_remote.repositories` Maven treats a promoted artifact as installed locally and uses it for
//! any repository; the rest it fetches again.

use std::path::{Path, PathBuf};

use super::registry::{Answer, Registry};
use super::{Candidate, Claim, Digest, Verdict};

/// Maven Central.
const CENTRAL: &str = "https://repo.maven.apache.org/maven2/";

/// The largest `settings.xml` read, in bytes.
const MAX_SETTINGS: u64 = 1 << 20;

/// The Maven verifier of one layer.
#[derive(Debug)]
pub(super) struct Maven {
    /// The repository base URL, ending in `/`.
    base: String,
}

impl Maven {
    /// Reads the host's `~/.m2/settings.xml` (never the session's).
    pub(super) fn new(home: &Path) -> Maven {
        Maven {
            base: mirror(&home.join(".m2/settings.xml")).unwrap_or_else(|| CENTRAL.to_string()),
        }
    }

    pub(super) fn verify(&mut self, c: &Candidate<'_>, registry: &mut Registry) -> Verdict {
        let Some(parts) = c.parts() else {
            return Verdict::Skipped("not an artifact path (not UTF-8)".into());
        };
        let Some(file) = parts.last() else {
            return Verdict::Skipped("not an artifact path".into());
        };
        if let Some(why) = bookkeeping(file) {
            return Verdict::Skipped(why.into());
        }
        let [group @ .., artifact, version, file] = parts.as_slice() else {
            return Verdict::Skipped("not GROUP/ARTIFACT/VERSION/FILE".into());
        };
        let known = [".jar", ".pom"].iter().any(|e| file.ends_with(e));
        let named = file
            .strip_prefix(&format!("{artifact}-{version}"))
            .is_some_and(|rest| rest.starts_with(['.', '-']));
        if group.is_empty() || !known || !named || !parts.iter().all(|p| plain(p)) {
            return Verdict::Skipped(
                "not an artifact (only GROUP/ARTIFACT/VERSION/ARTIFACT-VERSION[-CLASSIFIER].jar \
                 or .pom files are promoted)"
                    .into(),
            );
        }
        let rel = parts.join("/");
        match self.checksum(&rel, registry) {
            Ok((digest, url)) => Verdict::Claim(Claim::layer(
                PathBuf::from(&rel),
                digest,
                format!("the repository's checksum {url}"),
            )),
            Err(e) => Verdict::Refused(e),
        }
    }

    /// The strongest checksum the repository publishes for `rel`, and its URL.
    fn checksum(&self, rel: &str, registry: &mut Registry) -> Result<(Digest, String), String> {
        for (ext, len) in [("sha512", 64), ("sha256", 32), ("sha1", 20)] {
            let url = format!("{}{rel}.{ext}", self.base);
            let body = match registry.get(&url, "*/*")? {
                Answer::NotFound => continue,
                Answer::Found(b) => b,
            };
            // The file holds the hex digest, sometimes followed by the file's name.
            let text = String::from_utf8_lossy(&body);
            let hex_digest = text.split_whitespace().next().unwrap_or("");
            let bytes = hex::decode(hex_digest)
                .ok()
                .filter(|b| b.len() == len)
                .ok_or_else(|| format!("{url} is not a {ext} checksum"))?;
            let digest = match ext {
                "sha512" => <[u8; 64]>::try_from(bytes.as_slice())
                    .map(|d| Digest::Sha512(Box::new(d)))
                    .ok(),
                "sha256" => <[u8; 32]>::try_from(bytes.as_slice())
                    .map(Digest::Sha256)
                    .ok(),
                _ => <[u8; 20]>::try_from(bytes.as_slice())
                    .map(Digest::Sha1)
                    .ok(),
            };
            return digest
                .map(|d| (d, url.clone()))
                .ok_or_else(|| format!("{url} is not a {ext} checksum"));
        }
        Err(format!(
            "{}{rel} has no .sha512, .sha256 or .sha1 checksum in the repository (is it \
             published there? a mirror of central goes in ~/.m2/settings.xml)",
            self.base
        ))
    }
}

/// Why a file of Maven's own bookkeeping is not promoted.
fn bookkeeping(file: &str) -> Option<&'static str> {
    if file == "_remote.repositories" || file == "resolver-status.properties" {
        Some("Maven's record of where artifacts came from: written by the session, not promoted (Maven treats a promoted artifact as installed locally)")
    } else if file.ends_with(".lastUpdated") {
        Some("Maven's record of a failed or checked download: not promoted")
    } else if file.starts_with("maven-metadata") {
        Some("repository metadata: Maven fetches it again, not promoted")
    } else if [".sha1", ".sha256", ".sha512", ".md5", ".asc"]
        .iter()
        .any(|e| file.ends_with(e))
    {
        Some("a checksum or signature file: artifacts are checked against the repository's own copies, these are not promoted")
    } else {
        None
    }
}

/// A path component of a repository path: no control characters, spaces or URL syntax.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
}

/// The URL of the first `<mirror>` of `central` in a `settings.xml` (Maven settings reference:
/// `mirrorOf` is a comma list; `*`, `external:*` and `central` cover Central; `!central`
/// excludes it), `https://` only, ending in `/`.
fn mirror(settings: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(settings).ok()?;
    let mut text = String::new();
    f.take(MAX_SETTINGS).read_to_string(&mut text).ok()?;
    let doc = roxmltree::Document::parse(&text).ok()?;
    let child = |n: roxmltree::Node<'_, '_>, name: &str| {
        n.children()
            .find(|c| c.tag_name().name() == name)
            .and_then(|c| c.text())
            .map(str::trim)
            .map(str::to_string)
    };
    doc.descendants()
        .filter(|n| n.tag_name().name() == "mirror")
        .find_map(|m| {
            let of = child(m, "mirrorOf")?;
            let ids: Vec<&str> = of.split(',').map(str::trim).collect();
            let covers = !ids.contains(&"!central")
                && ids
                    .iter()
                    .any(|i| *i == "*" || *i == "central" || *i == "external:*");
            let url = child(m, "url")?;
            covers.then(|| {
                if url.ends_with('/') {
                    url
                } else {
                    format!("{url}/")
                }
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_of_central_is_the_repository() {
        let d = tempfile::tempdir().expect("dir");
        let p = d.path().join("settings.xml");
        std::fs::write(
            &p,
            r#"<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0"><mirrors>
               <mirror><id>a</id><mirrorOf>*,!central</mirrorOf><url>https://a.test/</url></mirror>
               <mirror><id>b</id><mirrorOf>external:*</mirrorOf><url>https://b.test/m2</url></mirror>
               </mirrors></settings>"#,
        )
        .expect("write");
        assert_eq!(mirror(&p).as_deref(), Some("https://b.test/m2/"));
        std::fs::write(&p, "<settings/>").expect("write");
        assert_eq!(mirror(&p), None);
    }

    #[test]
    fn bookkeeping_files_are_named() {
        for f in [
            "_remote.repositories",
            "x-1.0.jar.lastUpdated",
            "maven-metadata-central.xml",
            "x-1.0.jar.sha1",
            "x-1.0.pom.asc",
        ] {
            assert!(bookkeeping(f).is_some(), "{f}");
        }
        assert!(bookkeeping("x-1.0.jar").is_none());
        assert!(!plain("..") && !plain("a b") && !plain("a\x1b") && plain("1.0-SNAPSHOT"));
    }
}
