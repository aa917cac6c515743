//! The TOML policy model (`../shared/DESIGN.md`, "Command-line contract") and its layering:
//! built-in defaults < `~/.config/airlock/config.toml` < `--policy` files < flags.
//!
//! Lists add up across layers; scalars are overridden by later layers. A layer that is not trusted
//! (a policy file inside the workspace the agent can write) may only narrow: anything that would
//! widen the policy is a load error naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::git::{GitConfig, GitPushPolicy};
use crate::size::parse_size;

/// Errors raised while loading or merging policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid policy file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid policy file {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "policy file {path} is inside the workspace and widens the policy ({key}); \
         a file the agent can write may only narrow it: move it out of the workspace or \
         pass --trust-policy {path} if you wrote it"
    )]
    Widening { path: PathBuf, key: String },
}

/// `[network]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Host names (`example.com`) or patterns (`*.example.com`, subdomains only) allowed.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Names or patterns refused even when allowed.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Addresses or CIDRs a name may resolve to despite the private-range rule.
    #[serde(default)]
    pub allow_private: Vec<String>,
    /// Static name -> address overrides.
    #[serde(default)]
    pub resolve: BTreeMap<String, String>,
    /// Per-host port lists; a host not named here may use 80 and 443.
    #[serde(default)]
    pub ports: BTreeMap<String, Vec<u16>>,
    /// Refuse DNS queries with long random-looking labels under an allowed wildcard
    /// (they are always flagged in the audit log).
    #[serde(default)]
    pub refuse_random_labels: Option<bool>,
    /// Distinct names a session may use under each allowed `*.suffix` pattern (default
    /// [`DEFAULT_WILDCARD_NAMES_MAX`], 1 to [`WILDCARD_NAMES_LIMIT`]). Every name under a
    /// wildcard leaves the machine in a DNS query, so the labels can carry data: this bounds
    /// the channel. Past it, new names under that pattern are refused before any lookup.
    #[serde(default)]
    pub wildcard_names_max: Option<u64>,
    /// `[[network.rules]]`: per-request rules for intercepted hosts (`crate::rules`).
    #[serde(default)]
    pub rules: Vec<crate::rules::RuleConfig>,
    /// Built-in rule sets to add (`crate::rules::PRESETS`), e.g. `["github-read-mostly"]`.
    #[serde(default)]
    pub rule_presets: Vec<String>,
}

/// Default of `[network] wildcard_names_max`.
pub const DEFAULT_WILDCARD_NAMES_MAX: u64 = 64;
/// Largest accepted `[network] wildcard_names_max` (keeps the per-session name sets bounded).
pub const WILDCARD_NAMES_LIMIT: u64 = 100_000;

/// One `[[credentials]]` entry: a secret the agent may use on `hosts` but never read
/// (`docs/credentials.md`). Exactly one of `env`, `file` or `json` names where the real value is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// A name for errors, the audit log and `airlock creds`.
    pub name: String,
    /// Host environment variable holding the real value; inside, the same variable holds the
    /// placeholder.
    #[serde(default)]
    pub env: Option<String>,
    /// File holding the real value (`~` expands to the invoking user's home); surrounding
    /// whitespace is ignored.
    #[serde(default)]
    pub file: Option<String>,
    /// A JSON file and an RFC 6901 pointer to the string holding the real value.
    #[serde(default)]
    pub json: Option<JsonSource>,
    /// The only hosts (exact names or `*.suffix`) the real value is ever sent to.
    pub hosts: Vec<String>,
    /// Add this header (with the real value in place of `{}`) to requests for `hosts` that do
    /// not carry it.
    #[serde(default)]
    pub inject: Option<InjectConfig>,
    /// Also replace the placeholder in request bodies (off by default: only headers).
    #[serde(default)]
    pub body: bool,
    /// More request headers (names) the placeholder is replaced in, besides `authorization`,
    /// `x-api-key` and the `inject` header; anywhere else it is left as is and audited.
    #[serde(default)]
    pub headers: Vec<String>,
    /// The variable inside the sandbox that holds the placeholder (default: `env`; a `file` or
    /// `json` credential without it is only usable through `inject`).
    #[serde(default)]
    pub placeholder_env: Option<String>,
    /// Also serve the credential as a plain-HTTP reverse proxy on the proxy's own address and
    /// set this variable inside to its base URL (e.g. `ANTHROPIC_BASE_URL`), for clients that
    /// take a base URL; requests go to `https://` + the first host, which must be exact.
    #[serde(default)]
    pub reverse_proxy_env: Option<String>,
}

/// `json = { file = "...", pointer = "/a/b" }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSource {
    /// The JSON file (`~` expands to the invoking user's home).
    pub file: String,
    /// RFC 6901 JSON pointer to a string, e.g. `/claudeAiOauth/accessToken`.
    pub pointer: String,
}

/// `inject = { header = "authorization", value = "Bearer {}" }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectConfig {
    /// Header name.
    pub header: String,
    /// Header value; `{}` stands for the real secret.
    pub value: String,
}

/// `[tls]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM files with more roots for verifying credential hosts' upstreams (tests, corporate
    /// CAs), in addition to the host's roots.
    #[serde(default)]
    pub extra_roots: Vec<String>,
}

/// `[filesystem]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Paths hidden inside the sandbox, in addition to the built-in list.
    #[serde(default)]
    pub hide: Vec<String>,
    /// Extra host paths bound read-only.
    #[serde(default)]
    pub read_only: Vec<String>,
    /// Extra host paths bound read-write.
    #[serde(default)]
    pub read_write: Vec<String>,
}

/// `[env]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Variables passed through from the host, in addition to the built-in list.
    #[serde(default)]
    pub pass: Vec<String>,
    /// Variables set to fixed values.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

/// `[limits]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Memory for the whole sandbox, e.g. `4G`.
    #[serde(default)]
    pub memory: Option<String>,
    /// Processes and threads in the sandbox.
    #[serde(default)]
    pub pids: Option<u64>,
    /// CPU cores' worth of time, e.g. `2.0`.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Size of the sandbox's private /tmp.
    #[serde(default)]
    pub tmp_size: Option<String>,
    /// Size of the sandbox's private home directory.
    #[serde(default)]
    pub home_size: Option<String>,
}

/// The smallest `[limits] memory` (`--memory`): less cannot start the sandbox's init and a
/// shell (the kernel's OOM killer ends them before the sandbox is ready).
pub const MIN_MEMORY: u64 = 16 << 20;
/// The smallest `[limits] pids` (`--pids`): the sandbox's init, the command and the few
/// processes and threads a shell and airlock's helpers need.
pub const MIN_PIDS: u64 = 8;

impl LimitsConfig {
    /// Checks each limit set: sizes parse, memory is at least [`MIN_MEMORY`], pids at least
    /// [`MIN_PIDS`], cpus a positive finite number.
    ///
    /// # Errors
    /// The key within `[limits]` (`memory`, `pids`, `cpus`, `tmp_size`, `home_size`) and what
    /// is wrong with its value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(m) = &self.memory {
            let bytes = parse_size(m).map_err(|e| ("memory", e))?;
            if bytes < MIN_MEMORY {
                return Err((
                    "memory",
                    format!("{m} is too little to start the sandbox; give at least 16M"),
                ));
            }
        }
        for (key, v) in [("tmp_size", &self.tmp_size), ("home_size", &self.home_size)] {
            if let Some(v) = v {
                parse_size(v).map_err(|e| (key, e))?;
            }
        }
        if let Some(n) = self.pids.filter(|n| *n < MIN_PIDS) {
            return Err((
                "pids",
                format!("{n} is too few to start the sandbox; give at least {MIN_PIDS}"),
            ));
        }
        if let Some(c) = self.cpus.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err((
                "cpus",
                format!("{c} is not a positive number; give e.g. 0.5 or 2"),
            ));
        }
        Ok(())
    }
}

/// `[terminal]`: what the user's terminal may receive from the sandbox (`airlock run` under a
/// terminal, `airlock attach`). Output always passes through airlock's terminal filter; this only
/// widens it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalConfig {
    /// Let the sandbox set your clipboard with OSC 52 (`printf '\033]52;c;BASE64\007'`), for
    /// agents that copy text for you. Off by default: a clipboard the agent wrote is a command
    /// waiting to be pasted. Reading the clipboard (`OSC 52 ; c ; ?`) is never passed.
    #[serde(default)]
    pub allow_clipboard: Option<bool>,
}

