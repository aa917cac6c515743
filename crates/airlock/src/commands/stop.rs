//! `airlock stop`: ends a running session: SIGTERM to its supervisor (which forwards it to the
//! sandbox through its backend), SIGKILL after the timeout, then the backend removes whatever
//! the supervisor left.

use airlock_session::SessionState;
use anyhow::{bail, Context, Result};
use std::io::Write as _;

use super::session::state_word;
use crate::backends;
use crate::cli::StopArgs;
use crate::session_dir;

pub(crate) fn stop(args: StopArgs) -> Result<i32> {
    use nix::sys::signal::{kill, Signal};
    let r = session_dir::find(Some(&args.id))?;
    // A foreground remote run is signalled like a local supervisor (it stops the box's
    // command and brings the results home itself); a detached one is stopped in its box.
    let run_alive = r.supervisor_pid.is_some()
        && r.supervisor_pid
            .and_then(airlock_session::store::process_start)
            == r.supervisor_start;
    if r.backend.is_remote() && r.state == SessionState::Running && !run_alive {
        return stop_remote(&r);
    }
    let (backend, session) = backends::of(&r);
    if r.state != SessionState::Running {
        if r.state == SessionState::Lost {
            // Its supervisor died without cleaning up: the backend removes what is left.
            backend.clean_up(&session)?;
        }
        bail!("session {} is not running ({})", r.id, state_word(&r));
    }
    let pid = r
        .supervisor_pid
        .and_then(|p| i32::try_from(p).ok())
        .map(nix::unistd::Pid::from_raw)
        .context("the session has no supervisor pid")?;
    let alive = || {
        r.supervisor_pid
            .and_then(airlock_session::store::process_start)
            == r.supervisor_start
    };
    // The supervisor forwards SIGTERM to the command; its exit ends the sandbox.
    kill(pid, Signal::SIGTERM).with_context(|| format!("cannot signal session {}", r.id))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.timeout);
    while alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if alive() {
        eprintln!(
            "airlock: session {} did not stop within {}s; killing it",
            r.id, args.timeout
        );
        // The native sandbox dies with its supervisor (parent-death signal); what other
        // backends leave, they remove.
        let _ = kill(pid, Signal::SIGKILL);
        backend.clean_up(&session)?;
        let store = session_dir::store()?;
        store.finish(
            &r.id,
            SessionState::Failed,
            Some(137),
            &airlock_audit::now_rfc3339(),
        )?;
    }
    writeln!(std::io::stdout(), "stopped session {}", r.id)?;
    Ok(0)
}

/// A remote session without its foreground run: `ctl stop` in its box (a command that has
/// already ended is stopped), then its end collected as `airlock run` would (the audit log, the
/// output, the changes), and the box deleted.
fn stop_remote(r: &airlock_session::SessionRow) -> Result<i32> {
    use super::remote;
    let at = r
        .location
        .clone()
        .context("the remote session has no location (its box was never created)")?;
    let engine = backends::engine(r.backend, &backends::EngineOptions::for_session(Some(&at))?)?;
    let store = session_dir::store()?;
    let before = remote::status(engine.as_ref(), &at).with_context(|| {
        format!(
            "cannot reach the box of session {} ({at}); `airlock rm {}` deletes what is left",
            r.id, r.id
        )
    })?;
    if !matches!(
        before.state,
        airlock_remote::BoxState::Exited | airlock_remote::BoxState::Failed
    ) {
        remote::ctl(engine.as_ref(), &at, airlock_remote::ctl::STOP, &[])?;
    }
    let st: airlock_remote::BoxStatus = serde_json::from_slice(&remote::ctl(
        engine.as_ref(),
        &at,
        airlock_remote::ctl::WAIT,
        &[],
    )?)?;
    if st.state == airlock_remote::BoxState::Failed {
        // Nothing to bring home: the session never ran (or its supervisor failed).
        let deleted = engine.delete(&at);
        store.finish(
            &r.id,
            SessionState::Failed,
            Some(crate::exit::FAILURE),
            &airlock_audit::now_rfc3339(),
        )?;
        deleted?;
        bail!(
            "session {} had failed in its box: {}; the box is deleted",
            r.id,
            remote::box_text(&st.error.unwrap_or_default())
        );
    }
    let collected = remote::collect(engine.as_ref(), &at, &r.dir, false);
    engine.delete(&at)?;
    collected?;
    store.finish(
        &r.id,
        SessionState::Exited,
        st.exit_status,
        &airlock_audit::now_rfc3339(),
    )?;
    writeln!(std::io::stdout(), "stopped session {}", r.id)?;
    Ok(0)
}
