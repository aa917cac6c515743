//! airlock's Kubernetes engine (`--backend k8s`): one box per session, run by kube-rs against
//! the cluster kubectl would use (docs/k8s.md).
//!
//! A box is three resources labelled with the session: a NetworkPolicy (egress to the cluster DNS and
//! 80/443 of public addresses only, no ingress), a Secret with the supervisor's credentials (mounted only into
//! the supervisor, at [`airlock_remote::layout::SECRETS_DIR`]), and a Pod that runs
//! `airlock serve` under the Pod Security Standard "restricted" profile, or an agent-sandbox
//! `Sandbox` wrapping that pod when the cluster serves the CRD ([`sandbox`]). The Secret and
//! NetworkPolicy are owned by the pod (or Sandbox), so the cluster's garbage collector removes
//! them with it; `delete` also removes each by label.
//!
//! The local `airlock` reaches the box only through the API: `pods/exec` (websocket) for the
//! control verbs and attach, `pods/log` for logs. Nothing listens in the box.
//!
//! - [`manifest`]: the resources from k8s-openapi types, and their YAML (`--dry-run`);
//! - [`pss`]: the Pod Security Standards checker the tests run every manifest through;
//! - [`K8sEngine`]: [`airlock_remote::Engine`] over kube-rs.
#![forbid(unsafe_code)]

mod connect;
mod error;
mod exec;
pub mod manifest;
mod ops;
pub mod pss;
pub mod sandbox;

use std::path::PathBuf;
use std::time::Duration;

use airlock_remote::{BoxRequest, Engine, ExecInput, ExecStream, Location, RemoteError, TtyExec};

pub use connect::{find_context, IN_CLUSTER};
pub use manifest::{PodSettings, SandboxMode, VolumeSizes};

/// The engine's name, as `--backend` spells it and every error starts.
pub const ENGINE: &str = "k8s";

/// The namespace used when neither the options nor the kubeconfig's context name one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// How [`K8sEngine`] finds the cluster and shapes the box (from `--context`, `--namespace` and
/// `[k8s]`).
#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// The kubeconfig context (`--context`, `[k8s] context`); `None`: the kubeconfig's
    /// current context, or the in-cluster service account when there is no kubeconfig.
    pub context: Option<String>,
    /// The namespace (`--namespace`, `[k8s] namespace`); `None`: the context's namespace, else
    /// [`DEFAULT_NAMESPACE`].
    pub namespace: Option<String>,
    /// A kubeconfig file to read instead of `KUBECONFIG` / `~/.kube/config` (tests).
    pub kubeconfig: Option<PathBuf>,
    /// Pod-level settings (`runtime_class`, `service_account`, `seccomp_profile`, volume
    /// sizes, Pod or Sandbox).
    pub pod: PodSettings,
    /// How long `create` waits for the pod to run and `airlock serve` to answer.
    pub start_timeout: Duration,
    /// How often `create` looks at the pod while waiting.
    pub poll_interval: Duration,
}

