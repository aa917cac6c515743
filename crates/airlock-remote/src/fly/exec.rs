//! Binary-safe exec over the Machines API's exec endpoint.
//!
//! The endpoint (`POST …/machines/{id}/exec`, `MachineExecRequest`) carries the standard input
//! as one JSON string and answers, once the command has ended, with its output as JSON strings
//! (`flydv1.ExecResponse`): bytes that are not UTF-8 (a tar stream for `ctl receive` or from
//! `ctl export`) would not survive. So the command runs under a small `sh` wrapper: the input
//! travels base64 and is decoded into a file in the box, the command's standard output is
//! written to a file and comes back base64; standard error stays text; the exit status is the
//! command's. The image needs `/bin/sh`, `base64` (coreutils or busybox) and `mktemp`, which
//! airlock's box image has.
//!
//! What the endpoint cannot do: stream (nothing comes back before the command ends), run
//! longer than its `timeout`, or give a terminal (see [`super::FlyEngine`]'s `exec_tty`).

use base64::Engine as _;

use crate::{ExecOutput, RemoteError};

/// Exit status of the wrapper itself when it cannot set up (no temporary directory, input that
/// does not decode); the message on standard error starts with [`WRAPPER_TAG`].
pub const WRAPPER_FAILED: i32 = 125;

/// How the wrapper's own errors start.
pub const WRAPPER_TAG: &str = "airlock-fly-exec:";

/// The wrapper: `sh -c SCRIPT airlock-fly-exec ARGV...`, standard input base64.
const SCRIPT: &str = r#"t=$(mktemp -d) || { echo "airlock-fly-exec: cannot create a temporary directory" >&2; exit 125; }
trap 'rm -rf "$t"' EXIT
base64 -d > "$t/in" || { echo "airlock-fly-exec: the input does not decode (is base64 in the image?)" >&2; exit 125; }
"$@" < "$t/in" > "$t/out"
s=$?
base64 < "$t/out" || { echo "airlock-fly-exec: cannot encode the output" >&2; exit 125; }
exit $s"#;

/// The argv that runs `argv` under the wrapper.
pub fn wrap(argv: &[String]) -> Vec<String> {
    let mut v = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        SCRIPT.to_string(),
        "airlock-fly-exec".to_string(),
    ];
    v.extend(argv.iter().cloned());
    v
}

/// The wrapper's standard input for `stdin`.
pub fn encode_stdin(stdin: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(stdin)
}

/// The command's result from the wrapper's: standard output decoded (line breaks ignored).
///
/// # Errors
/// Output that is not base64 (the wrapper did not run: no `/bin/sh` or `base64` in the image).
pub fn unwrap(
    exit_code: i32,
    stdout: &str,
    stderr: &str,
    what: &str,
) -> Result<ExecOutput, RemoteError> {
    let compact: String = stdout
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let out = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| RemoteError::Resource {
            engine: super::FLY,
            resource: what.to_string(),
            message: format!(
                "the exec wrapper's output is not base64 ({e}); the image needs /bin/sh, \
                 base64 and mktemp (stderr: {})",
                stderr.trim()
            ),
        })?;
    Ok(ExecOutput {
        status: exit_code,
        stdout: out,
        stderr: stderr.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Runs the wrapper for real with this machine's `sh` and `base64`, as the box would.
    fn run(argv: &[&str], stdin: &[u8]) -> ExecOutput {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let w = wrap(&argv);
        let mut child = Command::new(&w[0])
            .args(&w[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(encode_stdin(stdin).as_bytes())
            .expect("write");
        let o = child.wait_with_output().expect("wait");
        unwrap(
            o.status.code().expect("code"),
            &String::from_utf8(o.stdout).expect("ascii"),
            &String::from_utf8_lossy(&o.stderr),
            "machine/test",
        )
        .expect("unwrap")
    }

    #[test]
    fn binary_input_and_output_survive_and_the_status_is_the_commands() {
        let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let o = run(&["cat"], &data);
        assert_eq!(o.status, 0);
        assert_eq!(o.stdout, data);
        let o = run(
            &["sh", "-c", "printf 'a\\0b\\377'; echo oops >&2; exit 7"],
            b"",
        );
        assert_eq!(o.status, 7);
        assert_eq!(o.stdout, b"a\0b\xff");
        assert_eq!(o.stderr, b"oops\n");
        // arguments pass through unchanged, spaces and quotes included
        let o = run(&["printf", "%s|", "a b", "'c'", "$HOME"], b"");
        assert_eq!(o.stdout, b"a b|'c'|$HOME|");
    }

    #[test]
    fn output_that_is_not_base64_is_an_error_naming_the_image_needs() {
        let e = unwrap(0, "not base64 at all!", "sh: not found", "machine/x").expect_err("bad");
        let m = e.to_string();
        assert!(m.contains("machine/x") && m.contains("/bin/sh"), "{m}");
    }
}
