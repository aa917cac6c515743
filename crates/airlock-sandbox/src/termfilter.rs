//! The filter between the sandbox's terminal output and the user's terminal (`airlock run` under
//! a terminal, `airlock attach`).
//!
//! A terminal emulator is a host program that interprets what it is sent: some control sequences
//! write the user's clipboard (OSC 52), make the terminal type an answer back as if the user had
//! typed it (title reports, DECRQSS, XTGETTCAP, colour and font queries, ENQ's answerback), move
//! or resize the window, or drive a printer. This module is a byte-level state machine that
//! passes ordinary text and the sequences full-screen programs need, byte for byte, and drops the
//! rest, counting what it dropped per [`DropKind`].
//!
//! The grammar is ECMA-48's (escape sequences, CSI, OSC and the other control strings), with both
//! 7-bit (`ESC [`) and 8-bit C1 introducers (a raw byte 0x9B, and U+009B encoded in UTF-8 as
//! `C2 9B`, which some terminals honour). A sequence is only ever passed whole, once its final
//! byte or terminator has arrived, so the terminal's own parser is back in its ground state after
//! every piece of output: bytes this filter took for text are text to the terminal too. Sequences
//! may be split across reads; a sequence longer than its bound is discarded as it streams (a
//! never-ending OSC costs no memory). Which sequences pass follows xterm's control sequence list
//! ("XTerm Control Sequences", ctlseqs): an allowlist, everything unknown is dropped.
//!
//! Passed: text (UTF-8 kept intact, only overlong lead bytes 0xC0/0xC1 and bytes 0xF5–0xFF, which
//! no valid UTF-8 contains, are dropped), C0 controls but ENQ, every escape sequence without a
//! string (charsets, DECSC/DECRC, keypad modes, RIS), CSI without intermediates (SGR colours,
//! cursor movement, erase, scroll regions, DEC private modes: alternate screen, bracketed paste,
//! mouse modes; DSR and DA queries, whose answers carry the terminal's state and never text the
//! sandbox chose) except window operations and media copy, a few CSI with intermediates (cursor
//! style, DECRQM, soft reset, DECSCL, DECSCA), and OSC 0/1/2 (title set), OSC 8 (hyperlinks;
//! http, https and file targets) and
//! colour set/reset (OSC 4/5/10–19/104/105/110–119 without `?`) with a clean payload (valid UTF-8
//! without control characters). OSC 52 clipboard writes pass only with `allow_clipboard`; a
//! clipboard read (`?`) never does. Replayed output (`airlock logs`, `diff`: no program reads the
//! terminal's answers, so the user's shell would) drops the DSR, DA, DECRQM and XTVERSION
//! queries too, every setting that would outlive it ([`DropKind::Lasting`]) and OSC 8 links, and
//! ends with `CSI 0 m` when it left a rendition set ([`FilterConfig::replay`]). Live OSC 8
//! links pass only to `http`, `https` and `file` targets ([`DropKind::Hyperlink`]).

use std::collections::BTreeMap;

/// What the filter is allowed to pass beyond its fixed allowlist, and how the terminal decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterConfig {
    /// Pass OSC 52 clipboard writes (`[terminal] allow_clipboard`). Clipboard reads never pass.
    pub allow_clipboard: bool,
    /// The terminal decodes UTF-8 (the user's locale says so, or says nothing). `false`: an
    /// 8-bit terminal (e.g. xterm in a Latin-1 locale), which takes every raw byte 0x80–0x9F
    /// for a C1 control, so such bytes are controls even where UTF-8 would make them part of a
    /// character.
    pub utf8: bool,
    /// The output is replayed (`airlock logs`, `diff`, review output): no program reads the
    /// terminal's answers, so whatever a query makes the terminal answer is read by the next
    /// reader of the terminal, the user's shell, as typed input. Status and attribute queries
    /// (DSR `CSI … n`, DA `CSI … c`, DECRQM `CSI … $ p`, XTVERSION `CSI > … q`) are then
    /// dropped as [`DropKind::Query`]; live output (`run`, `attach`) keeps them, because the
    /// sandboxed program is the one reading the answer. Settings that would outlive the
    /// replayed output (window title, palette colours) are dropped as [`DropKind::Lasting`].
    pub replay: bool,
}

impl FilterConfig {
    /// For the user's terminal: clipboard writes as `allow_clipboard` says, UTF-8 as the
    /// user's locale says ([`crate::term::locale_is_utf8`]), live output (`replay` false).
    pub fn live(allow_clipboard: bool) -> FilterConfig {
        FilterConfig {
            allow_clipboard,
            utf8: crate::term::locale_is_utf8(),
            replay: false,
        }
    }

    /// For output replayed to the user's terminal (see [`FilterConfig::replay`]): no clipboard
    /// writes, no queries.
    pub fn replayed() -> FilterConfig {
        FilterConfig {
            allow_clipboard: false,
            utf8: crate::term::locale_is_utf8(),
            replay: true,
        }
    }
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            allow_clipboard: false,
            utf8: true,
            replay: false,
        }
    }
}

/// Why a piece of output was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropKind {
    /// OSC 52 clipboard write.
    Clipboard,
    /// OSC 52 clipboard read (`?`): the terminal would answer with the user's clipboard.
    ClipboardQuery,
    /// CSI 20 t / CSI 21 t: the terminal answers with the icon label or window title.
    TitleReport,
    /// Other XTWINOPS (CSI … t): move, resize, iconify, raise, report sizes and positions.
    WindowOp,
    /// CSI … i: media copy (printer controller mode, print screen).
    Printer,
    /// CSI with intermediates outside the allowlist (DECRQCRA checksums the screen, rectangle
    /// operations, locator reports, and anything unknown).
    CsiOther,
    /// DCS $ q: DECRQSS, whose answer echoes the requested setting.
    Decrqss,
    /// DCS + q: XTGETTCAP, whose answer echoes the requested capability name.
    Xtgettcap,
    /// Any other device control string (sixel, tmux passthrough, ReGIS, …).
    Dcs,
    /// Application program command (kitty graphics, …).
    Apc,
    /// Privacy message.
    Pm,
    /// Start of string.
    Sos,
    /// OSC colour query (`?` in OSC 4/5/10–19): the terminal answers.
    ColorQuery,
    /// OSC 50: font set or query.
    Font,
    /// Any other OSC (notifications, file transfer, cwd, iTerm2 and kitty extensions, …), or an
    /// allowed one whose payload holds control characters or invalid UTF-8.
    OscOther,
    /// ENQ (0x05): the terminal answers with its answerback string.
    Enq,
    /// A single-byte C1 control (raw 0x80–0x9F or U+0080–U+009F) that introduces nothing.
    C1Control,
    /// An aborted or ill-formed sequence, or a byte no valid UTF-8 contains.
    Malformed,
    /// A sequence longer than its bound, discarded as it streamed.
    Oversized,
    /// A status or attribute query (DSR, DA, DECRQM, XTVERSION) in replayed output, where the
    /// terminal's answer would reach the user's shell as typed input.
    Query,
    /// A terminal setting that outlives the replayed output, in replayed output: once
    /// `airlock logs` or `diff` has ended it would still be the session's, as if the user's own
    /// shell had set it. OSC 0/1/2 (window title, icon name), OSC 4/5/10–19 palette colours and
    /// their resets; mode sets and resets (`CSI [?] … h|l`: mouse reporting, which makes the
    /// terminal type mouse events into the shell, the alternate screen, bracketed paste, insert
    /// mode, autowrap, the cursor's visibility); scroll regions (`CSI … r`); erasing the
    /// scrollback (`CSI 3 J`); cursor style, soft reset, conformance level and protection
    /// (DECSCUSR, DECSTR, DECSCL, DECSCA); full reset (RIS, `ESC c`), keypad application mode
    /// (`ESC =`), locking shifts (`ESC n|o|||}|~`, SO) and character-set designations other
    /// than ASCII (`ESC ( 0`, `ESC % @`, …), which make the shell's text unreadable.
    Lasting,
    /// An OSC 8 hyperlink whose target the user does not see: in replayed output every link
    /// (the text stays), in live output a link to a scheme other than `http`, `https` or `file`
    /// (`vscode://`, `ssh://`, … start programs through the desktop's URL handlers).
    Hyperlink,
}

