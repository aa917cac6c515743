//! Load generator and loopback upstream for `bench/run.sh`. Not part of the airlock workspace and
//! not a test: it measures egress proxies (airlock's, srt's) against a direct loopback connection
//! with exactly the same client, the same upstream and the same requests.
//!
//! ```text
//! airlock-bench-load serve --port-file FILE
//!     an upstream on 127.0.0.1:0: HTTP/1.1 keep-alive answering every request with a 2-byte body,
//!     or, when a connection starts with "SINK" and a length, a byte sink answering the count
//! airlock-bench-load load --proxy P --target HOST:PORT --conns N --secs S [--warmup S] [--mode tunnel|connect]
//!     N concurrent connections sending small GET requests for S seconds after a warm-up; prints
//!     one JSON line (requests, errors, rps, latency percentiles in µs).
//!     tunnel: one CONNECT tunnel per connection, kept alive (relay cost);
//!     connect: a new CONNECT tunnel for every request (proxy set-up cost: policy, dial, audit)
//! airlock-bench-load bulk --proxy P --target HOST:PORT --mib N [--runs R]
//!     bulk upload through one tunnel; prints MiB/s of each run
//! airlock-bench-load hold --proxy P --target HOST:PORT --conns N --secs S
//!     opens N tunnels, sends one request on each, prints "ready ..." and keeps them open S seconds
//! airlock-bench-load maxrss CMD [ARGS...]
//!     runs CMD, prints its ru_maxrss in KiB (a stand-in for `/usr/bin/time -f %M`)
//! ```
//! P is `none` (direct), `env` (HTTPS_PROXY / HTTP_PROXY, as set inside the sandboxes), or a
//! proxy URL `http://[user:pass@]host:port` (credentials are sent as Proxy-Authorization: Basic).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A request (or a tunnel set-up) that takes longer than this counts as an error: a proxy that
/// stalls must not stall the benchmark.
const TIMEOUT: Duration = Duration::from_secs(5);

async fn timed<T>(f: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs()).into()),
    }
}

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

