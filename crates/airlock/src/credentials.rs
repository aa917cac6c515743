//! Credentials on the host side (`docs/credentials.md`): the `[[credentials]]` of the policy
//! plus the zero-config defaults whose source exists on this host, their secrets read from an
//! environment variable, a file or a JSON pointer, and what the sandbox gets instead: a
//! placeholder per credential, the session CA in a trust bundle, and the variables that point
//! clients at that bundle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_net::creds::{Credential, Injector};
use airlock_policy::network::DomainPattern;
use airlock_policy::rules::RequestRules;
use airlock_policy::{CredentialConfig, JsonSource, Policy};
use airlock_sandbox::{Bind, SandboxSpec};
use anyhow::{anyhow, Context, Result};

use crate::exit::{with_code, FAILURE};
use crate::view::expand;

/// Claude Code's credentials file (OAuth tokens of a Claude subscription).
pub(crate) const CLAUDE_CREDENTIALS: &str = "~/.claude/.credentials.json";

/// The host Claude Code refreshes its OAuth tokens at.
pub(crate) const CLAUDE_OAUTH_HOST: &str = "console.anthropic.com";

/// Where the trust bundle (host roots + session CA) appears inside the sandbox.
pub(crate) const BUNDLE_PATH: &str = "/run/airlock/ca-bundle.pem";

/// System bundle paths replaced by the trust bundle inside, when the host has them (tools
/// that ignore the variables below read these).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Variables that point TLS clients at the trust bundle: OpenSSL and most tools, Node.js,
/// Python requests, curl, git, Codex.
const BUNDLE_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CODEX_CA_CERTIFICATE",
];

fn env_cred(name: &str, var: &str, hosts: &[&str]) -> CredentialConfig {
    CredentialConfig {
        name: name.into(),
        env: Some(var.into()),
        file: None,
        json: None,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        inject: None,
        body: false,
        placeholder_env: None,
        reverse_proxy_env: None,
        headers: Vec::new(),
    }
}

fn claude_json_cred(name: &str, field: &str, hosts: &[&str], body: bool) -> CredentialConfig {
    CredentialConfig {
        name: name.into(),
        env: None,
        file: None,
        json: Some(JsonSource {
            file: CLAUDE_CREDENTIALS.into(),
            pointer: format!("/claudeAiOauth/{field}"),
        }),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        inject: None,
        body,
        placeholder_env: None,
        reverse_proxy_env: None,
        headers: Vec::new(),
    }
}

/// The built-in credentials, before checking which exist on this host.
fn builtin() -> Vec<CredentialConfig> {
    let github = [
        "github.com",
        "api.github.com",
        "codeload.github.com",
        "objects.githubusercontent.com",
    ];
    vec![
        env_cred("anthropic", "ANTHROPIC_API_KEY", &["api.anthropic.com"]),
        env_cred(
            "claude-code-oauth-token",
            "CLAUDE_CODE_OAUTH_TOKEN",
            &["api.anthropic.com"],
        ),
        claude_json_cred(
            "claude-oauth-access",
            "accessToken",
            &["api.anthropic.com", CLAUDE_OAUTH_HOST],
            false,
        ),
        // Claude Code posts its refresh token in a JSON body to the OAuth token endpoint.
        claude_json_cred(
            "claude-oauth-refresh",
            "refreshToken",
            &[CLAUDE_OAUTH_HOST],
            true,
        ),
        env_cred("github", "GH_TOKEN", &github),
        env_cred("github-token", "GITHUB_TOKEN", &github),
        env_cred("openai", "OPENAI_API_KEY", &["api.openai.com"]),
    ]
}

/// Whether a credential's source exists on this host (an env var set, a file present).
fn source_exists(c: &CredentialConfig, home: &Path) -> bool {
    if let Some(v) = &c.env {
        return std::env::var_os(v).is_some_and(|v| !v.is_empty());
    }
    let file = c
        .file
        .as_deref()
        .or(c.json.as_ref().map(|j| j.file.as_str()));
    file.and_then(|f| expand(f, home).ok())
        .is_some_and(|p| p.exists())
}

