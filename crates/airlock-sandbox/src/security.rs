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
use crate::Step;

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
            Step::Capabilities,
            "cannot lock securebits",
            nix::errno::Errno::last(),
        ));
    }
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
            SandboxError::failed(
                Step::Capabilities,
                format!("cannot drop {cap} from the bounding set: {e}"),
            )
        })?;
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| {
            SandboxError::failed(
                Step::Capabilities,
                format!("cannot clear {set:?} capabilities: {e}"),
            )
        })?;
    }
    Ok(())
}

/// For a pid 1 whose engine dropped every capability (`--cap-drop ALL`): checks that the
/// bounding, permitted, effective, inheritable and ambient sets are all empty. Dropping one that
/// is left would need CAP_SETPCAP; if any is left, [`drop_capabilities`] is tried and its failure
/// is the answer (fail closed: a container that kept a capability is not run).
pub(crate) fn ensure_no_capabilities() -> Result<(), SandboxError> {
    let sets = [
        CapSet::Bounding,
        CapSet::Permitted,
        CapSet::Effective,
        CapSet::Inheritable,
        CapSet::Ambient,
    ];
    let mut left = Vec::new();
    let mut permitted_or_inheritable = false;
    for set in sets {
        let held = match caps::read(None, set) {
            Ok(h) => h,
            // A kernel without ambient capabilities to read (gVisor answers PR_CAP_AMBIENT with
            // EINVAL): none can be ambient unless it is both permitted and inheritable
            // (capabilities(7), "the ambient set obeys the invariant"), both read empty above.
            Err(_) if matches!(set, CapSet::Ambient) && !permitted_or_inheritable => continue,
            Err(e) => {
                return Err(SandboxError::failed(
                    Step::Capabilities,
                    format!("cannot read {set:?} capabilities: {e}"),
                ))
            }
        };
        if matches!(set, CapSet::Permitted | CapSet::Inheritable) && !held.is_empty() {
            permitted_or_inheritable = true;
        }
        if !held.is_empty() {
            left.push(format!("{set:?}: {held:?}"));
        }
    }
    if left.is_empty() {
        return Ok(());
    }
    drop_capabilities().map_err(|e| {
        SandboxError::failed(
            Step::Capabilities,
            format!(
                "the container engine left capabilities ({}) and they cannot be dropped: {e}; the \
             engine must honour --cap-drop ALL",
                left.join("; ")
            ),
        )
    })
}

/// Sets `no_new_privs`: no exec can gain privileges (setuid bits, file capabilities).
pub(crate) fn no_new_privs() -> Result<(), SandboxError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SandboxError::sys(
            Step::Capabilities,
            "cannot set no_new_privs",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// The Landlock ABI that added `LANDLOCK_ACCESS_FS_RESOLVE_UNIX` (connect(2) and sendmsg(2) to
/// pathname unix sockets; include/uapi/linux/landlock.h, merged in April 2026). From this ABI on, Landlock
/// alone keeps the sandbox off host unix sockets; below it, the connect gate does
/// ([`crate::unix_gate`]).
pub(crate) const LANDLOCK_RESOLVE_UNIX_ABI: i64 = 9;

/// How the sandbox is kept off unix sockets it did not create (DESIGN.md guarantee 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnixSockets {
    /// Landlock's `LANDLOCK_ACCESS_FS_RESOLVE_UNIX`, handled and granted nowhere: only sockets
    /// created in the sandbox's own Landlock domain can be reached, by connect and by sendmsg.
    Landlock,
    /// A seccomp user notification on connect(2), answered by the supervisor, and no unix
    /// datagram sockets (their sendto(2) address cannot be checked without a race).
    Gate,
    /// The runtime's own kernel (gVisor), where neither exists: it has no Landlock, no seccomp
    /// user notification and no `NETLINK_SOCK_DIAG`. Its sockets are its own; a host socket is
    /// reached only through its host-UDS support, which the container backend limits to
    /// connecting (`host-uds=open`), which opens every host socket in the sandbox's mounts: the
    /// command gets no unix socket but socketpair(2)'s ([`no_unix_sockets_filter`]).
    Runtime,
}

