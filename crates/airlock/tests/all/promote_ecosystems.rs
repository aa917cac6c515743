//! `airlock cache promote` for pip, Maven, Go and uv (listed, not promoted), and its configured registries and JSON
//! errors, driven through the real binary against the loopback registry over real TLS of
//! `airlock_test_support::registry` (the one `caches.rs` uses). What the agent plants in its
//! layer is promoted only when the registry's own integrity data vouches for it; the host cache
//! is untouched until promote; a real pip uses what was promoted with the file gone upstream.
//! The test script runs this module as root and again as an unprivileged user.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::bin;
use airlock_test_support::registry::*;
use airlock_test_support::{Run, RunExt};
use sha2::Digest as _;

/// A wheel of project `name` `version` whose module `name` has `VALUE = value`.
fn wheel(name: &str, version: &str, value: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default());
        let info = format!("{name}-{version}.dist-info");
        let files = [
            (format!("{name}/__init__.py"), format!("VALUE = {value}\n")),
            (
                format!("{info}/METADATA"),
                format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
            ),
            (
                format!("{info}/WHEEL"),
                "Wheel-Version: 1.0\nGenerator: airlock-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                    .to_string(),
            ),
            (format!("{info}/RECORD"), String::new()),
        ];
        for (path, text) in files {
            z.start_file(path, opts).expect("zip entry");
            z.write_all(text.as_bytes()).expect("zip write");
        }
        z.finish().expect("zip");
    }
    out.into_inner()
}

fn wheel_name(name: &str, version: &str) -> String {
    format!("{name}-{version}-py3-none-any.whl")
}

/// pip's cache key of a URL (cachecontrol: SHA-224 of the URL without its fragment).
fn pip_key(url: &str) -> String {
    hex::encode(sha2::Sha224::digest(url.as_bytes()))
}

/// `a/b/c/d/e/KEY` under pip's cache directory `dir` (`http` or `http-v2`).
fn pip_entry(dir: &str, key: &str) -> PathBuf {
    let mut p = PathBuf::from(dir);
    for c in key.chars().take(5) {
        p.push(c.to_string());
    }
    p.join(key)
}

/// A cachecontrol version 4 record as an agent would write it: `body` inline (empty for
/// `http-v2`) and headers that would steer pip (a content encoding, a vary).
fn agent_record(body: &[u8]) -> Vec<u8> {
    use rmpv::Value;
    let s = |x: &str| Value::from(x);
    let headers = Value::Map(vec![
        (s("Content-Encoding"), s("gzip")),
        (s("X-Agent"), s("planted")),
        (s("Cache-Control"), s("max-age=365000000")),
        (s("Date"), s("Mon, 01 Jan 2024 00:00:00 GMT")),
    ]);
    let doc = Value::Map(vec![
        (
            s("response"),
            Value::Map(vec![
                (s("body"), Value::Binary(body.to_vec())),
                (s("headers"), headers),
                (s("status"), Value::from(200)),
                (s("version"), Value::from(11)),
                (s("reason"), s("OK")),
                (s("decode_content"), Value::from(true)),
            ]),
        ),
        (s("vary"), Value::Map(vec![])),
    ]);
    let mut out = b"cc=4,".to_vec();
    rmpv::encode::write_value(&mut out, &doc).expect("msgpack");
    out
}

/// The `response` of a cachecontrol record.
fn record_response(bytes: &[u8]) -> rmpv::Value {
    let packed = bytes.strip_prefix(b"cc=4,").expect("cc=4 record");
    let v = rmpv::decode::read_value(&mut &packed[..]).expect("msgpack");
    v["response"].clone()
}

fn write(root: &Path, rel: &Path, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, bytes).expect("write");
}

