//! `--dry-run` output: parsed back into the k8s-openapi types and compared with what `create`
//! sends, and checked against the Pod Security Standard "restricted" profile; the checker
//! itself is shown failing on a pod that breaks each control.

use crate::common;

use std::collections::BTreeMap;

use airlock_k8s::manifest::{self, Workload};
use airlock_k8s::sandbox::Sandbox;
use airlock_k8s::{pss, K8sEngine, K8sOptions, PodSettings, SandboxMode};
use airlock_remote::Engine;
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, Container, ContainerPort, EphemeralContainer,
    HostPathVolumeSource, NFSVolumeSource, Pod, PodSpec, SELinuxOptions, SeccompProfile, Secret,
    Sysctl, Volume, WindowsSecurityContextOptions,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;

fn engine(settings: PodSettings) -> K8sEngine {
    K8sEngine::new(K8sOptions {
        namespace: Some("agents".into()),
        // A kubeconfig that does not exist: render must not need one.
        kubeconfig: Some("/nonexistent/kubeconfig".into()),
        pod: settings,
        ..K8sOptions::default()
    })
    .expect("engine")
}

/// Splits the YAML stream into its documents.
fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde_yaml::Value::deserialize(d).expect("a YAML document"))
        .collect()
}

#[test]
fn render_parses_back_into_the_resources_create_sends() {
    let req = common::request();
    let settings = PodSettings {
        runtime_class: Some("gvisor".into()),
        ..PodSettings::default()
    };
    let yaml = engine(settings.clone()).render(&req).expect("render");
    let docs = documents(&yaml);
    assert_eq!(docs.len(), 3, "{yaml}");
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["NetworkPolicy", "Secret", "Pod"]);
    let np: NetworkPolicy = serde_yaml::from_value(docs[0].clone()).expect("NetworkPolicy");
    let secret: Secret = serde_yaml::from_value(docs[1].clone()).expect("Secret");
    let pod: Pod = serde_yaml::from_value(docs[2].clone()).expect("Pod");
    let want = manifest::build(&req, "agents", &settings, false).expect("build");
    assert_eq!(np, want.network_policy);
    let Workload::Pod(want_pod) = &want.workload else {
        panic!("a pod")
    };
    assert_eq!(&pod, want_pod.as_ref());
    // The secret's values never reach the dry run; its keys do.
    assert!(!yaml.contains("sk-ant-test-secret") && !yaml.contains("ghp_test_secret"));
    assert!(secret.data.is_none());
    let keys: Vec<&String> = secret.string_data.as_ref().expect("keys").keys().collect();
    assert_eq!(keys, ["anthropic", "github_token"]);
    assert_eq!(secret.metadata, want.secret.metadata);
    // The same request renders the same text (stable names and order).
    assert_eq!(yaml, engine(settings).render(&req).expect("render"));

    // The fields the issue names, one by one.
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.runtime_class_name.as_deref(), Some("gvisor"));
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.enable_service_links, Some(false));
    let labels = pod.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "airlock");
    assert_eq!(labels["airlock.dev/session"], common::SESSION);
    let c = &spec.containers[0];
    let env = c.env.as_ref().expect("env");
    let spec_env = env
        .iter()
        .find(|e| e.name == "AIRLOCK_BOX_SPEC")
        .expect("AIRLOCK_BOX_SPEC");
    let sent: airlock_remote::BoxSpec =
        serde_json::from_str(spec_env.value.as_deref().expect("value")).expect("spec json");
    assert_eq!(sent, req.spec);
    let limits = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(limits["memory"].0, "4Gi");
    assert_eq!(limits["cpu"].0, "2000m");
    assert_eq!(limits["ephemeral-storage"].0, "20Gi");
    let vols = spec.volumes.as_ref().expect("volumes");
    for name in ["home", "tmp", "workspace", "state"] {
        let v = vols.iter().find(|v| v.name == name).expect(name);
        assert!(
            v.empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.as_ref())
                .is_some(),
            "{name} has no sizeLimit"
        );
    }
    // The non-root supervisor's copies of the secrets live under /run/airlock: memory only.
    let run = vols.iter().find(|v| v.name == "run").expect("run volume");
    assert_eq!(
        run.empty_dir.as_ref().and_then(|e| e.medium.as_deref()),
        Some("Memory"),
        "the run volume holding secret copies must be memory-backed: {run:?}"
    );
    let sv = vols
        .iter()
        .find(|v| v.name == "secrets")
        .expect("secrets volume");
    assert_eq!(sv.secret.as_ref().and_then(|s| s.default_mode), Some(0o400));
    let mounts = c.volume_mounts.as_ref().expect("mounts");
    let sm = mounts
        .iter()
        .find(|m| m.name == "secrets")
        .expect("secret mount");
    assert_eq!(sm.mount_path, "/run/airlock/secrets");
    assert_eq!(sm.read_only, Some(true));
    // Only the supervisor container exists, so only it mounts the secret.
    assert_eq!(spec.containers.len(), 1);
    assert!(spec.init_containers.is_none());

    // The NetworkPolicy: no ingress, egress DNS and 80/443 of public addresses only, selecting
    // this session.
    let nps = np.spec.as_ref().expect("np spec");
    assert_eq!(
        nps.policy_types.as_deref(),
        Some(&["Ingress".to_string(), "Egress".to_string()][..])
    );
    assert!(nps.ingress.is_none());
    let mut ports: Vec<(String, String)> = nps
        .egress
        .iter()
        .flatten()
        .flat_map(|r| r.ports.clone().unwrap_or_default())
        .map(|p| (format!("{:?}", p.port), p.protocol.unwrap_or_default()))
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [
            ("Some(Int(443))".to_string(), "TCP".to_string()),
            ("Some(Int(53))".to_string(), "TCP".to_string()),
            ("Some(Int(53))".to_string(), "UDP".to_string()),
            ("Some(Int(80))".to_string(), "TCP".to_string()),
        ]
    );
    let rules = nps.egress.as_ref().expect("egress");
    // DNS only to the cluster's resolver (kube-system's kube-dns pods), never any address: a
    // port-53 rule without `to` is a TCP tunnel to the whole internet.
    let dns = rules[0].to.as_deref().expect("DNS has a destination");
    assert_eq!(dns.len(), 1, "{dns:?}");
    assert!(dns[0].ip_block.is_none(), "{dns:?}");
    let label = |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
                 k: &str| {
        s.as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|m| m.get(k).cloned())
    };
    assert_eq!(
        label(&dns[0].namespace_selector, "kubernetes.io/metadata.name").as_deref(),
        Some("kube-system")
    );
    assert_eq!(
        label(&dns[0].pod_selector, "k8s-app").as_deref(),
        Some("kube-dns")
    );
    let blocks: Vec<_> = rules[1]
        .to
        .iter()
        .flatten()
        .map(|p| {
            assert!(p.pod_selector.is_none() && p.namespace_selector.is_none());
            p.ip_block.clone().expect("ipBlock")
        })
        .collect();
    assert_eq!(blocks.len(), 2);
    // Every address the proxy refuses is left out of 80/443: each block of its table (first
    // and last address), and by name the ones a cloud hands credentials or a route out from.
    let table = [
        ("0.0.0.0/0", airlock_policy::network::SPECIAL_V4),
        ("::/0", airlock_policy::network::SPECIAL_V6),
    ];
    let must = [
        "10.0.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "100.100.100.200",
        "168.63.129.16",
        "127.0.0.1",
        "0.0.0.1",
        "198.18.0.1",
        "240.0.0.1",
        "fd00:ec2::254",
        "64:ff9b::a00:1",
        "64:ff9b::808:808",
        "64:ff9b:1::1",
        "::ffff:10.0.0.1",
        "2002:a00:1::1",
        "2001::1",
        "fc00::1",
        "fe80::1",
        "::1",
    ];
    for (cidr, specials) in table {
        let b = blocks.iter().find(|b| b.cidr == cidr).expect(cidr);
        let except = b.except.clone().unwrap_or_default();
        let left_out = |ip: u128, v6: bool| except.iter().any(|e| within(ip, v6, e));
        for r in specials {
            let (first, last, v6) = range(r.block);
            assert!(
                left_out(first, v6) && left_out(last, v6),
                "{cidr} does not leave out {} ({})",
                r.block,
                r.kind
            );
        }
        for m in must {
            let ip: std::net::IpAddr = m.parse().expect(m);
            if ip.is_ipv6() == (cidr == "::/0") {
                let (at, v6) = bits(ip);
                assert!(left_out(at, v6), "{cidr} does not leave out {m}");
            }
        }
    }
    assert_eq!(
        nps.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref()),
        pod.metadata.labels.as_ref()
    );
}

