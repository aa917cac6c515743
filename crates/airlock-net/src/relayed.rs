//! Serving connections that a relay inside the sandbox forwards over host unix sockets, for a
//! runtime whose sockets cannot leave its own kernel (gVisor: its sockets live in its netstack
//! and cannot be passed to the host as descriptors).
//!
//! The sandbox's pid 1 still makes the listeners inside (127.0.0.1:3128 for the proxy, UDP and
//! TCP 127.0.0.1:53 for DNS); a relay process there accepts on them and forwards each connection
//! byte for byte to a unix socket the supervisor listens on in the session's private directory,
//! and each UDP query as one DNS-over-TCP exchange (two-byte length prefix, RFC 1035 section
//! 4.2.2). Here every such connection is served by exactly the proxy and DNS code that serves
//! handed-over listeners ([`crate::proxy::serve_io`], [`crate::dns::serve_tcp_conn`]): same
//! policy, same audit events, same credential swap, same limits.
//!
//! The relay holds no secret and can reach nothing but these sockets: whatever the agent does by
//! killing it or speaking in its place comes down to connecting to the proxy itself.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::state::Shared;

/// Serves proxy connections arriving on `listener`, logged as coming from `inside` (the proxy's
/// address in the sandbox: the relay's own peer address is not trusted, nor needed). Bounded by
/// `max_connections` as the TCP proxy is; over it, a connection is closed at once.
pub(crate) async fn serve_proxy(listener: UnixListener, inside: SocketAddr, shared: Arc<Shared>) {
    let sem = Arc::new(Semaphore::new(shared.limits.max_connections));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let Ok(permit) = sem.clone().try_acquire_owned() else {
                        tracing::warn!("airlock: relayed proxy connection refused: too many connections");
                        continue;
                    };
                    let shared = shared.clone();
                    conns.spawn(async move {
                        crate::proxy::serve_io(stream, inside, shared).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!("airlock: relayed proxy accept failed: {e}; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(r) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = r {
                    if e.is_panic() {
                        tracing::error!("airlock: a relayed proxy connection task panicked: {e}");
                    }
                }
            }
        }
    }
}

/// Serves DNS over a byte stream (length-prefixed messages, RFC 1035 section 4.2.2) on each
/// connection arriving on `listener`: the relay's TCP queries and its UDP ones alike. Bounded by
/// `dns_max_tcp + dns_max_inflight` concurrent exchanges.
pub(crate) async fn serve_dns(listener: UnixListener, shared: Arc<Shared>) {
    let sem = Arc::new(Semaphore::new(
        shared.limits.dns_max_tcp + shared.limits.dns_max_inflight,
    ));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let Ok(permit) = sem.clone().try_acquire_owned() else {
                        continue; // over the limit: close at once, the client retries
                    };
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        crate::dns::serve_tcp_conn(stream, &shared).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!("airlock: relayed dns accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}
