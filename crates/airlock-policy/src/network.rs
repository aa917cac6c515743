//! Egress policy (`[network]`), compiled from [`NetworkConfig`] into a form the proxy and the DNS
//! filter can ask cheaply: host normalisation (names, IP literals in every spelling a resolver
//! accepts), domain patterns (`example.com`, `*.example.com` = subdomains only), deny-wins
//! decisions that name the rule which matched, per-host ports, the private-range rule against
//! DNS rebinding (`allow_private`), `[network.resolve]` pins, and the random-label heuristic for
//! DNS exfiltration. Pure: no I/O, no resolution.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{NetworkConfig, DEFAULT_WILDCARD_NAMES_MAX, WILDCARD_NAMES_LIMIT};

/// Ports a host may use when `[network.ports]` does not name it.
pub const DEFAULT_PORTS: &[u16] = &[80, 443];

/// A `[network]` entry that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy: network.{key}: '{value}' {message}")]
pub struct NetworkPolicyError {
    /// The key, e.g. `allow[2]` or `resolve.api.example.test`.
    pub key: String,
    pub value: String,
    pub message: String,
}

/// A destination host as the agent named it, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// A DNS name: lowercase ASCII, no trailing dot.
    Name(String),
    /// An IP literal (IPv4-mapped IPv6 is canonicalised to IPv4).
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
        }
    }
}

/// Why a host string is not a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("empty host name")]
    Empty,
    #[error("host name '{0}' is longer than 253 characters")]
    TooLong(String),
    #[error("host name '{0}' has an empty or over-long label")]
    BadLabel(String),
    #[error("host name '{0}' contains a character that is not allowed in a DNS name")]
    BadChar(String),
    #[error("'{0}' looks like an IPv4 address but is not a valid one")]
    BadIpv4(String),
    #[error("'{0}' is not a valid IPv6 address")]
    BadIpv6(String),
}

impl Host {
    /// Parses a host as it appears in a request target, a Host header, an SNI or a DNS query:
    /// `example.com`, `Example.COM.`, `127.0.0.1`, `[::1]`, `::1`, and the legacy IPv4 spellings
    /// that resolvers accept (`127.1`, `0x7f.0.0.1`, `2130706433`, `0177.0.0.1`), which are IP
    /// literals, not names.
    pub fn parse(s: &str) -> Result<Host, HostError> {
        if s.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| HostError::BadIpv6(s.to_string()))?;
            // Zone ids (`%eth0`) are refused: they only make sense for link-local addresses.
            let ip: Ipv6Addr = inner
                .parse()
                .map_err(|_| HostError::BadIpv6(s.to_string()))?;
            return Ok(Host::Ip(IpAddr::V6(ip).to_canonical()));
        }
        if s.contains(':') {
            let ip: Ipv6Addr = s.parse().map_err(|_| HostError::BadIpv6(s.to_string()))?;
            return Ok(Host::Ip(IpAddr::V6(ip).to_canonical()));
        }
        let lower = s.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name.is_empty() {
            return Err(HostError::Empty);
        }
        if name.len() > 253 {
            return Err(HostError::TooLong(truncate(s)));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(HostError::BadChar(truncate(s)));
        }
        if name.split('.').any(|l| l.is_empty() || l.len() > 63) {
            return Err(HostError::BadLabel(truncate(s)));
        }
        // WHATWG URL rule: a name whose last label is numeric is an IPv4 address.
        let last = name.rsplit('.').next().unwrap_or(name);
        if is_numeric_label(last) {
            return parse_inet_aton(name)
                .map(|ip| Host::Ip(IpAddr::V4(ip)))
                .ok_or_else(|| HostError::BadIpv4(truncate(s)));
        }
        Ok(Host::Name(name.to_string()))
    }

    /// The name, if this is not an IP literal.
    pub fn name(&self) -> Option<&str> {
        match self {
            Host::Name(n) => Some(n),
            Host::Ip(_) => None,
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn is_numeric_label(l: &str) -> bool {
    if let Some(hex) = l.strip_prefix("0x") {
        return hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit())
}

/// `inet_aton(3)`: one to four parts, each decimal, `0x` hex or `0`-leading octal.
fn parse_inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x") {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        let n = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        if n > u64::from(u32::MAX) {
            return None;
        }
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    if head.iter().any(|&n| n > 255) {
        return None;
    }
    let shift = 8 * (4 - head.len());
    if shift < 32 && *last >= 1u64 << shift {
        return None;
    }
    let mut v: u64 = *last;
    for (i, &n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i);
    }
    u32::try_from(v).ok().map(Ipv4Addr::from)
}

/// A host-name pattern: an exact name, or `*.suffix` matching every name strictly below suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    Exact(String),
    /// The suffix without the `*.`.
    Subdomains(String),
}

