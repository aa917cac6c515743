//! Remote backends: the agent runs in a box on another machine (a Kubernetes pod, a Fly
//! Machine), under `airlock serve` as the box's first process, which is the same supervisor and
//! native sandbox as a local run (egress proxy, DNS filter, credential swap, audit log, tmux for
//! attach) (DESIGN.md, "Backends", remote).
//!
//! This crate holds the contract both sides keep:
//! - [`BoxSpec`]: what the local `airlock run` sends to `airlock serve`, as JSON in the box's
//!   environment variable [`SPEC_ENV`];
//! - [`layout`]: the paths inside the box (secrets, control socket, workspace);
//! - [`ctl`]: the control verbs the local side runs inside the box through the engine's exec
//!   API (`airlock serve ctl VERB`), so no port of the box is ever exposed;
//! - [`Engine`]: what an engine (Kubernetes, Fly Machines, and Podman for the tests) must do
//!   to run a box: render the resources for `--dry-run`, create and wait, exec, logs, delete.
#![forbid(unsafe_code)]

pub mod archive;
pub mod fly;
pub mod policy_secrets;
pub mod stream;

pub use stream::{ExecEnd, ExecSink, ExecStream};

use serde::{Deserialize, Serialize};

/// The environment variable that carries the [`BoxSpec`] (JSON) to `airlock serve`.
pub const SPEC_ENV: &str = "AIRLOCK_BOX_SPEC";

/// The version of the [`BoxSpec`] shape; `airlock serve` refuses a spec of another version
/// with an error naming both (the local airlock and the image's airlock must match).
pub const SPEC_VERSION: u32 = 1;

/// What `airlock serve` runs: everything the box needs except secrets, which arrive as files
/// under [`layout::SECRETS_DIR`] (mounted by the engine into the supervisor only) and are never
/// part of the spec, the environment or the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxSpec {
    /// [`SPEC_VERSION`].
    pub version: u32,
    /// The session id (8 hex digits), as in the local store.
    pub session: String,
    /// The session's name.
    pub name: String,
    /// The agent profile (`claude`, `codex`, `gemini`, `shell`), as `--agent` spells it.
    pub agent: String,
    /// The command to run inside the sandbox (argv; empty: the agent's default).
    pub argv: Vec<String>,
    /// Extra environment for the command (name, value); secrets never go here.
    pub env: Vec<(String, String)>,
    /// The merged policy the box enforces (egress allowlist, credentials' scopes, limits).
    pub policy: airlock_policy::Policy,
    /// Where the workspace comes from.
    pub workspace: WorkspaceSource,
    /// Whether the command runs on a terminal (tmux session for `airlock attach`).
    pub tty: bool,
    /// Whether the command's standard input comes from the local side (a pipe or a file
    /// `airlock run` was given), passed on with [`ctl::STDIN`]: the command then reads a FIFO
    /// `airlock serve` holds rather than its terminal, and gets end of file once the local
    /// input has ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// The secrets that hold the policy's secret-bearing values ([`policy_secrets`]): the
    /// policy above has an empty placeholder in their place.
    #[serde(default)]
    pub policy_secrets: Vec<String>,
}

/// Where the box's workspace comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkspaceSource {
    /// The local tree, uploaded after start with [`ctl::RECEIVE`] (a tar stream on stdin);
    /// `airlock serve` starts the command only once it has arrived.
    Upload,
    /// `git clone` of `url` by `airlock serve` in the box when the local side asks for it
    /// ([`ctl::CLONE`]), before the command starts: through an egress proxy of its own with the
    /// session's policy, so the host must be allowed, and a credential scoped to the host is
    /// swapped in there (git holds a placeholder; the secret is never in the box's environment,
    /// files or `.git/config`). Checked out detached at `rev` when given.
    Git {
        /// The repository URL (`https://HOST[:PORT]/PATH`, no password or token in it).
        url: String,
        /// A commit, branch or tag; `None`: the remote's default branch.
        rev: Option<String>,
        /// The most the clone may take on disk in the box (bytes); over it the clone is
        /// stopped and the session fails naming the bound. `None`: [`CLONE_MAX_BYTES`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_bytes: Option<u64>,
    },
}