impl UnixSockets {
    /// The mechanism for this kernel.
    pub(crate) fn for_this_kernel() -> UnixSockets {
        if crate::host::landlock_abi() >= LANDLOCK_RESOLVE_UNIX_ABI {
            UnixSockets::Landlock
        } else {
            UnixSockets::Gate
        }
    }
}

/// Applies Landlock with the best ABI the kernel offers: read and execute anywhere in the (already
/// minimal) view, write only in `writable`; abstract unix sockets and signals scoped to the
/// sandbox; with [`UnixSockets::Landlock`], pathname unix sockets reachable only when created
/// inside (the right is handled and granted on no path, not even the writable ones, since a bind
/// mode workspace holds host sockets too). Returns a short description of what is enforced, for
/// the audit trail and `doctor`.
pub(crate) fn landlock(writable: &[PathBuf], unix: UnixSockets) -> Result<String, SandboxError> {
    let abi = match unix {
        UnixSockets::Landlock => ABI::V9,
        UnixSockets::Gate | UnixSockets::Runtime => ABI::V6,
    };
    let err =
        |e: landlock::RulesetError| SandboxError::failed(Step::Landlock, format!("landlock: {e}"));
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(
            ["/"],
            AccessFs::from_read(abi) & !AccessFs::ResolveUnix,
        ))
        .map_err(err)?
        .add_rules(path_beneath_rules(
            writable,
            AccessFs::from_all(abi) & !AccessFs::ResolveUnix,
        ))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    if unix == UnixSockets::Landlock && status.ruleset != RulesetStatus::FullyEnforced {
        // The kernel said ABI 9 but did not enforce it: the only guard of unix sockets is missing.
        return Err(SandboxError::failed(
            Step::Landlock,
            "landlock: pathname unix socket restriction (ABI 9) was not enforced",
        ));
    }
    let unix_note = match unix {
        UnixSockets::Landlock => "; unix sockets: Landlock",
        UnixSockets::Gate => "; unix sockets: connect gate",
        UnixSockets::Runtime => "; unix sockets: the runtime's kernel",
    };
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => format!("fully enforced{unix_note}"),
        RulesetStatus::PartiallyEnforced => {
            format!("partially enforced (older kernel ABI){unix_note}")
        }
        RulesetStatus::NotEnforced => format!("not available on this kernel{unix_note}"),
    })
}

/// One denied system call: its number, libc's name for it (`SYS_` + the name seccomp profiles and
/// libseccomp use) and why it is denied.
struct Deny {
    nr: libc::c_long,
    name: &'static str,
    why: &'static str,
}

macro_rules! deny {
    ($($name:ident => $why:literal,)*) => {
        &[$(Deny { nr: libc::$name, name: stringify!($name), why: $why },)*]
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
        .map_err(|e| SandboxError::failed(Step::Seccomp, format!("seccomp condition: {e}")))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conds)
        .map_err(|e| SandboxError::failed(Step::Seccomp, format!("seccomp rule: {e}")))
}

fn target_arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| {
        SandboxError::failed(
            Step::Seccomp,
            format!("seccomp: unsupported architecture: {e}"),
        )
    })
}

/// One rule of the sandbox's seccomp policy as data, for engines that take a profile instead of
/// a filter program (the OCI seccomp JSON of container runtimes, `crates/airlock-container`).
/// Every call not named by a rule is allowed, as in `main_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallRule {
    /// The system call's name as libseccomp spells it (`ptrace`, `socket`).
    pub name: String,
    /// The errno the call fails with when the rule matches.
    pub errno: i32,
    /// Conditions that must all hold for the rule to match (none: always).
    pub args: Vec<ArgCheck>,
    /// Why the call is refused.
    pub why: &'static str,
}

/// A condition on one system call argument: `(args[index] & mask) == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCheck {
    pub index: u8,
    pub mask: u64,
    pub value: u64,
}

