//! Git-specific predicates (force pushes, branch deletion, protected branches, remotes owned by
//! the agent's own identity, config keys whose value runs) and a tiny reader of `.git/config`
//! and `.git/HEAD` for the hook.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ir::Invocation;
use crate::ir::DYN;
use crate::matchers::{GitInfo, Match, MatchCtx};

fn is_push(inv: &Invocation) -> bool {
    inv.program == "git" && inv.subcommand.as_deref() == Some("push")
}

/// The owner (first path segment) of a remote URL: `git@github.com:me/repo.git` → `me`.
pub fn url_owner(url: &str) -> Option<String> {
    let rest = if let Some((_, r)) = url.split_once("://") {
        // scheme://[user@]host[:port]/owner/repo
        r.split_once('/').map(|(_, p)| p)?
    } else if let Some((_, p)) = url.split_once(':') {
        // scp-like: [user@]host:owner/repo
        p
    } else {
        return None;
    };
    let owner = rest.trim_start_matches('/').split('/').next()?;
    (!owner.is_empty()).then(|| owner.to_ascii_lowercase())
}

/// Global options and push options that change which repository, config or URL a push uses.
const REDIRECT_FLAGS: &[&str] = &[
    "c",
    "config-env",
    "C",
    "git-dir",
    "work-tree",
    "namespace",
    "repo",
    "receive-pack",
    "exec",
];

/// Whether a push goes to a remote owned by the agent's identity (`git_owners`). Decided only
/// from facts the agent cannot change on this command line: a remote *name* (never a URL), no
/// `-c`/`--config-env`/`-C`/`--git-dir`/`--repo`, no `GIT_*` assignment, and a push URL that
/// [`GitInfo::owned_push_url`] vouches for. Anything else: not owned (the ordinary rules apply).
fn owned(inv: &Invocation, ctx: &MatchCtx<'_>) -> bool {
    if ctx.owners.is_empty()
        || !inv.git_config.is_empty()
        || REDIRECT_FLAGS.iter().any(|f| inv.has_flag(f))
        || inv
            .assigns
            .iter()
            .any(|(k, _)| k.to_ascii_uppercase().starts_with("GIT_"))
    {
        return false;
    }
    let name = match inv.positionals.first() {
        None => ctx.git.default_push_remote(),
        Some(w) if w.is_dynamic() => None,
        Some(w) => Some(w.text.clone()),
    };
    let Some(name) = name else { return false };
    if name.contains([':', '/', '\\', '.', '~']) {
        // A URL or a path: what it names is not one of the trusted remotes.
        return false;
    }
    ctx.git
        .owned_push_url(&name)
        .and_then(|u| url_owner(&u))
        .is_some_and(|o| ctx.owners.iter().any(|x| x.eq_ignore_ascii_case(&o)))
}

fn refspecs(inv: &Invocation) -> &[crate::ir::Word] {
    inv.positionals.get(1..).unwrap_or(&[])
}

/// `git push --force`, `+refspec`, `--mirror`: rewrites history on a remote not owned by the agent.
pub fn push_force(inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
    if !is_push(inv) {
        return Match::No;
    }
    let flagged = ["force", "force-with-lease", "force-if-includes", "mirror"]
        .iter()
        .any(|f| inv.has_flag(f));
    if flagged && lease_on_own_branch(inv, ctx) {
        return Match::No;
    }
    let plus = refspecs(inv).iter().any(|w| w.text.starts_with('+'));
    let dynamic = refspecs(inv).iter().any(|w| w.text.starts_with(DYN));
    let m = if flagged || plus {
        Match::Yes
    } else if dynamic {
        Match::Possible
    } else {
        Match::No
    };
    if m != Match::No && owned(inv, ctx) {
        return Match::No;
    }
    m
}

/// `git push --force-with-lease [REMOTE [BRANCH]]` of the branch checked out, when that branch is
/// not protected: the lease refuses to overwrite work the agent has not seen, and the branch is
/// the agent's feature branch (the everyday "rebase, then push again").
fn lease_on_own_branch(inv: &Invocation, ctx: &MatchCtx<'_>) -> bool {
    let lease = inv.has_flag("force-with-lease") || inv.has_flag("force-if-includes");
    if !lease || inv.has_flag("force") || inv.has_flag("mirror") || inv.has_flag("all") {
        return false;
    }
    let Some(current) = ctx.git.current_branch() else {
        return false;
    };
    if ctx.protected.iter().any(|g| g.matches(&current)) {
        return false;
    }
    refspecs(inv).iter().all(|w| {
        let t = w.text.as_str();
        if w.is_dynamic() || w.glob || t.starts_with('+') {
            return false;
        }
        let dst = t.rsplit_once(':').map_or(t, |(_, d)| d);
        let dst = dst.strip_prefix("refs/heads/").unwrap_or(dst);
        let src = t.split_once(':').map_or(t, |(s, _)| s);
        (dst == current || dst == "HEAD") && (src == current || src == "HEAD")
    })
}

