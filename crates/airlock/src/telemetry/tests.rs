//! The exporter against a real OTLP/HTTP receiver on loopback, a hung and a dead collector, and
//! the policy and environment the agent's telemetry gets.

use super::*;
use airlock_test_support::otlp::{black_hole, dead_port, Receiver};

fn attrs() -> SessionAttrs {
    SessionAttrs {
        session: "s3ss10n1".into(),
        agent: "claude".into(),
        workspace: "/work/project".into(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn exporter(url: String, cap: usize) -> Telemetry {
    let mut headers = HashMap::new();
    headers.insert("x-team".to_string(), "core".to_string());
    Exporter {
        url,
        headers,
        cap,
        attrs: attrs(),
        roots: Vec::new(),
    }
    .build(runtime())
    .expect("exporter")
}

fn denied_net(host: &str) -> AuditEvent {
    AuditEvent::now(
        Decision::Deny,
        Detail::Net {
            host: host.into(),
            port: 443,
            method: None,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
        },
    )
    .session("s3ss10n1")
    .rule("network.default")
    .reason("not in [network] allow")
}

fn denied_command(cmd: &str) -> AuditEvent {
    AuditEvent::now(
        Decision::Deny,
        Detail::Command {
            tool: "Bash".into(),
            command: Some(cmd.into()),
            cwd: None,
        },
    )
    .session("s3ss10n1")
    .rule("builtin:rm-outside-workspace")
}

fn log_with(t: &Telemetry) -> (tempfile::TempDir, Arc<AuditLog>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(AuditLog::open(dir.path().join("audit.jsonl")).expect("audit"));
    assert!(log.set_sink(t.sink()));
    (dir, log)
}

#[test]
fn audit_events_reach_a_real_collector_with_the_session_attributes() {
    let rx = Receiver::start();
    let t = exporter(format!("{}/v1/logs", rx.endpoint()), 1000);
    let (_dir, log) = log_with(&t);
    log.append(&denied_net("evil.example")).expect("append");
    log.append(&denied_command("rm -rf /")).expect("append");
    let net = rx
        .wait_for(Duration::from_secs(10), |r| r.event_name == "airlock.net")
        .expect("the denied connection reaches the collector");
    assert_eq!(net.attr("airlock.host"), "evil.example");
    assert_eq!(net.attr("airlock.port"), "443");
    assert_eq!(net.attr("airlock.decision"), "deny");
    assert_eq!(net.attr("airlock.rule"), "network.default");
    assert_eq!(net.attr("airlock.session.id"), "s3ss10n1");
    assert_eq!(net.attr("airlock.agent"), "claude");
    assert_eq!(net.attr("airlock.workspace"), "/work/project");
    assert_eq!(net.severity, "WARN");
    assert_eq!(
        net.resource.get("service.name").map(String::as_str),
        Some("airlock")
    );
    assert!(net.body.contains("\"kind\":\"net\""), "{}", net.body);
    let cmd = rx
        .wait_for(Duration::from_secs(10), |r| {
            r.event_name == "airlock.command"
        })
        .expect("the denied command reaches the collector");
    assert_eq!(cmd.attr("airlock.command"), "rm -rf /");
    assert_eq!(cmd.attr("airlock.tool"), "Bash");
    assert_eq!(rx.last_header("x-team").as_deref(), Some("core"));
    assert_eq!(t.finish(&log), (0, 0));
}

/// A collector that hangs (accepts, never answers) or is down: appending stays fast whatever
/// the volume, the session's end waits a bounded time, and the audit log counts what the
/// collector did not get.
#[test]
fn a_hung_or_dead_collector_never_blocks_and_losses_are_counted() {
    for (what, port) in [("hung", black_hole()), ("dead", dead_port())] {
        let t = exporter(format!("http://127.0.0.1:{port}/v1/logs"), 100);
        let (dir, log) = log_with(&t);
        let start = Instant::now();
        for i in 0..5000 {
            log.append(&denied_net(&format!("h{i}.example")))
                .expect("append");
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "{what}: 5000 events took {took:?}: the writer waited for the collector"
        );
        let end = Instant::now();
        let (dropped, failed) = t.finish(&log);
        assert!(
            end.elapsed() < FINISH_TIMEOUT + Duration::from_secs(2),
            "{what}: finish took {:?}",
            end.elapsed()
        );
        assert!(
            dropped >= 4800,
            "{what}: beyond the queue of 100, events are counted as dropped: {dropped}"
        );
        assert_eq!(
            dropped + failed,
            5000,
            "{what}: every event is accounted for"
        );
        let (events, _) = airlock_audit::read_events(dir.path().join("audit.jsonl")).expect("read");
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e.detail, Detail::Net { .. }))
                .count(),
            5000,
            "{what}: the audit log itself loses nothing"
        );
        let last = events
            .iter()
            .rev()
            .find_map(|e| match &e.detail {
                Detail::Telemetry {
                    dropped, failed, ..
                } => Some((*dropped, *failed)),
                _ => None,
            })
            .expect("a telemetry loss event");
        assert_eq!(last, (dropped, failed), "{what}");
    }
}