#[test]
fn rendered_pods_meet_the_restricted_profile() {
    let req = common::request();
    for settings in [
        PodSettings::default(),
        PodSettings {
            seccomp_localhost: Some("profiles/airlock.json".into()),
            service_account: Some("agent".into()),
            ..PodSettings::default()
        },
        PodSettings {
            sandbox: SandboxMode::Always,
            runtime_class: Some("kata".into()),
            ..PodSettings::default()
        },
    ] {
        let yaml = engine(settings.clone()).render(&req).expect("render");
        let docs = documents(&yaml);
        // Desired state only: a status is the cluster's to write.
        assert!(docs.iter().all(|d| d.get("status").is_none()), "{yaml}");
        let spec: PodSpec = if settings.sandbox == SandboxMode::Always {
            let s: Sandbox = serde_yaml::from_value(docs[2].clone()).expect("Sandbox");
            assert_eq!(
                docs[2]["apiVersion"].as_str(),
                Some("agents.x-k8s.io/v1beta1")
            );
            let want = manifest::build(&req, "agents", &settings, true).expect("build");
            let Workload::Sandbox(w) = &want.workload else {
                panic!("sandbox")
            };
            assert_eq!(&s, w.as_ref());
            assert_eq!(s.spec.service, Some(false));
            s.spec.pod_template.spec
        } else {
            let p: Pod = serde_yaml::from_value(docs[2].clone()).expect("Pod");
            p.spec.expect("spec")
        };
        let v = pss::check(&spec, &BTreeMap::new());
        assert!(v.is_empty(), "{settings:?}: {v:?}");
    }
}