/// One credential of the effective set.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) config: CredentialConfig,
    /// A zero-config default rather than a `[[credentials]]` entry.
    pub(crate) builtin: bool,
}

/// The policy's credentials, then each default whose source exists and whose name the policy
/// does not use.
pub(crate) fn effective(policy: &Policy, home: &Path) -> Vec<Entry> {
    let mut out: Vec<Entry> = policy
        .credentials
        .iter()
        .map(|c| Entry {
            config: c.clone(),
            builtin: false,
        })
        .collect();
    for c in builtin() {
        if !out.iter().any(|e| e.config.name == c.name) && source_exists(&c, home) {
            out.push(Entry {
                config: c,
                builtin: true,
            });
        }
    }
    out
}

/// How the source is shown to the user: `env ANTHROPIC_API_KEY`, `file ~/x.key`,
/// `json ~/.claude/.credentials.json /claudeAiOauth/accessToken`.
pub(crate) fn source_label(c: &CredentialConfig) -> String {
    match (&c.env, &c.file, &c.json) {
        (Some(v), _, _) => format!("env {v}"),
        (_, Some(f), _) => format!("file {f}"),
        (_, _, Some(j)) => format!("json {} {}", j.file, j.pointer),
        _ => "none".into(),
    }
}

/// Reads the secret. The error names the source and never contains the secret.
pub(crate) fn read_secret(c: &CredentialConfig, home: &Path) -> Result<String, String> {
    let value = if let Some(var) = &c.env {
        match std::env::var(var) {
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => {
                return Err(format!("environment variable {var} is not set"))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("environment variable {var} is not valid UTF-8"))
            }
        }
    } else if let Some(f) = &c.file {
        let p = expand(f, home).map_err(|e| e.to_string())?;
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
    } else if let Some(j) = &c.json {
        let (_, v) = read_json(j, home)?;
        v.pointer(&j.pointer)
            .ok_or_else(|| format!("{}: pointer {} finds nothing", j.file, j.pointer))?
            .as_str()
            .ok_or_else(|| format!("{}: {} is not a string", j.file, j.pointer))?
            .to_string()
    } else {
        return Err("no source".into());
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(format!("{} is empty", source_label(c)));
    }
    Ok(value)
}

/// Reads and parses a JSON source's file.
pub(crate) fn read_json(
    j: &JsonSource,
    home: &Path,
) -> Result<(PathBuf, serde_json::Value), String> {
    let p = expand(&j.file, home).map_err(|e| e.to_string())?;
    let text =
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let v = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", p.display()))?;
    Ok((p, v))
}

/// Credentials resolved for `airlock run`, not yet given placeholders.
#[derive(Debug)]
pub(crate) struct Prepared {
    loaded: Vec<(Entry, String)>,
    extra_roots: Vec<PathBuf>,
    home: PathBuf,
    git_push: airlock_policy::git::GitPushPolicy,
    rules: RequestRules,
    rule_denied: Vec<String>,
}

/// What [`prepare`] does with a configured credential whose secret cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unread {
    /// Refuse the run, naming the credential and its source (every real run).
    Refuse,
    /// Keep the credential with an empty secret and say so on stderr: a remote `--dry-run`,
    /// whose rendering names secrets but never holds their values.
    Placeholder,
}

