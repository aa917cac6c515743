//! Request-target parsing for the proxy's parse phase: the `host:port` of a CONNECT
//! (authority-form) and the authority of a plain-HTTP absolute-form request, normalised into a
//! policy [`Host`] so that every spelling of a name or address is judged the same way.

use airlock_policy::network::Host;

/// Parses an authority (`host:port`, `[v6]:port`, or `host` when `default_port` is given).
/// Userinfo (`user@host`) is refused: it has no business in a proxy request and is a classic
/// way to confuse parsers about which host is meant.
pub fn parse_authority(s: &str, default_port: Option<u16>) -> Result<(Host, u16), String> {
    let short: String = s.chars().take(100).collect();
    if s.contains('@') {
        return Err(format!("'{short}' has userinfo; send only host:port"));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{short}' has an unterminated ipv6 literal"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("'{short}' has junk after the ipv6 literal"))?,
            ),
        };
        (&s[..h.len() + 2], port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => parse_port(p).ok_or_else(|| format!("'{short}' has an invalid port"))?,
        None => default_port.ok_or_else(|| format!("'{short}' has no port"))?,
    };
    let host = Host::parse(host).map_err(|e| e.to_string())?;
    Ok((host, port))
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn parses_connect_targets() {
        assert_eq!(
            parse_authority("Example.com:443", None),
            Ok((Host::Name("example.com".into()), 443))
        );
        assert_eq!(
            parse_authority("[::1]:8443", None),
            Ok((Host::Ip("::1".parse().expect("ip")), 8443))
        );
        assert_eq!(
            parse_authority("127.1:80", None),
            Ok((Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)), 80))
        );
        assert_eq!(
            parse_authority("example.com", Some(80)),
            Ok((Host::Name("example.com".into()), 80))
        );
        for bad in [
            "example.com",
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:+443",
            "user@example.com:443",
            "evil.com@example.com:443",
            "[::1:443",
            "[::1]x:443",
            "exa mple.com:443",
            ":443",
            "a:b:443",
        ] {
            assert!(parse_authority(bad, None).is_err(), "{bad:?}");
        }
    }
}
