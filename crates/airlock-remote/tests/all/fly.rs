//! The Fly Machines engine against a fake Machines API on loopback over TLS (`fake_fly`): the
//! exact requests (paths, methods, `Authorization`, bodies parsed into the API's types), the
//! lifecycle, and every bad input of the issue: no token, a refused token, an app that does not
//! exist, a missing image, a machine that does not start, exec failures. After each failure the
//! fake's own state shows nothing left running and no secret left in the app.

use crate::fake_fly;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_remote::fly::{api, FlyEngine, FlyMode, FlyOptions, Token};
use airlock_remote::{
    BoxLimits, BoxRequest, BoxSecret, BoxSpec, Engine, RemoteError, WorkspaceSource,
};
use fake_fly::{Fake, Start};

const APP: &str = "airlock-test";
const TOKEN: &str = "fo1_testtoken";
const SECRET: &[u8] = b"sk-ant-api03-REALSECRETVALUE";

fn request() -> BoxRequest {
    let policy = airlock_policy::Policy::from_layers(&[]).expect("policy");
    BoxRequest {
        spec: BoxSpec {
            version: airlock_remote::SPEC_VERSION,
            session: "0a1b2c3d".into(),
            name: "fix-bug".into(),
            agent: "claude".into(),
            argv: vec![],
            env: vec![("LANG".into(), "C.UTF-8".into())],
            policy,
            workspace: WorkspaceSource::Upload,
            tty: true,
            stdin: false,
            policy_secrets: Vec::new(),
        },
        image: format!("registry.fly.io/{APP}:v1"),
        secrets: vec![BoxSecret {
            name: "anthropic".into(),
            value: SECRET.to_vec(),
        }],
        limits: BoxLimits {
            cpu_millis: Some(1500),
            ..BoxLimits::default()
        },
    }
}

/// Options pointing every URL at the fake, with no environment and an empty flyctl dir.
fn options(fake: &Fake, token: Option<&str>) -> (FlyOptions, Arc<Mutex<Vec<String>>>) {
    let mut o = FlyOptions::new(APP);
    o.api_url = fake.url();
    o.logs_url = fake.url();
    o.registry_url = fake.url();
    o.token = token.map(|t| Token::new(t, "test"));
    o.env = Arc::new(|_: &str| None);
    o.flyctl_dir = Some(fake.box_dir.path().join("no-flyctl"));
    o.extra_roots = vec![fake.ca.der()];
    o.start_timeout = Duration::from_secs(3);
    o.call_timeout = Duration::from_secs(10);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    o.progress = Arc::new(move |s: &str| l.lock().expect("lines").push(s.to_string()));
    (o, lines)
}

fn fake_with_image() -> Fake {
    let fake = Fake::start(APP, TOKEN);
    fake.with(|s| s.images.insert(format!("{APP}:v1")));
    fake
}

/// Nothing left: no machine in the app, no secret.
fn assert_nothing_left(fake: &Fake) {
    fake.with(|s| {
        assert!(
            s.machines.is_empty(),
            "machines left: {:?}",
            s.machines.keys()
        );
        assert!(s.secrets.is_empty(), "secrets left: {:?}", s.secrets.keys());
    });
}

