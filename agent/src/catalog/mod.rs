//! The agent's catalog: an embedded SQLite database of containers, checkpoints, operations and
//! the operation journal. It survives restarts; the schema is versioned and migrated on open.

mod backups;
mod migrations;

pub use backups::{BackupRecord, ScheduleRecord};

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// Catalog errors.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database could not be opened or migrated.
    #[error("failed to open catalog {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("catalog query failed: {what}")]
    Query {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer agent.
    #[error("catalog {path} has schema version {found}, newer than this agent's {supported}")]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
}

type Result<T> = std::result::Result<T, CatalogError>;

fn q(what: &'static str) -> impl FnOnce(rusqlite::Error) -> CatalogError {
    move |source| CatalogError::Query { what, source }
}

/// Restart policy of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never restart.
    No,
    /// Restart when it exits with a non-zero code.
    OnFailure,
    /// Always restart.
    Always,
}

impl Restart {
    /// The name used in the CLI and the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
    }

    /// Parses `no`, `on-failure`, `always`.
    pub fn parse(s: &str) -> Option<Restart> {
        match s {
            "no" => Some(Restart::No),
            "on-failure" => Some(Restart::OnFailure),
            "always" => Some(Restart::Always),
            _ => None,
        }
    }

    /// Whether an exit with `code` (None = unknown) should be followed by a restart.
    pub fn restarts_after(self, code: Option<i32>) -> bool {
        match self {
            Restart::No => false,
            Restart::OnFailure => code != Some(0),
            Restart::Always => true,
        }
    }
}

/// A container the agent owns.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: String,
    /// Restart policy.
    pub restart: Restart,
    /// What the operator wants: `running` or `stopped`.
    pub desired: String,
    /// Exit code of the last run (None: never exited, or unknown).
    pub exit_code: Option<i32>,
    /// Restarts done by the restart policy.
    pub restarts: u32,
    /// Creation time, Unix seconds.
    pub created_unix: i64,
    /// Address (CIDR) of its own network namespace, or empty.
    pub ip: String,
    /// MAC address that goes with `ip`.
    pub mac: String,
}

impl ContainerRecord {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<ContainerRecord> {
        let restart: String = r.get("restart")?;
        Ok(ContainerRecord {
            id: r.get("id")?,
            bundle: r.get("bundle")?,
            restart: Restart::parse(&restart).unwrap_or(Restart::No),
            desired: r.get("desired")?,
            exit_code: r.get("exit_code")?,
            restarts: r.get("restarts")?,
            created_unix: r.get("created_unix")?,
            ip: r.get("ip")?,
            mac: r.get("mac")?,
        })
    }
}

/// A checkpoint in the agent's store.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    /// Checkpoint id.
    pub id: String,
    /// The container it was taken of.
    pub container_id: String,
    /// Directory holding the images.
    pub dir: String,
    /// Creation time, Unix seconds.
    pub created_unix: i64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// How long the container was frozen.
    pub frozen_ms: u64,
    /// Whether the container kept running.
    pub leave_running: bool,
}

/// A long operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    /// Operation id.
    pub id: String,
    /// `checkpoint`, `restore`, ...
    pub kind: String,
    /// The container it acts on.
    pub container_id: String,
    /// `running`, `succeeded`, `failed`.
    pub state: String,
    /// Start, Unix milliseconds.
    pub started_unix_ms: i64,
    /// End, Unix milliseconds (0 while running).
    pub finished_unix_ms: i64,
    /// Error line when failed.
    pub error: String,
}

/// One journal entry of an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    /// The operation.
    pub operation_id: String,
    /// The step (phase) name.
    pub step: String,
    /// What happened.
    pub detail: String,
    /// When, Unix milliseconds.
    pub unix_ms: i64,
}

/// The catalog: one SQLite connection behind a mutex (the agent's write rate is tiny).
pub struct Catalog {
    conn: Mutex<Connection>,
}

