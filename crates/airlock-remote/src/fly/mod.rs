//! `--backend fly`: the box is a Fly Machine (a Firecracker microVM) created through the Fly
//! Machines REST API (fly.io/docs/machines/api), with `airlock serve` as its one process.
//!
//! What [`FlyEngine`] does, call by call:
//! - [`Engine::render`]: the `POST /v1/apps/{app}/machines` body [`Engine::create`] would send
//!   ([`api::CreateMachineRequest`], pretty JSON); secrets appear only as the names of the
//!   app secrets their files are read from. Needs no token.
//! - [`Engine::create`]: `GET /v1/apps/{app}` (the app exists, the token works); the image
//!   check for an image in the app's registry (`registry.fly.io`, [`image`]); each secret set as
//!   an app secret `AIRLOCK_<SESSION>_<NAME>` (base64, as `files[].secret_name` reads it); the
//!   machine created with those secrets as files `/run/airlock/secrets/NAME` (mode 0400) and a
//!   process that ignores the app's secrets (none of them becomes an environment variable),
//!   `restart: {policy: "no"}` and `auto_destroy` in ephemeral mode; then `…/wait?state=started`
//!   (bounded, progress on stderr), and `airlock serve ctl status` through exec until the
//!   supervisor answers. In ephemeral mode the app secrets are deleted as soon as the machine
//!   runs (the files are written at boot and the machine is never restarted), so they do not
//!   outlive a machine that destroys itself; in standby mode they stay until [`Engine::delete`]
//!   (a stopped machine rewrites its files when it is started again). Any failure after the
//!   first secret was set destroys the machine (`DELETE …?force=true`) and deletes the secrets
//!   before the error is returned.
//! - [`Engine::exec`]: `POST …/exec` under a base64 wrapper ([`exec`]) so binary input and
//!   output survive; bounded by [`FlyOptions::exec_timeout`].
//! - [`Engine::exec_tty`]: the Machines API has no interactive exec; refused with how to attach
//!   with flyctl (`fly ssh console`, over Fly's WireGuard network).
//! - [`Engine::logs`]: `GET https://api.fly.io/api/v1/apps/{app}/logs?instance=ID`, the route
//!   `fly logs` uses (documented in fly.io/docs/monitoring/logs-api-options, not versioned),
//!   paged with `next_token`; the Machines API itself has no logs endpoint.
//! - [`Engine::delete`]: `POST …/stop`, then `DELETE …?force=true`, then the session's app
//!   secrets; what is already gone is not an error.

pub mod api;
mod client;
pub mod exec;
pub mod image;
pub mod token;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::Method;

use crate::{
    BoxRequest, Engine, ExecInput, ExecOutput, ExecStream, Location, RemoteError, TtyExec,
};
use client::{Api, Call, Subject};
pub use token::Token;

/// The engine's name as `--backend` spells it.
pub const FLY: &str = "fly";

/// The Machines API's public base URL.
pub const DEFAULT_API_URL: &str = "https://api.machines.dev";
/// The base URL of the Fly API that serves an app's logs.
pub const DEFAULT_LOGS_URL: &str = "https://api.fly.io";
/// The app's image registry.
pub const REGISTRY: &str = "registry.fly.io";
/// Default memory of the machine, MiB.
pub const DEFAULT_MEMORY_MB: u32 = 2048;
/// Default CPU kind.
pub const DEFAULT_CPU_KIND: &str = "shared";

pub use airlock_policy::config::FlyMode;

