//! `git_owners` is decided only from facts the agent cannot change (red-team hole G1): every
//! way git's effective push URL could differ from the remote's one `url` makes a push not owned,
//! so the ordinary push rules (force push, protected branches) apply.

use std::collections::BTreeMap;
use std::path::Path;

use airlock_gate::git::{trusted_remotes, FsGit};
use airlock_gate::{CommandLayer, Context, Engine, Tier};

const MINE: &str = "https://github.com/agent-bot/fork.git";
const VICTIM: &str = "https://github.com/victim/repo.git";

fn engine() -> Engine {
    let mut table = toml::Table::new();
    table.insert(
        "git_owners".into(),
        toml::Value::Array(vec!["agent-bot".into()]),
    );
    let layer = CommandLayer {
        source: "owners-policy.toml".into(),
        table,
        trusted: true,
    };
    Engine::load(&[layer], "/home/dev", false).expect("rules load")
}

/// A repository (HEAD on `branch`) with `config` as `.git/config`, and an empty home.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new(config: &str, branch: &str) -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = dir.path().join("w/.git");
        std::fs::create_dir_all(&g).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("mkdir");
        std::fs::write(g.join("HEAD"), format!("ref: refs/heads/{branch}\n")).expect("write");
        std::fs::write(g.join("config"), config).expect("write");
        Repo { dir }
    }
    fn work(&self) -> std::path::PathBuf {
        self.dir.path().join("w")
    }
    fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("home")
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    fn git(&self) -> FsGit {
        FsGit::new(self.work()).with_home(self.home())
    }
}

fn origin(url: &str) -> String {
    format!("[core]\n\tbare = false\n[remote \"origin\"]\n\turl = {url}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n")
}

fn decide(git: &FsGit, work: &Path, command: &str) -> Tier {
    let ctx = Context {
        cwd: work.to_string_lossy().into(),
        home: "/home/dev".into(),
        workspace: Some(work.to_string_lossy().into()),
        git,
    };
    let t = engine().classify_command(command, &ctx).tier;
    if t == Tier::Review {
        Tier::Ask
    } else {
        t
    }
}

const FORCE: &str = "git push --force origin main";

#[test]
fn a_plain_remote_of_the_agents_identity_is_owned() {
    let r = Repo::new(&origin(MINE), "main");
    assert_eq!(decide(&r.git(), &r.work(), FORCE), Tier::Allow);
    assert_eq!(decide(&r.git(), &r.work(), "git push --force"), Tier::Allow);
    // Control: the victim's remote is not.
    let v = Repo::new(&origin(VICTIM), "main");
    assert_eq!(decide(&v.git(), &v.work(), FORCE), Tier::Deny);
}

#[test]
fn a_pushurl_in_the_repository_config_is_not_owned() {
    // The reproduction: url says agent-bot, pushurl sends the push to the victim.
    let r = Repo::new(&format!("{}\tpushurl = {VICTIM}\n", origin(MINE)), "main");
    assert_eq!(decide(&r.git(), &r.work(), FORCE), Tier::Deny);
    // Spelled in another case, in its own section header for the same remote.
    let r = Repo::new(
        &format!("{}[Remote \"origin\"]\n\tPushURL={VICTIM}\n", origin(MINE)),
        "main",
    );
    assert_eq!(decide(&r.git(), &r.work(), FORCE), Tier::Deny);
}

#[test]
fn insteadof_in_the_repository_or_global_config_is_not_owned() {
    let rewrite =
        "[url \"https://github.com/victim/\"]\n\tpushInsteadOf = https://github.com/agent-bot/\n";
    let r = Repo::new(&format!("{}{rewrite}", origin(MINE)), "main");
    assert_eq!(decide(&r.git(), &r.work(), FORCE), Tier::Deny);
    for global in ["home/.gitconfig", "home/.config/git/config"] {
        let r = Repo::new(&origin(MINE), "main");
        r.write(global, &rewrite.replace("pushInsteadOf", "insteadOf"));
        assert_eq!(decide(&r.git(), &r.work(), FORCE), Tier::Deny, "{global}");
    }
}

#[test]
fn an_include_or_a_global_remote_is_not_owned() {
    let r = Repo::new(
        &format!("{}[include]\n\tpath = ../../evil\n", origin(MINE)),
        "main",
    );
    assert_eq!(decide(&r.git(), &r.work(), FORCE), Tier::Deny);
    let r = Repo::new(
        &format!(
            "{}[includeIf \"gitdir:/\"]\n\tpath = ../../evil\n",
            origin(MINE)
        ),
        "main",
    );
    assert_eq!(decide(&r.git(), &r.work(), FORCE), Tier::Deny);
    // A global file adding a second url (git pushes to every url) or a push remote.
    let r = Repo::new(&origin(MINE), "main");
    r.write(
        "home/.gitconfig",
        &format!("[remote \"origin\"]\n\turl = {VICTIM}\n"),
    );
    assert_eq!(decide(&r.git(), &r.work(), FORCE), Tier::Deny);
    // The worktree's own config file.
    let r = Repo::new(&origin(MINE), "main");
    r.write(
        "w/.git/config.worktree",
        &format!("[remote \"origin\"]\n\turl = {VICTIM}\n"),
    );
    assert_eq!(decide(&r.git(), &r.work(), FORCE), Tier::Deny);
}