#[test]
fn render_is_the_create_body_in_the_api_shape_without_the_secret() {
    let engine = FlyEngine::new(FlyOptions::new(APP)).expect("engine");
    let out = engine.render(&request()).expect("render");
    // it parses into the typed request (which refuses fields the API does not document)
    let body: api::CreateMachineRequest = serde_json::from_str(&out).expect("typed");
    assert_eq!(body.name, "airlock-0a1b2c3d");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let c = &v["config"];
    assert_eq!(c["image"], format!("registry.fly.io/{APP}:v1"));
    assert_eq!(c["restart"]["policy"], "no");
    assert_eq!(c["auto_destroy"], true);
    assert_eq!(c["guest"]["cpu_kind"], "shared");
    assert_eq!(c["guest"]["cpus"], 2, "1500 millicores round up");
    assert_eq!(c["guest"]["memory_mb"], 2048);
    assert_eq!(
        c["files"][0]["guest_path"],
        "/run/airlock/secrets/anthropic"
    );
    assert_eq!(c["files"][0]["secret_name"], "AIRLOCK_0A1B2C3D_ANTHROPIC");
    assert_eq!(c["files"][0]["mode"], 256);
    assert!(c["files"][0].get("raw_value").is_none());
    assert_eq!(c["processes"][0]["exec"][0], "/usr/local/bin/airlock");
    assert_eq!(c["processes"][0]["exec"][1], "serve");
    assert_eq!(c["processes"][0]["ignore_app_secrets"], true);
    assert_eq!(c["metadata"]["airlock_session"], "0a1b2c3d");
    let env = c["env"].as_object().expect("env");
    assert_eq!(env.keys().collect::<Vec<_>>(), vec!["AIRLOCK_BOX_SPEC"]);
    let spec: BoxSpec =
        serde_json::from_str(env["AIRLOCK_BOX_SPEC"].as_str().expect("str")).expect("spec");
    assert_eq!(spec, request().spec);
    // the secret is nowhere: not raw, not base64
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
    assert!(
        !out.contains("REALSECRETVALUE") && !out.contains(&b64),
        "{out}"
    );
    // standby keeps the machine
    let mut o = FlyOptions::new(APP);
    o.mode = FlyMode::Standby;
    o.region = Some("ams".into());
    let v: serde_json::Value =
        serde_json::from_str(&FlyEngine::new(o).expect("e").render(&request()).expect("r"))
            .expect("json");
    assert_eq!(v["config"]["auto_destroy"], false);
    assert_eq!(v["region"], "ams");
}

#[test]
fn create_exec_logs_delete_send_the_documented_requests() {
    let fake = fake_with_image();
    let (o, lines) = options(&fake, Some(TOKEN));
    let mut engine = FlyEngine::new(o).expect("engine");
    let at = engine.create(&request()).expect("create");
    let id = fake
        .with(|s| s.machines.keys().next().cloned())
        .expect("machine");
    assert_eq!(at, format!("fly:{APP}/{id}"));

    let seen = fake.seen();
    let calls: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.path.split('?').next().unwrap_or("")))
        .collect();
    let m = format!("/v1/apps/{APP}/machines");
    assert_eq!(
        calls,
        vec![
            format!("GET /v1/apps/{APP}"),
            // No machine of another kind in the app (the secrets are app-wide).
            format!("GET {m}"),
            format!("HEAD /v2/{APP}/manifests/v1"),
            format!("POST /v1/apps/{APP}/secrets/AIRLOCK_0A1B2C3D_ANTHROPIC"),
            format!("POST {m}"),
            format!("GET {m}/{id}/wait"),
            format!("POST {m}/{id}/exec"),
            format!("DELETE /v1/apps/{APP}/secrets/AIRLOCK_0A1B2C3D_ANTHROPIC"),
        ]
    );
    for s in &seen {
        if s.path.starts_with("/v2/") {
            assert!(s
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic ")));
            assert!(s.accept.as_deref().is_some_and(|a| a.contains("manifest")));
        } else {
            assert_eq!(
                s.authorization.as_deref(),
                Some("Bearer fo1_testtoken"),
                "{}",
                s.path
            );
        }
    }
    assert!(seen[5].path.contains("state=started") && seen[5].path.contains("timeout="));
    // the secret went to the secrets endpoint only, base64, and to no other request
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
    let set: api::SetSecretRequest = serde_json::from_slice(&seen[3].body).expect("secret body");
    assert_eq!(set.value, b64);
    for (i, s) in seen.iter().enumerate().filter(|(i, _)| *i != 3) {
        let b = String::from_utf8_lossy(&s.body);
        assert!(
            !b.contains(&b64) && !b.contains("REALSECRETVALUE"),
            "request {i}"
        );
    }
    // the create body is the typed request, asking for the secrets' version just set
    let create: api::CreateMachineRequest = serde_json::from_slice(&seen[4].body).expect("typed");
    assert_eq!(create.min_secrets_version, Some(1));
    assert_eq!(
        create,
        engine.create_request(&request(), Some(1)).expect("same")
    );
    // readiness ran `airlock serve ctl status` under the wrapper
    let exec: api::ExecRequest = serde_json::from_slice(&seen[6].body).expect("exec body");
    assert_eq!(exec.command[0], "/bin/sh");
    assert_eq!(
        exec.command[4..],
        ["/usr/local/bin/airlock", "serve", "ctl", "status"]
    );
    // ephemeral: the app secret is gone once the machine runs
    fake.with(|s| assert!(s.secrets.is_empty()));
    assert!(lines
        .lock()
        .expect("l")
        .iter()
        .any(|l| l.contains(&id) && l.contains("waiting")));

    // exec: binary stdin and stdout survive the endpoint's JSON strings
    let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let o = engine.exec(&at, &["cat".to_string()], &data).expect("exec");
    assert_eq!((o.status, o.stdout), (0, data));
    let o = engine
        .exec(
            &at,
            &["sh".into(), "-c".into(), "echo no >&2; exit 3".into()],
            b"",
        )
        .expect("exec");
    assert_eq!((o.status, o.stderr), (3, b"no\n".to_vec()));

    // logs: all pages, in order
    fake.with(|s| {
        s.logs = (1..=5)
            .map(|i| (format!("2026-11-30T10:00:0{i}Z"), format!("line {i}")))
            .collect()
    });
    let logs =
        String::from_utf8(engine.logs(&at, airlock_remote::MAX_LOGS).expect("logs")).expect("utf8");
    assert_eq!(logs.lines().count(), 5, "{logs}");
    assert!(logs.starts_with("2026-11-30T10:00:01Z line 1\n"));
    let log_req = fake
        .seen()
        .into_iter()
        .rfind(|s| s.path.contains("/logs"))
        .expect("logs");
    assert!(log_req
        .path
        .starts_with(&format!("/api/v1/apps/{APP}/logs?instance={id}")));

    // delete: stop, destroy; a second delete of what is gone is fine
    engine.delete(&at).expect("delete");
    fake.with(|s| assert_eq!(s.destroyed, vec![id.clone()]));
    assert_nothing_left(&fake);
    engine.delete(&at).expect("delete again");
}

