//! Step 2 of `airlock run`: the session planned from the resolved request: its id and directory,
//! the limits its backend enforces, the network policy, and the complete `SandboxSpec` (the
//! workspace view, the environment, the agent's state and settings, the sealed gate policy).
//! Nothing here is read from the flags again later: the steps after it read the plan.

use std::path::{Path, PathBuf};

use airlock_policy::network::NetworkPolicy;
use airlock_policy::{ConfigFile, Policy};
use airlock_sandbox::cgroup::CgroupLimits;
use airlock_sandbox::{
    Backend, GeneratedFile, LimitReport, NetListeners, SandboxSpec, TtySpec, WorkspaceView,
};
use airlock_session::{AgentKind, BackendKind, SessionMode};
use anyhow::{anyhow, bail, Context, Result};

use super::agent::{agent_state, AgentRun};
use super::resolve::{flags_layer, Request};
use crate::cli::RunArgs;
use crate::credentials::Sandboxed;
use crate::exit::{with_code, FAILURE};
use crate::policy_load;
use crate::session_dir;
use crate::view::{self, Invoker, ViewRequest};
use crate::worktree::{self, Worktree};

/// The port of the proxy inside the sandbox.
pub(super) const PROXY_PORT: u16 = 3128;

/// Everything the later steps need, decided once.
#[derive(Debug)]
pub(super) struct Plan {
    /// The session id.
    pub(super) session: String,
    /// `--name`.
    pub(super) name: Option<String>,
    /// The session directory (created by `prepare`).
    pub(super) dir: PathBuf,
    /// The workspace on the host, canonical.
    pub(super) workspace: PathBuf,
    pub(super) mode: SessionMode,
    pub(super) agent: AgentKind,
    pub(super) backend: BackendKind,
    /// This process is the background supervisor of a --detach session.
    pub(super) detached: bool,
    /// The airlock binary, run as the sandbox's init stage.
    pub(super) self_exe: PathBuf,
    /// The sandbox to build.
    pub(super) spec: SandboxSpec,
    /// The network policy the egress services start with.
    pub(super) net_policy: NetworkPolicy,
    /// The session's credentials (placeholders in the spec, the injector for the proxy).
    pub(super) creds: Sandboxed,
    /// The worktree of `--mode worktree`, created here.
    pub(super) worktree: Option<Worktree>,
    /// How to re-read the policy on SIGHUP and `airlock policy reload`.
    pub(super) reload: Reload,
    /// `[terminal] allow_clipboard`.
    pub(super) allow_clipboard: bool,
    /// `[approvals]`: hold refused hosts while the user is asked.
    pub(super) approvals: airlock_policy::ApprovalsConfig,
    /// `[notify]`: where the session's events go.
    pub(super) notify: airlock_policy::NotifyConfig,
    /// A digest of the effective policy, recorded with the session.
    pub(super) policy_digest: String,
    /// The OTLP exporter to start (`[telemetry] otlp_endpoint`); taken by the supervisor.
    pub(super) otel: Option<crate::telemetry::Prepared>,
    /// What happens to the session when it ends (`--rm`, `--discard-changes`).
    pub(super) disposal: super::super::ls::Disposal,
    /// The workspace before a foreground bind-mode session (taken by `prepare`), to remove a
    /// session that changed nothing.
    pub(super) bind_before: Option<super::super::ls::Snapshot>,
}