/// The default bound on a clone's size on disk in the box (4 GiB).
pub const CLONE_MAX_BYTES: u64 = 4 << 30;

/// What `ctl clone` prints last (one JSON line after git's progress lines): how the clone
/// ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneResult {
    /// The commit checked out (40 or 64 hex digits) when the clone succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Why it failed, naming the host, the ref or the bound, and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The prefix of the last line of `ctl clone`'s output (before [`CloneResult`]'s JSON).
pub const CLONE_RESULT_PREFIX: &str = "airlock-clone-result ";

/// Paths inside the box. The image must provide the airlock binary at [`layout::AIRLOCK`].
pub mod layout {
    /// The airlock binary in the image; the box's first process is `AIRLOCK serve`.
    pub const AIRLOCK: &str = "/usr/local/bin/airlock";
    /// Secrets, one file per credential, named as the credential (`[credentials.NAME]`), mode
    /// 0400, mounted into the supervisor only (a Kubernetes Secret volume; a Fly Machine file).
    pub const SECRETS_DIR: &str = "/run/airlock/secrets";
    /// The supervisor's control socket (`airlock serve ctl` connects to it).
    pub const CONTROL_SOCKET: &str = "/run/airlock/serve.sock";
    /// The workspace's lower layer (the upload or the clone); the agent works on an overlay.
    pub const WORKSPACE: &str = "/workspace";
    /// The session's state (overlay upper layer, audit log, status).
    pub const STATE_DIR: &str = "/var/lib/airlock";
}

/// The control verbs: `airlock serve ctl VERB`, run inside the box through the engine's exec
/// API. Each prints JSON (one document) on stdout unless said otherwise, and exits non-zero
/// with a one-line error on stderr when it fails.
pub mod ctl {
    /// `status`: the session's state as [`super::BoxStatus`].
    pub const STATUS: &str = "status";
    /// `receive`: reads the workspace as a tar stream on stdin (for
    /// [`super::WorkspaceSource::Upload`]); refused once the command has started.
    pub const RECEIVE: &str = "receive";
    /// `attach`: attaches the caller's terminal to the session's tmux (needs a tty exec).
    pub const ATTACH: &str = "attach";
    /// `wait`: blocks until the command has exited, then prints [`super::BoxStatus`].
    pub const WAIT: &str = "wait";
    /// `stop`: sends SIGTERM to the command (SIGKILL after the grace period).
    pub const STOP: &str = "stop";
    /// `audit`: the audit log, as JSON lines (not one document), from the start.
    pub const AUDIT: &str = "audit";
    /// `export`: the session's changes as a tar stream on stdout: the overlay's upper layer
    /// in the layout `airlock diff`/`merge` read locally (see `import_changes`).
    pub const EXPORT: &str = "export";
    /// `logs`: what the command wrote on its terminal so far (raw bytes, not JSON), for a
    /// session run without a terminal attached.
    pub const LOGS: &str = "logs";
    /// `stdin`: passes its own standard input on to the command's (a session whose spec has
    /// `stdin`), as it arrives, and the end of it as the command's end of file; once only.
    pub const STDIN: &str = "stdin";
    /// `clone`: clones the workspace of a [`super::WorkspaceSource::Git`] spec (once, before the
    /// command starts). Prints git's progress as text lines, then one line
    /// [`super::CLONE_RESULT_PREFIX`] + [`super::CloneResult`] as JSON.
    pub const CLONE: &str = "clone";
    /// Every verb, for `--help` and for refusing an unknown one.
    pub const ALL: &[&str] = &[
        STATUS, RECEIVE, ATTACH, WAIT, STOP, AUDIT, EXPORT, LOGS, STDIN, CLONE,
    ];
}

