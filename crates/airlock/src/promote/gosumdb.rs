//! The Go checksum database as `cache promote` asks it: which database (`GOSUMDB`), which
//! modules it does not cover (`GONOSUMDB`, `GOPRIVATE`), and its `lookup` answers.
//!
//! Settings are read as the `go` command reads them (`go help environment`, `go help
//! module-auth`): the process environment first, then the user's go env file
//! (`$XDG_CONFIG_HOME/go/env`, else `~/.config/go/env`, lines `NAME=VALUE`), else the default
//! `sum.golang.org`. `GOSUMDB` is `off`, `NAME`, `NAME+KEY` (served at `https://NAME`) or
//! `NAME[+KEY] URL`. `GONOSUMDB` (else `GOPRIVATE`) is a comma-separated list of module path
//! prefix patterns in `path.Match` syntax, each matched against as many leading elements of
//! the module path as it has.
//!
//! The lookup answer (`GET URL/lookup/MODULE@VERSION`, both case-encoded; golang.org/x/mod
//! `sumdb` server protocol) is the record's number, its lines `MODULE VERSION h1:HASH` and
//! `MODULE VERSION/go.mod h1:HASH`, a blank line and the signed tree head. airlock trusts the
//! record as read over verified TLS, as it trusts the other registries' integrity data; it
//! does not check the tree head's signature or the record's inclusion proof.

use std::collections::HashMap;
use std::path::Path;

/// Where and for which modules the checksum database is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SumDb {
    /// Base URL, `https://…` without a trailing slash; `None` when `GOSUMDB=off`.
    pub(super) url: Option<String>,
    /// Module path prefix patterns the database does not cover.
    pub(super) private: Vec<String>,
    /// Which setting said so, for messages (`GOSUMDB=… (environment)`).
    pub(super) source: String,
}

