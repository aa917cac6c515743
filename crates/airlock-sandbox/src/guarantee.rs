//! The guarantees of the threat model as a type: what the sandbox (the agent and everything it
//! starts, assumed hostile) must not be able to do. Numbered as in DESIGN.md's threat model and
//! `docs/threat-model.md`, which says for each where it is enforced and what proves it.
//!
//! Every `airlock selftest` check is tagged with the guarantee it attacks; the battery reports a
//! guarantee with no check on a backend as "not covered", never as passed.

use serde::{Serialize, Serializer};

/// One guarantee of the threat model (DESIGN.md, "Threat model"; docs/threat-model.md rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Guarantee {
    /// 1. Read no host secret (home dotfiles, keys, tokens, other users' files) and no
    ///    environment variable it was not given.
    HostSecrets,
    /// 2. Write nothing the host later reads or executes: outside the workspace view, and inside
    ///    it nothing reaches the host before a merge.
    HostWrites,
    /// 3. Reach no network peer but the supervisor's proxy and DNS.
    Network,
    /// 4. Learn no real credential, even by echoing it back from an allowed host.
    Credentials,
    /// 5. See or signal no host process; share no IPC, hostname or other namespace.
    Processes,
    /// 6. Neither outlive its session nor take the host down (memory, pids, disk, CPU).
    Lifetime,
    /// 7. Change neither the policy, nor the hook, nor the agent's managed settings.
    PolicyAndSettings,
    /// 8. Make no host process act on what it wrote (git, tmux, an editor, a shell).
    HostActsOnOutput,
    /// Not a guarantee of its own: kernel interfaces a sandboxed program has no use for, whose
    /// bugs would break all of the above (seccomp, no capabilities, `no_new_privs`).
    KernelSurface,
}

impl Guarantee {
    /// Every guarantee, in the threat model's order.
    pub const ALL: [Guarantee; 9] = [
        Guarantee::HostSecrets,
        Guarantee::HostWrites,
        Guarantee::Network,
        Guarantee::Credentials,
        Guarantee::Processes,
        Guarantee::Lifetime,
        Guarantee::PolicyAndSettings,
        Guarantee::HostActsOnOutput,
        Guarantee::KernelSurface,
    ];

    /// The guarantee's label in reports and `selftest --json` (stable: scripts read it), its
    /// number first: `"1 host secrets"`, …, `"kernel surface"`.
    pub fn label(self) -> &'static str {
        match self {
            Guarantee::HostSecrets => "1 host secrets",
            Guarantee::HostWrites => "2 host writes",
            Guarantee::Network => "3 network",
            Guarantee::Credentials => "4 credentials",
            Guarantee::Processes => "5 processes and IPC",
            Guarantee::Lifetime => "6 lifetime and resources",
            Guarantee::PolicyAndSettings => "7 policy, hook and settings",
            Guarantee::HostActsOnOutput => "8 host acts on sandbox output",
            Guarantee::KernelSurface => "kernel surface",
        }
    }
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl Serialize for Guarantee {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_numbered_in_order() {
        let labels: Vec<_> = Guarantee::ALL.iter().map(|g| g.label()).collect();
        let mut sorted = labels.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), labels.len());
        for (i, g) in Guarantee::ALL[..8].iter().enumerate() {
            assert!(g.label().starts_with(&format!("{} ", i + 1)), "{g}");
        }
        assert_eq!(
            serde_json::to_string(&Guarantee::Network).expect("serialises"),
            "\"3 network\""
        );
    }
}
