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
pub mod tree;

pub use changes::{Change, ChangeKind};
pub use kinds::{AgentKind, BackendKind, SessionMode, UnknownKind};
pub use store::{SessionRow, SessionState, Store};

/// Errors of the session layer.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store {path}: {error}")]
    Store {
        path: std::path::PathBuf,
        /// The cause, printed in the message (not a `source()`, so a chain never repeats it).
        error: rusqlite::Error,
    },
    #[error("{what} {}: {error}", quote::path(path))]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        /// The cause, printed in the message (not a `source()`, so a chain never repeats it).
        error: std::io::Error,
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
            error: source,
        }
    }
}