/// The effective `[terminal]` settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalPolicy {
    /// OSC 52 clipboard writes reach the user's terminal.
    pub allow_clipboard: bool,
}

/// `[container]`: the container backends' settings (`--backend podman|docker`); the flags
/// `--runtime` and `--image` override them. Only a trusted layer may set them: a workspace file
/// must not choose the sandbox's root filesystem or its runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    /// OCI runtime: `runc`, `crun` (`runsc` and `kata` are refused at start, see
    /// docs/containers.md).
    #[serde(default)]
    pub runtime: Option<String>,
    /// Image in the engine's local store.
    #[serde(default)]
    pub image: Option<String>,
}

/// `[fly]`: the Fly Machines backend's settings (`--backend fly`, docs/fly.md); the flags
/// `--fly-app`, `--fly-region`, `--fly-mode` and `--image` override them. Only a trusted layer
/// may set them: a workspace file must not choose where the session's secrets and token go,
/// what image runs, or what is billed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlyConfig {
    /// The Fly app the machines are created in (it must exist: `fly apps create NAME`).
    #[serde(default)]
    pub app: Option<String>,
    /// The region code (`fly platform regions`); absent: the API's choice.
    #[serde(default)]
    pub region: Option<String>,
    /// The image; absent: `registry.fly.io/APP:airlock-VERSION`.
    #[serde(default)]
    pub image: Option<String>,
    /// `ephemeral` (destroyed when the session ends, the default) or `standby` (stopped and
    /// kept until `airlock rm`).
    #[serde(default)]
    pub mode: Option<FlyMode>,
    /// `shared` (default) or `performance`.
    #[serde(default)]
    pub cpu_kind: Option<String>,
    /// CPUs of the machine (default: `[limits] cpus` rounded up, else 1).
    #[serde(default)]
    pub cpus: Option<u32>,
    /// Memory of the machine in MiB, a multiple of 256 (default 2048).
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// The Machines API's base URL (default `https://api.machines.dev`).
    #[serde(default)]
    pub api_url: Option<String>,
}

/// `[fly] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlyMode {
    /// `auto_destroy`: the machine is destroyed when its session ends.
    #[default]
    Ephemeral,
    /// The machine stops when its session ends and is kept (resumable) until deleted.
    Standby,
}

impl FlyMode {
    /// The name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            FlyMode::Ephemeral => "ephemeral",
            FlyMode::Standby => "standby",
        }
    }
}

impl FlyConfig {
    /// Takes each key `over` sets.
    fn merge(&mut self, over: &FlyConfig) {
        let o = over.clone();
        self.app = o.app.or(self.app.take());
        self.region = o.region.or(self.region.take());
        self.image = o.image.or(self.image.take());
        self.mode = o.mode.or(self.mode);
        self.cpu_kind = o.cpu_kind.or(self.cpu_kind.take());
        self.cpus = o.cpus.or(self.cpus);
        self.memory_mb = o.memory_mb.or(self.memory_mb);
        self.api_url = o.api_url.or(self.api_url.take());
    }

    /// The first key set, as `fly.KEY` (for the untrusted-layer refusal).
    fn first_key(&self) -> Option<&'static str> {
        [
            (self.app.is_some(), "fly.app"),
            (self.region.is_some(), "fly.region"),
            (self.image.is_some(), "fly.image"),
            (self.mode.is_some(), "fly.mode"),
            (self.cpu_kind.is_some(), "fly.cpu_kind"),
            (self.cpus.is_some(), "fly.cpus"),
            (self.memory_mb.is_some(), "fly.memory_mb"),
            (self.api_url.is_some(), "fly.api_url"),
        ]
        .into_iter()
        .find_map(|(set, key)| set.then_some(key))
    }
}

/// `[k8s]`: the Kubernetes engine's settings (`--backend k8s`, docs/k8s.md); the flags
/// `--context` and `--namespace` override the first two. Only a trusted layer may set them: a
/// workspace file must not choose the cluster, the image, the runtime or the account the box
/// runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sConfig {
    /// The namespace (default: the context's, else `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The kubeconfig context (default: the current one).
    #[serde(default)]
    pub context: Option<String>,
    /// The box's image (airlock at /usr/local/bin/airlock, and the agent's CLI).
    #[serde(default)]
    pub image: Option<String>,
    /// The pod's `runtimeClassName` (`gvisor`, `kata`).
    #[serde(default)]
    pub runtime_class: Option<String>,
    /// The pod's `serviceAccountName` (its token is never mounted).
    #[serde(default)]
    pub service_account: Option<String>,
    /// A `Localhost` seccomp profile (relative to the kubelet's seccomp directory) instead of
    /// `RuntimeDefault`.
    #[serde(default)]
    pub seccomp_profile: Option<String>,
    /// `auto` (an agent-sandbox `Sandbox` when the cluster serves the CRD), `always`, `never`.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// Size of the home emptyDir, e.g. `1G`.
    #[serde(default)]
    pub home_size: Option<String>,
    /// Size of the /tmp emptyDir.
    #[serde(default)]
    pub tmp_size: Option<String>,
    /// Size of the workspace emptyDir.
    #[serde(default)]
    pub workspace_size: Option<String>,
    /// Size of the state emptyDir (the overlay's upper layer, the audit log).
    #[serde(default)]
    pub state_size: Option<String>,
}

/// The values `[k8s] sandbox` takes.
pub const K8S_SANDBOX_MODES: &[&str] = &["auto", "always", "never"];

impl K8sConfig {
    /// Checks each key; the error names the key (within `[k8s]`) and the problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, v) in [
            ("home_size", &self.home_size),
            ("tmp_size", &self.tmp_size),
            ("workspace_size", &self.workspace_size),
            ("state_size", &self.state_size),
        ] {
            if let Some(v) = v {
                parse_size(v).map_err(|e| (key, e))?;
            }
        }
        if let Some(m) = &self.sandbox {
            if !K8S_SANDBOX_MODES.contains(&m.as_str()) {
                return Err((
                    "sandbox",
                    format!("'{m}' is not one of {}", K8S_SANDBOX_MODES.join(", ")),
                ));
            }
        }
        // RFC 1123 labels (namespace) and subdomains (runtime class, service account), as
        // the API server checks them: a bad one would fail only at create.
        if let Some(n) = &self.namespace {
            if !dns_label(n) {
                return Err((
                    "namespace",
                    format!("'{n}' is not a DNS label (lower-case a-z, 0-9, '-', at most 63)"),
                ));
            }
        }
        for (key, v) in [
            ("runtime_class", &self.runtime_class),
            ("service_account", &self.service_account),
        ] {
            if let Some(v) = v {
                if v.len() > 253 || v.split('.').any(|l| !dns_label(l)) {
                    return Err((key, format!("'{v}' is not a DNS subdomain name")));
                }
            }
        }
        for (key, v) in [
            ("context", &self.context),
            ("image", &self.image),
            ("seccomp_profile", &self.seccomp_profile),
        ] {
            if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err((key, "is empty".into()));
            }
        }
        Ok(())
    }

    /// Overrides every key `later` sets.
    fn merge(&mut self, later: &K8sConfig) {
        let pairs = [
            (&mut self.namespace, &later.namespace),
            (&mut self.context, &later.context),
            (&mut self.image, &later.image),
            (&mut self.runtime_class, &later.runtime_class),
            (&mut self.service_account, &later.service_account),
            (&mut self.seccomp_profile, &later.seccomp_profile),
            (&mut self.sandbox, &later.sandbox),
            (&mut self.home_size, &later.home_size),
            (&mut self.tmp_size, &later.tmp_size),
            (&mut self.workspace_size, &later.workspace_size),
            (&mut self.state_size, &later.state_size),
        ];
        for (mine, theirs) in pairs {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
    }

    /// The first key set, if any (an untrusted layer may set none).
    fn first_key_set(&self) -> Option<&'static str> {
        [
            ("k8s.namespace", self.namespace.is_some()),
            ("k8s.context", self.context.is_some()),
            ("k8s.image", self.image.is_some()),
            ("k8s.runtime_class", self.runtime_class.is_some()),
            ("k8s.service_account", self.service_account.is_some()),
            ("k8s.seccomp_profile", self.seccomp_profile.is_some()),
            ("k8s.sandbox", self.sandbox.is_some()),
            ("k8s.home_size", self.home_size.is_some()),
            ("k8s.tmp_size", self.tmp_size.is_some()),
            ("k8s.workspace_size", self.workspace_size.is_some()),
            ("k8s.state_size", self.state_size.is_some()),
        ]
        .into_iter()
        .find(|(_, set)| *set)
        .map(|(k, _)| k)
    }
}

