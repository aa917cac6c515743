//! Network clients talking only to this machine (`curl -X POST http://localhost:3000/api`,
//! `nc -z localhost 5432`): a local dev server or database, not the network. Such a call is not
//! "reaches the network" and not "uploads local data" — unless it names a container engine or
//! cluster API port, or has an option that sends it elsewhere (a proxy, `--resolve`,
//! `--connect-to`, a config file, a Unix socket).

use crate::ir::Invocation;
use crate::ir::Word;

/// Clients judged here (curl(1), wget(1), nc(1), HTTPie and xh); others keep their network
/// flag.
const CLIENTS: &[&str] = &[
    "http",
    "https",
    "xh",
    "xhs",
    "curl",
    "wget",
    "nc",
    "ncat",
    "netcat",
    "nc.openbsd",
    "nc.traditional",
];

/// Canonical options that send the request somewhere other than the URL's host, or read
/// options from elsewhere (curl `-K`, wget `-e`/`-i`), or run code (nc `-e`/`-c`).
const REDIRECTING: &[&str] = &[
    "proxy",
    "preproxy",
    "socks4",
    "socks4a",
    "socks5",
    "socks5-hostname",
    "resolve",
    "connect-to",
    "unix-socket",
    "abstract-unix-socket",
    "doh-url",
    "config",
    "next",
    "execute",
    "input-file",
    "e",
    "c",
    "exec",
    "sh-exec",
    "lua-exec",
    "listen",
    "proxy-type",
    "x",
    "X",
];

/// Ports of local services that control the machine (Docker's API, the Kubernetes API and
/// kubelet, `kubectl proxy`): loopback or not, talking to them is not a local dev server.
const CONTROL_PORTS: &[u16] = &[2375, 2376, 2377, 4243, 6443, 8001, 10250, 10255];

/// Whether `inv` is a network client whose every destination is this machine.
pub fn loopback_only(inv: &Invocation) -> bool {
    if !CLIENTS.contains(&inv.program.as_str()) || !inv.network {
        return false;
    }
    if inv
        .flags
        .iter()
        .any(|(n, _)| REDIRECTING.contains(&n.as_str()) || n.contains("proxy"))
    {
        return false;
    }
    let nc = inv.program.starts_with("nc") || inv.program == "netcat";
    if HTTPIE.contains(&inv.program.as_str()) {
        return httpie_loopback(inv);
    }
    let mut dests: Vec<&Word> = inv.positionals.iter().collect();
    dests.extend(
        inv.flags
            .iter()
            .filter(|(n, _)| n == "url")
            .filter_map(|(_, v)| v.as_ref()),
    );
    if dests.is_empty() {
        return false;
    }
    let mut saw_host = false;
    for w in dests {
        let Some(t) = w.as_static() else {
            return false;
        };
        if nc && t.chars().all(|c| c.is_ascii_digit() || c == '-') {
            // A port or port range.
            if port_list(t).iter().any(|p| CONTROL_PORTS.contains(p)) {
                return false;
            }
            continue;
        }
        match host_port(t) {
            Some((host, port)) if is_loopback(&host) => {
                if port.is_some_and(|p| CONTROL_PORTS.contains(&p)) {
                    return false;
                }
                saw_host = true;
            }
            _ => return false,
        }
    }
    saw_host
}

/// HTTPie-style clients: `http [METHOD] URL [ITEM...]`, where the items are headers and data
/// (`Name:value`, `field=value`, `field:=json`, `@file`), not destinations.
const HTTPIE: &[&str] = &["http", "https", "xh", "xhs"];

/// Whether an HTTPie-style call goes to this machine: its URL (after an optional upper-case
/// method) is loopback, or the `:PORT/path` / `:/path` shorthand for localhost (HTTPie's
/// documented "localhost shorthand").
fn httpie_loopback(inv: &Invocation) -> bool {
    let mut pos = inv.positionals.iter();
    let Some(mut url) = pos.next().and_then(Word::as_static) else {
        return false;
    };
    if url.len() <= 10 && !url.is_empty() && url.chars().all(|c| c.is_ascii_uppercase()) {
        let Some(u) = pos.next().and_then(Word::as_static) else {
            return false;
        };
        url = u;
    }
    if let Some(rest) = url.strip_prefix(':') {
        // `:3000/users`, `:/users`: localhost, the port (if any) before the first `/`.
        let port = rest.split(['/', '?', '#']).next().unwrap_or("");
        return port.is_empty()
            || port
                .parse::<u16>()
                .is_ok_and(|p| !CONTROL_PORTS.contains(&p));
    }
    match host_port(url) {
        Some((host, port)) => {
            is_loopback(&host) && !port.is_some_and(|p| CONTROL_PORTS.contains(&p))
        }
        None => false,
    }
}

/// Ports named by `5432` or `8000-8010` (a range of up to 4096 ports; larger ones stand for
/// every port, including the control ports).
fn port_list(t: &str) -> Vec<u16> {
    match t.split_once('-') {
        Some((a, b)) => match (a.parse::<u16>(), b.parse::<u16>()) {
            (Ok(a), Ok(b)) if a <= b && b - a <= 4096 => (a..=b).collect(),
            _ => CONTROL_PORTS.to_vec(),
        },
        None => t.parse::<u16>().map(|p| vec![p]).unwrap_or_default(),
    }
}

/// The host and port of a URL or `host[:port][/path]` (RFC 3986 authority: userinfo before
/// the last `@` dropped, `[v6]` literals unbracketed).
fn host_port(t: &str) -> Option<(String, Option<u16>)> {
    let rest = match t.split_once("://") {
        Some((scheme, r)) => {
            if !matches!(
                scheme.to_ascii_lowercase().as_str(),
                "http" | "https" | "ws" | "wss" | "tcp"
            ) {
                return None;
            }
            r
        }
        None => t,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_ascii_lowercase(), port));
    }
    match hostport.split_once(':') {
        Some((h, p)) => Some((h.to_ascii_lowercase(), Some(p.parse().ok()?))),
        None => Some((hostport.to_ascii_lowercase(), None)),
    }
}

/// `localhost`, `*.localhost` (RFC 6761), `127.0.0.0/8` in dotted-quad form, `::1`,
/// `0.0.0.0` (connecting to it reaches this machine on Linux).
fn is_loopback(host: &str) -> bool {
    let h = host.trim_end_matches('.');
    if h == "localhost"
        || h == "0.0.0.0"
        || h.ends_with(".localhost")
        || h == "::1"
        || h == "0:0:0:0:0:0:0:1"
    {
        return true;
    }
    let parts: Vec<&str> = h.split('.').collect();
    parts.len() == 4
        && parts[0] == "127"
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for (t, want) in [
            ("http://localhost:3000/api/x", true),
            ("localhost:8080", true),
            ("http://127.0.0.1/x", true),
            ("http://[::1]:8000/", true),
            ("http://app.localhost/", true),
            ("http://localhost@evil.example/", false),
            ("http://localhost.evil.example/", false),
            ("http://127.0.0.1.evil.example/", false),
            ("http://evil.example/?u=http://localhost", false),
            ("file:///etc/passwd", false),
            ("http://0x7f000001/", false),
            ("http://localhost:2375/containers/json", true),
        ] {
            let got = host_port(t).is_some_and(|(h, _)| is_loopback(&h));
            assert_eq!(got, want, "{t}");
        }
        assert_eq!(
            host_port("http://localhost:2375/x"),
            Some(("localhost".into(), Some(2375)))
        );
    }
}
