//! Agent profiles: everything airlock knows about one coding agent, in one place: how to find
//! its binary on the host, the per-project state it keeps, the settings airlock generates for
//! it, its environment, the hosts it needs, and how to run it headless. `airlock run --agent X`
//! only asks the profile; adding an agent is one more [`Profile`].

use std::path::{Path, PathBuf};

use airlock_sandbox::{Bind, GeneratedFile};
use anyhow::{anyhow, bail, Context as _, Result};

use crate::cli::Agent;
use crate::exit::{with_code, FAILURE};

/// Where the sandbox sees airlock's own binary (the hook command is this plus `hook claude`).
const AIRLOCK_INSIDE: &str = "/run/airlock/bin/airlock";

/// Claude Code's managed settings path on Linux (fixed in the client; no variable moves it).
pub(crate) const CLAUDE_MANAGED_SETTINGS: &str = "/etc/claude-code/managed-settings.json";

/// One agent.
#[derive(Debug)]
pub(crate) struct Profile {
    /// The program name looked up on the host's `PATH` and run inside.
    pub(crate) program: &'static str,
    /// State kept per project and bound into the sandbox's home: (name under the home, is a
    /// directory).
    pub(crate) state: &'static [(&'static str, bool)],
    /// Hosts allowed by default for this agent (its API and login endpoints).
    pub(crate) hosts: &'static [&'static str],
    /// Places under the home where installers put the binary when it is not on `PATH`.
    home_candidates: &'static [&'static str],
    /// How to install it (shown when it cannot be found).
    install: &'static str,
    /// Variables inside that hold a credential placeholder this agent can log in with.
    credential_vars: &'static [&'static str],
    /// What was looked for, said when no credential is found.
    credential_sources: &'static str,
    /// Writes the agent's settings and seeds its state.
    configure: fn(&Session<'_>, &mut Launch) -> Result<()>,
    /// The argv that runs it headless with a prompt.
    headless: fn(&str, &str) -> Vec<String>,
}

/// The profile of `agent`, `None` for `--agent shell`.
pub(crate) fn profile(agent: Agent) -> Option<&'static Profile> {
    match agent {
        Agent::Claude => Some(&CLAUDE),
        Agent::Codex => Some(&CODEX),
        Agent::Gemini => Some(&GEMINI),
        Agent::Shell => None,
    }
}

/// What a profile needs to know about the session.
#[derive(Debug)]
pub(crate) struct Session<'a> {
    /// The home directory (the same path inside as on the host).
    pub(crate) home: &'a Path,
    /// The environment the sandbox gets so far (policy, `--env`, proxy, placeholders).
    pub(crate) env: &'a [(String, String)],
    /// The workspace as the agent sees it.
    pub(crate) workspace: &'a Path,
    /// The agent's per-project state directory on the host (bound pieces of it go inside).
    pub(crate) state_root: &'a Path,
    /// The environment airlock sets for credentials (placeholders, trust bundle).
    pub(crate) cred_env: &'a [(String, String)],
    /// Whether the agent runs as uid 0 inside.
    pub(crate) root_inside: bool,
    /// How long the supervisor may hold the gate's `ask` (seconds; a detached session with
    /// approvals), which the hook's time-out must exceed.
    pub(crate) hold_secs: Option<u64>,
}

/// What a profile adds to the sandbox.
#[derive(Debug, Default)]
pub(crate) struct Launch {
    pub(crate) env: Vec<(String, String)>,
    pub(crate) files: Vec<GeneratedFile>,
    pub(crate) binds: Vec<Bind>,
}

/// The agent's binary on the host: what to run and what to bind read-only so it runs inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binary {
    /// The path to run inside (the same path as on the host).
    pub(crate) path: PathBuf,
    /// Read-only binds: the package directory of an npm install, or the file of a native one.
    pub(crate) binds: Vec<PathBuf>,
}

