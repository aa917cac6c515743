//! Per-request rules (`[[network.rules]]`) on a credential host: deny wins, the first allow
//! decides, a host no rule allows a request for refuses it (403, never forwarded), encoded and
//! dot-segment paths cannot slip past, each decision is audited with its rule, and a rule for a
//! host without a credential (whose requests airlock cannot see) denies that host.

use super::{fixture, stderr, stdout, value_of};

const RULES: &str = r#"
[[network.rules]]
host = "api.creds.test"
methods = ["GET", "HEAD"]
paths = ["/echo/**"]

[[network.rules]]
host = "api.creds.test"
methods = ["POST"]
paths = ["/echo/post"]

[[network.rules]]
host = "api.creds.test"
action = "deny"
paths = ["/echo/secret/**"]

[[network.rules]]
host = "nocred.creds.test"
methods = ["GET"]

[[network.rules]]
host = "api.creds.test"
action = "deny"
methods = ["DELETE"]
"#;

#[test]
fn request_rules_decide_each_request_on_a_credential_host() {
    let f = fixture();
    let text = std::fs::read_to_string(&f.policy).expect("policy");
    let text = text.replace(
        "[network]\n",
        "[network]\nallow = [\"nocred.creds.test\"]\n",
    );
    let text = text.replace(
        "[network.resolve]\n",
        "[network.resolve]\n\"nocred.creds.test\" = \"127.0.0.1\"\n",
    );
    std::fs::write(&f.policy, format!("{text}{RULES}")).expect("policy");
    let port = f.good.port;
    let script = format!(
        r#"echo SESSION=$AIRLOCK_SESSION
u=https://api.creds.test:{port}
c() {{ name=$1; shift; printf '%s ' "$name"; curl -sS -m 10 -o /dev/null -D - "$@" 2>&1 | tr -d '\r' | awk '/^HTTP/{{s=$2}} /^x-airlock-reason/{{r=$0}} END{{print s, r}}'; }}
c get $u/echo/a
c head -I $u/echo/a
J='content-type: application/json'
c post -X POST -H "$J" --data x $u/echo/post
c post-other -X POST -H "$J" --data x $u/echo/a
c delete -X DELETE $u/echo/a
c secret $u/echo/secret/x
c secret-encoded $u/echo/%73ecret/x
c secret-post -X POST -H "$J" --data x $u/echo/secret/x
c dotdot --path-as-is $u/echo/../basic
c dotdot-encoded $u/echo/%2e%2e/basic
c other-path $u/basic
c nocred https://nocred.creds.test:{port}/echo/a
c dslash --path-as-is $u//echo/secret/x
c mid-dslash --path-as-is $u/echo//secret/x
c upper $u/ECHO/SECRET/x
c mixed-case $u/echo/Secret/x
c semicolon "$u/echo/secret;x=1/x"
c semicolon-encoded "$u/echo/secret%3Bx=1/x"
c double-encoded $u/echo/%2573ecret/x
c encoded-slash "$u/echo%2Fsecret/x"
c trailing $u/echo/secret/
c delete-lower -X delete $u/echo/a
c delete-mixed -X Delete $u/echo/a
c override -X POST -H "$J" -H 'X-HTTP-Method-Override: DELETE' --data x $u/echo/post
c override-x-http-method -X POST -H "$J" -H 'X-HTTP-Method: DELETE' --data x $u/echo/post
c override-x-method -X POST -H "$J" -H 'X-Method-Override: delete' --data x $u/echo/post
c override-query -X POST -H "$J" --data x "$u/echo/post?_method=DELETE"
c form-post -X POST --data _method=DELETE $u/echo/post
"#
    );
    let o = f.run(&script);
    let (out, err) = (stdout(&o), stderr(&o));
    let line = |name: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {out}{err}"))
            .to_string()
    };
    let mut slipped = Vec::new();
    for ok in ["get", "head", "post"] {
        assert!(line(ok).starts_with("200"), "{ok}: {out}{err}");
    }
    for (name, rule) in [
        (
            "post-other",
            "network.rules: no rule for api.creds.test allows it",
        ),
        ("delete", "network.rules[4]"),
        (
            "other-path",
            "network.rules: no rule for api.creds.test allows it",
        ),
        ("secret", "network.rules[2]"),
        ("secret-encoded", "network.rules[2]"),
        ("secret-post", "network.rules[2]"),
        ("dotdot", "network.rules: a path with dot segments"),
        ("dotdot-encoded", "network.rules: a path with dot segments"),
        // R2: the same denied request in other spellings.
        ("dslash", "network.rules: a path with an empty segment"),
        ("mid-dslash", "network.rules: a path with an empty segment"),
        ("upper", "network.rules[2]"),
        ("mixed-case", "network.rules[2]"),
        ("semicolon", "network.rules: a path with a ';'"),
        ("semicolon-encoded", "network.rules: a path with a ';'"),
        (
            "double-encoded",
            "network.rules: a path with an escape left",
        ),
        ("encoded-slash", "network.rules[2]"),
        ("trailing", "network.rules[2]"),
        ("delete-lower", "network.rules[4]"),
        ("delete-mixed", "network.rules[4]"),
        ("override", "network.rules[4]"),
        ("override-x-http-method", "network.rules[4]"),
        ("override-x-method", "network.rules[4]"),
        ("override-query", "network.rules[4]"),
        ("form-post", "network.rules[4]"),
    ] {
        let l = line(name);
        if !(l.starts_with("403") && l.contains(rule)) {
            slipped.push(format!("{name}: {l} (wanted 403 {rule})"));
        }
    }
    assert!(slipped.is_empty(), "{slipped:#?}");
    // A rule for a host without a credential: that host is denied, with a warning.
    let l = line("nocred");
    assert!(l.starts_with("403") && l.contains("network.deny"), "{l}");
    assert!(
        err.contains("network.rules[3] names nocred.creds.test, which no credential covers"),
        "{err}"
    );
    // Refused requests never reached the upstream.
    let seen = f.good_seen();
    let lower = seen.to_ascii_lowercase();
    for never in ["secret", "delete", "_method", "override", "x-http-method"] {
        assert!(
            !lower.contains(never),
            "{never} reached the upstream: {seen}"
        );
    }
    for never in [
        "/echo/secret",
        "%73ecret",
        "DELETE ",
        "POST /echo/a ",
        "/basic",
        "%2e%2e",
    ] {
        assert!(
            !seen.contains(never),
            "{never} reached the upstream: {seen}"
        );
    }
    assert!(seen.contains("POST /echo/post "), "{seen}");
    let events = f.env.audit(value_of(&out, "SESSION"));
    let has = |decision: &str, rule: &str| {
        events
            .iter()
            .any(|e| e["decision"] == decision && e["rule"] == rule)
    };
    assert!(has("allow", "network.rules[0]"), "{events:?}");
    assert!(has("allow", "network.rules[1]"), "{events:?}");
    assert!(has("deny", "network.rules[2]"), "{events:?}");
    assert!(
        has(
            "deny",
            "network.rules: no rule for api.creds.test allows it"
        ),
        "{events:?}"
    );
}

