//! `--mode worktree`: a git worktree per session on a new branch `airlock/NAME`, under
//! `$XDG_DATA_HOME/airlock/worktrees/ID`.
//!
//! Inside the sandbox the worktree is read-write and the main repository read-only except what a
//! commit needs: `objects` (but not `objects/info`, where alternates live), the session's branch
//! directory `refs/heads/airlock` and its reflogs, and this worktree's admin directory. The files
//! that tie the worktree to its repository (the worktree's `.git`, the admin directory's `gitdir`,
//! `commondir` and `config.worktree`) are covered read-only, so the agent can neither swap the
//! repository nor plant configuration in it.
//!
//! On the host, no git process ever runs inside the worktree or reads anything the agent could
//! write as configuration (DESIGN.md guarantee 8). Whether the worktree is clean is decided by
//! walking its files (no link followed, `.git` excluded) and comparing their blob ids with the
//! branch's tree, read through the main repository's admin directory by [`trusted_git`]. A clean
//! worktree is deleted by airlock itself (never `git worktree remove`, which runs `git status` in
//! it), its admin entry removed and its branch deleted from the trusted side. A worktree whose
//! links to the repository were changed is kept, with a warning that names it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use airlock_sandbox::{Bind, GeneratedFile};
use anyhow::{bail, Context, Result};

/// A created worktree and what airlock wrote to tie it to the repository.
#[derive(Debug, Clone)]
pub(crate) struct Worktree {
    pub(crate) path: PathBuf,
    pub(crate) branch: String,
    /// The main repository's `.git` directory.
    pub(crate) git_dir: PathBuf,
    /// `.git/worktrees/<id>`: the worktree's admin directory.
    pub(crate) admin: PathBuf,
    /// The commit the branch started at.
    pub(crate) base: String,
    /// The link files as created: path -> contents (the worktree's `.git`, the admin
    /// directory's `gitdir` and `commondir`).
    pub(crate) links: Vec<(PathBuf, Vec<u8>)>,
    /// Binds that give the sandbox the main repository's view (read-only, with the parts a
    /// commit writes made writable).
    pub(crate) binds: Vec<Bind>,
    /// Read-only files covering the links (and an empty `config.worktree`) inside the sandbox.
    pub(crate) files: Vec<GeneratedFile>,
}

/// What [`finish`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing changed or committed: worktree, admin entry and branch removed.
    Removed,
    /// Kept because it holds work (the reason names it).
    Kept(String),
    /// Kept because a file tying it to the repository was changed: running git inside it would
    /// honour whatever the agent put there. Each entry names a path and what changed.
    Tampered(Vec<String>),
}

/// Environment variables that would redirect or configure a host git process.
const GIT_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_EXTERNAL_DIFF",
    "GIT_EXEC_PATH",
];

/// Host git confined to the main repository's admin directory `git_dir`: no work tree (it runs
/// in `git_dir` with `--git-dir`), no system or global config, no hooks, no fsmonitor. Only the
/// repository's own `config` applies, which the sandbox can read but never write.
pub(crate) fn trusted_git(git_dir: &Path) -> Command {
    let mut c = Command::new("git");
    for k in GIT_ENV {
        c.env_remove(k);
    }
    c.current_dir(git_dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .arg("--git-dir")
        .arg(git_dir)
        .args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
        ]);
    c
}

