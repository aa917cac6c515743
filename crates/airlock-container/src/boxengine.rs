//! The `podman-box` engine: a remote box ([`airlock_remote::Engine`]) as a local Podman
//! container running `airlock serve`, the remote path run on this machine (the tests of
//! `airlock serve` use it, and a user can run a session in a container whose whole supervisor
//! lives inside it).
//!
//! The container is the box: its first process is `airlock serve` (the running airlock binary
//! mounted read-only at [`airlock_remote::layout::AIRLOCK`], so the box always runs the local
//! side's release); the secrets are written, once the box runs, into a tmpfs at `/run/airlock`
//! (mode 0700: memory only, never the container's writable layer on the host's disk) at
//! [`airlock_remote::layout::SECRETS_DIR`] (mode 0400, root's) through the standard input of an
//! exec, never through its environment, a command line or a host file; `airlock serve` removes
//! them once it has read them. Inside, `airlock serve` runs the native sandbox, which needs from
//! the container (found by trying, see docs/remote.md):
//! - a user namespace of its own with rootful Podman (`userns=auto`, from the `containers`
//!   range of /etc/subuid and /etc/subgid): the box's root is never the host's root (rootless
//!   Podman gives every container the user's own namespace already);
//! - seccomp `unconfined`: Podman's default profile refuses `sethostname`, `mount` and
//!   `pivot_root` without CAP_SYS_ADMIN, which the box does not have; the agent gets airlock's
//!   own seccomp filter inside, as natively;
//! - `unmask=/proc/*`: a new /proc in the sandbox's user namespace needs a fully visible /proc
//!   (the kernel's `mount_too_revealing`, fs/namespace.c: every mount over the box's /proc
//!   must sit on an empty directory, and Podman's read-only /proc/sys, /proc/bus, /proc/fs and
//!   /proc/irq binds and its masks of /proc/kcore, /proc/keys, /proc/timer_list, ... sit on
//!   files or non-empty directories, so each one alone makes the nested mount fail). /proc/sys
//!   stays unwritable all the same: its files belong to the initial user namespace's root,
//!   which the box's root is not (user namespace above), so writing a host sysctl fails with
//!   EACCES (tests/all/remote.rs `box_root_is_not_host_root`);
//! - tmpfs for [`airlock_remote::layout::STATE_DIR`] and the workspace: the overlay's upper
//!   layer cannot live on the container's own overlay root;
//! - capabilities dropped except CHOWN, DAC_OVERRIDE, FOWNER, SETUID, SETGID and KILL (serve
//!   hands the workspace to the user `airlock`, drops to it, reads and signals its session);
//!   no-new-privileges; `--network none` (the box's own loopback only).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use airlock_remote::{
    layout, BoxRequest, Engine as BoxEngine, ExecInput, ExecStream, Location, RemoteError, TtyExec,
};
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, ResizeExecOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::engine::{Discovery, Engine, EngineKind};

/// The engine's name (`--backend podman-box`).
pub const NAME: &str = "podman-box";
/// The image the tests build (scripts/container-setup.sh): busybox, tmux, git, user `airlock`.
pub const DEFAULT_BOX_IMAGE: &str = "localhost/airlock-box:latest";
/// The label naming a box's session.
pub const BOX_LABEL: &str = "airlock.box";
/// How long `create` waits for `airlock serve` to answer.
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default size of each tmpfs (state, workspace) without a disk limit.
const DEFAULT_DISK: u64 = 1 << 30;
/// The box's private run directory (control socket, secrets): a tmpfs of its own.
const RUN_DIR: &str = "/run/airlock";
/// Its size: the secrets and a socket.
const RUN_TMPFS_BYTES: i64 = 16 << 20;
/// The user namespace of a rootful box (podman-run(1) `--userns=auto`: a range of its own
/// from the `containers` entries of /etc/subuid and /etc/subgid).
const ROOTFUL_USERNS: &str = "auto";

/// A local Podman that runs boxes.
#[derive(Debug)]
pub struct PodmanBox {
    /// Held for the private service's lifetime, if one was started.
    engine: Option<Engine>,
    client: Option<Docker>,
    rt: tokio::runtime::Runtime,
    /// The airlock binary mounted into the box.
    airlock: std::path::PathBuf,
    /// The box's user namespace mode: `auto` when Podman is rootful (this process is root),
    /// so the box's root is not the host's; none when rootless (already in the user's own).
    userns: Option<String>,
}

