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

/// Lexically resolves `.` and `..` and drops trailing slashes of an absolute path.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// `p` with symlinks resolved as far as it exists: an existing path is canonicalised; otherwise
/// `.`/`..` are resolved lexically, the longest existing ancestor canonicalised and the rest
/// appended (a data directory not created yet still compares right).
fn canonical_lenient(p: &Path) -> PathBuf {
    // An existing path resolves as the kernel would (`link/..` is the link target's parent).
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let p = lexical(p);
    let mut head = p.clone();
    let mut tail = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&head) {
            return tail
                .iter()
                .rev()
                .fold(c, |acc, n: &std::ffi::OsString| acc.join(n));
        }
        match (head.file_name().map(|n| n.to_os_string()), head.parent()) {
            (Some(n), Some(parent)) => {
                tail.push(n);
                head = parent.to_path_buf();
            }
            _ => return p,
        }
    }
}

/// Directories the sandbox mounts itself (private /tmp, /dev, /proc, airlock's /run); a bind of
/// the host's over them would hide the private one.
const SANDBOX_OWN: &[&str] = &["/tmp", "/dev", "/proc", "/sys", "/run"];

/// Host directories no automatic bind source may be (DESIGN.md guarantee 1): `/`, the home
/// directory and its ancestors, and any directory that holds airlock's own data (sessions,
/// store, agent state, config, the hook's audit log) or lies inside it. Paths are compared
/// after resolving symlinks, `..` and trailing slashes. Only `[filesystem] read_only` may bind
/// such a path, and the hide list stays on top of it.
#[derive(Debug)]
pub(crate) struct Protected {
    homes: Vec<PathBuf>,
    airlock: Vec<PathBuf>,
}

impl Protected {
    /// The invoker's home (as `$HOME` says and as the password database says) and airlock's
    /// data, config and state directories.
    pub(crate) fn new(who: &Invoker) -> Protected {
        let mut homes = vec![lexical(&who.home), canonical_lenient(&who.home)];
        if let Ok(Some(pw)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(who.uid)) {
            if pw.dir.is_absolute() {
                homes.push(lexical(&pw.dir));
                homes.push(canonical_lenient(&pw.dir));
            }
        }
        let mut airlock = Vec::new();
        for dir in airlock_dirs(&who.home) {
            airlock.push(lexical(&dir));
            airlock.push(canonical_lenient(&dir));
        }
        homes.dedup();
        airlock.dedup();
        Protected { homes, airlock }
    }

    /// Why `path` may not be bound automatically, or `None` when it may. `path` is resolved
    /// (symlinks, `..`) before comparing.
    pub(crate) fn refusal(&self, path: &Path) -> Option<String> {
        let canon = canonical_lenient(path);
        if canon == Path::new("/") {
            return Some("the root directory /".into());
        }
        if let Some(own) = SANDBOX_OWN.iter().find(|d| canon == Path::new(d)) {
            return Some(format!("{own}, which the sandbox provides itself"));
        }
        for h in &self.homes {
            if *h == canon {
                return Some(format!("the home directory {}", h.display()));
            }
            if h.starts_with(&canon) {
                return Some(format!("an ancestor of the home directory {}", h.display()));
            }
        }
        for a in &self.airlock {
            if a.starts_with(&canon) {
                return Some(format!(
                    "a directory holding airlock's own data ({})",
                    a.display()
                ));
            }
            if canon.starts_with(a) {
                return Some(format!("inside airlock's own data ({})", a.display()));
            }
        }
        None
    }
}

/// `$VAR/airlock`, or `HOME/default/airlock` when the variable is unset or relative.
fn xdg_dir(var: &str, home: &Path, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty() && Path::new(v).is_absolute())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(default))
        .join("airlock")
}

/// airlock's own directories on the host: data (sessions, store, agent state), config, and
/// state (the hook's audit log), wherever the XDG variables put them.
fn airlock_dirs(home: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![
        xdg_dir("XDG_DATA_HOME", home, ".local/share"),
        xdg_dir("XDG_CONFIG_HOME", home, ".config"),
        xdg_dir("XDG_STATE_HOME", home, ".local/state"),
        home.join(".local/share/airlock"),
        home.join(".config/airlock"),
        home.join(".local/state/airlock"),
    ];
    if let Some(d) = crate::session_dir::sessions_root()
        .ok()
        .and_then(|r| r.parent().map(Path::to_path_buf))
    {
        dirs.push(d);
    }
    dirs
}

