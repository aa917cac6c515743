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
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        let b = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = tcsetattr(b, SetArg::TCSADRAIN, &self.saved);
    }
}

/// The size (rows, columns) of the terminal on stdout or stdin.
pub fn terminal_size() -> Option<(u16, u16)> {
    get_winsize(1)
        .or_else(|| get_winsize(0))
        .map(|w| (w.ws_row, w.ws_col))
}
