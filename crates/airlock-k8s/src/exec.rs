//! Running commands in the box's supervisor container through the `pods/exec` subresource
//! (a websocket, `v5.channel.k8s.io` or `v4.channel.k8s.io`: channel 0 stdin, 1 stdout,
//! 2 stderr, 3 the exit `Status`, 4 terminal resizes), and reading its log (`pods/log`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use airlock_remote::{ExecInput, ExecSink, ExecStream, RemoteError, TtyExec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, LogParams, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connect::Conn;
use crate::error::{map, Op};
use crate::manifest::CONTAINER;
use crate::ENGINE;

fn op<'a>(
    conn: &'a Conn,
    ns: &'a str,
    pod: &'a str,
    verb: &'static str,
    res: &'static str,
) -> Op<'a> {
    Op {
        verb,
        resource: res,
        group: "",
        name: Some(pod),
        namespace: ns,
        context: &conn.context,
    }
}

/// Runs `argv` in `pod`'s supervisor with `stdin` as input (stdin is not attached when it is
/// empty bytes) and returns once it has started, with its standard output as it arrives:
/// kube's stdout reader is read one chunk at a time into the stream (the websocket is not
/// read further while the consumer is behind), and a consumer that drops the stream ends the
/// exec (the websocket is closed).
pub(crate) async fn exec_stream(
    conn: &Conn,
    ns: &str,
    pod: &str,
    argv: &[String],
    stdin: ExecInput,
) -> Result<ExecStream, RemoteError> {
    let pods: Api<Pod> = Api::namespaced(conn.streams.clone(), ns);
    let attach = !matches!(&stdin, ExecInput::Bytes(b) if b.is_empty());
    let ap = AttachParams::default()
        .container(CONTAINER)
        .stdin(attach)
        .stdout(true)
        .stderr(true)
        .max_stdout_buf_size(64 << 10);
    let mut proc = pods
        .exec(pod, argv.to_vec(), &ap)
        .await
        .map_err(|e| map(op(conn, ns, pod, "create", "pods/exec"), e))?;
    let status = proc.take_status();
    let out = proc.stdout();
    let err = proc.stderr();
    let input = proc.stdin();
    let (mut sink, stream) = airlock_remote::stream::channel();
    let what = argv.join(" ");
    let pod = pod.to_string();
    tokio::spawn(async move {
        let feeder = input.map(|w| tokio::spawn(airlock_remote::stream::feed(stdin, w)));
        let broke = |e: std::io::Error| {
            std::io::Error::other(format!("pod/{pod}: exec of {what}: the stream broke: {e}"))
        };
        // Standard error on a task of its own: kube's loop stalls on a full stderr pipe.
        let errs = tokio::spawn(read_bounded(err));
        let pumped = pump(out, &sink).await;
        let stop = |proc: &kube::api::AttachedProcess| {
            if let Some(f) = &feeder {
                f.abort();
            }
            errs.abort();
            // Closes the websocket, which ends the exec.
            proc.abort();
        };
        if let Err(e) = pumped {
            sink.fail(broke(e)).await;
            stop(&proc);
            return;
        }
        if sink.abandoned() {
            stop(&proc);
            return;
        }
        let errs = match errs.await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                sink.fail(broke(e)).await;
                proc.abort();
                return;
            }
            Err(_) => Vec::new(),
        };
        if let Some(f) = &feeder {
            f.abort();
        }
        sink.stderr(&errs);
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        let joined = proc.join().await;
        let end = joined
            .map_err(|e| RemoteError::Resource {
                engine: ENGINE,
                resource: format!("pod/{pod}"),
                message: format!("exec of {what}: {}", crate::error::chain(&e)),
            })
            .and_then(|()| {
                exit_status(status.as_ref()).map_err(|m| RemoteError::Resource {
                    engine: ENGINE,
                    resource: format!("pod/{pod}"),
                    message: format!("exec of {what}: {m}"),
                })
            });
        sink.end(end);
    });
    Ok(stream)
}