impl Profile {
    /// Finds the binary: each `PATH` entry, then the installers' places under `home`. A found
    /// link is followed; an npm package's `cli.js` brings its package directory (never the
    /// home itself). Errors say how to install the agent.
    pub(crate) fn find_binary(&self, path_var: &str, home: &Path) -> Result<Binary> {
        let candidates = path_var
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| Path::new(d).join(self.program))
            .chain(self.home_candidates.iter().map(|c| home.join(c)));
        for c in candidates {
            let Ok(real) = std::fs::canonicalize(&c) else {
                continue;
            };
            if !real.is_file() || !is_executable(&real) {
                continue;
            }
            return Ok(Binary {
                binds: vec![package_dir(&real).unwrap_or_else(|| real.clone())],
                path: real,
            });
        }
        Err(with_code(
            FAILURE,
            anyhow!(
                "cannot find the `{}` program on PATH or in {}; install it with `{}`, or run \
                 another agent with --agent",
                self.program,
                self.home_candidates
                    .iter()
                    .map(|c| format!("~/{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.install
            ),
        ))
    }

    /// Fails unless one of the agent's credential variables (or, for Claude Code, its
    /// placeholder login file) is set up, saying what was looked for.
    pub(crate) fn check_credential(&self, inside_vars: &[String], login_file: bool) -> Result<()> {
        let found = inside_vars
            .iter()
            .any(|k| self.credential_vars.contains(&k.as_str()));
        if found || login_file {
            return Ok(());
        }
        Err(with_code(
            FAILURE,
            anyhow!(
                "no credential for `{}`: looked for {}; set one on the host (airlock passes the \
                 agent only a placeholder), or add a [[credentials]] entry with \
                 placeholder_env = \"{}\" (see docs/credentials.md)",
                self.program,
                self.credential_sources,
                self.credential_vars.first().copied().unwrap_or("")
            ),
        ))
    }

    /// The agent's settings, seeded state and environment.
    pub(crate) fn configure(&self, ctx: &Session<'_>) -> Result<Launch> {
        let mut l = Launch::default();
        (self.configure)(ctx, &mut l)?;
        Ok(l)
    }

    /// The argv that runs `program` (the found binary, or the bare name) headless on `prompt`.
    pub(crate) fn headless_argv(&self, program: &str, prompt: &str) -> Vec<String> {
        (self.headless)(program, prompt)
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// For a script inside `node_modules/<pkg>` or `node_modules/@scope/<pkg>`, that package's
/// directory (its dependencies live inside it).
fn package_dir(real: &Path) -> Option<PathBuf> {
    let mut dir = real.parent()?;
    loop {
        let parent = dir.parent()?;
        if parent.file_name().is_some_and(|n| n == "node_modules") {
            return Some(dir.to_path_buf());
        }
        if parent
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('@'))
            && parent
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "node_modules")
        {
            return Some(dir.to_path_buf());
        }
        dir = parent;
    }
}

static CLAUDE: Profile = Profile {
    program: "claude",
    state: &[(".claude", true), (".claude.json", false)],
    hosts: &["api.anthropic.com", crate::credentials::CLAUDE_OAUTH_HOST],
    home_candidates: &[
        ".local/bin/claude",
        ".claude/local/claude",
        ".npm-global/bin/claude",
    ],
    install: "npm install -g @anthropic-ai/claude-code",
    credential_vars: &[
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "ANTHROPIC_AUTH_TOKEN",
    ],
    credential_sources:
        "$ANTHROPIC_API_KEY, $CLAUDE_CODE_OAUTH_TOKEN and ~/.claude/.credentials.json \
                         (a `claude` login)",
    configure: claude_configure,
    headless: |program, prompt| {
        [
            program,
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
        ]
        .map(String::from)
        .to_vec()
    },
};

static CODEX: Profile = Profile {
    program: "codex",
    state: &[(".codex", true)],
    hosts: &["api.openai.com"],
    home_candidates: &[".local/bin/codex", ".npm-global/bin/codex"],
    install: "npm install -g @openai/codex",
    credential_vars: &["OPENAI_API_KEY"],
    credential_sources: "$OPENAI_API_KEY",
    configure: codex_configure,
    headless: |program, prompt| {
        // The workspace need not be a git repository: airlock's overlay is the undo.
        [program, "exec", "--skip-git-repo-check", prompt]
            .map(String::from)
            .to_vec()
    },
};

static GEMINI: Profile = Profile {
    program: "gemini",
    state: &[(".gemini", true)],
    hosts: &["generativelanguage.googleapis.com"],
    home_candidates: &[".local/bin/gemini", ".npm-global/bin/gemini"],
    install: "npm install -g @google/gemini-cli",
    credential_vars: &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
    credential_sources: "$GEMINI_API_KEY, $GOOGLE_API_KEY",
    configure: |_, _| Ok(()),
    headless: |program, prompt| [program, "-p", prompt].map(String::from).to_vec(),
};

/// Claude Code: managed settings (the gate hook for every tool, bypass mode: the box is the
/// boundary), `~/.claude.json` seeded so the first run goes straight to work, and its
/// environment.
fn claude_configure(ctx: &Session<'_>, l: &mut Launch) -> Result<()> {
    l.files.push(GeneratedFile {
        target: CLAUDE_MANAGED_SETTINGS.into(),
        contents: serde_json::to_vec_pretty(&claude_managed_settings(ctx.hold_secs))?,
    });
    let api_key = ctx
        .cred_env
        .iter()
        .find(|(k, _)| k == "ANTHROPIC_API_KEY")
        .map(|(_, v)| v.as_str());
    seed_claude_json(&ctx.state_root.join(".claude.json"), ctx.workspace, api_key)?;
    for (k, v) in [
        // Without it Claude Code also calls telemetry, bootstrap and event-logging endpoints
        // with the user's key.
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL", "1"),
        ("DISABLE_AUTOUPDATER", "1"),
    ] {
        l.env.push((k.into(), v.into()));
    }
    if ctx.root_inside {
        // Claude Code refuses bypass mode as root unless told it is in a sandbox.
        l.env.push(("IS_SANDBOX".into(), "1".into()));
    }
    Ok(())
}

/// Codex: a generated, read-only `~/.codex/config.toml` with a model provider that reads the
/// placeholder from `OPENAI_API_KEY` (`env_key`) and talks to the real API (or the
/// `OPENAI_BASE_URL` given with `--env`), analytics off, and Codex's own sandbox and approvals
/// off: airlock is the boundary (Codex's sandbox needs namespaces airlock does not grant).
fn codex_configure(ctx: &Session<'_>, l: &mut Launch) -> Result<()> {
    let base_url = ctx
        .env
        .iter()
        .find(|(k, _)| k == "OPENAI_BASE_URL")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "https://api.openai.com/v1".to_string());
    l.files.push(GeneratedFile {
        target: ctx.home.join(".codex/config.toml"),
        contents: codex_config(&base_url)?.into_bytes(),
    });
    l.files.push(GeneratedFile {
        target: CODEX_REQUIREMENTS.into(),
        contents: codex_requirements()?.into_bytes(),
    });
    l.env.push((
        "CODEX_HOME".into(),
        ctx.home.join(".codex").display().to_string(),
    ));
    Ok(())
}

