//! Host caches of the ecosystem presets in use (`~/.cargo`, `~/.npm`, `~/.cache/pip`, …): each
//! that exists on the host is seen inside at the same place read-only, with a per-session
//! writable layer on top (overlayfs; the upper layer is `SESSION_DIR/caches/N/upper`). Builds
//! reuse what the user downloaded; what the session downloads or changes stays in the session
//! and never reaches the host's cache.

use std::path::{Path, PathBuf};

use airlock_sandbox::OverlayMount;
use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

/// The record of a session's cache layers, `SESSION_DIR/caches/layers.json` (written on the
/// host before the sandbox starts, in the session directory the sandbox never sees): which host
/// cache each layer sits on, for `airlock cache promote`.
pub(crate) const LAYERS_FILE: &str = "caches/layers.json";

/// The workspace's `go.sum` as it was when the session started, `SESSION_DIR/caches/go.sum`
/// (copied on the host before the sandbox starts): what `airlock cache promote` verifies Go
/// modules by. Never the workspace's go.sum as it is later: once the session's changes are
/// merged, that file holds whatever hashes the agent wrote.
pub(crate) const GO_SUM_FILE: &str = "caches/go.sum";

/// The largest `go.sum` kept, in bytes (larger ones are refused by promote as unreadable).
pub(crate) const MAX_GO_SUM: u64 = 16 << 20;

/// One cache layer of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    /// The session's writable layer (the overlay's upper directory).
    pub(crate) upper: PathBuf,
    /// The host's cache (the overlay's read-only lower directory, resolved).
    pub(crate) lower: PathBuf,
    /// Where the cache is seen (`~/.cargo`), as the preset names it under the home.
    pub(crate) target: PathBuf,
}

/// The cache layers recorded for the session in `dir`; `None` when it has none (a session run
/// without a preset, or by an airlock older than the record).
///
/// # Errors
/// The record exists but cannot be read or parsed.
pub(crate) fn recorded_layers(dir: &Path) -> Result<Option<Vec<LayerRecord>>> {
    let path = dir.join(LAYERS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
    };
    let layers: Vec<LayerRecord> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a cache layer record", path.display()))?;
    Ok(Some(layers))
}

/// The overlays for `presets`' caches that exist under `home`, their layers under `dir` (the
/// session directory). A cache that resolves outside the home (a symlink elsewhere) is skipped
/// with a warning: only the user's own caches are shared.
pub(crate) fn overlays(presets: &[String], home: &Path, dir: &Path) -> Result<Vec<OverlayMount>> {
    let mut out: Vec<OverlayMount> = Vec::new();
    let home_canon = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    for name in presets {
        let eco = airlock_policy::ecosystems::ecosystem(name).map_err(|e| anyhow!(e))?;
        for rel in &eco.caches {
            let target = home.join(rel);
            let Ok(lower) = std::fs::canonicalize(&target) else {
                continue;
            };
            if !lower.is_dir() || out.iter().any(|o| o.target == target) {
                continue;
            }
            if !lower.starts_with(&home_canon) {
                eprintln!(
                    "airlock: warning: cache {} of preset {name} resolves to {}, outside the home; \
                     not shared",
                    target.display(),
                    lower.display()
                );
                continue;
            }
            let layer = dir.join("caches").join(out.len().to_string());
            out.push(OverlayMount {
                lower,
                upper: layer.join("upper"),
                work: layer.join("work"),
                target,
            });
        }
    }
    Ok(out)
}

