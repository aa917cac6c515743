//! Parameter expansions (`${X:-default}`, `${X#prefix}`, …) and the command substitutions
//! hiding in them.

use brush_parser::word::{Parameter, ParameterExpr, WordPieceWithSource};

use super::words::Builder;
use super::{ParseError, Var, Walker};

impl Walker<'_> {
    /// A parameter expansion: its static value where known, else [`crate::ir::DYN`], after
    /// walking any command substitution inside it.
    pub(super) fn param(
        &mut self,
        p: &ParameterExpr,
        src: &str,
        at: &WordPieceWithSource,
        quoted: bool,
        b: &mut Builder,
    ) -> Result<(), ParseError> {
        if let ParameterExpr::Parameter {
            parameter,
            indirect: false,
        } = p
        {
            match parameter {
                Parameter::Named(name) => self.named_param(name, quoted, b),
                // `$$`, positional and special parameters: only known at run time.
                _ => b.push_dyn(),
            }
            return Ok(());
        }
        // `${t%.txt}`: removing a suffix keeps what the value starts with.
        if let ParameterExpr::RemoveSmallestSuffixPattern {
            parameter: Parameter::Named(name),
            indirect: false,
            ..
        }
        | ParameterExpr::RemoveLargestSuffixPattern {
            parameter: Parameter::Named(name),
            indirect: false,
            ..
        } = p
        {
            if let Some(Var::Prefix(pre)) = self.vars.get(name) {
                let pre = pre.clone();
                b.push_str(&pre);
            }
        }
        let raw = src.get(at.start_index..at.end_index).unwrap_or("");
        if self.home_or_scratch(raw, b) {
            return Ok(());
        }
        self.expansion_text(raw)?;
        b.push_dyn();
        Ok(())
    }

    /// `$NAME`: its value when assigned earlier in the script (split into words unless
    /// quoted), its known prefix, or the default of a variable whose value is known here
    /// (`HOME`, `TMPDIR`, the XDG base directories, `CLAUDE_CONFIG_DIR`, `PWD`, `IFS`).
    fn named_param(&self, name: &str, quoted: bool, b: &mut Builder) {
        match (name, self.vars.get(name)) {
            (_, Some(Var::Known(v))) => {
                let v = v.clone();
                if quoted {
                    b.push_str(&v);
                } else if self.vars.contains_key("IFS") {
                    // Split on a custom IFS (`IFS=,; $cmd`): words unknown.
                    b.push_dyn();
                } else {
                    b.push_split(&v);
                }
            }
            (_, Some(Var::Prefix(p))) => {
                let p = p.clone();
                b.push_str(&p);
                b.push_dyn();
            }
            (_, Some(Var::Unknown)) => b.push_dyn(),
            ("HOME", None) => b.push_str(&self.env.home.clone()),
            // The scratch directory (`mktemp`'s default); set in this command, it
            // is tracked above like any variable.
            ("TMPDIR", None) => b.push_str("/tmp"),
            // Directories under the home directory by their defaults (the XDG
            // base directory spec; Claude Code's config dir): where the agent's
            // settings and airlock's config live.
            ("XDG_CONFIG_HOME", None) => b.push_str(&format!("{}/.config", self.env.home)),
            ("XDG_STATE_HOME", None) => b.push_str(&format!("{}/.local/state", self.env.home)),
            ("XDG_DATA_HOME", None) => b.push_str(&format!("{}/.local/share", self.env.home)),
            ("CLAUDE_CONFIG_DIR", None) => b.push_str(&format!("{}/.claude", self.env.home)),
            ("PWD", None) => match &self.cwd {
                Some(c) => b.push_str(&c.clone()),
                None => b.push_dyn(),
            },
            ("IFS", None) if !quoted => b.split(),
            ("IFS", None) => b.push_str(" "),
            _ => b.push_dyn(),
        }
    }

    /// `${HOME:0:5}`, `${HOME%/*}`, `${HOME/x/y}`: a path built from the home directory is
    /// judged as the home directory (stricter than "somewhere"); `${TMPDIR:-/tmp}` is the
    /// scratch directory either way (see `TMPDIR` above) when the default runs nothing. True
    /// when `raw` (the expansion as written) is one of those and its value was pushed.
    fn home_or_scratch(&self, raw: &str, b: &mut Builder) -> bool {
        if raw
            .strip_prefix("${HOME")
            .and_then(|r| r.chars().next())
            .is_some_and(|c| matches!(c, ':' | '#' | '%' | '/' | '^' | ',' | '@'))
            && !self.vars.contains_key("HOME")
        {
            b.push_str(&self.env.home.clone());
            return true;
        }
        if let Some(default) = raw
            .strip_prefix("${TMPDIR:-")
            .or_else(|| raw.strip_prefix("${TMPDIR-"))
            .and_then(|r| r.strip_suffix('}'))
        {
            if !default.contains(['$', '`']) && !self.vars.contains_key("TMPDIR") {
                b.push_str("/tmp");
                return true;
            }
        }
        false
    }

    /// Anything fancier (`${X:-$(cmd)}`, `${X/a/b}`, `${!X}`): the value is dynamic, but the
    /// text inside may hold substitutions that run: it is walked as a word.
    fn expansion_text(&mut self, raw: &str) -> Result<(), ParseError> {
        let inner = raw
            .strip_prefix("${")
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or("");
        if inner.contains("$(")
            || inner.contains('`')
            || inner.contains("${")
            || inner.contains("<(")
        {
            let quoted_inner = format!("\"{}\"", inner.replace('"', "\\\""));
            // The inner text is not always a valid word (patterns): ignore what doesn't parse,
            // but only after scanning the substitutions it holds.
            if self.words_nosplit(&quoted_inner).is_err() {
                self.scan_substitutions(inner)?;
            }
        }
        Ok(())
    }

    /// Last resort for text that is not a word: walk every `$(…)` and backquoted part in it.
    pub(super) fn scan_substitutions(&mut self, text: &str) -> Result<(), ParseError> {
        let mut rest = text;
        while let Some(i) = rest.find("$(") {
            let after = &rest[i + 2..];
            let mut depth = 1usize;
            let mut end = None;
            for (j, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                return Err(ParseError::Syntax("unterminated $( in expansion".into()));
            };
            self.nested(&after[..end], "$(…)")?;
            rest = &after[end + 1..];
        }
        let parts: Vec<&str> = text.split('`').collect();
        if parts.len() % 2 == 0 {
            return Err(ParseError::Syntax(
                "unterminated backquote in expansion".into(),
            ));
        }
        for (i, part) in parts.iter().enumerate() {
            if i % 2 == 1 {
                self.nested(part, "`…`")?;
            }
        }
        Ok(())
    }
}
