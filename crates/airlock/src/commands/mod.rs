//! What each subcommand does. Argument types live in `cli`.

mod approve;
mod attach;
mod audit;
mod cache;
mod completions;
mod creds;
pub(crate) mod detach;
mod diff;
mod doctor;
mod explain;
mod hook;
mod image;
mod logs;
pub(crate) mod ls;
mod man;
mod merge;
mod policy;
mod prune;
mod reload;
mod rm;
mod run;
mod selftest;
mod serve;
mod serve_clone;
mod session;
mod stop;
mod suggest;

use crate::cli::{CacheCommand, Command, HookCommand, ImageCommand, PolicyCommand};

pub(crate) use run::remote;
pub(crate) use run::sandbox_init;

/// Runs one subcommand and returns the process exit status.
pub(crate) fn dispatch(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Run(args) => run::run(*args),
        Command::Serve(args) => serve::serve(args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Selftest(args) => selftest::selftest(args),
        Command::Approvals(args) => approve::list(args),
        Command::Approve(args) => approve::approve(args),
        Command::Deny(args) => approve::deny(args),
        Command::Hook(HookCommand::Claude(args)) => hook::claude(args),
        Command::Hook(HookCommand::Codex(args)) => hook::codex(args),
        Command::Hook(HookCommand::ClaudeEvent) => hook::claude_event(),
        Command::Policy(PolicyCommand::Explain(args)) => explain::explain(args),
        Command::Policy(PolicyCommand::Reload { id }) => reload::reload(id.as_deref()),
        Command::Policy(PolicyCommand::Suggest(args)) => suggest::run(args),
        Command::Audit(args) => audit::audit(args),
        Command::Creds(args) => creds::creds(args),
        Command::Ls(args) => ls::ls(args),
        Command::Diff(args) => diff::diff(args),
        Command::Merge(args) => merge::merge(args),
        Command::Rm(args) => rm::rm(args),
        Command::Cache(CacheCommand::Promote(args)) => cache::promote(args),
        Command::Image(ImageCommand::Build(args)) => image::build(&args),
        Command::Image(ImageCommand::Status(args)) => image::status(&args),
        Command::Stop(args) => stop::stop(args),
        Command::Attach(args) => attach::attach(args),
        Command::Logs(args) => logs::logs(args),
        Command::Policy(PolicyCommand::Show(args)) => policy::show(args),
        Command::Policy(PolicyCommand::Check(args)) => policy::check(args),
        Command::Prune(args) => prune::prune(args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => man::man(args),
        Command::Probe { name, args } => selftest::probe(&name, &args),
        Command::SandboxInit => Ok(run::sandbox_init()),
        Command::ContainerInit { socket, relay } => {
            Ok(airlock_sandbox::container_init_main(&socket, relay))
        }
    }
}
