//! `airlock hook claude`: the Claude Code PreToolUse hook.
//!
//! Never fails open: Claude Code runs the tool when a hook crashes, times out or exits with a
//! status other than 0 or 2, so every failure here (bad input, a broken policy, a panic) still
//! prints a `deny` decision and exits 0; if even that cannot be printed, the reason goes to
//! stderr and the exit status is 2, which Claude Code also treats as a block.
//!
//! Where the rules come from: on the host, the user's config (`~/.config/airlock/config.toml`)
//! and `--policy` files. Inside an airlock session (told by the supervisor's sealed policy at
//! [`SESSION_POLICY_PATH`] on a read-only mount, not by the environment), only that sealed
//! policy, plus `--policy` files that may only narrow it: the sandbox's home, workspace and
//! environment cannot widen the gate. If the environment says "session" but the sealed policy
//! is missing or unusable, every call is denied.
//!
//! Audit: every decision is appended to the audit log (`--audit-log`, else `$AIRLOCK_AUDIT_LOG`,
//! else `$XDG_STATE_HOME/airlock/audit.jsonl`). When the log cannot be written the error goes to
//! stderr, a deny or ask stands, and an allow becomes ask: nothing runs unrecorded without a
//! person seeing it.

use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use airlock_audit::{AuditEvent, AuditLog, Decision, Detail};
use airlock_gate::hook::{self, HookInput};
use airlock_gate::review::{self, ReviewRequest};
use airlock_gate::sealed::{SessionPolicy, SESSION_POLICY_PATH};
use airlock_gate::{CommandLayer, Context, Engine, Tier};
use airlock_policy::{ConfigFile, Layer, Policy};
use anyhow::Context as _;

use crate::cli::HookArgs;
use crate::policy_load::read_layer;

/// The outcome of one hook call.
struct Outcome {
    tier: Tier,
    rule: String,
    reason: String,
    input: Option<HookInput>,
    /// The session, from the sealed policy (inside) or `$AIRLOCK_SESSION` (host).
    session: Option<String>,
}

impl Outcome {
    fn deny(rule: &str, reason: String) -> Outcome {
        Outcome {
            tier: Tier::Deny,
            rule: rule.to_string(),
            reason,
            input: None,
            session: None,
        }
    }
}

/// The engine and what `~` and "the workspace" mean to it, wherever the hook runs.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) engine: Engine,
    pub(crate) home: String,
    pub(crate) workspace: Option<String>,
    pub(crate) session: Option<String>,
    /// Inside a session: the remotes the supervisor captured (see [`Gate::git`]).
    pub(crate) remotes: Option<std::collections::BTreeMap<String, String>>,
}

impl Gate {
    /// On the host: the user's config and `policies`, `$HOME`, the workspace around `cwd`.
    /// Inside a session: the sealed policy and its home and workspace, with `policies` as
    /// untrusted layers (they may only narrow).
    pub(crate) fn load(policies: &[PathBuf], cwd: &Path) -> anyhow::Result<Gate> {
        match sealed_policy()? {
            None => {
                let home = home_dir();
                Ok(Gate {
                    engine: load_engine(policies, cwd, &home)?,
                    workspace: workspace_for(cwd, &home),
                    session: std::env::var("AIRLOCK_SESSION")
                        .ok()
                        .filter(|s| !s.is_empty()),
                    home,
                    remotes: None,
                })
            }
            Some(sealed) => {
                let home = airlock_gate::normalize::lexical(&sealed.home);
                let mut layers = sealed.command_layers();
                for path in policies {
                    let layer = read_layer(path, false)?;
                    Policy::from_layers(std::slice::from_ref(&layer))?;
                    if let Some(t) = layer.config.commands {
                        layers.push(CommandLayer {
                            source: layer.source,
                            table: t,
                            trusted: false,
                        });
                    }
                }
                Ok(Gate {
                    engine: Engine::load(&layers, &home, false)?,
                    workspace: usable_workspace(
                        airlock_gate::normalize::lexical(&sealed.workspace),
                        &home,
                    ),
                    home,
                    session: Some(sealed.session),
                    remotes: Some(sealed.remotes),
                })
            }
        }
    }