#[derive(Clone, Debug)]
struct Proxy {
    addr: String,
    auth: Option<String>,
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn parse_proxy(spec: &str) -> Result<Option<Proxy>, Error> {
    let spec = match spec {
        "none" => return Ok(None),
        "env" => ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .ok_or("--proxy env: no HTTPS_PROXY or HTTP_PROXY in the environment")?,
        s => s.to_string(),
    };
    let rest = spec
        .strip_prefix("http://")
        .unwrap_or(&spec)
        .trim_end_matches('/');
    let (auth, addr) = match rest.rsplit_once('@') {
        Some((user, addr)) => {
            let (u, p) = user.split_once(':').unwrap_or((user, ""));
            let mut cred = percent_decode(u);
            cred.push(b':');
            cred.extend(percent_decode(p));
            (Some(base64(&cred)), addr.to_string())
        }
        None => (None, rest.to_string()),
    };
    Ok(Some(Proxy { addr, auth }))
}

async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), Error> {
    // Reads up to the end of a header block; leftover bytes are not expected in these protocols.
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let body_len = content_length(&buf[..end]);
            let have = buf.len() - (end + 4);
            if have < body_len {
                let mut rest = vec![0u8; body_len - have];
                s.read_exact(&mut rest).await?;
            }
            return Ok(());
        }
        if buf.len() > 64 * 1024 {
            return Err("header too large".into());
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn content_length(head: &[u8]) -> usize {
    let text = String::from_utf8_lossy(head);
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

async fn open(proxy: Option<&Proxy>, target: &str) -> Result<TcpStream, Error> {
    let Some(p) = proxy else {
        let s = TcpStream::connect(target).await?;
        s.set_nodelay(true)?;
        return Ok(s);
    };
    let mut s = TcpStream::connect(&p.addr).await?;
    s.set_nodelay(true)?;
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = &p.auth {
        req.push_str(&format!("Proxy-Authorization: Basic {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await?;
        head.push(b[0]);
        if head.len() > 16 * 1024 {
            return Err("proxy answer too large".into());
        }
    }
    if !(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")) {
        let line = String::from_utf8_lossy(&head);
        return Err(format!("proxy refused: {}", line.lines().next().unwrap_or("")).into());
    }
    Ok(s)
}

async fn request(s: &mut TcpStream, target: &str, buf: &mut Vec<u8>) -> Result<(), Error> {
    let req = format!("GET /small HTTP/1.1\r\nHost: {target}\r\nUser-Agent: airlock-bench\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    read_head(s, buf).await?;
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err("upstream did not answer 200".into());
    }
    Ok(())
}

// ---- upstream ----

async fn serve(port_file: &str) -> Result<(), Error> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    let tmp = format!("{port_file}.tmp");
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, port_file)?;
    loop {
        let (mut s, _) = match l.accept().await {
            Ok(c) => c,
            Err(_) => {
                // EMFILE and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut filled = 0usize;
            // Decide the protocol on the first bytes.
            while filled < 4 {
                match s.read(&mut buf[filled..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => filled += n,
                }
            }
            if &buf[..4] == b"SINK" {
                // "SINK", an 8-byte big-endian length, then that many bytes; the answer is the
                // count received. No half-close: not every proxy relays one (srt's does not).
                while filled < 12 {
                    match s.read(&mut buf[filled..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => filled += n,
                    }
                }
                let want = u64::from_be_bytes(buf[4..12].try_into().unwrap_or([0; 8]));
                let mut total = (filled - 12) as u64;
                while total < want {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n as u64,
                    }
                }
                let _ = s.write_all(&total.to_be_bytes()).await;
                return;
            }
            let mut pending: Vec<u8> = buf[..filled].to_vec();
            loop {
                while let Some(end) = find(&pending, b"\r\n\r\n") {
                    pending.drain(..end + 4);
                    if s.write_all(RESPONSE).await.is_err() {
                        return;
                    }
                }
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            }
        });
    }
}

// ---- load ----

struct Shared {
    proxy: Option<Proxy>,
    target: String,
    measure_from: Instant,
    until: Instant,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, e: &Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_error.lock().unwrap();
        if f.is_none() {
            *f = Some(e.to_string());
        }
    }
}

async fn tunnel_worker(sh: Arc<Shared>, mut s: Option<TcpStream>) -> Vec<u32> {
    let mut lat = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    loop {
        let now = Instant::now();
        if now >= sh.until {
            return lat;
        }
        let mut conn = match s.take() {
            Some(c) => c,
            None => match timed(open(sh.proxy.as_ref(), &sh.target)).await {
                Ok(c) => c,
                Err(e) => {
                    sh.error(&e);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        let t = Instant::now();
        match timed(request(&mut conn, &sh.target, &mut buf)).await {
            Ok(()) => {
                if t >= sh.measure_from {
                    lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
                s = Some(conn);
            }
            Err(e) => sh.error(&e),
        }
    }
}

async fn connect_worker(sh: Arc<Shared>) -> Vec<u32> {
    let mut lat = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    while Instant::now() < sh.until {
        let t = Instant::now();
        let r = timed(async {
            let mut c = open(sh.proxy.as_ref(), &sh.target).await?;
            request(&mut c, &sh.target, &mut buf).await?;
            Ok::<_, Error>(())
        })
        .await;
        match r {
            Ok(()) => {
                if t >= sh.measure_from {
                    lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
            Err(e) => {
                sh.error(&e);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    lat
}

fn pct(v: &[u32], p: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

async fn open_many(proxy: Option<&Proxy>, target: &str, n: usize) -> (Vec<TcpStream>, u64) {
    // At most 64 connections being set up at once, so a listen backlog never overflows.
    let sem = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let sem = sem.clone();
        let proxy = proxy.cloned();
        let target = target.to_string();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.ok()?;
            timed(async {
                let mut s = open(proxy.as_ref(), &target).await?;
                let mut buf = Vec::new();
                request(&mut s, &target, &mut buf).await?;
                Ok(s)
            })
            .await
            .ok()
        }));
    }
    let mut out = Vec::with_capacity(n);
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok(Some(s)) => out.push(s),
            _ => errors += 1,
        }
    }
    (out, errors)
}

async fn load(
    proxy: Option<Proxy>,
    target: String,
    conns: usize,
    secs: f64,
    warmup: f64,
    mode: &str,
) -> Result<(), Error> {
    let (streams, open_errors) = if mode == "tunnel" {
        open_many(proxy.as_ref(), &target, conns).await
    } else {
        (Vec::new(), 0)
    };
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let sh = Arc::new(Shared {
        proxy,
        target,
        measure_from,
        until: measure_from + Duration::from_secs_f64(secs),
        errors: AtomicU64::new(open_errors),
        first_error: std::sync::Mutex::new(None),
    });
    let mut tasks = Vec::with_capacity(conns);
    let mut streams = streams.into_iter();
    for _ in 0..conns {
        let sh = sh.clone();
        if mode == "tunnel" {
            let s = streams.next();
            tasks.push(tokio::spawn(tunnel_worker(sh, s)));
        } else {
            tasks.push(tokio::spawn(connect_worker(sh)));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    // Requests started inside the measured window, over the window's length (a request still in
    // flight at its end is counted when it completes, within TIMEOUT).
    let measured = secs.max(1e-9);
    all.sort_unstable();
    let first_error = sh.first_error.lock().unwrap().clone().unwrap_or_default();
    println!(
        "{{\"mode\":\"{mode}\",\"conns\":{conns},\"secs\":{measured:.3},\"requests\":{},\"errors\":{},\"rps\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{},\"first_error\":{:?}}}",
        all.len(),
        sh.errors.load(Ordering::Relaxed),
        all.len() as f64 / measured,
        pct(&all, 0.5),
        pct(&all, 0.9),
        pct(&all, 0.99),
        all.last().copied().unwrap_or(0),
        first_error,
    );
    Ok(())
}

async fn bulk(proxy: Option<Proxy>, target: String, mib: usize, runs: usize) -> Result<(), Error> {
    let chunk = vec![0x5au8; 256 * 1024];
    let mut results = Vec::new();
    // One warm-up run of 16 MiB, then the measured runs.
    for run in 0..=runs {
        let size = if run == 0 { 16.min(mib) } else { mib };
        let mut s = open(proxy.as_ref(), &target).await?;
        let start = Instant::now();
        s.write_all(b"SINK").await?;
        s.write_all(&((size * 1024 * 1024) as u64).to_be_bytes()).await?;
        for _ in 0..size * 4 {
            s.write_all(&chunk).await?;
        }
        let mut count = [0u8; 8];
        s.read_exact(&mut count).await?;
        let secs = start.elapsed().as_secs_f64();
        let got = u64::from_be_bytes(count);
        if got != (size * 1024 * 1024) as u64 {
            return Err(format!("sink got {got} bytes, sent {}", size * 1024 * 1024).into());
        }
        if run > 0 {
            results.push(size as f64 / secs);
        }
    }
    let list: Vec<String> = results.iter().map(|r| format!("{r:.1}")).collect();
    println!("{{\"mib\":{mib},\"mib_per_s\":[{}]}}", list.join(","));
    Ok(())
}

async fn hold(proxy: Option<Proxy>, target: String, conns: usize, secs: f64) -> Result<(), Error> {
    let (streams, errors) = open_many(proxy.as_ref(), &target, conns).await;
    println!("ready {} {}", streams.len(), errors);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    drop(streams);
    Ok(())
}

fn usage() -> Error {
    "usage: airlock-bench-load serve --port-file FILE | load|bulk|hold --proxy none|env|URL --target HOST:PORT [--conns N] [--secs S] [--warmup S] [--mode tunnel|connect] [--mib N] [--runs R]".into()
}

/// `maxrss CMD...`: runs CMD and prints the ru_maxrss (KiB) wait4 reports for it, as
/// `/usr/bin/time -f %M` does (the stand-in when GNU time is not installed). This process is
/// small, so the child's pre-exec peak (inherited from the parent) stays near time's.
fn maxrss(argv: &[String]) -> Result<(), Error> {
    let (cmd, args) = argv.split_first().ok_or_else(usage)?;
    let child = std::process::Command::new(cmd)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid {
        return Err(std::io::Error::last_os_error().into());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{cmd} failed (wait status {status})").into());
    }
    println!("{}", ru.ru_maxrss);
    Ok(())
}

fn main() -> Result<(), Error> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("maxrss") {
        return maxrss(&argv[1..]);
    }
    // Two workers, as many as the benchmark machines have cores; no tokio macros (faster builds).
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().ok_or_else(usage)?;
    let (mut proxy, mut target, mut port_file) = (String::from("none"), None, None);
    let (mut conns, mut secs, mut warmup, mut mode, mut mib, mut runs) =
        (1usize, 3.0f64, 0.5f64, String::from("tunnel"), 256usize, 3usize);
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or_else(usage);
        match a.as_str() {
            "--proxy" => proxy = v()?,
            "--target" => target = Some(v()?),
            "--port-file" => port_file = Some(v()?),
            "--conns" => conns = v()?.parse()?,
            "--secs" => secs = v()?.parse()?,
            "--warmup" => warmup = v()?.parse()?,
            "--mode" => mode = v()?,
            "--mib" => mib = v()?.parse()?,
            "--runs" => runs = v()?.parse()?,
            _ => return Err(usage()),
        }
    }
    if cmd == "serve" {
        return serve(&port_file.ok_or_else(usage)?).await;
    }
    let proxy = parse_proxy(&proxy)?;
    let target = target.ok_or_else(usage)?;
    match cmd.as_str() {
        "load" if mode == "tunnel" || mode == "connect" => {
            load(proxy, target, conns, secs, warmup, &mode).await
        }
        "bulk" => bulk(proxy, target, mib, runs).await,
        "hold" => hold(proxy, target, conns, secs).await,
        _ => Err(usage()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(super::base64(b"foob"), "Zm9vYg==");
        assert_eq!(super::base64(b"a:b"), "YTpi");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("a%3Db"), b"a=b");
        assert_eq!(super::percent_decode("a%3"), b"a%3");
    }
}