/// The low 32 bits: arguments the kernel reads as `int` (a check on all 64 bits would let high
/// garbage bits slip past).
const INT_MASK: u64 = 0xffff_ffff;
/// Socket families the sandbox may use (`main_filter`); every other family below this bound is
/// refused by rule (the kernel knows no family at or above it: AF_MAX is 46 in Linux 6.x).
const FAMILY_BOUND: u64 = 64;
/// Netlink protocols are below MAX_LINKS (32, include/uapi/linux/netlink.h).
const NETLINK_PROTOCOLS: u64 = 32;

/// The seccomp policy of `seccomp` as a list of rules, from the same tables: the denied calls,
/// namespace flags of clone/unshare, terminal injection ioctls, socket families and netlink
/// protocols, clone3 (ENOSYS), and, where this kernel needs the connect gate, unix datagram
/// sockets (EACCES). The allowed socket families are expressed as one rule per refused family,
/// since a profile's conditions on one argument cannot be combined with "and not".
pub fn seccomp_rules() -> Vec<SyscallRule> {
    let eperm = libc::EPERM;
    let name = |d: &Deny| d.name.strip_prefix("SYS_").unwrap_or(d.name).to_string();
    let mut out: Vec<SyscallRule> = DENIED
        .iter()
        .chain(DENIED_ARCH)
        .map(|d| SyscallRule {
            name: name(d),
            errno: eperm,
            args: Vec::new(),
            why: d.why,
        })
        .collect();
    let check = |index, mask, value| ArgCheck { index, mask, value };
    for sys in ["unshare", "clone"] {
        for f in NAMESPACE_FLAGS {
            out.push(SyscallRule {
                name: sys.into(),
                errno: eperm,
                args: vec![check(0, *f, *f)],
                why: "new namespaces (a new user namespace hands back every capability)",
            });
        }
    }
    for req in [libc::TIOCSTI, libc::TIOCLINUX] {
        out.push(SyscallRule {
            name: "ioctl".into(),
            errno: eperm,
            args: vec![check(1, INT_MASK, req)],
            why: "terminal input injection",
        });
    }
    let af = |v: libc::c_int| u64::try_from(v).unwrap_or(u64::MAX);
    let allowed = [
        libc::AF_UNIX,
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_NETLINK,
    ]
    .map(af);
    for family in (0..FAMILY_BOUND).filter(|f| !allowed.contains(f)) {
        out.push(SyscallRule {
            name: "socket".into(),
            errno: eperm,
            args: vec![check(0, INT_MASK, family)],
            why: "socket families other than unix, IPv4, IPv6 and netlink",
        });
    }
    for proto in (0..NETLINK_PROTOCOLS).filter(|p| *p != af(libc::NETLINK_ROUTE)) {
        out.push(SyscallRule {
            name: "socket".into(),
            errno: eperm,
            args: vec![
                check(0, INT_MASK, af(libc::AF_NETLINK)),
                check(2, INT_MASK, proto),
            ],
            why: "netlink other than routing queries",
        });
    }
    out.push(SyscallRule {
        name: "clone3".into(),
        errno: libc::ENOSYS,
        args: Vec::new(),
        why: "clone3's flags are out of seccomp's reach; libc falls back to clone",
    });
    if UnixSockets::for_this_kernel() == UnixSockets::Gate {
        let allowed = [libc::SOCK_STREAM, libc::SOCK_SEQPACKET].map(af);
        for sys in ["socket", "socketpair"] {
            for t in (0..=0xf).filter(|t| !allowed.contains(t)) {
                out.push(SyscallRule {
                    name: sys.into(),
                    errno: libc::EACCES,
                    args: vec![check(0, INT_MASK, af(libc::AF_UNIX)), check(1, 0xf, t)],
                    why: "unix datagram sockets could send to any host socket by path",
                });
            }
        }
    }
    out
}

