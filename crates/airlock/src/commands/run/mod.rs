//! `airlock run` as a pipeline of named steps, each reading only what the one before produced:
//!
//! 1. [`resolve::resolve`]: the request (flags, workspace, policy, credentials, agent), checked
//!    before anything is created;
//! 2. [`plan::plan`]: the session (id, limits on the backend, the complete `SandboxSpec`);
//! 3. [`prepare`]: the session directory, credential files, overlay layers and store row;
//! 4. [`launch`]: the sandbox, started by the session's [`airlock_sandbox::Backend`];
//! 5. [`supervise::supervise`]: egress on the sandbox's listeners, the audit log, reloads,
//!    the control socket, the terminal and signals until the command exits;
//! 6. [`finish`]: the store row, the worktree, the hint, the exit status.
//!
//! A remote backend (`k8s`, `fly`, `podman-box`) leaves after step 1 for [`remote::run`]: the
//! box's `airlock serve` runs this same pipeline inside.

mod agent;
mod plan;
pub(crate) mod remote;
mod resolve;
mod supervise;

use airlock_sandbox::{RunningSandbox, SandboxError, SessionContext};
use std::io::Write as _;

use airlock_session::{SessionMode, SessionRow, SessionState, Store};
use anyhow::{Context, Result};

use crate::backends;
use crate::cli::RunArgs;
use crate::exit::{code_of, with_code};
use crate::session_dir;
use crate::worktree;
use plan::Plan;

/// The hidden init stage (`airlock __sandbox-init`).
pub(crate) fn sandbox_init() -> i32 {
    airlock_sandbox::init_main()
}

/// A short random session id.
pub(crate) fn new_session_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..8)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

/// `airlock run`: the pipeline above; returns the command's exit status.
pub(crate) fn run(args: RunArgs) -> Result<i32> {
    // Before any thread exists: signals must queue for the supervisor, not kill it.
    airlock_sandbox::block_signals()?;
    let request = resolve::resolve(&args)?;
    let kind: airlock_session::BackendKind = args.backend.into();
    refuse_other_engines_flags(&args, kind)?;
    if kind.is_remote() {
        return remote::run(&args, request, kind);
    }
    // Checked after the request, so a background session that could not start is refused
    // here. A dry run prints the spec the background session would get and creates nothing.
    if args.detach && args.detached_child.is_none() && !args.dry_run {
        return super::detach::start(&args);
    }
    // The flags (or their variables) first, then the policy's `[container]`, which is for the
    // container backends: the native backend ignores it and refuses only the flags.
    let container =
        (kind != airlock_session::BackendKind::Native).then_some(&request.policy.container);
    let mut backend = backends::new(
        kind,
        &backends::Options {
            runtime: args
                .runtime
                .clone()
                .or_else(|| container.and_then(|c| c.runtime.clone())),
            image: args
                .image
                .clone()
                .or_else(|| container.and_then(|c| c.image.clone())),
        },
    )
    .map_err(|e| with_code(crate::exit::FAILURE, e))?;
    let plan = plan::plan(&args, request, backend.as_mut())?;
    if args.dry_run {
        writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&plan.spec)?
        )?;
        return Ok(0);
    }
    let mut plan = plan;
    let store = prepare(&mut plan)?;
    let (refusals_tx, refusals) = std::sync::mpsc::channel();
    let otel = plan.otel.take();
    let status = match launch(&plan, backend.as_mut(), &store, refusals_tx) {
        Err(e) if !plan.detached && crate::exit::code_of(&e) == crate::exit::FAILURE => {
            return Err(never_started(&plan, &store, e));
        }
        launched => {
            launched.and_then(|sandbox| supervise::supervise(&plan, sandbox, refusals, otel))
        }
    };
    finish(&plan, &store, status)
}

