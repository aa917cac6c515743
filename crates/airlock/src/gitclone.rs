//! `airlock run --backend k8s|fly|podman-box --clone URL[#REF]`: the box's workspace is a
//! `git clone` made by `airlock serve` in the box (`commands/serve_clone.rs`), not an upload
//! (docs/remote.md, "Workspace from git").
//!
//! This module is the local side: the address is checked before anything is created (https
//! only, no password or token in it, a ref git could name, the host allowed by the policy),
//! the clone's record is kept in the session directory (`clone.json`: the URL, the ref and the
//! commit the box checked out), and `airlock diff`/`merge` check that the workspace they land
//! in is a clone of the same URL checked out at that commit (the agent's changes are relative
//! to it).

use std::path::Path;

use airlock_policy::network::{Host, NetworkPolicy};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The record of a cloned session, in `SESSION_DIR/clone.json`.
pub(crate) const RECORD: &str = "clone.json";

/// Usernames accepted in a clone URL: the fixed names hosts expect before a token (GitHub
/// `x-access-token`, GitLab `oauth2`, Bitbucket `x-token-auth`). Any other could be a token
/// itself (GitHub takes `https://TOKEN@github.com/...`), so it is refused.
pub(crate) const USERNAMES: &[&str] = &["x-access-token", "oauth2", "x-token-auth", "git", "token"];

/// The username git sends with the credential's placeholder when the URL names none.
pub(crate) const DEFAULT_USERNAME: &str = "x-access-token";

/// A checked clone address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloneSource {
    /// The URL without the `#REF` (`https://HOST[:PORT]/PATH`).
    pub(crate) url: String,
    /// The ref after `#`, if any.
    pub(crate) rev: Option<String>,
    /// The host (lowercase; an IPv6 literal without brackets).
    pub(crate) host: String,
    /// The port (443 when the URL names none).
    pub(crate) port: u16,
}

/// Parses and checks `URL[#REF]` as `--clone` takes it.
///
/// # Errors
/// Not a URL; a scheme other than https (ssh, scp-style `git@host:path`, git://, http://,
/// file://: each with the reason); a password, or a username that is not one of
/// [`USERNAMES`] (a token in the URL would be kept in the box's `.git/config`, the spec and
/// the audit log); a query; an empty path; a ref git would refuse.
pub(crate) fn parse(text: &str) -> Result<CloneSource> {
    let (addr, rev) = match text.split_once('#') {
        Some((a, r)) => (a, Some(r)),
        None => (text, None),
    };
    if let Some(r) = rev {
        check_rev(r).with_context(|| format!("--clone {}: the ref after '#'", redact(text)))?;
    }
    let url = match url::Url::parse(addr) {
        Ok(u) => u,
        Err(_) if scp_like(addr) => bail!(
            "--clone {}: this is an SSH address (scp syntax); the box reaches the network only \
             through airlock's HTTP(S) proxy, which applies the policy's allowlist and swaps the \
             token in; use the repository's https URL (https://HOST/OWNER/REPO.git) with a \
             [[credentials]] entry for HOST",
            redact(addr)
        ),
        Err(e) => bail!(
            "--clone {}: not a URL ({e}); give https://HOST/PATH[#REF]",
            redact(addr)
        ),
    };
    check_scheme(&url)?;
    if url.password().is_some()
        || !(url.username().is_empty() || USERNAMES.contains(&url.username()))
    {
        bail!(
            "--clone {}: the URL carries a password or token; it would be stored in the box's \
             .git/config, the session's spec and the audit log. Remove it and give the token as a \
             credential, which the box's proxy swaps in for that host only: \
             [[credentials]] name = \"git\", env = \"GIT_TOKEN\", hosts = [\"{}\"] \
             (docs/credentials.md); usernames allowed in the URL: {}",
            redact(addr),
            url.host_str().unwrap_or("HOST"),
            USERNAMES.join(", ")
        );
    }
    if url.query().is_some() {
        bail!(
            "--clone {}: a query (?...) is not part of a git URL; remove it",
            redact(addr)
        );
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => bail!("--clone {addr}: no host"),
    };
    if url.path().trim_matches('/').is_empty() {
        bail!("--clone {addr}: no repository path (https://{host}/OWNER/REPO.git)");
    }
    Ok(CloneSource {
        url: addr.to_string(),
        rev: rev.map(str::to_string),
        host,
        port: url.port_or_known_default().unwrap_or(443),
    })
}