impl BoxSpec {
    /// Parses the JSON of [`SPEC_ENV`], checking [`SPEC_VERSION`] before anything else, so a
    /// spec from another airlock version is refused with both versions named rather than with
    /// a field error.
    ///
    /// # Errors
    /// [`RemoteError::Invalid`]: not JSON, another version, or a field missing or malformed.
    pub fn from_json(text: &str) -> Result<BoxSpec, RemoteError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| RemoteError::Invalid(format!("{SPEC_ENV} is not JSON: {e}")))?;
        let version = value.get("version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(SPEC_VERSION)) {
            let got = version.map_or_else(|| "none".to_string(), |v| v.to_string());
            return Err(RemoteError::Invalid(format!(
                "{SPEC_ENV} has box spec version {got}, this airlock reads version \
                 {SPEC_VERSION}: the local airlock and the image's airlock must be the same \
                 release (rebuild or pull the image)"
            )));
        }
        serde_json::from_value(value)
            .map_err(|e| RemoteError::Invalid(format!("{SPEC_ENV}: invalid box spec: {e}")))
    }
}

/// Whether `name` may name a secret file (`[A-Za-z0-9_-]+`, at most 64 bytes): no path
/// separators, no dot files.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The session's state as `airlock serve ctl status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxStatus {
    /// The session id.
    pub session: String,
    /// Where the session is in its life.
    pub state: BoxState,
    /// The command's exit status (128+N when killed by signal N), once it has exited.
    pub exit_status: Option<i32>,
    /// When the command started (RFC 3339), once it has.
    pub started: Option<String>,
    /// When the command ended (RFC 3339), once it has.
    pub ended: Option<String>,
    /// Why the session failed, when `state` is `failed`.
    pub error: Option<String>,
}

/// Where a box's session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxState {
    /// Waiting for the workspace upload ([`ctl::RECEIVE`]).
    WaitingForWorkspace,
    /// Cloning or setting up.
    Starting,
    /// The command runs.
    Running,
    /// The command exited (see `exit_status`).
    Exited,
    /// The session could not start or the supervisor failed (see `error`).
    Failed,
}

impl BoxState {
    /// The stable name, as serialised in the box's status (`waiting_for_workspace`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            BoxState::WaitingForWorkspace => "waiting_for_workspace",
            BoxState::Starting => "starting",
            BoxState::Running => "running",
            BoxState::Exited => "exited",
            BoxState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for BoxState {
    /// The state in words, for messages (`waiting for the workspace`, `failed`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BoxState::WaitingForWorkspace => "waiting for the workspace",
            other => other.as_str(),
        })
    }
}

/// Resource limits of the box (from `[limits]`), for the engine's own enforcement
/// (Kubernetes requests/limits, a Fly guest size) on top of the sandbox's cgroups inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BoxLimits {
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// CPUs in thousandths of a core (Kubernetes millicores).
    pub cpu_millis: Option<u64>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
    /// Size of the writable scratch space (workspace, home, /tmp) in bytes.
    pub disk_bytes: Option<u64>,
}

/// One secret for the supervisor: the file `SECRETS_DIR/name` holding `value`.
#[derive(Clone, PartialEq, Eq)]
pub struct BoxSecret {
    /// The credential's name (`[credentials.NAME]`): `[A-Za-z0-9_-]+`.
    pub name: String,
    /// The secret itself.
    pub value: Vec<u8>,
}

impl std::fmt::Debug for BoxSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxSecret")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Everything an engine needs to create one box.
#[derive(Debug, Clone)]
pub struct BoxRequest {
    /// The spec for `airlock serve` (goes into the box's environment as [`SPEC_ENV`]).
    pub spec: BoxSpec,
    /// The image (must contain airlock at [`layout::AIRLOCK`] and the agent's CLI).
    pub image: String,
    /// The supervisor's secrets.
    pub secrets: Vec<BoxSecret>,
    /// The box's limits.
    pub limits: BoxLimits,
}

/// Where a created box runs, as stored in the session row's `location` (for `airlock ls`):
/// `k8s:CONTEXT/NAMESPACE/POD`, `fly:APP/MACHINE_ID`, `podman:CONTAINER`.
pub type Location = String;

/// The result of a non-interactive exec in the box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The program's exit status.
    pub status: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

/// Bytes of an [`Engine::exec`]'s output held in memory at most: the control verbs' answers
/// are small documents; what can be large (the change layer, the audit log, the output) is
/// read as an [`ExecStream`].
pub const MAX_EXEC_OUTPUT: u64 = 16 << 20;

