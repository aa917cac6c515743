//! `--mode worktree`: a git worktree per session on a new branch `airlock/NAME`, under
//! `$XDG_DATA_HOME/airlock/worktrees/ID`.
//!
//! The sandbox never writes the main repository's git directory. Inside it, the whole main
//! repository (its `.git` included) is read-only, and the worktree's `.git` (covered read-only)
//! points at a session-private git directory `worktrees/ID.git`: its own `HEAD` (the session's
//! branch), refs, index and object store, with the main repository's objects borrowed read-only
//! through `objects/info/alternates`, and a `config` airlock wrote (covered read-only, as is
//! `objects/info`). The agent commits there.
//!
//! On the host, no git process ever runs inside the worktree or the private directory, or reads
//! anything the agent could write as configuration (DESIGN.md guarantee 8), and every host git
//! process runs with signals unblocked, stdin closed and a timeout ([`run`]). At the end:
//! the branch tip is read from the private directory by airlock's own reader (no link followed,
//! no FIFO waited on, bounded, a hex id only); new commits are copied into the main repository
//! the way `airlock merge` does for overlay sessions (packed by a scratch repository airlock
//! configured, indexed by `index-pack`, which checks every object's hash) and the main
//! repository's `refs/heads/airlock/NAME` moved with `update-ref --no-deref`. Whether the files
//! are clean is decided without git's conversion machinery: sizes from `ls-tree -l` first, blob
//! ids hashed only for same-size regular files. A clean worktree is deleted by airlock itself
//! (never `git worktree remove`, which runs `git status` in it), with its admin entry, private
//! directory and branch; a dirty one is kept with its branch holding the agent's commits, and
//! reviewed ([`review_against`]: what in it would run on the host, by `airlock diff`'s rules,
//! from the same no-follow walk). A worktree whose links to the repository were changed is kept,
//! with a warning that names it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use airlock_sandbox::{Bind, GeneratedFile};
use airlock_session::hostgit::{self, plain_tree, run, run_for, wait_bounded, QUICK, SLOW};
use anyhow::{bail, Context, Result};

/// A created worktree and what airlock wrote to tie it to the repository.
#[derive(Debug, Clone)]
pub(crate) struct Worktree {
    pub(crate) path: PathBuf,
    pub(crate) branch: String,
    /// The main repository's `.git` directory.
    pub(crate) git_dir: PathBuf,
    /// `.git/worktrees/<id>`: the worktree's admin directory in the main repository (never
    /// writable inside the sandbox).
    pub(crate) admin: PathBuf,
    /// `worktrees/ID.git`: the session-private git directory the sandbox commits into.
    pub(crate) private: PathBuf,
    /// The commit the branch started at.
    pub(crate) base: String,
    /// `sha1` or `sha256`.
    pub(crate) format: String,
    /// The link files as created: path -> contents (the worktree's `.git`, the admin
    /// directory's `gitdir` and `commondir`).
    pub(crate) links: Vec<(PathBuf, Vec<u8>)>,
    /// Binds for the sandbox: the main repository (its `.git` included) read-only, the private
    /// git directory writable, its `objects/info` read-only.
    pub(crate) binds: Vec<Bind>,
    /// Read-only files inside the sandbox: the worktree's `.git` pointing at the private
    /// directory, and the private directory's `config`.
    pub(crate) files: Vec<GeneratedFile>,
}

/// What [`finish`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing changed or committed: worktree, admin entry, private git directory and branch
    /// removed.
    Removed,
    /// Kept because it holds work (the reason names it), with what in it would run on the host
    /// ([`host_run_paths`]; empty when nothing would).
    Kept(String, Vec<String>),
    /// Kept because a file tying it to the repository was changed: running git inside it would
    /// honour whatever the agent put there. Each entry names a path and what changed.
    Tampered(Vec<String>),
}

/// The most of a ref, `HEAD` or `packed-refs` file in the private directory airlock reads.
const MAX_REF_FILE: u64 = 64 << 20;
/// Files larger than this are counted as changed without being hashed.
const MAX_HASHED_FILE: u64 = 1 << 30;

/// Host git confined to the main repository's admin directory `git_dir`: no work tree (it runs
/// in `git_dir` with `--git-dir`), no system or global config, no hooks, no fsmonitor. Only the
/// repository's own `config` applies, which the sandbox can read but never write.
pub(crate) fn trusted_git(git_dir: &Path) -> Command {
    let mut c = hostgit::command();
    c.current_dir(git_dir).arg("--git-dir").arg(git_dir);
    c
}

fn bind(p: PathBuf, writable: bool) -> Bind {
    Bind {
        source: p.clone(),
        target: p,
        writable,
        optional: false,
    }
}

