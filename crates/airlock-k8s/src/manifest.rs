//! The Kubernetes resources of one box, built from k8s-openapi types (never from text): a
//! Secret with the supervisor's credentials, a NetworkPolicy that lets the pod reach only the cluster DNS
//! and the web ports, and the Pod itself (or an agent-sandbox `Sandbox` wrapping the same pod
//! spec), and their YAML for `--dry-run`.
//!
//! The pod follows the Pod Security Standard "restricted" profile
//! (<https://kubernetes.io/docs/concepts/security/pod-security-standards/>), checked by
//! [`crate::pss`].

use std::collections::BTreeMap;

use airlock_remote::{layout, BoxLimits, BoxRequest, RemoteError, SPEC_ENV};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use crate::sandbox::{PodMetadata, PodTemplate, Sandbox, SandboxSpec};

/// The label every airlock resource carries (`app.kubernetes.io/managed-by=airlock`).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "airlock");
/// The label naming the session (`airlock.dev/session=ID`); `delete` selects by it.
pub const SESSION_LABEL: &str = "airlock.dev/session";
/// The supervisor's container name (exec and logs address it).
pub const CONTAINER: &str = "airlock";
/// The uid and gid the supervisor runs as (non-root; the agent's user is `airlock serve`'s
/// business inside).
pub const RUN_AS: i64 = 10001;
/// The supervisor's home directory (an emptyDir; the root filesystem is read-only).
pub const HOME: &str = "/home/airlock";
/// Where the writable runtime directory is mounted (the control socket lives here; the secrets
/// are mounted below it at [`layout::SECRETS_DIR`]).
pub const RUN_DIR: &str = "/run/airlock";
/// The Secret volume's file mode (read by the owner only; with `fsGroup` the kubelet adds
/// group read, so the supervisor's gid can read it and nobody else).
pub const SECRET_MODE: i32 = 0o400;

/// Whether the box is a bare Pod or an agent-sandbox `Sandbox` resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// A `Sandbox` when the cluster serves the agent-sandbox CRD (asked by discovery at
    /// create), a Pod otherwise; `render` (no cluster) shows the Pod.
    #[default]
    Auto,
    /// Always a bare Pod.
    Never,
    /// Always a `Sandbox` (create fails when the cluster does not serve the CRD).
    Always,
}

/// The sizes of the box's emptyDir volumes, in bytes (`sizeLimit`; the kubelet evicts a pod
/// that writes more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeSizes {
    /// The supervisor's and agent's home.
    pub home: u64,
    /// `/tmp`.
    pub tmp: u64,
    /// The workspace's lower layer ([`layout::WORKSPACE`]).
    pub workspace: u64,
    /// The session's state (overlay upper layer, audit log; [`layout::STATE_DIR`]).
    pub state: u64,
}

impl Default for VolumeSizes {
    fn default() -> Self {
        VolumeSizes {
            home: 1 << 30,
            tmp: 1 << 30,
            workspace: 10 << 30,
            state: 10 << 30,
        }
    }
}

/// What the manifests depend on besides the request: the pod-level settings of `[k8s]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSettings {
    /// `runtimeClassName` (`gvisor`, `kata`): the sandbox runtime the cluster offers.
    pub runtime_class: Option<String>,
    /// `serviceAccountName`; its token is never mounted (`automountServiceAccountToken: false`).
    pub service_account: Option<String>,
    /// A `Localhost` seccomp profile (path relative to the kubelet's seccomp directory)
    /// instead of `RuntimeDefault`, for runtimes where the native sandbox's user namespaces
    /// need one (docs/k8s.md).
    pub seccomp_localhost: Option<String>,
    /// emptyDir sizes.
    pub sizes: VolumeSizes,
    /// Pod or Sandbox.
    pub sandbox: SandboxMode,
}

/// The resources of one box, in creation order.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    /// Egress to the cluster DNS and 80/443 of public addresses only, no ingress.
    pub network_policy: NetworkPolicy,
    /// The supervisor's credentials.
    pub secret: Secret,
    /// The box itself.
    pub workload: Workload,
}

/// The box itself: a Pod, or a Sandbox whose controller creates the same pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// A bare Pod.
    Pod(Box<Pod>),
    /// An agent-sandbox Sandbox.
    Sandbox(Box<Sandbox>),
}

