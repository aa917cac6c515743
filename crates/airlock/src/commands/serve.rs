//! `airlock serve`: the supervisor as the first process of a remote box, and `airlock serve ctl
//! VERB`, its control client (docs/remote.md).
//!
//! The box's supervisor does not hold a second copy of `airlock run`: once the spec, the
//! secrets and the workspace are in place it starts `airlock run --detached-child` (the same
//! background supervisor a local `--detach` starts: native sandbox, overlay workspace, egress
//! proxy, DNS filter, credential swap, audit log, tmux) as the unprivileged user `airlock` (a
//! supervisor that is not root runs it as its own user: docs/k8s.md, "Root in the box"), with
//! the policy the local side resolved (`--box-policy`) and the credentials pointed at private
//! copies of the secret files, removed once the session is up. What it adds is the box's life:
//! the control socket ([`airlock_remote::layout::CONTROL_SOCKET`], the supervisor's user only) answering the
//! verbs of [`airlock_remote::ctl`], the status, and staying up until the changes were exported.
//!
//! Failing closed: every step before the command starts either succeeds or leaves the session
//! `failed` with its reason and the command unstarted.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _,
    PermissionsExt as _,
};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use airlock_remote::archive::{self, Content};
use airlock_remote::{ctl, layout, BoxSpec, BoxState, BoxStatus, WorkspaceSource};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::{ServeArgs, ServeCommand};

/// The unprivileged user the session runs as (the image must have it).
const AGENT_USER: &str = "airlock";
/// The secrets' copies and the policy for the session's supervisor: outside the root-only
/// `/run/airlock`, and outside everything the sandbox sees (`/run` is the sandbox's own).
const SUPERVISOR_DIR: &str = "/run/airlock-supervisor";
/// What `ctl export` sends once it has written the whole stream out.
const EXPORT_ACK: &str = "exported";
/// How long the supervisor waits for it.
const EXPORT_ACK_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the box stays after the export was taken.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long the session may take to come up once started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `airlock serve` and `airlock serve ctl VERB`.
pub(crate) fn serve(args: ServeArgs) -> Result<i32> {
    match &args.ctl {
        Some(ServeCommand::Ctl { verb }) => client(&args.socket, verb),
        None => supervisor(&args),
    }
}

/// The unprivileged user of the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Agent {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// What the control socket's handlers share.
#[derive(Debug)]
struct Shared {
    state: Mutex<Inner>,
    changed: Condvar,
}

#[derive(Debug)]
struct Inner {
    status: BoxStatus,
    /// The workspace arrived (upload).
    received: bool,
    /// The changes were exported: the box may end.
    exported: bool,
    /// The session's supervisor (`airlock run --detached-child`).
    child: Option<u32>,
    agent: Option<Agent>,
    /// The write end of the command's standard input (a spec with `stdin`), until
    /// [`ctl::STDIN`] takes it.
    stdin: Option<std::fs::File>,
    /// The spec, once read (for [`ctl::CLONE`]).
    spec: Option<BoxSpec>,
    /// A clone was asked for ([`ctl::CLONE`] is taken once).
    cloning: bool,
}