    /// The repository around `cwd` as the rules see it: inside a session, a push is owned
    /// only through a remote the supervisor captured on the host with the same URL.
    pub(crate) fn git(&self, cwd: &Path) -> airlock_gate::git::FsGit {
        let git = airlock_gate::git::FsGit::new(cwd).with_home(&self.home);
        match &self.remotes {
            Some(r) => git.with_trusted(r.clone()),
            None => git,
        }
    }
}

/// Variables airlock sets in a session; if one is present the sealed policy must be too.
const SESSION_VARS: &[&str] = &["AIRLOCK_SESSION", "AIRLOCK"];

/// The sealed policy when the hook runs inside a session, `None` on the host. The file must be
/// a regular file (not a link) on a read-only mount, as the supervisor binds it; anything else
/// there, or a session environment without the file, is an error (every call is denied).
fn sealed_policy() -> anyhow::Result<Option<SessionPolicy>> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = Path::new(SESSION_POLICY_PATH);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(var) = SESSION_VARS
                .iter()
                .find(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
            {
                anyhow::bail!(
                    "${var} says this is an airlock session, but the supervisor's gate policy \
                     {SESSION_POLICY_PATH} is missing, so every call is denied; start the agent \
                     with `airlock run`, or unset {var} outside a session"
                );
            }
            return Ok(None);
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot inspect the session's gate policy {SESSION_POLICY_PATH}")
            })
        }
        Ok(meta) if !meta.file_type().is_file() => anyhow::bail!(
            "{SESSION_POLICY_PATH} is not a regular file, so airlock did not write it; denying"
        ),
        Ok(_) => {}
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .with_context(|| format!("cannot open the session's gate policy {SESSION_POLICY_PATH}"))?;
    let fs = nix::sys::statvfs::fstatvfs(&file)
        .with_context(|| format!("cannot inspect the mount of {SESSION_POLICY_PATH}"))?;
    if !fs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        anyhow::bail!(
            "{SESSION_POLICY_PATH} is on a writable mount, so airlock did not seal it (anything \
             in the sandbox could have written it); denying"
        );
    }
    let mut text = String::new();
    file.take(1 << 20)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the session's gate policy {SESSION_POLICY_PATH}"))?;
    Ok(Some(SessionPolicy::parse(SESSION_POLICY_PATH, &text)?))
}

/// `airlock hook claude`.
pub(crate) fn claude(args: HookArgs) -> anyhow::Result<i32> {
    run(args, false)
}

/// `airlock hook codex`: the same protocol (Codex speaks Claude Code's PreToolUse format), but
/// Codex runs with approvals off inside airlock and carries out a hook's `ask` as if allowed,
/// so there ask and review become deny: nothing runs that the rules would have put to a person.
pub(crate) fn codex(args: HookArgs) -> anyhow::Result<i32> {
    run(args, true)
}

/// Claude Code's Notification and Stop hooks: the event (`hook_event_name`, `message`) goes to
/// the supervisor's audit channel, which passes it to `[notify]`. Best effort: any failure is a
/// line on stderr and exit 0, so the agent never waits on or is stopped by it.
pub(crate) fn claude_event() -> anyhow::Result<i32> {
    let mut raw = Vec::new();
    let _ = std::io::stdin()
        .lock()
        .take(64 * 1024)
        .read_to_end(&mut raw);
    let input: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
    let event = match input["hook_event_name"].as_str() {
        Some("Stop") => "stop",
        _ => "notification",
    };
    let message = input["message"]
        .as_str()
        .map(|m| m.chars().take(500).collect::<String>());
    let ev = AuditEvent::now(
        Decision::Info,
        Detail::Agent {
            event: event.into(),
            message,
        },
    );
    if in_session() {
        if let Err(e) = crate::gate_audit::send(&ev) {
            eprintln!("airlock: the agent's {event} event was not passed on: {e:#}");
        }
    }
    Ok(0)
}

/// Why an ask becomes a deny under Codex.
const NO_PERSON: &str =
    "(Codex runs without approvals in airlock, so what would be asked is denied)";

