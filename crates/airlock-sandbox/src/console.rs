//! `airlock attach`'s side of a console hand-over: the supervisor passes the master of a pty
//! created inside the sandbox (where `tmux attach` runs) over the session's control socket
//! (`SCM_RIGHTS`, as OCI runtimes hand over a console), and the user's terminal gets only a byte
//! stream, filtered ([`crate::termfilter`]). No host program ever speaks tmux's protocol with a
//! server the sandbox controls.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::launch::write_all;
use crate::term::{get_winsize, set_winsize, RawMode, Typeahead};
use crate::termfilter::TermFilter;
use crate::SandboxError;
use crate::Step;

/// Largest line accepted with a passed descriptor.
const MAX_LINE: usize = 4096;

/// Sends `line` on a connected unix stream with `fd` attached (`SCM_RIGHTS`).
pub fn send_fd(stream: &UnixStream, line: &[u8], fd: BorrowedFd<'_>) -> Result<(), SandboxError> {
    let iov = [IoSlice::new(line)];
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let sent = loop {
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    }
    .map_err(|e| {
        SandboxError::sys(
            Step::Terminal,
            "cannot pass the terminal over the control socket",
            e,
        )
    })?;
    if sent != line.len() {
        return Err(SandboxError::Protocol(format!(
            "short write on the control socket ({sent} of {} bytes)",
            line.len()
        )));
    }
    Ok(())
}

/// Receives one line (up to its newline, at most 4 KiB) and the descriptor passed with it.
pub fn recv_fd(stream: &UnixStream) -> Result<(Vec<u8>, Option<OwnedFd>), SandboxError> {
    let mut buf = vec![0u8; MAX_LINE];
    let mut cmsg_space = nix::cmsg_space!([RawFd; 2]);
    let (len, mut fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg
                    .cmsgs()
                    .map_err(|e| SandboxError::sys(Step::Terminal, "read passed descriptors", e))?
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
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(SandboxError::sys(
                    Step::Terminal,
                    "receive on the control socket",
                    e,
                ))
            }
        }
    };
    buf.truncate(len);
    // The answer is one line; read the rest of it if the first read was short.
    let mut s = stream;
    while !buf.ends_with(b"\n") && buf.len() < MAX_LINE {
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => buf.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(SandboxError::io(
                    Step::Terminal,
                    "receive on the control socket",
                    e,
                ))
            }
        }
    }
    let fd = if fds.is_empty() {
        None
    } else {
        Some(fds.remove(0))
    };
    Ok((buf, fd))
}

/// Why an attached relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// The program inside ended (detached, or the session ended).
    Ended,
    /// airlock attach was told to stop (SIGTERM, SIGHUP, SIGINT, SIGQUIT) or lost its terminal.
    Interrupted,
}

/// Relays between the user's terminal (stdin/stdout, put in raw mode) and `master`, the pty of
/// a program running inside the sandbox: output through `filter`, input as typed, window size
/// changes forwarded (TIOCSWINSZ). Ends when the pty hangs up, or when `control` (the supervisor's
/// connection) says the program exited or closes.
pub fn relay_attached(
    master: &OwnedFd,
    control: &UnixStream,
    filter: &mut TermFilter,
) -> Result<AttachEnd, SandboxError> {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGWINCH,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| SandboxError::sys(Step::Terminal, "cannot block signals", e))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| SandboxError::sys(Step::Terminal, "cannot create a signalfd", e))?;
    let raw = RawMode::enter(0);
    let mut typeahead = Typeahead::new(raw.as_ref().map_or(0, RawMode::typeahead));
    if let Some(ws) = get_winsize(1).or_else(|| get_winsize(0)) {
        set_winsize(master.as_raw_fd(), &ws);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut stdin_open = true;
    let stdin = std::io::stdin();
    let end = loop {
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(control.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(SandboxError::sys(Step::Terminal, "poll", e)),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig, pty, ctl, input) = (ready(0), ready(1), ready(2), stdin_open && ready(3));
        drop(fds);
        if sig {
            let mut stop = false;
            while let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) {
                    Ok(Signal::SIGWINCH) => {
                        if let Some(ws) = get_winsize(1).or_else(|| get_winsize(0)) {
                            set_winsize(master.as_raw_fd(), &ws);
                        }
                    }
                    Ok(_) => stop = true,
                    Err(_) => {}
                }
            }
            if stop {
                break AttachEnd::Interrupted;
            }
        }
        if pty && !copy_out(master, &mut buf, &mut out, filter)? {
            break AttachEnd::Ended;
        }
        if input {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(k) => {
                    let mut data = buf[..k].to_vec();
                    typeahead.clean(&mut data);
                    if write_all(master, &data).is_err() {
                        break AttachEnd::Ended;
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => break AttachEnd::Interrupted,
            }
        }
        if ctl {
            // The supervisor says the program exited (or has gone): print what is left.
            drain(master, &mut buf, &mut out, filter)?;
            break AttachEnd::Ended;
        }
    };
    out.clear();
    filter.finish(&mut out);
    drop(raw);
    Ok(end)
}

/// Copies one read of the pty through the filter to stdout; `false` once the pty hung up.
fn copy_out(
    master: &OwnedFd,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    filter: &mut TermFilter,
) -> Result<bool, SandboxError> {
    match nix::unistd::read(master, buf) {
        Ok(0) | Err(Errno::EIO) => Ok(false),
        Ok(k) => {
            out.clear();
            filter.filter(&buf[..k], out);
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(out).and_then(|()| stdout.flush()).is_err() {
                return Ok(false);
            }
            Ok(true)
        }
        Err(Errno::EINTR | Errno::EAGAIN) => Ok(true),
        Err(e) => Err(SandboxError::sys(
            Step::Terminal,
            "read from the session's terminal",
            e,
        )),
    }
}

/// Prints what the pty still holds (for up to 200 ms of quiet).
fn drain(
    master: &OwnedFd,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    filter: &mut TermFilter,
) -> Result<(), SandboxError> {
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(SandboxError::sys(Step::Terminal, "poll", e)),
        }
        if !copy_out(master, buf, out, filter)? {
            return Ok(());
        }
    }
}