fn run(mut c: Command, what: &str) -> Result<String> {
    let out = c
        .output()
        .with_context(|| format!("cannot run git to {what}"))?;
    if !out.status.success() {
        bail!(
            "git failed to {what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn bind(p: PathBuf, writable: bool) -> Bind {
    Bind {
        source: p.clone(),
        target: p,
        writable,
        optional: true,
    }
}

/// Creates the worktree for session `id` of the repository at `workspace`.
///
/// `git worktree add` runs in the main repository with the user's own configuration (nothing
/// the agent wrote exists yet), with hooks and fsmonitor off.
pub(crate) fn create(workspace: &Path, id: &str, name: Option<&str>) -> Result<Worktree> {
    let root = crate::session_dir::sessions_root()?
        .parent()
        .map(|p| p.join("worktrees"))
        .context("bad data directory")?;
    create_in(&root, workspace, id, name)
}

/// [`create`] with the worktree placed at `root/ID`.
fn create_in(root: &Path, workspace: &Path, id: &str, name: Option<&str>) -> Result<Worktree> {
    let git_dir = workspace.join(".git");
    if !std::fs::symlink_metadata(&git_dir).is_ok_and(|m| m.is_dir()) {
        bail!(
            "--mode worktree needs a git repository with a .git directory at {} (use --mode \
             overlay otherwise)",
            workspace.display()
        );
    }
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let path = root.join(id);
    let branch = format!("airlock/{}", name.unwrap_or(id));
    let base = run(
        {
            let mut c = trusted_git(&git_dir);
            c.args(["rev-parse", "--verify", "HEAD^{commit}"]);
            c
        },
        "read the repository's HEAD",
    )?
    .trim()
    .to_string();
    let mut c = Command::new("git");
    for k in GIT_ENV {
        c.env_remove(k);
    }
    c.arg("-C")
        .arg(workspace)
        .args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
            "worktree",
            "add",
            "--quiet",
            "-b",
            &branch,
        ])
        .arg(&path)
        .arg(&base)
        .env("GIT_TERMINAL_PROMPT", "0");
    run(c, &format!("create a worktree on branch {branch}"))?;
    let dot_git = path.join(".git");
    let link = std::fs::read(&dot_git)
        .with_context(|| format!("cannot read the new worktree's {}", dot_git.display()))?;
    let admin = std::str::from_utf8(&link)
        .ok()
        .and_then(|s| s.strip_prefix("gitdir: "))
        .map(|s| PathBuf::from(s.trim_end()))
        .filter(|a| a.parent() == Some(&git_dir.join("worktrees")))
        .with_context(|| {
            format!(
                "git wrote an unexpected {} for the new worktree",
                dot_git.display()
            )
        })?;
    let mut links = vec![(dot_git, link)];
    for f in ["gitdir", "commondir"] {
        let p = admin.join(f);
        let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        links.push((p, bytes));
    }
    let mut files: Vec<GeneratedFile> = links
        .iter()
        .map(|(p, b)| GeneratedFile {
            target: p.clone(),
            contents: b.clone(),
        })
        .collect();
    // Read only when the repository sets extensions.worktreeConfig; covered empty either way.
    files.push(GeneratedFile {
        target: admin.join("config.worktree"),
        contents: Vec::new(),
    });
    // Covered read-only below: it must exist, or the agent could create it (and alternates in
    // it) through the writable `objects`.
    let info = git_dir.join("objects/info");
    std::fs::create_dir_all(&info).with_context(|| format!("cannot create {}", info.display()))?;
    let mut binds = vec![
        bind(workspace.to_path_buf(), false),
        bind(git_dir.join("objects"), true),
        bind(git_dir.join("objects/info"), false),
        bind(git_dir.join("refs/heads/airlock"), true),
        bind(git_dir.join("logs/refs/heads/airlock"), true),
        bind(admin.clone(), true),
    ];
    // Other sessions' branches (and their reflogs) stay as they are.
    let ours = PathBuf::from(&branch);
    for dir in ["refs/heads/airlock", "logs/refs/heads/airlock"] {
        let root = git_dir.join(dir);
        let mut found = Vec::new();
        ref_files(&root, &mut found);
        binds.extend(
            found
                .into_iter()
                // `refs/heads/airlock/NAME` (or its reflog) is this session's own.
                .filter(|f| {
                    let name = f
                        .strip_prefix(&root)
                        .ok()
                        .map(|r| Path::new("airlock").join(r));
                    name.as_ref() != Some(&ours)
                })
                .map(|f| bind(f, false)),
        );
    }
    Ok(Worktree {
        path,
        branch,
        git_dir,
        admin,
        base,
        links,
        binds,
        files,
    })
}

