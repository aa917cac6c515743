//! `airlock policy reload`: asks a running session's supervisor, over its control socket, to
//! re-read its policy (as SIGHUP does).

use anyhow::{bail, Context, Result};
use std::io::Write as _;

use crate::session_dir;

/// Reloads the policy of session `id` (the most recent when `None`).
pub(crate) fn reload(id: Option<&str>) -> Result<i32> {
    let info = session_dir::find(id)?;
    let answer = crate::control::request(&info.dir, "reload")
        .with_context(|| format!("session {} is not running or not answering", info.id))?;
    match answer.strip_prefix("ok") {
        Some(_) => {
            writeln!(std::io::stdout(), "session {}: policy reloaded", info.id)?;
            Ok(0)
        }
        None => bail!("session {}: {}", info.id, answer.trim()),
    }
}
