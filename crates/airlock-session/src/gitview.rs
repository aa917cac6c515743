//! The agent's commits, read without running anything the agent wrote: a scratch bare
//! repository whose object store borrows (git "alternates") the overlay's upper `.git/objects`
//! and the real `.git/objects`, with a configuration airlock wrote itself. The agent's
//! `.git/config`, hooks and attributes are never consulted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::changes::{ChangeKind, Side};
use crate::hostgit::{self, run};
use crate::review::{classify, Concern, Version, MAX_SHOWN_BYTES};
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

/// One path a commit (or the whole range) changes, from `git diff-tree -r -z --raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitEntry {
    /// The commit that changes it (`None` for the whole range `base..head`).
    pub commit: Option<String>,
    pub path: PathBuf,
    pub kind: ChangeKind,
    /// git modes (octal `100644`, `100755`, `120000` link, `160000` submodule; 0 when absent).
    pub old_mode: u32,
    pub new_mode: u32,
    pub old_id: String,
    pub new_id: String,
}

/// What the agent's commits change, checked by the same rules as the working tree's files.
#[derive(Debug, Default)]
pub struct CommitReview {
    /// The range's net change (`base..head`), with both sides, shown by `diff`.
    pub net: Vec<(CommitEntry, Side, Side)>,
    /// Every concern of every path any commit of the range adds or changes (first commit that
    /// does it), in path order: what `merge` refuses without the matching flag.
    pub concerns: Vec<(CommitEntry, Concern)>,
}

/// Blob id -> its first [`MAX_SHOWN_BYTES`] + 1 bytes and its size.
type Blobs = std::collections::HashMap<String, (Vec<u8>, u64)>;

const LINK_MODE: u32 = 0o120000;
const GITLINK_MODE: u32 = 0o160000;

/// Parses `git diff-tree -r -z --raw` output (`--stdin` form: a commit id before each diff).
fn parse_raw(out: &[u8], range: bool) -> Vec<CommitEntry> {
    use std::os::unix::ffi::OsStrExt;
    let mut v = Vec::new();
    let mut commit = None;
    let mut it = out.split(|b| *b == 0).filter(|t| !t.is_empty());
    while let Some(tok) = it.next() {
        let Some(meta) = tok.strip_prefix(b":") else {
            let id = String::from_utf8_lossy(tok).trim().to_string();
            commit = (!range && is_sha(&id)).then_some(id);
            continue;
        };
        let Some(path) = it.next() else { break };
        let f: Vec<String> = String::from_utf8_lossy(meta)
            .split(' ')
            .map(str::to_string)
            .collect();
        let [om, nm, oi, ni, st] = f.as_slice() else {
            continue;
        };
        let mode = |m: &str| u32::from_str_radix(m, 8).unwrap_or(0);
        let kind = match st.chars().next() {
            Some('A') => ChangeKind::Added,
            Some('D') => ChangeKind::Deleted,
            _ => ChangeKind::Modified,
        };
        v.push(CommitEntry {
            commit: commit.clone(),
            path: PathBuf::from(std::ffi::OsStr::from_bytes(path)),
            kind,
            old_mode: mode(om),
            new_mode: mode(nm),
            old_id: oi.clone(),
            new_id: ni.clone(),
        });
    }
    v
}

impl GitView {
    /// The empty tree's id in the scratch repository's object format.
    fn empty_tree(&self) -> Result<String, SessionError> {
        let mut c = self.cmd(&["hash-object", "-t", "tree", "--stdin"]);
        c.stdin(std::process::Stdio::null());
        Ok(run(c, "hash the empty tree")?.trim().to_string())
    }

    /// The first [`MAX_SHOWN_BYTES`] + 1 bytes of blob `id` and its size; never reads more.
    fn blob_head(&self, id: &str) -> Result<(Vec<u8>, u64), SessionError> {
        use std::io::Read;
        if !is_sha(id) {
            return Err(SessionError::Refused(format!("bad object id {id}")));
        }
        let size = run(self.cmd(&["cat-file", "-s", id]), "size an agent's file")?;
        let size: u64 = size.trim().parse().unwrap_or(u64::MAX);
        let mut c = self.cmd(&["cat-file", "blob", id]);
        let mut child = hostgit::spawn(&mut c, "read an agent's file")?;
        let mut head = Vec::new();
        if let Some(out) = child.stdout.take() {
            let _ = out.take(MAX_SHOWN_BYTES + 1).read_to_end(&mut head);
        }
        let _ = child.kill();
        let _ = hostgit::wait_bounded(&mut child, hostgit::QUICK, "read an agent's file");
        Ok((head, size))
    }

    /// Writes `lines` to a file in the scratch repository, for a git command's stdin.
    fn stdin_file(&self, name: &str, lines: &str) -> Result<std::fs::File, SessionError> {
        let p = self.git_dir.join(name);
        std::fs::write(&p, lines).map_err(|e| SessionError::io("cannot write", &p, e))?;
        std::fs::File::open(&p).map_err(|e| SessionError::io("cannot open", &p, e))
    }

