//! Stream wrappers used on both sides of the proxy: byte counting for the audit log and an idle
//! timeout that turns a silent peer (slowloris, a half-closed tunnel nobody finishes) into an
//! error instead of a connection held forever.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes read from and written to one stream.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) read: AtomicU64,
    pub(crate) written: AtomicU64,
}

impl Counters {
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.read.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
        )
    }
}

/// Counts the bytes that pass through `inner`.
#[derive(Debug)]
pub(crate) struct Counted<T> {
    inner: T,
    counters: Arc<Counters>,
}

impl<T> Counted<T> {
    pub(crate) fn new(inner: T, counters: Arc<Counters>) -> Self {
        Counted { inner, counters }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.counters
            .read
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.counters
                .written
                .fetch_add(u64::try_from(*n).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Fails reads and writes with `TimedOut` once nothing has moved in either direction for
/// `idle`. The timer is only re-armed lazily, so busy streams pay nothing per operation.
#[derive(Debug)]
pub(crate) struct IdleIo<T> {
    inner: T,
    idle: Duration,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, idle: Duration) -> Self {
        let now = Instant::now();
        IdleIo {
            inner,
            idle,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    /// The stream inside (the splice relay takes the socket back from hyper's upgrade).
    pub(crate) fn into_inner(self) -> T {
        self.inner
    }

    /// Ready(err) once the stream has been idle too long; otherwise registers the waker.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let deadline = self.last + self.idle;
            if self.sleep.deadline() != deadline {
                self.sleep.as_mut().reset(deadline);
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) if Instant::now() >= self.last + self.idle => {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("idle for {}s", self.idle.as_secs_f32()),
                    ));
                }
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

use std::future::Future as _;

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                self.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn idle_stream_times_out_and_busy_one_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = IdleIo::new(a, Duration::from_millis(150));
        let writer = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                b.write_all(b"x").await.expect("write");
            }
            // Then go silent, keeping the stream open.
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(b);
        });
        let mut buf = [0u8; 1];
        for _ in 0..5 {
            a.read_exact(&mut buf)
                .await
                .expect("busy stream keeps working");
        }
        let start = std::time::Instant::now();
        let err = a
            .read(&mut buf)
            .await
            .expect_err("idle stream must time out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(2));
        writer.abort();
    }

    #[tokio::test]
    async fn counted_counts_both_directions() {
        let (a, mut b) = tokio::io::duplex(64);
        let c = Arc::new(Counters::default());
        let mut a = Counted::new(a, c.clone());
        a.write_all(b"hello").await.expect("write");
        b.write_all(b"abc").await.expect("write");
        let mut buf = [0u8; 3];
        a.read_exact(&mut buf).await.expect("read");
        assert_eq!(c.get(), (3, 5));
    }
}
