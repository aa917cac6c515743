//! `[telemetry]` end to end: a real session exports its audit events to a real OTLP/HTTP
//! receiver on loopback (decoded with opentelemetry-proto types); the sandbox reaches the
//! collector through the proxy on its port only; a dead or hung collector changes nothing for
//! the session. Run as root and again unprivileged by the test script.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bin;
use airlock_test_support::otlp::{black_hole, dead_port, Receiver};
use airlock_test_support::{stdout, Run, RunExt, Workspace};

/// The collector's token: sent by airlock's exporter, never inside the sandbox.
const SECRET: &str = "otlp-secret-3b9f0c2e7d41a6";

/// A workspace with its session store, and a directory for the policy.
struct Env {
    ws: Workspace,
    pol: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            ws: Workspace::new("airlock-otel"),
            pol: tempfile::Builder::new()
                .prefix("airlock-otel-pol-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn policy(&self, endpoint: &str) -> PathBuf {
        let p = self.pol.path().join("policy.toml");
        std::fs::write(
            &p,
            format!(
                "[telemetry]\notlp_endpoint = \"{endpoint}\"\n\
                 headers = {{ \"x-team\" = \"core\", authorization = {{ credential = \"otlp\", value = \"Bearer {{}}\" }} }}\n\
                 [[credentials]]\nname = \"otlp\"\nenv = \"AIRLOCK_TEST_OTLP_TOKEN\"\nhosts = [\"otel.invalid\"]\n"
            ),
        )
        .expect("write policy");
        p
    }

    fn run(&self, policy: &Path, script: &str) -> (Run, Duration) {
        let start = Instant::now();
        let o = self
            .ws
            .command(&bin())
            .env("AIRLOCK_TEST_OTLP_TOKEN", SECRET)
            .args(["run", "--mode", "bind", "--workspace"])
            .arg(self.ws.path())
            .arg("--policy")
            .arg(policy)
            .args(["--", "sh", "-c", script])
            .run();
        (o, start.elapsed())
    }

    /// The audit events of the (only) session, as JSON.
    fn audit(&self) -> Vec<serde_json::Value> {
        let sessions = self.ws.data().join("airlock/sessions");
        let mut out = Vec::new();
        for d in std::fs::read_dir(&sessions).expect("sessions").flatten() {
            let text = std::fs::read_to_string(d.path().join("audit.jsonl")).unwrap_or_default();
            out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
        }
        out
    }
}

/// A denied connection, a denied command (the gate's hook inside), the agent's own export to
/// the collector through the proxy, and a refused other port on the collector's address.
fn script(port: u16, other_port: u16) -> String {
    format!(
        "curl -s -m 5 -o /dev/null -w 'net %{{http_code}}\\n' http://denied.example/; \
         printf '{{\"cwd\":\"%s\",\"hook_event_name\":\"PreToolUse\",\"tool_name\":\"Bash\",\"tool_input\":{{\"command\":\"rm -rf /\"}}}}' \"$PWD\" \
           | /run/airlock/bin/airlock hook claude | grep -o '\"permissionDecision\":\"[a-z]*\"'; \
         echo \"endpoint $OTEL_EXPORTER_OTLP_ENDPOINT prompts $OTEL_LOG_USER_PROMPTS enabled $CLAUDE_CODE_ENABLE_TELEMETRY\"; \
         curl -s -m 5 -o /dev/null -w 'agent %{{http_code}}\\n' -X POST -H 'content-type: application/x-protobuf' --data-binary '' \"$OTEL_EXPORTER_OTLP_ENDPOINT/v1/metrics\"; \
         curl -s -m 5 -o /dev/null -w 'other %{{http_code}}\\n' http://otlp-collector.airlock.internal:{other_port}/; \
         curl -s -m 3 --noproxy '*' -o /dev/null http://127.0.0.1:{port}/v1/metrics || echo direct-refused; \
         echo \"secret-inside $(cat /proc/self/environ /proc/1/environ 2>/dev/null | grep -ac {SECRET})\""
    )
}

