//! What the session commands share: a session's state as a word, and the review of what an
//! agent changed (its files in the overlay's upper layer, its commits), brought home by the
//! session's backend first.

use airlock_session::changes::{changes, concerns_of, Change};
use airlock_session::gitview::{agent_moved_head, git_refusals, CommitReview, GitRefusal, GitView};
use airlock_session::merge::is_git_internal;
use airlock_session::review::Concern;
use airlock_session::{SessionMode, SessionRow, SessionState};
use anyhow::{bail, Result};

use crate::backends;

/// A session's state as `ls` shows it (an ended remote session whose box `--keep` left adds
/// `box kept`).
pub(crate) fn state_word(r: &SessionRow) -> String {
    let word = match r.state {
        SessionState::Running => "running".into(),
        SessionState::Exited => format!("exited ({})", r.exit_status.unwrap_or(0)),
        SessionState::Failed => format!("failed ({})", r.exit_status.unwrap_or(125)),
        SessionState::Lost => "lost (supervisor gone)".into(),
    };
    if box_kept(r) {
        return format!("{word}, box kept");
    }
    word
}

/// The marker `airlock run --keep` leaves in a remote session's directory when it left the
/// box in place at the end (holding its location); `airlock rm` deletes the box and the marker.
pub(crate) const BOX_KEPT: &str = "box-kept";

/// Whether an ended remote session's box is still there because of `--keep` (it holds
/// resources until `airlock rm`, so `ls` lists it without `--all`).
pub(crate) fn box_kept(r: &SessionRow) -> bool {
    r.backend.is_remote() && r.state != SessionState::Running && r.dir.join(BOX_KEPT).is_file()
}

/// The session's overlay layers (collected by its backend first), or an error saying why it
/// has none.
fn layers(r: &SessionRow) -> Result<std::path::PathBuf> {
    if r.mode == SessionMode::Worktree {
        bail!(
            "session {} ran with --mode worktree: its commits are on the branch airlock/{} and \
             any uncommitted work is in its worktree (see `git worktree list` in {})",
            r.id,
            r.name.as_deref().unwrap_or(&r.id),
            airlock_session::quote::path(&r.workspace)
        );
    }
    if r.mode != SessionMode::Overlay {
        bail!(
            "session {} ran with --mode {}: its changes were made in {} directly",
            r.id,
            r.mode,
            airlock_session::quote::path(&r.workspace)
        );
    }
    let (backend, session) = backends::of(r);
    backend.collect_changes(&session)?;
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
            airlock_session::quote::path(&r.workspace),
            upper.display()
        );
    }
    Ok(upper)
}

/// What an overlay session changed.
pub(crate) struct Review {
    pub(crate) files: Vec<Change>,
    pub(crate) head: Option<String>,
    pub(crate) commits: Vec<String>,
    pub(crate) view: Option<GitView>,
    /// What the commits change, checked by the same rules as the files (empty without commits).
    pub(crate) commit_review: CommitReview,
    /// What the agent left in its `.git` that points a host git elsewhere (links, alternates,
    /// grafts, replace refs, ...): when not empty, its commits are not read at all, `diff`
    /// lists each and `merge` refuses the session (no flag lands it).
    pub(crate) git_refused: Vec<GitRefusal>,
}

impl Review {
    /// Every concern of the session (its working-tree files, then its commits), each as the
    /// path, where it is (`None` for the working tree, else the commit), and the concern: what
    /// `diff` marks and `merge` refuses without the concern's flag.
    pub(crate) fn concerns(
        &self,
        workspace: &std::path::Path,
        upper: &std::path::Path,
    ) -> Vec<(std::path::PathBuf, Option<String>, Concern)> {
        let mut out = Vec::new();
        for c in self.files.iter().filter(|c| !is_git_internal(&c.path)) {
            for k in concerns_of(workspace, upper, c) {
                out.push((c.path.clone(), None, k));
            }
        }
        for (e, k) in &self.commit_review.concerns {
            out.push((e.path.clone(), e.commit.clone(), k.clone()));
        }
        out
    }
}

/// What the agent of an overlay session changed: its files and, when its HEAD moved, its
/// commits (read through a scratch repository, never the workspace's config). When the
/// agent's `.git` points elsewhere ([`git_refusals`]), no commit is read.
pub(crate) fn review(r: &SessionRow) -> Result<Review> {
    let upper = layers(r)?;
    let files = changes(&r.workspace, &upper)?;
    let git_refused = git_refusals(&upper)?;
    let head = if git_refused.is_empty() {
        agent_moved_head(&upper, &r.workspace)
    } else {
        None
    };
    let mut commits = Vec::new();
    let mut view = None;
    let mut commit_review = CommitReview::default();
    if let Some(h) = &head {
        if Some(h) != r.base_commit.as_ref() {
            let v = GitView::new(&r.dir.join("gitview"), &upper, &r.workspace)?;
            commits = v.log(r.base_commit.as_deref(), h)?;
            commit_review = v.review(&r.workspace, r.base_commit.as_deref(), h)?;
            view = Some(v);
        }
    }
    Ok(Review {
        files,
        head,
        commits,
        view,
        commit_review,
        git_refused,
    })
}
