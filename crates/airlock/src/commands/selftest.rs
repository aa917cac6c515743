//! `airlock selftest`: the escape battery. Every check plants something on the host, runs an
//! escape probe outside the sandbox as a control (it must get through there, or the check proves
//! nothing) and then inside `airlock run` (it must be stopped there).

use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::SelftestArgs;

/// How the host decides whether the inside attempt got through.
#[derive(Debug, Clone)]
enum Verify {
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
struct Check {
    name: String,
    /// The guarantee it attacks (numbered as in DESIGN.md's threat model).
    guarantee: &'static str,
    probe: &'static str,
    args: Vec<String>,
    run_flags: Vec<String>,
    /// Environment of the inside `airlock run` (e.g. a hostile `PATH`), on top of the host's.
    run_env: Vec<(String, String)>,
    verify: Verify,
    /// Run the control outside; `Some(reason)` when a different check already shows the control.
    control: Option<&'static str>,
    /// The workspace mode inside (`bind` unless a check needs another).
    mode: &'static str,
    /// The workspace inside, when not the shared scratch one.
    workspace: Option<PathBuf>,
    /// The directory the control runs in, when the probe works on relative paths.
    control_cwd: Option<PathBuf>,
}

fn check(name: &str, guarantee: &'static str, probe: &'static str, args: &[&str]) -> Check {
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
            "1 host secrets",
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
        "1 host secrets",
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
        "2 host writes",
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Pass,
    Fail,
    Skip,
    Error,
}

#[derive(Debug, Serialize)]
struct Report {
    name: String,
    guarantee: &'static str,
    verdict: Verdict,
    control: String,
    inside: String,
}

#[derive(Debug)]
struct ProbeRun {
    got_through: bool,
    detail: String,
    error: bool,
}

fn probe_cmd(exe: &Path, probe: &str, args: &[String]) -> Command {
    let mut c = Command::new(exe);
    c.arg("__probe").arg(probe).args(args);
    c
}

fn interpret(out: std::process::Output) -> ProbeRun {
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    use std::os::unix::process::ExitStatusExt;
    match (out.status.code(), out.status.signal()) {
        (Some(0), _) => ProbeRun {
            got_through: true,
            detail: stdout,
            error: false,
        },
        (Some(1), _) => ProbeRun {
            got_through: false,
            detail: stdout,
            error: false,
        },
        // SIGKILL from the memory cgroup's OOM killer (directly, or reported as 128+9).
        (Some(137), _) | (None, Some(9)) => ProbeRun {
            got_through: false,
            detail: "killed (out of memory)".to_string(),
            error: false,
        },
        (code, sig) => ProbeRun {
            got_through: false,
            detail: format!(
                "probe failed (exit {code:?}, signal {sig:?}): {} {}",
                stdout, stderr
            ),
            error: true,
        },
    }
}

fn run_output(mut c: Command, env: &[(String, String)]) -> ProbeRun {
    c.stdin(Stdio::null()).envs(env.iter().cloned());
    match c.output() {
        Ok(out) => interpret(out),
        Err(e) => ProbeRun {
            got_through: false,
            detail: format!("cannot run probe: {e}"),
            error: true,
        },
    }
}

fn marker_alive(marker: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
            .unwrap_or(false)
    })
}