impl Workload {
    /// The pod spec (of the Pod, or of the Sandbox's template).
    pub fn pod_spec(&self) -> Option<&PodSpec> {
        match self {
            Workload::Pod(p) => p.spec.as_ref(),
            Workload::Sandbox(s) => Some(&s.spec.pod_template.spec),
        }
    }
}

/// The names of a session's resources: the pod (and Sandbox) `airlock-ID`, the NetworkPolicy
/// `airlock-ID`, the Secret `airlock-ID-secrets`.
pub fn pod_name(session: &str) -> String {
    format!("airlock-{session}")
}

/// The Secret's name for `session`.
pub fn secret_name(session: &str) -> String {
    format!("airlock-{session}-secrets")
}

/// The labels of every resource of `session`.
pub fn labels(session: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (SESSION_LABEL.to_string(), session.to_string()),
    ])
}

/// The label selector (`key=value,…`) of `session`'s resources.
pub fn selector(session: &str) -> String {
    format!(
        "{}={},{SESSION_LABEL}={session}",
        MANAGED_BY.0, MANAGED_BY.1
    )
}

/// Builds the resources of `req` in `namespace`; `sandbox` says whether the workload is a
/// Sandbox (the caller resolved [`SandboxMode::Auto`]).
///
/// # Errors
/// [`RemoteError::Invalid`] for a session id or secret name Kubernetes cannot carry, or a
/// spec that does not serialise.
pub fn build(
    req: &BoxRequest,
    namespace: &str,
    settings: &PodSettings,
    sandbox: bool,
) -> Result<Manifests, RemoteError> {
    validate(req)?;
    let session = &req.spec.session;
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels(session)),
        ..ObjectMeta::default()
    };
    let secret = Secret {
        metadata: meta(secret_name(session)),
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some(
            req.secrets
                .iter()
                .map(|s| (s.name.clone(), ByteString(s.value.clone())))
                .collect(),
        ),
        ..Secret::default()
    };
    let network_policy = NetworkPolicy {
        metadata: meta(pod_name(session)),
        spec: Some(network_policy_spec(session)),
    };
    let spec = pod_spec(req, settings)?;
    let workload = if sandbox {
        Workload::Sandbox(Box::new(Sandbox {
            status: None,
            metadata: meta(pod_name(session)),
            spec: SandboxSpec {
                pod_template: PodTemplate {
                    spec,
                    metadata: PodMetadata {
                        labels: labels(session),
                        annotations: BTreeMap::new(),
                    },
                },
                service: Some(false),
                operating_mode: Some("Running".into()),
            },
        }))
    } else {
        Workload::Pod(Box::new(Pod {
            metadata: meta(pod_name(session)),
            spec: Some(spec),
            status: None,
        }))
    };
    Ok(Manifests {
        network_policy,
        secret,
        workload,
    })
}

