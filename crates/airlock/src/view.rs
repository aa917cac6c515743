//! Turns a policy and a workspace into a `SandboxSpec` for the native backend: which host
//! directories are bound read-only, the environment, hidden paths, limits.

use std::path::{Path, PathBuf};

use airlock_policy::Policy;
use airlock_sandbox::{Bind, NetListeners, Rlimits, SandboxSpec, TtySpec, WorkspaceView};
use anyhow::{bail, Context, Result};

/// System directories bound read-only when the host has them.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix", "/snap",
];

/// Tool homes under $HOME that a PATH entry may live in; the whole tool home is bound read-only
/// (toolchains need more than their bin dir), with the hide list still applied inside.
const TOOL_HOMES: &[&str] = &[
    ".cargo",
    ".rustup",
    ".pyenv",
    ".nvm",
    ".bun",
    ".deno",
    ".volta",
    ".asdf",
    ".npm-global",
    ".local/bin",
    ".local/share/pnpm",
    "go",
    ".go",
    "sdk",
    ".sdkman",
];

/// Where airlock puts its own binary inside the sandbox.
pub(crate) const SELF_DIR: &str = "/run/airlock/bin";

/// The invoking user as the sandbox will see them.
#[derive(Debug, Clone)]
pub(crate) struct Invoker {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) name: String,
    pub(crate) home: PathBuf,
    pub(crate) shell: Option<String>,
}

impl Invoker {
    pub(crate) fn current() -> Invoker {
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        let pw = nix::unistd::User::from_uid(uid).ok().flatten();
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty() && Path::new(h).is_absolute())
            .map(PathBuf::from)
            .or_else(|| pw.as_ref().map(|p| p.dir.clone()))
            .filter(|h| h != Path::new("/"))
            .unwrap_or_else(|| PathBuf::from("/home/airlock"));
        Invoker {
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            name: pw
                .as_ref()
                .map(|p| p.name.clone())
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| uid.to_string()),
            shell: std::env::var("SHELL")
                .ok()
                .or_else(|| pw.as_ref().map(|p| p.shell.display().to_string())),
            home,
        }
    }
}

/// Expands a leading `~` to `home`; relative paths are refused.
pub(crate) fn expand(path: &str, home: &Path) -> Result<PathBuf> {
    let p = if path == "~" {
        home.to_path_buf()
    } else if let Some(rest) = path.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(path)
    };
    if !p.is_absolute() {
        bail!("path '{path}' in the policy must be absolute or start with ~/");
    }
    Ok(p)
}

/// Inputs of [`build`] other than the policy.
#[derive(Debug)]
pub(crate) struct ViewRequest<'a> {
    pub(crate) workspace: WorkspaceView,
    pub(crate) cwd: PathBuf,
    pub(crate) argv: Vec<String>,
    pub(crate) extra_env: Vec<(String, String)>,
    pub(crate) self_exe: &'a Path,
    pub(crate) tty: Option<TtySpec>,
    pub(crate) net: Option<NetListeners>,
    pub(crate) memory_cgroup: bool,
    pub(crate) session: &'a str,
}

fn covered(path: &Path, binds: &[Bind]) -> bool {
    binds.iter().any(|b| path.starts_with(&b.target))
}

