//! `[git]`: what the agent may push to a git host it holds a credential for. The credential
//! proxy applies it to each smart-HTTP push (`POST …/git-receive-pack`, gitprotocol-http(5));
//! this module is the configuration and the pure per-ref decision.
//!
//! ```toml
//! [git]
//! push = { branches = ["airlock/*", "agent/*"], force = false, tags = false, delete = false }
//! ```
//!
//! Defaults: branches under `airlock/` only; no force-push, no tags, no deletion. The default
//! branch (`main`, `master`) is only ever granted by a `branches` entry naming it exactly, never
//! by a wildcard.

use serde::{Deserialize, Serialize};

/// `[git]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// `push = { … }`.
    #[serde(default)]
    pub push: Option<GitPushConfig>,
}

/// `[git] push = { … }` as written; absent keys keep the value of lower layers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitPushConfig {
    /// Branch name patterns (without `refs/heads/`) the agent may create and fast-forward;
    /// `*` matches any run of characters, `/` included. Added to the default `airlock/*`.
    #[serde(default)]
    pub branches: Vec<String>,
    /// Allow updates that are not proven fast-forwards (force-push).
    #[serde(default)]
    pub force: Option<bool>,
    /// Allow creating tags (`refs/tags/…`); updating or deleting one also needs `force` /
    /// `delete`.
    #[serde(default)]
    pub tags: Option<bool>,
    /// Allow deleting branches the patterns grant.
    #[serde(default)]
    pub delete: Option<bool>,
}

/// Branches the agent may push by default.
pub const DEFAULT_PUSH_BRANCHES: &[&str] = &["airlock/*"];

/// Branch names treated as a repository's default branch: a wildcard never grants them.
pub const DEFAULT_BRANCH_NAMES: &[&str] = &["main", "master"];

/// The effective push policy after layering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitPushPolicy {
    /// Branch patterns, see [`GitPushConfig::branches`].
    pub branches: Vec<String>,
    /// Non-fast-forward updates allowed.
    pub force: bool,
    /// Tag creation allowed.
    pub tags: bool,
    /// Deletion allowed.
    pub delete: bool,
}

impl Default for GitPushPolicy {
    fn default() -> Self {
        GitPushPolicy {
            branches: DEFAULT_PUSH_BRANCHES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            force: false,
            tags: false,
            delete: false,
        }
    }
}

impl GitPushPolicy {
    /// Adds one layer's `[git] push`.
    pub fn merge(&mut self, c: &GitPushConfig) {
        for b in &c.branches {
            if !self.branches.contains(b) {
                self.branches.push(b.clone());
            }
        }
        if let Some(v) = c.force {
            self.force = v;
        }
        if let Some(v) = c.tags {
            self.tags = v;
        }
        if let Some(v) = c.delete {
            self.delete = v;
        }
    }

    /// The first key of `c` that would widen this policy, for a layer that may only narrow.
    pub fn widened_by(&self, c: &GitPushConfig) -> Option<&'static str> {
        if c.branches.iter().any(|b| !self.branches.contains(b)) {
            return Some("git.push.branches");
        }
        if c.force == Some(true) && !self.force {
            return Some("git.push.force");
        }
        if c.tags == Some(true) && !self.tags {
            return Some("git.push.tags");
        }
        if c.delete == Some(true) && !self.delete {
            return Some("git.push.delete");
        }
        None
    }

    /// Whether branch `name` (without `refs/heads/`) may be pushed to: a pattern matches it,
    /// and for a default branch name ([`DEFAULT_BRANCH_NAMES`]) only an entry equal to it.
    pub fn grants_branch(&self, name: &str) -> bool {
        if DEFAULT_BRANCH_NAMES.contains(&name) {
            return self.branches.iter().any(|b| b == name);
        }
        self.branches.iter().any(|p| glob(p, name))
    }
}

/// Checks a `branches` entry: non-empty, no whitespace or control characters.
pub fn validate_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "'{p}' is not a branch pattern (a name like airlock/* without refs/heads/)"
        ));
    }
    if p.starts_with("refs/") {
        return Err(format!(
            "'{p}': write branch patterns without refs/heads/ (e.g. airlock/*)"
        ));
    }
    Ok(())
}