impl DomainPattern {
    /// Parses `example.com` or `*.example.com`.
    pub fn parse(s: &str) -> Result<DomainPattern, String> {
        let (wild, rest) = match s.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, s),
        };
        if rest.contains('*') {
            return Err("may only use '*' as a whole leading label ('*.example.com')".into());
        }
        match Host::parse(rest) {
            Ok(Host::Name(n)) if wild && !n.contains('.') => Err(format!(
                "matches every name under the top-level domain '{n}'; name a registrable domain"
            )),
            Ok(Host::Name(n)) if wild => Ok(DomainPattern::Subdomains(n)),
            Ok(Host::Name(n)) => Ok(DomainPattern::Exact(n)),
            Ok(Host::Ip(_)) => Err("is an address: write it without '*.'".into()),
            Err(e) => Err(format!("is not a host name ({e})")),
        }
    }

    /// Whether `name` (normalised) matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            DomainPattern::Exact(n) => n == name,
            DomainPattern::Subdomains(s) => {
                name.len() > s.len() + 1
                    && name.ends_with(s.as_str())
                    && name.as_bytes()[name.len() - s.len() - 1] == b'.'
            }
        }
    }
}

/// An address block; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8`, `127.0.0.1` or `::1`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let a = a.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = a
            .parse()
            .map_err(|_| "is not an IP address or CIDR".to_string())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("has a prefix length that is not 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` (canonicalised) is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(prefix.min(128)));
    a & mask == b & mask
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A special-purpose address range that a public name must never resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialRange {
    /// What it is, e.g. `loopback` or `cloud metadata`.
    pub kind: &'static str,
    /// The block, e.g. `127.0.0.0/8`.
    pub block: &'static str,
}

const fn sr(kind: &'static str, block: &'static str) -> SpecialRange {
    SpecialRange { kind, block }
}

/// The special-purpose IPv4 blocks, most specific first (the first that holds an address
/// classifies it): IANA's IPv4 Special-Purpose Address Registry (RFC 6890 and updates) and
/// the cloud platforms' well-known service addresses (instance metadata at 169.254.169.254 and
/// Alibaba's 100.100.100.200; Azure's WireServer at 168.63.129.16, which is in a public range
/// and serves VM extension settings). The proxy refuses a public name resolving into any of
/// them ([`classify`]); the Kubernetes box's NetworkPolicy leaves them all out of its web rule
/// (airlock-k8s builds it from this table).
pub const SPECIAL_V4: &[SpecialRange] = &[
    sr("cloud metadata", "169.254.169.254/32"),
    sr("cloud metadata", "100.100.100.200/32"),
    sr("azure wireserver", "168.63.129.16/32"),
    sr("this network", "0.0.0.0/8"),
    sr("private", "10.0.0.0/8"),
    sr("carrier-grade nat", "100.64.0.0/10"),
    sr("loopback", "127.0.0.0/8"),
    sr("link-local", "169.254.0.0/16"),
    sr("private", "172.16.0.0/12"),
    sr("ietf protocol assignments", "192.0.0.0/24"),
    sr("documentation", "192.0.2.0/24"),
    sr("6to4 relay anycast", "192.88.99.0/24"),
    sr("private", "192.168.0.0/16"),
    sr("benchmarking", "198.18.0.0/15"),
    sr("documentation", "198.51.100.0/24"),
    sr("documentation", "203.0.113.0/24"),
    sr("broadcast", "255.255.255.255/32"),
    sr("multicast", "224.0.0.0/4"),
    sr("reserved", "240.0.0.0/4"),
];

/// The special-purpose IPv6 blocks, most specific first (IANA's IPv6 Special-Purpose Address
/// Registry, RFC 6890 and updates, and AWS's IPv6 metadata address). The blocks of
/// [`EMBEDS_V4`] carry an IPv4 address; [`classify`] judges such an address by the IPv4 one it
/// embeds, and the Kubernetes NetworkPolicy (which cannot look inside) leaves them out whole.
pub const SPECIAL_V6: &[SpecialRange] = &[
    sr("unspecified", "::/128"),
    sr("loopback", "::1/128"),
    sr("ipv4-mapped", "::ffff:0:0/96"),
    sr("ipv4-compatible", "::/96"),
    sr("cloud metadata", "fd00:ec2::254/128"),
    sr("nat64", "64:ff9b::/96"),
    sr("nat64 local-use", "64:ff9b:1::/48"),
    sr("discard-only", "100::/64"),
    sr("teredo", "2001::/32"),
    sr("documentation", "2001:db8::/32"),
    sr("orchid", "2001:10::/28"),
    sr("6to4", "2002::/16"),
    sr("documentation", "3fff::/20"),
    sr("unique-local", "fc00::/7"),
    sr("link-local", "fe80::/10"),
    sr("site-local", "fec0::/10"),
    sr("multicast", "ff00::/8"),
];

/// The blocks of [`SPECIAL_V6`] whose addresses embed an IPv4 address (RFC 4291 mapped and
/// compatible, RFC 6052 NAT64, RFC 3056 6to4).
pub const EMBEDS_V4: &[&str] = &["::ffff:0:0/96", "::/96", "64:ff9b::/96", "2002::/16"];

/// Classifies `ip`: `None` for a public unicast address, otherwise the special range it is in
/// ([`SPECIAL_V4`], [`SPECIAL_V6`]); an IPv6 address that embeds an IPv4 one (mapped, NAT64,
/// 6to4) is as public as the address it embeds, an IPv4-compatible one is refused whatever it
/// embeds (deprecated).
pub fn classify(ip: IpAddr) -> Option<SpecialRange> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// The first range of `table` holding `ip` (compared as given: unlike [`Cidr::contains`], an
/// IPv4-mapped address is not turned into IPv4 first, so `::ffff:0:0/96` holds it).
fn first_in(table: &'static [SpecialRange], ip: IpAddr) -> Option<SpecialRange> {
    let bits = |a: IpAddr| match a {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, false),
        IpAddr::V6(v6) => (u128::from(v6), true),
    };
    let (at, v6) = bits(ip);
    table
        .iter()
        .find(|r| {
            let Some((net, prefix)) = r.block.split_once('/') else {
                return false;
            };
            let (Ok(net), Ok(prefix)) = (net.parse::<IpAddr>(), prefix.parse::<u8>()) else {
                return false;
            };
            let (net, net_v6) = bits(net);
            net_v6 == v6 && prefix_eq(net, at, if v6 { prefix } else { prefix.min(32) })
        })
        .copied()
}

