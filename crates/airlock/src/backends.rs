//! The backends this build can run, by their stored kind: the one place that maps a
//! [`BackendKind`] (from `--backend` or a session's row) to its [`Backend`] implementation, or,
//! for a remote kind, to its [`airlock_remote::Engine`] ([`engine`]).
//! `airlock run` launches through it; `stop`, `rm`, `diff` and `merge` reach a session's backend
//! through it when they need what only the backend knows (leftovers of a dead supervisor, a
//! change layer kept remotely).

use airlock_container::{ContainerBackend, ContainerSettings, EngineKind, Runtime};
use airlock_sandbox::{Backend, SessionRef};
use airlock_session::{BackendKind, SessionRow};
use anyhow::{anyhow, Result};

/// What the container backends need beyond their kind (`--runtime`, `--image`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub(crate) runtime: Option<String>,
    pub(crate) image: Option<String>,
}

/// A new backend of `kind`, for one `airlock run` or one session command.
///
/// # Errors
/// An unknown `--runtime`, or a `--runtime`/`--image` given to the native backend (callers pass
/// only the flags, or their `AIRLOCK_RUNTIME`/`AIRLOCK_IMAGE` variables, for it: a policy's
/// `[container]` values are for the container backends and the native one ignores them).
pub(crate) fn new(kind: BackendKind, opts: &Options) -> Result<Box<dyn Backend>> {
    let engine = match kind {
        BackendKind::Native => {
            let flags = [
                ("--runtime", "AIRLOCK_RUNTIME", &opts.runtime),
                ("--image", "AIRLOCK_IMAGE", &opts.image),
            ];
            if let Some((flag, env, Some(v))) = flags.into_iter().find(|f| f.2.is_some()) {
                return Err(anyhow!(
                    "{flag} {v} (or {env}) is for the container backends; add --backend podman \
                     or --backend docker, or drop it"
                ));
            }
            return Ok(Box::new(airlock_sandbox::Native::default()));
        }
        BackendKind::Docker => EngineKind::Docker,
        BackendKind::Podman => EngineKind::Podman,
        BackendKind::K8s | BackendKind::Fly | BackendKind::PodmanBox => {
            return Err(anyhow!(
                "the {kind} backend runs a box through its engine, not a local sandbox"
            ))
        }
    };
    let runtime = match &opts.runtime {
        None => None,
        Some(r) => Some(Runtime::parse(r).ok_or_else(|| {
            anyhow!("unknown --runtime {r}: expected runc, crun, runsc (gVisor) or kata")
        })?),
    };
    Ok(Box::new(ContainerBackend::new(ContainerSettings {
        kind: engine,
        runtime,
        // None: airlock's default image, built at launch when the engine lacks it.
        image: opts.image.clone(),
    })))
}

/// What a remote engine needs besides its kind.
#[derive(Debug, Clone, Default)]
pub(crate) struct EngineOptions {
    /// Connect now (every use but `--dry-run`, whose `render` needs no engine).
    pub(crate) connect: bool,
    /// `[k8s]` of a trusted layer (a workspace file may not set it).
    pub(crate) k8s: airlock_policy::config::K8sConfig,
    /// `--context`, over `[k8s] context`.
    pub(crate) context: Option<String>,
    /// `--namespace`, over `[k8s] namespace`.
    pub(crate) namespace: Option<String>,
    /// `[fly]` of a trusted layer.
    pub(crate) fly: airlock_policy::config::FlyConfig,
    /// `--fly-app`, `--fly-region`, `--fly-mode`, `--image`, over `[fly]`.
    pub(crate) fly_flags: airlock_remote::fly::FlyFlags,
}

impl EngineOptions {
    /// For `airlock run`: its merged policy and its flags.
    pub(crate) fn for_run(args: &crate::cli::RunArgs, policy: &airlock_policy::Policy) -> Self {
        EngineOptions {
            connect: !args.dry_run,
            k8s: policy.k8s.clone(),
            context: args.context.clone(),
            namespace: args.namespace.clone(),
            fly: policy.fly.clone(),
            fly_flags: args.fly_flags(),
        }
    }

    /// For a stored session's commands (`attach`, `logs`, `stop`, `rm`, `diff`, `merge`): the
    /// user's own configuration file (never a workspace's), and the app or cluster context
    /// from where the box runs (`location`).
    ///
    /// # Errors
    /// The user's configuration file cannot be read, merged or validated (a `[network]` entry
    /// that does not compile, named with its file and key).
    pub(crate) fn for_session(location: Option<&str>) -> Result<Self> {
        // The user's configuration alone (no workspace, no `--policy`, no flags), loaded and
        // checked as `airlock run` loads it.
        let policy = crate::policy_load::load(None, &[], &[], None)?;
        let mut fly_flags = airlock_remote::fly::FlyFlags::default();
        // `fly:APP/MACHINE`: the session's app, whatever the configuration says now.
        if let Some(app) = location
            .and_then(|l| l.strip_prefix("fly:"))
            .and_then(|l| l.split_once('/'))
            .map(|(app, _)| app.to_string())
        {
            fly_flags.app = Some(app);
        }
        Ok(EngineOptions {
            connect: true,
            k8s: policy.k8s,
            context: None,
            namespace: None,
            fly: policy.fly,
            fly_flags,
        })
    }
}

