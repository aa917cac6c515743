//! `airlock run`: resolve the policy, build the sandbox spec, start the sandbox (and, with
//! network, the egress services), supervise it, and exit with the command's status.

use std::sync::Arc;

use airlock_audit::{AuditEvent, AuditLog, Decision, Detail};
use airlock_net::{Egress, EgressConfig};
use airlock_policy::network::NetworkPolicy;
use airlock_policy::{ConfigFile, LimitsConfig, NetworkConfig, Policy};
use airlock_sandbox::cgroup::{Cgroup, CgroupLimits};
use airlock_sandbox::termfilter::{FilterConfig, TermFilter};
use airlock_sandbox::{
    GeneratedFile, LaunchOptions, NetListeners, Sandbox, SandboxError, TtySpec, WorkspaceView,
};
use anyhow::{anyhow, bail, Context, Result};

use crate::cli::{Backend, Mode, RunArgs};
use crate::control;
use crate::exit::{with_code, FAILURE};
use crate::policy_load;
use crate::session_dir;
use crate::view::{self, Invoker, ViewRequest};
use crate::worktree;
use airlock_session::{SessionRow, SessionState};

/// The hidden init stage (`airlock __sandbox-init`).
pub(crate) fn sandbox_init() -> i32 {
    airlock_sandbox::init_main()
}

fn flags_layer(args: &RunArgs) -> Result<ConfigFile> {
    let mut set = std::collections::BTreeMap::new();
    for kv in &args.env_set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--env {kv}: expected NAME=VALUE"))?;
        set.insert(k.to_string(), v.to_string());
    }
    Ok(ConfigFile {
        network: NetworkConfig {
            allow: args.allow_domains.clone(),
            ..NetworkConfig::default()
        },
        env: airlock_policy::EnvConfig {
            pass: args.env_pass.clone(),
            set,
        },
        limits: LimitsConfig {
            memory: args.memory.clone(),
            pids: args.pids,
            cpus: args.cpus,
            ..LimitsConfig::default()
        },
        ..ConfigFile::default()
    })
}

/// A short random session id.
pub(crate) fn new_session_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..8)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