impl SumDb {
    /// The settings from `env` (the process environment) and the go env file under `home`.
    pub(super) fn from_env(env: &dyn Fn(&str) -> Option<String>, home: &Path) -> SumDb {
        let config = env("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        let file = read_env_file(&config.join("go/env"));
        let get = |name: &str| -> Option<(String, &'static str)> {
            env(name)
                .filter(|v| !v.is_empty())
                .map(|v| (v, "environment"))
                .or_else(|| {
                    file.get(name)
                        .filter(|v| !v.is_empty())
                        .map(|v| (v.clone(), "go env file"))
                })
        };
        let (sumdb, from) = get("GOSUMDB").unwrap_or(("sum.golang.org".into(), "default"));
        let private = get("GONOSUMDB")
            .or_else(|| get("GOPRIVATE"))
            .map(|(v, _)| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        SumDb {
            url: database_url(&sumdb),
            private,
            source: format!("GOSUMDB={sumdb} ({from})"),
        }
    }

    /// The pattern of `GONOSUMDB`/`GOPRIVATE` that covers `module`, if one does.
    pub(super) fn private_pattern(&self, module: &str) -> Option<&str> {
        self.private
            .iter()
            .find(|p| prefix_matches(p, module))
            .map(String::as_str)
    }
}

/// The URL a `GOSUMDB` value names (`None` for `off`).
fn database_url(value: &str) -> Option<String> {
    if value == "off" {
        return None;
    }
    let mut words = value.split_whitespace();
    let name = words.next().unwrap_or("sum.golang.org");
    let url = match words.next() {
        Some(u) => u.to_string(),
        None => format!("https://{}", name.split('+').next().unwrap_or(name)),
    };
    Some(url.trim_end_matches('/').to_string())
}

/// `NAME=VALUE` lines of a go env file (missing or unreadable: none).
fn read_env_file(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Whether `pattern` matches a prefix of `module` of as many elements (Go's
/// `module.MatchPrefixPatterns`).
fn prefix_matches(pattern: &str, module: &str) -> bool {
    let pattern = pattern.trim_end_matches('/');
    let n = pattern.split('/').count();
    let prefix: Vec<&str> = module.split('/').take(n).collect();
    if prefix.len() < n {
        return false;
    }
    pattern
        .split('/')
        .zip(prefix)
        .all(|(p, m)| element_matches(p.as_bytes(), m.as_bytes()))
}

/// `path.Match` of one element: `*` any run, `?` one byte, `[…]` a class (`^` negates, `a-z`
/// ranges), `\` escapes. A malformed class matches (the module counts as private: refused).
fn element_matches(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| element_matches(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && element_matches(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().position(|&c| c == b']') else {
                return true;
            };
            let Some((&c, tail)) = s.split_first() else {
                return false;
            };
            let (negate, class) = match rest[..end].split_first() {
                Some((b'^', class)) => (true, class),
                _ => (false, &rest[..end]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= (class[i]..=class[i + 2]).contains(&c);
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && element_matches(&rest[end + 1..], tail)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            s.first() == rest.first() && element_matches(&rest[1..], &s[1..])
        }
        Some((c, rest)) => s.first() == Some(c) && element_matches(rest, &s[1..]),
    }
}

/// The `h1:` the lookup answer `body` gives for `module` and `key_version` (`VERSION` or
/// `VERSION/go.mod`), or why it gives none.
pub(super) fn record(body: &[u8], module: &str, key_version: &str) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_string())?;
    let mut lines = text.lines();
    let id = lines.next().unwrap_or("");
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the answer does not start with a record number".into());
    }
    for line in lines.take_while(|l| !l.is_empty()) {
        let w: Vec<&str> = line.split(' ').collect();
        if let [m, v, h] = w[..] {
            if m == module && v == key_version && h.starts_with("h1:") {
                return Ok(h.to_string());
            }
        }
    }
    Err(format!("its record has no line for {module} {key_version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)], file: Option<&str>) -> SumDb {
        let home = tempfile::tempdir().expect("home");
        if let Some(text) = file {
            std::fs::create_dir_all(home.path().join(".config/go")).expect("dir");
            std::fs::write(home.path().join(".config/go/env"), text).expect("env");
        }
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SumDb::from_env(&|k| vars.get(k).cloned(), home.path())
    }

    /// `go help module-auth`: the forms of GOSUMDB, the environment before the go env file.
    #[test]
    fn gosumdb_forms_and_precedence() {
        let url = |vars: &[(&str, &str)], file| from(vars, file).url;
        assert_eq!(url(&[], None).as_deref(), Some("https://sum.golang.org"));
        assert_eq!(url(&[("GOSUMDB", "off")], None), None);
        assert_eq!(
            url(&[("GOSUMDB", "sum.golang.org+033de0ae+Ac4z")], None).as_deref(),
            Some("https://sum.golang.org")
        );
        assert_eq!(
            url(
                &[("GOSUMDB", "sum.golang.org https://mirror.example/sumdb/")],
                None
            )
            .as_deref(),
            Some("https://mirror.example/sumdb")
        );
        assert_eq!(url(&[], Some("GOSUMDB=off\n")), None);
        assert_eq!(
            url(&[("GOSUMDB", "sum.golang.org")], Some("GOSUMDB=off\n")).as_deref(),
            Some("https://sum.golang.org")
        );
    }

    /// `go help private`: prefix patterns in path.Match syntax; GONOSUMDB before GOPRIVATE.
    #[test]
    fn private_patterns_match_path_prefixes() {
        let db = from(
            &[("GOPRIVATE", "*.corp.example,rsc.io/private, git.x/[a-c]*")],
            None,
        );
        assert_eq!(
            db.private_pattern("git.corp.example/lib"),
            Some("*.corp.example")
        );
        assert_eq!(
            db.private_pattern("rsc.io/private/quux"),
            Some("rsc.io/private")
        );
        assert_eq!(db.private_pattern("git.x/beta/y"), Some("git.x/[a-c]*"));
        for public in ["rsc.io/quote", "corp.example/lib", "git.x/delta", "rsc.io"] {
            assert_eq!(db.private_pattern(public), None, "{public}");
        }
        let db = from(
            &[("GONOSUMDB", "a.example"), ("GOPRIVATE", "b.example")],
            None,
        );
        assert!(db.private_pattern("a.example/m").is_some());
        assert!(db.private_pattern("b.example/m").is_none());
        let db = from(&[], Some("GOPRIVATE=c.example\n"));
        assert!(db.private_pattern("c.example/m").is_some());
    }

    #[test]
    fn lookup_records_are_read_up_to_the_tree_head() {
        let body = b"42\nrsc.io/quote v1.5.2 h1:AAA=\nrsc.io/quote v1.5.2/go.mod h1:BBB=\n\n\
                     go.sum database tree\n43\nrsc.io/quote v1.5.3 h1:CCC=\n";
        assert_eq!(
            record(body, "rsc.io/quote", "v1.5.2").as_deref(),
            Ok("h1:AAA=")
        );
        assert_eq!(
            record(body, "rsc.io/quote", "v1.5.2/go.mod").as_deref(),
            Ok("h1:BBB=")
        );
        assert!(record(body, "rsc.io/quote", "v1.5.3").is_err());
        assert!(record(body, "rsc.io/Quote", "v1.5.2").is_err());
        assert!(record(b"rsc.io/quote v1.5.2 h1:AAA=\n", "rsc.io/quote", "v1.5.2").is_err());
        assert!(record(&[0xff, b'\n'], "m", "v").is_err());
    }
}