impl DropKind {
    /// A short stable name for logs.
    pub fn name(self) -> &'static str {
        match self {
            DropKind::Clipboard => "clipboard",
            DropKind::ClipboardQuery => "clipboard-query",
            DropKind::TitleReport => "title-report",
            DropKind::WindowOp => "window-op",
            DropKind::Printer => "printer",
            DropKind::CsiOther => "csi-other",
            DropKind::Decrqss => "decrqss",
            DropKind::Xtgettcap => "xtgettcap",
            DropKind::Dcs => "dcs",
            DropKind::Apc => "apc",
            DropKind::Pm => "pm",
            DropKind::Sos => "sos",
            DropKind::ColorQuery => "color-query",
            DropKind::Font => "font",
            DropKind::OscOther => "osc-other",
            DropKind::Enq => "enq",
            DropKind::C1Control => "c1-control",
            DropKind::Malformed => "malformed",
            DropKind::Oversized => "oversized",
            DropKind::Query => "query",
            DropKind::Lasting => "lasting",
            DropKind::Hyperlink => "hyperlink",
        }
    }
}

/// Longest escape or CSI sequence kept (bytes); longer ones are discarded.
pub const MAX_CSI: usize = 256;
/// Longest control string (OSC, DCS, …) kept (bytes); longer ones are discarded as they stream.
pub const MAX_STRING: usize = 64 * 1024;
/// Bytes of a discarded control string kept to classify it.
const HEAD: usize = 16;

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;
const ENQ: u8 = 0x05;
/// Shift Out: the terminal shows G1's characters (line drawing) until Shift In.
const SO: u8 = 0x0e;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
const DEL: u8 = 0x7f;
/// C1 String Terminator as a raw byte.
const ST8: u8 = 0x9c;

/// The control strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrKind {
    Osc,
    Dcs,
    Sos,
    Pm,
    Apc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// Inside a multi-byte UTF-8 character: `need` more continuation bytes, the next one in
    /// `lo..=hi` (Unicode Table 3-7, which rules out overlong forms and surrogates).
    Utf8 {
        need: u8,
        lo: u8,
        hi: u8,
    },
    /// A 0xC2 lead byte is held: followed by 0x80–0x9F it is a C1 control.
    C2,
    /// After ESC (the introducer is in `seq`).
    Esc,
    /// After ESC and intermediates.
    EscInter,
    /// Inside a CSI; `body` is where the parameters start in `seq`.
    Csi,
    /// Inside a control string; `esc` when the previous byte was ESC (a possible `ESC \`).
    Str {
        kind: StrKind,
        esc: bool,
    },
}

/// The output filter; one per relay, fed in order.
#[derive(Debug)]
pub struct TermFilter {
    config: FilterConfig,
    state: State,
    /// The raw bytes of the sequence under way (introducer included), up to its bound.
    seq: Vec<u8>,
    /// Where the sequence's body starts in `seq` (after the 1–3 introducer bytes).
    body: usize,
    /// The sequence went over its bound: bytes are no longer kept.
    discard: bool,
    /// For a discarded control string: its first bytes, to classify it.
    head: Vec<u8>,
    /// A CSI parameter byte came after an intermediate (ill-formed).
    bad: bool,
    /// An SGR that changes the rendition passed and none reset it since: replayed output then
    /// ends with `CSI 0 m` ([`TermFilter::finish`]).
    sgr_set: bool,
    counts: BTreeMap<DropKind, u64>,
}

impl TermFilter {
    /// A filter in the ground state.
    pub fn new(config: FilterConfig) -> TermFilter {
        TermFilter {
            config,
            state: State::Ground,
            seq: Vec::with_capacity(64),
            body: 0,
            discard: false,
            head: Vec::new(),
            bad: false,
            sgr_set: false,
            counts: BTreeMap::new(),
        }
    }

    /// What was dropped so far, per kind.
    pub fn counts(&self) -> &BTreeMap<DropKind, u64> {
        &self.counts
    }

