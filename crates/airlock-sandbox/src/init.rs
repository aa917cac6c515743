//! The sandbox's init stages, run as `airlock __sandbox-init` with the control channel on fd 3.
//!
//! Stage 1 enters a new user namespace (mapping the invoker's uid and gid), unshares the other
//! namespaces and forks stage 2, then only forwards signals and reports stage 2's status. Stage 2
//! is pid 1 of the new pid namespace: it builds the root, creates the listeners and the pty it
//! hands to the supervisor, locks itself down, starts the command, and reaps. When it exits the
//! kernel kills everything left in the namespace; when the supervisor dies, PDEATHSIG takes
//! stage 1 and then stage 2 down with it.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{
    access, chdir, dup2_stderr, dup2_stdin, dup2_stdout, getgid, getppid, getuid, pipe2,
    sethostname, setsid, AccessFlags, ForkResult, Pid,
};

use crate::fork::{fork_single_threaded, ExecArgs};
use crate::message::{Channel, ExecRequest, FromInit, ToInit};
use crate::spec::SandboxSpec;
use crate::Step;
use crate::{mounts, security, SandboxError, EXIT_CANNOT_EXECUTE, EXIT_FAILURE, EXIT_NOT_FOUND};

/// The descriptor on which the init stage finds its control channel.
pub(crate) const INIT_FD: RawFd = 3;

/// Signals the stages forward to the command.
pub(crate) const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Entry point of `airlock __sandbox-init`. Returns the process exit status.
pub fn init_main() -> i32 {
    // Nothing but our channel may leak into the sandbox: close every other inherited descriptor.
    close_from(INIT_FD + 1);
    if nix::fcntl::fcntl(
        // SAFETY: fd 3 is only borrowed for this check; ownership is taken just below.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(INIT_FD) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .is_err()
    {
        eprintln!("airlock: __sandbox-init is internal to `airlock run` and cannot be run by hand");
        return EXIT_FAILURE;
    }
    // SAFETY: fd 3 was set up by the supervisor as our end of the control channel and nothing else
    // in this process refers to it.
    let mut chan = Some(Channel::from_fd(unsafe { OwnedFd::from_raw_fd(INIT_FD) }));
    let result = stage1(&mut chan);
    outcome(chan.as_ref(), result)
}

/// The exit status for a stage's result; a failure is reported to the supervisor first.
fn outcome(chan: Option<&Channel>, result: Result<i32, SandboxError>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(chan) = chan {
                let _ = chan.send(
                    &FromInit::Failed {
                        step: e.step(),
                        code: e.exit_code(),
                        message: crate::render_chain(&e),
                    },
                    &[],
                );
            }
            e.exit_code()
        }
    }
}

fn close_from(first: RawFd) {
    let first = libc::c_uint::try_from(first).unwrap_or(3);
    // SAFETY: close_range only closes descriptors of this process; nothing here holds any of
    // them (we run before anything else is opened).
    unsafe {
        libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0);
    }
}

fn set_pdeathsig() -> Result<(), SandboxError> {
    // SAFETY: PR_SET_PDEATHSIG takes an integer argument only.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if rc != 0 {
        return Err(SandboxError::sys(
            Step::UserNamespace,
            "cannot set the parent-death signal",
            Errno::last(),
        ));
    }
    Ok(())
}

fn write_file(path: &str, contents: &str) -> Result<(), SandboxError> {
    fs::write(path, contents)
        .map_err(|e| SandboxError::io(Step::UserNamespace, format!("cannot write {path}"), e))
}

