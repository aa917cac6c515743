//! Creating a box (NetworkPolicy, Secret, Pod or Sandbox; owner references; waiting until
//! `airlock serve` answers), undoing a half-made one, and deleting a session's resources.

use std::time::Instant;

use airlock_remote::{ctl, layout, BoxRequest, BoxState, BoxStatus, RemoteError};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Resource;

use crate::connect::{connect, Conn};
use crate::error::{is_not_found, map, Op};
use crate::manifest::{self, Workload, CONTAINER};
use crate::sandbox::{self, Sandbox};
use crate::{exec, K8sOptions, PodLocation, SandboxMode, DEFAULT_NAMESPACE, ENGINE};

/// Waiting reasons of a container that will not get better by waiting (kubelet's own words).
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
];

/// How long one `ctl status` probe may take (it answers at once when serve is up).
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One resource `create` made, to undo on failure.
#[derive(Debug, Clone)]
enum Made {
    NetworkPolicy(String),
    Secret(String),
    Pod(String),
    Sandbox(String),
}

/// Where the calls go: the connection, the namespace.
struct Ctx<'a> {
    conn: &'a Conn,
    ns: &'a str,
}

impl Ctx<'_> {
    fn op<'b>(
        &'b self,
        verb: &'static str,
        resource: &'static str,
        group: &'static str,
        name: Option<&'b str>,
    ) -> Op<'b> {
        Op {
            verb,
            resource,
            group,
            name,
            namespace: self.ns,
            context: &self.conn.context,
        }
    }
}

/// Creates the box of `req` and waits for it; on failure deletes what it made.
pub(crate) async fn create(
    options: &K8sOptions,
    req: &BoxRequest,
) -> Result<PodLocation, RemoteError> {
    let conn = connect(options.kubeconfig.as_ref(), options.context.as_deref()).await?;
    let ns = options
        .namespace
        .clone()
        .or_else(|| Some(conn.default_namespace.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let cx = Ctx {
        conn: &conn,
        ns: &ns,
    };
    let use_sandbox = match options.pod.sandbox {
        SandboxMode::Never => false,
        SandboxMode::Auto => sandbox_served(&cx).await?,
        SandboxMode::Always => {
            if !sandbox_served(&cx).await? {
                return Err(RemoteError::Resource {
                    engine: ENGINE,
                    resource: format!("crd/{}.{}", sandbox::PLURAL, sandbox::GROUP),
                    message: format!(
                        "context {} does not serve {}/{} sandboxes: install agent-sandbox or \
                         set [k8s] sandbox = \"auto\"",
                        conn.context,
                        sandbox::GROUP,
                        sandbox::VERSION
                    ),
                });
            }
            true
        }
    };
    let m = manifest::build(req, &ns, &options.pod, use_sandbox)?;
    let mut made = Vec::new();
    match create_all(&cx, &m, &mut made, options).await {
        Ok(pod) => Ok(PodLocation {
            context: conn.context.clone(),
            namespace: ns.clone(),
            pod,
        }),
        Err(e) => Err(undo(&cx, &made, e).await),
    }
}

/// Whether the cluster serves the agent-sandbox `sandboxes` resource (discovery: `GET
/// /apis/agents.x-k8s.io/v1beta1`; 404 when the CRD is not installed).
async fn sandbox_served(cx: &Ctx<'_>) -> Result<bool, RemoteError> {
    let gv = format!("{}/{}", sandbox::GROUP, sandbox::VERSION);
    match cx.conn.client.list_api_group_resources(&gv).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == sandbox::PLURAL)),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(map(cx.op("get", "apis/agents.x-k8s.io", "", None), e)),
    }
}