fn err(message: impl Into<String>) -> RemoteError {
    RemoteError::Engine {
        engine: NAME,
        message: message.into(),
    }
}

/// What the engine said, without bollard's "Docker responded with status code N" wrapper
/// (the engine here is Podman).
fn engine_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => format!("{} (HTTP {status_code})", message.trim()),
        other => other.to_string(),
    }
}

fn res(resource: &str, message: impl Into<String>) -> RemoteError {
    RemoteError::Resource {
        engine: NAME,
        resource: resource.to_string(),
        message: message.into(),
    }
}

/// The container id of a location `podman:ID`.
fn container_of(at: &Location) -> Result<&str, RemoteError> {
    at.strip_prefix("podman:")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            RemoteError::Invalid(format!(
                "{at:?} is not a podman-box location (podman:CONTAINER)"
            ))
        })
}

impl PodmanBox {
    /// An engine that connects to Podman only when a box is created or used (`render` needs
    /// none); `airlock` is the binary mounted into boxes.
    ///
    /// # Errors
    /// When the client's runtime cannot start.
    pub fn new(airlock: std::path::PathBuf) -> Result<PodmanBox, RemoteError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("airlock-podman-box")
            .enable_all()
            .build()
            .map_err(|e| err(format!("cannot start the engine client: {e}")))?;
        Ok(PodmanBox {
            engine: None,
            client: None,
            rt,
            airlock,
            userns: nix::unistd::geteuid()
                .is_root()
                .then(|| ROOTFUL_USERNS.to_string()),
        })
    }

    fn client(&self) -> Result<&Docker, RemoteError> {
        self.client
            .as_ref()
            .ok_or_else(|| err("not connected to Podman"))
    }

    /// Connects to Podman (its socket, or a private service held until this is dropped); done
    /// by `create` itself, and needed first by the other calls on an existing box.
    ///
    /// # Errors
    /// No Podman answers: the error names what to install or start.
    pub fn connect(&mut self) -> Result<(), RemoteError> {
        if self.client.is_some() {
            return Ok(());
        }
        let engine = Engine::connect(EngineKind::Podman, None, &Discovery::from_env())
            .map_err(|e| err(format!("{e}")))?;
        self.client = Some(engine.client.clone());
        self.engine = Some(engine);
        Ok(())
    }

    /// Refuses an image this user's Podman does not have (podman-box never pulls: the box
    /// image is local), naming it and what to run.
    fn check_image(&self, image: &str) -> Result<(), RemoteError> {
        match self.rt.block_on(self.client()?.inspect_image(image)) {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                let whose = if nix::unistd::geteuid().is_root() {
                    "root's Podman".to_string()
                } else {
                    format!("the Podman of uid {} (rootless)", nix::unistd::geteuid())
                };
                let fix = if image == DEFAULT_BOX_IMAGE {
                    format!(
                        "import the box image into {whose} (docs/remote.md, \"The box image\",                          shows the `podman import` that builds it) or pass --image IMAGE"
                    )
                } else {
                    format!("run `podman pull {image}` as this user, or pass another --image")
                };
                Err(res(
                    &format!("image/{image}"),
                    format!("not in {whose} (`podman images` lists what it has); {fix}"),
                ))
            }
            Err(e) => Err(err(format!(
                "cannot look up image {image}: {}",
                engine_message(&e)
            ))),
        }
    }

    /// The container request for `req` (no secret in it).
    fn body(&self, req: &BoxRequest) -> Result<ContainerCreateBody, RemoteError> {
        let spec = serde_json::to_string(&req.spec)
            .map_err(|e| RemoteError::Invalid(format!("the box spec does not serialise: {e}")))?;
        let disk = req.limits.disk_bytes.unwrap_or(DEFAULT_DISK);
        let tmpfs = |target: &str, mode: &str| Mount {
            target: Some(target.into()),
            typ: Some(MountType::TMPFS),
            tmpfs_options: Some(bollard::models::MountTmpfsOptions {
                size_bytes: i64::try_from(disk).ok(),
                mode: i64::from_str_radix(mode, 8).ok(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let host = HostConfig {
            network_mode: Some("none".into()),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(
                [
                    "CHOWN",
                    "DAC_OVERRIDE",
                    "FOWNER",
                    "SETUID",
                    "SETGID",
                    "KILL",
                ]
                .map(String::from)
                .to_vec(),
            ),
            security_opt: Some(vec![
                "no-new-privileges".into(),
                "seccomp=unconfined".into(),
                "unmask=/proc/*".into(),
            ]),
            mounts: Some(vec![
                Mount {
                    target: Some(layout::AIRLOCK.into()),
                    source: Some(self.airlock.display().to_string()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    ..Default::default()
                },
                // Secrets land here (`write_secrets`): memory, 0700, never the host's disk.
                Mount {
                    target: Some(RUN_DIR.into()),
                    typ: Some(MountType::TMPFS),
                    tmpfs_options: Some(bollard::models::MountTmpfsOptions {
                        size_bytes: Some(RUN_TMPFS_BYTES),
                        mode: Some(0o700),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                tmpfs(layout::STATE_DIR, "755"),
                tmpfs(layout::WORKSPACE, "755"),
                tmpfs("/tmp", "1777"),
            ]),
            memory: req.limits.memory_bytes.and_then(|m| i64::try_from(m).ok()),
            nano_cpus: req
                .limits
                .cpu_millis
                .and_then(|c| i64::try_from(c.saturating_mul(1_000_000)).ok()),
            pids_limit: req.limits.pids.and_then(|p| i64::try_from(p).ok()),
            userns_mode: self.userns.clone(),
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: Some(req.image.clone()),
            cmd: Some(vec![layout::AIRLOCK.into(), "serve".into()]),
            env: Some(vec![format!("{}={spec}", airlock_remote::SPEC_ENV)]),
            labels: Some(HashMap::from([
                (BOX_LABEL.to_string(), req.spec.session.clone()),
                (crate::SESSION_LABEL.to_string(), req.spec.session.clone()),
            ])),
            host_config: Some(host),
            ..Default::default()
        })
    }

    /// Writes the secrets into the running box's tmpfs at [`layout::SECRETS_DIR`] (directory
    /// 0500, files 0400, root's), each value through an exec's standard input (never its
    /// command line, environment, or the container's writable layer, which is on the host's
    /// disk).
    fn write_secrets(&self, req: &BoxRequest, at: &Location) -> Result<(), RemoteError> {
        let dir = layout::SECRETS_DIR;
        for s in &req.secrets {
            if !airlock_remote::valid_secret_name(&s.name) {
                return Err(RemoteError::Invalid(format!(
                    "secret name {:?}: use letters, digits, '_' and '-'",
                    s.name
                )));
            }
            // The name is checked above ([A-Za-z0-9_-]); the value is only ever stdin.
            let script = format!(
                "umask 077 && mkdir -p {dir} && cat > {dir}/{n}.tmp && chmod 0400 {dir}/{n}.tmp && mv {dir}/{n}.tmp {dir}/{n} && chmod 0500 {dir}",
                n = s.name
            );
            let argv = ["/bin/sh".to_string(), "-c".into(), script];
            let o = self.exec(at, &argv, &s.value)?;
            if o.status != 0 {
                return Err(res(
                    at,
                    format!(
                        "cannot write the secret {} into {dir} (exit {}): {}; the box image needs /bin/sh",
                        s.name,
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Creates, fills and starts the container; waits for `airlock serve` to answer.
    fn create_inner(&self, req: &BoxRequest, id: &str) -> Result<(), RemoteError> {
        let client = self.client()?;
        let resource = format!("container/{id}");
        self.rt
            .block_on(client.start_container(id, None))
            .map_err(|e| {
                res(
                    &resource,
                    format!("cannot start it: {}", engine_message(&e)),
                )
            })?;
        let at = format!("podman:{id}");
        let deadline = std::time::Instant::now() + SERVE_TIMEOUT;
        let status = [
            layout::AIRLOCK.to_string(),
            "serve".into(),
            "ctl".into(),
            "status".into(),
        ];
        loop {
            match self.exec(&at, &status, &[]) {
                // serve reads the secrets once the workspace is in, after this.
                Ok(o) if o.status == 0 => return self.write_secrets(req, &at),
                r => {
                    if std::time::Instant::now() > deadline {
                        let why = match r {
                            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                            Err(e) => e.to_string(),
                        };
                        let logs = self
                            .logs(&at, airlock_remote::MAX_LOGS)
                            .unwrap_or_else(|e| e.to_string().into_bytes());
                        return Err(res(
                            &resource,
                            format!(
                                "airlock serve did not answer within {SERVE_TIMEOUT:?} ({why}); its log: {}",
                                String::from_utf8_lossy(&logs).trim()
                            ),
                        ));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl BoxEngine for PodmanBox {
    fn name(&self) -> &'static str {
        NAME
    }

    fn render(&self, req: &BoxRequest) -> Result<String, RemoteError> {
        let body = self.body(req)?;
        let names: Vec<&str> = req.secrets.iter().map(|s| s.name.as_str()).collect();
        let doc = serde_json::json!({
            "container": body,
            "secrets": { "path": layout::SECRETS_DIR, "names": names },
        });
        serde_json::to_string_pretty(&doc)
            .map_err(|e| RemoteError::Invalid(format!("cannot render: {e}")))
    }

    fn create(&mut self, req: &BoxRequest) -> Result<Location, RemoteError> {
        self.connect()?;
        self.check_image(&req.image)?;
        let body = self.body(req)?;
        let name = format!("airlock-box-{}", req.spec.session);
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        self.rt
            .block_on(self.client()?.create_container(Some(opts), body))
            .map_err(|e| {
                res(
                    &format!("container/{name}"),
                    format!(
                        "Podman cannot create the box from image {}: {}",
                        req.image,
                        engine_message(&e)
                    ),
                )
            })?;
        // The name is unique (one box per session) and shorter than the id in `airlock ls`.
        let at = format!("podman:{name}");
        if let Err(e) = self.create_inner(req, &name) {
            let _ = self.delete(&at);
            return Err(e);
        }
        Ok(at)
    }

    fn exec_stream(
        &self,
        at: &Location,
        argv: &[String],
        stdin: ExecInput,
    ) -> Result<ExecStream, RemoteError> {
        let id = container_of(at)?.to_string();
        let client = self.client()?.clone();
        let resource = format!("container/{id}");
        let cannot = |e: bollard::errors::Error| {
            res(
                &resource,
                format!("cannot exec {}: {}", argv.join(" "), engine_message(&e)),
            )
        };
        let (exec_id, mut output, input) = self.rt.block_on(async {
            let exec = client
                .create_exec(
                    &id,
                    ExecConfig {
                        attach_stdin: Some(true),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        cmd: Some(argv.to_vec()),
                        ..Default::default()
                    },
                )
                .await
                .map_err(cannot)?;
            let started = client
                .start_exec(
                    &exec.id,
                    Some(StartExecOptions {
                        detach: false,
                        tty: false,
                        output_capacity: None,
                    }),
                )
                .await
                .map_err(cannot)?;
            match started {
                StartExecResults::Attached { output, input } => Ok((exec.id, output, input)),
                StartExecResults::Detached => Err(res(&resource, "the exec did not attach")),
            }
        })?;
        let (mut sink, stream) = airlock_remote::stream::channel();
        let writer = self.rt.spawn(airlock_remote::stream::feed(stdin, input));
        let what = argv.join(" ");
        self.rt.spawn(async move {
            // The output as it arrives; a consumer that has gone ends the exec (dropping the
            // attach connection; what the program still writes goes nowhere).
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        if sink.stdout(message).await.is_err() {
                            writer.abort();
                            return;
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => sink.stderr(&message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => {
                        sink.fail(std::io::Error::other(format!(
                            "{resource}: exec of {what}: the output broke off: {}",
                            engine_message(&e)
                        )))
                        .await;
                        writer.abort();
                        return;
                    }
                }
            }
            drop(output);
            writer.abort();
            let status = client
                .inspect_exec(&exec_id)
                .await
                .map_err(|e| {
                    res(
                        &resource,
                        format!("cannot read the exec's status: {}", engine_message(&e)),
                    )
                })
                .map(|i| {
                    i.exit_code
                        .and_then(|c| i32::try_from(c).ok())
                        .unwrap_or(-1)
                });
            sink.end(status);
        });
        Ok(stream)
    }

    fn exec_tty(
        &self,
        at: &Location,
        argv: &[String],
        cols: u16,
        rows: u16,
    ) -> Result<TtyExec, RemoteError> {
        let id = container_of(at)?.to_string();
        let client = self.client()?.clone();
        let resource = format!("container/{id}");
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| err(format!("cannot make a socket pair: {e}")))?;
        let (exec_id, output, input) = self.rt.block_on(async {
            let exec = client
                .create_exec(
                    &id,
                    ExecConfig {
                        attach_stdin: Some(true),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        tty: Some(true),
                        console_size: Some(vec![usize::from(rows), usize::from(cols)]),
                        env: Some(vec![format!(
                            "TERM={}",
                            std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into())
                        )]),
                        cmd: Some(argv.to_vec()),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| {
                    res(
                        &resource,
                        format!("cannot exec {}: {}", argv.join(" "), engine_message(&e)),
                    )
                })?;
            let started = client
                .start_exec(
                    &exec.id,
                    Some(StartExecOptions {
                        detach: false,
                        tty: true,
                        output_capacity: None,
                    }),
                )
                .await
                .map_err(|e| {
                    res(
                        &resource,
                        format!("cannot exec {}: {}", argv.join(" "), engine_message(&e)),
                    )
                })?;
            match started {
                StartExecResults::Attached { output, input } => Ok((exec.id, output, input)),
                StartExecResults::Detached => Err(res(&resource, "the exec did not attach")),
            }
        })?;
        let (mut output, mut input) = (output, input);
        let to_box = theirs
            .try_clone()
            .map_err(|e| err(format!("cannot clone a socket: {e}")))?;
        let from_box = theirs;
        to_box
            .set_nonblocking(true)
            .map_err(|e| err(e.to_string()))?;
        // The box's output to our end of the pair.
        let mut writer = from_box;
        self.rt.spawn(async move {
            while let Some(Ok(chunk)) = output.next().await {
                let bytes = chunk.into_bytes();
                if writer.write_all(&bytes).is_err() {
                    break;
                }
            }
            let _ = writer.shutdown(std::net::Shutdown::Both);
        });
        // Our end's input to the box.
        self.rt.spawn(async move {
            let Ok(mut reader) = tokio::net::UnixStream::from_std(to_box) else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if input.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let _ = input.flush().await;
                    }
                }
            }
            let _ = input.shutdown().await;
        });
        let handle = self.rt.handle().clone();
        Ok(TtyExec {
            stream: ours,
            resize: Box::new(move |cols, rows| {
                handle
                    .block_on(client.resize_exec(
                        &exec_id,
                        ResizeExecOptions {
                            h: i32::from(rows),
                            w: i32::from(cols),
                        },
                    ))
                    .map_err(|e| {
                        err(format!(
                            "cannot resize the terminal: {}",
                            engine_message(&e)
                        ))
                    })
            }),
        })
    }

    fn logs(&self, at: &Location, max: u64) -> Result<Vec<u8>, RemoteError> {
        let id = container_of(at)?;
        let client = self.client()?;
        let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        self.rt.block_on(async {
            let mut s = client.logs(id, Some(opts));
            let mut out = Vec::new();
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| {
                    res(
                        &format!("container/{id}"),
                        format!("reading its log broke off: {}", engine_message(&e)),
                    )
                })?;
                let bytes = chunk.into_bytes();
                if (out.len() + bytes.len()) as u64 > max {
                    // Dropping the stream closes the connection: nothing more is read.
                    return Err(airlock_remote::logs_over(
                        NAME,
                        format!("container/{id}"),
                        max,
                        &format!("podman logs {id}"),
                    ));
                }
                out.extend_from_slice(&bytes);
            }
            Ok(out)
        })
    }

    fn delete(&self, at: &Location) -> Result<(), RemoteError> {
        let id = container_of(at)?;
        let client = self.client()?;
        match crate::engine::remove_forced(&self.rt, client, id) {
            Ok(()) => Ok(()),
            Err(e) => Err(res(
                &format!("container/{id}"),
                format!(
                    "cannot remove it: {}; remove it with `podman rm -f {id}`",
                    engine_message(&e)
                ),
            )),
        }
    }
}
