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
//! allows it").
//!
//! A request is judged as every request the upstream could read it as, and must pass each
//! reading (fail closed; the red team's R2):
//! - the path is normalised once ([`normalise`], RFC 3986 §6: percent-decoded); a target with
//!   no single reading (`//`, `;`, dot segments, double encoding, control bytes, a backslash,
//!   a `#`, not origin form) is refused whatever the rules say;
//! - an encoded slash is read inside its segment by allow rules, and both ways by deny rules;
//! - deny rules match paths and methods ignoring ASCII case, with and without a trailing `/`;
//!   allow rules match exactly, and a method not in capitals is allowed by none (RFC 9110 §9.1);
//! - method-override headers ([`METHOD_OVERRIDE_HEADERS`]) and `_method` query parameters add
//!   methods the request must also pass as; a form body (Rack's `_method` field, unread) makes
//!   deny rules match whatever methods they list.
//!
//! Deny rules stay a best effort against servers that read requests in other ways; allow
//! rules are the boundary.

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

    /// The decision for `method target` (origin-form: path and query) to `host`, or `None`
    /// when no rule names the host. No method override and no form body; see
    /// [`RequestRules::decide_request`].
    pub fn decide(&self, host: &str, method: &str, target: &str) -> Option<RuleVerdict> {
        self.decide_request(
            host,
            &RuleRequest {
                method,
                target,
                overrides: Vec::new(),
                form_body: false,
            },
        )
    }

    /// The decision for one request to `host`, or `None` when no rule names the host.
    ///
    /// The request is judged in every way the upstream could read it, and must pass all of
    /// them (see the module docs): the path is normalised ([`normalise`]; a target that has no
    /// single reading is refused), deny rules match the path's readings ignoring ASCII case and
    /// the method ignoring case, and the wire method plus every override must each be denied by
    /// no rule and allowed by one. A form body may carry Rack's `_method`, so for it deny rules
    /// match whatever methods they list.
    pub fn decide_request(&self, host: &str, req: &RuleRequest<'_>) -> Option<RuleVerdict> {
        let for_host: Vec<&Rule> = self.rules.iter().filter(|r| r.host.matches(host)).collect();
        if for_host.is_empty() {
            return None;
        }
        let refuse = |why: String| {
            Some(RuleVerdict {
                allow: false,
                rule: format!("network.rules: {why}"),
            })
        };
        let path = match normalise(req.target) {
            Ok(p) => p,
            Err(why) => return refuse(why),
        };
        let mut methods = vec![req.method.to_string()];
        methods.extend(req.overrides.iter().cloned());
        methods.extend(query_method(req.target));
        for m in &methods {
            let deny = for_host.iter().filter(|r| r.action == RuleAction::Deny);
            if let Some(r) = deny.into_iter().find(|r| r.denies(m, &path, req.form_body)) {
                return Some(RuleVerdict {
                    allow: false,
                    rule: r.label.clone(),
                });
            }
        }
        for m in &methods {
            if !is_method(m) {
                return refuse(format!(
                    "'{}' is not a method in capitals (RFC 9110 §9.1), so no rule allows it",
                    m.escape_default()
                ));
            }
        }
        let mut label = String::new();
        for m in &methods {
            let allow = for_host.iter().filter(|r| r.action == RuleAction::Allow);
            match allow.into_iter().find(|r| r.allows(m, &path)) {
                Some(r) if label.is_empty() => label = r.label.clone(),
                Some(_) => {}
                None if m == req.method => {
                    return refuse(format!("no rule for {host} allows it"));
                }
                None => {
                    return refuse(format!(
                        "no rule for {host} allows it as {m} (the method override it carries)"
                    ));
                }
            }
        }
        Some(RuleVerdict {
            allow: true,
            rule: label,
        })
    }
}

/// One request as the rules see it.
#[derive(Debug, Clone)]
pub struct RuleRequest<'a> {
    /// The request line's method, as sent (any case).
    pub method: &'a str,
    /// The request target in origin form (`/path?query`), as sent.
    pub target: &'a str,
    /// The values of every method-override header ([`METHOD_OVERRIDE_HEADERS`]), as sent.
    pub overrides: Vec<String>,
    /// Whether the body is a form (`application/x-www-form-urlencoded`,
    /// `multipart/form-data`), where Rack's `_method` field overrides the method unseen.
    pub form_body: bool,
}

