//! The supervisor's side of a sandbox: start the init stage, hand it the spec, collect the
//! descriptors it passes out, then supervise: relay the terminal, forward signals, and return the
//! command's exit status.

use std::collections::HashMap;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use crate::backend::{Backend, LimitReport, Progress, RunningSandbox, SessionContext};
use crate::cgroup::{Cgroup, CgroupLimits};
use crate::init::{FORWARDED, INIT_FD};
use crate::message::{Channel, ExecRequest, FromInit, ToInit};
use crate::spec::{SandboxSpec, TtySpec};
use crate::termfilter::{FilterConfig, TermFilter};
use crate::unix_gate::{Gate, UnixRefusal};
use crate::Step;
use crate::{SandboxError, EXIT_FAILURE};

/// Options for starting a sandbox.
#[derive(Debug)]
pub struct LaunchOptions {
    /// The airlock binary, run as `__sandbox-init` (normally `/proc/self/exe`).
    pub exe: PathBuf,
    /// The cgroup to place the sandbox in, if any.
    pub cgroup: Option<Cgroup>,
    /// Where the connect gate reports the unix-socket connects it refused (for the audit log).
    pub unix_refusals: Option<std::sync::mpsc::Sender<UnixRefusal>>,
}

/// Listening sockets created inside the sandbox's network namespace.
#[derive(Debug)]
pub struct NetFds {
    pub proxy: TcpListener,
    pub dns_udp: UdpSocket,
    pub dns_tcp: TcpListener,
    /// The gate's audit channel, when [`crate::NetListeners::audit_port`] was set.
    pub audit: Option<TcpListener>,
}

/// Host unix sockets to which a relay inside the sandbox forwards the connections it accepts on
/// the proxy, DNS and gate-audit listeners, for a runtime whose sockets cannot be handed out
/// (gVisor: they live in its own kernel). The supervisor listens on them in the session's
/// private directory, bound into the sandbox read-only; each connection carries exactly the
/// bytes of one connection inside (DNS datagrams as length-prefixed messages, RFC 1035 section
/// 4.2.2). Connecting to them is what the agent can do anyway by connecting to the proxy inside,
/// so the relay is trusted with nothing.
#[derive(Debug)]
pub struct RelayedNet {
    pub proxy: UnixListener,
    pub dns: UnixListener,
    /// The gate's audit channel, when [`crate::NetListeners::audit_port`] was set.
    pub audit: Option<UnixListener>,
}

/// The file names of [`RelayedNet`]'s sockets in the directory of the control socket.
pub const RELAY_SOCKETS: [&str; 3] = ["proxy.sock", "dns.sock", "audit.sock"];

/// A sandbox's pid 1 running where the supervisor did not fork it (a container), driven through
/// whatever started it (the engine API). The supervisor talks to it over the same control channel
/// as to a local init ([`Sandbox::adopt`]); this trait covers what a local init's `Child` handle
/// does.
pub trait RemoteInit: std::fmt::Debug + Send {
    /// Delivers `sig` to the sandbox's pid 1, which forwards it to the command.
    fn signal(&self, sig: Signal) -> Result<(), SandboxError>;
    /// pid 1's exit status if it has ended (without waiting).
    fn try_wait(&mut self) -> Option<i32>;
    /// Waits for pid 1 to end; its exit status, or `None` when it cannot be known.
    fn wait(&mut self) -> Option<i32>;
    /// Ends the sandbox at once if it still runs and removes what was created for it. Called when
    /// the [`Sandbox`] is stopped or dropped, after a normal end too, so it must be idempotent
    /// and leave nothing behind.
    fn kill(&mut self);
    /// A host pid standing for the sandbox (for the session store), 0 if there is none.
    fn pid(&self) -> u32;
    /// One line on what runs the sandbox (engine, runtime), for the log.
    fn describe(&self) -> String;
}

/// The sandbox's init stage: a child of the supervisor, or a remote pid 1.
#[derive(Debug)]
enum InitProc {
    Local(Child),
    Remote(Box<dyn RemoteInit>),
}

/// An exit status as `wait` reports it for exit code `code`.
fn exit_status(code: i32) -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw((code & 0xff) << 8)
}

impl InitProc {
    fn id(&self) -> u32 {
        match self {
            InitProc::Local(c) => c.id(),
            InitProc::Remote(r) => r.pid(),
        }
    }

    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        match self {
            InitProc::Local(c) => c.try_wait().ok().flatten(),
            InitProc::Remote(r) => r.try_wait().map(exit_status),
        }
    }

    fn wait(&mut self) -> Option<std::process::ExitStatus> {
        match self {
            InitProc::Local(c) => c.wait().ok(),
            InitProc::Remote(r) => r.wait().map(exit_status),
        }
    }

    /// Kills pid 1 (and, remote, removes the container); its status if known.
    fn kill(&mut self) -> Option<std::process::ExitStatus> {
        match self {
            InitProc::Local(c) => {
                if let Ok(None) = c.try_wait() {
                    let _ = c.kill();
                    return c.wait().ok();
                }
                None
            }
            InitProc::Remote(r) => {
                let status = r.try_wait();
                r.kill();
                Some(exit_status(status.unwrap_or(128 + 9)))
            }
        }
    }
}

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    child: InitProc,
    chan: Channel,
    pty: Option<OwnedFd>,
    net: Option<NetFds>,
    /// The relay's host sockets, for a pid 1 that relays instead of handing the listeners out.
    relayed: Option<RelayedNet>,
    /// What Landlock enforces in this sandbox.
    pub landlock: String,
    cgroup: Option<Cgroup>,
    /// Programs started inside on the supervisor's request, by request id, until they exit.
    execs: Arc<ExecTable>,
    /// The connect gate serving this sandbox, when Landlock cannot govern unix sockets here.
    gate: Option<Gate>,
    /// What supervision has learnt so far about the sandbox's end.
    end: End,
    /// Threads relaying a remote pid 1's output pipes to the supervisor's terminal
    /// ([`remote_stdio`]): waited for (briefly) at the end so that no output is cut short.
    relays: Vec<std::thread::JoinHandle<()>>,
}

