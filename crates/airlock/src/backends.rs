//! The backends this build can run, by their stored kind: the one place that maps a
//! [`BackendKind`] (from `--backend` or a session's row) to its [`Backend`] implementation.
//! `airlock run` launches through it; `stop`, `rm`, `diff` and `merge` reach a session's backend
//! through it when they need what only the backend knows (leftovers of a dead supervisor, a
//! change layer kept remotely).

use airlock_container::{ContainerBackend, ContainerSettings, EngineKind, Runtime};
use airlock_sandbox::{Backend, SessionRef};
use airlock_session::{BackendKind, SessionRow};
use anyhow::{anyhow, Result};

/// What the container backends need beyond their kind (`--runtime`, `--image`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub(crate) runtime: Option<String>,
    pub(crate) image: Option<String>,
}

/// A new backend of `kind`, for one `airlock run` or one session command.
///
/// # Errors
/// An unknown `--runtime`, or a `--runtime`/`--image` given to the native backend (callers pass
/// only the flags, or their `AIRLOCK_RUNTIME`/`AIRLOCK_IMAGE` variables, for it: a policy's
/// `[container]` values are for the container backends and the native one ignores them).
pub(crate) fn new(kind: BackendKind, opts: &Options) -> Result<Box<dyn Backend>> {
    let engine = match kind {
        BackendKind::Native => {
            let flags = [
                ("--runtime", "AIRLOCK_RUNTIME", &opts.runtime),
                ("--image", "AIRLOCK_IMAGE", &opts.image),
            ];
            if let Some((flag, env, Some(v))) = flags.into_iter().find(|f| f.2.is_some()) {
                return Err(anyhow!(
                    "{flag} {v} (or {env}) is for the container backends; add --backend podman \
                     or --backend docker, or drop it"
                ));
            }
            return Ok(Box::new(airlock_sandbox::Native::default()));
        }
        BackendKind::Docker => EngineKind::Docker,
        BackendKind::Podman => EngineKind::Podman,
    };
    let runtime = match &opts.runtime {
        None => None,
        Some(r) => Some(Runtime::parse(r).ok_or_else(|| {
            anyhow!("unknown --runtime {r}: expected runc, crun, runsc (gVisor) or kata")
        })?),
    };
    Ok(Box::new(ContainerBackend::new(ContainerSettings {
        kind: engine,
        runtime,
        image: opts
            .image
            .clone()
            .unwrap_or_else(|| airlock_container::DEFAULT_IMAGE.to_string()),
    })))
}

/// The backend of a stored session and the session as the backend sees it.
pub(crate) fn of(row: &SessionRow) -> (Box<dyn Backend>, SessionRef) {
    let session = SessionRef {
        id: row.id.clone(),
        dir: row.dir.clone(),
        location: row.location.clone(),
    };
    let backend = new(row.backend, &Options::default()).unwrap_or_else(|_| {
        // Options::default() has no runtime, so only the native arm could refuse, and it does not.
        Box::new(airlock_sandbox::Native::default())
    });
    (backend, session)
}