/// Looks an environment variable up (the token's variables).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything [`FlyEngine::new`] needs; [`FlyOptions::resolve`] builds it from `[fly]` and the
/// flags.
#[derive(Clone)]
pub struct FlyOptions {
    /// The Fly app the machines belong to (`[fly] app`, `--fly-app`).
    pub app: String,
    /// The region (`None`: the API's choice).
    pub region: Option<String>,
    /// The image; `None`: the request's ([`BoxRequest::image`]), and when that is empty
    /// `registry.fly.io/APP:airlock-VERSION`.
    pub image: Option<String>,
    /// Ephemeral (destroyed when the session ends) or standby (stopped, kept).
    pub mode: FlyMode,
    /// `shared` or `performance`.
    pub cpu_kind: String,
    /// CPUs (`None`: `[limits] cpus` rounded up, else 1).
    pub cpus: Option<u32>,
    /// Memory, MiB, a multiple of 256.
    pub memory_mb: u32,
    /// The Machines API's base URL (tests point it at a fake).
    pub api_url: String,
    /// The logs API's base URL.
    pub logs_url: String,
    /// The registry's base URL (`https://registry.fly.io`).
    pub registry_url: String,
    /// The token; `None`: found on first use ([`token::discover`]).
    pub token: Option<Token>,
    /// flyctl's config directory (`None`: `$FLY_CONFIG_DIR`, else `~/.fly`).
    pub flyctl_dir: Option<PathBuf>,
    /// How the token's environment variables are looked up (default: the process's
    /// environment; tests give their own).
    pub env: EnvLookup,
    /// More roots for verifying the API (`[tls] extra_roots`; tests' CA).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// How long the machine may take to start and its supervisor to answer.
    pub start_timeout: Duration,
    /// Bound of one exec (the endpoint's `timeout`).
    pub exec_timeout: Duration,
    /// Bound of one API call.
    pub call_timeout: Duration,
    /// Check that an image in the app's registry exists before creating the machine.
    pub check_image: bool,
    /// Where progress lines go (default: stderr).
    pub progress: Arc<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for FlyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlyOptions")
            .field("app", &self.app)
            .field("region", &self.region)
            .field("image", &self.image)
            .field("mode", &self.mode)
            .field("api_url", &self.api_url)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The `--fly-*` flags and `--image` of `airlock run`, for [`FlyOptions::resolve`].
#[derive(Debug, Clone, Default)]
pub struct FlyFlags {
    /// `--fly-app`.
    pub app: Option<String>,
    /// `--fly-region`.
    pub region: Option<String>,
    /// `--fly-mode`.
    pub mode: Option<FlyMode>,
    /// `--image`.
    pub image: Option<String>,
}

impl FlyOptions {
    /// Options for `app` with every default.
    pub fn new(app: impl Into<String>) -> FlyOptions {
        FlyOptions {
            app: app.into(),
            region: None,
            image: None,
            mode: FlyMode::Ephemeral,
            cpu_kind: DEFAULT_CPU_KIND.into(),
            cpus: None,
            memory_mb: DEFAULT_MEMORY_MB,
            api_url: DEFAULT_API_URL.into(),
            logs_url: DEFAULT_LOGS_URL.into(),
            registry_url: format!("https://{REGISTRY}"),
            token: None,
            flyctl_dir: None,
            env: Arc::new(|n: &str| std::env::var(n).ok()),
            extra_roots: Vec::new(),
            start_timeout: Duration::from_secs(180),
            exec_timeout: Duration::from_secs(600),
            call_timeout: Duration::from_secs(60),
            check_image: true,
            progress: Arc::new(|line: &str| eprintln!("airlock: {line}")),
        }
    }

    /// The options `airlock run --backend fly` uses: the flags over `[fly]` (a trusted layer's:
    /// an untrusted one may not set `[fly]`), the defaults under both.
    ///
    /// # Errors
    /// No app anywhere; an app, region or memory the API would refuse.
    pub fn resolve(
        config: &airlock_policy::config::FlyConfig,
        flags: &FlyFlags,
    ) -> Result<FlyOptions, RemoteError> {
        let app = flags
            .app
            .clone()
            .or_else(|| config.app.clone())
            .ok_or_else(|| RemoteError::Engine {
                engine: FLY,
                message: "no Fly app: pass --fly-app APP or set [fly] app (create one with \
                          `fly apps create NAME`)"
                    .into(),
            })?;
        let mut o = FlyOptions::new(app);
        o.region = flags.region.clone().or_else(|| config.region.clone());
        o.image = flags.image.clone().or_else(|| config.image.clone());
        o.mode = flags.mode.or(config.mode).unwrap_or(FlyMode::Ephemeral);
        if let Some(k) = &config.cpu_kind {
            o.cpu_kind.clone_from(k);
        }
        o.cpus = config.cpus;
        if let Some(m) = config.memory_mb {
            o.memory_mb = m;
        }
        if let Some(u) = &config.api_url {
            o.api_url = u.trim_end_matches('/').to_string();
        }
        o.validate()?;
        Ok(o)
    }

