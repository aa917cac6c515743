//! Escape probes for `airlock selftest`. Each probe attempts one thing the sandbox must prevent
//! and reports whether it got through. The same probe is run outside the sandbox as a control:
//! a check only counts when the control shows the attempt works where the protection is absent.
//!
//! Audit note: this module's `unsafe` is the escape probes' own (attempts at what the sandbox
//! forbids: raw syscalls, ioctls, SysV shm, forks) and runs only in `airlock __probe` and
//! `airlock selftest`; it lives apart from the production unsafe (`init`, `launch`, `security`,
//! `fork`, ...) so each can be audited alone. No production code calls into this module. A
//! probe forks only through `fork_probe`, which refuses unless the probe process has one
//! thread, and prepares everything a child execs before the fork.

use std::ffi::CString;
use std::io::Read;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::Duration;

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, ForkResult, Pid};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The attempt worked (outside: expected; inside: an escape).
    pub got_through: bool,
    pub detail: String,
}

fn through(detail: impl Into<String>) -> Outcome {
    Outcome {
        got_through: true,
        detail: detail.into(),
    }
}

fn blocked(detail: impl Into<String>) -> Outcome {
    Outcome {
        got_through: false,
        detail: detail.into(),
    }
}

/// Runs probe `name` with `args`. Unknown probes and bad arguments are errors.
pub fn run(name: &str, args: &[String]) -> Result<Outcome, String> {
    let arg = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("probe {name}: missing argument {}", i + 1))
    };
    Ok(match name {
        "read-file" => read_file(arg(0)?, arg(1)?),
        "write-file" => match std::fs::write(arg(0)?, b"airlock selftest\n") {
            Ok(()) => through(format!("wrote {}", arg(0)?)),
            Err(e) => blocked(format!("{}: {e}", arg(0)?)),
        },
        "signal" => {
            let pid: i32 = arg(0)?.parse().map_err(|_| "signal: bad pid".to_string())?;
            match kill(Pid::from_raw(pid), None) {
                Ok(()) => through(format!("pid {pid} can be signalled")),
                Err(e) => blocked(format!("kill({pid}, 0): {e}")),
            }
        }
        "shm" => {
            let key: i32 = arg(0)?.parse().map_err(|_| "shm: bad key".to_string())?;
            // SAFETY: shmget with size 0 and no flags only looks up an existing segment.
            let id = unsafe { libc::shmget(key, 0, 0) };
            if id >= 0 {
                through(format!("found SysV segment {key:#x} (id {id})"))
            } else {
                blocked(format!("shmget({key:#x}): {}", Errno::last()))
            }
        }
        "same-ns" => {
            let kind = arg(0)?;
            let host = arg(1)?;
            match std::fs::read_link(format!("/proc/self/ns/{kind}")) {
                Ok(l) if l.to_string_lossy() == host => {
                    through(format!("{kind} namespace is the host's ({host})"))
                }
                Ok(l) => blocked(format!("own {kind} namespace {}", l.display())),
                Err(e) => blocked(format!("cannot read /proc/self/ns/{kind}: {e}")),
            }
        }
        "hostname" => match nix::unistd::sethostname(arg(0)?) {
            Ok(()) => through("hostname changed"),
            Err(e) => blocked(format!("sethostname: {e}")),
        },
        "userns" => match unshare(CloneFlags::CLONE_NEWUSER) {
            Ok(()) => through("created a user namespace"),
            Err(e) => blocked(format!("unshare(CLONE_NEWUSER): {e}")),
        },
        "mount" => mount_probe(arg(0)?),
        "ptrace" => ptrace_probe(),
        "tiocsti" => tiocsti_probe(),
        "io_uring" => io_uring_probe(),
        "connect" => match std::net::TcpStream::connect_timeout(
            &arg(0)?
                .parse()
                .map_err(|_| "connect: bad address".to_string())?,
            Duration::from_secs(2),
        ) {
            Ok(_) => through(format!("connected to {}", arg(0)?)),
            Err(e) => blocked(format!("connect {}: {e}", arg(0)?)),
        },
        "abstract" => {
            let addr = SocketAddr::from_abstract_name(arg(0)?.as_bytes())
                .map_err(|e| format!("abstract: {e}"))?;
            match UnixStream::connect_addr(&addr) {
                Ok(_) => through(format!("connected to @{}", arg(0)?)),
                Err(e) => blocked(format!("connect @{}: {e}", arg(0)?)),
            }
        }
        "unix" => match UnixStream::connect(arg(0)?) {
            Ok(_) => through(format!("connected to {}", arg(0)?)),
            Err(e) => blocked(format!("connect {}: {e}", arg(0)?)),
        },
        "unix-bound" => unix_bound_probe(arg(0)?, arg(1)?)?,
        "listen" => listen_probe(arg(0)?)?,
        "env" => env_probe(arg(0)?),
        "secret-bytes" => secret_bytes_probe(arg(0)?)?,
        "syscall" => syscall_probe(arg(0)?)?,
        "socket" => socket_probe(arg(0)?)?,
        "daemon" => daemon_probe(arg(0)?),
        "procs" => {
            let n: usize = arg(0)?
                .parse()
                .map_err(|_| "procs: bad count".to_string())?;
            procs_probe(n)
        }
        "memory" => {
            let mb: usize = arg(0)?
                .parse()
                .map_err(|_| "memory: bad size".to_string())?;
            memory_probe(mb)
        }
        "swap-git-link" => swap_git_link_probe(),
        "sleep" => {
            std::thread::sleep(Duration::from_secs(arg(1)?.parse().unwrap_or(30)));
            through("slept")
        }
        other => return Err(format!("unknown probe '{other}'")),
    })
}