fn classify_v4(ip: Ipv4Addr) -> Option<SpecialRange> {
    first_in(SPECIAL_V4, IpAddr::V4(ip))
}

fn classify_v6(ip: Ipv6Addr) -> Option<SpecialRange> {
    let r = first_in(SPECIAL_V6, IpAddr::V6(ip))?;
    let v = u128::from(ip);
    let low32 = Ipv4Addr::from(u32::try_from(v & 0xffff_ffff).unwrap_or(0));
    Some(match r.block {
        // Mapped and compatible: the embedded address's range, else the block itself.
        "::ffff:0:0/96" | "::/96" => classify_v4(low32).unwrap_or(r),
        // Well-known NAT64: as public as the IPv4 address it embeds.
        "64:ff9b::/96" => return classify_v4(low32),
        "2002::/16" => {
            let v4 = Ipv4Addr::from(u32::try_from((v >> 80) & 0xffff_ffff).unwrap_or(0));
            return classify_v4(v4);
        }
        _ => r,
    })
}

/// Where a hint tells the user to make a change: the user's own files, never one inside the
/// workspace (which may only narrow the policy, DESIGN.md).
pub const WHERE_TO_EDIT: &str =
    "in ~/.config/airlock/config.toml (or a --policy file outside the workspace)";

/// The outcome of one policy question, naming the rule that decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allow: bool,
    /// The rule, e.g. `network.deny[0]=gist.github.com` or `network.allow: no pattern matches`.
    pub rule: String,
    /// Why, in words, for the audit log and the agent.
    pub reason: String,
    /// What the user could change to allow it (denials only).
    pub hint: Option<String>,
}

impl Verdict {
    fn allow(rule: String, reason: String) -> Self {
        Verdict {
            allow: true,
            rule,
            reason,
            hint: None,
        }
    }

    fn deny(rule: String, reason: String, hint: Option<String>) -> Self {
        Verdict {
            allow: false,
            rule,
            reason,
            hint,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Pattern(DomainPattern),
    Addr(Cidr),
}

impl Entry {
    fn parse(s: &str) -> Result<Entry, String> {
        if s.contains('/') || s.parse::<IpAddr>().is_ok() || s.starts_with('[') {
            return Cidr::parse(s).map(Entry::Addr);
        }
        // Legacy IPv4 spellings (`127.1`) are addresses too.
        if !s.starts_with("*.") {
            if let Ok(Host::Ip(ip)) = Host::parse(s) {
                return Ok(Entry::Addr(Cidr {
                    addr: ip,
                    prefix: if ip.is_ipv4() { 32 } else { 128 },
                }));
            }
        }
        DomainPattern::parse(s).map(Entry::Pattern)
    }

    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (Entry::Pattern(p), Host::Name(n)) => p.matches(n),
            (Entry::Addr(c), Host::Ip(ip)) => c.contains(*ip),
            _ => false,
        }
    }

    /// Higher is more specific (exact beats wildcard, longer suffix beats shorter).
    fn specificity(&self) -> usize {
        match self {
            Entry::Pattern(DomainPattern::Exact(_)) | Entry::Addr(_) => usize::MAX,
            Entry::Pattern(DomainPattern::Subdomains(s)) => s.len(),
        }
    }
}

/// `[network]` compiled. Cheap to share behind an `Arc`; replace it whole to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    allow: Vec<(String, Entry)>,
    deny: Vec<(String, Entry)>,
    allow_private: Vec<(String, Cidr)>,
    resolve: BTreeMap<String, Vec<IpAddr>>,
    ports: Vec<(String, Entry, Vec<u16>)>,
    refuse_random_labels: bool,
    wildcard_names_max: u64,
}

