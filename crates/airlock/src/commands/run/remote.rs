//! `airlock run --backend k8s|fly|podman-box`: the session in a box under `airlock serve`,
//! driven through the engine (docs/remote.md). After [`super::resolve::resolve`], instead of
//! planning a local sandbox:
//!
//! 1. `request`: the [`BoxRequest`] from the resolved request (the merged policy with every
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

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use airlock_policy::Policy;
use airlock_remote::archive::{self, Content};
use airlock_remote::{
    ctl, layout, BoxLimits, BoxRequest, BoxSecret, BoxSpec, BoxState, BoxStatus, Engine, ExecInput,
    WorkspaceSource, SPEC_VERSION,
};
use airlock_sandbox::{Progress, RunningSandbox as _, SandboxError};
use airlock_session::{BackendKind, SessionRow, SessionState};
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use super::resolve::Request;
use crate::backends::{self, EngineOptions};
use crate::cli::RunArgs;
use crate::exit::{with_code, FAILURE};
use crate::gitclone::{CloneRecord, CloneSource};
use crate::session_dir;

/// Runs the session remotely; returns the command's exit status.
pub(super) fn run(args: &RunArgs, request: Request, kind: BackendKind) -> Result<i32> {
    let session = super::new_session_id();
    let clone = clone_source(args, &request)?;
    let req = request_for(args, &request, kind, &session, clone.as_ref())?;
    let opts = EngineOptions::for_run(args, &request.policy);
    let mut engine = backends::engine(kind, &opts).map_err(|e| with_code(FAILURE, e))?;
    if args.dry_run {
        writeln!(std::io::stdout(), "{}", engine.render(&req)?)?;
        return Ok(0);
    }
    let dir = session_dir::create(&session)?;
    let store = session_dir::store()?;
    store.insert(&row(args, &request, kind, &session, &dir))?;
    // A session whose command never started leaves no row (as a local one whose sandbox could
    // not be set up): there is nothing to review, attach to or read, and the error is printed.
    let never_started = |e: anyhow::Error| {
        let _ = store.delete(&session);
        let _ = std::fs::remove_dir_all(&dir);
        with_code(FAILURE, e)
    };
    let at = engine.create(&req).map_err(|e| never_started(anyhow!(e)))?;
    store.set_location(&session, &at)?;
    let failed = |e: anyhow::Error| {
        let _ = store.finish(
            &session,
            SessionState::Failed,
            Some(FAILURE),
            &airlock_audit::now_rfc3339(),
        );
        with_code(FAILURE, e)
    };
    let arrived = match &clone {
        Some(src) => clone_in_box(engine.as_ref(), &at, src).and_then(|rec| {
            rec.save(&dir)?;
            store.set_base_commit(&session, &rec.commit)?;
            Ok(())
        }),
        None => upload(engine.as_ref(), &at, &request),
    };
    if let Err(e) = arrived {
        if let Err(d) = engine.delete(&at) {
            eprintln!("airlock: warning: {d}");
            return Err(failed(e));
        }
        return Err(never_started(e));
    }
    if args.detach {
        let name = args.name.clone().unwrap_or_else(|| session.clone());
        println!("session {session} started in a {kind} box ({at})");
        println!("  attach:  airlock attach {name}");
        println!("  stop:    airlock stop {name}");
        return Ok(0);
    }
    // The waiter's own connection (an engine is not shared between threads); made before the
    // box is handed over, so a failure here still deletes it.
    let waiter = match backends::engine(kind, &opts) {
        Ok(w) => w,
        Err(e) => {
            let _ = engine.delete(&at);
            return Err(failed(e));
        }
    };
    // The input's own connection too, when the command reads the local standard input.
    let feeder = if req.spec.stdin {
        match backends::engine(kind, &opts) {
            Ok(f) => Some(f),
            Err(e) => {
                let _ = engine.delete(&at);
                return Err(failed(e));
            }
        }
    } else {
        None
    };
    let sandbox = RemoteBox::start(
        engine,
        waiter,
        feeder,
        at.clone(),
        dir.clone(),
        req.spec.tty,
        args.keep,
    )
    .map_err(|e| failed(anyhow!(e)))?;
    let mut filter = airlock_sandbox::termfilter::TermFilter::new(
        airlock_sandbox::termfilter::FilterConfig::live(false),
    );
    let status = airlock_sandbox::supervise::supervise(Box::new(sandbox), None, &mut filter);
    super::super::detach::audit_terminal(&dir.join("audit.jsonl"), &session, "attach", &filter);
    let code = status.map_err(|e| failed(anyhow!(e)))?;
    if args.keep {
        // Listed by `ls` (it holds resources) until `airlock rm` deletes it.
        std::fs::write(dir.join(super::super::session::BOX_KEPT), &at)
            .with_context(|| format!("cannot write {}", dir.display()))?;
        eprintln!("airlock: the box {at} is kept; `airlock rm {session}` deletes it");
    }
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

/// The box request: everything `airlock serve` needs, secrets apart.
fn request_for(
    args: &RunArgs,
    request: &Request,
    kind: BackendKind,
    session: &str,
    clone: Option<&CloneSource>,
) -> Result<BoxRequest> {
    if args.mode != crate::cli::Mode::Overlay {
        bail!("--backend {kind} works on an overlay of the uploaded tree: drop --mode");
    }
    let tty = !args.detach
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stdout());
    // Input on a pipe or from a file goes to the box's command (`ctl stdin`); a terminal's
    // goes through the attach.
    let stdin = !args.dry_run && !args.detach && !tty && stdin_holds_input();
    if stdin && kind == BackendKind::Fly {
        bail!(
            "--backend fly cannot pass standard input to the box's command: the Machines API's \
             exec takes its whole input in one request and no stream; put the input in a file \
             in the workspace (it is uploaded) and read it from there, or use --backend k8s"
        );
    }
    if kind == BackendKind::Fly && args.keep {
        let mode = args
            .fly_flags()
            .mode
            .or(request.policy.fly.mode)
            .unwrap_or(airlock_remote::fly::FlyMode::Ephemeral);
        if mode == airlock_remote::fly::FlyMode::Ephemeral {
            bail!(
                "--keep with --backend fly needs --fly-mode standby (or [fly] mode = \"standby\"): \
                 an ephemeral machine destroys itself once its command has ended"
            );
        }
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
        if config
            .name
            .starts_with(airlock_remote::policy_secrets::PREFIX)
        {
            bail!(
                "credential {:?}: names starting with {:?} are the box's own (policy values that carry secrets); rename it",
                config.name,
                airlock_remote::policy_secrets::PREFIX
            );
        }
        secrets.push(BoxSecret {
            name: config.name.clone(),
            value: secret.into_bytes(),
        });
        policy.credentials.push(config);
    }
    // The webhook URL and literal telemetry headers travel as secrets, never in the spec
    // (an environment variable of the box, and the --dry-run output).
    let policy_secrets = airlock_remote::policy_secrets::split(&mut policy);
    let policy_secret_names = policy_secrets.iter().map(|s| s.name.clone()).collect();
    secrets.extend(policy_secrets);
    let limits = &policy.limits;
    let image = backends::box_image(kind, args.image.as_deref(), &policy)?;
    Ok(BoxRequest {
        spec: BoxSpec {
            version: SPEC_VERSION,
            session: session.to_string(),
            name: args.name.clone().unwrap_or_else(|| session.to_string()),
            agent: airlock_session::AgentKind::from(args.agent).to_string(),
            argv: args.command.clone(),
            env: Vec::new(),
            workspace: match clone {
                Some(c) => WorkspaceSource::Git {
                    url: c.url.clone(),
                    rev: c.rev.clone(),
                    max_bytes: args
                        .clone_max_size
                        .as_deref()
                        .map(airlock_policy::size::parse_size)
                        .transpose()
                        .map_err(|e| anyhow!("--clone-max-size: {e}"))?,
                },
                None => WorkspaceSource::Upload,
            },
            tty: tty || args.detach,
            stdin,
            policy: policy.clone(),
            policy_secrets: policy_secret_names,
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

/// The store row of a remote session that is starting (the box is its supervisor; a
/// foreground run's pid is recorded so `airlock stop` reaches the run that collects the end).
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
        // A foreground run is the session's local end: `airlock stop` signals it (as a local
        // supervisor) so the run itself brings the results home; a detached one has none.
        supervisor_pid: (!args.detach).then(std::process::id),
        supervisor_start: (!args.detach)
            .then(|| airlock_session::store::process_start(std::process::id()))
            .flatten(),
        dir: dir.to_path_buf(),
        base_commit: airlock_session::gitview::agent_head(&dir.join("upper"), &request.workspace),
        merged: false,
    }
}

/// Text the box chose (a verb's stderr, a status's error), ready for an error message: control
/// characters shown as `cat -v` does ([`airlock_session::quote::visible`]), so it cannot drive
/// the user's terminal.
pub(crate) fn box_text(text: &str) -> String {
    airlock_session::quote::visible(text.trim()).into_owned()
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
            box_text(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(out.stdout)
}

/// The policy's hidden paths (`[filesystem] hide` and the built-in list, `~` expanded, both the
/// spelling and what it resolves to) that are inside `workspace`, relative to it: what a
/// local session hides must not leave this machine for a box (docs/remote.md, "Hidden paths").
///
/// # Errors
/// A hide entry that is neither absolute nor `~/`-relative.
fn hidden_in_workspace(policy: &Policy, home: &Path, workspace: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for h in &policy.hide {
        let p = crate::view::expand(h, home)?;
        let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        for candidate in [p, real] {
            if let Ok(rel) = candidate.strip_prefix(workspace) {
                if rel.as_os_str().is_empty() {
                    bail!(
                        "[filesystem] hide names the workspace itself ({h}): nothing could be uploaded; run elsewhere or drop the entry"
                    );
                }
                out.push(rel.to_path_buf());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The workspace tar `tar` without the entries at or under any of `hidden` (relative paths).
///
/// # Errors
/// The archive cannot be read back or rewritten.
fn without_hidden(tar: &[u8], hidden: &[PathBuf]) -> Result<Vec<u8>> {
    if hidden.is_empty() {
        return Ok(tar.to_vec());
    }
    let mut reader = tar::Archive::new(tar);
    let mut out = tar::Builder::new(Vec::new());
    out.follow_symlinks(false);
    for entry in reader.entries().context("cannot read the upload back")? {
        let mut entry = entry.context("cannot read the upload back")?;
        let path = entry.path().context("an upload entry's path")?.into_owned();
        let rel = path.strip_prefix("./").unwrap_or(&path).to_path_buf();
        if hidden.iter().any(|h| rel.starts_with(h)) {
            continue;
        }
        let mut header = entry.header().clone();
        match header.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .context("an upload link's target")?
                    .map(std::borrow::Cow::into_owned)
                    .unwrap_or_default();
                out.append_link(&mut header, &rel, &target)
            }
            _ => out.append_data(&mut header, &rel, &mut entry),
        }
        .with_context(|| format!("cannot rewrite the upload at {}", rel.display()))?;
    }
    out.into_inner().context("cannot finish the upload")
}

/// The checked `--clone` address, refused before anything is created when it is not https,
/// carries a token, or names a host the session's policy does not allow.
fn clone_source(args: &RunArgs, request: &Request) -> Result<Option<CloneSource>> {
    let Some(text) = args.clone.as_deref() else {
        return Ok(None);
    };
    let src = crate::gitclone::parse(text).map_err(|e| with_code(FAILURE, e))?;
    let network = airlock_policy::network::NetworkPolicy::compile(&request.policy.network)
        .map_err(|e| with_code(FAILURE, anyhow!("the session's [network] policy: {e}")))?;
    crate::gitclone::check_allowed(&network, &src).map_err(|e| with_code(FAILURE, e))?;
    if args.dry_run {
        eprintln!(
            "airlock: dry run: the box would clone {}{} through its proxy (no upload of {})",
            src.url,
            src.rev
                .as_deref()
                .map(|r| format!(" at {r}"))
                .unwrap_or_default(),
            request.workspace.display()
        );
    }
    Ok(Some(src))
}

/// Has `airlock serve` clone the workspace (`ctl clone`), passing git's progress on to stderr
/// as it arrives; returns the record of what was checked out.
fn clone_in_box(engine: &dyn Engine, at: &str, src: &CloneSource) -> Result<CloneRecord> {
    let stream = engine.exec_stream(
        &at.to_string(),
        &ctl_argv(ctl::CLONE),
        ExecInput::Bytes(Vec::new()),
    )?;
    let mut reader = std::io::BufReader::new(stream);
    let mut result = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        // A line at most 64 KiB (git's progress lines are short): a box cannot make this
        // process hold more.
        let n = std::io::BufRead::read_until(&mut (&mut reader).take(64 << 10), b'\n', &mut line)
            .with_context(|| format!("`airlock serve ctl clone` in box {at} broke off"))?;
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if let Some(json) = text.strip_prefix(airlock_remote::CLONE_RESULT_PREFIX) {
            result = Some(
                serde_json::from_str::<airlock_remote::CloneResult>(json)
                    .context("the box answered `ctl clone` with something else than a result")?,
            );
        } else if !text.is_empty() {
            eprintln!("airlock: {}", box_text(text));
        }
    }
    let end = reader.into_inner().finish()?;
    if end.status != 0 {
        bail!(
            "{} box {at}: `airlock serve ctl clone` failed ({}): {}",
            engine.name(),
            end.status,
            box_text(&String::from_utf8_lossy(&end.stderr))
        );
    }
    match result {
        Some(airlock_remote::CloneResult {
            commit: Some(commit),
            ..
        }) if commit.len() >= 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()) => {
            eprintln!("airlock: cloned {} at {commit}", src.url);
            Ok(CloneRecord {
                url: src.url.clone(),
                rev: src.rev.clone(),
                commit,
            })
        }
        Some(airlock_remote::CloneResult { error: Some(e), .. }) => bail!("{}", box_text(&e)),
        _ => bail!(
            "{} box {at}: `airlock serve ctl clone` ended without a result",
            engine.name()
        ),
    }
}

/// Uploads the workspace (without its hidden paths) and checks that the box's session started.
fn upload(engine: &dyn Engine, at: &str, request: &Request) -> Result<()> {
    let workspace = request.workspace.as_path();
    let mut tar = Vec::new();
    let skipped = archive::write_tree(workspace, &mut tar, Content::Workspace)?;
    for s in skipped {
        eprintln!(
            "airlock: upload: {} left out (not a file, directory or link)",
            airlock_session::quote::path(&s)
        );
    }
    let hidden = hidden_in_workspace(&request.policy, &request.who.home, workspace)?;
    let tar = without_hidden(&tar, &hidden)?;
    ctl(engine, at, ctl::RECEIVE, &tar)?;
    let status = status(engine, at)?;
    if status.state == BoxState::Failed {
        bail!(
            "the box's session failed: {}",
            box_text(&status.error.unwrap_or_default())
        );
    }
    Ok(())
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
    let mut filter = airlock_sandbox::termfilter::TermFilter::new(
        airlock_sandbox::termfilter::FilterConfig::live(false),
    );
    airlock_sandbox::console::relay_attached(&stream, &control, &mut filter)?;
    super::super::detach::audit_terminal(&dir.join("audit.jsonl"), "remote", "attach", &filter);
    Ok(())
}

/// Bytes of the box's audit log, and of its output, brought home at most; what is over is
/// left in the box (with a note at the end of the copy and a warning).
const MAX_COPIED_LOG: u64 = 256 << 20;

/// Copies the audit log and the output into the session directory and imports the changes
/// (the last verb: the box may end after it); prints the output when `print`. Every one is
/// read as it arrives (never whole in memory, red-team X1), the change layer into the
/// session's upper layer within the import limits ([`archive::import_stream`]).
pub(crate) fn collect(engine: &dyn Engine, at: &str, dir: &Path, print: bool) -> Result<()> {
    copy_verb(engine, at, ctl::AUDIT, &dir.join("audit.jsonl"))?;
    std::fs::create_dir_all(dir.join("tmux"))?;
    let log = dir.join("tmux").join("agent.log");
    copy_verb(engine, at, ctl::LOGS, &log)?;
    if print && !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        // The one output path for the box's bytes (filtered on a terminal, as is when piped).
        let mut f =
            std::fs::File::open(&log).with_context(|| format!("cannot read {}", log.display()))?;
        std::io::copy(&mut f, &mut crate::review_out::ReviewOut::stdout())?;
    }
    let upper = dir.join("upper");
    if upper.exists() {
        airlock_session::tree::remove_all(&upper)
            .with_context(|| format!("cannot replace {}", upper.display()))?;
    }
    let limits = archive::Limits::changes_from_env().map_err(anyhow::Error::msg)?;
    let stream = engine.exec_stream(
        &at.to_string(),
        &ctl_argv(ctl::EXPORT),
        ExecInput::Bytes(Vec::new()),
    )?;
    archive::import_stream(stream, &upper, &limits).with_context(|| {
        format!(
            "the changes of box {at} were refused; nothing was imported into {}",
            upper.display()
        )
    })?;
    Ok(())
}

/// Copies what control verb `verb` prints into a new file `path` as it arrives, at most
/// [`MAX_COPIED_LOG`] bytes (then a note and a warning: the rest stays in the box).
fn copy_verb(engine: &dyn Engine, at: &str, verb: &str, path: &Path) -> Result<()> {
    let mut stream = engine.exec_stream(
        &at.to_string(),
        &ctl_argv(verb),
        ExecInput::Bytes(Vec::new()),
    )?;
    let _ = std::fs::remove_file(path);
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let n = std::io::copy(&mut (&mut stream).take(MAX_COPIED_LOG), &mut f)
        .with_context(|| format!("`airlock serve ctl {verb}` in box {at} broke off"))?;
    if n == MAX_COPIED_LOG && stream.read(&mut [0u8; 1])? > 0 {
        // Dropping the stream ends the exec.
        drop(stream);
        writeln!(
            f,
            "\n[airlock: cut at {MAX_COPIED_LOG} bytes; the rest stays in the box]"
        )?;
        eprintln!(
            "airlock: warning: `airlock serve ctl {verb}` of box {at} printed more than {MAX_COPIED_LOG} bytes; {} holds the first",
            path.display()
        );
        return Ok(());
    }
    let end = stream.finish()?;
    if end.status != 0 {
        bail!(
            "{} box {at}: `airlock serve ctl {verb}` failed ({}): {}",
            engine.name(),
            end.status,
            box_text(&String::from_utf8_lossy(&end.stderr))
        );
    }
    Ok(())
}

/// A foreground session's box as the supervisor's loop ([`airlock_sandbox::supervise`]) sees
/// it, so a remote run gets its signals, window size and terminal from the same loop as every
/// other backend:
/// - events: a pipe that a waiting thread closes when `ctl wait` (on its own engine
///   connection) returns the box's final status; nothing is polled on a timer;
/// - signals: INT, TERM, HUP and QUIT stop the box's command (`ctl stop`, which ends it with
///   SIGTERM); USR1 and USR2 are not passed (refused with the reason);
/// - terminal: `ctl attach` on the engine's tty exec (a stream, not a pty master, so window
///   sizes go through [`airlock_remote::TtyExec::resize`]);
/// - finish: the audit log, the output and the changes brought home ([`collect`]), then the
///   box deleted unless `--keep`; the command's own status.
///
/// Dropping it unfinished deletes the box (nothing left running or billed).
/// Passes a window size (columns, rows) to the box's terminal.
type Resize = Box<dyn Fn(u16, u16) -> Result<(), airlock_remote::RemoteError> + Send>;

struct RemoteBox {
    engine: Box<dyn Engine>,
    at: String,
    dir: std::path::PathBuf,
    keep: bool,
    terminal: Option<OwnedFd>,
    /// [`airlock_remote::TtyExec::resize`] of the attach.
    resizer: Option<Resize>,
    /// Read end of the waiter's pipe: end of file once `result` is set.
    wake: OwnedFd,
    result: std::sync::Arc<std::sync::Mutex<Option<Result<BoxStatus, String>>>>,
    events_open: bool,
    waiter: Option<std::thread::JoinHandle<()>>,
    /// The box was deleted or handed back (`--keep`): dropping does nothing more.
    done: bool,
}

impl std::fmt::Debug for RemoteBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBox")
            .field("engine", &self.engine.name())
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// What a box backend failure becomes for the supervisor (exit status 125).
fn box_error(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(e.to_string())
}

impl RemoteBox {
    /// Starts the waiter on `waiter` and, with `tty`, the attach; `engine` is kept for
    /// `ctl stop`, the collection and the deletion. On error the box is deleted.
    fn start(
        engine: Box<dyn Engine>,
        waiter: Box<dyn Engine>,
        feeder: Option<Box<dyn Engine>>,
        at: String,
        dir: std::path::PathBuf,
        tty: bool,
        keep: bool,
    ) -> Result<RemoteBox, SandboxError> {
        let (wake, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| box_error(format!("cannot create a pipe: {e}")))?;
        let result = std::sync::Arc::new(std::sync::Mutex::new(None));
        let mut rbox = RemoteBox {
            engine,
            at,
            dir,
            keep,
            terminal: None,
            resizer: None,
            wake,
            result: result.clone(),
            events_open: true,
            waiter: None,
            done: false,
        };
        let at = rbox.at.clone();
        rbox.waiter = Some(
            std::thread::Builder::new()
                .name("airlock-box-wait".into())
                .spawn(move || {
                    let st = ctl(waiter.as_ref(), &at, ctl::WAIT, &[]).and_then(|out| {
                        serde_json::from_slice::<BoxStatus>(&out).context(
                            "the box answered `ctl wait` with something else than a status",
                        )
                    });
                    if let Ok(mut slot) = result.lock() {
                        *slot = Some(st.map_err(|e| format!("{e:#}")));
                    }
                    drop(w);
                })
                .map_err(|e| box_error(format!("cannot start a thread: {e}")))?,
        );
        if let Some(feeder) = feeder {
            pass_stdin(feeder, rbox.at.clone())?;
        }
        if tty {
            let (rows, cols) = airlock_sandbox::term::terminal_size().unwrap_or((24, 80));
            let exec = rbox
                .engine
                .exec_tty(&rbox.at, &ctl_argv(ctl::ATTACH), cols, rows)
                .map_err(box_error)?;
            rbox.terminal = Some(exec.stream.into());
            rbox.resizer = Some(exec.resize);
        }
        Ok(rbox)
    }

    /// The final status's exit status, with the session's results brought home.
    fn conclude(&mut self) -> Result<i32, SandboxError> {
        let taken = self.result.lock().ok().and_then(|mut r| r.take());
        let st = match taken {
            Some(Ok(st)) => st,
            Some(Err(e)) => return Err(box_error(e)),
            None => {
                return Err(box_error(format!(
                    "box {} ended without reporting the command's status",
                    self.at
                )))
            }
        };
        if st.state == BoxState::Failed {
            return Err(box_error(format!(
                "the box's session failed: {}",
                box_text(&st.error.unwrap_or_default())
            )));
        }
        collect(self.engine.as_ref(), &self.at, &self.dir, true)
            .map_err(|e| box_error(format!("{e:#}")))?;
        Ok(st.exit_status.unwrap_or(FAILURE))
    }
}

impl airlock_sandbox::RunningSandbox for RemoteBox {
    fn enforcement(&self) -> String {
        format!(
            "airlock serve in the {} box {} (native sandbox inside)",
            self.engine.name(),
            self.at
        )
    }

    fn location(&self) -> Option<String> {
        Some(self.at.clone())
    }

    fn take_listeners(&mut self) -> Option<airlock_sandbox::launch::NetFds> {
        None
    }

    fn take_terminal(&mut self) -> Option<OwnedFd> {
        self.terminal.take()
    }

    fn resize(&self, rows: u16, cols: u16) {
        if let Some(r) = &self.resizer {
            let _ = r(cols, rows);
        }
    }

    fn exec_handle(&self) -> Result<airlock_sandbox::launch::ExecHandle, SandboxError> {
        Err(box_error(format!(
            "the {} box {} is reached through its engine: `airlock attach` runs `airlock serve ctl attach` there",
            self.engine.name(),
            self.at
        )))
    }

    fn events(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    fn on_events(&mut self, readable: bool) -> Progress {
        if readable && self.events_open {
            let mut b = [0u8; 1];
            match nix::unistd::read(&self.wake, &mut b) {
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                _ => self.events_open = false,
            }
        }
        let ended = self.result.lock().map(|r| r.is_some()).unwrap_or(true);
        Progress {
            ended,
            events_open: self.events_open,
        }
    }

    fn signal(&self, signal: Signal) -> Result<(), SandboxError> {
        if !matches!(
            signal,
            Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT
        ) {
            return Err(box_error(format!(
                "{signal} is not passed to a box's command (only INT, TERM, HUP and QUIT, which stop it)"
            )));
        }
        if self.result.lock().map(|r| r.is_some()).unwrap_or(true) {
            return Ok(());
        }
        eprintln!("airlock: {signal} received: stopping the box's command");
        ctl(self.engine.as_ref(), &self.at, ctl::STOP, &[])
            .map(|_| ())
            .map_err(|e| box_error(format!("cannot stop the box's command: {e:#}")))
    }

    fn stop(&mut self) {
        if !self.done {
            self.done = true;
            if let Err(e) = self.engine.delete(&self.at) {
                eprintln!("airlock: warning: {e}");
            }
        }
    }

    fn finish(mut self: Box<Self>) -> Result<i32, SandboxError> {
        if let Some(w) = self.waiter.take() {
            // The result is in (or the box is being given up): the thread has returned or
            // returns once the box is deleted.
            if self.result.lock().map(|r| r.is_some()).unwrap_or(false) {
                let _ = w.join();
            }
        }
        let code = self.conclude();
        if code.is_ok() && self.keep {
            self.done = true;
        }
        self.stop();
        code
    }
}

impl Drop for RemoteBox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Passes this process's standard input to the box's command (`ctl stdin` on `engine`'s
/// exec, its standard input the local one, read as it arrives) on a thread of its own; a
/// failure is a warning (the command then sees end of file).
fn pass_stdin(engine: Box<dyn Engine>, at: String) -> Result<(), SandboxError> {
    std::thread::Builder::new()
        .name("airlock-box-stdin".into())
        .spawn(move || {
            let r = engine
                .exec_stream(
                    &at,
                    &ctl_argv(ctl::STDIN),
                    ExecInput::Reader(Box::new(std::io::stdin())),
                )
                .and_then(|s| s.collect(airlock_remote::MAX_EXEC_OUTPUT));
            let failed = match r {
                Ok((_, end)) if end.status == 0 => None,
                Ok((_, end)) => Some(box_text(&String::from_utf8_lossy(&end.stderr))),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failed {
                eprintln!("airlock: warning: the standard input was not passed to box {at}: {why}");
            }
        })
        .map(|_| ())
        .map_err(|e| box_error(format!("cannot start a thread: {e}")))
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
