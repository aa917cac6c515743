//! A fake Fly Machines API on loopback over TLS (a test CA's certificate), keeping to the
//! documented paths, methods, status codes and JSON (fly.io/docs/machines/api and its OpenAPI
//! document; the logs route of "Logs API options"; the OCI registry's manifest check). It
//! records every request, keeps the app's machines and secrets, and runs exec commands for
//! real in a "box" directory with a stub `airlock` (so the engine's exec wrapper runs as it
//! would in the machine).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_remote::fly::api;
use airlock_test_support::tls::TestCa;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub body: Vec<u8>,
}

/// How a created machine behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// It starts.
    Starts,
    /// It fails (state `failed`).
    Fails,
    /// It stays `starting` (the wait endpoint answers 408).
    Hangs,
}

/// A machine of the fake.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub id: String,
    pub state: String,
    pub request: api::CreateMachineRequest,
}

#[derive(Debug)]
pub(crate) struct State {
    /// `Authorization` values the API accepts.
    pub tokens: Vec<String>,
    pub apps: BTreeSet<String>,
    /// (app, name) -> value.
    pub secrets: BTreeMap<(String, String), String>,
    pub secrets_version: u64,
    pub machines: BTreeMap<String, Machine>,
    pub destroyed: Vec<String>,
    pub seen: Vec<Seen>,
    pub start: Start,
    /// Answer exec with this HTTP status instead of running the command.
    pub exec_http_error: Option<u16>,
    /// The stub `airlock serve ctl status` exits with this status.
    pub status_exit: i32,
    /// Images in the registry: "repo:reference".
    pub images: BTreeSet<String>,
    /// The registry answers Basic with a Bearer challenge (token at `/token`).
    pub registry_challenge: bool,
    /// The fake's own base URL (the challenge's realm).
    pub registry_realm: String,
    /// Log lines of a machine: (timestamp, message).
    pub logs: Vec<(String, String)>,
    next_id: u64,
}

