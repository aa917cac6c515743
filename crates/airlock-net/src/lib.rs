//! airlock egress: the HTTP proxy and DNS filter that are a sandbox's only way out, by hostname,
//! with an audit trail, and the credential injector ([`creds`]) that swaps placeholders for
//! secrets on the way to a credential's hosts.
//!
//! The sandbox child binds the listening sockets inside its own network namespace (TCP
//! 127.0.0.1:3128 for the proxy, UDP and TCP 127.0.0.1:53 for DNS), passes them to the
//! supervisor over SCM_RIGHTS and closes its copies; the supervisor, on the host, serves them:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(proxy: std::net::TcpListener, dns_udp: std::net::UdpSocket,
//! #         dns_tcp: std::net::TcpListener, cfg: &airlock_policy::NetworkConfig,
//! #         audit: Arc<airlock_audit::AuditLog>, rt: &tokio::runtime::Handle)
//! #         -> Result<(), Box<dyn std::error::Error>> {
//! use airlock_net::{Egress, EgressConfig};
//! use airlock_policy::network::NetworkPolicy;
//!
//! let policy = NetworkPolicy::compile(cfg)?;
//! let mut config = EgressConfig::new(proxy, policy, audit);
//! config.dns_udp = Some(dns_udp);
//! config.dns_tcp = Some(dns_tcp);
//! config.session = Some("s-1234".into());
//! let egress = Egress::start(config, rt)?;
//! // On SIGHUP or `airlock policy reload`: established tunnels are kept.
//! egress.reload(NetworkPolicy::compile(cfg)?);
//! // Dropping `egress` closes the listeners and every tunnel.
//! # Ok(()) }
//! ```
//!
//! Inside the sandbox, set `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and their lower-case forms
//! to `http://127.0.0.1:3128`, leave `NO_PROXY`/`no_proxy` unset (the sandbox has no other route
//! anyway), and write `nameserver 127.0.0.1` to its `/etc/resolv.conf`.
//!
//! Fail closed: every service task owns its listener and its connections. If a task dies
//! (panic, abort, [`Egress`] dropped), its listener is closed and its tunnels are torn down;
//! [`Egress::wait_failure`] reports it so the supervisor can end the session.
#![forbid(unsafe_code)]

pub mod approval;
pub mod creds;
pub mod dns;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
mod io;
pub mod outbound;
mod proxy;
mod relayed;
pub mod resolve;
pub mod sni;
mod splice;
mod state;
pub mod target;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use airlock_audit::AuditLog;
use airlock_policy::network::NetworkPolicy;
use tokio::sync::watch;
use tokio::task::AbortHandle;

pub use error::{Blame, EgressError, ProxyError};
pub use resolve::{Resolve, ResolveFuture, StaticResolver, SystemResolver, UdpDnsResolver};

use state::Shared;

/// Bounds on every connection: memory, time and count.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent proxy connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// Largest request or response head (at least 8 KiB); larger ones get 431.
    pub max_header_bytes: usize,
    /// Time to send a complete request head, and keep-alive idle time between requests.
    pub header_read_timeout: Duration,
    /// CONNECT ports whose first bytes must be a TLS ClientHello with an SNI equal to the
    /// CONNECT host.
    pub tls_ports: Vec<u16>,
    /// Time for a CONNECT to a TLS port to send its complete ClientHello.
    pub client_hello_timeout: Duration,
    /// Bytes read while waiting for the ClientHello.
    pub client_hello_max_bytes: usize,
    /// Time for a name lookup.
    pub resolve_timeout: Duration,
    /// Time for one TCP connect upstream.
    pub connect_timeout: Duration,
    /// A connection or tunnel on which nothing moves for this long is closed.
    pub idle_timeout: Duration,
    /// DNS queries being answered at once (UDP); more are dropped.
    pub dns_max_inflight: usize,
    /// Concurrent DNS-over-TCP connections.
    pub dns_max_tcp: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            tls_ports: vec![443],
            client_hello_timeout: Duration::from_secs(10),
            client_hello_max_bytes: 64 * 1024,
            resolve_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            dns_max_inflight: 128,
            dns_max_tcp: 32,
        }
    }
}

