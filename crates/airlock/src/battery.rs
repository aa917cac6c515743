//! The escape battery's check table: what `airlock selftest` plants on the host and which probe
//! attacks it from inside, each check tagged with the [`Guarantee`] it attacks. The command
//! (`commands/selftest.rs`) runs the table on a backend and reports; this module only builds it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock_sandbox::guarantee::Guarantee;
use anyhow::{Context, Result};

/// How the host decides whether the inside attempt got through.
#[derive(Debug, Clone)]
pub(crate) enum Verify {
    /// The probe's own report.
    Probe,
    /// A file the probe tried to create must not exist on the host afterwards.
    HostFileAbsent(PathBuf),
    /// No process whose command line holds this marker may be left on the host.
    NoProcess(String),
    /// The host's hostname must be unchanged.
    HostnameUnchanged(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) name: String,
    /// The guarantee it attacks (numbered as in DESIGN.md's threat model).
    pub(crate) guarantee: Guarantee,
    pub(crate) probe: &'static str,
    pub(crate) args: Vec<String>,
    pub(crate) run_flags: Vec<String>,
    /// Environment of the inside `airlock run` (e.g. a hostile `PATH`), on top of the host's.
    pub(crate) run_env: Vec<(String, String)>,
    pub(crate) verify: Verify,
    /// Run the control outside; `Some(reason)` when a different check already shows the control.
    pub(crate) control: Option<&'static str>,
    /// The workspace mode inside (`bind` unless a check needs another).
    pub(crate) mode: &'static str,
    /// The workspace inside, when not the shared scratch one.
    pub(crate) workspace: Option<PathBuf>,
    /// The directory the control runs in, when the probe works on relative paths.
    pub(crate) control_cwd: Option<PathBuf>,
}

fn check(name: &str, guarantee: Guarantee, probe: &'static str, args: &[&str]) -> Check {
    Check {
        name: name.to_string(),
        guarantee,
        probe,
        args: args.iter().map(|s| s.to_string()).collect(),
        run_flags: Vec::new(),
        run_env: Vec::new(),
        verify: Verify::Probe,
        control: None,
        mode: "bind",
        workspace: None,
        control_cwd: None,
    }
}

/// The home reached through `PATH`: directories on `PATH` are bound read-only, so `$HOME` (in
/// any spelling) or `/` there must be skipped, not bound. The control reads the planted file
/// outside; inside it must stay invisible.
fn home_on_path_checks(home: &Path, planted: &Path, secret: &str) -> Vec<Check> {
    let host_path = std::env::var("PATH").unwrap_or_default();
    let h = home.display();
    [
        (
            "read the home through $HOME on PATH",
            format!("{h}:{h}/:{host_path}"),
        ),
        (
            "read the home through / on PATH",
            format!("/:{h}/..:{host_path}"),
        ),
    ]
    .into_iter()
    .map(|(name, path)| {
        let mut c = check(
            name,
            Guarantee::HostSecrets,
            "read-file",
            &[&planted.display().to_string(), secret],
        );
        c.run_env = vec![("PATH".to_string(), path)];
        c
    })
    .collect()
}

/// A registry token in a tool's configuration inside a tree bound because of `PATH`: npm's global
/// config `PREFIX/etc/npmrc` of a prefix whose `bin` is on `PATH` (bound here through a policy,
/// as a tool home under the home is bound automatically). The control reads it outside; inside
/// the tool-secret hide list must cover it. `None` when the fixture cannot be written.
fn tool_secret_check(base: &Path, secret: &str) -> Option<Check> {
    let prefix = base.join("tool-prefix");
    std::fs::create_dir_all(prefix.join("bin")).ok()?;
    std::fs::create_dir_all(prefix.join("etc")).ok()?;
    let npmrc = prefix.join("etc/npmrc");
    std::fs::write(&npmrc, format!("//registry.example/:_authToken={secret}\n")).ok()?;
    let policy = base.join("tool-prefix.toml");
    let prefix_toml = serde_json::to_string(&prefix.display().to_string()).ok()?;
    std::fs::write(
        &policy,
        format!("[filesystem]\nread_only = [{prefix_toml}]\n"),
    )
    .ok()?;
    let mut c = check(
        "read a registry token in a tool prefix on PATH (npm's etc/npmrc)",
        Guarantee::HostSecrets,
        "read-file",
        &[&npmrc.display().to_string(), secret],
    );
    c.run_flags = vec!["--policy".to_string(), policy.display().to_string()];
    let host_path = std::env::var("PATH").unwrap_or_default();
    c.run_env = vec![(
        "PATH".to_string(),
        format!("{}:{host_path}", prefix.join("bin").display()),
    )];
    Some(c)
}

