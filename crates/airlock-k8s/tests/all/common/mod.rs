//! A sample box request shared by the tests.

#![allow(dead_code, unreachable_pub)]

use airlock_remote::{BoxLimits, BoxRequest, BoxSecret, BoxSpec, WorkspaceSource, SPEC_VERSION};

/// The session id of [`request`].
pub const SESSION: &str = "0a1b2c3d";

/// A request with two secrets and every limit set.
pub fn request() -> BoxRequest {
    let policy = airlock_policy::Policy::from_layers(&[]).expect("default policy");
    BoxRequest {
        spec: BoxSpec {
            version: SPEC_VERSION,
            session: SESSION.into(),
            name: "fix-tests".into(),
            agent: "claude".into(),
            argv: vec![],
            env: vec![("TERM".into(), "xterm-256color".into())],
            policy,
            workspace: WorkspaceSource::Git {
                url: "https://github.com/example/repo".into(),
                rev: Some("main".into()),
                max_bytes: None,
            },
            tty: true,
            stdin: false,
            policy_secrets: Vec::new(),
        },
        image: "ghcr.io/example/airlock-agent:1".into(),
        secrets: vec![
            BoxSecret {
                name: "anthropic".into(),
                value: b"sk-ant-test-secret".to_vec(),
            },
            BoxSecret {
                name: "github_token".into(),
                value: b"ghp_test_secret".to_vec(),
            },
        ],
        limits: BoxLimits {
            memory_bytes: Some(4 << 30),
            cpu_millis: Some(2000),
            pids: Some(4096),
            disk_bytes: Some(20 << 30),
        },
    }
}
