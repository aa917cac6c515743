//! airlock sessions: the session store (SQLite), the changes an agent made in its copy-on-write
//! layer, their review as a unified diff, and their landing in the real workspace.
#![forbid(unsafe_code)]

pub mod changes;
pub mod gitview;
pub mod hostgit;
pub mod kinds;
pub mod merge;
pub mod quote;
pub mod review;
pub mod store;

pub use changes::{Change, ChangeKind};
pub use kinds::{AgentKind, BackendKind, SessionMode, UnknownKind};
pub use store::{SessionRow, SessionState, Store};

/// Errors of the session layer.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store {path}: {source}")]
    Store {
        path: std::path::PathBuf,
        source: rusqlite::Error,
    },
    #[error("{what} {}: {source}", quote::path(path))]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
}

impl SessionError {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        SessionError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}