impl NetworkPolicy {
    /// A policy that allows nothing.
    pub fn deny_all() -> Self {
        NetworkPolicy {
            allow: Vec::new(),
            deny: Vec::new(),
            allow_private: Vec::new(),
            resolve: BTreeMap::new(),
            ports: Vec::new(),
            refuse_random_labels: false,
            wildcard_names_max: DEFAULT_WILDCARD_NAMES_MAX,
        }
    }

    /// Compiles `[network]`; every entry is validated and the error names the key of the first
    /// bad one ([`NetworkPolicy::compile_all`] lists them all).
    pub fn compile(c: &NetworkConfig) -> Result<Self, NetworkPolicyError> {
        Self::compile_all(c).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Compiles `[network]`, or every bad entry (in file order of keys: allow, deny,
    /// allow_private, resolve, ports, wildcard_names_max), each naming its key; never an empty
    /// list of errors.
    pub fn compile_all(c: &NetworkConfig) -> Result<Self, Vec<NetworkPolicyError>> {
        let err = |key: String, value: &str, message: String| NetworkPolicyError {
            key,
            value: value.to_string(),
            message,
        };
        let mut errors = Vec::new();
        let entries = |list: &[String], key: &str, errors: &mut Vec<_>| {
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                match Entry::parse(s) {
                    Ok(e) => out.push((s.clone(), e)),
                    Err(m) => errors.push(err(format!("{key}[{i}]"), s, m)),
                }
            }
            out
        };
        let allow = entries(&c.allow, "allow", &mut errors);
        let deny = entries(&c.deny, "deny", &mut errors);
        let mut allow_private = Vec::new();
        for (i, s) in c.allow_private.iter().enumerate() {
            match Cidr::parse(s) {
                Ok(c) => allow_private.push((s.clone(), c)),
                Err(m) => errors.push(err(format!("allow_private[{i}]"), s, m)),
            }
        }
        let mut resolve = BTreeMap::new();
        for (name, addrs) in &c.resolve {
            let key = format!("resolve.{name}");
            let host = match Host::parse(name) {
                Ok(Host::Name(n)) => n,
                Ok(Host::Ip(_)) => {
                    errors.push(err(key, name, "is an address, not a name".into()));
                    continue;
                }
                Err(e) => {
                    errors.push(err(key, name, e.to_string()));
                    continue;
                }
            };
            let ips = addrs
                .split(',')
                .map(|a| {
                    a.trim()
                        .parse::<IpAddr>()
                        .map(|ip| ip.to_canonical())
                        .map_err(|_| err(key.clone(), addrs, "is not an IP address".into()))
                })
                .collect::<Result<Vec<_>, _>>();
            match ips {
                Ok(ips) => {
                    resolve.insert(host, ips);
                }
                Err(e) => errors.push(e),
            }
        }
        let mut ports = Vec::new();
        for (host, list) in &c.ports {
            let key = format!("ports.{host}");
            match Entry::parse(host) {
                Err(m) => errors.push(err(key, host, m)),
                Ok(_) if list.is_empty() || list.contains(&0) => errors.push(err(
                    key,
                    host,
                    "needs a non-empty list of ports 1..=65535".into(),
                )),
                Ok(e) => ports.push((host.clone(), e, list.clone())),
            }
        }
        let wildcard_names_max = c.wildcard_names_max.unwrap_or(DEFAULT_WILDCARD_NAMES_MAX);
        if !(1..=WILDCARD_NAMES_LIMIT).contains(&wildcard_names_max) {
            errors.push(err(
                "wildcard_names_max".into(),
                &wildcard_names_max.to_string(),
                format!("must be between 1 and {WILDCARD_NAMES_LIMIT}"),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NetworkPolicy {
            allow,
            deny,
            allow_private,
            resolve,
            ports,
            refuse_random_labels: c.refuse_random_labels.unwrap_or(false),
            wildcard_names_max,
        })
    }

    /// Whether the allow list is empty (no network at all).
    pub fn allows_nothing(&self) -> bool {
        self.allow.is_empty()
    }

    /// Whether DNS queries with random-looking labels under a wildcard are refused (they are
    /// flagged either way).
    pub fn refuses_random_labels(&self) -> bool {
        self.refuse_random_labels
    }

    /// `[network] wildcard_names_max`: distinct names a session may use under each wildcard.
    pub fn wildcard_names_max(&self) -> u64 {
        self.wildcard_names_max
    }

    /// The wildcard pattern (`*.example.org`, as normalised) whose per-session name budget an
    /// allowed `host` counts against: the most specific `*.suffix` allow entry matching it.
    /// `None` for IP literals, for names an exact allow entry names, and for names pinned in
    /// `[network.resolve]` (neither reaches a resolver with a name the agent chose). Call it
    /// only for hosts [`NetworkPolicy::check_host`] allowed.
    pub fn wildcard_budget(&self, host: &Host) -> Option<String> {
        let Host::Name(name) = host else {
            return None;
        };
        if self.resolve.contains_key(name) {
            return None;
        }
        let mut best: Option<&str> = None;
        for (_, e) in &self.allow {
            match e {
                Entry::Pattern(DomainPattern::Exact(n)) if n == name => return None,
                Entry::Pattern(p @ DomainPattern::Subdomains(s))
                    if p.matches(name) && best.is_none_or(|b| s.len() > b.len()) =>
                {
                    best = Some(s);
                }
                _ => {}
            }
        }
        best.map(|s| format!("*.{s}"))
    }

    /// The allow/deny decision for a host, before any port or address is considered.
    /// Deny wins; an IP literal must itself be listed.
    pub fn check_host(&self, host: &Host) -> Verdict {
        if let Some((i, (raw, _))) = self
            .deny
            .iter()
            .enumerate()
            .find(|(_, (_, e))| e.matches(host))
        {
            return Verdict::deny(
                format!("network.deny[{i}]={raw}"),
                format!("{host} is denied by the policy"),
                Some(format!(
                    "remove '{raw}' from [network] deny if {host} should be reachable"
                )),
            );
        }
        if let Some((i, (raw, _))) = self
            .allow
            .iter()
            .enumerate()
            .find(|(_, (_, e))| e.matches(host))
        {
            return Verdict::allow(
                format!("network.allow[{i}]={raw}"),
                format!("{host} is allowed"),
            );
        }
        let bare = match host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        };
        let hint = Some(format!(
            "pass --allow-domain {bare} to airlock run, or add \"{bare}\" to allow under \
             [network] {WHERE_TO_EDIT}"
        ));
        if self.allow.is_empty() {
            return Verdict::deny(
                "network.allow: empty (no network)".into(),
                format!("{host} is not allowed: the policy allows no network at all"),
                hint,
            );
        }
        if let Host::Ip(_) = host {
            return Verdict::deny(
                "network.allow: ip literal not listed".into(),
                format!("{host} is an IP address; addresses are refused unless listed"),
                hint,
            );
        }
        Verdict::deny(
            "network.allow: no pattern matches".into(),
            format!("{host} is not in the allow list"),
            hint,
        )
    }

    /// The ports `host` may use, with the rule that says so.
    pub fn ports_for(&self, host: &Host) -> (String, &[u16]) {
        match self
            .ports
            .iter()
            .filter(|(_, e, _)| e.matches(host))
            .max_by_key(|(_, e, _)| e.specificity())
        {
            Some((raw, _, list)) => (format!("network.ports[{raw}]"), list.as_slice()),
            None => ("network.ports: default".into(), DEFAULT_PORTS),
        }
    }

    /// The host decision followed by the port rule: what the proxy asks before resolving.
    pub fn check_destination(&self, host: &Host, port: u16) -> Verdict {
        let mut v = self.check_host(host);
        let (rule, ports) = self.ports_for(host);
        let bare = match host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        };
        let mut wanted = ports.to_vec();
        wanted.push(port);
        let ports_line = format!("\"{bare}\" = {wanted:?} under [network.ports]");
        if !v.allow {
            // Allowing the name alone would not be enough for this port.
            if !ports.contains(&port) && v.rule.starts_with("network.allow") {
                if let Some(h) = v.hint.as_mut() {
                    h.push_str(&format!("; port {port} also needs {ports_line}"));
                }
            }
            return v;
        }
        if ports.contains(&port) {
            return v;
        }
        Verdict::deny(
            format!("{rule}={ports:?}"),
            format!("port {port} is not allowed for {host} (allowed: {ports:?})"),
            Some(format!(
                "if {host}:{port} should be reachable, set {ports_line} {WHERE_TO_EDIT}"
            )),
        )
    }

    /// The `[network.resolve]` pin for a name, if any.
    pub fn pinned(&self, name: &str) -> Option<&[IpAddr]> {
        self.resolve.get(name).map(Vec::as_slice)
    }

    /// The private-range rule for one address a host resolved to (or an IP literal): a special
    /// address is refused unless `allow_private` names it.
    pub fn check_address(&self, host: &Host, ip: IpAddr) -> Verdict {
        let ip = ip.to_canonical();
        let Some(range) = classify(ip) else {
            return Verdict::allow(
                "network.private: public address".into(),
                format!("{host} -> {ip} is a public address"),
            );
        };
        if let Some((i, (raw, _))) = self
            .allow_private
            .iter()
            .enumerate()
            .find(|(_, (_, c))| c.contains(ip))
        {
            return Verdict::allow(
                format!("network.allow_private[{i}]={raw}"),
                format!("{host} -> {ip} ({}) is allowed", range.kind),
            );
        }
        Verdict::deny(
            format!(
                "network.allow_private: {ip} is {} ({})",
                range.kind, range.block
            ),
            format!(
                "{host} resolves to {ip}, a {} address ({}); refused to prevent dns rebinding",
                range.kind, range.block
            ),
            Some(format!(
                "if {host} really lives there, add \"{ip}\" to allow_private under [network] \
                 {WHERE_TO_EDIT}"
            )),
        )
    }

    /// [`NetworkPolicy::check_address`] for every address; the first refusal wins. An empty
    /// list is refused.
    pub fn check_addresses(&self, host: &Host, ips: &[IpAddr]) -> Verdict {
        let mut last = None;
        for ip in ips {
            let v = self.check_address(host, *ip);
            if !v.allow {
                return v;
            }
            last = Some(v);
        }
        last.unwrap_or_else(|| {
            Verdict::deny(
                "airlock: no address".into(),
                format!("{host} has no address"),
                None,
            )
        })
    }

    /// If `name` is allowed only through a wildcard and the part under the wildcard looks
    /// like encoded data (a DNS exfiltration channel), the suspicious label.
    pub fn random_label<'a>(&self, name: &'a str) -> Option<&'a str> {
        let host = Host::Name(name.to_string());
        let (_, entry) = self.allow.iter().find(|(_, e)| e.matches(&host))?;
        let Entry::Pattern(DomainPattern::Subdomains(suffix)) = entry else {
            return None;
        };
        let prefix = name.get(..name.len().saturating_sub(suffix.len() + 1))?;
        if prefix.len() >= 100 {
            return Some(prefix);
        }
        prefix.split('.').find(|l| looks_random(l))
    }
}

