//! The Machines API's JSON shapes that airlock sends and reads, typed, with the field names
//! of the API's reference (fly.io/docs/machines/api/machines-resource, "Machine `config`
//! object properties", and the OpenAPI document behind it: `CreateMachineRequest`,
//! `fly.MachineConfig`, `fly.MachineGuest`, `fly.MachineRestart`, `fly.File`,
//! `fly.MachineProcess`, `MachineExecRequest`, `flydv1.ExecResponse`, `SetAppSecretRequest`).
//!
//! Only the fields airlock uses are modelled; `deny_unknown_fields` on what airlock *sends* keeps
//! the tests honest (a body that parses back into these types has no field the API does not
//! document), while what airlock *reads* ignores fields it does not know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/apps/{app_name}/machines`: the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateMachineRequest {
    /// Unique name of the machine in the app (`airlock-SESSION`).
    pub name: String,
    /// The target region (`None`: the API picks one near the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The machine's configuration.
    pub config: MachineConfig,
    /// The app secrets' version the machine must see at least (the one the secrets set just
    /// before returned), so its `files` read the values airlock set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_secrets_version: Option<u64>,
}

/// `fly.MachineConfig`, the fields airlock sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// The image (`registry.fly.io/APP:TAG` or any registry's reference).
    pub image: String,
    /// Environment of the machine's processes: the [`crate::SPEC_ENV`] only, never a secret.
    pub env: BTreeMap<String, String>,
    /// CPU and memory.
    pub guest: Guest,
    /// What flyd does when the main process exits: always `{"policy": "no"}`.
    pub restart: Restart,
    /// Destroy the machine once its main process has exited (ephemeral mode).
    pub auto_destroy: bool,
    /// Files written into the machine before its process starts: the secrets, each from an
    /// app secret (`secret_name`), never inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// The one process: `airlock serve`, without the app's secrets in its environment.
    pub processes: Vec<Process>,
    /// Labels: `airlock_session`, `airlock_name`, `airlock_mode`.
    pub metadata: BTreeMap<String, String>,
}

/// `fly.MachineGuest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    /// `shared` or `performance`.
    pub cpu_kind: String,
    /// Number of CPUs.
    pub cpus: u32,
    /// Memory in MiB, a multiple of 256.
    pub memory_mb: u32,
}

/// `fly.MachineRestart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    /// `no`, `on-failure` or `always`; airlock sends `no`.
    pub policy: String,
}

/// `fly.File`: one of `raw_value` (base64, inline in the config) or `secret_name` (an app
/// secret holding the base64 content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Absolute path in the machine.
    pub guest_path: String,
    /// The app secret holding the file's content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The content, base64 (airlock never uses it for a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value: Option<String>,
    /// Permission bits as chmod(2) takes them (airlock: 0o400 = 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// `fly.MachineProcess`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// The command line (overrides the image's entrypoint and cmd).
    pub exec: Vec<String>,
    /// Ignore the app's secrets: none of them becomes an environment variable of the process.
    pub ignore_app_secrets: bool,
}

/// `MachineExecRequest` (`POST /v1/apps/{app}/machines/{id}/exec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// argv (the `cmd` string form is deprecated).
    pub command: Vec<String>,
    /// The whole standard input, as one string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Seconds before the command is killed.
    pub timeout: u64,
}

/// `flydv1.ExecResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResponse {
    /// Exit status (absent: 0).
    #[serde(default)]
    pub exit_code: i32,
    /// The signal that ended the command, if one did.
    #[serde(default)]
    pub exit_signal: i32,
    /// Standard output.
    #[serde(default)]
    pub stdout: String,
    /// Standard error.
    #[serde(default)]
    pub stderr: String,
}

/// `SetAppSecretRequest` (`POST /v1/apps/{app}/secrets/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSecretRequest {
    /// The secret's value.
    pub value: String,
}

/// `SetAppSecretResponse`, the field airlock reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSecretResponse {
    /// The app secrets' version after the change.
    #[serde(default)]
    pub version: u64,
}

/// A machine as `GET`/`POST …/machines` return it, the fields airlock reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// The machine's id.
    pub id: String,
    /// Its state (`created`, `starting`, `started`, `stopping`, `stopped`, `destroyed`, …).
    #[serde(default)]
    pub state: String,
    /// Its region.
    #[serde(default)]
    pub region: String,
    /// Its configuration (metadata included).
    #[serde(default)]
    pub config: Option<MachineConfigSeen>,
    /// The latest events, newest first.
    #[serde(default)]
    pub events: Vec<MachineEvent>,
}

/// The part of a machine's configuration airlock reads back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineConfigSeen {
    /// Its metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// `MachineEvent`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineEvent {
    /// `launch`, `start`, `exit`, …
    #[serde(default, rename = "type")]
    pub kind: String,
    /// `created`, `started`, `failed`, …
    #[serde(default)]
    pub status: String,
}

/// The error body of the Machines API: `{"error": "...", "status": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The message.
    #[serde(default)]
    pub error: String,
}

/// `GET https://api.fly.io/api/v1/apps/{app}/logs?instance=ID`: a JSON:API document (the
/// route `fly logs` uses; fly.io/docs/monitoring/logs-api-options).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogsResponse {
    /// The entries, oldest first.
    #[serde(default)]
    pub data: Vec<LogData>,
    /// The paging cursor.
    #[serde(default)]
    pub meta: LogsMeta,
}

/// One entry of [`LogsResponse`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogData {
    /// The entry.
    #[serde(default)]
    pub attributes: LogEntry,
}

/// A log line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    /// The line.
    #[serde(default)]
    pub message: String,
}

/// The cursor of [`LogsResponse`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogsMeta {
    /// Pass as `next_token` for the entries after these (nanoseconds since the epoch).
    #[serde(default)]
    pub next_token: String,
}
