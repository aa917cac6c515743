//! Exit statuses and error reporting, following `docker run`: the command's own status, 125 when
//! airlock itself fails, 126 when the command cannot be executed, 127 when it is not found.

/// airlock itself failed.
pub(crate) const FAILURE: i32 = 125;

/// An error carrying the exit status it should produce.
#[derive(Debug)]
pub(crate) struct ExitError {
    pub(crate) code: i32,
    pub(crate) error: anyhow::Error,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for ExitError {}

/// Wraps `error` so that it exits with `code`.
pub(crate) fn with_code(code: i32, error: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(ExitError { code, error })
}

/// The exit status `err` produces (its [`ExitError`] code, else [`FAILURE`]).
pub(crate) fn code_of(err: &anyhow::Error) -> i32 {
    err.downcast_ref::<ExitError>().map_or(FAILURE, |e| e.code)
}

/// The exit status of `err` and the error to print (the one an [`ExitError`] wraps).
fn split(err: &anyhow::Error) -> (i32, &anyhow::Error) {
    match err.downcast_ref::<ExitError>() {
        Some(e) => (e.code, &e.error),
        None => (FAILURE, err),
    }
}

/// The one line that reports `err`: "airlock: " then each error of the chain once, joined by
/// ": ". Every error in the workspace prints only its own message and leaves its cause to
/// `source()` (or carries the cause's text and no source), so walking the chain repeats nothing.
/// A message that already names airlock as the party at fault (the proxy's blame prefix) is not
/// prefixed again.
pub(crate) fn render(err: &anyhow::Error) -> String {
    let mut msg = String::new();
    for (i, cause) in err.chain().enumerate() {
        let text = cause.to_string();
        if i == 0 {
            if !text.starts_with("airlock: ") {
                msg.push_str("airlock: ");
            }
        } else {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Prints `err` once with its chain and returns the exit status to use. A broken pipe (the
/// reader of our output went away) is not an error worth a message.
pub(crate) fn report(err: &anyhow::Error) -> i32 {
    let (code, err) = split(err);
    let broken_pipe = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            // --json output written through serde_json keeps the I/O error inside its own.
            || c.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return code;
    }
    let msg = render(err);
    eprintln!("{msg}");
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sandbox::{SandboxError, Step};

    /// No ": "-separated segment occurs twice and "airlock:" starts the line and appears once.
    fn assert_once(msg: &str) {
        assert!(msg.starts_with("airlock: "), "{msg}");
        assert_eq!(msg.matches("airlock:").count(), 1, "{msg}");
        // The ": "-separated segments: a long one (a message ending) occurs once in the whole line,
        // a short one (an errno name) not twice as a segment.
        let segments: Vec<&str> = msg.split(": ").collect();
        for (n, s) in segments.iter().enumerate() {
            assert!(
                !segments[n + 1..].contains(s),
                "segment {s:?} repeated in {msg:?}"
            );
            if s.len() >= 12 {
                assert_eq!(msg.matches(s).count(), 1, "{s:?} repeated in {msg:?}");
            }
        }
    }

    fn io(kind: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(kind)
    }

    #[test]
    fn chains_are_printed_once() {
        let sandbox = || {
            anyhow::Error::new(SandboxError::Io {
                step: Step::Mounts,
                what: "cannot bind /work".into(),
                source: io(libc::EACCES),
            })
        };
        let cases = vec![
            sandbox(),
            sandbox().context("cannot start the sandbox"),
            with_code(126, sandbox().context("cannot start the sandbox")),
            with_code(
                125,
                anyhow::Error::new(io(libc::ENOSPC)).context("cannot write x"),
            ),
            anyhow::Error::new(SandboxError::Init {
                step: Some(Step::Exec),
                code: 127,
                message: "command not found: nope".into(),
            }),
            anyhow::Error::new(airlock_session::SessionError::Io {
                what: "cannot read",
                path: "/x/y".into(),
                error: io(libc::ENOENT),
            })
            .context("cannot open session abc"),
            anyhow::Error::new(io(libc::EPERM)).context("cannot write /x/policy.toml"),
            anyhow::anyhow!("airlock: cannot use the proxy socket handed over by the sandbox"),
        ];
        for e in cases {
            let msg = render(split(&e).1);
            assert_once(&msg);
        }
        let msg = render(&sandbox().context("cannot start the sandbox"));
        assert_eq!(
            msg,
            "airlock: cannot start the sandbox: cannot bind /work: Permission denied (os error 13)"
        );
    }

    #[test]
    fn exit_codes_survive_the_chain() {
        let e = with_code(127, anyhow::anyhow!("command not found: nope"));
        assert_eq!(code_of(&e), 127);
        assert_eq!(render(split(&e).1), "airlock: command not found: nope");
        assert_eq!(code_of(&anyhow::anyhow!("plain")), FAILURE);
    }
}