/// `git@host:path` (git's scp-like syntax: no `://`, a `:` before any `/`).
fn scp_like(addr: &str) -> bool {
    !addr.contains("://")
        && addr
            .split_once(':')
            .is_some_and(|(before, _)| !before.contains('/') && !before.is_empty())
}

/// The address with any userinfo replaced by `***`, for messages.
pub(crate) fn redact(addr: &str) -> String {
    match addr.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, tail) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            match auth.rsplit_once('@') {
                Some((_, hostport)) => format!("{scheme}://***@{hostport}{tail}"),
                None => addr.to_string(),
            }
        }
        None => match addr.split_once('@') {
            Some((_, rest)) if scp_like(addr) => format!("***@{rest}"),
            _ => addr.to_string(),
        },
    }
}

fn check_scheme(url: &url::Url) -> Result<()> {
    let shown = redact(url.as_str());
    match url.scheme() {
        "https" => Ok(()),
        "http" => bail!(
            "--clone {shown}: plain http is refused: the token would cross the network in clear \
             and the proxy swaps credentials only inside TLS; use https"
        ),
        "ssh" | "git+ssh" | "ssh+git" => bail!(
            "--clone {shown}: ssh is refused: the box reaches the network only through airlock's \
             HTTP(S) proxy, which applies the policy's allowlist and swaps the token in; SSH \
             would need the private key in the box. Use the https URL with a [[credentials]] \
             entry for the host"
        ),
        "git" => bail!(
            "--clone {shown}: git:// is refused: it is unencrypted, unauthenticated and does not \
             go through airlock's proxy; use the https URL"
        ),
        "file" => bail!(
            "--clone {shown}: a path on this machine is not in the box; drop --clone to upload \
             the local tree"
        ),
        other => bail!("--clone {shown}: scheme {other}: is not supported; use https"),
    }
}

/// A ref as `--clone URL#REF` takes it: a branch, tag or commit name that
/// git-check-ref-format(1) would accept, never an option.
fn check_rev(r: &str) -> Result<()> {
    let bad = r.is_empty()
        || r.len() > 255
        || r.starts_with('-')
        || r.starts_with('/')
        || r.ends_with('/')
        || r.ends_with('.')
        || r.ends_with(".lock")
        || r.contains("..")
        || r.contains("//")
        || r.contains("@{")
        || r.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\')
        });
    if bad {
        bail!(
            "{r:?} is not a branch, tag or commit name git accepts (git-check-ref-format(1)); \
             give e.g. #main, #v1.2.0 or a commit id"
        );
    }
    Ok(())
}

/// Refuses, before any box is created, a clone whose host the session's policy does not let
/// through: the box clones through the same proxy and policy as the agent's requests.
///
/// # Errors
/// The host or port is denied, naming the rule and what to change.
pub(crate) fn check_allowed(network: &NetworkPolicy, src: &CloneSource) -> Result<()> {
    let host = Host::parse(&src.host)
        .map_err(|e| anyhow::anyhow!("--clone {}: host {}: {e}", src.url, src.host))?;
    let v = network.check_destination(&host, src.port);
    if !v.allow {
        bail!(
            "--clone {}: the box clones through airlock's proxy with the session's policy, and \
             {} ({}); {}",
            src.url,
            v.reason,
            v.rule,
            v.hint
                .unwrap_or_else(|| "change the policy's [network] section".into())
        );
    }
    Ok(())
}

/// What `SESSION_DIR/clone.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CloneRecord {
    /// The URL cloned (no ref).
    pub(crate) url: String,
    /// The ref asked for, if any.
    pub(crate) rev: Option<String>,
    /// The commit the box checked out: the base of the agent's changes and commits.
    pub(crate) commit: String,
}