/// The main filter: EPERM for the denied calls and the argument-dependent rules below; every
/// other call allowed. Calls of another architecture's ABI are killed by seccompiler's arch check.
fn main_filter() -> Result<BpfProgram, SandboxError> {
    use SeccompCmpArgLen::{Dword, Qword};
    use SeccompCmpOp::{Eq, MaskedEq, Ne};
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for d in DENIED.iter().chain(DENIED_ARCH) {
        let _ = (d.why, d.name);
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
    .map_err(|e| SandboxError::failed(Step::Seccomp, format!("seccomp filter: {e}")))?;
    filter.try_into().map_err(|e: seccompiler::BackendError| {
        SandboxError::failed(Step::Seccomp, format!("seccomp: {e}"))
    })
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
    .map_err(|e| SandboxError::failed(Step::Seccomp, format!("seccomp filter: {e}")))?
    .try_into()
    .map_err(|e: seccompiler::BackendError| {
        SandboxError::failed(Step::Seccomp, format!("seccomp: {e}"))
    })
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

/// Under [`UnixSockets::Runtime`] (gVisor): socket(2) refuses every AF_UNIX socket with EACCES;
/// socketpair(2) stays allowed. gVisor can neither tell the supervisor about a connect nor limit
/// which host sockets are reached (its `host-uds=open`, which the control socket and the egress
/// relay need, opens every host socket in the sandbox's mounts: a daemon's socket in the
/// workspace or in a bound directory), and seccomp cannot read a connect's address, so the
/// command gets no socket that could be connected or sent to by path at all. Installed by pid 1
/// after it forked the relay, which must connect to the supervisor's sockets.
fn no_unix_sockets_filter() -> Result<BpfProgram, SandboxError> {
    use SeccompCmpArgLen::Dword;
    use SeccompCmpOp::Eq;
    let af_unix = u64::try_from(libc::AF_UNIX).unwrap_or(1);
    let mut rules = BTreeMap::new();
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![cond(0, Dword, Eq, af_unix)?])?],
    );
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(libc::EACCES).unwrap_or(13)),
        target_arch()?,
    )
    .map_err(|e| SandboxError::failed(Step::Seccomp, format!("seccomp filter: {e}")))?
    .try_into()
    .map_err(|e: seccompiler::BackendError| {
        SandboxError::failed(Step::Seccomp, format!("seccomp: {e}"))
    })
}

/// Installs [`no_unix_sockets_filter`] on the calling thread (requires `no_new_privs`).
pub(crate) fn no_unix_sockets() -> Result<(), SandboxError> {
    seccompiler::apply_filter(&no_unix_sockets_filter()?).map_err(|e| {
        SandboxError::failed(
            Step::Seccomp,
            format!("cannot install the seccomp filter refusing unix sockets: {e}"),
        )
    })
}

/// Unix socket types that honour a destination address in sendto(2)/sendmsg(2): only datagram
/// ones (net/unix/af_unix.c: unix_stream_sendmsg refuses an address with EOPNOTSUPP or EISCONN,
/// unix_seqpacket_sendmsg drops it, unix_create turns SOCK_RAW into SOCK_DGRAM). seccomp cannot
/// read that address (it is in user memory, and a check of a copy races with the kernel's own
/// read), so under the connect gate the sandbox gets no unix socket that could send to one:
/// socket(2) and socketpair(2) for AF_UNIX accept only SOCK_STREAM and SOCK_SEQPACKET (the type's
/// low four bits; SOCK_NONBLOCK and SOCK_CLOEXEC live above them), everything else is EACCES.
fn unix_dgram_filter() -> Result<BpfProgram, SandboxError> {
    use SeccompCmpArgLen::Dword;
    use SeccompCmpOp::{Eq, MaskedEq};
    const SOCK_TYPE_MASK: u64 = 0xf;
    let af_unix = u64::try_from(libc::AF_UNIX).unwrap_or(1);
    let allowed = [libc::SOCK_STREAM, libc::SOCK_SEQPACKET].map(|t| u64::try_from(t).unwrap_or(0));
    let refused = || -> Result<Vec<SeccompRule>, SandboxError> {
        (0..=SOCK_TYPE_MASK)
            .filter(|t| !allowed.contains(t))
            .map(|t| {
                rule(vec![
                    cond(0, Dword, Eq, af_unix)?,
                    cond(1, Dword, MaskedEq(SOCK_TYPE_MASK), t)?,
                ])
            })
            .collect()
    };
    let mut rules = BTreeMap::new();
    rules.insert(libc::SYS_socket, refused()?);
    rules.insert(libc::SYS_socketpair, refused()?);
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(libc::EACCES).unwrap_or(13)),
        target_arch()?,
    )
    .map_err(|e| SandboxError::failed(Step::Seccomp, format!("seccomp filter: {e}")))?
    .try_into()
    .map_err(|e: seccompiler::BackendError| {
        SandboxError::failed(Step::Seccomp, format!("seccomp: {e}"))
    })
}

