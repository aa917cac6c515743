//! Step 5 of `airlock run`: the session's services around a running sandbox, the same for
//! every backend: the egress proxy and DNS filter on the sandbox's listeners, the gate's audit
//! channel, the connect gate's refusals, policy reloads (SIGHUP and the control socket),
//! `airlock attach` for a --detach session, live denials (`crate::denials`), approvals
//! (`crate::approvals`) and notifications (`crate::notify`), and the terminal and signals until
//! the command exits ([`airlock_sandbox::supervise::supervise_with_notices`]).

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use airlock_audit::{AuditEvent, AuditLog, Decision, Detail};
use airlock_net::{Egress, EgressConfig};
use airlock_policy::ApprovalMode;
use airlock_sandbox::notice::NoticeSender;
use airlock_sandbox::termfilter::{FilterConfig, TermFilter};
use airlock_sandbox::unix_gate::UnixRefusal;
use airlock_sandbox::RunningSandbox;
use anyhow::{Context, Result};

use super::plan::Plan;
use crate::approvals::{Approvals, Asker};
use crate::control;
use crate::denials::Watcher;
use crate::notify::{Event, Notifier};

/// How long the end of a session waits for its last notifications to go out.
const NOTIFY_WAIT: Duration = Duration::from_secs(15);

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
    // Refusals, copied from egress, the connect gate and the command gate, become live lines.
    let (notice_tx, notices) = airlock_sandbox::notice::channel()?;
    let (denials_tx, denials_rx) = std::sync::mpsc::sync_channel(256);
    let notifier = Notifier::start(session, &plan.notify);
    let watcher = crate::denials::spawn(session, denials_rx, notice_tx.clone(), notifier.clone())?;
    let started = Arc::new(OnceLock::new());
    let terminal_key = terminal_key(plan);
    let approvals = approvals(
        plan,
        &notice_tx,
        notifier.clone(),
        started.clone(),
        terminal_key.clone().map(|(name, _)| name),
    );
    let keys = match (&approvals, terminal_key) {
        (Some(a), Some((_, byte))) => Some(airlock_sandbox::prompt::PromptKeys::new(
            byte,
            Box::new(crate::approvals::TerminalAnswers(a.clone())),
        )),
        _ => None,
    };
    let egress = start_egress(
        plan,
        sandbox.as_mut(),
        &rt,
        &audit,
        &denials_tx,
        approvals.clone(),
        notifier.clone(),
    )?;
    let _ = started.set(egress.clone());
    audit_unix_refusals(refusals, audit.clone(), session.clone(), denials_tx)?;
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
        approvals,
    )?;
    let mut on_hup = || match reload() {
        Ok(()) => eprintln!("airlock: session {session}: network policy reloaded"),
        Err(e) => eprintln!(
            "airlock: session {session}: policy reload failed, keeping the current policy: {e:#}"
        ),
    };
    let mut filter = TermFilter::new(FilterConfig::live(plan.allow_clipboard));
    let status = airlock_sandbox::supervise::supervise_with_notices(
        sandbox,
        Some(&mut on_hup),
        &mut filter,
        Some(notices),
        keys,
    );
    report_end(session, &watcher, notifier.as_ref(), &status);
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

