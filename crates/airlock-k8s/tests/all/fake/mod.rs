//! A fake Kubernetes API server on loopback, over real TLS (a test CA), that follows the
//! documented API for exactly the calls the engine makes: create/get/patch/delete of pods,
//! secrets, networkpolicies and agent-sandbox sandboxes, delete by label, discovery of the
//! agent-sandbox group, `pods/log`, and `pods/exec` over a websocket (`v5.channel.k8s.io` /
//! `v4.channel.k8s.io`: one binary message per frame, first byte the channel). It records every
//! request and keeps the objects, so a test asserts both what was asked and what is left.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use airlock_test_support::tls::TestCa;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The token of the user with every right.
pub const GOOD_TOKEN: &str = "good-token";
/// The token of the user that may not create pods.
pub const WEAK_TOKEN: &str = "weak-token";

/// How the pod behaves once created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodScenario {
    /// Running at once, `airlock serve` answers.
    Running,
    /// Its image cannot be pulled.
    ImagePullBackOff,
    /// The kubelet rejected it (phase Failed).
    Failed,
    /// Pending forever (unschedulable).
    Pending,
}

/// What the fake cluster looks like.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Namespaces that exist.
    pub namespaces: Vec<String>,
    /// Whether `agents.x-k8s.io/v1beta1` serves `sandboxes`.
    pub sandbox_crd: bool,
    /// The pod's fate.
    pub pod: PodScenario,
    /// The websocket subprotocol the exec endpoint picks.
    pub protocol: &'static str,
    /// (verb, resource) the weak token may not do.
    pub weak_forbidden: Vec<(&'static str, &'static str)>,
    /// The agent-sandbox controller cannot make the pod: its Ready condition's message.
    pub controller_error: Option<&'static str>,
    /// The supervisor container's log (`pods/log`).
    pub log: Vec<u8>,
    /// Whether `pods/log` ignores `limitBytes` (a server that sends the whole log anyway).
    pub log_ignores_limit: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            namespaces: vec!["agents".into(), "default".into()],
            sandbox_crd: false,
            pod: PodScenario::Running,
            protocol: "v5.channel.k8s.io",
            weak_forbidden: vec![("create", "pods")],
            controller_error: None,
            log: b"airlock serve: listening on /run/airlock/serve.sock\n".to_vec(),
            log_ignores_limit: false,
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path.
    pub path: String,
    /// The query's pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// The request's Content-Type.
    pub content_type: Option<String>,
}

#[derive(Debug, Default)]
pub struct State {
    pub seen: Mutex<Vec<Seen>>,
    /// Objects by their path (`/api/v1/namespaces/agents/pods/NAME`).
    pub objects: Mutex<BTreeMap<String, Value>>,
    /// Terminal sizes received on channel 4, in order.
    pub resizes: Mutex<Vec<(u64, u64)>>,
    /// Per `export SHAPE` exec: bytes of standard output sent, and whether the client went
    /// away before the shape's end (its websocket closed or failed).
    pub exports: Mutex<Vec<(u64, bool)>>,
    pub scenario: Mutex<Option<Scenario>>,
    next_uid: Mutex<u64>,
}

/// The running fake and its kubeconfig.
pub struct FakeApi {
    pub state: Arc<State>,
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl FakeApi {
    /// Starts the fake with `scenario` and writes a kubeconfig with the contexts `fake` (the
    /// current one; namespace `agents`, the good token) and `weak` (the weak token).
    pub fn start(scenario: Scenario) -> FakeApi {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let ca = TestCa::new("fake kube-apiserver CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).expect("ca");
        let state = Arc::new(State::default());
        *state.scenario.lock().expect("lock") = Some(scenario);
        let config = ca.server_config(&["127.0.0.1"]);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let st = state.clone();
        rt.spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  \
                 cluster:\n    server: https://{addr}\n    certificate-authority: {}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: good\n    \
                 namespace: agents\n- name: weak\n  context:\n    cluster: fake\n    user: weak\n    \
                 namespace: agents\nusers:\n- name: good\n  user:\n    token: {GOOD_TOKEN}\n\
                 - name: weak\n  user:\n    token: {WEAK_TOKEN}\n",
                ca_path.display()
            ),
        )
        .expect("kubeconfig");
        FakeApi {
            state,
            addr,
            kubeconfig,
            _dir: dir,
            _rt: rt,
        }
    }