/// Reads a registry token that cargo keeps inside its home, which `--preset rust` shows as a
/// cache overlay: `~/.cargo/credentials.toml` of a scratch home (the inside `airlock run` gets
/// it as `HOME`, with the real data and config directories kept, so the engine's image store
/// and the session store are the usual ones). The control reads it outside; inside the preset's
/// hide list must cover it through the overlay, on every backend. `None` when the fixture cannot
/// be written or the real home is unknown.
fn preset_secret_check(base: &Path, secret: &str) -> Option<Check> {
    let real_home = PathBuf::from(std::env::var_os("HOME")?);
    let home = base.join("preset-home");
    std::fs::create_dir_all(home.join(".cargo/registry")).ok()?;
    let creds = home.join(".cargo/credentials.toml");
    std::fs::write(&creds, format!("[registry]\ntoken = \"{secret}\"\n")).ok()?;
    let mut c = check(
        "read a registry token in a preset's cache (~/.cargo/credentials.toml, --preset rust)",
        Guarantee::HostSecrets,
        "read-file",
        &[&creds.display().to_string(), secret],
    );
    c.run_flags = vec!["--preset".to_string(), "rust".to_string()];
    let real = |var: &str, default: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty() && Path::new(v).is_absolute())
            .map_or_else(|| real_home.join(default), PathBuf::from)
            .display()
            .to_string()
    };
    c.run_env = vec![
        ("HOME".to_string(), home.display().to_string()),
        (
            "XDG_DATA_HOME".to_string(),
            real("XDG_DATA_HOME", ".local/share"),
        ),
        (
            "XDG_CONFIG_HOME".to_string(),
            real("XDG_CONFIG_HOME", ".config"),
        ),
    ];
    Some(c)
}

/// For the worktree check: a git repository to run in, and a control directory whose `.git`
/// links to a git directory of its own whose alternates name a main repository's objects (as
/// worktree mode lays them out), all writable. `None` without a working host git.
fn worktree_fixture(base: &Path) -> Option<(PathBuf, PathBuf)> {
    let repo = base.join("repo");
    std::fs::create_dir_all(&repo).ok()?;
    std::fs::write(repo.join("README"), "airlock selftest\n").ok()?;
    for args in [
        &["init", "-q"][..],
        &["add", "README"],
        &[
            "-c",
            "user.name=airlock",
            "-c",
            "user.email=selftest@airlock",
            "commit",
            "-qm",
            "selftest",
        ],
    ] {
        let ok = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return None;
        }
    }
    // The control: a worktree whose git directory and main repository are ordinary host
    // directories, laid out as worktree mode lays them out (`.git` -> a git directory whose
    // alternates name the main repository's objects).
    let (ctl, gitdir, main) = (
        base.join("control-wt"),
        base.join("control-gitdir"),
        base.join("control-main"),
    );
    for d in [
        ctl.clone(),
        gitdir.join("objects/info"),
        main.join("objects"),
        main.join("refs/heads"),
        main.join("hooks"),
        main.join("worktrees/x"),
    ] {
        std::fs::create_dir_all(d).ok()?;
    }
    std::fs::write(ctl.join(".git"), format!("gitdir: {}\n", gitdir.display())).ok()?;
    std::fs::write(gitdir.join("config"), "").ok()?;
    std::fs::write(
        gitdir.join("objects/info/alternates"),
        format!("{}\n", main.join("objects").display()),
    )
    .ok()?;
    std::fs::write(main.join("worktrees/x/commondir"), "../..\n").ok()?;
    Some((repo, ctl))
}

/// A check that the probe cannot create `target` on the host (verified on the host, since a
/// write that lands in the sandbox's own tmpfs is no escape); the file is removed afterwards.
fn write_check(name: &str, target: PathBuf, fx: &mut Fixtures) -> Check {
    let mut c = check(
        name,
        Guarantee::HostWrites,
        "write-file",
        &[&target.display().to_string()],
    );
    c.verify = Verify::HostFileAbsent(target.clone());
    fx.files.push(target);
    c
}