/// Once the terminal is the user's again: every refusal of the session with its count, and the
/// last notification ("finished" or "failed"), waited for at most [`NOTIFY_WAIT`].
fn report_end(
    session: &str,
    watcher: &Mutex<Watcher>,
    notifier: Option<&Notifier>,
    status: &Result<i32, airlock_sandbox::SandboxError>,
) {
    if let Some(s) = watcher.lock().unwrap_or_else(|e| e.into_inner()).summary() {
        eprintln!("{s}");
    }
    if let Some(n) = notifier {
        let (event, what) = match status {
            Ok(0) => (Event::Finished, "finished".to_string()),
            Ok(c) => (Event::Failed, format!("exited with status {c}")),
            Err(e) => (
                Event::Failed,
                format!("failed: {}", airlock_sandbox::render_chain(e)),
            ),
        };
        let message = format!("airlock: session {session} {what}");
        n.finish(event, &message, NOTIFY_WAIT);
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
    denials: &SyncSender<AuditEvent>,
    approvals: Option<Arc<Approvals>>,
    notify: Option<Notifier>,
) -> Result<Arc<Egress>> {
    let (mut config, audit_listener) = egress_sockets(plan, sandbox, audit)?;
    config.session = Some(plan.session.clone());
    config.credentials = plan.creds.injector.clone();
    config.denials = Some(denials.clone());
    if let Some(a) = approvals.clone() {
        config.approver = Some(Arc::new(Asker(a)));
        config.approval_timeout = Duration::from_secs(approval_timeout(plan));
    }
    let egress =
        Arc::new(Egress::start(config, rt.handle()).context("cannot start the egress proxy")?);
    {
        let egress = egress.clone();
        rt.spawn(async move {
            let e = egress.wait_failure().await;
            eprintln!("airlock: {e}; the sandbox has no network from now on");
        });
    }
    if let Some(l) = audit_listener {
        // Nobody sees the agent's own prompt in a detached session: its asks wait here.
        let hold = approvals.filter(|_| plan.detached);
        crate::gate_audit::serve(
            rt,
            l,
            crate::gate_audit::Served {
                audit: audit.clone(),
                session: plan.session.clone(),
                denials: Some(denials.clone()),
                notify,
                hold,
            },
        )?;
    }
    Ok(egress)
}

/// The egress config on the sandbox's sockets, and the gate's audit listener: the listeners it
/// handed over, or (gVisor) the host unix sockets its relay forwards to, served by the same code.
fn egress_sockets(
    plan: &Plan,
    sandbox: &mut dyn RunningSandbox,
    audit: &Arc<AuditLog>,
) -> Result<(EgressConfig, Option<crate::gate_audit::AuditListener>)> {
    use crate::gate_audit::AuditListener;
    if let Some(net) = sandbox.take_listeners() {
        let mut config = EgressConfig::new(net.proxy, plan.net_policy.clone(), audit.clone());
        config.dns_udp = Some(net.dns_udp);
        config.dns_tcp = Some(net.dns_tcp);
        return Ok((config, net.audit.map(AuditListener::Tcp)));
    }
    let relayed = sandbox
        .take_relayed()
        .context("the sandbox did not hand over its network sockets")?;
    let port = plan
        .spec
        .net
        .map_or(super::plan::PROXY_PORT, |n| n.proxy_port);
    let proxy = airlock_net::Listener::Relayed {
        listener: relayed.proxy,
        inside: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let mut config = EgressConfig::new(proxy, plan.net_policy.clone(), audit.clone());
    config.dns_relayed = Some(relayed.dns);
    Ok((config, relayed.audit.map(AuditListener::Relayed)))
}

/// The prefix key's name and byte when the user answers held requests on the terminal airlock
/// owns: approvals on, a foreground session on a terminal (the sandbox has one), and
/// `[approvals] key` not "none" (checked when the policy was loaded).
fn terminal_key(plan: &Plan) -> Option<(String, u8)> {
    if plan.approvals.mode != Some(ApprovalMode::Ask) || plan.detached || plan.spec.tty.is_none() {
        return None;
    }
    let name = plan
        .approvals
        .key
        .clone()
        .unwrap_or_else(|| airlock_policy::config::APPROVAL_KEY_DEFAULT.to_string());
    let byte = airlock_policy::config::approval_key(&name).ok().flatten()?;
    Some((name, byte))
}

/// The session's held requests when `[approvals] mode = "ask"`. A "project" answer writes the
/// user's per-project policy file and re-reads the policy (so the DNS filter follows too).
fn approvals(
    plan: &Plan,
    notices: &NoticeSender,
    notify: Option<Notifier>,
    egress: Arc<OnceLock<Arc<Egress>>>,
    terminal_key: Option<String>,
) -> Option<Arc<Approvals>> {
    if plan.approvals.mode != Some(ApprovalMode::Ask) {
        return None;
    }
    let reload = plan.reload.clone();
    Some(Approvals::new(
        &plan.session,
        crate::policy_load::project_policy_path(&plan.workspace),
        approval_timeout(plan),
        notices.clone(),
        notify,
        Box::new(move || {
            let egress = egress
                .get()
                .ok_or_else(|| anyhow::anyhow!("the egress proxy is not running"))?;
            egress.reload(reload.policy()?);
            Ok(())
        }),
        terminal_key,
    ))
}

fn approval_timeout(plan: &Plan) -> u64 {
    plan.approvals
        .timeout_secs
        .unwrap_or(airlock_policy::config::APPROVAL_TIMEOUT_DEFAULT)
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
/// refuse itself in a loop) and copies them to `denials`, on a thread of their own until the
/// sandbox is gone.
fn audit_unix_refusals(
    refusals: Receiver<UnixRefusal>,
    audit: Arc<AuditLog>,
    session: String,
    denials: SyncSender<AuditEvent>,
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
                let _ = denials.try_send(ev.clone());
                let _ = audit.append_limited(&format!("unix:{}", r.path), &ev);
            }
        })
        .context("cannot start the audit writer for refused unix connects")?;
    Ok(())
}