/// Codex's system requirements file: hooks here are managed (trusted by policy, not by a
/// review the agent could answer), and the agent cannot edit it (generated, read-only).
pub(crate) const CODEX_REQUIREMENTS: &str = "/etc/codex/requirements.toml";

/// The requirements: the command gate as Codex's PreToolUse hook for every tool
/// (`airlock hook codex`: Claude Code's protocol, which Codex speaks, with ask as deny since
/// Codex carries out an `ask` as if allowed when approvals are off).
pub(crate) fn codex_requirements() -> Result<String> {
    let v = serde_json::json!({
        "hooks": {
            "PreToolUse": [{
                "matcher": "*",
                "hooks": [{
                    "type": "command",
                    "command": format!("{AIRLOCK_INSIDE} hook codex"),
                    "timeout": 30
                }]
            }]
        }
    });
    let body = toml::to_string(&v).context("cannot write Codex's requirements.toml")?;
    Ok(format!(
        "# written by airlock for this session; read-only\n{body}"
    ))
}

/// The text of Codex's `config.toml` (see the Codex configuration reference).
pub(crate) fn codex_config(base_url: &str) -> Result<String> {
    let v = serde_json::json!({
        "model_provider": "airlock-openai",
        "approval_policy": "never",
        "sandbox_mode": "danger-full-access",
        "check_for_update_on_startup": false,
        "analytics": { "enabled": false },
        "model_providers": {
            "airlock-openai": {
                "name": "OpenAI through airlock",
                "base_url": base_url,
                "env_key": "OPENAI_API_KEY",
                "wire_api": "responses",
            }
        }
    });
    let body = toml::to_string(&v).context("cannot write Codex's config.toml")?;
    Ok(format!(
        "# written by airlock for this session; read-only\n{body}"
    ))
}