fn policy(toml: &str) -> Policy {
    let file =
        airlock_policy::ConfigFile::parse(std::path::Path::new("t.toml"), toml).expect("parse");
    Policy::from_layers(&[airlock_policy::Layer {
        source: "t.toml".into(),
        trusted: true,
        config: file,
    }])
    .expect("policy")
}

#[test]
fn a_loopback_collector_is_reached_by_name_through_the_proxy_on_its_port_only() {
    for endpoint in ["http://127.0.0.1:4318", "http://localhost:4318/"] {
        let mut p = policy(&format!("[telemetry]\notlp_endpoint = \"{endpoint}\"\n"));
        allow_collector(&mut p).expect("allow");
        assert_eq!(p.network.allow, vec![COLLECTOR_NAME.to_string()]);
        assert_eq!(
            p.network.resolve.get(COLLECTOR_NAME).map(String::as_str),
            Some("127.0.0.1")
        );
        assert_eq!(p.network.allow_private, vec!["127.0.0.1".to_string()]);
        assert_eq!(p.network.ports.get(COLLECTOR_NAME), Some(&vec![4318]));
        // Again (a reload): nothing doubles.
        allow_collector(&mut p).expect("allow");
        assert_eq!(p.network.allow.len(), 1);
        assert_eq!(p.network.ports.get(COLLECTOR_NAME), Some(&vec![4318]));
        let env = agent_env(&p, "abc").expect("env");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some(format!("http://{COLLECTOR_NAME}:4318").as_str())
        );
        assert_eq!(get("CLAUDE_CODE_ENABLE_TELEMETRY"), Some("1"));
        assert_eq!(get("OTEL_EXPORTER_OTLP_PROTOCOL"), Some("http/protobuf"));
        assert_eq!(get("OTEL_LOG_USER_PROMPTS"), Some("0"));
        assert_eq!(get("OTEL_LOG_TOOL_DETAILS"), Some("0"));
    }
}

#[test]
fn a_named_collector_keeps_the_hosts_other_ports_and_prompts_are_opt_in() {
    let mut p = policy(
        "[network]\nallow = [\"otel.example.com\"]\n[telemetry]\notlp_endpoint = \"https://otel.example.com:4318/otlp\"\n\
         include_prompts = true\nheaders = { \"x-team\" = \"core\", authorization = { credential = \"otlp\", value = \"Bearer {}\" } }\n\
         [[credentials]]\nname = \"otlp\"\nenv = \"AIRLOCK_TEST_OTLP_TOKEN\"\nhosts = [\"otel.example.com\"]\n",
    );
    allow_collector(&mut p).expect("allow");
    assert_eq!(p.network.allow, vec!["otel.example.com".to_string()]);
    assert_eq!(
        p.network.ports.get("otel.example.com"),
        Some(&vec![80, 443, 4318])
    );
    assert!(p.network.allow_private.is_empty());
    let env = agent_env(&p, "abc").expect("env");
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(
        get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        Some("https://otel.example.com:4318/otlp")
    );
    assert_eq!(get("OTEL_LOG_USER_PROMPTS"), Some("1"));
    assert_eq!(get("OTEL_LOG_TOOL_DETAILS"), Some("1"));
    // The credential header is airlock's alone: the agent gets the literal one only.
    assert_eq!(get("OTEL_EXPORTER_OTLP_HEADERS"), Some("x-team=core"));
    let home = tempfile::tempdir().expect("home");
    let err = headers(&p, home.path()).expect_err("unset credential");
    assert!(err.to_string().contains("AIRLOCK_TEST_OTLP_TOKEN"), "{err}");
}