fn run(args: HookArgs, no_person: bool) -> anyhow::Result<i32> {
    let mut raw = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(hook::MAX_INPUT as u64 + 1)
        .read_to_end(&mut raw);
    let outcome = match read {
        Err(e) => Outcome::deny("hook-input", format!("cannot read the hook input: {e}")),
        Ok(_) => match std::panic::catch_unwind(AssertUnwindSafe(|| decide(&raw, &args))) {
            Ok(o) => o,
            Err(_) => Outcome::deny(
                "internal-error",
                "the command gate failed internally; denying (see stderr)".into(),
            ),
        },
    };
    let mut outcome = outcome;
    if no_person && matches!(outcome.tier, Tier::Ask | Tier::Review) {
        outcome.tier = Tier::Deny;
        outcome.reason = format!("{} {NO_PERSON}", outcome.reason);
    }
    let mut tier = outcome.tier;
    let mut reason = outcome.reason.clone();
    match audit(&args, &outcome) {
        Err(e) => {
            eprintln!("airlock: {e:#}");
            if tier == Tier::Allow {
                tier = if no_person { Tier::Deny } else { Tier::Ask };
                reason =
                    format!("{reason} (the audit log cannot be written, so airlock asks: {e})");
            }
        }
        // Held by the supervisor (a detached session): the user's answer decides an ask, and
        // only an ask.
        Ok(Some(held)) if matches!(tier, Tier::Ask | Tier::Review) => {
            (tier, reason) = apply_held(held, &reason);
        }
        Ok(_) => {}
    }
    let json = hook::output(tier, &reason);
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{json}").and_then(|()| out.flush()).is_err() {
        eprintln!("airlock: {reason}");
        return Ok(2);
    }
    Ok(0)
}

/// An ask's tier and reason after the user's answer through `airlock approve` / `deny`.
fn apply_held(held: crate::gate_audit::Held, reason: &str) -> (Tier, String) {
    use crate::gate_audit::Held;
    match held {
        Held::Allow(id) => (
            Tier::Allow,
            format!("approved by the user with `airlock approve` (request {id}); the rule said: {reason}"),
        ),
        Held::Deny(id) => (
            Tier::Deny,
            format!("refused by the user with `airlock deny` (request {id}): {reason}"),
        ),
        Held::Ask(why) => (
            Tier::Ask,
            format!("{reason} (not answered through `airlock approvals`: {why})"),
        ),
    }
}

fn decide(raw: &[u8], args: &HookArgs) -> Outcome {
    let input = match hook::parse_input(raw) {
        Ok(i) => i,
        Err(e) => return Outcome::deny("hook-input", e.to_string()),
    };
    let cwd = PathBuf::from(&input.cwd);
    // Never freed: the hook process ends right after answering, and freeing the thousands of
    // rule strings and globs costs a measurable part of the call (bench/PROFILING.md).
    let gate = match Gate::load(&args.policies, &cwd) {
        Ok(g) => std::mem::ManuallyDrop::new(g),
        Err(e) => {
            let mut o = Outcome::deny(
                "policy-error",
                format!("the command policy cannot be loaded, so every call is denied: {e:#}"),
            );
            o.input = Some(input);
            return o;
        }
    };
    let engine = &gate.engine;
    let git = gate.git(&cwd);
    let ctx = Context {
        cwd: input.cwd.clone(),
        home: gate.home.clone(),
        workspace: gate.workspace.clone(),
        git: &git,
    };
    let verdict = engine.classify_tool(&input.tool_name, &input.tool_input, &ctx);
    let (tier, reason) = if verdict.tier == Tier::Review {
        let command = hook::audit_command(&input).unwrap_or_default();
        let cfg = engine.settings.review.clone().unwrap_or_default();
        let o = review::review(
            &cfg,
            &ReviewRequest {
                tool: &input.tool_name,
                command: &command,
                cwd: &input.cwd,
                rule: &verdict.rule,
                reason: &verdict.reason,
            },
        );
        (o.tier, o.reason)
    } else {
        (verdict.tier, verdict.reason.clone())
    };
    Outcome {
        tier,
        rule: verdict.rule,
        reason,
        input: Some(input),
        session: gate.session.clone(),
    }
}