/// `git push URL …` to a repository that is not a configured remote: the code leaves for a place
/// nobody set up (ask). A URL is never owned (`git_owners`): `insteadOf` config can rewrite it.
pub fn push_url(inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
    if !is_push(inv) {
        return Match::No;
    }
    let Some(first) = inv.positionals.first() else {
        return Match::No;
    };
    if first.is_dynamic() {
        return Match::Possible;
    }
    let r = first.text.as_str();
    let url_like = r.contains("://") || r.contains(':') || r.starts_with(['/', '.', '~']);
    if !url_like || ctx.git.remote_url(r).is_some() {
        return Match::No;
    }
    Match::Yes
}

/// `git push --delete`, `:branch`, `--prune`, `--mirror`: never exempt.
pub fn push_delete(inv: &Invocation) -> Match {
    if !is_push(inv) {
        return Match::No;
    }
    if ["delete", "prune", "mirror"]
        .iter()
        .any(|f| inv.has_flag(f))
    {
        return Match::Yes;
    }
    let specs = refspecs(inv);
    if specs
        .iter()
        .any(|w| w.text.trim_start_matches('+').starts_with(':'))
    {
        return Match::Yes;
    }
    if specs.iter().any(|w| w.text.starts_with(DYN)) {
        return Match::Possible;
    }
    Match::No
}

/// A push whose destination is a protected branch, to a remote not owned by the agent.
pub fn push_protected(inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
    if !is_push(inv) || owned(inv, ctx) {
        return Match::No;
    }
    if inv.has_flag("all") || inv.has_flag("mirror") || inv.has_flag("branches") {
        return Match::Yes;
    }
    if inv.has_flag("tags") && refspecs(inv).is_empty() {
        return Match::No;
    }
    let protected = |b: &str| {
        let b = b.strip_prefix("refs/heads/").unwrap_or(b);
        ctx.protected.iter().any(|g| g.matches(b))
    };
    let current = || match ctx.git.current_branch() {
        Some(b) => Match::from_bool_pub(protected(&b)),
        None => Match::Possible,
    };
    let specs = refspecs(inv);
    if specs.is_empty() {
        if inv.positionals.first().is_some_and(|w| w.is_dynamic()) {
            return Match::Possible;
        }
        return current();
    }
    let mut m = Match::No;
    for w in specs {
        if w.is_dynamic() {
            let t = w.text.trim_start_matches('+');
            // `HEAD:$X` or `$X`: the destination is unknown.
            let dst = t.rsplit_once(':').map_or(t, |(_, d)| d);
            if dst.contains(DYN) {
                m = m.max(Match::Possible);
                continue;
            }
        }
        let t = w.text.trim_start_matches('+');
        let dst = t.rsplit_once(':').map_or(t, |(_, d)| d);
        let r = if dst == "HEAD" || dst == "@" {
            current()
        } else if dst.is_empty() {
            Match::No
        } else {
            Match::from_bool_pub(protected(dst))
        };
        m = m.max(r);
    }
    m
}

/// `git config core.hooksPath …`, `git config alias.x '!…'`: sets a key whose value runs.
pub fn config_exec_key(inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
    if inv.program != "git" || inv.subcommand.as_deref() != Some("config") {
        return Match::No;
    }
    if [
        "get",
        "get-all",
        "get-regexp",
        "list",
        "unset",
        "unset-all",
        "remove-section",
        "show-origin",
    ]
    .iter()
    .any(|f| inv.has_flag(f))
    {
        return Match::No;
    }
    let mut pos: Vec<&crate::ir::Word> = inv.positionals.iter().collect();
    if let Some(first) = pos.first() {
        match first.text.as_str() {
            "set" => {
                pos.remove(0);
            }
            "get" | "list" | "unset" | "remove-section" | "rename-section" | "edit" => {
                return Match::No;
            }
            _ => {}
        }
    }
    if pos.len() < 2 && !inv.has_flag("add") {
        return Match::No;
    }
    let Some(key) = pos.first() else {
        return Match::No;
    };
    if key.is_dynamic() {
        return Match::Possible;
    }
    let k = key.text.to_ascii_lowercase();
    Match::from_bool_pub(ctx.git_exec_keys.iter().any(|g| g.matches(&k)))
}