impl K8sOptions {
    /// The options of `[k8s]` (`config`, already validated by the policy loader), with the
    /// `--context` and `--namespace` flags over its keys; the timeouts are the defaults. The
    /// image is not here: it travels in the [`BoxRequest`] (`--image`, else `[k8s] image`).
    ///
    /// # Errors
    /// [`RemoteError::Invalid`] naming the `[k8s]` key whose value is bad (when `config` did
    /// not come through the loader), or a flag that is not a namespace name.
    pub fn from_config(
        config: &airlock_policy::K8sConfig,
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Self, RemoteError> {
        let mut config = config.clone();
        if let Some(c) = context {
            config.context = Some(c.to_string());
        }
        if let Some(n) = namespace {
            config.namespace = Some(n.to_string());
        }
        config.validate().map_err(|(key, message)| {
            let name = match key {
                "context" if context.is_some() => "--context".to_string(),
                "namespace" if namespace.is_some() => "--namespace".to_string(),
                k => format!("[k8s] {k}"),
            };
            RemoteError::Invalid(format!("k8s: {name}: {message}"))
        })?;
        let size = |v: &Option<String>, default: u64| -> Result<u64, RemoteError> {
            match v {
                None => Ok(default),
                Some(s) => airlock_policy::size::parse_size(s)
                    .map_err(|e| RemoteError::Invalid(format!("k8s: size '{s}': {e}"))),
            }
        };
        let d = VolumeSizes::default();
        let sandbox = match config.sandbox.as_deref() {
            Some("always") => SandboxMode::Always,
            Some("never") => SandboxMode::Never,
            _ => SandboxMode::Auto,
        };
        Ok(K8sOptions {
            context: config.context,
            namespace: config.namespace,
            pod: PodSettings {
                runtime_class: config.runtime_class,
                service_account: config.service_account,
                seccomp_localhost: config.seccomp_profile,
                sizes: VolumeSizes {
                    home: size(&config.home_size, d.home)?,
                    tmp: size(&config.tmp_size, d.tmp)?,
                    workspace: size(&config.workspace_size, d.workspace)?,
                    state: size(&config.state_size, d.state)?,
                },
                sandbox,
            },
            ..K8sOptions::default()
        })
    }
}

impl Default for K8sOptions {
    fn default() -> Self {
        K8sOptions {
            context: None,
            namespace: None,
            kubeconfig: None,
            pod: PodSettings::default(),
            start_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
        }
    }
}

/// The Kubernetes engine. Its calls block, running on a runtime of its own (from a thread of
/// their own, so they may be called from inside another async runtime); the relay tasks of
/// [`Engine::exec_tty`] run on it too, so keep the engine alive while a terminal is attached.
#[derive(Debug)]
pub struct K8sEngine {
    options: K8sOptions,
    runtime: tokio::runtime::Runtime,
}

impl K8sEngine {
    /// An engine with `options`. Lazy: it reads no kubeconfig and contacts no cluster until a
    /// call needs one ([`Engine::render`] never does).
    ///
    /// # Errors
    /// [`RemoteError::Engine`] when the runtime's threads cannot be started.
    pub fn new(options: K8sOptions) -> Result<Self, RemoteError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("airlock-k8s")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Engine {
                engine: ENGINE,
                message: format!("cannot start the client's runtime: {e}"),
            })?;
        Ok(K8sEngine { options, runtime })
    }

    /// The options the engine was made with.
    pub fn options(&self) -> &K8sOptions {
        &self.options
    }

    /// Runs `f` to completion on the engine's runtime, from a thread of its own, so a caller
    /// that is itself inside an async runtime (where `block_on` would panic) can call too.
    fn block<F>(&self, f: F) -> Result<F::Output, RemoteError>
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| self.runtime.block_on(f))
                .join()
                .map_err(|_| RemoteError::Engine {
                    engine: ENGINE,
                    message: "the client's thread panicked".into(),
                })
        })
    }
}

/// A parsed [`Location`]: `k8s:CONTEXT/NAMESPACE/POD` (the context may itself contain `/`,
/// as EKS's ARNs do, so the last two components are the namespace and the pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLocation {
    /// The kubeconfig context ([`IN_CLUSTER`] for the service account).
    pub context: String,
    /// The namespace.
    pub namespace: String,
    /// The pod (and, for a Sandbox, the Sandbox's) name.
    pub pod: String,
}

impl PodLocation {
    /// Parses `at`.
    ///
    /// # Errors
    /// [`RemoteError::Invalid`] when `at` is not `k8s:CONTEXT/NAMESPACE/POD`.
    pub fn parse(at: &str) -> Result<Self, RemoteError> {
        let bad = || {
            RemoteError::Invalid(format!(
                "k8s: '{at}' is not a Kubernetes location (k8s:CONTEXT/NAMESPACE/POD)"
            ))
        };
        let rest = at.strip_prefix("k8s:").ok_or_else(bad)?;
        let mut parts = rest.rsplitn(3, '/');
        let pod = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        let namespace = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        let context = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        Ok(PodLocation {
            context: context.to_string(),
            namespace: namespace.to_string(),
            pod: pod.to_string(),
        })
    }
}

impl std::fmt::Display for PodLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "k8s:{}/{}/{}", self.context, self.namespace, self.pod)
    }
}

