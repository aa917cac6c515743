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
