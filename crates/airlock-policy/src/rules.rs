//! Per-request rules for hosts the credential proxy intercepts (`[[network.rules]]`, and the
//! presets of `[network] rule_presets`): which methods and paths the agent may use there.
//!
//! ```toml
//! [[network.rules]]
//! host = "api.github.com"            # exact name or *.suffix
//! methods = ["GET", "HEAD"]           # absent: any method
//! paths = ["/repos/OWNER/REPO/**"]    # absent: any path; `*` one segment, `**` any run
//! action = "allow"                    # or "deny"; default allow
//! ```
//!
//! A host with no rule is not restricted. For a host with rules, a request is decided by its
//! rules in order: the first matching `deny` refuses it (deny wins over any allow, wherever it
//! is written), else the first matching `allow` lets it through, else it is refused ("no rule
//! allows it"). Paths are matched percent-decoded; a path with `.`/`..` segments or a NUL after
//! decoding is refused whatever the rules say (a server could normalise it into a path no rule
//! names).

use serde::{Deserialize, Serialize};

use crate::network::DomainPattern;

/// One `[[network.rules]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The host: an exact name or `*.suffix`.
    pub host: String,
    /// Request methods (ASCII, compared case-sensitively as RFC 9110 §9.1 says); absent: any.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Path patterns; absent: any path.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// `allow` (default) or `deny`.
    #[serde(default)]
    pub action: RuleAction,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Let the request through.
    #[default]
    Allow,
    /// Refuse it.
    Deny,
}

/// The built-in presets: name and TOML text (a `[[rules]]` list).
pub const PRESETS: &[(&str, &str)] = &[
    (
        "github-read-mostly",
        include_str!("presets/github-read-mostly.toml"),
    ),
    (
        "gitlab-read-mostly",
        include_str!("presets/gitlab-read-mostly.toml"),
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    rules: Vec<RuleConfig>,
}

/// A preset's rules by name; an unknown name is an error listing the known ones.
pub fn preset(name: &str) -> Result<Vec<RuleConfig>, String> {
    let text = PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            format!("unknown rule preset '{name}' (known: {})", known.join(", "))
        })?;
    toml::from_str::<PresetFile>(text)
        .map(|p| p.rules)
        .map_err(|e| format!("preset {name}: {e}"))
}

/// A rule ready to match, with the label the audit log gives it.
#[derive(Debug, Clone)]
struct Rule {
    host: DomainPattern,
    host_text: String,
    methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    action: RuleAction,
    label: String,
}

/// The compiled rules of a session.
#[derive(Debug, Clone, Default)]
pub struct RequestRules {
    rules: Vec<Rule>,
}

/// The decision for one request to a host with rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVerdict {
    /// Whether the request may go on.
    pub allow: bool,
    /// The deciding rule's label (`network.rules[2]`, `preset github-read-mostly[1]`), or why
    /// none decided.
    pub rule: String,
}

impl RequestRules {
    /// Compiles `[[network.rules]]` (labelled by index) then each preset's rules.
    pub fn compile(rules: &[RuleConfig], presets: &[String]) -> Result<RequestRules, String> {
        let mut out = Vec::new();
        let labelled = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("network.rules[{i}]"), r.clone()));
        let mut all: Vec<(String, RuleConfig)> = labelled.collect();
        for p in presets {
            for (i, r) in preset(p)?.into_iter().enumerate() {
                all.push((format!("preset {p}[{i}]"), r));
            }
        }
        for (label, r) in all {
            out.push(compile_one(&label, r)?);
        }
        Ok(RequestRules { rules: out })
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The hosts rules name (as written), for checking that each is intercepted.
    pub fn hosts(&self) -> Vec<(String, String)> {
        self.rules
            .iter()
            .map(|r| (r.label.clone(), r.host_text.clone()))
            .collect()
    }

    /// The decision for `method path` (the request target without its query) to `host`, or
    /// `None` when no rule names the host.
    pub fn decide(&self, host: &str, method: &str, target: &str) -> Option<RuleVerdict> {
        let for_host: Vec<&Rule> = self.rules.iter().filter(|r| r.host.matches(host)).collect();
        if for_host.is_empty() {
            return None;
        }
        let raw = target.split(['?', '#']).next().unwrap_or("");
        let Some(path) = decode_path(raw) else {
            return Some(RuleVerdict {
                allow: false,
                rule: "network.rules: a path with dot segments, NUL or bad escapes".into(),
            });
        };
        let matching = |r: &&&Rule| {
            r.methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m == method))
                && r.paths
                    .as_ref()
                    .is_none_or(|ps| ps.iter().any(|p| glob(p, &path)))
        };
        if let Some(r) = for_host
            .iter()
            .filter(|r| r.action == RuleAction::Deny)
            .find(matching)
        {
            return Some(RuleVerdict {
                allow: false,
                rule: r.label.clone(),
            });
        }
        Some(match for_host.iter().find(matching) {
            Some(r) => RuleVerdict {
                allow: true,
                rule: r.label.clone(),
            },
            None => RuleVerdict {
                allow: false,
                rule: format!("network.rules: no rule for {host} allows it"),
            },
        })
    }
}