fn kill_marker(marker: &str) {
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

fn wait_for(mut f: impl FnMut() -> bool, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn token() -> String {
    super::run::new_session_id() + &super::run::new_session_id()
}

fn ns_link(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|l| l.display().to_string())
        .unwrap_or_default()
}

/// Fixtures that must be cleaned up whatever happens.
#[derive(Debug, Default)]
struct Fixtures {
    files: Vec<PathBuf>,
    shm: Vec<i32>,
    children: Vec<std::process::Child>,
    markers: Vec<String>,
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

/// Which backend's sandbox the checks run in: the flags `airlock run` gets and the argv that
/// runs the probe (airlock itself) inside.
#[derive(Debug, Clone)]
struct Target {
    run_flags: Vec<String>,
    probe: Vec<String>,
}

impl Target {
    fn of(args: &SelftestArgs) -> Result<Target> {
        let inside = std::path::Path::new(crate::view::SELF_DIR).join("airlock");
        if args.backend == crate::cli::Backend::Native {
            return Ok(Target {
                run_flags: Vec::new(),
                probe: vec![inside.display().to_string()],
            });
        }
        let kind = airlock_session::BackendKind::from(args.backend);
        let mut run_flags = vec!["--backend".to_string(), kind.as_str().to_string()];
        if let Some(r) = &args.runtime {
            run_flags.extend(["--runtime".to_string(), r.clone()]);
        }
        if let Some(i) = &args.image {
            run_flags.extend(["--image".to_string(), i.clone()]);
        }
        // The image's libc may differ or be absent: the probe runs with airlock's own loader.
        let probe = airlock_container::container::run_inside_prefix(&inside)?;
        Ok(Target { run_flags, probe })
    }
}

/// The inner runs get their own `XDG_DATA_HOME` (a private session store); rootless Podman keeps
/// its images there too, so the private one points to the user's container store.
fn link_container_store(data: &Path) -> Result<()> {
    let real = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")));
    if let Some(real) = real {
        std::fs::create_dir_all(data)?;
        std::os::unix::fs::symlink(real.join("containers"), data.join("containers"))
            .with_context(|| format!("cannot link the container store into {}", data.display()))?;
    }
    Ok(())
}

pub(crate) fn selftest(args: SelftestArgs) -> Result<i32> {
    let exe = std::fs::canonicalize("/proc/self/exe").context("cannot find the airlock binary")?;
    let target = Target::of(&args)?;
    let base = tempfile::Builder::new()
        .prefix("airlock-selftest-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let ws = base.path().join("ws");
    let outside = base.path().join("outside");
    std::fs::create_dir_all(&ws)?;
    std::fs::create_dir_all(&outside)?;
    if !target.run_flags.is_empty() {
        link_container_store(&ws.with_file_name("data"))?;
    }
    let mut fx = Fixtures::default();
    let secret = token();
    let home = std::env::var_os("HOME").map(PathBuf::from);

    let mut checks = Vec::new();
    // 1. Host secrets.
    if let Some(home) = home.as_ref().filter(|h| h.is_dir()) {
        let f = home.join(format!(".airlock-selftest-secret-{}", token()));
        if std::fs::write(&f, &secret).is_ok() {
            fx.files.push(f.clone());
            checks.push(check(
                "read a secret planted in the real home",
                "1 host secrets",
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
                    "1 host secrets",
                    "read-file",
                    &[&f.display().to_string(), &secret],
                ));
            }
        }
    }
    checks.extend(tool_secret_check(base.path(), &secret));
    // 4. A credential's secret: the sandbox holds a placeholder, the bytes are nowhere inside.
    let cred_secret = format!("sk-selftest-{}{}", token(), token());
    let cred_policy = base.path().join("credentials.toml");
    std::fs::write(
        &cred_policy,
        "[[credentials]]\nname = \"selftest\"\nenv = \"AIRLOCK_SELFTEST_CREDENTIAL\"\n\
         hosts = [\"selftest.airlock.invalid\"]\n",
    )
    .context("cannot write the selftest credential policy")?;
    let fragment = hex::encode(&cred_secret.as_bytes()[cred_secret.len() - 16..]);
    let mut cred_check = check(
        "find a credential's secret bytes (env, /proc, trust bundle, files)",
        "4 credentials",
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
        "1 host secrets",
        "env",
        &[&secret],
    ));
    if nix::unistd::geteuid().is_root() {
        checks.push(check(
            "read /etc/shadow",
            "1 host secrets",
            "read-file",
            &["/etc/shadow", ":"],
        ));
    }
    // 2. Writes the host would read.
    checks.push(write_check(
        "write outside the workspace",
        outside.join(format!("planted-{}", token())),
        &mut fx,
    ));
    if let Some(home) = home.as_ref().filter(|h| h.is_dir()) {
        checks.push(write_check(
            "plant a file in the real home (~/.bashrc style)",
            home.join(format!(".airlock-selftest-rc-{}", token())),
            &mut fx,
        ));
    }
    if nix::unistd::geteuid().is_root() {
        checks.push(write_check(
            "write into a system directory (/etc)",
            PathBuf::from(format!("/etc/airlock-selftest-{}", token())),
            &mut fx,
        ));
    }
    // A preset's host cache is shared read-only: writes inside stay in the session's layer.
    let cache_home = base.path().join("cache-home");
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
        "7 policy, hook and settings",
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
            "7 policy, hook and settings",
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
        "3 network",
        "connect",
        &[&addr],
    ));
    // IPv6 loopback, where the host has it.
    let tcp6 = std::net::TcpListener::bind("[::1]:0").ok();
    if let Some(l) = &tcp6 {
        let addr6 = l.local_addr()?.to_string();
        checks.push(check(
            "reach a host IPv6 loopback service",
            "3 network",
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
        "3 network",
        "abstract",
        &[&abs_name],
    ));
    let sock_path = outside.join("host.sock");
    let path_sock = UnixListener::bind(&sock_path).context("cannot bind a unix socket")?;
    checks.push(check(
        "reach a host unix socket by path",
        "3 network",
        "unix",
        &[&sock_path.display().to_string()],
    ));
    // Sockets of host daemons under directories bound into the sandbox: a read-only bind (as
    // /nix/var/nix/daemon-socket or /opt/*/ would be) and the bind-mode workspace itself.
    let bound_socks = BoundSockets::create(base.path(), &ws)?;
    for (name, path, kind) in bound_socks.checks() {
        let mut c = check(
            &name,
            "3 network",
            "unix-bound",
            &[&path.display().to_string(), kind],
        );
        c.run_flags = vec!["--policy".into(), bound_socks.policy.display().to_string()];
        checks.push(c);
    }
    checks.push(check(
        "route UDP off the machine",
        "3 network",
        "socket",
        &["udp-out"],
    ));
    for fam in ["packet", "raw-inet", "netlink-audit", "vsock"] {
        checks.push(check(
            &format!("open a {fam} socket"),
            "3 network",
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
        "5 processes and IPC",
        "signal",
        &[&sleeper_pid],
    ));
    let key: i32 = 0x41_4c_00 | i32::try_from(std::process::id() & 0xff).unwrap_or(0);
    if let Ok(id) = airlock_sandbox::probe::create_shm(key) {
        fx.shm.push(id);
        checks.push(check(
            "attach the host's SysV shared memory",
            "5 processes and IPC",
            "shm",
            &[&key.to_string()],
        ));
    }
    let shm_file = PathBuf::from(format!("/dev/shm/airlock-selftest-{}", token()));
    if std::fs::write(&shm_file, &secret).is_ok() {
        fx.files.push(shm_file.clone());
        checks.push(check(
            "read the host's /dev/shm",
            "5 processes and IPC",
            "read-file",
            &[&shm_file.display().to_string(), &secret],
        ));
    }
    for kind in ["pid", "ipc", "uts", "net", "mnt", "cgroup", "user"] {
        checks.push(check(
            &format!("share the host's {kind} namespace"),
            "5 processes and IPC",
            "same-ns",
            &[kind, &ns_link(kind)],
        ));
    }
    let host_name = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut c = check(
        "change the host's hostname",
        "5 processes and IPC",
        "hostname",
        &["airlock-selftest-pwned"],
    );
    c.verify = Verify::HostnameUnchanged(host_name);
    c.control = Some("shown by the uts namespace check (changing it outside would be destructive)");
    checks.push(c);
    // Kernel attack surface and privilege.
    checks.push(check(
        "create a nested user namespace",
        "kernel surface",
        "userns",
        &[],
    ));
    let mnt = base.path().join("mnt");
    checks.push(check(
        "mount a filesystem",
        "kernel surface",
        "mount",
        &[&mnt.display().to_string()],
    ));
    checks.push(check("ptrace a process", "kernel surface", "ptrace", &[]));
    checks.push(check(
        "inject terminal input (TIOCSTI)",
        "kernel surface",
        "tiocsti",
        &[],
    ));
    checks.push(check("set up io_uring", "kernel surface", "io_uring", &[]));
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
            "kernel surface",
            "syscall",
            &[sc],
        ));
    }
    // 6. Lifetime and resources.
    let marker = format!("airlock-selftest-daemon-{}", token());
    fx.markers.push(marker.clone());
    let mut c = check(
        "leave a daemon behind after the session",
        "6 lifetime and resources",
        "daemon",
        &[&marker],
    );
    c.verify = Verify::NoProcess(marker);
    checks.push(c);
    let mut c = check(
        "create 200 processes with --pids 64",
        "6 lifetime and resources",
        "procs",
        &["200"],
    );
    c.run_flags = vec!["--pids".into(), "64".into()];
    checks.push(c);
    let mut c = check(
        "use 512 MiB with --memory 128M",
        "6 lifetime and resources",
        "memory",
        &["512"],
    );
    c.run_flags = vec!["--memory".into(), "128M".into()];
    checks.push(c);

    // 8. Host programs acting on what the sandbox wrote: in worktree mode the worktree's `.git`,
    // its git directory's config and alternates, and the main repository's git directory are
    // what a host `git` would follow to the agent's configuration or read as the user's history.
    if let Some((repo, ctl)) = worktree_fixture(base.path()) {
        let mut c = check(
            "swap a worktree's link or write its main repository (.git, config, objects, refs)",
            "8 host acts on sandbox output",
            "swap-git-link",
            &[],
        );
        c.mode = "worktree";
        c.workspace = Some(repo);
        c.control_cwd = Some(ctl);
        checks.push(c);
    }

    if let Some(only) = &args.only {
        checks.retain(|c| c.name.contains(only.as_str()) || c.probe.contains(only.as_str()));
        let kill = "airlock killed".contains(only.as_str()) || only == "kill";
        if checks.is_empty() && !kill {
            // Nothing run is not a pass.
            return Err(crate::exit::with_code(
                crate::exit::FAILURE,
                anyhow::anyhow!(
                    "selftest --only {only:?} matches no check; `airlock selftest` lists their names"
                ),
            ));
        }
    }

    let mut reports = Vec::new();
    for c in &checks {
        let r = run_check(&exe, &ws, c, &env_secret, &target);
        if let Verify::NoProcess(m) = &c.verify {
            kill_marker(m);
        }
        if !args.json {
            print_report(&r)?;
        }
        reports.push(r);
    }
    // The supervisor dying must take the sandbox with it.
    if args
        .only
        .as_deref()
        .is_none_or(|o| "airlock killed".contains(o) || o == "kill")
    {
        let r = supervisor_kill_check(&exe, &ws, &mut fx, &target);
        if !args.json {
            print_report(&r)?;
        }
        reports.push(r);
    }
    drop((tcp, tcp6, abs, path_sock, bound_socks));
    let count = |v: fn(&Verdict) -> bool| reports.iter().filter(|r| v(&r.verdict)).count();
    let passed = count(|v| matches!(v, Verdict::Pass));
    let failed = count(|v| matches!(v, Verdict::Fail | Verdict::Error));
    let skipped = count(|v| matches!(v, Verdict::Skip));
    if args.json {
        writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "root": nix::unistd::geteuid().is_root(),
                "passed": passed, "failed": failed, "skipped": skipped,
                "checks": reports,
            }))?
        )?;
    } else {
        writeln!(
            std::io::stdout(),
            "\nselftest: {passed} passed, {failed} failed, {skipped} skipped"
        )?;
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// A check passes when the control got through and the inside attempt did not; a control that
/// did not get through proves nothing (skip).
fn verdict(inside: &ProbeRun, control: &ProbeRun) -> Verdict {
    if inside.error || control.error {
        Verdict::Error
    } else if inside.got_through {
        Verdict::Fail
    } else if !control.got_through {
        Verdict::Skip
    } else {
        Verdict::Pass
    }
}

/// One check's line (and, unless it passed, what was seen outside and inside).
fn print_report(r: &Report) -> std::io::Result<()> {
    let v = match r.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Skip => "skip",
        Verdict::Error => "ERROR",
    };
    writeln!(std::io::stdout(), "{:60} {v}", r.name)?;
    if !matches!(r.verdict, Verdict::Pass) {
        writeln!(std::io::stdout(), "    control (outside): {}", r.control)?;
        writeln!(std::io::stdout(), "    inside:            {}", r.inside)?;
    }
    Ok(())
}

