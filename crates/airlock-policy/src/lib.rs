//! airlock policy: the configuration model, its layering, and the pure rules derived from it
//! (environment allowlist, hidden paths, limits). No I/O: callers read files and pass text in.
#![forbid(unsafe_code)]

pub mod config;
pub mod network;
pub mod size;

pub use config::{
    ApprovalMode, ApprovalsConfig, ConfigFile, CredentialConfig, EnvConfig, FilesystemConfig,
    InjectConfig, JsonSource, Layer, LimitsConfig, NetworkConfig, NotifyConfig, Policy,
    PolicyError, TerminalConfig, TerminalPolicy, TlsConfig,
};