fn stage1(slot: &mut Option<Channel>) -> Result<i32, SandboxError> {
    let chan = slot
        .as_ref()
        .ok_or_else(|| SandboxError::Protocol("control channel missing".into()))?;
    let parent = getppid();
    let (place, spec) = match chan.recv::<ToInit>()? {
        Some((ToInit::Spec(spec), _)) => (false, spec),
        Some((ToInit::Place, _)) => match chan.recv::<ToInit>()? {
            Some((ToInit::Spec(spec), _)) => (true, spec),
            _ => return Ok(EXIT_FAILURE),
        },
        _ => return Ok(EXIT_FAILURE),
    };
    let (outer_uid, outer_gid) = (getuid(), getgid());
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| {
        SandboxError::sys(
            Step::UserNamespace,
            "cannot create a user namespace (see `airlock doctor`: unprivileged user namespaces \
             may be disabled on this host)",
            e,
        )
    })?;
    set_pdeathsig()?;
    if getppid() != parent {
        return Ok(EXIT_FAILURE);
    }
    match fs::write("/proc/self/setgroups", "deny") {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(SandboxError::io(
                Step::UserNamespace,
                "cannot write /proc/self/setgroups",
                e,
            ))
        }
    }
    write_file(
        "/proc/self/uid_map",
        &format!("{} {} 1\n", spec.uid, outer_uid),
    )?;
    write_file(
        "/proc/self/gid_map",
        &format!("{} {} 1\n", spec.gid, outer_gid),
    )?;
    let mut namespaces = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWNET;
    // A cgroup namespace is rooted where its creator is: when placement is still under way,
    // stage 2 creates it once it is in the sandbox's cgroup.
    if !place {
        namespaces |= CloneFlags::CLONE_NEWCGROUP;
    }
    unshare(namespaces).map_err(|e| {
        SandboxError::sys(Step::Namespaces, "cannot create the sandbox namespaces", e)
    })?;

    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(*s);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(|e| SandboxError::sys(Step::Supervise, "cannot block signals", e))?;

    // A fresh exec of airlock that started no threads; checked, so the child may allocate.
    match fork_single_threaded(Step::Namespaces, "the sandbox init")? {
        ForkResult::Child => {
            std::process::exit(outcome(Some(chan), stage2(chan, &spec, &mask, place)));
        }
        ForkResult::Parent { child } => {
            // Only stage 2 talks to the supervisor from now on: its death closes the channel.
            drop(slot.take());
            forward_until_exit(child, &mask)
        }
    }
}

/// Waits for `child`, forwarding the signals in `mask`; returns its exit status (128+N for a
/// signal).
fn forward_until_exit(child: Pid, mask: &SigSet) -> Result<i32, SandboxError> {
    loop {
        let sig = match mask.wait() {
            Ok(s) => s,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(SandboxError::sys(Step::Supervise, "sigwait", e)),
        };
        if sig == Signal::SIGCHLD {
            loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == child => return Ok(code),
                    Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => {
                        return Ok(128 + s as i32)
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        } else {
            let _ = kill(child, sig);
        }
    }
}

/// Stage 2. With `place`, the supervisor moves it into the sandbox's cgroup while it builds the
/// root: it reports itself first, and waits for that before it locks itself down (its cgroup
/// namespace, created then, is rooted at the sandbox's cgroup) and starts anything.
fn stage2(
    chan: &Channel,
    spec: &SandboxSpec,
    mask: &SigSet,
    place: bool,
) -> Result<i32, SandboxError> {
    set_pdeathsig()?;
    if place {
        let me = crate::cgroup::pidfd_open(1)?;
        chan.send(&FromInit::Placing, &[me.as_raw_fd()])?;
    }
    mounts::build(spec)?;
    sethostname(&spec.hostname)
        .map_err(|e| SandboxError::sys(Step::Namespaces, "cannot set the hostname", e))?;
    loopback_up()?;
    run_inside(chan, spec, mask, Lockdown::Native, place, None)
}

/// Where pid 1 runs, which decides how its capabilities go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lockdown {
    /// Our own user namespace: pid 1 holds every capability in it and drops them all.
    Native,
    /// A container whose engine already dropped every capability (`--cap-drop ALL`); pid 1
    /// checks that none is left (it could not drop one without CAP_SETPCAP) and refuses to go on
    /// otherwise.
    Container,
}

/// Variables the dynamic loader and libc read at start-up that load code or change what runs
/// (glibc `sysdeps/generic/unsecvars.h`, the list it clears for set-uid programs, and the
/// `MALLOC_*` tunables' environment aliases): sent empty to the container whatever the image
/// sets, since pid 1 runs the host's loader before it can clear anything itself; pid 1 refuses
/// to go on when one of them is set to anything ([`container_init_main`]).
pub const LOADER_ENV: &[&str] = &[
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LD_AUDIT",
    "LD_BIND_NOT",
    "LD_BIND_NOW",
    "LD_DEBUG",
    "LD_DEBUG_OUTPUT",
    "LD_DYNAMIC_WEAK",
    "LD_HWCAP_MASK",
    "LD_LIBRARY_PATH",
    "LD_ORIGIN_PATH",
    "LD_PREFER_MAP_32BIT_EXEC",
    "LD_PRELOAD",
    "LD_PROFILE",
    "LD_SHOW_AUXV",
    "LD_USE_LOAD_BIAS",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_ARENA_MAX",
    "MALLOC_ARENA_TEST",
    "MALLOC_CHECK_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_PERTURB_",
    "MALLOC_TOP_PAD_",
    "MALLOC_TRACE",
    "MALLOC_TRIM_THRESHOLD_",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "RUST_BACKTRACE",
    "RUST_LOG",
    "RUST_MIN_STACK",
    "TMPDIR",
    "TZ",
    "TZDIR",
];

