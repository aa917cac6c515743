//! Command-line arguments (clap). Only types live here; `commands/` acts on them.
//!
//! The doc comments here are the `--help` text, where `[commands]` or `[tls]` names a table of
//! the TOML config, not an item: rustdoc's link check does not apply.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run AI coding agents in a sandbox they cannot get out of.
///
/// airlock gives the agent a private view of your repository, a network that reaches only
/// allowlisted hosts, credentials it can use but never read, and a gate in front of its shell.
#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Log verbosity (error, warn, info, debug, trace); also AIRLOCK_LOG.
    #[arg(long, global = true, env = "AIRLOCK_LOG", default_value = "warn")]
    pub(crate) log: String,
    /// Print logs as JSON lines.
    #[arg(long, global = true)]
    pub(crate) log_json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a command (default: an interactive shell) in a new sandbox.
    ///
    /// Examples:
    ///   airlock run -- cargo test
    ///   airlock run --allow-domain crates.io --allow-domain '*.crates.io' -- cargo build
    ///   airlock run --mode bind --memory 2G --pids 256 -- sh -c 'make -j4'
    ///   airlock run --agent claude
    ///   airlock run --agent claude --prompt "fix the failing test"
    ///
    /// The exit status is the command's; airlock's own failures exit with 125, a command that
    /// cannot be executed with 126, and a command that is not found with 127.
    #[command(verbatim_doc_comment)]
    Run(Box<RunArgs>),
    /// The supervisor as the first process of a remote box (a pod, a Fly Machine, a container).
    ///
    /// Not for your terminal: an engine (`airlock run --backend k8s|fly|podman-box`) starts it
    /// in the box with the session's BoxSpec in AIRLOCK_BOX_SPEC and the credentials as files
    /// in /run/airlock/secrets (readable by it only). It waits for the workspace (`ctl
    /// receive`), then runs the agent as a local `airlock run --detach` would: native sandbox as
    /// the user `airlock`, overlay workspace, egress proxy, DNS filter, credential swap, audit
    /// log, tmux. The local airlock drives it only through the engine's exec API:
    ///
    ///   airlock serve ctl status     the session's state (JSON)
    ///   airlock serve ctl receive    the workspace as a tar stream on stdin
    ///   airlock serve ctl attach     tmux attach (on a terminal)
    ///   airlock serve ctl wait       block until the command exits, then its status (JSON)
    ///   airlock serve ctl stop       SIGTERM to the command
    ///   airlock serve ctl audit      the audit log (JSON lines)
    ///   airlock serve ctl logs       the command's terminal output
    ///   airlock serve ctl export     the changes (overlay upper layer) as a tar stream
    ///
    /// Any error before the command starts leaves it unstarted and the status `failed` with the
    /// reason. The box stays up after the command exits until the changes were exported (or
    /// --linger seconds passed). See docs/remote.md.
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Check what this host supports and what each missing piece costs.
    Doctor(DoctorArgs),
    /// Try to break out of the sandbox on this host: the escape battery.
    Selftest(SelftestArgs),
    /// List sessions, newest first: running ones and those with unmerged changes (--all: every
    /// session).
    Ls(LsArgs),
    /// Remove ended sessions that hold no unmerged changes, and say what that freed.
    ///
    /// Examples:
    ///   airlock prune
    ///   airlock prune --older-than 7d
    ///   airlock prune --dry-run --json
    #[command(verbatim_doc_comment)]
    Prune(PruneArgs),
    /// Show what a session's agent changed: files as a unified diff, and new commits (a worktree
    /// session: what in its kept worktree would run on the host).
    Diff(SessionArgs),
    /// Land a session's changes in the real workspace.
    ///
    /// File changes are applied to the working tree; new commits are fetched into the branch
    /// airlock/NAME. Refused: changes conflicting with edits made on the host during the session,
    /// and, in the files or in any of the commits, unless allowed: files that execute on the
    /// host (--allow-exec-files: git directories at any depth, .envrc, .vscode/, .cargo/config,
    /// .npmrc, *.pth, .github/workflows, ...; docs/sessions.md has the table), links leading
    /// outside the workspace (--allow-outside-links), files diff cannot show in full: binary,
    /// over 4 MiB, not UTF-8 (--allow-unshown-files).
    Merge(MergeArgs),
    /// Delete a session and its data (refuses unmerged changes without --force).
    Rm(RmArgs),
    /// Host caches shared with sessions (`--preset`): promote what a session downloaded.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// airlock's default image for --backend podman|docker: build it ahead, or see its state.
    ///
    /// Without --image, `airlock run --backend podman|docker` runs the command in
    /// localhost/airlock-default:HASH, a slim Debian (bookworm) with git, curl, ca-certificates,
    /// Node.js, npm, Claude Code and Codex at pinned versions, built from a Containerfile inside
    /// airlock. HASH covers every input (the Containerfile, the pinned versions, the base
    /// image's name), so a new airlock release with a new recipe builds a new image and an
    /// unchanged one reuses it. The first run builds it (minutes, once; progress on stderr);
    /// `airlock image build` does it ahead, e.g. in a machine's setup.
    ///
    /// The base is docker.io/library/debian:bookworm-slim (or AIRLOCK_IMAGE_BASE, e.g. a
    /// registry mirror's copy). Where no registry can be reached, airlock makes the base with
    /// `debootstrap --variant=minbase bookworm` from your host's Debian mirror (install
    /// debootstrap: apt-get install debootstrap). The build uses the host's network for apt
    /// and npm; sessions on the image never get one (--network none).
    ///
    /// Examples:
    ///   airlock image status                  is the default image there? which tag?
    ///   airlock image build                   build it now for Podman (nothing if present)
    ///   airlock image build --backend docker  the same for Docker
    ///   airlock image status --json | jq .tag
    ///   airlock run --backend podman --image my/image:tag -- make    your own image instead
    #[command(subcommand, verbatim_doc_comment)]
    Image(ImageCommand),
    /// Stop a running session: SIGTERM to its command, SIGKILL after --timeout seconds.
    Stop(StopArgs),
    /// Attach your terminal to a --detach session (detach again with tmux's prefix, then d).
    Attach(AttachArgs),
    /// Print a session's output (a --detach session's agent pane, and airlock's own messages).
    Logs(LogsArgs),
    /// Show a session's audit log: every network and command decision.
    ///
    /// Without ID, the most recent session. Examples:
    ///   airlock audit --denied
    ///   airlock audit 3f2a --json | jq .
    #[command(verbatim_doc_comment)]
    Audit(AuditArgs),
    /// List the credentials a session here would use: source, hosts, presence; never a secret.
    ///
    /// The agent only ever sees a placeholder; airlock's proxy swaps it for the secret on the
    /// way to the credential's hosts. Examples:
    ///   airlock creds
    ///   airlock creds --json | jq .
    #[command(verbatim_doc_comment)]
    Creds(CredsArgs),
    /// List the requests running sessions hold for your answer (`[approvals] mode = "ask"`).
    Approvals(ApprovalsArgs),
    /// Allow a request a running session holds: `airlock approve ID [N|HOST[:PORT]]`.
    Approve(ApproveArgs),
    /// Refuse a request a running session holds: `airlock deny ID [N|HOST[:PORT]]`.
    Deny(DenyArgs),
    /// Agent hooks (the command gate).
    #[command(subcommand)]
    Hook(HookCommand),
    /// The policy: what is in force and where it came from, checks, explanations, suggestions.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print shell completions: airlock completions bash|zsh|fish > FILE.
    ///
    /// Examples:
    ///   airlock completions bash > ~/.local/share/bash-completion/completions/airlock
    ///   airlock completions zsh > ~/.zfunc/_airlock
    ///   airlock completions fish > ~/.config/fish/completions/airlock.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per subcommand with --out DIR.
    Man(ManArgs),
    /// Internal: the sandbox's init stage. Not for direct use.
    #[command(name = "__sandbox-init", hide = true)]
    SandboxInit,
    /// Internal: pid 1 of a container of the container backend. Not for direct use.
    #[command(name = "__container-init", hide = true)]
    ContainerInit {
        /// The supervisor's control socket, bind-mounted into the container.
        socket: std::path::PathBuf,
        /// Keep the network listeners inside and relay their connections to the supervisor's
        /// unix sockets next to SOCKET (a runtime whose sockets cannot be handed out: gVisor).
        #[arg(long)]
        relay: bool,
    },
    /// Internal: one escape probe run inside the sandbox by `selftest`. Not for direct use.
    #[command(name = "__probe", hide = true)]
    Probe {
        /// Probe name.
        name: String,
        /// Probe arguments.
        args: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Overlay the workspace: the agent's writes go to a per-session layer; review them with
    /// `airlock diff`, land them with `airlock merge`.
    Overlay,
    /// A git worktree per session on a new branch airlock/NAME (removed on exit when clean,
    /// kept when it has changes). The main repository's config and hooks stay read-only.
    Worktree,
    /// The workspace directory itself, read-write.
    Bind,
}