async fn create_all(
    cx: &Ctx<'_>,
    m: &manifest::Manifests,
    made: &mut Vec<Made>,
    options: &K8sOptions,
) -> Result<String, RemoteError> {
    let pp = PostParams::default();
    let client = cx.conn.client.clone();
    let nps: Api<NetworkPolicy> = Api::namespaced(client.clone(), cx.ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), cx.ns);
    let np_name = m.network_policy.metadata.name.clone().unwrap_or_default();
    let secret_name = m.secret.metadata.name.clone().unwrap_or_default();
    // The policy first: it exists before the pod can be scheduled.
    nps.create(&pp, &m.network_policy).await.map_err(|e| {
        map(
            cx.op(
                "create",
                "networkpolicies",
                "networking.k8s.io",
                Some(&np_name),
            ),
            e,
        )
    })?;
    made.push(Made::NetworkPolicy(np_name.clone()));
    secrets
        .create(&pp, &m.secret)
        .await
        .map_err(|e| map(cx.op("create", "secrets", "", Some(&secret_name)), e))?;
    made.push(Made::Secret(secret_name.clone()));
    let (owner, pod_name) = match &m.workload {
        Workload::Pod(p) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), cx.ns);
            let name = p.metadata.name.clone().unwrap_or_default();
            let created = pods
                .create(&pp, p)
                .await
                .map_err(|e| map(cx.op("create", "pods", "", Some(&name)), e))?;
            made.push(Made::Pod(name.clone()));
            (created.controller_owner_ref(&()), name)
        }
        Workload::Sandbox(s) => {
            let sandboxes: Api<Sandbox> = Api::namespaced(client.clone(), cx.ns);
            let name = s.metadata.name.clone().unwrap_or_default();
            let created = sandboxes
                .create(&pp, s)
                .await
                .map_err(|e| map(cx.op("create", "sandboxes", sandbox::GROUP, Some(&name)), e))?;
            made.push(Made::Sandbox(name.clone()));
            (created.controller_owner_ref(&()), name)
        }
    };
    // The owner is the pod (or Sandbox): the garbage collector deletes the Secret and the
    // NetworkPolicy with it, even when someone deletes the pod by hand.
    if let Some(mut owner) = owner {
        // Not the controller (the pod is not a controller), and no blockOwnerDeletion: that
        // needs the owner's finalizers rights under OwnerReferencesPermissionEnforcement.
        owner.controller = None;
        owner.block_owner_deletion = None;
        let patch = Patch::Merge(serde_json::json!({
            "metadata": { "ownerReferences": [owner] }
        }));
        let params = PatchParams::default();
        nps.patch(&np_name, &params, &patch).await.map_err(|e| {
            map(
                cx.op(
                    "patch",
                    "networkpolicies",
                    "networking.k8s.io",
                    Some(&np_name),
                ),
                e,
            )
        })?;
        secrets
            .patch(&secret_name, &params, &patch)
            .await
            .map_err(|e| map(cx.op("patch", "secrets", "", Some(&secret_name)), e))?;
    }
    wait_ready(cx, &pod_name, options).await?;
    Ok(pod_name)
}

