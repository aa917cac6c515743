//! airlock: run AI coding agents in a sandbox they cannot get out of.
//!
//! The binary is thin: parse arguments, dispatch to `commands`, print an error once with its
//! chain, and turn the outcome into an exit status.
#![forbid(unsafe_code)]

mod agents;
mod backends;
mod cli;
mod commands;
mod control;
mod credentials;
mod exit;
mod gate_audit;
mod policy_load;
mod review_out;
mod session_dir;
mod tool_secrets;
mod view;
mod worktree;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(usage_status(&e));
        }
    };
    std::process::exit(run(cli));
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

fn run(cli: cli::Cli) -> i32 {
    // The sandbox init stage must stay single-threaded: dispatch it before anything else.
    if let cli::Command::SandboxInit = cli.command {
        return commands::sandbox_init();
    }
    if let cli::Command::ContainerInit { socket } = &cli.command {
        return airlock_sandbox::container_init_main(socket);
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