/// Entry point of `airlock __container-init SOCKET`: pid 1 of a container started by the
/// container backend. Connects to the supervisor's control socket (bind-mounted into the
/// container), receives the spec with the supervisor's stdin, stdout and stderr, and from then on
/// behaves as native stage 2 does once the root is built (the engine built it): it creates the
/// listeners and the pty in the container's own network namespace and hands them out, locks
/// itself down, starts the command and reaps. Returns the process exit status.
///
/// With `relay` (a runtime whose sockets cannot leave its own kernel: gVisor) the network
/// listeners are not handed out: a relay process keeps them and forwards their connections to
/// the supervisor's unix sockets next to `socket` (`crate::relay`).
pub fn container_init_main(socket: &Path, relay: bool) -> i32 {
    close_from(3);
    // The container backend sends these empty; anything else means the engine merged in an
    // image's value, which the loader has already acted on: stop before touching anything.
    for (k, v) in std::env::vars_os() {
        if !v.is_empty() && k.to_str().is_some_and(|k| LOADER_ENV.contains(&k)) {
            eprintln!(
                "airlock: __container-init: the container's environment sets {} (the image's \
                 ENV?), which the loader acts on before airlock runs; refusing to start",
                k.to_string_lossy()
            );
            return EXIT_FAILURE;
        }
    }
    let chan = match Channel::connect(socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("airlock: __container-init: {}", crate::render_chain(&e));
            return EXIT_FAILURE;
        }
    };
    let relay_dir = relay.then(|| socket.parent().unwrap_or(Path::new("/")));
    let result = container_stage(&chan, relay_dir);
    outcome(Some(&chan), result)
}

fn container_stage(chan: &Channel, relay: Option<&Path>) -> Result<i32, SandboxError> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(*s);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(|e| SandboxError::sys(Step::Supervise, "cannot block signals", e))?;
    let Some((ToInit::Spec(spec), stdio)) = chan.recv::<ToInit>()? else {
        return Ok(EXIT_FAILURE);
    };
    // The supervisor's own stdin, stdout and stderr: the command gets them as it would natively.
    if stdio.len() == 3 {
        let set = [dup2_stdin, dup2_stdout, dup2_stderr];
        for (fd, dup) in stdio.iter().zip(set) {
            dup(fd).map_err(|e| {
                SandboxError::sys(Step::Terminal, "cannot take over the supervisor's stdio", e)
            })?;
        }
    }
    drop(stdio);
    // The engine placed the container in its cgroup before pid 1 started.
    run_inside(chan, &spec, &mask, Lockdown::Container, false, relay)
}