    /// Total number of dropped items.
    pub fn dropped(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Whether everything passed on so far ended between two characters and two sequences,
    /// so bytes of airlock's own (a notice) can be written without breaking either.
    pub fn between_sequences(&self) -> bool {
        self.state == State::Ground
    }

    /// Bytes held for the sequence under way (bounded by [`MAX_STRING`]; for fuzzing).
    pub fn held(&self) -> usize {
        self.seq.capacity() + self.head.capacity()
    }

    /// Filters `input`, appending what may reach the terminal to `out`. A sequence split across
    /// calls is held until it is complete.
    pub fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            // Fast path: a run of plain ASCII text in the ground state.
            if self.state == State::Ground {
                let run = input[i..]
                    .iter()
                    .position(|&b| {
                        !(0x20..0x7f).contains(&b) && !matches!(b, b'\n' | b'\r' | b'\t')
                    })
                    .unwrap_or(input.len() - i);
                out.extend_from_slice(&input[i..i + run]);
                i += run;
                if i == input.len() {
                    break;
                }
            }
            if self.step(input[i], out) {
                i += 1;
            }
        }
    }

    /// Ends the stream: a sequence still incomplete is dropped (and counted), a held byte too.
    /// Replayed output whose colours or attributes were left set ends with `CSI 0 m`, so the
    /// user's next prompt is not drawn (or hidden, SGR 8) in the session's rendition.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.state {
            State::Ground | State::Utf8 { .. } => {}
            State::C2 => self.count(DropKind::Malformed),
            State::Str { kind, .. } => {
                let k = self.classify_string(kind);
                self.count(k.unwrap_or(DropKind::Malformed));
            }
            State::Esc | State::EscInter | State::Csi => self.count(DropKind::Malformed),
        }
        self.reset(State::Ground);
        if self.config.replay && self.sgr_set {
            out.extend_from_slice(b"\x1b[0m");
            self.sgr_set = false;
        }
    }

    fn count(&mut self, kind: DropKind) {
        *self.counts.entry(kind).or_insert(0) += 1;
    }

    fn reset(&mut self, state: State) {
        self.state = state;
        self.seq.clear();
        self.body = 0;
        self.discard = false;
        self.head.clear();
        self.bad = false;
    }

    /// Starts a sequence whose introducer bytes are `intro`.
    fn begin(&mut self, state: State, intro: &[u8]) {
        self.reset(state);
        self.seq.extend_from_slice(intro);
        self.body = intro.len();
    }

    /// Drops the sequence under way.
    fn drop_seq(&mut self, kind: DropKind) {
        self.count(kind);
        self.reset(State::Ground);
    }

    /// Passes the sequence under way.
    fn pass_seq(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq);
        self.reset(State::Ground);
    }

    /// Keeps one more byte of the sequence under way, within `max`.
    fn keep(&mut self, b: u8, max: usize) {
        if self.discard {
            if self.head.len() < HEAD {
                self.head.push(b);
            }
            return;
        }
        if self.seq.len() >= max {
            self.discard = true;
            let body = self.seq.get(self.body..).unwrap_or(&[]);
            self.head = body[..body.len().min(HEAD)].to_vec();
            self.seq = Vec::with_capacity(64);
            return;
        }
        self.seq.push(b);
    }

    /// Processes one byte; `false` when the byte must be processed again (in the state the
    /// byte left behind, after an aborted sequence).
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match self.state {
            State::Ground => self.ground(b, out),
            State::Utf8 { need, lo, hi } => {
                if (lo..=hi).contains(&b) {
                    out.push(b);
                    self.state = if need <= 1 {
                        State::Ground
                    } else {
                        State::Utf8 {
                            need: need - 1,
                            lo: 0x80,
                            hi: 0xbf,
                        }
                    };
                    true
                } else {
                    // A truncated character; the terminal shows U+FFFD and reads `b` afresh.
                    self.state = State::Ground;
                    false
                }
            }
            State::C2 => {
                if (0x80..=0x9f).contains(&b) {
                    self.c1(b, &[0xc2, b]);
                    true
                } else if (0xa0..=0xbf).contains(&b) {
                    out.extend_from_slice(&[0xc2, b]);
                    self.state = State::Ground;
                    true
                } else {
                    self.count(DropKind::Malformed);
                    self.state = State::Ground;
                    false
                }
            }
            State::Esc => self.esc(b, out),
            State::EscInter => match b {
                0x20..=0x2f => {
                    self.keep(b, MAX_CSI);
                    true
                }
                0x30..=0x7e => {
                    self.keep(b, MAX_CSI);
                    if self.discard {
                        self.drop_seq(DropKind::Oversized);
                    } else if self.config.replay && !is_ascii_designation(&self.seq[1..]) {
                        self.drop_seq(DropKind::Lasting);
                    } else {
                        self.pass_seq(out);
                    }
                    true
                }
                _ => {
                    self.drop_seq(DropKind::Malformed);
                    false
                }
            },
            State::Csi => self.csi(b, out),
            State::Str { kind, esc } => self.string(kind, esc, b, out),
        }
    }

    fn ground(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match b {
            ESC => self.begin(State::Esc, &[ESC]),
            ENQ => self.count(DropKind::Enq),
            SO if self.config.replay => self.count(DropKind::Lasting),
            0x00..=0x7f => out.push(b),
            0x80..=0x9f => self.c1(b, &[b]),
            // An 8-bit terminal: Latin-1 text.
            0xa0..=0xff if !self.config.utf8 => out.push(b),
            // A stray continuation byte: shown as U+FFFD (or Latin-1 text), never a control.
            0xa0..=0xbf => out.push(b),
            0xc0 | 0xc1 | 0xf5..=0xff => self.count(DropKind::Malformed),
            0xc2 => self.state = State::C2,
            0xc3..=0xdf => self.lead(b, 1, 0x80, 0xbf, out),
            0xe0 => self.lead(b, 2, 0xa0, 0xbf, out),
            0xed => self.lead(b, 2, 0x80, 0x9f, out),
            0xe1..=0xef => self.lead(b, 2, 0x80, 0xbf, out),
            0xf0 => self.lead(b, 3, 0x90, 0xbf, out),
            0xf4 => self.lead(b, 3, 0x80, 0x8f, out),
            0xf1..=0xf3 => self.lead(b, 3, 0x80, 0xbf, out),
        }
        true
    }

    fn lead(&mut self, b: u8, need: u8, lo: u8, hi: u8, out: &mut Vec<u8>) {
        out.push(b);
        self.state = State::Utf8 { need, lo, hi };
    }

    /// A C1 control `c` (0x80–0x9F), written as the bytes `intro`.
    fn c1(&mut self, c: u8, intro: &[u8]) {
        match c {
            0x9b => self.begin(State::Csi, intro),
            0x9d => self.string_begin(StrKind::Osc, intro),
            0x90 => self.string_begin(StrKind::Dcs, intro),
            0x98 => self.string_begin(StrKind::Sos, intro),
            0x9e => self.string_begin(StrKind::Pm, intro),
            0x9f => self.string_begin(StrKind::Apc, intro),
            _ => {
                self.count(DropKind::C1Control);
                self.reset(State::Ground);
            }
        }
    }

    fn string_begin(&mut self, kind: StrKind, intro: &[u8]) {
        self.begin(State::Str { kind, esc: false }, intro);
    }

    fn esc(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        let intro = [ESC, b];
        match b {
            b'[' => self.begin(State::Csi, &intro),
            b']' => self.string_begin(StrKind::Osc, &intro),
            b'P' => self.string_begin(StrKind::Dcs, &intro),
            b'X' => self.string_begin(StrKind::Sos, &intro),
            b'^' => self.string_begin(StrKind::Pm, &intro),
            b'_' => self.string_begin(StrKind::Apc, &intro),
            0x20..=0x2f => {
                self.seq.push(b);
                self.state = State::EscInter;
            }
            0x30..=0x7e => {
                self.seq.push(b);
                if self.config.replay && matches!(b, b'c' | b'=' | b'n' | b'o' | b'|' | b'}' | b'~')
                {
                    self.drop_seq(DropKind::Lasting);
                } else {
                    self.pass_seq(out);
                }
            }
            _ => {
                // ESC followed by a control or a non-ASCII byte: the escape is abandoned and the
                // byte read afresh.
                self.drop_seq(DropKind::Malformed);
                return false;
            }
        }
        true
    }

    fn csi(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match b {
            0x30..=0x3f => {
                let inter = self.seq[self.body..]
                    .iter()
                    .any(|c| (0x20..=0x2f).contains(c));
                if inter {
                    self.bad = true;
                }
                self.keep(b, MAX_CSI);
            }
            0x20..=0x2f => self.keep(b, MAX_CSI),
            0x40..=0x7e => {
                self.keep(b, MAX_CSI);
                if self.discard {
                    self.drop_seq(DropKind::Oversized);
                } else if self.bad {
                    self.drop_seq(DropKind::Malformed);
                } else {
                    match classify_csi(&self.seq[self.body..], self.config.replay) {
                        None => {
                            // Only replay closes with a reset: live output skips the scan.
                            if self.config.replay {
                                if let Some(set) = sgr_sets(&self.seq[self.body..]) {
                                    self.sgr_set = set;
                                }
                            }
                            self.pass_seq(out)
                        }
                        Some(kind) => self.drop_seq(kind),
                    }
                }
            }
            // A terminal executes C0 controls met inside a CSI at once and goes on with the
            // sequence: emit them now, the sequence when it completes.
            ENQ => self.count(DropKind::Enq),
            ESC | CAN | SUB => {
                self.drop_seq(DropKind::Malformed);
                return false;
            }
            0x00..=0x1f => out.push(b),
            DEL => {}
            _ => {
                self.drop_seq(DropKind::Malformed);
                return false;
            }
        }
        true
    }

    fn string(&mut self, kind: StrKind, esc: bool, b: u8, out: &mut Vec<u8>) -> bool {
        if esc {
            if b == b'\\' {
                self.keep(ESC, MAX_STRING);
                self.keep(b, MAX_STRING);
                self.string_end(kind, true, out);
                return true;
            }
            // ESC inside a string aborts it and starts an escape sequence.
            let k = self.classify_string(kind).unwrap_or(DropKind::Malformed);
            self.count(k);
            self.begin(State::Esc, &[ESC]);
            return false;
        }
        match b {
            ESC => {
                self.state = State::Str { kind, esc: true };
            }
            BEL if kind == StrKind::Osc => {
                self.keep(b, MAX_STRING);
                self.string_end(kind, true, out);
            }
            ST8 => {
                self.keep(b, MAX_STRING);
                self.string_end(kind, false, out);
            }
            CAN | SUB => {
                let k = self.classify_string(kind).unwrap_or(DropKind::Malformed);
                self.drop_seq(k);
                return false;
            }
            _ => self.keep(b, MAX_STRING),
        }
        true
    }

    /// A control string is complete; `seven_bit` when its terminator was BEL or `ESC \`.
    fn string_end(&mut self, kind: StrKind, seven_bit: bool, out: &mut Vec<u8>) {
        match self.classify_string(kind) {
            Some(k) => self.drop_seq(k),
            None if self.discard => self.drop_seq(DropKind::Oversized),
            // A passed string ends the way every terminal recognises.
            None if !seven_bit => self.drop_seq(DropKind::Malformed),
            None => self.pass_seq(out),
        }
    }

    /// `None` when the string (complete or not) may pass, else why it is dropped.
    fn classify_string(&self, kind: StrKind) -> Option<DropKind> {
        let body: &[u8] = if self.discard {
            &self.head
        } else {
            self.seq.get(self.body..).unwrap_or(&[])
        };
        match kind {
            StrKind::Sos => Some(DropKind::Sos),
            StrKind::Pm => Some(DropKind::Pm),
            StrKind::Apc => Some(DropKind::Apc),
            StrKind::Dcs => Some(classify_dcs(body)),
            StrKind::Osc => self.classify_osc(body),
        }
    }

    fn classify_osc(&self, body: &[u8]) -> Option<DropKind> {
        // The body without its terminator (BEL, ESC \ or 0x9C).
        let payload = strip_terminator(body);
        let (num, rest) = match payload.iter().position(|&c| c == b';') {
            Some(p) => (&payload[..p], &payload[p + 1..]),
            None => (payload, &payload[payload.len()..]),
        };
        let num = std::str::from_utf8(num)
            .ok()
            .and_then(|n| n.parse::<u32>().ok());
        let verdict = match num {
            Some(0..=2 | 4 | 5 | 10..=19 | 104 | 105 | 110..=119)
                if self.config.replay && !rest.contains(&b'?') =>
            {
                Some(DropKind::Lasting)
            }
            Some(8) if self.config.replay => Some(DropKind::Hyperlink),
            Some(8) if !link_target_allowed(rest) => Some(DropKind::Hyperlink),
            Some(0..=2) | Some(8) => None,
            Some(52) => {
                // OSC 52 ; selection ; data — data `?` asks the terminal for the clipboard.
                let data = rest.splitn(2, |&c| c == b';').nth(1).unwrap_or(&[]);
                if data.contains(&b'?') {
                    Some(DropKind::ClipboardQuery)
                } else if self.config.allow_clipboard {
                    None
                } else {
                    Some(DropKind::Clipboard)
                }
            }
            Some(4 | 5 | 10..=19 | 104 | 105 | 110..=119) => {
                if rest.contains(&b'?') {
                    Some(DropKind::ColorQuery)
                } else {
                    None
                }
            }
            Some(50) => Some(DropKind::Font),
            _ => Some(DropKind::OscOther),
        };
        if verdict.is_some() || self.discard {
            return verdict;
        }
        // A passed payload is text without control characters: valid UTF-8, or for an 8-bit
        // terminal, bytes outside C0, DEL and C1.
        let clean = if self.config.utf8 {
            std::str::from_utf8(payload).is_ok_and(|s| !s.chars().any(char::is_control))
        } else {
            payload
                .iter()
                .all(|&c| c >= 0x20 && c != DEL && !(0x80..=0x9f).contains(&c))
        };
        if clean {
            None
        } else {
            Some(DropKind::OscOther)
        }
    }
}

