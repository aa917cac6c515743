//! `airlock diff`: what an agent changed in its copy-on-write layer, as a unified diff (or
//! JSON), with its new commits and what they change. Every change `merge` would refuse (the
//! rules of `airlock_session::review`, the same for files and commits) is listed first and
//! marked `!!` where it is shown.

use std::io::Write;

use airlock_session::changes::{concern_line, render, unified, Change};
use airlock_session::gitview::MAX_REVIEW_BYTES;
use airlock_session::merge::is_git_internal;
use airlock_session::quote;
use anyhow::Result;

use super::session::{review, Review};
use crate::cli::SessionArgs;
use crate::review_out::ReviewOut;
use crate::session_dir;

/// The summary of everything `merge` refuses without a flag, before the diff itself.
fn write_summary(
    out: &mut impl Write,
    concerns: &[(
        std::path::PathBuf,
        Option<String>,
        airlock_session::review::Concern,
    )],
) -> Result<()> {
    if concerns.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "# merge refuses {} change(s) without a flag (each marked !! below):",
        concerns.len()
    )?;
    for (p, commit, k) in concerns {
        let at = commit
            .as_deref()
            .map(|c| format!(" (in commit {})", &c[..c.len().min(12)]))
            .unwrap_or_default();
        writeln!(out, "#   !! {}{at}: {k} [{}]", quote::path(p), k.flag())?;
    }
    writeln!(out)?;
    Ok(())
}

/// What the agent left in its `.git` that points a host git elsewhere, loudly, before anything:
/// its commits were not read and `merge` refuses the session.
fn write_git_refused(out: &mut impl Write, rv: &Review) -> Result<()> {
    if rv.git_refused.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "# !! the agent's git data points outside the session; its commits were NOT read and \
         merge refuses this session (no flag lands it):"
    )?;
    for g in &rv.git_refused {
        writeln!(out, "#   !! {g}")?;
    }
    writeln!(out)?;
    Ok(())
}

/// The commits: their subjects, then the range's change file by file (marked like the files),
/// then the concerns of paths some commit changed that are not in the range's net change.
fn write_commits(out: &mut impl Write, rv: &Review) -> Result<()> {
    if rv.commits.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "# {} new commit(s) (merge fetches them into a branch):",
        rv.commits.len()
    )?;
    for c in &rv.commits {
        writeln!(out, "#   {}", quote::name(c))?;
    }
    writeln!(out, "# what the commits change:")?;
    let cr = &rv.commit_review;
    if let Some(view) = &rv.view {
        // One change at a time: airlock never holds more than its two sides.
        view.each_side(cr, &mut |e, old, new| {
            let mut text = String::new();
            for (_, k) in cr.concerns.iter().filter(|(c, _)| c.path == e.path) {
                text.push_str(&concern_line(&e.path, k));
            }
            let file = |m: u32| (m & 0o170000 == 0o100000).then_some(m & 0o7777);
            let modes = (file(e.old_mode), file(e.new_mode));
            let p = quote::path(&e.path).to_string();
            text.push_str(&render(&p, old, new, e.kind, modes));
            out.write_all(text.as_bytes())
                .map_err(|e| format!("cannot write the diff: {e}"))
        })?;
    }
    if !cr.unread.is_empty() {
        writeln!(
            out,
            "# NOT SHOWN: {} more file(s) of the commits, past the {} MiB of their files one \
             review reads; merge refuses them without --allow-unshown-files",
            cr.unread.len(),
            MAX_REVIEW_BYTES >> 20
        )?;
    }
    for (e, k) in &cr.concerns {
        if !cr.net.iter().any(|n| n.path == e.path) {
            let commit = e.commit.as_deref().unwrap_or("?");
            writeln!(
                out,
                "!! {} (in commit {}, not in the last one): {k}; merge refuses it without {}",
                quote::path(&e.path),
                &commit[..commit.len().min(12)],
                k.flag()
            )?;
        }
    }
    writeln!(out, "# the working tree's uncommitted changes:")?;
    Ok(())
}

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
    let concerns = rv.concerns(&r.workspace, &upper);
    if args.json {
        let refused: Vec<serde_json::Value> = concerns
            .iter()
            .map(|(p, commit, k)| {
                serde_json::json!({
                    "path": p, "commit": commit, "concern": k.to_string(), "flag": k.flag(),
                })
            })
            .collect();
        let commit_files: Vec<serde_json::Value> = rv
            .commit_review
            .net
            .iter()
            .map(|e| serde_json::json!({"path": e.path, "kind": e.kind}))
            .collect();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "session": r.id,
                "files": shown,
                "head": rv.head,
                "base": r.base_commit,
                "commits": rv.commits,
                "commit_files": commit_files,
                "refused_without_flag": refused,
                "git_refused": rv.git_refused.iter().map(|g| serde_json::json!({
                    "path": g.path, "why": g.why,
                })).collect::<Vec<_>>(),
            }),
        )?;
        writeln!(out)?;
        return Ok(0);
    }
    write_git_refused(&mut out, &rv)?;
    write_summary(&mut out, &concerns)?;
    write_commits(&mut out, &rv)?;
    for c in &shown {
        write!(out, "{}", unified(&r.workspace, &upper, c))?;
    }
    if shown.is_empty() && rv.commits.is_empty() && rv.git_refused.is_empty() {
        eprintln!("airlock: session {} changed nothing", r.id);
    }
    Ok(0)
}