/// The machine's log is the box's to choose: over the bound (in many short lines over several
/// pages, or one page whose answer alone is over the page bound) it is refused naming the
/// bound and `fly logs`, and no further page is asked for; at the bound exactly it is read.
#[test]
fn a_log_over_the_bound_is_refused_naming_it() {
    let fake = fake_with_image();
    let (opts, _) = options(&fake, Some(TOKEN));
    let mut engine = FlyEngine::new(opts).expect("engine");
    let at = engine.create(&request()).expect("create");
    let id = at.rsplit('/').next().expect("id").to_string();
    let pages = |fake: &Fake| {
        fake.seen()
            .into_iter()
            .filter(|s| s.path.contains("/logs?"))
            .count()
    };
    // 10 lines of 32 bytes ("2026-11-30T10:00:00Z" + " " + "line-NNNNN" + "\n").
    fake.with(|s| {
        s.logs = (0..10)
            .map(|i| ("2026-11-30T10:00:00Z".to_string(), format!("line-{i:05}")))
            .collect()
    });
    let before = pages(&fake);
    assert_eq!(engine.logs(&at, 320).expect("at the bound").len(), 320);
    // All 5 pages, and a sixth that is empty.
    assert_eq!(pages(&fake) - before, 6);
    for max in [319, 100, 0] {
        let before = pages(&fake);
        let e = engine.logs(&at, max).expect_err("over").to_string();
        assert!(e.starts_with(&format!("fly: machine/{id}:")), "{e}");
        assert!(e.contains(&format!("over {max} bytes")), "{e}");
        assert!(
            e.contains(&format!("fly logs --app {APP} --instance {id} --no-tail")),
            "{e}"
        );
        // Pages of 2 lines (64 bytes): it stopped at the page that went over.
        let asked = pages(&fake) - before;
        assert_eq!(asked as u64, max / 64 + 1, "max {max}: {asked} pages");
    }
    // One page whose answer is over the page bound (4 MiB), however large the total bound.
    fake.with(|s| s.logs = vec![("2026-11-30T10:00:00Z".into(), "y".repeat(5 << 20))]);
    let e = engine
        .logs(&at, airlock_remote::MAX_LOGS)
        .expect_err("page over")
        .to_string();
    assert!(e.starts_with(&format!("fly: app/{APP}:")), "{e}");
    assert!(e.contains("is over 4194304 bytes"), "{e}");
    assert!(e.contains("/api/v1/apps/"), "{e}");
    engine.delete(&at).expect("delete");
    assert_nothing_left(&fake);
}

