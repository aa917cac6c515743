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

/// Prints `err` once with its chain and returns the exit status to use. A broken pipe (the
/// reader of our output went away) is not an error worth a message.
pub(crate) fn report(err: &anyhow::Error) -> i32 {
    let (code, err) = match err.downcast_ref::<ExitError>() {
        Some(e) => (e.code, &e.error),
        None => (FAILURE, err),
    };
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
    let mut msg = format!("airlock: {err}");
    for cause in err.chain().skip(1) {
        // Errors that already print their source (thiserror's "{what}: {source}") are not
        // repeated.
        let cause = cause.to_string();
        if !msg.contains(&cause) {
            msg.push_str(&format!(": {cause}"));
        }
    }
    eprintln!("{msg}");
    code
}
