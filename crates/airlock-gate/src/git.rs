//! Git-specific predicates (force pushes, branch deletion, protected branches, remotes owned by
//! the agent's own identity, config keys whose value runs) and a tiny reader of `.git/config`
//! and `.git/HEAD` for the hook.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::normalize::Invocation;
use crate::parse::DYN;
use crate::rules::{GitInfo, Match, MatchCtx};

fn is_push(inv: &Invocation) -> bool {
    inv.program == "git" && inv.subcommand.as_deref() == Some("push")
}

/// The remote word of a push (`origin` when none is given).
fn remote(inv: &Invocation) -> Option<String> {
    match inv.positionals.first() {
        None => Some("origin".into()),
        Some(w) if w.is_dynamic() => None,
        Some(w) => Some(w.text.clone()),
    }
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

fn owned(inv: &Invocation, ctx: &MatchCtx<'_>) -> bool {
    if ctx.owners.is_empty() {
        return false;
    }
    let Some(r) = remote(inv) else { return false };
    let url = if r.contains(':') || r.contains('/') {
        Some(r)
    } else {
        ctx.git.remote_url(&r)
    };
    url.and_then(|u| url_owner(&u))
        .is_some_and(|o| ctx.owners.iter().any(|x| x.eq_ignore_ascii_case(&o)))
}

fn refspecs(inv: &Invocation) -> &[crate::parse::Word] {
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

/// `git push URL …` to a repository that is not a configured remote nor owned by the agent's
/// identity: the code leaves for a place nobody set up (ask).
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
    if !url_like || ctx.git.remote_url(r).is_some() || owned(inv, ctx) {
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
    let mut pos: Vec<&crate::parse::Word> = inv.positionals.iter().collect();
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

/// Reads remotes and the current branch from the repository around a directory, lazily.
#[derive(Debug)]
pub struct FsGit {
    start: PathBuf,
    loaded: OnceCell<StaticInfo>,
}

#[derive(Debug, Default)]
struct StaticInfo {
    remotes: BTreeMap<String, String>,
    branch: Option<String>,
}

impl FsGit {
    /// Looks for the repository containing `dir` when first asked.
    pub fn new(dir: impl Into<PathBuf>) -> FsGit {
        FsGit {
            start: dir.into(),
            loaded: OnceCell::new(),
        }
    }

    fn info(&self) -> &StaticInfo {
        self.loaded
            .get_or_init(|| load(&self.start).unwrap_or_default())
    }
}

impl GitInfo for FsGit {
    fn remote_url(&self, name: &str) -> Option<String> {
        self.info().remotes.get(name).cloned()
    }
    fn current_branch(&self) -> Option<String> {
        self.info().branch.clone()
    }
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

fn load(dir: &Path) -> Option<StaticInfo> {
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
    let config = std::fs::read_to_string(common.join("config")).ok()?;
    let mut section: Option<String> = None;
    for line in config.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            section = l
                .strip_prefix("[remote \"")
                .and_then(|r| r.strip_suffix("\"]"))
                .map(str::to_string);
            continue;
        }
        if let Some(name) = &section {
            if let Some((k, v)) = l.split_once('=') {
                if k.trim().eq_ignore_ascii_case("url") {
                    info.remotes
                        .entry(name.clone())
                        .or_insert_with(|| v.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    Some(info)
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