/// Regular files below `dir` (no link followed), for covering other sessions' branches.
fn ref_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => ref_files(&e.path(), out),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
}

/// After the session: removes the worktree, its admin entry and its branch when nothing was
/// changed or committed. Never runs git inside the worktree.
pub(crate) fn finish(wt: &Worktree) -> Result<Outcome> {
    let tampered = check_links(wt);
    if !tampered.is_empty() {
        return Ok(Outcome::Tampered(tampered));
    }
    if let Some(why) = holds_work(wt)? {
        return Ok(Outcome::Kept(why));
    }
    remove(wt)?;
    Ok(Outcome::Removed)
}

/// Files that tie the worktree to the repository and differ from what airlock wrote.
fn check_links(wt: &Worktree) -> Vec<String> {
    let mut bad = Vec::new();
    for dir in [&wt.path, &wt.admin] {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bad.push(format!("{} is no longer a directory", dir.display())),
            Err(e) => bad.push(format!("{}: {e}", dir.display())),
        }
    }
    for (p, want) in &wt.links {
        match read_regular(p) {
            Ok(got) if &got == want => {}
            Ok(_) => bad.push(format!("{} was rewritten", p.display())),
            Err(e) => bad.push(format!("{} was replaced ({e})", p.display())),
        }
    }
    let cw = wt.admin.join("config.worktree");
    match std::fs::symlink_metadata(&cw) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Ok(m) if m.is_file() && m.len() == 0 => {}
        _ => bad.push(format!("{} was written", cw.display())),
    }
    bad
}

/// Reads a regular file without following a link and without blocking on a FIFO.
fn read_regular(p: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// Why the worktree must be kept, if it must: its HEAD left the branch, the branch has commits,
/// or its files differ from the branch's tree.
fn holds_work(wt: &Worktree) -> Result<Option<String>> {
    let head = read_regular(&wt.admin.join("HEAD")).unwrap_or_default();
    if head != format!("ref: refs/heads/{}\n", wt.branch).as_bytes() {
        return Ok(Some("its HEAD is no longer the session's branch".into()));
    }
    let mut c = trusted_git(&wt.git_dir);
    c.args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{}^{{commit}}", wt.branch));
    let tip = run(c, &format!("read the branch {}", wt.branch))?
        .trim()
        .to_string();
    if tip != wt.base {
        return Ok(Some(format!("the branch {} has new commits", wt.branch)));
    }
    let mut c = trusted_git(&wt.git_dir);
    c.args(["rev-parse", "--show-object-format"]);
    let format = run(c, "read the object format")?.trim().to_string();
    let mut c = trusted_git(&wt.git_dir);
    c.args(["ls-tree", "-r", "-z", "--full-tree", &tip]);
    let tree = parse_ls_tree(run(c, "list the branch's files")?.as_bytes());
    let mut files = BTreeMap::new();
    walk(&wt.path, Path::new(""), &format, &mut files)?;
    Ok(compare(&tree, &files))
}

/// A tree entry: git mode (`100644`, `100755`, `120000`, `160000`) and object id.
type Entry = (String, String);

/// `git ls-tree -r -z` output: `MODE SP TYPE SP OID TAB PATH NUL`.
fn parse_ls_tree(out: &[u8]) -> BTreeMap<PathBuf, Entry> {
    out.split(|b| *b == 0)
        .filter_map(|rec| {
            let tab = rec.iter().position(|b| *b == b'\t')?;
            let head = std::str::from_utf8(&rec[..tab]).ok()?;
            let mut f = head.split(' ');
            let (mode, _kind, oid) = (f.next()?, f.next()?, f.next()?);
            let path = PathBuf::from(OsStr::from_bytes(&rec[tab + 1..]));
            Some((path, (mode.to_string(), oid.to_string())))
        })
        .collect()
}

/// The blob id of the regular file at `p`, streamed (opened without following a link or
/// blocking, its length taken from `fstat`; a file that changes length meanwhile gets an id
/// that matches nothing, so it counts as changed).
fn file_blob_id(format: &str, p: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(p)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let head = format!("blob {}\0", m.len());
    let mut sha1 = sha1::Sha1::new();
    let mut sha256 = sha2::Sha256::new();
    let mut update = |b: &[u8]| {
        if format == "sha256" {
            sha256.update(b);
        } else {
            sha1.update(b);
        }
    };
    update(head.as_bytes());
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        update(&buf[..n]);
    }
    if total != m.len() {
        return Ok(String::from("changed-while-read"));
    }
    Ok(if format == "sha256" {
        hex::encode(sha256.finalize())
    } else {
        hex::encode(sha1.finalize())
    })
}

