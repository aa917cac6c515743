//! The agent's part of the spec (`--agent`): its binary, its per-project state, generated
//! settings, environment and argv.

use anyhow::{Context, Result};

use crate::cli::RunArgs;
use crate::session_dir;
use crate::view;

/// The agent to start and how.
pub(super) struct AgentRun<'a> {
    pub(super) profile: &'static crate::agents::Profile,
    /// Its binary on the host (required when the agent itself runs).
    pub(super) binary: Option<&'a crate::agents::Binary>,
    pub(super) prompt: Option<&'a str>,
}

/// Sets up the agent from its profile: its own state (settings, history, project memory) that
/// must outlive ephemeral sessions, kept per project under `$XDG_DATA_HOME/airlock/state/` and
/// bound into the sandbox's home, never the user's real one (credential files stay hidden: the
/// hide list applies on top); its binary bound read-only; its generated settings, environment
/// and argv (interactive, or headless on a prompt).
pub(super) fn agent_state(
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
        super::digest(workspace.as_os_str().as_encoded_bytes())
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