/// What the supervisor has learnt about a native sandbox's end.
#[derive(Debug, Default)]
struct End {
    /// pid 1 reported the command's exit status.
    exited: Option<i32>,
    /// pid 1 reported a setup failure (exit status, message).
    failed: Option<(Option<Step>, i32, String)>,
    /// The init stage's own status, once reaped.
    child: Option<std::process::ExitStatus>,
    /// The control channel is closed (pid 1 is gone or sent garbage).
    chan_closed: bool,
}

/// Pending [`ExecRequest`]s: where to deliver what pid 1 says about each.
type ExecTable = Mutex<HashMap<u64, mpsc::Sender<ExecEvent>>>;

/// What pid 1 reported about one program started with [`ExecHandle::start`].
#[derive(Debug)]
enum ExecEvent {
    Started(Option<OwnedFd>),
    Failed(String),
    Exited(i32),
}

/// Starts programs inside a running sandbox ([`ToInit::Exec`]): `airlock attach`'s `tmux attach`,
/// readiness checks. Usable from any thread while [`Sandbox::wait_with`] supervises (which routes
/// pid 1's answers); every request fails once the sandbox has ended.
#[derive(Debug, Clone)]
pub struct ExecHandle {
    chan: Arc<Channel>,
    next: Arc<AtomicU64>,
    table: Arc<ExecTable>,
}

/// A program running inside the sandbox, started by [`ExecHandle::start`].
#[derive(Debug)]
pub struct Exec {
    /// The master of the pty it runs on (when a tty was asked for), created inside the sandbox.
    pub pty: Option<OwnedFd>,
    events: mpsc::Receiver<ExecEvent>,
}

impl Exec {
    /// Waits up to `timeout` for the program to exit: `Some(status)` (128+N for signal N), or
    /// `None` on timeout. A sandbox that ended counts as an exit with status 128+9.
    pub fn wait(&self, timeout: Duration) -> Option<i32> {
        loop {
            match self.events.recv_timeout(timeout) {
                Ok(ExecEvent::Exited(status)) => return Some(status),
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Some(128 + 9),
            }
        }
    }
}