/// Plans the session: adds the agent's hosts, compiles the network policy, has the backend set
/// up the limits, builds the workspace view (creating the worktree of `--mode worktree`) and the
/// spec. The session directory itself is not created (a dry run creates nothing but the cgroup,
/// removed when it exits).
pub(super) fn plan(args: &RunArgs, request: Request, backend: &mut dyn Backend) -> Result<Plan> {
    let mut request = request;
    let cred_hosts = allow_agent_hosts(&mut request);
    let otel = crate::telemetry::prepare(&mut request.policy, &request.who.home)?;
    let rule_denied = request.creds.rule_denied();
    let net_policy = compile_network(&request.policy)?;
    let session = args
        .detached_child
        .clone()
        .unwrap_or_else(super::new_session_id);
    let Request {
        workspace,
        cwd,
        who,
        policy,
        creds,
        profile,
        binary,
        prompt,
    } = request;
    let creds = creds.sandbox(&session, PROXY_PORT)?;
    let limits = limits(args, &policy, &session, backend)?;
    let self_exe = std::fs::canonicalize("/proc/self/exe")
        .context("cannot find the airlock binary (/proc/self/exe)")?;
    let dir = session_dir::sessions_root()?.join(&session);
    let view = workspace_view(args, &workspace, &session, &dir, &cwd)?;
    let host = Host {
        policy: &policy,
        who: &who,
        workspace: &workspace,
        self_exe: &self_exe,
        session: &session,
    };
    let mut spec = base_spec(args, &host, view.view, view.cwd, &creds, limits.memory())?;
    add_worktree(&mut spec, view.worktree.as_ref());
    spec.overlays = crate::caches::overlays(&policy.presets, &who.home, &dir)?;
    for h in crate::caches::hidden(&policy.presets, &who.home)? {
        if !spec.hide.contains(&h) {
            spec.hide.push(h);
        }
    }
    if let Some(p) = profile {
        // A detached session with approvals holds the gate's asks (`gate_audit`).
        let holds = (args.detached_child.is_some() || args.detach)
            && policy.approvals.mode == Some(airlock_policy::ApprovalMode::Ask);
        let agent = AgentRun {
            profile: p,
            binary: binary.as_ref(),
            prompt: prompt.as_deref(),
            hold_secs: holds.then(|| {
                policy
                    .approvals
                    .timeout_secs
                    .unwrap_or(airlock_policy::config::APPROVAL_TIMEOUT_DEFAULT)
            }),
        };
        agent_state(&mut spec, args, &agent, &workspace, &who, &creds)?;
    }
    let detached = args.detached_child.is_some();
    if detached || args.detach {
        super::super::detach::wrap_in_tmux(&mut spec, &dir);
    }
    add_generated_files(&mut spec, args, &host)?;
    Ok(Plan {
        name: args.name.clone(),
        mode: args.mode.into(),
        agent: args.agent.into(),
        backend: args.backend.into(),
        detached,
        self_exe,
        spec,
        net_policy,
        creds,
        worktree: view.worktree,
        reload: Reload {
            policies: args.policies.clone(),
            trusted: args.trust_policies.clone(),
            flags: flags_layer(args).unwrap_or_default(),
            cred_hosts,
            rule_denied,
            workspace: workspace.clone(),
        },
        allow_clipboard: policy.terminal.allow_clipboard,
        approvals: policy.approvals.clone(),
        notify: policy.notify.clone(),
        policy_digest: policy_digest(&policy),
        otel,
        disposal: super::super::ls::Disposal::from_flags(args.rm, args.discard_changes),
        bind_before: None,
        session,
        dir,
        workspace,
    })
}

/// Allows the agent's hosts; returns the hosts allowed whatever a reloaded policy says (the
/// credentials' and the agent's).
fn allow_agent_hosts(request: &mut Request) -> Vec<String> {
    let mut kept = request.creds.hosts();
    for h in request.profile.map(|p| p.hosts).unwrap_or_default() {
        let allow = &mut request.policy.network.allow;
        if !allow.iter().any(|a| a == h) {
            allow.push((*h).to_string());
        }
        kept.push((*h).to_string());
    }
    kept
}

/// What the spec is built from on the host side.
struct Host<'a> {
    policy: &'a Policy,
    who: &'a Invoker,
    /// The workspace on the host.
    workspace: &'a Path,
    self_exe: &'a Path,
    session: &'a str,
}