/// A pod that meets the profile, to break one control at a time.
fn good() -> PodSpec {
    let m = manifest::build(&common::request(), "agents", &PodSettings::default(), false)
        .expect("build");
    m.workload.pod_spec().expect("spec").clone()
}

fn sc(spec: &mut PodSpec) -> &mut k8s_openapi::api::core::v1::SecurityContext {
    spec.containers[0]
        .security_context
        .get_or_insert_with(Default::default)
}

fn psc(spec: &mut PodSpec) -> &mut k8s_openapi::api::core::v1::PodSecurityContext {
    spec.security_context.get_or_insert_with(Default::default)
}

#[test]
fn the_checker_fails_a_pod_that_breaks_each_control() {
    assert!(pss::check(&good(), &BTreeMap::new()).is_empty());
    type Break = Box<dyn Fn(&mut PodSpec, &mut BTreeMap<String, String>)>;
    let cases: Vec<(&str, Break)> = vec![
        (
            "HostProcess",
            Box::new(|s, _| {
                psc(s).windows_options = Some(WindowsSecurityContextOptions {
                    host_process: Some(true),
                    ..Default::default()
                })
            }),
        ),
        (
            "HostProcess",
            Box::new(|s, _| {
                sc(s).windows_options = Some(WindowsSecurityContextOptions {
                    host_process: Some(true),
                    ..Default::default()
                })
            }),
        ),
        (
            "Host Namespaces",
            Box::new(|s, _| s.host_network = Some(true)),
        ),
        ("Host Namespaces", Box::new(|s, _| s.host_pid = Some(true))),
        ("Host Namespaces", Box::new(|s, _| s.host_ipc = Some(true))),
        (
            "Privileged Containers",
            Box::new(|s, _| sc(s).privileged = Some(true)),
        ),
        (
            "Privileged Containers",
            Box::new(|s, _| {
                let mut c = s.containers[0].clone();
                c.name = "init".into();
                c.security_context.as_mut().expect("sc").privileged = Some(true);
                s.init_containers = Some(vec![c]);
            }),
        ),
        (
            "Privileged Containers",
            Box::new(|s, _| {
                s.ephemeral_containers = Some(vec![EphemeralContainer {
                    name: "debug".into(),
                    security_context: s.containers[0].security_context.clone().map(|mut c| {
                        c.privileged = Some(true);
                        c
                    }),
                    ..Default::default()
                }]);
            }),
        ),
        (
            "Capabilities",
            Box::new(|s, _| {
                sc(s).capabilities = Some(Capabilities {
                    add: Some(vec!["SYS_ADMIN".into()]),
                    drop: Some(vec!["ALL".into()]),
                })
            }),
        ),
        (
            "Capabilities (restricted)",
            Box::new(|s, _| {
                sc(s).capabilities = Some(Capabilities {
                    add: Some(vec!["CHOWN".into()]),
                    drop: Some(vec!["ALL".into()]),
                })
            }),
        ),
        (
            "Capabilities (restricted)",
            Box::new(|s, _| {
                sc(s).capabilities = Some(Capabilities {
                    add: None,
                    drop: Some(vec!["NET_RAW".into()]),
                })
            }),
        ),
        (
            "Capabilities (restricted)",
            Box::new(|s, _| sc(s).capabilities = None),
        ),
        (
            "HostPath Volumes",
            Box::new(|s, _| {
                s.volumes.get_or_insert_with(Vec::new).push(Volume {
                    name: "host".into(),
                    host_path: Some(HostPathVolumeSource {
                        path: "/".into(),
                        type_: None,
                    }),
                    ..Default::default()
                })
            }),
        ),
        (
            "Host Ports",
            Box::new(|s, _| {
                s.containers[0].ports = Some(vec![ContainerPort {
                    container_port: 8080,
                    host_port: Some(8080),
                    ..Default::default()
                }])
            }),
        ),
        (
            "AppArmor",
            Box::new(|s, _| {
                sc(s).app_armor_profile = Some(AppArmorProfile {
                    type_: "Unconfined".into(),
                    localhost_profile: None,
                })
            }),
        ),
        (
            "AppArmor",
            Box::new(|s, _| {
                psc(s).app_armor_profile = Some(AppArmorProfile {
                    type_: "Unconfined".into(),
                    localhost_profile: None,
                })
            }),
        ),
        (
            "AppArmor",
            Box::new(|_, a| {
                a.insert(
                    "container.apparmor.security.beta.kubernetes.io/airlock".into(),
                    "unconfined".into(),
                );
            }),
        ),
        (
            "SELinux",
            Box::new(|s, _| {
                sc(s).se_linux_options = Some(SELinuxOptions {
                    type_: Some("spc_t".into()),
                    ..Default::default()
                })
            }),
        ),
        (
            "SELinux",
            Box::new(|s, _| {
                psc(s).se_linux_options = Some(SELinuxOptions {
                    user: Some("system_u".into()),
                    ..Default::default()
                })
            }),
        ),
        (
            "SELinux",
            Box::new(|s, _| {
                psc(s).se_linux_options = Some(SELinuxOptions {
                    role: Some("system_r".into()),
                    ..Default::default()
                })
            }),
        ),
        (
            "/proc Mount Type",
            Box::new(|s, _| sc(s).proc_mount = Some("Unmasked".into())),
        ),
        (
            "Seccomp",
            Box::new(|s, _| {
                sc(s).seccomp_profile = Some(SeccompProfile {
                    type_: "Unconfined".into(),
                    localhost_profile: None,
                })
            }),
        ),
        (
            "Seccomp",
            Box::new(|s, _| {
                psc(s).seccomp_profile = Some(SeccompProfile {
                    type_: "Unconfined".into(),
                    localhost_profile: None,
                })
            }),
        ),
        (
            "Seccomp",
            Box::new(|s, _| {
                psc(s).seccomp_profile = None;
                sc(s).seccomp_profile = None;
            }),
        ),
        (
            "Sysctls",
            Box::new(|s, _| {
                psc(s).sysctls = Some(vec![Sysctl {
                    name: "kernel.msgmax".into(),
                    value: "1".into(),
                }])
            }),
        ),
        (
            "Volume Types",
            Box::new(|s, _| {
                s.volumes.get_or_insert_with(Vec::new).push(Volume {
                    name: "nfs".into(),
                    nfs: Some(NFSVolumeSource {
                        server: "nfs.example".into(),
                        path: "/".into(),
                        read_only: None,
                    }),
                    ..Default::default()
                })
            }),
        ),
        (
            "Privilege Escalation",
            Box::new(|s, _| sc(s).allow_privilege_escalation = Some(true)),
        ),
        (
            "Privilege Escalation",
            Box::new(|s, _| sc(s).allow_privilege_escalation = None),
        ),
        (
            "Running as Non-root",
            Box::new(|s, _| psc(s).run_as_non_root = Some(false)),
        ),
        (
            "Running as Non-root",
            Box::new(|s, _| {
                psc(s).run_as_non_root = None;
                sc(s).run_as_non_root = None;
            }),
        ),
        (
            "Running as Non-root",
            Box::new(|s, _| {
                // A second container that does not say so, with the pod level unset.
                psc(s).run_as_non_root = None;
                let mut c: Container = s.containers[0].clone();
                c.name = "sidecar".into();
                c.security_context.as_mut().expect("sc").run_as_non_root = None;
                s.containers.push(c);
            }),
        ),
        (
            "Running as Non-root user",
            Box::new(|s, _| psc(s).run_as_user = Some(0)),
        ),
        (
            "Running as Non-root user",
            Box::new(|s, _| sc(s).run_as_user = Some(0)),
        ),
    ];
    for (i, (control, f)) in cases.iter().enumerate() {
        let mut spec = good();
        let mut annotations = BTreeMap::new();
        f(&mut spec, &mut annotations);
        let v = pss::check(&spec, &annotations);
        assert!(
            v.iter().any(|x| x.control == *control),
            "case {i} ({control}) passed the checker: {v:?}"
        );
    }
}

