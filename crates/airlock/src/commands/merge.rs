//! `airlock merge`: lands what an agent changed in the real workspace (refusing files that
//! execute on the host, special files and conflicts with host edits) and its commits on the
//! branch `airlock/NAME`.

use std::io::Write;

use airlock_session::changes::Change;
use airlock_session::merge::{apply_with_progress, conflicts, interrupted, is_git_internal};
use airlock_session::quote;
use airlock_session::{SessionRow, SessionState};
use anyhow::{bail, Context, Result};

use super::session::review;
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
    allow_exec: bool,
    journal: &std::path::Path,
) -> Result<airlock_session::merge::MergeReport> {
    let mut progress = merge_progress();
    let report = apply_with_progress(
        &r.workspace,
        upper,
        files,
        allow_exec,
        journal,
        &mut progress,
    )
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
    let exec = listed(false);
    if !exec.is_empty() {
        bail!(
            "session {}: refusing files that execute on the host; nothing was merged:\n{}\n\
             inspect them with `airlock diff {}`; pass --allow-exec-files to land them anyway",
            r.id,
            exec.join("\n"),
            r.id
        );
    }
    Ok(report)
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
    let rv = review(&r)?;
    let upper = r.dir.join("upper");
    let files: Vec<Change> = rv
        .files
        .iter()
        .filter(|c| !is_git_internal(&c.path))
        .cloned()
        .collect();
    let journal = r.dir.join("merge.journal");
    say_interrupted(&r, &journal);
    refuse_conflicts(&r, &upper, &files)?;
    let report = land_files(&r, &upper, &files, args.allow_exec_files, &journal)?;
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
        writeln!(
            out,
            "{:8} {}",
            format!("{:?}", c.kind).to_lowercase(),
            quote::path(&c.path)
        )?;
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
