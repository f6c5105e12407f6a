//! Backups, backup schedules and drill runs in the catalog.

use rusqlite::{params, OptionalExtension, Row};

use super::{q, Catalog, Result};

/// A backup this host holds (taken here, or replicated here from `origin`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackupRecord {
    /// Backup id, also the id of its manifest in the store.
    pub id: String,
    /// The container it was taken of.
    pub container_id: String,
    /// The node it was taken on.
    pub origin: String,
    /// The manifest of the container's bundle layer.
    pub layer_id: String,
    /// Unix seconds.
    pub created_unix: i64,
    /// How long the container was frozen for it.
    pub frozen_ms: u64,
    /// Uncompressed size of its files.
    pub logical_bytes: u64,
    /// Compressed size of all its chunks.
    pub stored_bytes: u64,
    /// Compressed bytes of the chunks it added to the store.
    pub added_bytes: u64,
    /// Compressed bytes sent to replicas.
    pub sent_bytes: u64,
    /// Peers holding a copy.
    pub replicas: Vec<String>,
    /// Last verification, Unix seconds (0 = never).
    pub verified_unix: i64,
    /// Whether the last verification passed.
    pub verified_ok: bool,
    /// What it found.
    pub verify_detail: String,
    /// The container's restart policy name.
    pub restart: String,
    /// The container's address and MAC, if it had an address.
    pub ip: String,
    pub mac: String,
    /// When the container was created, Unix seconds.
    pub container_created_unix: i64,
}

/// When and how a container is backed up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScheduleRecord {
    pub container_id: String,
    /// Interval in seconds (0 when `cron` is set).
    pub every_secs: u64,
    /// Five-field cron expression in UTC (empty when `every_secs` is set).
    pub cron: String,
    /// Keep the newest `keep` backups.
    pub keep: u32,
    /// And the newest backup of each of the last `keep_daily` days.
    pub keep_daily: u32,
    /// Peer to copy each backup to (empty = none).
    pub replicate_to: String,
    /// Unix seconds (0 = never).
    pub last_run_unix: i64,
    pub next_run_unix: i64,
    /// Why the last run failed (empty = it succeeded).
    pub last_error: String,
}

impl BackupRecord {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<BackupRecord> {
        let replicas: String = r.get("replicas")?;
        Ok(BackupRecord {
            id: r.get("id")?,
            container_id: r.get("container_id")?,
            origin: r.get("origin")?,
            layer_id: r.get("layer_id")?,
            created_unix: r.get("created_unix")?,
            frozen_ms: r.get::<_, i64>("frozen_ms")? as u64,
            logical_bytes: r.get::<_, i64>("logical_bytes")? as u64,
            stored_bytes: r.get::<_, i64>("stored_bytes")? as u64,
            added_bytes: r.get::<_, i64>("added_bytes")? as u64,
            sent_bytes: r.get::<_, i64>("sent_bytes")? as u64,
            replicas: replicas
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            verified_unix: r.get("verified_unix")?,
            verified_ok: r.get("verified_ok")?,
            verify_detail: r.get("verify_detail")?,
            restart: r.get("restart")?,
            ip: r.get("ip")?,
            mac: r.get("mac")?,
            container_created_unix: r.get("container_created_unix")?,
        })
    }
}

impl ScheduleRecord {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<ScheduleRecord> {
        Ok(ScheduleRecord {
            container_id: r.get("container_id")?,
            every_secs: r.get::<_, i64>("every_secs")? as u64,
            cron: r.get("cron")?,
            keep: r.get("keep")?,
            keep_daily: r.get("keep_daily")?,
            replicate_to: r.get("replicate_to")?,
            last_run_unix: r.get("last_run_unix")?,
            next_run_unix: r.get("next_run_unix")?,
            last_error: r.get("last_error")?,
        })
    }
}