impl ExecHandle {
    /// Asks pid 1 to start `argv` inside, with `env` set on top of the command's environment and,
    /// with `tty`, on a new pty whose master comes back in [`Exec::pty`]. Waits up to `timeout`
    /// for pid 1's answer.
    pub fn start(
        &self,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        tty: Option<TtySpec>,
        timeout: Duration,
    ) -> Result<Exec, SandboxError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.lock().insert(id, tx);
        let req = ExecRequest { id, argv, env, tty };
        let what = req.argv.join(" ");
        if let Err(e) = self.chan.send(&ToInit::Exec(req), &[]) {
            self.lock().remove(&id);
            return Err(e);
        }
        let answer = rx.recv_timeout(timeout);
        match answer {
            Ok(ExecEvent::Started(pty)) => Ok(Exec { pty, events: rx }),
            Ok(ExecEvent::Failed(message)) => Err(SandboxError::Setup(format!(
                "cannot start `{what}` in the sandbox: {message}"
            ))),
            Ok(ExecEvent::Exited(_)) => Err(SandboxError::Protocol(format!(
                "`{what}` exited before it was reported started"
            ))),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.lock().remove(&id);
                Err(SandboxError::Setup(format!(
                    "the sandbox did not start `{what}` within {}s",
                    timeout.as_secs()
                )))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(SandboxError::Setup(format!(
                "cannot start `{what}`: the sandbox has ended"
            ))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<ExecEvent>>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The backend's side of an [`ExecHandle`]: delivers pid 1's answers to the requests made
/// through it. For a backend (other than native) whose pid 1 is airlock's init and whose
/// channel to it is a [`Channel`]: it makes the pair with [`ExecHandle::over`], returns the
/// handle from [`crate::RunningSandbox::exec_handle`], and passes every message it receives in
/// [`crate::RunningSandbox::on_events`] through [`ExecRouter::route`].
#[derive(Debug, Clone)]
pub struct ExecRouter {
    table: Arc<ExecTable>,
}

impl ExecRouter {
    /// Delivers `msg` if it answers an exec request (`ExecStarted`, `ExecFailed`,
    /// `ExecExited`); gives any other message back with its descriptors.
    pub fn route(&self, msg: FromInit, fds: Vec<OwnedFd>) -> Option<(FromInit, Vec<OwnedFd>)> {
        match msg {
            FromInit::ExecStarted { .. }
            | FromInit::ExecFailed { .. }
            | FromInit::ExecExited { .. } => {
                route_exec(&self.table, msg, fds);
                None
            }
            other => Some((other, fds)),
        }
    }

    /// Fails every pending request (the sandbox has ended).
    pub fn close(&self) {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

impl ExecHandle {
    /// A handle that sends its requests on `chan` (a clone of the channel to the sandbox's
    /// pid 1), and the router that delivers their answers.
    pub fn over(chan: Channel) -> (ExecHandle, ExecRouter) {
        let table: Arc<ExecTable> = Arc::new(Mutex::new(HashMap::new()));
        let handle = ExecHandle {
            chan: Arc::new(chan),
            next: Arc::new(AtomicU64::new(1)),
            table: table.clone(),
        };
        (handle, ExecRouter { table })
    }
}

/// Delivers one of pid 1's exec answers to whoever asked.
fn route_exec(table: &ExecTable, msg: FromInit, fds: Vec<OwnedFd>) {
    let mut t = table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match msg {
        FromInit::ExecStarted { id, tty } => {
            let pty = if tty { fds.into_iter().next() } else { None };
            if let Some(tx) = t.get(&id) {
                let _ = tx.send(ExecEvent::Started(pty));
            }
        }
        FromInit::ExecFailed { id, message } => {
            if let Some(tx) = t.remove(&id) {
                let _ = tx.send(ExecEvent::Failed(message));
            }
        }
        FromInit::ExecExited { id, status } => {
            if let Some(tx) = t.remove(&id) {
                let _ = tx.send(ExecEvent::Exited(status));
            }
        }
        _ => {}
    }
}

/// The signals the supervisor takes through its signalfd: the forwarded ones, SIGWINCH and
/// SIGCHLD.
pub(crate) fn supervised_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGWINCH);
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks the signals the supervisor handles, so they queue for [`Sandbox::wait`]. Call it
/// before any thread is started: threads inherit the mask, and a signal delivered to a thread that
/// does not block it would take the default action (killing airlock, leaving nothing forwarded).
pub fn block_signals() -> Result<(), SandboxError> {
    supervised_signals()
        .thread_block()
        .map_err(|e| SandboxError::sys(Step::Supervise, "cannot block signals", e))
}

/// The sandbox's init stage (`airlock __sandbox-init`) before it has its spec: the child, our
/// end of its control channel, and the thread placing it in the session's cgroup, if any.
#[derive(Debug)]
struct InitStage {
    exe: PathBuf,
    child: Child,
    chan: Channel,
    /// Writes the init stage's pid to the cgroup's `cgroup.procs` files; a v1 memory cgroup's
    /// write waits for an RCU grace period (~10 ms), which this thread waits out while the
    /// supervisor goes on.
    placing: Option<Placing>,
}

impl InitStage {
    /// Starts `exe __sandbox-init` with the channel on fd 3, the parent-death signal and a
    /// process group of its own; with a `cgroup` that has directories, a thread starts placing it
    /// there at once. Call it from the thread that supervises (the parent-death signal follows
    /// the spawning thread).
    fn start(exe: &std::path::Path, cgroup: Option<&Cgroup>) -> Result<InitStage, SandboxError> {
        let (ours, theirs) = Channel::pair()?;
        let their_fd = theirs.as_raw_fd();
        let mut cmd = Command::new(exe);
        cmd.arg("__sandbox-init")
            .env_clear()
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (dup2, fcntl, prctl, getppid, kill); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if their_fd == INIT_FD {
                    let flags = libc::fcntl(INIT_FD, libc::F_GETFD);
                    if flags < 0
                        || libc::fcntl(INIT_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(their_fd, INIT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            SandboxError::io(
                Step::Supervise,
                format!("cannot start the sandbox init stage {}", exe.display()),
                e,
            )
        })?;
        drop(theirs);
        let placing = match cgroup {
            Some(cg) if cg.has_dirs() => {
                let (procs, pid) = (cg.procs_files(), child.id());
                // A thread that cannot be started: `build_placed` places it on the main thread.
                std::thread::Builder::new()
                    .name("airlock-cgroup".into())
                    .spawn(move || crate::cgroup::place(&procs, pid))
                    .ok()
            }
            _ => None,
        };
        Ok(InitStage {
            exe: exe.to_path_buf(),
            child,
            chan: ours,
            placing,
        })
    }
}

/// The thread placing an init stage in its cgroup ([`InitStage::start`]).
type Placing = std::thread::JoinHandle<Result<(), SandboxError>>;

/// Waits for a placing thread; its error, or one for a thread that panicked.
fn joined(placing: Option<Placing>) -> Result<(), SandboxError> {
    match placing.map(std::thread::JoinHandle::join) {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(_)) => Err(SandboxError::failed(
            Step::Cgroup,
            "the thread placing the sandbox in its cgroup panicked",
        )),
    }
}

/// How a sandbox gets into its cgroup.
#[derive(Debug)]
enum Placement {
    /// Its pid 1 was started by an engine, in the engine's cgroup.
    Engine,
    /// Natively, while it is built ([`Sandbox::build_placed`]), by the thread already placing
    /// the init stage if there is one.
    Native(Option<Placing>),
}

impl Sandbox {
    /// Starts a sandbox for `spec` and waits until it is built (or has failed to build).
    pub fn launch(spec: &SandboxSpec, opts: LaunchOptions) -> Result<Sandbox, SandboxError> {
        let init = InitStage::start(&opts.exe, None)?;
        Sandbox::launch_started(spec, init, opts)
    }

    /// As [`Sandbox::launch`], with an init stage already started (and maybe being placed in
    /// `opts.cgroup`).
    fn launch_started(
        spec: &SandboxSpec,
        mut init: InitStage,
        opts: LaunchOptions,
    ) -> Result<Sandbox, SandboxError> {
        let placing = init.placing.take();
        let sandbox = Sandbox {
            child: InitProc::Local(init.child),
            chan: init.chan,
            pty: None,
            net: None,
            relayed: None,
            landlock: String::new(),
            cgroup: opts.cgroup,
            execs: Arc::new(Mutex::new(HashMap::new())),
            gate: None,
            end: End::default(),
            relays: Vec::new(),
        };
        // The cgroup placement overlaps with the build (`build_placed`).
        sandbox.handshake(spec, opts.unix_refusals, &[], Placement::Native(placing))
    }

    /// Takes over a sandbox whose pid 1 was started elsewhere (`airlock __container-init` in a
    /// container) and has connected `chan`: sends it the spec with the supervisor's stdin, stdout
    /// and stderr attached (the command gets them, as it inherits them natively) and waits until
    /// it is built, exactly as [`Sandbox::launch`]. On an error `remote` is killed (dropped).
    ///
    /// A terminal among them is never passed (pid 1 runs code of the image's choosing before
    /// its lockdown, which must not reach the user's terminal raw): `remote_stdio`.
    pub fn adopt(
        spec: &SandboxSpec,
        chan: Channel,
        remote: Box<dyn RemoteInit>,
        unix_refusals: Option<std::sync::mpsc::Sender<UnixRefusal>>,
    ) -> Result<Sandbox, SandboxError> {
        let sandbox = Sandbox {
            child: InitProc::Remote(remote),
            chan,
            pty: None,
            net: None,
            relayed: None,
            landlock: String::new(),
            cgroup: None,
            execs: Arc::new(Mutex::new(HashMap::new())),
            gate: None,
            end: End::default(),
            relays: Vec::new(),
        };
        let (stdio, relays) = remote_stdio(spec.tty.is_some())?;
        let fds: Vec<std::os::fd::RawFd> = stdio.iter().map(|f| f.as_raw_fd()).collect();
        let sandbox = sandbox.handshake(spec, unix_refusals, &fds, Placement::Engine);
        drop(stdio);
        sandbox.map(|mut s| {
            s.relays = relays;
            s
        })
    }

    /// [`Sandbox::adopt`] for a pid 1 started with `__container-init --relay`: it keeps the
    /// network listeners inside and relays their connections to `relayed`, whose sockets the
    /// supervisor made before the container started. A pid 1 that hands listeners out anyway is
    /// refused (each side must agree on where egress is served).
    pub fn adopt_relayed(
        spec: &SandboxSpec,
        chan: Channel,
        remote: Box<dyn RemoteInit>,
        unix_refusals: Option<std::sync::mpsc::Sender<UnixRefusal>>,
        relayed: RelayedNet,
    ) -> Result<Sandbox, SandboxError> {
        let mut sandbox = Sandbox::adopt(spec, chan, remote, unix_refusals)?;
        if sandbox.net.is_some() {
            return Err(SandboxError::Protocol(
                "the container's pid 1 handed out network listeners where a relay was asked for"
                    .into(),
            ));
        }
        if spec.net.is_some() {
            sandbox.relayed = Some(relayed);
        }
        Ok(sandbox)
    }

    /// Sends the spec (with `spec_fds` attached) and collects what init passes out once the
    /// sandbox is built; a native sandbox is placed in its cgroup while it is built
    /// ([`Sandbox::build_placed`]; a sandbox whose pid 1 an engine started is in the engine's).
    fn handshake(
        self,
        spec: &SandboxSpec,
        unix_refusals: Option<std::sync::mpsc::Sender<UnixRefusal>>,
        spec_fds: &[std::os::fd::RawFd],
        place: Placement,
    ) -> Result<Sandbox, SandboxError> {
        let mut sandbox = self;
        let mut first = match place {
            Placement::Native(placing) => sandbox.build_placed(spec, placing)?,
            Placement::Engine => {
                sandbox
                    .chan
                    .send(&ToInit::Spec(Box::new(spec.clone())), spec_fds)?;
                sandbox.chan.recv::<FromInit>()?
            }
        };
        if let Some((FromInit::ConnectGate { private_devs }, fds)) = first {
            let mut fds = fds.into_iter();
            let (Some(listener), Some(diag)) = (fds.next(), fds.next()) else {
                return Err(SandboxError::Protocol(
                    "the init stage did not pass the connect gate's descriptors".into(),
                ));
            };
            sandbox.gate = Some(Gate::start(listener, diag, private_devs, unix_refusals)?);
            first = sandbox.chan.recv::<FromInit>()?;
        }
        match first {
            Some((FromInit::Ready { tty, net, landlock }, fds)) => {
                let mut fds = fds.into_iter();
                let mut next = |what: &str| {
                    fds.next().ok_or_else(|| {
                        SandboxError::Protocol(format!("the init stage did not pass the {what}"))
                    })
                };
                if tty {
                    sandbox.pty = Some(next("terminal")?);
                }
                if net {
                    sandbox.net = Some(NetFds {
                        proxy: TcpListener::from(next("proxy listener")?),
                        dns_udp: UdpSocket::from(next("DNS socket")?),
                        dns_tcp: TcpListener::from(next("DNS listener")?),
                        audit: match spec.net.and_then(|n| n.audit_port) {
                            Some(_) => Some(TcpListener::from(next("audit listener")?)),
                            None => None,
                        },
                    });
                }
                sandbox.landlock = landlock;
                Ok(sandbox)
            }
            Some((
                FromInit::Failed {
                    step,
                    code,
                    message,
                },
                _,
            )) => {
                let _ = sandbox.child.wait();
                Err(SandboxError::Init {
                    step,
                    code,
                    message,
                })
            }
            Some((other, _)) => Err(SandboxError::Protocol(format!(
                "unexpected message before the sandbox was ready: {other:?}"
            ))),
            None => {
                let status = sandbox.child.wait();
                Err(SandboxError::Setup(format!(
                    "the sandbox init stage exited before the sandbox was ready ({})",
                    status.map_or("unknown status".to_string(), |s| s.to_string())
                )))
            }
        }
    }

    /// Sends the spec and places the sandbox in its cgroup while it is built. When `placing`
    /// (the thread [`InitStage::start`] started with the init stage, while the session was
    /// being planned) has already placed the init stage, the spec goes alone: the init stage
    /// forks nothing before it has the spec, so every process of the sandbox is born in the
    /// cgroup. Otherwise the init stage (the write to `cgroup.procs` can take a v1 memory
    /// controller an RCU grace period, ~10 ms) is placed while the namespaces and the root are
    /// set up, then pid 1, which reports itself ([`FromInit::Placing`]) and starts the command
    /// only on [`ToInit::Placed`]. Returns the first message after the placement.
    fn build_placed(
        &mut self,
        spec: &SandboxSpec,
        placing: Option<Placing>,
    ) -> Result<Option<(FromInit, Vec<OwnedFd>)>, SandboxError> {
        // The placing thread is waited for on every path, before the init stage can be reaped
        // (the Sandbox's drop): it writes a pid that must still be that of our child.
        let Some(cg) = self.cgroup.as_ref().filter(|cg| cg.has_dirs()) else {
            joined(placing)?;
            self.chan.send(&ToInit::Spec(Box::new(spec.clone())), &[])?;
            return self.chan.recv::<FromInit>();
        };
        if placing.as_ref().is_some_and(|p| p.is_finished()) {
            joined(placing)?;
            self.chan.send(&ToInit::Spec(Box::new(spec.clone())), &[])?;
            return self.chan.recv::<FromInit>();
        }
        let sent = self
            .chan
            .send(&ToInit::Place, &[])
            .and_then(|()| self.chan.send(&ToInit::Spec(Box::new(spec.clone())), &[]));
        let placed = match placing {
            Some(p) => joined(Some(p)),
            None if sent.is_ok() => cg.add(self.child.id()),
            None => Ok(()),
        };
        sent?;
        placed?;
        match self.chan.recv::<FromInit>()? {
            Some((FromInit::Placing, fds)) => {
                let pidfd = fds.into_iter().next().ok_or_else(|| {
                    SandboxError::Protocol("the sandbox's pid 1 did not pass its pidfd".into())
                })?;
                if let Err(e) = cg.add_pidfd(&pidfd) {
                    return self.failure_instead(e);
                }
                // pid 1 may fail (and close its end) before it reads `Placed`: the channel then
                // reports a reset before what pid 1 sent.
                match self
                    .chan
                    .send(&ToInit::Placed, &[])
                    .and_then(|()| self.chan.recv::<FromInit>())
                {
                    Err(e) => self.failure_instead(e),
                    ok => ok,
                }
            }
            Some((m @ (FromInit::ConnectGate { .. } | FromInit::Ready { .. }), _)) => {
                Err(SandboxError::Protocol(format!(
                    "the sandbox's pid 1 did not report itself for its cgroup placement: {m:?}"
                )))
            }
            other => Ok(other),
        }
    }

    /// After a failed placement: ends the sandbox and returns what pid 1 reported, if it
    /// failed first (a setup error, e.g. a mount refused, makes it exit while it is being
    /// placed; its message is the one to show), else `e`.
    fn failure_instead(
        &mut self,
        e: SandboxError,
    ) -> Result<Option<(FromInit, Vec<OwnedFd>)>, SandboxError> {
        // Stage 1's death takes pid 1 with it (PDEATHSIG): the channel then ends after
        // whatever pid 1 sent, so the reads below cannot block.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A reset is reported once, ahead of the packets still queued (sock_error(), net/core).
        for _ in 0..16 {
            match self.chan.recv::<FromInit>() {
                Ok(Some((msg @ FromInit::Failed { .. }, fds))) => return Ok(Some((msg, fds))),
                Ok(Some(_)) | Err(_) => continue,
                Ok(None) => break,
            }
        }
        Err(e)
    }

    /// The listeners for the proxy and DNS filter, once.
    pub fn take_net(&mut self) -> Option<NetFds> {
        self.net.take()
    }

    /// The relay's host sockets ([`Sandbox::adopt_relayed`]), once.
    pub fn take_relayed_net(&mut self) -> Option<RelayedNet> {
        self.relayed.take()
    }

    /// Host pid of the init stage (signals sent to it are forwarded to the command).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A handle to start programs inside this sandbox while it is supervised.
    pub fn exec_handle(&self) -> Result<ExecHandle, SandboxError> {
        Ok(ExecHandle {
            chan: Arc::new(self.chan.try_clone()?),
            next: Arc::new(AtomicU64::new(1)),
            table: self.execs.clone(),
        })
    }

    /// Supervises until the command exits: relays the terminal, forwards INT, TERM, HUP, QUIT,
    /// USR1, USR2 and window-size changes. Returns the command's exit status (128+N for signal N).
    pub fn wait(self) -> Result<i32, SandboxError> {
        self.wait_with(None)
    }

    /// As [`Sandbox::wait`], and SIGHUP also calls `on_hup` (a policy reload) before it is
    /// forwarded. Terminal output goes through a [`TermFilter`] with the default configuration.
    pub fn wait_with(self, on_hup: Option<&mut dyn FnMut()>) -> Result<i32, SandboxError> {
        let mut filter = TermFilter::new(FilterConfig::default());
        self.wait_relaying(on_hup, &mut filter)
    }

    /// As [`Sandbox::wait_with`], relaying the command's terminal output through `filter`
    /// (whose counts say what it dropped once this returns).
    pub fn wait_relaying(
        self,
        on_hup: Option<&mut dyn FnMut()>,
        filter: &mut TermFilter,
    ) -> Result<i32, SandboxError> {
        crate::supervise::supervise(Box::new(self), on_hup, filter)
    }

    /// Takes one message from pid 1: the command's end, a setup failure, or an answer to an
    /// [`ExecRequest`]. A closed or broken channel is recorded as such.
    fn receive_one(&mut self) {
        match self.chan.recv::<FromInit>() {
            Ok(Some((FromInit::Exited { status }, _))) => self.end.exited = Some(status),
            Ok(Some((
                FromInit::Failed {
                    step,
                    code,
                    message,
                },
                _,
            ))) => self.end.failed = Some((step, code, message)),
            Ok(Some((
                msg @ (FromInit::ExecStarted { .. }
                | FromInit::ExecFailed { .. }
                | FromInit::ExecExited { .. }),
                fds,
            ))) => route_exec(&self.execs, msg, fds),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => self.end.chan_closed = true,
        }
    }

    /// The command's exit status from what supervision learnt, reaping the init stage if it
    /// was not yet.
    fn exit_status(&mut self) -> Result<i32, SandboxError> {
        self.execs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let status = match self.end.child {
            Some(s) => Some(s),
            None => self.child.wait(),
        };
        if let Some((step, code, message)) = self.end.failed.take() {
            return Err(SandboxError::Init {
                step,
                code,
                message,
            });
        }
        if let Some(code) = self.end.exited {
            return Ok(code);
        }
        use std::os::unix::process::ExitStatusExt;
        match status {
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => Ok(c),
                (None, Some(sig)) => Err(SandboxError::Setup(format!(
                    "the sandbox init stage was killed by signal {sig}"
                ))),
                _ => Ok(EXIT_FAILURE),
            },
            None => Err(SandboxError::Setup(
                "lost track of the sandbox init stage".into(),
            )),
        }
    }

    fn chan_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the channel's descriptor lives as long as `self`, which outlives the borrow.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.chan.as_raw_fd()) }
    }

    /// What the cgroup enforces (empty if none).
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }
}

impl RunningSandbox for Sandbox {
    fn enforcement(&self) -> String {
        match &self.child {
            InitProc::Local(_) => format!("landlock: {}", self.landlock),
            InitProc::Remote(r) => format!("{}; landlock: {}", r.describe(), self.landlock),
        }
    }

