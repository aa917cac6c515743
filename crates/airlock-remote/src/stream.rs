//! An exec's standard output as it arrives ([`ExecStream`]), so a consumer (the import of a
//! box's change layer, a log copied to a file) holds one chunk at a time rather than the whole
//! output: what a box sends is chosen by the agent (its change layer) or by whatever controls
//! the box, and must not decide how much of the local side's memory it takes (red-team X1,
//! DESIGN.md guarantee 6).
//!
//! An engine makes the pair with [`channel`]: its task sends the output's chunks on the
//! [`ExecSink`] (waiting while the consumer is behind: at most [`CHUNKS_IN_FLIGHT`] chunks are
//! queued) and, once the program has ended, its exit status and standard error with
//! [`ExecSink::end`]. Dropping the [`ExecStream`] before its end aborts the exec: the engine's
//! next send fails, and it drops its connection to the box.

use std::io::Read;

use tokio::sync::{mpsc, oneshot};

use crate::RemoteError;

/// Chunks queued between an engine's task and the consumer; with the engines' chunks (tens of
/// KiB, a Podman frame or a websocket message) a few MiB at most.
pub const CHUNKS_IN_FLIGHT: usize = 16;

/// Bytes of a chunk the consumer gets at most (a larger one an engine sends is split), so
/// the queue's bound is one of bytes too.
pub const MAX_CHUNK: usize = 256 << 10;

/// Bytes of an exec's standard error kept (the rest is dropped, and the kept part says so).
pub const MAX_STDERR: usize = 64 << 10;

/// How an exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEnd {
    /// The program's exit status.
    pub status: i32,
    /// Its standard error, at most [`MAX_STDERR`] bytes.
    pub stderr: Vec<u8>,
}

/// The engine's end of an [`ExecStream`].
#[derive(Debug)]
pub struct ExecSink {
    chunks: mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    end: Option<oneshot::Sender<Result<ExecEnd, RemoteError>>>,
    stderr: Vec<u8>,
    stderr_dropped: bool,
}

/// Makes an exec's stream and the sink its engine fills.
pub fn channel() -> (ExecSink, ExecStream) {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let (end_tx, end_rx) = oneshot::channel();
    (
        ExecSink {
            chunks: tx,
            end: Some(end_tx),
            stderr: Vec::new(),
            stderr_dropped: false,
        },
        ExecStream {
            chunks: Some(rx),
            current: bytes::Bytes::new(),
            end: end_rx,
            ended: false,
        },
    )
}

