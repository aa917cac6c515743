//! Finding the cluster as kubectl does: the kubeconfig files of `KUBECONFIG` (merged) or
//! `~/.kube/config`, its current context or the one asked for, and the in-cluster service
//! account when there is no kubeconfig (airlock run from a pod).

use std::path::PathBuf;

use airlock_remote::RemoteError;
use kube::config::{Config, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::Client;

use crate::ENGINE;

/// The context name a [`crate::Location`] records for the in-cluster configuration.
pub const IN_CLUSTER: &str = "in-cluster";

/// A client for one context, with where it points.
#[derive(Clone)]
pub(crate) struct Conn {
    /// For ordinary calls, with kube-rs's timeouts.
    pub(crate) client: Client,
    /// For the streams (exec, attach, logs): no read or write timeout, since `ctl wait` and an
    /// idle terminal are silent for as long as the agent works (kube-rs's default read timeout
    /// of 295 s would cut them).
    pub(crate) streams: Client,
    /// The context's name ([`IN_CLUSTER`] for the service account).
    pub(crate) context: String,
    /// The namespace the context (or the service account) defaults to.
    pub(crate) default_namespace: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("context", &self.context)
            .field("default_namespace", &self.default_namespace)
            .finish_non_exhaustive()
    }
}

/// Where a context was found, from the files and the environment only (no cluster).
enum Located {
    /// A kubeconfig and the context's name in it.
    File(Box<Kubeconfig>, String),
    /// The pod's service account (no kubeconfig, and `KUBERNETES_SERVICE_HOST` and its token
    /// are there, or [`IN_CLUSTER`] was asked for).
    InCluster,
}

