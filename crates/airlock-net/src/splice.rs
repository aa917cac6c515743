//! The relay of a tunnel the proxy does not inspect any further (a CONNECT that passed its SNI
//! check, or one to a non-TLS port): bytes move socket -> pipe -> socket with splice(2), so they
//! never enter user space. Each direction owns one pipe, drained completely before the next read,
//! so at most one pipe's worth of data is in flight per direction: a peer that stops reading
//! stops the other side being read (the same bound the copying relay's buffers give). A pipe
//! starts at the kernel's default size (64 KiB) and grows, up to [`PIPE_BYTES_MAX`], each time
//! one splice fills it: a bulk transfer then moves up to 1 MiB per wake-up and pair of system
//! calls, while the many small tunnels of ordinary use keep small pipes. Half-close is passed on
//! (EOF one way becomes `shutdown(SHUT_WR)` on the other socket, the other way keeps flowing),
//! and the tunnel ends with `TimedOut` once no byte has moved in either direction for the idle
//! timeout, as [`crate::io::IdleIo`] does for the copying relay. Any splice error ends the
//! tunnel: there is no fallback.

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

/// The largest capacity a direction's pipe grows to (F_SETPIPE_SZ, fcntl(2)): the default
/// `fs.pipe-max-size`. Where the host's `fs.pipe-max-size` or the user's pipe budget
/// (`fs.pipe-user-pages-soft`, pipe(7)) refuses a size, the pipe keeps the one it has.
pub(crate) const PIPE_BYTES_MAX: usize = 1 << 20;

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
    let mut pipe = Pipe::new()?;
    loop {
        let want = pipe.capacity;
        let n = from
            .async_io(Interest::READABLE, || {
                splice(from.as_fd(), pipe.w.as_fd(), want)
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
                    splice(pipe.r.as_fd(), to.as_fd(), left)
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
        if n >= want {
            pipe.grow();
        }
    }
    match nix::sys::socket::shutdown(to.as_raw_fd(), Shutdown::Write) {
        Ok(()) | Err(Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One direction's non-blocking pipe and the bytes it holds at most.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// A pipe of the kernel's default capacity (F_GETPIPE_SZ tells which).
    fn new() -> io::Result<Pipe> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let got = nix::fcntl::fcntl(&w, FcntlArg::F_GETPIPE_SZ)?;
        let capacity = usize::try_from(got).unwrap_or(0).max(4096);
        Ok(Pipe { r, w, capacity })
    }

    /// Quadruples the capacity, up to [`PIPE_BYTES_MAX`]; called with the pipe empty, after a
    /// splice filled it. A refusal (the host's limits) keeps the current capacity.
    fn grow(&mut self) {
        if self.capacity >= PIPE_BYTES_MAX {
            return;
        }
        let next = (self.capacity * 4).min(PIPE_BYTES_MAX);
        let ask = i32::try_from(next).unwrap_or(i32::MAX);
        if let Ok(got) = nix::fcntl::fcntl(&self.w, FcntlArg::F_SETPIPE_SZ(ask)) {
            self.capacity = usize::try_from(got).unwrap_or(self.capacity);
        }
    }
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