    fn take_listeners(&mut self) -> Option<NetFds> {
        self.take_net()
    }

    fn take_relayed(&mut self) -> Option<RelayedNet> {
        self.take_relayed_net()
    }

    fn take_terminal(&mut self) -> Option<OwnedFd> {
        self.pty.take()
    }

    fn exec_handle(&self) -> Result<ExecHandle, SandboxError> {
        Sandbox::exec_handle(self)
    }

    fn events(&self) -> std::os::fd::BorrowedFd<'_> {
        self.chan_fd()
    }

    fn on_events(&mut self, readable: bool) -> Progress {
        if readable && !self.end.chan_closed {
            self.receive_one();
        }
        if self.end.child.is_none() {
            self.end.child = self.child.try_wait();
        }
        // A remote pid 1 raises no SIGCHLD: once its channel is closed, it is ending. When it
        // reported the command's status, that is the answer (the engine's own notice of the end
        // can lag by a second; the container is removed when the sandbox is dropped); else the
        // engine is asked.
        if self.end.child.is_none() && self.end.chan_closed {
            if let InitProc::Remote(_) = self.child {
                self.end.child = match self.end.exited {
                    Some(code) => Some(exit_status(code)),
                    None => self.child.wait().or(Some(exit_status(EXIT_FAILURE))),
                };
            }
        }
        Progress {
            ended: self.end.child.is_some(),
            events_open: !self.end.chan_closed,
        }
    }

