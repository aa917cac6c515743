//! `airlock merge`: lands what an agent changed in the real workspace and its commits on the
//! branch `airlock/NAME`, refusing up front special files, conflicts with host edits, and (in the
//! files and in every commit, by the rules of `airlock_session::review`, unless allowed) files
//! that execute on the host, links leading outside the workspace and files diff cannot show.

use std::io::Write;

use airlock_session::changes::Change;
use airlock_session::merge::{apply_with_progress, conflicts, interrupted, is_git_internal, Allow};
use airlock_session::quote;
use airlock_session::{SessionRow, SessionState};
use anyhow::{bail, Context, Result};

use super::session::{review, Review};
use crate::cli::MergeArgs;
use crate::review_out::ReviewOut;
use crate::session_dir;

/// Lists what an earlier, interrupted merge of `r` had landed (from its journal).
fn say_interrupted(r: &SessionRow, journal: &std::path::Path) {
    let landed = interrupted(journal);
    if landed.is_empty() {
        return;
    }
    eprintln!(
        "airlock: an earlier merge of session {} was interrupted after landing {} change(s); \
         completing it:",
        r.id,
        landed.len()
    );
    for p in &landed {
        eprintln!("  landed {}", quote::path(p));
    }
}

/// Fails, naming them, when files the agent changed were also changed on the host.
fn refuse_conflicts(r: &SessionRow, upper: &std::path::Path, files: &[Change]) -> Result<()> {
    let clash = conflicts(&r.workspace, upper, files, r.created_unix);
    if clash.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = clash
        .iter()
        .map(|p| format!("  {}", quote::path(p)))
        .collect();
    bail!(
        "session {}: these files were also changed on the host since the session started; \
         nothing was merged:\n{}\nreview with `airlock diff {}` and resolve by hand",
        r.id,
        list.join("\n"),
        r.id
    )
}

/// A progress line on stderr for merges that take a while: only on a terminal, from the
/// 200th change or after a second, redrawn at most ten times a second.
fn merge_progress() -> impl FnMut(usize, usize) {
    let tty = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    let start = std::time::Instant::now();
    let mut last: Option<std::time::Instant> = None;
    move |done, total| {
        let slow = done >= 200 || start.elapsed() > std::time::Duration::from_secs(1);
        let due = last.is_none_or(|l| l.elapsed() > std::time::Duration::from_millis(100));
        if !tty || !slow || !(due || done == total) {
            return;
        }
        last = Some(std::time::Instant::now());
        eprint!("\rairlock: merging {done}/{total} change(s)");
        if done == total {
            eprintln!();
        }
    }
}

/// Applies the files, or explains (by name) what was refused, or what had landed before a
/// failure and how to complete it.
fn land_files(
    r: &SessionRow,
    upper: &std::path::Path,
    files: &[Change],
    allow: Allow,
    journal: &std::path::Path,
) -> Result<airlock_session::merge::MergeReport> {
    let mut progress = merge_progress();
    let report = apply_with_progress(&r.workspace, upper, files, allow, journal, &mut progress)
        .map_err(|e| {
            let landed = interrupted(journal);
            if landed.is_empty() {
                return anyhow::anyhow!("{e}\nnothing was merged");
            }
            anyhow::anyhow!(
            "{e}\n{} change(s) landed before the failure (listed in {}); fix the cause and run \
             `airlock merge {}` again to complete it",
            landed.len(),
            journal.display(),
            r.id
        )
        })?;
    let listed = |special: bool| -> Vec<String> {
        report
            .refused
            .iter()
            .filter(|(c, _)| c.entry.is_special() == special)
            .map(|(c, why)| format!("  {}: {why}", quote::path(&c.path)))
            .collect()
    };
    let special = listed(true);
    if !special.is_empty() {
        bail!(
            "session {}: the agent left special files that cannot be merged; nothing was \
             merged:\n{}\nremove them from {} (or land the rest by hand)",
            r.id,
            special.join("\n"),
            upper.display()
        );
    }
    let other = listed(false);
    if !other.is_empty() {
        bail!(
            "session {}: refusing changes that execute on the host, lead outside the workspace \
             or that diff cannot show; nothing was merged:\n{}\ninspect them with `airlock diff \
             {}`; pass the flag named to land them anyway",
            r.id,
            other.join("\n"),
            r.id
        );
    }
    Ok(report)
}

