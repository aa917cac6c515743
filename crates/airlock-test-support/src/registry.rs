//! A package registry on loopback over real TLS (a test CA) for `airlock cache promote` tests:
//! cargo's sparse index, npm's registry, and whatever files a test puts (pip's simple API,
//! Maven's repository layout), served by path; plus a user's home whose airlock, cargo and npm
//! configuration trust and name it, and helpers to read promote's reports.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::run::{Run, RunExt};
use crate::Pinned;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;

/// The loopback address the registry listens on; the host side (promote, the user's cargo and
/// npm configuration) reaches it by this address.
pub const REGISTRY_IP: &str = "127.0.0.1";

/// The name a session reaches the registry by, pinned to [`REGISTRY_IP`] in its policy (inside,
/// 127.0.0.1 is the sandbox's own loopback).
pub const REGISTRY_NAME: &str = "registry.test";

/// The cargo registry directory name a sparse registry at 127.0.0.1 gets (`HOST-HASH`).
pub const CRATE_DIR: &str = "127.0.0.1-0123456789abcdef";

pub use crate::run::{stderr, stdout};

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

pub fn sha512(b: &[u8]) -> Vec<u8> {
    sha2::Sha512::digest(b).to_vec()
}

pub fn sri(b: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha512(b))
    )
}

/// npm's content path of `b` under `~/.npm`.
pub fn cacache_path(b: &[u8]) -> PathBuf {
    let h = hex::encode(sha512(b));
    PathBuf::from(format!(
        "_cacache/content-v2/sha512/{}/{}/{}",
        &h[..2],
        &h[2..4],
        &h[4..]
    ))
}

/// A gzipped tarball of `files` (path -> text) made by the system's tar.
pub fn tarball(files: &[(&str, &str)]) -> Vec<u8> {
    let d = tempfile::tempdir().expect("tar dir");
    for (p, text) in files {
        let f = d.path().join(p);
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(&f, text).expect("write");
    }
    let top = files[0].0.split('/').next().expect("top");
    let o = Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "-czf",
            "-",
            "-C",
        ])
        .arg(d.path())
        .arg(top)
        .run();
    o.assert_success();
    o.into_output().stdout
}

/// A crate `name` `vers` (a library whose `answer()` is `answer`).
pub fn crate_file(name: &str, vers: &str, answer: u32) -> Vec<u8> {
    let toml = format!("[package]\nname = \"{name}\"\nversion = \"{vers}\"\nedition = \"2021\"\n");
    let lib = format!("pub fn answer() -> u32 {{ {answer} }}\n");
    tarball(&[
        (&format!("{name}-{vers}/Cargo.toml"), &toml),
        (&format!("{name}-{vers}/src/lib.rs"), &lib),
    ])
}

/// An npm package `name` `version` whose module is `value`.
pub fn npm_package(name: &str, version: &str, value: u32) -> Vec<u8> {
    let pkg = format!("{{\"name\":\"{name}\",\"version\":\"{version}\",\"main\":\"index.js\"}}");
    let js = format!("module.exports = {value};\n");
    tarball(&[("package/package.json", &pkg), ("package/index.js", &js)])
}