impl Catalog {
    /// Opens (creating) the database at `path` and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Catalog> {
        let name = path.display().to_string();
        let open_err = |source| CatalogError::Open {
            path: name.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        migrations::migrate(&mut conn, &name)?;
        Ok(Catalog {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(q("read schema version"))
    }

    /// Inserts or replaces a container.
    pub fn put_container(&self, c: &ContainerRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO containers (id, bundle, restart, desired, exit_code, restarts, created_unix, ip, mac)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![c.id, c.bundle, c.restart.as_str(), c.desired, c.exit_code, c.restarts, c.created_unix, c.ip, c.mac],
            )
            .map(|_| ())
            .map_err(q("save container"))
    }

    /// Updates a container that still exists; returns false (and writes nothing) if it was
    /// removed meanwhile, so a late writer cannot bring a removed container back.
    pub fn update_container(&self, c: &ContainerRecord) -> Result<bool> {
        self.conn()
            .execute(
                "UPDATE containers SET bundle = ?2, restart = ?3, desired = ?4, exit_code = ?5, restarts = ?6,
                 created_unix = ?7, ip = ?8, mac = ?9 WHERE id = ?1",
                params![c.id, c.bundle, c.restart.as_str(), c.desired, c.exit_code, c.restarts, c.created_unix, c.ip, c.mac],
            )
            .map(|n| n > 0)
            .map_err(q("update container"))
    }

    /// One container.
    pub fn container(&self, id: &str) -> Result<Option<ContainerRecord>> {
        self.conn()
            .query_row(
                "SELECT * FROM containers WHERE id = ?1",
                [id],
                ContainerRecord::from_row,
            )
            .optional()
            .map_err(q("read container"))
    }

    /// Every container, by id.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT * FROM containers ORDER BY id")
            .map_err(q("list containers"))?;
        let rows = stmt
            .query_map([], ContainerRecord::from_row)
            .map_err(q("list containers"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(q("list containers"))
    }

    /// Removes a container.
    pub fn delete_container(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM containers WHERE id = ?1", [id])
            .map(|_| ())
            .map_err(q("delete container"))
    }

    /// Records a checkpoint.
    pub fn put_checkpoint(&self, c: &CheckpointRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO checkpoints (id, container_id, dir, created_unix, size_bytes, frozen_ms, leave_running)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![c.id, c.container_id, c.dir, c.created_unix, c.size_bytes as i64, c.frozen_ms as i64, c.leave_running],
            )
            .map(|_| ())
            .map_err(q("save checkpoint"))
    }

    /// Checkpoints, newest first, optionally of one container.
    pub fn checkpoints(&self, container_id: Option<&str>) -> Result<Vec<CheckpointRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT * FROM checkpoints WHERE (?1 IS NULL OR container_id = ?1)
                 ORDER BY created_unix DESC, rowid DESC",
            )
            .map_err(q("list checkpoints"))?;
        let rows = stmt
            .query_map([container_id], |r| {
                Ok(CheckpointRecord {
                    id: r.get("id")?,
                    container_id: r.get("container_id")?,
                    dir: r.get("dir")?,
                    created_unix: r.get("created_unix")?,
                    size_bytes: r.get::<_, i64>("size_bytes")? as u64,
                    frozen_ms: r.get::<_, i64>("frozen_ms")? as u64,
                    leave_running: r.get("leave_running")?,
                })
            })
            .map_err(q("list checkpoints"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(q("list checkpoints"))
    }

    /// Records or updates an operation.
    pub fn put_operation(&self, o: &OperationRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO operations (id, kind, container_id, state, started_unix_ms, finished_unix_ms, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![o.id, o.kind, o.container_id, o.state, o.started_unix_ms, o.finished_unix_ms, o.error],
            )
            .map(|_| ())
            .map_err(q("save operation"))
    }

    /// Operations, newest first.
    pub fn operations(&self, limit: u32) -> Result<Vec<OperationRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT * FROM operations ORDER BY started_unix_ms DESC, rowid DESC LIMIT ?1")
            .map_err(q("list operations"))?;
        let rows = stmt
            .query_map([limit], Self::operation_row)
            .map_err(q("list operations"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(q("list operations"))
    }

    /// One operation.
    pub fn operation(&self, id: &str) -> Result<Option<OperationRecord>> {
        self.conn()
            .query_row(
                "SELECT * FROM operations WHERE id = ?1",
                [id],
                Self::operation_row,
            )
            .optional()
            .map_err(q("read operation"))
    }

    fn operation_row(r: &Row<'_>) -> rusqlite::Result<OperationRecord> {
        Ok(OperationRecord {
            id: r.get("id")?,
            kind: r.get("kind")?,
            container_id: r.get("container_id")?,
            state: r.get("state")?,
            started_unix_ms: r.get("started_unix_ms")?,
            finished_unix_ms: r.get("finished_unix_ms")?,
            error: r.get("error")?,
        })
    }

    /// Appends a journal entry.
    pub fn journal(&self, e: &JournalEntry) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO journal (operation_id, step, detail, unix_ms) VALUES (?1, ?2, ?3, ?4)",
                params![e.operation_id, e.step, e.detail, e.unix_ms],
            )
            .map(|_| ())
            .map_err(q("append journal"))
    }

    /// Appends `step` with `detail` to an operation's journal, now.
    pub fn journal_step(&self, operation_id: &str, step: &str, detail: &str) -> Result<()> {
        self.journal(&JournalEntry {
            operation_id: operation_id.to_string(),
            step: step.to_string(),
            detail: detail.to_string(),
            unix_ms: crate::ops::now_ms(),
        })
    }