/// Headers some servers take as the real method of a `POST` (Rack/Rails `X-HTTP-Method-Override`,
/// Microsoft's `X-HTTP-Method`, Google APIs' `X-Method-Override`); lower case.
pub const METHOD_OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The `_method` query parameters of `target` (Rack::MethodOverride and many frameworks), any
/// case of the name, percent-decoded.
fn query_method(target: &str) -> Vec<String> {
    let Some((_, query)) = target.split_once('?') else {
        return Vec::new();
    };
    query
        .split(['&', ';'])
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let k = percent_decode(k.as_bytes()).unwrap_or_default();
            k.eq_ignore_ascii_case(b"_method").then(|| {
                let v = percent_decode(v.as_bytes()).unwrap_or_else(|| v.as_bytes().to_vec());
                String::from_utf8_lossy(&v).into_owned()
            })
        })
        .collect()
}

/// A method as a rule can allow it: an RFC 9110 token in capitals (`A-Z`, `-`, `_`).
fn is_method(m: &str) -> bool {
    !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// Stands for an encoded slash (`%2F`) inside one segment in the segment reading of a path;
/// a private-use character no pattern may contain.
const ENCODED_SLASH: char = '\u{E000}';

/// The readings of a request path the rules judge, from [`normalise`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// Percent-decoded, an encoded slash kept inside its segment (as U+E000): how
    /// most routers (Rails, Go, GitLab's project ids `group%2Fproject`) read it. Allow rules
    /// match this.
    pub segments: String,
    /// Percent-decoded with an encoded slash as a separator (Python's http.server, some
    /// proxies). Deny rules match this too.
    pub decoded: String,
}

/// RFC 3986 §6 normalisation of an origin-form target's path, refusing (with why) what has
/// no single reading: not starting with `/` (asterisk or authority form), a `#`, a bad escape,
/// non-UTF-8, NUL or another control character, a backslash, a `.`/`..` segment (raw or
/// encoded), an empty segment (`//`: nginx, Python and many routers merge them), a `;`
/// (servlet path parameters are cut), or an escape left after decoding (`%252F`, read again
/// by a server that decodes twice). The query is not part of the path.
pub fn normalise(target: &str) -> Result<NormalPath, String> {
    let raw = target.split('?').next().unwrap_or("");
    let why = |w: &str| -> Result<NormalPath, String> {
        Err(format!("a path with {w} is refused whatever the rules say"))
    };
    if target.contains('#') {
        return why("a fragment ('#')");
    }
    if !raw.starts_with('/') {
        return why("no leading '/' (not origin form)");
    }
    let mut segments = String::new();
    let mut decoded = String::new();
    let count = raw.split('/').count();
    for (i, seg) in raw.split('/').enumerate().skip(1) {
        let Some(bytes) = percent_decode(seg.as_bytes()) else {
            return why("a bad escape");
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return why("bytes that are not UTF-8");
        };
        let last = i == count - 1;
        if text.is_empty() && !last {
            return why("an empty segment ('//')");
        }
        if text.bytes().any(|b| b < 0x20 || b == 0x7f) || text.contains('\\') {
            return why("a control character or a backslash");
        }
        if text.contains(';') {
            return why("a ';' (path parameters)");
        }
        if text.contains(ENCODED_SLASH) || has_escape(&text) {
            return why("an escape left after decoding (double encoding)");
        }
        for part in text.split('/') {
            if part == "." || part == ".." {
                return why("dot segments");
            }
        }
        segments.push('/');
        segments.push_str(&text.replace('/', &ENCODED_SLASH.to_string()));
        decoded.push('/');
        decoded.push_str(&text);
    }
    Ok(NormalPath { segments, decoded })
}

