//! The gate policy a session's supervisor seals for the hook inside the sandbox.
//!
//! Inside a session the sandbox's home and workspace are the agent's to write, so the hook may
//! not take its rules from them (`~/.config/airlock/config.toml`, `$XDG_CONFIG_HOME`, a policy
//! file in the workspace, `$HOME`, `$AIRLOCK_WORKSPACE`). Instead `airlock run` writes the
//! gate-relevant part of the user's host configuration (each layer's `[commands]` table with its
//! trust, the home and the workspace as the sandbox sees them) to [`SESSION_POLICY_PATH`], a
//! file bound read-only on the sandbox's read-only root. Its presence on a read-only mount is
//! what tells the hook it runs inside a session; the hook then reads nothing else that could
//! widen it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::classify::CommandLayer;

/// Where the sealed policy appears inside the sandbox.
pub const SESSION_POLICY_PATH: &str = "/run/airlock/gate/policy.toml";

/// Format version of [`SessionPolicy`]; a file with another version is refused.
pub const SESSION_POLICY_VERSION: u32 = 1;

/// Why a sealed policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    #[error("the session's gate policy {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("the session's gate policy {path} has version {found}; this airlock reads version {SESSION_POLICY_VERSION} (the session was started by another airlock build)")]
    Version { path: String, found: u32 },
    #[error("cannot write the session's gate policy: {0}")]
    Encode(String),
}

/// One policy layer's `[commands]` table, as the supervisor loaded it on the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedLayer {
    /// The host file it came from (for error messages).
    pub source: PathBuf,
    /// Whether the user trusts it; untrusted layers (files in the workspace) may only narrow.
    pub trusted: bool,
    pub commands: toml::Table,
}

/// What the hook inside a session decides with: nothing else is read there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPolicy {
    pub version: u32,
    /// The session id, written into the hook's audit events.
    pub session: String,
    /// The home directory inside the sandbox (what `~` means to the rules).
    pub home: String,
    /// The workspace inside the sandbox.
    pub workspace: String,
    /// Layers lowest first (the user's config, then `--policy` files).
    #[serde(default)]
    pub layers: Vec<SealedLayer>,
    /// The workspace repository's remotes (name → URL) as read on the host at session start
    /// ([`crate::git::trusted_remotes`]): the only remotes a push may be "owned" through.
    #[serde(default)]
    pub remotes: std::collections::BTreeMap<String, String>,
}

impl SessionPolicy {
    /// The file's text (TOML).
    pub fn to_toml(&self) -> Result<String, SealedError> {
        let body = toml::to_string(self).map_err(|e| SealedError::Encode(e.to_string()))?;
        Ok(format!(
            "# written by airlock run for the command gate inside this session; read-only\n{body}"
        ))
    }

    /// Parses the file's text; `path` is only used in error messages.
    pub fn parse(path: &str, text: &str) -> Result<SessionPolicy, SealedError> {
        let p: SessionPolicy = toml::from_str(text).map_err(|e| SealedError::Parse {
            path: path.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        if p.version != SESSION_POLICY_VERSION {
            return Err(SealedError::Version {
                path: path.to_string(),
                found: p.version,
            });
        }
        Ok(p)
    }

    /// The layers as the engine takes them.
    pub fn command_layers(&self) -> Vec<CommandLayer> {
        self.layers
            .iter()
            .map(|l| CommandLayer {
                source: l.source.clone(),
                table: l.commands.clone(),
                trusted: l.trusted,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions_and_unknown_keys() {
        let mut commands = toml::Table::new();
        commands.insert("git_owners".into(), toml::Value::Array(vec!["me".into()]));
        let p = SessionPolicy {
            version: SESSION_POLICY_VERSION,
            session: "abcd1234".into(),
            home: "/home/u".into(),
            workspace: "/home/u/proj".into(),
            layers: vec![SealedLayer {
                source: "/home/u/.config/airlock/config.toml".into(),
                trusted: true,
                commands,
            }],
            remotes: [("origin".to_string(), "git@github.com:me/r.git".to_string())].into(),
        };
        let text = p.to_toml().expect("encode");
        assert_eq!(SessionPolicy::parse("x", &text).expect("parse"), p);
        let old = text.replace("version = 1", "version = 7");
        assert!(matches!(
            SessionPolicy::parse("x", &old),
            Err(SealedError::Version { found: 7, .. })
        ));
        let extra = format!("extra = 1\n{text}");
        assert!(SessionPolicy::parse("x", &extra).is_err());
        assert_eq!(p.command_layers().len(), 1);
    }
}