/// Host sockets of the "socket in a bound directory" checks: stream, seqpacket and datagram in a
/// directory the policy binds read-only, and a stream socket in the workspace (bound read-write
/// in bind mode). Kept open for the whole battery.
#[derive(Debug)]
struct BoundSockets {
    dir: PathBuf,
    ws_sock: PathBuf,
    policy: PathBuf,
    _held: (
        UnixListener,
        OwnedFd,
        std::os::unix::net::UnixDatagram,
        UnixListener,
    ),
}

impl BoundSockets {
    fn create(base: &Path, ws: &Path) -> Result<BoundSockets> {
        use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType};
        let dir = base.join("bound");
        std::fs::create_dir_all(&dir)?;
        let stream = UnixListener::bind(dir.join("stream.sock"))
            .with_context(|| format!("cannot bind a unix socket in {}", dir.display()))?;
        let seqpacket = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context("cannot create a seqpacket socket")?;
        let addr = nix::sys::socket::UnixAddr::new(&dir.join("seqpacket.sock"))?;
        bind(seqpacket.as_raw_fd(), &addr).context("cannot bind a seqpacket socket")?;
        listen(&seqpacket, Backlog::new(8)?).context("cannot listen on a seqpacket socket")?;
        let dgram = std::os::unix::net::UnixDatagram::bind(dir.join("dgram.sock"))
            .context("cannot bind a datagram socket")?;
        let ws_sock = ws.join("host-daemon.sock");
        let in_ws = UnixListener::bind(&ws_sock)
            .with_context(|| format!("cannot bind {}", ws_sock.display()))?;
        let policy = base.join("bound-policy.toml");
        std::fs::write(
            &policy,
            format!("[filesystem]\nread_only = [\"{}\"]\n", dir.display()),
        )?;
        Ok(BoundSockets {
            dir,
            ws_sock,
            policy,
            _held: (stream, seqpacket, dgram, in_ws),
        })
    }

    /// (check name, socket path, probe kind)
    fn checks(&self) -> Vec<(String, PathBuf, &'static str)> {
        vec![
            (
                "reach a host socket in a bound directory (stream)".into(),
                self.dir.join("stream.sock"),
                "stream",
            ),
            (
                "reach a host socket in a bound directory (seqpacket)".into(),
                self.dir.join("seqpacket.sock"),
                "seqpacket",
            ),
            (
                "send a datagram to a host socket in a bound directory".into(),
                self.dir.join("dgram.sock"),
                "dgram",
            ),
            (
                "reach a host socket in the bind-mode workspace".into(),
                self.ws_sock.clone(),
                "stream",
            ),
        ]
    }
}

impl Drop for BoundSockets {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ws_sock);
    }
}

pub(crate) fn marker_alive(marker: &str) -> bool {
    marker_alive_except(marker, None)
}

/// Whether a process other than `except` (the `airlock run` a check started, whose own
/// arguments hold the marker) has `marker` in its command line.
pub(crate) fn marker_alive_except(marker: &str, except: Option<u32>) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let pid = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok());
        pid.is_some()
            && pid != except
            && std::fs::read(e.path().join("cmdline"))
                .map(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
                .unwrap_or(false)
    })
}

pub(crate) fn kill_marker(marker: &str) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let hit = std::fs::read(e.path().join("cmdline"))
            .map(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
            .unwrap_or(false);
        if let (true, Some(pid)) = (hit, e.file_name().to_str().and_then(|s| s.parse().ok())) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

pub(crate) fn wait_for(mut f: impl FnMut() -> bool, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// 16 random hex digits, for names of planted files and markers no one can guess.
pub(crate) fn token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

pub(crate) fn ns_link(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|l| l.display().to_string())
        .unwrap_or_default()
}

/// Fixtures that must be cleaned up whatever happens.
#[derive(Debug, Default)]
pub(crate) struct Fixtures {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) shm: Vec<i32>,
    pub(crate) children: Vec<std::process::Child>,
    pub(crate) markers: Vec<String>,
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        for id in &self.shm {
            airlock_sandbox::probe::remove_shm(*id);
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for m in &self.markers {
            kill_marker(m);
        }
    }
}

/// The listeners and sockets the network checks attack, held open for the whole battery.
struct Held {
    _tcp: std::net::TcpListener,
    _tcp6: Option<std::net::TcpListener>,
    _abs: UnixListener,
    _path_sock: UnixListener,
    _bound: BoundSockets,
}