/// In a git worktree (the current directory): tries to change what ties it to its repository,
/// or to write the repository behind it, the way an agent would make a later host `git` run its
/// own configuration or lose the user's history: replace `.git` (unlink, overwrite, rename over);
/// rewrite the git directory's `config` or `objects/info/alternates`; and, in the main repository
/// found through those alternates (`M/objects`), create a file in its object store, a ref, a
/// hook, or rewrite a worktree admin entry's `commondir`. Gets through if any of them succeeds.
fn swap_git_link_probe() -> Outcome {
    let link = match std::fs::read_to_string(".git") {
        Ok(l) => l,
        Err(e) => return blocked(format!("cannot read .git: {e}")),
    };
    let Some(gitdir) = link
        .strip_prefix("gitdir: ")
        .map(|a| std::path::PathBuf::from(a.trim_end()))
    else {
        return blocked(format!(".git is not a worktree link: {link:?}"));
    };
    let alternates = gitdir.join("objects/info/alternates");
    let main_objects = std::fs::read_to_string(&alternates)
        .ok()
        .and_then(|a| a.lines().next().map(std::path::PathBuf::from));
    let mut tried = Vec::new();
    let decoy = std::path::Path::new(".git-airlock-probe");
    type Attempt = (String, Box<dyn Fn() -> std::io::Result<()>>);
    let mut attempts: Vec<Attempt> = vec![
        (
            "overwrite .git".into(),
            Box::new(|| std::fs::write(".git", "gitdir: /tmp/x\n")),
        ),
        (
            "rename over .git".into(),
            Box::new(move || {
                std::fs::write(decoy, "gitdir: /tmp/x\n")?;
                let r = std::fs::rename(decoy, ".git");
                let _ = std::fs::remove_file(decoy);
                r
            }),
        ),
        (
            "unlink .git".into(),
            Box::new(|| std::fs::remove_file(".git")),
        ),
    ];
    let config = gitdir.join("config");
    attempts.push((
        format!("rewrite {}", config.display()),
        Box::new(move || {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&config)
                .and_then(|mut f| std::io::Write::write_all(&mut f, b"[core]\n\tfsmonitor = x\n"))
        }),
    ));
    let alt = alternates.clone();
    attempts.push((
        format!("rewrite {}", alternates.display()),
        Box::new(move || std::fs::write(&alt, "/tmp\n")),
    ));
    if let Some(objects) = main_objects {
        let main = objects.parent().map(std::path::Path::to_path_buf);
        let obj = objects.join("airlock-probe");
        attempts.push((
            format!("create {}", obj.display()),
            Box::new(move || std::fs::write(&obj, "x")),
        ));
        if let Some(main) = main {
            for rel in ["refs/heads/airlock-probe", "hooks/airlock-probe"] {
                let p = main.join(rel);
                attempts.push((
                    format!("create {}", p.display()),
                    Box::new(move || std::fs::write(&p, "x")),
                ));
            }
            let wts = main.join("worktrees");
            attempts.push((
                format!("rewrite a commondir under {}", wts.display()),
                Box::new(move || {
                    for e in std::fs::read_dir(&wts)?.flatten() {
                        std::fs::write(e.path().join("commondir"), "/tmp/x\n")?;
                    }
                    Ok(())
                }),
            ));
        }
    } else {
        tried.push(format!("no main repository in {}", alternates.display()));
    }
    for (what, attempt) in &attempts {
        match attempt() {
            Ok(()) => return through(format!("{what}: succeeded")),
            Err(e) => tried.push(format!("{what}: {e}")),
        }
    }
    blocked(tried.join("; "))
}