impl Shared {
    fn new(session: &str) -> Shared {
        Shared {
            state: Mutex::new(Inner {
                status: BoxStatus {
                    session: session.to_string(),
                    state: BoxState::Starting,
                    exit_status: None,
                    started: None,
                    ended: None,
                    error: None,
                },
                received: false,
                exported: false,
                child: None,
                agent: None,
                stdin: None,
                spec: None,
                cloning: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    fn fail(&self, e: &anyhow::Error) {
        eprintln!("airlock serve: session failed: {}", log_text(e));
        self.update(|s| {
            s.status.state = BoxState::Failed;
            s.status.error = Some(format!("{e:#}"));
            s.status.ended = Some(airlock_audit::now_rfc3339());
        });
    }
}

/// The supervisor: the control socket first (so a failure is reported), then the session.
fn supervisor(args: &ServeArgs) -> Result<i32> {
    let raw = std::env::var(airlock_remote::SPEC_ENV).unwrap_or_default();
    let parsed = BoxSpec::from_json(&raw);
    let session = parsed
        .as_ref()
        .map(|s| s.session.clone())
        .unwrap_or_else(|_| "unknown".to_string());
    let shared = Arc::new(Shared::new(&session));
    on_termination(shared.clone())?;
    listen(&args.socket, shared.clone())?;
    match parsed
        .map_err(anyhow::Error::new)
        .and_then(|spec| start(args, &spec, &shared).map(|c| (spec, c)))
    {
        Ok((_spec, child)) => watch(child, &shared),
        Err(e) => shared.fail(&e),
    }
    linger(&shared, Duration::from_secs(args.linger));
    Ok(0)
}

/// As pid 1 of the box, SIGTERM and SIGINT do nothing unless handled: the engine's stop
/// (`podman stop`, a pod's deletion) passes SIGTERM on to the session's supervisor, which ends
/// the sandbox, and then ends the box. Blocked here, before any other thread exists, and taken
/// by a thread of their own.
fn on_termination(shared: Arc<Shared>) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("cannot block SIGTERM")?;
    std::thread::Builder::new()
        .name("airlock-serve-signals".into())
        .spawn(move || {
            let Ok(sig) = set.wait() else { return };
            eprintln!("airlock serve: {sig}: stopping the session");
            if let Some(pid) = shared.lock().child.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline
                    && !matches!(
                        shared.lock().status.state,
                        BoxState::Exited | BoxState::Failed
                    )
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            std::process::exit(128 + sig as i32);
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Sets up and starts the session; returns its supervisor process.
fn start(args: &ServeArgs, spec: &BoxSpec, shared: &Shared) -> Result<std::process::Child> {
    // As root, the session runs as the image's user `airlock`; as any other user (a pod's
    // `runAsNonRoot` uid), as that same user, whose agent the native sandbox puts in a user
    // namespace of its own (docs/k8s.md, "Root in the box", design A).
    let agent = if nix::unistd::geteuid().is_root() {
        agent_user()?
    } else {
        own_user()?
    };
    shared.update(|s| {
        s.agent = Some(agent.clone());
        s.spec = Some(spec.clone());
    });
    workspace(args, spec, shared, &agent)?;
    // After the workspace: podman-box writes the secrets into the running box before it
    // uploads the workspace (a Secret volume or a Fly file is there from the start).
    let secrets = read_secrets(Path::new(layout::SECRETS_DIR), spec)?;
    forget_secrets(Path::new(layout::SECRETS_DIR));
    let private = private_dir(&agent)?;
    let policy = box_policy(spec, &secrets, &private, &agent)?;
    if spec.stdin {
        let fifo = stdin_fifo(spec, &agent)?;
        shared.update(|s| s.stdin = Some(fifo));
    }
    let child = spawn(spec, &agent, &policy)?;
    let ready = wait_ready(spec, &agent, child);
    // The secrets' copies are read by now (or the session failed): gone either way.
    let _ = std::fs::remove_dir_all(&private);
    let child = ready?;
    shared.update(|s| {
        s.child = Some(child.id());
        s.status.state = BoxState::Running;
        s.status.started = Some(airlock_audit::now_rfc3339());
    });
    Ok(child)
}

/// A non-root supervisor's own identity as the session's user, with its home under the
/// state directory (which must be the supervisor's: an emptyDir with `fsGroup`, a tmpfs owned
/// by it).
fn own_user() -> Result<Agent> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let home = Path::new(layout::STATE_DIR).join("home");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&home)
        .with_context(|| {
            format!(
                "cannot create {} as uid {uid}: the box's {} must be writable by the supervisor's user (an emptyDir with fsGroup, a tmpfs with uid={uid})",
                home.display(),
                layout::STATE_DIR
            )
        })?;
    Ok(Agent {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        home,
    })
}

/// The user `airlock` of the image: never root.
fn agent_user() -> Result<Agent> {
    let user = nix::unistd::User::from_name(AGENT_USER)
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("the image has no user {AGENT_USER}: add one (useradd -m {AGENT_USER}); the session never runs as root"))?;
    if user.uid.is_root() {
        bail!("the image's user {AGENT_USER} is root (uid 0): give it its own uid");
    }
    let home = Path::new(layout::STATE_DIR).join("home");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&home)
        .with_context(|| format!("cannot create {}", home.display()))?;
    std::os::unix::fs::chown(&home, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .with_context(|| format!("cannot give {} to {AGENT_USER}", home.display()))?;
    Ok(Agent {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home,
    })
}

/// The secrets, one file per credential of the policy: every credential must have its file,
/// and every file must belong to a credential (a stray file is a mistake of the engine).
fn read_secrets(dir: &Path, spec: &BoxSpec) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let names: Vec<&str> = spec
        .policy
        .credentials
        .iter()
        .map(|c| c.name.as_str())
        .chain(spec.policy_secrets.iter().map(String::as_str))
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            // Kubernetes Secret volumes hold `..data` links and dot directories.
            if name.starts_with('.') {
                continue;
            }
            if !airlock_remote::valid_secret_name(&name) || !names.contains(&name.as_str()) {
                bail!(
                    "secret file {} names no credential of the session's policy (credentials: {}); the engine mounted the wrong secrets",
                    e.path().display(),
                    names.join(", ")
                );
            }
            let value = std::fs::read(e.path())
                .with_context(|| format!("cannot read the secret {}", e.path().display()))?;
            out.push((name, value));
        }
    }
    for n in &names {
        if !out.iter().any(|(o, _)| o == n) {
            bail!(
                "credential {n}: no secret file {}/{n}; the local side sends one per credential",
                dir.display()
            );
        }
    }
    Ok(out)
}

