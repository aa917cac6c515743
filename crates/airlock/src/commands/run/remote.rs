//! `airlock run --backend k8s|fly|podman-box`: the session in a box under `airlock serve`,
//! driven through the engine (docs/remote.md). After [`super::resolve::resolve`], instead of
//! planning a local sandbox:
//!
//! 1. [`request`]: the [`BoxRequest`] from the resolved request (the merged policy with every
//!    loaded credential, whose secrets become [`BoxSecret`]s read here on the host; the agent,
//!    the command, the limits, the image);
//! 2. `--dry-run`: print `engine.render(req)` and stop (no engine is contacted);
//! 3. the store row (backend, and `location` once created), the box created, the workspace
//!    uploaded (`ctl receive`);
//! 4. attach (a terminal: `ctl attach` on the engine's tty exec) or wait (`ctl wait`); with
//!    `--detach`, return at once (`airlock attach` joins later);
//! 5. [`collect`]: the audit log, the output and the changes (`ctl export`, imported by
//!    [`airlock_remote::archive::import_changes`] into the session's upper layer, so `airlock
//!    diff`/`merge` work as for a local session), then the box deleted unless `--keep`.
//!
//! Any failure after the box was created deletes it (nothing left running or billed).

use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::Path;

use airlock_remote::archive::{self, Content};
use airlock_remote::{
    ctl, layout, BoxLimits, BoxRequest, BoxSecret, BoxSpec, BoxState, BoxStatus, Engine,
    WorkspaceSource, SPEC_VERSION,
};
use airlock_session::{BackendKind, SessionRow, SessionState};
use anyhow::{anyhow, bail, Context, Result};

use super::resolve::Request;
use crate::backends::{self, EngineOptions};
use crate::cli::RunArgs;
use crate::exit::{with_code, FAILURE};
use crate::session_dir;

/// Runs the session remotely; returns the command's exit status.
pub(super) fn run(args: &RunArgs, request: Request, kind: BackendKind) -> Result<i32> {
    let session = super::new_session_id();
    let req = request_for(args, &request, kind, &session)?;
    let mut engine = backends::engine(kind, &EngineOptions::for_run(args, &request.policy))
        .map_err(|e| with_code(FAILURE, e))?;
    if args.dry_run {
        writeln!(std::io::stdout(), "{}", engine.render(&req)?)?;
        return Ok(0);
    }
    let dir = session_dir::create(&session)?;
    let store = session_dir::store()?;
    store.insert(&row(args, &request, kind, &session, &dir))?;
    let at = match engine.create(&req) {
        Ok(at) => at,
        Err(e) => {
            let _ = store.finish(
                &session,
                SessionState::Failed,
                Some(FAILURE),
                &airlock_audit::now_rfc3339(),
            );
            return Err(with_code(FAILURE, anyhow!(e)));
        }
    };
    store.set_location(&session, &at)?;
    // Ctrl-C, `kill` or `timeout` stop the box's command, as they stop a local one.
    let _signals = (!args.detach)
        .then(|| StopOnSignal::start(kind, EngineOptions::for_run(args, &request.policy), &at))
        .transpose()?;
    let outcome = drive(
        args,
        engine.as_ref(),
        &at,
        &request.workspace,
        &dir,
        req.spec.tty,
    );
    let keep = args.keep || (args.detach && outcome.is_ok());
    let status = outcome.and_then(|st| match st {
        Some(st) => finish(engine.as_ref(), &at, &dir, &st),
        None => Ok(None),
    });
    if !keep || status.is_err() {
        if let Err(e) = engine.delete(&at) {
            eprintln!("airlock: warning: {e}");
        }
    }
    match status {
        Ok(None) => {
            let name = args.name.clone().unwrap_or_else(|| session.clone());
            println!("session {session} started in a {kind} box ({at})");
            println!("  attach:  airlock attach {name}");
            println!("  stop:    airlock stop {name}");
            Ok(0)
        }
        Ok(Some(code)) => {
            store.finish(
                &session,
                SessionState::Exited,
                Some(code),
                &airlock_audit::now_rfc3339(),
            )?;
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!("airlock: session {session} ended; review with `airlock diff {session}`, land with `airlock merge {session}`");
            }
            Ok(code)
        }
        Err(e) => {
            let _ = store.finish(
                &session,
                SessionState::Failed,
                Some(FAILURE),
                &airlock_audit::now_rfc3339(),
            );
            Err(with_code(FAILURE, e))
        }
    }
}