/// Fails, naming each, when the session's files or commits hold a concern `allow` does not
/// let through (the same rules `airlock diff` marks with `!!`), before anything is written.
fn refuse_concerns(
    r: &SessionRow,
    rv: &Review,
    upper: &std::path::Path,
    allow: Allow,
) -> Result<()> {
    let refused: Vec<String> = rv
        .concerns(&r.workspace, upper)
        .into_iter()
        .filter(|(_, _, k)| !k.allowed(allow))
        .map(|(p, commit, k)| {
            let at = match commit {
                Some(c) => format!(" (in commit {})", &c[..c.len().min(12)]),
                None => String::new(),
            };
            format!(
                "  {}{at}: {k} (pass {} to land it)",
                quote::path(&p),
                k.flag()
            )
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    bail!(
        "session {}: refusing changes that execute on the host, lead outside the workspace or \
         that diff cannot show; nothing was merged:\n{}\ninspect them with `airlock diff {}`; \
         pass the flag named to land them anyway",
        r.id,
        refused.join("\n"),
        r.id
    )
}

/// Fails, naming each, when the agent's `.git` points a host git outside the session's own
/// data (a link, an alternates file, grafts, replace refs, ...): no flag lands such a session,
/// since its commits could carry any repository on the host.
fn refuse_git_indirections(r: &SessionRow, rv: &Review, upper: &std::path::Path) -> Result<()> {
    if rv.git_refused.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = rv.git_refused.iter().map(|g| format!("  {g}")).collect();
    bail!(
        "session {}: the agent's git data points outside the session (its commits could bring \
         in any repository on this host); nothing was merged and no flag lands it:\n{}\n\
         inspect them with `airlock diff {}`; to land the files without the commits, delete \
         those entries from {} and merge again",
        r.id,
        list.join("\n"),
        r.id,
        upper.join(".git").display()
    )
}

pub(crate) fn merge(args: MergeArgs) -> Result<i32> {
    let store = session_dir::store()?;
    let r = session_dir::find(Some(&args.id))?;
    if r.state == SessionState::Running {
        bail!(
            "session {} is still running; let it finish (or stop it) before merging",
            r.id
        );
    }
    if r.merged {
        bail!("session {} was merged already; nothing to do", r.id);
    }
    if let Some(git_dir) = airlock_session::merge::enclosing_git_dir(&r.workspace) {
        bail!(
            "session {}'s workspace {} is inside the git directory {}: git would run hooks and config from it on your host, so nothing is merged; read the changes with `airlock diff {}`",
            r.id,
            r.workspace.display(),
            git_dir.display(),
            r.id
        );
    }
    if let Some(rec) = crate::gitclone::CloneRecord::load(&r.dir)? {
        crate::gitclone::check_workspace(&r.workspace, &r.id, &rec, "merge")?;
    }
    let rv = review(&r)?;
    let upper = r.dir.join("upper");
    refuse_git_indirections(&r, &rv, &upper)?;
    let files: Vec<Change> = rv
        .files
        .iter()
        .filter(|c| !is_git_internal(&c.path))
        .cloned()
        .collect();
    let journal = r.dir.join("merge.journal");
    say_interrupted(&r, &journal);
    let allow = Allow {
        exec_files: args.allow_exec_files,
        outside_links: args.allow_outside_links,
        unshown_files: args.allow_unshown_files,
    };
    refuse_concerns(&r, &rv, &upper, allow)?;
    refuse_conflicts(&r, &upper, &files)?;
    let report = land_files(&r, &upper, &files, allow, &journal)?;
    let mut out = ReviewOut::stdout();
    if let (Some(view), Some(head)) = (&rv.view, &rv.head) {
        let branch = format!("airlock/{}", r.name.as_deref().unwrap_or(&r.id));
        view.fetch_into(&r.workspace, head, r.base_commit.as_deref(), &branch)
            .context("the files were merged, the commits were not")?;
        writeln!(
            out,
            "fetched {} commit(s) into branch {branch}",
            rv.commits.len()
        )?;
    }
    for c in &report.applied {
        writeln!(out, "{:8} {}", c.kind.as_str(), quote::path(&c.path))?;
    }
    store.mark_merged(&r.id)?;
    let _ = std::fs::remove_file(&journal);
    crate::telemetry::record_after_session(
        &r,
        airlock_audit::AuditEvent::now(
            airlock_audit::Decision::Info,
            airlock_audit::Detail::Session {
                event: "merged".into(),
                exit_status: None,
            },
        )
        .session(r.id.clone())
        .reason(format!("{} file change(s) landed", report.applied.len())),
    );
    writeln!(
        out,
        "merged session {} into {} ({} file change(s))",
        r.id,
        r.workspace.display(),
        report.applied.len()
    )?;
    Ok(0)
}