impl Catalog {
    /// Records (or replaces) a backup.
    pub fn put_backup(&self, b: &BackupRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO backups (id, container_id, origin, layer_id, created_unix, frozen_ms,
                 logical_bytes, stored_bytes, added_bytes, sent_bytes, replicas, verified_unix, verified_ok,
                 verify_detail, restart, ip, mac, container_created_unix)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                params![
                    b.id, b.container_id, b.origin, b.layer_id, b.created_unix, b.frozen_ms as i64,
                    b.logical_bytes as i64, b.stored_bytes as i64, b.added_bytes as i64, b.sent_bytes as i64,
                    b.replicas.join(","), b.verified_unix, b.verified_ok, b.verify_detail, b.restart, b.ip,
                    b.mac, b.container_created_unix
                ],
            )
            .map(|_| ())
            .map_err(q("save backup"))
    }

    /// One backup.
    pub fn backup(&self, id: &str) -> Result<Option<BackupRecord>> {
        self.conn()
            .query_row(
                "SELECT * FROM backups WHERE id = ?1",
                [id],
                BackupRecord::from_row,
            )
            .optional()
            .map_err(q("read backup"))
    }

    /// Backups, newest first, optionally of one container.
    pub fn backups(&self, container_id: Option<&str>) -> Result<Vec<BackupRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT * FROM backups WHERE (?1 IS NULL OR container_id = ?1)
                 ORDER BY created_unix DESC, rowid DESC",
            )
            .map_err(q("list backups"))?;
        let rows = stmt
            .query_map([container_id], BackupRecord::from_row)
            .map_err(q("list backups"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(q("list backups"))
    }

    /// Forgets a backup (its manifest and chunks are the store's business).
    pub fn delete_backup(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM backups WHERE id = ?1", [id])
            .map(|_| ())
            .map_err(q("delete backup"))
    }

    /// Creates or replaces a schedule.
    pub fn put_schedule(&self, s: &ScheduleRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO backup_schedules (container_id, every_secs, cron, keep, keep_daily,
                 replicate_to, last_run_unix, next_run_unix, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    s.container_id, s.every_secs as i64, s.cron, s.keep, s.keep_daily, s.replicate_to,
                    s.last_run_unix, s.next_run_unix, s.last_error
                ],
            )
            .map(|_| ())
            .map_err(q("save backup schedule"))
    }

    /// The schedule of a container.
    pub fn schedule(&self, container_id: &str) -> Result<Option<ScheduleRecord>> {
        self.conn()
            .query_row(
                "SELECT * FROM backup_schedules WHERE container_id = ?1",
                [container_id],
                ScheduleRecord::from_row,
            )
            .optional()
            .map_err(q("read backup schedule"))
    }

    /// Every schedule, by container.
    pub fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT * FROM backup_schedules ORDER BY container_id")
            .map_err(q("list backup schedules"))?;
        let rows = stmt
            .query_map([], ScheduleRecord::from_row)
            .map_err(q("list backup schedules"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(q("list backup schedules"))
    }

    /// Records (or replaces) a drill run's report (protobuf bytes).
    pub fn put_drill(&self, id: &str, started_unix_ms: i64, report: &[u8]) -> Result<()> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO drills (id, started_unix_ms, report) VALUES (?1, ?2, ?3)",
                params![id, started_unix_ms, report],
            )
            .map(|_| ())
            .map_err(q("save drill"))
    }

    /// Drill reports (protobuf bytes), newest first; one if `id` is given.
    pub fn drills(&self, id: Option<&str>) -> Result<Vec<Vec<u8>>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT report FROM drills WHERE (?1 IS NULL OR id = ?1)
                 ORDER BY started_unix_ms DESC, rowid DESC",
            )
            .map_err(q("list drills"))?;
        let rows = stmt
            .query_map([id], |r| r.get(0))
            .map_err(q("list drills"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(q("list drills"))
    }

    /// Removes a schedule; returns false if there was none.
    pub fn delete_schedule(&self, container_id: &str) -> Result<bool> {
        self.conn()
            .execute(
                "DELETE FROM backup_schedules WHERE container_id = ?1",
                [container_id],
            )
            .map(|n| n > 0)
            .map_err(q("delete backup schedule"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.db")).unwrap();
        (dir, c)
    }

    #[test]
    fn backups_round_trip_newest_first() {
        let (_d, c) = open();
        let mut b = BackupRecord {
            id: "web-1".into(),
            container_id: "web".into(),
            origin: "host1".into(),
            layer_id: "layer-x".into(),
            created_unix: 10,
            frozen_ms: 42,
            logical_bytes: 1000,
            stored_bytes: 400,
            added_bytes: 300,
            replicas: vec!["host2".into()],
            restart: "no".into(),
            container_created_unix: 3,
            ..Default::default()
        };
        c.put_backup(&b).unwrap();
        b.id = "web-2".into();
        b.created_unix = 20;
        b.replicas.clear();
        c.put_backup(&b).unwrap();
        let all = c.backups(Some("web")).unwrap();
        assert_eq!(
            all.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
            ["web-2", "web-1"]
        );
        assert_eq!(all[1].replicas, ["host2"]);
        assert!(all[0].replicas.is_empty());
        assert_eq!(c.backup("web-1").unwrap().unwrap().frozen_ms, 42);
        assert!(c.backups(Some("db")).unwrap().is_empty());
        c.delete_backup("web-1").unwrap();
        assert!(c.backup("web-1").unwrap().is_none());
    }

    #[test]
    fn drills_newest_first() {
        let (_d, c) = open();
        c.put_drill("a", 10, b"first").unwrap();
        c.put_drill("b", 20, b"second").unwrap();
        assert_eq!(
            c.drills(None).unwrap(),
            [b"second".to_vec(), b"first".to_vec()]
        );
        assert_eq!(c.drills(Some("a")).unwrap(), [b"first".to_vec()]);
        assert!(c.drills(Some("zz")).unwrap().is_empty());
    }

    #[test]
    fn schedules_round_trip() {
        let (_d, c) = open();
        let s = ScheduleRecord {
            container_id: "web".into(),
            every_secs: 900,
            keep: 4,
            next_run_unix: 100,
            ..Default::default()
        };
        c.put_schedule(&s).unwrap();
        assert_eq!(c.schedule("web").unwrap().as_ref(), Some(&s));
        assert_eq!(c.schedules().unwrap(), vec![s]);
        assert!(c.delete_schedule("web").unwrap());
        assert!(!c.delete_schedule("web").unwrap());
    }
}