/// Finds `context` (the kubeconfig's current one when `None`) in `kubeconfig` (when `None`:
/// `KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account), reading files
/// only.
fn locate(kubeconfig: Option<&PathBuf>, context: Option<&str>) -> Result<Located, RemoteError> {
    if context == Some(IN_CLUSTER) {
        return Ok(Located::InCluster);
    }
    let file = match kubeconfig {
        Some(p) if !p.exists() => Ok(None),
        Some(p) => Kubeconfig::read_from(p).map(Some),
        None => match Kubeconfig::read() {
            Ok(k) => Ok(Some(k)),
            // No file at all: maybe we run in a pod.
            Err(KubeconfigError::FindPath) => Ok(None),
            Err(KubeconfigError::ReadConfig(e, _)) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        },
    }
    .map_err(|e| RemoteError::Engine {
        engine: ENGINE,
        message: format!(
            "cannot read the kubeconfig ({}): {}; fix the file or point KUBECONFIG at a \
             valid one",
            where_(kubeconfig),
            crate::error::chain(&e)
        ),
    })?;
    let Some(file) = file else {
        if context.is_none() && kubeconfig.is_none() && Config::incluster().is_ok() {
            return Ok(Located::InCluster);
        }
        return Err(RemoteError::Engine {
            engine: ENGINE,
            message: format!(
                "no kubeconfig ({}) and not inside a cluster: point KUBECONFIG at your \
                 cluster's kubeconfig (or write ~/.kube/config, e.g. with your provider's \
                 `get-credentials` command)",
                where_(kubeconfig)
            ),
        });
    };
    let name = match context {
        Some(c) => c.to_string(),
        None => file
            .current_context
            .clone()
            .ok_or_else(|| RemoteError::Engine {
                engine: ENGINE,
                message: format!(
                    "the kubeconfig ({}) has no current context: pass --context NAME, set [k8s] \
                 context, or run kubectl config use-context NAME",
                    where_(kubeconfig)
                ),
            })?,
    };
    let known: Vec<&str> = file.contexts.iter().map(|c| c.name.as_str()).collect();
    if !known.contains(&name.as_str()) {
        return Err(RemoteError::Engine {
            engine: ENGINE,
            message: format!(
                "no context '{name}' in the kubeconfig ({}); it has: {}; pass one of them with \
                 --context or [k8s] context",
                where_(kubeconfig),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        });
    }
    Ok(Located::File(Box::new(file), name))
}

/// Connects to `context` (the kubeconfig's current one when `None`), reading `kubeconfig`
/// (when `None`: `KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account).
pub(crate) async fn connect(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
) -> Result<Conn, RemoteError> {
    let (file, name) = match locate(kubeconfig, context)? {
        Located::InCluster => return in_cluster(),
        Located::File(file, name) => (file, name),
    };
    let opts = KubeConfigOptions {
        context: Some(name.clone()),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(*file, &opts)
        .await
        .map_err(|e| RemoteError::Engine {
            engine: ENGINE,
            message: format!(
                "context '{name}' of the kubeconfig ({}) is not usable: {}",
                where_(kubeconfig),
                crate::error::chain(&e)
            ),
        })?;
    client(config, name)
}

/// What `airlock doctor` says about the cluster `--backend k8s` would use: the context and
/// its server, from the kubeconfig (or the in-cluster service account), read from files and
/// the environment only: no request is made, so nothing can hang.
///
/// # Errors
/// What `connect` would refuse before contacting the cluster: no kubeconfig and not in a
/// pod, an unreadable file, no current context, an unknown context; each with its fix.
pub fn find_context(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
) -> Result<String, RemoteError> {
    match locate(kubeconfig, context)? {
        Located::InCluster => Ok("the in-cluster service account (airlock runs in a pod)".into()),
        Located::File(file, name) => {
            let cluster = file
                .contexts
                .iter()
                .find(|c| c.name == name)
                .and_then(|c| c.context.as_ref())
                .map(|c| c.cluster.clone())
                .unwrap_or_default();
            let server = file
                .clusters
                .iter()
                .find(|c| c.name == cluster)
                .and_then(|c| c.cluster.as_ref())
                .and_then(|c| c.server.clone())
                .unwrap_or_else(|| "no server".into());
            Ok(format!(
                "context '{name}' (cluster {cluster} at {server}) in {}",
                where_(kubeconfig)
            ))
        }
    }
}

/// The namespace `context` (the current one when `None`) of the kubeconfig names, read from
/// the file only (no cluster, no credentials): what `--dry-run` shows when no namespace is
/// given. `None` when there is no kubeconfig, no such context, or it names no namespace.
pub(crate) fn context_namespace(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
) -> Option<String> {
    let file = match kubeconfig {
        Some(p) => Kubeconfig::read_from(p).ok()?,
        None => Kubeconfig::read().ok()?,
    };
    let name = context
        .map(str::to_string)
        .or_else(|| file.current_context.clone())?;
    file.contexts
        .into_iter()
        .find(|c| c.name == name)?
        .context?
        .namespace
}

fn in_cluster() -> Result<Conn, RemoteError> {
    let config = Config::incluster().map_err(|e| RemoteError::Engine {
        engine: ENGINE,
        message: format!(
            "the in-cluster configuration is not usable: {}; outside a pod, use a kubeconfig",
            crate::error::chain(&e)
        ),
    })?;
    client(config, IN_CLUSTER.to_string())
}

fn client(config: Config, context: String) -> Result<Conn, RemoteError> {
    let default_namespace = config.default_namespace.clone();
    let build = |config: Config| {
        Client::try_from(config).map_err(|e| RemoteError::Engine {
            engine: ENGINE,
            message: format!(
                "cannot build a client for context '{context}': {}",
                crate::error::chain(&e)
            ),
        })
    };
    let mut quiet = config.clone();
    quiet.read_timeout = None;
    quiet.write_timeout = None;
    Ok(Conn {
        client: build(config)?,
        streams: build(quiet)?,
        context,
        default_namespace,
    })
}

fn where_(kubeconfig: Option<&PathBuf>) -> String {
    match kubeconfig {
        Some(p) => p.display().to_string(),
        None => match std::env::var_os("KUBECONFIG") {
            Some(v) => format!("KUBECONFIG={}", v.to_string_lossy()),
            None => "~/.kube/config".to_string(),
        },
    }
}
