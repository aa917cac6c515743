//! Showing sandbox-chosen names and text on the user's terminal without letting the terminal
//! interpret them (DESIGN guarantee 8).
//!
//! Every file name, path or string the sandbox chose that airlock prints (diff headers, merge's
//! landed and refused lists, audit details, error messages) goes through [`path`] or [`name`]:
//! a name that holds a control character (C0, DEL, C1), a Unicode bidirectional or invisible
//! formatting character, invalid UTF-8, or a `"` or `\` is printed C-style quoted, the way git
//! does with `core.quotePath` (git-config(1)): in double quotes, with `\n`, `\t`, `\r`, `\a`,
//! `\b`, `\f`, `\v`, `\\`, `\"` and every other such byte as a three-digit octal escape
//! (`\033` for ESC). Other names, printable UTF-8 included, are printed as they are. So a name
//! can neither drive the terminal nor forge a line of output (a newline is `\n`).
//!
//! File *contents* in a diff go through [`visible`] instead, which renders control characters
//! the way `cat -v` does (`^[` for ESC), keeping tabs and line ends.

use std::borrow::Cow;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Unicode characters that are not control characters but change how the text around them is
/// shown: bidirectional embeddings, overrides and isolates (the "Trojan Source" attack, CVE-
/// 2021-42574), zero-width characters and the byte-order mark (Unicode TR9, Cf category).
fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A control character: C0, DEL or C1 (ECMA-48).
fn is_control(c: char) -> bool {
    c.is_control()
}

fn needs_quoting(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => s
            .chars()
            .any(|c| is_control(c) || is_deceptive(c) || c == '"' || c == '\\'),
        Err(_) => true,
    }
}

/// `bytes` as a C-style quoted string when it needs quoting (see the module doc), else as is.
pub fn bytes(bytes: &[u8]) -> Cow<'_, str> {
    if !needs_quoting(bytes) {
        // needs_quoting returned false, so the bytes are valid UTF-8.
        return String::from_utf8_lossy(bytes);
    }
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\u{b}' => out.push_str("\\v"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if is_control(c) || is_deceptive(c) => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\{b:03o}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// A path the sandbox may have chosen, ready to print (quoted when needed; see the module doc).
pub fn path<P: AsRef<Path> + ?Sized>(p: &P) -> Cow<'_, str> {
    bytes(p.as_ref().as_os_str().as_bytes())
}

/// A name or other string the sandbox may have chosen (an audit detail), ready to print.
pub fn name(s: &str) -> Cow<'_, str> {
    bytes(s.as_bytes())
}

/// Text the sandbox chose (a file's content in a diff) with its control characters rendered
/// visibly, as `cat -v` does: `^[` for ESC, `^@`..`^_` for the other C0 controls, `^?` for DEL,
/// `M-^@`..`M-^_` for the C1 controls U+0080–U+009F, and `<U+202E>` for the characters of
/// `is_deceptive`. Tab and line feed are kept, so lines and indentation read as in the file.
pub fn visible(text: &str) -> Cow<'_, str> {
    let plain = |c: char| c == '\t' || c == '\n' || !(is_control(c) || is_deceptive(c));
    if text.chars().all(plain) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        let u = u32::from(c);
        match c {
            c if plain(c) => out.push(c),
            '\u{7f}' => out.push_str("^?"),
            _ if u < 0x20 => {
                out.push('^');
                out.push(char::from_u32(0x40 + u).unwrap_or('?'));
            }
            _ if (0x80..0xa0).contains(&u) => {
                out.push_str("M-^");
                out.push(char::from_u32(0x40 + u - 0x80).unwrap_or('?'));
            }
            _ => out.push_str(&format!("<U+{u:04X}>")),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(name("src/main.rs"), "src/main.rs");
        assert_eq!(name("docs/été ünïcode.md"), "docs/été ünïcode.md");
        assert_eq!(name("with space"), "with space");
    }

    #[test]
    fn names_with_controls_are_quoted_c_style() {
        // OSC 52 clipboard write, CSI 21t title report, a DCS (DECRQSS), a newline forging a
        // diff line, a C1 CSI as UTF-8, a bidi override, a quote and a backslash.
        let cases = [
            (
                "a\u{1b}]52;c;ZWNobyBoaQ==\u{7}b",
                "\"a\\033]52;c;ZWNobyBoaQ==\\ab\"",
            ),
            ("x\u{1b}[21ty", "\"x\\033[21ty\""),
            ("\u{1b}P$qm\u{1b}\\", "\"\\033P$qm\\033\\\\\""),
            ("f\n+++ b/evil", "\"f\\n+++ b/evil\""),
            ("c1\u{9b}31m", "\"c1\\302\\23331m\""),
            ("abc\u{202e}txt.exe", "\"abc\\342\\200\\256txt.exe\""),
            ("q\"b\\", "\"q\\\"b\\\\\""),
            ("cr\rtab\tdel\u{7f}", "\"cr\\rtab\\tdel\\177\""),
        ];
        for (raw, want) in cases {
            let got = name(raw);
            assert_eq!(got, want, "{raw:?}");
            assert!(!got.bytes().any(|b| b < 0x20 || b == 0x7f), "{got:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_quoted_in_octal() {
        let p = Path::new(OsStr::from_bytes(b"bad\xff\x9b[2J"));
        assert_eq!(path(p), "\"bad\\377\\233[2J\"");
    }

    #[test]
    fn content_is_shown_like_cat_v() {
        assert_eq!(visible("plain\n\tindent\n"), "plain\n\tindent\n");
        assert_eq!(
            visible("\u{1b}]52;c;eA==\u{7}x\u{1b}[21t\r\u{7f}\u{9b}\u{202e}\n"),
            "^[]52;c;eA==^Gx^[[21t^M^?M-^[<U+202E>\n"
        );
        assert_eq!(visible("\u{1b}P$q\"p\u{1b}\\"), "^[P$q\"p^[\\");
    }
}