fn is_oid(format: &str, s: &str) -> bool {
    let len = if format == "sha256" { 64 } else { 40 };
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Creates the worktree for session `id` of the repository at `workspace`.
///
/// `git worktree add` runs in the main repository with hooks, fsmonitor, reflogs and the
/// system and global config off (nothing the agent wrote exists yet).
pub(crate) fn create(workspace: &Path, id: &str, name: Option<&str>) -> Result<Worktree> {
    let root = crate::session_dir::sessions_root()?
        .parent()
        .map(|p| p.join("worktrees"))
        .context("bad data directory")?;
    create_in(&root, workspace, id, name)
}

/// Refuses a branch name whose ref or reflog path in the main repository exists already or
/// goes through a link: git would append a reflog line to whatever a planted link points at.
fn check_fresh_ref(git_dir: &Path, branch: &str) -> Result<()> {
    for top in ["refs/heads", "logs/refs/heads"] {
        let mut p = git_dir.join(top);
        let parts: Vec<&str> = branch.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            p.push(part);
            let last = i + 1 == parts.len();
            match std::fs::symlink_metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => bail!("cannot check {}: {e}", p.display()),
                Ok(m) if !last && m.is_dir() => {}
                Ok(_) => bail!(
                    "{} exists already (left by an earlier session?); remove it, or choose \
                     another --name",
                    p.display()
                ),
            }
        }
    }
    Ok(())
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
    let private = root.join(format!("{id}.git"));
    let branch = format!("airlock/{}", name.unwrap_or(id));
    let mut c = trusted_git(&git_dir);
    c.args(["rev-parse", "--verify", "HEAD^{commit}"]);
    let base = run(c, "read the repository's HEAD")?.trim().to_string();
    let mut c = trusted_git(&git_dir);
    c.args(["rev-parse", "--show-object-format"]);
    let format = run(c, "read the object format")?.trim().to_string();
    if !is_oid(&format, &base) {
        bail!(
            "git gave an unexpected HEAD {base:?} for {}",
            workspace.display()
        );
    }
    check_fresh_ref(&git_dir, &branch)?;
    let mut c = hostgit::command();
    c.current_dir(workspace)
        .args(["worktree", "add", "--quiet", "-b", &branch])
        .arg(&path)
        .arg(&base);
    run_for(c, &format!("create a worktree on branch {branch}"), SLOW)?;
    let dot_git = path.join(".git");
    let link = read_regular(&dot_git)
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
    let mut links = vec![(dot_git.clone(), link)];
    for f in ["gitdir", "commondir"] {
        let p = admin.join(f);
        let bytes = read_regular(&p).with_context(|| format!("cannot read {}", p.display()))?;
        links.push((p, bytes));
    }
    let config = private_config(&git_dir, &format);
    make_private(&private, &admin, &git_dir, &branch, &base, &config)?;
    let binds = vec![
        bind(workspace.to_path_buf(), false),
        bind(private.clone(), true),
        bind(private.join("objects/info"), false),
    ];
    let files = vec![
        GeneratedFile {
            target: dot_git,
            contents: format!("gitdir: {}\n", private.display()).into_bytes(),
        },
        GeneratedFile {
            target: private.join("config"),
            contents: config.into_bytes(),
        },
    ];
    Ok(Worktree {
        path,
        branch,
        git_dir,
        admin,
        private,
        base,
        format,
        links,
        binds,
        files,
    })
}

/// The private directory's `config`: the object format, and the user's name and email from
/// the main repository's (or the user's global) config so commits inside carry them. Nothing
/// else of the main repository's config is copied.
fn private_config(git_dir: &Path, format: &str) -> String {
    let mut cfg = String::from("[core]\n\tbare = false\n\tlogAllRefUpdates = true\n");
    if format == "sha256" {
        cfg = cfg.replacen("[core]\n", "[core]\n\trepositoryformatversion = 1\n", 1);
        cfg.push_str("[extensions]\n\tobjectformat = sha256\n");
    } else {
        cfg = cfg.replacen("[core]\n", "[core]\n\trepositoryformatversion = 0\n", 1);
    }
    let mut user = String::new();
    for key in ["name", "email"] {
        let mut c = trusted_git(git_dir);
        c.env_remove("GIT_CONFIG_GLOBAL")
            .args(["config", "--get"])
            .arg(format!("user.{key}"));
        let v = run(c, &format!("read user.{key}")).unwrap_or_default();
        let v = v.trim_end_matches('\n');
        if !v.is_empty() && !v.contains(['\n', '\0']) {
            let quoted = v.replace('\\', "\\\\").replace('"', "\\\"");
            user.push_str(&format!("\t{key} = \"{quoted}\"\n"));
        }
    }
    if !user.is_empty() {
        cfg.push_str("[user]\n");
        cfg.push_str(&user);
    }
    cfg
}

