//! `airlock logs`: what a --detach session printed (the supervisor's log and the agent's
//! output), opened without following links the sandbox could have planted.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use airlock_session::SessionState;
use anyhow::{bail, Result};

use super::detach::open_sandbox_written;
use crate::backends;
use crate::cli::LogsArgs;
use crate::session_dir;

/// Copies `rel` under `dir` from byte `offset` to `out`; returns the new offset. A file the
/// sandbox replaced with a link or a special file is skipped with a warning.
fn read_from(dir: &Path, rel: &[&str], offset: u64, out: &mut impl Write) -> Result<u64> {
    let mut file = match open_sandbox_written(dir, rel) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(offset),
        Err(e) => {
            eprintln!("airlock: {e:#}");
            return Ok(offset);
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A file that shrank was replaced or truncated: start again from its beginning.
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))?;
    let copied = std::io::copy(&mut (&mut file).take(len - start), out)?;
    Ok(start + copied)
}

/// The output of a session running in a box, asked from the box (`ctl logs`) and printed
/// through the same filter as a local session's ([`crate::review_out::ReviewOut`]: the agent's
/// terminal output is box-chosen bytes); with `follow`, asked again until the session ends,
/// printing what is new.
fn remote_logs(r: &airlock_session::SessionRow, at: &str, follow: bool) -> Result<i32> {
    let engine = backends::engine(r.backend, &backends::EngineOptions::for_session(Some(at))?)?;
    let mut out = crate::review_out::ReviewOut::stdout();
    let mut printed = 0usize;
    loop {
        let log = super::remote::ctl(engine.as_ref(), at, airlock_remote::ctl::LOGS, &[])?;
        // A log that shrank was replaced: print it again from its beginning.
        let from = if log.len() < printed { 0 } else { printed };
        out.write_all(&log[from..])?;
        out.flush()?;
        printed = log.len();
        if !follow {
            return Ok(0);
        }
        let now = session_dir::find(Some(&r.id))?;
        if now.state != SessionState::Running
            || super::remote::status(engine.as_ref(), at)
                .is_ok_and(|st| st.state != airlock_remote::BoxState::Running)
        {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `airlock logs --box ID`: the box's own log (the supervisor's output, as the engine keeps
/// it), at most [`airlock_remote::MAX_LOGS`] bytes, through the same filter as the command's
/// output (the box chose these bytes).
fn box_log(r: &airlock_session::SessionRow) -> Result<i32> {
    let Some(at) = r.location.as_deref().filter(|_| r.backend.is_remote()) else {
        bail!(
            "session {} ran on the {} backend, without a box: its output is `airlock logs {}`",
            r.id,
            r.backend,
            r.id
        );
    };
    let engine = backends::engine(r.backend, &backends::EngineOptions::for_session(Some(at))?)?;
    let log = engine
        .logs(&at.to_string(), airlock_remote::MAX_LOGS)
        .map_err(|e| anyhow::anyhow!("the log of session {}'s box: {e}", r.id))?;
    let mut out = crate::review_out::ReviewOut::stdout();
    out.write_all(&log)?;
    out.flush()?;
    Ok(0)
}

/// `airlock logs ID [-f] [--box]`
pub(crate) fn logs(args: LogsArgs) -> Result<i32> {
    let r = session_dir::find(Some(&args.id))?;
    if args.box_log {
        return box_log(&r);
    }
    if r.backend.is_remote() && r.state == airlock_session::SessionState::Running {
        if let Some(at) = &r.location {
            return remote_logs(&r, at, args.follow);
        }
    }
    let files: [&[&str]; 2] = [&["session.log"], &["tmux", "agent.log"]];
    let exists = |rel: &[&str]| {
        std::fs::symlink_metadata(rel.iter().fold(r.dir.clone(), |p, c| p.join(c))).is_ok()
    };
    if !files.iter().any(|f| exists(f)) {
        bail!(
            "session {} has no logs (only --detach sessions keep their output; its audit log is \
             `airlock audit {}`)",
            r.id,
            r.id
        );
    }
    let mut offsets = [0u64; 2];
    let mut out = crate::review_out::ReviewOut::stdout();
    let mut warned = false;
    let (backend, session) = backends::of(&r);
    loop {
        backend.collect_logs(&session)?;
        for (rel, off) in files.iter().zip(offsets.iter_mut()) {
            // Warn about a planted file once, not on every round of --follow.
            if warned && open_sandbox_written(&r.dir, rel).is_err() {
                continue;
            }
            if open_sandbox_written(&r.dir, rel).is_err() {
                warned = true;
            }
            *off = read_from(&r.dir, rel, *off, &mut out)?;
        }
        out.flush()?;
        if !args.follow {
            return Ok(0);
        }
        let now = session_dir::find(Some(&r.id))?;
        if now.state != SessionState::Running {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