#[test]
fn standby_keeps_the_secrets_until_delete() {
    let fake = fake_with_image();
    let (mut o, _) = options(&fake, Some(TOKEN));
    o.mode = FlyMode::Standby;
    let mut engine = FlyEngine::new(o).expect("engine");
    let at = engine.create(&request()).expect("create");
    fake.with(|s| assert_eq!(s.secrets.len(), 1));
    let create = fake
        .seen()
        .into_iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/machines"))
        .expect("c");
    let create: api::CreateMachineRequest = serde_json::from_slice(&create.body).expect("t");
    assert!(!create.config.auto_destroy);
    engine.delete(&at).expect("delete");
    assert_nothing_left(&fake);
}

#[test]
fn macaroon_tokens_use_the_flyv1_scheme() {
    let fake = Fake::start(APP, "x");
    fake.with(|s| s.tokens = vec!["FlyV1 fm2_abc,fm2_def".into()]);
    fake.with(|s| s.images.insert(format!("{APP}:v1")));
    let (o, _) = options(&fake, Some("fm2_abc,fm2_def"));
    let mut engine = FlyEngine::new(o).expect("engine");
    engine.create(&request()).expect("create");
    assert_eq!(
        fake.seen()[0].authorization.as_deref(),
        Some("FlyV1 fm2_abc,fm2_def")
    );
}

#[test]
fn no_token_is_an_error_before_any_request() {
    let fake = fake_with_image();
    let (o, _) = options(&fake, None);
    let mut engine = FlyEngine::new(o).expect("engine: lazy, no token needed");
    engine.render(&request()).expect("render needs no token");
    let e = engine.create(&request()).expect_err("no token");
    let m = e.to_string();
    assert!(
        matches!(e, RemoteError::Engine { engine: "fly", .. }),
        "{m}"
    );
    assert!(
        m.contains("FLY_API_TOKEN") && m.contains("fly auth login"),
        "{m}"
    );
    assert!(fake.seen().is_empty());
    // the token from flyctl's config file is used when the environment has none
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("config.yml"),
        format!("access_token: {TOKEN}\n"),
    )
    .expect("w");
    let (mut o, _) = options(&fake, None);
    o.flyctl_dir = Some(dir.path().to_path_buf());
    let mut engine = FlyEngine::new(o).expect("engine");
    engine
        .create(&request())
        .expect("create with flyctl's token");
}

#[test]
fn a_refused_token_names_the_fix_and_creates_nothing() {
    for (token, what) in [("fo1_expired", "expired"), ("", "empty-after-trim")] {
        let fake = fake_with_image();
        let (o, _) = options(&fake, Some(token));
        let mut engine = FlyEngine::new(o).expect("engine");
        let e = engine.create(&request()).expect_err(what);
        let m = e.to_string();
        assert!(
            m.contains("HTTP 401") && m.contains("refused the token"),
            "{what}: {m}"
        );
        assert!(m.contains("fly auth login") && m.contains(APP), "{m}");
        assert!(
            !m.contains("fo1_expired"),
            "the token is never printed: {m}"
        );
        assert_nothing_left(&fake);
        assert_eq!(fake.seen().len(), 1, "stopped at the app check");
    }
}

#[test]
fn an_app_that_does_not_exist_names_the_app_and_fly_apps_create() {
    let fake = fake_with_image();
    let (mut o, _) = options(&fake, Some(TOKEN));
    o.app = "no-such-app".into();
    let mut engine = FlyEngine::new(o).expect("engine");
    let mut req = request();
    req.image = "registry.fly.io/no-such-app:v1".into();
    let e = engine.create(&req).expect_err("no app");
    let m = e.to_string();
    assert!(m.starts_with("fly: app/no-such-app:"), "{m}");
    assert!(m.contains("fly apps create no-such-app"), "{m}");
    assert_eq!(fake.seen().len(), 1);
    assert_nothing_left(&fake);
}