/// Resolves every credential (a broken `[[credentials]]` entry is an error naming it and its
/// source: exit 125 before anything starts; a broken default is skipped with a warning) and
/// adds their hosts to the network allowlist.
pub(crate) fn prepare(policy: &mut Policy, home: &Path, unread: Unread) -> Result<Prepared> {
    let mut loaded = Vec::new();
    for e in effective(policy, home) {
        match read_secret(&e.config, home) {
            Ok(secret) => loaded.push((e, secret)),
            Err(why) if unread == Unread::Placeholder && !e.builtin => {
                eprintln!(
                    "airlock: dry run: credential {} ({}) is not readable here ({why}); it is \
                     rendered by name, a real run needs it",
                    e.config.name,
                    source_label(&e.config)
                );
                loaded.push((e, String::new()));
            }
            Err(why) if e.builtin => eprintln!(
                "airlock: warning: default credential {} not used: {why}",
                e.config.name
            ),
            Err(why) => {
                return Err(with_code(
                    FAILURE,
                    anyhow!(
                    "credential {} ({}): {why}; fix the source or remove the [[credentials]] entry",
                    e.config.name,
                    source_label(&e.config)
                ),
                ))
            }
        }
    }
    let extra_roots = policy
        .tls_extra_roots
        .iter()
        .map(|r| expand(r, home))
        .collect::<Result<Vec<_>>>()?;
    for (e, _) in &loaded {
        for h in &e.config.hosts {
            if !policy.network.allow.contains(h) {
                policy.network.allow.push(h.clone());
            }
        }
    }
    let (rules, rule_denied) = request_rules(policy, &loaded)?;
    Ok(Prepared {
        loaded,
        extra_roots,
        home: home.to_path_buf(),
        git_push: policy.git_push.clone(),
        rules,
        rule_denied,
    })
}

/// The per-request rules (`[[network.rules]]`, rule presets). The proxy sees requests only to
/// credential hosts, so a host a rule names that no loaded credential covers is denied outright
/// (fail closed: its requests could not be checked), with a warning naming the rule; those hosts
/// are returned with the rules.
fn request_rules(
    policy: &mut Policy,
    loaded: &[(Entry, String)],
) -> Result<(RequestRules, Vec<String>)> {
    let rules = RequestRules::compile(&policy.network.rules, &policy.network.rule_presets)
        .map_err(|e| with_code(FAILURE, anyhow!("network.rules: {e}")))?;
    let mut denied = Vec::new();
    for (label, host) in rules.hosts() {
        let covered = loaded.iter().any(|(e, _)| {
            e.config.hosts.iter().any(|h| {
                h == &host
                    || (!host.starts_with("*.")
                        && DomainPattern::parse(h).is_ok_and(|p| p.matches(&host)))
            })
        });
        if !covered && !policy.network.deny.contains(&host) {
            eprintln!(
                "airlock: warning: {label} names {host}, which no credential covers: airlock \
                 cannot see its requests, so {host} is denied; add a [[credentials]] entry for \
                 it or remove the rule"
            );
            policy.network.deny.push(host.clone());
            denied.push(host);
        }
    }
    Ok((rules, denied))
}

/// The OAuth token response field (RFC 6749 §5.1) that rotates a JSON credential, from the
/// last segment of its pointer: Claude Code's `accessToken` and `refreshToken`.
fn oauth_field(pointer: &str) -> Option<&'static str> {
    match pointer.rsplit('/').next()? {
        "accessToken" => Some("access_token"),
        "refreshToken" => Some("refresh_token"),
        _ => None,
    }
}

