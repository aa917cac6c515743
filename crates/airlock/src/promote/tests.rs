use std::path::Path;

use sha2::Digest as _;

use super::copy::{copy_verified, Copied, CopyError, Source};
use super::{walk, Digest};

fn sha256(b: &[u8]) -> Digest {
    Digest::Sha256(sha2::Sha256::digest(b).into())
}

#[test]
fn the_walk_lists_links_and_special_files_without_following_them() {
    let d = tempfile::tempdir().expect("dir");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret"), "x").expect("secret");
    std::fs::create_dir_all(d.path().join("a/b")).expect("dirs");
    std::fs::write(d.path().join("a/b/f"), "f").expect("f");
    std::os::unix::fs::symlink(outside.path(), d.path().join("a/dirlink")).expect("link");
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("filelink")).expect("link");
    nix::unistd::mkfifo(&d.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
    let files = walk::walk(d.path());
    let shown: Vec<(String, bool)> = files
        .iter()
        .map(|f| (f.rel.display().to_string(), f.problem.is_none()))
        .collect();
    assert_eq!(
        shown,
        [
            ("a/b/f".to_string(), true),
            ("a/dirlink".to_string(), false),
            ("fifo".to_string(), false),
            ("filelink".to_string(), false),
        ]
    );
}

#[test]
fn a_copy_lands_only_when_the_bytes_match_and_never_over_a_file() {
    let src = tempfile::tempdir().expect("src");
    let host = tempfile::tempdir().expect("host");
    let f = src.path().join("x.crate");
    std::fs::write(&f, b"good").expect("write");
    let dest = host.path().join("registry/cache/r-1/x.crate");
    // Wrong digest: nothing written on the host, not even the directory.
    let bad = copy_verified(Source::File(&f), &dest, &sha256(b"other"), false);
    assert!(matches!(bad, Err(CopyError::Mismatch(_))), "{bad:?}");
    assert!(!host.path().join("registry").exists());
    // Dry run: checked, not written.
    let dry = copy_verified(Source::File(&f), &dest, &sha256(b"good"), true).expect("dry");
    assert_eq!(dry, Copied::New);
    assert!(!dest.exists());
    assert_eq!(
        copy_verified(Source::File(&f), &dest, &sha256(b"good"), false).expect("copy"),
        Copied::New
    );
    assert_eq!(std::fs::read(&dest).expect("read"), b"good");
    // An existing host file is never replaced.
    std::fs::write(&dest, b"host's own").expect("host");
    assert_eq!(
        copy_verified(Source::File(&f), &dest, &sha256(b"good"), false).expect("again"),
        Copied::Present
    );
    assert_eq!(std::fs::read(&dest).expect("read"), b"host's own");
    // A link as the source is refused, whatever it points to.
    let l = src.path().join("l.crate");
    std::os::unix::fs::symlink(&f, &l).expect("link");
    let linked = copy_verified(
        Source::File(&l),
        &host.path().join("l.crate"),
        &sha256(b"good"),
        false,
    );
    assert!(matches!(linked, Err(CopyError::Other(_))), "{linked:?}");
    assert!(!Path::new(&host.path().join("l.crate")).exists());
}

#[test]
fn integrity_data_is_read_over_https_only() {
    let mut r = super::Registry::new(Vec::new()).expect("registry");
    let e = r
        .get("http://127.0.0.1:1/3/f/foo", "*/*")
        .expect_err("plain http");
    assert!(e.contains("only read over https://"), "{e}");
}

#[test]
fn the_walk_of_a_deep_layer_stops_at_the_bound_with_a_problem() {
    let max = airlock_session::tree::MAX_DEPTH;
    for (depth, ok) in [(max, true), (3_000, false)] {
        let d = tempfile::tempdir().expect("dir");
        // Relative mkdir from a descriptor, as an agent's `mkdir d; cd d` loop.
        let mut cwd = std::fs::File::open(d.path()).expect("open");
        for _ in 0..depth {
            nix::sys::stat::mkdirat(&cwd, "d", nix::sys::stat::Mode::S_IRWXU).expect("mkdirat");
            cwd = nix::fcntl::openat(
                &cwd,
                "d",
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
                nix::sys::stat::Mode::empty(),
            )
            .map(std::fs::File::from)
            .expect("openat");
        }
        nix::sys::stat::mknodat(
            &cwd,
            "leaf",
            nix::sys::stat::SFlag::S_IFREG,
            nix::sys::stat::Mode::S_IRUSR,
            0,
        )
        .expect("leaf");
        let files = walk::walk(d.path());
        assert_eq!(files.len(), 1, "depth {depth}");
        let f = &files[0];
        if ok {
            assert!(f.rel.ends_with("d/leaf") && f.problem.is_none(), "{f:?}");
        } else {
            let p = f.problem.as_deref().unwrap_or_default();
            assert!(p.contains("deeper than 1024"), "{f:?}");
            assert_eq!(f.rel.components().count(), max + 1);
        }
    }
}