/// An RFC 1123 label: 1-63 of `[a-z0-9-]`, starting and ending alphanumeric.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `[telemetry]`: OpenTelemetry export to the user's own collector (`docs/telemetry.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector, e.g. `http://127.0.0.1:4318` (`/v1/logs` is
    /// appended for airlock's own audit events).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Request headers for airlock's exporter: a literal value, or `{ credential = "NAME" }`
    /// naming a `[[credentials]]` entry whose real value is read on the host (optionally
    /// `value = "Bearer {}"` around it).
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// Switch on the agent's own OpenTelemetry export (Claude Code's
    /// `CLAUDE_CODE_ENABLE_TELEMETRY` and the `OTEL_*` variables) towards the same collector
    /// through the proxy (default true when `otlp_endpoint` is set).
    #[serde(default)]
    pub agent: Option<bool>,
    /// Let the agent's telemetry carry prompt text and tool details (`OTEL_LOG_USER_PROMPTS`,
    /// `OTEL_LOG_TOOL_DETAILS`); off by default.
    #[serde(default)]
    pub include_prompts: Option<bool>,
    /// Audit events held for export at most (default [`DEFAULT_TELEMETRY_QUEUE`]); beyond it
    /// events are dropped from the export (never from the audit log) and counted there.
    #[serde(default)]
    pub queue_size: Option<usize>,
}

/// Default of `[telemetry] queue_size`.
pub const DEFAULT_TELEMETRY_QUEUE: usize = 2048;

/// One `[telemetry] headers` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// Sent as written (not a secret: it may also be given to the agent's exporter).
    Literal(String),
    /// The real value of a `[[credentials]]` entry, read on the host and sent only by airlock's
    /// own exporter, never placed in the sandbox.
    Credential {
        /// The credential's `name`.
        credential: String,
        /// The header value with `{}` where the secret goes (default `{}`).
        #[serde(default)]
        value: Option<String>,
    },
}

/// `[presets]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetsConfig {
    /// Ecosystem presets to use (`crate::ecosystems`): their registry hosts are allowed.
    #[serde(default, rename = "use")]
    pub use_: Vec<String>,
}

/// `[approvals]`: whether a refused host is held while the user is asked (`airlock approve`),
/// docs/network.md "Approvals". Off by default; only a trusted layer may turn it on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// `"off"` (refuse as the policy says) or `"ask"`.
    #[serde(default)]
    pub mode: Option<ApprovalMode>,
    /// Seconds a refused request is held while the user is asked, 1 to 600 (default 60); then
    /// it is refused.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// The prefix key that answers a held request on the user's terminal when airlock owns it
    /// (`"C-]"` by default, tmux's notation; `"none"` turns terminal answers off); parsed by
    /// [`approval_key`].
    #[serde(default)]
    pub key: Option<String>,
}

/// `[approvals] key` when absent: Ctrl-] (0x1d), telnet's escape, which agents' TUIs leave alone.
pub const APPROVAL_KEY_DEFAULT: &str = "C-]";

/// The byte `[approvals] key` stands for: `C-x` (Ctrl and `x`, tmux's notation) for a letter or
/// one of `@ [ \ ] ^ _`; `None` for `"none"`. Keys the terminal or the agent need for
/// themselves are refused: Ctrl-C, -D, -Z and -\ (interrupt, end of file, suspend, quit),
/// -H, -I, -J, -M (backspace, tab, line feed, enter), -Q and -S (flow control), and -[ (escape,
/// the first byte of every arrow and function key).
///
/// # Errors
/// Anything else, with what to write instead.
pub fn approval_key(s: &str) -> Result<Option<u8>, String> {
    if s == "none" {
        return Ok(None);
    }
    let c = match s.strip_prefix("C-").map(|r| r.as_bytes()) {
        Some([c]) => c.to_ascii_uppercase(),
        _ => {
            return Err(format!(
                "'{s}' is not a key: write C- and a letter or one of @ [ \\ ] ^ _ (e.g. \"C-]\"), or \"none\""
            ))
        }
    };
    if !(b'@'..=b'_').contains(&c) {
        return Err(format!(
            "'{s}' is not a control key: write C- and a letter or one of @ [ \\ ] ^ _ (e.g. \"C-]\")"
        ));
    }
    if b"CDZ\\HIJMQS[".contains(&c) {
        return Err(format!(
            "'{s}' is needed by the terminal or the agent (interrupt, end of file, suspend, quit, \
             backspace, tab, enter, flow control or escape); choose another, e.g. \"C-]\""
        ));
    }
    Ok(Some(c - b'@'))
}

/// `[approvals] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalMode {
    #[default]
    Off,
    Ask,
}

/// `[notify]`: how a session tells the user it finished, failed, was blocked, or waits for an
/// approval (docs/network.md "Notifications"). Only a trusted layer may set it: the command runs
/// on the host and the webhook is reached by the supervisor, never by the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// A program and its arguments, run on the host for each event with the message appended
    /// as the last argument (e.g. `["notify-send", "airlock"]`).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// An `http://` or `https://` URL the message is POSTed to (ntfy-style: the body is the
    /// message, the `Title` header the event).
    #[serde(default)]
    pub webhook: Option<String>,
    /// Which events (`finished`, `failed`, `blocked`, `waiting`); all when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// A desktop notification (freedesktop Notifications over the session bus, through
    /// `notify-send`) per event; on by default when a session bus and `notify-send` are there.
    #[serde(default)]
    pub desktop: Option<bool>,
}

/// The events `[notify] events` may name.
pub const NOTIFY_EVENTS: &[&str] = &["finished", "failed", "blocked", "waiting"];

/// Longest `[approvals] timeout_secs`.
pub const APPROVAL_TIMEOUT_MAX: u64 = 600;
/// Default `[approvals] timeout_secs`.
pub const APPROVAL_TIMEOUT_DEFAULT: u64 = 60;

/// One policy file as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub filesystem: FilesystemConfig,
    #[serde(default)]
    pub env: EnvConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub terminal: TerminalConfig,
    #[serde(default)]
    pub container: ContainerConfig,
    /// `[fly]`: the Fly Machines backend.
    #[serde(default)]
    pub fly: FlyConfig,
    /// `[k8s]`: the Kubernetes engine (`--backend k8s`).
    #[serde(default)]
    pub k8s: K8sConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// `[git]`: what may be pushed to credential hosts (`crate::git`).
    #[serde(default)]
    pub git: GitConfig,
    /// `[presets]`: ecosystem presets (`crate::ecosystems`).
    #[serde(default)]
    pub presets: PresetsConfig,
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    /// Command-gate rules; parsed and validated by `airlock-gate`.
    #[serde(default)]
    pub commands: Option<toml::Table>,
}

