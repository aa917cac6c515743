//! A checker for the Pod Security Standards, "baseline" and "restricted" profiles, control
//! by control, as <https://kubernetes.io/docs/concepts/security/pod-security-standards/>
//! lists them (the policy the `restricted` Pod Security Admission level enforces). kubectl
//! cannot validate without a server, so the tests run every manifest through this.
//!
//! [`check`] returns every violation (not the first): a pod passes when the list is empty.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, SecurityContext};

/// One broken control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The control's name as the standard spells it (`Host Namespaces`, `Capabilities`, …).
    pub control: &'static str,
    /// The offending field (`spec.containers[0].securityContext.privileged`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.control, self.field, self.message)
    }
}

/// Baseline: the capabilities a container may add.
const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
/// Baseline: the "safe" sysctls.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
/// Baseline: the SELinux types a pod may ask for.
const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];
/// The legacy AppArmor annotation's prefix.
const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

/// One container of any kind, as the checks see it.
struct View<'a> {
    path: String,
    sc: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
}

fn containers(spec: &PodSpec) -> Vec<View<'_>> {
    let mut out = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        out.push(View {
            path: format!("spec.containers[{i}]"),
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or(&[]),
        });
    }
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        out.push(View {
            path: format!("spec.initContainers[{i}]"),
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or(&[]),
        });
    }
    for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
        out.push(View {
            path: format!("spec.ephemeralContainers[{i}]"),
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or(&[]),
        });
    }
    out
}

/// Checks `spec` (and the pod's `annotations`, for AppArmor's legacy form) against every
/// control of the baseline and restricted profiles; returns the violations, empty when the
/// pod is "restricted".
pub fn check(spec: &PodSpec, annotations: &BTreeMap<String, String>) -> Vec<Violation> {
    let mut v = Vec::new();
    let cs = containers(spec);
    host_process(spec, &cs, &mut v);
    host_namespaces(spec, &mut v);
    privileged(&cs, &mut v);
    capabilities(&cs, &mut v);
    host_path(spec, &mut v);
    host_ports(&cs, &mut v);
    app_armor(spec, &cs, annotations, &mut v);
    se_linux(spec, &cs, &mut v);
    proc_mount(&cs, &mut v);
    seccomp(spec, &cs, &mut v);
    sysctls(spec, &mut v);
    volume_types(spec, &mut v);
    privilege_escalation(&cs, &mut v);
    run_as_non_root(spec, &cs, &mut v);
    run_as_user(spec, &cs, &mut v);
    v
}

fn push(v: &mut Vec<Violation>, control: &'static str, field: String, message: &str) {
    v.push(Violation {
        control,
        field,
        message: message.to_string(),
    });
}