/// An OSC 8 link's `params;URI` (after `8;`): the URI is empty (the link's end) or its scheme is
/// `http`, `https` or `file` (RFC 3986 section 3.1: schemes compare case-insensitively).
fn link_target_allowed(rest: &[u8]) -> bool {
    let Some(uri) = rest.splitn(2, |&c| c == b';').nth(1) else {
        return false;
    };
    if uri.is_empty() {
        return true;
    }
    let Some(colon) = uri.iter().position(|&c| c == b':') else {
        return false;
    };
    let scheme = uri[..colon].to_ascii_lowercase();
    matches!(&scheme[..], b"http" | b"https" | b"file")
}

fn strip_terminator(body: &[u8]) -> &[u8] {
    if let Some(b) = body.strip_suffix(&[ESC, b'\\']) {
        b
    } else if let Some(b) = body.strip_suffix(&[BEL]) {
        b
    } else if let Some(b) = body.strip_suffix(&[ST8]) {
        b
    } else {
        body
    }
}

fn classify_dcs(body: &[u8]) -> DropKind {
    // DCS parameters, then intermediates and the final byte: `$ q` is DECRQSS, `+ q` XTGETTCAP.
    let rest: &[u8] = {
        let p = body
            .iter()
            .position(|c| !(0x30..=0x3f).contains(c))
            .unwrap_or(body.len());
        &body[p..]
    };
    if rest.starts_with(b"$q") {
        DropKind::Decrqss
    } else if rest.starts_with(b"+q") {
        DropKind::Xtgettcap
    } else {
        DropKind::Dcs
    }
}