impl ConfigFile {
    /// Parses a policy file's text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: path.to_path_buf(),
            message: one_line(text, &e),
        })?;
        file.validate(path)?;
        Ok(file)
    }

    fn validate(&self, path: &Path) -> Result<(), PolicyError> {
        let invalid = |key: &str, message: String| PolicyError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        if let Some(c) = &self.notify.command {
            if c.first().is_none_or(String::is_empty) {
                return Err(invalid(
                    "notify.command",
                    "needs a program, e.g. [\"notify-send\", \"airlock\"]".into(),
                ));
            }
        }
        if let Some(w) = &self.notify.webhook {
            let rest = w
                .strip_prefix("https://")
                .or_else(|| w.strip_prefix("http://"))
                .unwrap_or("");
            if rest.is_empty() || rest.starts_with('/') || w.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "notify.webhook",
                    format!("'{w}' is not an http:// or https:// URL"),
                ));
            }
        }
        for e in self.notify.events.iter().flatten() {
            if !NOTIFY_EVENTS.contains(&e.as_str()) {
                return Err(invalid(
                    "notify.events",
                    format!("unknown event '{e}' (one of {})", NOTIFY_EVENTS.join(", ")),
                ));
            }
        }
        if let Some(k) = &self.approvals.key {
            approval_key(k).map_err(|m| invalid("approvals.key", m))?;
        }
        if let Some(t) = self.approvals.timeout_secs {
            if !(1..=APPROVAL_TIMEOUT_MAX).contains(&t) {
                return Err(invalid(
                    "approvals.timeout_secs",
                    format!("must be between 1 and {APPROVAL_TIMEOUT_MAX} seconds, not {t}"),
                ));
            }
        }
        self.limits
            .validate()
            .map_err(|(key, message)| invalid(&format!("limits.{key}"), message))?;
        self.k8s
            .validate()
            .map_err(|(key, message)| invalid(&format!("k8s.{key}"), message))?;
        if let Some(n) = self.network.wildcard_names_max {
            if n == 0 {
                return Err(invalid(
                    "network.wildcard_names_max",
                    "must be at least 1: a wildcard with no names allows nothing; to allow no \
                     names under a pattern, remove the `*.` pattern from [network] allow"
                        .into(),
                ));
            }
            if n > WILDCARD_NAMES_LIMIT {
                return Err(invalid(
                    "network.wildcard_names_max",
                    format!(
                        "{n} is more than {WILDCARD_NAMES_LIMIT}; list the names you need \
                         exactly in [network] allow instead"
                    ),
                ));
            }
        }
        for (i, c) in self.credentials.iter().enumerate() {
            c.validate()
                .map_err(|m| invalid(&format!("credentials[{i}] ({})", c.name), m))?;
        }
        for (i, r) in self.tls.extra_roots.iter().enumerate() {
            if r.trim().is_empty() {
                return Err(invalid(
                    &format!("tls.extra_roots[{i}]"),
                    "empty path".into(),
                ));
            }
        }
        self.telemetry
            .validate(&self.credentials)
            .map_err(|(key, m)| invalid(&format!("telemetry.{key}"), m))?;
        for name in &self.presets.use_ {
            crate::ecosystems::ecosystem(name).map_err(|m| invalid("presets.use", m))?;
        }
        crate::rules::validate(&self.network.rules, &self.network.rule_presets)
            .map_err(|m| invalid("network.rules", m))?;
        for b in self.git.push.iter().flat_map(|p| &p.branches) {
            crate::git::validate_pattern(b).map_err(|m| invalid("git.push.branches", m))?;
        }
        for name in self.env.pass.iter().chain(self.env.set.keys()) {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(invalid("env", format!("'{name}' is not a variable name")));
            }
        }
        Ok(())
    }
}

/// A TOML error as one line: `line L, column C: what (in `the line`)` (1-based, from the
/// error's span).
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            // The line itself names the key at fault (TOML errors on values do not).
            let src: String = text
                .lines()
                .nth(line - 1)
                .unwrap_or("")
                .trim()
                .chars()
                .take(60)
                .collect();
            if src.is_empty() {
                format!("line {line}, column {column}: {what}")
            } else {
                format!("line {line}, column {column}: {what} (in `{src}`)")
            }
        }
        None => what,
    }
}

/// Headers that route a request (RFC 9110 §7.2, hop-by-hop fields of RFC 9110 §7.6.1): never a
/// credential carrier.
const FORBIDDEN_CARRIERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// A header field name: an RFC 9110 §5.6.2 token.
fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl CredentialConfig {
    /// Checks the entry on its own (no I/O): one source, a usable env name, a pointer, valid
    /// host patterns, an `inject` with `{}`. The message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty".into());
        }
        let sources = [self.env.is_some(), self.file.is_some(), self.json.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err("set exactly one of `env`, `file` or `json`".into());
        }
        for (key, v) in [
            ("env", &self.env),
            ("placeholder_env", &self.placeholder_env),
            ("reverse_proxy_env", &self.reverse_proxy_env),
        ] {
            if let Some(v) = v {
                if !is_env_name(v) {
                    return Err(format!("{key}: '{v}' is not a variable name"));
                }
            }
        }
        if let Some(f) = &self.file {
            if f.trim().is_empty() {
                return Err("file: empty path".into());
            }
        }
        if let Some(j) = &self.json {
            if j.file.trim().is_empty() {
                return Err("json.file: empty path".into());
            }
            if !j.pointer.starts_with('/') {
                return Err(format!(
                    "json.pointer: '{}' is not a JSON pointer (RFC 6901: it starts with '/')",
                    j.pointer
                ));
            }
        }
        if self.hosts.is_empty() {
            return Err("`hosts` is empty: name the hosts this credential may be sent to".into());
        }
        for (i, h) in self.hosts.iter().enumerate() {
            crate::network::DomainPattern::parse(h)
                .map_err(|e| format!("hosts[{i}]: '{h}' {e}"))?;
        }
        if self.reverse_proxy_env.is_some() && self.hosts[0].starts_with("*.") {
            return Err(format!(
                "reverse_proxy_env: the first host '{}' must be an exact name (requests go there)",
                self.hosts[0]
            ));
        }
        for (i, h) in self.headers.iter().enumerate() {
            if !is_header_name(h) {
                return Err(format!("headers[{i}]: '{h}' is not a header name"));
            }
            if FORBIDDEN_CARRIERS.iter().any(|f| h.eq_ignore_ascii_case(f)) {
                return Err(format!(
                    "headers[{i}]: '{h}' names the request's routing, not a credential; the \
                     placeholder is never replaced there"
                ));
            }
        }
        if let Some(inj) = &self.inject {
            if !is_header_name(&inj.header) {
                return Err(format!(
                    "inject.header: '{}' is not a header name",
                    inj.header
                ));
            }
            if !inj.value.contains("{}") {
                return Err(format!(
                    "inject.value: '{}' has no '{{}}' where the secret goes",
                    inj.value
                ));
            }
        }
        Ok(())
    }

    /// The variable inside the sandbox that holds the placeholder.
    pub fn inside_env(&self) -> Option<&str> {
        self.placeholder_env.as_deref().or(self.env.as_deref())
    }
}

