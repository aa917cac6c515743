//! Pinned network policies for tests: names resolved to loopback addresses (`[network.resolve]`)
//! on the test servers' ports (`[network.ports]`), those addresses let through
//! (`allow_private`), and the test CA trusted (`[tls] extra_roots`); written as TOML, either as
//! an airlock policy file or as the bare network table `airlock_policy::NetworkConfig` parses.

use std::fmt::Write as _;

/// A network policy under construction; [`Pinned::policy_toml`] and [`Pinned::network_toml`]
/// write it. Names and addresses are written as given (TOML basic strings: no quotes or
/// backslashes in them).
#[derive(Debug, Clone, Default)]
pub struct Pinned {
    allow: Vec<String>,
    allow_private: Vec<String>,
    resolve: Vec<(String, String)>,
    ports: Vec<(String, Vec<u16>)>,
    extra_roots: Vec<String>,
}

impl Pinned {
    /// An empty policy: nothing allowed, nothing pinned.
    pub fn new() -> Pinned {
        Pinned::default()
    }

    /// `name` resolves to `ip` and may be reached on `ports`; `ip` is let through as a private
    /// address. The name is not allowed by this alone (a credential host is reached through its
    /// credential's rule): see [`Pinned::allow`] and [`Pinned::pin_allowed`].
    pub fn pin(mut self, name: &str, ip: &str, ports: &[u16]) -> Pinned {
        self.resolve.push((name.to_string(), ip.to_string()));
        self.ports.push((name.to_string(), ports.to_vec()));
        if !self.allow_private.iter().any(|p| p == ip) {
            self.allow_private.push(ip.to_string());
        }
        self
    }

    /// [`Pinned::pin`] and [`Pinned::allow`] in one.
    pub fn pin_allowed(self, name: &str, ip: &str, ports: &[u16]) -> Pinned {
        self.pin(name, ip, ports).allow(name)
    }

    /// Adds `pattern` to `allow`.
    pub fn allow(mut self, pattern: &str) -> Pinned {
        self.allow.push(pattern.to_string());
        self
    }

    /// Trusts the CA certificate at `pem` (`[tls] extra_roots`, policy files only).
    pub fn extra_root(mut self, pem: impl AsRef<std::path::Path>) -> Pinned {
        self.extra_roots.push(pem.as_ref().display().to_string());
        self
    }

    /// The bare network table (`allow`, `allow_private`, `[resolve]`, `[ports]`), as
    /// `airlock_policy::NetworkConfig` reads it.
    pub fn network_toml(&self) -> String {
        self.tables("")
    }

    /// An airlock policy file: `[network]` with its `resolve` and `ports` tables, then `[tls]`
    /// when a root was added. More tables may be appended to it.
    pub fn policy_toml(&self) -> String {
        let mut s = format!("[network]\n{}", self.tables("network."));
        if !self.extra_roots.is_empty() {
            let _ = writeln!(s, "[tls]\nextra_roots = {}", list(&self.extra_roots));
        }
        s
    }

    fn tables(&self, prefix: &str) -> String {
        let mut s = String::new();
        if !self.allow.is_empty() {
            let _ = writeln!(s, "allow = {}", list(&self.allow));
        }
        if !self.allow_private.is_empty() {
            let _ = writeln!(s, "allow_private = {}", list(&self.allow_private));
        }
        if !self.resolve.is_empty() {
            let _ = writeln!(s, "[{prefix}resolve]");
            for (name, ip) in &self.resolve {
                let _ = writeln!(s, "\"{name}\" = \"{ip}\"");
            }
            let _ = writeln!(s, "[{prefix}ports]");
            for (name, ports) in &self.ports {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                let _ = writeln!(s, "\"{name}\" = [{}]", ports.join(", "));
            }
        }
        s
    }
}

/// A TOML array of basic strings.
fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_policy_file_and_a_bare_network_table() {
        let p = Pinned::new()
            .pin_allowed("echo.test", "127.0.0.1", &[8080, 80])
            .pin("api.test", "127.0.0.1", &[443])
            .extra_root("/tmp/ca.pem");
        assert_eq!(
            p.policy_toml(),
            "[network]\nallow = [\"echo.test\"]\nallow_private = [\"127.0.0.1\"]\n\
             [network.resolve]\n\"echo.test\" = \"127.0.0.1\"\n\"api.test\" = \"127.0.0.1\"\n\
             [network.ports]\n\"echo.test\" = [8080, 80]\n\"api.test\" = [443]\n\
             [tls]\nextra_roots = [\"/tmp/ca.pem\"]\n"
        );
        assert_eq!(
            p.network_toml(),
            "allow = [\"echo.test\"]\nallow_private = [\"127.0.0.1\"]\n\
             [resolve]\n\"echo.test\" = \"127.0.0.1\"\n\"api.test\" = \"127.0.0.1\"\n\
             [ports]\n\"echo.test\" = [8080, 80]\n\"api.test\" = [443]\n"
        );
        assert_eq!(Pinned::new().policy_toml(), "[network]\n");
    }
}