/// The read-mostly presets end to end (R1, R4): `gitlab.com` and `api.github.com` on a loopback
/// TLS server. Git's smart-HTTP endpoints and opening issues pass; the Repository Files API
/// under git's endpoint names (which commits to a branch), commits, merges, approvals, notes
/// and reviews are 403 with their rule and never reach the upstream.
#[test]
fn read_mostly_presets_refuse_writes_that_look_like_git_or_comments() {
    let env = super::Env::new();
    let token = super::secret("preset");
    let ca = super::test_ca();
    std::fs::write(env.path("ca.pem"), ca.pem()).expect("ca");
    let signal = env.ws().join("unused-signal");
    let up = super::upstream(
        ca.server_config(&["gitlab.com", "api.github.com"]),
        token.clone(),
        signal,
    );
    let policy = env.path("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"[network]
allow_private = ["127.0.0.1"]
rule_presets = ["gitlab-read-mostly", "github-read-mostly"]
[network.resolve]
"gitlab.com" = "127.0.0.1"
"api.github.com" = "127.0.0.1"
[network.ports]
"gitlab.com" = [{port}]
"api.github.com" = [{port}]

[[credentials]]
name = "forge"
env = "AIRLOCK_TEST_SECRET_P"
hosts = ["gitlab.com", "api.github.com"]

[tls]
extra_roots = ["{ca}"]
"#,
            port = up.port,
            ca = env.path("ca.pem").display()
        ),
    )
    .expect("policy");
    super::make_readable(env.dir.path());
    let port = up.port;
    let script = format!(
        r#"gl=https://gitlab.com:{port}; gh=https://api.github.com:{port}
J='content-type: application/json'
c() {{ name=$1; shift; printf '%s ' "$name"; curl -sS -m 10 -o /dev/null -D - -H "$J" "$@" 2>&1 | tr -d '\r' | awk '/^HTTP/{{s=$2}} /^x-airlock-reason/{{r=$0}} END{{print s, r}}'; }}
c gl-upload -X POST --data x $gl/group/proj.git/git-upload-pack
c gl-upload-nested -X POST --data x $gl/group/sub/proj.git/git-upload-pack
c gl-issue -X POST --data '{{}}' $gl/api/v4/projects/12/issues
c gl-mr -X POST --data '{{}}' $gl/api/v4/projects/group%2Fproj/merge_requests
c gh-pull -X POST --data '{{}}' $gh/repos/o/r/pulls
c gh-get $gh/repos/o/r/contents/README.md
c gl-files "$gl/api/v4/projects/12/repository/files/git-upload-pack?branch=main" -X POST --data '{{}}'
c gl-files-nested -X POST --data '{{}}' $gl/api/v4/projects/12/repository/files/src%2Fgit-upload-pack
c gl-files-receive -X POST --data '{{}}' $gl/api/v4/projects/12/repository/files/git-receive-pack
c gl-files-put -X PUT --data '{{}}' $gl/api/v4/projects/12/repository/files/git-upload-pack
c gl-commits -X POST --data '{{}}' $gl/api/v4/projects/12/repository/commits
c gl-merge -X PUT --data '{{}}' $gl/api/v4/projects/12/merge_requests/1/merge
c gl-approve -X POST --data '{{}}' $gl/api/v4/projects/12/merge_requests/1/approve
c gl-mr-note -X POST --data '{{"body":"/approve\n/merge"}}' $gl/api/v4/projects/12/merge_requests/1/notes
c gl-issue-note -X POST --data '{{"body":"/close"}}' $gl/api/v4/projects/12/issues/1/notes
c gl-override -X POST -H 'X-HTTP-Method-Override: PUT' --data '{{}}' $gl/api/v4/projects/12/issues
c gh-review -X POST --data '{{"event":"APPROVE"}}' $gh/repos/o/r/pulls/3/reviews
c gh-merge -X PUT --data '{{}}' $gh/repos/o/r/pulls/3/merge
c gh-merges -X POST --data '{{}}' $gh/repos/o/r/merges
c gh-contents -X PUT --data '{{}}' $gh/repos/o/r/contents/src/main.rs
"#
    );
    let o = env.run(&policy, &[("AIRLOCK_TEST_SECRET_P", &token)], &script);
    let (out, err) = (super::stdout(&o), super::stderr(&o));
    let line = |name: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {out}{err}"))
            .to_string()
    };
    let mut wrong = Vec::new();
    for name in [
        "gl-upload",
        "gl-upload-nested",
        "gl-issue",
        "gl-mr",
        "gh-pull",
        "gh-get",
    ] {
        let l = line(name);
        if l.contains("x-airlock-reason") {
            wrong.push(format!("{name} was refused: {l}"));
        }
    }
    for name in [
        "gl-files",
        "gl-files-nested",
        "gl-files-receive",
        "gl-files-put",
        "gl-commits",
        "gl-merge",
        "gl-approve",
        "gl-mr-note",
        "gl-issue-note",
        "gl-override",
        "gh-review",
        "gh-merge",
        "gh-merges",
        "gh-contents",
    ] {
        let l = line(name);
        if !(l.starts_with("403") && (l.contains("preset") || l.contains("network.rules"))) {
            wrong.push(format!("{name} was not refused by a rule: {l}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{out}{err}");
    let seen = up.seen.lock().expect("lock").join("\n----\n");
    for never in [
        "repository/",
        "/merge http",
        "/merges http",
        "/approve http",
        "/notes http",
        "/reviews http",
        "put /repos/o/r/contents/",
        "method-override",
    ] {
        assert!(
            !seen.to_ascii_lowercase().contains(never),
            "{never} reached the upstream: {seen}"
        );
    }
    assert!(
        seen.contains("POST /group/proj.git/git-upload-pack "),
        "{seen}"
    );
}
