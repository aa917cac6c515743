//! Typed messages between the supervisor and the sandbox's init stages, over a
//! `SOCK_SEQPACKET` socketpair (one message per packet, JSON), with file descriptors attached as
//! `SCM_RIGHTS` where a message carries them.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept4, bind, connect, listen, recvmsg, sendmsg, socket, socketpair, AddressFamily, Backlog,
    ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use serde::{Deserialize, Serialize};

use crate::spec::{SandboxSpec, TtySpec};
use crate::SandboxError;
use crate::Step;

/// Largest message accepted (the spec carries the environment and generated files).
pub const MAX_MESSAGE: usize = 4 << 20;

/// Supervisor -> init.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToInit {
    /// Sent before `Spec` by a supervisor that places the sandbox in its cgroup while it is
    /// built: stage 2 then reports itself first ([`FromInit::Placing`]) and starts no process
    /// before [`ToInit::Placed`]. Without it, stage 1 must already be in the cgroup when it
    /// receives `Spec` (every process of the sandbox descends from it).
    Place,
    /// Build this sandbox.
    Spec(Box<SandboxSpec>),
    /// Answer to [`FromInit::Placing`]: stage 2 is in the sandbox's cgroup(s), so what it starts
    /// from now on is too.
    Placed,
    /// Start one more program inside the running sandbox (e.g. `tmux attach` for `airlock
    /// attach`), as a child of pid 1 under exactly the agent's lockdown. Sent only after `Ready`.
    Exec(ExecRequest),
}

/// A program the supervisor asks the sandbox's pid 1 to start inside. It inherits everything pid
/// 1 carries (namespaces, cgroup, uid, dropped capabilities, `no_new_privs`, Landlock, seccomp,
/// rlimits), exactly as the command does; like the command, it runs in a new session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Chosen by the supervisor; the answers carry it back.
    pub id: u64,
    /// Program and arguments; `argv[0]` is resolved against the spec's `PATH` inside.
    pub argv: Vec<String>,
    /// Variables set on top of the spec's environment (e.g. the attaching terminal's `TERM`).
    pub env: Vec<(String, String)>,
    /// `Some`: a new pseudo-terminal is created inside the sandbox, the program gets its slave
    /// as controlling terminal and stdio, and the master is handed out with `ExecStarted`.
    /// `None`: stdio is `/dev/null`.
    pub tty: Option<TtySpec>,
}

/// Init -> supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromInit {
    /// Stage 2's first message after [`ToInit::Place`]. Attached fd: a pidfd of stage 2, which
    /// the supervisor moves into the cgroup(s) before it answers [`ToInit::Placed`].
    Placing,
    /// The sandbox is built. Attached fds, in order: the pty master (if a tty was asked for), then
    /// the proxy listener, the DNS UDP socket and the DNS TCP listener (if network was asked for).
    Ready {
        tty: bool,
        net: bool,
        landlock: String,
    },
    /// Sent just before `Ready` when the sandbox's connect(2) calls go through the supervisor
    /// (the connect gate, [`crate::unix_gate`]). Attached fds, in order: the seccomp notification
    /// listener, and a `NETLINK_SOCK_DIAG` socket in the sandbox's network namespace.
    /// `private_devs` are the (major, minor) devices of the sandbox's own tmpfs mounts (/tmp,
    /// home, /dev/shm), where no host socket can be bound.
    ConnectGate { private_devs: Vec<(u32, u32)> },
    /// The command was executed.
    Started,
    /// Setup failed; `code` is the exit status to report (125, 126, 127), `step` the setup
    /// step that failed (serialised by its stable name), `message` the whole error chain.
    Failed {
        step: Option<Step>,
        code: i32,
        message: String,
    },
    /// The command exited with this status (128+N for signal N).
    Exited { status: i32 },
    /// An [`ExecRequest`] was started. Attached fd: the pty master, if a tty was asked for.
    ExecStarted { id: u64, tty: bool },
    /// An [`ExecRequest`] could not be started (not found, cannot execute, no pty).
    ExecFailed { id: u64, message: String },
    /// A program started by an [`ExecRequest`] exited with this status (128+N for signal N).
    ExecExited { id: u64, status: i32 },
}

