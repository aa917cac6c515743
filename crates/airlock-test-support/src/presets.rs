//! A home with every ecosystem preset's caches and the secrets its tools keep in and around
//! them, for tests that run `airlock run --preset NAME` and check that no secret is readable
//! while the cache is (on the native and the container backend alike).

use std::path::Path;

/// One preset's planted files, relative to the home.
#[derive(Debug)]
pub struct PresetSecrets {
    /// The preset (`--preset NAME`).
    pub preset: &'static str,
    /// Files holding the marker that must not be readable inside.
    pub secrets: Vec<&'static str>,
    /// A cache file that must be readable inside (so the check can fail: the cache is there).
    pub control: &'static str,
}

/// The marker every planted secret holds.
pub const MARKER: &str = "PLANTED_PRESET_SECRET";
/// What every control file holds.
pub const CONTROL: &str = "cache-content";

/// Plants, under `home`, each preset's cache (with a control file) and the secrets its tools
/// keep in or beside it (sources: The Cargo Book "Credentials"/"Configuration", Maven's
/// settings reference, Gradle's "Build Environment", npm's npmrc and logging docs, pip's and
/// uv's configuration docs, `go help environment`), and returns what was planted.
///
/// # Panics
/// When a file cannot be written.
pub fn plant(home: &Path) -> Vec<PresetSecrets> {
    let sets = vec![
        PresetSecrets {
            preset: "rust",
            secrets: vec![
                ".cargo/credentials.toml",
                ".cargo/credentials",
                ".cargo/config.toml",
                ".cargo/config",
            ],
            control: ".cargo/registry/index/x",
        },
        PresetSecrets {
            preset: "java",
            secrets: vec![
                ".m2/settings.xml",
                ".m2/settings-security.xml",
                ".gradle/gradle.properties",
                ".gradle/init.d/creds.gradle",
            ],
            control: ".m2/repository/org/x/x.pom",
        },
        PresetSecrets {
            preset: "node",
            secrets: vec![".npmrc", ".npm/_logs/2026-debug-0.log"],
            control: ".npm/_cacache/index-v5/x",
        },
        PresetSecrets {
            preset: "python",
            secrets: vec![
                ".pypirc",
                ".pip/pip.conf",
                ".config/pip/pip.conf",
                ".config/uv/uv.toml",
                ".local/share/uv/credentials/credentials.toml",
                ".netrc",
            ],
            control: ".cache/pip/http-v2/x",
        },
        PresetSecrets {
            preset: "go",
            secrets: vec![".netrc", ".config/go/env"],
            control: "go/pkg/mod/cache/download/x",
        },
    ];
    let write = |rel: &str, text: &str| {
        let p = home.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("plant");
    };
    for s in &sets {
        for f in &s.secrets {
            // TOML with a token for cargo's config files (hidden only when they hold one).
            write(
                f,
                &format!("[registry]\ntoken = \"{MARKER}\"\n# <password>{MARKER}</password>\n"),
            );
        }
        write(s.control, CONTROL);
    }
    sets
}