    /// Checks the values the API would refuse, before anything is sent.
    ///
    /// # Errors
    /// [`RemoteError::Invalid`] naming the value and the rule.
    pub fn validate(&self) -> Result<(), RemoteError> {
        if !valid_app(&self.app) {
            return Err(RemoteError::Invalid(format!(
                "fly: app name {:?} is not a Fly app name (lower-case letters, digits and \
                 dashes)",
                self.app
            )));
        }
        if let Some(r) = &self.region {
            if r.is_empty() || !r.chars().all(|c| c.is_ascii_lowercase()) {
                return Err(RemoteError::Invalid(format!(
                    "fly: region {r:?} is not a region code (`fly platform regions` lists them)"
                )));
            }
        }
        if self.memory_mb == 0 || self.memory_mb % 256 != 0 {
            return Err(RemoteError::Invalid(format!(
                "fly: [fly] memory_mb = {} is not a multiple of 256 MiB",
                self.memory_mb
            )));
        }
        if !matches!(self.cpu_kind.as_str(), "shared" | "performance") {
            return Err(RemoteError::Invalid(format!(
                "fly: [fly] cpu_kind = {:?}: use \"shared\" or \"performance\"",
                self.cpu_kind
            )));
        }
        for u in [&self.api_url, &self.logs_url, &self.registry_url] {
            if !u.starts_with("https://") {
                return Err(RemoteError::Invalid(format!(
                    "fly: {u} is not an https:// URL (the token must not travel in clear)"
                )));
            }
        }
        Ok(())
    }
}

/// A Fly app name: `[a-z0-9-]+` (flyctl's rule), 63 at most.
fn valid_app(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 63
        && a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Bytes of one page of the logs route read at most (a page is tens of lines).
const MAX_LOG_PAGE: usize = 4 << 20;

/// Pages of the logs route asked for at most in one [`Engine::logs`].
const MAX_LOG_PAGES: usize = 100;

/// A machine id: hex digits (as the API mints them).
fn valid_machine_id(m: &str) -> bool {
    !m.is_empty() && m.len() <= 32 && m.chars().all(|c| c.is_ascii_hexdigit())
}

/// The Fly Machines engine.
pub struct FlyEngine {
    opts: FlyOptions,
    rt: tokio::runtime::Runtime,
    api: std::sync::OnceLock<Api>,
}

impl std::fmt::Debug for FlyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlyEngine")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl FlyEngine {
    /// The engine for `opts`. Lazy: no token is looked for and nothing is sent until a call
    /// needs the API ([`Engine::render`] never does).
    ///
    /// # Errors
    /// Invalid options ([`FlyOptions::validate`]); no async runtime.
    pub fn new(opts: FlyOptions) -> Result<FlyEngine, RemoteError> {
        opts.validate()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Engine {
                engine: FLY,
                message: format!("cannot start the API client's runtime: {e}"),
            })?;
        Ok(FlyEngine {
            opts,
            rt,
            api: std::sync::OnceLock::new(),
        })
    }

    /// The options.
    pub fn options(&self) -> &FlyOptions {
        &self.opts
    }

    /// The API client, with the token found on first use.
    fn api(&self) -> Result<&Api, RemoteError> {
        if let Some(a) = self.api.get() {
            return Ok(a);
        }
        let token = match &self.opts.token {
            Some(t) => t.clone(),
            None => token::discover(&|n| std::env::var(n).ok(), self.opts.flyctl_dir.as_deref())?,
        };
        let tls =
            airlock_net::outbound::tls_config(self.opts.extra_roots.clone()).map_err(|e| {
                RemoteError::Engine {
                    engine: FLY,
                    message: e.to_string(),
                }
            })?;
        let api = Api {
            app: self.opts.app.clone(),
            machines_url: self.opts.api_url.trim_end_matches('/').to_string(),
            logs_url: self.opts.logs_url.trim_end_matches('/').to_string(),
            token,
            tls,
            timeout: self.opts.call_timeout,
        };
        Ok(self.api.get_or_init(|| api))
    }