/// Removes the secret files once read, where they can be removed (a podman-box's tmpfs, a Fly
/// machine's files; a Kubernetes Secret volume is read-only and stays): the supervisor holds
/// them in memory and in its private copies only.
fn forget_secrets(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with('.') {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The workspace: waits for the upload (`ctl receive`) or the clone (`ctl clone`, which the
/// local side runs once the box's secrets are in place).
fn workspace(args: &ServeArgs, spec: &BoxSpec, shared: &Shared, agent: &Agent) -> Result<()> {
    let ws = Path::new(layout::WORKSPACE);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(ws)
        .with_context(|| format!("cannot create {}", ws.display()))?;
    // A non-root supervisor cannot give away what it does not own (a pod's emptyDir is root's,
    // writable through `fsGroup`); it is the session's user itself.
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(ws, Some(agent.uid), Some(agent.gid))
            .with_context(|| format!("cannot give {} to {AGENT_USER}", ws.display()))?;
    }
    let verb = match &spec.workspace {
        WorkspaceSource::Git { .. } => ctl::CLONE,
        WorkspaceSource::Upload => ctl::RECEIVE,
    };
    {
        {
            shared.update(|s| s.status.state = BoxState::WaitingForWorkspace);
            let deadline = Instant::now() + Duration::from_secs(args.upload_timeout);
            let mut s = shared.lock();
            while !s.received {
                if s.status.state == BoxState::Failed {
                    bail!(
                        "{}",
                        s.status.error.clone().unwrap_or_else(|| "failed".into())
                    );
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() && s.cloning {
                    // A clone under way ends by itself (done, failed, or over its bound).
                    s = shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                if left.is_zero() {
                    bail!(
                        "no workspace arrived within {}s (`airlock serve ctl {verb}`)",
                        args.upload_timeout
                    );
                }
                s = shared
                    .changed
                    .wait_timeout(s, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            s.status.state = BoxState::Starting;
            Ok(())
        }
    }
}

/// A directory only the session's supervisor user can read, outside anything the sandbox
/// sees (`/run` is the sandbox's own), for the secrets' copies.
fn private_dir(agent: &Agent) -> Result<PathBuf> {
    // A non-root supervisor cannot create directories in `/run`: its copies go beside the
    // control socket, in the directory only it can open (`/run` is the sandbox's own inside).
    let beside = Path::new(layout::CONTROL_SOCKET)
        .parent()
        .unwrap_or(Path::new("/run/airlock"))
        .join("supervisor");
    let dir = if nix::unistd::geteuid().is_root() {
        Path::new(SUPERVISOR_DIR)
    } else {
        beside.as_path()
    };
    let _ = std::fs::remove_dir_all(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::os::unix::fs::chown(dir, Some(agent.uid), Some(agent.gid))
        .with_context(|| format!("cannot give {} to {AGENT_USER}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// Writes the policy for `airlock run --box-policy`: the spec's, with every credential read
/// from its secret's private copy (placeholder in the same variable as on the local side).
fn box_policy(
    spec: &BoxSpec,
    secrets: &[(String, Vec<u8>)],
    private: &Path,
    agent: &Agent,
) -> Result<PathBuf> {
    let mut policy = spec.policy.clone();
    airlock_remote::policy_secrets::restore(&mut policy, &spec.policy_secrets, secrets)?;
    for c in &mut policy.credentials {
        let Some((_, value)) = secrets.iter().find(|(n, _)| *n == c.name) else {
            bail!("credential {}: no secret", c.name);
        };
        let path = private.join(&c.name);
        write_private(&path, value, agent)?;
        c.placeholder_env = c.placeholder_env.take().or_else(|| c.env.take());
        c.env = None;
        c.json = None;
        c.file = Some(path.display().to_string());
    }
    let path = private.join("policy.json");
    write_private(&path, &serde_json::to_vec(&policy)?, agent)?;
    Ok(path)
}

fn write_private(path: &Path, bytes: &[u8], agent: &Agent) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::os::unix::fs::fchown(&f, Some(agent.uid), Some(agent.gid))
        .with_context(|| format!("cannot give {} to {AGENT_USER}", path.display()))?;
    Ok(())
}

/// The FIFO the command reads as its standard input (`SESSION/tmux/stdin`, which the
/// session's tmux script redirects from, detach.rs), made before the session starts (so
/// nothing the agent planted is there yet) and opened read-write here: the open does not wait
/// for a reader, the command's open does not wait for a writer, and the command sees end of
/// file once [`ctl::STDIN`] closes the one write end (this one is never reopened by name).
fn stdin_fifo(spec: &BoxSpec, agent: &Agent) -> Result<std::fs::File> {
    let tmux = session_dir(&spec.session, agent).join("tmux");
    let rel = tmux
        .strip_prefix(&agent.home)
        .context("the session directory is outside the agent's home")?;
    let mut at = agent.home.clone();
    for c in rel.components() {
        at.push(c);
        match std::fs::DirBuilder::new().mode(0o700).create(&at) {
            Ok(()) => std::os::unix::fs::lchown(&at, Some(agent.uid), Some(agent.gid))
                .with_context(|| format!("cannot give {} to {AGENT_USER}", at.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", at.display())),
        }
    }
    let path = tmux.join("stdin");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("cannot create the FIFO {}", path.display()))?;
    std::os::unix::fs::lchown(&path, Some(agent.uid), Some(agent.gid))
        .with_context(|| format!("cannot give {} to {AGENT_USER}", path.display()))?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("cannot open the FIFO {}", path.display()))?;
    if !f.metadata()?.file_type().is_fifo() {
        bail!(
            "{} is not the FIFO made for the command's input",
            path.display()
        );
    }
    Ok(f)
}

/// `ctl stdin`: copies the connection's bytes into the command's standard input as they
/// arrive, then closes it (the command's end of file). A command that has ended (or closed its
/// input) ends the copy without an error: what it did not read is dropped, as with a pipe.
fn pass_stdin(input: &mut impl Read, shared: &Shared) -> Result<Payload> {
    let Some(mut fifo) = shared.lock().stdin.take() else {
        bail!(
            "this session takes no standard input from outside (run without a piped input), \
             or it was passed already"
        );
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut passed = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("the input broke off"),
        };
        if !write_while_running(&mut fifo, &buf[..n], shared)? {
            break;
        }
        passed += n as u64;
    }
    drop(fifo);
    Ok(Payload::Json(serde_json::json!({ "passed": passed })))
}

/// Writes `data` to the (non-blocking) FIFO, waiting while it is full for as long as the
/// session runs; `Ok(false)` once it has ended (the rest is dropped: nobody will read it).
/// The supervisor's own read-write end keeps the FIFO from ever reporting a closed reader,
/// so the session's state is what tells.
fn write_while_running(fifo: &mut std::fs::File, data: &[u8], shared: &Shared) -> Result<bool> {
    use std::os::fd::AsFd as _;
    let mut at = 0;
    while at < data.len() {
        match fifo.write(&data[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if matches!(
                    shared.lock().status.state,
                    BoxState::Exited | BoxState::Failed
                ) {
                    return Ok(false);
                }
                let mut fds = [nix::poll::PollFd::new(
                    fifo.as_fd(),
                    nix::poll::PollFlags::POLLOUT,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("cannot pass the input on"),
        }
    }
    Ok(true)
}

/// The session directory of the box's session.
fn session_dir(spec_session: &str, agent: &Agent) -> PathBuf {
    agent
        .home
        .join(".local/share/airlock/sessions")
        .join(spec_session)
}

/// The environment of the session's supervisor: nothing of the box's (which holds the spec).
fn agent_env(cmd: &mut Command, agent: &Agent) {
    cmd.env_clear()
        .env("HOME", &agent.home)
        .env("USER", AGENT_USER)
        .env("LOGNAME", AGENT_USER)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("SHELL", "/bin/sh")
        .env("LANG", "C.UTF-8")
        .env("TERM", "xterm-256color")
        .uid(agent.uid)
        .gid(agent.gid);
}

/// Starts `airlock run --detached-child` as the agent user.
fn spawn(spec: &BoxSpec, agent: &Agent, policy: &Path) -> Result<std::process::Child> {
    let dir = session_dir(&spec.session, agent);
    let exe = std::fs::canonicalize("/proc/self/exe").context("cannot find the airlock binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["run", "--detached-child", &spec.session, "--workspace"])
        .arg(layout::WORKSPACE)
        .arg("--box-policy")
        .arg(policy)
        .args(["--agent", &spec.agent]);
    for (k, v) in &spec.env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    if !spec.argv.is_empty() {
        cmd.arg("--").args(&spec.argv);
    }
    agent_env(&mut cmd, agent);
    let log = dir.with_extension("log");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.parent().unwrap_or(&dir))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    chown_tree(&agent.home, agent)?;
    let out =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    std::os::unix::fs::fchown(&out, Some(agent.uid), Some(agent.gid))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .current_dir(layout::WORKSPACE)
        .spawn()
        .context("cannot start the session's supervisor (airlock run)")
}

/// Gives the agent's home (created by root above) to the agent user.
fn chown_tree(dir: &Path, agent: &Agent) -> Result<()> {
    let mut at = dir.to_path_buf();
    loop {
        std::os::unix::fs::lchown(&at, Some(agent.uid), Some(agent.gid))
            .with_context(|| format!("cannot give {} to {AGENT_USER}", at.display()))?;
        let mut next = None;
        if let Ok(rd) = std::fs::read_dir(&at) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    next = Some(e.path());
                }
            }
        }
        match next {
            Some(n) => at = n,
            None => return Ok(()),
        }
    }
}

/// Waits until the session's tmux is up (the same readiness `airlock run --detach` waits for).
fn wait_ready(
    spec: &BoxSpec,
    agent: &Agent,
    mut child: std::process::Child,
) -> Result<std::process::Child> {
    let dir = session_dir(&spec.session, agent);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if crate::control::request(&dir, "ready").is_ok_and(|a| a == "ok\n") {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            // A command that ran and ended before readiness was seen (`echo hi`) is a session
            // that started: its status, 126 and 127 included, is the command's. Only airlock's
            // own failure (125) is a session that could not start.
            if status.code() != Some(crate::exit::FAILURE) {
                return Ok(child);
            }
            let log = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
            bail!(
                "the session ended while starting ({status}): {}{}",
                log.trim_end(),
                box_hint(&log)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the session did not start within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the box's engine must change when the native sandbox cannot be built inside it, from
/// the refusal in the session's log (docs/remote.md, "The podman-box engine").
fn box_hint(log: &str) -> &'static str {
    if log.contains("cannot set the hostname") || log.contains("cannot pivot") {
        "; the box's seccomp profile refuses what the nested sandbox needs (sethostname, mount, \
         pivot_root): run the box without the engine's default profile (Podman: --security-opt \
         seccomp=unconfined; airlock's own filter still applies to the agent)"
    } else if log.contains("cannot mount proc") {
        "; the box's /proc is masked: run it with an unmasked /proc (Podman: --security-opt \
         unmask=/proc/*; Kubernetes: procMount Unmasked)"
    } else if log.contains("cannot mount overlay") {
        "; the box's state directory is on an overlay filesystem: give /var/lib/airlock and \
         /workspace a tmpfs or volume of their own"
    } else if log.contains("user namespace") {
        "; the box cannot create user namespaces: allow unshare(CLONE_NEWUSER) in its seccomp \
         profile and user.max_user_namespaces > 0 on its kernel"
    } else {
        ""
    }
}

/// Waits for the session's end on a thread of its own and records it.
fn watch(mut child: std::process::Child, shared: &Arc<Shared>) {
    let watcher = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("airlock-serve-wait".into())
        .spawn(move || {
            let status = child.wait();
            watcher.update(|s| {
                s.status.ended = Some(airlock_audit::now_rfc3339());
                match status {
                    Ok(st) => {
                        s.status.state = BoxState::Exited;
                        s.status.exit_status = Some(exit_code(st));
                    }
                    Err(e) => {
                        s.status.state = BoxState::Failed;
                        s.status.error = Some(format!("cannot wait for the session: {e}"));
                    }
                }
            });
        });
    if let Err(e) = spawned {
        shared.fail(&anyhow!("cannot start the session watcher: {e}"));
    }
}

/// A process's exit status as a shell reports it (128+N when killed by signal N).
fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    st.code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(crate::exit::FAILURE)
}

/// Stays up until the session ended and its changes were exported, or `max` after its end.
fn linger(shared: &Shared, max: Duration) {
    let mut s = shared.lock();
    let mut ended_at: Option<Instant> = None;
    loop {
        let done = matches!(s.status.state, BoxState::Exited | BoxState::Failed);
        if done {
            let at = *ended_at.get_or_insert_with(Instant::now);
            if s.exported || at.elapsed() >= max {
                drop(s);
                // The engine collects the last exec's status after its process is gone.
                std::thread::sleep(EXIT_GRACE);
                return;
            }
        }
        s = shared
            .changed
            .wait_timeout(s, Duration::from_secs(1))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// A control request: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    verb: String,
}

/// The first line of every answer; the payload follows when `error` is `None`.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    error: Option<String>,
}

/// Binds the control socket (root only: `ctl` runs as root through the engine's exec) and
/// answers each connection on a thread.
fn listen(path: &Path, shared: Arc<Shared>) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        // DirBuilder's mode applies only to a directory it creates; an existing one of the
        // supervisor's (a tmpfs the engine made) is made its alone here. A pod's emptyDir is
        // root's (0777, group fsGroup) and cannot be changed by a non-root supervisor: only
        // the supervisor's container mounts it (the sandbox has a /run of its own).
        let meta = std::fs::metadata(parent)
            .with_context(|| format!("cannot read {}", parent.display()))?;
        if meta.uid() == nix::unistd::geteuid().as_raw() {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} private (0700)", parent.display()))?;
        }
    }
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("airlock-serve-ctl".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("airlock-serve-req".into())
                    .spawn(move || {
                        if let Err(e) = answer(conn, &shared) {
                            eprintln!("airlock serve: control request failed: {}", log_text(&e));
                        }
                    });
            }
        })
        .context("cannot start the control socket's thread")?;
    Ok(())
}

fn answer(conn: UnixStream, shared: &Shared) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let req: Request = serde_json::from_str(&line).context("bad control request")?;
    let mut out = conn;
    if req.verb == ctl::CLONE {
        return clone_verb(&mut out, shared);
    }
    let result = handle(&req.verb, &mut reader, shared);
    match result {
        Ok(payload) => {
            writeln!(out, "{}", serde_json::to_string(&Header { error: None })?)?;
            let export = matches!(payload, Payload::Export(_));
            payload.write_to(&mut out)?;
            if export {
                await_export_ack(&mut out, &mut reader)?;
                shared.update(|s| s.exported = true);
            }
        }
        Err(e) => writeln!(
            out,
            "{}",
            serde_json::to_string(&Header {
                error: Some(format!("{e:#}"))
            })?
        )?,
    }
    Ok(())
}

/// What an answer carries after its header.
enum Payload {
    Json(serde_json::Value),
    /// The changes, written straight from the upper layer.
    Export(PathBuf),
    File(std::fs::File),
    /// Files sent one after the other.
    Files(Vec<std::fs::File>),
    Nothing,
}

impl Payload {
    fn write_to(self, out: &mut UnixStream) -> Result<()> {
        match self {
            Payload::Json(v) => writeln!(out, "{}", serde_json::to_string(&v)?)?,
            Payload::Export(upper) => {
                let skipped = archive::write_tree(&upper, &mut *out, Content::Changes)?;
                for s in skipped {
                    eprintln!(
                        "airlock serve: export: {} left out (not a file, directory or link)",
                        airlock_session::quote::path(&s)
                    );
                }
            }
            Payload::File(mut f) => {
                std::io::copy(&mut f, out)?;
            }
            Payload::Files(fs) => {
                for mut f in fs {
                    std::io::copy(&mut f, out)?;
                }
            }
            Payload::Nothing => {}
        }
        Ok(())
    }
}

/// Waits for the client's acknowledgement that it has passed the whole export on (the box may
/// end right after, which kills a client still copying).
fn await_export_ack(out: &mut UnixStream, reader: &mut impl BufRead) -> Result<()> {
    out.shutdown(std::net::Shutdown::Write)?;
    out.set_read_timeout(Some(EXPORT_ACK_TIMEOUT))?;
    let mut ack = String::new();
    reader.read_line(&mut ack)?;
    if ack.trim_end() != EXPORT_ACK {
        bail!("the export was not acknowledged ({ack:?})");
    }
    // Until the client has exited (its end closes): the box ending under it would kill it, and
    // the engine would report the export as failed.
    let _ = std::io::copy(reader, &mut std::io::sink());
    Ok(())
}

fn status_json(shared: &Shared) -> Result<Payload> {
    Ok(Payload::Json(serde_json::to_value(&shared.lock().status)?))
}

fn handle(verb: &str, input: &mut impl Read, shared: &Shared) -> Result<Payload> {
    let (session, agent) = {
        let s = shared.lock();
        (s.status.session.clone(), s.agent.clone())
    };
    let dir = agent.as_ref().map(|a| session_dir(&session, a));
    let dir_of = || dir.clone().context("the session has not started");
    match verb {
        ctl::STATUS => status_json(shared),
        ctl::RECEIVE => receive(input, shared, agent.as_ref()),
        ctl::STDIN => pass_stdin(input, shared),
        ctl::WAIT => {
            let mut s = shared.lock();
            while !matches!(s.status.state, BoxState::Exited | BoxState::Failed) {
                s = shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            drop(s);
            status_json(shared)
        }
        ctl::STOP => {
            // A command that has already ended is stopped: its status says how it ended.
            let (state, child) = {
                let s = shared.lock();
                (s.status.state, s.child)
            };
            if matches!(state, BoxState::Exited | BoxState::Failed) {
                return status_json(shared);
            }
            let pid = child.context("the command has not started")?;
            let pid = i32::try_from(pid).context("pid out of range")?;
            match nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            ) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(anyhow::anyhow!("cannot signal the session: {e}")),
            }
            status_json(shared)
        }
        ctl::ATTACH => {
            let agent = agent.context("the session has not started")?;
            Ok(Payload::Json(serde_json::json!({
                "session": session, "uid": agent.uid, "gid": agent.gid, "home": agent.home,
            })))
        }
        ctl::AUDIT => {
            // The clone's proxy events first (a file of the supervisor's), then the session's.
            let clone = std::fs::File::open(super::serve_clone::CLONE_AUDIT).ok();
            let f = super::detach::open_sandbox_written(&dir_of()?, &["audit.jsonl"])?;
            Ok(Payload::Files(clone.into_iter().chain(f).collect()))
        }
        ctl::LOGS => {
            let f = super::detach::open_sandbox_written(&dir_of()?, &["tmux", "agent.log"])?;
            Ok(f.map_or(Payload::Nothing, Payload::File))
        }
        ctl::EXPORT => {
            let state = shared.lock().status.state;
            if state != BoxState::Exited {
                bail!("the session is {state}: export its changes once the command has exited (`ctl wait`)");
            }
            Ok(Payload::Export(dir_of()?.join("upper")))
        }
        other => bail!("unknown verb {other}; known: {}", ctl::ALL.join(", ")),
    }
}

/// `ctl clone`: the header at once (or the reason it is refused: not a git session, not
/// waiting, asked for already), then git's progress as text lines, then one line
/// [`airlock_remote::CLONE_RESULT_PREFIX`] + [`airlock_remote::CloneResult`]. A failed clone
/// fails the session (the command never starts).
fn clone_verb(out: &mut UnixStream, shared: &Shared) -> Result<()> {
    let taken = {
        let mut s = shared.lock();
        match (&s.spec, &s.agent) {
            (Some(spec), Some(agent))
                if s.status.state == BoxState::WaitingForWorkspace
                    && !s.cloning
                    && matches!(spec.workspace, WorkspaceSource::Git { .. }) =>
            {
                let taken = (spec.clone(), agent.clone());
                s.cloning = true;
                Ok(taken)
            }
            (Some(spec), _) if !matches!(spec.workspace, WorkspaceSource::Git { .. }) => Err(anyhow!(
                "this session's workspace is an upload (`ctl receive`), not a clone"
            )),
            _ => Err(anyhow!(
                "the session is not waiting for a clone (it is {}); `clone` is taken once, before the command starts",
                s.status.state
            )),
        }
    };
    let (spec, agent) = match taken {
        Ok(t) => t,
        Err(e) => {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&Header {
                    error: Some(format!("{e:#}"))
                })?
            )?;
            return Ok(());
        }
    };
    writeln!(out, "{}", serde_json::to_string(&Header { error: None })?)?;
    let cloned = read_secrets(Path::new(layout::SECRETS_DIR), &spec).and_then(|secrets| {
        let scratch = super::serve_clone::scratch_dir(agent.uid, agent.gid)?;
        let user = super::serve_clone::CloneUser {
            uid: agent.uid,
            gid: agent.gid,
            scratch: scratch.clone(),
        };
        let r = super::serve_clone::clone(&spec, &secrets, &user, out);
        let _ = std::fs::remove_dir_all(&scratch);
        r
    });
    let result = match cloned {
        Ok(commit) => {
            shared.update(|s| s.received = true);
            airlock_remote::CloneResult {
                commit: Some(commit),
                error: None,
            }
        }
        Err(e) => {
            let e = anyhow!("the workspace's clone failed: {e:#}");
            shared.fail(&e);
            airlock_remote::CloneResult {
                commit: None,
                error: Some(format!("{e:#}")),
            }
        }
    };
    writeln!(
        out,
        "{}{}",
        airlock_remote::CLONE_RESULT_PREFIX,
        serde_json::to_string(&result)?
    )?;
    Ok(())
}

