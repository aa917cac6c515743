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
    assert!(
        rules[0].to.is_none(),
        "DNS goes to the cluster's resolver, wherever it is"
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
    // Every private, link-local (metadata service) and loopback range is left out of 80/443.
    let v4: &[&str] = &[
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
    ];
    let v6: &[&str] = &["fc00::/7", "fe80::/10", "::1/128"];
    for (cidr, must) in [("0.0.0.0/0", v4), ("::/0", v6)] {
        let b = blocks.iter().find(|b| b.cidr == cidr).expect(cidr);
        let except = b.except.clone().unwrap_or_default();
        for m in must {
            assert!(
                except.iter().any(|e| e == m),
                "{cidr} does not leave out {m}"
            );
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
