//! A running session's control socket, `control.sock` in its session directory (mode 0700, never
//! visible inside the sandbox): one line in, one line out. `reload` re-reads the policy files.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Serves the session's control socket on `rt` until the runtime shuts down.
pub(crate) fn serve<F>(rt: &tokio::runtime::Runtime, dir: &Path, reload: F) -> Result<()>
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
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                let mut rd = tokio::io::BufReader::new(rd.take(1024));
                if rd.read_line(&mut line).await.is_err() {
                    return;
                }
                let answer = match line.trim() {
                    "reload" => match tokio::task::spawn_blocking(reload).await {
                        Ok(Ok(())) => "ok\n".to_string(),
                        Ok(Err(e)) => format!(
                            "error: policy reload failed, the current policy stays: {e:#}\n"
                        ),
                        Err(e) => format!("error: {e}\n"),
                    },
                    other => format!("error: unknown request '{other}'\n"),
                };
                let _ = wr.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(())
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