/// Stage 2 once the root is built: pty and listeners handed out, rlimits, lockdown (after the
/// supervisor confirmed the cgroup placement, with `place`), the command started, then pid 1's
/// loop. Returns the command's status. With `relay` (the directory of the supervisor's relay
/// sockets) the listeners go to a relay process instead of the supervisor.
fn run_inside(
    chan: &Channel,
    spec: &SandboxSpec,
    mask: &SigSet,
    lockdown: Lockdown,
    place: bool,
    relay: Option<&Path>,
) -> Result<i32, SandboxError> {
    let mut handed: Vec<OwnedFd> = Vec::new();
    let mut tty_slave: Option<OwnedFd> = None;
    let mut inside: Option<crate::relay::Inside> = None;
    if let Some(tty) = spec.tty {
        let (master, slave) = open_pty(tty.rows, tty.cols)?;
        handed.push(master);
        tty_slave = Some(slave);
    }
    if let Some(net) = spec.net {
        // Handed out, the listeners keep 127.0.0.1 and the host kernel keeps anything else off
        // their ports. A relay's stay in gVisor's netstack, which lets any two sockets that
        // both set SO_REUSEADDR share a port, listening or not (Linux refuses a listening one):
        // there they are made without it, on the wildcard address (only loopback exists:
        // network=none), so that nothing else binds their ports on any address.
        let host = if relay.is_some() {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };
        let proxy = tcp_listener(host, net.proxy_port, relay.is_none()).map_err(|e| {
            SandboxError::io(
                Step::Network,
                format!("cannot listen on {host}:{} for the proxy", net.proxy_port),
                e,
            )
        })?;
        let dns_udp = UdpSocket::bind((host, net.dns_port)).map_err(|e| {
            SandboxError::io(
                Step::Network,
                format!("cannot bind {host}:{} for DNS", net.dns_port),
                e,
            )
        })?;
        let dns_tcp = tcp_listener(host, net.dns_port, relay.is_none()).map_err(|e| {
            SandboxError::io(
                Step::Network,
                format!("cannot listen on {host}:{} for DNS", net.dns_port),
                e,
            )
        })?;
        let audit = match net.audit_port {
            Some(port) => Some(audit_listener(host, port, relay.is_none())?),
            None => None,
        };
        if relay.is_some() {
            inside = Some(crate::relay::Inside {
                proxy,
                dns_udp,
                dns_tcp,
                audit,
            });
        } else {
            handed.push(proxy.into());
            handed.push(dns_udp.into());
            handed.push(dns_tcp.into());
            handed.extend(audit.map(OwnedFd::from));
        }
    }
    apply_rlimits(spec)?;
    // A relaying pid 1 runs on gVisor, whose kernel has neither Landlock nor user notifications.
    let unix = if relay.is_some() {
        security::UnixSockets::Runtime
    } else {
        security::UnixSockets::for_this_kernel()
    };
    // Opened inside the sandbox's network namespace, where unix diag lists only its sockets.
    let diag = match unix {
        security::UnixSockets::Gate => Some(crate::unix_gate::diag_socket()?),
        security::UnixSockets::Landlock | security::UnixSockets::Runtime => None,
    };

    if place {
        wait_placed(chan)?;
        unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|e| {
            SandboxError::sys(
                Step::Cgroup,
                "cannot create the sandbox's cgroup namespace",
                e,
            )
        })?;
    }
    match lockdown {
        Lockdown::Native => security::drop_capabilities()?,
        Lockdown::Container => security::ensure_no_capabilities()?,
    }
    security::no_new_privs()?;
    let mut writable = vec![
        PathBuf::from("/tmp"),
        PathBuf::from("/dev"),
        PathBuf::from("/proc"),
        spec.home.clone(),
    ];
    if let Some(ws) = &spec.workspace {
        writable.push(ws.target().clone());
    }
    writable.extend(
        spec.binds
            .iter()
            .filter(|b| b.writable)
            .map(|b| b.target.clone()),
    );
    let landlock = security::landlock(&writable, unix)?;
    // pid 1 holds the control channel: make its /proc entries root-owned so the agent (same
    // uid) cannot open its memory. The command gets its own dumpable flag back on exec.
    // SAFETY: PR_SET_DUMPABLE takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(SandboxError::sys(
            Step::Capabilities,
            "cannot clear the dumpable flag",
            Errno::last(),
        ));
    }
    let gate = security::seccomp(unix)?;
    if let (Some(listener), Some(diag)) = (gate, diag) {
        // Whoever holds the listener decides the sandbox's connects: the supervisor, and only
        // it (both copies here close when this scope ends).
        let private_devs = [
            Path::new("/tmp"),
            spec.home.as_path(),
            Path::new("/dev/shm"),
        ]
        .iter()
        .filter_map(|p| nix::sys::stat::stat(*p).ok())
        .map(|st| {
            let (major, minor) = (
                nix::sys::stat::major(st.st_dev),
                nix::sys::stat::minor(st.st_dev),
            );
            (
                u32::try_from(major).unwrap_or(u32::MAX),
                u32::try_from(minor).unwrap_or(u32::MAX),
            )
        })
        .collect();
        chan.send(
            &FromInit::ConnectGate { private_devs },
            &[listener.as_raw_fd(), diag.as_raw_fd()],
        )?;
    }

    if let (Some(dir), Some(inside)) = (relay, inside.take()) {
        start_relay(dir, inside)?;
    }
    if unix == security::UnixSockets::Runtime {
        // After the relay, which connects to the supervisor's sockets; before the command.
        security::no_unix_sockets()?;
    }
    let raw: Vec<RawFd> = handed.iter().map(|f| f.as_raw_fd()).collect();
    chan.send(
        &FromInit::Ready {
            tty: spec.tty.is_some(),
            // A relay keeps them: none attached.
            net: spec.net.is_some() && relay.is_none(),
            landlock,
        },
        &raw,
    )?;
    // The supervisor owns them now; our copies would keep a dead proxy's port accepting.
    drop(handed);

    chdir(&spec.cwd).map_err(|e| {
        SandboxError::sys(
            Step::Exec,
            format!("cannot enter the working directory {}", spec.cwd.display()),
            e,
        )
    })?;
    if unix == security::UnixSockets::Gate && spec.tty.is_none() {
        refuse_datagram_stdio()?;
    }
    let program = resolve(&spec.argv, &spec.env)?;
    let stdio = match &tty_slave {
        Some(f) => Stdio::Tty(f.as_raw_fd()),
        None => Stdio::Inherit,
    };
    let child = spawn(&spec.argv, &spec.env, &program, stdio)?;
    drop(tty_slave);
    chan.send(&FromInit::Started, &[])?;

    let status = serve(chan, spec, child, mask, lockdown);
    let _ = chan.send(&FromInit::Exited { status }, &[]);
    Ok(status)
}