/// What [`Egress::start`] needs.
#[derive(Debug)]
pub struct EgressConfig {
    /// The proxy's listening socket (127.0.0.1:3128 inside the sandbox), or the host unix socket
    /// a relay inside forwards its connections to.
    pub proxy: Listener,
    /// The DNS filter's UDP socket (127.0.0.1:53 inside the sandbox).
    pub dns_udp: Option<std::net::UdpSocket>,
    /// The DNS filter's TCP listener (127.0.0.1:53 inside the sandbox).
    pub dns_tcp: Option<std::net::TcpListener>,
    /// A host unix socket on which a relay inside forwards DNS queries (its UDP and TCP ones
    /// alike) as length-prefixed messages (RFC 1035 section 4.2.2); see [`Listener::Relayed`].
    pub dns_relayed: Option<std::os::unix::net::UnixListener>,
    pub policy: NetworkPolicy,
    pub audit: Arc<AuditLog>,
    /// Written into every audit event.
    pub session: Option<String>,
    /// Resolves allowed names; [`SystemResolver`] by default.
    pub resolver: Arc<dyn Resolve>,
    pub limits: Limits,
    /// The credential injector (placeholders, session CA); `None` = no interception.
    pub credentials: Option<Arc<creds::Injector>>,
    /// Where every refusal (a `deny` event of the proxy or the DNS filter, before the audit
    /// log's rate limiter) is also sent, for live notices on the user's terminal. Sent with
    /// `try_send`: a full or closed channel drops the copy, never the refusal or its audit
    /// event. `None` = no copies.
    pub denials: Option<std::sync::mpsc::SyncSender<airlock_audit::AuditEvent>>,
    /// Asks the user about refusals the allow list or the port rule made
    /// ([`approval`]); `None` = refuse at once (`[approvals] mode = "off"`).
    pub approver: Option<Arc<dyn approval::Approver>>,
    /// How long a request is held for an answer before it is refused.
    pub approval_timeout: Duration,
}

impl EgressConfig {
    /// A config with no DNS sockets, the host resolver and default limits.
    pub fn new(proxy: impl Into<Listener>, policy: NetworkPolicy, audit: Arc<AuditLog>) -> Self {
        EgressConfig {
            proxy: proxy.into(),
            dns_udp: None,
            dns_tcp: None,
            dns_relayed: None,
            policy,
            audit,
            session: None,
            resolver: Arc::new(SystemResolver),
            limits: Limits::default(),
            credentials: None,
            denials: None,
            approver: None,
            approval_timeout: Duration::from_secs(60),
        }
    }
}

/// Where the proxy's connections come from.
#[derive(Debug)]
pub enum Listener {
    /// A listener made in the sandbox's network namespace and handed over (native, runc, crun).
    Tcp(std::net::TcpListener),
    /// A host unix socket to which a relay in the sandbox forwards each connection it accepts on
    /// `inside` (gVisor, whose sockets cannot leave its kernel). The bytes are the agent's as
    /// on a TCP connection; they are served by the same proxy code. Whoever can connect to this
    /// socket can use the proxy: keep it in a directory only the session's user reaches.
    Relayed {
        listener: std::os::unix::net::UnixListener,
        /// The proxy's address inside the sandbox (for [`Egress::proxy_addr`] and the logs).
        inside: SocketAddr,
    },
}

impl From<std::net::TcpListener> for Listener {
    fn from(l: std::net::TcpListener) -> Listener {
        Listener::Tcp(l)
    }
}

/// The running proxy and DNS filter. Dropping it stops them: listeners closed, tunnels cut.
#[derive(Debug)]
pub struct Egress {
    shared: Arc<Shared>,
    services: Vec<AbortHandle>,
    failure: watch::Receiver<Option<String>>,
    proxy_addr: SocketAddr,
    dns_addr: Option<SocketAddr>,
}

