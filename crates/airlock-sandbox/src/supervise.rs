//! The supervisor's loop, the same for every backend: relay the terminal (through the terminal
//! filter, in raw mode, with window-size changes), forward signals, and let the backend handle
//! its events until the sandbox has ended; then return the command's exit status.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::backend::RunningSandbox;
use crate::launch::{supervised_signals, write_all};
use crate::notice::{Notices, Show};
use crate::prompt::PromptKeys;
use crate::term::{get_winsize, set_winsize, RawMode, Typeahead};
use crate::termfilter::TermFilter;
use crate::SandboxError;
use crate::Step;

/// How long the terminal may still drain once the sandbox has ended (milliseconds).
const DRAIN_MS: u16 = 200;

/// Supervises `sandbox` until it has ended: relays its terminal through `filter` (whose counts
/// say what it dropped once this returns), forwards INT, TERM, HUP, QUIT, USR1, USR2 and
/// window-size changes, and calls `on_hup` (a policy reload) on SIGHUP before forwarding it.
/// Returns the command's exit status (128+N for signal N).
///
/// # Errors
/// The signal mask or signalfd cannot be set up, `poll` fails, or the backend reports a failure
/// ([`RunningSandbox::finish`]). The sandbox is stopped on every error path (by `finish`, or by
/// dropping it).
pub fn supervise(
    sandbox: Box<dyn RunningSandbox>,
    on_hup: Option<&mut dyn FnMut()>,
    filter: &mut TermFilter,
) -> Result<i32, SandboxError> {
    supervise_with_notices(sandbox, on_hup, filter, None, None)
}

/// [`supervise`], also showing the lines that arrive on `notices` outside the agent's screen
/// (how: [`crate::notice`]). Lines still waiting when the sandbox has ended go to stderr once
/// the terminal is restored. With `keys`, and only when the relay owns the terminal (stdin and
/// stdout are terminals and the sandbox has one), what the user types passes through
/// [`PromptKeys`] first, which takes the answers to held requests ([`crate::prompt`]).
///
/// # Errors
/// As [`supervise`].
pub fn supervise_with_notices(
    mut sandbox: Box<dyn RunningSandbox>,
    on_hup: Option<&mut dyn FnMut()>,
    filter: &mut TermFilter,
    notices: Option<Notices>,
    keys: Option<PromptKeys>,
) -> Result<i32, SandboxError> {
    let sfd = signal_fd()?;
    let pty = sandbox.take_terminal();
    let raw = pty.as_ref().and_then(|_| RawMode::enter(0));
    if let Some(master) = &pty {
        copy_window_size(master, sandbox.as_ref());
    }
    let mut relay = Relay {
        pty,
        pty_open: false,
        stdin_open: false,
        typeahead: Typeahead::new(raw.as_ref().map_or(0, RawMode::typeahead)),
        filtered: Vec::with_capacity(64 * 1024),
        buf: vec![0u8; 64 * 1024],
        on_hup,
        filter,
        owns_terminal: false,
        raw: raw.is_some(),
        notices_open: notices.is_some(),
        notices,
        pending: Vec::new(),
        keys: None,
    };
    relay.pty_open = relay.pty.is_some();
    relay.stdin_open = relay.pty.is_some();
    relay.owns_terminal =
        relay.pty.is_some() && nix::unistd::isatty(std::io::stdout()).unwrap_or(false);
    // Raw mode means stdin is a terminal and the sandbox has one.
    if relay.owns_terminal && relay.raw {
        relay.keys = keys;
    }
    let ran = relay.run(sandbox.as_mut(), &sfd);
    relay.filtered.clear();
    relay.filter.finish(&mut relay.filtered);
    drop(raw);
    for line in relay.pending.drain(..) {
        crate::notice::show(&line, Show::Stderr { crlf: false });
    }
    ran?;
    sandbox.finish()
}

/// Blocks the supervised signals in this thread and returns a signalfd that reads them.
fn signal_fd() -> Result<SignalFd, SandboxError> {
    let mask = supervised_signals();
    mask.thread_block()
        .map_err(|e| SandboxError::sys(Step::Supervise, "cannot block signals", e))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| SandboxError::sys(Step::Supervise, "cannot create a signalfd", e))
}

/// Gives the sandbox's terminal the size of ours (`TIOCSWINSZ` on a pty master, and
/// [`RunningSandbox::resize`] for a backend whose terminal is an engine's stream).
fn copy_window_size(master: &OwnedFd, sandbox: &dyn RunningSandbox) {
    if let Some(ws) = get_winsize(1).or_else(|| get_winsize(0)) {
        set_winsize(master.as_raw_fd(), &ws);
        sandbox.resize(ws.ws_row, ws.ws_col);
    }
}

