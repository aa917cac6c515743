//! The session store: one SQLite row per session, next to the session directories. Writes are
//! single statements in WAL mode, so a supervisor killed at any point leaves a consistent row;
//! a row that says `running` whose supervisor is gone is reported as `lost`.
//!
//! Durability: `synchronous=NORMAL` under WAL, and no checkpoint when a connection closes
//! (`SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`), so the write-ahead log stays between runs and a commit
//! costs no fsync (the log is synced at each checkpoint, every [`WAL_CHECKPOINT_PAGES`] pages).
//! The database is never corrupted by a crash of airlock or of the machine; a power loss or
//! kernel crash may lose the commits made since the last checkpoint (a session then reads as it
//! was before, e.g. `running` with its supervisor gone: `lost`). A killed process loses
//! nothing: its commits are in the log, which the next connection reads.
//!
//! Cost: the first connection after all others closed (every `airlock` command) rebuilds the
//! log's index by reading and checksumming the whole log (SQLite's unix VFS truncates the
//! `-shm` file when it is the first to open it; `walIndexRecover`), so the log is kept short:
//! a checkpoint every [`WAL_CHECKPOINT_PAGES`] pages instead of SQLite's 1000 (4 MiB, about
//! 2 ms of every `airlock run` near the top; bench/PROFILING.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::kinds::{AgentKind, BackendKind, SessionMode};
use crate::SessionError;

/// Lifecycle state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Running,
    Exited,
    Failed,
    /// Stored as running, but its supervisor is gone (killed, machine crash).
    Lost,
}

impl SessionState {
    /// The stable name, as stored, serialised (`ls --json`) and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Running => "running",
            SessionState::Exited => "exited",
            SessionState::Failed => "failed",
            SessionState::Lost => "lost",
        }
    }

    fn parse(s: &str) -> SessionState {
        match s {
            "running" => SessionState::Running,
            "exited" => SessionState::Exited,
            "lost" => SessionState::Lost,
            _ => SessionState::Failed,
        }
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub name: Option<String>,
    pub workspace: PathBuf,
    pub mode: SessionMode,
    pub backend: BackendKind,
    /// Where the sandbox runs when its backend is remote (a machine or pod name, as the backend
    /// reported it); `None` on this host.
    pub location: Option<String>,
    pub agent: AgentKind,
    pub policy_digest: String,
    pub state: SessionState,
    pub created: String,
    /// Seconds since the epoch at creation (for conflict checks against host edits).
    pub created_unix: i64,
    pub ended: Option<String>,
    pub exit_status: Option<i32>,
    pub supervisor_pid: Option<u32>,
    /// The supervisor's start time (clock ticks since boot) to tell it from a reused pid.
    pub supervisor_start: Option<u64>,
    pub dir: PathBuf,
    /// `HEAD` of the workspace when the session started, if it is a git repository.
    pub base_commit: Option<String>,
    pub merged: bool,
}

/// Pages of write-ahead log after which a commit checkpoints it into the database (SQLite's
/// `wal_autocheckpoint`; its default is 1000). Every `airlock` command reads the whole log when
/// it opens the store (module doc), and an `airlock run` adds about 5 pages, so 128 pages
/// (512 KiB) bounds that read to a few hundred microseconds at the price of one checkpoint
/// (two fsyncs) every ~25 sessions. A checkpoint makes more commits durable, never fewer.
pub const WAL_CHECKPOINT_PAGES: u32 = 128;

/// The store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    workspace TEXT NOT NULL,
    mode TEXT NOT NULL,
    backend TEXT NOT NULL,
    location TEXT,
    agent TEXT NOT NULL,
    policy_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    created TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    ended TEXT,
    exit_status INTEGER,
    supervisor_pid INTEGER,
    supervisor_start INTEGER,
    dir TEXT NOT NULL,
    base_commit TEXT,
    merged INTEGER NOT NULL DEFAULT 0
);";

/// The rows read, and the ids of those that could not be with why.
type Scanned = (Vec<SessionRow>, Vec<(String, String)>);

