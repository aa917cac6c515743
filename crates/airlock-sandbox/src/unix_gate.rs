//! The connect gate: keeps the sandbox off unix sockets it did not create (DESIGN.md guarantee 3)
//! on kernels whose Landlock cannot (below ABI 9, see `crate::security::LANDLOCK_RESOLVE_UNIX_ABI`).
//!
//! Read-only binds do not govern connect(2): every socket under a bound tree (a daemon's socket in
//! `/opt`, the nix daemon, a dev server in a bind-mode workspace) is a peer. seccomp cannot read
//! the address connect(2) is given, and letting the kernel continue after a check of a copy is
//! racy by design (another thread rewrites the address or swaps a symlink between the check and
//! the kernel's own read; seccomp_unotify(2) says SECCOMP_USER_NOTIF_FLAG_CONTINUE must not be
//! used for security decisions). So the sandbox's connect(2) calls raise a seccomp user
//! notification and the supervisor makes each connect itself, on the caller's own socket:
//!
//! 1. receive the notification; read the address ONCE from the caller's memory
//!    (process_vm_readv), then check with `SECCOMP_IOCTL_NOTIF_ID_VALID` that the caller is still
//!    the same blocked task (so the pid named the right process while it was read);
//! 2. take the caller's socket with pidfd_getfd(2): the duplicate shares the open file, so the
//!    socket's network namespace (the sandbox's), its flags and its timeouts are the caller's;
//! 3. for IPv4, IPv6, netlink, abstract and unnamed unix addresses: connect the duplicate to the
//!    copy; they resolve in the socket's own namespace, where only the sandbox lives;
//! 4. for a pathname: resolve it as the caller would (its root and working directory, taken from
//!    `/proc/TID/root` and `/proc/TID/cwd`; `openat2` with `RESOLVE_IN_ROOT` and
//!    `RESOLVE_NO_MAGICLINKS`) to an `O_PATH` descriptor, and allow it only if that inode is a
//!    socket bound inside the sandbox: its (device, inode) is among those the sandbox's own unix
//!    sockets are bound to, as `NETLINK_SOCK_DIAG` reports them (unix diag lists one network
//!    namespace: the diag socket was created by init inside the sandbox's). Then connect to
//!    `/proc/self/fd/N` of that very descriptor, so what was checked is what is connected;
//! 5. answer with the connect's result (0 or its errno, EINPROGRESS for a non-blocking socket).
//!
//! Refusals are EACCES, the errno Landlock's own unix-socket right gives, and are reported (the
//! supervisor writes a rate-limited audit event naming the path). Any failure of the gate itself
//! refuses; if the supervisor dies, the listener closes and every connect fails with ENOSYS.
//! A connect on a blocking socket runs on a worker thread (reused), so a peer with a full backlog
//! cannot stall the others. Cost: one round trip to the supervisor per connect(2) (tens of
//! microseconds), plus a diag dump of the sandbox's unix sockets for a pathname.
//!
//! Known limits: the connect is made with the supervisor's credentials, so file permissions of a
//! socket the sandbox bound itself are not re-checked (it owns both ends anyway); unix diag
//! reports 32-bit inode numbers, so an inode whose number does not fit is refused, and where a
//! filesystem records birth times a socket file older than the session is refused whatever its
//! number (the residual: a host socket created during the session on a shared filesystem whose
//! inode numbers exceed 32 bits, aliasing one the sandbox bound).

use std::collections::HashSet;
use std::ffi::CString;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

use crate::SandboxError;
use crate::Step;