/// One end of the control channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair (close-on-exec).
    pub fn pair() -> Result<(Channel, Channel), SandboxError> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| {
            SandboxError::sys(
                Step::ControlChannel,
                "socketpair for the control channel",
                e,
            )
        })?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Connects to a [`ChannelListener`] at `path` (a sandbox's pid 1 started by a container
    /// engine reaches its supervisor this way, through a bind-mounted directory).
    pub fn connect(path: &Path) -> Result<Channel, SandboxError> {
        let what = || format!("cannot connect to the control socket {}", path.display());
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| SandboxError::sys(Step::ControlChannel, what(), e))?;
        let addr =
            UnixAddr::new(path).map_err(|e| SandboxError::sys(Step::ControlChannel, what(), e))?;
        connect(fd.as_raw_fd(), &addr)
            .map_err(|e| SandboxError::sys(Step::ControlChannel, what(), e))?;
        Ok(Channel { fd })
    }

    /// Wraps an inherited descriptor.
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A second handle on the same socket (for sending from another thread while one thread
    /// receives).
    pub fn try_clone(&self) -> Result<Channel, SandboxError> {
        let fd = self.fd.try_clone().map_err(|e| {
            SandboxError::io(
                Step::ControlChannel,
                "cannot duplicate the control channel",
                e,
            )
        })?;
        Ok(Channel { fd })
    }

    /// Sends one message with optional descriptors.
    pub fn send<T: Serialize>(&self, msg: &T, fds: &[RawFd]) -> Result<(), SandboxError> {
        let bytes = serde_json::to_vec(msg)
            .map_err(|e| SandboxError::Protocol(format!("cannot encode message: {e}")))?;
        if bytes.len() > MAX_MESSAGE {
            return Err(SandboxError::Protocol(format!(
                "message of {} bytes exceeds the {MAX_MESSAGE}-byte limit",
                bytes.len()
            )));
        }
        let iov = [IoSlice::new(&bytes)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| SandboxError::sys(Step::ControlChannel, "send on the control channel", e))?;
        Ok(())
    }

    /// The length of the next packet, without taking it (`MSG_PEEK | MSG_TRUNC` on a seqpacket
    /// socket returns the real length, recv(2), Linux 3.4+); 0 when the peer has closed. Blocks
    /// until one arrives.
    fn next_len(&self) -> Result<usize, SandboxError> {
        loop {
            match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => {
                    return r.map_err(|e| {
                        SandboxError::sys(Step::ControlChannel, "peek on the control channel", e)
                    })
                }
            }
        }
    }

    /// Receives one message and its descriptors; `Ok(None)` when the peer has closed.
    pub fn recv<T: for<'de> Deserialize<'de>>(
        &self,
    ) -> Result<Option<(T, Vec<OwnedFd>)>, SandboxError> {
        // Sized to the packet: a zeroed buffer of the largest size for every message costs
        // a megabyte-sized memset and its page faults each time.
        let mut buf = vec![0u8; self.next_len()?.clamp(1, MAX_MESSAGE)];
        let mut cmsg_space = nix::cmsg_space!([RawFd; 8]);
        let (len, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for c in msg
                        .cmsgs()
                        .map_err(|e| SandboxError::sys(Step::ControlChannel, "read fds", e))?
                    {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            for fd in raw {
                                // SAFETY: the kernel just installed `fd` in our table for us
                                // (SCM_RIGHTS); nothing else owns it.
                                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                            }
                        }
                    }
                    break (msg.bytes, fds);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(SandboxError::sys(
                        Step::ControlChannel,
                        "receive on the control channel",
                        e,
                    ))
                }
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..len])
            .map_err(|e| SandboxError::Protocol(format!("malformed message: {e}")))?;
        Ok(Some((msg, fds)))
    }
}

/// A listening control socket on a path, for a sandbox's pid 1 that the supervisor does not fork
/// (a container's): it connects once, and from then on the connection is a [`Channel`] like a
/// socketpair's end. The socket file is removed when the listener is dropped.
#[derive(Debug)]
pub struct ChannelListener {
    fd: OwnedFd,
    path: PathBuf,
}

impl ChannelListener {
    /// Listens on `path` (which must not exist; its directory decides who can connect).
    pub fn bind(path: &Path) -> Result<ChannelListener, SandboxError> {
        let what = || format!("cannot listen on the control socket {}", path.display());
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| SandboxError::sys(Step::ControlChannel, what(), e))?;
        let addr =
            UnixAddr::new(path).map_err(|e| SandboxError::sys(Step::ControlChannel, what(), e))?;
        bind(fd.as_raw_fd(), &addr)
            .map_err(|e| SandboxError::sys(Step::ControlChannel, what(), e))?;
        let listener = ChannelListener {
            fd,
            path: path.to_path_buf(),
        };
        listen(
            &listener.fd,
            Backlog::new(1).map_err(|e| SandboxError::sys(Step::ControlChannel, what(), e))?,
        )
        .map_err(|e| SandboxError::sys(Step::ControlChannel, what(), e))?;
        Ok(listener)
    }

    /// Waits up to `timeout` for one connection, checking `alive` about every 100 ms (a false
    /// answer means the peer can no longer come, and the wait ends with `Ok(None)`).
    pub fn accept(
        &self,
        timeout: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> Result<Option<Channel>, SandboxError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => {
                    if !alive() {
                        return Ok(None);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(SandboxError::sys(
                        Step::ControlChannel,
                        "poll on the control socket",
                        e,
                    ))
                }
            }
            match accept4(self.fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                // SAFETY: accept4 just returned a new descriptor that nothing else owns.
                Ok(fd) => return Ok(Some(Channel::from_fd(unsafe { OwnedFd::from_raw_fd(fd) }))),
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                Err(e) => {
                    return Err(SandboxError::sys(
                        Step::ControlChannel,
                        "accept on the control socket",
                        e,
                    ))
                }
            }
        }
        Ok(None)
    }
}

impl Drop for ChannelListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Blob(String);

    /// Every size arrives whole: the receive buffer follows each packet's length, small after
    /// large and large after small, with descriptors attached; a closed peer reads as `None`.
    #[test]
    fn messages_of_every_size_arrive_whole_and_eof_is_none() {
        let (a, b) = Channel::pair().expect("pair");
        let sizes = [1usize, 150_000, 10, 100_000, 0, 65_536];
        for (i, n) in sizes.iter().enumerate() {
            let msg = Blob("x".repeat(*n));
            let file = std::fs::File::open("/proc/self/status").expect("open");
            let fds = if i % 2 == 0 {
                vec![file.as_raw_fd()]
            } else {
                vec![]
            };
            let sender = {
                let a = a.try_clone().expect("clone");
                std::thread::spawn(move || a.send(&msg, &fds).map(|()| file))
            };
            let (got, fds) = b.recv::<Blob>().expect("recv").expect("a message");
            sender.join().expect("thread").expect("send");
            assert_eq!(got.0.len(), *n);
            assert_eq!(fds.len(), usize::from(i % 2 == 0));
        }
        drop(a);
        assert!(b.recv::<Blob>().expect("recv").is_none());
    }
}