/// The box request: everything `airlock serve` needs, secrets apart.
fn request_for(
    args: &RunArgs,
    request: &Request,
    kind: BackendKind,
    session: &str,
) -> Result<BoxRequest> {
    if args.mode != crate::cli::Mode::Overlay {
        bail!("--backend {kind} works on an overlay of the uploaded tree: drop --mode");
    }
    if !args.dry_run && !args.detach && stdin_holds_input() {
        bail!(
            "--backend {kind} does not pass standard input to the box's command yet: put the \
             input in a file in the workspace (it is uploaded) and read it from there"
        );
    }
    if args.prompt.is_some() || args.prompt_file.is_some() {
        bail!("--prompt with --backend {kind} is not supported yet: give the command after --");
    }
    let mut policy = request.policy.clone();
    let mut secrets = Vec::new();
    policy.credentials.clear();
    for (config, secret) in request.creds.loaded() {
        if !airlock_remote::valid_secret_name(&config.name) {
            bail!(
                "credential {:?}: a remote box needs names of letters, digits, '_' and '-'; rename it",
                config.name
            );
        }
        secrets.push(BoxSecret {
            name: config.name.clone(),
            value: secret.into_bytes(),
        });
        policy.credentials.push(config);
    }
    let limits = &policy.limits;
    let image = backends::box_image(kind, args.image.as_deref(), &policy)?;
    let tty = !args.detach
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stdout());
    Ok(BoxRequest {
        spec: BoxSpec {
            version: SPEC_VERSION,
            session: session.to_string(),
            name: args.name.clone().unwrap_or_else(|| session.to_string()),
            agent: airlock_session::AgentKind::from(args.agent).to_string(),
            argv: args.command.clone(),
            env: Vec::new(),
            workspace: WorkspaceSource::Upload,
            tty: tty || args.detach,
            policy: policy.clone(),
        },
        image,
        secrets,
        limits: BoxLimits {
            memory_bytes: limits.memory_bytes,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            cpu_millis: limits.cpus.map(|c| (c * 1000.0).round().max(1.0) as u64),
            pids: limits.pids,
            disk_bytes: None,
        },
    })
}

/// The store row of a remote session that is starting (no local supervisor pid: the box is
/// its supervisor).
fn row(
    args: &RunArgs,
    request: &Request,
    kind: BackendKind,
    session: &str,
    dir: &Path,
) -> SessionRow {
    SessionRow {
        id: session.to_string(),
        name: args.name.clone(),
        workspace: request.workspace.clone(),
        mode: airlock_session::SessionMode::Overlay,
        backend: kind,
        location: None,
        agent: args.agent.into(),
        policy_digest: super::digest(
            serde_json::to_string(&request.policy)
                .unwrap_or_default()
                .as_bytes(),
        ),
        state: SessionState::Running,
        created: airlock_audit::now_rfc3339(),
        created_unix: super::unix_now(),
        ended: None,
        exit_status: None,
        supervisor_pid: None,
        supervisor_start: None,
        dir: dir.to_path_buf(),
        base_commit: airlock_session::gitview::agent_head(&dir.join("upper"), &request.workspace),
        merged: false,
    }
}

/// `airlock serve ctl VERB` in the box.
pub(crate) fn ctl_argv(verb: &str) -> Vec<String> {
    [layout::AIRLOCK, "serve", "ctl", verb]
        .map(String::from)
        .to_vec()
}