/// The object id of a blob with `content` (`blob LEN\0CONTENT`, SHA-1 or SHA-256).
fn blob_id(format: &str, content: &[u8]) -> String {
    use sha2::Digest;
    let head = format!("blob {}\0", content.len());
    if format == "sha256" {
        let mut h = sha2::Sha256::new();
        h.update(head.as_bytes());
        h.update(content);
        hex::encode(h.finalize())
    } else {
        let mut h = sha1::Sha1::new();
        h.update(head.as_bytes());
        h.update(content);
        hex::encode(h.finalize())
    }
}

/// Every entry of the worktree below `rel` as git would store it, without following links or
/// opening anything but regular files (with `O_NONBLOCK`). The top-level `.git` is skipped;
/// directories are listed with mode `040000` only when empty (git does not track them).
fn walk(root: &Path, rel: &Path, format: &str, out: &mut BTreeMap<PathBuf, Entry>) -> Result<()> {
    let dir = root.join(rel);
    let rd = std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut empty = true;
    for e in rd {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        empty = false;
        let r = rel.join(e.file_name());
        if r == Path::new(".git") {
            continue;
        }
        let p = root.join(&r);
        let m = std::fs::symlink_metadata(&p)
            .with_context(|| format!("cannot read {}", p.display()))?;
        let ft = m.file_type();
        let entry = if ft.is_symlink() {
            let target =
                std::fs::read_link(&p).with_context(|| format!("cannot read {}", p.display()))?;
            (
                "120000".to_string(),
                blob_id(format, target.as_os_str().as_bytes()),
            )
        } else if ft.is_dir() {
            walk(root, &r, format, out)?;
            continue;
        } else if ft.is_file() {
            let id =
                file_blob_id(format, &p).with_context(|| format!("cannot read {}", p.display()))?;
            let mode = if m.permissions().mode() & 0o100 != 0 {
                "100755"
            } else {
                "100644"
            };
            (mode.to_string(), id)
        } else {
            let what = if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else {
                "device"
            };
            (what.to_string(), String::new())
        };
        out.insert(r, entry);
    }
    if empty && !rel.as_os_str().is_empty() {
        out.insert(rel.to_path_buf(), ("040000".to_string(), String::new()));
    }
    Ok(())
}

