//! `GIT_CONFIG_*` in the hook's own environment (the agent's shell exported it earlier): git
//! would read config from it, so nothing is owned. Alone in its binary: it sets the process
//! environment.

use airlock_gate::git::FsGit;
use airlock_gate::rules::GitInfo;

#[test]
fn config_in_the_environment_is_not_owned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = dir.path().join(".git");
    std::fs::create_dir_all(&g).expect("mkdir");
    std::fs::write(g.join("HEAD"), "ref: refs/heads/main\n").expect("write");
    std::fs::write(
        g.join("config"),
        "[remote \"origin\"]\n\turl = https://github.com/agent-bot/fork.git\n",
    )
    .expect("write");
    // Control: without the variables the remote is vouched for.
    assert!(FsGit::new(dir.path()).owned_push_url("origin").is_some());
    for (k, v) in [
        ("GIT_CONFIG_COUNT", "1"),
        ("GIT_CONFIG_PARAMETERS", "'remote.origin.pushurl'='x'"),
        ("GIT_DIR", "/tmp/elsewhere/.git"),
    ] {
        std::env::set_var(k, v);
        assert_eq!(FsGit::new(dir.path()).owned_push_url("origin"), None, "{k}");
        std::env::remove_var(k);
    }
    // A global file named by the environment is read like ~/.gitconfig.
    let global = dir.path().join("global");
    std::fs::write(
        &global,
        "[url \"https://github.com/victim/\"]\n\tpushInsteadOf = https://github.com/agent-bot/\n",
    )
    .expect("write");
    std::env::set_var("GIT_CONFIG_GLOBAL", &global);
    assert_eq!(FsGit::new(dir.path()).owned_push_url("origin"), None);
    std::env::remove_var("GIT_CONFIG_GLOBAL");
}
