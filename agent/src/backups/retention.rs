//! Which backups a retention policy keeps: the newest `keep`, the newest of each of the last
//! `keep_daily` days (UTC) that have backups, and always the newest verified one.

use crate::catalog::BackupRecord;

/// The ids of `backups` (all of one container) that the policy lets go, oldest first.
pub fn expired(backups: &[BackupRecord], keep: u32, keep_daily: u32) -> Vec<String> {
    let mut newest_first: Vec<&BackupRecord> = backups.iter().collect();
    newest_first.sort_by(|a, b| {
        b.created_unix
            .cmp(&a.created_unix)
            .then_with(|| b.id.cmp(&a.id))
    });
    let mut kept = vec![false; newest_first.len()];
    for k in kept.iter_mut().take(keep.max(1) as usize) {
        *k = true;
    }
    let mut days_seen = Vec::new();
    for (i, b) in newest_first.iter().enumerate() {
        let day = b.created_unix.div_euclid(86_400);
        if days_seen.contains(&day) {
            continue;
        }
        if days_seen.len() >= keep_daily as usize {
            break;
        }
        days_seen.push(day);
        kept[i] = true;
    }
    if let Some(i) = newest_first.iter().position(|b| b.verified_ok) {
        kept[i] = true;
    }
    newest_first
        .iter()
        .zip(kept)
        .rev()
        .filter(|(_, k)| !k)
        .map(|(b, _)| b.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, created_unix: i64, verified_ok: bool) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            created_unix,
            verified_ok,
            ..Default::default()
        }
    }

    const DAY: i64 = 86_400;

    #[test]
    fn keeps_the_newest_n() {
        let all: Vec<_> = (0..6)
            .map(|i| b(&format!("b{i}"), 100 + i, false))
            .collect();
        assert_eq!(expired(&all, 2, 0), ["b0", "b1", "b2", "b3"]);
        assert_eq!(expired(&all, 6, 0), Vec::<String>::new());
        // keep is at least one: the newest backup is never expired.
        assert_eq!(expired(&all, 0, 0).len(), 5);
    }

    #[test]
    fn keeps_the_newest_of_each_recent_day() {
        // Three backups a day for four days.
        let mut all = Vec::new();
        for day in 0..4 {
            for h in 0..3 {
                all.push(b(&format!("d{day}h{h}"), day * DAY + h * 3600, false));
            }
        }
        let gone = expired(&all, 1, 3);
        let kept: Vec<_> = all
            .iter()
            .map(|b| b.id.as_str())
            .filter(|id| !gone.iter().any(|g| g == id))
            .collect();
        assert_eq!(kept, ["d1h2", "d2h2", "d3h2"]);
    }

    #[test]
    fn never_expires_the_newest_verified_backup() {
        let all = vec![
            b("old-verified", 100, true),
            b("older-verified", 50, true),
            b("new", 200, false),
            b("newer", 300, false),
        ];
        assert_eq!(expired(&all, 1, 0), ["older-verified", "new"]);
    }
}
