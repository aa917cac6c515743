//! The kinds a session is recorded with (workspace mode, agent, backend): enums with stable
//! names, the same in the store, in `airlock ls --json` and on the command line. A name is never
//! derived from a `Debug` rendering; renaming a variant keeps its stored name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Defines a kind: the enum, its stable names, `Display`, and the store's conversions.
macro_rules! kind {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value with this stable name.
            ///
            /// # Errors
            /// An unknown name (a store written by a newer airlock, or a typo): the message
            /// lists the known names.
            pub fn parse(text: &str) -> Result<$name, UnknownKind> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownKind {
                        what: $what,
                        value: text.to_string(),
                        known: vec![$($text),+],
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                $name::parse(value.as_str()?)
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

kind!(
    /// How the workspace is presented to the sandbox (`--mode`).
    SessionMode, "workspace mode", {
        /// Writes land in a per-session overlay layer (`airlock diff`, `airlock merge`).
        Overlay = "overlay",
        /// A git worktree on the branch `airlock/NAME`.
        Worktree = "worktree",
        /// The workspace directory itself, read-write.
        Bind = "bind",
    }
);

kind!(
    /// The agent profile a session runs (`--agent`).
    AgentKind, "agent", {
        /// Claude Code.
        Claude = "claude",
        /// OpenAI Codex CLI.
        Codex = "codex",
        /// Gemini CLI.
        Gemini = "gemini",
        /// The user's shell or the command after `--`.
        Shell = "shell",
    }
);

kind!(
    /// What runs a session's sandbox (`--backend`): a local `airlock_sandbox::Backend`, or a
    /// remote engine (`airlock_remote::Engine`) whose box runs `airlock serve`.
    BackendKind, "backend", {
        /// Namespaces, seccomp, Landlock and cgroups on this kernel.
        Native = "native",
        /// A Docker container through the Docker Engine API.
        Docker = "docker",
        /// A Podman container through Podman's Docker-compatible API.
        Podman = "podman",
        /// A Kubernetes pod running `airlock serve` (remote).
        K8s = "k8s",
        /// A Fly Machine running `airlock serve` (remote).
        Fly = "fly",
        /// A local Podman container running `airlock serve`: the remote path on this machine.
        PodmanBox = "podman-box",
    }
);

impl BackendKind {
    /// Whether sessions of this kind run in a box under `airlock serve`, reached through an
    /// engine, rather than under a local supervisor.
    pub fn is_remote(self) -> bool {
        matches!(
            self,
            BackendKind::K8s | BackendKind::Fly | BackendKind::PodmanBox
        )
    }
}

/// A stored or given name that is not one of a kind's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}' (known: {}); a store written by a newer airlock needs that version", known.join(", "))]
pub struct UnknownKind {
    /// Which kind (`backend`, `agent`, `workspace mode`).
    pub what: &'static str,
    /// The name that was not recognised.
    pub value: String,
    /// The names this build knows.
    pub known: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_round_trip() {
        // These strings are on disk in existing stores: they must never change.
        let stored = [
            (SessionMode::Overlay.as_str(), "overlay"),
            (SessionMode::Worktree.as_str(), "worktree"),
            (SessionMode::Bind.as_str(), "bind"),
            (AgentKind::Claude.as_str(), "claude"),
            (AgentKind::Codex.as_str(), "codex"),
            (AgentKind::Gemini.as_str(), "gemini"),
            (AgentKind::Shell.as_str(), "shell"),
            (BackendKind::Native.as_str(), "native"),
            (BackendKind::Docker.as_str(), "docker"),
            (BackendKind::Podman.as_str(), "podman"),
            (BackendKind::K8s.as_str(), "k8s"),
            (BackendKind::Fly.as_str(), "fly"),
            (BackendKind::PodmanBox.as_str(), "podman-box"),
        ];
        for (got, want) in stored {
            assert_eq!(got, want);
        }
        for m in SessionMode::ALL {
            assert_eq!(SessionMode::parse(m.as_str()), Ok(*m));
            assert_eq!(
                serde_json::to_string(m).expect("json"),
                format!("\"{}\"", m.as_str())
            );
        }
        for a in AgentKind::ALL {
            assert_eq!(AgentKind::parse(a.as_str()), Ok(*a));
        }
        for b in BackendKind::ALL {
            assert_eq!(BackendKind::parse(b.as_str()), Ok(*b));
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        for bad in ["Native", "Podman", "flyio", "", "native "] {
            let e = BackendKind::parse(bad).expect_err(bad);
            assert!(
                e.to_string()
                    .contains("known: native, docker, podman, k8s, fly, podman-box"),
                "{e}"
            );
        }
        assert!(SessionMode::parse("Overlay").is_err());
    }
}