/// Session ids are 8 hex digits (a DNS label's lower-case alphabet); secret names are
/// `[A-Za-z0-9_-]+` (a Secret key allows `[-._a-zA-Z0-9]+`; a dot-only name would be a
/// path component).
fn validate(req: &BoxRequest) -> Result<(), RemoteError> {
    let s = &req.spec.session;
    if s.is_empty()
        || s.len() > 32
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(RemoteError::Invalid(format!(
            "k8s: session id '{s}' is not lower-case hex (it names the pod)"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for secret in &req.secrets {
        let n = &secret.name;
        if !seen.insert(n) {
            return Err(RemoteError::Invalid(format!(
                "k8s: two secrets named '{n}' (each is a file in {})",
                layout::SECRETS_DIR
            )));
        }
        if n.is_empty()
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(RemoteError::Invalid(format!(
                "k8s: secret name '{n}' is not [A-Za-z0-9_-]+ (it names a file in {})",
                layout::SECRETS_DIR
            )));
        }
    }
    if req.image.trim().is_empty() {
        return Err(RemoteError::Invalid(
            "k8s: no image for the box: set [k8s] image or pass --image".into(),
        ));
    }
    Ok(())
}

/// The address blocks the web rule leaves out of `all` (`0.0.0.0/0` or `::/0`): every block of
/// the proxy's own special-purpose table (`airlock_policy::network::SPECIAL_V4`/`SPECIAL_V6`:
/// private, shared, link-local and the clouds' metadata and platform addresses, loopback,
/// reserved, and the IPv6 blocks that carry an IPv4 address, NAT64 included, left out whole
/// since a NetworkPolicy cannot look inside them), less those inside another listed block.
pub fn excluded(table: &[airlock_policy::network::SpecialRange]) -> Vec<String> {
    let parsed: Vec<(u128, u8, bool, &str)> = table
        .iter()
        .filter_map(|r| {
            let (net, prefix) = r.block.split_once('/')?;
            let prefix: u8 = prefix.parse().ok()?;
            match net.parse::<std::net::IpAddr>().ok()? {
                std::net::IpAddr::V4(v4) => {
                    Some((u128::from(u32::from(v4)) << 96, prefix, false, r.block))
                }
                std::net::IpAddr::V6(v6) => Some((u128::from(v6), prefix, true, r.block)),
            }
        })
        .collect();
    let inside = |(net, prefix, v6, _): &(u128, u8, bool, &str),
                  (onet, oprefix, ov6, _): &(u128, u8, bool, &str)| {
        let mask = |p: u8| {
            if p == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(p))
            }
        };
        v6 == ov6 && oprefix < prefix && net & mask(*oprefix) == onet & mask(*oprefix)
    };
    let mut out: Vec<String> = Vec::new();
    for e in &parsed {
        if !parsed.iter().any(|o| inside(e, o)) && !out.iter().any(|b| b == e.3) {
            out.push(e.3.to_string());
        }
    }
    out
}

fn public(cidr: &str, except: Vec<String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.to_string(),
            except: Some(except),
        }),
        namespace_selector: None,
        pod_selector: None,
    }
}

/// The cluster's DNS: the pods labelled `k8s-app: kube-dns` in `kube-system` (the label CoreDNS
/// and kube-dns carry in kubeadm, GKE, EKS and AKS clusters). DNS to any other address is not
/// allowed, so port 53 is no tunnel to the internet.
fn cluster_dns() -> NetworkPolicyPeer {
    let select = |k: &str, v: &str| LabelSelector {
        match_labels: Some([(k.to_string(), v.to_string())].into_iter().collect()),
        match_expressions: None,
    };
    NetworkPolicyPeer {
        ip_block: None,
        namespace_selector: Some(select("kubernetes.io/metadata.name", "kube-system")),
        pod_selector: Some(select("k8s-app", "kube-dns")),
    }
}

fn network_policy_spec(session: &str) -> NetworkPolicySpec {
    let port = |n: i32, proto: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(n)),
        protocol: Some(proto.to_string()),
        end_port: None,
    };
    NetworkPolicySpec {
        pod_selector: Some(LabelSelector {
            match_labels: Some(labels(session)),
            match_expressions: None,
        }),
        policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
        // No ingress rule: nothing may connect to the box.
        ingress: None,
        egress: Some(vec![
            NetworkPolicyEgressRule {
                ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
                to: Some(vec![cluster_dns()]),
            },
            NetworkPolicyEgressRule {
                ports: Some(vec![port(443, "TCP"), port(80, "TCP")]),
                to: Some(vec![
                    public("0.0.0.0/0", excluded(airlock_policy::network::SPECIAL_V4)),
                    public("::/0", excluded(airlock_policy::network::SPECIAL_V6)),
                ]),
            },
        ]),
    }
}