pub(crate) fn run(args: RunArgs) -> Result<i32> {
    // Before any thread exists: signals must queue for the supervisor, not kill it.
    airlock_sandbox::block_signals()?;
    match args.backend {
        Backend::Native => {}
        other => {
            bail!("the {other:?} backend is not available in this build; use --backend native")
        }
    }
    // Read now: a missing prompt file stops the run before anything starts.
    let prompt = crate::agents::prompt(args.prompt.as_deref(), args.prompt_file.as_deref())?;
    let profile = crate::agents::profile(args.agent);
    if prompt.is_some() && (profile.is_none() || !args.command.is_empty()) {
        return Err(with_code(
            FAILURE,
            anyhow!("--prompt and --prompt-file run an agent headless: give --agent claude|codex|gemini and no command after --"),
        ));
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let ws_arg = args.workspace.clone().unwrap_or_else(|| cwd.clone());
    let workspace = std::fs::canonicalize(&ws_arg).map_err(|e| {
        anyhow!(
            "workspace {} does not exist or cannot be read ({e}); pass an existing directory with --workspace",
            ws_arg.display()
        )
    })?;
    if !workspace.is_dir() {
        bail!("workspace {} is not a directory", workspace.display());
    }
    if workspace == std::path::Path::new("/") {
        bail!("refusing to use / as the workspace: pass a project directory with --workspace");
    }
    let who = Invoker::current();
    if who.home.starts_with(&workspace) {
        bail!(
            "workspace {} contains your home directory; the agent would see your secrets. Pass a \
             project directory with --workspace",
            workspace.display()
        );
    }
    let flags = flags_layer(&args)?;
    let policy = policy_load::load(
        Some(&workspace),
        &args.policies,
        &args.trust_policies,
        Some(flags),
    )?;
    let mut policy = policy;
    let creds = crate::credentials::prepare(&mut policy, &who.home)?;
    // Hosts allowed whatever a reloaded policy says: the credentials' and the agent's.
    let mut cred_hosts = creds.hosts();
    // The agent itself runs (no command given): its binary must exist, found before anything
    // starts.
    let runs_agent = profile.is_some() && args.command.is_empty();
    let binary = match profile {
        Some(p) if runs_agent => {
            Some(p.find_binary(&std::env::var("PATH").unwrap_or_default(), &who.home)?)
        }
        Some(p) => p
            .find_binary(&std::env::var("PATH").unwrap_or_default(), &who.home)
            .ok(),
        None => None,
    };
    if let (Some(p), true) = (profile, runs_agent) {
        p.check_credential(&creds.inside_vars(), creds.claude_login())?;
    }
    // Checked first, so a background session that could not start is refused here. A dry run
    // prints the spec the background session would get and creates nothing.
    if args.detach && args.detached_child.is_none() && !args.dry_run {
        return super::detach::start(&args);
    }
    if let Some(p) = profile {
        for h in p.hosts {
            if !policy.network.allow.iter().any(|a| a == h) {
                policy.network.allow.push((*h).to_string());
            }
            cred_hosts.push((*h).to_string());
        }
    }
    let otel = crate::telemetry::prepare(&mut policy, &who.home)?;
    let net_policy = compile_network(&policy)?;
    let mut extra_binds = Vec::new();
    let mut worktree_info: Option<worktree::Worktree> = None;
    let mut inner_cwd = std::fs::canonicalize(&cwd)
        .ok()
        .filter(|c| c.starts_with(&workspace))
        .unwrap_or_else(|| workspace.clone());
    let tty = match (
        args.detached_child.is_some(),
        nix::unistd::isatty(std::io::stdin()),
        nix::unistd::isatty(std::io::stdout()),
    ) {
        (false, Ok(true), Ok(true)) => {
            let (rows, cols) = airlock_sandbox::term::terminal_size().unwrap_or((24, 80));
            Some(TtySpec { rows, cols })
        }
        _ => None,
    };
    let session = args.detached_child.clone().unwrap_or_else(new_session_id);
    let creds = creds.sandbox(&session, PROXY_PORT)?;
    let limits = policy.limits;
    let cgroup = Cgroup::create(
        &session,
        &CgroupLimits {
            memory: limits.memory_bytes,
            pids: limits.pids,
            cpus: limits.cpus,
        },
    )?;
    if args.memory.is_some() || args.pids.is_some() || args.cpus.is_some() {
        for m in &cgroup.missing {
            eprintln!(
                "airlock: warning: limit not enforced by a cgroup here: {m} (see `airlock doctor`)"
            );
        }
    }
    let memory_cgroup = cgroup.enforced.iter().any(|c| c.starts_with("memory"));
    if args.cpus.is_some() && !cgroup.enforced.iter().any(|c| c.starts_with("cpu")) {
        return Err(with_code(
            FAILURE,
            anyhow!("--cpus cannot be enforced on this host (no cpu cgroup is delegated); run `airlock doctor`"),
        ));
    }
    let self_exe = std::fs::canonicalize("/proc/self/exe")
        .context("cannot find the airlock binary (/proc/self/exe)")?;
    let proxy_url = format!("http://127.0.0.1:{PROXY_PORT}");
    let mut extra_env: Vec<(String, String)> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .iter()
    .map(|k| (k.to_string(), proxy_url.clone()))
    .collect();
    // Only the sandbox's own loopback bypasses the proxy; it is the only other place reachable.
    for k in ["NO_PROXY", "no_proxy"] {
        extra_env.push((k.to_string(), "localhost,127.0.0.1,::1".to_string()));
    }
    // Placeholders and the trust bundle's variables override anything passed from the host.
    extra_env.extend(creds.env.iter().cloned());
    extra_env.extend(crate::telemetry::agent_env(&policy, &session)?);
    let dir = session_dir::sessions_root()?.join(&session);
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    let view = match args.mode {
        Mode::Overlay => WorkspaceView::Overlay {
            lower: workspace.clone(),
            upper: upper.clone(),
            work: work.clone(),
            target: workspace.clone(),
        },
        Mode::Bind => WorkspaceView::Bind {
            source: workspace.clone(),
            target: workspace.clone(),
        },
        Mode::Worktree => {
            if args.dry_run {
                bail!(
                    "--dry-run cannot be combined with --mode worktree (it creates the worktree)"
                );
            }
            let wt = worktree::create(&workspace, &session, args.name.as_deref())?;
            inner_cwd = wt.path.clone();
            extra_binds = wt.binds.clone();
            let view = WorkspaceView::Bind {
                source: wt.path.clone(),
                target: wt.path.clone(),
            };
            worktree_info = Some(wt);
            view
        }
    };
    let mut spec = view::build(
        &policy,
        &who,
        ViewRequest {
            workspace: view,
            cwd: inner_cwd,
            argv: args.command.clone(),
            extra_env,
            self_exe: &self_exe,
            tty,
            net: Some(NetListeners {
                proxy_port: PROXY_PORT,
                dns_port: 53,
                audit_port: Some(crate::gate_audit::HOOK_AUDIT_PORT),
            }),
            memory_cgroup,
            session: &session,
        },
    )?;
    // The worktree's view of the main repository goes before the workspace itself.
    if !extra_binds.is_empty() {
        // The main repository is read-only for the worktree, whose objects borrow from it: no
        // automatic gc/pack-refs in the session's private git directory.
        for (k, v) in [
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "gc.auto"),
            ("GIT_CONFIG_VALUE_0", "0"),
        ] {
            spec.env.retain(|(ek, _)| ek != k);
            spec.env.push((k.to_string(), v.to_string()));
        }
    }
    spec.binds.extend(extra_binds);
    if let Some(wt) = &worktree_info {
        // Mounted after the workspace: the links to the repository stay what airlock wrote.
        spec.files.extend(wt.files.iter().cloned());
    }
    if let Some(p) = profile {
        let agent = AgentRun {
            profile: p,
            binary: binary.as_ref(),
            prompt: prompt.as_deref(),
        };
        agent_state(&mut spec, &args, &agent, &workspace, &who, &creds)?;
    }
    let detached = args.detached_child.is_some();
    if detached || args.detach {
        super::detach::wrap_in_tmux(&mut spec, &dir);
    }
    // The command gate inside reads only this, never the sandbox's home or workspace.
    let inner_workspace = spec.workspace.as_ref().map(|w| w.target().clone());
    spec.files.push(policy_load::sealed_gate_policy(
        &workspace,
        &args.policies,
        &args.trust_policies,
        (&who.home, inner_workspace.as_deref().unwrap_or(&workspace)),
        &session,
    )?);
    spec.files.push(GeneratedFile {
        target: "/etc/resolv.conf".into(),
        contents: b"# written by airlock: names resolve through its DNS filter\nnameserver 127.0.0.1\noptions ndots:0 attempts:1\n".to_vec(),
    });
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&spec)?);
        return Ok(0);
    }
    // A background session keeps its output for `airlock logs`: never removed by itself.
    let bind_before =
        (args.mode == Mode::Bind && !detached).then(|| super::ls::Snapshot::take(&workspace));
    session_dir::create(&session)?;
    if detached {
        super::detach::create_output_dir(&dir)?;
    }
    creds.place(&dir, &mut spec)?;
    if args.mode == Mode::Overlay {
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
    }
    let store = session_dir::store()?;
    let base_commit = airlock_session::gitview::agent_head(&dir.join("upper"), &workspace);
    store.insert(&SessionRow {
        id: session.clone(),
        name: args.name.clone(),
        workspace: workspace.clone(),
        mode: format!("{:?}", args.mode).to_lowercase(),
        backend: "native".into(),
        agent: format!("{:?}", args.agent).to_lowercase(),
        policy_digest: policy_digest(&policy),
        state: SessionState::Running,
        created: airlock_audit::now_rfc3339(),
        created_unix: unix_now(),
        ended: None,
        exit_status: None,
        supervisor_pid: Some(std::process::id()),
        supervisor_start: airlock_session::store::process_start(std::process::id()),
        dir: dir.clone(),
        base_commit,
        merged: false,
    })?;
    let audit = Arc::new(AuditLog::open(dir.join("audit.jsonl"))?);
    let (refusals_tx, refusals) = std::sync::mpsc::channel();
    let sandbox = match Sandbox::launch(
        &spec,
        LaunchOptions {
            exe: self_exe,
            cgroup: Some(cgroup),
            unix_refusals: Some(refusals_tx),
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            let _ = store.finish(
                &session,
                SessionState::Failed,
                Some(e.exit_code()),
                &airlock_audit::now_rfc3339(),
            );
            return Err(sandbox_error(e));
        }
    };
    let mut sandbox = sandbox;
    tracing::info!(session, landlock = %sandbox.landlock, "sandbox ready");
    let net = sandbox
        .take_net()
        .ok_or_else(|| anyhow!("the sandbox did not hand over its network sockets"))?;
    // Threads start only now, after the signal mask is set and the sandbox is forked (the
    // connect gate's thread, started by `launch` once init is running, has the same mask).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("airlock-egress")
        .enable_all()
        .build()
        .context("cannot start the egress runtime")?;
    // Before the first service that writes to the audit log: every event is exported.
    let telemetry =
        otel.and_then(|o| o.start(telemetry_attrs(&session, &args, &workspace), &audit));
    let mut config = EgressConfig::new(net.proxy, net_policy, audit.clone());
    config.dns_udp = Some(net.dns_udp);
    config.dns_tcp = Some(net.dns_tcp);
    config.session = Some(session.clone());
    config.credentials = creds.injector.clone();
    let egress =
        Arc::new(Egress::start(config, rt.handle()).context("cannot start the egress proxy")?);
    {
        let egress = egress.clone();
        rt.spawn(async move {
            let e = egress.wait_failure().await;
            eprintln!("airlock: {e}; the sandbox has no network from now on");
        });
    }
    if let Some(l) = net.audit {
        crate::gate_audit::serve(&rt, l, audit.clone(), session.clone())?;
    }
    audit_unix_refusals(refusals, audit.clone(), session.clone())?;
    let _ = audit.append(
        &AuditEvent::now(
            Decision::Info,
            Detail::Session {
                event: "started".into(),
                exit_status: None,
            },
        )
        .session(session.clone()),
    );
    let reload = {
        let egress = egress.clone();
        let mut args = RunArgsForReload::from(&args);
        args.cred_hosts = cred_hosts;
        let workspace = workspace.clone();
        move || -> Result<()> {
            egress.reload(reload_policy(&args, &workspace)?);
            Ok(())
        }
    };
    let console = if detached {
        let exec = sandbox
            .exec_handle()
            .context("cannot prepare `airlock attach` for this session")?;
        Some(super::detach::Console::new(
            exec,
            policy.terminal.allow_clipboard,
        ))
    } else {
        None
    };
    control::serve(&rt, &dir, reload.clone(), console)?;
    let mut on_hup = || match reload() {
        Ok(()) => eprintln!("airlock: session {session}: network policy reloaded"),
        Err(e) => eprintln!(
            "airlock: session {session}: policy reload failed, keeping the current policy: {e:#}"
        ),
    };
    let mut filter = TermFilter::new(FilterConfig {
        allow_clipboard: policy.terminal.allow_clipboard,
        utf8: airlock_sandbox::term::locale_is_utf8(),
    });
    let status = sandbox.wait_relaying(Some(&mut on_hup), &mut filter);
    super::detach::audit_terminal(&dir.join("audit.jsonl"), &session, "run", &filter);
    let _ = audit.append(
        &AuditEvent::now(
            Decision::Info,
            Detail::Session {
                event: "exited".into(),
                exit_status: status.as_ref().ok().copied(),
            },
        )
        .session(session.clone()),
    );
    if let Some(t) = telemetry {
        t.finish(&audit);
    }
    drop(egress);
    rt.shutdown_background();
    let (state, code) = match &status {
        Ok(c) => (SessionState::Exited, Some(*c)),
        Err(e) => (SessionState::Failed, Some(e.exit_code())),
    };
    if let Err(e) = store.finish(&session, state, code, &airlock_audit::now_rfc3339()) {
        eprintln!("airlock: warning: cannot record the end of session {session}: {e}");
    }
    if let Some(wt) = &worktree_info {
        finish_worktree(&session, wt);
    }
    let disposal = super::ls::Disposal::from_flags(args.rm, args.discard_changes);
    let removed = super::ls::finish_session(&session, disposal, bind_before.as_ref());
    let stderr_tty = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    if args.mode == Mode::Overlay && status.is_ok() && stderr_tty && !removed {
        eprintln!(
            "airlock: session {session} ended; review with `airlock diff {session}`, land with `airlock merge {session}`"
        );
    }
    status.map_err(sandbox_error)
}