impl TelemetryConfig {
    /// Checks the table on its own: an `http://` or `https://` endpoint with a host, header
    /// names that are tokens, `{}` in templates. `credentials` are this file's entries (a name
    /// from another layer is checked when the session starts). Errors are `(key, message)`.
    fn validate(&self, _credentials: &[CredentialConfig]) -> Result<(), (String, String)> {
        if let Some(e) = &self.otlp_endpoint {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .ok_or_else(|| {
                    (
                        "otlp_endpoint".to_string(),
                        format!("'{e}' is not an http:// or https:// URL (OTLP/HTTP, e.g. http://127.0.0.1:4318)"),
                    )
                })?;
            if rest.split(['/', '?', '#']).next().unwrap_or("").is_empty() {
                return Err(("otlp_endpoint".into(), format!("'{e}' has no host")));
            }
        }
        if self.queue_size == Some(0) {
            return Err(("queue_size".into(), "must be at least 1".into()));
        }
        for (name, v) in &self.headers {
            if !is_header_name(name) {
                return Err((
                    format!("headers.{name}"),
                    format!("'{name}' is not a header name"),
                ));
            }
            if let HeaderValue::Credential { value: Some(t), .. } = v {
                if !t.contains("{}") {
                    return Err((
                        format!("headers.{name}"),
                        format!("value '{t}' has no '{{}}' where the credential goes"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One layer of configuration with where it came from.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The file it came from, or a pseudo-path such as `<flags>`.
    pub source: PathBuf,
    /// Untrusted layers may only narrow the policy.
    pub trusted: bool,
    pub config: ConfigFile,
}

/// Resolved resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    pub tmp_bytes: u64,
    pub home_bytes: u64,
}

/// The effective policy after layering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub network: NetworkConfig,
    pub credentials: Vec<CredentialConfig>,
    /// `[tls] extra_roots` of every layer.
    pub tls_extra_roots: Vec<String>,
    /// Built-in hide list plus `[filesystem] hide`.
    pub hide: Vec<String>,
    pub read_only: Vec<String>,
    pub read_write: Vec<String>,
    /// Built-in pass list plus `[env] pass`; entries ending in `*` are prefixes (`LC_*`).
    pub env_pass: Vec<String>,
    pub env_set: BTreeMap<String, String>,
    pub limits: Limits,
    /// `[terminal]`.
    #[serde(default)]
    pub terminal: TerminalPolicy,
    /// `[container]`, the last layer's value of each key.
    #[serde(default)]
    pub container: ContainerConfig,
    /// `[fly]`, the last layer's value of each key.
    #[serde(default)]
    pub fly: FlyConfig,
    /// `[k8s]`, the last layer's value of each key.
    #[serde(default)]
    pub k8s: K8sConfig,
    /// `[telemetry]`, keys merged across layers (later layers win per key).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// `[git] push`.
    #[serde(default)]
    pub git_push: GitPushPolicy,
    /// Ecosystem presets in use (`[presets] use`, `--preset`); their hosts are in
    /// `network.allow`.
    #[serde(default)]
    pub presets: Vec<String>,
    /// `[approvals]`, merged (a later layer's keys win).
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// `[notify]`, merged (a later layer's keys win).
    #[serde(default)]
    pub notify: NotifyConfig,
    /// `[commands]` tables in layer order, with their source.
    pub commands: Vec<(PathBuf, toml::Table)>,
}

/// Paths hidden inside the sandbox whatever the configuration says. `~` is the invoking user's home.
pub const BUILTIN_HIDE: &[&str] = &[
    "~/.ssh",
    "~/.aws",
    "~/.gnupg",
    "~/.config/gh",
    "~/.config/gcloud",
    "~/.azure",
    "~/.oci",
    "~/.claude/.credentials.json",
    "~/.codex/auth.json",
    "~/.docker",
    "~/.kube",
    "~/.netrc",
    "~/.npmrc",
    "~/.pypirc",
    "~/.git-credentials",
    "~/.config/git/credentials",
    "~/.cargo/credentials",
    "~/.cargo/credentials.toml",
    "~/.password-store",
    "~/.local/share/keyrings",
    "~/.vault-token",
    "~/.terraform.d/credentials.tfrc.json",
    "~/.config/airlock",
    "~/.local/share/airlock/sessions",
    "~/.local/share/airlock/sessions.db",
    "~/.local/share/airlock/state",
    "~/.local/state/airlock",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
    "/etc/ssl/private",
    "/etc/security/opasswd",
    "/etc/machine-id",
];

/// Environment variables passed from the host whatever the configuration says.
pub const BUILTIN_ENV_PASS: &[&str] = &["TERM", "LANG", "LANGUAGE", "LC_*", "TZ", "COLORTERM"];

/// Default memory limit when none is configured: 8 GiB.
pub const DEFAULT_MEMORY: u64 = 8 << 30;
/// Default process limit.
pub const DEFAULT_PIDS: u64 = 4096;
/// Default size of the private /tmp.
pub const DEFAULT_TMP: u64 = 2 << 30;
/// Default size of the private home.
pub const DEFAULT_HOME: u64 = 1 << 30;

impl Policy {
    /// Merges layers, first the lowest. Fails when an untrusted layer tries to widen.
    pub fn from_layers(layers: &[Layer]) -> Result<Policy, PolicyError> {
        let mut p = Policy {
            network: NetworkConfig::default(),
            credentials: Vec::new(),
            tls_extra_roots: Vec::new(),
            hide: BUILTIN_HIDE.iter().map(|s| s.to_string()).collect(),
            read_only: Vec::new(),
            read_write: Vec::new(),
            env_pass: BUILTIN_ENV_PASS.iter().map(|s| s.to_string()).collect(),
            env_set: BTreeMap::new(),
            limits: Limits {
                memory_bytes: Some(DEFAULT_MEMORY),
                pids: Some(DEFAULT_PIDS),
                cpus: None,
                tmp_bytes: DEFAULT_TMP,
                home_bytes: DEFAULT_HOME,
            },
            terminal: TerminalPolicy::default(),
            container: ContainerConfig::default(),
            fly: FlyConfig::default(),
            k8s: K8sConfig::default(),
            telemetry: TelemetryConfig::default(),
            git_push: GitPushPolicy::default(),
            presets: Vec::new(),
            approvals: ApprovalsConfig::default(),
            notify: NotifyConfig::default(),
            commands: Vec::new(),
        };
        for layer in layers {
            if !layer.trusted {
                check_narrowing(layer, &p)?;
            }
            p.merge(layer)?;
        }
        Ok(p)
    }

    fn merge(&mut self, layer: &Layer) -> Result<(), PolicyError> {
        let c = &layer.config;
        extend_unique(&mut self.network.allow, &c.network.allow);
        extend_unique(&mut self.network.deny, &c.network.deny);
        extend_unique(&mut self.network.allow_private, &c.network.allow_private);
        self.network.resolve.extend(
            c.network
                .resolve
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        self.network
            .ports
            .extend(c.network.ports.iter().map(|(k, v)| (k.clone(), v.clone())));
        if c.network.refuse_random_labels.is_some() {
            self.network.refuse_random_labels = c.network.refuse_random_labels;
        }
        if c.network.wildcard_names_max.is_some() {
            self.network.wildcard_names_max = c.network.wildcard_names_max;
        }
        self.network.rules.extend(c.network.rules.iter().cloned());
        extend_unique(&mut self.network.rule_presets, &c.network.rule_presets);
        for cred in &c.credentials {
            self.credentials.retain(|x| x.name != cred.name);
            self.credentials.push(cred.clone());
        }
        extend_unique(&mut self.tls_extra_roots, &c.tls.extra_roots);
        extend_unique(&mut self.hide, &c.filesystem.hide);
        extend_unique(&mut self.read_only, &c.filesystem.read_only);
        extend_unique(&mut self.read_write, &c.filesystem.read_write);
        extend_unique(&mut self.env_pass, &c.env.pass);
        self.env_set
            .extend(c.env.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        let size = |key: &str, v: &str| {
            parse_size(v).map_err(|message| PolicyError::Invalid {
                path: layer.source.clone(),
                key: key.to_string(),
                message,
            })
        };
        if let Some(m) = &c.limits.memory {
            self.limits.memory_bytes = Some(size("limits.memory", m)?);
        }
        if let Some(n) = c.limits.pids {
            self.limits.pids = Some(n);
        }
        if let Some(n) = c.limits.cpus {
            self.limits.cpus = Some(n);
        }
        if let Some(v) = &c.limits.tmp_size {
            self.limits.tmp_bytes = size("limits.tmp_size", v)?;
        }
        if let Some(v) = &c.limits.home_size {
            self.limits.home_bytes = size("limits.home_size", v)?;
        }
        if c.notify.command.is_some() {
            self.notify.command.clone_from(&c.notify.command);
        }
        if c.notify.webhook.is_some() {
            self.notify.webhook.clone_from(&c.notify.webhook);
        }
        if c.notify.events.is_some() {
            self.notify.events.clone_from(&c.notify.events);
        }
        if c.notify.desktop.is_some() {
            self.notify.desktop = c.notify.desktop;
        }
        if c.approvals.key.is_some() {
            self.approvals.key.clone_from(&c.approvals.key);
        }
        if c.approvals.mode.is_some() {
            self.approvals.mode = c.approvals.mode;
        }
        if c.approvals.timeout_secs.is_some() {
            self.approvals.timeout_secs = c.approvals.timeout_secs;
        }
        if let Some(v) = c.terminal.allow_clipboard {
            self.terminal.allow_clipboard = v;
        }
        if c.container.runtime.is_some() {
            self.container.runtime.clone_from(&c.container.runtime);
        }
        if c.container.image.is_some() {
            self.container.image.clone_from(&c.container.image);
        }
        self.fly.merge(&c.fly);
        self.k8s.merge(&c.k8s);
        let t = &c.telemetry;
        if t.otlp_endpoint.is_some() {
            self.telemetry.otlp_endpoint = t.otlp_endpoint.clone();
        }
        self.telemetry
            .headers
            .extend(t.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (into, from) in [
            (&mut self.telemetry.agent, t.agent),
            (&mut self.telemetry.include_prompts, t.include_prompts),
        ] {
            if from.is_some() {
                *into = from;
            }
        }
        if t.queue_size.is_some() {
            self.telemetry.queue_size = t.queue_size;
        }
        if let Some(g) = &c.git.push {
            self.git_push.merge(g);
        }
        for name in &c.presets.use_ {
            let eco =
                crate::ecosystems::ecosystem(name).map_err(|message| PolicyError::Invalid {
                    path: layer.source.clone(),
                    key: "presets.use".into(),
                    message,
                })?;
            extend_unique(&mut self.network.allow, &eco.hosts);
            extend_unique(&mut self.presets, std::slice::from_ref(name));
        }
        if let Some(t) = &c.commands {
            self.commands.push((layer.source.clone(), t.clone()));
        }
        Ok(())
    }

    /// Whether the host variable `name` passes into the sandbox.
    pub fn passes_env(&self, name: &str) -> bool {
        self.env_pass.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
    }
}

fn extend_unique(into: &mut Vec<String>, from: &[String]) {
    for v in from {
        if !into.contains(v) {
            into.push(v.clone());
        }
    }
}

/// An untrusted layer may add denials and hides and lower limits; nothing else.
fn check_narrowing(layer: &Layer, current: &Policy) -> Result<(), PolicyError> {
    let c = &layer.config;
    let widen = |key: &str| {
        Err(PolicyError::Widening {
            path: layer.source.clone(),
            key: key.to_string(),
        })
    };
    let n = &c.network;
    if !n.allow.is_empty() {
        return widen("network.allow");
    }
    if !n.allow_private.is_empty() {
        return widen("network.allow_private");
    }
    if !n.resolve.is_empty() {
        return widen("network.resolve");
    }
    if !n.ports.is_empty() {
        return widen("network.ports");
    }
    if n.refuse_random_labels == Some(false) {
        return widen("network.refuse_random_labels");
    }
    let names_max = |m: Option<u64>| m.unwrap_or(DEFAULT_WILDCARD_NAMES_MAX);
    if n.wildcard_names_max.is_some()
        && names_max(n.wildcard_names_max) > names_max(current.network.wildcard_names_max)
    {
        return widen("network.wildcard_names_max");
    }
    if n.rules
        .iter()
        .any(|r| r.action != crate::rules::RuleAction::Deny)
    {
        return widen("network.rules (only action = \"deny\" rules may be added here)");
    }
    if !n.rule_presets.is_empty() {
        return widen("network.rule_presets");
    }
    if !c.presets.use_.is_empty() {
        return widen("presets.use");
    }
    if !c.credentials.is_empty() {
        return widen("credentials");
    }
    if !c.tls.extra_roots.is_empty() {
        return widen("tls.extra_roots");
    }
    if !c.filesystem.read_only.is_empty() {
        return widen("filesystem.read_only");
    }
    if !c.filesystem.read_write.is_empty() {
        return widen("filesystem.read_write");
    }
    if !c.env.pass.is_empty() {
        return widen("env.pass");
    }
    if !c.env.set.is_empty() {
        return widen("env.set");
    }
    // Telemetry sends the session's events off the machine and opens a route to the collector:
    // only a file the user trusts may configure it.
    if c.telemetry != TelemetryConfig::default() {
        return widen("telemetry");
    }
    if c.notify.command.is_some() {
        return widen("notify.command");
    }
    if c.notify.webhook.is_some() {
        return widen("notify.webhook");
    }
    if c.approvals.mode == Some(ApprovalMode::Ask) {
        return widen("approvals.mode");
    }
    // A key the user types for other reasons would answer held requests unintended.
    if c.approvals.key.is_some() {
        return widen("approvals.key");
    }
    if c.notify.desktop == Some(true) && current.notify.desktop == Some(false) {
        return widen("notify.desktop");
    }
    if c.approvals.timeout_secs.unwrap_or(0)
        > current
            .approvals
            .timeout_secs
            .unwrap_or(APPROVAL_TIMEOUT_DEFAULT)
    {
        return widen("approvals.timeout_secs");
    }
    if c.terminal.allow_clipboard == Some(true) && !current.terminal.allow_clipboard {
        return widen("terminal.allow_clipboard");
    }
    if c.container.runtime.is_some() {
        return widen("container.runtime");
    }
    if c.container.image.is_some() {
        return widen("container.image");
    }
    if let Some(key) = c.fly.first_key() {
        return widen(key);
    }
    if let Some(key) = c.k8s.first_key_set() {
        return widen(key);
    }
    if let Some(key) = c
        .git
        .push
        .as_ref()
        .and_then(|g| current.git_push.widened_by(g))
    {
        return widen(key);
    }
    let lim = &current.limits;
    let raises = |new: Option<u64>, old: Option<u64>| match (new, old) {
        (Some(n), Some(o)) => n > o,
        (Some(_), None) => false,
        (None, _) => false,
    };
    let mem = c.limits.memory.as_deref().and_then(|m| parse_size(m).ok());
    if raises(mem, lim.memory_bytes) {
        return widen("limits.memory");
    }
    if raises(c.limits.pids, lim.pids) {
        return widen("limits.pids");
    }
    if let (Some(n), Some(o)) = (c.limits.cpus, lim.cpus) {
        if n > o {
            return widen("limits.cpus");
        }
    }
    let tmp = c
        .limits
        .tmp_size
        .as_deref()
        .and_then(|m| parse_size(m).ok());
    if raises(tmp, Some(lim.tmp_bytes)) {
        return widen("limits.tmp_size");
    }
    let home = c
        .limits
        .home_size
        .as_deref()
        .and_then(|m| parse_size(m).ok());
    if raises(home, Some(lim.home_bytes)) {
        return widen("limits.home_size");
    }
    // [commands] from an untrusted file is handed to the gate, which only accepts rules that
    // narrow (deny/ask) from such a source.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(text: &str, trusted: bool) -> Layer {
        let source = PathBuf::from("/repo/policy.toml");
        Layer {
            config: ConfigFile::parse(&source, text).expect("parse"),
            source,
            trusted,
        }
    }

    #[test]
    fn approvals_are_off_by_default_bounded_and_only_a_trusted_layer_turns_them_on() {
        let p = Policy::from_layers(&[]).expect("policy");
        assert_eq!(p.approvals.mode, None);
        let ask = "[approvals]\nmode = \"ask\"\ntimeout_secs = 5\n";
        let p = Policy::from_layers(&[layer(ask, true)]).expect("trusted");
        assert_eq!(p.approvals.mode, Some(ApprovalMode::Ask));
        assert_eq!(p.approvals.timeout_secs, Some(5));
        let e = Policy::from_layers(&[layer(ask, false)]).expect_err("untrusted ask");
        assert!(e.to_string().contains("approvals.mode"), "{e}");
        let longer = "[approvals]\ntimeout_secs = 300\n";
        let e = Policy::from_layers(&[layer(longer, false)]).expect_err("untrusted longer");
        assert!(e.to_string().contains("approvals.timeout_secs"), "{e}");
        let off = "[approvals]\nmode = \"off\"\n";
        let p = Policy::from_layers(&[layer(ask, true), layer(off, false)]).expect("narrowing");
        assert_eq!(p.approvals.mode, Some(ApprovalMode::Off));
        for bad in [
            "timeout_secs = 0",
            "timeout_secs = 601",
            "mode = \"yes\"",
            "when = 1",
        ] {
            let text = format!("[approvals]\n{bad}\n");
            assert!(
                ConfigFile::parse(Path::new("x.toml"), &text).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn notify_is_checked_and_only_a_trusted_layer_sets_where_it_goes() {
        let ok = "[notify]\ncommand = [\"notify-send\", \"airlock\"]\n\
                  webhook = \"https://ntfy.sh/x\"\nevents = [\"finished\", \"blocked\"]\n";
        let p = Policy::from_layers(&[layer(ok, true)]).expect("trusted");
        assert_eq!(p.notify.webhook.as_deref(), Some("https://ntfy.sh/x"));
        for (text, key) in [
            ("[notify]\ncommand = [\"sh\"]\n", "notify.command"),
            (
                "[notify]\nwebhook = \"http://127.0.0.1:1/\"\n",
                "notify.webhook",
            ),
        ] {
            let e = Policy::from_layers(&[layer(text, false)]).expect_err("untrusted");
            assert!(e.to_string().contains(key), "{e}");
        }
        // Narrowing which events are sent is fine anywhere.
        let events = "[notify]\nevents = [\"failed\"]\n";
        Policy::from_layers(&[layer(ok, true), layer(events, false)]).expect("events only");
        for bad in [
            "command = []",
            "command = [\"\"]",
            "webhook = \"ftp://x\"",
            "webhook = \"https://\"",
            "webhook = \"x.test\"",
            "events = [\"exploded\"]",
        ] {
            let text = format!("[notify]\n{bad}\n");
            assert!(
                ConfigFile::parse(Path::new("x.toml"), &text).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_approval_key_is_a_control_key_the_terminal_does_not_need() {
        assert_eq!(approval_key(APPROVAL_KEY_DEFAULT), Ok(Some(0x1d)));
        assert_eq!(approval_key("C-a"), Ok(Some(0x01)));
        assert_eq!(approval_key("C-G"), Ok(Some(0x07)));
        assert_eq!(approval_key("C-_"), Ok(Some(0x1f)));
        assert_eq!(approval_key("none"), Ok(None));
        for bad in [
            "", "C-", "C-ab", "]", "^]", "M-x", "c-a", "C-1", "C- ", "C-é", "C-c", "C-C", "C-d",
            "C-z", "C-\\", "C-h", "C-i", "C-j", "C-m", "C-q", "C-s", "C-[", "Ctrl-]",
        ] {
            let e = approval_key(bad).expect_err(bad);
            assert!(e.contains(bad) && e.contains("C-"), "{bad}: {e}");
        }
        let text = "[approvals]\nkey = \"C-c\"\n";
        let e = ConfigFile::parse(Path::new("x.toml"), text).expect_err("C-c");
        assert!(e.to_string().contains("approvals.key"), "{e}");
        // Only a trusted layer may choose it: a key typed for other reasons would answer.
        let key = "[approvals]\nkey = \"C-a\"\n";
        let p = Policy::from_layers(&[layer(key, true)]).expect("trusted");
        assert_eq!(p.approvals.key.as_deref(), Some("C-a"));
        let e = Policy::from_layers(&[layer(key, false)]).expect_err("untrusted key");
        assert!(e.to_string().contains("approvals.key"), "{e}");
        // Desktop notifications: a workspace file may turn them off, not back on.
        let off = "[notify]\ndesktop = false\n";
        let on = "[notify]\ndesktop = true\n";
        let p = Policy::from_layers(&[layer(off, false)]).expect("off");
        assert_eq!(p.notify.desktop, Some(false));
        let e = Policy::from_layers(&[layer(off, true), layer(on, false)]).expect_err("on again");
        assert!(e.to_string().contains("notify.desktop"), "{e}");
        Policy::from_layers(&[layer(on, false)]).expect("on by default anyway");
    }

    #[test]
    fn terminal_clipboard_is_off_by_default_and_only_a_trusted_layer_turns_it_on() {
        let p = Policy::from_layers(&[]).expect("merge");
        assert!(!p.terminal.allow_clipboard);
        let on = "[terminal]\nallow_clipboard = true\n";
        let p = Policy::from_layers(&[layer(on, true)]).expect("merge");
        assert!(p.terminal.allow_clipboard);
        let e = Policy::from_layers(&[layer(on, false)]).expect_err("widening");
        assert!(e.to_string().contains("terminal.allow_clipboard"), "{e}");
        // An untrusted layer may turn it off.
        let off = "[terminal]\nallow_clipboard = false\n";
        let p = Policy::from_layers(&[layer(on, true), layer(off, false)]).expect("merge");
        assert!(!p.terminal.allow_clipboard);
        assert!(ConfigFile::parse(Path::new("x.toml"), "[terminal]\nclipboard = 1\n").is_err());
    }

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
[network]
allow = ["api.anthropic.com", "*.githubusercontent.com"]
deny = ["gist.github.com"]
allow_private = []
[network.resolve]
"api.example.test" = "127.0.0.1"

[[credentials]]
name = "anthropic"
env = "ANTHROPIC_API_KEY"
hosts = ["api.anthropic.com"]

[filesystem]
hide = ["~/.ssh", "~/.aws"]
read_only = []
read_write = []

[env]
pass = ["TERM", "LANG"]
set = { EDITOR = "vi" }

[limits]
memory = "4G"
pids = 1024
cpus = 2.0
"#;
        let p = Policy::from_layers(&[layer(text, true)]).expect("merge");
        assert_eq!(p.network.allow.len(), 2);
        assert_eq!(p.network.resolve["api.example.test"], "127.0.0.1");
        assert_eq!(p.limits.memory_bytes, Some(4 << 30));
        assert_eq!(p.limits.pids, Some(1024));
        assert_eq!(p.env_set["EDITOR"], "vi");
        assert!(p.passes_env("LC_ALL"));
        assert!(p.passes_env("TERM"));
        assert!(!p.passes_env("AWS_SECRET_ACCESS_KEY"));
        assert!(p.hide.iter().any(|h| h == "~/.ssh"));
    }

    #[test]
    fn errors_name_file_and_key() {
        let path = PathBuf::from("/x/p.toml");
        let e = ConfigFile::parse(&path, "[limits]\nmemory = \"lots\"\n").expect_err("bad");
        let msg = e.to_string();
        assert!(
            msg.contains("/x/p.toml") && msg.contains("limits.memory"),
            "{msg}"
        );
        let e = ConfigFile::parse(&path, "[netwrk]\nallow=[]\n").expect_err("typo");
        assert!(e.to_string().contains("netwrk"), "{e}");
        let e = ConfigFile::parse(&path, "[[credentials]]\nname='x'\nhosts=['a']\n")
            .expect_err("no source");
        assert!(e.to_string().contains("exactly one"), "{e}");
    }

    #[test]
    fn limits_too_small_to_start_a_sandbox_are_refused_with_file_and_key() {
        let path = PathBuf::from("/x/p.toml");
        for (text, key) in [
            ("memory = \"1\"", "limits.memory"),
            ("memory = \"15M\"", "limits.memory"),
            ("memory = \"0\"", "limits.memory"),
            ("pids = 0", "limits.pids"),
            ("pids = 1", "limits.pids"),
            ("pids = 7", "limits.pids"),
            ("cpus = 0.0", "limits.cpus"),
            ("cpus = -1.0", "limits.cpus"),
            ("cpus = nan", "limits.cpus"),
        ] {
            let e = ConfigFile::parse(&path, &format!("[limits]\n{text}\n")).expect_err(text);
            let msg = e.to_string();
            assert!(
                msg.contains("/x/p.toml") && msg.contains(key),
                "{text}: {msg}"
            );
        }
        for text in [
            "memory = \"16M\"",
            "pids = 8",
            "cpus = 0.1",
            "memory = \"4G\"",
        ] {
            ConfigFile::parse(&path, &format!("[limits]\n{text}\n")).expect(text);
        }
    }

    #[test]
    fn credential_errors_name_the_credential_and_the_key() {
        let path = PathBuf::from("/x/p.toml");
        for (text, want) in [
            ("name='gh'\nenv='A'\nfile='/f'\nhosts=['a.test']", "exactly one"),
            ("name='gh'\nenv='A B'\nhosts=['a.test']", "env: 'A B'"),
            ("name='gh'\nenv='A'\nhosts=['*.com']", "hosts[0]"),
            ("name='gh'\nenv='A'\nhosts=['a.test', 'bad host']", "hosts[1]"),
            ("name='gh'\nenv='A'\nhosts=[]", "hosts"),
            (
                "name='gh'\njson={file='/f', pointer='a/b'}\nhosts=['a.test']",
                "json.pointer",
            ),
            (
                "name='gh'\nenv='A'\nhosts=['a.test']\ninject={header='x y', value='{}'}",
                "inject.header",
            ),
            (
                "name='gh'\nenv='A'\nhosts=['a.test']\ninject={header='authorization', value='Bearer'}",
                "inject.value",
            ),
            (
                "name='gh'\nenv='A'\nhosts=['a.test']\nheaders=['x-ok', 'x y']",
                "headers[1]: 'x y'",
            ),
            ("name='gh'\nenv='A'\nhosts=['a.test']\nheaders=['']", "headers[0]"),
            ("name='gh'\nenv='A'\nhosts=['a.test']\nheaders=['Host']", "headers[0]: 'Host'"),
        ] {
            let e = ConfigFile::parse(&path, &format!("[[credentials]]\n{text}\n"))
                .expect_err(text);
            let msg = e.to_string();
            assert!(
                msg.contains("credentials[0] (gh)") && msg.contains(want) && msg.contains("/x/p.toml"),
                "{text}: {msg}"
            );
        }
        let ok = ConfigFile::parse(
            &path,
            "[[credentials]]\nname='c'\njson={file='~/.claude/.credentials.json', pointer='/claudeAiOauth/accessToken'}\n\
             hosts=['api.anthropic.com']\ninject={header='authorization', value='Bearer {}'}\n\
             [tls]\nextra_roots=['/etc/corp/ca.pem']\n",
        )
        .expect("valid");
        assert_eq!(ok.tls.extra_roots, vec!["/etc/corp/ca.pem"]);
        let e = Policy::from_layers(&[Layer {
            source: path.clone(),
            trusted: false,
            config: ConfigFile::parse(&path, "[tls]\nextra_roots=['/tmp/evil.pem']\n")
                .expect("parse"),
        }])
        .expect_err("an untrusted layer may not add roots");
        assert!(e.to_string().contains("tls.extra_roots"), "{e}");
    }

    /// `[k8s]` from trusted layers, the last one winning per key; bad values are named.
    #[test]
    fn k8s_settings_layer_and_validate() {
        let p = Policy::from_layers(&[
            layer(
                "[k8s]\nnamespace='agents'\ncontext='a'\nruntime_class='gvisor'\nhome_size='2G'\n",
                true,
            ),
            layer("[k8s]\ncontext='b'\nsandbox='never'\n", true),
        ])
        .expect("layers");
        assert_eq!(p.k8s.namespace.as_deref(), Some("agents"));
        assert_eq!(p.k8s.context.as_deref(), Some("b"));
        assert_eq!(p.k8s.runtime_class.as_deref(), Some("gvisor"));
        assert_eq!(p.k8s.home_size.as_deref(), Some("2G"));
        assert_eq!(p.k8s.sandbox.as_deref(), Some("never"));
        let path = Path::new("/x/p.toml");
        for (bad, key) in [
            ("[k8s]\nfoo='x'\n", "foo"),
            ("[k8s]\nsandbox='sometimes'\n", "k8s.sandbox"),
            ("[k8s]\nnamespace='Agents'\n", "k8s.namespace"),
            ("[k8s]\nnamespace='-a'\n", "k8s.namespace"),
            ("[k8s]\nnamespace=''\n", "k8s.namespace"),
            ("[k8s]\nruntime_class='g visor'\n", "k8s.runtime_class"),
            ("[k8s]\nservice_account='a..b'\n", "k8s.service_account"),
            ("[k8s]\nworkspace_size='lots'\n", "k8s.workspace_size"),
            ("[k8s]\nimage=' '\n", "k8s.image"),
        ] {
            let e = ConfigFile::parse(path, bad).expect_err(bad).to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    /// `[container]` from trusted layers, the last one winning per key.
    #[test]
    fn container_settings_layer() {
        let p = Policy::from_layers(&[
            layer("[container]\nruntime='crun'\nimage='a'\n", true),
            layer("[container]\nimage='b'\n", true),
        ])
        .expect("trusted");
        assert_eq!(p.container.runtime.as_deref(), Some("crun"));
        assert_eq!(p.container.image.as_deref(), Some("b"));
        assert!(ConfigFile::parse(Path::new("x"), "[container]\nengine='x'\n").is_err());
    }

    /// `[fly]` from trusted layers, the last one winning per key; unknown keys refused.
    #[test]
    fn fly_settings_layer() {
        let p = Policy::from_layers(&[
            layer("[fly]\napp='a'\nregion='ams'\nmode='standby'\n", true),
            layer("[fly]\napp='b'\nmemory_mb=4096\n", true),
        ])
        .expect("trusted");
        assert_eq!(p.fly.app.as_deref(), Some("b"));
        assert_eq!(p.fly.region.as_deref(), Some("ams"));
        assert_eq!(p.fly.mode, Some(FlyMode::Standby));
        assert_eq!(p.fly.memory_mb, Some(4096));
        assert!(ConfigFile::parse(Path::new("x"), "[fly]\ntoken='x'\n").is_err());
        assert!(ConfigFile::parse(Path::new("x"), "[fly]\nmode='forever'\n").is_err());
    }

    #[test]
    fn untrusted_layer_may_narrow_but_not_widen() {
        let ok = layer(
            "[network]\ndeny=['evil.com']\n[limits]\nmemory='1G'\n[filesystem]\nhide=['/opt/secret']\n",
            false,
        );
        let p = Policy::from_layers(&[ok]).expect("narrowing is fine");
        assert_eq!(p.limits.memory_bytes, Some(1 << 30));
        for bad in [
            "[network]\nallow=['evil.com']\n",
            "[env]\npass=['AWS_SECRET_ACCESS_KEY']\n",
            "[filesystem]\nread_write=['/']\n",
            "[limits]\nmemory='100G'\n",
            "[[credentials]]\nname='x'\nenv='X'\nhosts=['evil.com']\n",
            "[container]\nimage='evil/root:latest'\n",
            "[container]\nruntime='runc'\n",
            "[fly]\napp='attacker-app'\n",
            "[fly]\napi_url='https://evil.example'\n",
            "[fly]\nimage='registry.fly.io/x:evil'\n",
            "[fly]\nmemory_mb=65536\n",
            "[fly]\nmode='standby'\n",
            "[k8s]\ncontext='attacker'\n",
            "[k8s]\nimage='evil/root:latest'\n",
            "[k8s]\nruntime_class='runc'\n",
            "[k8s]\nservice_account='cluster-admin'\n",
            "[k8s]\nnamespace='kube-system'\n",
            "[k8s]\nsandbox='never'\n",
            "[k8s]\nworkspace_size='1T'\n",
        ] {
            let e = Policy::from_layers(&[layer(bad, false)]).expect_err(bad);
            assert!(matches!(e, PolicyError::Widening { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("--trust-policy"), "{e}");
        }
        // The same file trusted is accepted.
        Policy::from_layers(&[layer("[network]\nallow=['evil.com']\n", true)]).expect("trusted");
    }

    #[test]
    fn wildcard_names_max_is_validated_and_only_lowered_by_untrusted_files() {
        let path = PathBuf::from("/x/p.toml");
        for bad in ["0", "100001"] {
            let e = ConfigFile::parse(&path, &format!("[network]\nwildcard_names_max = {bad}\n"))
                .expect_err(bad);
            let msg = e.to_string();
            assert!(
                msg.contains("/x/p.toml") && msg.contains("network.wildcard_names_max"),
                "{msg}"
            );
        }
        let e = ConfigFile::parse(&path, "[network]\nwildcard_names_max = -1\n").expect_err("neg");
        assert!(e.to_string().contains("wildcard_names_max"), "{e}");
        let lower = layer("[network]\nwildcard_names_max = 8\n", false);
        let p = Policy::from_layers(&[lower]).expect("lowering is narrowing");
        assert_eq!(p.network.wildcard_names_max, Some(8));
        let raise = layer("[network]\nwildcard_names_max = 65\n", false);
        let e = Policy::from_layers(&[raise]).expect_err("raising widens");
        assert!(e.to_string().contains("network.wildcard_names_max"), "{e}");
        // Raising is judged against what the trusted layers set.
        let trusted = layer("[network]\nwildcard_names_max = 500\n", true);
        let untrusted = layer("[network]\nwildcard_names_max = 100\n", false);
        let p = Policy::from_layers(&[trusted, untrusted]).expect("still lower");
        assert_eq!(p.network.wildcard_names_max, Some(100));
    }

    #[test]
    fn lists_add_up_and_later_scalars_win() {
        let a = layer("[network]\nallow=['a.com']\n[limits]\npids=10\n", true);
        let b = layer(
            "[network]\nallow=['b.com','a.com']\n[limits]\npids=20\n",
            true,
        );
        let p = Policy::from_layers(&[a, b]).expect("merge");
        assert_eq!(p.network.allow, vec!["a.com", "b.com"]);
        assert_eq!(p.limits.pids, Some(20));
    }
}
