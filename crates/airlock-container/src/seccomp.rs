//! The container's seccomp profile, in the OCI/Docker JSON format, generated from the native
//! sandbox's table ([`airlock_sandbox::seccomp_rules`]) so the two cannot drift apart. The
//! container's pid 1 also installs the native filters before it starts the command, so this
//! profile covers the engine's part of the start and is a second layer after it.

use serde_json::{json, Value};

/// NETLINK_SOCK_DIAG (include/uapi/linux/netlink.h).
const NETLINK_SOCK_DIAG: u64 = 4;

/// Whether `r` is the native table's refusal of NETLINK_SOCK_DIAG sockets. pid 1 opens one
/// before its lockdown for the connect gate (it lists the sockets of the container's own network
/// namespace); the native filter pid 1 installs refuses it to the command again, so the command
/// sees the full native policy.
fn is_sock_diag_rule(r: &airlock_sandbox::SyscallRule) -> bool {
    r.name == "socket"
        && r.args.len() == 2
        && r.args
            .iter()
            .any(|a| a.index == 2 && a.value == NETLINK_SOCK_DIAG)
}

/// The profile as the engines take it: every call allowed unless a rule refuses it with its
/// errno; calls of another architecture's ABI fail (libseccomp's bad-architecture action), as
/// only the native one is listed. Every rule of the native table is in it except the one pid 1
/// needs before it installs the native filters itself (`is_sock_diag_rule`).
pub fn profile() -> Value {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "SCMP_ARCH_AARCH64",
        _ => "SCMP_ARCH_X86_64",
    };
    let syscalls: Vec<Value> = airlock_sandbox::seccomp_rules()
        .into_iter()
        .filter(|r| !is_sock_diag_rule(r))
        .map(|r| {
            let args: Vec<Value> = r
                .args
                .iter()
                .map(|a| {
                    json!({
                        "index": a.index,
                        "value": a.mask,
                        "valueTwo": a.value,
                        "op": "SCMP_CMP_MASKED_EQ",
                    })
                })
                .collect();
            json!({
                "names": [r.name],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": r.errno,
                "args": args,
                "comment": r.why,
            })
        })
        .collect();
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [arch],
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_refuses_what_native_refuses() {
        let p = profile();
        let calls = p["syscalls"].as_array().expect("syscalls");
        let refused = |name: &str| {
            calls
                .iter()
                .any(|c| c["names"][0] == name && c["args"].as_array().is_some_and(Vec::is_empty))
        };
        for name in [
            "ptrace",
            "mount",
            "bpf",
            "keyctl",
            "io_uring_setup",
            "setns",
            "clone3",
        ] {
            assert!(refused(name), "{name} not refused");
        }
        assert!(!refused("read"));
        let masked = calls
            .iter()
            .filter(|c| c["names"][0] == "unshare")
            .all(|c| c["args"][0]["op"] == "SCMP_CMP_MASKED_EQ");
        assert!(masked);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ALLOW");
    }
}