/// `None` if the CSI (parameters, intermediates and final byte, introducer excluded) may pass;
/// `replay`: see [`FilterConfig::replay`].
fn classify_csi(body: &[u8], replay: bool) -> Option<DropKind> {
    let Some((&fin, rest)) = body.split_last() else {
        return Some(DropKind::Malformed);
    };
    let split = rest
        .iter()
        .position(|c| (0x20..=0x2f).contains(c))
        .unwrap_or(rest.len());
    let (params, inter) = rest.split_at(split);
    if replay && is_query(params, inter, fin) {
        return Some(DropKind::Query);
    }
    if replay && is_lasting(params, inter, fin) {
        return Some(DropKind::Lasting);
    }
    match (inter, fin) {
        ([], b't') => {
            // XTWINOPS: only 22/23 (push/pop title on the terminal's own stack) pass.
            let first = params
                .split(|&c| c == b';')
                .next()
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| p.parse::<u32>().ok());
            match first {
                Some(22 | 23) => None,
                Some(20 | 21) => Some(DropKind::TitleReport),
                _ => Some(DropKind::WindowOp),
            }
        }
        ([], b'i') => Some(DropKind::Printer),
        ([], _) => None,
        // DECSCUSR (cursor style), DECRQM (mode report: a fixed answer), DECSTR, DECSCL, DECSCA.
        (b" ", b'q') | (b"$", b'p') | (b"!", b'p') | (b"\"", b'p') | (b"\"", b'q') => None,
        _ => Some(DropKind::CsiOther),
    }
}

/// CSI sequences whose effect outlives replayed output (see [`DropKind::Lasting`]; xterm
/// ctlseqs: SM/RM and DECSET/DECRST, DECSTBM and XTRESTORE, ED 3, DECSCUSR, DECSTR, DECSCL,
/// DECSCA).
fn is_lasting(params: &[u8], inter: &[u8], fin: u8) -> bool {
    match (inter, fin) {
        ([], b'h' | b'l' | b'r') => true,
        ([], b'J') => params == b"3",
        (b" ", b'q') | (b"!", b'p') | (b"\"", b'p') | (b"\"", b'q') => true,
        _ => false,
    }
}

/// For an SGR (`CSI … m`, the body after the introducer): whether it leaves the rendition
/// changed (`false` when its last parameter resets it: empty or 0). `None` for any other CSI.
fn sgr_sets(body: &[u8]) -> Option<bool> {
    let params = body.strip_suffix(b"m")?;
    if params
        .iter()
        .any(|c| !(c.is_ascii_digit() || *c == b';' || *c == b':'))
    {
        return None;
    }
    let last = params.rsplit(|&c| c == b';').next().unwrap_or(&[]);
    Some(!last.iter().all(|&c| c == b'0'))
}

/// `ESC ( B` and its G1–G3 forms (the intermediates and final after ESC): designating ASCII,
/// the terminal's default, which replayed output may pass.
fn is_ascii_designation(after_esc: &[u8]) -> bool {
    matches!(after_esc, [b'(' | b')' | b'*' | b'+', b'B'])
}

/// DSR (`CSI 5 n`, `CSI 6 n`, `CSI ? … n`), DA (`CSI c`, `CSI > c`, `CSI = c`), DECRQM
/// (`CSI ? … $ p`) and XTVERSION (`CSI > q`): sequences the terminal answers (xterm ctlseqs).
fn is_query(params: &[u8], inter: &[u8], fin: u8) -> bool {
    match (inter, fin) {
        ([], b'n' | b'c') => true,
        (b"$", b'p') => true,
        ([], b'q') => params.first() == Some(&b'>'),
        _ => false,
    }
}