/// The audit architecture of this build (seccomp_data.arch), from linux/audit.h.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// The connect gate's filter, built by hand because seccompiler has no SECCOMP_RET_USER_NOTIF:
///
/// | instruction                  | why                                                      |
/// |------------------------------|----------------------------------------------------------|
/// | load `seccomp_data.arch`     |                                                          |
/// | not this arch: kill process  | another ABI's numbers mean other calls (the main filter  |
/// |                              | kills them too; this filter must not allow them)         |
/// | load `seccomp_data.nr`       |                                                          |
/// | `connect`: USER_NOTIF        | the supervisor connects on the caller's behalf, see      |
/// |                              | [`crate::unix_gate`]; x32 numbers (bit 30) do not match  |
/// |                              | and are killed by the x32 filter                         |
/// | anything else: allow         | the other filters decide                                 |
///
/// connect(2) is the only call that reaches a unix socket by path for the socket types the
/// sandbox may create (see [`unix_dgram_filter`]); io_uring, which could connect without a
/// system call, is refused by the main filter.
fn connect_notify_filter() -> BpfProgram {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    let connect = u32::try_from(libc::SYS_connect).unwrap_or(u32::MAX);
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        ins(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        ins(JEQ_K, 1, 0, AUDIT_ARCH),
        ins(RET_K, 0, 0, RET_KILL_PROCESS),
        ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ins(JEQ_K, 0, 1, connect),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_USER_NOTIF),
        ins(RET_K, 0, 0, RET_ALLOW),
    ]
}

/// Installs the connect gate's filter and returns its notification listener (close-on-exec).
/// The caller must pass the listener to the supervisor and close its own copy: whoever holds it
/// decides the sandbox's connects, and once it is closed every connect fails with ENOSYS.
fn install_connect_gate() -> Result<std::os::fd::OwnedFd, SandboxError> {
    use std::os::fd::FromRawFd;
    let prog = connect_notify_filter();
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).unwrap_or(u16::MAX),
        filter: prog.as_ptr().cast_mut().cast(),
    };
    // Waiting killably once the supervisor has the request: a non-fatal signal must not restart
    // a connect the supervisor is already making on the caller's socket (Linux 5.19; older
    // kernels refuse the flag and get the plain listener).
    for flags in [
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
    ] {
        // SAFETY: `fprog` points at `prog`, a valid BPF program that outlives the call; the
        // kernel copies it. SECCOMP_SET_MODE_FILTER with NEW_LISTENER returns a new descriptor.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &fprog as *const libc::sock_fprog,
            )
        };
        if fd >= 0 {
            let fd = i32::try_from(fd).map_err(|_| {
                SandboxError::failed(Step::Seccomp, "seccomp returned an impossible descriptor")
            })?;
            // SAFETY: the kernel just installed `fd` in our table; nothing else owns it.
            return Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        }
        let e = nix::errno::Errno::last();
        if e != nix::errno::Errno::EINVAL {
            return Err(SandboxError::sys(
                Step::Seccomp,
                "cannot install the connect gate's seccomp filter",
                e,
            ));
        }
    }
    Err(SandboxError::failed(
        Step::Seccomp,
        "cannot install the connect gate's seccomp filter: the kernel has no user \
         notifications (Linux 5.0+ needed); see `airlock doctor`",
    ))
}

