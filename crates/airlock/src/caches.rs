//! Host caches of the ecosystem presets in use (`~/.cargo`, `~/.npm`, `~/.cache/pip`, …): each
//! that exists on the host is seen inside at the same place read-only, with a per-session
//! writable layer on top (overlayfs; the upper layer is `SESSION_DIR/caches/N/upper`). Builds
//! reuse what the user downloaded; what the session downloads or changes stays in the session
//! and never reaches the host's cache.

use std::path::Path;

use airlock_sandbox::OverlayMount;
use anyhow::{anyhow, Result};

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

/// Creates the layers' directories (in the session directory, before the sandbox starts).
pub(crate) fn create_layers(overlays: &[OverlayMount]) -> Result<()> {
    for o in overlays {
        for d in [&o.upper, &o.work] {
            std::fs::create_dir_all(d)
                .map_err(|e| anyhow!("cannot create cache layer {}: {e}", d.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
