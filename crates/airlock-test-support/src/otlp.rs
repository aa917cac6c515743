//! A real OTLP/HTTP receiver on loopback for telemetry tests: it decodes each
//! `POST /v1/logs` body as an `ExportLogsServiceRequest` (opentelemetry-proto types) and keeps
//! the log records; other OTLP paths (`/v1/metrics`, `/v1/traces`) are counted. Also a
//! "black hole" collector that accepts connections and never answers.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// One decoded log record.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The record's `event_name`.
    pub event_name: String,
    /// `severity_text`.
    pub severity: String,
    /// The body when it is a string.
    pub body: String,
    /// Record attributes, values rendered as text.
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes of the request it came in.
    pub resource: BTreeMap<String, String>,
}

impl Record {
    /// An attribute's value, or "".
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

#[derive(Debug, Default)]
struct Seen {
    records: Vec<Record>,
    /// Requests per path.
    paths: BTreeMap<String, usize>,
    /// Header values of the last `/v1/logs` request, lowercase names.
    headers: BTreeMap<String, String>,
}

/// The receiver; it runs until the test process ends.
#[derive(Debug, Clone)]
pub struct Receiver {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kv: &[KeyValue]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn decode(body: &[u8]) -> Vec<Record> {
    let Ok(req) = ExportLogsServiceRequest::decode(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rl in req.resource_logs {
        let resource = rl
            .resource
            .as_ref()
            .map(|r| attrs(&r.attributes))
            .unwrap_or_default();
        for sl in rl.scope_logs {
            for lr in sl.log_records {
                out.push(Record {
                    event_name: lr.event_name.clone(),
                    severity: lr.severity_text.clone(),
                    body: text(&lr.body),
                    attributes: attrs(&lr.attributes),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 (a port of its own) in a thread of its own.
    pub fn start() -> Receiver {
        Receiver::start_with(None)
    }

    /// Like [`Receiver::start`], speaking TLS with `config` (an `https://` collector).
    pub fn start_tls(config: Arc<rustls::ServerConfig>) -> Receiver {
        Receiver::start_with(Some(config))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(serve(listener, s, tls));
        });
        Receiver { port, seen }
    }

    /// The receiver's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, for `[telemetry] otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every record received so far.
    pub fn records(&self) -> Vec<Record> {
        self.seen.lock().expect("lock").records.clone()
    }

    /// Requests received on `path`.
    pub fn requests(&self, path: &str) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .paths
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// A header of the last `/v1/logs` request (lowercase name).
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.seen.lock().expect("lock").headers.get(name).cloned()
    }

    /// Waits up to `timeout` for a record matching `f`.
    pub fn wait_for(&self, timeout: Duration, f: impl Fn(&Record) -> bool) -> Option<Record> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(r) = self.records().into_iter().find(|r| f(r)) {
                return Some(r);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn serve(
    listener: TcpListener,
    seen: Arc<Mutex<Seen>>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let seen = seen.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let headers: BTreeMap<String, String> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect();
                    let body: hyper::body::Incoming = req.into_body();
                    let bytes = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    {
                        let mut s = seen.lock().expect("lock");
                        *s.paths.entry(path.clone()).or_default() += 1;
                        if path == "/v1/logs" {
                            s.headers = headers;
                            let recs = decode(&bytes);
                            s.records.extend(recs);
                        }
                    }
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/x-protobuf")
                            .body(http_body_util::Full::new(bytes::Bytes::new()))
                            .expect("response"),
                    )
                }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(config) => {
                    let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                    else {
                        return;
                    };
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
                None => {
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// A collector that accepts connections and never answers (a hung collector). Returns its
/// port; connections are held open until the test process ends.
pub fn black_hole() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// A port with nothing listening on it (a collector that is down).
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}