/// `ctl receive`: the workspace's tar stream, unpacked by the archive rules (no escapes, no
/// links followed, no devices) into the empty workspace; refused once it has arrived.
fn receive(input: &mut impl Read, shared: &Shared, agent: Option<&Agent>) -> Result<Payload> {
    {
        let s = shared.lock();
        if s.spec
            .as_ref()
            .is_some_and(|spec| matches!(spec.workspace, WorkspaceSource::Git { .. }))
        {
            bail!("this session's workspace is a clone (`ctl clone`), not an upload");
        }
        if s.received || s.status.state != BoxState::WaitingForWorkspace {
            bail!(
                "the session is not waiting for a workspace (it is {}); `receive` is taken once, before the command starts",
                s.status.state
            );
        }
    }
    let agent = agent.context("the session is not set up")?;
    let ws = Path::new(layout::WORKSPACE);
    match archive::unpack(
        &mut *input,
        ws,
        Content::Workspace,
        Some((agent.uid, agent.gid)),
    ) {
        Ok(done) => {
            // tar pads its stream past the end-of-archive blocks: read it all, so the client
            // gets the answer instead of a reset.
            let _ = std::io::copy(input, &mut std::io::sink());
            shared.update(|s| s.received = true);
            Ok(Payload::Json(
                serde_json::json!({"entries": done.entries, "bytes": done.bytes}),
            ))
        }
        Err(e) => {
            let e = anyhow!("the workspace upload was refused: {e}");
            shared.fail(&e);
            Err(e)
        }
    }
}

