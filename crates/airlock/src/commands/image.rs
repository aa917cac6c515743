//! `airlock image build|status`: airlock's default image for the container backends
//! (`airlock_container::image`), built ahead or inspected.

use std::io::Write;

use airlock_container::image::{self, Recipe, Status};
use airlock_container::EngineKind;
use anyhow::Result;

use crate::cli::{ImageArgs, ImageEngine};

fn engine(args: &ImageArgs) -> EngineKind {
    match args.backend {
        ImageEngine::Podman => EngineKind::Podman,
        ImageEngine::Docker => EngineKind::Docker,
    }
}

/// Builds the default image when missing (or always with `--rebuild`); progress on stderr, the
/// result on stdout.
pub(crate) fn build(args: &ImageArgs) -> Result<i32> {
    let kind = engine(args);
    let recipe = Recipe::from_env();
    let mut progress = |line: &str| eprintln!("airlock: image: {line}");
    let built = if args.rebuild {
        image::build(kind, &recipe, &mut progress)
    } else {
        image::ensure(kind, &recipe, &mut progress)
    };
    built.map_err(|e| crate::exit::with_code(e.exit_code(), anyhow::Error::new(e)))?;
    print(args, &image::status(kind, &recipe)?)
}

/// Reports the default image's state; exits 0 when present, 1 when it would be built.
pub(crate) fn status(args: &ImageArgs) -> Result<i32> {
    let status = image::status(engine(args), &Recipe::from_env())?;
    print(args, &status)?;
    Ok(if status.present { 0 } else { 1 })
}

fn print(args: &ImageArgs, s: &Status) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = serde_json::json!({
            "engine": s.engine,
            "tag": s.tag,
            "present": s.present,
            "base": s.base,
            "stale": s.stale,
            "claude_code": image::CLAUDE_CODE_VERSION,
            "codex": image::CODEX_VERSION,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        let state = if s.present {
            "present"
        } else {
            "missing (the first `airlock run` without --image builds it, or `airlock image build`)"
        };
        writeln!(out, "default image  {} ({}): {state}", s.tag, s.engine)?;
        writeln!(out, "base           {}", s.base)?;
        writeln!(
            out,
            "agents         claude-code {}, codex {}",
            image::CLAUDE_CODE_VERSION,
            image::CODEX_VERSION
        )?;
        for t in &s.stale {
            writeln!(out, "older          {t} (remove: {} rmi {t})", s.engine)?;
        }
    }
    Ok(0)
}
