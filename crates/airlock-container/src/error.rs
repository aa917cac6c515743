//! `ContainerError`: what went wrong talking to a container engine, with what to do about it.

use std::path::PathBuf;

/// Errors of the container backend. Every message names the engine, the socket, the image or
/// the runtime at fault and says what to do; all of them exit with status 125 (a failure of
/// airlock or its engine, as `docker run`).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No socket answered and no engine binary could be started.
    #[error("no {engine} engine found: {tried}; {hint}")]
    NoEngine {
        engine: &'static str,
        tried: String,
        hint: String,
    },
    /// A socket exists but the engine behind it does not answer.
    #[error("the {engine} engine at {} does not answer: {detail}; {hint}", socket.display())]
    Unreachable {
        engine: &'static str,
        socket: PathBuf,
        detail: String,
        hint: String,
    },
    /// A private `podman system service` could not be started.
    #[error("cannot start `podman system service` on {}: {detail}", socket.display())]
    Service { socket: PathBuf, detail: String },
    /// The requested OCI runtime is not installed or not known to the engine.
    #[error("the OCI runtime {runtime} is not available to {engine}: {detail}")]
    Runtime {
        engine: &'static str,
        runtime: String,
        detail: String,
    },
    /// The image is not in the engine's local store.
    #[error("image {image} not found in the {engine} engine at {}: {hint}", socket.display())]
    ImageMissing {
        engine: &'static str,
        socket: PathBuf,
        image: String,
        hint: String,
    },
    /// The user asked for a limit this engine will not enforce.
    #[error("{what}: {engine} will not enforce it here ({why}); {hint}")]
    Unenforceable {
        engine: &'static str,
        what: String,
        why: String,
        hint: String,
    },
    /// The engine refused or failed a request.
    #[error("{engine} (at {}) failed to {action}: {detail}{hint}", socket.display())]
    Engine {
        engine: &'static str,
        socket: PathBuf,
        action: String,
        detail: String,
        hint: String,
    },
    /// The spec asks for something this backend cannot give with the same guarantee.
    #[error("{0}")]
    Unsupported(String),
    #[error("{what}: {error}")]
    Io {
        what: String,
        /// The cause, printed in the message (not a `source()`, so a chain never repeats it).
        error: std::io::Error,
    },
    #[error(transparent)]
    Sandbox(#[from] airlock_sandbox::SandboxError),
}

impl ContainerError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ContainerError::Io {
            what: what.into(),
            error: source,
        }
    }

    /// The exit status this error should produce: the init's own status for a command that was
    /// not found or cannot execute, 125 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Sandbox(e) => e.exit_code(),
            _ => airlock_sandbox::EXIT_FAILURE,
        }
    }
}