/// Reaches the host unix socket at `path` (in a directory bound into the sandbox) with a socket
/// of `kind`: stream or seqpacket connect, dgram sends a datagram.
fn unix_bound_probe(path: &str, kind: &str) -> Result<Outcome, String> {
    use nix::sys::socket::{connect, sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    let ty = match kind {
        "stream" => SockType::Stream,
        "seqpacket" => SockType::SeqPacket,
        "dgram" => SockType::Datagram,
        other => return Err(format!("unix-bound: unknown socket kind '{other}'")),
    };
    let addr = nix::sys::socket::UnixAddr::new(path)
        .map_err(|e| format!("unix-bound: bad path {path}: {e}"))?;
    let sock = match socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None) {
        Ok(s) => s,
        Err(e) => return Ok(blocked(format!("socket(AF_UNIX, {kind}): {e}"))),
    };
    Ok(if ty == SockType::Datagram {
        match sendto(
            sock.as_raw_fd(),
            b"airlock selftest\n",
            &addr,
            MsgFlags::empty(),
        ) {
            Ok(_) => through(format!("sent a datagram to {path}")),
            Err(e) => blocked(format!("sendto {path}: {e}")),
        }
    } else {
        match connect(sock.as_raw_fd(), &addr) {
            Ok(()) => through(format!("connected ({kind}) to {path}")),
            Err(e) => blocked(format!("connect ({kind}) {path}: {e}")),
        }
    })
}

/// Files the `secret-bytes` probe reads at most, and their size limit: enough for the home,
/// /tmp, /run and /etc/ssl of a sandbox, bounded so toolchains bound into the home do not make
/// it crawl.
const SECRET_SCAN_FILES: usize = 20_000;
const SECRET_SCAN_MAX_BYTES: u64 = 4 << 20;

/// Looks for the bytes whose hex spelling is `hex` (a fragment of a credential's secret; hex so
/// the probe's own command line does not hold them) wherever a process can read: its own
/// environment, every visible process's environ and cmdline, the TLS trust bundle, and the
/// files under the home, /tmp, /run and /etc/ssl. Found anywhere: got through.
fn secret_bytes_probe(hex: &str) -> Result<Outcome, String> {
    let needle = decode_hex(hex).ok_or_else(|| format!("secret-bytes: '{hex}' is not hex"))?;
    if needle.len() < 8 {
        return Err("secret-bytes: the fragment must be at least 8 bytes".into());
    }
    let has = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle.as_slice());
    for (k, v) in std::env::vars_os() {
        if has(v.as_encoded_bytes()) {
            return Ok(through(format!(
                "in the environment variable {}",
                k.to_string_lossy()
            )));
        }
    }
    let mut places: Vec<std::path::PathBuf> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                places.push(e.path().join("environ"));
                places.push(e.path().join("cmdline"));
            }
        }
    }
    for var in ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"] {
        if let Some(p) = std::env::var_os(var) {
            places.push(p.into());
        }
    }
    let mut roots: Vec<std::path::PathBuf> = vec!["/tmp".into(), "/run".into(), "/etc/ssl".into()];
    if let Some(h) = std::env::var_os("HOME") {
        roots.push(h.into());
    }
    let mut stack = roots;
    let mut files = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && files < SECRET_SCAN_FILES {
                files += 1;
                places.push(e.path());
            }
        }
    }
    let mut searched = 0usize;
    for p in &places {
        let small = std::fs::metadata(p)
            .map(|m| m.len() <= SECRET_SCAN_MAX_BYTES)
            .unwrap_or(false);
        // /proc files report size 0; read them whatever their size says.
        if !small && !p.starts_with("/proc") {
            continue;
        }
        if let Ok(bytes) = std::fs::read(p) {
            searched += 1;
            if has(&bytes) {
                return Ok(through(format!("in {}", p.display())));
            }
        }
    }
    Ok(blocked(format!(
        "not in the environment nor in {searched} readable files (/proc/*/environ, \
         /proc/*/cmdline, the trust bundle, home, /tmp, /run, /etc/ssl)"
    )))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn read_file(path: &str, expect: &str) -> Outcome {
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let mut s = String::new();
            let _ = f.read_to_string(&mut s);
            if s.contains(expect) {
                through(format!("read the secret in {path}"))
            } else {
                blocked(format!("{path} is readable but does not hold the secret"))
            }
        }
        Err(e) => blocked(format!("{path}: {e}")),
    }
}