    /// The first [`MAX_SHOWN_BYTES`] + 1 bytes and the size of every blob in `ids`, read by two
    /// git processes (`cat-file --batch-check`, then `--batch` for the blobs of at most that
    /// size); a larger blob is read by [`GitView::blob_head`], which stops after its head.
    fn blobs(&self, ids: &BTreeSet<String>) -> Result<Blobs, SessionError> {
        use std::io::{BufRead, Read};
        let mut out = Blobs::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let list: String = ids.iter().map(|i| format!("{i}\n")).collect();
        let mut c = self.cmd(&["cat-file", "--batch-check"]);
        c.stdin(self.stdin_file("airlock-blobs", &list)?);
        let sizes = run(c, "size the agent's files")?;
        let mut small = String::new();
        let mut large = Vec::new();
        for l in sizes.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let [id, "blob", size] = f.as_slice() else {
                return Err(SessionError::Refused(format!(
                    "the agent's commits name an object git cannot read as a file: {}",
                    crate::quote::name(l)
                )));
            };
            let size: u64 = size.parse().unwrap_or(u64::MAX);
            if size <= MAX_SHOWN_BYTES + 1 {
                small.push_str(&format!("{id}\n"));
            } else {
                large.push(id.to_string());
            }
        }
        if !small.is_empty() {
            let mut c = self.cmd(&["cat-file", "--batch"]);
            c.stdin(self.stdin_file("airlock-blobs", &small)?);
            let mut child = hostgit::spawn(&mut c, "read the agent's files")?;
            let read = child.stdout.take().map(|o| {
                let mut r = std::io::BufReader::new(o);
                let mut got = Vec::new();
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let f: Vec<String> = line.split_whitespace().map(str::to_string).collect();
                    line.clear();
                    let [id, _, size] = f.as_slice() else { break };
                    let size: u64 = size.parse().unwrap_or(0);
                    let mut body = Vec::new();
                    if r.by_ref().take(size).read_to_end(&mut body).is_err() {
                        break;
                    }
                    let mut nl = [0u8; 1];
                    let _ = r.read_exact(&mut nl);
                    got.push((id.clone(), (body, size)));
                }
                got
            });
            let status =
                hostgit::wait_bounded(&mut child, hostgit::SLOW, "read the agent's files")?;
            if !status.success() {
                return Err(SessionError::Refused(
                    "git failed to read the agent's files".into(),
                ));
            }
            out.extend(read.unwrap_or_default());
        }
        for id in large {
            let head = self.blob_head(&id)?;
            out.insert(id, head);
        }
        Ok(out)
    }

    /// One side of a commit entry, as `diff` shows it, from the blobs read by [`GitView::blobs`].
    fn side(mode: u32, id: &str, blobs: &Blobs) -> Result<Side, SessionError> {
        if mode == 0 {
            return Ok(Side::Absent);
        }
        if mode == GITLINK_MODE {
            return Ok(Side::Text(format!("Subproject commit {id}\n")));
        }
        let Some((head, size)) = blobs.get(id) else {
            return Err(SessionError::Refused(format!(
                "the agent's file {id} was not read"
            )));
        };
        if mode == LINK_MODE {
            use std::os::unix::ffi::OsStrExt;
            return Ok(Side::Link(PathBuf::from(std::ffi::OsStr::from_bytes(head))));
        }
        Ok(match classify(head, *size) {
            Ok(t) => Side::Text(t),
            Err(u) => Side::Unshown(u),
        })
    }

    /// The changes of every commit in `base..head` (each merge against each parent), and of the
    /// whole range.
    fn entries(
        &self,
        base: Option<&str>,
        head: &str,
    ) -> Result<(Vec<CommitEntry>, Vec<CommitEntry>), SessionError> {
        let from = match base.filter(|b| is_sha(b)) {
            Some(b) => b.to_string(),
            None => self.empty_tree()?,
        };
        let net = hostgit::run_bytes_for(
            self.cmd(&["diff-tree", "-r", "-z", "--no-renames", &from, head]),
            "list what the agent's commits change",
            hostgit::SLOW,
        )?;
        let range = match base.filter(|b| is_sha(b)) {
            Some(b) => format!("{b}..{head}"),
            None => head.to_string(),
        };
        let revs = run(self.cmd(&["rev-list", &range]), "list the agent's commits")?;
        let list = self.git_dir.join("airlock-revs");
        std::fs::write(&list, revs).map_err(|e| SessionError::io("cannot write", &list, e))?;
        let f =
            std::fs::File::open(&list).map_err(|e| SessionError::io("cannot open", &list, e))?;
        let mut c = self.cmd(&[
            "diff-tree",
            "--stdin",
            "-r",
            "-z",
            "--no-renames",
            "--root",
            "-m",
        ]);
        c.stdin(f);
        let each = hostgit::run_bytes_for(c, "list what each agent commit changes", hostgit::SLOW)?;
        Ok((parse_raw(&net, true), parse_raw(&each, false)))
    }

    /// Every path of `head`'s tree (files, links, submodules).
    fn tree_paths(&self, head: &str) -> Result<Vec<PathBuf>, SessionError> {
        use std::os::unix::ffi::OsStrExt;
        let out = hostgit::run_bytes_for(
            self.cmd(&["ls-tree", "-r", "-z", "--name-only", head]),
            "list the agent's tree",
            hostgit::SLOW,
        )?;
        Ok(out
            .split(|b| *b == 0)
            .filter(|t| !t.is_empty())
            .map(|t| PathBuf::from(std::ffi::OsStr::from_bytes(t)))
            .collect())
    }

    /// Reviews the agent's commits `base..head` with the rules of [`crate::review`]: the same
    /// concerns as the working tree's files, for every path any commit adds or changes (a file
    /// added in one commit and removed in the next is still in the branch's history), and the
    /// range's net change with both sides for `diff`. `workspace` is the real workspace (links
    /// are judged against it, git-shaped directories looked up in it too).
    ///
    /// # Errors
    /// When git cannot list or read the commits.
    pub fn review(
        &self,
        workspace: &Path,
        base: Option<&str>,
        head: &str,
    ) -> Result<CommitReview, SessionError> {
        if !is_sha(head) {
            return Err(SessionError::Refused(format!("bad commit id {head}")));
        }
        let (net, each) = self.entries(base, head)?;
        let mut files: BTreeSet<PathBuf> = self.tree_paths(head)?.into_iter().collect();
        files.extend(
            each.iter()
                .filter(|e| e.kind != ChangeKind::Deleted)
                .map(|e| e.path.clone()),
        );
        let has = |p: &Path, dir: bool| {
            let in_tree = if dir {
                files
                    .range(p.to_path_buf()..)
                    .next()
                    .is_some_and(|f| f.starts_with(p) && f != p)
            } else {
                files.contains(p)
            };
            in_tree || crate::changes::exists_in_view(workspace, workspace, p, dir)
        };
        let wanted = |mode: u32, id: &str| {
            (mode != 0 && mode != GITLINK_MODE && is_sha(id) && id.bytes().any(|b| b != b'0'))
                .then(|| id.to_string())
        };
        let ids: BTreeSet<String> = each
            .iter()
            .filter(|e| e.kind != ChangeKind::Deleted)
            .filter_map(|e| wanted(e.new_mode, &e.new_id))
            .chain(net.iter().filter_map(|e| wanted(e.old_mode, &e.old_id)))
            .chain(net.iter().filter_map(|e| wanted(e.new_mode, &e.new_id)))
            .collect();
        let blobs = self.blobs(&ids)?;
        let mut seen = BTreeSet::new();
        let mut concerns = Vec::new();
        for e in &each {
            let version = Self::version(e, &blobs)?;
            let mut found = crate::review::concerns(workspace, &e.path, &version, &has);
            if crate::review::is_git_internal(&e.path) {
                found.push(Concern::Exec(
                    "a .git path inside a commit: git's own repository data".into(),
                ));
            }
            for k in found {
                if seen.insert((e.path.clone(), k.to_string())) {
                    concerns.push((e.clone(), k));
                }
            }
        }
        concerns.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        let mut shown = Vec::with_capacity(net.len());
        for e in net {
            let old = Self::side(e.old_mode, &e.old_id, &blobs)?;
            let new = Self::side(e.new_mode, &e.new_id, &blobs)?;
            shown.push((e, old, new));
        }
        Ok(CommitReview {
            net: shown,
            concerns,
        })
    }

    /// What the rules need of the agent's version of `e`.
    fn version(e: &CommitEntry, blobs: &Blobs) -> Result<Version, SessionError> {
        if e.kind == ChangeKind::Deleted || e.new_mode == 0 {
            return Ok(Version::Deleted);
        }
        Ok(match Self::side(e.new_mode, &e.new_id, blobs)? {
            Side::Link(t) => Version::Link(t),
            Side::Text(t) if e.new_mode != GITLINK_MODE => Version::File(Ok(t)),
            Side::Unshown(u) => Version::File(Err(u)),
            _ => Version::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `diff-tree --stdin -z -m` output: a commit id before each diff (twice for a merge), raw
    /// entries as meta then path, paths as bytes.
    #[test]
    fn raw_diff_output_is_parsed_per_commit() {
        let a = "a".repeat(40);
        let m = "b".repeat(40);
        let z = "0".repeat(40);
        let out = format!(
            "{a}\0:000000 100644 {z} {a} A\0f\0{m}\0:000000 120000 {z} {m} A\0l\u{e9}\0\
             {m}\0:100644 000000 {a} {z} D\0.git/config\0"
        );
        let v = parse_raw(out.as_bytes(), false);
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[0].commit.as_deref(), Some(a.as_str()));
        assert_eq!((v[0].kind, v[0].new_mode), (ChangeKind::Added, 0o100644));
        assert_eq!(v[1].commit.as_deref(), Some(m.as_str()));
        assert_eq!(v[1].new_mode, LINK_MODE);
        assert_eq!(v[2].kind, ChangeKind::Deleted);
        assert_eq!(v[2].path, Path::new(".git/config"));
        let net = parse_raw(out.as_bytes(), true);
        assert!(net.iter().all(|e| e.commit.is_none()));
    }

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
