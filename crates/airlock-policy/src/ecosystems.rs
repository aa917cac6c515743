//! Ecosystem presets (`--preset rust` or `[presets] use = ["rust"]`): the registry hosts a
//! toolchain needs, each preset a small data file in `ecosystems/` (a description and its
//! hosts, its caches). Using a preset adds its hosts to `[network] allow` (deny still wins) and
//! shows its host caches inside read-only with a per-session writable layer.

use serde::Deserialize;

/// The built-in presets: name and TOML text.
pub const ECOSYSTEMS: &[(&str, &str)] = &[
    ("rust", include_str!("ecosystems/rust.toml")),
    ("node", include_str!("ecosystems/node.toml")),
    ("python", include_str!("ecosystems/python.toml")),
    ("go", include_str!("ecosystems/go.toml")),
    ("java", include_str!("ecosystems/java.toml")),
];

/// One preset's data file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ecosystem {
    /// What it is for, for listings.
    pub description: String,
    /// Host names it allows.
    pub hosts: Vec<String>,
    /// Cache directories relative to the home, shared read-only with a per-session writable
    /// layer (`~/.cargo`, `~/.npm`, …).
    #[serde(default)]
    pub caches: Vec<String>,
    /// Files and directories inside those caches, relative to the home, where the tools keep
    /// configuration or credentials (registry tokens, server passwords) rather than downloads:
    /// hidden inside whenever the preset's caches are shown (a `*` component matches any one
    /// directory). Each entry's comment in the preset file names the tool's documentation.
    #[serde(default)]
    pub hide: Vec<String>,
}

/// The preset `name`; an unknown name is an error listing the known ones.
pub fn ecosystem(name: &str) -> Result<Ecosystem, String> {
    let text = ECOSYSTEMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let known: Vec<&str> = ECOSYSTEMS.iter().map(|(n, _)| *n).collect();
            format!("unknown preset '{name}' (known: {})", known.join(", "))
        })?;
    toml::from_str(text).map_err(|e| format!("preset {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::DomainPattern;

    #[test]
    fn every_preset_parses_with_valid_hosts() {
        for (name, _) in ECOSYSTEMS {
            let e = ecosystem(name).expect(name);
            assert!(!e.hosts.is_empty() && !e.description.is_empty(), "{name}");
            for c in e.caches.iter().chain(&e.hide) {
                assert!(!c.starts_with('/') && !c.contains(".."), "{name}: {c}");
            }
            // A hidden path lies inside one of the preset's caches (elsewhere nothing of the
            // home is shown, so there is nothing to hide).
            for h in &e.hide {
                assert!(
                    e.caches
                        .iter()
                        .any(|c| std::path::Path::new(h).starts_with(c)),
                    "{name}: {h} is outside its caches"
                );
            }
            for h in &e.hosts {
                DomainPattern::parse(h).unwrap_or_else(|err| panic!("{name}: {h}: {err}"));
            }
        }
        assert!(ecosystem("rust")
            .expect("rust")
            .hosts
            .contains(&"index.crates.io".to_string()));
        assert!(ecosystem("cobol").is_err_and(|e| e.contains("known: rust, node")));
    }
}