/// A package registry on 127.0.0.1 over TLS (a test CA): a cargo sparse index and an npm
/// registry, serving `files` by path; stops when dropped.
#[derive(Debug)]
pub struct Registry {
    /// The port it listens on.
    pub port: u16,
    /// The CA its certificate comes from.
    pub ca: crate::tls::TestCa,
    files: Arc<Mutex<Files>>,
    /// Paths requested, in order.
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Registry {
    pub fn start() -> Registry {
        let ca = crate::tls::TestCa::new("airlock cache test CA");
        let config = ca.server_config(&[REGISTRY_IP, REGISTRY_NAME]);
        let listener = TcpListener::bind((REGISTRY_IP, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let files: Arc<Mutex<Files>> = Arc::default();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (f, l, s) = (files.clone(), log.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let (config, f, l) = (config.clone(), f.clone(), l.clone());
                std::thread::spawn(move || serve(stream, config, &f, &l));
            }
        });
        let r = Registry {
            port,
            ca,
            files,
            log,
            stop,
        };
        r.put(
            "/config.json",
            format!(
                "{{\"dl\":\"{}dl/{{crate}}/{{version}}/download\"}}",
                r.url()
            )
            .as_bytes(),
        );
        r
    }

    /// The registry's URL as the host reaches it.
    pub fn url(&self) -> String {
        format!("https://{REGISTRY_IP}:{}/", self.port)
    }

    /// The registry's URL as a session reaches it (through airlock's proxy).
    pub fn session_url(&self) -> String {
        format!("https://{REGISTRY_NAME}:{}/", self.port)
    }

    pub fn put(&self, path: &str, body: &[u8]) {
        self.put_with(path, body, OCTETS);
    }

    /// Serves `body` at `path` with `headers` (header lines, each ending in CRLF).
    pub fn put_with(&self, path: &str, body: &[u8], headers: &str) {
        self.files
            .lock()
            .expect("files")
            .insert(path.to_string(), (body.to_vec(), headers.to_string()));
    }

    /// Stops serving `path` (it answers 404).
    pub fn remove(&self, path: &str) {
        self.files.lock().expect("files").remove(path);
    }

    /// The URL of a PyPI file as the index lists it (the session's name for the registry,
    /// the same in every answer, so that pip's cache key of the URL is fixed).
    pub fn pypi_file_url(&self, filename: &str) -> String {
        format!("{}files/{filename}", self.session_url())
    }

    /// Publishes files of a Python project on the index's JSON simple API (PEP 691,
    /// `/simple/NAME/`) and serves them at [`Registry::pypi_file_url`] as PyPI does (cacheable
    /// for a year).
    pub fn publish_pypi(&self, name: &str, files: &[(&str, &[u8])]) {
        let listed: Vec<Value> = files
            .iter()
            .map(|(f, bytes)| {
                // cachecontrol keeps an answer only with a Date to count its age from.
                let headers = format!(
                    "Content-Type: application/octet-stream\r\nCache-Control: max-age=365000000, \
                     immutable, public\r\nDate: {}\r\n",
                    httpdate::fmt_http_date(std::time::SystemTime::now())
                );
                self.put_with(&format!("/files/{f}"), bytes, &headers);
                serde_json::json!({
                    "filename": f,
                    "url": self.pypi_file_url(f),
                    "hashes": {"sha256": sha256_hex(bytes)},
                })
            })
            .collect();
        let page =
            serde_json::json!({"meta": {"api-version": "1.0"}, "name": name, "files": listed});
        self.put_with(
            &format!("/simple/{name}/"),
            page.to_string().as_bytes(),
            "Content-Type: application/vnd.pypi.simple.v1+json\r\n",
        );
    }

    /// Publishes files of a Python project on an index that serves only PEP 503 HTML (anchors
    /// whose fragment is `#sha256=HEX`), files as [`Registry::publish_pypi`] does.
    pub fn publish_pypi_html(&self, name: &str, files: &[(&str, &[u8])]) {
        let mut page = String::from("<!DOCTYPE html><html><body>\n");
        for (f, bytes) in files {
            self.put(&format!("/files/{f}"), bytes);
            page.push_str(&format!(
                "<a href=\"{}#sha256={}\">{f}</a><br/>\n",
                self.pypi_file_url(f),
                sha256_hex(bytes)
            ));
        }
        page.push_str("</body></html>\n");
        self.put_with(
            &format!("/simple/{name}/"),
            page.as_bytes(),
            "Content-Type: text/html\r\n",
        );
    }

    /// Publishes a Maven artifact file (`GROUP/ARTIFACT/VERSION/FILE` under `/maven2/`) with
    /// the checksum files named in `sums` (`"sha256"`, `"sha1"`).
    pub fn publish_maven(&self, rel: &str, bytes: &[u8], sums: &[&str]) {
        let path = format!("/maven2/{rel}");
        self.put(&path, bytes);
        for s in sums {
            let hex_digest = match *s {
                "sha1" => hex::encode(sha1::Sha1::digest(bytes)),
                "sha256" => sha256_hex(bytes),
                other => panic!("no checksum kind {other}"),
            };
            self.put(&format!("{path}.{s}"), hex_digest.as_bytes());
        }
    }

    /// Publishes the Go checksum database's record of `module` `version` (its zip's and its
    /// go.mod's `h1:`; `None` leaves that line out) at `/sumdb/lookup/MODULE@VERSION`, both in
    /// Go's case encoding, in the server protocol's shape (golang.org/x/mod/sumdb): the record
    /// number, its lines, a blank line, then the tree head (here unsigned filler).
    pub fn publish_gosumdb(
        &self,
        module: &str,
        version: &str,
        zip: Option<&str>,
        gomod: Option<&str>,
    ) {
        let escape = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_uppercase() {
                        format!("!{}", c.to_ascii_lowercase())
                    } else {
                        c.to_string()
                    }
                })
                .collect::<String>()
        };
        let mut body = String::from("7\n");
        if let Some(h) = zip {
            body.push_str(&format!("{module} {version} {h}\n"));
        }
        if let Some(h) = gomod {
            body.push_str(&format!("{module} {version}/go.mod {h}\n"));
        }
        body.push_str("\ngo.sum database tree\n8\nAAAA\n");
        self.put(
            &format!("/sumdb/lookup/{}@{}", escape(module), escape(version)),
            body.as_bytes(),
        );
    }

    /// `GOSUMDB` naming this registry's checksum database (`publish_gosumdb`), as the host
    /// reaches it.
    pub fn gosumdb(&self) -> String {
        format!("sum.golang.org {}sumdb", self.url())
    }

    /// Publishes crates (name, version, bytes) in the sparse index and for download.
    pub fn publish_crates(&self, crates: &[(&str, &str, &[u8])]) {
        let mut by_name: BTreeMap<&str, String> = BTreeMap::new();
        for (name, vers, bytes) in crates {
            let line = serde_json::json!({
                "name": name, "vers": vers, "deps": [], "cksum": sha256_hex(bytes),
                "features": {}, "yanked": false
            });
            by_name
                .entry(name)
                .or_default()
                .push_str(&format!("{line}\n"));
            self.put(&format!("/dl/{name}/{vers}/download"), bytes);
        }
        for (name, lines) in by_name {
            self.put(&format!("/{}", index_path(name)), lines.as_bytes());
        }
    }

    /// Publishes an npm package (one version).
    pub fn publish_npm(&self, name: &str, version: &str, bytes: &[u8]) {
        // The tarball's address is the one the client asked by (the session's name, or the
        // host's address): see `serve`.
        let tarball = format!("https://{HOST_PLACEHOLDER}/{name}/-/{name}-{version}.tgz");
        let doc = serde_json::json!({
            "name": name,
            "dist-tags": {"latest": version},
            "versions": {version: {
                "name": name, "version": version,
                "dist": {"tarball": tarball, "integrity": sri(bytes)}
            }}
        });
        self.put(&format!("/{name}"), doc.to_string().as_bytes());
        self.put(&format!("/{name}/-/{name}-{version}.tgz"), bytes);
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect((REGISTRY_IP, self.port));
    }
}