fn mount_probe(dir: &str) -> Outcome {
    // Outside, an unprivileged user gets mount rights in a new user+mount namespace; inside, both
    // the namespace and the mount must fail.
    let _ = std::fs::create_dir_all(dir);
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let mut how = "directly";
    if unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).is_ok() {
        let _ = std::fs::write("/proc/self/setgroups", "deny");
        let _ = std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"));
        let _ = std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"));
        how = "in a new user namespace";
    }
    match nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    ) {
        Ok(()) => through(format!("mounted tmpfs on {dir} {how}")),
        Err(e) => blocked(format!("mount tmpfs on {dir} {how}: {e}")),
    }
}

/// fork(2) for a probe: refused with `EDEADLK` unless this process has exactly one thread (or
/// its thread count cannot be read), so a child may run ordinary code after the fork.
fn fork_probe() -> Result<ForkResult, Errno> {
    match crate::fork::thread_count() {
        Ok(1) => {}
        _ => return Err(Errno::EDEADLK),
    }
    // SAFETY: the process has one thread (checked just above, and a probe starts none), so the
    // child inherits no lock held by another thread.
    unsafe { fork() }
}

fn ptrace_probe() -> Outcome {
    match fork_probe() {
        Ok(ForkResult::Child) => {
            std::thread::sleep(Duration::from_secs(5));
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            let r = nix::sys::ptrace::attach(child);
            let _ = kill(child, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            match r {
                Ok(()) => through("attached to a process with ptrace"),
                Err(e) => blocked(format!("ptrace(PTRACE_ATTACH): {e}")),
            }
        }
        Err(e) => blocked(format!("fork: {e}")),
    }
}

fn tiocsti_probe() -> Outcome {
    use nix::fcntl::OFlag;
    use std::os::fd::AsRawFd;
    // TIOCSTI works on one's controlling terminal: a child makes a new pty its terminal (new
    // session, open without O_NOCTTY) and tries to inject a byte into it.
    let master = match nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY) {
        Ok(m) => m,
        Err(e) => return blocked(format!("posix_openpt: {e}")),
    };
    let _ = nix::pty::grantpt(&master);
    let _ = nix::pty::unlockpt(&master);
    let Ok(name) = nix::pty::ptsname_r(&master) else {
        return blocked("ptsname failed");
    };
    match fork_probe() {
        Ok(ForkResult::Child) => {
            let code = (|| {
                nix::unistd::setsid().map_err(|e| e as i32)?;
                let slave = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&name)
                    .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
                let c: libc::c_char = b'x' as libc::c_char;
                // SAFETY: TIOCSTI reads one byte from the pointer, which points at `c`.
                let rc = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSTI, &c) };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(Errno::last() as i32)
                }
            })();
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(code.err().unwrap_or(0)) }
        }
        Ok(ForkResult::Parent { child }) => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => {
                through("injected a byte into its terminal with TIOCSTI")
            }
            Ok(nix::sys::wait::WaitStatus::Exited(_, e)) => {
                let legacy =
                    std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").unwrap_or_default();
                blocked(format!(
                    "ioctl(TIOCSTI): {} (dev.tty.legacy_tiocsti={})",
                    Errno::from_raw(e),
                    legacy.trim()
                ))
            }
            other => blocked(format!("probe child ended with {other:?}")),
        },
        Err(e) => blocked(format!("fork: {e}")),
    }
}

fn io_uring_probe() -> Outcome {
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup writes at most sizeof(struct io_uring_params) = 120 bytes into
    // `params`, which is that large and writable.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: `fd` was just returned to us and is closed once.
        unsafe { libc::close(i32::try_from(fd).unwrap_or(-1)) };
        through("created an io_uring instance")
    } else {
        let e = Errno::last();
        let sysctl =
            std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap_or_default();
        blocked(format!(
            "io_uring_setup: {e} (kernel.io_uring_disabled={})",
            sysctl.trim()
        ))
    }
}