/// What runs the sandbox. Only backends this build can run are offered; each is added here with
/// its `airlock_sandbox::Backend` implementation (`crate::backends`) and its stored name
/// (`airlock_session::BackendKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    /// Namespaces, seccomp, Landlock and cgroups on this kernel; no daemon.
    Native,
    /// A Docker container (Docker Engine API: DOCKER_HOST or /var/run/docker.sock).
    Docker,
    /// A Podman container (its API socket, or a private `podman system service`).
    Podman,
    /// A Kubernetes pod running `airlock serve` (remote; docs/remote.md).
    K8s,
    /// A Fly Machine running `airlock serve` (remote; docs/remote.md).
    Fly,
    /// A local Podman container running `airlock serve`: the whole supervisor in the box, as
    /// on a remote engine (docs/remote.md).
    PodmanBox,
}

impl From<Backend> for airlock_session::BackendKind {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Native => airlock_session::BackendKind::Native,
            Backend::Docker => airlock_session::BackendKind::Docker,
            Backend::Podman => airlock_session::BackendKind::Podman,
            Backend::K8s => airlock_session::BackendKind::K8s,
            Backend::Fly => airlock_session::BackendKind::Fly,
            Backend::PodmanBox => airlock_session::BackendKind::PodmanBox,
        }
    }
}

