//! The agent's commits, read without running anything the agent wrote: a scratch bare
//! repository whose object store borrows (git "alternates") the overlay's upper `.git/objects`
//! and the real `.git/objects`, with a configuration airlock wrote itself. The agent's
//! `.git/config`, hooks and attributes are never consulted.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::hostgit::{self, run};
use crate::SessionError;

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The most of a ref file or `packed-refs` airlock reads.
const MAX_REF_FILE: u64 = 64 << 20;

/// Reads a regular file the agent may have planted: no link followed, no blocking on a FIFO,
/// bounded in size.
fn read_untrusted(p: &Path) -> Option<String> {
    use std::io::Read;
    let (f, _) = crate::changes::open_regular(p).ok()?;
    let mut s = String::new();
    f.take(MAX_REF_FILE).read_to_string(&mut s).ok()?;
    Some(s)
}

/// Reads `name` (a file below `.git`) from the agent's view: upper layer first, then the real one.
fn read_layered(upper: &Path, lower: &Path, name: &str) -> Option<String> {
    let up = upper.join(".git").join(name);
    if let Ok(m) = std::fs::symlink_metadata(&up) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if m.file_type().is_char_device() && m.rdev() == 0 {
            return None; // whiteout: deleted in the agent's view
        }
        return read_untrusted(&up);
    }
    read_untrusted(&lower.join(".git").join(name))
}

/// The commit the agent's `HEAD` points at, if the workspace is a git repository.
pub fn agent_head(upper: &Path, lower: &Path) -> Option<String> {
    let head = read_layered(upper, lower, "HEAD")?;
    let head = head.trim();
    if is_sha(head) {
        return Some(head.to_string());
    }
    let r = head.strip_prefix("ref: ")?.trim();
    if !r.starts_with("refs/") || r.contains("..") {
        return None;
    }
    if let Some(v) = read_layered(upper, lower, r) {
        let v = v.trim();
        return is_sha(v).then(|| v.to_string());
    }
    let packed = read_layered(upper, lower, "packed-refs")?;
    packed.lines().find_map(|l| {
        let (sha, name) = l.split_once(' ')?;
        (name.trim() == r && is_sha(sha)).then(|| sha.to_string())
    })
}

/// The agent's `HEAD` when the agent moved it: some of `HEAD`, the ref it names or
/// `packed-refs` is in the upper layer (written, or deleted as a whiteout, by the session).
/// `None` when every one of them comes from the real repository: commits made there on the
/// host after the session started are the user's, not the agent's.
pub fn agent_moved_head(upper: &Path, lower: &Path) -> Option<String> {
    let mine = |name: &str| std::fs::symlink_metadata(upper.join(".git").join(name)).is_ok();
    let head_file = read_layered(upper, lower, "HEAD")?;
    let named = head_file
        .trim()
        .strip_prefix("ref: ")
        .map(|r| r.trim().to_string());
    let moved = mine("HEAD")
        || mine("packed-refs")
        || named
            .as_deref()
            .is_some_and(|r| r.starts_with("refs/") && !r.contains("..") && mine(r));
    if moved {
        agent_head(upper, lower)
    } else {
        None
    }
}

/// A scratch repository seeing the agent's objects.
#[derive(Debug)]
pub struct GitView {
    pub git_dir: PathBuf,
}

/// A host git (see [`hostgit`]) with `args`.
fn git(args: &[&str]) -> Command {
    let mut c = hostgit::command();
    c.args(args);
    c
}

impl GitView {
    /// Builds the scratch repository at `scratch` (recreated).
    pub fn new(scratch: &Path, upper: &Path, lower: &Path) -> Result<GitView, SessionError> {
        let _ = std::fs::remove_dir_all(scratch);
        std::fs::create_dir_all(scratch)
            .map_err(|e| SessionError::io("cannot create", scratch, e))?;
        let s = scratch.to_string_lossy().into_owned();
        run(
            git(&["init", "--quiet", "--bare", &s]),
            "create a scratch repository",
        )?;
        let mut alternates = String::new();
        let agents = upper.join(".git/objects");
        if std::fs::symlink_metadata(&agents).is_ok_and(|m| m.is_dir()) {
            // The agent wrote this tree: a FIFO there would make every git below block.
            hostgit::plain_tree(&agents)?;
        }
        for objects in [agents, lower.join(".git/objects")] {
            if std::fs::symlink_metadata(&objects).is_ok_and(|m| m.is_dir()) {
                alternates.push_str(&format!("{}\n", objects.display()));
            }
        }
        let alt = scratch.join("objects/info/alternates");
        std::fs::write(&alt, alternates).map_err(|e| SessionError::io("cannot write", &alt, e))?;
        Ok(GitView {
            git_dir: scratch.to_path_buf(),
        })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let gd = format!("--git-dir={}", self.git_dir.display());
        let mut all = vec![gd.as_str()];
        all.extend_from_slice(args);
        git(&all)
    }