#[test]
fn a_missing_image_gives_the_commands_and_creates_nothing() {
    let fake = Fake::start(APP, TOKEN); // no image in the registry
    let (o, _) = options(&fake, Some(TOKEN));
    let mut engine = FlyEngine::new(o).expect("engine");
    let e = engine.create(&request()).expect_err("no image");
    let m = e.to_string();
    assert!(
        m.contains(&format!("image/registry.fly.io/{APP}:v1")),
        "{m}"
    );
    assert!(
        m.contains("fly deploy --app airlock-test --build-only --push"),
        "{m}"
    );
    assert!(
        m.contains("docker push registry.fly.io/airlock-test:v1"),
        "{m}"
    );
    assert_nothing_left(&fake);
    // an image of another registry is not checked (the machine pulls it)
    let mut req = request();
    req.image = "docker.io/library/debian:12".into();
    engine.create(&req).expect("not checked");
    assert!(!fake.seen().iter().any(|s| s.path.contains("debian")));
}

#[test]
fn the_registry_check_follows_a_bearer_challenge() {
    for present in [true, false] {
        let fake = Fake::start(APP, TOKEN);
        fake.with(|s| {
            s.registry_challenge = true;
            if present {
                s.images.insert(format!("{APP}:v1"));
            }
        });
        let (o, _) = options(&fake, Some(TOKEN));
        let mut engine = FlyEngine::new(o).expect("engine");
        let r = engine.create(&request());
        let seen = fake.seen();
        assert!(seen
            .iter()
            .any(|s| s.path.starts_with("/token?service=registry.test&scope=")));
        assert!(seen
            .iter()
            .any(|s| s.method == "HEAD"
                && s.authorization.as_deref() == Some("Bearer registry-bearer")));
        if present {
            r.expect("image found after the challenge");
        } else {
            assert!(r
                .expect_err("missing")
                .to_string()
                .contains("not in the app's registry"));
            assert_nothing_left(&fake);
        }
    }
}

/// A challenge whose realm is neither the registry's host nor Fly's does not get the token.
#[test]
fn a_challenge_to_a_foreign_realm_gets_no_token() {
    let fake = Fake::start(APP, TOKEN);
    fake.with(|s| {
        s.registry_challenge = true;
        s.registry_realm = format!("https://127.0.0.2:{}", fake.addr.port());
        s.images.insert(format!("{APP}:v1"));
    });
    let (o, _) = options(&fake, Some(TOKEN));
    let mut engine = FlyEngine::new(o).expect("engine");
    let e = engine.create(&request()).expect_err("refused");
    assert!(e.to_string().contains("refused the token"), "{e}");
    assert!(!fake.seen().iter().any(|s| s.path.starts_with("/token")));
    assert_nothing_left(&fake);
}

#[test]
fn a_machine_that_does_not_start_is_destroyed_and_named() {
    for start in [Start::Fails, Start::Hangs] {
        let fake = fake_with_image();
        fake.with(|s| s.start = start);
        let (o, _) = options(&fake, Some(TOKEN));
        let mut engine = FlyEngine::new(o).expect("engine");
        let e = engine.create(&request()).expect_err("no start");
        let id = fake
            .with(|s| s.destroyed.first().cloned())
            .expect("destroyed");
        let m = e.to_string();
        assert!(
            m.starts_with(&format!("fly: machine/{id}:")),
            "{start:?}: {m}"
        );
        assert!(m.contains("destroyed now") && m.contains("fly logs"), "{m}");
        if start == Start::Fails {
            assert!(m.contains("state failed"), "{m}");
        }
        assert_nothing_left(&fake);
        // stop, then a forced destroy
        let seen = fake.seen();
        assert!(seen
            .iter()
            .any(|s| s.method == "POST" && s.path.ends_with(&format!("{id}/stop"))));
        assert!(seen
            .iter()
            .any(|s| s.method == "DELETE" && s.path.ends_with(&format!("{id}?force=true"))));
    }
}