/// Runs a control verb; its stdout, or an error with its stderr.
pub(crate) fn ctl(engine: &dyn Engine, at: &str, verb: &str, stdin: &[u8]) -> Result<Vec<u8>> {
    let out = engine.exec(&at.to_string(), &ctl_argv(verb), stdin)?;
    if out.status != 0 {
        bail!(
            "{} box {at}: `airlock serve ctl {verb}` failed ({}): {}",
            engine.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Uploads the workspace, then attaches or waits; `None` for a detached session.
fn drive(
    args: &RunArgs,
    engine: &dyn Engine,
    at: &str,
    workspace: &Path,
    dir: &Path,
    tty: bool,
) -> Result<Option<BoxStatus>> {
    let mut tar = Vec::new();
    let skipped = archive::write_tree(workspace, &mut tar, Content::Workspace)?;
    for s in skipped {
        eprintln!(
            "airlock: upload: {} left out (not a file, directory or link)",
            s.display()
        );
    }
    ctl(engine, at, ctl::RECEIVE, &tar)?;
    let status = status(engine, at)?;
    if status.state == BoxState::Failed {
        bail!(
            "the box's session failed: {}",
            status.error.unwrap_or_default()
        );
    }
    if args.detach {
        return Ok(None);
    }
    if tty {
        attach(engine, at, dir)?;
    }
    let st: BoxStatus = serde_json::from_slice(&ctl(engine, at, ctl::WAIT, &[])?)
        .context("the box answered `ctl wait` with something else than a status")?;
    Ok(Some(st))
}

/// The box's status.
pub(crate) fn status(engine: &dyn Engine, at: &str) -> Result<BoxStatus> {
    serde_json::from_slice(&ctl(engine, at, ctl::STATUS, &[])?)
        .context("the box answered `ctl status` with something else than a status")
}

/// Relays the user's terminal to `ctl attach` in the box (through the same terminal filter as a
/// local attach) until tmux detaches or the session ends.
pub(crate) fn attach(engine: &dyn Engine, at: &str, dir: &Path) -> Result<()> {
    let (rows, cols) = airlock_sandbox::term::terminal_size().unwrap_or((24, 80));
    let tty = engine.exec_tty(&at.to_string(), &ctl_argv(ctl::ATTACH), cols, rows)?;
    let (control, _keep) = std::os::unix::net::UnixStream::pair()?;
    let stream: OwnedFd = tty.stream.into();
    let mut filter =
        airlock_sandbox::termfilter::TermFilter::new(airlock_sandbox::termfilter::FilterConfig {
            allow_clipboard: false,
            utf8: airlock_sandbox::term::locale_is_utf8(),
        });
    airlock_sandbox::console::relay_attached(&stream, &control, &mut filter)?;
    super::super::detach::audit_terminal(&dir.join("audit.jsonl"), "remote", "attach", &filter);
    Ok(())
}

/// Brings the session home: the audit log, the output, the changes; returns the exit status.
fn finish(engine: &dyn Engine, at: &str, dir: &Path, st: &BoxStatus) -> Result<Option<i32>> {
    if st.state == BoxState::Failed {
        bail!(
            "the box's session failed: {}",
            st.error.clone().unwrap_or_default()
        );
    }
    collect(engine, at, dir, true)?;
    Ok(Some(st.exit_status.unwrap_or(FAILURE)))
}

/// Copies the audit log and the output into the session directory and imports the changes
/// (the last verb: the box may end after it); prints the output when `print`.
pub(crate) fn collect(engine: &dyn Engine, at: &str, dir: &Path, print: bool) -> Result<()> {
    let audit = ctl(engine, at, ctl::AUDIT, &[])?;
    write_new(&dir.join("audit.jsonl"), &audit)?;
    let logs = ctl(engine, at, ctl::LOGS, &[])?;
    std::fs::create_dir_all(dir.join("tmux"))?;
    write_new(&dir.join("tmux").join("agent.log"), &logs)?;
    if print && !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        std::io::stdout().write_all(&logs)?;
    }
    let changes = ctl(engine, at, ctl::EXPORT, &[])?;
    let upper = dir.join("upper");
    if upper.exists() {
        std::fs::remove_dir_all(&upper)
            .with_context(|| format!("cannot replace {}", upper.display()))?;
    }
    archive::import_changes(&changes[..], &upper).with_context(|| {
        format!(
            "the changes of box {at} were refused; nothing was imported into {}",
            upper.display()
        )
    })?;
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Forwards the user's SIGINT, SIGTERM and SIGHUP to the box's command (`ctl stop`, which
/// ends it with SIGTERM) while a foreground remote session runs. `airlock run` blocked those
/// signals before anything else (they queue for the supervisor), and a remote run has no local
/// sandbox to deliver them to, so without this they would wait unread until the command ended.
/// The watching thread makes its own engine connection (an engine is not shared between
/// threads) and stops when this is dropped.
struct StopOnSignal {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StopOnSignal {
    fn start(kind: BackendKind, opts: EngineOptions, at: &str) -> Result<StopOnSignal> {
        use nix::sys::signal::{SigSet, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .context("cannot watch for signals (signalfd)")?;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, at) = (done.clone(), at.to_string());
        let thread = std::thread::spawn(move || {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(200u16));
                let Ok(Some(sig)) = sfd.read_signal() else {
                    continue;
                };
                eprintln!(
                    "airlock: signal {} received: stopping the box's command",
                    sig.ssi_signo
                );
                let stopped = backends::engine(kind, &opts)
                    .and_then(|e| ctl(e.as_ref(), &at, ctl::STOP, &[]).map(|_| ()));
                if let Err(e) = stopped {
                    eprintln!("airlock: warning: cannot stop the box's command: {e:#}");
                }
            }
        });
        Ok(StopOnSignal {
            done,
            thread: Some(thread),
        })
    }
}

impl Drop for StopOnSignal {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether standard input is a pipe or a file (input the user meant for the command), rather
/// than a terminal or `/dev/null`.
fn stdin_holds_input() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .map(|m| m.file_type().is_fifo() || m.file_type().is_file())
        .unwrap_or(false)
}