impl ExecSink {
    /// Passes a chunk of standard output on, waiting while the consumer is behind.
    ///
    /// # Errors
    /// `Err(())` when the consumer has dropped its stream: the engine stops the exec.
    #[allow(clippy::result_unit_err)]
    pub async fn stdout(&self, mut chunk: bytes::Bytes) -> Result<(), ()> {
        while !chunk.is_empty() {
            let piece = chunk.split_to(chunk.len().min(MAX_CHUNK));
            self.chunks.send(Ok(piece)).await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// Keeps a chunk of standard error (up to [`MAX_STDERR`] bytes in all).
    pub fn stderr(&mut self, chunk: &[u8]) {
        let room = MAX_STDERR.saturating_sub(self.stderr.len());
        self.stderr
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.stderr_dropped |= chunk.len() > room;
    }

    /// Ends the stream with an error (the transport broke): the consumer's next read fails.
    pub async fn fail(&self, error: std::io::Error) {
        let _ = self.chunks.send(Err(error)).await;
    }

    /// Whether the consumer has dropped its stream (the engine may stop early).
    pub fn abandoned(&self) -> bool {
        self.chunks.is_closed()
    }

    /// Ends the stream: the program's exit status (or why it is not known) and the standard
    /// error kept.
    pub fn end(mut self, status: Result<i32, RemoteError>) {
        if self.stderr_dropped {
            self.stderr
                .extend_from_slice(b"\n[standard error cut at 64 KiB]\n");
        }
        let stderr = std::mem::take(&mut self.stderr);
        if let Some(tx) = self.end.take() {
            let _ = tx.send(status.map(|status| ExecEnd { status, stderr }));
        }
    }
}

/// An exec's standard output as it arrives: `Read` blocks until the engine has the next
/// chunk, and reads end of file once the program's output has ended. Read it from a thread
/// outside any async runtime (it blocks). Dropping it before the end aborts the exec.
#[derive(Debug)]
pub struct ExecStream {
    chunks: Option<mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>>,
    current: bytes::Bytes,
    end: oneshot::Receiver<Result<ExecEnd, RemoteError>>,
    ended: bool,
}

impl ExecStream {
    /// A stream of `data` that ended with `end` (an engine whose API answers only once the
    /// program has ended, with its whole output: Fly's exec endpoint).
    pub fn whole(data: Vec<u8>, end: Result<ExecEnd, RemoteError>) -> ExecStream {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(end);
        ExecStream {
            chunks: None,
            current: bytes::Bytes::from(data),
            end: rx,
            ended: false,
        }
    }

    /// Stops reading (aborting the exec if its output has not ended) and returns how it
    /// ended: waits for the program's status only when its output has ended; else the exec
    /// is given up and this is an error saying so.
    ///
    /// # Errors
    /// The exec was given up, or the engine could not tell its status.
    pub fn finish(mut self) -> Result<ExecEnd, RemoteError> {
        let complete = self.ended && self.current.is_empty();
        // Dropping the receiver is the abort an engine sees on its next send.
        self.chunks = None;
        if !complete {
            return Err(RemoteError::Invalid(
                "the exec's output was not read to its end (given up)".into(),
            ));
        }
        self.end.blocking_recv().unwrap_or_else(|_| {
            Err(RemoteError::Invalid(
                "the engine ended the exec without its status".into(),
            ))
        })
    }

    /// Reads the rest of the output into memory, at most `max` bytes, and the end.
    ///
    /// # Errors
    /// More than `max` bytes (the exec is aborted; the message names the bound), the transport
    /// broke, or [`ExecStream::finish`]'s errors.
    pub fn collect(mut self, max: u64) -> Result<(Vec<u8>, ExecEnd), RemoteError> {
        let mut out = Vec::new();
        let n = (&mut self)
            .take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| RemoteError::Invalid(format!("the exec's output broke off: {e}")))?;
        if n as u64 > max {
            return Err(RemoteError::Invalid(format!(
                "the exec's output is over {max} bytes; it was stopped"
            )));
        }
        let end = self.finish()?;
        Ok((out, end))
    }
}

impl ExecStream {
    /// [`ExecStream::collect`] for a caller inside an async runtime (where `Read` would
    /// block a worker).
    ///
    /// # Errors
    /// As [`ExecStream::collect`].
    pub async fn collect_async(mut self, max: u64) -> Result<(Vec<u8>, ExecEnd), RemoteError> {
        let mut out = self.current.to_vec();
        if let Some(rx) = self.chunks.as_mut() {
            while let Some(chunk) = rx.recv().await {
                let chunk = chunk.map_err(|e| {
                    RemoteError::Invalid(format!("the exec's output broke off: {e}"))
                })?;
                if (out.len() + chunk.len()) as u64 > max {
                    return Err(RemoteError::Invalid(format!(
                        "the exec's output is over {max} bytes; it was stopped"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
        }
        if out.len() as u64 > max {
            return Err(RemoteError::Invalid(format!(
                "the exec's output is over {max} bytes; it was stopped"
            )));
        }
        self.chunks = None;
        let end = self.end.await.unwrap_or_else(|_| {
            Err(RemoteError::Invalid(
                "the engine ended the exec without its status".into(),
            ))
        })?;
        Ok((out, end))
    }
}

impl Read for ExecStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current.split_to(n));
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            let Some(rx) = self.chunks.as_mut() else {
                self.ended = true;
                return Ok(0);
            };
            match rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => self.ended = true,
            }
        }
    }
}

/// Writes `input` to an exec's standard input `w` and closes it (end of file for the
/// program). A reader is read on a thread of its own (it may block: a terminal, a pipe) and
/// its chunks passed on as they arrive; the thread ends at the reader's end of file or when
/// the exec has gone.
///
/// # Errors
/// Writing to the exec failed (the program has ended or the transport broke), or the reader
/// failed.
pub async fn feed(
    input: crate::ExecInput,
    mut w: impl tokio::io::AsyncWrite + Unpin,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    match input {
        crate::ExecInput::Bytes(b) => {
            if !b.is_empty() {
                w.write_all(&b).await?;
            }
        }
        crate::ExecInput::Reader(mut r) => {
            let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(4);
            std::thread::Builder::new()
                .name("airlock-exec-stdin".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let r = match r.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => Ok(buf[..n].to_vec()),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => Err(e),
                        };
                        let failed = r.is_err();
                        if tx.blocking_send(r).is_err() || failed {
                            break;
                        }
                    }
                })?;
            while let Some(chunk) = rx.recv().await {
                w.write_all(&chunk?).await?;
                w.flush().await?;
            }
        }
    }
    w.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn chunks_arrive_in_order_and_the_end_follows() {
        let rt = rt();
        let (mut sink, stream) = channel();
        rt.spawn(async move {
            for i in 0..100u8 {
                sink.stdout(bytes::Bytes::from(vec![i; 1000]))
                    .await
                    .expect("read");
            }
            sink.stderr(b"warn");
            sink.end(Ok(3));
        });
        let (out, end) = stream.collect(1 << 20).expect("collect");
        assert_eq!(out.len(), 100_000);
        assert!(out
            .chunks(1000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| usize::from(*b) == i)));
        assert_eq!(
            end,
            ExecEnd {
                status: 3,
                stderr: b"warn".to_vec()
            }
        );
    }

    #[test]
    fn dropping_the_stream_aborts_the_engine_side_and_holds_little() {
        let rt = rt();
        let (sink, mut stream) = channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let mut sent = 0u64;
            // An endless output: only the consumer's drop stops it.
            while sink
                .stdout(bytes::Bytes::from(vec![7u8; 1 << 20]))
                .await
                .is_ok()
            {
                sent += 1 << 20;
            }
            let _ = done_tx.send(sent);
        });
        let mut b = vec![0u8; 10 << 20];
        stream.read_exact(&mut b).expect("read");
        drop(stream);
        let sent = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the engine side stopped");
        // What it sent beyond what was read is the queue's bound.
        assert!(
            sent <= (10 << 20) + ((CHUNKS_IN_FLIGHT as u64 + 2) * MAX_CHUNK as u64) + (1 << 20),
            "{sent}"
        );
    }

    #[test]
    fn a_bound_on_collect_stops_the_exec_and_names_it() {
        let rt = rt();
        let (sink, stream) = channel();
        rt.spawn(async move {
            while sink
                .stdout(bytes::Bytes::from(vec![0u8; 4096]))
                .await
                .is_ok()
            {}
        });
        let e = stream.collect(100_000).expect_err("over").to_string();
        assert!(e.contains("over 100000 bytes"), "{e}");
    }

    #[test]
    fn finish_before_the_end_is_an_error_and_stderr_is_bounded() {
        let (mut sink, stream) = channel();
        sink.stderr(&vec![b'e'; MAX_STDERR * 3]);
        let e = stream.finish().expect_err("not read").to_string();
        assert!(e.contains("not read to its end"), "{e}");
        assert!(sink.abandoned());
        let (tx, rx) = oneshot::channel();
        let mut s = sink;
        s.end = Some(tx);
        s.end(Ok(0));
        let end = rx.blocking_recv().expect("sent").expect("ok");
        assert!(end.stderr.len() < MAX_STDERR + 100, "{}", end.stderr.len());
        assert!(String::from_utf8_lossy(&end.stderr).ends_with("cut at 64 KiB]\n"));
    }

    #[test]
    fn a_whole_answer_reads_as_a_stream() {
        let s = ExecStream::whole(
            b"abc".to_vec(),
            Ok(ExecEnd {
                status: 0,
                stderr: Vec::new(),
            }),
        );
        let (out, end) = s.collect(3).expect("collect");
        assert_eq!((out.as_slice(), end.status), (&b"abc"[..], 0));
    }
}