/// Which descriptors `poll` reported ready in one round.
#[derive(Debug, Clone, Copy, Default)]
struct Ready {
    signals: bool,
    events: bool,
    master: bool,
    stdin: bool,
    notices: bool,
}

/// The terminal relay's state for one supervision.
struct Relay<'h, 'f> {
    pty: Option<OwnedFd>,
    pty_open: bool,
    stdin_open: bool,
    typeahead: Typeahead,
    filtered: Vec<u8>,
    buf: Vec<u8>,
    on_hup: Option<&'h mut dyn FnMut()>,
    filter: &'f mut TermFilter,
    /// The sandbox has a terminal and our stdout is one: notices go on its last row.
    owns_terminal: bool,
    /// Our terminal is in raw mode (a stderr line needs `\r\n`).
    raw: bool,
    notices: Option<Notices>,
    notices_open: bool,
    /// Notices waiting for the terminal filter to be between sequences.
    pending: Vec<String>,
    /// Answers to held requests, taken from what the user types (only when we own the terminal).
    keys: Option<PromptKeys>,
}

impl Relay<'_, '_> {
    /// Polls and dispatches until the sandbox has ended and its terminal and events are drained.
    fn run(
        &mut self,
        sandbox: &mut dyn RunningSandbox,
        sfd: &SignalFd,
    ) -> Result<(), SandboxError> {
        let mut progress = sandbox.on_events(false);
        loop {
            if progress.ended && !progress.events_open && !self.pty_open {
                return Ok(());
            }
            let Some(ready) = self.poll_once(sandbox, sfd, progress)? else {
                return Ok(());
            };
            if ready.signals {
                self.handle_signals(sandbox, sfd);
            }
            if ready.events {
                sandbox.on_events(true);
            }
            if ready.master {
                self.relay_output();
            }
            if ready.stdin {
                self.relay_input();
            }
            if ready.notices {
                self.take_notices();
            }
            self.show_notices();
            progress = sandbox.on_events(false);
        }
    }

    /// One `poll` over the signalfd, the backend's events, the terminal and stdin. `None` when
    /// the drain time after the sandbox's end ran out.
    fn poll_once(
        &self,
        sandbox: &dyn RunningSandbox,
        sfd: &SignalFd,
        progress: crate::backend::Progress,
    ) -> Result<Option<Ready>, SandboxError> {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let events_idx = fds.len();
        if progress.events_open {
            fds.push(PollFd::new(sandbox.events(), PollFlags::POLLIN));
        }
        let master_idx = fds.len();
        if let (true, Some(m)) = (self.pty_open, &self.pty) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        let stdin_idx = fds.len();
        let stdin = std::io::stdin();
        if self.stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let notices_idx = fds.len();
        if let (true, Some(n)) = (self.notices_open, &self.notices) {
            fds.push(PollFd::new(n.fd(), PollFlags::POLLIN));
        }
        let timeout = if progress.ended {
            PollTimeout::from(DRAIN_MS)
        } else {
            PollTimeout::NONE
        };
        let n = match poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => return Ok(Some(Ready::default())),
            Err(e) => return Err(SandboxError::sys(Step::Supervise, "poll", e)),
        };
        if n == 0 {
            return Ok(None);
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        Ok(Some(Ready {
            signals: ready(0),
            events: progress.events_open && ready(events_idx),
            master: self.pty_open && ready(master_idx),
            stdin: self.stdin_open && ready(stdin_idx),
            notices: self.notices_open && ready(notices_idx),
        }))
    }

