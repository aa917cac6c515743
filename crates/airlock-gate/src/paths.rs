//! Paths as the file system resolves them. The hook runs where the agent's files are, so it can
//! `lstat` them: a path is judged as written and as it resolves through symbolic links (for a
//! path that does not exist yet, through its longest existing prefix; a dangling link through
//! its target text), and the stricter decision wins. `ws/readme.md` that is a link to
//! `~/.bashrc` is a write to `~/.bashrc`.

use std::collections::VecDeque;
use std::path::Path;

use crate::classify::Context;
use crate::normalize::{lexical, Invocation};
use crate::parse::Word;
use crate::rules::{resolve, PathRef};

/// Most symbolic links followed for one path (as the kernel's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Resolves symbolic links in the absolute path `p`, component by component: links are
/// followed (relative targets from the link's directory), `..` after a link applies to where
/// it led, and components past the first one that does not exist are appended as written.
/// `None` when more than 40 links are met (a loop), as the kernel's `MAXSYMLINKS`.
pub fn resolve_links(p: &str) -> Option<String> {
    let mut rest: VecDeque<String> = components(p).collect();
    let mut done = String::from("/");
    let mut links = 0usize;
    let mut missing = false;
    while let Some(c) = rest.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                done = parent(&done);
                continue;
            }
            _ => {}
        }
        let next = join(&done, &c);
        if missing {
            done = next;
            continue;
        }
        match std::fs::symlink_metadata(Path::new(&next)) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                let target = std::fs::read_link(Path::new(&next)).ok()?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done = String::from("/");
                }
                for t in components(&target).collect::<Vec<_>>().into_iter().rev() {
                    rest.push_front(t);
                }
            }
            Ok(_) => done = next,
            Err(_) => {
                missing = true;
                done = next;
            }
        }
    }
    Some(lexical(&done))
}

fn components(p: &str) -> impl Iterator<Item = String> + '_ {
    p.split('/').filter(|s| !s.is_empty()).map(str::to_string)
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn parent(p: &str) -> String {
    match p.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => p[..i].to_string(),
    }
}

/// `abs` resolved, expressed under the context's workspace and home when it lies under where
/// those resolve (a workspace reached through a link stays "the workspace").
pub fn resolve_for(abs: &str, ctx: &Context<'_>) -> Option<String> {
    let real = resolve_links(abs)?;
    if real == abs {
        return Some(real);
    }
    let mut roots: Vec<&str> = Vec::with_capacity(2);
    if let Some(ws) = ctx.workspace.as_deref() {
        roots.push(ws);
    }
    roots.push(&ctx.home);
    for root in roots {
        let Some(real_root) = resolve_links(root) else {
            continue;
        };
        if real_root != root && real_root != "/" {
            if real == real_root {
                return Some(root.to_string());
            }
            if let Some(tail) = real.strip_prefix(&real_root) {
                if tail.starts_with('/') {
                    return Some(format!("{root}{tail}"));
                }
            }
        }
    }
    Some(real)
}

/// A copy of `inv` with the resolved form of each static path it reads, writes or names added
/// next to the written one, or `None` when no path resolves elsewhere.
pub fn with_resolved_paths(inv: &Invocation, ctx: &Context<'_>) -> Option<Invocation> {
    let cwd = inv.cwd.as_deref();
    let extra = |ws: &[Word]| -> Vec<Word> {
        ws.iter()
            .filter(|w| !w.glob && !w.is_dynamic())
            .filter_map(|w| match resolve(w, cwd, &ctx.home) {
                PathRef::Exact(p) => resolve_for(&p, ctx).filter(|r| *r != p),
                _ => None,
            })
            .map(|r| Word::lit(&r))
            .collect()
    };
    let (r, w, p) = (extra(&inv.reads), extra(&inv.writes), extra(&inv.path_args));
    if r.is_empty() && w.is_empty() && p.is_empty() {
        return None;
    }
    let mut out = inv.clone();
    out.reads.extend(r);
    out.writes.extend(w);
    out.path_args.extend(p);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_links_prefixes_and_dangling_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = resolve_links(&dir.path().to_string_lossy()).expect("root");
        let home = format!("{root}/home");
        let ws = format!("{home}/ws");
        std::fs::create_dir_all(format!("{home}/.ssh")).expect("mkdir");
        std::fs::create_dir_all(&ws).expect("mkdir");
        std::os::unix::fs::symlink(format!("{home}/.bashrc"), format!("{ws}/readme.md"))
            .expect("link");
        std::os::unix::fs::symlink("../.ssh", format!("{ws}/keys")).expect("link");
        std::os::unix::fs::symlink("loop", format!("{ws}/loop")).expect("link");
        // A dangling link: through its target text.
        assert_eq!(
            resolve_links(&format!("{ws}/readme.md")).as_deref(),
            Some(format!("{home}/.bashrc").as_str())
        );
        // The longest existing prefix of a new file.
        assert_eq!(
            resolve_links(&format!("{ws}/keys/new/id_rsa")).as_deref(),
            Some(format!("{home}/.ssh/new/id_rsa").as_str())
        );
        // `..` after a link applies where the link led.
        assert_eq!(
            resolve_links(&format!("{ws}/keys/../.bashrc")).as_deref(),
            Some(format!("{home}/.bashrc").as_str())
        );
        assert_eq!(resolve_links(&format!("{ws}/loop/x")), None);
        assert_eq!(
            resolve_links("/no/such/path").as_deref(),
            Some("/no/such/path")
        );
    }
}