    /// The requests so far as `METHOD PATH`.
    pub fn calls(&self) -> Vec<String> {
        self.state
            .seen
            .lock()
            .expect("lock")
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    /// The requests so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// The paths of the objects that exist.
    pub fn objects(&self) -> Vec<String> {
        self.state
            .objects
            .lock()
            .expect("lock")
            .keys()
            .cloned()
            .collect()
    }

    /// The object at `path`.
    pub fn object(&self, path: &str) -> Option<Value> {
        self.state.objects.lock().expect("lock").get(path).cloned()
    }
}

fn scenario(st: &State) -> Scenario {
    st.scenario.lock().expect("lock").clone().expect("scenario")
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("utf-8")
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn reply(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn status(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        StatusCode::from_u16(code).expect("code"),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// The resource path's parts: (collection path, namespace, resource, name, subresource).
struct Target {
    collection: String,
    ns: String,
    resource: String,
    name: Option<String>,
    sub: Option<String>,
}

fn target(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match *parts.first()? {
        "api" => (parts[..2].join("/"), &parts[2..]),
        "apis" => (parts[..3].join("/"), &parts[3..]),
        _ => return None,
    };
    if rest.first()? != &"namespaces" || rest.len() < 3 {
        return None;
    }
    Some(Target {
        collection: format!("/{prefix}/namespaces/{}/{}", rest[1], rest[2]),
        ns: rest[1].to_string(),
        resource: rest[2].to_string(),
        name: rest.get(3).map(|s| s.to_string()),
        sub: rest.get(4).map(|s| s.to_string()),
    })
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let token = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let is_upgrade = req.headers().contains_key("sec-websocket-key");
    if is_upgrade {
        st.seen.lock().expect("lock").push(Seen {
            method,
            path: path.clone(),
            query: query.clone(),
            body: None,
            content_type,
        });
        return upgrade(st, req, &path, query, &token);
    }
    let body = req.into_body().collect().await.expect("body").to_bytes();
    let body: Option<Value> =
        (!body.is_empty()).then(|| serde_json::from_slice(&body).expect("json body"));
    st.seen.lock().expect("lock").push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        body: body.clone(),
        content_type: content_type.clone(),
    });
    // The API takes JSON for create and a merge patch (RFC 7386) as the engine sends it.
    let want_type = match method.as_str() {
        "POST" => Some("application/json"),
        "PATCH" => Some("application/merge-patch+json"),
        _ => None,
    };
    if let Some(w) = want_type {
        if content_type.as_deref() != Some(w) {
            return status(
                415,
                "UnsupportedMediaType",
                &format!("the body must be {w}"),
            );
        }
    }
    if token != GOOD_TOKEN && token != WEAK_TOKEN {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let sc = scenario(&st);
    if path == "/apis/agents.x-k8s.io/v1beta1" {
        if !sc.sandbox_crd {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
        return reply(
            StatusCode::OK,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "agents.x-k8s.io/v1beta1",
                   "resources": [{"name": "sandboxes", "singularName": "sandbox", "namespaced": true,
                                  "kind": "Sandbox", "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
                                 {"name": "sandboxes/status", "singularName": "", "namespaced": true,
                                  "kind": "Sandbox", "verbs": ["get", "patch", "update"]}]}),
        );
    }
    let Some(t) = target(&path) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    if t.resource == "sandboxes" && !sc.sandbox_crd {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    if !sc.namespaces.contains(&t.ns) {
        return status(
            404,
            "NotFound",
            &format!("namespaces \"{}\" not found", t.ns),
        );
    }
    let verb = match (method.as_str(), &t.name, &t.sub) {
        ("POST", None, _) => "create",
        ("GET", Some(_), None) => "get",
        ("GET", Some(_), Some(_)) => "get",
        ("PATCH", Some(_), _) => "patch",
        ("DELETE", Some(_), _) => "delete",
        ("DELETE", None, _) => "deletecollection",
        _ => "list",
    };
    let resource = match &t.sub {
        Some(s) => format!("{}/{s}", t.resource),
        None => t.resource.clone(),
    };
    if token == WEAK_TOKEN
        && sc
            .weak_forbidden
            .iter()
            .any(|(v, r)| *v == verb && *r == resource)
    {
        return status(
            403,
            "Forbidden",
            &format!(
                "{resource} is forbidden: User \"system:serviceaccount:agents:weak\" cannot {verb} resource \"{}\" in API group \"\" in the namespace \"{}\"",
                t.resource, t.ns
            ),
        );
    }
    match verb {
        "create" => create(&st, &t, body.expect("create body"), &sc),
        "get" if t.sub.as_deref() == Some("log") => log(&sc, &query),
        "get" => get(&st, &t, &sc),
        "patch" => patch(&st, &t, body.expect("patch body")),
        "delete" => delete_one(&st, &t),
        "deletecollection" => delete_collection(&st, &t, &query),
        _ => status(405, "MethodNotAllowed", "not in the fake"),
    }
}

fn uid(st: &State) -> String {
    let mut n = st.next_uid.lock().expect("lock");
    *n += 1;
    format!("00000000-0000-0000-0000-{:012}", *n)
}

fn create(st: &State, t: &Target, mut obj: Value, sc: &Scenario) -> Response<Full<Bytes>> {
    let name = obj["metadata"]["name"].as_str().expect("name").to_string();
    let key = format!("{}/{name}", t.collection);
    let mut objects = st.objects.lock().expect("lock");
    if objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", t.resource),
        );
    }
    obj["metadata"]["uid"] = json!(uid(st));
    obj["metadata"]["resourceVersion"] = json!("1");
    obj["metadata"]["namespace"] = json!(t.ns);
    objects.insert(key, obj.clone());
    // The agent-sandbox controller: a pod named as the Sandbox, from its template, owned by it
    // (or, when it cannot, a Ready=False condition saying why).
    if let (true, Some(why)) = (t.resource == "sandboxes", sc.controller_error) {
        let key = format!("{}/{name}", t.collection);
        if let Some(o) = objects.get_mut(&key) {
            o["status"] = json!({"conditions": [{"type": "Ready", "status": "False",
                "reason": "ReconcilerError", "message": why,
                "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]});
        }
    } else if t.resource == "sandboxes" {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": t.ns, "uid": uid(st),
                         "labels": obj["spec"]["podTemplate"]["metadata"]["labels"],
                         "ownerReferences": [{"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
                                              "name": name, "uid": obj["metadata"]["uid"], "controller": true}]},
            "spec": obj["spec"]["podTemplate"]["spec"],
        });
        objects.insert(format!("/api/v1/namespaces/{}/pods/{name}", t.ns), pod);
    }
    let _ = sc;
    reply(StatusCode::CREATED, obj)
}

fn pod_status(sc: &Scenario) -> Value {
    let cs = |state: Value, ready: bool| {
        json!([{"name": "airlock", "image": "img", "imageID": "", "ready": ready,
                "restartCount": 0, "state": state}])
    };
    match sc.pod {
        PodScenario::Running => json!({"phase": "Running",
            "containerStatuses": cs(json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}), true)}),
        PodScenario::ImagePullBackOff => json!({"phase": "Pending",
            "containerStatuses": cs(json!({"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"registry.invalid/nope:1\""}}), false)}),
        PodScenario::Failed => json!({"phase": "Failed", "reason": "UnexpectedAdmissionError",
            "message": "Pod was rejected: Allocate failed due to no healthy devices present"}),
        PodScenario::Pending => json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory."}]}),
    }
}