    /// One line per commit in `base..head`, newest first (`git log --oneline` style).
    pub fn log(&self, base: Option<&str>, head: &str) -> Result<Vec<String>, SessionError> {
        let range = match base {
            Some(b) => format!("{b}..{head}"),
            None => head.to_string(),
        };
        let out = run(
            self.cmd(&[
                "log",
                "--no-decorate",
                "--format=%h %ad %an: %s",
                "--date=short",
                &range,
            ]),
            "list the agent's commits",
        )?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// Copies the commits up to `head` into the real repository at `workspace` and points
    /// `refs/heads/BRANCH` at it, without any git process reading that repository's
    /// configuration for a transfer (a merged `.git/config` could rewrite URLs to `ext::`
    /// commands): the objects are packed by the scratch repository and indexed straight into
    /// `.git/objects` with the scratch repository as `GIT_DIR`; the ref is then written by
    /// `update-ref` with hooks and fsmonitor off. An existing branch is left alone unless it
    /// already points at `head`.
    pub fn fetch_into(
        &self,
        workspace: &Path,
        head: &str,
        base: Option<&str>,
        branch: &str,
    ) -> Result<(), SessionError> {
        if !is_sha(head) {
            return Err(SessionError::Refused(format!("bad commit id {head}")));
        }
        let ws_git = workspace.join(".git");
        if !std::fs::symlink_metadata(&ws_git).is_ok_and(|m| m.is_dir()) {
            return Err(SessionError::Refused(format!(
                "{} is not a git directory; the agent's commits were not fetched",
                ws_git.display()
            )));
        }
        let git_dir = format!("--git-dir={}", ws_git.display());
        let refname = format!("refs/heads/{branch}");
        let trusted = |args: &[&str]| {
            let mut all = vec![
                git_dir.as_str(),
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.fsmonitor=false",
            ];
            all.extend_from_slice(args);
            let mut c = git(&all);
            c.current_dir(&ws_git);
            c
        };
        let existing = run(
            trusted(&["rev-parse", "--verify", "--quiet", &refname]),
            &format!("look up the branch {branch}"),
        )
        .map(|o| o.trim().to_string())
        .unwrap_or_default();
        if existing == head {
            return Ok(());
        }
        if !existing.is_empty() {
            return Err(SessionError::Refused(format!(
                "the branch {branch} already exists in {} (at {existing}); delete or rename it, \
                 then merge again",
                workspace.display()
            )));
        }
        self.copy_objects(&ws_git.join("objects"), head, base)?;
        run(
            trusted(&["update-ref", "-m", "airlock merge", &refname, head, ""]),
            &format!("create the branch {branch}"),
        )?;
        Ok(())
    }

    /// Packs what `head` reaches (less what `base` reaches) in the scratch repository and
    /// indexes the pack into `objects`.
    fn copy_objects(
        &self,
        objects: &Path,
        head: &str,
        base: Option<&str>,
    ) -> Result<(), SessionError> {
        use std::io::Write;
        use std::process::Stdio;
        let mut revs = format!("{head}\n");
        if let Some(b) = base.filter(|b| is_sha(b) && *b != head) {
            revs.push_str(&format!("^{b}\n"));
        }
        let mut c = self.cmd(&["pack-objects", "--revs", "--stdout", "-q"]);
        c.stdin(Stdio::piped());
        let mut pack = hostgit::spawn(&mut c, "pack the agent's commits")?;
        if let Some(mut stdin) = pack.stdin.take() {
            stdin
                .write_all(revs.as_bytes())
                .map_err(|e| SessionError::Refused(format!("cannot feed git pack-objects: {e}")))?;
        }
        let Some(out) = pack.stdout.take() else {
            let _ = pack.kill();
            let _ = pack.wait();
            return Err(SessionError::Refused(
                "git pack-objects has no output".into(),
            ));
        };
        let gd = self.git_dir.to_string_lossy().into_owned();
        let mut index = git(&["--git-dir", &gd, "index-pack", "--stdin"]);
        index
            .env("GIT_OBJECT_DIRECTORY", objects)
            .current_dir(&self.git_dir)
            .stdin(out);
        let indexed = hostgit::run_for(
            index,
            "copy the agent's commits into the repository",
            hostgit::SLOW,
        );
        let packed = hostgit::wait_bounded(&mut pack, hostgit::QUICK, "pack the agent's commits")?;
        if !packed.success() {
            let mut err = String::new();
            if let Some(mut e) = pack.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Err(SessionError::Refused(format!(
                "git failed to pack the agent's commits: {}",
                err.trim()
            )));
        }
        indexed.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_resolution_prefers_the_upper_layer() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = (t.path().join("u"), t.path().join("l"));
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        std::fs::create_dir_all(low.join(".git/refs/heads")).expect("mkdir");
        std::fs::write(low.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        std::fs::write(low.join(".git/refs/heads/main"), format!("{a}\n")).expect("write");
        assert_eq!(agent_head(&up, &low), Some(a.clone()));
        std::fs::create_dir_all(up.join(".git/refs/heads")).expect("mkdir");
        std::fs::write(up.join(".git/refs/heads/main"), format!("{b}\n")).expect("write");
        assert_eq!(agent_head(&up, &low), Some(b));
        std::fs::write(up.join(".git/HEAD"), "ref: refs/heads/../../x\n").expect("write");
        assert_eq!(agent_head(&up, &low), None);
    }

    /// A FIFO or a link planted as `.git/HEAD` or as a ref is neither waited on nor followed.
    #[test]
    fn planted_fifos_and_links_are_not_read() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = (t.path().join("u"), t.path().join("l"));
        std::fs::create_dir_all(low.join(".git/refs/heads")).expect("mkdir");
        std::fs::create_dir_all(up.join(".git/refs/heads")).expect("mkdir");
        std::fs::write(low.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        let secret = t.path().join("secret");
        std::fs::write(&secret, format!("{}\n", "c".repeat(40))).expect("write");
        // No loose ref: packed-refs is read, and a FIFO there must not block.
        nix::unistd::mkfifo(&up.join(".git/packed-refs"), nix::sys::stat::Mode::S_IRWXU)
            .expect("mkfifo");
        let start = std::time::Instant::now();
        assert_eq!(agent_head(&up, &low), None);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // A loose ref that is a link to a host file is not followed.
        std::os::unix::fs::symlink(&secret, up.join(".git/refs/heads/main")).expect("symlink");
        assert_eq!(agent_head(&up, &low), None, "followed a planted link");
    }

    /// A FIFO the agent planted among its objects (as a pack index) makes the scratch
    /// repository refuse to start, instead of `git log` blocking `airlock diff` forever.
    #[test]
    fn a_planted_fifo_in_the_object_store_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = (t.path().join("u"), t.path().join("l"));
        let pack = up.join(".git/objects/pack");
        std::fs::create_dir_all(&pack).expect("mkdir");
        std::fs::create_dir_all(low.join(".git/objects")).expect("mkdir");
        let idx = pack.join(format!("pack-{}.idx", "0".repeat(40)));
        nix::unistd::mkfifo(&idx, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let e = GitView::new(&t.path().join("scratch"), &up, &low).expect_err("refused");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    /// A commit the user makes in the real repository after the session started is not the
    /// agent's: only refs the session wrote count.
    #[test]
    fn only_refs_the_session_wrote_move_the_agents_head() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = (t.path().join("u"), t.path().join("l"));
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        std::fs::create_dir_all(low.join(".git/refs/heads")).expect("mkdir");
        std::fs::create_dir_all(&up).expect("mkdir");
        std::fs::write(low.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        std::fs::write(low.join(".git/refs/heads/main"), format!("{a}\n")).expect("write");
        // The host commits: the real ref moves, the upper layer has nothing.
        assert_eq!(agent_head(&up, &low), Some(a.clone()));
        assert_eq!(agent_moved_head(&up, &low), None);
        // The agent commits: its ref is in the upper layer.
        std::fs::create_dir_all(up.join(".git/refs/heads")).expect("mkdir");
        std::fs::write(up.join(".git/refs/heads/main"), format!("{b}\n")).expect("write");
        assert_eq!(agent_moved_head(&up, &low), Some(b));
    }
}