/// The escape battery for one run: every check, the host fixtures they attack (removed on drop),
/// and the secrets the inside run gets in its environment (a check must not find them).
pub(crate) struct Table {
    /// The checks, in the threat model's order.
    pub(crate) checks: Vec<Check>,
    /// Variables set for the inside `airlock run` (name, value): host secrets the sandbox must
    /// not see, and the credential whose placeholder it gets instead.
    pub(crate) env_secret: Vec<(String, String)>,
    /// What must be cleaned up whatever happens.
    pub(crate) fixtures: Fixtures,
    _held: Held,
}

/// Builds the battery: plants the fixtures under `base` (and in `home`, the real home, when
/// given), with `ws` as the shared scratch workspace and `outside` a host directory the sandbox
/// must not reach.
///
/// # Errors
/// A fixture that cannot be created (a loopback listener, a socket, a host process).
pub(crate) fn table(base: &Path, ws: &Path, outside: &Path, home: Option<&Path>) -> Result<Table> {
    let mut fx = Fixtures::default();
    let secret = token();
    let mut checks = Vec::new();
    // 1. Host secrets.
    if let Some(home) = home.filter(|h| h.is_dir()) {
        let f = home.join(format!(".airlock-selftest-secret-{}", token()));
        if std::fs::write(&f, &secret).is_ok() {
            fx.files.push(f.clone());
            checks.push(check(
                "read a secret planted in the real home",
                Guarantee::HostSecrets,
                "read-file",
                &[&f.display().to_string(), &secret],
            ));
            checks.extend(home_on_path_checks(home, &f, &secret));
        }
        let ssh = home.join(".ssh");
        if ssh.is_dir() {
            let f = ssh.join(format!("airlock-selftest-{}", token()));
            if std::fs::write(&f, &secret).is_ok() {
                fx.files.push(f.clone());
                checks.push(check(
                    "read a key in ~/.ssh",
                    Guarantee::HostSecrets,
                    "read-file",
                    &[&f.display().to_string(), &secret],
                ));
            }
        }
    }
    checks.extend(tool_secret_check(base, &secret));
    checks.extend(preset_secret_check(base, &secret));
    // 4. A credential's secret: the sandbox holds a placeholder, the bytes are nowhere inside.
    let cred_secret = format!("sk-selftest-{}{}", token(), token());
    let cred_policy = base.join("credentials.toml");
    std::fs::write(
        &cred_policy,
        "[[credentials]]\nname = \"selftest\"\nenv = \"AIRLOCK_SELFTEST_CREDENTIAL\"\n\
         hosts = [\"selftest.airlock.invalid\"]\n",
    )
    .context("cannot write the selftest credential policy")?;
    let fragment = hex::encode(&cred_secret.as_bytes()[cred_secret.len() - 16..]);
    let mut cred_check = check(
        "find a credential's secret bytes (env, /proc, trust bundle, files)",
        Guarantee::Credentials,
        "secret-bytes",
        &[&fragment],
    );
    cred_check.run_flags = vec!["--policy".into(), cred_policy.display().to_string()];
    checks.push(cred_check);
    let env_secret = vec![
        ("AIRLOCK_SELFTEST_SECRET".to_string(), secret.clone()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), secret.clone()),
        ("AIRLOCK_SELFTEST_CREDENTIAL".to_string(), cred_secret),
    ];
    checks.push(check(
        "read a secret environment variable",
        Guarantee::HostSecrets,
        "env",
        &[&secret],
    ));
    // Unprivileged, the control cannot read it either: listed as a skip with that reason, so a
    // user sees which checks this run could not prove (never left out silently).
    checks.push(check(
        "read /etc/shadow",
        Guarantee::HostSecrets,
        "read-file",
        &["/etc/shadow", ":"],
    ));
    // 2. Writes the host would read.
    checks.push(write_check(
        "write outside the workspace",
        outside.join(format!("planted-{}", token())),
        &mut fx,
    ));
    if let Some(home) = home.filter(|h| h.is_dir()) {
        checks.push(write_check(
            "plant a file in the real home (~/.bashrc style)",
            home.join(format!(".airlock-selftest-rc-{}", token())),
            &mut fx,
        ));
    }
    // As above: unprivileged, the control's own refusal makes this a listed skip.
    checks.push(write_check(
        "write into a system directory (/etc)",
        PathBuf::from(format!("/etc/airlock-selftest-{}", token())),
        &mut fx,
    ));
    // A preset's host cache is shared read-only: writes inside stay in the session's layer.
    let cache_home = base.join("cache-home");
    if std::fs::create_dir_all(cache_home.join(".npm")).is_ok() {
        let target = cache_home
            .join(".npm")
            .join(format!("airlock-selftest-{}", token()));
        let mut c = write_check(
            "write into a shared host cache (--preset node, ~/.npm)",
            target,
            &mut fx,
        );
        c.run_flags = vec!["--preset".into(), "node".into()];
        c.run_env = vec![("HOME".into(), cache_home.display().to_string())];
        checks.push(c);
    }
    // The gate's channel to the supervisor: only the supervisor answers the hook (a held ask's
    // allow), so nothing inside may listen on its port in the supervisor's place.
    checks.push(check(
        "listen on the gate hook's channel in the supervisor's place",
        Guarantee::PolicyAndSettings,
        "listen",
        &[&crate::gate_audit::HOOK_AUDIT_PORT.to_string()],
    ));
    // The settings that put the command gate in the agent's path (generated, read-only).
    for (agent, file) in [
        ("claude", crate::agents::CLAUDE_MANAGED_SETTINGS),
        ("codex", crate::agents::CODEX_REQUIREMENTS),
    ] {
        let mut c = check(
            &format!("rewrite {agent}'s managed settings (the gate hook)"),
            Guarantee::PolicyAndSettings,
            "write-file",
            &[file],
        );
        c.run_flags = vec!["--agent".into(), agent.into()];
        c.control = Some(
            "shown by \"write outside the workspace\" (the same probe; writing the host's /etc \
             would be destructive)",
        );
        checks.push(c);
    }
    // 3. Network peers of the host.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").context("cannot listen on loopback")?;
    let addr = tcp.local_addr()?.to_string();
    checks.push(check(
        "reach a host loopback service",
        Guarantee::Network,
        "connect",
        &[&addr],
    ));
    // IPv6 loopback, where the host has it.
    let tcp6 = std::net::TcpListener::bind("[::1]:0").ok();
    if let Some(l) = &tcp6 {
        let addr6 = l.local_addr()?.to_string();
        checks.push(check(
            "reach a host IPv6 loopback service",
            Guarantee::Network,
            "connect",
            &[&addr6],
        ));
    }
    let abs_name = format!("airlock-selftest-{}", token());
    let abs = {
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(abs_name.as_bytes())?;
        UnixListener::bind_addr(&a).context("cannot bind an abstract socket")?
    };
    checks.push(check(
        "reach a host abstract unix socket",
        Guarantee::Network,
        "abstract",
        &[&abs_name],
    ));
    let sock_path = outside.join("host.sock");
    let path_sock = UnixListener::bind(&sock_path).context("cannot bind a unix socket")?;
    checks.push(check(
        "reach a host unix socket by path",
        Guarantee::Network,
        "unix",
        &[&sock_path.display().to_string()],
    ));
    // Sockets of host daemons under directories bound into the sandbox: a read-only bind (as
    // /nix/var/nix/daemon-socket or /opt/*/ would be) and the bind-mode workspace itself.
    let bound_socks = BoundSockets::create(base, ws)?;
    for (name, path, kind) in bound_socks.checks() {
        let mut c = check(
            &name,
            Guarantee::Network,
            "unix-bound",
            &[&path.display().to_string(), kind],
        );
        c.run_flags = vec!["--policy".into(), bound_socks.policy.display().to_string()];
        checks.push(c);
    }
    checks.push(check(
        "route UDP off the machine",
        Guarantee::Network,
        "socket",
        &["udp-out"],
    ));
    for fam in ["packet", "raw-inet", "netlink-audit", "vsock"] {
        checks.push(check(
            &format!("open a {fam} socket"),
            Guarantee::Network,
            "socket",
            &[fam],
        ));
    }
    // 5. Host processes, IPC, hostname.
    let sleeper = Command::new("sleep")
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start a host process for the signal check")?;
    let sleeper_pid = sleeper.id().to_string();
    fx.children.push(sleeper);
    checks.push(check(
        "signal a host process",
        Guarantee::Processes,
        "signal",
        &[&sleeper_pid],
    ));
    let key: i32 = 0x41_4c_00 | i32::try_from(std::process::id() & 0xff).unwrap_or(0);
    if let Ok(id) = airlock_sandbox::probe::create_shm(key) {
        fx.shm.push(id);
        checks.push(check(
            "attach the host's SysV shared memory",
            Guarantee::Processes,
            "shm",
            &[&key.to_string()],
        ));
    }
    let shm_file = PathBuf::from(format!("/dev/shm/airlock-selftest-{}", token()));
    if std::fs::write(&shm_file, &secret).is_ok() {
        fx.files.push(shm_file.clone());
        checks.push(check(
            "read the host's /dev/shm",
            Guarantee::Processes,
            "read-file",
            &[&shm_file.display().to_string(), &secret],
        ));
    }
    for kind in ["pid", "ipc", "uts", "net", "mnt", "cgroup", "user"] {
        checks.push(check(
            &format!("share the host's {kind} namespace"),
            Guarantee::Processes,
            "same-ns",
            &[kind, &ns_link(kind)],
        ));
    }
    let host_name = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut c = check(
        "change the host's hostname",
        Guarantee::Processes,
        "hostname",
        &["airlock-selftest-pwned"],
    );
    c.verify = Verify::HostnameUnchanged(host_name);
    c.control = Some("shown by the uts namespace check (changing it outside would be destructive)");
    checks.push(c);
    // Kernel attack surface and privilege.
    checks.push(check(
        "create a nested user namespace",
        Guarantee::KernelSurface,
        "userns",
        &[],
    ));
    let mnt = base.join("mnt");
    checks.push(check(
        "mount a filesystem",
        Guarantee::KernelSurface,
        "mount",
        &[&mnt.display().to_string()],
    ));
    checks.push(check(
        "ptrace a process",
        Guarantee::KernelSurface,
        "ptrace",
        &[],
    ));
    checks.push(check(
        "inject terminal input (TIOCSTI)",
        Guarantee::KernelSurface,
        "tiocsti",
        &[],
    ));
    checks.push(check(
        "set up io_uring",
        Guarantee::KernelSurface,
        "io_uring",
        &[],
    ));
    for sc in [
        "bpf",
        "perf_event_open",
        "keyctl",
        "userfaultfd",
        "kexec_load",
        "init_module",
        "open_by_handle_at",
        "setns",
    ] {
        checks.push(check(
            &format!("call {sc}"),
            Guarantee::KernelSurface,
            "syscall",
            &[sc],
        ));
    }
    // 6. Lifetime and resources.
    let marker = format!("airlock-selftest-daemon-{}", token());
    fx.markers.push(marker.clone());
    let mut c = check(
        "leave a daemon behind after the session",
        Guarantee::Lifetime,
        "daemon",
        &[&marker],
    );
    c.verify = Verify::NoProcess(marker);
    checks.push(c);
    let mut c = check(
        "create 200 processes with --pids 64",
        Guarantee::Lifetime,
        "procs",
        &["200"],
    );
    c.run_flags = vec!["--pids".into(), "64".into()];
    checks.push(c);
    let mut c = check(
        "use 512 MiB with --memory 128M",
        Guarantee::Lifetime,
        "memory",
        &["512"],
    );
    c.run_flags = vec!["--memory".into(), "128M".into()];
    checks.push(c);

    // 8. Host programs acting on what the sandbox wrote: in worktree mode the worktree's `.git`,
    // its git directory's config and alternates, and the main repository's git directory are
    // what a host `git` would follow to the agent's configuration or read as the user's history.
    if let Some((repo, ctl)) = worktree_fixture(base) {
        let mut c = check(
            "swap a worktree's link or write its main repository (.git, config, objects, refs)",
            Guarantee::HostActsOnOutput,
            "swap-git-link",
            &[],
        );
        c.mode = "worktree";
        c.workspace = Some(repo);
        c.control_cwd = Some(ctl);
        checks.push(c);
    }

    Ok(Table {
        checks,
        env_secret,
        fixtures: fx,
        _held: Held {
            _tcp: tcp,
            _tcp6: tcp6,
            _abs: abs,
            _path_sock: path_sock,
            _bound: bound_socks,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every guarantee of the threat model has at least one check in the table. The table is the
    /// same on every backend (a backend only changes how the inside run starts), so this holds
    /// for each of them; `airlock selftest` still reports a guarantee whose checks were all
    /// skipped on a host as not covered.
    #[test]
    fn every_guarantee_has_a_check() {
        let base = tempfile::tempdir().expect("tempdir");
        let (ws, outside, home) = (
            base.path().join("ws"),
            base.path().join("outside"),
            base.path().join("home"),
        );
        for d in [&ws, &outside, &home] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let t = table(base.path(), &ws, &outside, Some(&home)).expect("table");
        for g in Guarantee::ALL {
            assert!(
                t.checks.iter().any(|c| c.guarantee == g),
                "no selftest check attacks guarantee {g}"
            );
        }
        let mut names: Vec<_> = t.checks.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(
            names.len(),
            n,
            "two checks share a name (--only selects by name)"
        );
    }
}
