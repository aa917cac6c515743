//! `--mode worktree`: a git worktree per session on a new branch `airlock/NAME`, under
//! `$XDG_DATA_HOME/airlock/worktrees/ID`. Inside the sandbox the worktree is read-write; the main
//! repository is read-only except what a commit needs (objects, refs, logs, and this worktree's
//! own admin directory), so the agent cannot plant hooks or config in it.

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock_sandbox::Bind;
use anyhow::{bail, Context, Result};

/// A created worktree.
#[derive(Debug)]
pub(crate) struct Worktree {
    pub(crate) path: PathBuf,
    pub(crate) branch: String,
    /// Binds that give the sandbox the main repository's view (read-only, with the parts a
    /// commit writes made writable).
    pub(crate) binds: Vec<Bind>,
}

/// Host git, with settings the agent could have planted switched off.
fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C")
        .arg(dir)
        .args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .env("GIT_TERMINAL_PROMPT", "0");
    c
}

fn run(mut c: Command, what: &str) -> Result<String> {
    let out = c
        .output()
        .with_context(|| format!("cannot run git to {what}"))?;
    if !out.status.success() {
        bail!(
            "git failed to {what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rw(p: PathBuf) -> Bind {
    Bind {
        source: p.clone(),
        target: p,
        writable: true,
        optional: true,
    }
}

/// Creates the worktree for session `id` of the repository at `workspace`.
pub(crate) fn create(workspace: &Path, id: &str, name: Option<&str>) -> Result<Worktree> {
    let git_dir = workspace.join(".git");
    if !git_dir.is_dir() {
        bail!(
            "--mode worktree needs a git repository with a .git directory at {} (use --mode \
             overlay otherwise)",
            workspace.display()
        );
    }
    let root = crate::session_dir::sessions_root()?
        .parent()
        .map(|p| p.join("worktrees"))
        .context("bad data directory")?;
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let path = root.join(id);
    let branch = format!("airlock/{}", name.unwrap_or(id));
    let mut c = git(workspace);
    c.args(["worktree", "add", "--quiet", "-b", &branch])
        .arg(&path)
        .arg("HEAD");
    run(c, &format!("create a worktree on branch {branch}"))?;
    let binds = vec![
        Bind {
            source: workspace.to_path_buf(),
            target: workspace.to_path_buf(),
            writable: false,
            optional: false,
        },
        rw(git_dir.join("objects")),
        rw(git_dir.join("refs")),
        rw(git_dir.join("logs")),
        rw(git_dir.join("worktrees").join(id)),
    ];
    Ok(Worktree {
        path,
        branch,
        binds,
    })
}

/// After the session: removes the worktree and its branch when nothing was changed or
/// committed; returns whether it was removed.
pub(crate) fn finish(workspace: &Path, path: &Path, branch: &str) -> Result<bool> {
    let mut status = git(path);
    status.args(["status", "--porcelain", "--untracked-files=all"]);
    let dirty = !run(status, "check the worktree")?.trim().is_empty();
    let mut ahead = git(workspace);
    ahead.args(["rev-list", "--count", &format!("HEAD..{branch}")]);
    let commits: u64 = run(ahead, "count the branch's commits")?
        .trim()
        .parse()
        .unwrap_or(1);
    if dirty || commits > 0 {
        return Ok(false);
    }
    let mut rm = git(workspace);
    rm.args(["worktree", "remove", "--force"]).arg(path);
    run(rm, "remove the clean worktree")?;
    let mut del = git(workspace);
    del.args(["branch", "-D", "--quiet", branch]);
    run(del, &format!("delete the unused branch {branch}"))?;
    Ok(true)
}