fn compile_one(label: &str, r: RuleConfig) -> Result<Rule, String> {
    let host = DomainPattern::parse(&r.host).map_err(|e| format!("{label}: host: {e}"))?;
    for m in r.methods.iter().flatten() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "{label}: '{m}' is not a method (write it in capitals: GET, POST)"
            ));
        }
    }
    for p in r.paths.iter().flatten() {
        if !p.starts_with('/') {
            return Err(format!("{label}: path '{p}' must start with /"));
        }
    }
    Ok(Rule {
        host,
        host_text: r.host,
        methods: r.methods,
        paths: r.paths,
        action: r.action,
        label: label.to_string(),
    })
}

/// Checks `[[network.rules]]` entries (for a policy file's validation).
pub fn validate(rules: &[RuleConfig], presets: &[String]) -> Result<(), String> {
    RequestRules::compile(rules, presets).map(drop)
}

/// Percent-decodes a path; `None` for a bad escape, a NUL, a non-UTF-8 result, or a `.`/`..`
/// segment.
fn decode_path(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    if s.contains('\0') || s.contains('\\') || s.split('/').any(|seg| seg == "." || seg == "..") {
        return None;
    }
    Some(s)
}

/// `**` matches any run of characters, `*` any run without `/`, everything else literally.
/// Dynamic programming over (pattern, path): O(len × len) whatever the pattern, since paths are
/// the agent's.
fn glob(pattern: &str, path: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), path.as_bytes());
    // dp[j]: the pattern so far matches s[..j].
    let mut dp = vec![false; s.len() + 1];
    dp[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; s.len() + 1];
        if p[i] == b'*' && p.get(i + 1) == Some(&b'*') {
            let mut any = false;
            for j in 0..=s.len() {
                any |= dp[j];
                next[j] = any;
            }
            i += 2;
        } else if p[i] == b'*' {
            for j in 0..=s.len() {
                next[j] = dp[j] || (j > 0 && next[j - 1] && s[j - 1] != b'/');
            }
            i += 1;
        } else {
            for j in 0..s.len() {
                next[j + 1] = dp[j] && s[j] == p[i];
            }
            i += 1;
        }
        dp = next;
    }
    dp[s.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(host: &str, methods: &[&str], paths: &[&str], action: RuleAction) -> RuleConfig {
        RuleConfig {
            host: host.into(),
            methods: (!methods.is_empty()).then(|| methods.iter().map(|s| s.to_string()).collect()),
            paths: (!paths.is_empty()).then(|| paths.iter().map(|s| s.to_string()).collect()),
            action,
        }
    }

    #[test]
    fn globs() {
        assert!(glob("/repos/*/*/pulls", "/repos/o/r/pulls"));
        assert!(!glob("/repos/*/*/pulls", "/repos/o/r/x/pulls"));
        assert!(glob("/repos/o/r/**", "/repos/o/r/a/b"));
        assert!(glob("/repos/o/r/**", "/repos/o/r/"));
        assert!(!glob("/repos/o/r/**", "/repos/o/rx/a"));
        assert!(glob("/**/git-upload-pack", "/g/p.git/git-upload-pack"));
        assert!(!glob("/a", "/a/"));
        assert!(glob("/a*b/c", "/axxb/c"));
        assert!(!glob("/a*b/c", "/ax/xb/c"));
        let long = "/a".repeat(4000);
        assert!(!glob("/**/**/**/**/x", &long));
    }

    #[test]
    fn deny_wins_and_first_allow_decides() {
        let r = RequestRules::compile(
            &[
                rule(
                    "api.example.test",
                    &["GET", "HEAD"],
                    &["/repos/o/r/**"],
                    RuleAction::Allow,
                ),
                rule(
                    "api.example.test",
                    &[],
                    &["/repos/o/r/**"],
                    RuleAction::Allow,
                ),
                rule(
                    "api.example.test",
                    &[],
                    &["/repos/o/r/secret/**"],
                    RuleAction::Deny,
                ),
            ],
            &[],
        )
        .expect("compile");
        let d = |m: &str, p: &str| r.decide("api.example.test", m, p).expect("has rules");
        assert_eq!(d("GET", "/repos/o/r/x").rule, "network.rules[0]");
        assert!(d("GET", "/repos/o/r/x").allow);
        assert_eq!(d("POST", "/repos/o/r/x").rule, "network.rules[1]");
        for (m, p) in [
            ("GET", "/repos/o/r/secret/a"),
            ("GET", "/repos/o/r/%73ecret/a"),
            ("POST", "/repos/o/r/secret/a?x=1"),
        ] {
            let v = d(m, p);
            assert!(!v.allow && v.rule == "network.rules[2]", "{m} {p}: {v:?}");
        }
        for p in [
            "/repos/o/other",
            "/repos/o/r/../other/x",
            "/repos/o/r/%2e%2e/other/x",
            "/repos/o/r/x%00",
            "/repos/o/r/%zz",
            "/repos/o/r/.%2E/x",
        ] {
            assert!(!d("GET", p).allow, "{p}");
        }
        assert_eq!(r.decide("other.test", "DELETE", "/"), None);
    }

    #[test]
    fn presets_compile_and_read_mostly() {
        for (name, _) in PRESETS {
            RequestRules::compile(&[], &[name.to_string()]).expect(name);
        }
        let gh = RequestRules::compile(&[], &["github-read-mostly".into()]).expect("gh");
        let d = |m: &str, p: &str| gh.decide("api.github.com", m, p).expect("rules").allow;
        assert!(d("GET", "/repos/o/r/pulls"));
        assert!(d("POST", "/repos/o/r/pulls"));
        assert!(d("POST", "/repos/o/r/issues/3/comments"));
        assert!(!d("PATCH", "/repos/o/r/git/refs/heads/main"));
        assert!(!d("POST", "/repos/o/r/git/refs"));
        assert!(!d("PUT", "/repos/o/r/pulls/3/merge"));
        assert!(!d("DELETE", "/repos/o/r"));
        assert!(!d("POST", "/graphql"));
        let gl = RequestRules::compile(&[], &["gitlab-read-mostly".into()]).expect("gl");
        let d = |m: &str, p: &str| gl.decide("gitlab.com", m, p).expect("rules").allow;
        assert!(d("POST", "/g/p.git/git-receive-pack"));
        assert!(d("POST", "/api/v4/projects/12/merge_requests"));
        assert!(!d("PUT", "/api/v4/projects/12/merge_requests/1/merge"));
        assert!(!d("DELETE", "/api/v4/projects/12/repository/branches/main"));
        assert!(RequestRules::compile(&[], &["nope".into()]).is_err());
    }

    #[test]
    fn a_workspace_policy_may_only_add_deny_rules() {
        use crate::config::{ConfigFile, Layer, Policy, PolicyError};
        let layer = |trusted: bool, text: &str| Layer {
            source: "/ws/airlock.toml".into(),
            trusted,
            config: ConfigFile::parse(std::path::Path::new("/ws/airlock.toml"), text)
                .expect("parse"),
        };
        let deny = "[[network.rules]]\nhost = 'a.test'\naction = 'deny'\n";
        let p = Policy::from_layers(&[layer(false, deny)]).expect("deny narrows");
        assert_eq!(p.network.rules.len(), 1);
        for text in [
            "[[network.rules]]\nhost = 'a.test'\n",
            "[[network.rules]]\nhost = 'a.test'\naction = 'allow'\n",
            "[network]\nrule_presets = ['github-read-mostly']\n",
        ] {
            assert!(
                matches!(
                    Policy::from_layers(&[layer(false, text)]),
                    Err(PolicyError::Widening { .. })
                ),
                "{text}"
            );
        }
        let bad = "[[network.rules]]\nhost = 'a.test'\nmethods = ['get']\n";
        assert!(ConfigFile::parse(std::path::Path::new("/p.toml"), bad).is_err());
        let unknown = "[network]\nrule_presets = ['nope']\n";
        assert!(ConfigFile::parse(std::path::Path::new("/p.toml"), unknown).is_err());
    }

    #[test]
    fn bad_rules_are_errors() {
        for r in [
            rule("", &[], &[], RuleAction::Allow),
            rule("a.test", &["get"], &[], RuleAction::Allow),
            rule("a.test", &[], &["repos/**"], RuleAction::Allow),
        ] {
            assert!(
                RequestRules::compile(std::slice::from_ref(&r), &[]).is_err(),
                "{r:?}"
            );
        }
    }
}