/// Read-only binds for the `PATH` entries outside the system dirs (the tool home an entry
/// belongs to, or the entry itself), and the `PATH` the sandbox gets. An entry that is, or
/// would expose, a [`Protected`] directory is skipped with one warning naming it.
fn path_binds(
    host_path: &str,
    who: &Invoker,
    protected: &Protected,
    binds: &mut Vec<Bind>,
) -> Vec<String> {
    let mut inside = Vec::new();
    let mut warned = std::collections::HashSet::new();
    let home_canon = canonical_lenient(&who.home);
    for entry in host_path.split(':').filter(|d| d.starts_with('/')) {
        let Ok(canon) = std::fs::canonicalize(entry) else {
            continue;
        };
        if !canon.is_dir() {
            continue;
        }
        if let Some(why) = protected.refusal(&canon) {
            if warned.insert(entry.to_string()) {
                eprintln!(
                    "airlock: warning: PATH entry '{entry}' is {why}; it is not bound into the \
                     sandbox. To make it visible anyway, add it to [filesystem] read_only \
                     (the hide list still applies)"
                );
            }
            continue;
        }
        if covered(Path::new(entry), binds) {
            inside.push(entry.to_string());
            continue;
        }
        if covered(&canon, binds) {
            inside.push(canon.display().to_string());
            continue;
        }
        let mut bind = (canon.clone(), canon.clone());
        if let Ok(rel) = canon.strip_prefix(&home_canon) {
            if let Some(t) = TOOL_HOMES.iter().find(|t| rel.starts_with(t)) {
                bind = (home_canon.join(t), who.home.join(t));
            }
        }
        if let Some(why) = protected.refusal(&bind.0) {
            eprintln!(
                "airlock: warning: tool home {} (from PATH entry '{entry}') is {why}; not bound",
                bind.0.display()
            );
            continue;
        }
        let target_entry = bind
            .1
            .join(canon.strip_prefix(&bind.0).unwrap_or(Path::new("")));
        inside.push(target_entry.display().to_string());
        binds.push(Bind {
            source: bind.0.clone(),
            target: bind.1,
            writable: false,
            optional: true,
        });
        // rustup proxies in ~/.cargo/bin need the toolchains.
        if bind.0 == home_canon.join(".cargo") {
            let rustup = std::env::var_os("RUSTUP_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| who.home.join(".rustup"));
            if let Ok(src) = std::fs::canonicalize(&rustup) {
                if src.is_dir() && !covered(&rustup, binds) {
                    match protected.refusal(&src) {
                        Some(why) => eprintln!(
                            "airlock: warning: RUSTUP_HOME {} is {why}; not bound",
                            rustup.display()
                        ),
                        None => binds.push(Bind {
                            source: src,
                            target: rustup,
                            writable: false,
                            optional: true,
                        }),
                    }
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    inside.retain(|d| seen.insert(d.clone()));
    inside
}

/// The hidden paths: the policy's list (both the spelling and what it resolves to), airlock's
/// own data wherever the XDG variables put it, and, for every bind whose source holds a hidden
/// path, the same path under the bind's target (an explicit `[filesystem] read_only` of the
/// home through a symlink still has `.ssh` hidden).
fn hide_list(policy: &Policy, who: &Invoker, binds: &[Bind]) -> Result<Vec<PathBuf>> {
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
    // XDG_DATA_HOME puts it, airlock's config and state. Worktrees live beside the session
    // data and appear only where bound.
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
    // Secret-bearing files inside tool homes and PATH prefixes (tool_secrets.rs).
    let host_path = std::env::var("PATH").unwrap_or_default();
    hide.extend(crate::tool_secrets::secret_files(&who.home, &host_path));
    hide.push(xdg_dir("XDG_CONFIG_HOME", &who.home, ".config"));
    hide.push(xdg_dir("XDG_STATE_HOME", &who.home, ".local/state"));
    let mut extra = Vec::new();
    for h in &hide {
        let real = canonical_lenient(h);
        for b in binds.iter().filter(|b| b.source != b.target) {
            if let Ok(rel) = real.strip_prefix(&b.source) {
                extra.push(b.target.join(rel));
            }
        }
    }
    hide.extend(extra);
    let mut seen = std::collections::HashSet::new();
    hide.retain(|h| seen.insert(h.clone()));
    Ok(hide)
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
    let protected = Protected::new(who);
    let host_path = std::env::var("PATH").unwrap_or_default();
    let mut path = path_binds(&host_path, who, &protected, &mut binds);
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

    let hide = hide_list(policy, who, &binds)?;
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
        overlays: Vec::new(),
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

/// Makes room for a generated file `target` whose directory the host lacks inside a read-only
/// system bind (Claude Code's `/etc/claude-code/managed-settings.json`): that bind is replaced,
/// in place, by read-only binds of each of its entries, so the missing directories are created
/// in the sandbox's own root (read-only once assembled) and never on the host. A directory on
/// the way that the host has is split the same way, and the file itself is left out. Entries
/// the host adds later are not seen by a running session.
pub(crate) fn make_room(binds: &mut Vec<Bind>, target: &Path) {
    let Some(i) = binds
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.writable && b.source == b.target && target.starts_with(&b.target))
        .max_by_key(|(_, b)| b.target.components().count())
        .map(|(i, _)| i)
    else {
        return;
    };
    let root = binds[i].target.clone();
    let Ok(rel) = target.strip_prefix(&root) else {
        return;
    };
    if rel.as_os_str().is_empty() || !root.is_dir() {
        return;
    }
    let mut out = Vec::new();
    split_dir(&root, rel, &mut out);
    binds.splice(i..=i, out);
}

fn split_dir(dir: &Path, rel: &Path, out: &mut Vec<Bind>) {
    let mut comps = rel.components();
    let Some(first) = comps.next() else { return };
    let rest = comps.as_path();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let p = dir.join(&name);
        if name.as_os_str() == first.as_os_str() {
            let is_dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
            if is_dir && !rest.as_os_str().is_empty() {
                split_dir(&p, rest, out);
            }
            continue;
        }
        out.push(Bind {
            source: p.clone(),
            target: p,
            writable: false,
            optional: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected(home: &Path, data: &Path) -> Protected {
        Protected {
            homes: vec![lexical(home), canonical_lenient(home)],
            airlock: vec![lexical(data), canonical_lenient(data)],
        }
    }

    #[test]
    fn every_spelling_of_home_root_and_data_is_refused() {
        let base = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(base.path()).expect("canon");
        let home = base.join("home/u");
        let data = base.join("data/airlock");
        std::fs::create_dir_all(home.join(".cargo/bin")).expect("mkdir");
        std::fs::create_dir_all(home.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&data).expect("mkdir");
        std::os::unix::fs::symlink(&home, base.join("link")).expect("symlink");
        let p = protected(&home, &data);
        let refused = |s: String| p.refusal(Path::new(&s));
        let h = home.display().to_string();
        for spelling in [
            h.clone(),
            format!("{h}/"),
            format!("{h}//"),
            format!("{h}/sub/.."),
            format!("{h}/./"),
            format!("{h}/.."),
            base.join("link").display().to_string(),
            format!("{}/link/", base.display()),
            "/".into(),
            "/usr/..".into(),
            "/tmp".into(),
            "/proc".into(),
            base.join("data").display().to_string(),
            data.display().to_string(),
            data.join("sessions/x").display().to_string(),
        ] {
            assert!(
                refused(spelling.clone()).is_some(),
                "{spelling} was not refused"
            );
        }
        for fine in [
            home.join(".cargo/bin").display().to_string(),
            home.join("sub").display().to_string(),
            "/usr/local/bin".into(),
            base.join("elsewhere").display().to_string(),
        ] {
            assert_eq!(refused(fine.clone()), None, "{fine}");
        }
        assert!(refused(h.clone())
            .is_some_and(|why| why.contains("home directory") && why.contains(&h)));
    }

    #[test]
    fn canonical_lenient_resolves_the_existing_part() {
        let base = tempfile::tempdir().expect("tempdir");
        let real = std::fs::canonicalize(base.path()).expect("canon");
        std::os::unix::fs::symlink(&real, real.join("l")).expect("symlink");
        assert_eq!(
            canonical_lenient(&real.join("l/not/yet/../there/")),
            real.join("not/there")
        );
    }

    #[test]
    fn make_room_splits_only_the_bind_on_the_way() {
        let d = tempfile::tempdir().expect("tmp");
        let etc = d.path().join("etc");
        std::fs::create_dir_all(etc.join("ssl")).expect("mkdir");
        std::fs::create_dir_all(etc.join("cc")).expect("mkdir");
        std::fs::write(etc.join("passwd"), "x").expect("write");
        std::fs::write(etc.join("cc/managed.json"), "host").expect("write");
        std::fs::write(etc.join("cc/other"), "x").expect("write");
        let ro = |p: &Path| Bind {
            source: p.to_path_buf(),
            target: p.to_path_buf(),
            writable: false,
            optional: true,
        };
        let mut binds = vec![ro(Path::new("/usr")), ro(&etc), ro(Path::new("/opt"))];
        make_room(&mut binds, &etc.join("cc/managed.json"));
        let targets: Vec<_> = binds.iter().map(|b| b.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                PathBuf::from("/usr"),
                etc.join("cc/other"),
                etc.join("passwd"),
                etc.join("ssl"),
                PathBuf::from("/opt")
            ]
        );
        assert!(binds.iter().all(|b| !b.writable));
        // A directory the host lacks: its parent is split, nothing else.
        let mut binds = vec![ro(&etc)];
        make_room(&mut binds, &etc.join("claude-code/managed-settings.json"));
        assert_eq!(binds.len(), 3, "{binds:?}");
    }
}
