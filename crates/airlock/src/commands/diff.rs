//! `airlock diff`: what an agent changed in its copy-on-write layer, as a unified diff (or
//! JSON), with its new commits.

use std::io::Write;

use airlock_session::changes::{unified, Change};
use airlock_session::merge::is_git_internal;
use airlock_session::quote;
use anyhow::Result;

use super::session::review;
use crate::cli::SessionArgs;
use crate::review_out::ReviewOut;
use crate::session_dir;

pub(crate) fn diff(args: SessionArgs) -> Result<i32> {
    let r = session_dir::find(Some(&args.id))?;
    let rv = review(&r)?;
    let upper = r.dir.join("upper");
    let mut out = ReviewOut::stdout();
    let shown: Vec<&Change> = rv
        .files
        .iter()
        .filter(|c| !is_git_internal(&c.path))
        .collect();
    if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "session": r.id,
                "files": shown,
                "head": rv.head,
                "base": r.base_commit,
                "commits": rv.commits,
            }),
        )?;
        writeln!(out)?;
        return Ok(0);
    }
    if !rv.commits.is_empty() {
        writeln!(
            out,
            "# {} new commit(s) (merge fetches them into a branch):",
            rv.commits.len()
        )?;
        for c in &rv.commits {
            writeln!(out, "#   {}", quote::name(c))?;
        }
        writeln!(out)?;
    }
    for c in &shown {
        write!(out, "{}", unified(&r.workspace, &upper, c))?;
    }
    if shown.is_empty() && rv.commits.is_empty() {
        eprintln!("airlock: session {} changed nothing", r.id);
    }
    Ok(0)
}