/// Forks the egress relay ([`crate::relay`]) with the listeners in `inside`, under pid 1's
/// lockdown (capabilities, `no_new_privs`, Landlock, seccomp are inherited). The child keeps
/// nothing else of pid 1's: the control channel, the pty and every other descriptor are closed,
/// stdin and stdout are /dev/null; it dies with pid 1. pid 1 closes its own copies of the
/// listeners, so the relay alone answers on them.
fn start_relay(dir: &Path, inside: crate::relay::Inside) -> Result<(), SandboxError> {
    match crate::fork::fork_single_threaded(Step::Network, "the egress relay")? {
        ForkResult::Parent { .. } => {
            drop(inside);
            Ok(())
        }
        ForkResult::Child => {
            let _ = set_pdeathsig();
            let mut keep = vec![
                inside.proxy.as_raw_fd(),
                inside.dns_udp.as_raw_fd(),
                inside.dns_tcp.as_raw_fd(),
                2,
            ];
            keep.extend(inside.audit.as_ref().map(AsRawFd::as_raw_fd));
            close_all_but(&keep);
            if let Ok(null) = fs::File::open("/dev/null") {
                let _ = dup2_stdin(&null);
                let _ = dup2_stdout(&null);
            }
            std::process::exit(crate::relay::run(dir, inside));
        }
    }
}

/// Closes every descriptor of this process but those in `keep` (listed from /proc/self/fd).
fn close_all_but(keep: &[RawFd]) {
    let Ok(dir) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|fd| !keep.contains(fd))
        .collect();
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

/// The gate's audit channel's listener on 127.0.0.1:`port`. Never SO_REUSEPORT: while the
/// supervisor (or the relay) holds it nothing inside can bind the port, so only the supervisor
/// answers the hook (a held ask's allow).
fn audit_listener(host: &str, port: u16, reuse: bool) -> Result<TcpListener, SandboxError> {
    tcp_listener(host, port, reuse).map_err(|e| {
        SandboxError::io(
            Step::Network,
            format!("cannot listen on {host}:{port} for the gate's audit channel"),
            e,
        )
    })
}

/// A TCP listener on `host:port`, with SO_REUSEADDR as [`TcpListener::bind`] sets it when
/// `reuse`, without it otherwise.
fn tcp_listener(host: &str, port: u16, reuse: bool) -> std::io::Result<TcpListener> {
    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn,
    };
    if reuse {
        return TcpListener::bind((host, port));
    }
    let ip: std::net::Ipv4Addr = host
        .parse()
        .map_err(|_| std::io::Error::other(format!("{host} is not an IPv4 address")))?;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(ip, port)),
    )?;
    listen(&fd, Backlog::MAXCONN)?;
    Ok(TcpListener::from(fd))
}

/// Waits for the supervisor's [`ToInit::Placed`]: until then this process may not be in the
/// sandbox's cgroup, and nothing it forks may run. Anything else fails closed.
fn wait_placed(chan: &Channel) -> Result<(), SandboxError> {
    match chan.recv::<ToInit>()? {
        Some((ToInit::Placed, _)) => Ok(()),
        Some((other, _)) => Err(SandboxError::Protocol(format!(
            "expected the supervisor to confirm the cgroup placement, got {other:?}"
        ))),
        None => Err(SandboxError::Setup(
            "the supervisor went away before placing the sandbox in its cgroup".into(),
        )),
    }
}