impl CloneRecord {
    /// Writes the record into the session directory `dir`.
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let p = dir.join(RECORD);
        std::fs::write(&p, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", p.display()))
    }

    /// The record of the session in `dir`, if it was cloned.
    pub(crate) fn load(dir: &Path) -> Result<Option<CloneRecord>> {
        let p = dir.join(RECORD);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b)
                    .with_context(|| format!("{} is damaged", p.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }
}

/// Two repository URLs name the same repository: the same host (any case) and port, the same
/// path without a trailing `/` or `.git`, any username ignored.
pub(crate) fn same_repository(a: &str, b: &str) -> bool {
    let key = |s: &str| -> Option<(String, u16, String)> {
        let u = url::Url::parse(s.trim()).ok()?;
        if !matches!(u.scheme(), "https" | "http") {
            return None;
        }
        let path = u.path().trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path).to_string();
        Some((
            u.host_str()?.to_ascii_lowercase(),
            u.port_or_known_default()?,
            path,
        ))
    };
    matches!((key(a), key(b)), (Some(x), Some(y)) if x == y)
}

/// A git run on the user's own repository `ws` (not the agent's: its configuration is the
/// user's), with hooks off.
fn user_git(ws: &Path, args: &[&str]) -> Option<String> {
    let mut c = airlock_session::hostgit::command();
    c.arg("-C")
        .arg(ws)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
        ])
        .args(args);
    let o = c.output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Checks that `workspace` can take the results of the cloned session `id` (`verb`: `diff` or
/// `merge`): a git repository with a remote whose URL is the clone's, checked out at the
/// cloned commit. The agent's files and commits are relative to that commit; shown or landed
/// anywhere else they would be wrong.
///
/// # Errors
/// What is missing, with the commands that make it right.
pub(crate) fn check_workspace(
    workspace: &Path,
    id: &str,
    rec: &CloneRecord,
    verb: &str,
) -> Result<()> {
    let ws = workspace.display();
    let short = &rec.commit[..rec.commit.len().min(12)];
    let intro = format!(
        "session {id} worked on a clone of {} at commit {short}, made in its box; `airlock {verb}` \
         compares and lands its changes in {ws}, which",
        rec.url
    );
    if !workspace.join(".git").is_dir() {
        bail!(
            "{intro} is not a git repository. Nothing was changed. Make it a clone of the same \
             URL at that commit (`git clone {} {ws} && git -C {ws} switch --detach {short}`), \
             then run `airlock {verb} {id}` again",
            rec.url
        );
    }
    let remotes =
        user_git(workspace, &["config", "--get-regexp", r"^remote\..*\.url$"]).unwrap_or_default();
    let urls: Vec<&str> = remotes
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, u)| u))
        .collect();
    if !urls.iter().any(|u| same_repository(u, &rec.url)) {
        bail!(
            "{intro} has no remote with that URL (its remotes: {}). Nothing was changed. Add it \
             and check out the commit (`git -C {ws} remote add airlock-clone {} && git -C {ws} \
             fetch airlock-clone && git -C {ws} switch --detach {short}`), or run `airlock {verb} \
             {id}` from a clone of it",
            if urls.is_empty() {
                "none".to_string()
            } else {
                urls.iter()
                    .map(|u| redact(u))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            rec.url
        );
    }
    let known = user_git(
        workspace,
        &["cat-file", "-e", &format!("{}^{{commit}}", rec.commit)],
    )
    .is_some();
    if !known {
        bail!(
            "{intro} does not have commit {short} (it was pushed after your last fetch?). Nothing \
             was changed. Fetch it and check it out (`git -C {ws} fetch && git -C {ws} switch \
             --detach {short}`), then run `airlock {verb} {id}` again"
        );
    }
    let head =
        user_git(workspace, &["rev-parse", "--verify", "--quiet", "HEAD"]).unwrap_or_default();
    if head != rec.commit {
        let at = if head.is_empty() {
            "no commit".to_string()
        } else {
            head[..head.len().min(12)].to_string()
        };
        bail!(
            "{intro} is checked out at {at}, not at {short}: the agent's files are relative to \
             {short}, so landing them here would undo what changed in between. Nothing was \
             changed. Check the commit out (`git -C {ws} switch --detach {short}`, after \
             committing or stashing your work), run `airlock {verb} {id}`, then rebase or merge \
             the branch airlock/NAME it creates onto yours"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_with_refs_parse() {
        let s = parse("https://GitHub.com/me/app.git#main").expect("parse");
        assert_eq!(s.url, "https://GitHub.com/me/app.git");
        assert_eq!(s.rev.as_deref(), Some("main"));
        assert_eq!((s.host.as_str(), s.port), ("github.com", 443));
        let s = parse("https://x-access-token@git.test:8443/r.git").expect("parse");
        assert_eq!((s.host.as_str(), s.port, s.rev), ("git.test", 8443, None));
    }

    #[test]
    fn tokens_in_the_url_are_refused_and_never_echoed() {
        for bad in [
            "https://user:ghp_SECRET123@github.com/me/app.git",
            "https://ghp_SECRET123@github.com/me/app.git",
            "https://x-access-token:ghp_SECRET123@github.com/me/app.git#main",
            "https://:ghp_SECRET123@github.com/me/app.git",
        ] {
            let e = format!("{:#}", parse(bad).expect_err(bad));
            assert!(e.contains("credentials"), "{e}");
            assert!(!e.contains("SECRET123"), "the token is echoed: {e}");
        }
    }

    #[test]
    fn other_schemes_are_refused_with_the_reason() {
        for (bad, why) in [
            ("ssh://git@github.com/me/app.git", "ssh is refused"),
            ("git@github.com:me/app.git", "SSH address"),
            ("git://github.com/me/app.git", "git:// is refused"),
            ("http://github.com/me/app.git", "plain http"),
            ("file:///srv/app.git", "drop --clone"),
            ("ftp://h/app.git", "not supported"),
            ("not a url", "not a URL"),
            ("https://github.com/", "no repository path"),
            ("https://github.com/me/app.git?x=1", "query"),
        ] {
            let e = format!("{:#}", parse(bad).expect_err(bad));
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn refs_git_would_refuse_are_refused() {
        for bad in [
            "",
            "-upload-pack=x",
            "a..b",
            "a b",
            "a:b",
            "x~1",
            "x^",
            "x.lock",
            "a@{1}",
            "/a",
        ] {
            assert!(
                parse(&format!("https://h.test/r.git#{bad}")).is_err(),
                "{bad:?}"
            );
        }
        for good in [
            "main",
            "v1.2.0",
            "feature/x",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(
                parse(&format!("https://h.test/r.git#{good}")).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn same_repository_ignores_case_user_and_dot_git() {
        assert!(same_repository(
            "https://GitHub.com/me/app.git",
            "https://github.com/me/app"
        ));
        assert!(same_repository(
            "https://x-access-token@github.com/me/app/",
            "https://github.com:443/me/app.git"
        ));
        assert!(!same_repository(
            "https://github.com/me/app",
            "https://github.com/me/other"
        ));
        assert!(!same_repository(
            "https://github.com/me/app",
            "https://gitlab.com/me/app"
        ));
        assert!(!same_repository(
            "git@github.com:me/app.git",
            "https://github.com/me/app"
        ));
    }

    #[test]
    fn a_denied_host_is_named_with_the_policy_to_change() {
        let c = airlock_policy::config::NetworkConfig {
            allow: vec!["github.com".into()],
            ..Default::default()
        };
        let p = NetworkPolicy::compile(&c).expect("policy");
        check_allowed(&p, &parse("https://github.com/me/app.git").expect("p")).expect("allowed");
        let e = format!(
            "{:#}",
            check_allowed(&p, &parse("https://gitlab.com/me/app.git").expect("p"))
                .expect_err("denied")
        );
        assert!(e.contains("gitlab.com") && e.contains("[network]"), "{e}");
        let e = format!(
            "{:#}",
            check_allowed(&p, &parse("https://github.com:8443/me/app.git").expect("p"))
                .expect_err("port")
        );
        assert!(e.contains("8443"), "{e}");
    }
}