    /// Runs `fut` to completion on the engine's runtime, from a thread of its own when the
    /// caller is itself inside a tokio runtime (block_on would panic there).
    fn block<T: Send>(&self, fut: impl std::future::Future<Output = T> + Send) -> T {
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| self.rt.block_on(fut))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        } else {
            self.rt.block_on(fut)
        }
    }

    fn progress(&self, line: &str) {
        (self.opts.progress)(&format!("fly: {line}"));
    }

    /// The image the machine runs.
    pub fn image_for(&self, req: &BoxRequest) -> String {
        match &self.opts.image {
            Some(i) => i.clone(),
            None if !req.image.is_empty() => req.image.clone(),
            None => format!(
                "{REGISTRY}/{}:airlock-{}",
                self.opts.app,
                env!("CARGO_PKG_VERSION")
            ),
        }
    }

    /// The request [`Engine::create`] sends, with `secrets_version` as the app secrets'
    /// version the machine must see.
    ///
    /// # Errors
    /// A secret name that is not `[A-Za-z0-9_-]+` or two that map to one app secret; a spec
    /// that does not serialise.
    pub fn create_request(
        &self,
        req: &BoxRequest,
        secrets_version: Option<u64>,
    ) -> Result<api::CreateMachineRequest, RemoteError> {
        let spec = serde_json::to_string(&req.spec)
            .map_err(|e| RemoteError::Invalid(format!("fly: the box spec: {e}")))?;
        let mut env = BTreeMap::new();
        env.insert(crate::SPEC_ENV.to_string(), spec);
        let mut files = Vec::new();
        for (file, secret) in secret_names(&req.spec.session, req)? {
            files.push(api::File {
                guest_path: format!("{}/{file}", crate::layout::SECRETS_DIR),
                secret_name: Some(secret),
                raw_value: None,
                mode: Some(0o400),
            });
        }
        let cpus = self.opts.cpus.unwrap_or_else(|| {
            req.limits
                .cpu_millis
                .map(|m| u32::try_from(m.div_ceil(1000)).unwrap_or(u32::MAX).max(1))
                .unwrap_or(1)
        });
        let mut metadata = BTreeMap::new();
        metadata.insert("airlock_session".into(), req.spec.session.clone());
        metadata.insert("airlock_name".into(), req.spec.name.clone());
        metadata.insert("airlock_mode".into(), self.opts.mode.as_str().into());
        Ok(api::CreateMachineRequest {
            name: format!("airlock-{}", req.spec.session),
            region: self.opts.region.clone(),
            config: api::MachineConfig {
                image: self.image_for(req),
                env,
                guest: api::Guest {
                    cpu_kind: self.opts.cpu_kind.clone(),
                    cpus,
                    memory_mb: self.opts.memory_mb,
                },
                restart: api::Restart {
                    policy: "no".into(),
                },
                auto_destroy: self.opts.mode == FlyMode::Ephemeral,
                files,
                processes: vec![api::Process {
                    exec: vec![crate::layout::AIRLOCK.to_string(), "serve".to_string()],
                    ignore_app_secrets: true,
                }],
                metadata,
            },
            min_secrets_version: secrets_version,
        })
    }

    /// `fly:APP/ID` for a machine of this app.
    fn location(&self, id: &str) -> Location {
        format!("fly:{}/{id}", self.opts.app)
    }

    /// The machine id in `at`, which must be a machine of this engine's app.
    fn machine_of(&self, at: &Location) -> Result<String, RemoteError> {
        let rest = at.strip_prefix("fly:").unwrap_or("");
        match rest.split_once('/') {
            Some((app, id)) if app == self.opts.app && valid_machine_id(id) => Ok(id.to_string()),
            Some((app, id)) if valid_app(app) && valid_machine_id(id) => {
                Err(RemoteError::Invalid(format!(
                    "fly: {at} is a machine of app {app}, not of {}; pass --fly-app {app}",
                    self.opts.app
                )))
            }
            _ => Err(RemoteError::Invalid(format!(
                "fly: {at:?} is not a Fly location (fly:APP/MACHINE_ID)"
            ))),
        }
    }
}

