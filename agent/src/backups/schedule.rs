//! When a scheduled backup runs next: a fixed interval, or a five-field cron expression in UTC.

use time::OffsetDateTime;

/// A parsed cron expression: the allowed values of each field.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    /// Whether day-of-month / day-of-week were restricted (not `*`): cron matches either one
    /// when both are.
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl Cron {
    /// Parses `minute hour day-of-month month day-of-week` (`*`, `N`, `A-B`, `*/S`, `A-B/S` and
    /// comma lists; day-of-week 0 or 7 is Sunday).
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "cron expression {expr:?} has {} fields; it needs 5: minute hour day-of-month month day-of-week (UTC)",
                fields.len()
            ));
        }
        let field = |i: usize, name: &str, lo: u32, hi: u32| {
            parse_field(fields[i], lo, hi).map_err(|e| {
                format!(
                    "cron expression {expr:?}: {name} field {:?}: {e}",
                    fields[i]
                )
            })
        };
        let mut weekdays = field(4, "day-of-week", 0, 7)?;
        if weekdays[7] {
            weekdays[0] = true;
        }
        weekdays.truncate(7);
        Ok(Cron {
            minutes: field(0, "minute", 0, 59)?,
            hours: field(1, "hour", 0, 23)?,
            days: field(2, "day-of-month", 1, 31)?,
            months: field(3, "month", 1, 12)?,
            weekdays,
            days_restricted: fields[2] != "*",
            weekdays_restricted: fields[4] != "*",
        })
    }

    fn day_matches(&self, t: &OffsetDateTime) -> bool {
        let dom = self.days[t.day() as usize];
        let dow = self.weekdays[t.weekday().number_days_from_sunday() as usize];
        let month = self.months[u8::from(t.month()) as usize];
        month
            && match (self.days_restricted, self.weekdays_restricted) {
                (true, true) => dom || dow,
                (true, false) => dom,
                (false, true) => dow,
                (false, false) => true,
            }
    }

    /// The first matching minute strictly after `after` (Unix seconds), within five years.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let mut t = after - after.rem_euclid(60) + 60;
        let limit = after + 5 * 366 * 86_400;
        while t <= limit {
            let dt = OffsetDateTime::from_unix_timestamp(t).ok()?;
            if !self.day_matches(&dt) {
                t += 86_400 - (dt.hour() as i64 * 3600 + dt.minute() as i64 * 60);
                continue;
            }
            if !self.hours[dt.hour() as usize] {
                t += 3600 - dt.minute() as i64 * 60;
                continue;
            }
            if !self.minutes[dt.minute() as usize] {
                t += 60;
                continue;
            }
            return Some(t);
        }
        None
    }
}

/// One cron field as a table indexed by value (entries below `lo` unused).
fn parse_field(text: &str, lo: u32, hi: u32) -> Result<Vec<bool>, String> {
    let mut allowed = vec![false; hi as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step {s:?} is not a positive number"))?,
            ),
            None => (part, 1),
        };
        let number = |s: &str| {
            s.parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| format!("{s:?} is not a number from {lo} to {hi}"))
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(format!("range {range:?} runs backwards"));
            }
            (a, b)
        } else {
            let n = number(range)?;
            // `N/S` means from N to the end, every S.
            (n, if part.contains('/') { hi } else { n })
        };
        for v in (a..=b).step_by(step as usize) {
            allowed[v as usize] = true;
        }
    }
    Ok(allowed)
}

/// When a schedule runs next, after a run (or a missed slot) at `now`. A missed slot is not
/// made up more than once: the next run is always computed from `now`.
pub fn next_run(every_secs: u64, cron: Option<&Cron>, now: i64) -> Option<i64> {
    match cron {
        Some(c) => c.next_after(now),
        None if every_secs > 0 => Some(now + every_secs as i64),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    #[test]
    fn every_fifteen_minutes() {
        let c = Cron::parse("*/15 * * * *").unwrap();
        assert_eq!(
            c.next_after(at("2026-11-25T10:07:30Z")),
            Some(at("2026-11-25T10:15:00Z"))
        );
        assert_eq!(
            c.next_after(at("2026-11-25T10:15:00Z")),
            Some(at("2026-11-25T10:30:00Z"))
        );
        assert_eq!(
            c.next_after(at("2026-11-25T23:50:00Z")),
            Some(at("2026-11-26T00:00:00Z"))
        );
    }

    #[test]
    fn daily_at_a_fixed_time_and_weekdays() {
        let c = Cron::parse("30 2 * * *").unwrap();
        assert_eq!(
            c.next_after(at("2026-11-25T10:00:00Z")),
            Some(at("2026-11-26T02:30:00Z"))
        );
        // 2026-11-25 is a Wednesday; the next Monday-or-Friday 03:00 is Friday the 27th.
        let c = Cron::parse("0 3 * * 1,5").unwrap();
        assert_eq!(
            c.next_after(at("2026-11-25T10:00:00Z")),
            Some(at("2026-11-27T03:00:00Z"))
        );
        // Sunday as 7.
        let c = Cron::parse("0 0 * * 7").unwrap();
        assert_eq!(
            c.next_after(at("2026-11-25T10:00:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
    }

    #[test]
    fn day_of_month_or_weekday_when_both_are_given() {
        // The 1st of the month or any Sunday, at midnight.
        let c = Cron::parse("0 0 1 * 0").unwrap();
        assert_eq!(
            c.next_after(at("2026-11-25T10:00:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
        assert_eq!(
            c.next_after(at("2026-11-29T00:00:00Z")),
            Some(at("2026-12-01T00:00:00Z"))
        );
    }

    #[test]
    fn ranges_steps_and_months() {
        let c = Cron::parse("0 9-17/4 * 2 *").unwrap();
        assert_eq!(
            c.next_after(at("2026-11-25T10:00:00Z")),
            Some(at("2027-02-01T09:00:00Z"))
        );
        assert_eq!(
            c.next_after(at("2027-02-01T09:00:00Z")),
            Some(at("2027-02-01T13:00:00Z"))
        );
        // Never: the 31st of February.
        assert_eq!(Cron::parse("0 0 31 2 *").unwrap().next_after(0), None);
    }

    #[test]
    fn bad_expressions_say_which_field() {
        for (expr, needle) in [
            ("* * * *", "has 4 fields"),
            ("60 * * * *", "minute field"),
            ("* 24 * * *", "hour field"),
            ("* * 0 * *", "day-of-month field"),
            ("* * * 13 *", "month field"),
            ("* * * * 8", "day-of-week field"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("a * * * *", "minute field"),
        ] {
            let e = Cron::parse(expr).unwrap_err();
            assert!(e.contains(needle), "{expr}: {e}");
        }
    }

    #[test]
    fn next_run_counts_from_now_not_from_missed_slots() {
        assert_eq!(next_run(900, None, 10_000), Some(10_900));
        assert_eq!(next_run(0, None, 10_000), None);
        let c = Cron::parse("0 * * * *").unwrap();
        assert_eq!(next_run(0, Some(&c), 3_600 * 5 + 1), Some(3_600 * 6));
    }
}
