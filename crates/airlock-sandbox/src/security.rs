//! Locking down stage 2 (and so everything it starts): capabilities dropped, `no_new_privs`,
//! Landlock, and the seccomp filter. Applied after the root is built and before the command is
//! forked, so the command inherits all of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use caps::CapSet;
use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, ABI,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::SandboxError;

/// Drops every capability (bounding, ambient, inheritable, permitted, effective) and locks the
/// securebits so that even a uid-0 invoker regains none on exec.
pub(crate) fn drop_capabilities() -> Result<(), SandboxError> {
    const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
    const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
    const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
    const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
    const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;
    let bits = SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_SETUID_FIXUP
        | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED
        | SECBIT_NO_CAP_AMBIENT_RAISE
        | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    // SAFETY: PR_SET_SECUREBITS takes an integer argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) };
    if rc != 0 {
        return Err(SandboxError::sys(
            "cannot lock securebits",
            nix::errno::Errno::last(),
        ));
    }
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
            SandboxError::Setup(format!("cannot drop {cap} from the bounding set: {e}"))
        })?;
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set)
            .map_err(|e| SandboxError::Setup(format!("cannot clear {set:?} capabilities: {e}")))?;
    }
    Ok(())
}

/// Sets `no_new_privs`: no exec can gain privileges (setuid bits, file capabilities).
pub(crate) fn no_new_privs() -> Result<(), SandboxError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SandboxError::sys(
            "cannot set no_new_privs",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// Applies Landlock with the best ABI the kernel offers: read and execute anywhere in the (already
/// minimal) view, write only in `writable`; abstract unix sockets and signals scoped to the
/// sandbox. Returns a short description of what is enforced, for the audit trail and `doctor`.
pub(crate) fn landlock(writable: &[PathBuf]) -> Result<String, SandboxError> {
    let abi = ABI::V6;
    let err = |e: landlock::RulesetError| SandboxError::Setup(format!("landlock: {e}"));
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(writable, AccessFs::from_all(abi)))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced".to_string(),
        RulesetStatus::PartiallyEnforced => "partially enforced (older kernel ABI)".to_string(),
        RulesetStatus::NotEnforced => "not available on this kernel".to_string(),
    })
}

/// One denied system call: its number and why it is denied.
struct Deny {
    nr: libc::c_long,
    why: &'static str,
}

macro_rules! deny {
    ($($name:ident => $why:literal,)*) => {
        &[$(Deny { nr: libc::$name, why: $why },)*]
    };
}

/// System calls refused outright with EPERM. The sandbox has no capabilities, so most of these
/// would fail anyway; the filter is defence in depth against kernel bugs reachable through them.
const DENIED: &[Deny] = deny! {
    SYS_ptrace => "reading or steering other processes",
    SYS_process_vm_readv => "reading another process's memory",
    SYS_process_vm_writev => "writing another process's memory",
    SYS_pidfd_getfd => "stealing another process's file descriptors",
    SYS_kcmp => "probing other processes' kernel objects",
    SYS_mount => "changing the filesystem view",
    SYS_umount2 => "uncovering hidden paths",
    SYS_pivot_root => "changing the root",
    SYS_chroot => "changing the root",
    SYS_move_mount => "new mount API",
    SYS_open_tree => "new mount API: cloning mounts",
    SYS_fsopen => "new mount API",
    SYS_fsconfig => "new mount API",
    SYS_fsmount => "new mount API",
    SYS_fspick => "new mount API",
    SYS_mount_setattr => "changing mount flags",
    SYS_setns => "joining other namespaces",
    SYS_kexec_load => "replacing the kernel",
    SYS_kexec_file_load => "replacing the kernel",
    SYS_init_module => "loading kernel modules",
    SYS_finit_module => "loading kernel modules",
    SYS_delete_module => "unloading kernel modules",
    SYS_bpf => "eBPF: large kernel attack surface",
    SYS_perf_event_open => "performance counters: side channels and kernel attack surface",
    SYS_userfaultfd => "a common kernel-exploit primitive",
    SYS_keyctl => "the kernel keyring is not namespaced",
    SYS_add_key => "the kernel keyring is not namespaced",
    SYS_request_key => "the kernel keyring is not namespaced",
    SYS_io_uring_setup => "io_uring bypasses seccomp for the operations it performs",
    SYS_io_uring_enter => "io_uring bypasses seccomp for the operations it performs",
    SYS_io_uring_register => "io_uring bypasses seccomp for the operations it performs",
    SYS_open_by_handle_at => "opening files by handle escapes the mount view",
    SYS_name_to_handle_at => "file handles are the first half of open_by_handle_at",
    SYS_acct => "process accounting to a file of the host",
    SYS_swapon => "host memory management",
    SYS_swapoff => "host memory management",
    SYS_reboot => "the host's power state",
    SYS_syslog => "the kernel log may hold host secrets and addresses",
    SYS_settimeofday => "the host clock",
    SYS_clock_settime => "the host clock",
    SYS_clock_adjtime => "the host clock",
    SYS_adjtimex => "the host clock",
    SYS_quotactl => "host filesystem quotas",
    SYS_quotactl_fd => "host filesystem quotas",
    SYS_vhangup => "hanging up terminals",
    SYS_fanotify_init => "watching filesystems outside the view",
    SYS_lookup_dcookie => "kernel profiling interface",
};