#[test]
fn bad_requests_are_refused_before_any_call() {
    let e = engine(PodSettings::default());
    for (mutate, want) in [
        (
            Box::new(|r: &mut airlock_remote::BoxRequest| r.secrets[0].name = "../x".into())
                as Box<dyn Fn(&mut airlock_remote::BoxRequest)>,
            "secret name '../x'",
        ),
        (
            Box::new(|r| r.secrets[0].name = String::new()),
            "secret name ''",
        ),
        (
            Box::new(|r| r.secrets[1].name = r.secrets[0].name.clone()),
            "two secrets named 'anthropic'",
        ),
        (
            Box::new(|r| r.spec.session = "UPPER".into()),
            "session id 'UPPER'",
        ),
        (
            Box::new(|r| r.spec.session = "a/b".into()),
            "session id 'a/b'",
        ),
        (Box::new(|r| r.image = " ".into()), "no image"),
    ] {
        let mut req = common::request();
        mutate(&mut req);
        let err = e.render(&req).expect_err(want).to_string();
        assert!(err.contains(want), "{err}");
    }
}

fn bits(ip: std::net::IpAddr) -> (u128, bool) {
    match ip {
        std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, false),
        std::net::IpAddr::V6(v6) => (u128::from(v6), true),
    }
}

fn mask(prefix: u32, v6: bool) -> u128 {
    let p = if v6 { prefix } else { prefix.min(32) };
    if p == 0 {
        0
    } else {
        u128::MAX << (128 - p)
    }
}

/// The first and last address of `block` (IPv4 in the top 32 bits) and whether it is IPv6.
fn range(block: &str) -> (u128, u128, bool) {
    let (net, prefix) = block.split_once('/').expect(block);
    let (net, v6) = bits(net.parse().expect(block));
    let m = mask(prefix.parse().expect(block), v6);
    let last = if v6 {
        net | !m
    } else {
        net | (!m & (u128::MAX << 96))
    };
    (net & m, last, v6)
}

fn within(ip: u128, v6: bool, block: &str) -> bool {
    let (first, last, bv6) = range(block);
    bv6 == v6 && (first..=last).contains(&ip)
}
