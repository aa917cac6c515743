//! Secret-bearing files inside the trees airlock binds because of `PATH` (tool homes such as
//! `~/.cargo` or `~/.nvm`, and the prefixes of `bin` directories), added to the hide list.
//!
//! A tool home is bound whole because toolchains need more than their `bin` directory, so the
//! configuration files that tools keep there are visible too, and some of them hold registry
//! tokens or passwords. Each entry of the tables below names such a file and, from the tool's
//! documentation, what secret it holds. Files that only hold settings a build needs stay
//! visible, with one exception decided per file: cargo's `config.toml` (and its legacy name
//! `config`) is hidden when it holds a `token` (a `[registry]` or `[registries.NAME]` token,
//! which cargo reads from there as well as from `credentials.toml`) or cannot be parsed (fail
//! closed), and kept otherwise, because builds need its other settings (source replacement,
//! linkers, `[net]`); a warning says which file was hidden and that the token belongs in
//! `credentials.toml`.
//!
//! Checked and found to keep no secrets inside their homes (their credentials live in the home
//! itself or under `$XDG_CONFIG_HOME`, which are never bound): rustup (`~/.rustup`), bun
//! (`~/.bunfig.toml`, `~/.npmrc`), deno (`DENO_AUTH_TOKENS`, `~/.cache/deno`), go (`~/go` is
//! GOPATH, the module and build caches; `GOAUTH` and `~/.netrc` are outside it), pnpm
//! (`~/.config/pnpm/rc`), sdkman's own `etc/config` (settings only).

use std::path::{Path, PathBuf};

/// A file that holds a secret: where it is and what it holds (source: the tool's docs).
struct Secret {
    /// Relative to the anchor of its table; a `*` component matches any one directory.
    path: &'static str,
    /// What secret it holds, and where the tool documents the file.
    holds: &'static str,
}

/// Relative to the invoking user's home (inside the tool homes of `view::TOOL_HOMES`).
const HOME_SECRETS: &[Secret] = &[
    Secret {
        path: ".cargo/credentials.toml",
        holds: "registry tokens (The Cargo Book, \"Credentials\")",
    },
    Secret {
        path: ".cargo/credentials",
        holds: "registry tokens, the legacy name of credentials.toml (The Cargo Book)",
    },
    Secret {
        path: ".npm-global/etc/npmrc",
        holds: "npm's global config for this prefix: _authToken, _auth, _password (npm docs, \
                npmrc: \"$PREFIX/etc/npmrc\")",
    },
    Secret {
        path: ".nvm/versions/node/*/etc/npmrc",
        holds: "npm's global config of each nvm-installed node (npmrc, $PREFIX/etc/npmrc)",
    },
    Secret {
        path: ".volta/tools/image/node/*/etc/npmrc",
        holds: "npm's global config of each volta-installed node (npmrc, $PREFIX/etc/npmrc)",
    },
    Secret {
        path: ".asdf/installs/nodejs/*/etc/npmrc",
        holds: "npm's global config of each asdf-installed node (npmrc, $PREFIX/etc/npmrc)",
    },
    Secret {
        path: ".pyenv/versions/*/pip.conf",
        holds: "pip's site config of each pyenv python: index-url/extra-index-url with \
                credentials (pip docs, Configuration: site file \"$VIRTUAL_ENV/pip.conf\", i.e. \
                sys.prefix)",
    },
    Secret {
        path: ".asdf/installs/python/*/pip.conf",
        holds: "pip's site config of each asdf python (pip docs, Configuration)",
    },
    Secret {
        path: ".sdkman/candidates/maven/*/conf/settings.xml",
        holds: "maven's global settings: <server> usernames and passwords (Maven settings \
                reference: \"${maven.home}/conf/settings.xml\")",
    },
    Secret {
        path: ".asdf/installs/maven/*/conf/settings.xml",
        holds: "maven's global settings of each asdf maven (Maven settings reference)",
    },
    Secret {
        path: ".sdkman/candidates/gradle/*/init.d",
        holds: "gradle init scripts of the distribution, which may set repository \
                credentials (Gradle docs, Initialization Scripts: GRADLE_HOME/init.d)",
    },
];

/// Relative to the prefix of every `PATH` entry named `bin` (its parent): the same kinds of
/// file for tools installed anywhere (`/opt/node`, `~/.local`, a virtualenv).
const PREFIX_SECRETS: &[Secret] = &[
    Secret {
        path: "etc/npmrc",
        holds: "npm's global config for this prefix (npmrc, $PREFIX/etc/npmrc)",
    },
    Secret {
        path: "pip.conf",
        holds: "pip's site config for this prefix (pip docs, Configuration)",
    },
    Secret {
        path: "conf/settings.xml",
        holds: "maven's global settings (Maven settings reference)",
    },
];