/// Why the worktree's files differ from the tree, naming up to three paths.
fn compare(tree: &BTreeMap<PathBuf, Entry>, files: &BTreeMap<PathBuf, Entry>) -> Option<String> {
    let mut differ: Vec<&Path> = Vec::new();
    for (p, want) in tree {
        let got = files.get(p);
        let same = match (want.0.as_str(), got) {
            // An uninitialised submodule is an empty directory (or nothing at all).
            ("160000", None) => true,
            ("160000", Some(g)) => g.0 == "040000",
            (_, Some(g)) => g == want,
            (_, None) => false,
        };
        if !same {
            differ.push(p);
        }
    }
    for (p, got) in files {
        if tree.contains_key(p) {
            continue;
        }
        // git does not track empty directories; an untracked one is not work.
        if got.0 == "040000" {
            continue;
        }
        differ.push(p);
    }
    if differ.is_empty() {
        return None;
    }
    differ.sort();
    let shown: Vec<String> = differ
        .iter()
        .take(3)
        .map(|p| p.display().to_string())
        .collect();
    let more = differ.len().saturating_sub(3);
    Some(format!(
        "its files differ from the branch ({}{})",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

/// Deletes the worktree directory (no link followed: `remove_dir_all` unlinks symlinks rather
/// than entering them), its admin entry, and the branch, from the trusted side.
fn remove(wt: &Worktree) -> Result<()> {
    remove_tree(&wt.path).with_context(|| format!("cannot delete {}", wt.path.display()))?;
    remove_tree(&wt.admin).with_context(|| format!("cannot delete {}", wt.admin.display()))?;
    let mut c = trusted_git(&wt.git_dir);
    c.args(["update-ref", "-d"])
        .arg(format!("refs/heads/{}", wt.branch))
        .arg(&wt.base);
    run(c, &format!("delete the unused branch {}", wt.branch))?;
    Ok(())
}

fn remove_tree(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The warning printed when a worktree's links were changed.
pub(crate) fn tamper_warning(session: &str, wt: &Worktree, what: &[String]) -> String {
    format!(
        "airlock: WARNING: session {session}: the agent changed how its worktree {} is tied to \
         the repository:\n{}\nthe worktree is kept, but do not run git inside it: your own `git \
         status` there would run the agent's configuration (filters, fsmonitor, hooks) as you. \
         Read its files with ordinary tools, then delete it with `rm -rf {}` and `rm -rf {}` \
         (and `git branch -D {}` in the repository)",
        wt.path.display(),
        what.iter()
            .map(|w| format!("  {w}"))
            .collect::<Vec<_>>()
            .join("\n"),
        wt.path.display(),
        wt.admin.display(),
        wt.branch
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let o = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git");
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// A repository with a few files and a worktree made the way `create` makes it.
    fn setup(t: &Path) -> Worktree {
        let repo = t.join("repo");
        std::fs::create_dir_all(repo.join("src")).expect("mkdir");
        std::fs::write(repo.join("src/a.rs"), "a\n").expect("write");
        std::fs::write(repo.join("run.sh"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(repo.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::os::unix::fs::symlink("src/a.rs", repo.join("link")).expect("symlink");
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "init"]);
        create_in(&t.join("worktrees"), &repo, "s1", None).expect("create")
    }

    #[test]
    fn an_untouched_worktree_is_removed_with_its_branch() {
        let t = tempfile::tempdir().expect("tempdir");
        let wt = setup(t.path());
        std::fs::create_dir(wt.path.join("empty-build-dir")).expect("mkdir");
        assert_eq!(finish(&wt).expect("finish"), Outcome::Removed);
        assert!(!wt.path.exists() && !wt.admin.exists());
        let refs = wt.git_dir.join("refs/heads/airlock/s1");
        assert!(!refs.exists());
    }

    #[test]
    fn any_change_keeps_the_worktree() {
        type Change = (&'static str, fn(&Path));
        let changes: &[Change] = &[
            ("edit", |p| {
                std::fs::write(p.join("src/a.rs"), "b\n").expect("w")
            }),
            ("new file", |p| {
                std::fs::write(p.join("new"), "").expect("w")
            }),
            ("delete", |p| {
                std::fs::remove_file(p.join("src/a.rs")).expect("rm")
            }),
            ("mode", |p| {
                std::fs::set_permissions(p.join("run.sh"), std::fs::Permissions::from_mode(0o644))
                    .expect("chmod")
            }),
            ("relink", |p| {
                std::fs::remove_file(p.join("link")).expect("rm");
                std::os::unix::fs::symlink("run.sh", p.join("link")).expect("ln");
            }),
            ("fifo", |p| {
                nix::unistd::mkfifo(&p.join("pipe"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo")
            }),
        ];
        for (what, change) in changes {
            let t = tempfile::tempdir().expect("tempdir");
            let wt = setup(t.path());
            change(&wt.path);
            assert!(
                matches!(finish(&wt).expect("finish"), Outcome::Kept(_)),
                "{what}"
            );
            assert!(wt.path.join(".git").exists(), "{what}");
        }
    }

    /// Security review (ISSUE9 follow-up): the session's own branch ref lives in a directory the
    /// agent can write. A textual symref there must not make the host's `update-ref -d` delete
    /// the branch it points at (the user's `main`, whose tip equals the session's base).
    #[test]
    #[ignore = "open hole: finish() deletes the branch an agent-written symref points at"]
    fn a_symref_in_the_session_branch_never_deletes_another_branch() {
        let t = tempfile::tempdir().expect("tempdir");
        let wt = setup(t.path());
        let head = std::fs::read_to_string(wt.git_dir.join("HEAD")).expect("HEAD");
        let main = head
            .trim()
            .strip_prefix("ref: ")
            .expect("symref")
            .to_string();
        std::fs::write(
            wt.git_dir.join("refs/heads").join(&wt.branch),
            format!("ref: {main}\n"),
        )
        .expect("plant symref");
        let _ = finish(&wt);
        assert!(
            wt.git_dir.join(&main).exists()
                || std::fs::read_to_string(wt.git_dir.join("packed-refs"))
                    .unwrap_or_default()
                    .contains(&main),
            "{main} was deleted by the host-side cleanup"
        );
    }

    /// Security review: a FIFO in place of the session's branch ref must not hang `finish`.
    #[test]
    #[ignore = "open hole: host git blocks forever opening a FIFO ref (and inherits blocked SIGTERM)"]
    fn a_fifo_branch_ref_does_not_hang_finish() {
        let t = tempfile::tempdir().expect("tempdir");
        let wt = setup(t.path());
        let r = wt.git_dir.join("refs/heads").join(&wt.branch);
        std::fs::remove_file(&r).expect("rm");
        nix::unistd::mkfifo(&r, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let (tx, rx) = std::sync::mpsc::channel();
        let wt2 = wt.clone();
        std::thread::spawn(move || {
            let _ = tx.send(finish(&wt2).is_ok());
        });
        let done = rx.recv_timeout(std::time::Duration::from_secs(20));
        // Unblock the git process so the test run can end either way.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&r);
        assert!(done.is_ok(), "finish() hung on a FIFO ref");
    }

    /// Security review: the object store is shared read-write with the sandbox, so a loose
    /// object of the user's history can be replaced; the host's next checkout writes it.
    #[test]
    #[ignore = "open hole: the sandbox writes the main repository's object store in place"]
    fn the_sandbox_cannot_replace_objects_of_the_users_history() {
        let t = tempfile::tempdir().expect("tempdir");
        let wt = setup(t.path());
        let writable: Vec<&Path> = wt
            .binds
            .iter()
            .filter(|b| b.writable)
            .map(|b| b.source.as_path())
            .collect();
        assert!(
            !writable.contains(&wt.git_dir.join("objects").as_path()),
            "objects/ is bound read-write: existing objects can be replaced or deleted"
        );
    }

    /// The agent's own repository in place of the worktree's `.git` (or its admin files
    /// rewritten): filters, textconv, fsmonitor, hooks, `core.worktree` and `include.path` all
    /// point at a marker; deciding what to do must run none of them and keep the worktree.
    #[test]
    fn a_swapped_repository_is_never_run_and_is_kept() {
        type Tamper = (&'static str, fn(&Worktree, &Path));
        let tampers: &[Tamper] = &[
            ("replaced .git", |wt, _| {
                std::fs::remove_file(wt.path.join(".git")).expect("rm");
                git(&wt.path, &["init", "-q", "."]);
                git(&wt.path, &["add", "-A"]);
            }),
            ("rewritten .git", |wt, evil| {
                git(evil, &["init", "-q", "--bare", "."]);
                git(evil, &["config", "core.bare", "false"]);
                let work = format!("--work-tree={}", wt.path.display());
                git(evil, &["--git-dir=.", &work, "add", "-A"]);
                std::fs::write(
                    wt.path.join(".git"),
                    format!("gitdir: {}\n", evil.display()),
                )
                .expect("w");
            }),
            ("rewritten commondir", |wt, evil| {
                git(evil, &["init", "-q", "--bare", "."]);
                std::fs::write(wt.admin.join("commondir"), format!("{}\n", evil.display()))
                    .expect("w");
            }),
            ("config.worktree", |wt, _| {
                let cw = format!("[core]\n\tworktree = {}\n", wt.path.display());
                std::fs::write(wt.admin.join("config.worktree"), cw).expect("w");
            }),
        ];
        for (what, tamper) in tampers {
            let t = tempfile::tempdir().expect("tempdir");
            let wt = setup(t.path());
            let evil = t.path().join("evil");
            std::fs::create_dir_all(&evil).expect("mkdir");
            tamper(&wt, &evil);
            let marker = t.path().join("marker");
            let m = marker.display();
            let cmd = format!("sh -c 'echo ran >> {m}; cat'");
            let config = format!(
                "[filter \"x\"]\n\tclean = \"{cmd}\"\n\tsmudge = \"{cmd}\"\n[diff \"x\"]\n\t\
                 textconv = \"{cmd}\"\n[core]\n\tfsmonitor = \"{cmd}\"\n\thooksPath = {hooks}\n\
                 [include]\n\tpath = {inc}\n",
                hooks = evil.join("hooks").display(),
                inc = evil.join("inc").display(),
            );
            std::fs::write(
                evil.join("inc"),
                format!("[core]\n\tworktree = {}\n", wt.path.display()),
            )
            .expect("w");
            std::fs::create_dir_all(evil.join("hooks")).expect("mkdir");
            for h in [
                "post-index-change",
                "post-checkout",
                "reference-transaction",
            ] {
                let hook = evil.join("hooks").join(h);
                std::fs::write(&hook, format!("#!/bin/sh\necho ran >> {m}\n")).expect("w");
                std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
            for cfg in [evil.join("config"), wt.path.join(".git/config")] {
                if cfg.parent().is_some_and(Path::is_dir) {
                    let mut old = std::fs::read_to_string(&cfg).unwrap_or_default();
                    old.push_str(&config);
                    std::fs::write(&cfg, old).expect("w");
                }
            }
            std::fs::write(wt.path.join(".gitattributes"), "* filter=x diff=x\n").expect("w");
            // Stat data no longer matching the index makes git re-read (and filter) the files.
            let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
            for f in ["src/a.rs", "run.sh"] {
                std::fs::File::options()
                    .write(true)
                    .open(wt.path.join(f))
                    .and_then(|h| h.set_modified(past))
                    .expect("set mtime");
            }
            let out = finish(&wt).expect("finish");
            assert!(matches!(out, Outcome::Tampered(_)), "{what}: {out:?}");
            assert!(
                !marker.exists(),
                "{what}: the agent's git config ran on the host"
            );
            assert!(wt.path.exists(), "{what}: a tampered worktree is kept");
            let Outcome::Tampered(why) = out else {
                unreachable!()
            };
            let warning = tamper_warning("s1", &wt, &why);
            assert!(
                warning.contains(&wt.path.display().to_string()),
                "{warning}"
            );
        }
    }
}