/// The attributes every exported audit event of this session carries.
fn telemetry_attrs(
    session: &str,
    args: &RunArgs,
    workspace: &std::path::Path,
) -> crate::telemetry::SessionAttrs {
    crate::telemetry::SessionAttrs {
        session: session.to_string(),
        agent: format!("{:?}", args.agent).to_lowercase(),
        workspace: workspace.display().to_string(),
    }
}

/// Removes a clean worktree, or says why it was kept (loudly when its links were changed).
fn finish_worktree(session: &str, wt: &worktree::Worktree) {
    let (path, branch) = (wt.path.display(), &wt.branch);
    match worktree::finish(wt) {
        Ok(worktree::Outcome::Removed) => {}
        Ok(worktree::Outcome::Kept(why)) => eprintln!(
            "airlock: session {session}: worktree kept at {path} (branch {branch}): {why}"
        ),
        Ok(worktree::Outcome::Tampered(what)) => {
            eprintln!("{}", worktree::tamper_warning(session, wt, &what))
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

/// A digest of the effective policy, recorded with the session.
fn policy_digest(policy: &Policy) -> String {
    digest(serde_json::to_string(policy).unwrap_or_default().as_bytes())
}

/// The port of the proxy inside the sandbox.
const PROXY_PORT: u16 = 3128;

fn compile_network(policy: &Policy) -> Result<NetworkPolicy> {
    NetworkPolicy::compile(&policy.network).map_err(|e| anyhow!("invalid network policy: {e}"))
}

/// What a reload needs from the run's arguments.
#[derive(Debug, Clone)]
struct RunArgsForReload {
    policies: Vec<std::path::PathBuf>,
    trusted: Vec<std::path::PathBuf>,
    flags: ConfigFile,
    /// Hosts of the session's credentials, allowed whatever the reloaded files say.
    cred_hosts: Vec<String>,
}

impl RunArgsForReload {
    fn from(args: &RunArgs) -> Self {
        RunArgsForReload {
            policies: args.policies.clone(),
            trusted: args.trust_policies.clone(),
            flags: flags_layer(args).unwrap_or_default(),
            cred_hosts: Vec::new(),
        }
    }
}

/// Re-reads the policy layers of this run (SIGHUP, `airlock policy reload`).
fn reload_policy(args: &RunArgsForReload, workspace: &std::path::Path) -> Result<NetworkPolicy> {
    let mut policy = policy_load::load(
        Some(workspace),
        &args.policies,
        &args.trusted,
        Some(args.flags.clone()),
    )?;
    crate::telemetry::allow_collector(&mut policy)?;
    for h in &args.cred_hosts {
        if !policy.network.allow.contains(h) {
            policy.network.allow.push(h.clone());
        }
    }
    compile_network(&policy)
}

fn sandbox_error(e: SandboxError) -> anyhow::Error {
    let code = e.exit_code();
    with_code(code, anyhow::Error::new(e))
}

/// The agent to start and how.
struct AgentRun<'a> {
    profile: &'static crate::agents::Profile,
    /// Its binary on the host (required when the agent itself runs).
    binary: Option<&'a crate::agents::Binary>,
    prompt: Option<&'a str>,
}

/// Sets up the agent from its profile: its own state (settings, history, project memory) that
/// must outlive ephemeral sessions, kept per project under `$XDG_DATA_HOME/airlock/state/` and
/// bound into the sandbox's home, never the user's real one (credential files stay hidden: the
/// hide list applies on top); its binary bound read-only; its generated settings, environment
/// and argv (interactive, or headless on a prompt).
fn agent_state(
    spec: &mut airlock_sandbox::SandboxSpec,
    args: &RunArgs,
    agent: &AgentRun<'_>,
    workspace: &std::path::Path,
    who: &view::Invoker,
    creds: &crate::credentials::Sandboxed,
) -> Result<()> {
    let p = agent.profile;
    let program = p.program;
    if args.command.is_empty() {
        let exe = agent
            .binary
            .map(|b| b.path.display().to_string())
            .unwrap_or_else(|| program.to_string());
        spec.argv = match agent.prompt {
            Some(text) => p.headless_argv(&exe, text),
            None => vec![exe],
        };
    }
    if let Some(b) = agent.binary {
        for src in &b.binds {
            spec.binds.push(airlock_sandbox::Bind {
                source: src.clone(),
                target: src.clone(),
                writable: false,
                optional: false,
            });
        }
    }
    let project = format!(
        "{}-{}",
        workspace
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        digest(workspace.as_os_str().as_encoded_bytes())
    );
    let root = session_dir::sessions_root()?
        .parent()
        .map(|p| p.join("state").join(project).join(program))
        .context("bad data directory")?;
    for (name, dir) in p.state {
        let src = root.join(name);
        if *dir {
            std::fs::create_dir_all(&src)
        } else {
            std::fs::create_dir_all(&root).and_then(|()| {
                if src.exists() {
                    Ok(())
                } else {
                    std::fs::write(&src, "{}\n")
                }
            })
        }
        .with_context(|| format!("cannot create agent state {}", src.display()))?;
        spec.binds.push(airlock_sandbox::Bind {
            source: src,
            target: who.home.join(name),
            writable: true,
            optional: false,
        });
    }
    if program == "claude" {
        creds.place_claude_file(&root.join(".claude"), &who.home, spec)?;
    }
    let inner_ws = spec
        .workspace
        .as_ref()
        .map(|w| w.target().clone())
        .unwrap_or_else(|| workspace.to_path_buf());
    let launch = p.configure(&crate::agents::Session {
        home: &who.home,
        env: &spec.env,
        workspace: &inner_ws,
        state_root: &root,
        cred_env: &creds.env,
        root_inside: spec.uid == 0,
    })?;
    for f in &launch.files {
        view::make_room(&mut spec.binds, &f.target);
    }
    spec.files.extend(launch.files);
    spec.binds.extend(launch.binds);
    for (k, v) in launch.env {
        spec.env.retain(|(ek, _)| ek != &k);
        spec.env.push((k, v));
    }
    Ok(())
}

/// Writes the connect gate's refusals to the audit log (rate-limited per path: the sandbox can
/// refuse itself in a loop), on a thread of their own until the sandbox is gone.
fn audit_unix_refusals(
    refusals: std::sync::mpsc::Receiver<airlock_sandbox::unix_gate::UnixRefusal>,
    audit: Arc<AuditLog>,
    session: String,
) -> Result<()> {
    std::thread::Builder::new()
        .name("airlock-unix-audit".into())
        .spawn(move || {
            for r in refusals {
                let mut ev = AuditEvent::now(
                    Decision::Deny,
                    Detail::Unix {
                        path: r.path.clone(),
                        pid: r.pid,
                    },
                )
                .session(session.clone());
                ev.rule = Some("builtin:unix-socket-outside-sandbox".into());
                ev.reason = Some(r.reason);
                let _ = audit.append_limited(&format!("unix:{}", r.path), &ev);
            }
        })
        .context("cannot start the audit writer for refused unix connects")?;
    Ok(())
}