/// Polls the pod until it runs and `airlock serve ctl status` answers, with progress on
/// stderr; fails on a pod that cannot start (image pull, config error, crash, a failed or
/// finished phase) or at the deadline.
async fn wait_ready(cx: &Ctx<'_>, name: &str, options: &K8sOptions) -> Result<(), RemoteError> {
    let pods: Api<Pod> = Api::namespaced(cx.conn.client.clone(), cx.ns);
    let deadline = Instant::now() + options.start_timeout;
    let mut last = String::new();
    let status_argv = vec![
        layout::AIRLOCK.to_string(),
        "serve".to_string(),
        "ctl".to_string(),
        ctl::STATUS.to_string(),
    ];
    loop {
        let pod = match pods.get(name).await {
            Ok(p) => Some(p),
            // A Sandbox's controller has not made the pod yet.
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(map(cx.op("get", "pods", "", Some(name)), e)),
        };
        let state = match &pod {
            None => match sandbox_state(cx, name).await {
                Some(why) => {
                    format!("waiting for the Sandbox controller to create the pod ({why})")
                }
                None => "waiting for the Sandbox controller to create the pod".to_string(),
            },
            Some(p) => {
                if let Some(reason) = failure(p) {
                    return Err(RemoteError::Resource {
                        engine: ENGINE,
                        resource: format!("pod/{name}"),
                        message: format!(
                            "failed to start in namespace {}: {reason}; see kubectl \
                             --context {} -n {} describe pod {name}",
                            cx.ns, cx.conn.context, cx.ns
                        ),
                    });
                }
                progress(p)
            }
        };
        if state != last {
            eprintln!("airlock: k8s: pod/{name}: {state}");
            last = state;
        }
        if pod.as_ref().and_then(phase) == Some("Running") {
            let probe = exec::exec(cx.conn, cx.ns, name, &status_argv);
            let out = match tokio::time::timeout(STATUS_TIMEOUT, probe).await {
                // No right to exec, or credentials gone: waiting will not help.
                Ok(Err(e @ RemoteError::Engine { .. })) => return Err(e),
                Ok(other) => other,
                Err(_) => Err(RemoteError::Invalid("status timed out".into())),
            };
            if let Ok(out) = out {
                if out.status == 0 {
                    if let Ok(s) = serde_json::from_slice::<BoxStatus>(&out.stdout) {
                        if s.state == BoxState::Failed {
                            return Err(RemoteError::Resource {
                                engine: ENGINE,
                                resource: format!("pod/{name}"),
                                message: format!(
                                    "airlock serve failed: {}",
                                    s.error.unwrap_or_else(|| "no reason given".into())
                                ),
                            });
                        }
                        eprintln!("airlock: k8s: pod/{name}: airlock serve is up");
                        return Ok(());
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(RemoteError::Resource {
                engine: ENGINE,
                resource: format!("pod/{name}"),
                message: format!(
                    "not ready after {}s (last: {last}); see kubectl --context {} -n {} \
                     describe pod {name}",
                    options.start_timeout.as_secs(),
                    cx.conn.context,
                    cx.ns
                ),
            });
        }
        tokio::time::sleep(options.poll_interval).await;
    }
}

/// Why the Sandbox `name` has no pod yet, from its `Ready` condition (best effort: the
/// deadline still bounds the wait).
async fn sandbox_state(cx: &Ctx<'_>, name: &str) -> Option<String> {
    let api: Api<Sandbox> = Api::namespaced(cx.conn.client.clone(), cx.ns);
    api.get(name).await.ok()?.not_ready()
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Why `p` will never run, if it will not.
fn failure(p: &Pod) -> Option<String> {
    let status = p.status.as_ref()?;
    let phase = status.phase.as_deref().unwrap_or("");
    for c in status.container_statuses.iter().flatten() {
        let Some(state) = &c.state else { continue };
        if let Some(w) = &state.waiting {
            let reason = w.reason.as_deref().unwrap_or("");
            if FATAL_WAITING.contains(&reason) {
                return Some(format!(
                    "container {}: {reason}: {}",
                    c.name,
                    w.message.as_deref().unwrap_or("")
                ));
            }
        }
        if let Some(t) = &state.terminated {
            return Some(format!(
                "container {} exited with {} ({}): {}",
                c.name,
                t.exit_code,
                t.reason.as_deref().unwrap_or(""),
                t.message.as_deref().unwrap_or("")
            ));
        }
    }
    if phase == "Failed" || phase == "Succeeded" {
        return Some(format!(
            "phase {phase}: {} {}",
            status.reason.as_deref().unwrap_or(""),
            status.message.as_deref().unwrap_or("")
        ));
    }
    None
}

/// A one-line description of where `p` is (phase, the reason it waits).
fn progress(p: &Pod) -> String {
    let Some(status) = &p.status else {
        return "accepted".into();
    };
    let mut out = status.phase.clone().unwrap_or_else(|| "Pending".into());
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter(|c| c.name == CONTAINER)
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .next();
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .and_then(|c| c.message.clone());
    if let Some(w) = waiting.or(unscheduled) {
        out.push_str(&format!(" ({w})"));
    }
    out
}

/// Deletes what `create` made (last first), then returns `cause`, with what could not be
/// deleted (and how to delete it by hand) added to its message.
async fn undo(cx: &Ctx<'_>, made: &[Made], cause: RemoteError) -> RemoteError {
    let client = cx.conn.client.clone();
    let dp = DeleteParams::background();
    let mut left = Vec::new();
    for m in made.iter().rev() {
        let (kind, name, result) = match m {
            Made::Pod(n) => {
                let api: Api<Pod> = Api::namespaced(client.clone(), cx.ns);
                ("pod", n, api.delete(n, &dp).await.map(|_| ()))
            }
            Made::Sandbox(n) => {
                let api: Api<Sandbox> = Api::namespaced(client.clone(), cx.ns);
                ("sandbox", n, api.delete(n, &dp).await.map(|_| ()))
            }
            Made::Secret(n) => {
                let api: Api<Secret> = Api::namespaced(client.clone(), cx.ns);
                ("secret", n, api.delete(n, &dp).await.map(|_| ()))
            }
            Made::NetworkPolicy(n) => {
                let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), cx.ns);
                ("networkpolicy", n, api.delete(n, &dp).await.map(|_| ()))
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => left.push(format!(
                "{kind}/{name} ({}; delete it with kubectl --context {} -n {} delete {kind} \
                 {name})",
                crate::error::chain(&e),
                cx.conn.context,
                cx.ns
            )),
        }
    }
    if left.is_empty() {
        return cause;
    }
    let extra = format!("; and could not delete {}", left.join(", "));
    match cause {
        RemoteError::Engine { engine, message } => RemoteError::Engine {
            engine,
            message: message + &extra,
        },
        RemoteError::Resource {
            engine,
            resource,
            message,
        } => RemoteError::Resource {
            engine,
            resource,
            message: message + &extra,
        },
        RemoteError::Invalid(m) => RemoteError::Invalid(m + &extra),
    }
}

/// Deletes every resource of the session whose pod is `pod` (`airlock-ID`): by label, kind by
/// kind (Sandbox when the cluster serves it, Pod, Secret, NetworkPolicy); what is gone is not
/// an error.
pub(crate) async fn delete_session(conn: &Conn, ns: &str, pod: &str) -> Result<(), RemoteError> {
    let session = pod.strip_prefix("airlock-").ok_or_else(|| {
        RemoteError::Invalid(format!(
            "k8s: pod '{pod}' is not an airlock box (airlock-SESSION)"
        ))
    })?;
    let cx = Ctx { conn, ns };
    let lp = ListParams::default().labels(&manifest::selector(session));
    let dp = DeleteParams::background();
    let client = conn.client.clone();
    if sandbox_served(&cx).await? {
        let api: Api<Sandbox> = Api::namespaced(client.clone(), ns);
        api.delete_collection(&dp, &lp).await.map_err(|e| {
            map(
                cx.op("deletecollection", "sandboxes", sandbox::GROUP, None),
                e,
            )
        })?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.delete_collection(&dp, &lp)
        .await
        .map_err(|e| map(cx.op("deletecollection", "pods", "", None), e))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .delete_collection(&dp, &lp)
        .await
        .map_err(|e| map(cx.op("deletecollection", "secrets", "", None), e))?;
    let nps: Api<NetworkPolicy> = Api::namespaced(client, ns);
    nps.delete_collection(&dp, &lp).await.map_err(|e| {
        map(
            cx.op(
                "deletecollection",
                "networkpolicies",
                "networking.k8s.io",
                None,
            ),
            e,
        )
    })?;
    Ok(())
}