/// The random-label heuristic: very long labels, or hyphen-free labels of 16+ characters that
/// mix letters and digits with high character entropy (hex, base32, base64 encodings).
pub fn looks_random(label: &str) -> bool {
    let n = label.len();
    if n >= 48 {
        return true;
    }
    if n < 16 || label.contains('-') {
        return false;
    }
    let digits = label.bytes().filter(u8::is_ascii_digit).count();
    let letters = label.bytes().filter(u8::is_ascii_alphabetic).count();
    digits >= 2 && letters >= 2 && entropy(label) >= 3.0
}

#[allow(clippy::cast_precision_loss)] // counts are at most 253
fn entropy(s: &str) -> f64 {
    let mut counts = [0usize; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_budget_names_the_most_specific_pattern_and_spares_exact_names() {
        let mut c = NetworkConfig {
            allow: vec![
                "*.example.org".into(),
                "api.example.org".into(),
                "*.deep.example.org".into(),
                "10.0.0.1".into(),
            ],
            ..NetworkConfig::default()
        };
        c.resolve
            .insert("pinned.example.org".into(), "10.0.0.1".into());
        let p = NetworkPolicy::compile(&c).expect("policy");
        let budget = |h: &str| p.wildcard_budget(&Host::parse(h).expect("host"));
        assert_eq!(budget("x.example.org").as_deref(), Some("*.example.org"));
        assert_eq!(budget("X.Example.ORG.").as_deref(), Some("*.example.org"));
        assert_eq!(
            budget("a.deep.example.org").as_deref(),
            Some("*.deep.example.org")
        );
        assert_eq!(budget("api.example.org"), None);
        assert_eq!(budget("pinned.example.org"), None);
        assert_eq!(budget("10.0.0.1"), None);
        assert_eq!(p.wildcard_names_max(), DEFAULT_WILDCARD_NAMES_MAX);
        c.wildcard_names_max = Some(0);
        let e = NetworkPolicy::compile(&c).expect_err("zero");
        assert!(e.to_string().contains("wildcard_names_max"), "{e}");
    }

    fn policy(toml_text: &str) -> NetworkPolicy {
        let c: NetworkConfig = toml::from_str(toml_text).expect("toml");
        NetworkPolicy::compile(&c).expect("compile")
    }

    fn h(s: &str) -> Host {
        Host::parse(s).expect("host")
    }

    #[test]
    fn host_parsing_normalises_and_catches_ip_spellings() {
        assert_eq!(h("Example.COM."), Host::Name("example.com".into()));
        let lo = Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        for s in [
            "127.0.0.1",
            "127.1",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "2130706433",
            "0x7f000001",
            "[::ffff:127.0.0.1]",
            "::ffff:7f00:1",
            "127.0.0.1.",
        ] {
            assert_eq!(h(s), lo, "{s}");
        }
        assert_eq!(h("[::1]"), Host::Ip("::1".parse().expect("ip")));
        for bad in [
            "",
            ".",
            "a..b",
            "exa mple.com",
            "ex\u{e4}mple.com",
            "a/b",
            "256.0.0.1",
            "1.2.3.4.5",
            "[::1",
            "[fe80::1%eth0]",
            "1.2.65536",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Host::parse(&"a".repeat(64)).is_err());
        assert!(Host::parse("example.123abc").is_ok());
    }

    #[test]
    fn patterns_match_exact_and_subdomains_only() {
        let p = DomainPattern::parse("*.github.com").expect("pattern");
        assert!(p.matches("api.github.com"));
        assert!(p.matches("a.b.github.com"));
        assert!(!p.matches("github.com"));
        assert!(!p.matches("evilgithub.com"));
        assert!(!p.matches("github.com.evil.com"));
        let e = DomainPattern::parse("GitHub.com").expect("pattern");
        assert!(e.matches("github.com"));
        assert!(!e.matches("api.github.com"));
        assert!(DomainPattern::parse("*.com").is_err());
        assert!(DomainPattern::parse("a.*.com").is_err());
        assert!(DomainPattern::parse("*github.com").is_err());
    }

    #[test]
    fn deny_wins_and_rules_are_named() {
        let p = policy(
            r#"allow = ["*.github.com", "github.com", "gist.github.com"]
               deny = ["gist.github.com"]"#,
        );
        let v = p.check_host(&h("gist.github.com"));
        assert!(!v.allow);
        assert_eq!(v.rule, "network.deny[0]=gist.github.com");
        let v = p.check_host(&h("api.github.com"));
        assert!(v.allow);
        assert_eq!(v.rule, "network.allow[0]=*.github.com");
        assert_eq!(
            p.check_host(&h("github.com")).rule,
            "network.allow[1]=github.com"
        );
        let v = p.check_host(&h("evil.com"));
        assert!(!v.allow);
        assert_eq!(v.rule, "network.allow: no pattern matches");
        assert!(v.hint.expect("hint").contains("--allow-domain evil.com"));
    }

    /// Each refusal's hint is the exact fix: the flag, the TOML line with its table, and the
    /// file it belongs in; a name refused on a non-default port also gets the port line.
    #[test]
    fn hints_name_the_flag_the_toml_line_and_the_file() {
        let p = policy(
            r#"allow = ["web.test"]
               allow_private = []
               [ports]
               "web.test" = [443]"#,
        );
        let hint = |host: &str, port| p.check_destination(&h(host), port).hint.expect("hint");
        let v = hint("evil.test", 443);
        assert!(v.contains("--allow-domain evil.test"), "{v}");
        assert!(v.contains("\"evil.test\" to allow under [network]"), "{v}");
        assert!(v.contains("~/.config/airlock/config.toml"), "{v}");
        assert!(!v.contains("network.ports"), "{v}");
        let v = hint("evil.test", 8443);
        assert!(v.contains("--allow-domain evil.test"), "{v}");
        assert!(
            v.contains("\"evil.test\" = [80, 443, 8443] under [network.ports]"),
            "{v}"
        );
        let v = hint("web.test", 22);
        assert!(
            v.contains("\"web.test\" = [443, 22] under [network.ports]"),
            "{v}"
        );
        assert!(v.contains("~/.config/airlock/config.toml"), "{v}");
    }

    #[test]
    fn empty_allow_list_means_no_network() {
        let p = NetworkPolicy::compile(&NetworkConfig::default()).expect("compile");
        assert!(p.allows_nothing());
        let v = p.check_destination(&h("example.com"), 443);
        assert!(!v.allow);
        assert_eq!(v.rule, "network.allow: empty (no network)");
    }

    #[test]
    fn ip_literals_need_listing_in_any_spelling() {
        let p = policy(r#"allow = ["example.com", "10.1.2.3", "192.0.2.0/24"]"#);
        let v = p.check_host(&h("127.0.0.1"));
        assert!(!v.allow);
        assert_eq!(v.rule, "network.allow: ip literal not listed");
        assert!(!p.check_host(&h("2130706433")).allow);
        assert!(p.check_host(&h("10.1.2.3")).allow);
        assert!(p.check_host(&h("[::ffff:10.1.2.3]")).allow);
        assert!(p.check_host(&h("192.0.2.77")).allow);
        assert!(!p.check_host(&h("10.1.2.4")).allow);
        // A listed IP is still subject to the private-range rule.
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(!p.check_address(&h("10.1.2.3"), ip).allow);
    }

    #[test]
    fn ports_default_to_80_and_443_and_most_specific_wins() {
        let p = policy(
            r#"allow = ["*.example.com", "example.com"]
               [ports]
               "*.example.com" = [443]
               "git.example.com" = [22, 443]"#,
        );
        assert!(p.check_destination(&h("example.com"), 80).allow);
        assert!(p.check_destination(&h("example.com"), 443).allow);
        let v = p.check_destination(&h("example.com"), 8080);
        assert!(!v.allow);
        assert_eq!(v.rule, "network.ports: default=[80, 443]");
        assert!(!p.check_destination(&h("www.example.com"), 80).allow);
        assert!(p.check_destination(&h("git.example.com"), 22).allow);
        assert_eq!(
            p.check_destination(&h("www.example.com"), 22).rule,
            "network.ports[*.example.com]=[443]"
        );
    }

    #[test]
    fn every_special_block_parses_and_classifies_its_own_first_address() {
        for r in SPECIAL_V4.iter().chain(SPECIAL_V6) {
            let (net, prefix) = r.block.split_once('/').expect("a prefix");
            let ip: IpAddr = net.parse().expect("address");
            let prefix: u8 = prefix.parse().expect("prefix");
            assert!(
                prefix > 0 && prefix <= if ip.is_ipv4() { 32 } else { 128 },
                "{}",
                r.block
            );
            if !EMBEDS_V4.contains(&r.block) {
                assert_eq!(classify(ip).map(|x| x.kind), Some(r.kind), "{}", r.block);
            }
        }
        for b in EMBEDS_V4 {
            assert!(SPECIAL_V6.iter().any(|r| r.block == *b), "{b}");
        }
        let azure: IpAddr = "168.63.129.16".parse().expect("ip");
        assert_eq!(classify(azure).map(|r| r.kind), Some("azure wireserver"));
    }

    #[test]
    fn special_ranges_are_classified() {
        let special = [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ];
        for s in special {
            let ip: IpAddr = s.parse().expect("ip");
            assert!(classify(ip).is_some(), "{s} should be special");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            let ip: IpAddr = s.parse().expect("ip");
            assert_eq!(classify(ip), None, "{s} should be public");
        }
        let md: IpAddr = "169.254.169.254".parse().expect("ip");
        assert_eq!(classify(md).map(|r| r.kind), Some("cloud metadata"));
        let md6: IpAddr = "fd00:ec2::254".parse().expect("ip");
        assert_eq!(classify(md6).map(|r| r.kind), Some("cloud metadata"));
    }

    #[test]
    fn private_answers_are_refused_unless_allow_private_names_them() {
        let p = policy(
            r#"allow = ["api.test"]
               allow_private = ["127.0.0.1", "10.0.0.0/8"]"#,
        );
        let host = h("api.test");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let v = p.check_address(&host, ip("127.0.0.1"));
        assert!(v.allow);
        assert_eq!(v.rule, "network.allow_private[0]=127.0.0.1");
        assert!(p.check_address(&host, ip("::ffff:127.0.0.1")).allow);
        assert!(p.check_address(&host, ip("10.9.9.9")).allow);
        let v = p.check_address(&host, ip("127.0.0.2"));
        assert!(!v.allow);
        assert!(v
            .rule
            .starts_with("network.allow_private: 127.0.0.2 is loopback"));
        assert!(!p.check_address(&host, ip("169.254.169.254")).allow);
        assert!(p.check_address(&host, ip("93.184.216.34")).allow);
        assert!(
            !p.check_addresses(&host, &[ip("93.184.216.34"), ip("192.168.0.1")])
                .allow
        );
        assert!(!p.check_addresses(&host, &[]).allow);
        let strict = policy(r#"allow = ["api.test"]"#);
        assert!(!strict.check_address(&host, ip("127.0.0.1")).allow);
        assert!(!strict.check_address(&host, ip("::1")).allow);
    }

    #[test]
    fn compile_errors_name_the_key() {
        let c = NetworkConfig {
            allow: vec!["ok.com".into(), "bad host".into()],
            ..NetworkConfig::default()
        };
        let e = NetworkPolicy::compile(&c).expect_err("bad");
        assert_eq!(e.key, "allow[1]");
        assert!(
            e.to_string().contains("network.allow[1]: 'bad host'"),
            "{e}"
        );
        let mut c = NetworkConfig::default();
        c.resolve.insert("a.test".into(), "not-an-ip".into());
        assert_eq!(
            NetworkPolicy::compile(&c).expect_err("bad").key,
            "resolve.a.test"
        );
        let mut c = NetworkConfig::default();
        c.allow_private.push("10.0.0.0/33".into());
        assert!(NetworkPolicy::compile(&c).is_err());
        let mut c = NetworkConfig::default();
        c.ports.insert("a.test".into(), vec![]);
        assert!(NetworkPolicy::compile(&c).is_err());
    }

    #[test]
    fn pins_are_normalised() {
        let mut c = NetworkConfig::default();
        c.resolve
            .insert("API.Example.test.".into(), "127.0.0.1, ::1".into());
        let p = NetworkPolicy::compile(&c).expect("compile");
        let pins = p.pinned("api.example.test").expect("pinned");
        assert_eq!(pins.len(), 2);
        assert_eq!(p.pinned("other.test"), None);
    }

    #[test]
    fn random_labels_under_wildcards_are_flagged() {
        let p = policy(
            r#"allow = ["*.githubusercontent.com", "exact.example.com"]
               refuse_random_labels = true"#,
        );
        assert!(p.refuses_random_labels());
        for ok in [
            "raw.githubusercontent.com",
            "objects.githubusercontent.com",
            "release-assets.githubusercontent.com",
            "avatars2.githubusercontent.com",
            "production-cloudfront-origin.githubusercontent.com",
        ] {
            assert_eq!(p.random_label(ok), None, "{ok}");
        }
        for bad in [
            "a3f9c2e1b7d04f6a8e2c.githubusercontent.com",
            "mzxw6ytboi4dsnzrgq2dk.x.githubusercontent.com",
            "aGVsbG8gd29ybGQgc2VjcmV0.githubusercontent.com",
        ] {
            assert!(p.random_label(bad).is_some(), "{bad}");
        }
        let long = format!("{}githubusercontent.com", "abcdefgh.".repeat(12));
        assert!(p.random_label(&long).is_some());
        // Not under a wildcard: exact names are not this channel.
        assert_eq!(p.random_label("exact.example.com"), None);
    }
}