impl Match {
    pub(crate) fn from_bool_pub(b: bool) -> Match {
        if b {
            Match::Yes
        } else {
            Match::No
        }
    }
}

/// Reads remotes and the current branch from the repository around a directory, lazily, and
/// decides which pushes the agent's identity owns (see [`GitInfo::owned_push_url`]).
///
/// What git would push to is decided by config the agent can write (the repository's
/// `.git/config`, `~/.gitconfig`, `include.path`, `GIT_CONFIG_*`), so a push URL is vouched for
/// only when none of the ways it could differ from the remote's one `url` is present anywhere
/// the hook can see: `remote.*.pushurl`, `url.*.insteadOf`/`pushInsteadOf`, `include`/
/// `includeIf`, a second `url`, remotes or branches in a global file, `GIT_CONFIG_*`/`GIT_DIR`
/// in the environment, or syntax this reader does not follow (quotes, continuations, old-style
/// subsections). Inside a session the remote must also be one the supervisor captured on the
/// host at session start ([`FsGit::with_trusted`]) with the same URL.
#[derive(Debug)]
pub struct FsGit {
    start: PathBuf,
    home: Option<PathBuf>,
    trusted: Option<BTreeMap<String, String>>,
    repo_only: bool,
    loaded: OnceCell<StaticInfo>,
}

#[derive(Debug, Default)]
struct StaticInfo {
    /// Every `url` of each remote, in order.
    remotes: BTreeMap<String, Vec<String>>,
    branch: Option<String>,
    /// `branch.<current>.pushRemote`, else `remote.pushDefault`, else `branch.<current>.remote`.
    default_remote: Option<String>,
    /// Why a push URL could differ from the remote's `url` (then nothing is owned).
    redirected: Option<String>,
}

impl FsGit {
    /// Looks for the repository containing `dir` when first asked.
    pub fn new(dir: impl Into<PathBuf>) -> FsGit {
        FsGit {
            start: dir.into(),
            home: None,
            trusted: None,
            repo_only: false,
            loaded: OnceCell::new(),
        }
    }

    /// Also checks `home`'s git config files (the home the rules use, besides `$HOME`).
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> FsGit {
        self.home = Some(home.into());
        self
    }

    /// Inside a session: only remotes in `trusted` (name → URL, captured on the host by
    /// [`trusted_remotes`]) with that same URL here may be owned.
    pub fn with_trusted(mut self, trusted: BTreeMap<String, String>) -> FsGit {
        self.trusted = Some(trusted);
        self
    }

    fn info(&self) -> &StaticInfo {
        self.loaded.get_or_init(|| {
            load(&self.start, self.home.as_deref(), self.repo_only).unwrap_or_default()
        })
    }
}

impl GitInfo for FsGit {
    fn remote_url(&self, name: &str) -> Option<String> {
        self.info().remotes.get(name)?.first().cloned()
    }
    fn current_branch(&self) -> Option<String> {
        self.info().branch.clone()
    }
    fn owned_push_url(&self, name: &str) -> Option<String> {
        let info = self.info();
        if info.redirected.is_some() {
            return None;
        }
        let url = match info.remotes.get(name)?.as_slice() {
            [one] => one.clone(),
            _ => return None,
        };
        match &self.trusted {
            Some(t) if t.get(name) != Some(&url) => None,
            _ => Some(url),
        }
    }
    fn default_push_remote(&self) -> Option<String> {
        let info = self.info();
        if info.redirected.is_some() {
            return None;
        }
        Some(
            info.default_remote
                .clone()
                .unwrap_or_else(|| "origin".into()),
        )
    }
}