/// The paths to hide inside for `presets`' caches under `home`: each preset's `hide` list
/// (configuration and credentials the tools keep inside their caches, such as cargo's
/// `credentials.toml`), expanded to what exists on the host.
///
/// # Errors
/// A preset name is unknown.
pub(crate) fn hidden(presets: &[String], home: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for name in presets {
        let eco = airlock_policy::ecosystems::ecosystem(name).map_err(|e| anyhow!(e))?;
        for rel in &eco.hide {
            out.extend(crate::tool_secrets::expand(home, rel));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Creates the layers' directories (in the session directory `dir`, before the sandbox
/// starts) and records which host cache each sits on ([`LAYERS_FILE`]).
pub(crate) fn create_layers(dir: &Path, overlays: &[OverlayMount]) -> Result<()> {
    if overlays.is_empty() {
        return Ok(());
    }
    let mut records = Vec::new();
    for o in overlays {
        for d in [&o.upper, &o.work] {
            std::fs::create_dir_all(d)
                .map_err(|e| anyhow!("cannot create cache layer {}: {e}", d.display()))?;
        }
        records.push(LayerRecord {
            upper: o.upper.clone(),
            lower: o.lower.clone(),
            target: o.target.clone(),
        });
    }
    let path = dir.join(LAYERS_FILE);
    std::fs::write(&path, serde_json::to_vec_pretty(&records)?)
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// Keeps the workspace's `go.sum` as it is now, before the sandbox starts ([`GO_SUM_FILE`];
/// nothing when the session has no cache layers or the workspace has no go.sum). At most
/// [`MAX_GO_SUM`] bytes are kept; a longer file is kept cut short, which drops lines, never
/// adds one.
///
/// # Errors
/// The go.sum exists but cannot be read, or the copy cannot be written.
pub(crate) fn keep_go_sum(dir: &Path, workspace: &Path, overlays: &[OverlayMount]) -> Result<()> {
    if overlays.is_empty() {
        return Ok(());
    }
    let src = workspace.join("go.sum");
    let f = match std::fs::File::open(&src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow!("cannot read {}: {e}", src.display())),
    };
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_GO_SUM), &mut text)
        .map_err(|e| anyhow!("cannot read {}: {e}", src.display()))?;
    // A line cut in the middle could read as a shorter hash: keep whole lines only.
    if let Some(end) = text.iter().rposition(|&b| b == b'\n') {
        text.truncate(end + 1);
    } else {
        text.clear();
    }
    let dst = dir.join(GO_SUM_FILE);
    std::fs::write(&dst, text).map_err(|e| anyhow!("cannot write {}: {e}", dst.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept go.sum is the start's, whole lines only: a file over the bound loses its cut
    /// line rather than keep a shortened hash; no cache layers or no go.sum: nothing kept.
    #[test]
    fn go_sum_is_kept_in_whole_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let ws = tempfile::tempdir().expect("ws");
        std::fs::create_dir_all(dir.path().join("caches")).expect("caches");
        let layer = OverlayMount {
            lower: ws.path().into(),
            upper: ws.path().into(),
            work: ws.path().into(),
            target: ws.path().into(),
        };
        keep_go_sum(dir.path(), ws.path(), std::slice::from_ref(&layer)).expect("no go.sum");
        assert!(!dir.path().join(GO_SUM_FILE).exists());
        let line = "example.com/m v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let n = usize::try_from(MAX_GO_SUM).expect("bound") / line.len() + 2;
        std::fs::write(ws.path().join("go.sum"), line.repeat(n)).expect("go.sum");
        keep_go_sum(dir.path(), ws.path(), &[]).expect("no layers");
        assert!(!dir.path().join(GO_SUM_FILE).exists());
        keep_go_sum(dir.path(), ws.path(), &[layer]).expect("keep");
        let kept = std::fs::read_to_string(dir.path().join(GO_SUM_FILE)).expect("kept");
        assert!(kept.len() as u64 <= MAX_GO_SUM && kept.ends_with('\n'));
        assert!(kept.lines().all(|l| l == line.trim_end()));
    }

    #[test]
    fn only_existing_caches_under_the_home() {
        let home = tempfile::tempdir().expect("home");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::create_dir_all(home.path().join(".npm")).expect("npm");
        std::fs::create_dir_all(home.path().join(".cache")).expect("cache");
        std::os::unix::fs::symlink(outside.path(), home.path().join(".cache/pip")).expect("link");
        let dir = Path::new("/sessions/s1");
        let o = overlays(
            &["node".into(), "python".into(), "go".into()],
            home.path(),
            dir,
        )
        .expect("overlays");
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!(o[0].target, home.path().join(".npm"));
        assert_eq!(o[0].upper, dir.join("caches/0/upper"));
        assert!(overlays(&["cobol".into()], home.path(), dir).is_err());
    }

    #[test]
    fn preset_hides_name_existing_files() {
        let home = tempfile::tempdir().expect("home");
        std::fs::create_dir_all(home.path().join(".cargo")).expect("cargo");
        std::fs::create_dir_all(home.path().join(".npm/_logs")).expect("npm");
        std::fs::write(home.path().join(".cargo/credentials.toml"), "x").expect("creds");
        let got = hidden(&["rust".into(), "node".into()], home.path()).expect("hidden");
        assert_eq!(
            got,
            vec![
                home.path().join(".cargo/credentials.toml"),
                home.path().join(".npm/_logs")
            ]
        );
    }
}