/// The session's secrets: (file name, app secret name) each, the app secret being
/// `AIRLOCK_<SESSION>_<NAME>` upper-cased with `-` as `_` (app secret names are environment
/// variable names).
///
/// # Errors
/// A name outside `[A-Za-z0-9_-]+`, or two names that become one app secret.
pub fn secret_names(session: &str, req: &BoxRequest) -> Result<Vec<(String, String)>, RemoteError> {
    let mut out: Vec<(String, String)> = Vec::new();
    if session.is_empty() || !session.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(RemoteError::Invalid(format!(
            "fly: session id {session:?} is not alphanumeric"
        )));
    }
    for s in &req.secrets {
        if s.name.is_empty()
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(RemoteError::Invalid(format!(
                "fly: credential name {:?} is not [A-Za-z0-9_-]+",
                s.name
            )));
        }
        let app_secret = format!("AIRLOCK_{session}_{}", s.name)
            .to_ascii_uppercase()
            .replace('-', "_");
        if let Some((other, _)) = out.iter().find(|(_, a)| *a == app_secret) {
            return Err(RemoteError::Invalid(format!(
                "fly: credentials {other:?} and {:?} would share the app secret {app_secret}; \
                 rename one",
                s.name
            )));
        }
        out.push((s.name.clone(), app_secret));
    }
    Ok(out)
}

/// What was created so far, for the clean-up.
#[derive(Debug, Default)]
struct Created {
    secrets: Vec<String>,
    machine: Option<String>,
}

impl FlyEngine {
    async fn create_async(&self, api: &Api, req: &BoxRequest) -> Result<Location, RemoteError> {
        let mut created = Created::default();
        match self.create_steps(api, req, &mut created).await {
            Ok(loc) => Ok(loc),
            Err(e) => {
                let left = self.clean_up(api, &created).await;
                Err(match left {
                    Ok(()) => e,
                    Err(c) => RemoteError::Resource {
                        engine: FLY,
                        resource: format!("app/{}", self.opts.app),
                        message: format!(
                            "{e}; and the clean-up failed too ({c}): check `fly machines list \
                             --app {}` and `fly secrets list --app {}`",
                            self.opts.app, self.opts.app
                        ),
                    },
                })
            }
        }
    }

    /// Refuses an app that has machines airlock did not make: the credentials become app
    /// secrets, which Fly gives every machine of the app as environment variables when it is
    /// created, updated or deployed (only airlock's machine sets `ignore_app_secrets`). A
    /// per-machine file's `raw_value` is no better: it is stored in the machine's config,
    /// which every reader of the app's machines sees (docs/fly.md, "Credentials").
    async fn refuse_shared_app(&self, api: &Api) -> Result<(), RemoteError> {
        let foreign: Vec<String> = api
            .list_machines()
            .await?
            .into_iter()
            .filter(|m| m.state != "destroyed")
            .filter(|m| {
                !m.config
                    .as_ref()
                    .is_some_and(|c| c.metadata.contains_key("airlock_session"))
            })
            .map(|m| m.id)
            .collect();
        if foreign.is_empty() {
            return Ok(());
        }
        Err(RemoteError::Resource {
            engine: FLY,
            resource: format!("app/{}", self.opts.app),
            message: format!(
                "the app has machines airlock did not create ({}); the session's credentials \
                 would be app secrets every one of them can read as environment variables. \
                 Use an app of airlock's own: `fly apps create NAME`, then --fly-app NAME",
                foreign.join(", ")
            ),
        })
    }