#[test]
fn config_on_the_command_line_is_not_owned() {
    let r = Repo::new(&origin(MINE), "main");
    for cmd in [
        format!("git -c remote.origin.pushurl={VICTIM} push --force origin main"),
        "git -c url.https://github.com/victim/.insteadOf=https://github.com/agent-bot/ push --force origin main".to_string(),
        "git --config-env=remote.origin.pushurl=V push --force origin main".to_string(),
        format!("GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.pushurl GIT_CONFIG_VALUE_0={VICTIM} git push --force origin main"),
        format!("GIT_CONFIG_PARAMETERS=\"'remote.origin.pushurl'='{VICTIM}'\" git push --force origin main"),
        "env GIT_CONFIG_GLOBAL=/tmp/x git push --force origin main".to_string(),
        "GIT_DIR=/tmp/other/.git git push --force origin main".to_string(),
        "git -C /tmp/other push --force origin main".to_string(),
        "git --git-dir=/tmp/other/.git push --force origin main".to_string(),
    ] {
        assert_eq!(decide(&r.git(), &r.work(), &cmd), Tier::Deny, "{cmd}");
    }
}

#[test]
fn repo_option_and_urls_are_not_owned() {
    let r = Repo::new(&origin(MINE), "main");
    for cmd in [
        format!("git push --force --repo={VICTIM} origin main"),
        format!("git push --force --repo {VICTIM} main"),
        format!("git push --force {MINE} main"),
        "git push --force git@github.com:agent-bot/fork.git main".to_string(),
        "git push --force ../victim-clone main".to_string(),
    ] {
        assert_ne!(decide(&r.git(), &r.work(), &cmd), Tier::Allow, "{cmd}");
    }
}

#[test]
fn odd_syntax_and_second_urls_are_not_owned() {
    for config in [
        // Two urls: git pushes to both.
        format!("{}\turl = {VICTIM}\n", origin(MINE)),
        // Old-style subsection git reads as remote "origin".
        format!("{}[remote.origin]\n\turl = {VICTIM}\n", origin(MINE)),
        // Quotes and continuations this reader does not follow.
        format!("[remote \"origin\"]\n\turl = \"{MINE}\"\n"),
        "[remote \"origin\"]\n\turl = https://github.com/agent-bot/\\\nfork.git\n".to_string(),
        // Key after the header on the same line.
        format!("[remote \"origin\"] url = {VICTIM}\n[remote \"origin\"]\n\turl = {MINE}\n"),
    ] {
        let r = Repo::new(&config, "main");
        assert_eq!(decide(&r.git(), &r.work(), FORCE), Tier::Deny, "{config}");
    }
}

#[test]
fn the_default_push_remote_follows_push_remote_keys() {
    // `git push --force` with no remote goes to branch.main.pushRemote = up (the victim).
    let config = format!(
        "{}[remote \"up\"]\n\turl = {VICTIM}\n[branch \"main\"]\n\tpushRemote = up\n",
        origin(MINE)
    );
    let r = Repo::new(&config, "main");
    assert_eq!(decide(&r.git(), &r.work(), "git push --force"), Tier::Deny);
    let config = format!(
        "[remote]\n\tpushDefault = up\n{}[remote \"up\"]\n\turl = {VICTIM}\n",
        origin(MINE)
    );
    let r = Repo::new(&config, "main");
    assert_eq!(decide(&r.git(), &r.work(), "git push --force"), Tier::Deny);
}

#[test]
fn inside_a_session_only_the_captured_remotes_count() {
    // Captured on the host: origin is the victim's. The agent then points origin at its fork.
    let host = Repo::new(&origin(VICTIM), "main");
    let captured = trusted_remotes(&host.work());
    assert_eq!(captured.get("origin").map(String::as_str), Some(VICTIM));
    let inside = Repo::new(&origin(MINE), "main");
    let git = inside.git().with_trusted(captured.clone());
    assert_eq!(decide(&git, &inside.work(), FORCE), Tier::Deny);
    // A remote the agent added is not in the captured set.
    let inside = Repo::new(
        &format!("{}[remote \"mine\"]\n\turl = {MINE}\n", origin(VICTIM)),
        "main",
    );
    let git = inside.git().with_trusted(captured);
    assert_eq!(
        decide(&git, &inside.work(), "git push --force mine main"),
        Tier::Deny
    );
    // Control: a captured remote of the agent's identity, unchanged, stays owned.
    let host = Repo::new(&origin(MINE), "main");
    let git = host.git().with_trusted(trusted_remotes(&host.work()));
    assert_eq!(decide(&git, &host.work(), FORCE), Tier::Allow);
}

#[test]
fn the_host_capture_refuses_redirecting_configs() {
    let r = Repo::new(&format!("{}\tpushurl = {VICTIM}\n", origin(MINE)), "main");
    assert_eq!(trusted_remotes(&r.work()), BTreeMap::new());
    let r = Repo::new(
        &format!("{}[url \"{VICTIM}\"]\n\tinsteadOf = {MINE}\n", origin(MINE)),
        "main",
    );
    assert_eq!(trusted_remotes(&r.work()), BTreeMap::new());
    let r = Repo::new(&origin(MINE), "main");
    assert_eq!(trusted_remotes(&r.work()).len(), 1);
}
