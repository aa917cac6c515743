//! The backends this build can run, by their stored kind: the one place that maps a
//! [`BackendKind`] (from `--backend` or a session's row) to its [`Backend`] implementation.
//! `airlock run` launches through it; `stop`, `rm`, `diff` and `merge` reach a session's backend
//! through it when they need what only the backend knows (leftovers of a dead supervisor, a
//! change layer kept remotely).

use airlock_sandbox::{Backend, SessionRef};
use airlock_session::{BackendKind, SessionRow};

/// A new backend of `kind`, for one `airlock run` or one session command.
pub(crate) fn new(kind: BackendKind) -> Box<dyn Backend> {
    match kind {
        BackendKind::Native => Box::new(airlock_sandbox::Native::default()),
    }
}

/// The backend of a stored session and the session as the backend sees it.
pub(crate) fn of(row: &SessionRow) -> (Box<dyn Backend>, SessionRef) {
    let session = SessionRef {
        id: row.id.clone(),
        dir: row.dir.clone(),
        location: row.location.clone(),
    };
    (new(row.backend), session)
}