#[test]
fn agent_telemetry_can_be_switched_off_and_nothing_is_allowed_then() {
    let mut p = policy("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nagent = false\n");
    allow_collector(&mut p).expect("allow");
    assert!(p.network.allow.is_empty() && p.network.allow_private.is_empty());
    assert!(agent_env(&p, "abc").expect("env").is_empty());
    let mut none = policy("");
    allow_collector(&mut none).expect("allow");
    assert!(none.network.allow.is_empty());
    assert!(agent_env(&none, "abc").expect("env").is_empty());
}

#[test]
fn bad_endpoints_and_untrusted_files_are_refused() {
    for bad in ["ftp://x:1", "127.0.0.1:4318", "http://"] {
        let text = format!("[telemetry]\notlp_endpoint = \"{bad}\"\n");
        let err = airlock_policy::ConfigFile::parse(std::path::Path::new("t.toml"), &text)
            .expect_err(bad);
        assert!(err.to_string().contains("telemetry.otlp_endpoint"), "{err}");
    }
    let file = airlock_policy::ConfigFile::parse(
        std::path::Path::new("ws/airlock.toml"),
        "[telemetry]\notlp_endpoint = \"http://evil.example:4318\"\n",
    )
    .expect("parse");
    let err = Policy::from_layers(&[airlock_policy::Layer {
        source: "ws/airlock.toml".into(),
        trusted: false,
        config: file,
    }])
    .expect_err("a workspace file may not configure telemetry");
    assert!(err.to_string().contains("telemetry"), "{err}");
}

/// A test CA and a rustls server config for `localhost` signed by it.
fn tls_server() -> (
    rustls::pki_types::CertificateDer<'static>,
    Arc<rustls::ServerConfig>,
) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).expect("ca");
    let issuer = Issuer::new(params, key);
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .expect("config");
    (ca.der().clone(), Arc::new(config))
}

/// An `https://` collector: verified against the roots (`[tls] extra_roots` here); one whose
/// certificate no root vouches for gets nothing, and the loss is counted.
#[test]
fn an_https_collector_is_verified() {
    let (ca, config) = tls_server();
    let rx = Receiver::start_tls(config);
    let url = format!("https://localhost:{}/v1/logs", rx.port());
    let build = |roots| {
        Exporter {
            url: url.clone(),
            headers: HashMap::new(),
            cap: 100,
            attrs: attrs(),
            roots,
        }
        .build(runtime())
        .expect("exporter")
    };
    let untrusting = build(Vec::new());
    let (_d1, log) = log_with(&untrusting);
    log.append(&denied_net("unverified.example"))
        .expect("append");
    let (dropped, failed) = untrusting.finish(&log);
    assert_eq!(dropped + failed, 1, "an unverified collector gets nothing");
    assert!(rx.records().is_empty());
    let trusting = build(vec![ca]);
    let (_d2, log) = log_with(&trusting);
    log.append(&denied_net("verified.example")).expect("append");
    assert_eq!(trusting.finish(&log), (0, 0));
    let r = rx
        .wait_for(Duration::from_secs(5), |r| r.event_name == "airlock.net")
        .expect("record over TLS");
    assert_eq!(r.attr("airlock.host"), "verified.example");
}