#[test]
fn a_supervisor_that_never_answers_and_exec_failures() {
    // the machine starts but `airlock serve ctl status` fails: destroyed, secrets gone
    let fake = fake_with_image();
    fake.with(|s| s.status_exit = 1);
    let (o, _) = options(&fake, Some(TOKEN));
    let mut engine = FlyEngine::new(o).expect("engine");
    let e = engine.create(&request()).expect_err("no supervisor");
    let m = e.to_string();
    assert!(
        m.contains("ctl status") && m.contains("no supervisor"),
        "{m}"
    );
    assert_nothing_left(&fake);

    // the exec endpoint itself fails (HTTP 500): an error naming the machine, retry hint
    let fake = fake_with_image();
    let (o, _) = options(&fake, Some(TOKEN));
    let mut engine = FlyEngine::new(o).expect("engine");
    let at = engine.create(&request()).expect("create");
    fake.with(|s| s.exec_http_error = Some(500));
    let e = engine
        .exec(&at, &["true".into()], b"")
        .expect_err("exec fails");
    let m = e.to_string();
    assert!(
        m.contains("machine/") && m.contains("HTTP 500") && m.contains("retry"),
        "{m}"
    );
    // exec on a machine that is gone
    fake.with(|s| s.exec_http_error = None);
    engine.delete(&at).expect("delete");
    let e = engine.exec(&at, &["true".into()], b"").expect_err("gone");
    assert!(e.to_string().contains("HTTP 404"), "{e}");
}

#[test]
fn attach_is_refused_with_the_flyctl_command() {
    let fake = fake_with_image();
    let (opts, _) = options(&fake, Some(TOKEN));
    let engine = FlyEngine::new(opts).expect("engine");
    let e = engine
        .exec_tty(
            &format!("fly:{APP}/3d8d413b29d089"),
            &[
                "/usr/local/bin/airlock".into(),
                "serve".into(),
                "ctl".into(),
                "attach".into(),
            ],
            80,
            24,
        )
        .expect_err("no tty");
    let m = e.to_string();
    assert!(m.contains("no interactive exec"), "{m}");
    assert!(
        m.contains("fly ssh console --app airlock-test --machine 3d8d413b29d089 --pty"),
        "{m}"
    );
    assert!(m.contains("POST /v1/apps/APP/machines/ID/exec"), "{m}");
    assert!(m.contains("airlock logs -f"), "{m}");
    // Refused before any request: nothing half-attached is left in the machine.
    assert!(fake.seen().is_empty(), "{:?}", fake.seen());
}

#[test]
fn locations_that_are_not_this_apps_machines_are_refused_before_any_request() {
    let fake = fake_with_image();
    let (o, _) = options(&fake, Some(TOKEN));
    let engine = FlyEngine::new(o).expect("engine");
    for bad in [
        "fly:other-app/3d8d413b29d089",
        "fly:airlock-test/../../apps/x",
        "fly:airlock-test/3d8d?force=true",
        "fly:airlock-test/",
        "k8s:ctx/ns/pod",
        "fly:airlock-test/3d8d/exec",
    ] {
        let e = engine.delete(&bad.to_string()).expect_err(bad);
        assert!(matches!(e, RemoteError::Invalid(_)), "{bad}: {e}");
    }
    assert!(fake.seen().is_empty());
}

#[test]
fn bad_options_are_refused() {
    for (f, what) in [
        (|o: &mut FlyOptions| o.app = "Bad_App".into()) as fn(&mut FlyOptions),
        |o| o.memory_mb = 1000,
        |o| o.cpu_kind = "gpu".into(),
        |o| o.api_url = "http://api.machines.dev".into(),
        |o| o.region = Some("AMS;x".into()),
    ]
    .into_iter()
    .zip(["app", "memory", "cpu_kind", "http", "region"])
    {
        let mut o = FlyOptions::new(APP);
        f(&mut o);
        assert!(FlyEngine::new(o).is_err(), "{what}");
    }
}

/// The engine's calls block; made from inside a tokio runtime (the supervisor's), they run on
/// a thread of their own instead of panicking.
#[test]
fn calls_from_inside_a_tokio_runtime_work() {
    let fake = fake_with_image();
    let (o, _) = options(&fake, Some(TOKEN));
    let mut engine = FlyEngine::new(o).expect("engine");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let at = rt
        .block_on(async { engine.create(&request()) })
        .expect("create");
    rt.block_on(async { engine.delete(&at) }).expect("delete");
    assert_nothing_left(&fake);
}