impl From<Mode> for airlock_session::SessionMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Overlay => airlock_session::SessionMode::Overlay,
            Mode::Worktree => airlock_session::SessionMode::Worktree,
            Mode::Bind => airlock_session::SessionMode::Bind,
        }
    }
}

impl From<Agent> for airlock_session::AgentKind {
    fn from(a: Agent) -> Self {
        match a {
            Agent::Claude => airlock_session::AgentKind::Claude,
            Agent::Codex => airlock_session::AgentKind::Codex,
            Agent::Gemini => airlock_session::AgentKind::Gemini,
            Agent::Shell => airlock_session::AgentKind::Shell,
        }
    }
}

/// `--fly-mode`, as `[fly] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FlyMode {
    /// Destroyed when the session ends (`auto_destroy`).
    Ephemeral,
    /// Stopped when the session ends, kept until `airlock rm`.
    Standby,
}

impl From<FlyMode> for airlock_policy::config::FlyMode {
    fn from(m: FlyMode) -> Self {
        match m {
            FlyMode::Ephemeral => airlock_policy::config::FlyMode::Ephemeral,
            FlyMode::Standby => airlock_policy::config::FlyMode::Standby,
        }
    }
}

impl RunArgs {
    /// The flags the Fly engine takes ([`airlock_remote::fly::FlyOptions::resolve`] merges them
    /// over `[fly]`).
    // Read by the fly arm of the engine factory (backends.rs), wired after the remote
    // pipeline lands; the unit test below reads it meanwhile.
    #[allow(dead_code)]
    pub(crate) fn fly_flags(&self) -> airlock_remote::fly::FlyFlags {
        airlock_remote::fly::FlyFlags {
            app: self.fly_app.clone(),
            region: self.fly_region.clone(),
            mode: self.fly_mode.map(Into::into),
            image: self.image.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Agent {
    /// Claude Code: managed settings with the command gate as its PreToolUse hook.
    Claude,
    /// OpenAI Codex CLI.
    Codex,
    /// Gemini CLI.
    Gemini,
    /// Your shell, or the command after `--`.
    Shell,
}

/// The policy set on the command line, shared by `run` and `policy show`: the last, highest
/// layer over the policy files ([`PolicyFlags::layer`]).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PolicyFlags {
    /// Allow egress to a host name or `*.suffix` pattern (repeatable).
    #[arg(long = "allow-domain", value_name = "PATTERN")]
    pub(crate) allow_domains: Vec<String>,
    /// Allow an ecosystem's registry hosts (repeatable): rust, node, python, go, java.
    #[arg(long = "preset", value_name = "NAME")]
    pub(crate) presets: Vec<String>,
    /// Memory limit for the whole sandbox, e.g. 4G.
    #[arg(long, value_name = "SIZE")]
    pub(crate) memory: Option<String>,
    /// CPU limit in cores, e.g. 1.5.
    #[arg(long, value_name = "N")]
    pub(crate) cpus: Option<f64>,
    /// Process limit.
    #[arg(long, value_name = "N")]
    pub(crate) pids: Option<u64>,
    /// Pass a host environment variable into the sandbox (repeatable).
    #[arg(long = "env-pass", value_name = "NAME")]
    pub(crate) env_pass: Vec<String>,
    /// Set an environment variable in the sandbox (repeatable), NAME=VALUE.
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    pub(crate) env_set: Vec<String>,
}

impl PolicyFlags {
    /// The policy layer these flags make (`--allow-domain` → `network.allow`, `--preset` →
    /// `presets.use`, `--memory`/`--pids`/`--cpus` → `limits`, `--env-pass`/`--env` → `env`).
    ///
    /// # Errors
    /// An `--env` value without `=`; a `--memory`, `--pids` or `--cpus` out of range.
    pub(crate) fn layer(&self) -> anyhow::Result<airlock_policy::ConfigFile> {
        use airlock_policy::{ConfigFile, EnvConfig, LimitsConfig, NetworkConfig};
        let mut set = std::collections::BTreeMap::new();
        for kv in &self.env_set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--env {kv}: expected NAME=VALUE"))?;
            set.insert(k.to_string(), v.to_string());
        }
        let limits = LimitsConfig {
            memory: self.memory.clone(),
            pids: self.pids,
            cpus: self.cpus,
            ..LimitsConfig::default()
        };
        if let Err((key, message)) = limits.validate() {
            let flag = Self::name_of(&format!("limits.{key}"));
            anyhow::bail!("{flag}: {message}");
        }
        Ok(ConfigFile {
            network: NetworkConfig {
                allow: self.allow_domains.clone(),
                ..NetworkConfig::default()
            },
            env: EnvConfig {
                pass: self.env_pass.clone(),
                set,
            },
            limits,
            presets: airlock_policy::config::PresetsConfig {
                use_: self.presets.clone(),
            },
            ..ConfigFile::default()
        })
    }

    /// The flag that sets a flags-layer key (`network.allow` → `--allow-domain`).
    pub(crate) fn name_of(key: &str) -> &'static str {
        match key {
            "network.allow" => "--allow-domain",
            k if k.starts_with("presets") => "--preset",
            "env.pass" => "--env-pass",
            k if k.starts_with("env.set.") => "--env",
            "limits.memory" => "--memory",
            "limits.pids" => "--pids",
            "limits.cpus" => "--cpus",
            _ => "a flag",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The directory the agent works in (default: the current directory).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub(crate) workspace: Option<PathBuf>,
    /// How the workspace is presented to the sandbox.
    #[arg(long, value_enum, default_value = "overlay")]
    pub(crate) mode: Mode,
    /// Policy file(s) to layer over ~/.config/airlock/config.toml, in order.
    #[arg(long = "policy", value_name = "FILE")]
    pub(crate) policies: Vec<PathBuf>,
    /// Accept a policy file inside the workspace even where it widens the policy.
    #[arg(long = "trust-policy", value_name = "FILE")]
    pub(crate) trust_policies: Vec<PathBuf>,
    /// The policy set on the command line (`--allow-domain`, `--preset`, limits, environment).
    #[command(flatten)]
    pub(crate) flags: PolicyFlags,
    /// Agent profile.
    #[arg(long, value_enum, default_value = "shell")]
    pub(crate) agent: Agent,
    /// Where the sandbox runs.
    #[arg(long, value_enum, default_value = "native")]
    pub(crate) backend: Backend,
    /// OCI runtime of the container backends: runc, crun, runsc (gVisor: rootful Podman,
    /// --mode bind, no --pids; a relay inside carries egress, docs/containers.md) or kata
    /// (refused) (default: the engine's; `airlock doctor` lists those installed and usable).
    #[arg(long, value_name = "RUNTIME", env = "AIRLOCK_RUNTIME")]
    pub(crate) runtime: Option<String>,
    /// Image of the container backends (it must be in the engine's local store), of the pod
    /// with --backend k8s (required: `[k8s] image`, holding airlock and the agent's CLI), or of
    /// the Fly machine with --backend fly (default `[fly] image`, else
    /// registry.fly.io/APP:airlock-VERSION).
    #[arg(long, value_name = "IMAGE", env = "AIRLOCK_IMAGE")]
    pub(crate) image: Option<String>,
    /// With --backend fly: the Fly app the machine is created in (default `[fly] app`; it must
    /// exist: `fly apps create NAME`).
    #[arg(long, value_name = "APP", env = "FLY_APP")]
    pub(crate) fly_app: Option<String>,
    /// With --backend fly: the region (`fly platform regions`; default `[fly] region`, else the
    /// API's choice).
    #[arg(long, value_name = "REGION")]
    pub(crate) fly_region: Option<String>,
    /// With --backend fly: `ephemeral` (the machine is destroyed when the session ends) or
    /// `standby` (it stops and is kept until `airlock rm`); default `[fly] mode`, else ephemeral.
    #[arg(long, value_enum, value_name = "MODE")]
    pub(crate) fly_mode: Option<FlyMode>,
    /// Kubernetes namespace of `--backend k8s` (default: `[k8s] namespace`, else the
    /// context's, else `default`).
    #[arg(long, value_name = "NAMESPACE")]
    pub(crate) namespace: Option<String>,
    /// kubeconfig context of `--backend k8s` (default: `[k8s] context`, else the current one).
    #[arg(long, value_name = "CONTEXT")]
    pub(crate) context: Option<String>,
    /// Remote backends: the box's workspace is `git clone URL` (checked out detached at REF:
    /// a branch, tag or commit; default the remote's default branch) instead of an upload of
    /// the local tree. `airlock serve` clones in the box through the session's egress proxy:
    /// HOST must be allowed by the policy, and a `[[credentials]]` entry whose hosts cover it
    /// (`github`'s default covers github.com) is swapped in by the proxy, so the token is never
    /// in the box's environment, files or `.git/config`. https only (no token in the URL: use a
    /// credential). The results land as for a local session (`airlock diff`/`merge`) when the
    /// workspace (the current directory, or --workspace) is a clone of the same URL checked
    /// out at the cloned commit. Example: `--clone https://github.com/me/app.git#main`.
    #[arg(long, value_name = "URL[#REF]")]
    pub(crate) clone: Option<String>,
    /// With --clone: the most the clone may take on disk in the box (`500M`, `8G`; default
    /// 4G); over it the clone is stopped and the session fails naming the bound.
    #[arg(long, value_name = "SIZE", requires = "clone")]
    pub(crate) clone_max_size: Option<String>,
    /// Start the session in the background: the command runs in a tmux session inside the
    /// sandbox (top pane; a shell in the workspace below); `airlock attach` joins it.
    #[arg(long)]
    pub(crate) detach: bool,
    /// Session name (usable wherever a session id is): not empty, not all hex digits (ids are
    /// 8 hex digits), no `/`, whitespace or control characters.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Remove the session when it ends, unless it holds unmerged changes (then it is kept and
    /// airlock says so).
    #[arg(long, conflicts_with = "detach")]
    pub(crate) rm: bool,
    /// With --rm: remove the session even when it holds unmerged changes (they are lost).
    #[arg(long, requires = "rm")]
    pub(crate) discard_changes: bool,
    /// Internal: this process is the background supervisor of a --detach session.
    #[arg(long, hide = true, value_name = "ID")]
    pub(crate) detached_child: Option<String>,
    /// Internal (`airlock serve`): the merged policy as JSON, used instead of the policy files.
    #[arg(long, hide = true, value_name = "FILE")]
    pub(crate) box_policy: Option<PathBuf>,
    /// Remote backends: keep the box after the command exits (default: deleted once its
    /// changes are home).
    #[arg(long)]
    pub(crate) keep: bool,
    /// Print what would be set up (native and container backends: the sandbox spec as JSON;
    /// remote backends: the engine's resources) and exit; creates nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Run the agent headless on this prompt (Claude Code: `claude -p`, Codex: `codex exec`),
    /// stream its output and exit with its status.
    #[arg(long, value_name = "TEXT", conflicts_with = "prompt_file")]
    pub(crate) prompt: Option<String>,
    /// Like --prompt, with the prompt read from a file (before anything starts).
    #[arg(long, value_name = "FILE")]
    pub(crate) prompt_file: Option<PathBuf>,
    /// The command and its arguments (default: your shell, interactive).
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The control socket.
    #[arg(long, value_name = "PATH", default_value = airlock_remote::layout::CONTROL_SOCKET)]
    pub(crate) socket: PathBuf,
    /// Seconds the box stays up after the command exited while its changes were not exported.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub(crate) linger: u64,
    /// Seconds to wait for the workspace upload before failing.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub(crate) upload_timeout: u64,
    #[command(subcommand)]
    pub(crate) ctl: Option<ServeCommand>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServeCommand {
    /// Talk to the box's supervisor: status, receive, attach, wait, stop, audit, logs, export.
    Ctl {
        /// The verb.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(airlock_remote::ctl::ALL))]
        verb: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write airlock.1 and airlock-SUBCOMMAND.1 pages into this directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SelftestArgs {
    /// Print results as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Run only the checks whose name contains this text.
    #[arg(long)]
    pub(crate) only: Option<String>,
    /// The backend whose sandbox is tried.
    #[arg(long, value_enum, default_value = "native")]
    pub(crate) backend: Backend,
    /// OCI runtime, with a container backend (as `airlock run --runtime`).
    #[arg(long, value_name = "RUNTIME")]
    pub(crate) runtime: Option<String>,
    /// Image, with a container backend (as `airlock run --image`).
    #[arg(long, value_name = "IMAGE")]
    pub(crate) image: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Every session, ended ones without unmerged changes included.
    #[arg(long, short = 'a')]
    pub(crate) all: bool,
    /// One JSON array of sessions (each with its `unmerged` counts), newest first.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Only sessions started longer ago than this: a number and s, m, h, d or w (e.g. 7d).
    #[arg(long, value_name = "AGE")]
    pub(crate) older_than: Option<String>,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print what was removed as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SessionArgs {
    /// Session id, unique id prefix, or name.
    pub(crate) id: String,
    /// Print the changes as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// Session id, unique id prefix, or name.
    pub(crate) id: String,
    /// Also land files that execute on the host (git hooks and config, .envrc, ...).
    #[arg(long)]
    pub(crate) allow_exec_files: bool,
    /// Also land symbolic links whose target leaves the workspace.
    #[arg(long)]
    pub(crate) allow_outside_links: bool,
    /// Also land files `airlock diff` cannot show in full (binary, over 4 MiB, not UTF-8).
    #[arg(long)]
    pub(crate) allow_unshown_files: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Build the default image unless the engine has it already (--rebuild: build it anyway).
    Build(ImageArgs),
    /// Say whether the engine has the default image, its tag, its base, and older tags.
    Status(ImageArgs),
}

/// The engine `airlock image` works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ImageEngine {
    /// Podman (its CLI; rootless as a user, rootful as root).
    Podman,
    /// Docker (its CLI; DOCKER_HOST is honoured).
    Docker,
}

#[derive(Debug, Args)]
pub(crate) struct ImageArgs {
    /// The engine whose image store is used.
    #[arg(long, value_enum, default_value = "podman")]
    pub(crate) backend: ImageEngine,
    /// Print the result as JSON (tag, present, base, engine, stale tags).
    #[arg(long)]
    pub(crate) json: bool,
    /// With build: build even when the image is there (the engine replaces the tag).
    #[arg(long)]
    pub(crate) rebuild: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Copy what a finished session downloaded into your host caches, if it verifies.
    ///
    /// A session run with --preset sees your caches (~/.cargo, ~/.npm, ~/.cache/pip, ...)
    /// read-only; what it downloads stays in its own layer. promote copies from those layers
    /// only package files whose bytes match the digest the registry itself publishes, read
    /// from your host's registry index or fetched from the registry over verified HTTPS, never
    /// from anything the agent could write (its index copy, Cargo.lock, package-lock.json):
    ///   cargo  registry/cache/*/NAME-VERSION.crate against the index's cksum (SHA-256)
    ///   npm    _cacache content blobs against the packument's dist.integrity (SHA-512)
    ///   pip    HTTP-cache bodies against the index's sha256, under the key of that file's URL
    ///          (airlock writes pip's cache record itself; locally built wheels stay)
    ///   maven  ~/.m2 jars and poms against the repository's .sha512/.sha256/.sha1
    ///   go     module .zip/.mod against the h1: the checksum database records (GOSUMDB, default
    ///          sum.golang.org; GOPRIVATE/GONOSUMDB modules are refused), never a go.sum,
    ///          which any session may have written
    ///   uv     nothing: its unpacked wheels cannot be checked against the index
    /// Everything else (indexes, unpacked sources, links, special files, anything that does
    /// not match) stays behind and is listed with the reason. Existing files are never
    /// replaced. Registries follow your ~/.cargo/config.toml (source replacement,
    /// [registries] with sparse+https:// indexes), ~/.npmrc (registry=), pip's index-url and
    /// ~/.m2/settings.xml mirrors, GOSUMDB (environment or `go env -w`); [tls] extra_roots of your airlock config are trusted for
    /// them. With --json an error is a JSON object too. Exit status 0 when it ran
    /// (refused files are listed and counted); 125 for an unknown or running session or one
    /// without cache layers.
    ///
    /// Examples:
    ///   airlock cache promote 3f2a --dry-run
    ///   airlock cache promote build-1 --json | jq '.entries[] | select(.outcome == "refused")'
    #[command(verbatim_doc_comment)]
    Promote(PromoteArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// Session id, unique id prefix, or name (the session must have finished).
    pub(crate) id: String,
    /// Verify and say what would be promoted; write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print the outcome of every file as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Session id, unique id prefix, or name.
    pub(crate) id: String,
    /// Delete even unmerged changes, or a session that is still running.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// Session id, unique id prefix, or name.
    pub(crate) id: String,
    /// Seconds to wait for a session that is still starting.
    #[arg(long, default_value_t = 30)]
    pub(crate) wait: u64,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Session id, unique id prefix, or name.
    pub(crate) id: String,
    /// Keep printing new output until the session ends.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// A remote session: print its box's own log (what `airlock serve` wrote, through the
    /// engine's log API: `kubectl logs`, Fly's logs route, `podman logs`) instead of the
    /// command's output; at most 16 MiB of it.
    #[arg(long = "box", conflicts_with = "follow")]
    pub(crate) box_log: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// Session id, unique id prefix, or name.
    pub(crate) id: String,
    /// Seconds to wait after SIGTERM before killing the sandbox.
    #[arg(long, default_value_t = 10)]
    pub(crate) timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Session id, unique id prefix, or name (default: the most recent session).
    pub(crate) id: Option<String>,
    /// Only refusals.
    #[arg(long)]
    pub(crate) denied: bool,
    /// One JSON object per line, as stored.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CredsArgs {
    /// Policy file(s) to layer over ~/.config/airlock/config.toml, as for `run`.
    #[arg(long = "policy", value_name = "FILE")]
    pub(crate) policies: Vec<std::path::PathBuf>,
    /// Accept a policy file inside the current directory even where it widens the policy.
    #[arg(long = "trust-policy", value_name = "FILE")]
    pub(crate) trust_policies: Vec<std::path::PathBuf>,
    /// One JSON object per credential and line.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HookCommand {
    /// Claude Code PreToolUse hook: reads the hook JSON on stdin, prints the decision JSON.
    Claude(HookArgs),
    /// Codex PreToolUse hook: the same protocol; ask and review become deny (Codex runs
    /// without approvals inside airlock).
    Codex(HookArgs),
    /// Claude Code Notification and Stop hook: passes the event to the session's
    /// notifications ([notify]); never blocks, always exits 0.
    #[command(name = "claude-event")]
    ClaudeEvent,
}

#[derive(Debug, Default, Args)]
pub(crate) struct HookArgs {
    /// Policy file(s) with [commands] rules, layered over the defaults.
    #[arg(long = "policy", value_name = "FILE")]
    pub(crate) policies: Vec<PathBuf>,
    /// Audit log to append decisions to (default: $AIRLOCK_AUDIT_LOG, else the user's log).
    #[arg(long, value_name = "FILE")]
    pub(crate) audit_log: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Print the effective policy for a workspace and where each value came from: built-in,
    /// the user's config, which --policy file, which flag, a credential's hosts.
    ///
    /// Examples:
    ///   airlock policy show
    ///   airlock policy show --policy ci.toml --allow-domain crates.io --json | jq .
    #[command(verbatim_doc_comment)]
    Show(PolicyShowArgs),
    /// Validate a policy file; an error names its line (FILE:LINE: key: what is wrong).
    Check(PolicyCheckArgs),
    /// Show how a command is parsed, which rule decides each part, and the final decision.
    Explain(ExplainArgs),
    /// Re-read a running session's policy files (same as sending its airlock SIGHUP).
    /// Established connections are kept; new ones follow the new policy.
    Reload {
        /// Session id, unique id prefix, or name (default: the most recent session).
        id: Option<String>,
    },
    /// Print the smallest policy change that would have allowed what a session was refused on
    /// the network (from its audit log), as commented TOML. Nothing is applied.
    Suggest(SuggestArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ApprovalsArgs {
    /// Print the held requests as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// Session id, unique id prefix, or name.
    pub(crate) id: String,
    /// The held request: its number (`airlock approvals`), HOST (every port held) or
    /// HOST:PORT; may be left out when the session holds only one.
    pub(crate) host: Option<String>,
    /// How long: the requests held now, this session, or also later sessions of this project
    /// (written to your per-project policy file, never inside the workspace).
    #[arg(long = "for", value_enum, default_value = "once")]
    pub(crate) scope: crate::approvals::Scope,
}

#[derive(Debug, Args)]
pub(crate) struct DenyArgs {
    /// Session id, unique id prefix, or name.
    pub(crate) id: String,
    /// The held request: its number (`airlock approvals`), HOST (every port held) or
    /// HOST:PORT; may be left out when the session holds only one.
    pub(crate) host: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SuggestArgs {
    /// Session id, unique id prefix, or name (default: the most recent session).
    pub(crate) id: Option<String>,
    /// Group two or more names that share a registrable domain (Public Suffix List) under
    /// one `*.domain` entry.
    #[arg(long)]
    pub(crate) wildcards: bool,
    /// Write the TOML to this new file (outside the workspace) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) write: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyShowArgs {
    /// The workspace the policy is for (default: the current directory); policy files inside
    /// it may only narrow.
    #[arg(long, short = 'w', value_name = "DIR")]
    pub(crate) workspace: Option<PathBuf>,
    /// Policy file(s) to layer over ~/.config/airlock/config.toml, as for `run`.
    #[arg(long = "policy", value_name = "FILE")]
    pub(crate) policies: Vec<PathBuf>,
    /// Accept a policy file inside the workspace even where it widens the policy.
    #[arg(long = "trust-policy", value_name = "FILE")]
    pub(crate) trust_policies: Vec<PathBuf>,
    /// The policy flags, as for `run`.
    #[command(flatten)]
    pub(crate) flags: PolicyFlags,
    /// Print `{"values": [{key, value, source}...], "policy": {...}}`.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyCheckArgs {
    /// The policy file.
    pub(crate) file: PathBuf,
    /// Print the result as JSON (errors still go to stderr, with exit status 1).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// Print the explanation as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Policy file(s) with [commands] rules.
    #[arg(long = "policy", value_name = "FILE")]
    pub(crate) policies: Vec<PathBuf>,
    /// Workspace the command runs in (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub(crate) cwd: Option<PathBuf>,
    /// The command, as words or as one shell string.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

#[cfg(test)]
mod fly_flag_tests {
    use super::*;
    use clap::Parser;

    /// `--fly-app`, `--fly-region`, `--fly-mode` and `--image` reach the Fly engine's flags.
    #[test]
    fn fly_flags_parse() {
        let cli = Cli::try_parse_from([
            "airlock",
            "run",
            "--fly-app",
            "my-app",
            "--fly-region",
            "ams",
            "--fly-mode",
            "standby",
            "--image",
            "registry.fly.io/my-app:t",
        ])
        .expect("parse");
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        let f = args.fly_flags();
        assert_eq!(f.app.as_deref(), Some("my-app"));
        assert_eq!(f.region.as_deref(), Some("ams"));
        assert_eq!(f.mode, Some(airlock_policy::config::FlyMode::Standby));
        assert_eq!(f.image.as_deref(), Some("registry.fly.io/my-app:t"));
        assert!(Cli::try_parse_from(["airlock", "run", "--fly-mode", "forever"]).is_err());
    }
}
