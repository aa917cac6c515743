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
mod fork;
pub mod guarantee;
pub mod host;
mod init;
pub mod launch;
pub mod message;
mod mounts;
pub mod notice;
pub mod probe;
pub mod prompt;
mod relay;
mod security;
pub mod spec;
pub mod supervise;
pub mod term;
pub mod termfilter;
pub mod unix_gate;

pub use backend::{Backend, LimitReport, Progress, RunningSandbox, SessionContext, SessionRef};
pub use init::{container_init_main, init_main, LOADER_ENV};
pub use launch::{
    block_signals, die_with_parent, limit_data_in_child, unblock_signals_in_child, Exec,
    ExecHandle, ExecRouter, LaunchOptions, Native, NetFds, RelayedNet, RemoteInit, Sandbox,
    RELAY_SOCKETS,
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

/// The step of sandbox setup or supervision an error belongs to (firecracker's jailer names its
/// errors the same way). Its serialised name (kebab-case, see [`Step::as_str`]) crosses the
/// control channel when the init stage fails, so it must stay stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Starting the init stage, its user namespace and uid/gid maps.
    UserNamespace,
    /// Unsharing the other namespaces (mount, pid, net, ipc, uts, cgroup) and the hostname.
    Namespaces,
    /// Building the sandbox's view: binds, overlays, tmpfs, /proc, /dev, pivot_root.
    Mounts,
    /// Creating the sandbox's cgroup and placing the init stage in it.
    Cgroup,
    /// Loopback, the proxy and DNS listeners inside the network namespace.
    Network,
    /// The pseudo-terminal and the stdio handed to the command.
    Terminal,
    /// Resource limits (setrlimit).
    Rlimits,
    /// Dropping capabilities and setting no_new_privs.
    Capabilities,
    /// Applying the Landlock ruleset.
    Landlock,
    /// Loading the seccomp filter and its notification listener.
    Seccomp,
    /// Resolving and executing the command.
    Exec,
    /// The control channel between supervisor and init stage.
    ControlChannel,
    /// Waiting for, signalling and reaping the sandbox's processes.
    Supervise,
}

impl Step {
    /// Every step, in setup order.
    pub const ALL: [Step; 13] = [
        Step::UserNamespace,
        Step::Namespaces,
        Step::Mounts,
        Step::Cgroup,
        Step::Network,
        Step::Terminal,
        Step::Rlimits,
        Step::Capabilities,
        Step::Landlock,
        Step::Seccomp,
        Step::Exec,
        Step::ControlChannel,
        Step::Supervise,
    ];

    /// The stable name of the step (the same as its serialised name).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::UserNamespace => "user-namespace",
            Step::Namespaces => "namespaces",
            Step::Mounts => "mounts",
            Step::Cgroup => "cgroup",
            Step::Network => "network",
            Step::Terminal => "terminal",
            Step::Rlimits => "rlimits",
            Step::Capabilities => "capabilities",
            Step::Landlock => "landlock",
            Step::Seccomp => "seccomp",
            Step::Exec => "exec",
            Step::ControlChannel => "control-channel",
            Step::Supervise => "supervise",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of sandbox setup and supervision.
///
/// The message of a variant never repeats its source: the source is attached once (`source()`)
/// and printed by whoever reports the whole chain (`airlock`'s `exit.rs`, or [`render_chain`]
/// when an error crosses the control channel as text).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system call of `step` failed.
    #[error("{what}")]
    Sys {
        step: Step,
        what: String,
        source: nix::errno::Errno,
    },
    /// An I/O operation of `step` failed.
    #[error("{what}")]
    Io {
        step: Step,
        what: String,
        source: std::io::Error,
    },
    /// The peer on the control channel broke the protocol.
    #[error("sandbox control channel: {0}")]
    Protocol(String),
    /// A failure of `step` with no underlying OS error, or whose cause's text is part of
    /// `what` (a foreign error that is not `'static` or not kept); no source.
    #[error("{what}")]
    Failed { step: Step, what: String },
    /// A setup failure with no underlying OS error and no particular step (the message says what
    /// and what to do); the other backends' failures come through here.
    #[error("{0}")]
    Setup(String),
    /// The init stage reported a failure with its own exit status; `message` is the child's whole
    /// chain already rendered, `step` the step it failed in (when it had one).
    #[error("{message}")]
    Init {
        step: Option<Step>,
        code: i32,
        message: String,
    },
}

impl SandboxError {
    pub(crate) fn sys(step: Step, what: impl Into<String>, source: nix::errno::Errno) -> Self {
        SandboxError::Sys {
            step,
            what: what.into(),
            source,
        }
    }

