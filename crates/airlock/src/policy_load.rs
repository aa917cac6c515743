//! Loading the policy layers from disk: built-in defaults < the user's config <
//! `--policy` files < command-line flags. A policy file inside the workspace is untrusted (the
//! agent can write it) and may only narrow the policy unless named with `--trust-policy`.

use std::path::{Path, PathBuf};

use airlock_policy::{ConfigFile, Layer, Policy};
use anyhow::{bail, Context, Result};

/// The user's config file: `$XDG_CONFIG_HOME/airlock/config.toml` or
/// `~/.config/airlock/config.toml`.
pub(crate) fn user_config_path() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("airlock/config.toml"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".config/airlock/config.toml"))
}

/// The user's per-project policy file for `workspace` (canonical):
/// `$XDG_CONFIG_HOME/airlock/projects/NAME-HASH.toml` (NAME the workspace's last component,
/// HASH the first 16 hex digits of the SHA-256 of its path), next to the user's config and never
/// inside a workspace. Layered, trusted, right after the user's config; `airlock approve --for
/// project` writes it. `None` without a config directory or when it would lie inside `workspace`.
pub(crate) fn project_policy_path(workspace: &Path) -> Option<PathBuf> {
    use sha2::Digest;
    let config = user_config_path()?;
    let dir = config.parent()?.join("projects");
    if dir.starts_with(workspace) {
        return None;
    }
    let name: String = workspace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let hash = hex::encode(&sha2::Sha256::digest(workspace.as_os_str().as_encoded_bytes())[..8]);
    Some(dir.join(format!("{name}-{hash}.toml")))
}

/// One policy file as a layer; `trusted` layers may widen the policy, others only narrow it.
pub(crate) fn read_layer(path: &Path, trusted: bool) -> Result<Layer> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    Ok(Layer {
        source: path.to_path_buf(),
        trusted,
        config: ConfigFile::parse(path, &text)?,
    })
}

/// Loads the layers and merges them. `workspace` (canonical) decides which files are untrusted.
pub(crate) fn load(
    workspace: Option<&Path>,
    policies: &[PathBuf],
    trusted: &[PathBuf],
    flags: Option<ConfigFile>,
) -> Result<Policy> {
    let layers = layers(workspace, policies, trusted, flags)?;
    for layer in &layers {
        let problems = network_problems(layer);
        if let Some((_, first)) = problems.first() {
            let more = problems.len() - 1;
            let source = layer.source.display();
            if more == 0 {
                bail!("{first}; fix or remove it");
            }
            bail!("{first}; and {more} more (`airlock policy check {source}` lists them)");
        }
    }
    Ok(Policy::from_layers(&layers)?)
}

/// Every `[network]` entry of `layer` that cannot be compiled, one line each:
/// `FILE: network.KEY: 'VALUE' what is wrong` (what `airlock run` refuses and `airlock policy
/// check` lists), with the dotted key (`network.allow[2]`) of each.
pub(crate) fn network_problems(layer: &Layer) -> Vec<(String, String)> {
    let source = layer.source.display();
    match airlock_policy::network::NetworkPolicy::compile_all(&layer.config.network) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| {
                let key = format!("network.{}", e.key);
                let line = format!("{source}: {key}: '{}' {}", e.value, e.message);
                (key, line)
            })
            .collect(),
    }
}

/// The sealed command-gate policy of a session ([`airlock_gate::sealed`]), as a file for
/// [`airlock_gate::sealed::SESSION_POLICY_PATH`]: the `[commands]` tables of the user's config
/// and the `--policy` files, each with its trust, read here on the host, and the home and
/// workspace as the sandbox sees them. The rules are checked now, so a broken `[commands]`
/// table stops `airlock run` with its file named instead of denying every call later.
pub(crate) fn sealed_gate_policy(
    workspace: &Path,
    policies: &[PathBuf],
    trusted: &[PathBuf],
    inside: (&Path, &Path),
    session: &str,
) -> Result<airlock_sandbox::GeneratedFile> {
    use airlock_gate::sealed::{SealedLayer, SessionPolicy, SESSION_POLICY_PATH};
    let (home, inner_workspace) = inside;
    let layers: Vec<SealedLayer> = layers(Some(workspace), policies, trusted, None)?
        .into_iter()
        .filter_map(|l| {
            l.config.commands.map(|commands| SealedLayer {
                source: l.source,
                trusted: l.trusted,
                commands,
            })
        })
        .collect();
    let sealed = SessionPolicy {
        version: airlock_gate::sealed::SESSION_POLICY_VERSION,
        session: session.to_string(),
        home: home.display().to_string(),
        workspace: inner_workspace.display().to_string(),
        layers,
        remotes: airlock_gate::git::trusted_remotes(workspace),
    };
    // Without a `[commands]` table there is nothing of the user's to check: the built-in rules
    // alone are checked by airlock-gate's tests (loading them costs ~1 ms per run).
    if !sealed.layers.is_empty() {
        airlock_gate::Engine::load(&sealed.command_layers(), &sealed.home, false)
            .context("the command gate's policy ([commands]) is invalid")?;
    }
    Ok(airlock_sandbox::GeneratedFile {
        target: SESSION_POLICY_PATH.into(),
        contents: sealed.to_toml()?.into_bytes(),
    })
}

/// The policy layers, lowest first: the user's config, the user's per-project file for
/// `workspace` ([`project_policy_path`]), `policies` (untrusted when inside `workspace` unless
/// listed in `trusted`), then `flags`.
pub(crate) fn layers(
    workspace: Option<&Path>,
    policies: &[PathBuf],
    trusted: &[PathBuf],
    flags: Option<ConfigFile>,
) -> Result<Vec<Layer>> {
    let mut layers = Vec::new();
    if let Some(p) = user_config_path().filter(|p| p.exists()) {
        layers.push(read_layer(&p, true)?);
    }
    if let Some(p) = workspace
        .and_then(project_policy_path)
        .filter(|p| p.exists())
    {
        layers.push(read_layer(&p, true)?);
    }
    let trusted: Vec<PathBuf> = trusted
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    for p in policies {
        let canon = std::fs::canonicalize(p)
            .with_context(|| format!("cannot read policy file {}", p.display()))?;
        let inside = workspace.is_some_and(|ws| canon.starts_with(ws));
        layers.push(read_layer(&canon, !inside || trusted.contains(&canon))?);
    }
    if let Some(config) = flags {
        layers.push(Layer {
            source: PathBuf::from("<command line>"),
            trusted: true,
            config,
        });
    }
    Ok(layers)
}