/// pid 1's loop once the command runs: reap every orphan, forward signals to the command, start
/// the programs the supervisor asks for ([`ToInit::Exec`]) and report their end; return the
/// command's status when it exits.
///
/// In a container, the supervisor's end of the channel closing means the supervisor is gone
/// (killed): nothing else would end the sandbox (natively the parent-death signal does), so pid 1
/// kills everything inside and exits, which ends the container.
fn serve(chan: &Channel, spec: &SandboxSpec, child: Pid, mask: &SigSet, lockdown: Lockdown) -> i32 {
    let flags = SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK;
    // Without a signalfd we cannot also listen to the channel: keep reaping, refuse execs.
    let Ok(sfd) = SignalFd::with_flags(mask, flags) else {
        return reap(child, mask);
    };
    let mut execs: HashMap<Pid, u64> = HashMap::new();
    let mut chan_open = true;
    loop {
        // SAFETY: the channel's descriptor lives as long as `chan`, which outlives the borrow.
        let chan_fd = unsafe { BorrowedFd::borrow_raw(chan.as_raw_fd()) };
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if chan_open {
            fds.push(PollFd::new(chan_fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return reap(child, mask),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, chan_ready) = (ready(0), chan_open && ready(1));
        drop(fds);
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
                match Signal::try_from(signo) {
                    Ok(Signal::SIGCHLD) => {
                        if let Some(status) = reap_ready(chan, child, &mut execs) {
                            return status;
                        }
                    }
                    Ok(sig) => {
                        let _ = kill(child, sig);
                    }
                    Err(_) => {}
                }
            }
        }
        if chan_ready {
            match chan.recv::<ToInit>() {
                Ok(Some((ToInit::Exec(req), _))) => {
                    if let Some(pid) = start_exec(chan, spec, &req) {
                        execs.insert(pid, req.id);
                    }
                }
                Ok(Some((ToInit::Spec(_) | ToInit::Place | ToInit::Placed, _))) => {}
                Ok(None) | Err(_) if lockdown == Lockdown::Container => {
                    // pid 1 of a pid namespace: -1 reaches every other process in it.
                    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
                    return 128 + Signal::SIGKILL as i32;
                }
                Ok(None) | Err(_) => chan_open = false,
            }
        }
    }
}

/// Reaps every child that has exited; reports the end of exec'd programs. Returns the command's
/// status once it has exited.
fn reap_ready(chan: &Channel, child: Pid, execs: &mut HashMap<Pid, u64>) -> Option<i32> {
    loop {
        let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, s, _)) => (pid, 128 + s as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        };
        if pid == child {
            return Some(status);
        }
        if let Some(id) = execs.remove(&pid) {
            let _ = chan.send(&FromInit::ExecExited { id, status }, &[]);
        }
    }
}

/// Starts one [`ExecRequest`] and answers it on the channel; the pid to watch if it started.
fn start_exec(chan: &Channel, spec: &SandboxSpec, req: &ExecRequest) -> Option<Pid> {
    match exec_inside(spec, req) {
        Ok((pid, master)) => {
            let fds: Vec<RawFd> = master.iter().map(|m| m.as_raw_fd()).collect();
            let sent = chan.send(
                &FromInit::ExecStarted {
                    id: req.id,
                    tty: master.is_some(),
                },
                &fds,
            );
            if sent.is_err() {
                let _ = kill(pid, Signal::SIGKILL);
            }
            // Our copy of the master is dropped here: the supervisor holds the only one.
            Some(pid)
        }
        Err(e) => {
            let _ = chan.send(
                &FromInit::ExecFailed {
                    id: req.id,
                    message: crate::render_chain(&e),
                },
                &[],
            );
            None
        }
    }
}

/// Forks and execs `req` as a child of pid 1: same namespaces, cgroup, uid and lockdown as the
/// command (all inherited from pid 1), a new session, and a new pty made inside when asked.
fn exec_inside(
    spec: &SandboxSpec,
    req: &ExecRequest,
) -> Result<(Pid, Option<OwnedFd>), SandboxError> {
    let mut env = spec.env.clone();
    for (k, v) in &req.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    let program = resolve(&req.argv, &env)?;
    let (master, slave) = match req.tty {
        Some(t) => {
            let (m, s) = open_pty(t.rows, t.cols)?;
            (Some(m), s)
        }
        None => {
            let null = nix::fcntl::open(
                Path::new("/dev/null"),
                OFlag::O_RDWR | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| {
                SandboxError::sys(Step::Terminal, "cannot open /dev/null in the sandbox", e)
            })?;
            (None, null)
        }
    };
    let stdio = if master.is_some() {
        Stdio::Tty(slave.as_raw_fd())
    } else {
        Stdio::Null(slave.as_raw_fd())
    };
    let pid = spawn(&req.argv, &env, &program, stdio)?;
    drop(slave);
    Ok((pid, master))
}

