//! The user's Fly token: `FLY_API_TOKEN`, else `FLY_ACCESS_TOKEN`, else flyctl's config file
//! (`$FLY_CONFIG_DIR/config.yml`, by default `~/.fly/config.yml`, key `access_token`: flyctl's
//! `internal/config`). The token is never printed: [`Token`]'s `Debug` shows only where it
//! came from.

use std::path::{Path, PathBuf};

use super::FLY;
use crate::RemoteError;

/// A Fly API token and where it was found.
#[derive(Clone)]
pub struct Token {
    value: String,
    source: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("source", &self.source)
            .field("value", &"<redacted>")
            .finish()
    }
}

impl Token {
    /// A token given directly (tests, a caller with its own source); `source` names it in
    /// errors.
    pub fn new(value: impl Into<String>, source: impl Into<String>) -> Token {
        Token {
            value: value.into().trim().to_string(),
            source: source.into(),
        }
    }

    /// Where the token came from (`FLY_API_TOKEN`, a config file's path), for errors.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `Authorization` header's value: a token that already carries its scheme
    /// (`FlyV1 …`, `Bearer …`) is sent as it is; a bare macaroon (`fm1r_`, `fm1a_`, `fm2_`, as
    /// `fly tokens create` prints without the scheme) gets `FlyV1`; anything else (an OAuth
    /// token from `fly auth token`) `Bearer` (fly-go `tokens.Parse`/`normalized`).
    pub fn authorization(&self) -> String {
        let v = self.value.as_str();
        let (scheme, _) = v.split_once(' ').unwrap_or(("", v));
        if scheme.eq_ignore_ascii_case("FlyV1") || scheme.eq_ignore_ascii_case("Bearer") {
            return v.to_string();
        }
        let first = v.split(',').next().unwrap_or("");
        let prefix = first.split('_').next().unwrap_or("");
        if matches!(prefix, "fm1r" | "fm1a" | "fm2") {
            format!("FlyV1 {v}")
        } else {
            format!("Bearer {v}")
        }
    }

    /// The token without a scheme (the registry's Basic password).
    pub fn bare(&self) -> &str {
        let v = self.value.as_str();
        match v.split_once(' ') {
            Some((s, rest))
                if s.eq_ignore_ascii_case("FlyV1") || s.eq_ignore_ascii_case("Bearer") =>
            {
                rest.trim()
            }
            _ => v,
        }
    }
}

/// Finds the token as flyctl would: the environment (`env` looks a name up), then the config
/// file under `config_dir` (`None`: `$FLY_CONFIG_DIR`, else `$HOME/.fly`).
///
/// # Errors
/// No token anywhere ([`RemoteError::Engine`] saying how to get one); a config file that
/// exists but cannot be read.
pub fn discover(
    env: &dyn Fn(&str) -> Option<String>,
    config_dir: Option<&Path>,
) -> Result<Token, RemoteError> {
    for name in ["FLY_API_TOKEN", "FLY_ACCESS_TOKEN"] {
        if let Some(v) = env(name).filter(|v| !v.trim().is_empty()) {
            return Ok(Token::new(v, name));
        }
    }
    let dir = match config_dir {
        Some(d) => Some(d.to_path_buf()),
        None => env("FLY_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| Path::new(&h).join(".fly"))),
    };
    if let Some(dir) = dir {
        let path = dir.join("config.yml");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Some(v) = access_token(&text).filter(|v| !v.trim().is_empty()) {
                    return Ok(Token::new(v, path.display().to_string()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RemoteError::Engine {
                    engine: FLY,
                    message: format!("cannot read flyctl's config {}: {e}", path.display()),
                })
            }
        }
    }
    Err(RemoteError::Engine {
        engine: FLY,
        message: "no Fly API token: set FLY_API_TOKEN (e.g. from `fly tokens create deploy \
                  --app APP`) or log in with `fly auth login` (airlock then reads \
                  access_token from ~/.fly/config.yml)"
            .into(),
    })
}

/// The top-level `access_token` scalar of flyctl's YAML config (as flyctl writes it with
/// yaml.v3: one `key: value` line, the value plain, single- or double-quoted). Other keys and
/// nested maps are skipped.
fn access_token(text: &str) -> Option<String> {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("access_token:") else {
            continue;
        };
        let v = rest.trim();
        if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            return Some(unescape_double(inner));
        }
        if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            return Some(inner.replace("''", "'"));
        }
        // a plain scalar ends at " #" (a comment)
        let v = v.split(" #").next().unwrap_or("").trim();
        return Some(v.to_string());
    }
    None
}

/// The escapes a YAML double-quoted token can hold (`\\`, `\"`, `\/`); others are kept.
fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | '"' | '/')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn environment_first_then_the_config_file() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("config.yml"),
            "auto_update: true\naccess_token: fo1_fromfile\nwire_guard_state: {}\n",
        )
        .expect("write");
        let env = |n: &str| (n == "FLY_API_TOKEN").then(|| "fo1_env".to_string());
        let t = discover(&env, Some(dir.path())).expect("token");
        assert_eq!(t.source(), "FLY_API_TOKEN");
        assert_eq!(t.authorization(), "Bearer fo1_env");
        let t = discover(&no_env, Some(dir.path())).expect("token");
        assert_eq!(t.authorization(), "Bearer fo1_fromfile");
        assert!(t.source().ends_with("config.yml"));
    }

    #[test]
    fn quoted_and_macaroon_tokens() {
        assert_eq!(
            access_token("access_token: \"FlyV1 fm2_a+b/c=,fm2_d\"\n").as_deref(),
            Some("FlyV1 fm2_a+b/c=,fm2_d")
        );
        assert_eq!(
            access_token("x: 1\naccess_token: 'it''s'\n").as_deref(),
            Some("it's")
        );
        assert_eq!(Token::new("fm2_abc", "t").authorization(), "FlyV1 fm2_abc");
        assert_eq!(
            Token::new("FlyV1 fm2_abc", "t").authorization(),
            "FlyV1 fm2_abc"
        );
        assert_eq!(Token::new("FlyV1 fm2_abc", "t").bare(), "fm2_abc");
        // a nested key of the same name is not the top-level one
        assert_eq!(access_token("x:\n  access_token: no\n"), None);
    }

    #[test]
    fn no_token_says_how_to_get_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = discover(&no_env, Some(dir.path())).expect_err("no token");
        let m = e.to_string();
        assert!(m.starts_with("fly: no Fly API token"), "{m}");
        assert!(
            m.contains("FLY_API_TOKEN") && m.contains("fly auth login"),
            "{m}"
        );
        // an empty access_token (flyctl's logout) is no token either
        std::fs::write(dir.path().join("config.yml"), "access_token: \"\"\n").expect("w");
        assert!(discover(&no_env, Some(dir.path())).is_err());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = Token::new("fo1_secretvalue", "FLY_API_TOKEN");
        assert!(!format!("{t:?}").contains("secretvalue"));
    }
}