    /// The journal of an operation, oldest first.
    pub fn journal_of(&self, operation_id: &str) -> Result<Vec<JournalEntry>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT * FROM journal WHERE operation_id = ?1 ORDER BY seq")
            .map_err(q("read journal"))?;
        let rows = stmt
            .query_map([operation_id], |r| {
                Ok(JournalEntry {
                    operation_id: r.get("operation_id")?,
                    step: r.get("step")?,
                    detail: r.get("detail")?,
                    unix_ms: r.get("unix_ms")?,
                })
            })
            .map_err(q("read journal"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(q("read journal"))
    }

    /// Operations a previous agent process left `running`.
    pub fn running_operations(&self) -> Result<Vec<OperationRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT * FROM operations WHERE state = 'running' ORDER BY started_unix_ms")
            .map_err(q("list running operations"))?;
        let rows = stmt
            .query_map([], Self::operation_row)
            .map_err(q("list running operations"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(q("list running operations"))
    }

    /// Marks operations left `running` by a previous agent process as failed.
    pub fn fail_interrupted_operations(&self, now_ms: i64) -> Result<usize> {
        self.conn()
            .execute(
                "UPDATE operations SET state = 'failed', finished_unix_ms = ?1,
                 error = 'interrupted: the agent stopped before the operation finished'
                 WHERE state = 'running'",
                [now_ms],
            )
            .map_err(q("fail interrupted operations"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            bundle: "/b".into(),
            restart: Restart::OnFailure,
            desired: "running".into(),
            exit_code: None,
            restarts: 0,
            created_unix: 5,
            ip: String::new(),
            mac: String::new(),
        }
    }

    #[test]
    fn containers_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        {
            let c = Catalog::open(&path).unwrap();
            c.put_container(&rec("b")).unwrap();
            let mut a = rec("a");
            a.exit_code = Some(3);
            a.restart = Restart::Always;
            c.put_container(&a).unwrap();
        }
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.schema_version().unwrap(), migrations::LATEST);
        let all = c.containers().unwrap();
        assert_eq!(
            all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(all[0].exit_code, Some(3));
        assert_eq!(all[0].restart, Restart::Always);
        c.delete_container("a").unwrap();
        assert_eq!(c.container("a").unwrap(), None);
        let mut ghost = rec("a");
        ghost.restarts = 9;
        assert!(
            !c.update_container(&ghost).unwrap(),
            "an update brought a removed container back"
        );
        assert_eq!(c.container("a").unwrap(), None);
        let mut b = rec("b");
        b.restarts = 2;
        assert!(c.update_container(&b).unwrap());
        assert_eq!(c.container("b").unwrap(), Some(b));
    }

    #[test]
    fn operations_journal_and_interrupted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let op = OperationRecord {
            id: "op1".into(),
            kind: "checkpoint".into(),
            container_id: "web".into(),
            state: "running".into(),
            started_unix_ms: 10,
            finished_unix_ms: 0,
            error: String::new(),
        };
        c.put_operation(&op).unwrap();
        for step in ["freeze", "dump"] {
            c.journal(&JournalEntry {
                operation_id: "op1".into(),
                step: step.into(),
                detail: "x".into(),
                unix_ms: 11,
            })
            .unwrap();
        }
        assert_eq!(
            c.journal_of("op1")
                .unwrap()
                .iter()
                .map(|e| e.step.as_str())
                .collect::<Vec<_>>(),
            ["freeze", "dump"]
        );
        assert_eq!(c.fail_interrupted_operations(99).unwrap(), 1);
        let got = c.operation("op1").unwrap().unwrap();
        assert_eq!((got.state.as_str(), got.finished_unix_ms), ("failed", 99));
        assert!(got.error.contains("interrupted"));
        assert_eq!(c.operations(10).unwrap().len(), 1);
    }

    #[test]
    fn checkpoints_newest_first_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.db")).unwrap();
        for (id, cont, t) in [("c1", "web", 1), ("c2", "db", 2), ("c3", "web", 3)] {
            c.put_checkpoint(&CheckpointRecord {
                id: id.into(),
                container_id: cont.into(),
                dir: format!("/x/{id}"),
                created_unix: t,
                size_bytes: 100,
                frozen_ms: 7,
                leave_running: true,
            })
            .unwrap();
        }
        let web: Vec<_> = c
            .checkpoints(Some("web"))
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(web, ["c3", "c1"]);
        assert_eq!(c.checkpoints(None).unwrap().len(), 3);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 999)
            .unwrap();
        let err = Catalog::open(&path).err().unwrap().to_string();
        assert!(err.contains("schema version 999"), "{err}");
    }
}
