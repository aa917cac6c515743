//! The relay of a tunnel the proxy does not inspect any further (a CONNECT that passed its SNI
//! check, or one to a non-TLS port): bytes move socket -> pipe -> socket with splice(2), so they
//! never enter user space. Each direction owns one pipe, drained completely before the next read,
//! so at most one pipe's worth of data ([`PIPE_BYTES`]) is in flight per direction: a peer that
//! stops reading stops the other side being read (the same bound the copying relay's buffers
//! give). Half-close is passed on (EOF one way becomes `shutdown(SHUT_WR)` on the other socket,
//! the other way keeps flowing), and the tunnel ends with `TimedOut` once no byte has moved in
//! either direction for the idle timeout, as [`crate::io::IdleIo`] does for the copying relay.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags};
use nix::sys::socket::Shutdown;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::io::Counters;

/// Capacity asked for each direction's pipe (F_SETPIPE_SZ; the kernel's default, 64 KiB, is kept
/// when the host's `fs.pipe-max-size` or the user's pipe budget refuses it).
pub(crate) const PIPE_BYTES: usize = 256 * 1024;

/// Relays between `client` and `upstream` until both directions have ended (EOF each way), one
/// fails, or nothing has moved for `idle`. `counters` counts the upstream side: `read` is what
/// came from upstream, `written` what went to it.
pub(crate) async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    idle: Duration,
    counters: &Counters,
) -> io::Result<()> {
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || {
        let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(ms, Ordering::Relaxed);
    };
    let up = one_way(client, upstream, &touch, &counters.written);
    let down = one_way(upstream, client, &touch, &counters.read);
    let both = async { tokio::try_join!(up, down).map(|_| ()) };
    let watchdog = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let deadline = start + since + idle;
            if Instant::now() >= deadline {
                return io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("idle for {}s", idle.as_secs_f32()),
                );
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        r = both => r,
        e = watchdog => Err(e),
    }
}

/// One direction: `from` -> pipe -> `to`, then `to`'s write side shut down at `from`'s EOF.
async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    touch: &impl Fn(),
    count: &AtomicU64,
) -> io::Result<()> {
    let (pipe_r, pipe_w) = pipe()?;
    loop {
        let n = from
            .async_io(Interest::READABLE, || {
                splice(from.as_fd(), pipe_w.as_fd(), PIPE_BYTES)
            })
            .await?;
        if n == 0 {
            break;
        }
        touch();
        let mut left = n;
        while left > 0 {
            let sent = to
                .async_io(Interest::WRITABLE, || {
                    splice(pipe_r.as_fd(), to.as_fd(), left)
                })
                .await?;
            if sent == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the peer accepts no more data",
                ));
            }
            left -= sent;
            count.fetch_add(u64::try_from(sent).unwrap_or(u64::MAX), Ordering::Relaxed);
            touch();
        }
    }
    match nix::sys::socket::shutdown(to.as_raw_fd(), Shutdown::Write) {
        Ok(()) | Err(Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A non-blocking pipe, enlarged to [`PIPE_BYTES`] where the host allows it.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let size = i32::try_from(PIPE_BYTES).unwrap_or(i32::MAX);
    let _ = nix::fcntl::fcntl(&w, FcntlArg::F_SETPIPE_SZ(size));
    Ok((r, w))
}

/// One non-blocking splice of up to `len` bytes; `WouldBlock` when the socket side is not ready
/// (the pipe side never blocks: it is drained before the next read).
fn splice(
    from: std::os::fd::BorrowedFd<'_>,
    to: std::os::fd::BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    loop {
        match nix::fcntl::splice(
            from,
            None,
            to,
            None,
            len,
            SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE,
        ) {
            Err(Errno::EINTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests;