/// Variables that would change how the hook command runs: Claude Code wraps every hook command,
/// managed ones included, in `CLAUDE_CODE_SHELL_PREFIX`, and the loader honours `LD_*` and
/// `GLIBC_TUNABLES` (ld.so(8)). User and project settings can set any variable through their
/// `env` block, which Claude Code copies into its own environment; the managed settings' `env`
/// is applied last, so pinning these to empty there undoes what the agent wrote.
const CLAUDE_PINNED_ENV: &[&str] = &[
    "CLAUDE_CODE_SHELL_PREFIX",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "GLIBC_TUNABLES",
    "BASH_ENV",
    "ENV",
];

/// The managed settings: Claude Code reads them whatever `--bare`, user or project settings
/// say, and the agent cannot edit them (a read-only generated file).
///
/// - The gate is the PreToolUse hook for every tool. Claude Code treats a hook that exits with
///   any status but 0 or 2 as a non-blocking error and runs the tool, so the command turns any
///   failure of the hook (a crash, a missing binary) into exit 2, which blocks.
/// - `allowManagedHooksOnly`: hooks from user, project and local settings (which the agent can
///   write) do not run at all.
/// - `env` pins [`CLAUDE_PINNED_ENV`] to empty, so a settings file the agent wrote cannot wrap
///   or preload the hook.
/// - The hook's `timeout` (seconds): Claude Code kills a hook that runs longer and goes on as if
///   it had not answered (in bypass mode, the tool runs: the `|| exit 2` never runs for a killed
///   shell), so it must never fire: [`HOOK_TIMEOUT_SECS`], or, when the supervisor may hold an
///   `ask` for `hold_secs` (a detached session with approvals), that plus the hook's own grace
///   ([`crate::gate_audit::HOLD_GRACE_SECS`]) plus [`HOOK_TIMEOUT_SECS`].
pub(crate) fn claude_managed_settings(hold_secs: Option<u64>) -> serde_json::Value {
    let pinned: serde_json::Map<String, serde_json::Value> = CLAUDE_PINNED_ENV
        .iter()
        .map(|k| (k.to_string(), serde_json::Value::String(String::new())))
        .collect();
    serde_json::json!({
        "hooks": {
            "PreToolUse": [{
                "matcher": "*",
                "hooks": [{
                    "type": "command",
                    "command": format!(
                        "{AIRLOCK_INSIDE} hook claude || {{ echo 'airlock: the command gate failed; blocked' >&2; exit 2; }}"
                    ),
                    "timeout": hook_timeout(hold_secs)
                }]
            }],
            // The agent's own events feed `[notify]` (never a decision; always exit 0).
            "Notification": [{
                "hooks": [{
                    "type": "command",
                    "command": format!("{AIRLOCK_INSIDE} hook claude-event"),
                    "timeout": 10
                }]
            }],
            "Stop": [{
                "hooks": [{
                    "type": "command",
                    "command": format!("{AIRLOCK_INSIDE} hook claude-event"),
                    "timeout": 10
                }]
            }]
        },
        "allowManagedHooksOnly": true,
        "env": pinned,
        "permissions": { "defaultMode": "bypassPermissions" },
        "skipDangerousModePermissionPrompt": true,
        "statusLine": {
            "type": "command",
            "command": "printf 'airlock session %s' \"$AIRLOCK_SESSION\""
        }
    })
}