/// The remotes (name → its one `url`) of the repository around `dir`, read on the host from the
/// repository's own config only (no global or system file, nothing run): what the supervisor
/// seals at session start. Empty when the config could send a push elsewhere (`pushurl`,
/// `insteadOf`, `include`, …) or cannot be read; remotes with several URLs are left out.
pub fn trusted_remotes(dir: &Path) -> BTreeMap<String, String> {
    let git = FsGit {
        repo_only: true,
        ..FsGit::new(dir)
    };
    let info = git.info();
    if info.redirected.is_some() {
        return BTreeMap::new();
    }
    info.remotes
        .iter()
        .filter_map(|(k, v)| match v.as_slice() {
            [one] => Some((k.clone(), one.clone())),
            _ => None,
        })
        .collect()
}

/// The git directory for `dir`: `dir/.git` or a parent's, following a `gitdir:` file.
pub fn find_git_dir(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let dotgit = d.join(".git");
        if dotgit.is_dir() {
            return Some((d.to_path_buf(), dotgit));
        }
        if dotgit.is_file() {
            let text = std::fs::read_to_string(&dotgit).ok()?;
            let target = text.trim().strip_prefix("gitdir:")?.trim();
            let p = Path::new(target);
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                d.join(p)
            };
            return Some((d.to_path_buf(), p));
        }
        cur = d.parent();
    }
    None
}

/// One `section.subsection.key = value` of a git config file (git-config(1) "CONFIGURATION
/// FILE"); section and key lowercased.
#[derive(Debug)]
struct Entry {
    section: String,
    sub: Option<String>,
    key: String,
    value: String,
}

/// Keys whose presence anywhere may change where a push goes (git-config(1), git-push(1)).
const REDIRECT_WORDS: &[&str] = &["insteadof", "pushurl", "include"];

/// Environment variables that change the config or repository git uses (git(1) ENVIRONMENT).
fn env_redirect() -> Option<String> {
    std::env::vars_os().find_map(|(k, _)| {
        let k = k.to_string_lossy().to_string();
        let bad = (k.starts_with("GIT_CONFIG")
            && !matches!(
                k.as_str(),
                "GIT_CONFIG_NOSYSTEM" | "GIT_CONFIG_GLOBAL" | "GIT_CONFIG_SYSTEM"
            ))
            || matches!(k.as_str(), "GIT_DIR" | "GIT_COMMON_DIR" | "GIT_NAMESPACE");
        bad.then(|| format!("${k} is set"))
    })
}

/// Parses a config file, failing (with the reason) on anything that could make git read it
/// differently from this reader or that could redirect a push.
fn parse_config(path: &Path, text: &str) -> Result<Vec<Entry>, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(w) = REDIRECT_WORDS.iter().find(|w| lower.contains(*w)) {
        return Err(format!("{} mentions `{w}`", path.display()));
    }
    let odd = || format!("{} has syntax the gate does not follow", path.display());
    let mut out = Vec::new();
    let mut section: Option<(String, Option<String>)> = None;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with(['#', ';']) {
            continue;
        }
        if l.contains('\\') {
            return Err(odd());
        }
        if let Some(h) = l.strip_prefix('[') {
            section = Some(parse_header(h).ok_or_else(odd)?);
            continue;
        }
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        let key = k.trim().to_ascii_lowercase();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(odd());
        }
        let v = v.split(['#', ';']).next().unwrap_or("").trim();
        if v.contains('"') {
            return Err(odd());
        }
        let Some((s, sub)) = &section else {
            return Err(odd());
        };
        out.push(Entry {
            section: s.clone(),
            sub: sub.clone(),
            key,
            value: v.to_string(),
        });
    }
    Ok(out)
}

/// `name]` or `name "sub"]` (the text after `[`), nothing after the `]` but a comment.
fn parse_header(h: &str) -> Option<(String, Option<String>)> {
    let (inside, after) = h.split_once(']')?;
    let after = after.trim();
    if !(after.is_empty() || after.starts_with(['#', ';'])) {
        return None;
    }
    let (name, sub) = match inside.split_once(' ') {
        None => (inside, None),
        Some((n, rest)) => {
            let sub = rest.trim().strip_prefix('"')?.strip_suffix('"')?;
            if sub.contains('"') {
                return None;
            }
            (n, Some(sub.to_string()))
        }
    };
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then(|| (name.to_ascii_lowercase(), sub))
}