fn run_check(
    exe: &Path,
    ws: &Path,
    c: &Check,
    env: &[(String, String)],
    target: &Target,
) -> Report {
    let control = match c.control {
        Some(reason) => ProbeRun {
            got_through: true,
            detail: format!("not run: {reason}"),
            error: false,
        },
        None => {
            let mut cmd = probe_cmd(exe, c.probe, &c.args);
            if let Some(d) = &c.control_cwd {
                cmd.current_dir(d);
            }
            let r = run_output(cmd, env);
            // Undo what a successful control did on the host.
            if let Verify::HostFileAbsent(p) = &c.verify {
                let _ = std::fs::remove_file(p);
            }
            if let Verify::NoProcess(m) = &c.verify {
                kill_marker(m);
            }
            r
        }
    };
    let mut inner = Command::new(exe);
    let workspace = c.workspace.as_deref().unwrap_or(ws);
    inner
        .arg("run")
        .args(["--mode", c.mode])
        .env("XDG_DATA_HOME", ws.with_file_name("data"))
        .arg("--workspace")
        .arg(workspace)
        .current_dir(workspace)
        .args(&c.run_flags)
        .args(&target.run_flags)
        .arg("--")
        .args(&target.probe)
        .arg("__probe")
        .arg(c.probe)
        .args(&c.args)
        .envs(c.run_env.iter().cloned());
    let mut inside = run_output(inner, env);
    // A container backend refuses a limit its engine would ignore (rootless on cgroup v1): the
    // session never starts, so nothing can exceed the limit.
    if inside.error && inside.detail.contains("cannot be enforced by the") {
        inside.error = false;
        inside.got_through = false;
        inside.detail = "refused to start: the engine would not enforce the limit here".into();
    }
    match &c.verify {
        Verify::Probe => {}
        Verify::HostFileAbsent(p) => {
            if p.exists() {
                inside.got_through = true;
                inside.detail = format!("{} appeared on the host", p.display());
                let _ = std::fs::remove_file(p);
            } else {
                inside.got_through = false;
                inside.detail = format!("nothing reached the host ({})", inside.detail);
            }
        }
        Verify::NoProcess(m) => {
            // The namespace dies with its init; give the kernel a moment.
            let gone = wait_for(|| !marker_alive(m), Duration::from_secs(3));
            inside.got_through = !gone;
            inside.detail = if gone {
                format!("nothing survived the session ({})", inside.detail)
            } else {
                "a process of the sandbox outlived it".to_string()
            };
        }
        Verify::HostnameUnchanged(before) => {
            let now = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            inside.got_through = &now != before;
            inside.detail = format!("host hostname is {now} ({})", inside.detail);
        }
    }
    Report {
        verdict: verdict(&inside, &control),
        name: c.name.clone(),
        guarantee: c.guarantee,
        control: control.detail,
        inside: inside.detail,
    }
}