/// The image a remote box of `kind` runs: `--image`, else the engine's own key (`[k8s] image`,
/// `[fly] image`, `[container] image` for podman-box), else the engine's default: podman-box's
/// locally built box image; Fly's empty value, which its engine turns into
/// `registry.fly.io/APP:airlock-VERSION`.
///
/// # Errors
/// `--backend k8s` with no image: airlock publishes none, so the user names theirs.
pub(crate) fn box_image(
    kind: BackendKind,
    flag: Option<&str>,
    policy: &airlock_policy::Policy,
) -> Result<String> {
    if let Some(i) = flag {
        return Ok(i.to_string());
    }
    match kind {
        BackendKind::K8s => policy.k8s.image.clone().ok_or_else(|| {
            anyhow!(
                "--backend k8s needs an image holding airlock at /usr/local/bin/airlock and the \
                 agent's CLI (docs/k8s.md): pass --image IMAGE or set [k8s] image"
            )
        }),
        BackendKind::Fly => Ok(policy.fly.image.clone().unwrap_or_default()),
        _ => Ok(policy
            .container
            .image
            .clone()
            .unwrap_or_else(|| airlock_container::boxengine::DEFAULT_BOX_IMAGE.to_string())),
    }
}

/// The engine of a remote backend `kind`.
///
/// # Errors
/// `kind` is not remote; its engine is not built into this airlock; the engine cannot be
/// reached (named with the fix).
pub(crate) fn engine(
    kind: BackendKind,
    opts: &EngineOptions,
) -> Result<Box<dyn airlock_remote::Engine>> {
    match kind {
        BackendKind::PodmanBox => {
            let exe = std::fs::canonicalize("/proc/self/exe")
                .map_err(|e| anyhow!("cannot find the airlock binary (/proc/self/exe): {e}"))?;
            let mut engine = airlock_container::boxengine::PodmanBox::new(exe)?;
            if opts.connect {
                engine.connect()?;
            }
            Ok(Box::new(engine))
        }
        BackendKind::K8s => {
            let o = airlock_k8s::K8sOptions::from_config(
                &opts.k8s,
                opts.context.as_deref(),
                opts.namespace.as_deref(),
            )?;
            Ok(Box::new(airlock_k8s::K8sEngine::new(o)?))
        }
        BackendKind::Fly => {
            let o = airlock_remote::fly::FlyOptions::resolve(&opts.fly, &opts.fly_flags)?;
            Ok(Box::new(airlock_remote::fly::FlyEngine::new(o)?))
        }
        BackendKind::Native | BackendKind::Docker | BackendKind::Podman => {
            Err(anyhow!("the {kind} backend is local: it has no box engine"))
        }
    }
}

/// The backend of a stored session and the session as the backend sees it.
pub(crate) fn of(row: &SessionRow) -> (Box<dyn Backend>, SessionRef) {
    let session = SessionRef {
        id: row.id.clone(),
        dir: row.dir.clone(),
        location: row.location.clone(),
    };
    if row.backend.is_remote() {
        return (Box::new(RemoteSession { kind: row.backend }), session);
    }
    let backend = new(row.backend, &Options::default()).unwrap_or_else(|_| {
        // Options::default() has no runtime, so only the native arm could refuse, and it does not.
        Box::new(airlock_sandbox::Native::default())
    });
    (backend, session)
}

/// A stored remote session as the session commands see it: `clean_up` deletes its box,
/// `collect_changes` brings the changes of a box whose command has exited home (a detached
/// session's, before `diff`/`merge`).
#[derive(Debug)]
struct RemoteSession {
    kind: BackendKind,
}

fn setup_error(e: impl std::fmt::Display) -> airlock_sandbox::SandboxError {
    airlock_sandbox::SandboxError::Setup(e.to_string())
}

impl Backend for RemoteSession {
    fn limits(
        &mut self,
        _session: &str,
        _limits: &airlock_sandbox::cgroup::CgroupLimits,
    ) -> Result<airlock_sandbox::LimitReport, airlock_sandbox::SandboxError> {
        Err(setup_error(format!(
            "the {} backend runs boxes, not local sandboxes",
            self.kind
        )))
    }

    fn launch(
        &mut self,
        _spec: &airlock_sandbox::SandboxSpec,
        _ctx: airlock_sandbox::SessionContext,
    ) -> Result<Box<dyn airlock_sandbox::RunningSandbox>, airlock_sandbox::SandboxError> {
        Err(setup_error(format!(
            "the {} backend runs boxes, not local sandboxes",
            self.kind
        )))
    }

    fn clean_up(&self, session: &SessionRef) -> Result<(), airlock_sandbox::SandboxError> {
        let Some(at) = &session.location else {
            return Ok(());
        };
        let engine = engine(
            self.kind,
            &EngineOptions::for_session(Some(at.as_str())).map_err(setup_error)?,
        )
        .map_err(setup_error)?;
        engine.delete(at).map_err(setup_error)
    }

    fn collect_changes(&self, session: &SessionRef) -> Result<(), airlock_sandbox::SandboxError> {
        let Some(at) = &session.location else {
            return Ok(());
        };
        let engine = engine(
            self.kind,
            &EngineOptions::for_session(Some(at.as_str())).map_err(setup_error)?,
        )
        .map_err(setup_error)?;
        // A box that is gone had its changes collected when it ended.
        let Ok(st) = crate::commands::remote::status(engine.as_ref(), at) else {
            return Ok(());
        };
        if st.state != airlock_remote::BoxState::Exited {
            return Err(setup_error(format!(
                "session {} is still running in its box ({at}); `airlock stop {}` ends it and brings its changes home",
                session.id, session.id
            )));
        }
        crate::commands::remote::collect(engine.as_ref(), at, &session.dir, false)
            .map_err(|e| setup_error(format!("{e:#}")))
    }
}