/// Installs the seccomp filters on the calling thread. Requires `no_new_privs`. With
/// [`UnixSockets::Gate`] it also installs the connect gate and returns its listener.
pub(crate) fn seccomp(unix: UnixSockets) -> Result<Option<std::os::fd::OwnedFd>, SandboxError> {
    let mut programs = vec![main_filter()?, clone3_filter()?];
    #[cfg(target_arch = "x86_64")]
    programs.push(x32_filter());
    if unix == UnixSockets::Gate {
        programs.push(unix_dgram_filter()?);
    }
    for p in &programs {
        seccompiler::apply_filter(p).map_err(|e| {
            SandboxError::failed(
                Step::Seccomp,
                format!("cannot install the seccomp filter: {e}"),
            )
        })?;
    }
    match unix {
        UnixSockets::Gate => install_connect_gate().map(Some),
        UnixSockets::Landlock | UnixSockets::Runtime => Ok(None),
    }
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
    fn unix_filters_compile() {
        assert!(!unix_dgram_filter().expect("dgram").is_empty());
        assert!(!no_unix_sockets_filter().expect("no unix").is_empty());
        let notify = connect_notify_filter();
        assert!(notify
            .iter()
            .any(|i| i.k == libc::SECCOMP_RET_USER_NOTIF && i.code == 0x06));
    }

    /// The Landlock mechanism for unix sockets runs only fully enforced: below ABI 9 it is an
    /// error, never a silently open sandbox. Run on a thread of its own (no_new_privs and
    /// Landlock apply to the calling thread only), so the test process is not restricted.
    #[test]
    fn landlock_unix_mode_never_runs_unenforced() {
        let abi = crate::host::landlock_abi();
        let r = std::thread::spawn(|| {
            no_new_privs().expect("no_new_privs");
            landlock(&[PathBuf::from("/tmp")], UnixSockets::Landlock)
        })
        .join()
        .expect("thread");
        if abi >= LANDLOCK_RESOLVE_UNIX_ABI {
            assert!(r.expect("enforced").contains("unix sockets: Landlock"));
        } else {
            let e = r.expect_err("must refuse below ABI 9").to_string();
            assert!(e.contains("was not enforced"), "{e}");
        }
        assert_eq!(
            UnixSockets::for_this_kernel() == UnixSockets::Landlock,
            abi >= LANDLOCK_RESOLVE_UNIX_ABI
        );
    }

    /// The exported rules name every denied call by its libseccomp name and keep the argument
    /// rules of the filter: nothing the filter refuses is missing from a generated profile.
    #[test]
    fn exported_rules_cover_the_filter() {
        let rules = seccomp_rules();
        for d in DENIED.iter().chain(DENIED_ARCH) {
            let n = d.name.strip_prefix("SYS_").expect("libc name");
            assert!(
                rules.iter().any(|r| r.name == n && r.args.is_empty()),
                "{n} missing"
            );
        }
        let has = |name: &str, idx: u8, v: u64| {
            rules
                .iter()
                .any(|r| r.name == name && r.args.iter().any(|a| a.index == idx && a.value == v))
        };
        assert!(has("unshare", 0, libc::CLONE_NEWUSER as u64));
        assert!(has("clone", 0, libc::CLONE_NEWNET as u64));
        assert!(has("ioctl", 1, libc::TIOCSTI));
        assert!(has("socket", 0, libc::AF_PACKET as u64));
        assert!(has("socket", 0, libc::AF_VSOCK as u64));
        for ok in [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6] {
            let only = vec![ArgCheck {
                index: 0,
                mask: INT_MASK,
                value: u64::try_from(ok).expect("family"),
            }];
            assert!(!rules.iter().any(|r| r.name == "socket" && r.args == only));
        }
        assert!(rules
            .iter()
            .any(|r| r.name == "clone3" && r.errno == libc::ENOSYS));
    }

    #[test]
    fn every_denied_call_has_a_reason() {
        for d in DENIED.iter().chain(DENIED_ARCH) {
            assert!(!d.why.is_empty(), "syscall {} has no reason", d.nr);
        }
    }
}