/// The gate hook's time-out when no ask is held (seconds): the rules and the LLM reviewer's own
/// time-out fit well within it.
pub(crate) const HOOK_TIMEOUT_SECS: u64 = 30;

/// The gate hook's `timeout` in the managed settings (see [`claude_managed_settings`]).
fn hook_timeout(hold_secs: Option<u64>) -> u64 {
    match hold_secs {
        Some(h) => h + crate::gate_audit::HOLD_GRACE_SECS + HOOK_TIMEOUT_SECS,
        None => HOOK_TIMEOUT_SECS,
    }
}

/// Rewrites the agent's `~/.claude.json` (its per-project copy on the host) with onboarding
/// done, the workspace trusted, bypass mode accepted and the API key placeholder approved.
/// Claude Code remembers approved keys by their last 20 characters
/// (`customApiKeyResponses.approved`); the placeholder is new each session, so the list is
/// replaced. Other keys the agent wrote are kept; a file that is not a JSON object is replaced.
fn seed_claude_json(file: &Path, workspace: &Path, api_key: Option<&str>) -> Result<()> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut text = String::new();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(file)
    {
        let _ = f.read_to_string(&mut text);
    }
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if !v.is_object() {
        v = serde_json::json!({});
    }
    v["hasCompletedOnboarding"] = true.into();
    v["bypassPermissionsModeAccepted"] = true.into();
    if !v["projects"].is_object() {
        v["projects"] = serde_json::json!({});
    }
    let ws = workspace.display().to_string();
    if !v["projects"][&ws].is_object() {
        v["projects"][&ws] = serde_json::json!({});
    }
    v["projects"][&ws]["hasTrustDialogAccepted"] = true.into();
    v["projects"][&ws]["hasCompletedProjectOnboarding"] = true.into();
    if let Some(key) = api_key {
        let tail: String = {
            let chars: Vec<char> = key.chars().collect();
            chars[chars.len().saturating_sub(20)..].iter().collect()
        };
        if !v["customApiKeyResponses"].is_object() {
            v["customApiKeyResponses"] = serde_json::json!({});
        }
        v["customApiKeyResponses"]["approved"] = serde_json::json!([tail]);
        if !v["customApiKeyResponses"]["rejected"].is_array() {
            v["customApiKeyResponses"]["rejected"] = serde_json::json!([]);
        }
    }
    let dir = file
        .parent()
        .ok_or_else(|| anyhow!("bad state path {}", file.display()))?;
    let tmp = dir.join(".claude.json.airlock-tmp");
    let _ = std::fs::remove_file(&tmp);
    std::fs::write(&tmp, serde_json::to_vec_pretty(&v)?)
        .and_then(|()| std::fs::rename(&tmp, file))
        .with_context(|| format!("cannot write the agent state {}", file.display()))
}

