//! `airlock attach`: joins a --detach session: waits for it to be up, has its supervisor start
//! `tmux attach` inside the sandbox through the session's backend (`RunningSandbox::exec_handle`)
//! and relays that terminal to ours through the terminal filter.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use airlock_sandbox::termfilter::{FilterConfig, TermFilter};
use airlock_session::SessionState;
use anyhow::{bail, Context, Result};

use super::detach::{audit_terminal, AttachRequest};
use crate::cli::AttachArgs;
use crate::control;
use crate::session_dir;

/// `airlock attach ID`: wait for the session to be up, have the supervisor start `tmux attach`
/// inside the sandbox, and relay its terminal to ours.
pub(crate) fn attach(args: AttachArgs) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut said = false;
    let r = loop {
        let r = session_dir::find(Some(&args.id))?;
        if r.state != SessionState::Running {
            bail!(
                "session {} {}; `airlock logs {}` shows what it printed",
                r.id,
                ended_in_words(&r),
                r.id
            );
        }
        if r.backend.is_remote() {
            return attach_remote(&r);
        }
        // Without a terminal the relay would stream tmux's screen updates forever.
        let stdin_tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
        if !stdin_tty || !nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
            bail!(
                "attach needs a terminal; use `airlock logs {} [-f]` to read the output",
                r.id
            );
        }
        match control::request(&r.dir, "ready") {
            Ok(a) if a == "ok\n" => {
                if said {
                    eprintln!();
                }
                break r;
            }
            Ok(a) if a.starts_with("error: ") => bail!(
                "session {} cannot be attached: {}",
                r.id,
                a.trim_end().trim_start_matches("error: ")
            ),
            _ => {}
        }
        if Instant::now() >= deadline {
            bail!(
                "session {} did not become ready within {}s; `airlock logs {}` shows why",
                r.id,
                args.wait,
                r.id
            );
        }
        if !said {
            eprint!("airlock: waiting for session {} to start", r.id);
            said = true;
        } else {
            eprint!(".");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let (rows, cols) = airlock_sandbox::term::terminal_size().unwrap_or((24, 80));
    let utf8 = airlock_sandbox::term::locale_is_utf8();
    let term = std::env::var("TERM")
        .ok()
        .filter(|t| AttachRequest::parse(&["1", "1", t, "0"]).is_ok())
        .unwrap_or_else(|| "xterm-256color".to_string());
    let req = AttachRequest {
        rows,
        cols,
        term,
        utf8,
    };
    let path = r.dir.join("control.sock");
    let mut stream = UnixStream::connect(&path)
        .with_context(|| format!("cannot connect to session {} ({})", r.id, path.display()))?;
    stream.write_all(req.line().as_bytes())?;
    let (line, pty) = airlock_sandbox::console::recv_fd(&stream)
        .with_context(|| format!("session {} did not hand over its terminal", r.id))?;
    let line = String::from_utf8_lossy(&line).trim_end().to_string();
    let Some(flags) = line.strip_prefix("ok ") else {
        bail!(
            "session {} cannot be attached: {}",
            r.id,
            line.strip_prefix("error: ").unwrap_or(&line)
        );
    };
    let pty: OwnedFd = pty.with_context(|| format!("session {} passed no terminal", r.id))?;
    let config = FilterConfig {
        utf8,
        ..FilterConfig::live(flags == "allow_clipboard=true")
    };
    let mut filter = TermFilter::new(config);
    airlock_sandbox::console::relay_attached(&pty, &stream, &mut filter)?;
    audit_terminal(&r.dir.join("audit.jsonl"), &r.id, "attach", &filter);
    Ok(0)
}

/// A remote session: `ctl attach` on the engine's terminal exec, through the terminal filter.
fn attach_remote(r: &airlock_session::SessionRow) -> Result<i32> {
    let at = r
        .location
        .clone()
        .ok_or_else(|| anyhow::anyhow!("session {} has no box", r.id))?;
    if !nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        bail!("attach needs a terminal; use `airlock logs {}`", r.id);
    }
    let engine = crate::backends::engine(
        r.backend,
        &crate::backends::EngineOptions::for_session(Some(&at))?,
    )?;
    super::remote::attach(engine.as_ref(), &at, &r.dir)?;
    Ok(0)
}

/// How an ended session ended, as a sentence's predicate (never the state's Rust name).
fn ended_in_words(r: &airlock_session::SessionRow) -> String {
    let when = r
        .ended
        .as_deref()
        .map(|t| format!(" at {t}"))
        .unwrap_or_default();
    match (r.state, r.exit_status) {
        (SessionState::Exited, Some(0) | None) => {
            format!("has ended: its command finished successfully{when}")
        }
        (SessionState::Exited, Some(c)) if c > 128 && c < 128 + 65 => format!(
            "has ended: its command was stopped by signal {}{when} (exit status {c})",
            c - 128
        ),
        (SessionState::Exited, Some(c)) => {
            format!("has ended: its command exited with status {c}{when}")
        }
        (SessionState::Failed, c) => format!(
            "has ended: airlock could not run it or it was killed{when} (exit status {})",
            c.unwrap_or(crate::exit::FAILURE)
        ),
        (SessionState::Lost, _) => {
            "is lost: its supervisor is gone (killed, or the machine restarted)".to_string()
        }
        (SessionState::Running, _) => "is running".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_session_is_described_in_words() {
        let mut r = airlock_session::SessionRow {
            id: "abcd1234".into(),
            name: None,
            workspace: "/w".into(),
            mode: airlock_session::SessionMode::Overlay,
            backend: airlock_session::BackendKind::PodmanBox,
            location: None,
            agent: airlock_session::AgentKind::Shell,
            policy_digest: String::new(),
            state: SessionState::Exited,
            created: String::new(),
            created_unix: 0,
            ended: Some("2026-01-01T00:00:00Z".into()),
            exit_status: Some(0),
            supervisor_pid: None,
            supervisor_start: None,
            dir: "/d".into(),
            base_commit: None,
            merged: false,
        };
        for (state, code, want) in [
            (
                SessionState::Exited,
                Some(0),
                "finished successfully at 2026",
            ),
            (SessionState::Exited, Some(3), "exited with status 3"),
            (SessionState::Exited, Some(143), "stopped by signal 15"),
            (SessionState::Failed, Some(125), "could not run it"),
            (SessionState::Lost, None, "supervisor is gone"),
        ] {
            r.state = state;
            r.exit_status = code;
            let words = ended_in_words(&r);
            assert!(words.contains(want), "{state:?} {code:?}: {words}");
            assert!(!words.contains(&format!("{state:?}")), "{words}");
        }
    }
}