fn pod_spec(req: &BoxRequest, settings: &PodSettings) -> Result<PodSpec, RemoteError> {
    let spec_json = serde_json::to_string(&req.spec)
        .map_err(|e| RemoteError::Invalid(format!("k8s: the box spec does not serialise: {e}")))?;
    let seccomp = match &settings.seccomp_localhost {
        Some(path) => SeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: Some(path.clone()),
        },
        None => SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        },
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(req.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![layout::AIRLOCK.into(), "serve".into()]),
        env: Some(vec![
            EnvVar {
                name: SPEC_ENV.into(),
                value: Some(spec_json),
                value_from: None,
            },
            EnvVar {
                name: "HOME".into(),
                value: Some(HOME.into()),
                value_from: None,
            },
        ]),
        resources: Some(resources(&req.limits)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(seccomp.clone()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("home", HOME, false),
            mount("tmp", "/tmp", false),
            mount("workspace", layout::WORKSPACE, false),
            mount("state", layout::STATE_DIR, false),
            mount("run", RUN_DIR, false),
            mount("secrets", layout::SECRETS_DIR, true),
        ]),
        stdin: Some(false),
        tty: Some(false),
        ..Container::default()
    };
    let sizes = &settings.sizes;
    Ok(PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        service_account_name: settings.service_account.clone(),
        runtime_class_name: settings.runtime_class.clone(),
        host_network: Some(false),
        host_pid: Some(false),
        host_ipc: Some(false),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(seccomp),
            ..PodSecurityContext::default()
        }),
        volumes: Some(vec![
            empty_dir("home", sizes.home),
            empty_dir("tmp", sizes.tmp),
            empty_dir("workspace", sizes.workspace),
            empty_dir("state", sizes.state),
            // The control socket only: a few bytes.
            // The non-root supervisor keeps its copies of the secrets under /run/airlock
            // (serve.rs `private_dir`): memory-backed, never on the node's disk.
            memory_dir("run", 1 << 20),
            Volume {
                name: "secrets".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret_name(&req.spec.session)),
                    default_mode: Some(SECRET_MODE),
                    optional: Some(false),
                    items: None,
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    })
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str, bytes: u64) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: None,
            size_limit: Some(quantity_bytes(bytes)),
        }),
        ..Volume::default()
    }
}

/// An emptyDir of `medium: Memory` (a tmpfs on the node, counted against the pod's memory)
/// of at most `bytes`: for what must never reach the node's disk.
fn memory_dir(name: &str, bytes: u64) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(quantity_bytes(bytes)),
        }),
        ..Volume::default()
    }
}

/// Requests equal to limits (the Guaranteed QoS class: the box is not the first evicted);
/// what `[limits]` does not set is left to the namespace's LimitRange.
fn resources(limits: &BoxLimits) -> ResourceRequirements {
    let mut map = BTreeMap::new();
    if let Some(m) = limits.memory_bytes {
        map.insert("memory".to_string(), quantity_bytes(m));
    }
    if let Some(c) = limits.cpu_millis {
        map.insert("cpu".to_string(), Quantity(format!("{c}m")));
    }
    if let Some(d) = limits.disk_bytes {
        map.insert("ephemeral-storage".to_string(), quantity_bytes(d));
    }
    let map = (!map.is_empty()).then_some(map);
    ResourceRequirements {
        limits: map.clone(),
        requests: map,
        claims: None,
    }
}

/// A byte count as a Kubernetes quantity, in the largest binary suffix that divides it
/// (`1073741824` → `1Gi`).
pub fn quantity_bytes(bytes: u64) -> Quantity {
    for (shift, suffix) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return Quantity(format!("{}{suffix}", bytes >> shift));
        }
    }
    Quantity(bytes.to_string())
}

/// The YAML of `m`: one document per resource, in creation order (NetworkPolicy, Secret, Pod
/// or Sandbox), each with its `apiVersion` and `kind`. The Secret's values are replaced by
/// `<redacted>` markers of the same key: a dry run never prints a credential.
///
/// # Errors
/// [`RemoteError::Invalid`] when a resource does not serialise (not expected).
pub fn render_yaml(m: &Manifests) -> Result<String, RemoteError> {
    let mut secret = m.secret.clone();
    if let Some(data) = secret.data.take() {
        secret.string_data = Some(
            data.into_keys()
                .map(|k| (k, "<redacted>".to_string()))
                .collect(),
        );
    }
    let docs = [
        doc(&m.network_policy)?,
        doc(&secret)?,
        match &m.workload {
            Workload::Pod(p) => doc(p.as_ref())?,
            Workload::Sandbox(s) => doc(s.as_ref())?,
        },
    ];
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&d);
    }
    Ok(out)
}

fn doc<T: serde::Serialize>(value: &T) -> Result<String, RemoteError> {
    serde_yaml::to_string(value)
        .map_err(|e| RemoteError::Invalid(format!("k8s: a manifest does not serialise: {e}")))
}