/// Loads `~/.config/airlock/config.toml` (when present) and `policies`, validates the whole
/// policy, and builds the engine from the `[commands]` tables. A policy file inside the
/// workspace is untrusted: it may only add deny and ask rules.
pub(crate) fn load_engine(policies: &[PathBuf], cwd: &Path, home: &str) -> anyhow::Result<Engine> {
    let mut layers = Vec::new();
    let user = Path::new(home).join(".config/airlock/config.toml");
    let mut files: Vec<(PathBuf, bool)> = Vec::new();
    if user.is_file() {
        files.push((user, false));
    }
    files.extend(policies.iter().map(|p| (p.clone(), true)));
    let workspace = workspace_for(cwd, home);
    // Only on the host: inside a session `Gate::load` reads the sealed policy instead.
    for (path, required) in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read policy file {}", path.display()))
            }
        };
        let config = ConfigFile::parse(&path, &text)?;
        let abs = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        let trusted = !workspace.as_deref().is_some_and(|w| abs.starts_with(w));
        layers.push(Layer {
            source: path,
            trusted,
            config,
        });
    }
    Policy::from_layers(&layers)?;
    let commands: Vec<CommandLayer> = layers
        .iter()
        .filter_map(|l| {
            l.config.commands.as_ref().map(|t| CommandLayer {
                source: l.source.clone(),
                table: t.clone(),
                trusted: l.trusted,
            })
        })
        .collect();
    Ok(Engine::load(&commands, home, false)?)
}

/// The workspace a command runs in on the host: `$AIRLOCK_WORKSPACE`, else the enclosing git
/// work tree, else `cwd`; none when that is `/`, the home directory itself or a system directory.
pub(crate) fn workspace_for(cwd: &Path, home: &str) -> Option<String> {
    let ws = std::env::var_os("AIRLOCK_WORKSPACE")
        .map(PathBuf::from)
        .or_else(|| airlock_gate::git::find_git_dir(cwd).map(|(root, _)| root))
        .unwrap_or_else(|| cwd.to_path_buf());
    usable_workspace(
        airlock_gate::normalize::lexical(&ws.to_string_lossy()),
        home,
    )
}

/// `ws`, unless it is `/`, the home directory itself or a system directory.
fn usable_workspace(ws: String, home: &str) -> Option<String> {
    let system = [
        "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/sbin", "/sys",
        "/usr", "/var", "/tmp", "/home", "/opt",
    ];
    if ws == home || system.contains(&ws.as_str()) {
        None
    } else {
        Some(ws)
    }
}

fn home_dir() -> String {
    std::env::var("HOME")
        .ok()
        .filter(|h| h.starts_with('/'))
        .map(|h| airlock_gate::normalize::lexical(&h))
        .unwrap_or_else(|| "/".into())
}

/// Whether the hook runs inside an airlock session: the sealed policy's path exists (whatever
/// it is) or the environment says so. Then decisions go to the supervisor, never to a file.
fn in_session() -> bool {
    std::fs::symlink_metadata(SESSION_POLICY_PATH).is_ok()
        || SESSION_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Where hook decisions are logged on the host.
fn audit_path(args: &HookArgs) -> PathBuf {
    if let Some(p) = &args.audit_log {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("AIRLOCK_AUDIT_LOG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home_dir()).join(".local/state"));
    state.join("airlock/audit.jsonl")
}

/// Logs the decision; inside a session, the supervisor may hold an ask for the user's answer
/// (`crate::gate_audit`), which is returned.
fn audit(args: &HookArgs, o: &Outcome) -> anyhow::Result<Option<crate::gate_audit::Held>> {
    let decision = match o.tier {
        Tier::Allow => Decision::Allow,
        Tier::Deny => Decision::Deny,
        Tier::Ask | Tier::Review => Decision::Ask,
    };
    let (tool, command, cwd) = match &o.input {
        Some(i) => (
            i.tool_name.clone(),
            hook::audit_command(i),
            Some(i.cwd.clone()),
        ),
        None => ("(unknown)".to_string(), None, None),
    };
    let mut ev = AuditEvent::now(decision, Detail::Command { tool, command, cwd })
        .rule(o.rule.clone())
        .reason(o.reason.clone());
    if let Some(s) = o
        .session
        .clone()
        .or_else(|| std::env::var("AIRLOCK_SESSION").ok())
    {
        ev = ev.session(s);
    }
    if in_session() {
        // Inside a session the log is the supervisor's: the sandbox cannot write it.
        return crate::gate_audit::send(&ev);
    }
    AuditLog::open(audit_path(args))?.append(&ev)?;
    Ok(None)
}