fn get(st: &State, t: &Target, sc: &Scenario) -> Response<Full<Bytes>> {
    let name = t.name.clone().unwrap_or_default();
    let key = format!("{}/{name}", t.collection);
    match st.objects.lock().expect("lock").get(&key) {
        Some(obj) => {
            let mut obj = obj.clone();
            if t.resource == "pods" {
                obj["status"] = pod_status(sc);
            }
            reply(StatusCode::OK, obj)
        }
        None => status(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", t.resource),
        ),
    }
}

fn patch(st: &State, t: &Target, body: Value) -> Response<Full<Bytes>> {
    let name = t.name.clone().unwrap_or_default();
    let key = format!("{}/{name}", t.collection);
    let mut objects = st.objects.lock().expect("lock");
    let Some(obj) = objects.get_mut(&key) else {
        return status(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", t.resource),
        );
    };
    merge(obj, &body);
    reply(StatusCode::OK, obj.clone())
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Removes `key` and, as the garbage collector does (background propagation), everything
/// whose ownerReferences name it.
fn remove_with_dependents(objects: &mut BTreeMap<String, Value>, key: &str) -> Option<Value> {
    let obj = objects.remove(key)?;
    let uid = obj["metadata"]["uid"].clone();
    let dependents: Vec<String> = objects
        .iter()
        .filter(|(_, o)| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for d in dependents {
        remove_with_dependents(objects, &d);
    }
    Some(obj)
}

fn delete_one(st: &State, t: &Target) -> Response<Full<Bytes>> {
    let name = t.name.clone().unwrap_or_default();
    let key = format!("{}/{name}", t.collection);
    match remove_with_dependents(&mut st.objects.lock().expect("lock"), &key) {
        Some(obj) => reply(StatusCode::OK, obj),
        None => status(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", t.resource),
        ),
    }
}

/// `pods/log`: the scenario's log, cut at `limitBytes` ("the number of bytes to read from the
/// server before terminating the log output", PodLogOptions) unless the scenario ignores it.
fn log(sc: &Scenario, query: &[(String, String)]) -> Response<Full<Bytes>> {
    let limit = query
        .iter()
        .find(|(k, _)| k == "limitBytes")
        .map(|(_, v)| v.parse::<usize>().expect("limitBytes is a number"));
    let mut body = sc.log.clone();
    if let Some(limit) = limit.filter(|_| !sc.log_ignores_limit) {
        body.truncate(limit);
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

fn delete_collection(st: &State, t: &Target, query: &[(String, String)]) -> Response<Full<Bytes>> {
    let selector = query
        .iter()
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.clone())
        .expect("deletecollection without a labelSelector would delete everything");
    let wanted: Vec<(String, String)> = selector
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            (k.to_string(), v.to_string())
        })
        .collect();
    let mut objects = st.objects.lock().expect("lock");
    let keys: Vec<String> = objects
        .iter()
        .filter(|(k, o)| {
            k.starts_with(&format!("{}/", t.collection))
                && wanted
                    .iter()
                    .all(|(lk, lv)| o["metadata"]["labels"][lk].as_str() == Some(lv))
        })
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for k in keys {
        if let Some(o) = remove_with_dependents(&mut objects, &k) {
            items.push(o);
        }
    }
    reply(
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "2"}, "items": items}),
    )
}

