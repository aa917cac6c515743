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
        writeln!(
            out,
            "{}  {}:{}  since {}  ({} waiting; rule {})\n    airlock approve {} {}:{} --for once|session|project   |   airlock deny {} {}:{}",
            p.session, p.host, p.port, p.since, p.waiting, p.rule, p.session, p.host, p.port,
            p.session, p.host, p.port
        )?;
    }
    Ok(0)
}

/// `airlock approve ID HOST[:PORT] [--for once|session|project]`.
pub(crate) fn approve(args: ApproveArgs) -> Result<i32> {
    let scope = args.scope.as_str();
    ask(&args.id, &format!("approve {} {scope}", word(&args.host)?))
}

/// `airlock deny ID HOST[:PORT]`.
pub(crate) fn deny(args: DenyArgs) -> Result<i32> {
    ask(&args.id, &format!("deny {}", word(&args.host)?))
}

/// The host as one word of the control protocol.
fn word(host: &str) -> Result<&str> {
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("'{host}' is not a host or host:port (e.g. registry.npmjs.org:443)");
    }
    Ok(host)
}

fn ask(id: &str, request: &str) -> Result<i32> {
    let info = session_dir::find(Some(id))?;
    if info.state != SessionState::Running {
        bail!(
            "session {} is not running ({}); nothing is held",
            info.id,
            format!("{:?}", info.state).to_ascii_lowercase()
        );
    }
    let answer = crate::control::request(&info.dir, request)
        .with_context(|| format!("session {} is not answering", info.id))?;
    match answer.trim_end().strip_prefix("ok ") {
        Some(done) => {
            writeln!(std::io::stdout(), "session {}: {done}", info.id)?;
            Ok(0)
        }
        None => bail!(
            "session {}: {}",
            info.id,
            answer.trim_end().trim_start_matches("error: ")
        ),
    }
}