    fn signal(&self, signal: Signal) -> Result<(), SandboxError> {
        if self.end.child.is_some() {
            return Ok(());
        }
        // The init stage forwards what it receives to the command.
        let pid = match &self.child {
            InitProc::Local(c) => Pid::from_raw(i32::try_from(c.id()).unwrap_or(i32::MAX)),
            InitProc::Remote(r) => return r.signal(signal),
        };
        match kill(pid, signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(SandboxError::sys(
                Step::Supervise,
                format!("cannot send {signal} to the sandbox"),
                e,
            )),
        }
    }

    fn stop(&mut self) {
        if let Some(st) = self.child.kill() {
            self.end.child.get_or_insert(st);
        }
    }

    fn finish(mut self: Box<Self>) -> Result<i32, SandboxError> {
        let status = self.exit_status();
        // The relays end at EOF, once the container's processes are gone; bounded all the same.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        for r in std::mem::take(&mut self.relays) {
            while !r.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        status
    }
}

/// The native backend: namespaces, seccomp, Landlock and cgroups on this kernel, with
/// `airlock __sandbox-init` as the sandbox's init stage (docs/sandbox.md). Holds the session's
/// cgroup from [`Backend::limits`] until [`Backend::launch`] places the sandbox in it.
///
/// `limits` also starts the init stage (which waits for its spec) and begins placing it in the
/// cgroup on a thread, so that the placement (an RCU grace period on a v1 memory hierarchy)
/// and the init stage's own start-up overlap with the rest of the session's planning; a native
/// backend dropped without launching kills it before the cgroup is removed.
#[derive(Debug, Default)]
pub struct Native {
    /// Declared before `cgroup`: dropped (killed and reaped) before the cgroup is removed.
    started: Option<StartedInit>,
    cgroup: Option<Cgroup>,
}