/// Writes the session-private git directory at `private`.
fn make_private(
    private: &Path,
    admin: &Path,
    git_dir: &Path,
    branch: &str,
    base: &str,
    config: &str,
) -> Result<()> {
    if std::fs::symlink_metadata(private).is_ok() {
        bail!(
            "{} exists already; remove it (a session with this id ended uncleanly)",
            private.display()
        );
    }
    let write = |rel: &str, bytes: &[u8]| -> Result<()> {
        let p = private.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))
    };
    write("HEAD", format!("ref: refs/heads/{branch}\n").as_bytes())?;
    write(
        &format!("refs/heads/{branch}"),
        format!("{base}\n").as_bytes(),
    )?;
    write(
        "objects/info/alternates",
        format!("{}\n", git_dir.join("objects").display()).as_bytes(),
    )?;
    write("config", config.as_bytes())?;
    for d in ["objects/pack", "refs/tags"] {
        let p = private.join(d);
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    // The index `git worktree add` wrote (trusted), so `git status` inside starts clean.
    if let Ok(index) = read_regular(&admin.join("index")) {
        write("index", &index)?;
    }
    Ok(())
}

/// After the session (every process of the sandbox is gone): imports the agent's commits onto
/// the main repository's `refs/heads/airlock/NAME`, then removes the worktree, its admin entry,
/// its private directory and its branch when nothing was changed or committed. Never runs git
/// inside the worktree or the private directory.
pub(crate) fn finish(wt: &Worktree) -> Result<Outcome> {
    let tampered = check_links(wt);
    if !tampered.is_empty() {
        return Ok(Outcome::Tampered(tampered));
    }
    if let Some((why, review)) = holds_work(wt)? {
        return Ok(Outcome::Kept(why, review));
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

/// Reads a regular file without following a link and without blocking on a FIFO, at most
/// [`MAX_REF_FILE`] bytes.
fn read_regular(p: &Path) -> std::io::Result<Vec<u8>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    f.take(MAX_REF_FILE).read_to_end(&mut out)?;
    Ok(out)
}

/// The tip of `branch` in the private directory, read by airlock (never by git): the loose
/// ref, else its line in `packed-refs`. `Err` names what is wrong (a symref, a link, a FIFO,
/// anything but a hex object id).
fn private_tip(wt: &Worktree) -> std::result::Result<String, String> {
    let refname = format!("refs/heads/{}", wt.branch);
    let loose = wt.private.join(&refname);
    let text = match read_regular(&loose) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let packed = read_regular(&wt.private.join("packed-refs"))
                .map_err(|e| format!("{refname} is neither loose nor packed ({e})"))?;
            String::from_utf8_lossy(&packed)
                .lines()
                .find_map(|l| {
                    let (oid, name) = l.split_once(' ')?;
                    (name == refname).then(|| oid.to_string())
                })
                .ok_or_else(|| format!("{refname} was deleted"))?
        }
        Err(e) => return Err(format!("{} is not a plain ref file ({e})", loose.display())),
    };
    let oid = text.trim_end_matches('\n');
    if !is_oid(&wt.format, oid) {
        return Err(format!(
            "{} does not hold a commit id (a symbolic ref or garbage is never followed)",
            loose.display()
        ));
    }
    Ok(oid.to_string())
}

/// Why the worktree must be kept, if it must: its HEAD left the branch, the branch has commits
/// (imported into the main repository first), or its files differ from the branch's tree; with
/// what in it would run on the host ([`review_against`]).
fn holds_work(wt: &Worktree) -> Result<Option<(String, Vec<String>)>> {
    // The walk that decided "its files differ" is reviewed as it is (no second walk).
    let mut walked = None;
    let Some(why) = why_kept(wt, &mut walked)? else {
        return Ok(None);
    };
    Ok(Some((why, walked.unwrap_or_else(|| review(wt)))))
}

/// [`review_against`] for the session's worktree; a worktree that cannot be reviewed is
/// reported as such (one `!!` line), never as harmless.
pub(crate) fn review(wt: &Worktree) -> Vec<String> {
    review_against(&wt.path, &wt.git_dir, &wt.base, &wt.format).unwrap_or_else(|e| {
        vec![format!(
            "!! {}: could not be reviewed ({e:#}): treat every file in it as untrusted",
            wt.path.display()
        )]
    })
}