/// Bytes of a box's own log ([`Engine::logs`]) that a command reads into memory at most: the
/// supervisor's log is a few lines per session; more is refused (fail closed) rather than held.
pub const MAX_LOGS: u64 = 16 << 20;

/// The error of an [`Engine::logs`] over its bound `max`: names the engine, the resource, the
/// bound and `whole`, the engine's own command that reads the log whole.
pub fn logs_over(engine: &'static str, resource: String, max: u64, whole: &str) -> RemoteError {
    RemoteError::Resource {
        engine,
        resource,
        message: format!(
            "its log is over {max} bytes; airlock stopped reading it there (read it whole \
             with `{whole}`)"
        ),
    }
}

/// The standard input of an exec.
pub enum ExecInput {
    /// These bytes, then end of file (none: end of file at once).
    Bytes(Vec<u8>),
    /// What this reader yields, passed on as it arrives (read on a thread of the engine's),
    /// then end of file once it reports end of file.
    Reader(Box<dyn std::io::Read + Send>),
}

impl std::fmt::Debug for ExecInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecInput::Bytes(b) => write!(f, "ExecInput::Bytes({} bytes)", b.len()),
            ExecInput::Reader(_) => f.write_str("ExecInput::Reader"),
        }
    }
}

/// An interactive exec in the box: the terminal's bytes both ways on `stream` (it ends when
/// the program does), and a way to pass window-size changes on.
pub struct TtyExec {
    /// The terminal's bytes: what is written is the program's input, what is read its output.
    pub stream: std::os::unix::net::UnixStream,
    /// Sends a new window size (columns, rows) to the program's terminal.
    pub resize: Box<dyn Fn(u16, u16) -> Result<(), RemoteError> + Send>,
}

impl std::fmt::Debug for TtyExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtyExec")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// An engine that runs boxes. Calls block (an implementation on an async client keeps its own
/// runtime). Every error names the engine, the resource and the fix.
pub trait Engine: std::fmt::Debug + Send {
    /// The engine's name as `--backend` spells it (`k8s`, `fly`, `podman`).
    fn name(&self) -> &'static str;
    /// The resources [`Engine::create`] would create, as the engine's own format (Kubernetes:
    /// YAML, one document per resource; Fly: the Machines API's JSON), for `--dry-run`. Needs
    /// no engine (no cluster, no token).
    fn render(&self, req: &BoxRequest) -> Result<String, RemoteError>;
    /// Creates the box and waits until `airlock serve` in it is up. On any failure, deletes
    /// what it created before returning the error (nothing left running or billed).
    fn create(&mut self, req: &BoxRequest) -> Result<Location, RemoteError>;
    /// Runs `argv` in the box's supervisor container with `stdin` as its input (closed after
    /// it); returns once it has started, with its standard output as it arrives (an engine
    /// never holds more than a few chunks of it: see [`stream`]). Dropping the stream before
    /// its end aborts the exec.
    fn exec_stream(
        &self,
        at: &Location,
        argv: &[String],
        stdin: ExecInput,
    ) -> Result<ExecStream, RemoteError>;
    /// Runs `argv` as [`Engine::exec_stream`] and returns when it exits, with its output in
    /// memory: for the control verbs that answer a small document (`status`, `wait`, `stop`).
    /// An output over [`MAX_EXEC_OUTPUT`] is an error (the exec is aborted).
    fn exec(
        &self,
        at: &Location,
        argv: &[String],
        stdin: &[u8],
    ) -> Result<ExecOutput, RemoteError> {
        let (stdout, end) = self
            .exec_stream(at, argv, ExecInput::Bytes(stdin.to_vec()))?
            .collect(MAX_EXEC_OUTPUT)
            .map_err(|e| RemoteError::Resource {
                engine: self.name(),
                resource: at.clone(),
                message: format!("exec of {}: {e}", argv.join(" ")),
            })?;
        Ok(ExecOutput {
            status: end.status,
            stdout,
            stderr: end.stderr,
        })
    }
    /// Runs `argv` in the box's supervisor container on a terminal of `cols` x `rows` (how
    /// `airlock attach` runs [`ctl::ATTACH`]); returns once it has started. The engine relays
    /// between its stream (Kubernetes: the exec subresource's streams; Fly: its exec
    /// transport) and one end of a socket pair with its own threads.
    fn exec_tty(
        &self,
        at: &Location,
        argv: &[String],
        cols: u16,
        rows: u16,
    ) -> Result<TtyExec, RemoteError>;
    /// The box's own log (the supervisor's stdout/stderr) as the engine keeps it (Kubernetes:
    /// `pods/log`; Fly: the logs route's pages; Podman: the container's log), at most `max`
    /// bytes of it ([`MAX_LOGS`] for a command's use). The engine stops reading once it has
    /// more (Kubernetes also asks the server for at most `max + 1` bytes with `limitBytes`),
    /// so a box that writes without end never decides how much memory this takes.
    ///
    /// # Errors
    /// A log over `max` bytes fails closed, naming the bound and the engine's own command
    /// that reads it whole; the engine's errors as for the other calls.
    fn logs(&self, at: &Location, max: u64) -> Result<Vec<u8>, RemoteError>;
    /// Deletes the box and everything created with it; deleting what is gone is not an error.
    fn delete(&self, at: &Location) -> Result<(), RemoteError>;
}

