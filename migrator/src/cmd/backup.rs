//! `migrate backup schedule | unschedule | schedules | now | ls | show | rm | verify | restore`:
//! backup schedules, backups in the store, and the long operations on them (with progress on
//! stderr).

use anyhow::{bail, Context};
use clap::ArgGroup;
use proto::v1::{
    BackupNowRequest, BackupRef, ContainerRef, ListBackupSchedulesRequest, ListBackupsRequest,
    RestoreBackupRequest, ScheduleBackupRequest, VerifyBackupRequest,
};
use serde::Serialize;

use super::checkpoint::operation_id;
use super::Ctx;
use crate::output;
use crate::progress;
use crate::view::{BackupView, ContainerView, Outcome, ScheduleView, VerifiedView};

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("when").required(true).args(["every", "at"])))]
pub struct ScheduleArgs {
    /// Container id.
    pub name: String,
    /// Back up at this interval: whole numbers with units s, m, h, d (15m, 1h30m, 1d).
    #[arg(long, value_name = "DURATION", value_parser = parse_every)]
    pub every: Option<u64>,
    /// Back up at the times of this five-field cron expression, in UTC ("0 3 * * *").
    #[arg(long, value_name = "CRON")]
    pub at: Option<String>,
    /// Keep the newest N backups.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// Also keep the newest backup of each of the last D days.
    #[arg(long, value_name = "D", default_value_t = 0)]
    pub keep_daily: u32,
    /// Copy each backup to this peer host.
    #[arg(long, value_name = "HOST")]
    pub replicate_to: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct NowArgs {
    /// Container id.
    pub name: String,
    /// Copy the backup to this peer host (default: the schedule's, if any).
    #[arg(long, value_name = "HOST")]
    pub replicate_to: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only the backups of this container.
    pub name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// Backup id.
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Backup id (default: every backup on this host).
    pub id: Option<String>,
    /// Also restore each backup as a throw-away container with no network and check it runs.
    #[arg(long)]
    pub restore_test: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Container whose backup to restore.
    pub name: String,
    /// Backup to restore (default: the newest of NAME).
    #[arg(long = "from", value_name = "BACKUP_ID")]
    pub from: Option<String>,
    /// Restore on this peer host (default: this one).
    #[arg(long, value_name = "HOST")]
    pub on: Option<String>,
    /// Restore under this name (default: NAME).
    #[arg(long = "as", value_name = "NEWNAME")]
    pub new_name: Option<String>,
}

/// `backup rm`'s JSON line.
#[derive(Debug, Serialize)]
struct Removed {
    backup_id: String,
    removed: bool,
}

/// `backup ls`'s last JSON line.
#[derive(Debug, Serialize)]
struct Totals {
    totals: TotalCounts,
}

#[derive(Debug, Serialize)]
struct TotalCounts {
    backups: usize,
    logical_bytes: u64,
    stored_bytes: u64,
}

pub async fn schedule(ctx: &mut Ctx, args: ScheduleArgs) -> anyhow::Result<()> {
    let request = ScheduleBackupRequest {
        id: args.name,
        every_secs: args.every.unwrap_or_default(),
        cron: args.at.unwrap_or_default(),
        keep: args.keep,
        keep_daily: args.keep_daily,
        replicate_to: args.replicate_to.unwrap_or_default(),
    };
    let schedule = ctx.client.schedule_backup(request).await?.into_inner();
    output::object(ctx.format, &ScheduleView::from(schedule))
}

pub async fn unschedule(ctx: &mut Ctx, args: super::lifecycle::NameArgs) -> anyhow::Result<()> {
    let request = ContainerRef { id: args.name };
    let schedule = ctx.client.unschedule_backup(request).await?.into_inner();
    let text = format!(
        "removed the backup schedule of {}; its backups stay",
        schedule.container_id
    );
    output::note(ctx.format, &text, &ScheduleView::from(schedule))
}

pub async fn schedules(ctx: &mut Ctx) -> anyhow::Result<()> {
    let request = ListBackupSchedulesRequest {};
    let response = ctx.client.list_backup_schedules(request).await?;
    let views: Vec<ScheduleView> = response
        .into_inner()
        .schedules
        .into_iter()
        .map(ScheduleView::from)
        .collect();
    output::list(ctx.format, &views)
}

pub async fn now(ctx: &mut Ctx, args: NowArgs) -> anyhow::Result<()> {
    let request = BackupNowRequest {
        id: args.name,
        replicate_to: args.replicate_to.unwrap_or_default(),
    };
    let events = ctx.client.backup_now(request).await?.into_inner();
    let result = progress::follow(events, ctx.format).await?;
    let operation_id = operation_id(&result);
    let backup = result
        .backups
        .into_iter()
        .next()
        .context("the agent reported success but no backup")?;
    let outcome = Outcome {
        operation_id,
        result: BackupView::from(backup),
    };
    output::object(ctx.format, &outcome)
}

/// The backups, then their totals: a line for people, a `{"totals": ...}` object for scripts.
pub async fn list(ctx: &mut Ctx, args: ListArgs) -> anyhow::Result<()> {
    let request = ListBackupsRequest {
        container_id: args.name.unwrap_or_default(),
    };
    let response = ctx.client.list_backups(request).await?.into_inner();
    let views: Vec<BackupView> = response.backups.into_iter().map(BackupView::from).collect();
    output::list(ctx.format, &views)?;
    let totals = Totals {
        totals: TotalCounts {
            backups: views.len(),
            logical_bytes: response.logical_bytes,
            stored_bytes: response.stored_bytes,
        },
    };
    output::note(ctx.format, &totals_line(&totals.totals), &totals)
}

pub async fn show(ctx: &mut Ctx, args: IdArgs) -> anyhow::Result<()> {
    let request = BackupRef { backup_id: args.id };
    let backup = ctx.client.show_backup(request).await?.into_inner();
    output::object(ctx.format, &BackupView::from(backup))
}

pub async fn rm(ctx: &mut Ctx, args: IdArgs) -> anyhow::Result<()> {
    let request = BackupRef {
        backup_id: args.id.clone(),
    };
    ctx.client.remove_backup(request).await?;
    let removed = Removed {
        backup_id: args.id,
        removed: true,
    };
    let text = format!("removed backup {}", removed.backup_id);
    output::note(ctx.format, &text, &removed)
}

/// Prints what was verified; fails when any backup did not pass, so scripts see exit code 1.
pub async fn verify(ctx: &mut Ctx, args: VerifyArgs) -> anyhow::Result<()> {
    let request = VerifyBackupRequest {
        backup_id: args.id.unwrap_or_default(),
        restore_test: args.restore_test,
    };
    let events = ctx.client.verify_backup(request).await?.into_inner();
    let result = progress::follow(events, ctx.format).await?;
    let views: Vec<VerifiedView> = result
        .backups
        .into_iter()
        .map(|backup| VerifiedView(BackupView::from(backup)))
        .collect();
    output::list(ctx.format, &views)?;
    let failed: Vec<&str> = views
        .iter()
        .filter(|view| !view.0.verified_ok)
        .map(|view| view.0.backup_id.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} backups failed verification: {}",
            failed.len(),
            views.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

pub async fn restore(ctx: &mut Ctx, args: RestoreArgs) -> anyhow::Result<()> {
    let request = RestoreBackupRequest {
        id: args.name,
        backup_id: args.from.unwrap_or_default(),
        on: args.on.unwrap_or_default(),
        r#as: args.new_name.unwrap_or_default(),
    };
    let events = ctx.client.restore_backup(request).await?.into_inner();
    let result = progress::follow(events, ctx.format).await?;
    let operation_id = operation_id(&result);
    let container = result
        .container
        .context("the agent reported success but no container")?;
    let outcome = Outcome {
        operation_id,
        result: ContainerView::from(container),
    };
    output::object(ctx.format, &outcome)
}

/// `3 backups: 1.2 GiB logical, 310.0 MiB stored after deduplication`
fn totals_line(totals: &TotalCounts) -> String {
    let noun = if totals.backups == 1 {
        "backup"
    } else {
        "backups"
    };
    format!(
        "{} {noun}: {} logical, {} stored after deduplication",
        totals.backups,
        output::bytes(totals.logical_bytes),
        output::bytes(totals.stored_bytes)
    )
}

/// Parses `--every`: whole numbers with units s, m, h, d, largest unit first, each at most once
/// (`30s`, `15m`, `1h30m`, `1d`). Returns seconds; zero is refused.
pub fn parse_every(text: &str) -> Result<u64, String> {
    const EXAMPLES: &str = "like 30s, 15m, 1h30m or 1d";
    if text.is_empty() {
        return Err(format!("a duration is needed, {EXAMPLES}"));
    }
    let too_long = || format!("{text} is too long a duration");
    let mut total: u64 = 0;
    let mut previous_unit: Option<u64> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at '{rest}', {EXAMPLES}"));
        }
        let (number, after) = rest.split_at(digits);
        let mut chars = after.chars();
        let unit = match chars.next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            Some(other) => {
                return Err(format!(
                    "unknown unit '{other}': use s, m, h or d, {EXAMPLES}"
                ))
            }
            None => return Err(format!("{number} needs a unit: s, m, h or d, {EXAMPLES}")),
        };
        if previous_unit.is_some_and(|previous| unit >= previous) {
            return Err(format!(
                "units go from largest to smallest, each once, {EXAMPLES}"
            ));
        }
        let number: u64 = number.parse().map_err(|_| too_long())?;
        total = number
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(too_long)?;
        previous_unit = Some(unit);
        rest = chars.as_str();
    }
    if total == 0 {
        return Err("the interval must be longer than 0s".to_string());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepts_units_and_combinations() {
        assert_eq!(parse_every("2s"), Ok(2));
        assert_eq!(parse_every("15m"), Ok(900));
        assert_eq!(parse_every("1h30m"), Ok(5400));
        assert_eq!(parse_every("1d"), Ok(86_400));
        assert_eq!(parse_every("1d2h3m4s"), Ok(86_400 + 7200 + 180 + 4));
        assert_eq!(parse_every("90m"), Ok(5400));
        assert_eq!(parse_every("007s"), Ok(7));
    }

    #[test]
    fn every_refuses_bad_durations() {
        for bad in [
            "", "0", "0s", "0h0m", "15", "1h30", "15x", "15M", "m", "h1", "1.5h", "-1m", " 1m",
            "1m ", "1 m", "30m1h", "1m1m", "1s1s",
        ] {
            assert!(parse_every(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn every_messages_name_the_problem() {
        assert!(parse_every("")
            .unwrap_err()
            .contains("a duration is needed"));
        assert!(parse_every("0m").unwrap_err().contains("longer than 0s"));
        assert!(parse_every("15").unwrap_err().contains("15 needs a unit"));
        assert!(parse_every("15w").unwrap_err().contains("unknown unit 'w'"));
        assert!(parse_every("30m1h")
            .unwrap_err()
            .contains("largest to smallest"));
    }

    #[test]
    fn every_refuses_overflow() {
        let huge = format!("{}d", u64::MAX / 86_400 + 1);
        assert!(parse_every(&huge).unwrap_err().contains("too long"));
        assert!(parse_every("99999999999999999999999s")
            .unwrap_err()
            .contains("too long"));
        let sum = format!("{}d{}s", u64::MAX / 86_400, u64::MAX % 86_400 + 1);
        assert!(parse_every(&sum).unwrap_err().contains("too long"));
    }

    #[test]
    fn every_round_trips_through_its_display() {
        for secs in [1, 59, 60, 61, 3600, 5400, 86_400, 90_061] {
            assert_eq!(parse_every(&output::interval(secs)), Ok(secs));
        }
    }

    #[test]
    fn totals_line_counts_backups() {
        let totals = TotalCounts {
            backups: 3,
            logical_bytes: 3 * 1024 * 1024,
            stored_bytes: 1536,
        };
        assert_eq!(
            totals_line(&totals),
            "3 backups: 3.0 MiB logical, 1.5 KiB stored after deduplication"
        );
        let one = TotalCounts {
            backups: 1,
            logical_bytes: 0,
            stored_bytes: 0,
        };
        assert!(totals_line(&one).starts_with("1 backup: "));
    }
}
