//! Benchmark (not a test): CONNECT tunnel throughput and added latency through airlock's proxy
//! versus a direct loopback connection, and optionally versus another HTTP CONNECT proxy
//! (e.g. srt's) given with `--proxy HOST:PORT`. Everything stays on 127.0.0.1.
//!
//! `cargo run --release -p airlock-net --example tunnel_bench -- [--mib N] [--pings N] [--proxy ADDR]`
//!
//! With `--serve-for PORT` it only runs the proxy, in a process of its own (as the supervisor
//! does), allowing `bench.test:PORT` pinned to 127.0.0.1, prints `proxy ADDR` and serves until
//! killed: for profiling the relay alone (`perf record -p`, `strace -c -p`) with the load
//! generator of `bench/loadgen` as client and upstream (see bench/PROFILING.md).
#![allow(
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_audit::AuditLog;
use airlock_net::{Egress, EgressConfig, StaticResolver};
use airlock_policy::network::NetworkPolicy;
use airlock_policy::NetworkConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A server whose connections either sink bytes (first byte `S`, answers with 8-byte count at
/// EOF) or echo them (first byte `E`).
async fn server() -> Result<SocketAddr, BoxError> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut mode = [0u8; 1];
                if s.read_exact(&mut mode).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 256 * 1024];
                let mut total: u64 = 0;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total += n as u64;
                            if mode[0] == b'E' && s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.write_all(&total.to_be_bytes()).await;
            });
        }
    });
    Ok(addr)
}

async fn open(via: Option<SocketAddr>, target: SocketAddr) -> Result<TcpStream, BoxError> {
    let Some(proxy) = via else {
        let s = TcpStream::connect(target).await?;
        s.set_nodelay(true)?;
        return Ok(s);
    };
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    let host = format!("bench.test:{}", target.port());
    s.write_all(format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await?;
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        return Err(format!("proxy refused: {}", String::from_utf8_lossy(&head)).into());
    }
    Ok(s)
}

async fn throughput(
    via: Option<SocketAddr>,
    target: SocketAddr,
    mib: usize,
) -> Result<f64, BoxError> {
    let mut s = open(via, target).await?;
    s.write_all(b"S").await?;
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    for _ in 0..mib * 4 {
        s.write_all(&chunk).await?;
    }
    s.shutdown().await?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count).await?;
    let secs = start.elapsed().as_secs_f64();
    let got = u64::from_be_bytes(count);
    if got != (mib * 1024 * 1024) as u64 {
        return Err(format!("sink got {got} bytes").into());
    }
    Ok(mib as f64 / secs)
}

async fn round_trips(
    via: Option<SocketAddr>,
    target: SocketAddr,
    n: usize,
) -> Result<Vec<Duration>, BoxError> {
    let mut s = open(via, target).await?;
    s.write_all(b"E").await?;
    let mut out = Vec::with_capacity(n);
    let mut b = [0u8; 64];
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&b).await?;
        s.read_exact(&mut b).await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

async fn setups(
    via: Option<SocketAddr>,
    target: SocketAddr,
    n: usize,
) -> Result<Vec<Duration>, BoxError> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut s = open(via, target).await?;
        s.write_all(b"Ex").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

async fn run(
    name: &str,
    via: Option<SocketAddr>,
    target: SocketAddr,
    mib: usize,
    pings: usize,
) -> Result<(), BoxError> {
    // Warm up.
    throughput(via, target, 16).await?;
    let mut best = 0f64;
    for _ in 0..3 {
        best = best.max(throughput(via, target, mib).await?);
    }
    let mut rtt = round_trips(via, target, pings).await?;
    let mut setup = setups(via, target, 500).await?;
    println!(
        "| {name} | {best:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
        pct(&mut rtt, 0.5),
        pct(&mut rtt, 0.99),
        pct(&mut setup, 0.5),
        pct(&mut setup, 0.99),
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (mut mib, mut pings, mut other, mut serve_for) = (512usize, 20_000usize, None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mib" => mib = args.next().ok_or("--mib N")?.parse()?,
            "--pings" => pings = args.next().ok_or("--pings N")?.parse()?,
            "--proxy" => other = Some(args.next().ok_or("--proxy ADDR")?.parse::<SocketAddr>()?),
            "--serve-for" => {
                serve_for = Some(args.next().ok_or("--serve-for PORT")?.parse::<u16>()?)
            }
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let target = match serve_for {
        Some(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        None => server().await?,
    };
    let mut c = NetworkConfig {
        allow: vec!["bench.test".into()],
        allow_private: vec!["127.0.0.1".into()],
        ..NetworkConfig::default()
    };
    c.resolve.insert("bench.test".into(), "127.0.0.1".into());
    c.ports.insert("bench.test".into(), vec![target.port()]);
    let dir = std::env::temp_dir().join(format!("airlock-bench-{}", std::process::id()));
    let audit = Arc::new(AuditLog::open(dir.join("audit.jsonl"))?);
    let mut cfg = EgressConfig::new(
        std::net::TcpListener::bind("127.0.0.1:0")?,
        NetworkPolicy::compile(&c)?,
        audit,
    );
    cfg.resolver = Arc::new(StaticResolver::new());
    let egress = Egress::start(cfg, &tokio::runtime::Handle::current())?;
    if serve_for.is_some() {
        println!("proxy {}", egress.proxy_addr());
        std::future::pending::<()>().await;
    }
    println!("payload {mib} MiB per run (best of 3), {pings} round trips of 64 bytes, 500 connection setups");
    println!();
    println!("| path | throughput MiB/s | rtt p50 µs | rtt p99 µs | connect+first byte p50 µs | p99 µs |");
    println!("|---|---|---|---|---|---|");
    run("direct loopback", None, target, mib, pings).await?;
    run(
        "airlock CONNECT tunnel",
        Some(egress.proxy_addr()),
        target,
        mib,
        pings,
    )
    .await?;
    if let Some(p) = other {
        run(&format!("other proxy {p}"), Some(p), target, mib, pings).await?;
    }
    drop(egress);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
