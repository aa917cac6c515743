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
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
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
}