/// A foreground session whose sandbox could not be set up at all (exit status 125: an engine
/// that does not answer, a runtime or image that is missing, a kernel that refuses a
/// namespace): nothing ran, so there is nothing to review, attach to or read, and a `failed`
/// row would only wait for `airlock rm`. The row and the session directory are removed and the
/// error (printed once by `main`) is the whole record. A command that cannot be executed or is
/// not found (126, 127) did reach the sandbox and keeps its row; a background session keeps it
/// too (its starter reads the failure from it).
fn never_started(plan: &Plan, store: &Store, e: anyhow::Error) -> anyhow::Error {
    if let Some(wt) = &plan.worktree {
        finish_worktree(&plan.session, wt);
    }
    remove_overlay_scratch(plan);
    let removed = super::rm::remove_tree(&plan.dir).map(|_| store.delete(&plan.session));
    if !matches!(removed, Ok(Ok(()))) {
        let _ = store.finish(
            &plan.session,
            SessionState::Failed,
            Some(crate::exit::FAILURE),
            &airlock_audit::now_rfc3339(),
        );
    }
    e
}

/// Refuses the flags of an engine the run does not use (`--namespace`/`--context` are for
/// `--backend k8s`, `--fly-*` for `--backend fly`), so a mistyped backend is not a silent local
/// run.
fn refuse_other_engines_flags(args: &RunArgs, kind: airlock_session::BackendKind) -> Result<()> {
    use airlock_session::BackendKind;
    let flags = [
        ("--namespace", args.namespace.clone(), BackendKind::K8s),
        ("--context", args.context.clone(), BackendKind::K8s),
        ("--fly-app", args.fly_app.clone(), BackendKind::Fly),
        ("--fly-region", args.fly_region.clone(), BackendKind::Fly),
        (
            "--fly-mode",
            args.fly_mode.map(|m| {
                airlock_policy::config::FlyMode::from(m)
                    .as_str()
                    .to_string()
            }),
            BackendKind::Fly,
        ),
    ];
    if args.clone.is_some() && !kind.is_remote() {
        return Err(with_code(
            crate::exit::FAILURE,
            anyhow::anyhow!(
                "--clone is for the remote backends (--backend k8s|fly|podman-box), whose box \
                 clones the repository; for a session here, clone it yourself and run in it"
            ),
        ));
    }
    match flags
        .into_iter()
        .find(|(_, v, engine)| v.is_some() && *engine != kind)
    {
        Some((flag, Some(v), engine)) => Err(with_code(
            crate::exit::FAILURE,
            anyhow::anyhow!("{flag} {v} is for --backend {engine}; drop it for --backend {kind}"),
        )),
        _ => Ok(()),
    }
}

