//! One-line notices from the supervisor to the user (a refused host and its fix), shown outside
//! the agent's screen by the terminal relay ([`crate::supervise::supervise`]).
//!
//! Any thread sends with [`NoticeSender::send`] (a pipe: one `write` per line, never blocking;
//! a full pipe drops the line). The relay polls [`Notices`] and shows each line:
//!
//! - when it owns the user's terminal (the sandbox has a terminal and stdout is one), on the
//!   terminal's last row, between two writes of the agent's output and only when the terminal
//!   filter is between sequences: save the cursor (DECSC), move to the last row, erase it, the
//!   line in reverse video cut to the width, restore the cursor (DECRC, which also restores the
//!   agent's colours). The agent's screen is not scrolled or shifted; its next redraw of that
//!   row paints over the notice (the supervisor prints a summary after the session for that);
//! - otherwise (no terminal, output piped, a --detach session's log), as a plain line on
//!   stderr (`\r\n` while the terminal is in raw mode).
//!
//! Every line is made printable first ([`printable`]): what it names (hosts, commands) comes
//! from the sandbox, and nothing from there may reach the user's terminal as a control.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::SandboxError;
use crate::Step;

/// The longest line sent, in bytes (less than `PIPE_BUF`, so each line is one atomic write).
pub const MAX_LINE: usize = 480;

/// The sending side; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct NoticeSender {
    write: Arc<OwnedFd>,
}

/// The receiving side, given to the relay.
#[derive(Debug)]
pub struct Notices {
    read: OwnedFd,
    partial: Vec<u8>,
}

/// A new notice channel (a non-blocking, close-on-exec pipe).
///
/// # Errors
/// The pipe cannot be created (descriptor limit).
pub fn channel() -> Result<(NoticeSender, Notices), SandboxError> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| SandboxError::sys(Step::Supervise, "cannot create the notice pipe", e))?;
    Ok((
        NoticeSender {
            write: Arc::new(write),
        },
        Notices {
            read,
            partial: Vec::new(),
        },
    ))
}

impl NoticeSender {
    /// Sends one line (made printable, cut to [`MAX_LINE`] bytes). Never blocks: a full pipe
    /// or a relay that is gone drops the line; `false` says so.
    pub fn send(&self, line: &str) -> bool {
        let mut bytes = printable(line, MAX_LINE - 1).into_bytes();
        bytes.push(b'\n');
        matches!(nix::unistd::write(self.write.as_fd(), &bytes), Ok(n) if n == bytes.len())
    }
}

impl Notices {
    /// The descriptor the relay polls.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// The complete lines that arrived; `None` once every sender is gone and all was read.
    pub fn read_lines(&mut self) -> Option<Vec<String>> {
        let mut buf = [0u8; 4096];
        let mut open = true;
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        let mut lines = Vec::new();
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            lines.push(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        (open || !lines.is_empty()).then_some(lines)
    }
}

/// `text` with every control character (C0, DEL, C1) and every bidirectional override or
/// isolate replaced by `?`, cut to at most `max` bytes on a character boundary.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_control() || is_bidi_control(c) {
            '?'
        } else {
            c
        };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Unicode bidi controls (UAX #9): they reorder what the user reads around them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The bytes that draw `line` on the last row of a `rows` x `cols` terminal and put the cursor
/// and its attributes back where they were: DECSC, CUP to (rows, 1), EL 2, reverse video, the
/// line cut to `cols - 1` characters, DECRC.
pub fn bottom_row(line: &str, rows: u16, cols: u16) -> Vec<u8> {
    let width = usize::from(cols.saturating_sub(1)).max(1);
    let text: String = printable(line, MAX_LINE).chars().take(width).collect();
    format!("\x1b7\x1b[{rows};1H\x1b[2K\x1b[7m{text}\x1b[0m\x1b8").into_bytes()
}

/// Where the relay shows a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Show {
    /// On the last row of the user's terminal, which the relay owns.
    BottomRow { rows: u16, cols: u16 },
    /// As a line on stderr; `crlf` while the terminal is in raw mode.
    Stderr { crlf: bool },
}

/// Shows `line` as `how` says; errors writing are ignored (a notice is never worth failing for).
pub(crate) fn show(line: &str, how: Show) {
    match how {
        Show::BottomRow { rows, cols } => {
            let mut out = std::io::stdout().lock();
            let _ = out
                .write_all(&bottom_row(line, rows, cols))
                .and_then(|()| out.flush());
        }
        Show::Stderr { crlf } => {
            let end = if crlf { "\r\n" } else { "\n" };
            let _ = write!(
                std::io::stderr().lock(),
                "{}{end}",
                printable(line, MAX_LINE)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_arrive_whole_and_controls_never_do() {
        let (tx, mut rx) = channel().expect("channel");
        assert!(tx.send("refused evil.test"));
        assert!(tx.send("host \x1b]52;c;AAAA\x07 \u{9b}31m \u{202e}gnp.exe \r\n end"));
        let lines = rx.read_lines().expect("open");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], "refused evil.test");
        assert!(
            !lines[1]
                .chars()
                .any(|c| c.is_control() || is_bidi_control(c)),
            "{:?}",
            lines[1]
        );
        assert!(lines[1].ends_with(" end"), "{:?}", lines[1]);
        drop(tx);
        assert_eq!(rx.read_lines(), None);
    }

    #[test]
    fn a_full_pipe_drops_lines_instead_of_blocking() {
        let (tx, mut rx) = channel().expect("channel");
        let long = "x".repeat(10_000);
        let sent = (0..1000).filter(|_| tx.send(&long)).count();
        assert!(sent > 0 && sent < 1000, "{sent}");
        let lines = rx.read_lines().expect("open");
        assert_eq!(lines.len(), sent);
        assert!(lines.iter().all(|l| l.len() == MAX_LINE - 1));
    }

    #[test]
    fn the_bottom_row_is_drawn_and_the_cursor_put_back() {
        let b = String::from_utf8(bottom_row("airlock: refused \x1b[2Jevil.test", 24, 20))
            .expect("utf8");
        assert!(b.starts_with("\x1b7\x1b[24;1H\x1b[2K\x1b[7m"), "{b:?}");
        assert!(b.ends_with("\x1b[0m\x1b8"), "{b:?}");
        let text = &b["\x1b7\x1b[24;1H\x1b[2K\x1b[7m".len()..b.len() - "\x1b[0m\x1b8".len()];
        assert_eq!(text, "airlock: refused ?[");
        assert_eq!(text.chars().count(), 19);
    }
}
