//! airlock sandbox: namespaces, mounts, seccomp, Landlock, cgroups, fd passing and process
//! supervision. This is the only crate of the workspace with `unsafe` code; every block says why
//! it is sound.
//!
//! Process layout of one sandbox:
//!
//! ```text
//! supervisor (airlock run)            host namespaces; holds secrets, serves proxy/DNS fds
//!  └─ stage 1 (airlock __sandbox-init) new user ns (uid map), then unshares the other namespaces
//!      └─ stage 2 (pid 1 inside)       builds the root, hands fds out, locks itself down, reaps
//!          └─ the command              execve'd with the spec's argv and environment
//! ```
//!
//! Stage 1 is a fresh exec of the airlock binary, so it is single-threaded and may allocate
//! freely before it forks stage 2; the supervisor never forks after it has threads.

pub mod backend;
pub mod cgroup;
pub mod console;
pub mod guarantee;
pub mod host;
mod init;
pub mod launch;
pub mod message;
mod mounts;
pub mod notice;
pub mod probe;
pub mod prompt;
mod security;
pub mod spec;
pub mod supervise;
pub mod term;
pub mod termfilter;
pub mod unix_gate;

pub use backend::{Backend, LimitReport, Progress, RunningSandbox, SessionContext, SessionRef};
pub use init::{container_init_main, init_main, LOADER_ENV};
pub use launch::{
    block_signals, die_with_parent, unblock_signals_in_child, Exec, ExecHandle, ExecRouter,
    LaunchOptions, Native, NetFds, RemoteInit, Sandbox,
};
pub use security::{seccomp_rules, ArgCheck, SyscallRule};
pub use spec::{
    Bind, GeneratedFile, NetListeners, OverlayMount, Rlimits, SandboxSpec, TtySpec, WorkspaceView,
};

/// Exit status for a failure of airlock itself (as `docker run`).
pub const EXIT_FAILURE: i32 = 125;
/// Exit status when the command cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit status when the command is not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Errors of sandbox setup and supervision.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: nix::errno::Errno,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("sandbox control channel: {0}")]
    Protocol(String),
    #[error("{0}")]
    Setup(String),
    /// The init stage reported a failure with its own exit status.
    #[error("{message}")]
    Init { code: i32, message: String },
}

impl SandboxError {
    pub(crate) fn sys(what: impl Into<String>, source: nix::errno::Errno) -> Self {
        SandboxError::Sys {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            what: what.into(),
            source,
        }
    }

    /// The exit status this error should produce.
    pub fn exit_code(&self) -> i32 {
        match self {
            SandboxError::Init { code, .. } => *code,
            _ => EXIT_FAILURE,
        }
    }
}