pub(crate) struct Fake {
    pub addr: SocketAddr,
    pub ca: TestCa,
    pub state: Arc<Mutex<State>>,
    pub box_dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl Fake {
    /// A fake with app `app`, accepting `Authorization: Bearer TOKEN`.
    pub(crate) fn start(app: &str, token: &str) -> Fake {
        let ca = TestCa::new("fake fly CA");
        let tls = ca.server_config(&["127.0.0.1"]);
        let box_dir = tempfile::tempdir().expect("box dir");
        let stub = box_dir.path().join("airlock");
        std::fs::write(
            &stub,
            "#!/bin/sh\n\
             if [ \"$1 $2 $3\" = \"serve ctl status\" ]; then\n\
               [ -n \"$FAKE_STATUS_EXIT\" ] && [ \"$FAKE_STATUS_EXIT\" != 0 ] && { echo 'no supervisor' >&2; exit \"$FAKE_STATUS_EXIT\"; }\n\
               echo '{\"session\":\"0a1b2c3d\",\"state\":\"running\",\"exit_status\":null,\"started\":null,\"ended\":null,\"error\":null}'\n\
               exit 0\n\
             fi\n\
             echo \"stub airlock: $*\" >&2; exit 2\n",
        )
        .expect("stub");
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let state = Arc::new(Mutex::new(State {
            tokens: vec![format!("Bearer {token}")],
            apps: [app.to_string()].into_iter().collect(),
            secrets: BTreeMap::new(),
            secrets_version: 0,
            machines: BTreeMap::new(),
            destroyed: Vec::new(),
            seen: Vec::new(),
            start: Start::Starts,
            exec_http_error: None,
            status_exit: 0,
            images: BTreeSet::new(),
            registry_challenge: false,
            registry_realm: String::new(),
            logs: Vec::new(),
            next_id: 0x3d8d_413b_29d0,
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rt");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        state.lock().expect("state").registry_realm = format!("https://{addr}");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let st = state.clone();
        let stub2 = stub.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let st = st.clone();
                let stub = stub2.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        let stub = stub.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, st, stub).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Fake {
            addr,
            ca,
            state,
            box_dir,
            _rt: rt,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("state"))
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.with(|s| s.seen.clone())
    }
}

fn json(status: u16, v: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("response")
}

fn error(status: u16, msg: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({"error": msg, "status": "unknown"}),
    )
}

fn machine_json(m: &Machine) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "name": m.request.name,
        "state": m.state,
        "region": m.request.region.clone().unwrap_or_else(|| "ord".into()),
        "instance_id": "01HEPA330HZ37A78TK080NAK1M",
        "private_ip": "fdaa:ff:ff:a7b:195:e229:8038:2",
        "config": m.request.config,
        "events": [{"type": "launch", "status": if m.state == "failed" { "failed" } else { "created" }, "source": "user", "timestamp": 1699408350300u64}],
        "created_at": "2023-11-08T01:52:30Z",
        "updated_at": "2023-11-08T01:52:30Z",
    })
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    st: Arc<Mutex<State>>,
    stub: PathBuf,
) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header("authorization");
    let accept = header("accept");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let seen = Seen {
        method: method.clone(),
        path: path.clone(),
        authorization: authorization.clone(),
        accept,
        body: body.clone(),
    };
    st.lock().expect("state").seen.push(seen);
    let (p, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
    let q: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let segs: Vec<&str> = p.trim_start_matches('/').split('/').collect();

    // the registry: Basic x:TOKEN, or with the challenge a token from /token
    let basic_ok = {
        let s = st.lock().expect("state");
        s.tokens.iter().any(|t| {
            let bare = t.split_once(' ').map(|x| x.1).unwrap_or(t);
            authorization.as_deref()
                == Some(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("x:{bare}"))
                ))
        })
    };
    let challenge = st.lock().expect("state").registry_challenge;
    if segs.first() == Some(&"token") {
        if !basic_ok || !q.contains_key("scope") || q.get("service") != Some(&"registry.test") {
            return error(401, "unauthorized");
        }
        return json(200, serde_json::json!({"token": "registry-bearer"}));
    }
    if segs.first() == Some(&"v2") {
        let ok = if challenge {
            authorization.as_deref() == Some("Bearer registry-bearer")
        } else {
            basic_ok
        };
        if !ok {
            let host = st.lock().expect("state").registry_realm.clone();
            return Response::builder()
                .status(401)
                .header(
                    "www-authenticate",
                    format!("Bearer realm=\"{host}/token\",service=\"registry.test\",scope=\"repository:x:pull\""),
                )
                .body(Full::new(Bytes::from_static(b"{}")))
                .expect("r");
        }
        if method != "HEAD" || segs.len() < 4 || segs[segs.len() - 2] != "manifests" {
            return error(404, "not found");
        }
        let repo = segs[1..segs.len() - 2].join("/");
        let reference = segs[segs.len() - 1];
        let has = st
            .lock()
            .expect("state")
            .images
            .contains(&format!("{repo}:{reference}"));
        return if has {
            Response::builder()
                .status(200)
                .header("docker-content-digest", "sha256:00")
                .body(Full::new(Bytes::new()))
                .expect("r")
        } else {
            Response::builder()
                .status(404)
                .body(Full::new(Bytes::new()))
                .expect("r")
        };
    }

    {
        let s = st.lock().expect("state");
        if !authorization
            .as_ref()
            .is_some_and(|a| s.tokens.iter().any(|t| t == a))
        {
            return error(401, "token validation error");
        }
    }

    // logs: GET /api/v1/apps/{app}/logs?instance=ID&next_token=T
    if segs.len() == 5
        && segs[0] == "api"
        && segs[1] == "v1"
        && segs[2] == "apps"
        && segs[4] == "logs"
    {
        let s = st.lock().expect("state");
        if !s.apps.contains(segs[3]) {
            return error(404, "app not found");
        }
        let start: usize = q
            .get("next_token")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let page: Vec<_> = s.logs.iter().skip(start).take(2).collect();
        let data: Vec<_> = page
            .iter()
            .map(|(t, m)| serde_json::json!({"id": "x", "type": "logs", "attributes": {"timestamp": t, "message": m, "level": "info", "instance": q.get("instance"), "region": "ord", "meta": {}}}))
            .collect();
        let next = if page.is_empty() {
            start
        } else {
            start + page.len()
        };
        return json(
            200,
            serde_json::json!({"data": data, "meta": {"next_token": next.to_string()}}),
        );
    }

    if segs.len() < 3 || segs[0] != "v1" || segs[1] != "apps" {
        return error(404, "not found");
    }
    let app = segs[2].to_string();
    if !st.lock().expect("state").apps.contains(&app) {
        return error(404, &format!("app {app} not found"));
    }
    let rest: Vec<&str> = segs[3..].to_vec();
    match (method.as_str(), rest.as_slice()) {
        ("GET", []) => json(
            200,
            serde_json::json!({"id": "x", "name": app, "organization": {"slug": "personal"}, "status": "deployed"}),
        ),
        ("GET", ["secrets"]) => {
            let s = st.lock().expect("state");
            let list: Vec<_> = s
                .secrets
                .keys()
                .filter(|(a, _)| *a == app)
                .map(|(_, n)| serde_json::json!({"name": n, "digest": "d"}))
                .collect();
            json(200, serde_json::json!({"secrets": list}))
        }
        ("POST", ["secrets", name]) => {
            let Ok(r) = serde_json::from_slice::<api::SetSecretRequest>(&body) else {
                return error(400, "bad body");
            };
            let mut s = st.lock().expect("state");
            s.secrets_version += 1;
            s.secrets.insert((app, name.to_string()), r.value);
            let v = s.secrets_version;
            json(
                200,
                serde_json::json!({"name": name, "digest": "d", "version": v, "Version": v}),
            )
        }
        ("DELETE", ["secrets", name]) => {
            let mut s = st.lock().expect("state");
            if s.secrets.remove(&(app, name.to_string())).is_none() {
                return error(404, "secret not found");
            }
            s.secrets_version += 1;
            let v = s.secrets_version;
            json(200, serde_json::json!({"version": v}))
        }
        ("POST", ["machines"]) => {
            let r = match serde_json::from_slice::<api::CreateMachineRequest>(&body) {
                Ok(r) => r,
                Err(e) => return error(400, &format!("invalid config: {e}")),
            };
            let mut s = st.lock().expect("state");
            for f in &r.config.files {
                if let Some(n) = &f.secret_name {
                    if !s.secrets.contains_key(&(app.clone(), n.clone())) {
                        return error(400, &format!("secret {n} not found"));
                    }
                }
            }
            s.next_id += 1;
            let id = format!("{:x}", s.next_id);
            let state = match s.start {
                Start::Starts => "started",
                Start::Fails => "failed",
                Start::Hangs => "starting",
            };
            let m = Machine {
                id: id.clone(),
                state: "created".into(),
                request: r,
            };
            let mut out = machine_json(&m);
            out["state"] = "created".into();
            s.machines.insert(
                id.clone(),
                Machine {
                    state: state.into(),
                    ..m
                },
            );
            json(200, out)
        }
        ("GET", ["machines"]) => {
            let s = st.lock().expect("state");
            let all: Vec<serde_json::Value> = s.machines.values().map(machine_json).collect();
            json(200, serde_json::Value::Array(all))
        }
        ("GET", ["machines", id]) => {
            let s = st.lock().expect("state");
            match s.machines.get(*id) {
                Some(m) => json(200, machine_json(m)),
                None => error(404, "machine not found"),
            }
        }
        ("GET", ["machines", id, "wait"]) => {
            let state = st
                .lock()
                .expect("state")
                .machines
                .get(*id)
                .map(|m| m.state.clone());
            match state {
                None => error(404, "machine not found"),
                Some(s) if Some(s.as_str()) == q.get("state").copied() => {
                    json(200, serde_json::json!({"ok": true}))
                }
                Some(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    error(408, "deadline_exceeded: machine did not reach the state")
                }
            }
        }
        ("POST", ["machines", id, "stop"]) => {
            let mut s = st.lock().expect("state");
            match s.machines.get_mut(*id) {
                Some(m) => {
                    m.state = "stopped".into();
                    json(200, serde_json::json!({"ok": true}))
                }
                None => error(404, "machine not found"),
            }
        }
        ("DELETE", ["machines", id]) => {
            let mut s = st.lock().expect("state");
            let force = q.get("force") == Some(&"true");
            match s.machines.get(*id).map(|m| m.state.clone()) {
                None => error(404, "machine not found"),
                Some(state) if state == "started" && !force => {
                    error(412, "unable to destroy machine, not currently stopped")
                }
                Some(_) => {
                    s.machines.remove(*id);
                    s.destroyed.push(id.to_string());
                    json(200, serde_json::json!({"ok": true}))
                }
            }
        }
        ("POST", ["machines", id, "exec"]) => {
            let (state, http_err, status_exit) = {
                let s = st.lock().expect("state");
                (
                    s.machines.get(*id).map(|m| m.state.clone()),
                    s.exec_http_error,
                    s.status_exit,
                )
            };
            match state {
                None => return error(404, "machine not found"),
                Some(s) if s != "started" => return error(412, "machine is not started"),
                Some(_) => {}
            }
            if let Some(code) = http_err {
                return error(code, "exec failed: internal error");
            }
            let Ok(r) = serde_json::from_slice::<api::ExecRequest>(&body) else {
                return error(400, "bad body");
            };
            let out = run_in_box(&r, &stub, status_exit);
            json(200, serde_json::to_value(out).expect("json"))
        }
        _ => error(404, "not found"),
    }
}

/// Runs the exec request's command here, the airlock binary replaced by the stub.
fn run_in_box(r: &api::ExecRequest, stub: &std::path::Path, status_exit: i32) -> api::ExecResponse {
    let mut argv = r.command.clone();
    let wrapped = argv.len() > 4 && argv[0] == "/bin/sh";
    for a in argv.iter_mut().skip(if wrapped { 4 } else { 0 }) {
        if a == "/usr/local/bin/airlock" {
            *a = stub.display().to_string();
        }
    }
    let Some((program, args)) = argv.split_first() else {
        return api::ExecResponse::default();
    };
    let mut child = match Command::new(program)
        .args(args)
        .env("FAKE_STATUS_EXIT", status_exit.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return api::ExecResponse {
                exit_code: 127,
                stderr: format!("exec: {e}"),
                ..api::ExecResponse::default()
            }
        }
    };
    let input = r.stdin.clone().unwrap_or_default();
    let mut stdin = child.stdin.take().expect("stdin");
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let o = child.wait_with_output().expect("wait");
    let _ = w.join();
    api::ExecResponse {
        exit_code: o.status.code().unwrap_or(-1),
        exit_signal: 0,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}