/// `airlock serve ctl VERB`: sends the verb (and stdin, for `receive`), prints the answer.
fn client(socket: &Path, verb: &str) -> Result<i32> {
    let mut conn = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot connect to the box's supervisor at {}; is `airlock serve` running?",
            socket.display()
        )
    })?;
    let req = serde_json::to_string(&Request {
        verb: verb.to_string(),
    })?;
    writeln!(conn, "{req}")?;
    if verb == ctl::RECEIVE {
        std::io::copy(&mut std::io::stdin().lock(), &mut conn)
            .context("cannot send the workspace")?;
        // The end of the stream. The supervisor may have answered and closed already (a
        // refused upload).
        let _ = conn.shutdown(std::net::Shutdown::Write);
    }
    if verb == ctl::STDIN {
        // As it arrives; the supervisor may have refused (and closed) already: its answer
        // says why.
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut conn);
        let _ = conn.shutdown(std::net::Shutdown::Write);
    }
    let mut ack = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let header: Header = serde_json::from_str(&line)
        .with_context(|| format!("the box's supervisor answered {line:?}"))?;
    if let Some(e) = header.error {
        bail!("{verb}: {e}");
    }
    if verb == ctl::ATTACH {
        let mut rest = String::new();
        reader.read_to_string(&mut rest)?;
        return attach(&rest);
    }
    let mut stdout = std::io::stdout().lock();
    std::io::copy(&mut reader, &mut stdout)?;
    stdout.flush()?;
    if verb == ctl::EXPORT {
        writeln!(ack, "{EXPORT_ACK}").context("cannot acknowledge the export")?;
    }
    Ok(0)
}