fn upgrade(
    st: Arc<State>,
    mut req: Request<Incoming>,
    path: &str,
    query: Vec<(String, String)>,
    token: &str,
) -> Response<Full<Bytes>> {
    if token != GOOD_TOKEN && token != WEAK_TOKEN {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let sc = scenario(&st);
    let Some(t) = target(path) else {
        return status(404, "NotFound", "no such path");
    };
    if !sc.namespaces.contains(&t.ns) {
        return status(
            404,
            "NotFound",
            &format!("namespaces \"{}\" not found", t.ns),
        );
    }
    if t.sub.as_deref() != Some("exec") {
        return status(404, "NotFound", "only exec upgrades");
    }
    if token == WEAK_TOKEN && sc.weak_forbidden.contains(&("create", "pods/exec")) {
        return status(403, "Forbidden", "pods/exec is forbidden");
    }
    let key = format!("{}/{}", t.collection, t.name.clone().unwrap_or_default());
    if !st.objects.lock().expect("lock").contains_key(&key) {
        return status(404, "NotFound", "pod not found");
    }
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !offered.split(',').any(|p| p.trim() == sc.protocol) {
        return status(400, "BadRequest", "no common subprotocol");
    }
    let accept = derive_accept_key(
        req.headers()
            .get("sec-websocket-key")
            .expect("key")
            .as_bytes(),
    );
    let argv: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let protocol = sc.protocol;
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run_exec(st, ws, argv, protocol).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", protocol)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

/// A tar header of a regular file `name` of `size` bytes (GNU format).
pub fn tar_header(name: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).expect("path");
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// Chunk `i` of a change layer of shape `shape` (`count` is its size in MiB or its files):
/// - `file`: one file of `count` MiB, then the end blocks (a valid archive);
/// - `files`: `count` files of 1 KiB, then the end blocks (a valid archive);
/// - `endless`: small files without end, never an end block;
/// - `cut`: a file declared `count` MiB whose stream stops after half of it.
pub fn export_shape(shape: &str, count: u64, i: u64) -> Option<Vec<u8>> {
    const MIB: u64 = 1 << 20;
    match shape {
        "file" => match i {
            0 => Some(tar_header("big", count * MIB)),
            i if i <= count => Some(vec![b'b'; 1 << 20]),
            i if i == count + 1 => Some(vec![0; 1024]),
            _ => None,
        },
        "files" => {
            if i < count {
                let mut e = tar_header(&format!("d/f{i}"), 1024);
                e.extend_from_slice(&[b'f'; 1024]);
                Some(e)
            } else {
                (i == count).then(|| vec![0; 1024])
            }
        }
        "endless" => {
            let mut e = tar_header(&format!("e{i}"), 512);
            e.extend_from_slice(&[b'e'; 512]);
            Some(e)
        }
        "cut" => match i {
            0 => Some(tar_header("cut", count * MIB)),
            i if i <= count / 2 => Some(vec![b'c'; 1 << 20]),
            _ => None,
        },
        other => panic!("no export shape {other}"),
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = vec![channel];
    v.extend_from_slice(data);
    Message::binary(v)
}

fn success() -> Vec<u8> {
    json!({"metadata": {}, "status": "Success"})
        .to_string()
        .into_bytes()
}

fn exit_code(code: i32) -> Vec<u8> {
    json!({"metadata": {}, "status": "Failure",
           "message": format!("command terminated with non-zero exit code: exit status {code}"),
           "reason": "NonZeroExitCode",
           "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    .to_string()
    .into_bytes()
}

/// The programs the fake box can run.
async fn run_exec<S>(st: Arc<State>, mut ws: WebSocketStream<S>, argv: Vec<String>, _protocol: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    match args.as_slice() {
        [_, "serve", "ctl", "status"] => {
            let status = json!({"session": "0a1b2c3d", "state": "running", "exit_status": null,
                                "started": null, "ended": null, "error": null});
            let _ = ws.send(frame(1, status.to_string().as_bytes())).await;
            let _ = ws.send(frame(3, &success())).await;
        }
        // Echoes its input once stdin is closed, complains on stderr, exits 3.
        ["sh", "-c", "cat; echo bye >&2; exit 3"] => {
            let mut input = Vec::new();
            while let Some(Ok(msg)) = ws.next().await {
                match msg {
                    Message::Binary(b) if b.first() == Some(&0) => input.extend_from_slice(&b[1..]),
                    Message::Binary(b) if b.as_ref() == [255, 0] => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = ws.send(frame(1, &input)).await;
            let _ = ws.send(frame(2, b"bye\n")).await;
            let _ = ws.send(frame(3, &exit_code(3))).await;
        }
        // A box's change layer in one of the shapes of tests/all/engine.rs (`export_shape`),
        // made as it is sent (never whole in memory here either).
        ["export", shape, count] => {
            let count: u64 = count.parse().expect("count");
            let mut sent = 0u64;
            let mut i = 0u64;
            let mut gone = false;
            while let Some(chunk) = export_shape(shape, count, i) {
                i += 1;
                sent += chunk.len() as u64;
                if ws.send(frame(1, &chunk)).await.is_err() {
                    gone = true;
                    break;
                }
            }
            // A client that has gone: the close (or the failed send) says so.
            if !gone {
                let _ = ws.send(frame(3, &success())).await;
            }
            st.exports.lock().expect("lock").push((sent, gone));
        }
        // Standard input to standard output as it arrives (a pipe to the command), then the
        // end of input as an exit status 0.
        ["cat-stream"] => {
            while let Some(Ok(msg)) = ws.next().await {
                match msg {
                    Message::Binary(b) if b.first() == Some(&0) => {
                        let _ = ws.send(frame(1, &b[1..])).await;
                    }
                    Message::Binary(b) if b.as_ref() == [255, 0] => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = ws.send(frame(3, &success())).await;
        }
        // A terminal: echoes what it reads, records resizes, ends on `q`.
        ["tty-echo"] => {
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Binary(b) = msg else { continue };
                match b.first() {
                    Some(0) => {
                        let _ = ws.send(frame(1, &b[1..])).await;
                        if b[1..].contains(&b'q') {
                            let _ = ws.send(frame(3, &success())).await;
                            break;
                        }
                    }
                    Some(4) => {
                        let size: Value = serde_json::from_slice(&b[1..]).expect("size json");
                        st.resizes.lock().expect("lock").push((
                            size["Width"].as_u64().expect("Width"),
                            size["Height"].as_u64().expect("Height"),
                        ));
                    }
                    _ => {}
                }
            }
        }
        _ => {
            let msg = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                             "message": format!("exec: \"{}\": executable file not found in $PATH", argv.first().cloned().unwrap_or_default())});
            let _ = ws.send(frame(3, msg.to_string().as_bytes())).await;
        }
    }
    let _ = ws.close(None).await;
}