fn row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get("id")?,
        name: r.get("name")?,
        workspace: PathBuf::from(r.get::<_, String>("workspace")?),
        mode: r.get("mode")?,
        backend: r.get("backend")?,
        location: r.get("location")?,
        agent: r.get("agent")?,
        policy_digest: r.get("policy_digest")?,
        state: SessionState::parse(&r.get::<_, String>("state")?),
        created: r.get("created")?,
        created_unix: r.get("created_unix")?,
        ended: r.get("ended")?,
        exit_status: r.get("exit_status")?,
        supervisor_pid: r.get("supervisor_pid")?,
        supervisor_start: r
            .get::<_, Option<i64>>("supervisor_start")?
            .and_then(|v| u64::try_from(v).ok()),
        dir: PathBuf::from(r.get::<_, String>("dir")?),
        base_commit: r.get("base_commit")?,
        merged: r.get::<_, i64>("merged")? != 0,
    })
}

/// Columns added after the first release, with their definitions: a store created before them
/// gets them on open (`ALTER TABLE ... ADD COLUMN`; existing rows read `NULL`, which each
/// column's meaning takes as the old behaviour).
const ADDED_COLUMNS: &[(&str, &str)] = &[
    // Where a remote backend runs the sandbox (NULL: this host, all sessions before backends).
    ("location", "TEXT"),
];

