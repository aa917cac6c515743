//! Reading the files a command names where the hook runs: bounded, text only, and seeing what
//! the same tool call wrote earlier instead of the file on disk.

use std::cell::RefCell;

use crate::ir::{FileContent, Written};

/// Largest script, Makefile, justfile or package.json read (bytes); a larger one is code
/// airlock cannot see.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// What reading a file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileText {
    /// No such file: nothing runs.
    Missing,
    /// A compiled program (ELF, Mach-O, or any file with NUL bytes): not judged by content.
    Binary,
    /// Cannot be read, too large, or not UTF-8: code airlock cannot see.
    Unreadable(String),
    Text(String),
}

thread_local! {
    /// Files written earlier in the command being judged (absolute path, content): what a
    /// later command of the same tool call finds there instead of the file on disk. Set for
    /// the duration of one simple command by [`WrittenFiles::enter`].
    static WRITTEN: RefCell<Written> = RefCell::new(Written::default());
}

/// While alive, [`read_text`] sees the files a command's script wrote before it (`printf … >
/// Makefile && make`): their text when the command shows it, else code airlock cannot see.
/// Dropping it restores what the enclosing command saw.
pub(crate) struct WrittenFiles {
    saved: Option<Written>,
}

impl WrittenFiles {
    /// Makes `files` (the parser's [`SimpleCmd::files`]) visible to [`read_text`] on this
    /// thread; nothing changes when there are none.
    pub(crate) fn enter(files: &Written) -> WrittenFiles {
        if files.is_empty() {
            return WrittenFiles { saved: None };
        }
        let saved = WRITTEN.with(|w| std::mem::replace(&mut *w.borrow_mut(), files.clone()));
        WrittenFiles { saved: Some(saved) }
    }
}

impl Drop for WrittenFiles {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            WRITTEN.with(|w| *w.borrow_mut() = saved);
        }
    }
}

/// The paths written earlier in the same tool call (see [`WrittenFiles`]).
pub(crate) fn written_paths() -> Vec<String> {
    WRITTEN.with(|w| w.borrow().iter().map(|(p, _)| p.clone()).collect())
}

/// What the command being judged wrote to `path` earlier in the same tool call, if anything.
pub(crate) fn written(path: &str) -> Option<FileText> {
    WRITTEN.with(|w| {
        let w = w.borrow();
        let (_, content) = w.iter().find(|(p, _)| p == path)?;
        Some(match content {
            FileContent::Text(t) => FileText::Text(t.clone()),
            FileContent::Network => {
                FileText::Unreadable(format!("{path} is downloaded earlier in the same command"))
            }
            FileContent::Unknown => FileText::Unreadable(format!(
                "{path} is written earlier in the same command with content airlock cannot see"
            )),
        })
    })
}

/// Reads `path` (absolute), bounded by [`MAX_FILE_BYTES`]; a file written earlier in the same
/// command (see `WrittenFiles`) reads as what was written.
pub fn read_text(path: &str) -> FileText {
    if let Some(t) = written(path) {
        return t;
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileText::Missing,
        Err(e) => return FileText::Unreadable(format!("{path}: {e}")),
    };
    if !meta.is_file() {
        return FileText::Unreadable(format!("{path} is not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return FileText::Unreadable(format!(
            "{path} is {} bytes, more than the {MAX_FILE_BYTES} airlock reads",
            meta.len()
        ));
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return FileText::Unreadable(format!("{path}: {e}")),
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return FileText::Unreadable(format!("{path} grew past {MAX_FILE_BYTES} bytes"));
    }
    // What bash(1) calls a binary file (`check_binary_file`): a NUL in the first line of the
    // first 80 bytes. Anything else it runs as a script when the kernel will not (ENOEXEC),
    // even with an ELF-looking start (found by the fuzz target).
    let head = &bytes[..bytes.len().min(80)];
    let first_line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    if first_line.contains(&0) {
        return FileText::Binary;
    }
    if bytes.contains(&0) {
        return FileText::Unreadable(format!("{path} holds NUL bytes after its first line"));
    }
    match String::from_utf8(bytes) {
        Ok(t) => FileText::Text(t),
        Err(_) => FileText::Unreadable(format!("{path} is not UTF-8 text")),
    }
}