    pub(crate) fn io(step: Step, what: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            step,
            what: what.into(),
            source,
        }
    }

    /// A failure of `step` with no OS error as its cause.
    pub(crate) fn failed(step: Step, what: impl Into<String>) -> Self {
        SandboxError::Failed {
            step,
            what: what.into(),
        }
    }

    /// A failure of the init stage itself (not found, cannot execute) with its exit status.
    pub(crate) fn init(step: Step, code: i32, message: String) -> Self {
        SandboxError::Init {
            step: Some(step),
            code,
            message,
        }
    }

    /// The step this error belongs to, if it has one.
    pub fn step(&self) -> Option<Step> {
        match self {
            SandboxError::Sys { step, .. }
            | SandboxError::Io { step, .. }
            | SandboxError::Failed { step, .. } => Some(*step),
            SandboxError::Protocol(_) => Some(Step::ControlChannel),
            SandboxError::Setup(_) => None,
            SandboxError::Init { step, .. } => *step,
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

/// `err` and its sources joined by ": ", each once: the text an error carries when it must
/// cross a process boundary (the control channel) or be printed outside `airlock`'s reporter.
pub fn render_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant (and every step for the variants that carry one).
    fn every_variant() -> Vec<SandboxError> {
        let mut all = Vec::new();
        for step in Step::ALL {
            all.push(SandboxError::sys(
                step,
                "cannot mount /work on /workspace",
                nix::errno::Errno::EACCES,
            ));
            all.push(SandboxError::io(
                step,
                "cannot write /proc/self/uid_map",
                std::io::Error::from_raw_os_error(libc::EPERM),
            ));
            all.push(SandboxError::failed(step, "landlock: ruleset not enforced"));
            all.push(SandboxError::init(
                step,
                EXIT_NOT_FOUND,
                "command not found: nope".into(),
            ));
        }
        all.push(SandboxError::Protocol("malformed message: eof".into()));
        all.push(SandboxError::Setup("landlock: not enforced".into()));
        all
    }

    /// The invariant of the one error chain: no ": "-separated segment of the rendered chain
    /// occurs twice, and airlock never names itself in a sandbox error (the reporter does).
    pub(crate) fn assert_no_repeat(rendered: &str) {
        let segments: Vec<&str> = rendered.split(": ").collect();
        for s in &segments {
            assert_eq!(
                rendered.matches(s).count(),
                1,
                "segment {s:?} repeated in {rendered:?}"
            );
        }
    }

    #[test]
    fn every_variant_renders_its_source_once() {
        for e in every_variant() {
            let rendered = render_chain(&e);
            assert_no_repeat(&rendered);
            assert!(!rendered.contains("airlock:"), "{rendered}");
            if let SandboxError::Sys { .. } | SandboxError::Io { .. } = e {
                // The cause is attached (so a reporter walking `source()` prints it) and is not
                // in the variant's own message.
                let source = std::error::Error::source(&e).expect("source").to_string();
                assert!(!e.to_string().contains(&source), "{e}");
                assert!(rendered.ends_with(&source), "{rendered}");
            }
        }
    }

    #[test]
    fn step_names_are_pinned() {
        let names: Vec<String> = Step::ALL
            .iter()
            .map(|s| serde_json::to_string(s).expect("serialise"))
            .collect();
        assert_eq!(
            names,
            [
                "\"user-namespace\"",
                "\"namespaces\"",
                "\"mounts\"",
                "\"cgroup\"",
                "\"network\"",
                "\"terminal\"",
                "\"rlimits\"",
                "\"capabilities\"",
                "\"landlock\"",
                "\"seccomp\"",
                "\"exec\"",
                "\"control-channel\"",
                "\"supervise\"",
            ]
        );
        for s in Step::ALL {
            assert_eq!(
                serde_json::to_string(&s).expect("serialise"),
                format!("\"{}\"", s.as_str())
            );
            let back: Step = serde_json::from_str(&format!("\"{s}\"")).expect("parse");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn init_failure_keeps_its_step_across_the_channel() {
        let e = SandboxError::sys(Step::Mounts, "cannot bind /x", nix::errno::Errno::ENOENT);
        let sent = message::FromInit::Failed {
            step: e.step(),
            code: e.exit_code(),
            message: render_chain(&e),
        };
        let wire = serde_json::to_string(&sent).expect("serialise");
        assert!(wire.contains("\"step\":\"mounts\""), "{wire}");
        let message::FromInit::Failed {
            step,
            code,
            message,
        } = serde_json::from_str(&wire).expect("parse")
        else {
            panic!("not Failed: {wire}");
        };
        let got = SandboxError::Init {
            step,
            code,
            message,
        };
        assert_eq!(got.step(), Some(Step::Mounts));
        assert_eq!(got.exit_code(), EXIT_FAILURE);
        assert_eq!(
            render_chain(&got),
            "cannot bind /x: ENOENT: No such file or directory"
        );
    }
}