/// Why the worktree must be kept (see [`holds_work`]); when it walked the worktree to decide,
/// `walked` receives that walk's review ([`host_run_paths`]).
fn why_kept(wt: &Worktree, walked: &mut Option<Vec<String>>) -> Result<Option<String>> {
    let head = read_regular(&wt.private.join("HEAD")).unwrap_or_default();
    let on_branch = head == format!("ref: refs/heads/{}\n", wt.branch).as_bytes();
    let tip = match private_tip(wt) {
        Ok(t) => t,
        Err(why) => {
            return Ok(Some(format!(
                "the session's branch cannot be read ({why}); the agent's commits were not \
                 imported, its git directory {} is kept",
                wt.private.display()
            )))
        }
    };
    if tip != wt.base {
        import(wt, &tip).with_context(|| {
            format!(
                "the agent's commits (up to {tip}) were not imported; they stay in {}",
                wt.private.display()
            )
        })?;
        let _ = remove_tree(&wt.private);
        let mut why = format!("the branch {} has new commits", wt.branch);
        if !on_branch {
            why.push_str(" (and its HEAD left the branch)");
        }
        return Ok(Some(why));
    }
    if !on_branch {
        return Ok(Some(format!(
            "its HEAD is no longer the session's branch; its git directory {} is kept",
            wt.private.display()
        )));
    }
    let (tree, files) = tree_and_files(&wt.path, &wt.git_dir, &wt.base, &wt.format)?;
    let differ = compare(&tree, &files);
    *walked = Some(host_run_paths(&wt.path, &wt.git_dir, &tree, &files));
    if differ.is_some() {
        // Nothing committed: the kept worktree's own `.git` (the main repository's admin
        // entry) is all the user needs.
        let _ = remove_tree(&wt.private);
    }
    Ok(differ)
}

/// The files of `base` (listed by the trusted git of the main repository `git_dir`) and the
/// worktree at `root` as git would store them (airlock's own walk: [`walk`]).
fn tree_and_files(
    root: &Path,
    git_dir: &Path,
    base: &str,
    format: &str,
) -> Result<(BTreeMap<PathBuf, Entry>, BTreeMap<PathBuf, Entry>)> {
    let mut c = trusted_git(git_dir);
    c.args(["ls-tree", "-r", "-l", "-z", "--full-tree", base]);
    let tree = parse_ls_tree(run(c, "list the branch's files")?.as_bytes());
    let mut files = BTreeMap::new();
    walk(root, Path::new(""), format, &tree, &mut files)?;
    Ok((tree, files))
}

/// What in the worktree at `root` would run on the host, by the rules `airlock diff` marks `!!`
/// in an overlay session ([`airlock_session::review`]): every path the agent added or changed
/// (committed or not: everything in the worktree that is not as in the session's base commit),
/// one line each, `path: why`. Read with airlock's own walk; git never runs inside it.
pub(crate) fn review_against(
    root: &Path,
    git_dir: &Path,
    base: &str,
    format: &str,
) -> Result<Vec<String>> {
    let (tree, files) = tree_and_files(root, git_dir, base, format)?;
    Ok(host_run_paths(root, git_dir, &tree, &files))
}

/// The lines of [`review_against`]: `!! PATH: concern` for exec files and links leading out of
/// the worktree or into a git directory (everything inside a nested git directory is one line,
/// its directory), then `!  PATH: note` for what `diff` notes in an overlay session (the next
/// agent's instructions, unknown top-level dot-names). The hooks directory is the main
/// repository's `core.hooksPath` (git_dir's config, shared by its worktrees; a relative one is
/// taken from the worktree's root).
fn host_run_paths(
    root: &Path,
    git_dir: &Path,
    tree: &BTreeMap<PathBuf, Entry>,
    files: &BTreeMap<PathBuf, Entry>,
) -> Vec<String> {
    use airlock_session::review::{concerns_in, hooks_dir, is_dotgit, Concern, Version};
    let hooks = git_dir.parent().and_then(hooks_dir);
    let has = |p: &Path, dir: bool| {
        if dir {
            files
                .range(p.to_path_buf()..)
                .take_while(|(f, _)| f.starts_with(p))
                .any(|(f, _)| f != p)
        } else {
            files.get(p).is_some_and(|e| e.mode != "040000")
        }
    };
    let link_of = |p: &Path| {
        files
            .get(p)
            .filter(|e| e.mode == "120000")
            .and_then(|_| std::fs::read_link(root.join(p)).ok())
    };
    let mut out: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (p, got) in files {
        let same = tree
            .get(p)
            .is_some_and(|t| t.mode == got.mode && !got.oid.is_empty() && t.oid == got.oid);
        if same {
            continue;
        }
        let version = match got.mode.as_str() {
            "120000" => std::fs::read_link(root.join(p)).map_or(Version::Other, Version::Link),
            "040000" => Version::Dir,
            "100644" | "100755" => Version::File(Ok(String::new())),
            _ => Version::Other,
        };
        let mut found = concerns_in(root, p, &version, &has, &link_of);
        if let Some(d) = hooks.as_ref().filter(|d| p.starts_with(d)) {
            if !found.iter().any(|k| matches!(k, Concern::Exec(_))) {
                found.push(Concern::Exec(format!(
                    "the repository's core.hooksPath is {}: git runs the hooks there at the next \
                     git command in the worktree",
                    airlock_session::quote::path(d)
                )));
            }
        }
        for k in found {
            if matches!(k, Concern::Unshown(_)) {
                continue;
            }
            // A nested git directory is named once, not file by file.
            let mut shown = PathBuf::new();
            for c in p.components() {
                shown.push(c);
                if is_dotgit(&c.as_os_str().to_string_lossy()) {
                    break;
                }
            }
            if seen.insert(shown.clone()) {
                out.push(format!("!! {}: {k}", airlock_session::quote::path(&shown)));
            }
        }
        if let Some(note) = airlock_session::review::note_reason(p) {
            notes.push(format!("!  {}: {note}", airlock_session::quote::path(p)));
        }
    }
    out.extend(notes);
    out
}