/// Runs `airlock attach` as the session's user (the same relay a local attach uses).
fn attach(info: &str) -> Result<i32> {
    #[derive(Deserialize)]
    struct Info {
        session: String,
        uid: u32,
        gid: u32,
        home: PathBuf,
    }
    let info: Info = serde_json::from_str(info.trim()).context("bad attach answer")?;
    let exe = std::fs::canonicalize("/proc/self/exe").context("cannot find the airlock binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["attach", &info.session]);
    let agent = Agent {
        uid: info.uid,
        gid: info.gid,
        home: info.home,
    };
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
    agent_env(&mut cmd, &agent);
    cmd.env("TERM", term);
    Err(anyhow::Error::new(cmd.exec()).context("cannot run airlock attach"))
}

/// An error for the box's own log (what `podman logs`, `kubectl logs` and `fly logs` print to
/// the user's terminal): the names in it are the agent's (an export's file, a refused entry), so
/// control characters are shown as `cat -v` does ([`airlock_session::quote::visible`], the
/// helper the review commands use).
fn log_text(e: &anyhow::Error) -> String {
    airlock_session::quote::visible(&format!("{e:#}")).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(creds: &[&str]) -> BoxSpec {
        let mut policy = airlock_policy::Policy::from_layers(&[]).expect("policy");
        for c in creds {
            let c: airlock_policy::CredentialConfig = serde_json::from_value(serde_json::json!({
                "name": c, "env": "X", "hosts": ["h.test"],
            }))
            .expect("credential");
            policy.credentials.push(c);
        }
        BoxSpec {
            version: airlock_remote::SPEC_VERSION,
            session: "abcd1234".into(),
            name: "t".into(),
            agent: "shell".into(),
            argv: Vec::new(),
            env: Vec::new(),
            policy,
            workspace: WorkspaceSource::Upload,
            tty: false,
            stdin: false,
            policy_secrets: Vec::new(),
        }
    }

    #[test]
    fn a_sandbox_that_cannot_be_built_in_the_box_names_the_setting() {
        for (log, want) in [
            (
                "airlock: cannot set the hostname: EPERM",
                "seccomp=unconfined",
            ),
            (
                "airlock: cannot mount proc on /proc: EPERM",
                "unmask=/proc/*",
            ),
            (
                "airlock: cannot mount overlay on /workspace: EINVAL",
                "tmpfs",
            ),
        ] {
            assert!(box_hint(log).contains(want), "{log}");
        }
        assert_eq!(box_hint("command not found"), "");
    }

    #[test]
    fn secrets_must_match_the_credentials_one_to_one() {
        let t = tempfile::tempdir().expect("tmp");
        std::fs::write(t.path().join("demo"), "s3cret").expect("write");
        // Kubernetes Secret volumes hold dot entries: skipped.
        std::fs::create_dir(t.path().join("..data")).expect("dot dir");
        let got = read_secrets(t.path(), &spec(&["demo"])).expect("secrets");
        assert_eq!(got, vec![("demo".to_string(), b"s3cret".to_vec())]);
        let e = read_secrets(t.path(), &spec(&["demo", "other"])).expect_err("missing");
        assert!(
            e.to_string().contains("credential other: no secret file"),
            "{e}"
        );
        let e = read_secrets(t.path(), &spec(&[])).expect_err("stray");
        assert!(e.to_string().contains("names no credential"), "{e}");
    }

    #[test]
    fn the_box_policy_reads_each_credential_from_its_private_copy() {
        let t = tempfile::tempdir().expect("tmp");
        let agent = Agent {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            home: t.path().to_path_buf(),
        };
        let secrets = vec![("demo".to_string(), b"s3cret".to_vec())];
        let path = box_policy(&spec(&["demo"]), &secrets, t.path(), &agent).expect("policy");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("s3cret"), "the secret is in the policy file");
        let p: airlock_policy::Policy = serde_json::from_str(&text).expect("json");
        let c = &p.credentials[0];
        assert_eq!(c.env, None);
        assert_eq!(c.placeholder_env.as_deref(), Some("X"));
        let file = c.file.as_deref().expect("file");
        assert_eq!(std::fs::read(file).expect("copy"), b"s3cret");
        let mode = std::fs::metadata(file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
    }
}