    async fn create_steps(
        &self,
        api: &Api,
        req: &BoxRequest,
        created: &mut Created,
    ) -> Result<Location, RemoteError> {
        let names = secret_names(&req.spec.session, req)?;
        api.check_app().await?;
        if !req.secrets.is_empty() {
            self.refuse_shared_app(api).await?;
        }
        let image = self.image_for(req);
        if self.opts.check_image {
            image::check(api, &self.opts.registry_url, &image).await?;
        }
        let mut version = None;
        for ((_, app_secret), secret) in names.iter().zip(&req.secrets) {
            created.secrets.push(app_secret.clone());
            let value = base64::engine::general_purpose::STANDARD.encode(&secret.value);
            let v = api.set_secret(app_secret, value).await?;
            version = Some(version.map_or(v, |old: u64| old.max(v)));
        }
        let body = self.create_request(req, version)?;
        let path = format!("/v1/apps/{}/machines", self.opts.app);
        let m: api::Machine = api
            .json(Method::POST, &path, Some(&body), None, &Subject::App)
            .await?;
        if !valid_machine_id(&m.id) {
            return Err(RemoteError::Resource {
                engine: FLY,
                resource: format!("app/{}", self.opts.app),
                message: format!(
                    "the API answered with a machine id {:?} that is not hex",
                    m.id
                ),
            });
        }
        created.machine = Some(m.id.clone());
        self.progress(&format!(
            "machine {} created in app {} ({}), waiting for it to start (up to {} s)",
            m.id,
            self.opts.app,
            if m.region.is_empty() {
                "region of the API's choice"
            } else {
                &m.region
            },
            self.opts.start_timeout.as_secs()
        ));
        let deadline = Instant::now() + self.opts.start_timeout;
        self.wait_started(api, &m.id, deadline).await?;
        self.wait_supervisor(api, &m.id, deadline).await?;
        if self.opts.mode == FlyMode::Ephemeral {
            for s in &created.secrets {
                api.delete_secret(s).await?;
            }
            created.secrets.clear();
        }
        self.progress(&format!("machine {} is up: airlock serve answers", m.id));
        Ok(self.location(&m.id))
    }