/// Writes rotated secrets back to their JSON files on the host (one atomic rename per file,
/// permissions kept), and `expiresAt` (milliseconds, as Claude Code writes it) beside them
/// when the response gave a lifetime, so the user's own client keeps working afterwards.
fn write_back(
    sources: &[(String, PathBuf, String)],
    rotated: &[airlock_net::creds::Rotation],
    expires_in: Option<u64>,
) -> Result<()> {
    let mut files: Vec<&PathBuf> = Vec::new();
    for (_, f, _) in sources {
        if !files.contains(&f) {
            files.push(f);
        }
    }
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let mut json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", file.display()))?;
        let mut changed = false;
        for (name, _, pointer) in sources.iter().filter(|(_, f, _)| f == file) {
            let Some(r) = rotated.iter().find(|r| &r.credential == name) else {
                continue;
            };
            if let Some(slot) = json.pointer_mut(pointer) {
                *slot = serde_json::Value::String(r.secret.clone());
                changed = true;
            }
            if let (Some(secs), Some((parent, _))) = (expires_in, pointer.rsplit_once('/')) {
                if let Some(obj) = json.pointer_mut(parent).and_then(|p| p.as_object_mut()) {
                    if obj.contains_key("expiresAt") {
                        let ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_millis())
                            .unwrap_or(0)
                            + u128::from(secs) * 1000;
                        obj.insert(
                            "expiresAt".into(),
                            serde_json::Value::from(u64::try_from(ms).unwrap_or(u64::MAX)),
                        );
                    }
                }
            }
        }
        if changed {
            atomic_write(file, serde_json::to_string_pretty(&json)?.as_bytes())?;
        }
    }
    Ok(())
}

