//! Step 1 of `airlock run`: the request resolved from the flags, the workspace, the policy files,
//! the credentials and the agent profile. Every check that can refuse the run happens here,
//! before anything is created on the host.

use std::path::{Path, PathBuf};

use airlock_policy::{ConfigFile, Policy};
use anyhow::{anyhow, bail, Context, Result};

use crate::agents::{Binary, Profile};
use crate::cli::RunArgs;
use crate::credentials::Prepared;
use crate::exit::{with_code, FAILURE};
use crate::policy_load;
use crate::view::Invoker;

/// What `airlock run` was asked to do, resolved and checked.
#[derive(Debug)]
pub(super) struct Request {
    /// The workspace, canonical; never `/` and never containing the home directory.
    pub(super) workspace: PathBuf,
    /// The current directory (where the command starts inside, when in the workspace).
    pub(super) cwd: PathBuf,
    pub(super) who: Invoker,
    /// The merged policy, with the credentials' hosts allowed.
    pub(super) policy: Policy,
    pub(super) creds: Prepared,
    /// The agent profile (`--agent`), if not the shell.
    pub(super) profile: Option<&'static Profile>,
    /// The agent's binary on the host (found when the agent itself runs).
    pub(super) binary: Option<Binary>,
    /// The headless prompt (`--prompt`, `--prompt-file`).
    pub(super) prompt: Option<String>,
}

/// Resolves the request: the prompt, the workspace, the policy layers, the credentials and the
/// agent's binary and login. Errors name the flag, file or directory at fault.
pub(super) fn resolve(args: &RunArgs) -> Result<Request> {
    if let Some(name) = &args.name {
        check_name(name)?;
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
    let who = Invoker::current();
    let workspace = workspace(args.workspace.as_deref().unwrap_or(&cwd), &who)?;
    let mut policy = match &args.box_policy {
        // In a box, `airlock serve` hands over the policy the local airlock resolved.
        Some(file) => box_policy(file)?,
        None => policy_load::load(
            Some(&workspace),
            &args.policies,
            &args.trust_policies,
            Some(flags_layer(args)?),
        )?,
    };
    warn_host_loopback(&policy);
    // A remote dry run renders the box's resources with each secret referenced by name,
    // never read: it needs no credential on this host.
    let kind: airlock_session::BackendKind = args.backend.into();
    let unread = if args.dry_run && kind.is_remote() {
        crate::credentials::Unread::Placeholder
    } else {
        crate::credentials::Unread::Refuse
    };
    let creds = crate::credentials::prepare(&mut policy, &who.home, unread)?;
    let binary = agent_binary(args, profile, &who, &creds)?;
    Ok(Request {
        workspace,
        cwd,
        who,
        policy,
        creds,
        profile,
        binary,
        prompt,
    })
}

/// The merged policy `airlock serve` wrote for this run (JSON of [`Policy`]).
fn box_policy(file: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the box policy {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("invalid box policy {}", file.display()))
}

/// Warns when `[network] allow` names this machine's loopback (`localhost`, `127.0.0.1`, `::1`):
/// inside the sandbox those are the sandbox's own loopback (`NO_PROXY`), so the entry reaches
/// nothing on the host. A host service is reached through the proxy under a pinned name
/// (docs/network.md, "Policy").
fn warn_host_loopback(policy: &airlock_policy::Policy) {
    for entry in &policy.network.allow {
        let e = entry.trim_start_matches('[').trim_end_matches(']');
        let loopback = e == "localhost"
            || e.ends_with(".localhost")
            || e.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
        if loopback {
            eprintln!(
                "airlock: warning: allow {entry:?} does nothing: inside the sandbox it is the \
                 sandbox's own loopback. To reach a service on this host, pin a name to it and \
                 allow that name: resolve = {{ \"host.dev\" = \"127.0.0.1\" }}, allow = \
                 [\"host.dev\"], allow_private = [\"127.0.0.1\"] and its port under \
                 [network.ports] (docs/network.md)"
            );
        }
    }
}

/// The workspace directory, canonical, refused when it is `/` or contains the home directory.
fn workspace(arg: &Path, who: &Invoker) -> Result<PathBuf> {
    let workspace = std::fs::canonicalize(arg).map_err(|e| {
        anyhow!(
            "workspace {} does not exist or cannot be read ({e}); pass an existing directory with --workspace",
            arg.display()
        )
    })?;
    if !workspace.is_dir() {
        bail!("workspace {} is not a directory", workspace.display());
    }
    if ["/proc", "/sys", "/dev"]
        .iter()
        .any(|d| workspace.starts_with(d))
    {
        bail!(
            "{} is a kernel or device filesystem, not a project directory: pass one with --workspace",
            workspace.display()
        );
    }
    if workspace == Path::new("/") {
        bail!("refusing to use / as the workspace: pass a project directory with --workspace");
    }
    if let Some(git_dir) = airlock_session::merge::enclosing_git_dir(&workspace) {
        bail!(
            "workspace {} is inside the git directory {}: git would run the hooks and config the agent writes there on your host. Pass the repository's work tree with --workspace",
            workspace.display(),
            git_dir.display()
        );
    }
    if who.home.starts_with(&workspace) {
        bail!(
            "workspace {} contains your home directory; the agent would see your secrets. Pass a \
             project directory with --workspace",
            workspace.display()
        );
    }
    Ok(workspace)
}

/// The agent's binary: required (and its login checked) when the agent itself runs (no
/// command given), looked up for its read-only binds otherwise.
fn agent_binary(
    args: &RunArgs,
    profile: Option<&'static Profile>,
    who: &Invoker,
    creds: &Prepared,
) -> Result<Option<Binary>> {
    let Some(p) = profile else { return Ok(None) };
    let path = std::env::var("PATH").unwrap_or_default();
    if !args.command.is_empty() {
        return Ok(p.find_binary(&path, &who.home).ok());
    }
    let binary = p.find_binary(&path, &who.home)?;
    p.check_credential(&creds.inside_vars(), creds.claude_login())?;
    Ok(Some(binary))
}

/// The policy layer made of the command-line flags, applied over the files.
pub(super) fn flags_layer(args: &RunArgs) -> Result<ConfigFile> {
    args.flags.layer()
}

/// `--name`: a name that cannot be taken for a session id or id prefix (all hex digits), nor
/// split by a shell or a path (`/`, whitespace, control characters), and not empty.
///
/// # Errors
/// What is wrong with the name (quoted, control characters escaped) and what is allowed.
fn check_name(name: &str) -> Result<()> {
    let wrong = if name.is_empty() {
        "is empty"
    } else if name.chars().all(|c| c.is_ascii_hexdigit()) {
        "is all hex digits, like a session id"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(with_code(
        FAILURE,
        anyhow!(
            "--name {name:?}: the session name {wrong}; use letters, digits, '-', '_' or '.', \
             and not only hex digits (e.g. fix-tests)"
        ),
    ))
}
