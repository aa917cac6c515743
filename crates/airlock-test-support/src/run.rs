//! Running a command from a test and asserting on how it ended, ripgrep `tests/util.rs` style:
//! a [`Run`] keeps the command line with its output, so a failed assertion prints the command,
//! its exit status, stdout and stderr rather than a bare `left != right`.

use std::fmt;
use std::ops::Deref;
use std::process::{Command, Output};

/// A finished command: its output and the command line that produced it. Dereferences to
/// [`Output`], so `run.status` and functions taking `&Output` keep working.
#[derive(Debug)]
pub struct Run {
    command: String,
    output: Output,
}

impl Run {
    /// A run of `command` (a description for failure messages, e.g. its command line) that
    /// ended with `output`; for output gathered without [`RunExt::run`] (`wait_with_output`).
    pub fn new(command: impl Into<String>, output: Output) -> Run {
        Run {
            command: command.into(),
            output,
        }
    }

    /// The command line, as shown in failure messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Standard output, lossily decoded as UTF-8.
    pub fn stdout(&self) -> String {
        stdout(&self.output)
    }

    /// Standard error, lossily decoded as UTF-8.
    pub fn stderr(&self) -> String {
        stderr(&self.output)
    }

    /// The exit code; `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// The output, for code that wants it by value.
    pub fn into_output(self) -> Output {
        self.output
    }

    /// Asserts that the command exited with status 0.
    ///
    /// # Panics
    /// Otherwise, printing the command, its status, stdout and stderr.
    #[track_caller]
    pub fn assert_success(&self) -> &Run {
        if !self.output.status.success() {
            panic!("expected success\n{self}");
        }
        self
    }

    /// Asserts that the command exited with status `code` (not by a signal).
    ///
    /// # Panics
    /// Otherwise, printing the command, its status, stdout and stderr.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        if self.code() != Some(code) {
            panic!("expected exit status {code}\n{self}");
        }
        self
    }

    /// Asserts that the command failed: a status other than 0, or a signal.
    ///
    /// # Panics
    /// Otherwise, printing the command, its status, stdout and stderr.
    #[track_caller]
    pub fn assert_failure(&self) -> &Run {
        if self.output.status.success() {
            panic!("expected failure\n{self}");
        }
        self
    }
}

impl Deref for Run {
    type Target = Output;

    fn deref(&self) -> &Output {
        &self.output
    }
}

/// The failure report: command, status, stdout and stderr, each labelled.
impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }
}

/// [`Command::output`] that keeps the command line: `cmd.run()`.
pub trait RunExt {
    /// Runs the command to completion, capturing stdout and stderr (stdin as configured,
    /// inherited by default).
    ///
    /// # Panics
    /// When the command cannot be started, naming it.
    fn run(&mut self) -> Run;
}

impl RunExt for Command {
    #[track_caller]
    fn run(&mut self) -> Run {
        let command = describe(self);
        match self.output() {
            Ok(output) => Run { command, output },
            Err(e) => panic!("could not start {command}: {e}"),
        }
    }
}

/// The command line of `cmd` as a shell would show it (program, then arguments, each quoted
/// with `{:?}` when it holds white space or quotes).
pub fn describe(cmd: &Command) -> String {
    let quote = |s: &std::ffi::OsStr| {
        let s = s.to_string_lossy();
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            format!("{s:?}")
        } else {
            s.into_owned()
        }
    };
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Standard output of `o`, lossily decoded as UTF-8.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error of `o`, lossily decoded as UTF-8.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_assertion_names_the_command_and_its_output() {
        let run = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .run();
        run.assert_code(3).assert_failure();
        let report = std::panic::catch_unwind(|| {
            run.assert_success();
        })
        .expect_err("status 3 is not a success");
        let msg = report.downcast_ref::<String>().cloned().unwrap_or_default();
        for part in [
            "sh -c \"echo out; echo err >&2; exit 3\"",
            "exit status: 3",
            "out\n",
            "err\n",
        ] {
            assert!(msg.contains(part), "{part:?} missing from {msg}");
        }
        assert!(std::panic::catch_unwind(|| {
            run.assert_code(0);
        })
        .is_err());
        let ok = Command::new("true").run();
        ok.assert_success().assert_code(0);
        assert!(std::panic::catch_unwind(|| {
            ok.assert_failure();
        })
        .is_err());
    }
}
