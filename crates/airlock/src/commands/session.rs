//! `airlock diff`, `merge`, `rm`, `stop`: reviewing what an agent changed in its
//! copy-on-write layer, landing it in the real workspace, and cleaning up.

use std::io::Write;

use airlock_session::changes::{changes, unified, Change};
use airlock_session::gitview::{agent_head, GitView};
use airlock_session::merge::{apply_with_progress, conflicts, interrupted, is_git_internal};
use airlock_session::{SessionRow, SessionState};
use anyhow::{bail, Context, Result};

use crate::cli::{MergeArgs, RmArgs, SessionArgs, StopArgs};
use crate::review_out::ReviewOut;
use crate::session_dir;
use airlock_session::quote;

pub(super) fn state_word(r: &SessionRow) -> String {
    match r.state {
        SessionState::Running => "running".into(),
        SessionState::Exited => format!("exited ({})", r.exit_status.unwrap_or(0)),
        SessionState::Failed => format!("failed ({})", r.exit_status.unwrap_or(125)),
        SessionState::Lost => "lost (supervisor gone)".into(),
    }
}

/// Renders rows as columns two spaces apart, each as wide as its widest cell (the last column is
/// not padded); every line, the last included, ends with a newline.
pub(super) fn render_table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The session's overlay layers, or an error saying why it has none.
fn layers(r: &SessionRow) -> Result<std::path::PathBuf> {
    if r.mode == "worktree" {
        bail!(
            "session {} ran with --mode worktree: its commits are on the branch airlock/{} and \
             any uncommitted work is in its worktree (see `git worktree list` in {})",
            r.id,
            r.name.as_deref().unwrap_or(&r.id),
            r.workspace.display()
        );
    }
    if r.mode != "overlay" {
        bail!(
            "session {} ran with --mode {}: its changes were made in {} directly",
            r.id,
            r.mode,
            r.workspace.display()
        );
    }
    let upper = r.dir.join("upper");
    if !upper.is_dir() {
        bail!(
            "session {} has no change layer at {} (was it removed?)",
            r.id,
            upper.display()
        );
    }
    if !r.workspace.is_dir() {
        bail!(
            "the workspace of session {}, {}, no longer exists; its changes are kept in {}",
            r.id,
            r.workspace.display(),
            upper.display()
        );
    }
    Ok(upper)
}

pub(super) struct Review {
    pub(super) files: Vec<Change>,
    head: Option<String>,
    pub(super) commits: Vec<String>,
    view: Option<GitView>,
}

pub(super) fn review(r: &SessionRow) -> Result<Review> {
    let upper = layers(r)?;
    let files = changes(&r.workspace, &upper)?;
    let head = agent_head(&upper, &r.workspace);
    let mut commits = Vec::new();
    let mut view = None;
    if let Some(h) = &head {
        if Some(h) != r.base_commit.as_ref() {
            let v = GitView::new(&r.dir.join("gitview"), &upper, &r.workspace)?;
            commits = v.log(r.base_commit.as_deref(), h)?;
            view = Some(v);
        }
    }
    Ok(Review {
        files,
        head,
        commits,
        view,
    })
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

pub(crate) fn rm(args: RmArgs) -> Result<i32> {
    let store = session_dir::store()?;
    let r = session_dir::find(Some(&args.id))?;
    if r.state == SessionState::Running && !args.force {
        bail!(
            "session {} is still running; stop it first, or pass --force",
            r.id
        );
    }
    if r.mode == "overlay" && !r.merged && !args.force {
        if let Ok(rv) = review(&r) {
            let n = rv
                .files
                .iter()
                .filter(|c| !is_git_internal(&c.path))
                .count();
            if n > 0 || !rv.commits.is_empty() {
                bail!(
                    "session {} has unmerged changes ({n} file(s), {} commit(s)); merge them with \
                     `airlock merge {}` or pass --force to delete them",
                    r.id,
                    rv.commits.len(),
                    r.id
                );
            }
        }
    }
    if r.dir.exists() {
        remove_tree(&r.dir).with_context(|| format!("cannot delete {}", r.dir.display()))?;
    }
    store.delete(&r.id)?;
    println!("removed session {}", r.id);
    Ok(0)
}

/// Deletes a session directory. overlayfs leaves its scratch `work/work` directory with mode 000,
/// so directories are made accessible first.
pub(super) fn remove_tree(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    std::fs::remove_dir_all(dir)
}

pub(crate) fn stop(args: StopArgs) -> Result<i32> {
    use nix::sys::signal::{kill, Signal};
    let r = session_dir::find(Some(&args.id))?;
    if r.state != SessionState::Running {
        bail!("session {} is not running ({})", r.id, state_word(&r));
    }
    let pid = r
        .supervisor_pid
        .and_then(|p| i32::try_from(p).ok())
        .map(nix::unistd::Pid::from_raw)
        .context("the session has no supervisor pid")?;
    let alive = || {
        r.supervisor_pid
            .and_then(airlock_session::store::process_start)
            == r.supervisor_start
    };
    // The supervisor forwards SIGTERM to the command; its exit ends the sandbox.
    kill(pid, Signal::SIGTERM).with_context(|| format!("cannot signal session {}", r.id))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.timeout);
    while alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if alive() {
        eprintln!(
            "airlock: session {} did not stop within {}s; killing it",
            r.id, args.timeout
        );
        // The sandbox dies with its supervisor (parent-death signal).
        let _ = kill(pid, Signal::SIGKILL);
        let store = session_dir::store()?;
        store.finish(
            &r.id,
            SessionState::Failed,
            Some(137),
            &airlock_audit::now_rfc3339(),
        )?;
    }
    println!("stopped session {}", r.id);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_fit_their_widest_cell_and_every_line_ends() {
        let header = ["ID", "MODE", "WHERE"].map(String::from);
        let rows = [
            ["a1", "overlay", "/w/one"].map(String::from),
            ["b2", "worktree", "/w/two"].map(String::from),
            ["c3", "bind", "/w/three"].map(String::from),
        ];
        let t = render_table(&header, &rows);
        assert!(t.ends_with("/w/three\n"), "{t:?}");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        // The last column starts at the same offset on every line, even after `worktree`.
        let col = |l: &str| l.find("/w/").or_else(|| l.find("WHERE"));
        let starts: Vec<_> = lines.iter().map(|l| col(l)).collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{t}");
        assert_eq!(lines[2], "b2  worktree  /w/two");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{t:?}");
    }
}