/// The lines printed after a kept worktree's path when something in it would run on the host.
pub(crate) fn review_warning(path: &Path, review: &[String]) -> String {
    const MAX_LISTED: usize = 40;
    let mut s = format!(
        "airlock: the agent left files in the worktree {} that run on the host (!!) or that you \
         should read first (!); review these before you enter or build in the worktree (a `cd` \
         with a git-aware prompt, direnv, an editor, `cargo test`, the next agent run them):",
        path.display()
    );
    for l in review.iter().take(MAX_LISTED) {
        s.push_str(&format!("\n  {l}"));
    }
    if review.len() > MAX_LISTED {
        s.push_str(&format!("\n  ... and {} more", review.len() - MAX_LISTED));
    }
    s
}

/// Copies the commits up to `tip` from the private directory into the main repository and
/// moves `refs/heads/airlock/NAME` there from the base (`update-ref --no-deref` with the old
/// value, so a ref changed meanwhile is not overwritten). The objects are packed by a scratch
/// bare repository airlock configures, borrowing the private and the main object stores, and
/// indexed into the main repository by `index-pack`, which recomputes every object's id.
/// Nothing reads the private directory's config, hooks or refs.
fn import(wt: &Worktree, tip: &str) -> Result<()> {
    let objects = wt.private.join("objects");
    let alternates = objects.join("info/alternates");
    let want = format!("{}\n", wt.git_dir.join("objects").display());
    if !std::fs::symlink_metadata(&objects).is_ok_and(|m| m.is_dir())
        || read_regular(&alternates).ok().as_deref() != Some(want.as_bytes())
    {
        bail!("{} is not what airlock wrote", alternates.display());
    }
    plain_tree(&objects)?;
    let scratch = wt.private.with_extension("import");
    let _ = remove_tree(&scratch);
    let mut c = hostgit::command();
    c.args(["init", "--quiet", "--bare"])
        .arg(format!("--object-format={}", wt.format))
        .arg(&scratch);
    run(c, "create a scratch repository")?;
    let result = (|| -> Result<()> {
        let alt = scratch.join("objects/info/alternates");
        std::fs::write(&alt, format!("{}\n{}", objects.display(), want))
            .with_context(|| format!("cannot write {}", alt.display()))?;
        copy_objects(wt, &scratch, tip)?;
        let mut c = trusted_git(&wt.git_dir);
        c.args(["cat-file", "-e"]).arg(format!("{tip}^{{commit}}"));
        run(c, &format!("check the imported commit {tip}"))?;
        let mut c = trusted_git(&wt.git_dir);
        c.args(["update-ref", "--no-deref", "-m", "airlock worktree session"])
            .arg(format!("refs/heads/{}", wt.branch))
            .arg(tip)
            .arg(&wt.base);
        run(c, &format!("move the branch {} to {tip}", wt.branch))?;
        // The kept worktree's index (in the main repository's admin entry) follows the branch,
        // so the user's own `git status` there shows only uncommitted work.
        let mut c = trusted_git(&wt.admin);
        c.args(["read-tree", tip]);
        run(c, "reset the worktree's index to the agent's commit")?;
        Ok(())
    })();
    let _ = remove_tree(&scratch);
    result
}