/// Brings a store created by an older airlock up to [`SCHEMA`], in one immediate transaction so
/// two supervisors opening it at once do not both add a column.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let missing = |conn: &Connection| -> rusqlite::Result<Vec<(&str, &str)>> {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('sessions')")?;
        let have = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ADDED_COLUMNS
            .iter()
            .filter(|(c, _)| !have.iter().any(|h| h == c))
            .copied()
            .collect())
    };
    if missing(conn)?.is_empty() {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = missing(conn).and_then(|cols| {
        cols.iter().try_for_each(|(c, def)| {
            conn.execute_batch(&format!("ALTER TABLE sessions ADD COLUMN {c} {def}"))
        })
    });
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Start time (field 22 of /proc/PID/stat) of a live process; `None` for one that has exited,
/// including a zombie its parent has not reaped yet (state `Z` or `X`, proc(5)): `airlock
/// stop` must not wait for a supervisor that has ended but was not collected.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Store {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, SessionError> {
        let err = |source| SessionError::Store {
            path: path.to_path_buf(),
            error: source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SessionError::io("cannot create", dir, e))?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        // Closing without a checkpoint keeps the log: the next open appends to it instead of
        // creating it again (which syncs its header and the directory, several ms per run).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(err)?;
        // Switching a new database to WAL takes an exclusive lock and does not wait on the busy
        // handler: two sessions starting at once retry instead of failing.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = conn
                .pragma_update(None, "journal_mode", "WAL")
                .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
                .and_then(|()| conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES))
                .and_then(|()| conn.execute_batch(SCHEMA))
                .and_then(|()| migrate(&conn));
            match r {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(err(e)),
            }
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> SessionError {
        SessionError::Store {
            path: self.path.clone(),
            error: source,
        }
    }

    /// Records a new session.
    pub fn insert(&self, s: &SessionRow) -> Result<(), SessionError> {
        self.conn
            .execute(
                "INSERT INTO sessions (id, name, workspace, mode, backend, agent, policy_digest,
                 state, created, created_unix, ended, exit_status, supervisor_pid,
                 supervisor_start, dir, base_commit, merged, location)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18)",
                params![
                    s.id,
                    s.name,
                    path_str(&s.workspace),
                    s.mode,
                    s.backend,
                    s.agent,
                    s.policy_digest,
                    s.state.as_str(),
                    s.created,
                    s.created_unix,
                    s.ended,
                    s.exit_status,
                    s.supervisor_pid,
                    s.supervisor_start.and_then(|v| i64::try_from(v).ok()),
                    path_str(&s.dir),
                    s.base_commit,
                    i64::from(s.merged),
                    s.location,
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    SessionError::Refused(format!(
                        "a session named '{}' exists already; pick another --name or remove it \
                         with `airlock rm`",
                        s.name.as_deref().unwrap_or(&s.id)
                    ))
                }
                e => self.err(e),
            })?;
        Ok(())
    }

    /// Records how a session ended.
    pub fn finish(
        &self,
        id: &str,
        state: SessionState,
        exit_status: Option<i32>,
        ended: &str,
    ) -> Result<(), SessionError> {
        self.conn
            .execute(
                "UPDATE sessions SET state = ?2, exit_status = ?3, ended = ?4 WHERE id = ?1",
                params![id, state.as_str(), exit_status, ended],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records where a session's sandbox runs (a remote backend's machine or pod).
    pub fn set_location(&self, id: &str, location: &str) -> Result<(), SessionError> {
        self.conn
            .execute(
                "UPDATE sessions SET location = ?2 WHERE id = ?1",
                params![id, location],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Sets the commit a session's changes are relative to (a remote session whose workspace
    /// was cloned in its box: the commit it checked out, known once the clone is done).
    pub fn set_base_commit(&self, id: &str, commit: &str) -> Result<(), SessionError> {
        self.conn
            .execute(
                "UPDATE sessions SET base_commit = ?2 WHERE id = ?1",
                params![id, commit],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Marks a session's changes as landed.
    pub fn mark_merged(&self, id: &str) -> Result<(), SessionError> {
        self.conn
            .execute("UPDATE sessions SET merged = 1 WHERE id = ?1", params![id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Removes a session's row.
    pub fn delete(&self, id: &str) -> Result<(), SessionError> {
        self.conn
            .execute("DELETE FROM sessions WHERE id = ?1", params![id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every session, oldest first, with lost supervisors detected. Rows this build cannot read
    /// (a kind written by a newer airlock, a damaged value) are left out; [`Store::unreadable`]
    /// names them.
    pub fn list(&self) -> Result<Vec<SessionRow>, SessionError> {
        Ok(self.scan()?.0)
    }

    /// The sessions [`Store::list`] leaves out: (id, why), so a command can say so instead of
    /// failing on every row because of one.
    pub fn unreadable(&self) -> Result<Vec<(String, String)>, SessionError> {
        Ok(self.scan()?.1)
    }

    /// Every row, read or with why it could not be.
    fn scan(&self) -> Result<Scanned, SessionError> {
        let mut stmt = self
            .conn
            .prepare("SELECT * FROM sessions ORDER BY created_unix, created")
            .map_err(|e| self.err(e))?;
        let read = stmt
            .query_map([], |r| {
                Ok(row(r).map_err(|e| (r.get::<_, String>("id").unwrap_or_default(), e)))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        for r in read {
            match r {
                Ok(r) => rows.push(detect_lost(r)),
                Err((id, e)) => bad.push((id, e.to_string())),
            }
        }
        Ok((rows, bad))
    }

    /// A session by id, unique id prefix, or name.
    pub fn get(&self, key: &str) -> Result<SessionRow, SessionError> {
        if let Some(r) = self
            .conn
            .query_row(
                "SELECT * FROM sessions WHERE id = ?1 OR name = ?1",
                params![key],
                row,
            )
            .optional()
            .map_err(|e| self.err(e))?
        {
            return Ok(detect_lost(r));
        }
        let matches: Vec<SessionRow> = self
            .list()?
            .into_iter()
            .filter(|r| r.id.starts_with(key))
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one match")),
            0 => Err(SessionError::NotFound(format!(
                "no session '{key}'; `airlock ls` lists them"
            ))),
            n => Err(SessionError::NotFound(format!(
                "session id '{key}' is ambiguous ({n} sessions match); give more of it"
            ))),
        }
    }
}

/// A running session whose local supervisor is gone is `lost`; a remote one's supervisor is in
/// its box (`airlock serve`), which outlives the local process by design.
fn detect_lost(mut r: SessionRow) -> SessionRow {
    if r.state == SessionState::Running && !r.backend.is_remote() {
        let alive = r.supervisor_pid.is_some_and(|pid| {
            process_start(pid).is_some() && process_start(pid) == r.supervisor_start
        });
        if !alive {
            r.state = SessionState::Lost;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_a_live_process() {
        let me = process_start(std::process::id()).expect("this process is live");
        assert!(me > 0);
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Not reaped yet: it turns into a zombie once it has exited.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
        {
            assert!(std::time::Instant::now() < deadline, "no zombie");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(process_start(pid), None, "a zombie counted as live");
        child.wait().expect("reap");
    }

    #[test]
    fn state_names_are_pinned() {
        for (state, name) in [
            (SessionState::Running, "running"),
            (SessionState::Exited, "exited"),
            (SessionState::Failed, "failed"),
            (SessionState::Lost, "lost"),
        ] {
            assert_eq!(state.as_str(), name);
            assert_eq!(state.to_string(), name);
            assert_eq!(SessionState::parse(name), state);
            assert_eq!(
                serde_json::to_string(&state).expect("serialise"),
                format!("\"{name}\"")
            );
        }
    }

    fn sample(id: &str, name: Option<&str>) -> SessionRow {
        SessionRow {
            id: id.into(),
            name: name.map(String::from),
            workspace: "/w".into(),
            mode: SessionMode::Overlay,
            backend: BackendKind::Native,
            location: None,
            agent: AgentKind::Shell,
            policy_digest: "d".into(),
            state: SessionState::Running,
            created: "2026-01-01T00:00:00Z".into(),
            created_unix: 1,
            ended: None,
            exit_status: None,
            supervisor_pid: Some(std::process::id()),
            supervisor_start: process_start(std::process::id()),
            dir: "/d".into(),
            base_commit: None,
            merged: false,
        }
    }

    /// A row this build cannot read (a backend kind from a newer airlock) is left out of the
    /// list and named by `unreadable`; the other sessions are still listed.
    #[test]
    fn a_row_from_a_newer_airlock_does_not_hide_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s.db")).expect("open");
        store.insert(&sample("old00001", None)).expect("insert");
        store.insert(&sample("new00001", None)).expect("insert");
        store
            .conn
            .execute(
                "UPDATE sessions SET backend = 'quantum-box' WHERE id = 'new00001'",
                [],
            )
            .expect("update");
        let ids: Vec<_> = store
            .list()
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["old00001"]);
        let bad = store.unreadable().expect("unreadable");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "new00001");
        assert!(bad[0].1.contains("quantum-box"), "{}", bad[0].1);
    }

    /// Commits live in the write-ahead log, which a closing connection no longer checkpoints
    /// away: whether the writer closed cleanly, vanished without closing (a killed process), or
    /// many sessions came and went, the next connection reads every row and the database checks
    /// out intact.
    #[test]
    fn commits_survive_a_writer_that_never_closes_and_the_log_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let store = Store::open(&path).expect("open");
        store.insert(&sample("closed01", None)).expect("insert");
        drop(store);
        assert!(
            dir.path().join("s.db-wal").exists(),
            "the log is kept between connections"
        );
        let store = Store::open(&path).expect("open");
        store.insert(&sample("killed01", None)).expect("insert");
        store
            .finish("closed01", SessionState::Exited, Some(0), "later")
            .expect("finish");
        // As a killed process: the connection is never closed.
        std::mem::forget(store);
        for i in 0..200 {
            let s = Store::open(&path).expect("open");
            s.insert(&sample(&format!("many{i:04}"), None))
                .expect("insert");
        }
        let store = Store::open(&path).expect("open");
        assert_eq!(
            store.get("killed01").expect("row").state,
            SessionState::Running
        );
        assert_eq!(store.get("closed01").expect("row").exit_status, Some(0));
        assert_eq!(store.list().expect("list").len(), 202);
        let check: String = store
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok");
    }

    /// Every `airlock` command reads the whole log when it opens the store, so the log must
    /// stay short however many sessions come and go: it is checkpointed every
    /// [`WAL_CHECKPOINT_PAGES`] pages and then written again from its start (SQLite's own
    /// default, 1000 pages, lets it grow to 4 MiB).
    #[test]
    fn the_log_stays_short_across_many_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        for i in 0..400 {
            let s = Store::open(&path).expect("open");
            s.insert(&sample(&format!("many{i:04}"), None))
                .expect("insert");
            s.finish(
                &format!("many{i:04}"),
                SessionState::Exited,
                Some(0),
                "later",
            )
            .expect("finish");
        }
        // A frame is a 24-byte header and a page (4 KiB by default); the log a 32-byte header.
        let frame = 4096 + 24;
        let most = 32 + (u64::from(WAL_CHECKPOINT_PAGES) + 16) * frame;
        let size = std::fs::metadata(dir.path().join("s.db-wal"))
            .expect("log")
            .len();
        assert!(
            size <= most,
            "the log grew to {size} bytes (at most {most} expected)"
        );
        let store = Store::open(&path).expect("open");
        assert_eq!(store.list().expect("list").len(), 400);
    }

    #[test]
    fn rows_round_trip_and_lookup_by_prefix_and_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s.db")).expect("open");
        store
            .insert(&sample("abcd1234", Some("fix-tests")))
            .expect("insert");
        store.insert(&sample("abff0000", None)).expect("insert");
        assert_eq!(store.get("fix-tests").expect("name").id, "abcd1234");
        assert_eq!(store.get("abc").expect("prefix").id, "abcd1234");
        assert!(
            matches!(store.get("ab"), Err(SessionError::NotFound(m)) if m.contains("ambiguous"))
        );
        assert!(store.get("zz").is_err());
        let dup = store
            .insert(&sample("other", Some("fix-tests")))
            .expect_err("dup name");
        assert!(dup.to_string().contains("--name"), "{dup}");
        assert_eq!(
            store.get("abcd1234").expect("get").state,
            SessionState::Running
        );
        store
            .finish("abcd1234", SessionState::Exited, Some(3), "later")
            .expect("finish");
        let r = store.get("abcd1234").expect("get");
        assert_eq!((r.state, r.exit_status), (SessionState::Exited, Some(3)));
        store.mark_merged("abcd1234").expect("merged");
        assert!(store.get("abcd1234").expect("get").merged);
    }

    /// The schema of the stores written before sessions recorded where they run.
    const SCHEMA_BEFORE_LOCATION: &str = "
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY, name TEXT UNIQUE, workspace TEXT NOT NULL, mode TEXT NOT NULL,
        backend TEXT NOT NULL, agent TEXT NOT NULL, policy_digest TEXT NOT NULL,
        state TEXT NOT NULL, created TEXT NOT NULL, created_unix INTEGER NOT NULL, ended TEXT,
        exit_status INTEGER, supervisor_pid INTEGER, supervisor_start INTEGER, dir TEXT NOT NULL,
        base_commit TEXT, merged INTEGER NOT NULL DEFAULT 0);
    INSERT INTO sessions (id, name, workspace, mode, backend, agent, policy_digest, state,
        created, created_unix, ended, exit_status, dir, merged)
    VALUES ('0ld5e551', 'old', '/w', 'worktree', 'native', 'claude', 'd', 'exited',
        '2026-01-01T00:00:00Z', 1, '2026-01-01T00:01:00Z', 0, '/d', 1);";

    #[test]
    fn an_older_store_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        Connection::open(&path)
            .expect("old store")
            .execute_batch(SCHEMA_BEFORE_LOCATION)
            .expect("old schema");
        // Opened twice: the second open finds the column there and changes nothing.
        for _ in 0..2 {
            let store = Store::open(&path).expect("open migrates");
            let old = store.get("old").expect("old row");
            assert_eq!(
                (old.mode, old.backend, old.agent, old.location),
                (
                    SessionMode::Worktree,
                    BackendKind::Native,
                    AgentKind::Claude,
                    None
                )
            );
            assert!(old.merged);
        }
        let store = Store::open(&path).expect("open");
        let mut s = sample("new00001", None);
        s.location = Some("pod/airlock-new00001".into());
        store.insert(&s).expect("insert after migration");
        assert_eq!(
            store.get("new00001").expect("new").location.as_deref(),
            Some("pod/airlock-new00001")
        );
        assert_eq!(store.list().expect("list").len(), 2);
    }

    #[test]
    fn a_row_of_an_unknown_backend_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let store = Store::open(&path).expect("open");
        store.insert(&sample("abcd0001", None)).expect("insert");
        store
            .conn
            .execute(
                "UPDATE sessions SET backend = 'warp' WHERE id = 'abcd0001'",
                [],
            )
            .expect("plant");
        let e = store.get("abcd0001").expect_err("unknown backend");
        assert!(e.to_string().contains("unknown backend 'warp'"), "{e}");
    }

    #[test]
    fn a_running_session_without_its_supervisor_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s.db")).expect("open");
        let mut s = sample("dead0001", None);
        s.supervisor_pid = Some(u32::MAX - 1);
        store.insert(&s).expect("insert");
        assert_eq!(
            store.get("dead0001").expect("get").state,
            SessionState::Lost
        );
        // A reused pid (same number, other start time) is not the supervisor either.
        let mut s = sample("dead0002", None);
        s.supervisor_start = Some(1);
        store.insert(&s).expect("insert");
        assert_eq!(
            store.get("dead0002").expect("get").state,
            SessionState::Lost
        );
    }
}
