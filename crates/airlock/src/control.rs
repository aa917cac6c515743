//! A running session's control socket, `control.sock` in its session directory (mode 0700, never
//! visible inside the sandbox): one line in, one line out.
//!
//! - `reload`: re-read the policy files.
//! - `ready`: `ok` once a --detach session's tmux server is up inside (asked of the sandbox, no
//!   host tmux involved), else `starting`.
//! - `attach ROWS COLS TERM UTF8`: start `tmux attach` inside the sandbox on a new pty (see
//!   [`crate::commands::detach::Console`]) and answer `ok allow_clipboard=BOOL` with the pty's
//!   master attached (`SCM_RIGHTS`); later, a line `exited` when that client has ended.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::approvals::Approvals;
use crate::commands::detach::{AttachRequest, Console};
use std::sync::Arc;

/// Serves the session's control socket on `rt` until the runtime shuts down; `console` is set for
/// --detach sessions.
pub(crate) fn serve<F>(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    reload: F,
    console: Option<Console>,
    approvals: Option<Arc<Approvals>>,
) -> Result<()>
where
    F: Fn() -> Result<()> + Clone + Send + 'static,
{
    let path = dir.join("control.sock");
    let _ = std::fs::remove_file(&path);
    let _guard = rt.enter();
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot create control socket {}", path.display()))?;
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let reload = reload.clone();
            let console = console.clone();
            let approvals = approvals.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                let mut rd = tokio::io::BufReader::new(rd.take(1024));
                if rd.read_line(&mut line).await.is_err() {
                    return;
                }
                let words: Vec<&str> = line.split_whitespace().collect();
                let answer = match (words.first().copied(), &console) {
                    (Some("reload"), _) => match tokio::task::spawn_blocking(reload).await {
                        Ok(Ok(())) => "ok\n".to_string(),
                        Ok(Err(e)) => format!(
                            "error: policy reload failed, the current policy stays: {e:#}\n"
                        ),
                        Err(e) => format!("error: {e}\n"),
                    },
                    (Some("ready"), Some(c)) => {
                        let c = c.clone();
                        match tokio::task::spawn_blocking(move || c.ready()).await {
                            Ok(true) => "ok\n".to_string(),
                            _ => "starting\n".to_string(),
                        }
                    }
                    (Some("attach"), Some(c)) => {
                        let req = match AttachRequest::parse(&words[1..]) {
                            Ok(r) => r,
                            Err(e) => {
                                let _ = wr.write_all(format!("error: {e}\n").as_bytes()).await;
                                return;
                            }
                        };
                        let Ok(std) = rd
                            .into_inner()
                            .into_inner()
                            .reunite(wr)
                            .map_err(|_| ())
                            .and_then(|s| s.into_std().map_err(|_| ()))
                        else {
                            return;
                        };
                        let c = c.clone();
                        let _ =
                            tokio::task::spawn_blocking(move || serve_attach(&c, &req, std)).await;
                        return;
                    }
                    (Some("approvals" | "approve" | "deny"), _) => match &approvals {
                        Some(a) => {
                            let (a, words) = (
                                a.clone(),
                                words.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                            );
                            tokio::task::spawn_blocking(move || {
                                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                                crate::approvals::control(&a, &words)
                            })
                            .await
                            .unwrap_or_else(|e| format!("error: {e}\n"))
                        }
                        None => "error: this session does not ask for approvals ([approvals] mode is off)\n"
                            .to_string(),
                    },
                    (Some("ready" | "attach"), None) => {
                        "error: this session was not started with --detach\n".to_string()
                    }
                    (other, _) => format!("error: unknown request '{}'\n", other.unwrap_or("")),
                };
                let _ = wr.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(())
}

/// Starts `tmux attach` inside, hands its pty to the client, and tells the client when it ended.
fn serve_attach(console: &Console, req: &AttachRequest, mut stream: UnixStream) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let mut exec = match console.attach(req) {
        Ok(e) => e,
        Err(e) => {
            let _ = stream.write_all(format!("error: {e:#}\n").as_bytes());
            return;
        }
    };
    let Some(pty) = exec.pty.take() else {
        let _ = stream.write_all(b"error: the sandbox passed no terminal\n");
        return;
    };
    let line = format!("ok allow_clipboard={}\n", console.allow_clipboard());
    if airlock_sandbox::console::send_fd(&stream, line.as_bytes(), pty.as_fd()).is_err() {
        return;
    }
    // Only the client holds the terminal now: when it goes away, the client inside hangs up.
    drop(pty);
    while exec.wait(Duration::from_secs(3600)).is_none() {}
    let _ = stream.write_all(b"exited\n");
}

/// Sends one request to the session in `dir` and returns the answer line.
pub(crate) fn request(dir: &Path, what: &str) -> Result<String> {
    let path = dir.join("control.sock");
    let mut s = UnixStream::connect(&path)
        .with_context(|| format!("cannot connect to {}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{what}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line)
}