pub fn index_path(name: &str) -> String {
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// Replaced in answers by the `Host` the request named.
pub const HOST_PLACEHOLDER: &str = "@@HOST@@";

/// What the registry serves: path -> (body, header lines).
type Files = HashMap<String, (Vec<u8>, String)>;

/// The headers of a plain file.
const OCTETS: &str = "Content-Type: application/octet-stream\r\n";

/// One HTTP/1.1 exchange per connection over TLS.
pub fn serve(
    tcp: std::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    files: &Mutex<Files>,
    log: &Mutex<Vec<String>>,
) {
    let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .replace("%2f", "/")
        .replace("%2F", "/");
    log.lock().expect("log").push(path.clone());
    let host = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = files.lock().expect("files").get(&path).map(|(b, headers)| {
        let b = String::from_utf8(b.clone())
            .map(|t| t.replace(HOST_PLACEHOLDER, &host).into_bytes())
            .unwrap_or_else(|e| e.into_bytes());
        (b, headers.clone())
    });
    let (status, body, headers) = match body {
        Some((b, h)) => ("200 OK", b, h),
        None => ("404 Not Found", b"not found".to_vec(), OCTETS.to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = tls.write_all(head.as_bytes());
    let _ = tls.write_all(&body);
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// A user's home with caches, the airlock config trusting the registry's CA, cargo's and npm's
/// configuration naming the registry, and a workspace; its own session store.
#[derive(Debug)]
pub struct Home {
    home: tempfile::TempDir,
    ws: tempfile::TempDir,
    data: tempfile::TempDir,
    /// The airlock binary under test.
    bin: PathBuf,
    /// `GOSUMDB` for `cache promote`: the registry's checksum database.
    gosumdb: String,
}

impl Home {
    pub fn new(reg: &Registry, bin: PathBuf) -> Home {
        let home = tempfile::Builder::new()
            .prefix("airlock-cache-home-")
            .tempdir()
            .expect("home");
        let ws = tempfile::Builder::new()
            .prefix("airlock-cache-ws-")
            .tempdir()
            .expect("ws");
        let data = tempfile::Builder::new()
            .prefix("airlock-cache-data-")
            .tempdir()
            .expect("data");
        let h = home.path();
        std::fs::create_dir_all(h.join(".cargo/registry/cache").join(CRATE_DIR)).expect("cargo");
        std::fs::create_dir_all(h.join(".npm")).expect("npm");
        std::fs::create_dir_all(h.join(".cache/pip")).expect("pip");
        std::fs::create_dir_all(h.join(".m2/repository")).expect("m2");
        std::fs::create_dir_all(h.join(".config/pip")).expect("pip config");
        std::fs::write(
            h.join(".config/pip/pip.conf"),
            format!("[global]\nindex-url = {}simple/\n", reg.url()),
        )
        .expect("pip.conf");
        std::fs::write(
            h.join(".m2/settings.xml"),
            format!(
                "<settings><mirrors><mirror><id>test</id><mirrorOf>central</mirrorOf>\
                 <url>{}maven2</url></mirror></mirrors></settings>",
                reg.url()
            ),
        )
        .expect("settings.xml");
        std::fs::create_dir_all(h.join(".config/airlock")).expect("config");
        // The CA is in ~/.cargo so that cargo inside (which sees that directory) trusts it too.
        let ca = h.join(".cargo/test-ca.pem");
        std::fs::write(&ca, reg.ca.pem()).expect("ca");
        std::fs::write(ws.path().join("ca.pem"), reg.ca.pem()).expect("ws ca");
        std::fs::write(
            h.join(".config/airlock/config.toml"),
            format!("[tls]\nextra_roots = [\"{}\"]\n", ca.display()),
        )
        .expect("airlock config");
        std::fs::write(
            h.join(".cargo/config.toml"),
            format!(
                "[source.crates-io]\nreplace-with = \"test\"\n[source.test]\nregistry = \"sparse+{}\"\n\
                 [http]\ncainfo = \"{}\"\n[net]\nretry = 0\n",
                reg.url(),
                ca.display()
            ),
        )
        .expect("cargo config");
        std::fs::write(
            h.join(".npmrc"),
            format!("registry={}\ncafile={}\n", reg.url(), ca.display()),
        )
        .expect("npmrc");
        Home {
            home,
            ws,
            data,
            bin,
            gosumdb: reg.gosumdb(),
        }
    }

    pub fn path(&self) -> &Path {
        self.home.path()
    }

    pub fn ws(&self) -> &Path {
        self.ws.path()
    }

    /// The directory of airlock's data (sessions) and test policy files.
    pub fn data(&self) -> &Path {
        self.data.path()
    }

    pub fn airlock(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(self.ws())
            .stdin(Stdio::null())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join(".config"))
            .env("XDG_DATA_HOME", self.data.path())
            .env_remove("npm_config_registry")
            .env_remove("NPM_CONFIG_REGISTRY")
            .env_remove("PIP_INDEX_URL")
            .env_remove("PIP_EXTRA_INDEX_URL")
            .env_remove("PIP_CONFIG_FILE")
            .env("GOSUMDB", &self.gosumdb)
            .env_remove("GONOSUMDB")
            .env_remove("GOPRIVATE");
        c
    }

    /// A policy that lets the session reach the registry (and sets `env` inside).
    pub fn policy(&self, reg: &Registry, env: &str) -> PathBuf {
        let p = self.data.path().join("registry.toml");
        std::fs::write(
            &p,
            Pinned::new()
                .pin_allowed(REGISTRY_NAME, REGISTRY_IP, &[reg.port])
                .policy_toml()
                + &format!("[env]\nset = {{ {env} }}\n"),
        )
        .expect("policy");
        p
    }

    /// `airlock run --mode bind PRESET-FLAGS EXTRA -- sh -c SCRIPT` in the workspace.
    pub fn run(&self, extra: &[&str], script: &str) -> Run {
        self.airlock()
            .args(["run", "--mode", "bind", "--workspace"])
            .arg(self.ws())
            .args(extra)
            .args(["--", "sh", "-c", script])
            .run()
    }

    /// The newest session's id.
    pub fn last_session(&self) -> String {
        let o = self.airlock().args(["ls", "--all", "--json"]).run();
        let rows: Vec<Value> = serde_json::from_slice(&o.stdout).expect("ls json");
        rows[0]["id"].as_str().expect("id").to_string()
    }

    pub fn promote(&self, id: &str, extra: &[&str]) -> (Value, Run) {
        let o = self
            .airlock()
            .args(["cache", "promote", id, "--json"])
            .args(extra)
            .run();
        o.assert_code(0);
        (serde_json::from_slice(&o.stdout).expect("promote json"), o)
    }
}

impl Drop for Home {
    /// Overlayfs leaves its `work/work` directory mode 000, which its owner cannot list: made
    /// listable again so the temporary directories go away (an unprivileged run too).
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![self.data.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
}

/// Every file under `dir` with its size and content hash (links and special files by type).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p.strip_prefix(dir).expect("rel").to_path_buf();
            if m.is_dir() {
                stack.push(p);
                out.insert(rel, "dir".into());
            } else if m.is_file() {
                out.insert(rel, sha256_hex(&std::fs::read(&p).expect("read")));
            } else {
                out.insert(rel, format!("{:?}", m.file_type()));
            }
        }
    }
    out
}

/// The entries of a promote report whose path ends with `suffix`.
pub fn outcome(report: &Value, suffix: &str) -> (String, String) {
    let e = report["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
        .unwrap_or_else(|| panic!("no entry {suffix} in {report:#}"));
    (
        e["outcome"].as_str().expect("outcome").to_string(),
        e["reason"]
            .as_str()
            .or(e["verified_by"].as_str())
            .unwrap_or("")
            .to_string(),
    )
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