/// Runs `argv` as [`exec_stream`] and collects its output (at most
/// [`airlock_remote::MAX_EXEC_OUTPUT`] bytes), for a caller on the runtime (the readiness
/// probe).
pub(crate) async fn exec(
    conn: &Conn,
    ns: &str,
    pod: &str,
    argv: &[String],
) -> Result<airlock_remote::ExecOutput, RemoteError> {
    let s = exec_stream(conn, ns, pod, argv, ExecInput::Bytes(Vec::new())).await?;
    let (stdout, end) = s
        .collect_async(airlock_remote::MAX_EXEC_OUTPUT)
        .await
        .map_err(|e| RemoteError::Resource {
            engine: ENGINE,
            resource: format!("pod/{pod}"),
            message: format!("exec of {}: {e}", argv.join(" ")),
        })?;
    Ok(airlock_remote::ExecOutput {
        status: end.status,
        stdout,
        stderr: end.stderr,
    })
}

/// Passes `out` to `sink` chunk by chunk until its end or until the consumer has gone.
async fn pump(
    out: Option<impl tokio::io::AsyncRead + Unpin>,
    sink: &ExecSink,
) -> std::io::Result<()> {
    let Some(mut out) = out else { return Ok(()) };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = out.read(&mut buf).await?;
        if n == 0
            || sink
                .stdout(bytes::Bytes::copy_from_slice(&buf[..n]))
                .await
                .is_err()
        {
            return Ok(());
        }
    }
}

/// Reads `err` to its end, keeping [`airlock_remote::stream::MAX_STDERR`] bytes.
async fn read_bounded(err: Option<impl tokio::io::AsyncRead + Unpin>) -> std::io::Result<Vec<u8>> {
    let Some(mut err) = err else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = err.read(&mut buf).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = airlock_remote::stream::MAX_STDERR.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// The exit status the exec's `Status` carries: `Success` is 0; `NonZeroExitCode` names the
/// code in a cause of reason `ExitCode` (kubelet's `remotecommand` convention).
pub(crate) fn exit_status(status: Option<&Status>) -> Result<i32, String> {
    let Some(s) = status else {
        return Err("the stream ended without an exit status (the connection dropped)".into());
    };
    if s.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if s.reason.as_deref() == Some("NonZeroExitCode") {
        let code = s
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    Err(format!(
        "failed: {} ({})",
        s.message.as_deref().unwrap_or("no message"),
        s.reason.as_deref().unwrap_or("no reason")
    ))
}

/// Runs `argv` on a terminal of `cols` x `rows` and relays between the exec's streams and one
/// end of a socket pair, on the engine's runtime.
pub(crate) async fn exec_tty(
    conn: &Conn,
    ns: &str,
    pod: &str,
    argv: &[String],
    cols: u16,
    rows: u16,
) -> Result<TtyExec, RemoteError> {
    let pods: Api<Pod> = Api::namespaced(conn.streams.clone(), ns);
    let ap = AttachParams::interactive_tty().container(CONTAINER);
    let mut proc = pods
        .exec(pod, argv.to_vec(), &ap)
        .await
        .map_err(|e| map(op(conn, ns, pod, "create", "pods/exec"), e))?;
    let broken = |what: &str| RemoteError::Resource {
        engine: ENGINE,
        resource: format!("pod/{pod}"),
        message: format!("exec of {}: no {what} stream", argv.join(" ")),
    };
    let mut sizes = proc.terminal_size().ok_or_else(|| broken("resize"))?;
    let input = proc.stdin().ok_or_else(|| broken("stdin"))?;
    let output = proc.stdout().ok_or_else(|| broken("stdout"))?;
    sizes
        .try_send(TerminalSize {
            width: cols,
            height: rows,
        })
        .map_err(|e| broken(&format!("resize ({e})")))?;
    let ended = Arc::new(AtomicBool::new(false));
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| RemoteError::Engine {
            engine: ENGINE,
            message: format!("cannot make a socket pair for the terminal: {e}"),
        })?;
    ours.set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(ours))
        .map(|s| relay(s, input, output, proc, ended.clone()))
        .map_err(|e| RemoteError::Engine {
            engine: ENGINE,
            message: format!("cannot relay the terminal: {e}"),
        })?;
    // Sizes go through an unbounded queue to a task that owns kube's (bounded) channel: the
    // caller never blocks, and a burst of resizes arrives whole and in order.
    let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel::<TerminalSize>();
    tokio::spawn(async move {
        while let Some(mut size) = queued.recv().await {
            loop {
                match sizes.try_send(size) {
                    Ok(()) => break,
                    Err(e) if e.is_full() => {
                        size = e.into_inner();
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    // The program has ended.
                    Err(_) => return,
                }
            }
        }
    });
    let pod_name = pod.to_string();
    Ok(TtyExec {
        stream: theirs,
        resize: Box::new(move |cols, rows| {
            if ended.load(Ordering::SeqCst) {
                return Err(RemoteError::Resource {
                    engine: ENGINE,
                    resource: format!("pod/{pod_name}"),
                    message: "cannot resize the terminal: the program has ended".into(),
                });
            }
            queue
                .send(TerminalSize {
                    width: cols,
                    height: rows,
                })
                .map_err(|_| RemoteError::Resource {
                    engine: ENGINE,
                    resource: format!("pod/{pod_name}"),
                    message: "cannot resize the terminal: the program has ended".into(),
                })
        }),
    })
}

/// Copies the socket's bytes to the exec's stdin and its stdout to the socket; when the
/// program ends, sets `ended` and closes the socket.
fn relay(
    sock: tokio::net::UnixStream,
    mut input: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    mut output: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    proc: kube::api::AttachedProcess,
    ended: Arc<AtomicBool>,
) {
    let (mut rd, mut wr) = sock.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut rd, &mut input).await;
        let _ = input.shutdown().await;
    });
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut output, &mut wr).await;
        // Before the socket's end, so whoever sees the end also sees this.
        ended.store(true, Ordering::SeqCst);
        let _ = wr.shutdown().await;
        let _ = proc.join().await;
    });
}

