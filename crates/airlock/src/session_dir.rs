//! Where a session keeps what must outlive it: `$XDG_DATA_HOME/airlock/sessions/ID/` (default
//! `~/.local/share/airlock/sessions/ID/`), holding the overlay's upper layer, `audit.jsonl` and
//! the control socket, and the session store `sessions.db` beside it. Neither is ever visible
//! inside the sandbox.

use std::path::PathBuf;

use airlock_session::{SessionRow, Store};
use anyhow::{Context, Result};

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

/// The session store, `sessions.db` beside the session directories.
pub(crate) fn store() -> Result<Store> {
    let root = sessions_root()?;
    let db = root
        .parent()
        .map(|p| p.join("sessions.db"))
        .context("bad session root")?;
    Ok(Store::open(&db)?)
}

/// Finds a session by id, unique id prefix or name; `None` picks the most recent.
pub(crate) fn find(id: Option<&str>) -> Result<SessionRow> {
    let store = store()?;
    match id {
        Some(id) => Ok(store.get(id)?),
        None => store
            .list()?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no sessions yet; start one with `airlock run`")),
    }
}