#[test]
fn session_events_reach_a_real_collector_and_the_agent_reaches_it_through_the_proxy() {
    let rx = Receiver::start();
    let other = black_hole();
    let env = Env::new();
    let policy = env.policy(&rx.endpoint());
    let (o, _) = env.run(&policy, &script(rx.port(), other));
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "net 403", "{out}");
    assert_eq!(lines[1], "\"permissionDecision\":\"deny\"", "{out}");
    assert_eq!(
        lines[2],
        "endpoint http://otlp-collector.airlock.internal:".to_string()
            + &rx.port().to_string()
            + " prompts 0 enabled 1",
        "{out}"
    );
    assert_eq!(
        lines[3], "agent 200",
        "the agent's export goes through: {out}"
    );
    assert_eq!(
        lines[4], "other 403",
        "only the collector's port is opened: {out}"
    );
    assert_eq!(lines[5], "direct-refused", "{out}");
    assert_eq!(lines[6], "secret-inside 0", "{out}");
    assert_eq!(rx.requests("/v1/metrics"), 1, "{out}");
    // The credential header reached the collector from airlock's exporter.
    assert_eq!(
        rx.last_header("authorization").as_deref(),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(rx.last_header("x-team").as_deref(), Some("core"));

    // The session has ended: its exporter flushed before exit.
    let recs = rx.records();
    let net = recs
        .iter()
        .find(|r| r.event_name == "airlock.net" && r.attr("airlock.host") == "denied.example")
        .unwrap_or_else(|| {
            panic!(
                "no record of the denied connection: {recs:#?}\naudit: {:#?}",
                env.audit()
            )
        });
    assert_eq!(net.attr("airlock.decision"), "deny");
    assert_eq!(net.attr("airlock.agent"), "shell");
    let session = net.attr("airlock.session.id").to_string();
    assert_eq!(session.len(), 8, "{net:?}");
    assert_eq!(
        net.attr("airlock.workspace"),
        std::fs::canonicalize(env.ws.path())
            .expect("canonical")
            .display()
            .to_string()
    );
    let cmd = recs
        .iter()
        .find(|r| r.event_name == "airlock.command")
        .unwrap_or_else(|| panic!("no record of the denied command: {recs:#?}"));
    assert_eq!(cmd.attr("airlock.decision"), "deny");
    assert_eq!(cmd.attr("airlock.command"), "rm -rf /");
    assert_eq!(cmd.attr("airlock.session.id"), session);
    for event in ["started", "exited"] {
        assert!(
            recs.iter().any(|r| r.event_name == "airlock.session"
                && r.attr("airlock.event") == event
                && r.attr("airlock.session.id") == session),
            "no session {event} record: {recs:#?}"
        );
    }
    assert!(
        !env.audit().iter().any(|e| e["kind"] == "telemetry"),
        "nothing was lost"
    );
}

/// With the collector down or hung, the session does the same, as fast, and the audit log says
/// how many events the collector did not get.
#[test]
fn a_dead_or_hung_collector_changes_nothing_for_the_session() {
    let rx = Receiver::start();
    let other = black_hole();
    let baseline = {
        let env = Env::new();
        let policy = env.policy(&rx.endpoint());
        let (o, took) = env.run(&policy, &script(rx.port(), other));
        o.assert_code(0);
        (stdout(&o), took)
    };
    for (what, port) in [("dead", dead_port()), ("hung", black_hole())] {
        let env = Env::new();
        let policy = env.policy(&format!("http://127.0.0.1:{port}"));
        let (o, took) = env.run(&policy, &script(port, other));
        let out = stdout(&o);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{what}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let lines: Vec<&str> = out.lines().collect();
        let base: Vec<&str> = baseline.0.lines().collect();
        // The same decisions; only the agent's own export fails (nothing answers it).
        assert_eq!(lines[0], base[0], "{what}: {out}");
        assert_eq!(lines[1], base[1], "{what}: {out}");
        assert_ne!(lines[3], "agent 200", "{what}: {out}");
        assert!(
            took < baseline.1 + Duration::from_secs(12),
            "{what}: the session took {took:?} against {:?}",
            baseline.1
        );
        let audit = env.audit();
        assert!(
            audit
                .iter()
                .any(|e| e["kind"] == "net" && e["host"] == "denied.example"),
            "{what}: the audit log keeps everything"
        );
        let lost = audit
            .iter()
            .rev()
            .find(|e| e["kind"] == "telemetry")
            .unwrap_or_else(|| panic!("{what}: no telemetry loss event: {audit:#?}"));
        let n = lost["dropped"].as_u64().unwrap_or(0) + lost["failed"].as_u64().unwrap_or(0);
        assert!(n >= 3, "{what}: {lost}");
    }
}

/// Telemetry from the user's config, and the merge (after the session) exported too.
#[test]
fn the_merge_of_a_session_is_exported_as_well() {
    let rx = Receiver::start();
    let env = Env::new();
    let config = env.pol.path().join("config");
    std::fs::create_dir_all(config.join("airlock")).expect("mkdir");
    std::fs::write(
        config.join("airlock/config.toml"),
        format!("[telemetry]\notlp_endpoint = \"{}\"\n", rx.endpoint()),
    )
    .expect("write config");
    let airlock = |args: &[&str]| {
        Command::new(bin())
            .current_dir(env.ws.path())
            .stdin(Stdio::null())
            .env("XDG_DATA_HOME", env.ws.data())
            .env("XDG_CONFIG_HOME", &config)
            .args(args)
            .run()
    };
    let o = airlock(&[
        "run",
        "--name",
        "landme",
        "--",
        "sh",
        "-c",
        "echo x > new.txt",
    ]);
    o.assert_code(0);
    let o = airlock(&["merge", "landme"]);
    o.assert_code(0);
    let merged = rx
        .wait_for(Duration::from_secs(10), |r| {
            r.event_name == "airlock.session" && r.attr("airlock.event") == "merged"
        })
        .unwrap_or_else(|| panic!("no merge record: {:#?}", rx.records()));
    assert_eq!(merged.attr("airlock.agent"), "shell");
    assert!(rx
        .records()
        .iter()
        .any(|r| r.attr("airlock.event") == "exited"
            && r.attr("airlock.session.id") == merged.attr("airlock.session.id")));
}
