//! The seam between `airlock run` and whatever runs the sandbox: a [`Backend`] takes a
//! [`SandboxSpec`] and the session's context and hands back a [`RunningSandbox`], whose
//! listeners, terminal, signals and exit the supervisor ([`crate::supervise`]) uses the same way
//! whichever backend started it.
//!
//! The native backend ([`crate::launch::Native`]) is the first implementation: namespaces,
//! seccomp, Landlock and cgroups on this kernel, with airlock's own init stage as pid 1. A
//! container backend (an engine starts the sandbox; airlock's init inside creates the listeners
//! in the container's network namespace and passes them back over a bind-mounted unix socket with
//! `SCM_RIGHTS`) and a remote backend (the sandbox and its egress run on another machine; no
//! listeners come back) fit the same shape: listeners are optional, the terminal is a descriptor
//! that behaves as a pty master, and everything the supervisor waits on is one pollable
//! descriptor ([`RunningSandbox::events`]).
//!
//! Contract for every implementation (the integration tests of `airlock run` check it for native;
//! each new backend joins them as one more row of the matrix, not a copy):
//! - **Same guarantees.** Everything in the spec is enforced as the native backend does
//!   (docs/sandbox.md), or [`Backend::launch`] fails; never a weaker sandbox that starts anyway.
//! - **Listeners in the sandbox's own network namespace.** With `spec.net` set, the proxy, DNS
//!   (UDP and TCP) and gate-audit listeners are created inside, on 127.0.0.1 at the spec's
//!   ports, and handed to the supervisor ([`NetFds`]), which serves them on the host; the sandbox
//!   has no other route out. A backend that serves egress where the sandbox runs returns `None`
//!   from [`RunningSandbox::take_listeners`] and says so in its documentation.
//! - **Terminal.** With `spec.tty` set, the command runs on a terminal whose master side
//!   ([`RunningSandbox::take_terminal`]) reads the command's output and writes its input, and
//!   accepts `TIOCSWINSZ` (or, for a terminal that is an engine's exec stream, gets the size
//!   through [`RunningSandbox::resize`]); without it, the command's stdio are the supervisor's.
//! - **Signals.** [`RunningSandbox::signal`] delivers to the command what the user sent to the
//!   supervisor (INT, TERM, HUP, QUIT, USR1, USR2).
//! - **End.** The sandbox's end makes [`RunningSandbox::events`] readable (or, for a backend
//!   whose sandbox is a child process, arrives as `SIGCHLD`, after which the supervisor calls
//!   [`RunningSandbox::on_events`] too); a backend never needs a thread of the supervisor to
//!   notice it.
//! - **Threads and signals.** The supervisor blocks the forwarded signals before any thread
//!   exists; a backend starts its threads (an engine client's runtime) in `launch` or later, so
//!   they inherit the mask, and never unblocks them.
//! - **Exit status.** [`RunningSandbox::finish`] returns the command's status (128+N when killed
//!   by signal N), or an error whose [`crate::SandboxError::exit_code`] is 125 (airlock failed),
//!   126 (cannot execute) or 127 (not found).
//! - **Nothing left behind.** On every error path of `launch` (including a failure after the
//!   engine created something), on [`RunningSandbox::stop`], and when the handle is dropped
//!   unfinished, the backend kills the sandbox and removes what it created for the session
//!   (processes, cgroups, containers, helper services, sockets). A supervisor killed outright
//!   cannot run its cleanup: [`Backend::clean_up`] removes what is left, called by `airlock stop`
//!   and `airlock rm` for such a session (native: the parent-death signal already killed it).
//! - **Session commands.** `airlock ls` shows the stored backend and [`RunningSandbox::location`];
//!   `attach` reaches the sandbox through its supervisor ([`RunningSandbox::exec_handle`]);
//!   `stop` signals the supervisor, which forwards through [`RunningSandbox::signal`], and calls
//!   [`Backend::clean_up`] when the supervisor had to be killed or was already gone (as `rm`
//!   does); `diff`, `merge` and `logs` read the session directory after
//!   [`Backend::collect_changes`] / [`Backend::collect_logs`].

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::Sender;

use nix::sys::signal::Signal;

use crate::cgroup::CgroupLimits;
use crate::launch::{ExecHandle, NetFds};
use crate::spec::SandboxSpec;
use crate::unix_gate::UnixRefusal;
use crate::SandboxError;