/// Baseline "HostProcess": Windows host processes are forbidden.
fn host_process(spec: &PodSpec, cs: &[View<'_>], v: &mut Vec<Violation>) {
    let pod = spec
        .security_context
        .as_ref()
        .and_then(|s| s.windows_options.as_ref())
        .and_then(|w| w.host_process);
    if pod == Some(true) {
        push(
            v,
            "HostProcess",
            "spec.securityContext.windowsOptions.hostProcess".into(),
            "must be unset or false",
        );
    }
    for c in cs {
        if c.sc
            .and_then(|s| s.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true)
        {
            push(
                v,
                "HostProcess",
                format!("{}.securityContext.windowsOptions.hostProcess", c.path),
                "must be unset or false",
            );
        }
    }
}

/// Baseline "Host Namespaces": hostNetwork, hostPID, hostIPC unset or false.
fn host_namespaces(spec: &PodSpec, v: &mut Vec<Violation>) {
    for (name, value) in [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ] {
        if value == Some(true) {
            push(
                v,
                "Host Namespaces",
                format!("spec.{name}"),
                "must be unset or false",
            );
        }
    }
}

/// Baseline "Privileged Containers".
fn privileged(cs: &[View<'_>], v: &mut Vec<Violation>) {
    for c in cs {
        if c.sc.and_then(|s| s.privileged) == Some(true) {
            push(
                v,
                "Privileged Containers",
                format!("{}.securityContext.privileged", c.path),
                "must be unset or false",
            );
        }
    }
}

/// Baseline "Capabilities" (add only from the baseline list) and restricted "Capabilities"
/// (drop ALL; add at most NET_BIND_SERVICE).
fn capabilities(cs: &[View<'_>], v: &mut Vec<Violation>) {
    for c in cs {
        let caps = c.sc.and_then(|s| s.capabilities.as_ref());
        let field = format!("{}.securityContext.capabilities", c.path);
        for add in caps.and_then(|k| k.add.as_ref()).into_iter().flatten() {
            if !BASELINE_CAPS.contains(&add.as_str()) {
                push(
                    v,
                    "Capabilities",
                    format!("{field}.add"),
                    &format!("{add} is not in the baseline set"),
                );
            } else if add != "NET_BIND_SERVICE" {
                push(
                    v,
                    "Capabilities (restricted)",
                    format!("{field}.add"),
                    &format!("{add}: only NET_BIND_SERVICE may be added"),
                );
            }
        }
        let drops_all = caps
            .and_then(|k| k.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drops_all {
            push(
                v,
                "Capabilities (restricted)",
                format!("{field}.drop"),
                "must contain ALL",
            );
        }
    }
}

/// Baseline "HostPath Volumes".
fn host_path(spec: &PodSpec, v: &mut Vec<Violation>) {
    for (i, vol) in spec.volumes.iter().flatten().enumerate() {
        if vol.host_path.is_some() {
            push(
                v,
                "HostPath Volumes",
                format!("spec.volumes[{i}].hostPath"),
                "is forbidden",
            );
        }
    }
}

/// Baseline "Host Ports".
fn host_ports(cs: &[View<'_>], v: &mut Vec<Violation>) {
    for c in cs {
        for (i, p) in c.ports.iter().enumerate() {
            if p.host_port.unwrap_or(0) != 0 {
                push(
                    v,
                    "Host Ports",
                    format!("{}.ports[{i}].hostPort", c.path),
                    "must be unset or 0",
                );
            }
        }
    }
}

/// Baseline "AppArmor": the profile is unset, RuntimeDefault or Localhost (field and legacy
/// annotation).
fn app_armor(
    spec: &PodSpec,
    cs: &[View<'_>],
    annotations: &BTreeMap<String, String>,
    v: &mut Vec<Violation>,
) {
    let ok = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    if let Some(p) = spec
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.as_ref())
    {
        if !ok(&p.type_) {
            push(
                v,
                "AppArmor",
                "spec.securityContext.appArmorProfile.type".into(),
                "must be RuntimeDefault or Localhost",
            );
        }
    }
    for c in cs {
        if let Some(p) = c.sc.and_then(|s| s.app_armor_profile.as_ref()) {
            if !ok(&p.type_) {
                push(
                    v,
                    "AppArmor",
                    format!("{}.securityContext.appArmorProfile.type", c.path),
                    "must be RuntimeDefault or Localhost",
                );
            }
        }
    }
    for (k, val) in annotations {
        if k.starts_with(APPARMOR_ANNOTATION)
            && val != "runtime/default"
            && !val.starts_with("localhost/")
        {
            push(
                v,
                "AppArmor",
                format!("metadata.annotations[{k}]"),
                "must be runtime/default or localhost/*",
            );
        }
    }
}

/// Baseline "SELinux": type from the allowed set, user and role unset.
fn se_linux(spec: &PodSpec, cs: &[View<'_>], v: &mut Vec<Violation>) {
    let mut all = vec![(
        "spec.securityContext".to_string(),
        spec.security_context
            .as_ref()
            .and_then(|s| s.se_linux_options.as_ref()),
    )];
    for c in cs {
        all.push((
            format!("{}.securityContext", c.path),
            c.sc.and_then(|s| s.se_linux_options.as_ref()),
        ));
    }
    for (path, opts) in all {
        let Some(o) = opts else { continue };
        if !SELINUX_TYPES.contains(&o.type_.as_deref().unwrap_or("")) {
            push(
                v,
                "SELinux",
                format!("{path}.seLinuxOptions.type"),
                "must be unset or a container_* type",
            );
        }
        if o.user.as_deref().is_some_and(|u| !u.is_empty()) {
            push(
                v,
                "SELinux",
                format!("{path}.seLinuxOptions.user"),
                "must be unset",
            );
        }
        if o.role.as_deref().is_some_and(|r| !r.is_empty()) {
            push(
                v,
                "SELinux",
                format!("{path}.seLinuxOptions.role"),
                "must be unset",
            );
        }
    }
}

/// Baseline "/proc Mount Type".
fn proc_mount(cs: &[View<'_>], v: &mut Vec<Violation>) {
    for c in cs {
        if let Some(m) = c.sc.and_then(|s| s.proc_mount.as_deref()) {
            if m != "Default" {
                push(
                    v,
                    "/proc Mount Type",
                    format!("{}.securityContext.procMount", c.path),
                    "must be unset or Default",
                );
            }
        }
    }
}

/// Baseline "Seccomp" (never Unconfined) and restricted "Seccomp" (RuntimeDefault or
/// Localhost, at the pod level or on every container).
fn seccomp(spec: &PodSpec, cs: &[View<'_>], v: &mut Vec<Violation>) {
    let ok = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let pod = spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    if let Some(t) = pod {
        if !ok(t) {
            push(
                v,
                "Seccomp",
                "spec.securityContext.seccompProfile.type".into(),
                "must be RuntimeDefault or Localhost",
            );
        }
    }
    for c in cs {
        let field = format!("{}.securityContext.seccompProfile.type", c.path);
        match c.sc.and_then(|s| s.seccomp_profile.as_ref()) {
            Some(p) if !ok(&p.type_) => {
                push(v, "Seccomp", field, "must be RuntimeDefault or Localhost");
            }
            None if pod.is_none() => {
                push(v, "Seccomp", field, "must be set here or at the pod level");
            }
            _ => {}
        }
    }
}

/// Baseline "Sysctls": only the safe set.
fn sysctls(spec: &PodSpec, v: &mut Vec<Violation>) {
    let list = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref());
    for (i, s) in list.into_iter().flatten().enumerate() {
        if !SAFE_SYSCTLS.contains(&s.name.as_str()) {
            push(
                v,
                "Sysctls",
                format!("spec.securityContext.sysctls[{i}]"),
                &format!("{} is not a safe sysctl", s.name),
            );
        }
    }
}

/// Restricted "Volume Types": configMap, csi, downwardAPI, emptyDir, ephemeral,
/// persistentVolumeClaim, projected, secret only.
fn volume_types(spec: &PodSpec, v: &mut Vec<Violation>) {
    for (i, vol) in spec.volumes.iter().flatten().enumerate() {
        let allowed = vol.config_map.is_some()
            || vol.csi.is_some()
            || vol.downward_api.is_some()
            || vol.empty_dir.is_some()
            || vol.ephemeral.is_some()
            || vol.persistent_volume_claim.is_some()
            || vol.projected.is_some()
            || vol.secret.is_some();
        // Exactly one source is set; any other kind makes it disallowed.
        let value = serde_json::to_value(vol).unwrap_or_default();
        let sources = value.as_object().map_or(0, |o| o.len().saturating_sub(1));
        if !allowed || sources != 1 {
            push(
                v,
                "Volume Types",
                format!("spec.volumes[{i}]"),
                &format!("'{}' is not of an allowed volume type", vol.name),
            );
        }
    }
}

/// Restricted "Privilege Escalation": allowPrivilegeEscalation false on every container.
fn privilege_escalation(cs: &[View<'_>], v: &mut Vec<Violation>) {
    for c in cs {
        if c.sc.and_then(|s| s.allow_privilege_escalation) != Some(false) {
            push(
                v,
                "Privilege Escalation",
                format!("{}.securityContext.allowPrivilegeEscalation", c.path),
                "must be false",
            );
        }
    }
}

/// Restricted "Running as Non-root": runAsNonRoot true at the pod level or on every
/// container, and false nowhere.
fn run_as_non_root(spec: &PodSpec, cs: &[View<'_>], v: &mut Vec<Violation>) {
    let pod = spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root);
    if pod == Some(false) {
        push(
            v,
            "Running as Non-root",
            "spec.securityContext.runAsNonRoot".into(),
            "must be true",
        );
    }
    for c in cs {
        let own = c.sc.and_then(|s| s.run_as_non_root);
        if own == Some(false) || (own.is_none() && pod != Some(true)) {
            push(
                v,
                "Running as Non-root",
                format!("{}.securityContext.runAsNonRoot", c.path),
                "must be true (here or at the pod level)",
            );
        }
    }
}

/// Restricted "Running as Non-root user": runAsUser is never 0.
fn run_as_user(spec: &PodSpec, cs: &[View<'_>], v: &mut Vec<Violation>) {
    if spec.security_context.as_ref().and_then(|s| s.run_as_user) == Some(0) {
        push(
            v,
            "Running as Non-root user",
            "spec.securityContext.runAsUser".into(),
            "must not be 0",
        );
    }
    for c in cs {
        if c.sc.and_then(|s| s.run_as_user) == Some(0) {
            push(
                v,
                "Running as Non-root user",
                format!("{}.securityContext.runAsUser", c.path),
                "must not be 0",
            );
        }
    }
}