/// `FlyOptions::resolve`: the flags over `[fly]`, defaults under both; no app is an error that
/// says how to name one.
#[test]
fn options_resolve_flags_over_config() {
    use airlock_policy::config::FlyConfig;
    use airlock_remote::fly::FlyFlags;
    let config = FlyConfig {
        app: Some("from-config".into()),
        region: Some("ams".into()),
        mode: Some(FlyMode::Standby),
        memory_mb: Some(4096),
        cpu_kind: Some("performance".into()),
        ..FlyConfig::default()
    };
    let o = FlyOptions::resolve(&config, &FlyFlags::default()).expect("config");
    assert_eq!(
        (o.app.as_str(), o.region.as_deref()),
        ("from-config", Some("ams"))
    );
    assert_eq!(
        (o.mode, o.memory_mb, o.cpu_kind.as_str()),
        (FlyMode::Standby, 4096, "performance")
    );
    let flags = FlyFlags {
        app: Some("from-flag".into()),
        region: Some("iad".into()),
        mode: Some(FlyMode::Ephemeral),
        image: Some("registry.fly.io/from-flag:x".into()),
    };
    let o = FlyOptions::resolve(&config, &flags).expect("flags");
    assert_eq!(
        (o.app.as_str(), o.region.as_deref()),
        ("from-flag", Some("iad"))
    );
    assert_eq!(o.mode, FlyMode::Ephemeral);
    assert_eq!(o.image.as_deref(), Some("registry.fly.io/from-flag:x"));
    let e = FlyOptions::resolve(&FlyConfig::default(), &FlyFlags::default()).expect_err("no app");
    assert!(
        e.to_string().contains("--fly-app") && e.to_string().contains("[fly] app"),
        "{e}"
    );
    let bad = FlyConfig {
        api_url: Some("http://127.0.0.1:1".into()),
        ..config
    };
    assert!(
        FlyOptions::resolve(&bad, &FlyFlags::default()).is_err(),
        "http api_url"
    );
}

/// X11: a session's credentials become app secrets, which Fly hands every machine of the app
/// as environment variables; an app with a machine airlock did not make (no `airlock_session`
/// metadata, any state but destroyed) is refused before any secret is set. Variants: a running
/// foreign machine, a stopped one; control: a machine of airlock's own does not block.
#[test]
fn an_app_shared_with_other_machines_gets_no_secret() {
    let rendered = FlyEngine::new(FlyOptions::new(APP))
        .expect("engine")
        .render(&request())
        .expect("render");
    let ours: api::CreateMachineRequest = serde_json::from_str(&rendered).expect("typed");
    let mut theirs = ours.clone();
    theirs.name = "web".into();
    theirs.config.metadata.clear();
    for state in ["started", "stopped"] {
        let fake = fake_with_image();
        fake.with(|s| {
            s.machines.insert(
                "m-web".into(),
                fake_fly::Machine {
                    id: "m-web".into(),
                    state: state.into(),
                    request: theirs.clone(),
                },
            )
        });
        let (o, _) = options(&fake, Some(TOKEN));
        let mut engine = FlyEngine::new(o).expect("engine");
        let e = engine.create(&request()).expect_err("refused").to_string();
        assert!(
            e.contains("m-web") && e.contains("fly apps create"),
            "{state}: {e}"
        );
        fake.with(|s| {
            assert!(
                s.secrets.is_empty(),
                "{state}: secrets set: {:?}",
                s.secrets.keys()
            );
            assert_eq!(s.machines.len(), 1, "{state}: a machine was created");
        });
    }
    // Control: another airlock session's machine in the app is not a reason to refuse.
    let fake = fake_with_image();
    let mut other = ours;
    other
        .config
        .metadata
        .insert("airlock_session".into(), "99999999".into());
    fake.with(|s| {
        s.machines.insert(
            "m-other".into(),
            fake_fly::Machine {
                id: "m-other".into(),
                state: "started".into(),
                request: other,
            },
        )
    });
    let (o, _) = options(&fake, Some(TOKEN));
    let mut engine = FlyEngine::new(o).expect("engine");
    let at = engine
        .create(&request())
        .expect("create beside airlock's own machine");
    engine.delete(&at).expect("delete");
}
