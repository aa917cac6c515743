//! `airlock rm`: deletes a session (refusing a running one, or unmerged changes, unless
//! forced), after its backend removed whatever it left.

use airlock_session::merge::is_git_internal;
use airlock_session::{SessionMode, SessionRow, SessionState};
use anyhow::{bail, Result};
use std::io::Write as _;
use std::path::PathBuf;

use super::session::review;
use crate::cli::RmArgs;
use crate::session_dir;

pub(crate) fn rm(args: RmArgs) -> Result<i32> {
    let store = session_dir::store()?;
    let r = session_dir::find(Some(&args.id))?;
    if r.state == SessionState::Running && !args.force {
        bail!(
            "session {} is still running; stop it first, or pass --force",
            r.id
        );
    }
    let upper = r.dir.join("upper");
    let wrote = std::fs::read_dir(&upper).is_ok_and(|mut d| d.next().is_some());
    if r.mode == SessionMode::Overlay && !r.merged && !args.force && wrote {
        // Changes that cannot be read (a tree nested too deep, an unreadable directory) are
        // unmerged changes too: kept unless --force, never deleted on a guess.
        let rv = review(&r).map_err(|e| {
            anyhow::anyhow!(
                "session {} has changes that cannot be read ({e:#}); pass --force to delete them",
                r.id
            )
        })?;
        {
            let n = rv
                .files
                .iter()
                .filter(|c| !is_git_internal(&c.path))
                .count();
            if n > 0 || !rv.commits.is_empty() {
                bail!(
                    "session {} has unmerged changes ({n} file(s), {} commit(s)); merge them with \
                     `airlock merge {}` or pass --force to delete them",
                    r.id,
                    rv.commits.len(),
                    r.id
                );
            }
        }
    }
    let kept = kept_worktree(&r, args.force)?;
    super::ls::remove_session(&store, &r)?;
    writeln!(std::io::stdout(), "removed session {}", r.id)?;
    if let Some(w) = kept {
        eprintln!("{}", super::ls::worktree_stays(&r, &w));
    }
    Ok(0)
}

/// The worktree an unmerged worktree-mode session kept (its changes and branch): refused unless
/// `force`, since `rm` leaves it in the repository.
fn kept_worktree(r: &SessionRow, force: bool) -> Result<Option<PathBuf>> {
    if r.mode != SessionMode::Worktree || r.merged {
        return Ok(None);
    }
    let Some(w) = super::ls::unmerged(r).worktree else {
        return Ok(None);
    };
    if !force {
        bail!(
            "session {} has unmerged changes in its worktree {}; review them with `airlock diff \
             {}`, or pass --force to remove the session (the worktree and its branch stay)",
            r.id,
            airlock_session::quote::path(&w),
            r.id
        );
    }
    Ok(Some(w))
}

/// Deletes a session directory with [`airlock_session::tree::remove_all`] (iterative, however
/// deep the agent nested its directories; overlayfs's scratch `work/work`, mode 000, is made
/// accessible first). Rootless Podman's overlay mounts leave it owned by
/// the container's root (a subordinate uid of the user), which only the engine's user namespace
/// can delete: then `podman unshare rm -rf DIR` (no link followed) does, and says so.
///
/// # Errors
/// The tree cannot be deleted by either way; the error is the first attempt's.
pub(crate) fn remove_tree(dir: &std::path::Path) -> std::io::Result<()> {
    // Iterative, links never followed, bounded descriptors: the agent chooses the depth.
    let err = match airlock_session::tree::remove_all(dir) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if err.kind() != std::io::ErrorKind::PermissionDenied || nix::unistd::geteuid().is_root() {
        return Err(err);
    }
    let unshared = std::process::Command::new("podman")
        .args(["unshare", "rm", "-rf", "--"])
        .arg(dir)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if unshared && std::fs::symlink_metadata(dir).is_err() {
        tracing::debug!(dir = %dir.display(), "deleted through `podman unshare`");
        return Ok(());
    }
    Err(std::io::Error::new(
        err.kind(),
        format!(
            "{err} (files owned by a container's user; `podman unshare rm -rf {}` did not \
             delete them either)",
            dir.display()
        ),
    ))
}