/// An init stage started by [`Native`]'s `limits`, killed if it is never launched.
#[derive(Debug)]
struct StartedInit(Option<InitStage>);

impl Drop for StartedInit {
    fn drop(&mut self) {
        if let Some(mut init) = self.0.take() {
            // Killed first, reaped only once the placing thread is done: until then its pid
            // (a zombie's) cannot be another process's.
            let _ = init.child.kill();
            let _ = joined(init.placing.take());
            let _ = init.child.wait();
        }
    }
}

impl Backend for Native {
    fn limits(
        &mut self,
        session: &str,
        limits: &CgroupLimits,
    ) -> Result<LimitReport, SandboxError> {
        let cgroup = Cgroup::create(session, limits)?;
        let report = LimitReport {
            enforced: cgroup.enforced.clone(),
            missing: cgroup.missing.clone(),
        };
        // Started early only to save time: when it cannot be, `launch` starts one as before.
        self.started = std::fs::canonicalize("/proc/self/exe")
            .ok()
            .and_then(|exe| InitStage::start(&exe, Some(&cgroup)).ok())
            .map(|init| StartedInit(Some(init)));
        self.cgroup = Some(cgroup);
        Ok(report)
    }

    fn launch(
        &mut self,
        spec: &SandboxSpec,
        ctx: SessionContext,
    ) -> Result<Box<dyn RunningSandbox>, SandboxError> {
        let opts = LaunchOptions {
            exe: ctx.exe,
            cgroup: self.cgroup.take(),
            unix_refusals: ctx.unix_refusals,
        };
        // The init stage started by `limits` runs the same binary (else it is killed and another
        // started). On failure the half-started sandbox is killed (its Drop) and the cgroup
        // removed.
        let started = self
            .started
            .take()
            .and_then(|mut s| s.0.take_if(|init| init.exe == opts.exe));
        let sandbox = match started {
            Some(init) => Sandbox::launch_started(spec, init, opts)?,
            None => Sandbox::launch(spec, opts)?,
        };
        Ok(Box::new(sandbox))
    }
}