fn env_probe(token: &str) -> Outcome {
    if std::env::vars_os()
        .any(|(k, v)| k.to_string_lossy().contains(token) || v.to_string_lossy().contains(token))
    {
        return through("the secret is in the environment");
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let p = e.path().join("environ");
            if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(token.len()).any(|w| w == token.as_bytes()) {
                    return through(format!("the secret is in {}", p.display()));
                }
            }
        }
    }
    blocked("the secret is in no environment visible here")
}

/// Calls `name` with arguments the kernel rejects cheaply; "got through" means the call reached
/// the kernel's implementation (any result but EPERM, which is what the filter returns).
fn syscall_probe(name: &str) -> Result<Outcome, String> {
    let null = std::ptr::null::<u8>();
    // SAFETY: every call below passes null pointers or invalid values the kernel validates
    // before touching memory; none of them can modify this process's memory.
    let (rc, errno) = unsafe {
        let rc = match name {
            "bpf" => libc::syscall(libc::SYS_bpf, -1, null, 0),
            "perf_event_open" => libc::syscall(libc::SYS_perf_event_open, null, 0, -1, -1, 0),
            "keyctl" => libc::syscall(
                libc::SYS_keyctl,
                0,  /* GET_KEYRING_ID */
                -3, /* session */
                0,
            ),
            "userfaultfd" => libc::syscall(
                libc::SYS_userfaultfd,
                1 /* UFFD_USER_MODE_ONLY */ | libc::O_CLOEXEC,
            ),
            "kexec_load" => libc::syscall(libc::SYS_kexec_load, 0, 0, null, 0xdead_0000u64),
            "init_module" => libc::syscall(libc::SYS_init_module, null, 0, null),
            "open_by_handle_at" => {
                libc::syscall(libc::SYS_open_by_handle_at, libc::AT_FDCWD, null, 0)
            }
            "setns" => libc::syscall(libc::SYS_setns, -1, 0),
            other => return Err(format!("unknown syscall probe '{other}'")),
        };
        (rc, Errno::last())
    };
    if rc >= 0 {
        if name == "userfaultfd" {
            // SAFETY: closing the userfaultfd descriptor we were just given.
            unsafe { libc::close(i32::try_from(rc).unwrap_or(-1)) };
        }
        return Ok(through(format!("{name} succeeded")));
    }
    Ok(if errno == Errno::EPERM {
        blocked(format!("{name}: EPERM"))
    } else {
        through(format!("{name} reached the kernel ({errno})"))
    })
}

fn socket_probe(family: &str) -> Result<Outcome, String> {
    let (domain, ty, proto) = match family {
        "packet" => (libc::AF_PACKET, libc::SOCK_RAW, 0),
        "netlink-audit" => (libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_AUDIT),
        "vsock" => (libc::AF_VSOCK, libc::SOCK_STREAM, 0),
        "udp-out" => return Ok(udp_probe()),
        "icmp" => (libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
        "raw-inet" => (libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
        other => return Err(format!("unknown socket probe '{other}'")),
    };
    // Outside, a new user and network namespace grants the capabilities these families need, so
    // the control shows what an unfiltered process could do; inside, unshare itself is refused.
    if family != "icmp" {
        let _ = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET);
    }
    // SAFETY: socket() takes integers only; the returned descriptor is closed below.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd >= 0 {
        // SAFETY: closing the descriptor we just created.
        unsafe { libc::close(fd) };
        return Ok(through(format!("opened a {family} socket")));
    }
    let e = Errno::last();
    Ok(if e == Errno::EPERM || e == Errno::EACCES {
        blocked(format!("socket({family}): {e}"))
    } else {
        // Not supported by the kernel at all: nothing to escape through, but not our doing.
        blocked(format!(
            "socket({family}): {e} (not available on this kernel)"
        ))
    })
}

