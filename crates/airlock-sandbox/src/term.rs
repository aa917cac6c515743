//! Terminal plumbing for interactive sandboxes: window sizes and raw mode on the host terminal.

use std::os::fd::{BorrowedFd, RawFd};

use nix::pty::Winsize;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// The window size of the terminal on `fd`, if it is one.
pub fn get_winsize(fd: RawFd) -> Option<Winsize> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into `ws`, which is valid and writable.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(ws)
}

/// Sets the window size of the terminal on `fd` (its foreground group gets SIGWINCH).
pub fn set_winsize(fd: RawFd, ws: &Winsize) {
    // SAFETY: TIOCSWINSZ reads one `winsize` from `ws`, which is valid for the call.
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, ws);
    }
}

/// Puts a terminal in raw mode and restores it when dropped.
#[derive(Debug)]
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
    /// Input bytes that were already queued (typed ahead in canonical mode) when raw mode began.
    typeahead: usize,
}

impl RawMode {
    /// Enters raw mode on `fd`; `None` if it is not a terminal.
    pub fn enter(fd: RawFd) -> Option<RawMode> {
        // SAFETY: `fd` is one of our standard descriptors, open for the life of the process.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let saved = tcgetattr(b).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(b, SetArg::TCSADRAIN, &raw).ok()?;
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int into `queued`, which is valid and writable.
        let typeahead = if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } == 0 {
            usize::try_from(queued).unwrap_or(0)
        } else {
            0
        };
        Some(RawMode {
            fd,
            saved,
            typeahead,
        })
    }

    /// How many bytes were queued on the terminal when raw mode began (see [`Typeahead`]).
    pub fn typeahead(&self) -> usize {
        self.typeahead
    }
}

/// Cleans the input that was typed ahead before raw mode began.
///
/// In canonical mode the kernel's line discipline (n_tty) queues an end-of-file (VEOF, `^D`, or
/// what `script`, `ssh -t` and other pty relays send when their own input ends) as a NUL
/// placeholder; switching to raw mode hands that NUL out as input. Relayed into the sandbox's
/// terminal it was echoed back as a stray `^@` before the command's output. NULs in the
/// typed-ahead bytes are those placeholders and are dropped; the rest of the typeahead (a line
/// typed while the sandbox started) and every NUL typed later (`C-@`, `C-Space`) pass.
#[derive(Debug, Clone, Copy)]
pub struct Typeahead {
    left: usize,
}

impl Typeahead {
    /// `queued` bytes are typeahead ([`RawMode::typeahead`]).
    pub fn new(queued: usize) -> Typeahead {
        Typeahead { left: queued }
    }

    /// Removes the end-of-file placeholders from the next bytes read from the terminal.
    pub fn clean(&mut self, input: &mut Vec<u8>) {
        if self.left == 0 {
            return;
        }
        let n = self.left.min(input.len());
        self.left -= n;
        let tail = input.split_off(n);
        input.retain(|&b| b != 0);
        input.extend_from_slice(&tail);
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        let b = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = tcsetattr(b, SetArg::TCSADRAIN, &self.saved);
    }
}

/// Whether the user's terminal decodes UTF-8, judged from the locale (`LC_ALL`, `LC_CTYPE`,
/// `LANG`, the first one set, as setlocale(3) does): a locale naming UTF-8, or none at all (every
/// current terminal emulator defaults to UTF-8), means yes; any other locale (`C`, `POSIX`,
/// `en_US.ISO-8859-1`) means an 8-bit terminal may be reading, and the terminal filter then
/// treats every byte 0x80–0x9F as a C1 control.
pub fn locale_is_utf8() -> bool {
    let value = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.is_empty());
    match value {
        None => true,
        Some(v) => {
            let v = v.to_ascii_lowercase();
            v.contains("utf-8") || v.contains("utf8")
        }
    }
}

/// The size (rows, columns) of the terminal on stdout or stdin.
pub fn terminal_size() -> Option<(u16, u16)> {
    get_winsize(1)
        .or_else(|| get_winsize(0))
        .map(|w| (w.ws_row, w.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typeahead_drops_only_early_nuls() {
        let mut t = Typeahead::new(5);
        let mut a = b"ab\0c".to_vec();
        t.clean(&mut a);
        assert_eq!(a, b"abc");
        // One more byte of typeahead, then NULs typed later pass.
        let mut b = b"\0\0x\0".to_vec();
        t.clean(&mut b);
        assert_eq!(b, b"\0x\0");
        let mut c = b"\0".to_vec();
        t.clean(&mut c);
        assert_eq!(c, b"\0");
    }
}
