//! The agent's part of the spec (`--agent`): its binary, its per-project state, generated
//! settings, environment and argv.

use std::path::{Path, PathBuf};

use airlock_sandbox::{Bind, SandboxSpec};
use anyhow::{Context, Result};

use crate::agents::Profile;

use crate::cli::RunArgs;
use crate::session_dir;
use crate::view;

/// The agent to start and how.
pub(super) struct AgentRun<'a> {
    pub(super) profile: &'static crate::agents::Profile,
    /// Its binary on the host (required when the agent itself runs).
    pub(super) binary: Option<&'a crate::agents::Binary>,
    pub(super) prompt: Option<&'a str>,
    /// How long the supervisor may hold the gate's `ask` (seconds), when it does.
    pub(super) hold_secs: Option<u64>,
}

/// Sets up the agent from its profile: its own state (settings, history, project memory) that
/// must outlive ephemeral sessions, kept per project under `$XDG_DATA_HOME/airlock/state/` and
/// bound into the sandbox's home, never the user's real one (credential files stay hidden: the
/// hide list applies on top); its binary bound read-only; its generated settings, environment
/// and argv (interactive, or headless on a prompt).
pub(super) fn agent_state(
    spec: &mut SandboxSpec,
    args: &RunArgs,
    agent: &AgentRun<'_>,
    workspace: &Path,
    who: &view::Invoker,
    creds: &crate::credentials::Sandboxed,
) -> Result<()> {
    let p = agent.profile;
    if args.command.is_empty() {
        spec.argv = agent_argv(agent);
    }
    for src in agent.binary.map(|b| b.binds.as_slice()).unwrap_or_default() {
        spec.binds.push(Bind {
            source: src.clone(),
            target: src.clone(),
            writable: false,
            optional: false,
        });
    }
    let root = state_root(p.program, workspace)?;
    bind_state(spec, p, &root, &who.home)?;
    if p.program == "claude" {
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
        hold_secs: agent.hold_secs,
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

/// The agent's argv when it runs itself: interactive, or headless on the prompt.
fn agent_argv(agent: &AgentRun<'_>) -> Vec<String> {
    let exe = agent
        .binary
        .map(|b| b.path.display().to_string())
        .unwrap_or_else(|| agent.profile.program.to_string());
    match agent.prompt {
        Some(text) => agent.profile.headless_argv(&exe, text),
        None => vec![exe],
    }
}

/// The agent's state directory for this project:
/// `$XDG_DATA_HOME/airlock/state/NAME-DIGEST/PROGRAM` (the digest of the workspace's path).
fn state_root(program: &str, workspace: &Path) -> Result<PathBuf> {
    let project = format!(
        "{}-{}",
        workspace
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        super::digest(workspace.as_os_str().as_encoded_bytes())
    );
    session_dir::sessions_root()?
        .parent()
        .map(|p| p.join("state").join(project).join(program))
        .context("bad data directory")
}

/// Creates each state entry of the profile under `root` (a directory, or a file holding `{}`)
/// and binds it writable at the same name in the sandbox's home.
fn bind_state(spec: &mut SandboxSpec, p: &Profile, root: &Path, home: &Path) -> Result<()> {
    for (name, dir) in p.state {
        let src = root.join(name);
        if *dir {
            std::fs::create_dir_all(&src)
        } else {
            std::fs::create_dir_all(root).and_then(|()| {
                if src.exists() {
                    Ok(())
                } else {
                    std::fs::write(&src, "{}\n")
                }
            })
        }
        .with_context(|| format!("cannot create agent state {}", src.display()))?;
        spec.binds.push(Bind {
            source: src,
            target: home.join(name),
            writable: true,
            optional: false,
        });
    }
    Ok(())
}
