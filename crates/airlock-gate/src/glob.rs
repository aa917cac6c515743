//! A small glob matcher for rule patterns: `*` (any run of characters, `/` included), `?` (one
//! character) and `[abc]` / `[a-z]` / `[!abc]` classes. Compiled once, matched without
//! allocation.

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Tok>,
    literal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Glob {
    /// Compiles `pattern`. A `[` without a closing `]` is a literal.
    pub fn new(pattern: &str) -> Glob {
        // Most rule patterns are plain names: no tokens to build (the hook compiles ~2,000
        // patterns per call).
        if !pattern.contains(['*', '?', '[']) {
            return Glob {
                tokens: Vec::new(),
                literal: Some(pattern.to_string()),
            };
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if tokens.last() != Some(&Tok::Star) {
                        tokens.push(Tok::Star);
                    }
                }
                '?' => tokens.push(Tok::Any),
                '[' => {
                    let close = chars[i + 1..]
                        .iter()
                        .enumerate()
                        .skip(1)
                        .find(|(_, c)| **c == ']')
                        .map(|(j, _)| i + 1 + j);
                    match close {
                        Some(end) => {
                            let mut body = &chars[i + 1..end];
                            let negated = matches!(body.first(), Some('!' | '^'));
                            if negated {
                                body = &body[1..];
                            }
                            let mut items = Vec::new();
                            let mut k = 0;
                            while k < body.len() {
                                if k + 2 < body.len() && body[k + 1] == '-' {
                                    items.push((body[k], body[k + 2]));
                                    k += 3;
                                } else {
                                    items.push((body[k], body[k]));
                                    k += 1;
                                }
                            }
                            tokens.push(Tok::Class { negated, items });
                            i = end;
                        }
                        None => tokens.push(Tok::Lit('[')),
                    }
                }
                c => tokens.push(Tok::Lit(c)),
            }
            i += 1;
        }
        let literal = tokens
            .iter()
            .all(|t| matches!(t, Tok::Lit(_)))
            .then(|| pattern.to_string());
        Glob { tokens, literal }
    }

    /// Whether the pattern is about a file name at any depth (`*/id_rsa`, `*.pem`): a `*`, then
    /// at most one `/`, right after it.
    pub fn is_name_anywhere(&self) -> bool {
        if self.literal.is_some() {
            return false;
        }
        self.tokens.first() == Some(&Tok::Star)
            && self.tokens[1..]
                .iter()
                .skip(usize::from(self.tokens.get(1) == Some(&Tok::Lit('/'))))
                .all(|t| *t != Tok::Lit('/') && *t != Tok::Star)
    }

    /// The tokens (a literal pattern keeps none: built here when needed).
    fn toks(&self) -> std::borrow::Cow<'_, [Tok]> {
        match &self.literal {
            Some(l) if self.tokens.is_empty() => {
                std::borrow::Cow::Owned(l.chars().map(Tok::Lit).collect())
            }
            _ => std::borrow::Cow::Borrowed(&self.tokens),
        }
    }

    /// Whether the pattern has no wildcard.
    pub fn is_literal(&self) -> bool {
        self.literal.is_some()
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        if let Some(l) = &self.literal {
            return l == text;
        }
        let t: Vec<char> = text.chars().collect();
        match_from(&self.tokens, &t)
    }
}

impl Glob {
    /// Whether some path matches both `self`, read as a shell pattern (a word the shell expands:
    /// `*`, `?` and classes never match `/`, and never a leading `.` of a name), and `rule`, a
    /// rule pattern (`*` matches `/` too). `cat ~/.ss?/id_*` can name `~/.ssh/id_rsa`; `rm *`
    /// cannot name `.git/hooks/x`. Dynamic programming over both patterns: O(len × len).
    pub fn shell_intersects(&self, rule: &Glob) -> bool {
        // Cheap refusals first: the literal heads (and tails) must agree.
        let lit_head = |t: &[Tok]| -> Vec<char> {
            t.iter()
                .map_while(|x| match x {
                    Tok::Lit(c) => Some(*c),
                    _ => None,
                })
                .collect()
        };
        let lit_tail = |t: &[Tok]| -> Vec<char> {
            let mut v: Vec<char> = t
                .iter()
                .rev()
                .map_while(|x| match x {
                    Tok::Lit(c) => Some(*c),
                    _ => None,
                })
                .collect();
            v.reverse();
            v
        };
        let agree = |a: &[char], b: &[char], head: bool| {
            let n = a.len().min(b.len());
            if head {
                a[..n] == b[..n]
            } else {
                a[a.len() - n..] == b[b.len() - n..]
            }
        };
        let (a, b) = (self.toks(), rule.toks());
        if !agree(&lit_head(&a), &lit_head(&b), true) || !agree(&lit_tail(&a), &lit_tail(&b), false)
        {
            return false;
        }
        intersect(&a, &b)
    }
}