    /// Reads the queued signals: SIGCHLD lets the backend look at its children, SIGWINCH
    /// resizes the sandbox's terminal, the others are forwarded (SIGHUP after `on_hup`).
    fn handle_signals(&mut self, sandbox: &mut dyn RunningSandbox, sfd: &SignalFd) {
        while let Ok(Some(info)) = sfd.read_signal() {
            match Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) {
                Ok(Signal::SIGCHLD) => {
                    sandbox.on_events(false);
                }
                Ok(Signal::SIGWINCH) => {
                    if let Some(m) = &self.pty {
                        copy_window_size(m, sandbox);
                    }
                }
                Ok(s) => {
                    if s == Signal::SIGHUP {
                        if let Some(f) = self.on_hup.as_mut() {
                            f();
                        }
                    }
                    let _ = sandbox.signal(s);
                }
                Err(_) => {}
            }
        }
    }

    /// Copies what the command wrote on its terminal to our stdout, through the filter.
    fn relay_output(&mut self) {
        let Some(m) = &self.pty else { return };
        match nix::unistd::read(m, &mut self.buf) {
            Ok(0) | Err(Errno::EIO) => self.pty_open = false,
            Ok(k) => {
                self.filtered.clear();
                self.filter.filter(&self.buf[..k], &mut self.filtered);
                let mut out = std::io::stdout().lock();
                if out
                    .write_all(&self.filtered)
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    self.pty_open = false;
                }
            }
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(_) => self.pty_open = false,
        }
    }

    /// Reads the notices that arrived into `pending`.
    fn take_notices(&mut self) {
        let Some(n) = self.notices.as_mut() else {
            return;
        };
        match n.read_lines() {
            Some(lines) => self.pending.extend(lines),
            None => self.notices_open = false,
        }
    }

    /// Shows the pending notices: on the terminal's last row only between two sequences of
    /// the agent's output (else they wait for the next write), on stderr otherwise.
    fn show_notices(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let how = match (self.owns_terminal, get_winsize(1)) {
            (true, Some(_)) if !self.filter.between_sequences() => return,
            (true, Some(ws)) => Show::BottomRow {
                rows: ws.ws_row,
                cols: ws.ws_col,
            },
            _ => Show::Stderr { crlf: self.raw },
        };
        for line in self.pending.drain(..) {
            crate::notice::show(&line, how);
        }
    }

    /// Copies what the user typed to the command's terminal (stale terminal answers removed).
    fn relay_input(&mut self) {
        match nix::unistd::read(std::io::stdin(), &mut self.buf) {
            Ok(0) => self.stdin_open = false,
            Ok(k) => {
                let mut input = self.buf[..k].to_vec();
                self.typeahead.clean(&mut input);
                if let Some(keys) = self.keys.as_mut() {
                    let mut passed = Vec::with_capacity(input.len());
                    keys.filter(&input, &mut passed, &mut self.pending);
                    input = passed;
                }
                if let (Some(m), false) = (&self.pty, input.is_empty()) {
                    if write_all(m, &input).is_err() {
                        self.stdin_open = false;
                    }
                }
            }
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(_) => self.stdin_open = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, BorrowedFd};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::backend::Progress;
    use crate::launch::{ExecHandle, NetFds};

    /// A backend's sandbox that is nothing but a pipe: a byte on it means "the command exited
    /// with this status"; closing it means the sandbox is gone without a word.
    #[derive(Debug)]
    struct Fake {
        events: OwnedFd,
        status: Option<i32>,
        closed: bool,
        finished: Arc<Mutex<bool>>,
    }

    impl RunningSandbox for Fake {
        fn enforcement(&self) -> String {
            "fake".into()
        }
        fn take_listeners(&mut self) -> Option<NetFds> {
            None
        }
        fn take_terminal(&mut self) -> Option<OwnedFd> {
            None
        }
        fn exec_handle(&self) -> Result<ExecHandle, SandboxError> {
            Err(SandboxError::Setup(
                "the fake backend starts nothing".into(),
            ))
        }
        fn events(&self) -> BorrowedFd<'_> {
            self.events.as_fd()
        }
        fn on_events(&mut self, readable: bool) -> Progress {
            if readable && !self.closed {
                let mut b = [0u8; 1];
                match nix::unistd::read(&self.events, &mut b) {
                    Ok(1) => self.status = Some(i32::from(b[0])),
                    _ => self.closed = true,
                }
            }
            Progress {
                ended: self.status.is_some() || self.closed,
                events_open: !self.closed,
            }
        }
        fn signal(&self, _: Signal) -> Result<(), SandboxError> {
            Ok(())
        }
        fn stop(&mut self) {}
        fn finish(self: Box<Self>) -> Result<i32, SandboxError> {
            *self.finished.lock().expect("lock") = true;
            self.status
                .ok_or_else(|| SandboxError::Setup("the fake sandbox ended silently".into()))
        }
    }

    fn fake() -> (Box<Fake>, OwnedFd, Arc<Mutex<bool>>) {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let finished = Arc::new(Mutex::new(false));
        let fake = Fake {
            events: r,
            status: None,
            closed: false,
            finished: finished.clone(),
        };
        (Box::new(fake), w, finished)
    }

    #[test]
    fn any_backend_is_supervised_until_it_ends_and_its_status_returned() {
        let (sandbox, w, finished) = fake();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            nix::unistd::write(&w, &[42]).expect("write");
            // The writer end closes here: the loop stops polling a closed events descriptor.
        });
        let mut filter = TermFilter::new(crate::termfilter::FilterConfig::default());
        let status = supervise(sandbox, None, &mut filter).expect("status");
        writer.join().expect("writer");
        assert_eq!(status, 42);
        assert!(*finished.lock().expect("lock"), "finish was not called");
    }

    #[test]
    fn a_backend_that_ends_without_a_status_is_an_error() {
        let (sandbox, w, finished) = fake();
        drop(w);
        let mut filter = TermFilter::new(crate::termfilter::FilterConfig::default());
        let e = supervise(sandbox, None, &mut filter).expect_err("no status");
        assert!(e.to_string().contains("ended silently"), "{e}");
        assert!(*finished.lock().expect("lock"));
    }
}