/// Global and system config files git could read (git-config(1) FILES), besides the repo's.
fn global_files(home: Option<&Path>) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/gitconfig")];
    for var in ["GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            files.push(PathBuf::from(p));
        }
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        files.push(PathBuf::from(x).join("git/config"));
    }
    let homes = std::env::var_os("HOME")
        .map(PathBuf::from)
        .into_iter()
        .chain(home.map(Path::to_path_buf));
    for h in homes {
        files.push(h.join(".gitconfig"));
        files.push(h.join(".config/git/config"));
    }
    files
}

/// Reads `path` if it exists; an existing file that cannot be read is a redirect (fail closed).
fn read_if_exists(path: &Path) -> Result<Option<String>, String> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn load(dir: &Path, home: Option<&Path>, repo_only: bool) -> Option<StaticInfo> {
    let (_, gitdir) = find_git_dir(dir)?;
    let mut info = StaticInfo::default();
    if let Ok(head) = std::fs::read_to_string(gitdir.join("HEAD")) {
        info.branch = head
            .trim()
            .strip_prefix("ref: refs/heads/")
            .map(str::to_string);
    }
    // Worktrees keep config in the common dir.
    let common = std::fs::read_to_string(gitdir.join("commondir"))
        .ok()
        .map(|c| gitdir.join(c.trim()))
        .unwrap_or_else(|| gitdir.clone());
    let config_path = common.join("config");
    let config = std::fs::read_to_string(&config_path).ok()?;
    let entries = match parse_config(&config_path, &config) {
        Ok(e) => e,
        Err(why) => {
            info.redirected = Some(why);
            Vec::new()
        }
    };
    read_entries(&entries, &mut info);
    if info.redirected.is_none() {
        info.redirected = others_redirect(&gitdir, home, repo_only);
    }
    Some(info)
}

/// Remotes' URLs and the default push remote from the repository's config entries.
fn read_entries(entries: &[Entry], info: &mut StaticInfo) {
    let branch_key = |key: &str| {
        entries
            .iter()
            .rev()
            .find(|e| {
                e.section == "branch" && e.sub.as_deref() == info.branch.as_deref() && e.key == key
            })
            .map(|e| e.value.clone())
    };
    let push_default = entries
        .iter()
        .rev()
        .find(|e| e.section == "remote" && e.sub.is_none() && e.key == "pushdefault")
        .map(|e| e.value.clone());
    info.default_remote = branch_key("pushremote")
        .or(push_default)
        .or_else(|| branch_key("remote"));
    for e in entries {
        if let (Some(name), "remote", "url") = (&e.sub, e.section.as_str(), e.key.as_str()) {
            info.remotes
                .entry(name.clone())
                .or_default()
                .push(e.value.clone());
        }
    }
}

/// Why another config file or the environment could change a push (global files may not name
/// remotes or branches at all: their values add to the repository's).
fn others_redirect(gitdir: &Path, home: Option<&Path>, repo_only: bool) -> Option<String> {
    let mut files = vec![gitdir.join("config.worktree")];
    if !repo_only {
        if let Some(why) = env_redirect() {
            return Some(why);
        }
        files.extend(global_files(home));
    }
    for f in files {
        let text = match read_if_exists(&f) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(why) => return Some(why),
        };
        let entries = match parse_config(&f, &text) {
            Ok(e) => e,
            Err(why) => return Some(why),
        };
        if let Some(e) = entries
            .iter()
            .find(|e| e.section == "remote" || e.section == "branch")
        {
            return Some(format!(
                "{} sets {}.{}",
                f.display(),
                e.section,
                e.sub.as_deref().unwrap_or(&e.key)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        assert_eq!(
            url_owner("git@github.com:Me/repo.git").as_deref(),
            Some("me")
        );
        assert_eq!(
            url_owner("https://github.com/org/repo").as_deref(),
            Some("org")
        );
        assert_eq!(url_owner("ssh://git@host:22/o/r").as_deref(), Some("o"));
        assert_eq!(url_owner("origin"), None);
    }

    #[test]
    fn reads_repo() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = dir.path().join(".git");
        std::fs::create_dir_all(&g).expect("mkdir");
        std::fs::write(g.join("HEAD"), "ref: refs/heads/topic\n").expect("write");
        std::fs::write(
            g.join("config"),
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = git@github.com:me/r.git\n",
        )
        .expect("write");
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).expect("mkdir");
        let fs = FsGit::new(&sub);
        assert_eq!(fs.current_branch().as_deref(), Some("topic"));
        assert_eq!(
            fs.remote_url("origin").as_deref(),
            Some("git@github.com:me/r.git")
        );
    }
}