/// Under the connect gate the sandbox may hold no unix datagram socket (it could sendto(2) any
/// host socket by path); the only ones it could get without creating them are the stdin, stdout
/// and stderr airlock was started with.
fn refuse_datagram_stdio() -> Result<(), SandboxError> {
    for (fd, name) in [(0, "stdin"), (1, "stdout"), (2, "stderr")] {
        let opt = |o: libc::c_int| -> Option<libc::c_int> {
            let mut v: libc::c_int = 0;
            let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).ok()?;
            // SAFETY: getsockopt writes at most `len` bytes (one int) into `v`; a descriptor that
            // is not a socket just fails with ENOTSOCK.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    o,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            (rc == 0).then_some(v)
        };
        if opt(libc::SO_DOMAIN) == Some(libc::AF_UNIX)
            && opt(libc::SO_TYPE) == Some(libc::SOCK_DGRAM)
        {
            return Err(SandboxError::Setup(format!(
                "airlock's {name} is a unix datagram socket, which could send to any host socket \
                 from inside the sandbox; run airlock with a pipe, a file or a terminal there"
            )));
        }
    }
    Ok(())
}

/// pid 1's fallback loop (no signalfd): reap every orphan, forward signals to the command,
/// return its status.
fn reap(child: Pid, mask: &SigSet) -> i32 {
    loop {
        let Ok(sig) = mask.wait() else {
            continue;
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => return 128 + s as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

fn loopback_up() -> Result<(), SandboxError> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| SandboxError::sys(Step::Network, "cannot open a socket to configure lo", e))?;
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the interface named in `req` and writes its flags into `req`,
    // which is a valid, writable ifreq for the duration of the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(SandboxError::sys(
            Step::Network,
            "cannot read the flags of lo",
            Errno::last(),
        ));
    }
    // SAFETY: the union field written by SIOCGIFFLAGS is ifru_flags.
    unsafe {
        // IFF_UP | IFF_RUNNING = 0x41 fits a c_short.
        #[allow(clippy::cast_possible_truncation)]
        let up = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        req.ifr_ifru.ifru_flags |= up;
    }
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(SandboxError::sys(
            Step::Network,
            "cannot bring lo up",
            Errno::last(),
        ));
    }
    Ok(())
}

fn open_pty(rows: u16, cols: u16) -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| {
            SandboxError::sys(Step::Terminal, "cannot open /dev/ptmx in the sandbox", e)
        })?;
    nix::pty::grantpt(&master).map_err(|e| SandboxError::sys(Step::Terminal, "grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| SandboxError::sys(Step::Terminal, "unlockpt", e))?;
    let name = nix::pty::ptsname_r(&master)
        .map_err(|e| SandboxError::sys(Step::Terminal, "ptsname", e))?;
    let slave = nix::fcntl::open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| SandboxError::sys(Step::Terminal, format!("cannot open {name}"), e))?;
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    crate::term::set_winsize(slave.as_raw_fd(), &ws);
    // SAFETY: PtyMaster owns a valid descriptor; we take ownership of it as an OwnedFd.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    Ok((master, slave))
}

fn apply_rlimits(spec: &SandboxSpec) -> Result<(), SandboxError> {
    let set = |r: Resource, v: u64, what: &str| {
        setrlimit(r, v, v).map_err(|e| {
            SandboxError::sys(Step::Rlimits, format!("cannot set the {what} limit"), e)
        })
    };
    set(Resource::RLIMIT_CORE, 0, "core dump")?;
    if let Some(n) = spec.rlimits.nproc {
        set(Resource::RLIMIT_NPROC, n, "process")?;
    }
    if let Some(n) = spec.rlimits.data {
        set(Resource::RLIMIT_DATA, n, "memory (data segment)")?;
    }
    if let Some(n) = spec.rlimits.nofile {
        set(Resource::RLIMIT_NOFILE, n, "open file")?;
    }
    Ok(())
}