/// Whether `s` holds a `%` followed by two hex digits.
fn has_escape(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// Percent-decodes `b`; `None` for a `%` not followed by two hex digits.
fn percent_decode(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

impl Rule {
    /// Whether this (deny) rule refuses `method` on `path` in any reading: methods and paths
    /// ignoring ASCII case, the path with and without a trailing `/`, an encoded slash read
    /// either way; with a form body, whatever the method.
    fn denies(&self, method: &str, path: &NormalPath, form_body: bool) -> bool {
        let method_ok = form_body
            || self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)));
        let Some(ps) = &self.paths else {
            return method_ok;
        };
        let mut readings = Vec::new();
        for p in [&path.segments, &path.decoded] {
            let lower = p.to_ascii_lowercase();
            readings.push(format!("{}/", lower.trim_end_matches('/')));
            readings.push(match lower.trim_end_matches('/') {
                "" => "/".to_string(),
                t => t.to_string(),
            });
        }
        method_ok
            && ps.iter().any(|p| {
                let p = p.to_ascii_lowercase();
                readings.iter().any(|r| glob(&p, r))
            })
    }

    /// Whether this (allow) rule lets `method` (in capitals) on `path` through: exact method,
    /// the segment reading of the path, case-sensitively.
    fn allows(&self, method: &str, path: &NormalPath) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| m == method))
            && self
                .paths
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| glob(p, &path.segments)))
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
        if p.contains(ENCODED_SLASH) {
            return Err(format!("{label}: path '{p}' holds U+E000"));
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
        for (m, p) in [
            ("GET", "/repos/o/r/pulls"),
            ("GET", "/repos/o/r/contents/README.md"),
            ("HEAD", "/repos/o/r"),
            ("POST", "/repos/o/r/pulls"),
            ("POST", "/repos/o/r/issues"),
            ("POST", "/repos/o/r/issues/3/comments"),
            ("POST", "/repos/o/r/pulls/3/comments"),
        ] {
            assert!(d(m, p), "must pass: {m} {p}");
        }
        // R1/R4: writes, merges and approvals, in API paths near the allowed ones.
        for (m, p) in [
            ("PATCH", "/repos/o/r/git/refs/heads/main"),
            ("POST", "/repos/o/r/git/refs"),
            ("PUT", "/repos/o/r/pulls/3/merge"),
            ("POST", "/repos/o/r/merges"),
            ("PUT", "/repos/o/r/contents/src/main.rs"),
            ("DELETE", "/repos/o/r/contents/src/main.rs"),
            ("POST", "/repos/o/r/pulls/3/reviews"),
            ("POST", "/repos/o/r/pulls/3/reviews/9/events"),
            ("PUT", "/repos/o/r/pulls/3/reviews/9"),
            ("POST", "/repos/o/r/pulls/3/comments/5/replies"),
            ("POST", "/repos/o/r/issues/3/comments/x"),
            ("POST", "/repos/o/r/x/pulls"),
            ("POST", "/repos/o/r/pulls/x/issues"),
            ("POST", "/repos/o/r/issues/pulls"),
            ("DELETE", "/repos/o/r"),
            ("POST", "/graphql"),
            ("POST", "/repos/o/r/pulls/"),
        ] {
            assert!(!d(m, p), "must be denied: {m} {p}");
        }
        let gl = RequestRules::compile(&[], &["gitlab-read-mostly".into()]).expect("gl");
        let d = |m: &str, p: &str| gl.decide("gitlab.com", m, p).expect("rules").allow;
        for (m, p) in [
            ("POST", "/g/p.git/git-receive-pack"),
            ("POST", "/g/p.git/git-upload-pack"),
            ("POST", "/g/sub/sub2/p.git/git-upload-pack"),
            ("GET", "/g/p.git/info/refs?service=git-upload-pack"),
            ("GET", "/g/p.git/info/refs?service=git-receive-pack"),
            ("GET", "/api/v4/projects/12/repository/files/a%2Fb?ref=main"),
            ("POST", "/api/v4/projects/12/merge_requests"),
            ("POST", "/api/v4/projects/g%2Fp/merge_requests"),
            ("POST", "/api/v4/projects/12/issues"),
        ] {
            assert!(d(m, p), "must pass: {m} {p}");
        }
        for (m, p) in [
            // The red team's R1: the Repository Files API under git's endpoint name.
            (
                "POST",
                "/api/v4/projects/12/repository/files/git-upload-pack?branch=main",
            ),
            (
                "POST",
                "/api/v4/projects/12/repository/files/src%2Fgit-upload-pack",
            ),
            (
                "POST",
                "/api/v4/projects/12/repository/files/git-receive-pack",
            ),
            (
                "PUT",
                "/api/v4/projects/12/repository/files/git-upload-pack",
            ),
            ("POST", "/api/v4/projects/12/repository/commits"),
            ("POST", "/api/v4/projects/12/repository/branches"),
            ("POST", "/api/v4/projects/12/repository/tags"),
            ("POST", "/api/v4/git-upload-pack"),
            ("POST", "/api/v4/projects/g/p.git/git-upload-pack"),
            ("POST", "/api/v4.git/git-upload-pack"),
            ("POST", "/g/p/git-upload-pack"),
            ("POST", "/g/p.git/x/git-upload-pack"),
            ("POST", "/g/p.git/git-upload-pack/x"),
            ("PUT", "/api/v4/projects/12/merge_requests/1/merge"),
            ("POST", "/api/v4/projects/12/merge_requests/1/approve"),
            ("POST", "/api/v4/projects/12/merge_requests/1/notes"),
            ("POST", "/api/v4/projects/12/merge_requests/1/discussions"),
            ("POST", "/api/v4/projects/12/issues/1/notes"),
            ("DELETE", "/api/v4/projects/12/repository/branches/main"),
            ("POST", "/api/graphql"),
        ] {
            assert!(!d(m, p), "must be denied: {m} {p}");
        }
        assert!(RequestRules::compile(&[], &["nope".into()]).is_err());
    }

    /// R2: a deny rule holds in every spelling a server could read as the denied request, and
    /// targets with no single reading are refused.
    #[test]
    fn deny_rules_hold_in_every_spelling() {
        let r = RequestRules::compile(
            &[
                rule("a.test", &["DELETE"], &[], RuleAction::Deny),
                rule("a.test", &[], &["/repos/victim/**"], RuleAction::Deny),
                rule("a.test", &[], &["/p/*/files/**"], RuleAction::Deny),
                rule("a.test", &[], &["/x"], RuleAction::Deny),
                rule("a.test", &[], &["/**"], RuleAction::Allow),
            ],
            &[],
        )
        .expect("compile");
        let d = |m: &str, p: &str, o: &[&str], form: bool| {
            let req = RuleRequest {
                method: m,
                target: p,
                overrides: o.iter().map(|s| s.to_string()).collect(),
                form_body: form,
            };
            r.decide_request("a.test", &req).expect("rules")
        };
        for (m, p) in [
            ("GET", "/repos/other/x"),
            ("GET", "/repos/other/x/"),
            ("GET", "/"),
            ("POST", "/p/g%2Fh/other"),
            ("GET", "/repos/other?a=b&c=%2F"),
            ("PUT", "/y"),
        ] {
            assert!(d(m, p, &[], false).allow, "must pass: {m} {p}");
        }
        let denied = [
            ("DELETE", "/y", &[][..], false),
            ("delete", "/y", &[], false),
            ("Delete", "/y", &[], false),
            ("POST", "/y", &["DELETE"], false),
            ("POST", "/y", &["delete"], false),
            ("POST", "/y?_method=DELETE", &[], false),
            ("POST", "/y?a=1&_METHOD=delete", &[], false),
            ("POST", "/y?%5Fmethod=DELETE", &[], false),
            ("POST", "/y?a=1;_method=DELETE", &[], false),
            ("GET", "/repos/victim/x", &[], false),
            ("GET", "/repos/Victim/x", &[], false),
            ("GET", "/REPOS/VICTIM/x", &[], false),
            ("GET", "/repos/victim", &[], false),
            ("GET", "/repos/victim/", &[], false),
            ("GET", "//repos/victim/x", &[], false),
            ("GET", "/repos//victim/x", &[], false),
            ("GET", "/repos/victim;x=1/x", &[], false),
            ("GET", "/repos/victim/x;jsessionid=1", &[], false),
            ("GET", "/repos%2Fvictim/x", &[], false),
            ("GET", "/repos/%76ictim/x", &[], false),
            ("GET", "/repos/%2576ictim/x", &[], false),
            ("GET", "/repos/x/%2e%2e/victim/x", &[], false),
            ("GET", "/repos/x/%2E./victim/x", &[], false),
            ("GET", "/repos/x/..%2Fvictim/x", &[], false),
            ("GET", "/repos/x/%252e%252e/victim/x", &[], false),
            ("GET", "/repos/x/../victim/x", &[], false),
            ("GET", "/repos/x/./../victim/x", &[], false),
            ("GET", "/repos\\victim/x", &[], false),
            ("GET", "/repos/victim%00/x", &[], false),
            ("GET", "/repos/vic%09tim/x", &[], false),
            ("GET", "/repos/victim/x#frag", &[], false),
            ("GET", "*", &[], false),
            ("GET", "a.test/repos/victim", &[], false),
            ("GET", "/p/g%2Fh/files/x", &[], false),
            ("GET", "/x/", &[], false),
            ("GET", "/X", &[], false),
            ("GET", "/x?y", &[], false),
            // A form body can carry `_method`: judged as any method.
            ("POST", "/y", &[], true),
            // An override the rules cannot read is never allowed.
            ("POST", "/y", &["GET, DELETE"], false),
            ("POST", "/y", &["get"], false),
            ("get", "/y", &[], false),
            ("GET ", "/y", &[], false),
        ];
        // Linear in the path: 30 000 segments decide at once (the agent chooses paths).
        let long = format!("{}x", "/a".repeat(30_000));
        let t = std::time::Instant::now();
        assert!(d("GET", &long, &[], false).allow);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
        let slipped: Vec<String> = denied
            .into_iter()
            .filter(|(m, p, o, form)| d(m, p, o, *form).allow)
            .map(|(m, p, o, form)| format!("{m} {p} {o:?} form={form}"))
            .collect();
        assert!(slipped.is_empty(), "must be denied: {slipped:#?}");
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