/// `*` matches any run of characters (`/` included); everything else literally.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grants_airlock_branches_only() {
        let p = GitPushPolicy::default();
        assert!(p.grants_branch("airlock/x"));
        assert!(p.grants_branch("airlock/a/b"));
        assert!(!p.grants_branch("airlock"));
        assert!(!p.grants_branch("main"));
        assert!(!p.grants_branch("feature/airlock/x"));
        assert!(!p.grants_branch("xairlock/x"));
    }

    #[test]
    fn wildcards_never_grant_the_default_branch() {
        let mut p = GitPushPolicy::default();
        p.merge(&GitPushConfig {
            branches: vec!["*".into()],
            ..Default::default()
        });
        assert!(p.grants_branch("anything"));
        assert!(!p.grants_branch("main"));
        assert!(!p.grants_branch("master"));
        p.merge(&GitPushConfig {
            branches: vec!["main".into()],
            ..Default::default()
        });
        assert!(p.grants_branch("main"));
        assert!(!p.grants_branch("master"));
    }

    #[test]
    fn narrowing_layers_cannot_widen() {
        let p = GitPushPolicy::default();
        let w = |c: GitPushConfig| p.widened_by(&c);
        assert_eq!(
            w(GitPushConfig {
                branches: vec!["x/*".into()],
                ..Default::default()
            }),
            Some("git.push.branches")
        );
        assert_eq!(
            w(GitPushConfig {
                force: Some(true),
                ..Default::default()
            }),
            Some("git.push.force")
        );
        assert_eq!(
            w(GitPushConfig {
                tags: Some(true),
                ..Default::default()
            }),
            Some("git.push.tags")
        );
        assert_eq!(
            w(GitPushConfig {
                delete: Some(true),
                ..Default::default()
            }),
            Some("git.push.delete")
        );
        assert_eq!(
            w(GitPushConfig {
                force: Some(false),
                branches: vec!["airlock/*".into()],
                ..Default::default()
            }),
            None
        );
    }

    #[test]
    fn a_workspace_policy_may_only_narrow_git_push() {
        use crate::config::{ConfigFile, Layer, Policy, PolicyError};
        use std::path::PathBuf;
        let layer = |trusted: bool, text: &str| Layer {
            source: PathBuf::from("/ws/airlock.toml"),
            trusted,
            config: ConfigFile::parse(std::path::Path::new("/ws/airlock.toml"), text)
                .expect("parse"),
        };
        let wide = "[git]\npush = { branches = ['main'], force = true, tags = true }";
        let p = Policy::from_layers(&[layer(true, wide)]).expect("trusted widens");
        assert!(p.git_push.force && p.git_push.tags && p.git_push.grants_branch("main"));
        for text in [
            wide,
            "[git]\npush = { force = true }",
            "[git]\npush = { delete = true }",
            "[git]\npush = { branches = ['x/*'] }",
        ] {
            match Policy::from_layers(&[layer(false, text)]) {
                Err(PolicyError::Widening { key, .. }) => assert!(key.starts_with("git.push")),
                other => panic!("{text}: {other:?}"),
            }
        }
        let narrow = "[git]\npush = { force = false, branches = ['airlock/*'] }";
        assert!(Policy::from_layers(&[layer(false, narrow)]).is_ok());
        let bad = ConfigFile::parse(
            std::path::Path::new("/p.toml"),
            "[git]\npush = { branches = ['refs/heads/x'] }",
        );
        assert!(bad.is_err_and(|e| e.to_string().contains("git.push.branches")));
        assert!(ConfigFile::parse(
            std::path::Path::new("/p.toml"),
            "[git]\npush = { frce = true }"
        )
        .is_err());
    }

    #[test]
    fn patterns_are_checked() {
        assert!(validate_pattern("airlock/*").is_ok());
        assert!(validate_pattern("").is_err());
        assert!(validate_pattern("a b").is_err());
        assert!(validate_pattern("refs/heads/x").is_err());
    }
}
