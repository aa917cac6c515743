//! Forking without undefined behaviour: a fork is only taken by a single-threaded process
//! (checked, not assumed: `/proc/self/task` has one entry), and `execve`'s argument arrays are
//! laid out before the fork, so the child allocates nothing between fork and exec (after a fork
//! only async-signal-safe work is allowed: fork(2), signal-safety(7)).

use std::ffi::{c_char, CString};

use nix::errno::Errno;
use nix::unistd::{fork, ForkResult};

use crate::{SandboxError, Step};

/// The number of threads of this process (entries of `/proc/self/task`).
///
/// # Errors
/// `/proc/self/task` cannot be read (no /proc mounted): the caller fails closed.
pub(crate) fn thread_count() -> Result<usize, std::io::Error> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Forks after checking that this process has one thread, so the child may run ordinary code
/// (allocate, take locks) before it execs or exits: no other thread can have held a lock or been
/// inside the allocator at the moment of the fork.
///
/// # Errors
/// The process has other threads, its thread count cannot be read, or fork(2) fails; `what`
/// names the process being forked.
pub(crate) fn fork_single_threaded(step: Step, what: &str) -> Result<ForkResult, SandboxError> {
    let threads = thread_count().map_err(|e| {
        SandboxError::io(
            step,
            format!("cannot count the threads before forking {what}"),
            e,
        )
    })?;
    if threads != 1 {
        return Err(SandboxError::Setup(format!(
            "refusing to fork {what}: this process has {threads} threads (it must have one); \
             this is an airlock bug"
        )));
    }
    // SAFETY: the process has exactly one thread (checked just above; nothing between the check
    // and the fork starts a thread), so the child inherits no lock held by another thread and may
    // run arbitrary code.
    unsafe { fork() }.map_err(|e| SandboxError::sys(step, format!("cannot fork {what}"), e))
}

/// `execve`'s three arguments, complete before the fork: the NUL-terminated strings and the
/// NULL-terminated pointer arrays into them. [`ExecArgs::exec`] allocates nothing.
#[derive(Debug)]
pub(crate) struct ExecArgs {
    path: CString,
    // The strings the pointer arrays point into: a CString's bytes live on the heap and do not
    // move when the Vec (or this struct) moves; they are never mutated or dropped before `self`.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
}

impl ExecArgs {
    /// Lays out `program`, `argv` and `env` (as `KEY=value`) for execve(2).
    ///
    /// # Errors
    /// A NUL byte in the path, an argument or the environment.
    pub(crate) fn new(
        program: &std::path::Path,
        argv: &[String],
        env: &[(String, String)],
    ) -> Result<ExecArgs, SandboxError> {
        let nul = |what: &str| SandboxError::Setup(format!("{what} contains a NUL byte"));
        let path = CString::new(program.as_os_str().as_encoded_bytes())
            .map_err(|_| nul("program path"))?;
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| nul("an argument")))
            .collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")).map_err(|_| nul("the environment")))
            .collect::<Result<_, _>>()?;
        let nulled = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(ExecArgs {
            argv_ptrs: nulled(&argv),
            envp_ptrs: nulled(&envp),
            path,
            _argv: argv,
            _envp: envp,
        })
    }

    /// execve(2) with the prepared arrays; returns only on failure, with its errno. Allocates
    /// nothing, so it may run between fork and exec.
    pub(crate) fn exec(&self) -> Errno {
        // SAFETY: `path` is a NUL-terminated string and both arrays are NULL-terminated arrays
        // of pointers to NUL-terminated strings owned by `self`, alive for the whole call.
        unsafe {
            libc::execve(
                self.path.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
            )
        };
        Errno::last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_args_are_null_terminated() {
        let a = ExecArgs::new(
            std::path::Path::new("/bin/true"),
            &["true".into(), "x".into()],
            &[("A".into(), "b".into())],
        )
        .expect("args");
        assert_eq!(a.argv_ptrs.len(), 3);
        assert!(a.argv_ptrs[2].is_null());
        assert_eq!(a.envp_ptrs.len(), 2);
        assert!(a.envp_ptrs[1].is_null());
        assert!(ExecArgs::new(std::path::Path::new("/bin/true"), &["a\0b".into()], &[]).is_err());
    }

    #[test]
    fn a_threaded_process_is_not_forked() {
        // The test harness runs tests on threads: this process has more than one.
        let _t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(2)));
        assert!(thread_count().expect("count") > 1);
        let e = fork_single_threaded(Step::Exec, "the test").expect_err("must refuse");
        assert!(e.to_string().contains("refusing to fork the test"), "{e}");
    }
}