/// The spec from the policy (`view::build`): the host's view, the workspace, the environment
/// with the proxy variables and placeholders, the terminal, and the network listeners.
fn base_spec(
    args: &RunArgs,
    host: &Host<'_>,
    workspace: WorkspaceView,
    cwd: PathBuf,
    creds: &Sandboxed,
    memory_cgroup: bool,
) -> Result<SandboxSpec> {
    view::build(
        host.policy,
        host.who,
        ViewRequest {
            workspace,
            cwd,
            argv: args.command.clone(),
            extra_env: {
                let mut env = proxy_env(creds);
                env.extend(crate::telemetry::agent_env(host.policy, host.session)?);
                env
            },
            self_exe: host.self_exe,
            tty: terminal(args),
            net: Some(NetListeners {
                proxy_port: PROXY_PORT,
                dns_port: 53,
                audit_port: Some(crate::gate_audit::HOOK_AUDIT_PORT),
            }),
            memory_cgroup,
            session: host.session,
        },
    )
}

/// Has the backend set up the session's limits; warns about those asked for on the command
/// line that are not enforced, and refuses `--cpus` that cannot be.
fn limits(
    args: &RunArgs,
    policy: &Policy,
    session: &str,
    backend: &mut dyn Backend,
) -> Result<LimitReport> {
    let limits = &policy.limits;
    let report = backend
        .limits(
            session,
            &CgroupLimits {
                memory: limits.memory_bytes,
                pids: limits.pids,
                cpus: limits.cpus,
            },
        )
        .map_err(super::sandbox_error)?;
    let asked =
        args.flags.memory.is_some() || args.flags.pids.is_some() || args.flags.cpus.is_some();
    // A container engine that will not enforce a limit ignores it silently (rootless Podman on
    // cgroup v1): a limit asked for there is refused rather than warned about.
    if asked && args.backend != crate::cli::Backend::Native && !report.missing.is_empty() {
        return Err(with_code(
            FAILURE,
            anyhow!(
                "--memory/--pids/--cpus cannot be enforced by the {} backend here: {}; run as \
                 root or on a cgroup v2 host with delegation, use --backend native, or drop the \
                 limit (see `airlock doctor`)",
                airlock_session::BackendKind::from(args.backend),
                report.missing.join("; ")
            ),
        ));
    }
    if asked {
        for m in &report.missing {
            eprintln!(
                "airlock: warning: limit not enforced by a cgroup here: {m} (see `airlock doctor`)"
            );
        }
    }
    if args.flags.cpus.is_some() && !report.cpu() {
        return Err(with_code(
            FAILURE,
            anyhow!("--cpus cannot be enforced on this host (no cpu cgroup is delegated); run `airlock doctor`"),
        ));
    }
    Ok(report)
}

/// A terminal for the command when airlock runs in the foreground on one.
fn terminal(args: &RunArgs) -> Option<TtySpec> {
    match (
        args.detached_child.is_some(),
        nix::unistd::isatty(std::io::stdin()),
        nix::unistd::isatty(std::io::stdout()),
    ) {
        (false, Ok(true), Ok(true)) => {
            let (rows, cols) = airlock_sandbox::term::terminal_size().unwrap_or((24, 80));
            Some(TtySpec { rows, cols })
        }
        _ => None,
    }
}

/// The proxy variables (only the sandbox's own loopback bypasses the proxy; it is the only other
/// place reachable), then the credentials' placeholders and trust-bundle variables, which
/// override anything passed from the host.
fn proxy_env(creds: &Sandboxed) -> Vec<(String, String)> {
    let proxy_url = format!("http://127.0.0.1:{PROXY_PORT}");
    let proxies = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ];
    let mut env: Vec<(String, String)> = proxies
        .iter()
        .map(|k| (k.to_string(), proxy_url.clone()))
        .collect();
    for k in ["NO_PROXY", "no_proxy"] {
        env.push((k.to_string(), "localhost,127.0.0.1,::1".to_string()));
    }
    env.extend(creds.env.iter().cloned());
    env
}

/// The workspace as the sandbox sees it.
struct View {
    view: WorkspaceView,
    /// Where the command starts inside.
    cwd: PathBuf,
    worktree: Option<Worktree>,
}

