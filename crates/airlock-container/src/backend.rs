//! The container backend behind airlock's [`Backend`] seam: `--backend docker|podman`.

use std::collections::HashMap;

use airlock_sandbox::cgroup::CgroupLimits;
use airlock_sandbox::{
    Backend, LimitReport, RunningSandbox, SandboxError, SandboxSpec, SessionContext, SessionRef,
};
use bollard::query_parameters::ListContainersOptionsBuilder;

use crate::container::{launch, limits_unenforced, ContainerOptions, Limits};
use crate::engine::{Discovery, Engine, EngineKind, Runtime};
use crate::error::ContainerError;

/// The label every container of a session carries: the session id.
pub const SESSION_LABEL: &str = "airlock.session";

/// Settings of the container backend (`--backend`, `--runtime`, `--image`).
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    pub kind: EngineKind,
    pub runtime: Option<Runtime>,
    /// `--image` (or `[container] image`); `None` for airlock's default image, built by
    /// [`crate::image::ensure`] at launch when the engine lacks it.
    pub image: Option<String>,
}

/// Runs sessions as containers of one engine.
#[derive(Debug)]
pub struct ContainerBackend {
    settings: ContainerSettings,
    discovery: Discovery,
    engine: Option<Engine>,
    limits: Limits,
}

impl ContainerBackend {
    /// A backend for `settings`, finding the engine from this process's environment.
    pub fn new(settings: ContainerSettings) -> ContainerBackend {
        ContainerBackend {
            settings,
            discovery: Discovery::from_env(),
            engine: None,
            limits: Limits::default(),
        }
    }

    fn engine(&mut self) -> Result<&Engine, ContainerError> {
        if self.engine.is_none() {
            self.engine = Some(Engine::connect(
                self.settings.kind,
                self.settings.runtime,
                &self.discovery,
            )?);
        }
        self.engine
            .as_ref()
            .ok_or_else(|| ContainerError::Unsupported("no engine".into()))
    }
}

impl ContainerBackend {
    /// airlock's default image, built first when the engine lacks it (progress on stderr).
    /// Looked up through the connected engine's API first (a request, where the CLI would be
    /// a process per run); only a missing image goes to [`crate::image::ensure`].
    fn default_image(&mut self) -> Result<String, ContainerError> {
        let recipe = crate::image::Recipe::from_env();
        let tag = recipe.tag();
        let engine = self.engine()?;
        if engine
            .rt
            .block_on(engine.client.inspect_image(&tag))
            .is_ok()
        {
            return Ok(tag);
        }
        crate::image::ensure(self.settings.kind, &recipe, &mut |line| {
            eprintln!("airlock: image: {line}")
        })
    }
}

/// A container error as the seam's error (its exit status is kept: 125, or 126/127 from inside).
pub fn sandbox_error(e: ContainerError) -> SandboxError {
    match e {
        ContainerError::Sandbox(s) => s,
        other => SandboxError::Setup(airlock_sandbox::render_chain(&other)),
    }
}

impl Backend for ContainerBackend {
    /// Limits are the engine's (`Memory`, `PidsLimit`, `NanoCpus`). Where the engine would
    /// silently ignore them (rootless on cgroup v1 or hybrid hosts, or an engine reporting no
    /// support) they are reported missing with the reason, and not sent.
    fn limits(
        &mut self,
        _session: &str,
        limits: &CgroupLimits,
    ) -> Result<LimitReport, SandboxError> {
        let engine = self.engine().map_err(sandbox_error)?;
        let mut report = LimitReport::default();
        let asked = [
            ("memory", limits.memory.is_some()),
            ("pids", limits.pids.is_some()),
            ("cpu", limits.cpus.is_some()),
        ];
        match limits_unenforced(engine) {
            None => {
                let no_pids = engine.pids_limit_unenforced();
                for (name, on) in asked {
                    match no_pids {
                        Some(why) if on && name == "pids" => {
                            report.missing.push(format!("{name}: {why}"));
                        }
                        _ if on => report.enforced.push(format!("{name} (engine)")),
                        _ => {}
                    }
                }
                self.limits = Limits {
                    memory_bytes: limits.memory,
                    pids: limits.pids.filter(|_| no_pids.is_none()),
                    cpus: limits.cpus,
                };
            }
            Some(why) => {
                for (name, on) in asked {
                    if on {
                        report.missing.push(format!("{name}: {why}"));
                    }
                }
            }
        }
        Ok(report)
    }

    fn launch(
        &mut self,
        spec: &SandboxSpec,
        ctx: SessionContext,
    ) -> Result<Box<dyn RunningSandbox>, SandboxError> {
        // The engine first: an engine that cannot be reached is the error to show, not the
        // image's.
        self.engine().map_err(sandbox_error)?;
        let image = match &self.settings.image {
            Some(i) => i.clone(),
            None => self.default_image().map_err(sandbox_error)?,
        };
        let engine = self
            .engine
            .take()
            .ok_or_else(|| SandboxError::Setup("no container engine".into()))?;
        let opts = ContainerOptions {
            image,
            exe: ctx.exe,
            limits: self.limits,
            state_dir: ctx.dir,
            name: Some(format!("airlock-{}", ctx.id)),
            labels: HashMap::from([(SESSION_LABEL.to_string(), ctx.id.clone())]),
            unix_refusals: ctx.unix_refusals,
        };
        let sandbox = launch(engine, spec, opts).map_err(sandbox_error)?;
        Ok(Box::new(sandbox))
    }

    /// Removes the session's containers (by label) when its supervisor died without doing so.
    /// A private Podman service died with that supervisor; a new one (default runtime) reaches
    /// the same container store.
    fn clean_up(&self, session: &SessionRef) -> Result<(), SandboxError> {
        let engine =
            Engine::connect(self.settings.kind, None, &self.discovery).map_err(sandbox_error)?;
        let filter = HashMap::from([(
            "label".to_string(),
            vec![format!("{SESSION_LABEL}={}", session.id)],
        )]);
        let list = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filter)
            .build();
        let found = engine
            .rt
            .block_on(engine.client.list_containers(Some(list)))
            .map_err(|e| sandbox_error(engine.error("list the session's containers", &e)))?;
        for c in found {
            let Some(id) = c.id else { continue };
            crate::engine::remove_forced(&engine.rt, &engine.client, &id).map_err(|e| {
                sandbox_error(engine.error(
                    format!(
                        "remove container {id} (remove it by hand: {} rm -f {id})",
                        engine.kind().name()
                    ),
                    &e,
                ))
            })?;
        }
        Ok(())
    }
}
