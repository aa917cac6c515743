//! `airlock diff`: what an agent changed in its copy-on-write layer, as a unified diff (or
//! JSON), with its new commits and what they change. Every change `merge` would refuse (the
//! rules of `airlock_session::review`, the same for files and commits) is listed first and
//! marked `!!` where it is shown; what it lands but the user should read first is noted `!`.
//! For a worktree session it lists what in the kept worktree would run on the host.

use std::io::Write;

use airlock_session::changes::{concern_line, note_line, note_of, render, unified, Change};
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

/// The most notes the summary lists (each is also marked `!` where it is shown).
const MAX_NOTES_LISTED: usize = 20;

/// The summary of what `merge` lands without a flag but the user should read first: the next
/// agent's instructions and top-level dot-names airlock does not know (marked `!` below).
fn write_notes(out: &mut impl Write, notes: &[(std::path::PathBuf, &str)]) -> Result<()> {
    if notes.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "# read before you start a tool or an agent here ({} marked ! below; merge lands them):",
        notes.len()
    )?;
    for (p, why) in notes.iter().take(MAX_NOTES_LISTED) {
        writeln!(out, "#   ! {}: {why}", quote::path(p))?;
    }
    if notes.len() > MAX_NOTES_LISTED {
        writeln!(out, "#   ... and {} more", notes.len() - MAX_NOTES_LISTED)?;
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
            if let Some(note) = commit_note(e) {
                text.push_str(&note_line(&e.path, note));
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

/// The note on a path the commits change (none on a deletion).
fn commit_note(e: &airlock_session::gitview::CommitEntry) -> Option<&'static str> {
    (e.kind != airlock_session::changes::ChangeKind::Deleted)
        .then(|| airlock_session::review::note_reason(&e.path))
        .flatten()
}

/// Every note of the session: its working-tree files, then what its commits change.
fn notes<'a>(shown: &[&Change], rv: &Review) -> Vec<(std::path::PathBuf, &'a str)> {
    let files = shown
        .iter()
        .filter_map(|c| note_of(c).map(|n| (c.path.clone(), n)));
    let commits = rv
        .commit_review
        .net
        .iter()
        .filter_map(|e| commit_note(e).map(|n| (e.path.clone(), n)));
    files.chain(commits).collect()
}

/// `diff` of a worktree session: its files are on the host already, in a worktree airlock does
/// not diff; what it says is what in that worktree would run on the host
/// ([`crate::worktree::review_against`], the same rules as `!!` here), read with airlock's own
/// walk (git never runs inside it).
fn worktree_diff(r: &airlock_session::store::SessionRow, json: bool) -> Result<i32> {
    use anyhow::Context;
    let branch = format!("airlock/{}", r.name.as_deref().unwrap_or(&r.id));
    // While the agent runs it can swap a directory for a link under the walk: reviewed once the
    // sandbox is gone.
    if r.state == airlock_session::SessionState::Running {
        anyhow::bail!(
            "session {} ran with --mode worktree and is still running: its worktree is reviewed \
             when it ends (let it finish, or stop it, and run `airlock diff {}` again)",
            r.id,
            r.id
        );
    }
    let path = session_dir::sessions_root()?
        .parent()
        .map(|p| p.join("worktrees").join(&r.id))
        .filter(|w| std::fs::symlink_metadata(w).is_ok_and(|m| m.is_dir()))
        .with_context(|| {
            format!(
                "session {} ran with --mode worktree and its worktree is gone (it was clean, or \
                 deleted); its commits are on the branch {branch} in {}",
                r.id,
                quote::path(&r.workspace)
            )
        })?;
    let git_dir = r.workspace.join(".git");
    let base = r.base_commit.as_deref().with_context(|| {
        format!(
            "session {} recorded no base commit to compare its worktree with",
            r.id
        )
    })?;
    let mut c = crate::worktree::trusted_git(&git_dir);
    c.args(["rev-parse", "--show-object-format"]);
    let format = airlock_session::hostgit::run(c, "read the object format")?;
    let review = crate::worktree::review_against(&path, &git_dir, base, format.trim())?;
    let mut out = ReviewOut::stdout();
    if json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "session": r.id, "worktree": path, "branch": branch, "review": review,
            }),
        )?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(
        out,
        "# worktree session {}: its files are in {} (branch {branch}); read them there with \
         ordinary tools, and its commits with `git log -p {base}..{branch}` in the repository",
        r.id,
        quote::path(&path)
    )?;
    if review.is_empty() {
        writeln!(out, "# nothing in it runs on the host by airlock's rules")?;
    } else {
        writeln!(
            out,
            "# review these before you enter or build in the worktree (!! runs on the host, ! \
             read it first):"
        )?;
        for l in &review {
            writeln!(out, "{l}")?;
        }
    }
    Ok(0)
}

pub(crate) fn diff(args: SessionArgs) -> Result<i32> {
    let r = session_dir::find(Some(&args.id))?;
    if let Some(rec) = crate::gitclone::CloneRecord::load(&r.dir)? {
        crate::gitclone::check_workspace(&r.workspace, &r.id, &rec, "diff")?;
    }
    if r.mode == airlock_session::SessionMode::Worktree {
        return worktree_diff(&r, args.json);
    }
    let rv = review(&r)?;
    let upper = r.dir.join("upper");
    let mut out = ReviewOut::stdout();
    let shown: Vec<&Change> = rv
        .files
        .iter()
        .filter(|c| !is_git_internal(&c.path))
        .collect();
    let concerns = rv.concerns(&r.workspace, &upper);
    let notes = notes(&shown, &rv);
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
                "notes": notes.iter().map(|(p, why)| serde_json::json!({
                    "path": p, "note": why,
                })).collect::<Vec<_>>(),
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
    write_notes(&mut out, &notes)?;
    write_commits(&mut out, &rv)?;
    for c in &shown {
        write!(out, "{}", unified(&r.workspace, &upper, c))?;
    }
    if shown.is_empty() && rv.commits.is_empty() && rv.git_refused.is_empty() {
        eprintln!("airlock: session {} changed nothing", r.id);
    }
    Ok(0)
}