/// What a backend needs to know about the session it runs a sandbox for.
#[derive(Debug)]
pub struct SessionContext {
    /// The session id (8 hex digits), for naming what the backend creates (cgroups, containers)
    /// so that [`Backend::clean_up`] can find it again.
    pub id: String,
    /// The session directory on the host (`$XDG_DATA_HOME/airlock/sessions/ID`), private to the
    /// invoking user; a backend may put its own sockets and state here (for example the unix
    /// socket bind-mounted into a container to pass listeners back).
    pub dir: PathBuf,
    /// The airlock binary on the host (normally `/proc/self/exe`, resolved), which the backend
    /// runs as the sandbox's init stage (`airlock __sandbox-init`).
    pub exe: PathBuf,
    /// Where refused unix-socket connects are reported for the audit log, by backends that
    /// mediate them (native below Landlock ABI 9); others drop it.
    pub unix_refusals: Option<Sender<UnixRefusal>>,
}

/// Which of the limits asked for a backend enforces for the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitReport {
    /// Controllers enforced, e.g. `memory (v2)`, `pids (v1)`, `cpu (engine)`.
    pub enforced: Vec<String>,
    /// Limits asked for that are not enforced here, each with the reason.
    pub missing: Vec<String>,
}

impl LimitReport {
    /// Whether memory is enforced for the whole sandbox (otherwise the spec falls back to a
    /// per-process `RLIMIT_DATA`).
    pub fn memory(&self) -> bool {
        self.enforced.iter().any(|c| c.starts_with("memory"))
    }

    /// Whether a CPU limit is enforced.
    pub fn cpu(&self) -> bool {
        self.enforced.iter().any(|c| c.starts_with("cpu"))
    }
}

/// A stored session, as much as a backend needs to act on it after its supervisor is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    /// The session id.
    pub id: String,
    /// The session directory on the host.
    pub dir: PathBuf,
    /// Where the sandbox runs, as [`RunningSandbox::location`] reported it (`None`: this host).
    pub location: Option<String>,
}

/// Starts sandboxes. One value per `airlock run`; [`Backend::limits`] is called once, before the
/// spec is final, then [`Backend::launch`] at most once.
pub trait Backend: std::fmt::Debug {
    /// Prepares the session's resource limits (memory in bytes, pids, cpus in cores) and says
    /// which are enforced. Called before the spec is built: a missing memory limit makes the spec
    /// carry a per-process `RLIMIT_DATA` instead, and `airlock run` refuses `--cpus` that is not
    /// enforced. What this creates (a cgroup) belongs to the backend until `launch` (and is
    /// removed when the backend is dropped without launching).
    ///
    /// # Errors
    /// A limit the backend cannot even try to set up in a way that must stop the run.
    fn limits(&mut self, session: &str, limits: &CgroupLimits)
        -> Result<LimitReport, SandboxError>;

    /// Builds the sandbox `spec` describes and starts its command; returns once the command
    /// started (or failed to), with the listeners and terminal ready to take.
    ///
    /// # Errors
    /// Anything that prevents the complete sandbox: the error names what failed (the engine, its
    /// socket, a runtime, a mount) and what to do; its exit code is 125, or 126/127 when the
    /// command cannot be executed or is not found. Nothing started for the session is left
    /// running or on disk.
    fn launch(
        &mut self,
        spec: &SandboxSpec,
        ctx: SessionContext,
    ) -> Result<Box<dyn RunningSandbox>, SandboxError>;

    /// Removes whatever is left of a session whose supervisor died without cleaning up
    /// (containers, helper services, remote machines). Idempotent; a session with nothing left
    /// is not an error. The native backend's sandbox dies with its supervisor (parent-death
    /// signal) and its cgroup is swept by the next run, so it has nothing to do.
    ///
    /// # Errors
    /// What could not be removed, by name, and how to remove it by hand.
    fn clean_up(&self, session: &SessionRef) -> Result<(), SandboxError> {
        let _ = session;
        Ok(())
    }

    /// Makes the session's change layer present at `SESSION_DIR/upper` on this host before
    /// `airlock diff` and `merge` read it. Local backends write it there directly (the overlay's
    /// upper directory is in the session directory) and have nothing to do; a remote backend
    /// copies it back.
    ///
    /// # Errors
    /// The layer cannot be fetched (the remote is gone or unreachable).
    fn collect_changes(&self, session: &SessionRef) -> Result<(), SandboxError> {
        let _ = session;
        Ok(())
    }

    /// Makes the session's output present at `SESSION_DIR/tmux/agent.log` before `airlock logs`
    /// reads it (called again on each round of `--follow`). Local backends bind that directory
    /// into the sandbox and have nothing to do; a remote backend copies what is new.
    ///
    /// # Errors
    /// The output cannot be fetched (the remote is gone or unreachable).
    fn collect_logs(&self, session: &SessionRef) -> Result<(), SandboxError> {
        let _ = session;
        Ok(())
    }
}