/// Writes all of `data` to `fd` (blocking or not).
pub(crate) fn write_all(fd: &OwnedFd, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Never leave a sandbox behind: if supervision ends early (an error in airlock), kill it;
        // a remote one is also removed (its engine's container, a private service).
        let _ = self.child.kill();
    }
}

/// Makes `cmd` start with no signal blocked, whatever the calling thread blocks.
///
/// airlock blocks SIGTERM, SIGINT and the other supervised signals in every thread
/// ([`block_signals`]); a child inherits that mask across `exec` (sigprocmask(2)), so a host
/// helper such as `git` would otherwise ignore the user's Ctrl-C and the timeout's SIGTERM.
pub fn unblock_signals_in_child(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only sigemptyset and
    // sigprocmask, which are async-signal-safe (signal-safety(7)); it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `cmd`'s process start with its data limit (RLIMIT_DATA, setrlimit(2): its heap and
/// every private writable mapping, in bytes; since Linux 4.7) at `bytes`, soft and hard, so a
/// host helper that reads what a sandbox wrote (a `git` inflating a planted delta) fails its
/// allocation (`ENOMEM`) instead of taking the host's memory. Read-only file mappings (git's
/// pack windows) do not count.
pub fn limit_data_in_child(cmd: &mut Command, bytes: u64) {
    // SAFETY: the closure runs in the forked child before exec and calls only getrlimit and
    // setrlimit, thin wrappers of the prlimit64 system call (no lock, no allocation); the rlimit struct is
    // on the stack.
    unsafe {
        cmd.pre_exec(move || {
            // Never above the hard limit the process has already (raising it needs privilege).
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_DATA, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let want = (bytes as libc::rlim_t).min(lim.rlim_max);
            lim.rlim_cur = want;
            lim.rlim_max = want;
            if libc::setrlimit(libc::RLIMIT_DATA, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `cmd`'s process receive SIGTERM when the thread that spawns it ends (prctl(2)
/// PR_SET_PDEATHSIG), so a helper started for one session (a private `podman system service`)
/// does not outlive an airlock that was killed. Spawn from the thread that lives as long as the
/// helper should (the main thread): the signal follows the spawning thread, not the process.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and calls only prctl and getppid,
    // which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// What [`remote_stdio`] makes: the descriptors to pass, and the output relays' threads.
type RemoteStdio = (Vec<OwnedFd>, Vec<std::thread::JoinHandle<()>>);

/// The stdin, stdout and stderr to pass to a pid 1 started elsewhere (a container's): each of
/// the supervisor's that is not a terminal as it is (a file or pipe, as the command inherits
/// it natively); for a terminal, a pipe the supervisor relays, output through the terminal
/// filter ([`TermFilter`], as the pty's), input copied as typed. With `pty` (the command has a
/// terminal of its own, relayed by `supervise`), a terminal stdin becomes `/dev/null`. Relay
/// threads end when the container's end of their pipe closes; the output relays are returned
/// to be waited for.
///
/// # Errors
/// A pipe, `/dev/null` or a duplicate of a descriptor cannot be made.
fn remote_stdio(pty: bool) -> Result<RemoteStdio, SandboxError> {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let fds = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    let mut out = Vec::new();
    let mut relays = Vec::new();
    for (i, fd) in fds.into_iter().enumerate() {
        let own = fd.try_clone_to_owned().map_err(|e| {
            SandboxError::io(
                Step::Supervise,
                "cannot duplicate the supervisor's stdio",
                e,
            )
        })?;
        if !nix::unistd::isatty(fd).unwrap_or(false) {
            out.push(own);
            continue;
        }
        if i == 0 && pty {
            let null = std::fs::File::open("/dev/null")
                .map_err(|e| SandboxError::io(Step::Supervise, "cannot open /dev/null", e))?;
            out.push(null.into());
            continue;
        }
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
            SandboxError::sys(
                Step::Supervise,
                "cannot make a pipe for the container's stdio",
                e,
            )
        })?;
        let mut real = std::fs::File::from(own);
        if i == 0 {
            let mut to = std::fs::File::from(w);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut real, &mut to);
            });
            out.push(r);
        } else {
            let mut from = std::fs::File::from(r);
            relays.push(std::thread::spawn(move || {
                let mut filter = TermFilter::new(FilterConfig::default());
                let mut buf = vec![0u8; 16 * 1024];
                let mut filtered = Vec::with_capacity(16 * 1024);
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    filtered.clear();
                    filter.filter(&buf[..n], &mut filtered);
                    if real.write_all(&filtered).is_err() {
                        break;
                    }
                }
            }));
            out.push(w);
        }
    }
    Ok((out, relays))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays pid 1: receives one exec request on `theirs` and returns its id.
    fn request_id(theirs: &Channel) -> u64 {
        match theirs.recv::<ToInit>() {
            Ok(Some((ToInit::Exec(req), _))) => req.id,
            other => panic!("expected an exec request, got {other:?}"),
        }
    }

    #[test]
    fn another_backend_routes_exec_answers_through_its_router() {
        let (ours, theirs) = Channel::pair().expect("pair");
        let (handle, router) = ExecHandle::over(ours);
        let h = handle.clone();
        let asker = std::thread::spawn(move || {
            h.start(
                vec!["true".into()],
                Vec::new(),
                None,
                Duration::from_secs(5),
            )
        });
        let id = request_id(&theirs);
        assert!(router
            .route(FromInit::ExecStarted { id, tty: false }, Vec::new())
            .is_none());
        let exec = asker.join().expect("join").expect("started");
        assert!(router
            .route(FromInit::ExecExited { id, status: 3 }, Vec::new())
            .is_none());
        assert_eq!(exec.wait(Duration::from_secs(5)), Some(3));
        // Anything else comes back to the backend.
        assert!(matches!(
            router.route(FromInit::Exited { status: 0 }, Vec::new()),
            Some((FromInit::Exited { status: 0 }, _))
        ));
        // Once the sandbox has ended, a pending request fails instead of waiting.
        let h = handle.clone();
        let asker = std::thread::spawn(move || {
            h.start(
                vec!["sleep".into()],
                Vec::new(),
                None,
                Duration::from_secs(5),
            )
        });
        request_id(&theirs);
        router.close();
        let e = asker.join().expect("join").expect_err("ended");
        assert!(e.to_string().contains("has ended"), "{e}");
    }
}
