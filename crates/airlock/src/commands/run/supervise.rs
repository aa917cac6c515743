//! Step 5 of `airlock run`: the session's services around a running sandbox, the same for
//! every backend: the egress proxy and DNS filter on the sandbox's listeners, the gate's audit
//! channel, the connect gate's refusals, policy reloads (SIGHUP and the control socket),
//! `airlock attach` for a --detach session, and the terminal and signals until the command
//! exits ([`airlock_sandbox::supervise::supervise`]).

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use airlock_audit::{AuditEvent, AuditLog, Decision, Detail};
use airlock_net::{Egress, EgressConfig};
use airlock_sandbox::termfilter::{FilterConfig, TermFilter};
use airlock_sandbox::unix_gate::UnixRefusal;
use airlock_sandbox::RunningSandbox;
use anyhow::{Context, Result};

use super::plan::Plan;
use crate::control;

/// Serves the session around `sandbox` until its command exits; returns its exit status. Every
/// thread starts here, after the signal mask is set and the sandbox started.
pub(super) fn supervise(
    plan: &Plan,
    mut sandbox: Box<dyn RunningSandbox>,
    refusals: Receiver<UnixRefusal>,
    otel: Option<crate::telemetry::Prepared>,
) -> Result<i32> {
    let session = &plan.session;
    let audit = Arc::new(AuditLog::open(plan.dir.join("audit.jsonl"))?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("airlock-egress")
        .enable_all()
        .build()
        .context("cannot start the egress runtime")?;
    // Before the first service that writes to the audit log: every event is exported.
    let telemetry = otel.and_then(|o| o.start(telemetry_attrs(plan), &audit));
    let egress = start_egress(plan, sandbox.as_mut(), &rt, &audit)?;
    audit_unix_refusals(refusals, audit.clone(), session.clone())?;
    session_event(&audit, session, "started", None);
    let reload = {
        let (egress, reload) = (egress.clone(), plan.reload.clone());
        move || -> Result<()> {
            egress.reload(reload.policy()?);
            Ok(())
        }
    };
    control::serve(
        &rt,
        &plan.dir,
        reload.clone(),
        console(plan, sandbox.as_ref())?,
    )?;
    let mut on_hup = || match reload() {
        Ok(()) => eprintln!("airlock: session {session}: network policy reloaded"),
        Err(e) => eprintln!(
            "airlock: session {session}: policy reload failed, keeping the current policy: {e:#}"
        ),
    };
    let mut filter = TermFilter::new(FilterConfig {
        allow_clipboard: plan.allow_clipboard,
        utf8: airlock_sandbox::term::locale_is_utf8(),
    });
    let status = airlock_sandbox::supervise::supervise(sandbox, Some(&mut on_hup), &mut filter);
    super::super::detach::audit_terminal(&plan.dir.join("audit.jsonl"), session, "run", &filter);
    session_event(&audit, session, "exited", status.as_ref().ok().copied());
    if let Some(t) = telemetry {
        t.finish(&audit);
    }
    drop(egress);
    rt.shutdown_background();
    status.map_err(super::sandbox_error)
}

/// The attributes every exported audit event of this session carries.
fn telemetry_attrs(plan: &Plan) -> crate::telemetry::SessionAttrs {
    crate::telemetry::SessionAttrs {
        session: plan.session.clone(),
        agent: plan.agent.to_string(),
        workspace: plan.workspace.display().to_string(),
    }
}

/// Starts the egress services and the gate's audit channel on the listeners the sandbox handed
/// over. A sandbox that hands over none is an error (no backend serves egress where the sandbox
/// runs yet; one that does will make this step optional).
fn start_egress(
    plan: &Plan,
    sandbox: &mut dyn RunningSandbox,
    rt: &tokio::runtime::Runtime,
    audit: &Arc<AuditLog>,
) -> Result<Arc<Egress>> {
    let net = sandbox
        .take_listeners()
        .context("the sandbox did not hand over its network sockets")?;
    let mut config = EgressConfig::new(net.proxy, plan.net_policy.clone(), audit.clone());
    config.dns_udp = Some(net.dns_udp);
    config.dns_tcp = Some(net.dns_tcp);
    config.session = Some(plan.session.clone());
    config.credentials = plan.creds.injector.clone();
    let egress =
        Arc::new(Egress::start(config, rt.handle()).context("cannot start the egress proxy")?);
    {
        let egress = egress.clone();
        rt.spawn(async move {
            let e = egress.wait_failure().await;
            eprintln!("airlock: {e}; the sandbox has no network from now on");
        });
    }
    if let Some(l) = net.audit {
        crate::gate_audit::serve(rt, l, audit.clone(), plan.session.clone())?;
    }
    Ok(egress)
}

/// `airlock attach`'s side in the supervisor, for a --detach session.
fn console(
    plan: &Plan,
    sandbox: &dyn RunningSandbox,
) -> Result<Option<super::super::detach::Console>> {
    if !plan.detached {
        return Ok(None);
    }
    let exec = sandbox
        .exec_handle()
        .context("cannot prepare `airlock attach` for this session")?;
    Ok(Some(super::super::detach::Console::new(
        exec,
        plan.allow_clipboard,
    )))
}

/// Appends the session's start or end to its audit log.
fn session_event(audit: &AuditLog, session: &str, event: &str, exit_status: Option<i32>) {
    let _ = audit.append(
        &AuditEvent::now(
            Decision::Info,
            Detail::Session {
                event: event.into(),
                exit_status,
            },
        )
        .session(session.to_string()),
    );
}

/// Writes the connect gate's refusals to the audit log (rate-limited per path: the sandbox can
/// refuse itself in a loop), on a thread of their own until the sandbox is gone.
fn audit_unix_refusals(
    refusals: Receiver<UnixRefusal>,
    audit: Arc<AuditLog>,
    session: String,
) -> Result<()> {
    std::thread::Builder::new()
        .name("airlock-unix-audit".into())
        .spawn(move || {
            for r in refusals {
                let mut ev = AuditEvent::now(
                    Decision::Deny,
                    Detail::Unix {
                        path: r.path.clone(),
                        pid: r.pid,
                    },
                )
                .session(session.clone());
                ev.rule = Some("builtin:unix-socket-outside-sandbox".into());
                ev.reason = Some(r.reason);
                let _ = audit.append_limited(&format!("unix:{}", r.path), &ev);
            }
        })
        .context("cannot start the audit writer for refused unix connects")?;
    Ok(())
}
