//! `airlock approvals`, `airlock approve`, `airlock deny`: the user's side of approval while
//! the agent runs. Each asks the session's supervisor over its control socket, which only the
//! user reaches (`crate::approvals`).

use std::io::Write;

use airlock_session::SessionState;
use anyhow::{bail, Context, Result};

use crate::approvals::PendingView;
use crate::cli::{ApprovalsArgs, ApproveArgs, DenyArgs};
use crate::review_out::ReviewOut;
use crate::session_dir;

/// Lists the requests every running session holds.
pub(crate) fn list(args: ApprovalsArgs) -> Result<i32> {
    let store = session_dir::store()?;
    let mut all: Vec<PendingView> = Vec::new();
    for row in store.list()? {
        if row.state != SessionState::Running {
            continue;
        }
        // A session without approvals, or one that stopped answering, holds nothing.
        let Ok(answer) = crate::control::request(&row.dir, "approvals") else {
            continue;
        };
        if let Some(json) = answer.trim_end().strip_prefix("ok ") {
            let held: Vec<PendingView> = serde_json::from_str(json).with_context(|| {
                format!("session {} answered something airlock cannot read", row.id)
            })?;
            all.extend(held);
        }
    }
    let mut out = ReviewOut::stdout();
    if args.json {
        serde_json::to_writer(&mut out, &all)?;
        writeln!(out)?;
        return Ok(0);
    }
    if all.is_empty() {
        eprintln!("airlock: no session holds a request for your answer");
        return Ok(0);
    }
    for p in &all {
        let (s, id) = (&p.session, p.id);
        let how = if p.kind == "command" {
            format!("airlock approve {s} {id}   |   airlock deny {s} {id}")
        } else {
            format!(
                "airlock approve {s} {id} --for once|session|project   |   airlock deny {s} {id}"
            )
        };
        let tool = p
            .tool
            .as_deref()
            .map(|t| format!("{t}; "))
            .unwrap_or_default();
        writeln!(
            out,
            "{s} {id}  {}  since {}  ({tool}{} waiting; rule {})\n    {how}",
            p.what(),
            p.since,
            p.waiting,
            p.rule,
        )?;
    }
    Ok(0)
}

/// `airlock approve ID [N|HOST[:PORT]] [--for once|session|project]`.
pub(crate) fn approve(args: ApproveArgs) -> Result<i32> {
    let scope = args.scope.as_str();
    ask(
        &args.id,
        &format!("approve {} {scope}", word(args.host.as_deref())?),
    )
}

/// `airlock deny ID [N|HOST[:PORT]]`.
pub(crate) fn deny(args: DenyArgs) -> Result<i32> {
    ask(&args.id, &format!("deny {}", word(args.host.as_deref())?))
}

/// The request as one word of the control protocol (`-`: the only one held).
fn word(target: Option<&str>) -> Result<&str> {
    let Some(t) = target else { return Ok("-") };
    if t.is_empty() || t == "-" || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "'{t}' is not a request number, host or host:port (e.g. 3 or registry.npmjs.org:443)"
        );
    }
    Ok(t)
}

fn ask(id: &str, request: &str) -> Result<i32> {
    let info = session_dir::find(Some(id))?;
    if info.state != SessionState::Running {
        bail!(
            "session {} is not running ({}); nothing is held",
            info.id,
            info.state
        );
    }
    let answer = crate::control::request(&info.dir, request)
        .with_context(|| format!("session {} is not answering", info.id))?;
    match answer.trim_end().strip_prefix("ok ") {
        Some(done) => {
            writeln!(std::io::stdout(), "session {}: {done}", info.id)?;
            Ok(0)
        }
        None => {
            // The supervisor's errors already name the session.
            let why = answer.trim_end().trim_start_matches("error: ");
            if why.starts_with("session ") {
                bail!("{why}");
            }
            bail!("session {}: {why}", info.id)
        }
    }
}