/// Connects on blocking sockets in flight at once (worker threads); past it a connect gets EAGAIN.
const MAX_IN_FLIGHT: usize = 256;
/// sizeof(struct sockaddr_storage): the kernel refuses longer addresses with EINVAL.
const MAX_ADDR: usize = 128;
/// linux/sock_diag.h
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// linux/unix_diag.h
const UDIAG_SHOW_VFS: u32 = 0x2;
const UNIX_DIAG_VFS: u16 = 1;
/// AF_UNIX (linux/socket.h) as it sits in `sa_family_t` and `sdiag_family`.
const AF_UNIX: u16 = 1;
/// linux/pidfd.h: a pidfd for a thread rather than a thread group (Linux 6.9).
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// A connect the gate refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixRefusal {
    /// Host pid (thread id) of the caller.
    pub pid: u32,
    /// The socket path as the caller gave it.
    pub path: String,
    /// Why it was refused.
    pub reason: String,
}

/// The running gate: one thread serving the notification listener.
#[derive(Debug)]
pub(crate) struct Gate {
    stop: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gate {
    /// Serves `listener` (the seccomp notification listener of the sandbox's connect filter) with
    /// `diag` (a `NETLINK_SOCK_DIAG` socket in the sandbox's network namespace). Refusals are sent
    /// to `refusals` when given. `private_devs` (major, minor) are the sandbox's own tmpfs
    /// mounts: a socket file there that nothing in the sandbox has bound is a stale one of its
    /// own, answered ECONNREFUSED as the kernel would (tmux, for one, then starts a new server).
    pub(crate) fn start(
        listener: OwnedFd,
        diag: OwnedFd,
        private_devs: Vec<(u32, u32)>,
        refusals: Option<Sender<UnixRefusal>>,
    ) -> Result<Gate, SandboxError> {
        // SAFETY: eventfd takes integers only and returns a new descriptor or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(SandboxError::sys(
                Step::Seccomp,
                "cannot create the connect gate's stop event",
                Errno::last(),
            ));
        }
        // SAFETY: `raw` was just returned to us and is owned by nothing else.
        let stop = unsafe { OwnedFd::from_raw_fd(raw) };
        let stop_fd = stop.try_clone().map_err(|e| {
            SandboxError::io(
                Step::Seccomp,
                "cannot duplicate the connect gate's stop event",
                e,
            )
        })?;
        let state = Served {
            listener: Arc::new(listener),
            diag,
            refusals,
            workers: Workers::new(),
            seq: 0,
            started: unix_now(),
            private_devs,
        };
        let thread = std::thread::Builder::new()
            .name("airlock-connect-gate".into())
            .spawn(move || state.serve(&stop_fd))
            .map_err(|e| {
                SandboxError::io(Step::Seccomp, "cannot start the connect gate thread", e)
            })?;
        Ok(Gate {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one` to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Served {
    listener: Arc<OwnedFd>,
    diag: OwnedFd,
    refusals: Option<Sender<UnixRefusal>>,
    workers: Workers,
    seq: u32,
    /// When the gate started (seconds since the epoch), before the command could bind anything.
    started: i64,
    /// (major, minor) of the sandbox's own tmpfs mounts.
    private_devs: Vec<(u32, u32)>,
}

/// A connect for a worker: what to connect, and the notification to answer.
type Job = (Prepared, u64);

/// The threads that make connects on blocking sockets, so that one that waits (a peer with a
/// full backlog) never stalls the notification loop. Reused, and grown on demand up to
/// [`MAX_IN_FLIGHT`]; they end when the gate does (the job queue closes).
struct Workers {
    jobs: std::sync::mpsc::Sender<Job>,
    queue: Arc<Mutex<std::sync::mpsc::Receiver<Job>>>,
    /// Workers waiting for a job, none of them promised to a job already sent.
    idle: Arc<AtomicUsize>,
    total: usize,
}

impl Workers {
    fn new() -> Workers {
        let (jobs, queue) = std::sync::mpsc::channel();
        Workers {
            jobs,
            queue: Arc::new(Mutex::new(queue)),
            idle: Arc::new(AtomicUsize::new(0)),
            total: 0,
        }
    }

    /// Hands `job` to an idle worker, or a new one; gives it back when there is none to be had.
    fn dispatch(&mut self, listener: &Arc<OwnedFd>, job: Job) -> Result<(), Job> {
        let reserved = self
            .idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !reserved {
            if self.total >= MAX_IN_FLIGHT {
                return Err(job);
            }
            let (listener, queue, idle) = (listener.clone(), self.queue.clone(), self.idle.clone());
            let spawned = std::thread::Builder::new()
                .name("airlock-connect".into())
                .spawn(move || loop {
                    let next = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    let Ok((prepared, id)) = next else {
                        return;
                    };
                    reply(listener.as_raw_fd(), id, prepared.connect());
                    drop(prepared);
                    idle.fetch_add(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                return Err(job);
            }
            self.total += 1;
        }
        self.jobs.send(job).map_err(|e| e.0)
    }
}

/// One connect(2) waiting for an answer.
struct Request {
    id: u64,
    pid: u32,
    fd: i32,
    addr: u64,
    len: u64,
}

/// Where a connect goes, from the address the caller gave.
#[derive(Debug, PartialEq, Eq)]
enum Dest {
    /// Resolved in the socket's own network namespace (IP, netlink, abstract or unnamed unix,
    /// or an address the kernel will refuse).
    Direct,
    /// A pathname unix socket: the path bytes before the first NUL.
    UnixPath(Vec<u8>),
}

fn classify(addr: &[u8]) -> Dest {
    let Some(family) = addr.get(..2) else {
        return Dest::Direct;
    };
    if u16::from_ne_bytes([family[0], family[1]]) != AF_UNIX {
        return Dest::Direct;
    }
    let path = &addr[2..];
    match path.first() {
        None | Some(0) => Dest::Direct,
        Some(_) => {
            let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
            Dest::UnixPath(path[..end].to_vec())
        }
    }
}

impl Served {
    /// The notification loop. Returns when the sandbox has gone (the listener hangs up), when
    /// the gate is stopped, or on an error of the listener; dropping the listener then makes
    /// every later connect fail (ENOSYS): fail closed.
    fn serve(mut self, stop: &OwnedFd) {
        loop {
            let mut fds = [
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("connect gate: poll: {e}; refusing connects from now on");
                    return;
                }
            }
            let ev = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
            if !ev(1).is_empty() {
                return;
            }
            let l = ev(0);
            if l.contains(PollFlags::POLLIN) {
                match recv(self.listener.as_raw_fd()) {
                    Ok(Some(req)) => self.handle(req),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(
                            "connect gate: receive: {e}; refusing connects from now on"
                        );
                        return;
                    }
                }
            } else if l.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                return;
            }
        }
    }

    fn handle(&mut self, req: Request) {
        let listener = self.listener.as_raw_fd();
        let prepared = match self.prepare(&req) {
            Ok(p) => p,
            Err(Answer::Errno(e)) => return reply(listener, req.id, Err(e)),
            Err(Answer::Refused { path, reason }) => {
                if let Some(tx) = &self.refusals {
                    let _ = tx.send(UnixRefusal {
                        pid: req.pid,
                        path,
                        reason,
                    });
                }
                return reply(listener, req.id, Err(Errno::EACCES));
            }
        };
        let blocking = nix::fcntl::fcntl(&prepared.sock, nix::fcntl::FcntlArg::F_GETFL)
            .map(|f| f & libc::O_NONBLOCK == 0)
            .unwrap_or(true);
        if !blocking {
            let r = prepared.connect();
            return reply(listener, req.id, r);
        }
        if let Err((_, id)) = self.workers.dispatch(&self.listener, (prepared, req.id)) {
            reply(listener, id, Err(Errno::EAGAIN));
        }
    }

    /// Everything up to the connect itself: the address read once, the caller's socket, and for
    /// a pathname the checked `O_PATH` descriptor.
    fn prepare(&mut self, req: &Request) -> Result<Prepared, Answer> {
        // connect(2)'s addrlen is an int: negative or past sockaddr_storage is EINVAL.
        let len = match usize::try_from(req.len & 0xffff_ffff) {
            Ok(l) if l <= MAX_ADDR => l,
            _ => return Err(Answer::Errno(Errno::EINVAL)),
        };
        // Every failure below is answered (a refusal): an unanswered notification would leave
        // the caller blocked for good, and an answer to a caller that has gone is dropped.
        let pidfd = pidfd_open(req.pid).map_err(|e| refused_by_gate("pidfd_open", e))?;
        let addr = read_addr(req.pid, req.addr, len)?;
        let dest = classify(&addr);
        let fs = match &dest {
            Dest::UnixPath(_) => {
                Some(CallerFs::open(req.pid).map_err(|e| refused_by_gate("open its root", e))?)
            }
            Dest::Direct => None,
        };
        // The pid named the caller while we read its memory and opened its root: it is still
        // blocked in this very notification.
        if !id_valid(self.listener.as_raw_fd(), req.id) {
            return Err(Answer::Errno(Errno::EACCES));
        }
        let sock = pidfd_getfd(&pidfd, req.fd).map_err(Answer::Errno)?;
        let target = match (dest, fs) {
            (Dest::UnixPath(path), Some(fs)) => Target::Path(self.check_path(&fs, &path)?),
            _ => Target::Addr(addr),
        };
        Ok(Prepared { sock, target })
    }

    /// Resolves `path` as the caller would and returns it only if it is a socket bound inside
    /// the sandbox.
    fn check_path(&mut self, fs: &CallerFs, path: &[u8]) -> Result<OwnedFd, Answer> {
        let shown = String::from_utf8_lossy(path).into_owned();
        let refuse = |reason: String| Answer::Refused {
            path: shown.clone(),
            reason,
        };
        let file = fs.resolve(path).map_err(|e| match e {
            // A magic link (/proc/self/fd/N, /proc/PID/root) would be resolved by the
            // supervisor, not the caller: never followed.
            Errno::ELOOP => refuse("the path goes through a /proc magic link or a loop".into()),
            // /proc/self and /dev/fd name the supervisor there, which the sandbox's /proc
            // does not know.
            Errno::ENOENT if through_proc(path) => {
                refuse("paths through /proc/self and /dev/fd are not followed".into())
            }
            e => Answer::Errno(e),
        })?;
        let st = statx_fd(&file).map_err(Answer::Errno)?;
        if st.stx_mode as u32 & libc::S_IFMT != libc::S_IFSOCK {
            // What the kernel says for a path that is not a socket.
            return Err(Answer::Errno(Errno::ECONNREFUSED));
        }
        let inside = self
            .bound_inside()
            .map_err(|e| refuse(format!("cannot list the sandbox's own sockets ({e})")))?;
        let dev = encode_dev(st.stx_dev_major, st.stx_dev_minor);
        match u32::try_from(st.stx_ino) {
            // A second witness where the filesystem records birth times: a socket file older
            // than the session is not the sandbox's, whatever its inode number says (unix diag
            // gives only 32 bits of it, see the module doc). Two seconds of slack for clocks.
            Ok(_)
                if st.stx_mask & libc::STATX_BTIME != 0
                    && st.stx_btime.tv_sec < self.started - 2 =>
            {
                Err(refuse("the socket file is older than the session".into()))
            }
            Ok(ino) if inside.contains(&(dev, ino)) => Ok(file),
            // Only the sandbox writes there: a socket file nobody has bound, as the kernel says.
            _ if self
                .private_devs
                .contains(&(st.stx_dev_major, st.stx_dev_minor)) =>
            {
                Err(Answer::Errno(Errno::ECONNREFUSED))
            }
            Ok(_) => Err(refuse(
                "the socket was not created inside the sandbox".into(),
            )),
            Err(_) => Err(refuse(
                "the socket's inode number does not fit the 32 bits unix diag reports".into(),
            )),
        }
    }

    /// (device, inode) of every socket bound to a path in the sandbox's network namespace.
    fn bound_inside(&mut self) -> Result<HashSet<(u32, u32)>, Errno> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = Vec::with_capacity(40);
        req.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
        req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let flags = u16::try_from(libc::NLM_F_REQUEST | libc::NLM_F_DUMP).unwrap_or(0x301);
        req.extend_from_slice(&flags.to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
                                                    // struct unix_diag_req
        req.push(1); // sdiag_family: AF_UNIX
        req.push(0); // protocol
        req.extend_from_slice(&0u16.to_ne_bytes()); // pad
        req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
        req.extend_from_slice(&0u32.to_ne_bytes()); // any socket inode
        req.extend_from_slice(&UDIAG_SHOW_VFS.to_ne_bytes());
        req.extend_from_slice(&[0u8; 8]); // cookie
        nix::sys::socket::send(
            self.diag.as_raw_fd(),
            &req,
            nix::sys::socket::MsgFlags::empty(),
        )?;
        let mut out = HashSet::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = nix::sys::socket::recv(
                self.diag.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::empty(),
            )?;
            if n == 0 {
                return Err(Errno::EPROTO);
            }
            match parse_diag(&buf[..n], seq, &mut out)? {
                true => return Ok(out),
                false => continue,
            }
        }
    }
}

/// Parses one datagram of a unix diag dump into `out`; true once the dump is complete.
fn parse_diag(mut data: &[u8], seq: u32, out: &mut HashSet<(u32, u32)>) -> Result<bool, Errno> {
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        b.get(i..i + 4)
            .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    let u16_at = |b: &[u8], i: usize| -> Option<u16> {
        b.get(i..i + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]))
    };
    while data.len() >= 16 {
        let len = u32_at(data, 0).map_or(0, |l| l as usize);
        if len < 16 || len > data.len() {
            return Err(Errno::EPROTO);
        }
        let ty = u16_at(data, 4).unwrap_or(0);
        let msg_seq = u32_at(data, 8).unwrap_or(0);
        let msg = &data[..len];
        data = data.get((len + 3) & !3..).unwrap_or(&[]);
        if msg_seq != seq {
            continue; // a leftover of an earlier, abandoned dump
        }
        match i32::from(ty) {
            libc::NLMSG_DONE => return Ok(true),
            libc::NLMSG_ERROR => {
                let code = u32_at(msg, 16).map_or(0, |c| c as i32);
                return Err(if code < 0 {
                    Errno::from_raw(-code)
                } else {
                    Errno::EPROTO
                });
            }
            _ if ty == SOCK_DIAG_BY_FAMILY => {
                // struct unix_diag_msg (16 bytes), then attributes.
                let mut attrs = msg.get(32..).unwrap_or(&[]);
                while attrs.len() >= 4 {
                    let alen = usize::from(u16_at(attrs, 0).unwrap_or(0));
                    let aty = u16_at(attrs, 2).unwrap_or(0);
                    if alen < 4 || alen > attrs.len() {
                        break;
                    }
                    if aty == UNIX_DIAG_VFS {
                        if let (Some(ino), Some(dev)) = (u32_at(attrs, 4), u32_at(attrs, 8)) {
                            out.insert((dev, ino));
                        }
                    }
                    attrs = attrs.get((alen + 3) & !3..).unwrap_or(&[]);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether `path` starts in /proc or /dev/fd (descriptor links, resolved per process).
fn through_proc(path: &[u8]) -> bool {
    [
        &b"/proc/"[..],
        b"/dev/fd/",
        b"/dev/stdin",
        b"/dev/stdout",
        b"/dev/stderr",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// The kernel's internal dev_t (MKDEV of include/linux/kdev_t.h: 12 bits of major above 20 of
/// minor): unix diag reports `d_sb->s_dev` as is, not in the userspace encoding stat(2) uses.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xf_ffff)
}

/// The gate could not look at the caller (it has gone, or the host forbids the supervisor to
/// read it, e.g. Yama ptrace_scope 3): refuse, and say so in the log.
fn refused_by_gate(step: &str, e: Errno) -> Answer {
    if e != Errno::ESRCH {
        tracing::warn!("connect gate: {step} failed ({e}); the connect is refused");
    }
    Answer::Errno(Errno::EACCES)
}

/// Why a request is answered without a connect.
enum Answer {
    /// Fail the connect with this errno.
    Errno(Errno),
    /// A socket outside the sandbox: EACCES, and reported.
    Refused { path: String, reason: String },
}

enum Target {
    Addr(Vec<u8>),
    Path(OwnedFd),
}

/// A connect ready to be made: the caller's socket and where it goes.
struct Prepared {
    sock: OwnedFd,
    target: Target,
}

impl Prepared {
    fn connect(&self) -> Result<(), Errno> {
        match &self.target {
            Target::Addr(addr) => {
                // SAFETY: all-zero is a valid sockaddr_storage.
                let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                let n = addr
                    .len()
                    .min(std::mem::size_of::<libc::sockaddr_storage>());
                // SAFETY: `ss` is at least `n` bytes long and does not overlap `addr`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        addr.as_ptr(),
                        (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                        n,
                    )
                };
                let len = libc::socklen_t::try_from(n).unwrap_or(0);
                // SAFETY: `ss` holds `len` initialised bytes of address; the socket is ours.
                let rc = unsafe {
                    libc::connect(
                        self.sock.as_raw_fd(),
                        (&ss as *const libc::sockaddr_storage).cast(),
                        len,
                    )
                };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(Errno::last())
                }
            }
            Target::Path(file) => {
                let via = format!("/proc/self/fd/{}", file.as_raw_fd());
                let addr = nix::sys::socket::UnixAddr::new(via.as_str())?;
                nix::sys::socket::connect(self.sock.as_raw_fd(), &addr)
            }
        }
    }
}

fn recv(listener: RawFd) -> Result<Option<Request>, Errno> {
    // SAFETY: all-zero is a valid seccomp_notif, and the kernel requires it zeroed.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: NOTIF_RECV writes one struct seccomp_notif into `n`, which is that large.
    let rc = unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) };
    if rc != 0 {
        return match Errno::last() {
            // The caller was killed before we got to it, or a signal interrupted the wait.
            Errno::ENOENT | Errno::EINTR => Ok(None),
            e => Err(e),
        };
    }
    if i64::from(n.data.nr) != libc::SYS_connect {
        // Not ours to make: refuse whatever it is.
        reply(listener, n.id, Err(Errno::ENOSYS));
        return Ok(None);
    }
    Ok(Some(Request {
        id: n.id,
        pid: n.pid,
        // connect(2) takes the descriptor as an int: its low 32 bits.
        fd: (n.data.args[0] & 0xffff_ffff) as u32 as i32,
        addr: n.data.args[1],
        len: n.data.args[2],
    }))
}

fn reply(listener: RawFd, id: u64, result: Result<(), Errno>) {
    // SAFETY: all-zero is a valid seccomp_notif_resp.
    let mut r: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    r.id = id;
    r.error = match result {
        Ok(()) => 0,
        Err(e) => -(e as i32),
    };
    // SAFETY: NOTIF_SEND reads one struct seccomp_notif_resp from `r`. A failure (ENOENT: the
    // caller was killed meanwhile) leaves nothing to do.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut r) };
}

fn id_valid(listener: RawFd, id: u64) -> bool {
    // SAFETY: NOTIF_ID_VALID reads one u64 from the pointer.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 }
}

fn pidfd_open(tid: u32) -> Result<OwnedFd, Errno> {
    // A thread's own pidfd (PIDFD_THREAD, Linux 6.9); before that, one of its thread group,
    // whose descriptor table the thread shares (a thread with a table of its own then gets
    // EBADF or another socket of the same sandbox, never anything else).
    match raw_pidfd_open(tid, PIDFD_THREAD) {
        Err(Errno::EINVAL) => {}
        other => return other,
    }
    let status =
        std::fs::read_to_string(format!("/proc/{tid}/status")).map_err(|_| Errno::ESRCH)?;
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or(Errno::ESRCH)?;
    raw_pidfd_open(tgid, 0)
}

fn raw_pidfd_open(pid: u32, flags: libc::c_uint) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just gave us `fd`.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_getfd takes integers and returns a new descriptor (close-on-exec) or -1.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if got < 0 {
        return Err(Errno::last());
    }
    let got = i32::try_from(got).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just gave us `got`.
    Ok(unsafe { OwnedFd::from_raw_fd(got) })
}

fn read_addr(pid: u32, addr: u64, len: usize) -> Result<Vec<u8>, Answer> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    let base = usize::try_from(addr).map_err(|_| Answer::Errno(Errno::EFAULT))?;
    let pid = Pid::from_raw(i32::try_from(pid).map_err(|_| Answer::Errno(Errno::EACCES))?);
    let n = process_vm_readv(
        pid,
        &mut [IoSliceMut::new(&mut buf)],
        &[RemoteIoVec { base, len }],
    )
    .map_err(|e| match e {
        Errno::ESRCH | Errno::EPERM => refused_by_gate("process_vm_readv", e),
        _ => Answer::Errno(Errno::EFAULT),
    })?;
    if n != len {
        return Err(Answer::Errno(Errno::EFAULT));
    }
    Ok(buf)
}

/// The caller's root and working directory, opened through /proc.
struct CallerFs {
    root: OwnedFd,
    cwd: OwnedFd,
    /// The working directory as a path inside the caller's root, when it can be confirmed.
    cwd_path: Option<PathBuf>,
}

impl CallerFs {
    fn open(tid: u32) -> Result<CallerFs, Errno> {
        let dir = |what: &str| -> Result<OwnedFd, Errno> {
            nix::fcntl::open(
                format!("/proc/{tid}/{what}").as_str(),
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
        };
        let root = dir("root")?;
        let cwd = dir("cwd")?;
        let cwd_path = std::fs::read_link(format!("/proc/{tid}/cwd"))
            .ok()
            .filter(|p| p.is_absolute())
            .filter(|p| same_dir(&root, p, &cwd));
        Ok(CallerFs {
            root,
            cwd,
            cwd_path,
        })
    }

    /// Opens `path` (`O_PATH`) as the caller's connect would resolve it: absolute paths and
    /// absolute symlinks from its root, relative ones from its working directory, `..` never
    /// above its root, magic links refused (ELOOP).
    fn resolve(&self, path: &[u8]) -> Result<OwnedFd, Errno> {
        let p = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path));
        if p.is_absolute() {
            return openat2(
                &self.root,
                p,
                libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
            );
        }
        match &self.cwd_path {
            Some(cwd) => openat2(
                &self.root,
                &cwd.join(p),
                libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
            ),
            // The working directory has no path inside the root (removed, or moved meanwhile):
            // resolve beneath it, which handles plain relative names.
            None => openat2(
                &self.cwd,
                p,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
            ),
        }
    }
}

/// Whether `path`, resolved in `root`, is the directory `dir`.
fn same_dir(root: &OwnedFd, path: &Path, dir: &OwnedFd) -> bool {
    let Ok(opened) = openat2(
        root,
        path,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    ) else {
        return false;
    };
    match (statx_fd(&opened), statx_fd(dir)) {
        (Ok(a), Ok(b)) => {
            (a.stx_dev_major, a.stx_dev_minor, a.stx_ino, a.stx_mnt_id)
                == (b.stx_dev_major, b.stx_dev_minor, b.stx_ino, b.stx_mnt_id)
        }
        _ => false,
    }
}

fn openat2(dir: &OwnedFd, path: &Path, resolve: u64) -> Result<OwnedFd, Errno> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: all-zero is a valid open_how (no flags, no mode, no resolve restrictions).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: `c` is a NUL-terminated path and `how` a valid open_how of the size passed;
        // openat2 returns a new descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
            // SAFETY: the kernel just gave us `fd`.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        match Errno::last() {
            // RESOLVE_IN_ROOT retries when a rename raced the lookup.
            Errno::EAGAIN | Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

fn statx_fd(fd: &OwnedFd) -> Result<libc::statx, Errno> {
    // SAFETY: all-zero is a valid statx buffer.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let empty = c"";
    // SAFETY: `empty` is a NUL-terminated string; statx writes one struct statx into `st`.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_SYNC_AS_STAT,
            libc::STATX_TYPE | libc::STATX_INO | libc::STATX_MNT_ID | libc::STATX_BTIME,
            &mut st,
        )
    };
    if rc != 0 {
        return Err(Errno::last());
    }
    Ok(st)
}

/// Opens the sandbox's end of the gate inside the sandbox's network namespace: the diag socket
/// the supervisor lists the sandbox's own unix sockets with.
pub(crate) fn diag_socket() -> Result<OwnedFd, SandboxError> {
    // SAFETY: socket() takes integers only and returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(SandboxError::sys(
            Step::Seccomp,
            "cannot open a NETLINK_SOCK_DIAG socket for the connect gate",
            Errno::last(),
        ));
    }
    // SAFETY: the kernel just gave us `fd`.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sun(path: &[u8]) -> Vec<u8> {
        let mut v = (AF_UNIX).to_ne_bytes().to_vec();
        v.extend_from_slice(path);
        v
    }

    #[test]
    fn classifies_addresses() {
        assert_eq!(
            classify(&sun(b"/a/b\0junk")),
            Dest::UnixPath(b"/a/b".to_vec())
        );
        assert_eq!(classify(&sun(b"rel")), Dest::UnixPath(b"rel".to_vec()));
        assert_eq!(classify(&sun(b"\0abstract")), Dest::Direct);
        assert_eq!(classify(&sun(b"")), Dest::Direct);
        assert_eq!(classify(&[1]), Dest::Direct);
        let mut inet = 2u16.to_ne_bytes().to_vec();
        inet.extend_from_slice(b"/not/a/path");
        assert_eq!(classify(&inet), Dest::Direct);
    }

    #[test]
    fn encodes_devices_like_the_kernel() {
        // /dev/vda (254:0) as unix diag reported it on a 6.18 kernel.
        assert_eq!(encode_dev(254, 0), 0x0fe0_0000);
        assert_eq!(encode_dev(0, 0x41), 0x41);
    }

    #[test]
    fn parses_a_diag_dump() {
        let mut msg = Vec::new();
        let attr_vfs = {
            let mut a = 12u16.to_ne_bytes().to_vec();
            a.extend_from_slice(&UNIX_DIAG_VFS.to_ne_bytes());
            a.extend_from_slice(&77u32.to_ne_bytes());
            a.extend_from_slice(&0x801u32.to_ne_bytes());
            a
        };
        let len = 16 + 16 + attr_vfs.len();
        msg.extend_from_slice(&u32::try_from(len).expect("len").to_ne_bytes());
        msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&5u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[0u8; 16]);
        msg.extend_from_slice(&attr_vfs);
        let mut done = Vec::new();
        done.extend_from_slice(&20u32.to_ne_bytes());
        done.extend_from_slice(&3u16.to_ne_bytes());
        done.extend_from_slice(&0u16.to_ne_bytes());
        done.extend_from_slice(&5u32.to_ne_bytes());
        done.extend_from_slice(&[0u8; 8]);
        let mut out = HashSet::new();
        assert!(!parse_diag(&msg, 5, &mut out).expect("parse"));
        assert!(out.contains(&(0x801, 77)));
        assert!(parse_diag(&done, 5, &mut out).expect("done"));
        // A message of another dump is ignored.
        let mut other = HashSet::new();
        assert!(!parse_diag(&msg, 6, &mut other).expect("parse"));
        assert!(other.is_empty());
    }
}
