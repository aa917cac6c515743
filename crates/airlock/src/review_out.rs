//! Standard output of the review commands (`diff`, `logs`, `merge`, `audit`, `ls`), which print
//! bytes the sandbox chose (file contents, its terminal log, names, audit details).
//!
//! When standard output is a terminal, everything written goes through the same terminal filter
//! as `airlock run` and `attach` ([`airlock_sandbox::termfilter`]): clipboard writes, answer-back
//! queries, window operations and every sequence the filter does not know are dropped, and the
//! number dropped is said on standard error at the end (DESIGN guarantee 8). Piped or redirected
//! output is passed as is. Names are quoted by [`airlock_session::quote`] either way, and
//! `diff` renders control characters in file contents visibly (`^[`), so the filter here is a
//! second line for `diff` and the only one for `logs`, whose content is the agent's terminal.

use std::io::{StdoutLock, Write};

use airlock_sandbox::termfilter::{FilterConfig, TermFilter};

/// Standard output, filtered when it is a terminal.
pub(crate) struct ReviewOut {
    inner: StdoutLock<'static>,
    filter: Option<TermFilter>,
    buf: Vec<u8>,
}

impl ReviewOut {
    /// Locks standard output; filters it when it is a terminal.
    pub(crate) fn stdout() -> ReviewOut {
        let tty = nix::unistd::isatty(std::io::stdout()).unwrap_or(false);
        ReviewOut::new(tty)
    }

    fn new(filtered: bool) -> ReviewOut {
        let filter = filtered.then(|| TermFilter::new(FilterConfig::replayed()));
        ReviewOut {
            inner: std::io::stdout().lock(),
            filter,
            buf: Vec::new(),
        }
    }

    /// Ends the output (on drop): a sequence left incomplete is dropped, and what was dropped
    /// is said on standard error.
    fn end(&mut self) -> std::io::Result<()> {
        let Some(mut f) = self.filter.take() else {
            return self.inner.flush();
        };
        self.buf.clear();
        f.finish(&mut self.buf);
        self.inner.write_all(&self.buf)?;
        self.inner.flush()?;
        if f.dropped() > 0 {
            let kinds: Vec<String> = f
                .counts()
                .iter()
                .map(|(k, n)| format!("{}={n}", k.name()))
                .collect();
            eprintln!(
                "airlock: {} control sequence(s) in this output were kept from your terminal \
                 ({}); pipe the output (e.g. to `cat -v`) to see every byte",
                f.dropped(),
                kinds.join(" ")
            );
        }
        Ok(())
    }
}

impl Write for ReviewOut {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match &mut self.filter {
            None => self.inner.write(data),
            Some(f) => {
                self.buf.clear();
                f.filter(data, &mut self.buf);
                self.inner.write_all(&self.buf)?;
                Ok(data.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Drop for ReviewOut {
    fn drop(&mut self) {
        let _ = self.end();
    }
}