/// Expands `pattern` (components, `*` for any one directory) under `root` to existing paths.
pub(crate) fn expand(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let mut found = vec![root.to_path_buf()];
    for comp in pattern.split('/') {
        let mut next = Vec::new();
        for dir in &found {
            if comp == "*" {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                next.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            } else {
                next.push(dir.join(comp));
            }
        }
        found = next;
    }
    found.retain(|p| std::fs::symlink_metadata(p).is_ok());
    found
}

/// Whether a cargo configuration file must be hidden: it holds a key named `token` at any
/// depth, or it cannot be read or parsed as TOML (so what it holds is unknown).
fn cargo_config_has_token(path: &Path) -> bool {
    fn has_token(v: &toml::Value) -> bool {
        match v {
            toml::Value::Table(t) => t.iter().any(|(k, v)| k == "token" || has_token(v)),
            toml::Value::Array(a) => a.iter().any(has_token),
            _ => false,
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<toml::Table>()
            .map_or(true, |t| has_token(&toml::Value::Table(t))),
        Err(_) => true,
    }
}

/// The cargo homes whose files may be visible: `$CARGO_HOME` when set, and `~/.cargo`.
fn cargo_homes(home: &Path) -> Vec<PathBuf> {
    let mut homes = vec![home.join(".cargo")];
    if let Some(h) = std::env::var_os("CARGO_HOME").map(PathBuf::from) {
        if h.is_absolute() && !homes.contains(&h) {
            homes.push(h);
        }
    }
    homes
}

/// The secret-bearing files to hide for a sandbox whose `PATH` (host spelling, before any
/// rewriting) is `host_path`, for the user whose home is `home`. Only existing files are
/// listed; a cargo config hidden because of a token is announced on stderr.
pub(crate) fn secret_files(home: &Path, host_path: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn hide(out: &mut Vec<PathBuf>, found: Vec<PathBuf>, holds: &str) {
        for p in found {
            tracing::debug!(file = %p.display(), holds, "hidden: holds a secret");
            out.push(p);
        }
    }
    for s in HOME_SECRETS {
        hide(&mut out, expand(home, s.path), s.holds);
    }
    for cargo in cargo_homes(home) {
        out.extend(expand(&cargo, "credentials.toml"));
        out.extend(expand(&cargo, "credentials"));
        for name in ["config.toml", "config"] {
            let p = cargo.join(name);
            if p.is_file() && cargo_config_has_token(&p) {
                eprintln!(
                    "airlock: warning: {} holds a registry token (or cannot be parsed); it is \
                     hidden inside the sandbox. Move the token to {} (always hidden) to keep \
                     the file's other settings visible to builds",
                    p.display(),
                    cargo.join("credentials.toml").display()
                );
                out.push(p);
            }
        }
    }
    for entry in host_path.split(':').filter(|d| d.starts_with('/')) {
        let Ok(dir) = std::fs::canonicalize(entry) else {
            continue;
        };
        if dir.file_name().is_some_and(|n| n == "bin") {
            if let Some(prefix) = dir.parent() {
                for s in PREFIX_SECRETS {
                    hide(&mut out, expand(prefix, s.path), s.holds);
                }
            }
        }
    }
    for var in [
        "NPM_CONFIG_GLOBALCONFIG",
        "npm_config_globalconfig",
        "PIP_CONFIG_FILE",
    ] {
        if let Some(p) = std::env::var_os(var).map(PathBuf::from) {
            if p.is_absolute() && p.exists() {
                out.push(p);
            }
        }
    }
    for var in ["NPM_CONFIG_PREFIX", "npm_config_prefix"] {
        if let Some(p) = std::env::var_os(var).map(PathBuf::from) {
            if p.is_absolute() {
                out.extend(expand(&p, "etc/npmrc"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_config_is_hidden_only_with_a_token() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("config.toml");
        for (text, hidden) in [
            (
                "[build]\njobs = 2\n[net]\ngit-fetch-with-cli = true\n",
                false,
            ),
            (
                "[registries.x]\nindex = \"sparse+https://r/\"\ntoken = \"T\"\n",
                true,
            ),
            ("[registry]\ntoken = \"T\"\n", true),
            ("[registries]\nx = { token = \"T\" }\n", true),
            ("this is [not toml", true),
        ] {
            std::fs::write(&p, text).expect("write");
            assert_eq!(cargo_config_has_token(&p), hidden, "{text}");
        }
    }

    #[test]
    fn patterns_expand_to_existing_files_only() {
        let d = tempfile::tempdir().expect("tempdir");
        for v in ["v18", "v20"] {
            std::fs::create_dir_all(d.path().join(format!(".nvm/versions/node/{v}/etc")))
                .expect("mkdir");
        }
        std::fs::write(d.path().join(".nvm/versions/node/v20/etc/npmrc"), "x").expect("write");
        let got = expand(d.path(), ".nvm/versions/node/*/etc/npmrc");
        assert_eq!(got, vec![d.path().join(".nvm/versions/node/v20/etc/npmrc")]);
    }
}
