//! The egress relay inside a sandbox whose runtime keeps sockets in its own kernel (gVisor: its
//! sockets live in its netstack, and sendmsg(2) with `SCM_RIGHTS` of one over a host unix socket
//! fails `EINVAL`), so pid 1 cannot hand the proxy, DNS and gate-audit listeners to the
//! supervisor as it does with runc and crun.
//!
//! pid 1 makes the listeners exactly as elsewhere (127.0.0.1:3128, UDP and TCP 127.0.0.1:53, the
//! audit port) and forks this relay, which accepts on them and forwards:
//! - each TCP connection (proxy, DNS over TCP, audit) byte for byte to a new connection to the
//!   matching host unix socket ([`crate::launch::RELAY_SOCKETS`]) in the directory bound into
//!   the sandbox with the control socket;
//! - each UDP DNS query as one exchange on a new connection to the DNS socket, framed with the
//!   two-byte length prefix of DNS over TCP (RFC 1035 section 4.2.2), the answer sent back to the
//!   query's source.
//!
//! The supervisor serves those connections with the same proxy, DNS filter and audit code as
//! handed-over listeners. The relay holds no secret and reaches nothing but those sockets: it
//! runs in the agent's sandbox, under the agent's lockdown, and whatever the agent does by
//! killing it (the sandbox loses its network: fail closed) or by connecting to those sockets
//! itself is no more than connecting to the proxy inside.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::launch::RELAY_SOCKETS;

/// Connections relayed at once per listener; more are closed at once (the proxy's own limit,
/// `max_connections`, is lower and answers 503).
const MAX_STREAMS: usize = 1024;
/// UDP DNS queries in flight at once; more are dropped (the client retries), as the DNS filter
/// does.
const MAX_QUERIES: usize = 128;
/// How long one relayed UDP query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest UDP DNS query read (the DNS filter's own UDP buffer).
const MAX_DATAGRAM: usize = 4096;

/// The listeners pid 1 made in the sandbox's network stack.
#[derive(Debug)]
pub(crate) struct Inside {
    pub(crate) proxy: TcpListener,
    pub(crate) dns_udp: UdpSocket,
    pub(crate) dns_tcp: TcpListener,
    pub(crate) audit: Option<TcpListener>,
}

/// Relays until a listener fails (it does not return otherwise). `dir` is the directory of the
/// control socket, where the supervisor listens on [`RELAY_SOCKETS`]. Returns the exit status.
pub(crate) fn run(dir: &Path, inside: Inside) -> i32 {
    let [proxy, dns, audit] = RELAY_SOCKETS.map(|n| dir.join(n));
    let mut threads = Vec::new();
    let dns_tcp_to = dns.clone();
    threads.push(std::thread::spawn(move || {
        streams(&inside.proxy, &proxy);
    }));
    threads.push(std::thread::spawn(move || {
        streams(&inside.dns_tcp, &dns_tcp_to);
    }));
    if let Some(l) = inside.audit {
        threads.push(std::thread::spawn(move || streams(&l, &audit)));
    }
    datagrams(inside.dns_udp, &dns);
    crate::EXIT_FAILURE
}

/// Accepts on `listener` and relays each connection to a new connection to `to`.
fn streams(listener: &TcpListener, to: &Path) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) => {
                eprintln!("airlock: relay: accept on {:?}: {e}", listener.local_addr());
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_STREAMS {
            active.fetch_sub(1, Ordering::AcqRel);
            continue; // dropped: closed at once
        }
        let (to, active) = (to.to_path_buf(), active.clone());
        let spawned = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                pipe(client, &to);
                active.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Copies both ways between `client` and a new connection to `to`, passing each side's end of
/// data on as a half close, until both directions are done. A connection that cannot be made
/// closes the client's (fail closed: no other way out).
fn pipe(client: TcpStream, to: &Path) {
    let Ok(host) = UnixStream::connect(to) else {
        return;
    };
    let (Ok(client2), Ok(host2)) = (client.try_clone(), host.try_clone()) else {
        return;
    };
    let up = std::thread::Builder::new()
        .stack_size(64 << 10)
        .spawn(move || {
            let ok = std::io::copy(&mut &client2, &mut &host2).is_ok();
            end(ok, &client2, &host2);
        });
    let ok = std::io::copy(&mut &host, &mut &client).is_ok();
    end(ok, &host, &client);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

/// One direction is done: its end of data goes on as a half close; after an error both sockets
/// are shut entirely, so the other direction ends too.
fn end(ok: bool, from: &impl Shut, to: &impl Shut) {
    if ok {
        to.shut(Shutdown::Write);
    } else {
        from.shut(Shutdown::Both);
        to.shut(Shutdown::Both);
    }
}

trait Shut {
    fn shut(&self, how: Shutdown);
}

impl Shut for TcpStream {
    fn shut(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

impl Shut for UnixStream {
    fn shut(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

/// Receives UDP DNS queries and relays each as one length-prefixed exchange on a new connection
/// to `to`.
fn datagrams(sock: UdpSocket, to: &Path) {
    let sock = Arc::new(sock);
    let active = Arc::new(AtomicUsize::new(0));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_QUERIES {
            active.fetch_sub(1, Ordering::AcqRel);
            continue; // overloaded: dropped, the client retries
        }
        let packet = buf[..n].to_vec();
        let (sock, to, active) = (sock.clone(), to.to_path_buf(), active.clone());
        let spawned = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let _ = query(&sock, &packet, peer, &to);
                active.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One UDP query: sent framed to `to`, the framed answer sent back to `peer`.
fn query(sock: &UdpSocket, packet: &[u8], peer: SocketAddr, to: &PathBuf) -> std::io::Result<()> {
    let mut host = UnixStream::connect(to)?;
    host.set_read_timeout(Some(QUERY_TIMEOUT))?;
    host.set_write_timeout(Some(QUERY_TIMEOUT))?;
    let len = u16::try_from(packet.len())
        .map_err(|_| std::io::Error::other("query longer than 65535 bytes"))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    host.write_all(&framed)?;
    let mut len = [0u8; 2];
    host.read_exact(&mut len)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    host.read_exact(&mut answer)?;
    sock.send_to(&answer, peer)?;
    Ok(())
}