    /// Waits for `started` with the wait endpoint, in slices of at most 60 s (the endpoint's
    /// default), failing early when the machine reached a state it cannot start from.
    async fn wait_started(
        &self,
        api: &Api,
        id: &str,
        deadline: Instant,
    ) -> Result<(), RemoteError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            if left == 0 {
                return Err(self.not_started(api, id, "it did not start in time").await);
            }
            // a 400 (the real API's answer for some states) is judged by the state below
            match api.wait(id, "started", left.min(60)).await {
                Ok(true) => return Ok(()),
                Ok(false) | Err(RemoteError::Resource { .. }) => {}
                Err(e) => return Err(e),
            }
            if let Some(m) = api.machine(id).await? {
                if matches!(
                    m.state.as_str(),
                    "failed" | "stopped" | "stopping" | "destroyed" | "destroying"
                ) {
                    return Err(self
                        .not_started(api, id, "it stopped before it started")
                        .await);
                }
                self.progress(&format!("machine {id} is {}; still waiting", m.state));
            } else {
                return Err(self.not_started(api, id, "it disappeared").await);
            }
        }
    }

    /// The error for a machine that did not start: its state and last event named.
    async fn not_started(&self, api: &Api, id: &str, why: &str) -> RemoteError {
        let seen = match api.machine(id).await {
            Ok(Some(m)) => {
                let ev = m
                    .events
                    .first()
                    .map(|e| format!(", last event {} {}", e.kind, e.status))
                    .unwrap_or_default();
                format!("state {}{ev}", m.state)
            }
            Ok(None) => "gone".into(),
            Err(e) => format!("state unknown: {e}"),
        };
        RemoteError::Resource {
            engine: FLY,
            resource: format!("machine/{id}"),
            message: format!(
                "{why} ({seen}, after {} s); it is destroyed now; its boot log: `fly logs \
                 --app {} --machine {id}`; check the image and [fly] memory_mb",
                self.opts.start_timeout.as_secs(),
                self.opts.app
            ),
        }
    }

    /// Runs `airlock serve ctl status` until it succeeds (the supervisor is up) or the
    /// deadline passes.
    async fn wait_supervisor(
        &self,
        api: &Api,
        id: &str,
        deadline: Instant,
    ) -> Result<(), RemoteError> {
        let argv = vec![
            crate::layout::AIRLOCK.to_string(),
            "serve".into(),
            "ctl".into(),
            crate::ctl::STATUS.into(),
        ];
        let mut last = String::new();
        while Instant::now() < deadline {
            match self
                .exec_async(api, id, &argv, b"", Duration::from_secs(30))
                .await
            {
                Ok(o)
                    if o.status == 0
                        && serde_json::from_slice::<crate::BoxStatus>(&o.stdout).is_ok() =>
                {
                    return Ok(())
                }
                Ok(o) => {
                    last = format!(
                        "exit {}: {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    )
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(RemoteError::Resource {
            engine: FLY,
            resource: format!("machine/{id}"),
            message: format!(
                "the machine started but `airlock serve ctl status` did not answer within {} s \
                 (last: {last}); it is destroyed now; check that the image runs airlock at {}",
                self.opts.start_timeout.as_secs(),
                crate::layout::AIRLOCK
            ),
        })
    }

    /// Destroys what a failed create left: the machine, then the app secrets.
    async fn clean_up(&self, api: &Api, created: &Created) -> Result<(), RemoteError> {
        let mut first_err = None;
        if let Some(id) = &created.machine {
            if let Err(e) = self.destroy(api, id).await {
                first_err.get_or_insert(e);
            }
        }
        for s in &created.secrets {
            if let Err(e) = api.delete_secret(s).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Stop, then destroy with force; gone is fine. A stop the API refuses for the
    /// machine's state (already stopped, not started: 400/409/412) does not stop the destroy.
    async fn destroy(&self, api: &Api, id: &str) -> Result<(), RemoteError> {
        use hyper::StatusCode as S;
        let base = format!("/v1/apps/{}/machines/{id}", self.opts.app);
        let subject = Subject::Machine(id.into());
        let stop = api
            .call_allowing(
                Method::POST,
                &format!("{base}/stop"),
                Some(&serde_json::json!({})),
                None,
                &subject,
                &[
                    S::NOT_FOUND,
                    S::BAD_REQUEST,
                    S::CONFLICT,
                    S::PRECONDITION_FAILED,
                ],
            )
            .await;
        if let Err(e @ RemoteError::Engine { .. }) = stop {
            return Err(e);
        }
        api.call_allowing(
            Method::DELETE,
            &format!("{base}?force=true"),
            None::<&()>,
            None,
            &subject,
            &[S::NOT_FOUND],
        )
        .await
        .map(|_| ())
    }

    async fn exec_async(
        &self,
        api: &Api,
        id: &str,
        argv: &[String],
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, RemoteError> {
        let body = api::ExecRequest {
            command: exec::wrap(argv),
            stdin: Some(exec::encode_stdin(stdin)),
            timeout: timeout.as_secs().max(1),
        };
        let path = format!("/v1/apps/{}/machines/{id}/exec", self.opts.app);
        let r: api::ExecResponse = api
            .json(
                Method::POST,
                &path,
                Some(&body),
                Some(timeout + Duration::from_secs(30)),
                &Subject::Machine(id.into()),
            )
            .await?;
        let status = if r.exit_signal != 0 && r.exit_code == 0 {
            128 + r.exit_signal
        } else {
            r.exit_code
        };
        exec::unwrap(status, &r.stdout, &r.stderr, &format!("machine/{id}"))
    }

    /// The machine's log from the logs route, page by page, at most `max` bytes of lines
    /// (`TIMESTAMP MESSAGE\n`); no page's answer is read past [`MAX_LOG_PAGE`] bytes, and no
    /// more than [`MAX_LOG_PAGES`] pages are asked for.
    async fn logs_async(&self, api: &Api, id: &str, max: u64) -> Result<Vec<u8>, RemoteError> {
        let mut out = Vec::new();
        let mut next = String::new();
        for _ in 0..MAX_LOG_PAGES {
            let url = format!(
                "{}/api/v1/apps/{}/logs?instance={id}&next_token={next}",
                api.logs_url, self.opts.app
            );
            let a = api
                .send(
                    Call::new(Method::GET, url, &Subject::Logs)
                        .authorization(api.token.authorization())
                        .timeout(self.opts.call_timeout)
                        .max_answer(MAX_LOG_PAGE),
                )
                .await?;
            if !a.status.is_success() {
                return Err(api.error(&Method::GET, "/api/v1/apps/APP/logs", &a, &Subject::Logs));
            }
            let page: api::LogsResponse =
                serde_json::from_slice(&a.body).map_err(|e| RemoteError::Resource {
                    engine: FLY,
                    resource: format!("app/{}", self.opts.app),
                    message: format!("the logs API's answer is not the JSON it documents: {e}"),
                })?;
            for d in &page.data {
                let line = d.attributes.timestamp.len() + d.attributes.message.len() + 2;
                if (out.len() + line) as u64 > max {
                    return Err(crate::logs_over(
                        FLY,
                        format!("machine/{id}"),
                        max,
                        &format!("fly logs --app {} --instance {id} --no-tail", self.opts.app),
                    ));
                }
                out.extend_from_slice(d.attributes.timestamp.as_bytes());
                out.push(b' ');
                out.extend_from_slice(d.attributes.message.as_bytes());
                out.push(b'\n');
            }
            if page.data.is_empty()
                || page.meta.next_token.is_empty()
                || page.meta.next_token == next
            {
                break;
            }
            next = page.meta.next_token;
        }
        Ok(out)
    }

    async fn delete_async(&self, api: &Api, id: &str) -> Result<(), RemoteError> {
        let session = api
            .machine(id)
            .await?
            .and_then(|m| m.config)
            .and_then(|c| c.metadata.get("airlock_session").cloned());
        self.destroy(api, id).await?;
        if let Some(session) = session.filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric())) {
            let prefix = format!("AIRLOCK_{}_", session.to_ascii_uppercase());
            let path = format!("/v1/apps/{}/secrets", self.opts.app);
            let list: serde_json::Value = api
                .json(Method::GET, &path, None::<&()>, None, &Subject::App)
                .await?;
            let names = list["secrets"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["name"].as_str())
                        .filter(|n| n.starts_with(&prefix))
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            for n in names {
                api.delete_secret(&n).await?;
            }
        }
        Ok(())
    }
}

impl Engine for FlyEngine {
    fn name(&self) -> &'static str {
        FLY
    }

    fn render(&self, req: &BoxRequest) -> Result<String, RemoteError> {
        let body = self.create_request(req, None)?;
        serde_json::to_string_pretty(&body)
            .map_err(|e| RemoteError::Invalid(format!("fly: cannot render the request: {e}")))
    }

    fn create(&mut self, req: &BoxRequest) -> Result<Location, RemoteError> {
        let api = self.api()?.clone();
        self.block(self.create_async(&api, req))
    }

    /// The Machines API's exec answers once the command has ended, with its whole output in
    /// one JSON body (docs/fly.md): no stream to read incrementally. So the output is bounded
    /// by the client's cap on an answer (256 MiB of JSON, `client::MAX_ANSWER`) and handed on as a stream of
    /// what arrived.
    fn exec_stream(
        &self,
        at: &Location,
        argv: &[String],
        stdin: ExecInput,
    ) -> Result<ExecStream, RemoteError> {
        let id = self.machine_of(at)?;
        let api = self.api()?;
        let stdin = match stdin {
            ExecInput::Bytes(b) => b,
            ExecInput::Reader(_) => {
                return Err(RemoteError::Engine {
                    engine: FLY,
                    message: "the Machines API's exec takes its whole input in the request, \
                              so a stream (a pipe, a terminal) cannot be passed"
                        .into(),
                })
            }
        };
        let o = self.block(self.exec_async(api, &id, argv, &stdin, self.opts.exec_timeout))?;
        Ok(ExecStream::whole(
            o.stdout,
            Ok(crate::ExecEnd {
                status: o.status,
                stderr: o.stderr,
            }),
        ))
    }

    fn exec_tty(
        &self,
        at: &Location,
        argv: &[String],
        _cols: u16,
        _rows: u16,
    ) -> Result<TtyExec, RemoteError> {
        let id = self.machine_of(at)?;
        Err(RemoteError::Engine {
            engine: FLY,
            message: format!(
                "the Machines API has no interactive exec (its one exec endpoint, POST \
                 /v1/apps/APP/machines/ID/exec, takes the whole input at once and answers when \
                 the command has ended), so airlock cannot attach a terminal; the session's \
                 output is `airlock logs -f SESSION`; attach with flyctl over Fly's WireGuard \
                 network: `fly ssh console --app {} --machine {id} --pty --command '{}'`",
                self.opts.app,
                argv.join(" ")
            ),
        })
    }

    fn logs(&self, at: &Location, max: u64) -> Result<Vec<u8>, RemoteError> {
        let id = self.machine_of(at)?;
        let api = self.api()?;
        self.block(self.logs_async(api, &id, max))
    }

    fn delete(&self, at: &Location) -> Result<(), RemoteError> {
        let id = self.machine_of(at)?;
        let api = self.api()?;
        self.block(self.delete_async(api, &id))
    }
}
