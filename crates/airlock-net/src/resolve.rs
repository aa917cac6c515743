//! Name resolution for the supervisor (which runs on the host): the [`Resolve`] seam, the host
//! resolver, a plain DNS-over-UDP client for a given server, and a static table for tests.
//! Only names the policy already allowed are ever handed to a resolver.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

/// What a resolver returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Resolves an allowed host name to addresses (both families). Implementations must not be
/// called with names the policy refused; the proxy and the DNS filter guarantee that.
pub trait Resolve: Send + Sync + fmt::Debug + 'static {
    fn resolve<'a>(&'a self, name: &'a str) -> ResolveFuture<'a>;
}

/// The host's resolver (`getaddrinfo` through tokio): what the supervisor uses by default.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, name: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            // getaddrinfo repeats each address once per socket type; keep its order.
            let mut ips: Vec<IpAddr> = Vec::new();
            for sa in tokio::net::lookup_host((name, 0)).await? {
                if !ips.contains(&sa.ip()) {
                    ips.push(sa.ip());
                }
            }
            Ok(ips)
        })
    }
}

/// A fixed table; names not in it fail with `NotFound`. For tests and for sessions that must
/// not touch the host resolver at all.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    table: BTreeMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name -> ips`.
    pub fn with(mut self, name: &str, ips: &[IpAddr]) -> Self {
        self.table.insert(name.to_ascii_lowercase(), ips.to_vec());
        self
    }
}

impl Resolve for StaticResolver {
    fn resolve<'a>(&'a self, name: &'a str) -> ResolveFuture<'a> {
        let r = self.table.get(name).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} is not in the table"),
            )
        });
        Box::pin(async move { r })
    }
}

/// Asks one DNS server over UDP for A and AAAA records (no recursion of its own, no cache).
#[derive(Debug, Clone)]
pub struct UdpDnsResolver {
    server: SocketAddr,
    timeout: Duration,
}

impl UdpDnsResolver {
    pub fn new(server: SocketAddr) -> Self {
        UdpDnsResolver {
            server,
            timeout: Duration::from_secs(3),
        }
    }

    async fn query(&self, name: &Name, ty: RecordType) -> io::Result<Vec<IpAddr>> {
        let bind: SocketAddr = if self.server.is_ipv4() {
            (std::net::Ipv4Addr::LOCALHOST, 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let bind = if self.server.ip().is_loopback() {
            bind
        } else {
            SocketAddr::new(
                if self.server.is_ipv4() {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                },
                0,
            )
        };
        let sock = tokio::net::UdpSocket::bind(bind).await?;
        sock.connect(self.server).await?;
        let id: u16 = rand_id();
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(name.clone(), ty));
        let bytes = msg.to_vec().map_err(io::Error::other)?;
        sock.send(&bytes).await?;
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("dns server {} did not answer", self.server),
                    )
                })??;
            let Ok(resp) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if resp.metadata.id != id || resp.metadata.message_type != MessageType::Response {
                continue;
            }
            return Ok(resp
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect());
        }
    }
}

/// A query id: `RandomState` is seeded from the OS per instance, which is random enough for a
/// client that also checks the answer's source and only talks to a configured server.
fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let h = std::collections::hash_map::RandomState::new().build_hasher();
    u16::try_from(h.finish() & 0xffff).unwrap_or(0)
}

impl Resolve for UdpDnsResolver {
    fn resolve<'a>(&'a self, name: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            let mut fqdn = Name::from_ascii(name).map_err(io::Error::other)?;
            fqdn.set_fqdn(true);
            let (a, aaaa) = tokio::join!(
                self.query(&fqdn, RecordType::A),
                self.query(&fqdn, RecordType::AAAA)
            );
            let mut ips = a?;
            ips.extend(aaaa.unwrap_or_default());
            Ok(ips)
        })
    }
}