#[cfg(target_arch = "x86_64")]
const DENIED_ARCH: &[Deny] = deny! {
    SYS_iopl => "raw I/O port access",
    SYS_ioperm => "raw I/O port access",
    SYS_modify_ldt => "a common kernel-exploit primitive",
    SYS_uselib => "obsolete loader interface",
};

#[cfg(not(target_arch = "x86_64"))]
const DENIED_ARCH: &[Deny] = &[];

const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

fn cond(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, len, op, value)
        .map_err(|e| SandboxError::Setup(format!("seccomp condition: {e}")))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conds).map_err(|e| SandboxError::Setup(format!("seccomp rule: {e}")))
}

fn target_arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::Setup(format!("seccomp: unsupported architecture: {e}")))
}

/// The main filter: EPERM for the denied calls and the argument-dependent rules below; every
/// other call allowed. Calls of another architecture's ABI are killed by seccompiler's arch check.
fn main_filter() -> Result<BpfProgram, SandboxError> {
    use SeccompCmpArgLen::{Dword, Qword};
    use SeccompCmpOp::{Eq, MaskedEq, Ne};
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for d in DENIED.iter().chain(DENIED_ARCH) {
        let _ = d.why;
        rules.insert(d.nr, Vec::new());
    }
    // New namespaces (a new user namespace would hand back every capability inside it).
    let ns_rules = |arg: u8| -> Result<Vec<SeccompRule>, SandboxError> {
        NAMESPACE_FLAGS
            .iter()
            .map(|f| rule(vec![cond(arg, Qword, MaskedEq(*f), *f)?]))
            .collect()
    };
    rules.insert(libc::SYS_unshare, ns_rules(0)?);
    rules.insert(libc::SYS_clone, ns_rules(0)?);
    // Terminal input injection: TIOCSTI pushes bytes into a terminal's input queue, TIOCLINUX
    // can do the same on a virtual console. ioctl's request is 32-bit: compare the low dword only,
    // so high garbage bits cannot slip past.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![cond(1, Dword, Eq, libc::TIOCSTI)?])?,
            rule(vec![cond(1, Dword, Eq, libc::TIOCLINUX)?])?,
        ],
    );
    // Socket families: unix, IPv4, IPv6, and netlink for routing queries (getaddrinfo,
    // getifaddrs) only. Packet sockets, vsock, bluetooth and the rest are refused.
    let af = |v: libc::c_int| u64::try_from(v).unwrap_or(u64::MAX);
    rules.insert(
        libc::SYS_socket,
        vec![
            rule(vec![
                cond(0, Dword, Ne, af(libc::AF_UNIX))?,
                cond(0, Dword, Ne, af(libc::AF_INET))?,
                cond(0, Dword, Ne, af(libc::AF_INET6))?,
                cond(0, Dword, Ne, af(libc::AF_NETLINK))?,
            ])?,
            rule(vec![
                cond(0, Dword, Eq, af(libc::AF_NETLINK))?,
                cond(2, Dword, Ne, af(libc::NETLINK_ROUTE))?,
            ])?,
        ],
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(libc::EPERM).unwrap_or(1)),
        target_arch()?,
    )
    .map_err(|e| SandboxError::Setup(format!("seccomp filter: {e}")))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Setup(format!("seccomp: {e}")))
}

/// clone3 passes its flags in a struct seccomp cannot read, so it is refused with ENOSYS, which
/// makes libc fall back to clone(2), whose flags the main filter checks.
fn clone3_filter() -> Result<BpfProgram, SandboxError> {
    let mut rules = BTreeMap::new();
    rules.insert(libc::SYS_clone3, Vec::new());
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(libc::ENOSYS).unwrap_or(38)),
        target_arch()?,
    )
    .map_err(|e| SandboxError::Setup(format!("seccomp filter: {e}")))?
    .try_into()
    .map_err(|e: seccompiler::BackendError| SandboxError::Setup(format!("seccomp: {e}")))
}

/// x86_64 only: the x32 ABI reuses the x86_64 audit arch with bit 30 set in the syscall number,
/// so a filter keyed on x86_64 numbers would not see x32 calls. Refuse them all.
#[cfg(target_arch = "x86_64")]
fn x32_filter() -> BpfProgram {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        ins(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        ins(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ins(JSET_K, 0, 1, 0x4000_0000),
        ins(RET_K, 0, 0, RET_KILL_PROCESS),
        ins(RET_K, 0, 0, RET_ALLOW),
    ]
}

/// Installs the seccomp filters on the calling thread. Requires `no_new_privs`.
pub(crate) fn seccomp() -> Result<(), SandboxError> {
    let mut programs = vec![main_filter()?, clone3_filter()?];
    #[cfg(target_arch = "x86_64")]
    programs.push(x32_filter());
    for p in &programs {
        seccompiler::apply_filter(p)
            .map_err(|e| SandboxError::Setup(format!("cannot install the seccomp filter: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile() {
        assert!(main_filter().expect("main").len() > DENIED.len());
        assert!(!clone3_filter().expect("clone3").is_empty());
    }

    #[test]
    fn every_denied_call_has_a_reason() {
        for d in DENIED.iter().chain(DENIED_ARCH) {
            assert!(!d.why.is_empty(), "syscall {} has no reason", d.nr);
        }
    }
}