/// `pack-objects` in the scratch repository piped into `index-pack` in the main one.
fn copy_objects(wt: &Worktree, scratch: &Path, tip: &str) -> Result<()> {
    use std::io::Write;
    let mut c = hostgit::command();
    c.current_dir(scratch)
        .arg("--git-dir")
        .arg(scratch)
        .args(["pack-objects", "--revs", "--stdout", "-q"])
        .stdin(Stdio::piped());
    let mut pack = hostgit::spawn(&mut c, "pack the agent's commits")?;
    if let Some(mut stdin) = pack.stdin.take() {
        let revs = format!("{tip}\n^{}\n", wt.base);
        stdin
            .write_all(revs.as_bytes())
            .context("cannot feed git pack-objects")?;
    }
    let Some(out) = pack.stdout.take() else {
        let _ = pack.kill();
        let _ = pack.wait();
        bail!("git pack-objects has no output");
    };
    let mut c = trusted_git(&wt.git_dir);
    c.args(["index-pack", "--stdin", "--strict"]).stdin(out);
    let indexed = run_for(c, "index the agent's commits into the repository", SLOW);
    let packed = wait_bounded(&mut pack, QUICK, "pack the agent's commits");
    if !packed?.success() {
        let mut err = String::new();
        if let Some(mut e) = pack.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!(
            "git failed to pack the agent's commits: {}",
            hostgit::explain(&err)
        );
    }
    indexed?;
    Ok(())
}

/// A tree entry: git mode (`100644`, `100755`, `120000`, `160000`, or for worktree files
/// `fifo`/`socket`/`device`/`040000`), object id (empty when not computed) and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    mode: String,
    oid: String,
    size: Option<u64>,
}

/// `git ls-tree -r -l -z` output: `MODE SP TYPE SP OID SP+ SIZE TAB PATH NUL` (SIZE is `-` for
/// submodules).
fn parse_ls_tree(out: &[u8]) -> BTreeMap<PathBuf, Entry> {
    out.split(|b| *b == 0)
        .filter_map(|rec| {
            let tab = rec.iter().position(|b| *b == b'\t')?;
            let head = std::str::from_utf8(&rec[..tab]).ok()?;
            let mut f = head.split_whitespace();
            let (mode, _kind, oid, size) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let path = PathBuf::from(OsStr::from_bytes(&rec[tab + 1..]));
            Some((
                path,
                Entry {
                    mode: mode.to_string(),
                    oid: oid.to_string(),
                    size: size.parse().ok(),
                },
            ))
        })
        .collect()
}

/// The blob id of the regular file at `p`, streamed (opened without following a link or
/// blocking, its length taken from `fstat`, at most `len` bytes read; a file that changes length
/// meanwhile gets an id that matches nothing, so it counts as changed).
fn file_blob_id(format: &str, p: &Path, len: u64) -> std::io::Result<String> {
    use sha2::Digest;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(p)?;
    let m = f.metadata()?;
    if !m.is_file() || m.len() != len {
        return Ok(String::from("changed-while-read"));
    }
    let head = format!("blob {len}\0");
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
    let mut f = f.take(len.saturating_add(1));
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        update(&buf[..n]);
    }
    if total != len {
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
/// opening anything but regular files (with `O_NONBLOCK`). A regular file is hashed only when
/// `tree` has a regular file of the same size at its path (and it is at most
/// [`MAX_HASHED_FILE`]); otherwise it is recorded with its size and no id, which compares as
/// changed. The top-level `.git` is skipped; directories are listed with mode `040000` only
/// when empty (git does not track them). Iterative, one directory open at a time; a tree
/// nested deeper than [`airlock_session::tree::MAX_DEPTH`] levels is refused by name.
fn walk(
    root: &Path,
    rel: &Path,
    format: &str,
    tree: &BTreeMap<PathBuf, Entry>,
    out: &mut BTreeMap<PathBuf, Entry>,
) -> Result<()> {
    let mut todo = vec![rel.to_path_buf()];
    while let Some(rel) = todo.pop() {
        airlock_session::tree::check_depth(&rel, &root.join(&rel))?;
        walk_dir(root, &rel, format, tree, out, &mut todo)?;
    }
    Ok(())
}

/// The entries of `root/rel` for [`walk`]; its directories are queued in `todo`.
fn walk_dir(
    root: &Path,
    rel: &Path,
    format: &str,
    tree: &BTreeMap<PathBuf, Entry>,
    out: &mut BTreeMap<PathBuf, Entry>,
    todo: &mut Vec<PathBuf>,
) -> Result<()> {
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
            Entry {
                mode: "120000".into(),
                oid: blob_id(format, target.as_os_str().as_bytes()),
                size: None,
            }
        } else if ft.is_dir() {
            todo.push(r);
            continue;
        } else if ft.is_file() {
            let mode = if m.permissions().mode() & 0o100 != 0 {
                "100755"
            } else {
                "100644"
            };
            let worth_hashing = tree.get(&r).is_some_and(|t| {
                t.mode == mode && t.size == Some(m.len()) && m.len() <= MAX_HASHED_FILE
            });
            let oid = if worth_hashing {
                file_blob_id(format, &p, m.len())
                    .with_context(|| format!("cannot read {}", p.display()))?
            } else {
                String::new()
            };
            Entry {
                mode: mode.into(),
                oid,
                size: Some(m.len()),
            }
        } else {
            let what = if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else {
                "device"
            };
            Entry {
                mode: what.into(),
                oid: String::new(),
                size: None,
            }
        };
        out.insert(r, entry);
    }
    if empty && !rel.as_os_str().is_empty() {
        out.insert(
            rel.to_path_buf(),
            Entry {
                mode: "040000".into(),
                oid: String::new(),
                size: None,
            },
        );
    }
    Ok(())
}