/// The supervisor container's log, at most `max` bytes: the server is asked for at most `max +
/// 1` (`limitBytes`) and the client reads no further than that either (a server that ignores
/// the limit is not read to its end); over `max` is an error naming the bound.
pub(crate) async fn logs(
    conn: &Conn,
    ns: &str,
    pod: &str,
    max: u64,
) -> Result<Vec<u8>, RemoteError> {
    let pods: Api<Pod> = Api::namespaced(conn.streams.clone(), ns);
    let lp = LogParams {
        container: Some(CONTAINER.into()),
        limit_bytes: Some(i64::try_from(max.saturating_add(1)).unwrap_or(i64::MAX)),
        ..LogParams::default()
    };
    let stream = pods
        .log_stream(pod, &lp)
        .await
        .map_err(|e| map(op(conn, ns, pod, "get", "pods/log"), e))?;
    // Bytes as the container wrote them (not necessarily UTF-8).
    let mut out = Vec::new();
    futures_util::AsyncReadExt::read_to_end(
        &mut futures_util::AsyncReadExt::take(stream, max.saturating_add(1)),
        &mut out,
    )
    .await
    .map_err(|e| RemoteError::Resource {
        engine: ENGINE,
        resource: format!("pod/{pod}"),
        message: format!("reading its log broke off: {e}"),
    })?;
    if out.len() as u64 > max {
        return Err(airlock_remote::logs_over(
            ENGINE,
            format!("pod/{pod}"),
            max,
            &format!("kubectl logs --namespace {ns} {pod} --container {CONTAINER}"),
        ));
    }
    Ok(out)
}
