use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A connected loopback pair: (the far end a test drives, the end the relay holds).
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (far, near) = tokio::join!(TcpStream::connect(addr), l.accept());
    (far.expect("connect"), near.expect("accept").0)
}

/// The agent's end, the upstream server's end, and the relay between them running on a task.
struct Tunnel {
    agent: TcpStream,
    server: TcpStream,
    relay: tokio::task::JoinHandle<(io::Result<()>, (u64, u64))>,
}

async fn tunnel(idle: Duration) -> Tunnel {
    let (agent, client) = pair().await;
    let (server, upstream) = pair().await;
    let relay = tokio::spawn(async move {
        let counters = Counters::default();
        let r = relay(&client, &upstream, idle, &counters).await;
        (r, counters.get())
    });
    Tunnel {
        agent,
        server,
        relay,
    }
}

#[allow(clippy::cast_possible_truncation)] // wrapping on purpose
/// Deterministic bytes that differ at every offset of a large transfer.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 13) as u8))
        .collect()
}

#[tokio::test]
async fn large_transfers_arrive_intact_both_ways_at_once() {
    let Tunnel {
        agent,
        server,
        relay,
    } = tunnel(Duration::from_secs(30)).await;
    let (up, down) = (pattern(24 << 20, 7), pattern(17 << 20 | 12345, 99));
    let (mut ar, mut aw) = agent.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (up2, down2) = (up.clone(), down.clone());
    let a_send = tokio::spawn(async move {
        aw.write_all(&up2).await.expect("agent write");
        aw.shutdown().await.expect("agent shutdown");
    });
    let s_send = tokio::spawn(async move {
        sw.write_all(&down2).await.expect("server write");
        sw.shutdown().await.expect("server shutdown");
    });
    let mut got_up = Vec::new();
    let mut got_down = Vec::new();
    let (r1, r2) = tokio::join!(sr.read_to_end(&mut got_up), ar.read_to_end(&mut got_down));
    r1.expect("server read");
    r2.expect("agent read");
    a_send.await.expect("task");
    s_send.await.expect("task");
    assert!(got_up == up, "agent -> server bytes differ");
    assert!(got_down == down, "server -> agent bytes differ");
    let (r, (read, written)) = relay.await.expect("relay task");
    r.expect("relay ends cleanly after both EOFs");
    assert_eq!((read, written), (down.len() as u64, up.len() as u64));
}

/// The agent closes its sending side first (a request, then EOF): the server sees the EOF, still
/// answers, and the agent reads the whole answer; the other way round too.
#[tokio::test]
async fn half_close_is_passed_on_and_the_other_way_keeps_flowing() {
    for agent_first in [true, false] {
        let Tunnel {
            mut agent,
            mut server,
            relay,
        } = tunnel(Duration::from_secs(30)).await;
        let (first, second) = if agent_first {
            (&mut agent, &mut server)
        } else {
            (&mut server, &mut agent)
        };
        first.write_all(b"request").await.expect("write");
        first.shutdown().await.expect("shutdown");
        let mut req = Vec::new();
        second.read_to_end(&mut req).await.expect("read to EOF");
        assert_eq!(req, b"request");
        let answer = pattern(3 << 20, 3);
        second.write_all(&answer).await.expect("answer");
        second.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        first.read_to_end(&mut got).await.expect("read answer");
        assert!(got == answer, "answer after half-close differs");
        relay.await.expect("task").0.expect("relay ends cleanly");
    }
}

/// A server that never reads: the agent's writes stall once the pipe and the socket buffers are
/// full (nothing piles up in the proxy), and the tunnel ends as idle instead of hanging.
#[tokio::test]
async fn a_peer_that_stops_reading_stalls_the_sender_and_times_out() {
    let Tunnel {
        mut agent,
        server,
        relay,
    } = tunnel(Duration::from_millis(400)).await;
    let chunk = vec![0x5a; 1 << 20];
    let mut sent = 0usize;
    let stalled = loop {
        match tokio::time::timeout(Duration::from_millis(1500), agent.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => break false,
            Err(_) => break true,
        }
        assert!(
            sent < 512 << 20,
            "512 MiB accepted by a peer that reads nothing"
        );
    };
    let (r, (_, written)) = tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .expect("the relay ends")
        .expect("task");
    assert!(stalled || r.is_err(), "the sender was never held back");
    let e = r.expect_err("a stuck tunnel is an error");
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    // What reached the server's socket is bounded by its buffers, not by what the agent sent.
    assert!(written <= sent as u64, "{written} > {sent}");
    drop(server);
}

/// Silence both ways ends the tunnel; a trickle in either direction keeps it open.
#[tokio::test]
async fn idle_tunnels_end_and_busy_ones_do_not() {
    let Tunnel {
        mut agent,
        mut server,
        relay,
    } = tunnel(Duration::from_millis(300)).await;
    let mut b = [0u8; 1];
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (w, r) = if i % 2 == 0 {
            (&mut agent, &mut server)
        } else {
            (&mut server, &mut agent)
        };
        w.write_all(b"x").await.expect("write");
        r.read_exact(&mut b)
            .await
            .expect("a busy tunnel keeps working");
    }
    let (r, _) = tokio::time::timeout(Duration::from_secs(5), relay)
        .await
        .expect("the idle relay ends")
        .expect("task");
    assert_eq!(r.expect_err("idle").kind(), io::ErrorKind::TimedOut);
    // Ending the relay closes nothing of ours; the ends see EOF once its sockets drop.
    let n = agent.read(&mut b).await.expect("read");
    assert_eq!(n, 0);
}

/// A pipe starts at the kernel's default and grows by steps to the 1 MiB cap, where it stays.
#[test]
fn pipes_grow_to_the_cap_and_no_further() {
    let mut p = Pipe::new().expect("pipe");
    assert_eq!(p.capacity, 64 << 10, "the kernel's default pipe");
    let mut seen = vec![p.capacity];
    for _ in 0..5 {
        p.grow();
        seen.push(p.capacity);
    }
    assert_eq!(
        seen,
        [64 << 10, 256 << 10, 1 << 20, 1 << 20, 1 << 20, 1 << 20],
        "growth steps (fs.pipe-max-size is {:?})",
        std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
    );
}