fn supervisor_kill_check(exe: &Path, ws: &Path, fx: &mut Fixtures, target: &Target) -> Report {
    let name = "outlive airlock killed with SIGKILL".to_string();
    let marker = format!("airlock-selftest-orphan-{}", token());
    fx.markers.push(marker.clone());
    // Control: a process started by a killed parent, with no sandbox, survives it.
    let control = {
        let r = run_output(probe_cmd(exe, "daemon", std::slice::from_ref(&marker)), &[]);
        let alive = wait_for(|| marker_alive(&marker), Duration::from_secs(2));
        kill_marker(&marker);
        ProbeRun {
            got_through: alive,
            detail: format!(
                "{} (survivor {})",
                r.detail,
                if alive { "found" } else { "not found" }
            ),
            error: r.error,
        }
    };
    let child = Command::new(exe)
        .arg("run")
        .args(["--mode", "bind"])
        .args(&target.run_flags)
        .env("XDG_DATA_HOME", ws.with_file_name("data"))
        .arg("--workspace")
        .arg(ws)
        .arg("--")
        .args(&target.probe)
        .arg("__probe")
        .arg("sleep")
        .arg(&marker)
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn();
    let inside = match child {
        Err(e) => ProbeRun {
            got_through: false,
            detail: format!("cannot start airlock run: {e}"),
            error: true,
        },
        Ok(mut child) => {
            if !wait_for(|| marker_alive(&marker), Duration::from_secs(10)) {
                let _ = child.kill();
                let _ = child.wait();
                ProbeRun {
                    got_through: false,
                    detail: "the probe never started inside".into(),
                    error: true,
                }
            } else {
                let _ = child.kill();
                let _ = child.wait();
                let gone = wait_for(|| !marker_alive(&marker), Duration::from_secs(3));
                kill_marker(&marker);
                ProbeRun {
                    got_through: !gone,
                    detail: if gone {
                        "the sandbox died with airlock".into()
                    } else {
                        "the sandbox outlived airlock".into()
                    },
                    error: false,
                }
            }
        }
    };
    Report {
        verdict: verdict(&inside, &control),
        name,
        guarantee: "6 lifetime and resources",
        control: control.detail,
        inside: inside.detail,
    }
}

/// `airlock __probe NAME ARGS...`: prints what happened; exits 0 if the attempt got through,
/// 1 if it was stopped, 2 on a usage error.
pub(crate) fn probe(name: &str, args: &[String]) -> Result<i32> {
    match airlock_sandbox::probe::run(name, args) {
        Ok(o) => {
            writeln!(std::io::stdout(), "{}", o.detail)?;
            Ok(if o.got_through { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("airlock: {e}");
            Ok(2)
        }
    }
}