/// Replaces `path` by a sibling temporary file with the same permissions (rename(2) is atomic).
fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let perms = std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .permissions();
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    std::fs::set_permissions(tmp.path(), perms)
        .with_context(|| format!("cannot set permissions on {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| anyhow!("cannot replace {}: {}", path.display(), e.error))?;
    Ok(())
}

/// What the sandbox gets for the session's credentials.
#[derive(Debug)]
pub(crate) struct Sandboxed {
    pub(crate) injector: Option<Arc<Injector>>,
    pub(crate) env: Vec<(String, String)>,
    /// The trust bundle (host roots + session CA, PEM), too large for a generated file: it is
    /// written to the session directory and bound read-only.
    bundle: Option<Vec<u8>>,
    /// Claude Code's credentials file as the agent sees it: placeholders for the tokens.
    claude_copy: Option<serde_json::Value>,
}

/// Fields of `claudeAiOauth` copied into the agent's placeholder file besides the tokens.
const CLAUDE_FIELDS: &[&str] = &["expiresAt", "scopes", "subscriptionType", "rateLimitTier"];

impl Sandboxed {
    /// Writes Claude Code's credentials file, with placeholders for the tokens, into the
    /// agent's state directory `claude_dir` (bound at `~/.claude` inside), and lifts the hide
    /// rule that would cover it inside. Claude Code then finds its login, refreshes it through
    /// the proxy, and writes new placeholders there; the host's real file is never mounted.
    pub(crate) fn place_claude_file(
        &self,
        claude_dir: &Path,
        home: &Path,
        spec: &mut SandboxSpec,
    ) -> Result<()> {
        let Some(copy) = &self.claude_copy else {
            return Ok(());
        };
        let file = claude_dir.join(".credentials.json");
        let _ = std::fs::remove_file(&file);
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .with_context(|| format!("cannot write {}", file.display()))?;
            f.write_all(serde_json::to_string_pretty(copy)?.as_bytes())
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        let inside = home.join(".claude/.credentials.json");
        spec.hide.retain(|h| h != &inside);
        Ok(())
    }
}

impl Prepared {
    /// The agent's view of Claude Code's credentials file, when its tokens are credentials.
    fn claude_copy(&self, injector: &Injector) -> Option<serde_json::Value> {
        let host_file = expand(CLAUDE_CREDENTIALS, &self.home).ok()?;
        let mut tokens = serde_json::Map::new();
        let mut source = None;
        for ((e, _), cred) in self.loaded.iter().zip(injector.credentials()) {
            let Some(j) = &e.config.json else { continue };
            let Some(key) = j.pointer.strip_prefix("/claudeAiOauth/") else {
                continue;
            };
            if expand(&j.file, &self.home).ok()? != host_file || key.contains('/') {
                continue;
            }
            tokens.insert(
                key.to_string(),
                serde_json::Value::String(cred.placeholder()),
            );
            source = Some(j);
        }
        let (_, v) = read_json(source?, &self.home).ok()?;
        let src = v.get("claudeAiOauth")?.as_object()?;
        for k in CLAUDE_FIELDS {
            if let Some(x) = src.get(*k) {
                tokens.insert((*k).to_string(), x.clone());
            }
        }
        Some(serde_json::json!({ "claudeAiOauth": tokens }))
    }
}

impl Sandboxed {
    /// Writes the trust bundle into the session directory `dir` and binds it read-only at
    /// [`BUNDLE_PATH`] and over the system bundles the host has.
    pub(crate) fn place(&self, dir: &Path, spec: &mut SandboxSpec) -> Result<()> {
        let Some(bundle) = &self.bundle else {
            return Ok(());
        };
        let file = dir.join("ca-bundle.pem");
        std::fs::write(&file, bundle)
            .with_context(|| format!("cannot write the trust bundle {}", file.display()))?;
        let targets = std::iter::once(BUNDLE_PATH).chain(
            SYSTEM_BUNDLES
                .iter()
                .copied()
                .filter(|b| Path::new(b).is_file()),
        );
        for target in targets {
            spec.binds.push(Bind {
                source: file.clone(),
                target: target.into(),
                writable: false,
                optional: false,
            });
        }
        Ok(())
    }
}

impl Prepared {
    /// The variables inside that will hold a placeholder.
    pub(crate) fn inside_vars(&self) -> Vec<String> {
        self.loaded
            .iter()
            .filter_map(|(e, _)| e.config.inside_env().map(str::to_string))
            .collect()
    }

    /// Whether a credential comes from Claude Code's login (its OAuth tokens), so the agent
    /// gets a placeholder login file.
    pub(crate) fn claude_login(&self) -> bool {
        self.loaded.iter().any(|(e, _)| {
            e.config
                .json
                .as_ref()
                .is_some_and(|j| j.pointer.starts_with("/claudeAiOauth/"))
        })
    }

    /// Every host a credential is scoped to (added to the allowlist on reload too).
    /// Hosts denied because a request rule names them but no credential covers them (they stay
    /// denied across policy reloads, like the rules).
    pub(crate) fn rule_denied(&self) -> Vec<String> {
        self.rule_denied.clone()
    }

    /// Every loaded credential (configured and default) with its secret, for a remote box: the
    /// configs go into its policy, the secrets to its supervisor as files.
    pub(crate) fn loaded(&self) -> Vec<(CredentialConfig, String)> {
        self.loaded
            .iter()
            .map(|(e, s)| (e.config.clone(), s.clone()))
            .collect()
    }

    pub(crate) fn hosts(&self) -> Vec<String> {
        self.loaded
            .iter()
            .flat_map(|(e, _)| e.config.hosts.iter().cloned())
            .collect()
    }

    /// Placeholders, the session CA and the trust bundle. Fails (exit 125) on a bad
    /// `extra_roots` file or a secret that cannot be a header value.
    /// `proxy_port` is where the proxy listens inside (the reverse-proxy base URLs use it).
    pub(crate) fn sandbox(self, session: &str, proxy_port: u16) -> Result<Sandboxed> {
        if self.loaded.is_empty() {
            return Ok(Sandboxed {
                injector: None,
                env: Vec::new(),
                bundle: None,
                claude_copy: None,
            });
        }
        let mut creds = Vec::new();
        let mut env_names = Vec::new();
        let mut base_urls = Vec::new();
        for (e, secret) in &self.loaded {
            let c = &e.config;
            let inject = c
                .inject
                .as_ref()
                .map(|i| (i.header.as_str(), i.value.as_str()));
            let mut cred = Credential::new(&c.name, secret, &c.hosts, inject, c.body)
                .map_err(|err| with_code(FAILURE, anyhow!("{err} ({})", source_label(c))))?;
            cred = cred
                .with_headers(&c.headers)
                .map_err(|err| with_code(FAILURE, anyhow!("{err} ({})", source_label(c))))?;
            if let Some(field) = c.json.as_ref().and_then(|j| oauth_field(&j.pointer)) {
                cred = cred.rotated_by_oauth_field(field);
            }
            if let Some(var) = &c.reverse_proxy_env {
                cred = cred
                    .reverse_proxy()
                    .map_err(|err| with_code(FAILURE, anyhow!(err)))?;
                if let Some(path) = cred.reverse_path() {
                    base_urls.push((var.clone(), format!("http://127.0.0.1:{proxy_port}{path}")));
                }
            }
            env_names.push(c.inside_env().map(str::to_string));
            creds.push(cred);
        }
        let mut injector = Injector::new(session, creds, &self.extra_roots)
            .map_err(|e| with_code(FAILURE, anyhow!(e)))?;
        injector.set_git_push(self.git_push.clone());
        injector.set_request_rules(self.rules.clone());
        let writeback: Vec<(String, PathBuf, String)> = self
            .loaded
            .iter()
            .filter_map(|(e, _)| {
                let j = e.config.json.as_ref()?;
                oauth_field(&j.pointer)?;
                Some((
                    e.config.name.clone(),
                    expand(&j.file, &self.home).ok()?,
                    j.pointer.clone(),
                ))
            })
            .collect();
        if !writeback.is_empty() {
            injector.on_rotate(Box::new(move |rotated, expires_in| {
                if let Err(e) = write_back(&writeback, rotated, expires_in) {
                    eprintln!(
                        "airlock: warning: refreshed credentials not saved on the host: {e:#}"
                    );
                }
            }));
        }
        let claude_copy = self.claude_copy(&injector);
        let mut env: Vec<(String, String)> = injector
            .credentials()
            .iter()
            .zip(env_names)
            .filter_map(|(c, name)| name.map(|n| (n, c.placeholder().to_string())))
            .collect();
        env.extend(base_urls);
        for v in BUNDLE_VARS {
            env.push((v.to_string(), BUNDLE_PATH.to_string()));
        }
        let bundle = injector.trust_bundle().into_bytes();
        Ok(Sandboxed {
            injector: Some(Arc::new(injector)),
            env,
            bundle: Some(bundle),
            claude_copy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_and_errors_name_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let home = dir.path();
        std::fs::write(home.join("k"), "  sk-test-123  \n").expect("write");
        std::fs::write(
            home.join("c.json"),
            r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-x","expiresAt":1}}"#,
        )
        .expect("write");
        let mut c = env_cred("x", "AIRLOCK_TEST_NOT_SET_ANYWHERE", &["a.test"]);
        let e = read_secret(&c, home).expect_err("unset");
        assert!(e.contains("AIRLOCK_TEST_NOT_SET_ANYWHERE"), "{e}");
        c.env = None;
        c.file = Some("~/k".into());
        assert_eq!(read_secret(&c, home).expect("file"), "sk-test-123");
        c.file = Some("~/missing".into());
        assert!(read_secret(&c, home)
            .expect_err("missing")
            .contains("missing"));
        c.file = None;
        c.json = Some(JsonSource {
            file: "~/c.json".into(),
            pointer: "/claudeAiOauth/accessToken".into(),
        });
        assert_eq!(read_secret(&c, home).expect("json"), "sk-ant-oat01-x");
        c.json = Some(JsonSource {
            file: "~/c.json".into(),
            pointer: "/claudeAiOauth/refreshToken".into(),
        });
        let e = read_secret(&c, home).expect_err("nothing");
        assert!(
            e.contains("/claudeAiOauth/refreshToken") && e.contains("finds nothing"),
            "{e}"
        );
        c.json = Some(JsonSource {
            file: "~/c.json".into(),
            pointer: "/claudeAiOauth/expiresAt".into(),
        });
        assert!(read_secret(&c, home)
            .expect_err("number")
            .contains("not a string"));
    }
}