/// Where a prompt comes from: `--prompt TEXT` or `--prompt-file F` (read now, so a missing file
/// stops the run before anything starts).
pub(crate) fn prompt(text: Option<&str>, file: Option<&Path>) -> Result<Option<String>> {
    match (text, file) {
        (Some(_), Some(_)) => bail!("give either --prompt or --prompt-file, not both"),
        (Some(t), None) => Ok(Some(t.to_string())),
        (None, Some(f)) => std::fs::read_to_string(f).map(Some).map_err(|e| {
            with_code(
                FAILURE,
                anyhow!("--prompt-file {}: {e}; nothing was started", f.display()),
            )
        }),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npm_scripts_bring_their_package_and_native_binaries_only_themselves() {
        let d = tempfile::tempdir().expect("tmp");
        let pkg = d.path().join("lib/node_modules/@anthropic-ai/claude-code");
        std::fs::create_dir_all(pkg.join("vendor")).expect("mkdir");
        assert_eq!(package_dir(&pkg.join("cli.js")), Some(pkg.clone()));
        assert_eq!(package_dir(&pkg.join("vendor/x.js")), Some(pkg.clone()));
        let plain = d.path().join("lib/node_modules/codex/bin/codex.js");
        assert_eq!(
            package_dir(&plain),
            Some(d.path().join("lib/node_modules/codex"))
        );
        assert_eq!(
            package_dir(&d.path().join(".local/share/claude/versions/2.1.0")),
            None
        );
    }

    #[test]
    fn find_binary_follows_links_and_says_how_to_install() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tmp");
        let pkg = d
            .path()
            .join("npm/lib/node_modules/@anthropic-ai/claude-code");
        std::fs::create_dir_all(&pkg).expect("mkdir");
        std::fs::create_dir_all(d.path().join("npm/bin")).expect("mkdir");
        std::fs::write(pkg.join("cli.js"), "#!/usr/bin/env node\n").expect("write");
        std::fs::set_permissions(pkg.join("cli.js"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::os::unix::fs::symlink(pkg.join("cli.js"), d.path().join("npm/bin/claude"))
            .expect("link");
        let path = format!("/nonexistent:{}", d.path().join("npm/bin").display());
        let b = CLAUDE.find_binary(&path, d.path()).expect("found");
        assert_eq!(b.path, pkg.join("cli.js").canonicalize().expect("canon"));
        assert_eq!(b.binds, vec![pkg.canonicalize().expect("canon")]);
        // The native installer's place under the home, not on PATH.
        let home = d.path().join("home");
        let native = home.join(".local/share/claude/versions/2.1.0");
        std::fs::create_dir_all(native.parent().expect("parent")).expect("mkdir");
        std::fs::create_dir_all(home.join(".local/bin")).expect("mkdir");
        std::fs::write(&native, "ELF").expect("write");
        std::fs::set_permissions(&native, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::symlink(&native, home.join(".local/bin/claude")).expect("link");
        let b = CLAUDE.find_binary("/nonexistent", &home).expect("found");
        assert_eq!(b.binds, vec![native.canonicalize().expect("canon")]);
        // Not executable, or nowhere: the error says how to install.
        std::fs::set_permissions(&native, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = format!(
            "{:#}",
            CLAUDE
                .find_binary("/nonexistent", &home)
                .expect_err("must fail")
        );
        assert!(
            e.contains("npm install -g @anthropic-ai/claude-code"),
            "{e}"
        );
    }

    #[test]
    fn missing_credentials_name_what_was_looked_for() {
        let e = format!(
            "{:#}",
            CLAUDE.check_credential(&[], false).expect_err("must fail")
        );
        for s in [
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_OAUTH_TOKEN",
            ".credentials.json",
        ] {
            assert!(e.contains(s), "{e}");
        }
        assert!(CLAUDE.check_credential(&[], true).is_ok());
        let env = ["ANTHROPIC_API_KEY".to_string()];
        assert!(CLAUDE.check_credential(&env, false).is_ok());
        assert!(CODEX.check_credential(&env, false).is_err());
    }

    #[test]
    fn claude_json_is_seeded_and_keeps_the_agents_own_keys() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join(".claude.json");
        std::fs::write(
            &f,
            r#"{"numStartups": 7, "customApiKeyResponses": {"rejected": ["x"]}}"#,
        )
        .expect("write");
        let key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789";
        seed_claude_json(&f, Path::new("/work/p"), Some(key)).expect("seed");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&f).expect("read")).expect("json");
        assert_eq!(v["numStartups"], 7);
        assert_eq!(v["hasCompletedOnboarding"], true);
        assert_eq!(v["projects"]["/work/p"]["hasTrustDialogAccepted"], true);
        assert_eq!(
            v["customApiKeyResponses"]["approved"],
            serde_json::json!(["qrstuvwxyz0123456789"])
        );
        assert_eq!(
            v["customApiKeyResponses"]["rejected"],
            serde_json::json!(["x"])
        );
        // Garbage is replaced.
        std::fs::write(&f, "[1,2").expect("write");
        seed_claude_json(&f, Path::new("/w"), None).expect("seed");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&f).expect("read")).expect("json");
        assert_eq!(v["hasCompletedOnboarding"], true);
    }

    #[test]
    fn managed_settings_hook_every_tool_with_airlock() {
        // The hook is never killed while the supervisor holds an ask: its time-out exceeds the
        // longest hold plus the hook's own wait after it.
        for hold in [1, 60, airlock_policy::config::APPROVAL_TIMEOUT_MAX] {
            let s = claude_managed_settings(Some(hold));
            let t = s["hooks"]["PreToolUse"][0]["hooks"][0]["timeout"]
                .as_u64()
                .expect("timeout");
            assert!(
                t >= hold + crate::gate_audit::HOLD_GRACE_SECS + 20,
                "{hold}: {t}"
            );
        }
        let s = claude_managed_settings(None);
        assert_eq!(s["hooks"]["PreToolUse"][0]["hooks"][0]["timeout"], 30);
        assert_eq!(s["hooks"]["PreToolUse"][0]["matcher"], "*");
        let cmd = s["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
            .as_str()
            .expect("command");
        assert!(
            cmd.starts_with("/run/airlock/bin/airlock hook claude || ")
                && cmd.ends_with("exit 2; }"),
            "{cmd}"
        );
        assert_eq!(s["permissions"]["defaultMode"], "bypassPermissions");
        assert_eq!(s["allowManagedHooksOnly"], true);
        for event in ["Notification", "Stop"] {
            assert_eq!(
                s["hooks"][event][0]["hooks"][0]["command"],
                "/run/airlock/bin/airlock hook claude-event",
                "{event}"
            );
        }
        for k in CLAUDE_PINNED_ENV {
            assert_eq!(s["env"][k], "", "{k} pinned empty");
        }
    }

    #[test]
    fn codex_gets_the_gate_as_a_managed_hook_and_its_sandbox_off() {
        let r: toml::Value = toml::from_str(&codex_requirements().expect("text")).expect("toml");
        let h = &r["hooks"]["PreToolUse"][0];
        assert_eq!(h["matcher"].as_str(), Some("*"));
        assert_eq!(
            h["hooks"][0]["command"].as_str(),
            Some("/run/airlock/bin/airlock hook codex")
        );
        let c: toml::Value =
            toml::from_str(&codex_config("https://api.openai.com/v1").expect("text"))
                .expect("toml");
        assert_eq!(c["sandbox_mode"].as_str(), Some("danger-full-access"));
        assert_eq!(c["approval_policy"].as_str(), Some("never"));
        let p = &c["model_providers"]["airlock-openai"];
        assert_eq!(p["env_key"].as_str(), Some("OPENAI_API_KEY"));
        assert_eq!(p["base_url"].as_str(), Some("https://api.openai.com/v1"));
        assert_eq!(c["model_provider"].as_str(), Some("airlock-openai"));
    }

    #[test]
    fn a_missing_prompt_file_is_an_error_naming_it() {
        let e = format!(
            "{:#}",
            prompt(None, Some(Path::new("/nonexistent/p.md"))).expect_err("must fail")
        );
        assert!(e.contains("/nonexistent/p.md"), "{e}");
        assert!(prompt(Some("a"), Some(Path::new("/x"))).is_err());
        assert_eq!(prompt(Some("a"), None).expect("ok"), Some("a".into()));
    }
}