/// Can the word token `w` (not a star) and the rule token `r` (not a star) match one same
/// character? `start`: the character begins a name in the word (a wildcard may not be `.`).
fn char_compat(w: &Tok, r: &Tok, start: bool) -> bool {
    let class_has = |negated: bool, items: &[(char, char)], c: char| {
        items.iter().any(|(a, b)| *a <= c && c <= *b) != negated
    };
    match (w, r) {
        (Tok::Lit(x), Tok::Lit(y)) => x == y,
        (Tok::Lit(_), Tok::Any) => true,
        (Tok::Lit(x), Tok::Class { negated, items }) => class_has(*negated, items, *x),
        (Tok::Any | Tok::Class { .. }, Tok::Lit(y)) => {
            *y != '/'
                && !(start && *y == '.')
                && match w {
                    Tok::Class { negated, items } => class_has(*negated, items, *y),
                    _ => true,
                }
        }
        _ => true,
    }
}

/// Bottom-up table over (position in the word, position in the rule, whether the word's `*` at
/// that position has matched nothing yet): no recursion, whatever the length.
fn intersect(a: &[Tok], b: &[Tok]) -> bool {
    let (n, m) = (a.len(), b.len());
    let idx = |i: usize, j: usize, fresh: bool| (i * (m + 1) + j) * 2 + usize::from(fresh);
    let mut dp = vec![false; (n + 1) * (m + 1) * 2];
    for i in (0..=n).rev() {
        let start = i == 0 || matches!(a.get(i - 1), Some(Tok::Lit('/')));
        for j in (0..=m).rev() {
            for fresh in [false, true] {
                let v = match (a.get(i), b.get(j)) {
                    (None, None) => true,
                    (Some(Tok::Star), _) => {
                        // The word's `*`: matches nothing more, or one more character of the rule's.
                        let seg_start = start && fresh;
                        dp[idx(i + 1, j, true)]
                            || match b.get(j) {
                                Some(Tok::Lit(c)) => {
                                    *c != '/'
                                        && !(seg_start && *c == '.')
                                        && dp[idx(i, j + 1, false)]
                                }
                                Some(_) => dp[idx(i, j + 1, false)],
                                None => false,
                            }
                    }
                    (_, Some(Tok::Star)) => {
                        // The rule's `*`: matches nothing more, or one more character of the word's.
                        dp[idx(i, j + 1, true)] || (i < n && dp[idx(i + 1, j, true)])
                    }
                    (Some(w), Some(r)) => char_compat(w, r, start) && dp[idx(i + 1, j + 1, true)],
                    _ => false,
                };
                dp[idx(i, j, fresh)] = v;
            }
        }
    }
    dp[idx(0, 0, true)]
}

fn match_from(p: &[Tok], t: &[char]) -> bool {
    // Iterative matcher with single-star backtracking.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match &p[pi] {
                Tok::Star => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                Tok::Any => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                Tok::Lit(c) if *c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                Tok::Class { negated, items } => {
                    let hit = items.iter().any(|(a, b)| *a <= t[ti] && t[ti] <= *b);
                    if hit != *negated {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                Tok::Lit(_) => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|t| *t == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn matches() {
        assert!(Glob::new("*/.ssh/*").matches("/home/u/.ssh/id_rsa"));
        assert!(!Glob::new("*/.ssh/*").matches("/home/u/.sshx"));
        assert!(Glob::new("r?").matches("rm"));
        assert!(Glob::new("[246]???").matches("4755"));
        assert!(!Glob::new("[246]???").matches("0755"));
        assert!(Glob::new("python3*").matches("python3.12"));
        assert!(Glob::new("a*b*c").matches("axxbyyc"));
        assert!(!Glob::new("a*b*c").matches("axxbyy"));
        assert!(Glob::new("[!0-9]x").matches("ax"));
        assert!(Glob::new("[").matches("["));
    }

    #[test]
    fn shell_patterns_intersect_rule_patterns() {
        let yes = [
            ("/h/.ss?/id_*", "/h/.ssh/*"),
            ("/h/.s*/id_rsa", "/h/.ssh/*"),
            ("/home/*/.ssh/id_rsa", "*/.ssh/*"),
            ("/h/.[s]sh/x", "/h/.ssh/*"),
            ("/h/.docker/*", "/h/.docker/config.json"),
            ("/h/.z*rc", "/h/.zshrc"),
            ("/w/.git/hoo?s/pre-commit", "*/.git/hooks/*"),
        ];
        for (w, r) in yes {
            assert!(Glob::new(w).shell_intersects(&Glob::new(r)), "{w} ∩ {r}");
        }
        let no = [
            ("/w/*", "*/.git/hooks/*"),
            ("/w/build/*", "*/.git/hooks/*"),
            ("/w/*", "*/.claude/settings.json"),
            ("/h/*/id_rsa", "/h/.ssh/*"),
            ("/w/src/*.rs", "/h/.ssh/*"),
        ];
        for (w, r) in no {
            assert!(!Glob::new(w).shell_intersects(&Glob::new(r)), "{w} ∩ {r}");
        }
    }
}
