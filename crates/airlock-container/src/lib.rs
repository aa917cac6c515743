//! airlock's container backend: the sandbox of a [`airlock_sandbox::SandboxSpec`] as a Docker or
//! Podman container, through the Docker Engine API (bollard), with runc, crun or runsc (gVisor).
//!
//! ```text
//! supervisor (airlock run)           host; engine client, control socket listener, egress
//!  └─ engine (dockerd / podman)      creates the container: read-only image root, --cap-drop ALL,
//!      │                             no-new-privileges, seccomp profile, --network none, limits
//!      └─ pid 1: airlock __container-init   the airlock binary, bind-mounted read-only; connects
//!          │                        to the control socket, makes the listeners in the container's
//!          │                        netns and passes them out (SCM_RIGHTS), locks itself down
//!          └─ the command           as natively: same spec, same stdio, same egress
//! ```
//!
//! Only `airlock-sandbox` has `unsafe`: the fd passing and the init are there.

#![forbid(unsafe_code)]

pub mod backend;
pub mod boxengine;
pub mod container;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod image;
pub mod seccomp;
pub mod service;

pub use backend::{ContainerBackend, ContainerSettings, SESSION_LABEL};
pub use container::{launch, ContainerOptions, Limits};
pub use engine::{Discovery, Engine, EngineFacts, EngineKind, Runtime};
pub use error::ContainerError;
