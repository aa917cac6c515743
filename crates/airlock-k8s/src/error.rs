//! Turning kube-rs errors into [`RemoteError`]s that name the engine, the resource, the verb
//! and the fix (a missing namespace, a missing RBAC rule, an expired token, an unreachable
//! API server).

use airlock_remote::RemoteError;

use crate::ENGINE;

/// What a call was doing, for its error: the verb and resource as RBAC spells them, and where.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op<'a> {
    /// The RBAC verb (`create`, `get`, `delete`, `deletecollection`, `patch`).
    pub(crate) verb: &'static str,
    /// The resource (`pods`, `pods/exec`, `secrets`, `networkpolicies`, `sandboxes`).
    pub(crate) resource: &'static str,
    /// The resource's API group (`""` for core).
    pub(crate) group: &'static str,
    /// The object's name, when the call has one.
    pub(crate) name: Option<&'a str>,
    /// The namespace.
    pub(crate) namespace: &'a str,
    /// The kubeconfig context (`in-cluster` inside a pod).
    pub(crate) context: &'a str,
}

impl Op<'_> {
    fn what(&self) -> String {
        match self.name {
            Some(n) => format!("{}/{n}", self.resource),
            None => self.resource.to_string(),
        }
    }
}

/// Maps `e`, from the call `op`, to a [`RemoteError`].
pub(crate) fn map(op: Op<'_>, e: kube::Error) -> RemoteError {
    let ns = op.namespace;
    let ctx = op.context;
    // A websocket upgrade refused (exec) carries only the HTTP status: treat it as the API's.
    let e = match e {
        kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(
            code,
        )) if code.is_client_error() => kube::Error::Api(kube::core::ErrorResponse {
            status: "Failure".into(),
            message: format!("the websocket upgrade was refused with {code}"),
            reason: code.canonical_reason().unwrap_or("").to_string(),
            code: code.as_u16(),
        }),
        other => other,
    };
    match e {
        kube::Error::Api(r) if r.code == 404 && r.message.contains("namespaces") => {
            RemoteError::Resource {
                engine: ENGINE,
                resource: format!("namespace/{ns}"),
                message: format!(
                    "does not exist in context {ctx} ({}): create it (kubectl --context {ctx} \
                     create namespace {ns}) or choose another with --namespace or [k8s] namespace",
                    r.message
                ),
            }
        }
        kube::Error::Api(r) if r.code == 403 => {
            let group = if op.group.is_empty() {
                "\"\"".to_string()
            } else {
                op.group.to_string()
            };
            RemoteError::Engine {
                engine: ENGINE,
                message: format!(
                    "forbidden to {verb} {res} in namespace {ns} (context {ctx}): {msg}; the \
                     account needs a Role in {ns} with the rule {{apiGroups: [{group}], \
                     resources: [{res}], verbs: [{verb}]}} (check with: kubectl --context {ctx} \
                     auth can-i {verb} {res} -n {ns}); docs/k8s.md lists every rule airlock needs",
                    verb = op.verb,
                    res = op.resource,
                    msg = r.message,
                ),
            }
        }
        kube::Error::Api(r) if r.code == 401 => RemoteError::Engine {
            engine: ENGINE,
            message: format!(
                "the API server of context {ctx} rejected the credentials ({}): the token is \
                 missing or expired; log in again (kubectl --context {ctx} get pods shows the \
                 same error until then)",
                r.message
            ),
        },
        kube::Error::Api(r) if r.code == 409 => RemoteError::Resource {
            engine: ENGINE,
            resource: match op.name {
                Some(n) => format!("{}/{n}", singular(op.resource)),
                None => op.resource.to_string(),
            },
            message: format!(
                "already exists in namespace {ns} (context {ctx}): a box of this session is \
                 there already; remove it with `airlock rm` or kubectl --context {ctx} -n {ns} \
                 delete {} {}",
                singular(op.resource),
                op.name.unwrap_or("")
            ),
        },
        kube::Error::Api(r) if r.code == 404 => RemoteError::Resource {
            engine: ENGINE,
            resource: match op.name {
                Some(n) => format!("{}/{n}", singular(op.resource)),
                None => op.resource.to_string(),
            },
            message: format!(
                "does not exist in namespace {ns} (context {ctx}): it was deleted, or the \
                 session's context or namespace changed; `airlock rm` forgets the session ({})",
                r.message
            ),
        },
        kube::Error::Api(r) => RemoteError::Resource {
            engine: ENGINE,
            resource: format!("{}@{ns}", op.what()),
            message: format!(
                "{verb} failed: {} {} ({})",
                r.code,
                r.reason,
                r.message,
                verb = op.verb
            ),
        },
        other => RemoteError::Engine {
            engine: ENGINE,
            message: format!(
                "cannot {} {} in namespace {ns} (context {ctx}): {}; check that the API \
                 server is reachable (kubectl --context {ctx} cluster-info)",
                op.verb,
                op.what(),
                chain(&other)
            ),
        },
    }
}

/// The kind's name as kubectl prints it (`pods/exec` → `pod`).
fn singular(resource: &str) -> &str {
    match resource.split('/').next().unwrap_or(resource) {
        "pods" => "pod",
        "secrets" => "secret",
        "networkpolicies" => "networkpolicy",
        "sandboxes" => "sandbox",
        other => other,
    }
}

/// `e` and its sources, joined with `: `.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Whether `e` is the API's 404 for the object itself (deleting what is gone is fine).
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(r) if r.code == 404)
}