/// Every case's outcome and reason must be as expected; all wrong ones are listed at once.
fn check_cases(report: &serde_json::Value, cases: &[(&str, &str, &str)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(suffix, want, why)| {
            let (got, reason) = outcome(report, suffix);
            (got != *want || !reason.contains(why))
                .then(|| format!("{suffix}: {got} ({reason}), expected {want} ({why})"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}\n{report:#}", wrong.join("\n"));
}

/// The files of `dir` that `before` did not have.
fn new_files(dir: &Path, before: &std::collections::BTreeMap<PathBuf, String>) -> Vec<PathBuf> {
    snapshot(dir)
        .into_iter()
        .filter(|(k, v)| v != "dir" && !before.contains_key(k))
        .map(|(k, _)| k)
        .collect()
}

/// pip's HTTP cache: a body is promoted only when the host's index lists a file with its
/// sha256 whose URL is the entry's key. Refused: flipped bytes, genuine bytes under another
/// URL's key, another project's genuine file under this file's key, a body away from its key's
/// place. Links are skipped and not followed; the agent's response records never reach the
/// host (airlock writes its own, without the agent's headers); `http/` records (pip < 23.3)
/// are rebuilt around their verified body; locally built wheels are not promoted.
#[test]
fn pip_promote_verifies_bodies_against_the_index() {
    let reg = Registry::start();
    let v10 = wheel("demo", "1.0", 10);
    let v11 = wheel("demo", "1.1", 11);
    let v12 = wheel("demo", "1.2", 12);
    let other = wheel("other", "2.0", 20);
    let sdist = tarball(&[(
        "demo-1.3/PKG-INFO",
        "Metadata-Version: 2.1\nName: demo\nVersion: 1.3\n",
    )]);
    reg.publish_pypi(
        "demo",
        &[
            ("demo-1.3.tar.gz", &sdist),
            (&wheel_name("demo", "1.0"), &v10),
            (&wheel_name("demo", "1.1"), &v11),
            (&wheel_name("demo", "1.2"), &v12),
        ],
    );
    reg.publish_pypi("other", &[(&wheel_name("other", "2.0"), &other)]);
    let plain = wheel("plain", "1.0", 1);
    reg.publish_pypi_html("plain", &[(&wheel_name("plain", "1.0"), &plain)]);
    let home = Home::new(&reg, bin());
    let key = |v: &str| pip_key(&reg.pypi_file_url(&wheel_name("demo", v)));
    let plant = home.ws().join("plant");
    let body = |dir: &str, k: &str| {
        let mut p = pip_entry(dir, k);
        p.set_extension("body");
        p
    };
    // Genuine (pip >= 23.3): the body and the agent's record; an sdist.
    write(&plant, &body("http-v2", &key("1.0")), &v10);
    let sdist_key = pip_key(&reg.pypi_file_url("demo-1.3.tar.gz"));
    write(&plant, &body("http-v2", &sdist_key), &sdist);
    // A project whose index page is PEP 503 HTML only.
    let plain_key = pip_key(&reg.pypi_file_url(&wheel_name("plain", "1.0")));
    write(&plant, &body("http-v2", &plain_key), &plain);
    write(
        &plant,
        &pip_entry("http-v2", &key("1.0")),
        &agent_record(b""),
    );
    // Flipped byte at 1.1's key.
    let mut flipped = v11.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    write(&plant, &body("http-v2", &key("1.1")), &flipped);
    // Genuine 1.2 bytes under the key of a URL the index does not give them.
    let elsewhere = pip_key(&format!("{}files/evil.whl", reg.session_url()));
    write(&plant, &body("http-v2", &elsewhere), &v12);
    // Another project's genuine file under 1.2's key.
    write(&plant, &body("http-v2", &key("1.2")), &other);
    // Genuine bytes away from their key's place.
    let misplaced = PathBuf::from("http-v2/0/0/0/0/0").join(format!("{}.body", key("1.0")));
    write(&plant, &misplaced, &v10);
    // pip < 23.3: the body inside the agent's record.
    write(&plant, &pip_entry("http", &key("1.1")), &agent_record(&v11));
    // A record without a body of its own, and a locally built wheel.
    write(
        &plant,
        &pip_entry("http-v2", &elsewhere),
        &agent_record(b""),
    );
    write(
        &plant,
        Path::new("wheels/ab/cd/demo-9.0-py3-none-any.whl"),
        &v10,
    );
    // Links: a body that is a link to genuine bytes outside, a directory link.
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("w.body"), &v12).expect("outside body");
    let link_body = body("http-v2", &pip_key("https://link.test/x.whl"));
    let link_dir = link_body.parent().expect("dir").to_path_buf();
    let script = format!(
        "set -e; cp -a plant/. ~/.cache/pip/; mkdir -p ~/.cache/pip/{dir}; \
         ln -s {out}/w.body ~/.cache/pip/{body}; ln -s {out} ~/.cache/pip/http-v2/z; echo planted",
        dir = link_dir.display(),
        out = outside.path().display(),
        body = link_body.display(),
    );
    let pip = home.path().join(".cache/pip");
    let before = snapshot(&pip);
    let o = home.run(&["--preset", "python"], &script);
    assert_eq!(stdout(&o).trim(), "planted", "{}", stderr(&o));
    assert_eq!(snapshot(&pip), before, "the session wrote the host's cache");
    let id = home.last_session();
    let (report, _) = home.promote(&id, &[]);
    let b = |dir: &str, k: &str| body(dir, k).display().to_string();
    let e = |dir: &str, k: &str| pip_entry(dir, k).display().to_string();
    check_cases(
        &report,
        &[
            (
                &b("http-v2", &key("1.0")),
                "promoted",
                "demo-1.0-py3-none-any.whl",
            ),
            (&e("http-v2", &key("1.0")), "skipped", "response record"),
            (&b("http-v2", &sdist_key), "promoted", "demo-1.3.tar.gz"),
            (
                &b("http-v2", &plain_key),
                "promoted",
                "plain-1.0-py3-none-any.whl",
            ),
            (
                &b("http-v2", &key("1.1")),
                "refused",
                "lists no file with the sha256",
            ),
            (
                &b("http-v2", &elsewhere),
                "refused",
                "the entry's key is not the key",
            ),
            (
                &b("http-v2", &key("1.2")),
                "refused",
                "other-2.0-py3-none-any.whl",
            ),
            (
                &misplaced.display().to_string(),
                "refused",
                "not at the place",
            ),
            (
                &e("http", &key("1.1")),
                "promoted",
                "demo-1.1-py3-none-any.whl",
            ),
            (&e("http-v2", &elsewhere), "skipped", "response record"),
            (
                "demo-9.0-py3-none-any.whl",
                "skipped",
                "built in the session",
            ),
            (&link_body.display().to_string(), "skipped", "symbolic link"),
            ("http-v2/z", "skipped", "symbolic link"),
        ],
    );
    // The host gained the genuine body, airlock's record beside it, and the rebuilt record.
    let mut want = vec![
        body("http-v2", &key("1.0")),
        pip_entry("http-v2", &key("1.0")),
        body("http-v2", &sdist_key),
        pip_entry("http-v2", &sdist_key),
        body("http-v2", &plain_key),
        pip_entry("http-v2", &plain_key),
        pip_entry("http", &key("1.1")),
    ];
    want.sort();
    assert_eq!(new_files(&pip, &before), want, "{report:#}");
    assert_eq!(
        std::fs::read(pip.join(body("http-v2", &key("1.0")))).expect("body"),
        v10
    );
    for (rel, inline) in [
        (pip_entry("http-v2", &key("1.0")), &b""[..]),
        (pip_entry("http", &key("1.1")), &v11[..]),
    ] {
        let r = record_response(&std::fs::read(pip.join(&rel)).expect("record"));
        assert_eq!(r["body"].as_slice(), Some(inline), "{rel:?}");
        let headers = format!("{}", r["headers"]);
        assert!(
            !headers.contains("gzip") && !headers.contains("planted"),
            "the agent's headers reached the host: {headers}"
        );
        assert_eq!(r["decode_content"].as_bool(), Some(false));
    }
    for (k, v) in &before {
        assert_eq!(snapshot(&pip).get(k), Some(v), "{k:?} changed");
    }
}

/// A real pip in a session downloads a wheel from the loopback index (its HTTP cache is the
/// session's layer); with the file gone from the index, a new session cannot get it until the
/// entry is promoted, and then pip takes it from the host's cache, the same bytes.
/// `AIRLOCK_TEST_PYTHON` names another Python (a venv with pip >= 23.3, for the `http-v2`
/// layout; the system's pip may be older, `http/`).
#[test]
fn pip_uses_the_promoted_cache_when_the_file_is_gone() {
    let chosen = std::env::var("AIRLOCK_TEST_PYTHON").ok();
    let python = chosen
        .as_deref()
        .into_iter()
        .chain(["/usr/bin/python3", "python3"])
        .find(|p| {
            std::process::Command::new(p)
                .args(["-m", "pip", "--version"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("python3 with pip is needed on this machine for this test");
    let reg = Registry::start();
    let v10 = wheel("demo", "1.0", 10);
    reg.publish_pypi("demo", &[(&wheel_name("demo", "1.0"), &v10)]);
    let home = Home::new(&reg, bin());
    let policy = home.policy(
        &reg,
        &format!(
            "PIP_INDEX_URL = \"{}simple/\", PIP_CERT = \"{}\", PIP_DISABLE_PIP_VERSION_CHECK = \"1\", \
             PIP_NO_INPUT = \"1\", PIP_RETRIES = \"0\"",
            reg.session_url(),
            home.ws().join("ca.pem").display()
        ),
    );
    let download = |into: &str| {
        home.run(
            &[
                "--preset",
                "python",
                "--policy",
                policy.to_str().expect("utf-8"),
            ],
            &format!(
                "{python} -m pip download --no-deps -d {into} demo==1.0 >{into}.log 2>&1 || \
                 {{ cat {into}.log; exit 1; }}; sha256sum {into}/*.whl | cut -d' ' -f1"
            ),
        )
    };
    let pip = home.path().join(".cache/pip");
    let before = snapshot(&pip);
    let o = download("one");
    assert_eq!(
        stdout(&o).trim(),
        sha256_hex(&v10),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(snapshot(&pip), before, "the session wrote the host's cache");
    let first = home.last_session();
    // The file is gone upstream: without the promoted entry, pip cannot get it.
    let file_path = format!("/files/{}", wheel_name("demo", "1.0"));
    reg.remove(&file_path);
    let o = download("two");
    assert_ne!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let (report, _) = home.promote(&first, &[]);
    assert_eq!(report["promoted"], 1, "{report:#}");
    assert_eq!(report["refused"], 0, "{report:#}");
    let layout = ["http-v2", "http"]
        .into_iter()
        .find(|d| pip.join(d).is_dir())
        .expect("a promoted pip cache entry");
    eprintln!("{python}: promoted into pip's {layout}/ layout");
    let asked = reg.requests().len();
    let o = download("three");
    assert_eq!(
        stdout(&o).trim(),
        sha256_hex(&v10),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let later = reg.requests()[asked..].to_vec();
    assert!(
        later.contains(&"/simple/demo/".to_string()) && !later.contains(&file_path),
        "pip did not take the file from the cache: {later:?}"
    );
}

/// Maven's local repository: a jar and a pom are promoted when their bytes have the checksum
/// the configured repository (the host's settings.xml mirror of central) publishes beside
/// them, `.sha256` or only `.sha1`; refused: flipped bytes (also with a matching `.sha256`
/// planted in the layer), an artifact the repository publishes no checksum for, one it does
/// not have. Maven's bookkeeping, checksum files and links are not promoted.
#[test]
fn maven_promote_verifies_against_the_repositorys_checksums() {
    let reg = Registry::start();
    let jar = b"PK\x03\x04 a jar of lib 1.0".to_vec();
    let pom = b"<project><artifactId>lib</artifactId></project>".to_vec();
    let jar11 = b"PK\x03\x04 a jar of lib 1.1".to_vec();
    let bare = b"PK\x03\x04 no checksums".to_vec();
    reg.publish_maven("com/example/lib/1.0/lib-1.0.jar", &jar, &["sha256"]);
    reg.publish_maven("com/example/lib/1.0/lib-1.0.pom", &pom, &["sha1"]);
    reg.publish_maven("com/example/lib/1.1/lib-1.1.jar", &jar11, &["sha256"]);
    reg.publish_maven("com/example/bare/1.0/bare-1.0.jar", &bare, &[]);
    let home = Home::new(&reg, bin());
    let plant = home.ws().join("plant");
    let mut evil = jar11.clone();
    evil[0] ^= 1;
    for (rel, bytes) in [
        ("com/example/lib/1.0/lib-1.0.jar", &jar[..]),
        ("com/example/lib/1.0/lib-1.0.pom", &pom[..]),
        (
            "com/example/lib/1.0/_remote.repositories",
            b"lib-1.0.jar>test=\n",
        ),
        (
            "com/example/lib/1.0/lib-1.0.jar.sha256",
            sha256_hex(&jar).as_bytes(),
        ),
        ("com/example/lib/1.1/lib-1.1.jar", &evil[..]),
        (
            "com/example/lib/1.1/lib-1.1.jar.sha256",
            sha256_hex(&evil).as_bytes(),
        ),
        ("com/example/lib/1.1/lib-1.1.jar.lastUpdated", b"x"),
        ("com/example/lib/maven-metadata-central.xml", b"<metadata/>"),
        ("com/example/bare/1.0/bare-1.0.jar", &bare[..]),
        ("com/example/gone/1.0/gone-1.0.jar", b"unpublished"),
    ] {
        write(&plant, Path::new(rel), bytes);
    }
    let outside = tempfile::tempdir().expect("outside");
    std::fs::create_dir_all(outside.path().join("1.0")).expect("outside dir");
    std::fs::write(outside.path().join("1.0/lib-1.0.jar"), &jar).expect("outside jar");
    let script = format!(
        "set -e; cp -a plant/. ~/.m2/repository/; r=~/.m2/repository/com/example; \
         mkdir -p $r/linked/1.0; ln -s {out}/1.0/lib-1.0.jar $r/linked/1.0/linked-1.0.jar; \
         ln -s {out} $r/dirlink; echo planted",
        out = outside.path().display()
    );
    let m2 = home.path().join(".m2/repository");
    let before = snapshot(&m2);
    let o = home.run(&["--preset", "java"], &script);
    assert_eq!(stdout(&o).trim(), "planted", "{}", stderr(&o));
    assert_eq!(snapshot(&m2), before, "the session wrote the host's cache");
    let id = home.last_session();
    let (report, _) = home.promote(&id, &[]);
    let mirror = format!("{}maven2/", reg.url());
    check_cases(
        &report,
        &[
            (
                "lib/1.0/lib-1.0.jar",
                "promoted",
                &format!("{mirror}com/example/lib/1.0/lib-1.0.jar.sha256"),
            ),
            ("lib/1.0/lib-1.0.pom", "promoted", "lib-1.0.pom.sha1"),
            (
                "lib/1.0/_remote.repositories",
                "skipped",
                "where artifacts came from",
            ),
            ("lib/1.0/lib-1.0.jar.sha256", "skipped", "checksum"),
            ("lib/1.1/lib-1.1.jar", "refused", "content does not match"),
            (
                "lib-1.1.jar.lastUpdated",
                "skipped",
                "failed or checked download",
            ),
            ("maven-metadata-central.xml", "skipped", "metadata"),
            (
                "bare/1.0/bare-1.0.jar",
                "refused",
                "has no .sha512, .sha256 or .sha1",
            ),
            ("gone/1.0/gone-1.0.jar", "refused", "has no .sha512"),
            ("linked/1.0/linked-1.0.jar", "skipped", "symbolic link"),
            ("com/example/dirlink", "skipped", "symbolic link"),
        ],
    );
    assert_eq!(
        new_files(&m2, &before),
        [
            PathBuf::from("com/example/lib/1.0/lib-1.0.jar"),
            PathBuf::from("com/example/lib/1.0/lib-1.0.pom")
        ],
        "{report:#}"
    );
    assert_eq!(
        std::fs::read(m2.join("com/example/lib/1.0/lib-1.0.jar")).expect("jar"),
        jar
    );
}

/// A Go module zip: `files` (name, text) under `MODULE@VERSION/`.
fn module_zip(module: &str, version: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, text) in files {
            z.start_file(format!("{module}@{version}/{name}"), opts)
                .expect("zip entry");
            z.write_all(text.as_bytes()).expect("zip write");
        }
        z.finish().expect("zip");
    }
    out.into_inner()
}

/// `h1:` of named contents, as golang.org/x/mod/sumdb/dirhash documents Hash1:
/// `find . -type f | sort | xargs sha256sum | sha256sum`, base64.
fn h1(files: &[(String, Vec<u8>)]) -> String {
    use base64::Engine as _;
    let mut lines: Vec<String> = files
        .iter()
        .map(|(n, c)| format!("{}  {n}\n", sha256_hex(c)))
        .collect();
    lines.sort_by(|a, b| a.rsplit("  ").next().cmp(&b.rsplit("  ").next()));
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(lines.concat()))
    )
}

fn zip_h1(module: &str, version: &str, files: &[(&str, &str)]) -> String {
    let named: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, t)| (format!("{module}@{version}/{n}"), t.as_bytes().to_vec()))
        .collect();
    h1(&named)
}

/// `airlock run --mode MODE --preset go` in the workspace.
fn run_go(home: &Home, mode: &str, script: &str) -> Run {
    home.airlock()
        .args(["run", "--mode", mode, "--preset", "go", "--workspace"])
        .arg(home.ws())
        .args(["--", "sh", "-c", script])
        .run()
}

/// Go's download cache: a module's `.zip` and `.mod` are promoted when their `h1:` is the one
/// the checksum database records (GOSUMDB over verified TLS; the registry's here), with
/// airlock's own `.ziphash` beside the zip. Refused: a zip with one file changed (also when the
/// session rewrote its go.sum to match), another module's genuine zip under this module's name,
/// a module the database does not know (also when a bind-mode session wrote its line into the
/// real go.sum). The agent's `.ziphash` and `.info`, extracted trees and links are not promoted.
/// The files of module `example.com/m` as published, and as an agent would change them.
const GOOD_M: [(&str, &str); 2] = [
    ("go.mod", "module example.com/m\n"),
    ("m.go", "package m\n"),
];
const EVIL_M: [(&str, &str); 2] = [
    ("go.mod", "module example.com/m\n"),
    ("m.go", "package m // evil\n"),
];

/// A loopback registry (with its checksum database), a home using it, and its empty Go module
/// cache (`~/go/pkg/mod`).
fn go_home() -> (Registry, Home, PathBuf) {
    let reg = Registry::start();
    let home = Home::new(&reg, bin());
    let gomod = home.path().join("go/pkg/mod");
    std::fs::create_dir_all(&gomod).expect("gomodcache");
    (reg, home, gomod)
}

#[test]
fn go_promote_verifies_modules_against_the_checksum_database() {
    let (reg, home, gomod) = go_home();
    let m = "example.com/m";
    let (files, evil_files) = (GOOD_M, EVIL_M);
    let zip10 = module_zip(m, "v1.0.0", &files);
    let zip11 = module_zip(m, "v1.1.0", &files);
    let evil11 = module_zip(m, "v1.1.0", &evil_files);
    let other = module_zip("example.com/other", "v1.2.0", &files);
    let upper = "example.com/User/m";
    let zip_upper = module_zip(upper, "v1.0.0", &files);
    let gomod_text = b"module example.com/m\n".to_vec();
    let gomod_h1 = h1(&[("go.mod".to_string(), gomod_text.clone())]);
    let go_sum = format!(
        "{m} v1.0.0 {}\n{m} v1.0.0/go.mod {gomod_h1}\n{m} v1.1.0 {}\n{m} v1.2.0 {}\n{upper} v1.0.0 {}\n",
        zip_h1(m, "v1.0.0", &files),
        zip_h1(m, "v1.1.0", &files),
        zip_h1(m, "v1.2.0", &files),
        zip_h1(upper, "v1.0.0", &files),
    );
    std::fs::write(home.ws().join("go.sum"), &go_sum).expect("go.sum");
    for (module, version, zip, gomod) in [
        (
            m,
            "v1.0.0",
            zip_h1(m, "v1.0.0", &files),
            Some(gomod_h1.as_str()),
        ),
        (m, "v1.1.0", zip_h1(m, "v1.1.0", &files), None),
        (m, "v1.2.0", zip_h1(m, "v1.2.0", &files), None),
        (upper, "v1.0.0", zip_h1(upper, "v1.0.0", &files), None),
    ] {
        reg.publish_gosumdb(module, version, Some(&zip), gomod);
    }
    let plant = home.ws().join("plant");
    let v = "cache/download/example.com/m/@v";
    let uv = "cache/download/example.com/!user/m/@v";
    for (rel, bytes) in [
        (format!("{v}/v1.0.0.zip"), zip10.clone()),
        (format!("{v}/v1.0.0.mod"), gomod_text.clone()),
        (format!("{v}/v1.0.0.ziphash"), b"h1:planted".to_vec()),
        (
            format!("{v}/v1.0.0.info"),
            b"{\"Version\":\"v1.0.0\"}".to_vec(),
        ),
        (format!("{v}/v1.1.0.zip"), evil11.clone()),
        (format!("{v}/v1.2.0.zip"), other),
        (format!("{v}/v1.3.0.zip"), zip11.clone()),
        (format!("{uv}/v1.0.0.zip"), zip_upper.clone()),
        (format!("{m}@v1.0.0/m.go"), b"package m\n".to_vec()),
    ] {
        write(&plant, Path::new(&rel), &bytes);
    }
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("z.zip"), &zip11).expect("outside zip");
    // The session rewrites its go.sum to vouch for its changed zip.
    let script = format!(
        "set -e; cp -a plant/. ~/go/pkg/mod/; ln -s {out}/z.zip ~/go/pkg/mod/{v}/v1.4.0.zip; \
         sed -i 's|^{m} v1.1.0 .*|{m} v1.1.0 {evil}|' go.sum; echo planted",
        out = outside.path().display(),
        evil = zip_h1(m, "v1.1.0", &evil_files),
    );
    let before = snapshot(&gomod);
    let o = run_go(&home, "overlay", &script);
    assert_eq!(stdout(&o).trim(), "planted", "{}", stderr(&o));
    assert_eq!(
        snapshot(&gomod),
        before,
        "the session wrote the host's cache"
    );
    assert_eq!(
        std::fs::read_to_string(home.ws().join("go.sum")).expect("go.sum"),
        go_sum
    );
    let id = home.last_session();
    let (report, _) = home.promote(&id, &[]);
    check_cases(
        &report,
        &[
            (
                &format!("{v}/v1.0.0.zip"),
                "promoted",
                "/sumdb/lookup/example.com/m@v1.0.0",
            ),
            (&format!("{v}/v1.0.0.mod"), "promoted", "v1.0.0/go.mod"),
            (
                &format!("{v}/v1.0.0.ziphash"),
                "skipped",
                "airlock writes the .ziphash",
            ),
            (
                &format!("{v}/v1.0.0.info"),
                "skipped",
                "not a module's .zip or .mod",
            ),
            (
                &format!("{v}/v1.1.0.zip"),
                "refused",
                "content does not match",
            ),
            (
                &format!("{v}/v1.2.0.zip"),
                "refused",
                "outside example.com/m@v1.2.0/",
            ),
            (&format!("{v}/v1.3.0.zip"), "refused", "does not know"),
            (&format!("{v}/v1.4.0.zip"), "skipped", "symbolic link"),
            (
                &format!("{uv}/v1.0.0.zip"),
                "promoted",
                "example.com/User/m v1.0.0",
            ),
            (
                &format!("{m}@v1.0.0/m.go"),
                "skipped",
                "extracted module tree",
            ),
        ],
    );
    let mut want = vec![
        PathBuf::from(format!("{v}/v1.0.0.mod")),
        PathBuf::from(format!("{v}/v1.0.0.zip")),
        PathBuf::from(format!("{v}/v1.0.0.ziphash")),
        PathBuf::from(format!("{uv}/v1.0.0.zip")),
        PathBuf::from(format!("{uv}/v1.0.0.ziphash")),
    ];
    want.sort();
    assert_eq!(new_files(&gomod, &before), want, "{report:#}");
    assert_eq!(
        std::fs::read(gomod.join(format!("{v}/v1.0.0.zip"))).expect("zip"),
        zip10
    );
    assert_eq!(
        std::fs::read_to_string(gomod.join(format!("{v}/v1.0.0.ziphash"))).expect("ziphash"),
        zip_h1(m, "v1.0.0", &files)
    );
    // A bind-mode session can write the workspace's go.sum (here: vouch for its own module):
    // no go.sum is asked, so its module is refused all the same.
    let own = module_zip(m, "v1.6.0", &evil_files);
    write(&plant, Path::new(&format!("{v}/v1.6.0.zip")), &own);
    let o = run_go(
        &home,
        "bind",
        &format!(
            "set -e; mkdir -p ~/go/pkg/mod/{v}; cp plant/{v}/v1.6.0.zip ~/go/pkg/mod/{v}/; \
             echo '{m} v1.6.0 {}' >> go.sum; echo ok",
            zip_h1(m, "v1.6.0", &evil_files)
        ),
    );
    assert_eq!(stdout(&o).trim(), "ok", "{}", stderr(&o));
    let (report, _) = home.promote(&home.last_session(), &[]);
    check_cases(&report, &[("v1.6.0.zip", "refused", "does not know")]);
    assert_eq!(report["promoted"], 0, "{report:#}");
}

/// Red-team Y1 and Y1b: no go.sum vouches for a module, whatever its history: not the
/// workspace's after `merge` landed the agent's go.sum, not lines copied in by hand, not the go.sum
/// a later session starts with once an earlier session's lines were merged (Y1b), not a
/// workspace without one. Only the checksum database does: a module it does not know, one
/// GOPRIVATE/GONOSUMDB exempts, or any with GOSUMDB=off is refused; a start go.sum that
/// disagrees with the database refuses the module too.
#[test]
fn go_promote_never_trusts_a_go_sum() {
    let (reg, home, gomod) = go_home();
    let m = "example.com/m";
    let (good, evil) = (GOOD_M, EVIL_M);
    let n = "corp.example/lib";
    let lib = [
        ("go.mod", "module corp.example/lib\n"),
        ("l.go", "package lib // evil\n"),
    ];
    reg.publish_gosumdb(m, "v1.0.0", Some(&zip_h1(m, "v1.0.0", &good)), None);
    let go_sum = format!("{m} v1.0.0 {}\n", zip_h1(m, "v1.0.0", &good));
    std::fs::write(home.ws().join("go.sum"), &go_sum).expect("go.sum");
    let plant = home.ws().join("plant");
    let v = "cache/download/example.com/m/@v";
    let lv = "cache/download/corp.example/lib/@v";
    write(
        &plant,
        Path::new(&format!("{v}/v1.0.0.zip")),
        &module_zip(m, "v1.0.0", &evil),
    );
    write(
        &plant,
        Path::new(&format!("{lv}/v1.0.0.zip")),
        &module_zip(n, "v1.0.0", &lib),
    );
    let agent_sum = format!(
        "{m} v1.0.0 {}\n{n} v1.0.0 {}\n",
        zip_h1(m, "v1.0.0", &evil),
        zip_h1(n, "v1.0.0", &lib)
    );
    std::fs::write(home.ws().join("agent.sum"), &agent_sum).expect("agent.sum");
    let script = "set -e; cp -a plant/. ~/go/pkg/mod/; cp agent.sum go.sum; echo planted";
    let before = snapshot(&gomod);
    let o = run_go(&home, "overlay", script);
    assert_eq!(stdout(&o).trim(), "planted", "{}", stderr(&o));
    let id = home.last_session();
    // The user reviews and merges: the workspace's go.sum is now the agent's.
    home.airlock().args(["merge", &id]).run().assert_code(0);
    assert_eq!(
        std::fs::read_to_string(home.ws().join("go.sum")).expect("go.sum"),
        agent_sum,
        "merge landed the agent's go.sum"
    );
    let cases = [
        (
            format!("{v}/v1.0.0.zip"),
            "refused",
            "content does not match",
        ),
        (
            format!("{lv}/v1.0.0.zip"),
            "refused",
            "does not know corp.example/lib v1.0.0",
        ),
    ];
    let cases: Vec<(&str, &str, &str)> =
        cases.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
    let (report, _) = home.promote(&id, &[]);
    check_cases(&report, &cases);
    assert_eq!(snapshot(&gomod), before, "after merge: {report:#}");
    // Lines copied into go.sum by hand after the start: nothing changes.
    std::fs::write(home.ws().join("go.sum"), format!("{go_sum}{agent_sum}")).expect("go.sum");
    let (report, _) = home.promote(&id, &[]);
    check_cases(&report, &cases);
    // Y1b: the next session starts with the merged lines in its go.sum and plants the zips.
    std::fs::write(home.ws().join("go.sum"), &agent_sum).expect("go.sum");
    let o = run_go(
        &home,
        "overlay",
        "set -e; cp -a plant/. ~/go/pkg/mod/; echo planted",
    );
    assert_eq!(stdout(&o).trim(), "planted", "{}", stderr(&o));
    let next = home.last_session();
    let (report, _) = home.promote(&next, &[]);
    check_cases(
        &report,
        &[
            (
                &format!("{v}/v1.0.0.zip"),
                "refused",
                "as the session started says",
            ),
            (&format!("{lv}/v1.0.0.zip"), "refused", "does not know"),
        ],
    );
    assert_eq!(snapshot(&gomod), before, "next session: {report:#}");
    // The module exempt from the database (GOPRIVATE, GONOSUMDB), or no database at all.
    for (var, value, reason) in [
        (
            "GOPRIVATE",
            "*.example",
            "matches *.example in GONOSUMDB/GOPRIVATE",
        ),
        (
            "GONOSUMDB",
            "corp.example",
            "matches corp.example in GONOSUMDB/GOPRIVATE",
        ),
        ("GOSUMDB", "off", "GOSUMDB=off"),
    ] {
        let o = home
            .airlock()
            .env(var, value)
            .args(["cache", "promote", &next, "--json"])
            .run();
        o.assert_code(0);
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        check_cases(&report, &[(&format!("{lv}/v1.0.0.zip"), "refused", reason)]);
    }
    assert_eq!(snapshot(&gomod), before);
}

/// uv's cache has no upstream-verifiable form: every file is listed as not promoted with the
/// reason, and the host cache stays as it was.
#[test]
fn uv_cache_is_listed_not_promoted() {
    let reg = Registry::start();
    let home = Home::new(&reg, bin());
    std::fs::create_dir_all(home.path().join(".cache/uv")).expect("uv");
    let script =
        "set -e; mkdir -p ~/.cache/uv/archive-v0/abc; echo x > ~/.cache/uv/archive-v0/abc/f.py; \
                  echo planted";
    let uv_before = snapshot(&home.path().join(".cache/uv"));
    let o = home.run(&["--preset", "python"], script);
    assert_eq!(stdout(&o).trim(), "planted", "{}", stderr(&o));
    let id = home.last_session();
    let (report, _) = home.promote(&id, &[]);
    check_cases(
        &report,
        &[("archive-v0/abc/f.py", "skipped", "uv keeps wheels unpacked")],
    );
    assert_eq!(report["promoted"], 0, "{report:#}");
    assert_eq!(snapshot(&home.path().join(".cache/uv")), uv_before);
}

/// With crates.io replaced by a mirror in the host's cargo configuration, a crate under
/// crates.io's own cache directory is checked against the mirror, and crates.io is not asked.
#[test]
fn cargo_promote_asks_the_configured_mirror() {
    let reg = Registry::start();
    let foo = crate_file("foo", "1.0.0", 1);
    reg.publish_crates(&[("foo", "1.0.0", &foo)]);
    let home = Home::new(&reg, bin());
    let dir = "registry/cache/index.crates.io-1949cf8c6b5b557f";
    write(
        &home.ws().join("plant"),
        &Path::new(dir).join("foo-1.0.0.crate"),
        &foo,
    );
    let o = home.run(
        &["--preset", "rust"],
        "cp -a plant/. ~/.cargo/ && echo planted",
    );
    assert_eq!(stdout(&o).trim(), "planted", "{}", stderr(&o));
    let id = home.last_session();
    let (report, _) = home.promote(&id, &["--dry-run"]);
    check_cases(
        &report,
        &[(
            "foo-1.0.0.crate",
            "promoted",
            &format!("{}3/f/foo", reg.url()),
        )],
    );
}

/// `--json` errors are JSON on stdout (with the message on stderr as well) and exit 125.
#[test]
fn promote_json_errors_are_json() {
    let reg = Registry::start();
    let home = Home::new(&reg, bin());
    let o = home
        .airlock()
        .args(["cache", "promote", "nosuchsession", "--json"])
        .run();
    o.assert_code(125);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&o)));
    assert_eq!(v["session"], "nosuchsession");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|m| m.contains("nosuchsession")),
        "{v:#}"
    );
    assert!(stderr(&o).contains("nosuchsession"), "{}", stderr(&o));
}