fn env_value<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Resolves argv[0] like execvp would (with `env`'s PATH), inside the sandbox, to report 127 and
/// 126 precisely.
fn resolve(argv: &[String], env: &[(String, String)]) -> Result<PathBuf, SandboxError> {
    let name = argv
        .first()
        .ok_or_else(|| SandboxError::Setup("no command to run".into()))?;
    let not_found = |detail: String| {
        SandboxError::init(
            Step::Exec,
            EXIT_NOT_FOUND,
            format!("command not found: {name}{detail}"),
        )
    };
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        let path = env_value(env, "PATH").unwrap_or("/usr/local/bin:/usr/bin:/bin");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .collect()
    };
    let mut denied = None;
    for c in &candidates {
        match fs::metadata(c) {
            Ok(m) if m.is_file() => {
                if access(c.as_path(), AccessFlags::X_OK).is_ok() {
                    return Ok(c.clone());
                }
                denied.get_or_insert_with(|| c.clone());
            }
            Ok(_) => {}
            Err(_) => {}
        }
    }
    if let Some(c) = denied {
        return Err(SandboxError::init(
            Step::Exec,
            EXIT_CANNOT_EXECUTE,
            format!("cannot execute {}: permission denied", c.display()),
        ));
    }
    if name.contains('/') {
        Err(not_found(" (no such file inside the sandbox)".into()))
    } else {
        Err(not_found(format!(
            " (searched PATH={} inside the sandbox; bind more directories with \
             [filesystem] read_only)",
            env_value(env, "PATH").unwrap_or("")
        )))
    }
}

/// What a spawned program gets as stdin, stdout and stderr.
#[derive(Debug, Clone, Copy)]
enum Stdio {
    /// pid 1's own (the supervisor's pipes or files).
    Inherit,
    /// A pty slave, which also becomes the controlling terminal.
    Tty(RawFd),
    /// `/dev/null`, opened inside.
    Null(RawFd),
}

/// Forks and execs a program; exec failures come back through a close-on-exec pipe. Everything
/// execve needs is laid out before the fork ([`ExecArgs`]), and the fork is refused unless this
/// process is single-threaded.
fn spawn(
    argv: &[String],
    env: &[(String, String)],
    program: &Path,
    stdio: Stdio,
) -> Result<Pid, SandboxError> {
    let args = ExecArgs::new(program, argv, env)?;
    let (rd, wr) = pipe2(OFlag::O_CLOEXEC).map_err(|e| SandboxError::sys(Step::Exec, "pipe", e))?;
    match fork_single_threaded(Step::Exec, "the command")? {
        ForkResult::Child => {
            drop(rd);
            let errno = exec_child(&args, stdio);
            let bytes = (errno as i32).to_ne_bytes();
            let _ = nix::unistd::write(&wr, &bytes);
            // SAFETY: _exit is always safe; it skips atexit handlers that belong to the parent.
            unsafe { libc::_exit(EXIT_CANNOT_EXECUTE) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut buf = [0u8; 4];
            let mut file = fs::File::from(rd);
            let n = file.read(&mut buf).unwrap_or(0);
            if n == 4 {
                let errno = Errno::from_raw(i32::from_ne_bytes(buf));
                let _ = waitpid(child, None);
                let code = if errno == Errno::ENOENT {
                    EXIT_NOT_FOUND
                } else {
                    EXIT_CANNOT_EXECUTE
                };
                return Err(SandboxError::init(
                    Step::Exec,
                    code,
                    format!("cannot execute {}: {errno}", program.display()),
                ));
            }
            Ok(child)
        }
    }
}

/// In the forked child: new session, terminal, clean signal mask, exec. Returns only on failure.
fn exec_child(args: &ExecArgs, stdio: Stdio) -> Errno {
    if let Err(e) = SigSet::all().thread_unblock() {
        return e;
    }
    if let Err(e) = setsid() {
        return e;
    }
    let fd = match stdio {
        Stdio::Inherit => None,
        Stdio::Tty(fd) => {
            // SAFETY: TIOCSCTTY takes an integer argument; `fd` is our open pty slave.
            if unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) } != 0 {
                return Errno::last();
            }
            Some(fd)
        }
        Stdio::Null(fd) => Some(fd),
    };
    if let Some(fd) = fd {
        // SAFETY: `fd` stays open for the duration of these calls.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        for r in [dup2_stdin(b), dup2_stdout(b), dup2_stderr(b)] {
            if let Err(e) = r {
                return e;
            }
        }
    }
    args.exec()
}
