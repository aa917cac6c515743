//! airlock: run AI coding agents in a sandbox they cannot get out of.
//!
//! The binary is thin: parse arguments, dispatch to `commands`, print an error once with its
//! chain, and turn the outcome into an exit status.
#![forbid(unsafe_code)]

mod agents;
mod approvals;
mod backends;
mod battery;
mod caches;
mod cli;
mod commands;
mod control;
mod credentials;
mod denials;
mod exit;
mod gate_audit;
mod gitclone;
mod notify;
mod policy_load;
mod promote;
mod review_out;
mod session_dir;
mod telemetry;
mod tool_secrets;
mod view;
mod worktree;

use clap::Parser;

fn main() {
    if is_sandbox_init(std::env::args_os().skip(1)) {
        std::process::exit(commands::sandbox_init());
    }
    let log_env = std::env::var_os("AIRLOCK_LOG").is_some();
    if let Some(cli) = hook_call(std::env::args_os().skip(1), log_env) {
        std::process::exit(run(cli));
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = usage_status(&e);
            if code == 0 {
                let _ = e.print();
            } else {
                eprintln!("{}", usage_line(&e));
            }
            std::process::exit(code);
        }
    };
    std::process::exit(run(cli));
}

/// `airlock hook claude` and `airlock hook codex` with nothing else, as agents' settings run
/// them before every tool call: the arguments clap would parse, without building clap's
/// command tree for all of airlock (about 0.1 ms of a call that should take under 3 ms;
/// BENCHMARKS.md). Any other argument, or `$AIRLOCK_LOG` set, goes through clap.
fn hook_call(
    mut args: impl Iterator<Item = std::ffi::OsString>,
    log_env: bool,
) -> Option<cli::Cli> {
    let (first, second) = (args.next()?, args.next()?);
    if first != "hook" || args.next().is_some() || log_env {
        return None;
    }
    let hook = match second.to_str()? {
        "claude" => cli::HookCommand::Claude(cli::HookArgs::default()),
        "codex" => cli::HookCommand::Codex(cli::HookArgs::default()),
        _ => return None,
    };
    Some(cli::Cli {
        log: "warn".into(),
        log_json: false,
        command: cli::Command::Hook(hook),
    })
}

/// `airlock __sandbox-init` and nothing else, as `airlock run` starts the sandbox's init stage
/// (airlock_sandbox::launch) once per session: dispatched without building clap's command tree
/// (about 0.15 ms of the init stage's start-up; bench/PROFILING.md). Any other argument goes
/// through clap, which refuses it.
fn is_sandbox_init(mut args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.next().is_some_and(|a| a == "__sandbox-init") && args.next().is_none()
}

/// `--help` and `--version` succeed. A usage error is airlock's own failure (125, as `docker
/// run`), except under `hook`, where Claude Code reads any status but 2 as "go ahead": there it
/// must be 2, which blocks the tool call.
fn usage_status(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
        _ if std::env::args().nth(1).as_deref() == Some("hook") => 2,
        _ => exit::FAILURE,
    }
}

/// A usage error as one line: clap's message without its "Usage:" block, and where to look.
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let mut msg = first.trim_start_matches("error: ").to_string();
    if msg.ends_with(':') {
        // "the following required arguments were not provided:" names them on the next lines.
        let named: Vec<&str> = lines.take_while(|l| !l.starts_with("Usage:")).collect();
        msg = format!("{msg} {}", named.join(", "));
    }
    let tip = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("tip: "))
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    // The subcommands named before the error, as far as they exist.
    let mut cmd = <cli::Cli as clap::CommandFactory>::command();
    let mut sub = Vec::new();
    for a in std::env::args().skip(1).take_while(|a| !a.starts_with('-')) {
        match cmd.find_subcommand(&a).cloned() {
            Some(c) => {
                sub.push(a);
                cmd = c;
            }
            None => break,
        }
    }
    format!(
        "airlock: {msg}{tip}; see `airlock {}--help`",
        sub.iter().map(|s| format!("{s} ")).collect::<String>()
    )
}

fn run(cli: cli::Cli) -> i32 {
    // The sandbox init stage must stay single-threaded: dispatch it before anything else.
    if let cli::Command::SandboxInit = cli.command {
        return commands::sandbox_init();
    }
    if let cli::Command::ContainerInit { socket, relay } = &cli.command {
        return airlock_sandbox::container_init_main(socket, *relay);
    }
    init_tracing(&cli.log, cli.log_json);
    // The tree's one TLS crypto provider (ring), installed once for every rustls user.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match commands::dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => exit::report(&err),
    }
}

fn init_tracing(level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.without_time().init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hook's short cut parses exactly what clap would, and leaves everything else to clap.
    #[test]
    fn hook_calls_skip_clap_with_the_same_result() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        for argv in [&["hook", "claude"][..], &["hook", "codex"]] {
            let fast = hook_call(args(argv).into_iter(), false).expect("short cut");
            let full =
                cli::Cli::try_parse_from(std::iter::once("airlock").chain(argv.iter().copied()))
                    .expect("clap");
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{argv:?}");
        }
        for argv in [
            &["hook", "claude", "--policy", "p.toml"][..],
            &["hook", "claude-event"],
            &["hook", "--help"],
            &["hook"],
            &["run", "claude"],
            &["hook", "claude", "--log", "debug"],
            &[],
        ] {
            assert!(
                hook_call(args(argv).into_iter(), false).is_none(),
                "{argv:?}"
            );
        }
        assert!(hook_call(args(&["hook", "claude"]).into_iter(), true).is_none());
    }

    /// The init stage's short cut takes exactly what clap parses as `Command::SandboxInit`.
    #[test]
    fn the_init_stage_skips_clap_only_for_its_exact_argv() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(is_sandbox_init(args(&["__sandbox-init"]).into_iter()));
        let full = cli::Cli::try_parse_from(["airlock", "__sandbox-init"]).expect("clap");
        assert!(matches!(full.command, cli::Command::SandboxInit));
        for argv in [
            &["__sandbox-init", "x"][..],
            &["__sandbox-init", "--help"],
            &["__sandbox-init-x"],
            &["run", "__sandbox-init"],
            &[],
        ] {
            assert!(!is_sandbox_init(args(argv).into_iter()), "{argv:?}");
        }
    }
}