/// Why the worktree's files differ from the tree, naming up to three paths.
fn compare(tree: &BTreeMap<PathBuf, Entry>, files: &BTreeMap<PathBuf, Entry>) -> Option<String> {
    let mut differ: Vec<&Path> = Vec::new();
    for (p, want) in tree {
        let got = files.get(p);
        let same = match (want.mode.as_str(), got) {
            // An uninitialised submodule is an empty directory (or nothing at all).
            ("160000", None) => true,
            ("160000", Some(g)) => g.mode == "040000",
            (_, Some(g)) => g.mode == want.mode && !g.oid.is_empty() && g.oid == want.oid,
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
        if got.mode == "040000" {
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
/// than entering them), its admin entry, its private directory, and the branch, from the
/// trusted side. The branch is deleted only when its ref file in the main repository is still
/// a plain file holding the base (read by airlock, so a FIFO or a symref planted there is
/// neither waited on nor followed), and then with `update-ref --no-deref`.
fn remove(wt: &Worktree) -> Result<()> {
    let refname = format!("refs/heads/{}", wt.branch);
    let loose = wt.git_dir.join(&refname);
    let ours = read_regular(&loose)
        .is_ok_and(|b| b.strip_suffix(b"\n").unwrap_or(&b) == wt.base.as_bytes());
    if !ours {
        bail!(
            "{} is no longer the plain ref airlock created at {}; the worktree is left in place \
             and the branch untouched (check it with `git branch -v`)",
            loose.display(),
            wt.base
        );
    }
    remove_tree(&wt.path).with_context(|| format!("cannot delete {}", wt.path.display()))?;
    remove_tree(&wt.admin).with_context(|| format!("cannot delete {}", wt.admin.display()))?;
    remove_tree(&wt.private).with_context(|| format!("cannot delete {}", wt.private.display()))?;
    let mut c = trusted_git(&wt.git_dir);
    c.args(["update-ref", "--no-deref", "-d"])
        .arg(&refname)
        .arg(&wt.base);
    run(c, &format!("delete the unused branch {}", wt.branch))?;
    Ok(())
}

fn remove_tree(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => airlock_session::tree::remove_all(p),
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
         Read its files with ordinary tools, then delete it with `rm -rf {} {} {}` (and `git \
         branch -D {}` in the repository)",
        wt.path.display(),
        what.iter()
            .map(|w| format!("  {w}"))
            .collect::<Vec<_>>()
            .join("\n"),
        wt.path.display(),
        wt.admin.display(),
        wt.private.display(),
        wt.branch
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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

    /// Runs git as the agent would inside the sandbox: through the worktree's `.git` as the
    /// sandbox sees it (pointing at the private directory).
    fn agent_git(wt: &Worktree, args: &[&str]) {
        let gd = format!("--git-dir={}", wt.private.display());
        let wd = format!("--work-tree={}", wt.path.display());
        let mut all = vec![gd.as_str(), wd.as_str()];
        all.extend_from_slice(args);
        git(&wt.path, &all);
    }

    #[test]
    fn agent_commits_land_on_the_branch_in_the_main_repository() {
        let t = tempfile::tempdir().expect("tempdir");
        let wt = setup(t.path());
        std::fs::write(wt.path.join("new.txt"), "new\n").expect("w");
        agent_git(&wt, &["add", "-A"]);
        agent_git(&wt, &["commit", "-qm", "agent"]);
        let out = finish(&wt).expect("finish");
        assert!(matches!(out, Outcome::Kept(..)), "{out:?}");
        let mut c = trusted_git(&wt.git_dir);
        c.args(["log", "--format=%s", &format!("refs/heads/{}", wt.branch)]);
        assert_eq!(run(c, "log").expect("log"), "agent\ninit\n");
        let mut c = trusted_git(&wt.git_dir);
        c.args(["fsck", "--strict"]);
        run(c, "fsck").expect("fsck clean");
        assert!(
            !wt.private.exists(),
            "imported: the private directory is gone"
        );
    }

    /// What the agent can plant in its private git directory where airlock reads the branch:
    /// a symbolic ref, a FIFO, a link. Each keeps the worktree, in bounded time, with the main
    /// repository's branches as they were.
    #[test]
    fn the_private_branch_is_read_without_following_or_waiting() {
        type Plant = (&'static str, fn(&Worktree));
        let plants: &[Plant] = &[
            ("symref", |wt| {
                let r = wt.private.join("refs/heads").join(&wt.branch);
                std::fs::write(r, "ref: refs/heads/master\n").expect("w");
            }),
            ("fifo ref", |wt| {
                let r = wt.private.join("refs/heads").join(&wt.branch);
                std::fs::remove_file(&r).expect("rm");
                nix::unistd::mkfifo(&r, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
            }),
            ("fifo packed-refs", |wt| {
                let r = wt.private.join("refs/heads").join(&wt.branch);
                std::fs::remove_file(&r).expect("rm");
                let p = wt.private.join("packed-refs");
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
            }),
            ("link ref", |wt| {
                let r = wt.private.join("refs/heads").join(&wt.branch);
                std::fs::remove_file(&r).expect("rm");
                std::os::unix::fs::symlink(wt.git_dir.join("refs/heads/master"), &r).expect("ln");
            }),
        ];
        for (what, plant) in plants {
            let t = tempfile::tempdir().expect("tempdir");
            let wt = setup(t.path());
            let mut c = trusted_git(&wt.git_dir);
            c.args(["for-each-ref"]);
            let before = run(c, "refs").expect("refs");
            plant(&wt);
            let start = Instant::now();
            let out = finish(&wt).expect("finish");
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            assert!(matches!(out, Outcome::Kept(..)), "{what}: {out:?}");
            let mut c = trusted_git(&wt.git_dir);
            c.args(["for-each-ref"]);
            assert_eq!(run(c, "refs").expect("refs"), before, "{what}");
        }
    }

    /// A 1 TiB sparse file is a change decided by its size, without reading it.
    #[test]
    fn huge_files_are_judged_by_size() {
        for f in ["src/a.rs", "huge.bin"] {
            let t = tempfile::tempdir().expect("tempdir");
            let wt = setup(t.path());
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(wt.path.join(f))
                .and_then(|h| h.set_len(1 << 40))
                .expect("truncate");
            let start = Instant::now();
            assert!(
                matches!(finish(&wt).expect("finish"), Outcome::Kept(..)),
                "{f}"
            );
            assert!(start.elapsed() < Duration::from_secs(10), "{f}");
        }
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
                matches!(finish(&wt).expect("finish"), Outcome::Kept(..)),
                "{what}"
            );
            assert!(wt.path.join(".git").exists(), "{what}");
        }
    }

    /// REDTEAM4 Y6 without commits: the walk that found the change is reviewed; each planted
    /// file that runs on the host is one `!!` line (a nested repository one line), the next
    /// agent's instructions a `!` line, an ordinary file or an unchanged tracked one none.
    #[test]
    fn a_kept_worktree_without_commits_is_reviewed() {
        let t = tempfile::tempdir().expect("tempdir");
        let wt = setup(t.path());
        for (p, body) in [
            ("sub/.git/config", "[core]\n\tfsmonitor = x\n"),
            ("sub/.git/HEAD", "ref: refs/heads/main\n"),
            ("a/b/g/.git", "gitdir: ../x\n"),
            ("a/b/.envrc", "x\n"),
            (".cargo/config.toml", "x\n"),
            ("AGENTS.md", "x\n"),
            ("ordinary.txt", "x\n"),
        ] {
            let f = wt.path.join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            std::fs::write(f, body).expect("write");
        }
        std::os::unix::fs::symlink(".cargo", wt.path.join("lk")).expect("ln");
        // The main repository's hooks directory applies to its worktrees.
        let main = wt.git_dir.parent().expect("main");
        git(main, &["config", "core.hooksPath", "tools/hooks"]);
        std::fs::create_dir_all(wt.path.join("tools/hooks")).expect("mkdir");
        std::fs::write(wt.path.join("tools/hooks/pre-commit"), "x\n").expect("write");
        let Outcome::Kept(_, review) = finish(&wt).expect("finish") else {
            panic!("not kept");
        };
        let all = review.join("\n");
        for p in [
            "sub/.git",
            "a/b/g/.git",
            "a/b/.envrc",
            ".cargo/config.toml",
            "lk",
            "tools/hooks/pre-commit",
        ] {
            let n = review
                .iter()
                .filter(|l| l.starts_with(&format!("!! {p}: ")))
                .count();
            assert_eq!(n, 1, "{p}:\n{all}");
        }
        assert!(
            review.iter().any(|l| l.starts_with("!  AGENTS.md: ")),
            "{all}"
        );
        assert!(
            !all.contains("ordinary.txt") && !all.contains("src/a.rs"),
            "{all}"
        );
    }

    /// Security review (ISSUE9 follow-up): the session's own branch ref lives in a directory the
    /// agent can write. A textual symref there must not make the host's `update-ref -d` delete
    /// the branch it points at (the user's `main`, whose tip equals the session's base).
    #[test]
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