/// Tries to listen on TCP `port` (the supervisor's channel for the gate inside the sandbox) on
/// loopback and on every address, plainly, with `SO_REUSEADDR` and with `SO_REUSEPORT`: a
/// process that listens there in the supervisor's place could answer the gate hook. Gets
/// through if any of them listens.
fn listen_probe(port: &str) -> Result<Outcome, String> {
    use nix::sys::socket::{
        bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
        SockaddrIn,
    };
    let port: u16 = port.parse().map_err(|_| "listen: bad port".to_string())?;
    let mut refused = Vec::new();
    for addr in [
        std::net::Ipv4Addr::LOCALHOST,
        std::net::Ipv4Addr::UNSPECIFIED,
    ] {
        for opt in ["plain", "SO_REUSEADDR", "SO_REUSEPORT"] {
            let fd = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map_err(|e| format!("listen: socket: {e}"))?;
            let _ = match opt {
                "SO_REUSEADDR" => setsockopt(&fd, sockopt::ReuseAddr, &true),
                "SO_REUSEPORT" => setsockopt(&fd, sockopt::ReusePort, &true),
                _ => Ok(()),
            };
            let sa = SockaddrIn::from(std::net::SocketAddrV4::new(addr, port));
            match bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &sa)
                .and_then(|()| listen(&fd, Backlog::new(1).unwrap_or(Backlog::MAXCONN)))
            {
                Ok(()) => return Ok(through(format!("listening on {addr}:{port} ({opt})"))),
                Err(e) => refused.push(format!("{addr} {opt}: {e}")),
            }
        }
    }
    Ok(blocked(format!(
        "port {port} refused: {}",
        refused.join("; ")
    )))
}

fn udp_probe() -> Outcome {
    // connect() on a UDP socket only asks the kernel for a route; no packet is ever sent. The
    // address is TEST-NET-1 (documentation range): "got through" means the kernel has a route
    // off this machine's loopback.
    match std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect("192.0.2.1:9")) {
        Ok(()) => through("a UDP socket has a route off-host"),
        Err(e) => blocked(format!("UDP route: {e}")),
    }
}

fn daemon_probe(marker: &str) -> Outcome {
    // A detached grandchild in its own session, the classic way to outlive a supervisor. What
    // it execs is prepared before any fork.
    let exe = CString::new("/proc/self/exe").unwrap_or_default();
    let args = [
        CString::new("airlock-selftest-daemon").unwrap_or_default(),
        CString::new("__probe").unwrap_or_default(),
        CString::new("sleep").unwrap_or_default(),
        CString::new(marker).unwrap_or_default(),
        CString::new("30").unwrap_or_default(),
    ];
    match fork_probe() {
        Ok(ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            if let Ok(ForkResult::Child) = fork_probe() {
                // Detach from the caller's pipes too, as a daemon would.
                if let Ok(null) = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                {
                    let _ = nix::unistd::dup2_stdin(&null);
                    let _ = nix::unistd::dup2_stdout(&null);
                    let _ = nix::unistd::dup2_stderr(&null);
                }
                let _ = nix::unistd::execv(&exe, &args);
            }
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = nix::sys::wait::waitpid(child, None);
            std::thread::sleep(Duration::from_millis(100));
            through("started a detached daemon")
        }
        Err(e) => blocked(format!("fork: {e}")),
    }
}

fn procs_probe(n: usize) -> Outcome {
    let mut children = Vec::new();
    let mut err = None;
    for _ in 0..n {
        match fork_probe() {
            Ok(ForkResult::Child) => {
                std::thread::sleep(Duration::from_secs(3));
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(0) }
            }
            Ok(ForkResult::Parent { child }) => children.push(child),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let made = children.len();
    for c in children {
        let _ = kill(c, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(c, None);
    }
    match err {
        None => through(format!("created {made} processes")),
        Some(e) => blocked(format!("stopped after {made} processes: {e}")),
    }
}

fn memory_probe(mb: usize) -> Outcome {
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(mb << 20).is_err() {
        return blocked(format!("could not allocate {mb} MiB"));
    }
    v.resize(mb << 20, 1);
    // Touch every page so the memory is really used.
    let sum: u64 = v.iter().step_by(4096).map(|b| u64::from(*b)).sum();
    through(format!("allocated and touched {mb} MiB ({sum} pages)"))
}

/// Creates a SysV shared memory segment with `key` on the host (for the shm check's fixture);
/// returns its id.
pub fn create_shm(key: i32) -> Result<i32, String> {
    // SAFETY: shmget takes integers; IPC_CREAT|IPC_EXCL creates a new 4 KiB segment.
    let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    if id < 0 {
        return Err(format!("shmget: {}", Errno::last()));
    }
    Ok(id)
}

/// Removes a SysV shared memory segment created by [`create_shm`].
pub fn remove_shm(id: i32) {
    // SAFETY: IPC_RMID ignores the buffer argument.
    unsafe {
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
    }
}
