//! airlock sandbox: namespaces, mounts, seccomp, Landlock, cgroups, fd passing and supervision; the only crate with unsafe code