impl Engine for K8sEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    /// The YAML of the NetworkPolicy, Secret (values redacted) and Pod (a Sandbox only when
    /// `[k8s] sandbox = "always"`: without a cluster, `auto` cannot ask), in the namespace
    /// `create` would use: the options', else the context's when a kubeconfig is there to read
    /// (it is not required), else `default`.
    fn render(&self, req: &BoxRequest) -> Result<String, RemoteError> {
        let ns = self
            .options
            .namespace
            .clone()
            .or_else(|| {
                connect::context_namespace(
                    self.options.kubeconfig.as_ref(),
                    self.options.context.as_deref(),
                )
            })
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let sandbox = self.options.pod.sandbox == SandboxMode::Always;
        let m = manifest::build(req, &ns, &self.options.pod, sandbox)?;
        manifest::render_yaml(&m)
    }

    fn create(&mut self, req: &BoxRequest) -> Result<Location, RemoteError> {
        let at = self.block(ops::create(&self.options, req))??;
        Ok(at.to_string())
    }

    fn exec_stream(
        &self,
        at: &Location,
        argv: &[String],
        stdin: ExecInput,
    ) -> Result<ExecStream, RemoteError> {
        let at = PodLocation::parse(at)?;
        self.block(async {
            let conn =
                connect::connect(self.options.kubeconfig.as_ref(), Some(&at.context)).await?;
            exec::exec_stream(&conn, &at.namespace, &at.pod, argv, stdin).await
        })?
    }

    fn exec_tty(
        &self,
        at: &Location,
        argv: &[String],
        cols: u16,
        rows: u16,
    ) -> Result<TtyExec, RemoteError> {
        let at = PodLocation::parse(at)?;
        self.block(async {
            let conn =
                connect::connect(self.options.kubeconfig.as_ref(), Some(&at.context)).await?;
            exec::exec_tty(&conn, &at.namespace, &at.pod, argv, cols, rows).await
        })?
    }

    fn logs(&self, at: &Location, max: u64) -> Result<Vec<u8>, RemoteError> {
        let at = PodLocation::parse(at)?;
        self.block(async {
            let conn =
                connect::connect(self.options.kubeconfig.as_ref(), Some(&at.context)).await?;
            exec::logs(&conn, &at.namespace, &at.pod, max).await
        })?
    }

    fn delete(&self, at: &Location) -> Result<(), RemoteError> {
        let at = PodLocation::parse(at)?;
        self.block(async {
            let conn =
                connect::connect(self.options.kubeconfig.as_ref(), Some(&at.context)).await?;
            ops::delete_session(&conn, &at.namespace, &at.pod).await
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_the_config_with_the_flags_on_top() {
        let config = airlock_policy::K8sConfig {
            namespace: Some("agents".into()),
            context: Some("staging".into()),
            runtime_class: Some("gvisor".into()),
            sandbox: Some("never".into()),
            workspace_size: Some("20G".into()),
            ..Default::default()
        };
        let o = K8sOptions::from_config(&config, Some("prod"), None).expect("options");
        assert_eq!(o.context.as_deref(), Some("prod"));
        assert_eq!(o.namespace.as_deref(), Some("agents"));
        assert_eq!(o.pod.runtime_class.as_deref(), Some("gvisor"));
        assert_eq!(o.pod.sandbox, SandboxMode::Never);
        assert_eq!(o.pod.sizes.workspace, 20 << 30);
        assert_eq!(o.pod.sizes.home, VolumeSizes::default().home);
        let e = K8sOptions::from_config(&config, None, Some("Bad_NS"))
            .expect_err("bad namespace")
            .to_string();
        assert!(e.contains("--namespace") && e.contains("Bad_NS"), "{e}");
        let e = K8sOptions::from_config(&config, Some(" "), None)
            .expect_err("empty context")
            .to_string();
        assert!(e.contains("--context"), "{e}");
    }

    #[test]
    fn locations_parse_with_slashes_in_the_context() {
        let l =
            PodLocation::parse("k8s:arn:aws:eks:eu-west-1:1:cluster/prod/agents/airlock-0a1b2c3d")
                .expect("parse");
        assert_eq!(l.context, "arn:aws:eks:eu-west-1:1:cluster/prod");
        assert_eq!(l.namespace, "agents");
        assert_eq!(l.pod, "airlock-0a1b2c3d");
        assert_eq!(
            l.to_string(),
            "k8s:arn:aws:eks:eu-west-1:1:cluster/prod/agents/airlock-0a1b2c3d"
        );
        for bad in [
            "fly:a/b",
            "k8s:",
            "k8s:a/b",
            "k8s:/ns/pod",
            "k8s:ctx//pod",
            "k8s:ctx/ns/",
        ] {
            assert!(PodLocation::parse(bad).is_err(), "{bad}");
        }
    }
}