/// Errors of a remote engine.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The engine cannot be reached or refused the credentials (no kubeconfig, no Fly token,
    /// a token without rights); the message names the engine and the fix.
    #[error("{engine}: {message}")]
    Engine {
        /// `k8s`, `fly`, `podman`.
        engine: &'static str,
        /// What failed and what to do.
        message: String,
    },
    /// A resource the box needs does not exist or failed (a namespace, an app, a machine that
    /// did not start); the message names it and the fix.
    #[error("{engine}: {resource}: {message}")]
    Resource {
        /// `k8s`, `fly`, `podman`.
        engine: &'static str,
        /// The resource (`namespace/agents`, `app/my-app`, `machine/3d8d…`).
        resource: String,
        /// What failed and what to do.
        message: String,
    },
    /// The request itself is invalid (a bad secret name, a spec that does not serialise).
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_state_names_are_pinned() {
        for (state, name) in [
            (BoxState::WaitingForWorkspace, "waiting_for_workspace"),
            (BoxState::Starting, "starting"),
            (BoxState::Running, "running"),
            (BoxState::Exited, "exited"),
            (BoxState::Failed, "failed"),
        ] {
            assert_eq!(state.as_str(), name);
            assert_eq!(
                serde_json::to_string(&state).expect("serialise"),
                format!("\"{name}\"")
            );
        }
    }

    #[test]
    fn a_spec_of_another_version_is_refused_naming_both() {
        for text in [
            r#"{"version": 2}"#,
            r#"{"version": 0, "session": "x"}"#,
            "{}",
        ] {
            let e = BoxSpec::from_json(text).expect_err(text).to_string();
            assert!(e.contains(&format!("reads version {SPEC_VERSION}")), "{e}");
            assert!(
                e.contains("version 2") || e.contains("version 0") || e.contains("none"),
                "{e}"
            );
        }
        assert!(BoxSpec::from_json("not json").is_err());
        let e = BoxSpec::from_json(&format!(r#"{{"version": {SPEC_VERSION}}}"#))
            .expect_err("fields missing")
            .to_string();
        assert!(e.contains("invalid box spec"), "{e}");
    }

    #[test]
    fn box_states_read_as_words_in_messages() {
        for (state, words) in [
            (BoxState::WaitingForWorkspace, "waiting for the workspace"),
            (BoxState::Failed, "failed"),
            (BoxState::Exited, "exited"),
        ] {
            assert_eq!(state.to_string(), words);
            assert_ne!(state.to_string(), format!("{state:?}"));
        }
    }

    #[test]
    fn secret_names_cannot_be_paths() {
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(!valid_secret_name(bad), "{bad:?}");
        }
        assert!(valid_secret_name("anthropic_key-1"));
    }
}