/// Creates what the session keeps on the host: its directory (the --detach output directory),
/// the credential files, the overlay's layers, and its row in the store (state `running`).
fn prepare(plan: &mut Plan) -> Result<Store> {
    // A background session keeps its output for `airlock logs`: never removed by itself.
    plan.bind_before = (plan.mode == SessionMode::Bind && !plan.detached)
        .then(|| super::ls::Snapshot::take(&plan.workspace));
    session_dir::create(&plan.session)?;
    if plan.detached {
        super::detach::create_output_dir(&plan.dir)?;
    }
    plan.creds.place(&plan.dir, &mut plan.spec)?;
    crate::caches::create_layers(&plan.dir, &plan.spec.overlays)?;
    crate::caches::keep_go_sum(&plan.dir, &plan.workspace, &plan.spec.overlays)?;
    if plan.mode == SessionMode::Overlay {
        for d in [plan.dir.join("upper"), plan.dir.join("work")] {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
    }
    let store = session_dir::store()?;
    store.insert(&session_row(plan))?;
    Ok(store)
}

/// The store row of a session that is starting.
fn session_row(plan: &Plan) -> SessionRow {
    let pid = std::process::id();
    SessionRow {
        id: plan.session.clone(),
        name: plan.name.clone(),
        workspace: plan.workspace.clone(),
        mode: plan.mode,
        backend: plan.backend,
        location: None,
        agent: plan.agent,
        policy_digest: plan.policy_digest.clone(),
        state: SessionState::Running,
        created: airlock_audit::now_rfc3339(),
        created_unix: unix_now(),
        ended: None,
        exit_status: None,
        supervisor_pid: Some(pid),
        supervisor_start: airlock_session::store::process_start(pid),
        dir: plan.dir.clone(),
        base_commit: airlock_session::gitview::agent_head(&plan.dir.join("upper"), &plan.workspace),
        merged: false,
    }
}

/// Starts the sandbox on the session's backend, which returns once the command has started,
/// and records where it runs (remote backends).
fn launch(
    plan: &Plan,
    backend: &mut dyn airlock_sandbox::Backend,
    store: &Store,
    unix_refusals: std::sync::mpsc::Sender<airlock_sandbox::unix_gate::UnixRefusal>,
) -> Result<Box<dyn RunningSandbox>> {
    let ctx = SessionContext {
        id: plan.session.clone(),
        dir: plan.dir.clone(),
        exe: plan.self_exe.clone(),
        unix_refusals: Some(unix_refusals),
    };
    let sandbox = backend.launch(&plan.spec, ctx).map_err(sandbox_error)?;
    tracing::info!(session = plan.session, enforcement = %sandbox.enforcement(), "sandbox ready");
    if let Some(at) = sandbox.location() {
        store.set_location(&plan.session, &at)?;
    }
    Ok(sandbox)
}

/// Records how the session ended, removes a clean worktree, removes the session itself when
/// asked (`--rm`) or when a bind-mode session did nothing, says how to review an overlay's
/// changes, and turns a failure into its exit status.
fn finish(plan: &Plan, store: &Store, status: Result<i32>) -> Result<i32> {
    let session = &plan.session;
    let (state, code) = match &status {
        Ok(c) => (SessionState::Exited, Some(*c)),
        Err(e) => (SessionState::Failed, Some(code_of(e))),
    };
    if let Err(e) = store.finish(session, state, code, &airlock_audit::now_rfc3339()) {
        eprintln!("airlock: warning: cannot record the end of session {session}: {e}");
    }
    if let Some(wt) = &plan.worktree {
        finish_worktree(session, wt);
    }
    remove_overlay_scratch(plan);
    let removed =
        super::ls::finish_session(store, session, plan.disposal, plan.bind_before.as_ref());
    let stderr_tty = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    if plan.mode == SessionMode::Overlay && status.is_ok() && stderr_tty && !removed {
        eprintln!(
            "airlock: session {session} ended; review with `airlock diff {session}`, land with `airlock merge {session}`"
        );
    }
    status
}

/// Deletes the overlays' scratch directories once the session has ended (the workspace's and
/// the caches' `work`; the kernel or a rootless engine leaves them mode 000, the engine's owned
/// by a subordinate uid): nothing reads them afterwards, and left there they make the session
/// directory undeletable by plain means. The layers themselves stay for diff, merge and
/// promote; a session started again makes a new `work`.
fn remove_overlay_scratch(plan: &Plan) {
    let mut scratch: Vec<std::path::PathBuf> =
        plan.spec.overlays.iter().map(|o| o.work.clone()).collect();
    if plan.mode == SessionMode::Overlay {
        scratch.push(plan.dir.join("work"));
    }
    for w in scratch.iter().filter(|w| w.exists()) {
        if let Err(e) = super::rm::remove_tree(w) {
            tracing::debug!(dir = %w.display(), "cannot delete the overlay's scratch: {e}");
        }
    }
}

/// Removes a clean worktree, or says why it was kept (loudly when its links were changed).
fn finish_worktree(session: &str, wt: &worktree::Worktree) {
    let (path, branch) = (wt.path.display(), &wt.branch);
    match worktree::finish(wt) {
        Ok(worktree::Outcome::Removed) => {}
        Ok(worktree::Outcome::Kept(why, review)) => {
            eprintln!(
                "airlock: session {session}: worktree kept at {path} (branch {branch}): {why}"
            );
            if !review.is_empty() {
                eprintln!("{}", worktree::review_warning(&wt.path, &review));
            }
        }
        Ok(worktree::Outcome::Tampered(what)) => {
            eprintln!("{}", worktree::tamper_warning(session, wt, &what));
            let review = worktree::review(wt);
            if !review.is_empty() {
                eprintln!("{}", worktree::review_warning(&wt.path, &review));
            }
        }
        Err(e) => eprintln!("airlock: session {session}: worktree {path} left in place: {e:#}"),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The first 16 hex digits of the SHA-256 of `bytes`: stable across runs, builds and toolchains
/// (std's `DefaultHasher` is not, and these values are stored on disk).
fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(bytes)[..8])
}

/// A sandbox error as the run's error, with its exit status (125, 126, 127).
fn sandbox_error(e: SandboxError) -> anyhow::Error {
    let code = e.exit_code();
    with_code(code, anyhow::Error::new(e))
}
