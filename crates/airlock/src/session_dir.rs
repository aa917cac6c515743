//! Where a session keeps what must outlive it: `$XDG_DATA_HOME/airlock/sessions/ID/` (default
//! `~/.local/share/airlock/sessions/ID/`), holding `session.json` (who supervises it, with which
//! policy) and `audit.jsonl`. The directory is never visible inside the sandbox.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// What `session.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionInfo {
    pub(crate) id: String,
    /// Host pid of the supervising `airlock run`.
    pub(crate) supervisor_pid: u32,
    pub(crate) workspace: PathBuf,
    pub(crate) command: Vec<String>,
    pub(crate) started: String,
    /// Policy files in layer order, re-read on reload.
    pub(crate) policies: Vec<PathBuf>,
    pub(crate) trusted_policies: Vec<PathBuf>,
}

/// The root of all session directories.
pub(crate) fn sessions_root() -> Result<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })
        .context("neither XDG_DATA_HOME nor HOME is set: cannot place session data")?;
    Ok(data.join("airlock/sessions"))
}

/// Creates the directory of session `id` (mode 0700).
pub(crate) fn create(id: &str) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = sessions_root()?.join(id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create session directory {}", dir.display()))?;
    Ok(dir)
}

/// Writes `session.json` atomically (temp file + rename).
pub(crate) fn write_info(dir: &Path, info: &SessionInfo) -> Result<()> {
    let tmp = dir.join("session.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(info)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("session.json"))
        .with_context(|| format!("cannot write {}", dir.join("session.json").display()))?;
    Ok(())
}

/// Finds a session by id or unique id prefix; `None` picks the most recent.
pub(crate) fn find(id: Option<&str>) -> Result<(PathBuf, SessionInfo)> {
    let root = sessions_root()?;
    let mut found: Vec<(PathBuf, SessionInfo)> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let info: SessionInfo =
                serde_json::from_slice(&std::fs::read(dir.join("session.json")).ok()?).ok()?;
            Some((dir, info))
        })
        .filter(|(_, info)| id.is_none_or(|id| info.id.starts_with(id)))
        .collect();
    found.sort_by(|a, b| a.1.started.cmp(&b.1.started));
    match (id, found.len()) {
        (Some(id), 0) => bail!(
            "no session '{id}' under {}; list sessions with `ls {}`",
            root.display(),
            root.display()
        ),
        (None, 0) => bail!("no sessions yet under {}", root.display()),
        (Some(id), n) if n > 1 => bail!("session id '{id}' is ambiguous ({n} sessions match)"),
        _ => Ok(found.pop().expect("one session found")),
    }
}