/// Checks the filter's invariants on one input split into pieces (for fuzzing): it never holds
/// more than its bounds, and what it passed is passed unchanged, with nothing dropped, by a
/// second filter (the output holds only text and allowed sequences). Panics on a violation.
pub fn check_invariants(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let config = FilterConfig {
        allow_clipboard: first & 1 != 0,
        utf8: first & 2 == 0,
        replay: first & 4 != 0,
    };
    let mut f = TermFilter::new(config);
    let mut out = Vec::new();
    // Split where the input says (bytes 0xFE mark the cuts), to exercise resumption.
    for piece in rest.split(|&b| b == 0xfe) {
        f.filter(piece, &mut out);
        assert!(f.held() <= 2 * MAX_STRING + 4 * HEAD, "held {}", f.held());
    }
    f.finish(&mut out);
    let mut again = TermFilter::new(config);
    let mut out2 = Vec::new();
    again.filter(&out, &mut out2);
    again.finish(&mut out2);
    assert_eq!(out2, out, "a second pass changed the output");
    assert_eq!(
        again.dropped(),
        0,
        "a second pass dropped {:?}",
        again.counts()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random inputs drawn from the bytes that matter (introducers, terminators, UTF-8 leads,
    /// C1, parameters), checked with [`check_invariants`]; a deterministic stand-in for the fuzz
    /// target on stable Rust.
    #[test]
    fn random_inputs_keep_the_invariants() {
        const ALPHABET: &[u8] = b"\x1b\x1b\x1b[]P^_X\\\x07\x9b\x9d\x90\x9c\x9f\x98\x9e\x85\
            \xc2\xc2\xc0\xe2\xe0\xf0\x80\x9b\xbf\x05\x18\x1a\x7f\x00\n;;0125289?:$+qtmiyc \
            \xfeab";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = usize::try_from(next() % 64).expect("small");
            let data: Vec<u8> = (0..len)
                .map(|_| ALPHABET[usize::try_from(next() % ALPHABET.len() as u64).expect("idx")])
                .collect();
            check_invariants(&data);
        }
    }

    fn run(config: FilterConfig, input: &[u8]) -> (Vec<u8>, BTreeMap<DropKind, u64>) {
        let mut f = TermFilter::new(config);
        let mut out = Vec::new();
        f.filter(input, &mut out);
        f.finish(&mut out);
        (out, f.counts().clone())
    }

    /// [`run`] with the replay configuration (ASCII locale).
    fn replayed(input: &[u8]) -> (Vec<u8>, BTreeMap<DropKind, u64>) {
        run(
            FilterConfig {
                replay: true,
                ..FilterConfig::default()
            },
            input,
        )
    }

    /// Each input either passes byte for byte or is dropped whole with its kind.
    const TABLE: &[(&[u8], Option<DropKind>)] = &[
        // Text, UTF-8, C0.
        (b"hello, world\r\n", None),
        ("héllo → 世界 🦀\n".as_bytes(), None),
        (b"\t\x08\x07\x0e\x0f\x00", None),
        (b"\x05", Some(DropKind::Enq)),
        // Colours, cursor, erase, scroll region, modes.
        (b"\x1b[0m", None),
        (b"\x1b[1;31;48;5;236m", None),
        (b"\x1b[38;2;10;20;30m", None),
        (b"\x1b[38:2::10:20:30m", None),
        (b"\x1b[H", None),
        (b"\x1b[12;40H", None),
        (b"\x1b[2J", None),
        (b"\x1b[K", None),
        (b"\x1b[3;20r", None),
        (b"\x1b[?1049h", None),
        (b"\x1b[?1049l", None),
        (b"\x1b[?2004h", None),
        (b"\x1b[?1000;1006h", None),
        (b"\x1b[?25l", None),
        (b"\x1b[6n", None),
        (b"\x1b[5n", None),
        (b"\x1b[c", None),
        (b"\x1b[>c", None),
        (b"\x1b[>q", None),
        (b"\x1b[?u", None),
        (b"\x1b[>4;2m", None),
        (b"\x1b[2 q", None),
        (b"\x1b[?2026$p", None),
        (b"\x1b[!p", None),
        (b"\x1b[22;0t", None),
        (b"\x1b[23;0t", None),
        (b"\x9b1m", None),
        // Escape sequences.
        (b"\x1b7", None),
        (b"\x1b8", None),
        (b"\x1b(B", None),
        (b"\x1b)0", None),
        (b"\x1b#8", None),
        (b"\x1b=", None),
        (b"\x1b>", None),
        (b"\x1bM", None),
        (b"\x1bc", None),
        // Titles, hyperlinks, colour set/reset.
        (b"\x1b]0;my title\x07", None),
        (b"\x1b]2;my title\x1b\\", None),
        ("\x1b]1;ic\u{f4}ne\x07".as_bytes(), None),
        (b"\x1b]8;;https://example.com/\x1b\\", None),
        (b"\x1b]8;;\x1b\\", None),
        (b"\x1b]4;1;rgb:ff/00/00\x07", None),
        (b"\x1b]11;#000000\x07", None),
        (b"\x1b]104\x07", None),
        (b"\x1b]112\x07", None),
        // Clipboard.
        (b"\x1b]52;c;ZWNobyBwd25lZA==\x07", Some(DropKind::Clipboard)),
        (
            b"\x1b]52;;ZWNobyBwd25lZA==\x1b\\",
            Some(DropKind::Clipboard),
        ),
        (b"\x9d52;c;ZWNobw==\x9c", Some(DropKind::Clipboard)),
        (b"\xc2\x9d52;c;ZWNobw==\x07", Some(DropKind::Clipboard)),
        (b"\x1b]52;c;?\x07", Some(DropKind::ClipboardQuery)),
        // Answer-back queries.
        (b"\x1b[21t", Some(DropKind::TitleReport)),
        (b"\x1b[20t", Some(DropKind::TitleReport)),
        (b"\x9b21t", Some(DropKind::TitleReport)),
        (b"\xc2\x9b21t", Some(DropKind::TitleReport)),
        (b"\x1bP$qm\x1b\\", Some(DropKind::Decrqss)),
        (b"\x1bP$q\"p\x1b\\", Some(DropKind::Decrqss)),
        (b"\x901$qr\x9c", Some(DropKind::Decrqss)),
        (b"\x1bP+q544e\x1b\\", Some(DropKind::Xtgettcap)),
        (b"\x1b]10;?\x07", Some(DropKind::ColorQuery)),
        (b"\x1b]11;?\x1b\\", Some(DropKind::ColorQuery)),
        (b"\x1b]4;1;?\x07", Some(DropKind::ColorQuery)),
        (b"\x1b]50;?\x07", Some(DropKind::Font)),
        (b"\x1b]50;fixed\x07", Some(DropKind::Font)),
        // Window manipulation, printer, screen reads.
        (b"\x1b[1t", Some(DropKind::WindowOp)),
        (b"\x1b[3;0;0t", Some(DropKind::WindowOp)),
        (b"\x1b[8;100;300t", Some(DropKind::WindowOp)),
        (b"\x1b[14t", Some(DropKind::WindowOp)),
        (b"\x1b[19t", Some(DropKind::WindowOp)),
        (b"\x1b[t", Some(DropKind::WindowOp)),
        (b"\x1b[>3t", Some(DropKind::WindowOp)),
        (b"\x1b[5i", Some(DropKind::Printer)),
        (b"\x1b[?5i", Some(DropKind::Printer)),
        (b"\x1b[1;1;1;1;10;10*y", Some(DropKind::CsiOther)),
        (b"\x1b[1$w", Some(DropKind::CsiOther)),
        // Other strings.
        (b"\x1bPq#0;2;0;0;0#1!6~-\x1b\\", Some(DropKind::Dcs)),
        (b"\x1b_Gf=100;AAAA\x1b\\", Some(DropKind::Apc)),
        (b"\x1b^secret\x1b\\", Some(DropKind::Pm)),
        (b"\x1bXstring\x1b\\", Some(DropKind::Sos)),
        (b"\x9fapc\x9c", Some(DropKind::Apc)),
        (
            b"\x1b]1337;File=name=eA==:eA==\x07",
            Some(DropKind::OscOther),
        ),
        (b"\x1b]9;notify\x07", Some(DropKind::OscOther)),
        (b"\x1b]777;notify;a;b\x07", Some(DropKind::OscOther)),
        (b"\x1b]7;file:///etc\x07", Some(DropKind::OscOther)),
        (b"\x1b]5113;x\x07", Some(DropKind::OscOther)),
        // A title whose payload carries controls, or that ends with an 8-bit ST.
        (b"\x1b]0;a\x05b\x07", Some(DropKind::OscOther)),
        ("\x1b]0;a\u{85}b\x07".as_bytes(), Some(DropKind::OscOther)),
        (b"\x1b]0;title\x9c", Some(DropKind::Malformed)),
        // Single C1 controls and bytes no UTF-8 has.
        (b"\x85", Some(DropKind::C1Control)),
        (b"\xc2\x85", Some(DropKind::C1Control)),
        (b"\x9c", Some(DropKind::C1Control)),
        (b"\xc0", Some(DropKind::Malformed)),
        (b"\xf8", Some(DropKind::Malformed)),
        // Unterminated.
        (b"\x1b]52;c;AAAA", Some(DropKind::Clipboard)),
        (b"\x1b[21", Some(DropKind::Malformed)),
    ];

    #[test]
    fn table_of_sequences() {
        for (input, verdict) in TABLE {
            let (out, counts) = run(FilterConfig::default(), input);
            match verdict {
                None => {
                    assert_eq!(&out, input, "{input:?} should pass unchanged");
                    assert!(counts.is_empty(), "{input:?}: {counts:?}");
                }
                Some(kind) => {
                    assert!(out.is_empty(), "{input:?} should be dropped, got {out:?}");
                    assert_eq!(counts.get(kind), Some(&1), "{input:?}: {counts:?}");
                    assert_eq!(counts.values().sum::<u64>(), 1, "{input:?}: {counts:?}");
                }
            }
        }
    }

    #[test]
    fn splits_at_every_byte_boundary_give_the_same_output() {
        let all: Vec<u8> = TABLE
            .iter()
            .flat_map(|(i, _)| {
                let mut v = i.to_vec();
                // Keep unterminated entries from swallowing the next one.
                v.extend_from_slice(b"\x1b\\\x07 ");
                v
            })
            .collect();
        let (whole, whole_counts) = run(FilterConfig::default(), &all);
        for (input, _) in TABLE {
            for cut in 0..=input.len() {
                let mut f = TermFilter::new(FilterConfig::default());
                let mut out = Vec::new();
                f.filter(&input[..cut], &mut out);
                f.filter(&input[cut..], &mut out);
                f.finish(&mut out);
                let (once, counts) = run(FilterConfig::default(), input);
                assert_eq!(out, once, "{input:?} cut at {cut}");
                assert_eq!(f.counts(), &counts, "{input:?} cut at {cut}");
            }
        }
        // The whole table byte by byte.
        let mut f = TermFilter::new(FilterConfig::default());
        let mut out = Vec::new();
        for b in &all {
            f.filter(std::slice::from_ref(b), &mut out);
        }
        f.finish(&mut out);
        assert_eq!(out, whole);
        assert_eq!(f.counts(), &whole_counts);
    }

    #[test]
    fn text_around_dropped_sequences_is_kept() {
        let (out, counts) = run(
            FilterConfig::default(),
            b"a\x1b[31mred\x1b]52;c;eA==\x07b\x1b[21tc\x1b[0m",
        );
        assert_eq!(out, b"a\x1b[31mredbc\x1b[0m");
        assert_eq!(counts.get(&DropKind::Clipboard), Some(&1));
        assert_eq!(counts.get(&DropKind::TitleReport), Some(&1));
    }

    #[test]
    fn clipboard_writes_pass_only_when_allowed_and_reads_never() {
        let allow = FilterConfig {
            allow_clipboard: true,
            ..FilterConfig::default()
        };
        let write = b"\x1b]52;c;ZWNobyBoaQ==\x07";
        assert_eq!(run(allow, write).0, write);
        let (out, counts) = run(allow, b"\x1b]52;c;?\x07");
        assert!(out.is_empty());
        assert_eq!(counts.get(&DropKind::ClipboardQuery), Some(&1));
    }

    #[test]
    fn an_endless_string_is_bounded() {
        let mut f = TermFilter::new(FilterConfig::default());
        let mut out = Vec::new();
        f.filter(b"\x1b]0;", &mut out);
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..64 {
            f.filter(&chunk, &mut out);
            assert!(f.seq.capacity() <= MAX_STRING * 2, "{}", f.seq.capacity());
        }
        f.filter(b"\x07after", &mut out);
        assert_eq!(out, b"after");
        assert_eq!(f.counts().get(&DropKind::Oversized), Some(&1));
        // A long allowed clipboard write under the bound still passes; one over it does not.
        let allow = FilterConfig {
            allow_clipboard: true,
            ..FilterConfig::default()
        };
        let mut big = b"\x1b]52;c;".to_vec();
        big.extend(std::iter::repeat_n(b'A', MAX_STRING + 10));
        big.push(BEL);
        let (out, counts) = run(allow, &big);
        assert!(out.is_empty());
        assert_eq!(counts.get(&DropKind::Oversized), Some(&1));
    }

    #[test]
    fn an_escape_inside_a_string_starts_a_new_sequence() {
        // The ESC aborts the OSC 52; what follows is read as a sequence of its own.
        let (out, counts) = run(FilterConfig::default(), b"\x1b]52;c;eA==\x1b[1mX");
        assert_eq!(out, b"\x1b[1mX");
        assert_eq!(counts.get(&DropKind::Clipboard), Some(&1));
    }

    #[test]
    fn tmux_passthrough_is_dropped_and_what_it_wraps_read_as_the_terminal_would() {
        // A terminal that does not know tmux's passthrough ends the DCS at the first ESC and
        // reads the wrapped OSC 52 for itself: the filter does the same, and drops it too.
        let (out, counts) = run(
            FilterConfig::default(),
            b"\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\z",
        );
        assert_eq!(out, b"\x1b\\z");
        assert_eq!(counts.get(&DropKind::Dcs), Some(&1));
        assert_eq!(counts.get(&DropKind::Clipboard), Some(&1));
    }

    #[test]
    fn an_eight_bit_terminal_gets_no_c1_byte_inside_text() {
        let eight = FilterConfig {
            utf8: false,
            ..FilterConfig::default()
        };
        // U+201D (E2 80 9D) ends in an OSC introducer for an 8-bit terminal.
        let (out, counts) = run(eight, "\u{201d}52;c;eA==\x07".as_bytes());
        assert_eq!(out, b"\xe2");
        assert_eq!(counts.get(&DropKind::Clipboard), Some(&1));
        // Latin-1 text passes.
        assert_eq!(run(eight, b"caf\xe9 \xa0\xff").0, b"caf\xe9 \xa0\xff");
        // And in UTF-8 mode the same bytes are a quotation mark and text.
        let utf8 = "\u{201d}52;c;eA==".as_bytes();
        assert_eq!(run(FilterConfig::default(), utf8).0, utf8);
    }

    #[test]
    fn controls_inside_a_csi_run_at_once() {
        let (out, _) = run(FilterConfig::default(), b"\x1b[1\n;31m");
        assert_eq!(out, b"\n\x1b[1;31m");
    }

    #[test]
    fn utf8_whose_continuation_bytes_look_like_c1_stays_text() {
        // U+2009 is E2 80 89, U+201B is E2 80 9B: continuation bytes in the C1 range.
        let s = "a\u{2009}b\u{201b}c\u{10ffff}".as_bytes();
        assert_eq!(run(FilterConfig::default(), s).0, s);
        // An overlong three-byte U+009B (E0 82 9B) is not text: the lead passes (shown as
        // U+FFFD), the rest is taken as C1 controls.
        let (out, counts) = run(FilterConfig::default(), b"\xe0\x82\x9b21t");
        assert_eq!(out, b"\xe0");
        assert_eq!(counts.get(&DropKind::TitleReport), Some(&1));
    }

    #[test]
    fn replayed_output_drops_what_the_terminal_would_answer() {
        let queries: [&[u8]; 10] = [
            b"\x1b[6n",
            b"\x1b[5n",
            b"\x1b[?6n",
            b"\x1b[c",
            b"\x1b[0c",
            b"\x1b[>c",
            b"\x1b[=c",
            b"\x1b[?2004$p",
            b"\x1b[>0q",
            b"\x9b6n",
        ];
        for q in queries {
            assert_eq!(
                run(FilterConfig::default(), q).0,
                q,
                "live output keeps {q:?}: the sandboxed program reads the answer"
            );
            let (out, counts) = replayed(q);
            assert!(out.is_empty(), "replayed {q:?} passed as {out:?}");
            assert_eq!(counts.get(&DropKind::Query), Some(&1), "{q:?}");
        }
        // What is neither a query nor lasting still passes in replayed output: colours (reset
        // at the end), movement, erasing the screen, ASCII designation, saved cursor.
        let kept = b"\x1b[1;31mred\x1b[0m\x1b[2;5H\x1b[2J\x1b(B\x1b7\x1b8";
        let (out, counts) = replayed(kept);
        assert_eq!(out, kept);
        assert!(counts.is_empty(), "{counts:?}");
    }

    /// Titles and palette colours outlive replayed output, so replay drops them (every
    /// the BEL and ST terminators); live output keeps
    /// them, because the session's own full-screen program sets them while it runs.
    #[test]
    fn replay_drops_lasting_settings() {
        let lasting: &[&[u8]] = &[
            b"\x1b]0;sudo password needed\x07",
            b"\x1b]1;icon\x1b\\",
            b"\x1b]2;title\x07",
            b"\x1b]4;1;#000000\x07",
            b"\x1b]10;#000000\x07",
            b"\x1b]11;rgb:00/00/00\x1b\\",
            b"\x1b]104\x07",
            b"\x1b]110\x07",
            // Red-team Y3: modes (mouse reporting types into the shell; alternate screen;
            // bracketed paste off; insert mode; no autowrap; hidden cursor), scroll regions,
            // scrollback erase, cursor style, soft reset, RIS, keypad mode, charsets, shifts.
            b"\x1b[?9h",
            b"\x1b[?1000h",
            b"\x1b[?1002h",
            b"\x1b[?1003h",
            b"\x1b[?1006h",
            b"\x1b[?1015h",
            b"\x1b[?1049h",
            b"\x1b[?47h",
            b"\x1b[?1047h",
            b"\x1b[?2004l",
            b"\x1b[4h",
            b"\x1b[?7l",
            b"\x1b[?25l",
            b"\x1b[1;1r",
            b"\x1b[?1049r",
            b"\x1b[3J",
            b"\x1b[2 q",
            b"\x1b[!p",
            b"\x1b[61\"p",
            b"\x1b[1\"q",
            b"\x1bc",
            b"\x1b=",
            b"\x1bn",
            b"\x1b~",
            b"\x0e",
            b"\x1b(0",
            b"\x1b)0",
            b"\x1b%@",
            b"\x1b#8",
            "\u{9b}?1003h".as_bytes(),
        ];
        for seq in lasting {
            assert_eq!(
                run(FilterConfig::default(), seq).0,
                *seq,
                "live output keeps {seq:?}"
            );
            let (out, counts) = replayed(seq);
            assert!(out.is_empty(), "replayed {seq:?} passed as {out:?}");
            assert_eq!(counts.get(&DropKind::Lasting), Some(&1), "{seq:?}");
        }
        // Split across reads, the same.
        let mut replay = TermFilter::new(FilterConfig {
            replay: true,
            ..FilterConfig::default()
        });
        let mut out = Vec::new();
        for piece in [&b"a\x1b[?10"[..], b"03h b\x1b", b"[1;1", b"r c"] {
            replay.filter(piece, &mut out);
        }
        replay.finish(&mut out);
        assert_eq!(out, b"a b c");
    }

    /// Replayed output that leaves a rendition set (concealed text, colours) ends with SGR 0, so
    /// the user's prompt is not drawn in it; one that reset it gets nothing added. Live output
    /// is never added to.
    #[test]
    fn replay_ends_with_the_rendition_reset() {
        for (input, added) in [
            (&b"\x1b[8mhidden"[..], true),
            (b"\x1b[38;5;1mred", true),
            (b"\x1b[38:2::1:2:3mrgb", true),
            (b"\x1b[1mbold\x1b[m", false),
            (b"\x1b[1mbold\x1b[0;0m", false),
            (b"\x1b[0;1mbold", true),
            (b"plain", false),
        ] {
            let (out, _) = replayed(input);
            let mut want = input.to_vec();
            if added {
                want.extend_from_slice(b"\x1b[0m");
            }
            assert_eq!(out, want, "{input:?}");
            assert_eq!(
                run(FilterConfig::default(), input).0,
                input,
                "live {input:?}"
            );
        }
    }

    /// OSC 8 links: replayed output drops every link (its text stays, so what is shown is what
    /// the text says); live output passes http, https and file targets only, any case.
    #[test]
    fn hyperlinks_show_their_target_or_nothing() {
        let link = |uri: &str| format!("\x1b]8;;{uri}\x1b\\text\x1b]8;;\x1b\\");
        for (uri, live_passes) in [
            ("https://example.com/", true),
            ("HTTP://example.com/", true),
            ("file:///work/src/lib.rs", true),
            ("vscode://file/etc/passwd", false),
            ("ssh://host", false),
            ("jetbrains://idea/navigate", false),
            ("javascript:alert(1)", false),
            ("no-scheme", false),
        ] {
            let seq = link(uri);
            let mut live = TermFilter::new(FilterConfig::default());
            let mut out = Vec::new();
            live.filter(seq.as_bytes(), &mut out);
            if live_passes {
                assert_eq!(out, seq.as_bytes(), "{uri}");
            } else {
                assert_eq!(out, b"text\x1b]8;;\x1b\\", "{uri}");
                assert_eq!(live.counts().get(&DropKind::Hyperlink), Some(&1), "{uri}");
            }
            assert_eq!(replayed(seq.as_bytes()).0, b"text", "replayed {uri}");
        }
    }
}