/// Where a running sandbox is, as far as the supervisor's loop cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The sandbox has ended (its command and everything else inside are gone); the supervisor
    /// drains the terminal for a moment, then calls [`RunningSandbox::finish`].
    pub ended: bool,
    /// [`RunningSandbox::events`] may still become readable; once false the supervisor stops
    /// polling it.
    pub events_open: bool,
}

/// A started sandbox. The supervisor takes its listeners and terminal once, forwards signals,
/// polls [`RunningSandbox::events`] until [`Progress::ended`], then calls
/// [`RunningSandbox::finish`]. Dropping it unfinished must kill the sandbox and remove what the
/// backend created for it (as [`RunningSandbox::stop`]).
pub trait RunningSandbox: std::fmt::Debug {
    /// One line for the log saying what the backend enforces beyond the spec (native: the
    /// Landlock ABI in effect; container: engine and runtime).
    fn enforcement(&self) -> String;

    /// Where the sandbox runs, when not on this host (a remote machine or pod name), recorded
    /// in the session store for later commands; `None` for local backends.
    fn location(&self) -> Option<String> {
        None
    }

    /// The proxy, DNS and gate-audit listeners created inside the sandbox's own network
    /// namespace, once. `None` after the first call, when the spec asked for no network, or for
    /// a backend that serves egress where the sandbox runs.
    fn take_listeners(&mut self) -> Option<NetFds>;

    /// The host unix sockets a relay in the sandbox forwards its network connections to, once,
    /// for a runtime whose sockets cannot be handed out ([`crate::launch::RelayedNet`]: gVisor).
    /// `None` for every backend whose [`RunningSandbox::take_listeners`] serves.
    fn take_relayed(&mut self) -> Option<crate::launch::RelayedNet> {
        None
    }

    /// The master side of the command's terminal, once (`Some` exactly when the spec asked for
    /// a tty). The supervisor reads the command's output from it, writes the user's input to it
    /// and sets its window size with `TIOCSWINSZ`; a backend whose terminal is a stream bridges
    /// it to a local pty.
    fn take_terminal(&mut self) -> Option<OwnedFd>;

    /// The user's terminal is now `rows` x `cols`: called once when supervision starts and on
    /// each `SIGWINCH`, after the supervisor set that size on the terminal with `TIOCSWINSZ`.
    /// A backend whose terminal is a pty master needs nothing more (the default); one whose
    /// terminal is a stream to an engine's exec (a remote box) passes the size on.
    fn resize(&self, rows: u16, cols: u16) {
        let _ = (rows, cols);
    }

    /// A handle to start programs inside the running sandbox (`airlock attach` runs
    /// `tmux attach` through it). An [`ExecHandle`] speaks the init protocol
    /// ([`crate::message::ToInit::Exec`]) over a [`crate::message::Channel`]: a backend whose
    /// pid 1 is airlock's init (native, container) hands out a clone of its channel, and the
    /// answers arrive through [`RunningSandbox::on_events`], which routes them.
    ///
    /// # Errors
    /// The backend cannot start programs inside (say which, and that `--detach` needs it).
    fn exec_handle(&self) -> Result<ExecHandle, SandboxError>;

    /// A descriptor that `poll(2)` reports readable when the backend has news for the
    /// supervisor (a message from inside, the sandbox's end). Valid until `finish`.
    fn events(&self) -> BorrowedFd<'_>;

    /// Handles what is pending and says where the sandbox is. `readable`: `events()` polled
    /// readable (handle one message); otherwise this is a periodic check (after a `SIGCHLD`, or
    /// once per round of the loop) and must not block.
    fn on_events(&mut self, readable: bool) -> Progress;

    /// Delivers `signal` to the sandbox's command (forwarded from the supervisor: INT, TERM,
    /// HUP, QUIT, USR1, USR2). A sandbox that has ended is not an error.
    ///
    /// # Errors
    /// The signal could not be delivered to a sandbox that still runs.
    fn signal(&self, signal: Signal) -> Result<(), SandboxError>;

    /// Ends the sandbox now (SIGKILL to everything inside) and removes what the backend created
    /// for it. Idempotent; also what dropping an unfinished handle does.
    fn stop(&mut self);

    /// After the sandbox has ended (or to end supervision): waits for it, releases what the
    /// backend holds and returns the command's exit status (128+N when killed by signal N).
    ///
    /// # Errors
    /// Setup failed inside ([`SandboxError::Init`] with 125/126/127), or the sandbox ended
    /// without reporting a status (killed from outside, lost).
    fn finish(self: Box<Self>) -> Result<i32, SandboxError>;
}
