//! Schema migrations: each entry moves the database from version N to N+1, in a transaction.
//! The version lives in SQLite's `user_version`.

use rusqlite::Connection;

use super::CatalogError;

/// Each step's SQL; index i migrates from version i to i+1.
const STEPS: &[&str] = &[
    // 0 -> 1: the first schema.
    "CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        bundle TEXT NOT NULL,
        restart TEXT NOT NULL,
        desired TEXT NOT NULL,
        exit_code INTEGER,
        restarts INTEGER NOT NULL DEFAULT 0,
        created_unix INTEGER NOT NULL
    );
    CREATE TABLE checkpoints (
        id TEXT PRIMARY KEY,
        container_id TEXT NOT NULL,
        dir TEXT NOT NULL,
        created_unix INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        frozen_ms INTEGER NOT NULL,
        leave_running INTEGER NOT NULL
    );
    CREATE INDEX checkpoints_by_container ON checkpoints (container_id, created_unix);
    CREATE TABLE operations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        container_id TEXT NOT NULL,
        state TEXT NOT NULL,
        started_unix_ms INTEGER NOT NULL,
        finished_unix_ms INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        operation_id TEXT NOT NULL,
        step TEXT NOT NULL,
        detail TEXT NOT NULL,
        unix_ms INTEGER NOT NULL
    );
    CREATE INDEX journal_by_operation ON journal (operation_id, seq);",
    // 1 -> 2: containers get a network address that moves with them.
    "ALTER TABLE containers ADD COLUMN ip TEXT NOT NULL DEFAULT '';
    ALTER TABLE containers ADD COLUMN mac TEXT NOT NULL DEFAULT '';",
    // 2 -> 3: backups and their schedules.
    "CREATE TABLE backups (
        id TEXT PRIMARY KEY,
        container_id TEXT NOT NULL,
        origin TEXT NOT NULL,
        layer_id TEXT NOT NULL,
        created_unix INTEGER NOT NULL,
        frozen_ms INTEGER NOT NULL,
        logical_bytes INTEGER NOT NULL,
        stored_bytes INTEGER NOT NULL,
        added_bytes INTEGER NOT NULL,
        sent_bytes INTEGER NOT NULL DEFAULT 0,
        replicas TEXT NOT NULL DEFAULT '',
        verified_unix INTEGER NOT NULL DEFAULT 0,
        verified_ok INTEGER NOT NULL DEFAULT 0,
        verify_detail TEXT NOT NULL DEFAULT '',
        restart TEXT NOT NULL,
        ip TEXT NOT NULL DEFAULT '',
        mac TEXT NOT NULL DEFAULT '',
        container_created_unix INTEGER NOT NULL
    );
    CREATE INDEX backups_by_container ON backups (container_id, created_unix);
    CREATE TABLE backup_schedules (
        container_id TEXT PRIMARY KEY,
        every_secs INTEGER NOT NULL,
        cron TEXT NOT NULL,
        keep INTEGER NOT NULL,
        keep_daily INTEGER NOT NULL,
        replicate_to TEXT NOT NULL,
        last_run_unix INTEGER NOT NULL DEFAULT 0,
        next_run_unix INTEGER NOT NULL,
        last_error TEXT NOT NULL DEFAULT ''
    );",
    // 3 -> 4: the history of drill runs (the report as protobuf bytes).
    "CREATE TABLE drills (
        id TEXT PRIMARY KEY,
        started_unix_ms INTEGER NOT NULL,
        report BLOB NOT NULL
    );",
];

/// The schema version this agent writes.
pub const LATEST: i64 = STEPS.len() as i64;

/// Brings the database to [`LATEST`], refusing one from a newer agent.
pub fn migrate(conn: &mut Connection, path: &str) -> Result<(), CatalogError> {
    let err = |source| CatalogError::Open {
        path: path.to_string(),
        source,
    };
    let mut version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version > LATEST {
        return Err(CatalogError::TooNew {
            path: path.to_string(),
            found: version,
            supported: LATEST,
        });
    }
    while version < LATEST {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(STEPS[version as usize]).map_err(err)?;
        version += 1;
        tx.pragma_update(None, "user_version", version)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}