/// Builds the spec.
pub(crate) fn build(policy: &Policy, who: &Invoker, req: ViewRequest<'_>) -> Result<SandboxSpec> {
    let mut binds: Vec<Bind> = SYSTEM_DIRS
        .iter()
        .map(|d| Bind {
            source: PathBuf::from(d),
            target: PathBuf::from(d),
            writable: false,
            optional: true,
        })
        .collect();
    // PATH entries outside the system dirs: bind the tool home they belong to, or the dir itself.
    let host_path = std::env::var("PATH").unwrap_or_default();
    for dir in host_path.split(':').filter(|d| d.starts_with('/')) {
        let dir = Path::new(dir);
        if covered(dir, &binds) || !dir.is_dir() {
            continue;
        }
        let mut source = dir.to_path_buf();
        if let Ok(rel) = dir.strip_prefix(&who.home) {
            if let Some(t) = TOOL_HOMES.iter().find(|t| rel.starts_with(t)) {
                source = who.home.join(t);
            }
        }
        binds.push(Bind {
            source: source.clone(),
            target: source,
            writable: false,
            optional: true,
        });
        // rustup proxies in ~/.cargo/bin need the toolchains.
        if dir.starts_with(who.home.join(".cargo")) {
            let rustup = std::env::var_os("RUSTUP_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| who.home.join(".rustup"));
            if rustup.is_dir() && !covered(&rustup, &binds) {
                binds.push(Bind {
                    source: rustup.clone(),
                    target: rustup,
                    writable: false,
                    optional: true,
                });
            }
        }
    }
    for p in &policy.read_only {
        let p = expand(p, &who.home)?;
        let src = std::fs::canonicalize(&p)
            .with_context(|| format!("[filesystem] read_only: cannot bind {}", p.display()))?;
        binds.push(Bind {
            source: src,
            target: p,
            writable: false,
            optional: false,
        });
    }
    for p in &policy.read_write {
        let p = expand(p, &who.home)?;
        let src = std::fs::canonicalize(&p)
            .with_context(|| format!("[filesystem] read_write: cannot bind {}", p.display()))?;
        binds.push(Bind {
            source: src,
            target: p,
            writable: true,
            optional: false,
        });
    }
    binds.push(Bind {
        source: req.self_exe.to_path_buf(),
        target: Path::new(SELF_DIR).join("airlock"),
        writable: false,
        optional: false,
    });

    let mut hide = Vec::new();
    for h in &policy.hide {
        let p = expand(h, &who.home)?;
        // Hide both the spelling and what it resolves to (a symlinked ~/.ssh, say).
        if let Ok(real) = std::fs::canonicalize(&p) {
            if real != p {
                hide.push(real);
            }
        }
        hide.push(p);
    }
    // Session data (audit logs, control sockets, the store, agent state) wherever
    // XDG_DATA_HOME puts it. Worktrees live beside them and appear only where bound.
    if let Ok(root) = crate::session_dir::sessions_root() {
        if let Some(airlock_dir) = root.parent() {
            for name in [
                "sessions",
                "sessions.db",
                "sessions.db-wal",
                "sessions.db-shm",
                "state",
            ] {
                hide.push(airlock_dir.join(name));
            }
        }
    }

    // PATH inside: the host's entries that exist inside, then airlock's own dir.
    let mut path: Vec<String> = host_path
        .split(':')
        .filter(|d| d.starts_with('/') && covered(Path::new(d), &binds))
        .map(str::to_string)
        .collect();
    let mut seen = std::collections::HashSet::new();
    path.retain(|d| seen.insert(d.clone()));
    if path.is_empty() {
        path = ["/usr/local/bin", "/usr/bin", "/bin"]
            .map(String::from)
            .to_vec();
    }
    path.push(SELF_DIR.to_string());

    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v));
    };
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if policy.passes_env(k) {
            set(k, v.to_string());
        }
    }
    set("PATH", path.join(":"));
    set("HOME", who.home.display().to_string());
    set("USER", who.name.clone());
    set("LOGNAME", who.name.clone());
    set("PWD", req.cwd.display().to_string());
    set("TMPDIR", "/tmp".to_string());
    set("AIRLOCK", "1".to_string());
    set("AIRLOCK_SESSION", req.session.to_string());
    // The command gate (`airlock hook claude`) judges paths against the workspace.
    set(
        "AIRLOCK_WORKSPACE",
        req.workspace.target().display().to_string(),
    );
    let shell = who
        .shell
        .clone()
        .filter(|s| Path::new(s).is_absolute() && Path::new(s).exists())
        .unwrap_or_else(|| "/bin/sh".to_string());
    set("SHELL", shell.clone());
    if req.tty.is_some() && std::env::var_os("TERM").is_none() {
        set("TERM", "xterm-256color".to_string());
    }
    for (k, v) in &policy.env_set {
        set(k, v.clone());
    }
    for (k, v) in req.extra_env {
        set(&k, v);
    }

    let argv = if req.argv.is_empty() {
        vec![shell]
    } else {
        req.argv
    };
    let limits = policy.limits;
    Ok(SandboxSpec {
        argv,
        env,
        cwd: req.cwd,
        uid: who.uid,
        gid: who.gid,
        hostname: "airlock".to_string(),
        binds,
        workspace: Some(req.workspace),
        home: who.home.clone(),
        home_bytes: limits.home_bytes,
        tmp_bytes: limits.tmp_bytes,
        shm_bytes: 64 << 20,
        hide,
        files: Vec::new(),
        rlimits: Rlimits {
            // Root is exempt from RLIMIT_NPROC; the pids cgroup covers it there.
            nproc: if who.uid == 0 { None } else { limits.pids },
            data: if req.memory_cgroup {
                None
            } else {
                limits.memory_bytes
            },
            nofile: None,
        },
        net: req.net,
        tty: req.tty,
    })
}