type Service = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The proxy's socket, ready for the runtime.
enum ProxySocket {
    Tcp(tokio::net::TcpListener),
    Relayed(tokio::net::UnixListener, SocketAddr),
}

impl Egress {
    /// Starts serving the handed-over sockets on `rt`. The sockets may be blocking; they are
    /// switched to non-blocking here.
    pub fn start(config: EgressConfig, rt: &tokio::runtime::Handle) -> Result<Egress, EgressError> {
        let _guard = rt.enter();
        let sock_err = |what| {
            move |source| EgressError::Socket {
                what,
                error: source,
            }
        };
        let (proxy, proxy_addr) = match config.proxy {
            Listener::Tcp(l) => {
                let addr = l.local_addr().map_err(sock_err("proxy"))?;
                l.set_nonblocking(true).map_err(sock_err("proxy"))?;
                let l = tokio::net::TcpListener::from_std(l).map_err(sock_err("proxy"))?;
                (ProxySocket::Tcp(l), addr)
            }
            Listener::Relayed { listener, inside } => {
                listener.set_nonblocking(true).map_err(sock_err("proxy"))?;
                let l = tokio::net::UnixListener::from_std(listener).map_err(sock_err("proxy"))?;
                (ProxySocket::Relayed(l, inside), inside)
            }
        };
        let dns_relayed = match config.dns_relayed {
            Some(l) => {
                l.set_nonblocking(true).map_err(sock_err("dns relayed"))?;
                Some(tokio::net::UnixListener::from_std(l).map_err(sock_err("dns relayed"))?)
            }
            None => None,
        };
        let dns_udp = match config.dns_udp {
            Some(s) => {
                s.set_nonblocking(true).map_err(sock_err("dns udp"))?;
                Some(tokio::net::UdpSocket::from_std(s).map_err(sock_err("dns udp"))?)
            }
            None => None,
        };
        let dns_tcp = match config.dns_tcp {
            Some(s) => {
                s.set_nonblocking(true).map_err(sock_err("dns tcp"))?;
                Some(tokio::net::TcpListener::from_std(s).map_err(sock_err("dns tcp"))?)
            }
            None => None,
        };
        let dns_addr = match &dns_udp {
            Some(s) => Some(s.local_addr().map_err(sock_err("dns udp"))?),
            None => None,
        };
        let mut shared = Shared::new(
            config.policy,
            config.audit,
            config.session,
            config.resolver,
            config.limits,
        );
        shared.creds = config.credentials;
        shared.denials = config.denials;
        shared.approver = config.approver;
        shared.approval_timeout = config.approval_timeout;
        let shared = Arc::new(shared);
        let proxy: Service = match proxy {
            ProxySocket::Tcp(l) => Box::pin(proxy::serve(l, shared.clone())),
            ProxySocket::Relayed(l, inside) => {
                Box::pin(relayed::serve_proxy(l, inside, shared.clone()))
            }
        };
        let mut services: Vec<(&'static str, Service)> = vec![("proxy", proxy)];
        if let Some(s) = dns_udp {
            services.push(("dns-udp", Box::pin(dns::serve_udp(s, shared.clone()))));
        }
        if let Some(s) = dns_tcp {
            services.push(("dns-tcp", Box::pin(dns::serve_tcp(s, shared.clone()))));
        }
        if let Some(s) = dns_relayed {
            services.push(("dns-tcp", Box::pin(relayed::serve_dns(s, shared.clone()))));
        }
        let (fail_tx, failure) = watch::channel(None);
        let fail_tx = Arc::new(fail_tx);
        let services = services
            .into_iter()
            .map(|(name, fut)| {
                let handle = rt.spawn(fut);
                let abort = handle.abort_handle();
                let tx = fail_tx.clone();
                // The monitor reports how the service ended, and ends with it.
                rt.spawn(async move {
                    let why = match handle.await {
                        Ok(()) => "it returned".to_string(),
                        Err(e) if e.is_panic() => format!("it panicked: {}", panic_message(e)),
                        Err(_) => "it was stopped".to_string(),
                    };
                    tracing::error!(service = name, "airlock: egress service stopped: {why}");
                    tx.send_replace(Some(format!("{name}: {why}")));
                });
                abort
            })
            .collect();
        Ok(Egress {
            shared,
            services,
            failure,
            proxy_addr,
            dns_addr,
        })
    }

    /// Replaces the policy. New requests and DNS queries are judged by it at once; established
    /// tunnels and in-flight requests are left alone.
    pub fn reload(&self, policy: NetworkPolicy) {
        self.shared.set_policy(policy);
        tracing::info!("airlock: network policy reloaded");
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<NetworkPolicy> {
        self.shared.policy()
    }

    /// Where the proxy listens (in the sandbox's namespace).
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// Where the DNS filter listens over UDP, if it was given a socket.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// Whether every service is still running.
    pub fn is_running(&self) -> bool {
        self.failure.borrow().is_none() && self.services.iter().all(|s| !s.is_finished())
    }

    /// Resolves when a service stops for any reason (the sandbox then has no network); the
    /// supervisor can select on it to end the session with a clear error.
    pub async fn wait_failure(&self) -> EgressError {
        let mut rx = self.failure.clone();
        let why = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => "the monitor is gone".to_string(),
        };
        let (service, why) = why.split_once(": ").unwrap_or(("egress", &why));
        EgressError::Died {
            service: match service {
                "proxy" => "proxy",
                "dns-udp" => "dns-udp",
                "dns-tcp" => "dns-tcp",
                _ => "egress",
            },
            why: why.to_string(),
        }
    }

    /// Stops every service now (same as dropping).
    pub fn shutdown(self) {}

    #[cfg(test)]
    pub(crate) fn inject_accept_panic(&self) {
        self.shared
            .panic_on_accept
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        for s in &self.services {
            s.abort();
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_policy::NetworkConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_proxy_task_leaves_the_sandbox_with_no_network() {
        let up = echo_server().await;
        let mut c = NetworkConfig {
            allow: vec!["echo.test".into()],
            allow_private: vec!["127.0.0.1".into()],
            ..NetworkConfig::default()
        };
        c.resolve.insert("echo.test".into(), "127.0.0.1".into());
        c.ports.insert("echo.test".into(), vec![up.port()]);
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = Arc::new(AuditLog::open(dir.path().join("a.jsonl")).expect("audit"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let cfg = EgressConfig::new(listener, NetworkPolicy::compile(&c).expect("policy"), audit);
        let egress = Egress::start(cfg, &tokio::runtime::Handle::current()).expect("start");
        let proxy = egress.proxy_addr();
        // An established tunnel.
        let mut t = tokio::net::TcpStream::connect(proxy)
            .await
            .expect("connect");
        t.write_all(format!("CONNECT echo.test:{} HTTP/1.1\r\n\r\n", up.port()).as_bytes())
            .await
            .expect("write");
        let mut head = [0u8; 19];
        t.read_exact(&mut head).await.expect("200");
        assert_eq!(&head[..12], b"HTTP/1.1 200");
        let mut rest = Vec::new();
        while !rest.ends_with(b"\r\n\r\n") && !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            t.read_exact(&mut b).await.expect("head");
            rest.push(b[0]);
        }
        t.write_all(b"ping").await.expect("write");
        let mut b = [0u8; 4];
        t.read_exact(&mut b).await.expect("echo");
        assert!(egress.is_running());

        // The accept loop dies on the next connection.
        egress.inject_accept_panic();
        let _trigger = tokio::net::TcpStream::connect(proxy).await;
        let err = tokio::time::timeout(Duration::from_secs(5), egress.wait_failure())
            .await
            .expect("failure reported");
        assert!(
            matches!(&err, EgressError::Died { service: "proxy", why } if why.contains("panicked")),
            "{err}"
        );
        assert!(!egress.is_running());
        // The established tunnel is cut…
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(3), t.read(&mut buf))
            .await
            .expect("tunnel cut in time");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        // …and nothing listens any more: refused, not passed anywhere.
        let e = tokio::net::TcpStream::connect(proxy)
            .await
            .expect_err("proxy port must refuse");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
