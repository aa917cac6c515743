//! What a rule match answers ([`Match`]) and what it needs to know about the world: the tool
//! call's [`Context`], the [`MatchCtx`] rules see, and git facts ([`GitInfo`]).

use std::collections::BTreeMap;
use std::fmt;

use crate::glob::Glob;

/// Three-valued match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    No,
    /// Would match for some run-time value of a dynamic word.
    Possible,
    Yes,
}

impl Match {
    /// Both: the weaker of the two.
    pub(crate) fn and(self, other: Match) -> Match {
        self.min(other)
    }
    /// Any: the strongest of `items`, [`Match::No`] for none.
    pub(crate) fn any(items: impl IntoIterator<Item = Match>) -> Match {
        items.into_iter().max().unwrap_or(Match::No)
    }
    pub(crate) fn from_bool(b: bool) -> Match {
        if b {
            Match::Yes
        } else {
            Match::No
        }
    }
}

/// What a rule match needs to know about the world.
#[derive(Debug)]
pub struct MatchCtx<'a> {
    pub home: &'a str,
    /// `None`: there is no workspace; every path is outside it.
    pub workspace: Option<&'a str>,
    pub git: &'a dyn GitInfo,
    pub owners: &'a [String],
    pub protected: &'a [Glob],
    pub git_exec_keys: &'a [Glob],
    pub secret_env: &'a [Glob],
}

/// Facts about the git repository the command runs in.
pub trait GitInfo: fmt::Debug {
    /// The URL of remote `name`.
    fn remote_url(&self, name: &str) -> Option<String>;
    /// The branch checked out.
    fn current_branch(&self) -> Option<String>;
    /// The URL a push to remote `name` goes to, only when that is certain from facts the agent
    /// cannot change (no `pushurl`, `insteadOf`, `include`, …; inside a session, the remote as
    /// the supervisor captured it); `None` otherwise. Only this decides `git_owners`.
    fn owned_push_url(&self, name: &str) -> Option<String>;
    /// The remote a `git push` without one goes to (`branch.<b>.pushRemote`,
    /// `remote.pushDefault`, `branch.<b>.remote`, `origin`); `None` when not certain.
    fn default_push_remote(&self) -> Option<String>;
}

/// Git facts given up front (tests, examples).
#[derive(Debug, Default, Clone)]
pub struct StaticGit {
    pub remotes: BTreeMap<String, String>,
    pub branch: Option<String>,
}

impl GitInfo for StaticGit {
    fn remote_url(&self, name: &str) -> Option<String> {
        self.remotes.get(name).cloned()
    }
    fn current_branch(&self) -> Option<String> {
        self.branch.clone()
    }
    fn owned_push_url(&self, name: &str) -> Option<String> {
        self.remote_url(name)
    }
    fn default_push_remote(&self) -> Option<String> {
        Some("origin".into())
    }
}

/// Where a tool call runs.
#[derive(Debug)]
pub struct Context<'a> {
    pub cwd: String,
    pub home: String,
    /// The workspace root; `None` when there is none (every path is outside).
    pub workspace: Option<String>,
    pub git: &'a dyn GitInfo,
}