/// The workspace view of `--mode`: an overlay whose upper layer is in the session directory,
/// the directory itself, or a new git worktree (created here; not with `--dry-run`).
fn workspace_view(
    args: &RunArgs,
    workspace: &Path,
    session: &str,
    dir: &Path,
    cwd: &Path,
) -> Result<View> {
    let cwd = std::fs::canonicalize(cwd)
        .ok()
        .filter(|c| c.starts_with(workspace))
        .unwrap_or_else(|| workspace.to_path_buf());
    let view = match SessionMode::from(args.mode) {
        SessionMode::Overlay => WorkspaceView::Overlay {
            lower: workspace.to_path_buf(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: workspace.to_path_buf(),
        },
        SessionMode::Bind => WorkspaceView::Bind {
            source: workspace.to_path_buf(),
            target: workspace.to_path_buf(),
        },
        SessionMode::Worktree => {
            if args.dry_run {
                bail!(
                    "--dry-run cannot be combined with --mode worktree (it creates the worktree)"
                );
            }
            let wt = worktree::create(workspace, session, args.name.as_deref())?;
            return Ok(View {
                view: WorkspaceView::Bind {
                    source: wt.path.clone(),
                    target: wt.path.clone(),
                },
                cwd: wt.path.clone(),
                worktree: Some(wt),
            });
        }
    };
    Ok(View {
        view,
        cwd,
        worktree: None,
    })
}

/// The worktree's view of the main repository (before the workspace itself) and the links to
/// it (mounted after the workspace, so they stay what airlock wrote).
fn add_worktree(spec: &mut SandboxSpec, wt: Option<&Worktree>) {
    let Some(wt) = wt else { return };
    if !wt.binds.is_empty() {
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
    spec.binds.extend(wt.binds.iter().cloned());
    spec.files.extend(wt.files.iter().cloned());
}

/// The command gate's sealed policy (the gate inside reads only this, never the sandbox's home
/// or workspace) and `/etc/resolv.conf` pointing at the DNS filter.
fn add_generated_files(spec: &mut SandboxSpec, args: &RunArgs, host: &Host<'_>) -> Result<()> {
    let inner_workspace = spec.workspace.as_ref().map(|w| w.target().clone());
    spec.files.push(policy_load::sealed_gate_policy(
        host.workspace,
        &args.policies,
        &args.trust_policies,
        (
            &host.who.home,
            inner_workspace.as_deref().unwrap_or(host.workspace),
        ),
        host.session,
    )?);
    spec.files.push(GeneratedFile {
        target: "/etc/resolv.conf".into(),
        contents: b"# written by airlock: names resolve through its DNS filter\nnameserver 127.0.0.1\noptions ndots:0 attempts:1\n".to_vec(),
    });
    Ok(())
}

/// A digest of the effective policy, recorded with the session.
fn policy_digest(policy: &Policy) -> String {
    super::digest(serde_json::to_string(policy).unwrap_or_default().as_bytes())
}

fn compile_network(policy: &Policy) -> Result<NetworkPolicy> {
    NetworkPolicy::compile(&policy.network).map_err(|e| anyhow!("invalid network policy: {e}"))
}

/// What a reload needs: the run's policy layers and the hosts allowed whatever they say.
#[derive(Debug, Clone)]
pub(super) struct Reload {
    policies: Vec<PathBuf>,
    trusted: Vec<PathBuf>,
    flags: ConfigFile,
    /// Hosts of the session's credentials and agent, allowed whatever the reloaded files say.
    cred_hosts: Vec<String>,
    /// Hosts request rules name without a credential: denied whatever the reloaded files say.
    rule_denied: Vec<String>,
    workspace: PathBuf,
}

impl Reload {
    /// Re-reads the policy layers of this run (SIGHUP, `airlock policy reload`).
    pub(super) fn policy(&self) -> Result<NetworkPolicy> {
        let mut policy = policy_load::load(
            Some(&self.workspace),
            &self.policies,
            &self.trusted,
            Some(self.flags.clone()),
        )?;
        crate::telemetry::allow_collector(&mut policy)?;
        for h in &self.cred_hosts {
            if !policy.network.allow.contains(h) {
                policy.network.allow.push(h.clone());
            }
        }
        policy.network.deny.extend(self.rule_denied.iter().cloned());
        compile_network(&policy)
    }
}
