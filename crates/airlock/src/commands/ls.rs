//! `airlock ls`: the sessions, as a table or JSON.

use std::io::Write;

use anyhow::Result;

use super::session::state_word;
use crate::cli::LsArgs;
use crate::review_out::ReviewOut;
use crate::session_dir;

pub(crate) fn ls(args: LsArgs) -> Result<i32> {
    let rows = session_dir::store()?.list()?;
    let mut out = ReviewOut::stdout();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(0);
    }
    if rows.is_empty() {
        writeln!(out, "no sessions; start one with `airlock run`")?;
        return Ok(0);
    }
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let mut state = state_word(r);
            if r.merged {
                state.push_str(", merged");
            }
            [
                r.id.clone(),
                r.name.clone().unwrap_or_else(|| "-".into()),
                state,
                r.mode.to_string(),
                backend_word(r),
                r.created.get(..19).unwrap_or(&r.created).to_string(),
                r.workspace.display().to_string(),
            ]
        })
        .collect();
    let header = [
        "ID",
        "NAME",
        "STATE",
        "MODE",
        "BACKEND",
        "CREATED",
        "WORKSPACE",
    ]
    .map(String::from);
    write!(out, "{}", render_table(&header, &table))?;
    Ok(0)
}

/// The backend a session runs on, with where when it is remote (`k8s@pod/airlock-1234`).
fn backend_word(r: &airlock_session::SessionRow) -> String {
    match &r.location {
        Some(at) => format!("{}@{}", r.backend, airlock_session::quote::name(at)),
        None => r.backend.to_string(),
    }
}

/// Renders rows as columns two spaces apart, each as wide as its widest cell (the last column is
/// not padded); every line, the last included, ends with a newline.
fn render_table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_fit_their_widest_cell_and_every_line_ends() {
        let header = ["ID", "MODE", "WHERE"].map(String::from);
        let rows = [
            ["a1", "overlay", "/w/one"].map(String::from),
            ["b2", "worktree", "/w/two"].map(String::from),
            ["c3", "bind", "/w/three"].map(String::from),
        ];
        let t = render_table(&header, &rows);
        assert!(t.ends_with("/w/three\n"), "{t:?}");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        // The last column starts at the same offset on every line, even after `worktree`.
        let col = |l: &str| l.find("/w/").or_else(|| l.find("WHERE"));
        let starts: Vec<_> = lines.iter().map(|l| col(l)).collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{t}");
        assert_eq!(lines[2], "b2  worktree  /w/two");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{t:?}");
    }
}
