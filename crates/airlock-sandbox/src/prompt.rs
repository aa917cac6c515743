//! Answering a held request on the user's terminal, the way terminal multiplexers take their
//! commands: while the supervisor holds a request (an approval), a prefix key typed by the user
//! is taken by the terminal relay ([`crate::supervise::supervise_with_notices`]) instead of
//! being passed to the agent, and the next key answers: `o` once, `s` session, `p` project,
//! `d` deny. The notice line says what is held and which keys answer it.
//!
//! Every other byte passes through unchanged and in order: the prefix is only taken while
//! something is held ([`KeyAnswers::pending`], asked when the prefix arrives), the prefix typed
//! twice sends the prefix itself, and the prefix followed by any key but an answer sends both.
//! Inside a bracketed paste (`ESC [ 200 ~` … `ESC [ 201 ~`, sent by the terminal when the agent
//! turned that mode on) the prefix is never taken: pasted text cannot answer. The relay uses it
//! only when it owns a terminal (stdin and stdout are terminals, the sandbox has one), never in
//! a detached session.

/// What the keys answer; the supervisor's approvals.
pub trait KeyAnswers: Send {
    /// Whether a request is held now.
    fn pending(&self) -> bool;
    /// The prefix was just taken: the lines to show (the question again, in case the agent's
    /// screen painted over it).
    fn prompt(&self) -> Vec<String> {
        Vec::new()
    }
    /// The user typed the prefix, then `answer` (`b'o'`, `b's'`, `b'p'` or `b'd'`): answer the
    /// request the notice line shows. Returns the lines to show (what was done, what is next).
    fn answer(&mut self, answer: u8) -> Vec<String>;
}

/// The relay's side: filters what the user types.
pub struct PromptKeys {
    prefix: u8,
    answers: Box<dyn KeyAnswers>,
    /// The prefix was taken; the next byte decides.
    armed: bool,
    /// The last bytes seen, to find the bracketed-paste markers.
    recent: [u8; 6],
    /// Inside a bracketed paste.
    pasting: bool,
}

const PASTE_START: &[u8; 6] = b"\x1b[200~";
const PASTE_END: &[u8; 6] = b"\x1b[201~";

impl std::fmt::Debug for PromptKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptKeys")
            .field("prefix", &self.prefix)
            .field("armed", &self.armed)
            .finish_non_exhaustive()
    }
}

impl PromptKeys {
    /// `prefix` is the byte of the prefix key (e.g. 0x1d for Ctrl-]).
    pub fn new(prefix: u8, answers: Box<dyn KeyAnswers>) -> PromptKeys {
        PromptKeys {
            prefix,
            answers,
            armed: false,
            recent: [0; 6],
            pasting: false,
        }
    }

    /// Appends to `out` what of `input` goes to the agent, and to `lines` what to show.
    pub fn filter(&mut self, input: &[u8], out: &mut Vec<u8>, lines: &mut Vec<String>) {
        for &b in input {
            self.recent.rotate_left(1);
            self.recent[5] = b;
            if &self.recent == PASTE_START {
                self.pasting = true;
            } else if &self.recent == PASTE_END {
                self.pasting = false;
            }
            if self.armed {
                self.armed = false;
                if b == self.prefix {
                    out.push(b);
                    continue;
                }
                match b.to_ascii_lowercase() {
                    a @ (b'o' | b's' | b'p' | b'd') => lines.extend(self.answers.answer(a)),
                    _ => out.extend_from_slice(&[self.prefix, b]),
                }
            } else if b == self.prefix && !self.pasting && self.answers.pending() {
                self.armed = true;
                lines.extend(self.answers.prompt());
            } else {
                out.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Held {
        pending: bool,
        answered: Vec<u8>,
    }

    struct Fake(Arc<Mutex<Held>>);

    impl KeyAnswers for Fake {
        fn pending(&self) -> bool {
            self.0.lock().expect("lock").pending
        }
        fn answer(&mut self, answer: u8) -> Vec<String> {
            let mut h = self.0.lock().expect("lock");
            h.answered.push(answer);
            h.pending = false;
            vec![format!("answered {}", answer as char)]
        }
    }

    fn keys() -> (PromptKeys, Arc<Mutex<Held>>) {
        let held = Arc::new(Mutex::new(Held::default()));
        (PromptKeys::new(0x1d, Box::new(Fake(held.clone()))), held)
    }

    fn run(k: &mut PromptKeys, input: &[u8]) -> (Vec<u8>, Vec<String>) {
        let (mut out, mut lines) = (Vec::new(), Vec::new());
        k.filter(input, &mut out, &mut lines);
        (out, lines)
    }

    #[test]
    fn nothing_is_taken_while_nothing_is_held() {
        let (mut k, held) = keys();
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(run(&mut k, &all).0, all);
        assert_eq!(run(&mut k, b"a\x1do\x1d\x1dd").0, b"a\x1do\x1d\x1dd");
        assert!(held.lock().expect("lock").answered.is_empty());
    }

    #[test]
    fn the_prefix_then_a_key_answers_and_the_bytes_around_it_pass() {
        let (mut k, held) = keys();
        held.lock().expect("lock").pending = true;
        let (out, lines) = run(&mut k, b"ab\x1dScd\x1dox");
        // S answers (case does not matter); the second prefix comes when nothing is held.
        assert_eq!(out, b"abcd\x1dox");
        assert_eq!(lines, vec!["answered s"]);
        assert_eq!(held.lock().expect("lock").answered, b"s");
        // Split across reads; the prefix twice is the prefix itself, any other key passes too.
        held.lock().expect("lock").pending = true;
        assert_eq!(run(&mut k, b"x\x1d").0, b"x");
        assert_eq!(run(&mut k, b"\x1dy").0, b"\x1dy");
        assert_eq!(run(&mut k, b"\x1d").0, b"");
        assert_eq!(run(&mut k, b"\x1b[A").0, b"\x1d\x1b[A");
        assert_eq!(run(&mut k, b"\x1d").0, b"");
        let (out, lines) = run(&mut k, b"dz");
        assert_eq!((out.as_slice(), lines.len()), (&b"z"[..], 1));
        assert_eq!(held.lock().expect("lock").answered, b"sd");
    }

    #[test]
    fn pasted_text_never_answers() {
        let (mut k, held) = keys();
        held.lock().expect("lock").pending = true;
        let paste = b"\x1b[200~a\x1dob\x1dd\x1b[201~";
        assert_eq!(run(&mut k, paste).0, paste);
        // Split markers too.
        assert_eq!(run(&mut k, b"\x1b[20").0, b"\x1b[20");
        assert_eq!(run(&mut k, b"0~\x1do").0, b"0~\x1do");
        assert_eq!(run(&mut k, b"\x1b[201~").0, b"\x1b[201~");
        assert!(held.lock().expect("lock").answered.is_empty());
        // After the paste, typing answers again.
        assert_eq!(run(&mut k, b"\x1do").1, vec!["answered o"]);
    }
}
