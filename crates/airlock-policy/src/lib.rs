//! airlock policy: the configuration model, its layering, and the pure rules derived from it
//! (environment allowlist, hidden paths, limits). No I/O: callers read files and pass text in.
#![forbid(unsafe_code)]

pub mod config;
pub mod ecosystems;
pub mod git;
pub mod network;
pub mod rules;
pub mod size;

pub use config::{
    ApprovalMode, ApprovalsConfig, ConfigFile, CredentialConfig, EnvConfig, FilesystemConfig,
    HeaderValue, InjectConfig, JsonSource, K8sConfig, Layer, LimitsConfig, NetworkConfig,
    NotifyConfig, Policy, PolicyError, TelemetryConfig, TerminalConfig, TerminalPolicy, TlsConfig,
    DEFAULT_TELEMETRY_QUEUE,
};
