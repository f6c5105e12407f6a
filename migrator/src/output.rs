//! Printing results on stdout: aligned tables and `key: value` lines for people, one JSON object
//! per line for scripts; and the human units (ages, sizes, durations) the tables use.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns and `key: value` lines.
    Table,
    /// One JSON object per line, with stable snake_case keys.
    Json,
}

/// A value shown as one row of a table.
pub trait Row {
    /// Column titles, in the order of `cells`.
    const HEADERS: &'static [&'static str];
    /// The row's cells, already formatted for people.
    fn cells(&self) -> Vec<String>;
}

/// A value shown as `key: value` lines.
pub trait Fields {
    /// Labels and formatted values, in display order.
    fn fields(&self) -> Vec<(&'static str, String)>;
}

/// Prints a list: a table with a header, or one JSON object per item.
pub fn list<T: Row + Serialize>(format: Format, items: &[T]) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(Row::cells).collect();
            write_stdout(&render_table(T::HEADERS, &rows))
        }
        Format::Json => items.iter().try_for_each(json_line),
    }
}

/// Prints one object: `key: value` lines, or one JSON object.
pub fn object<T: Fields + Serialize>(format: Format, item: &T) -> anyhow::Result<()> {
    match format {
        Format::Table => write_stdout(&render_fields(&item.fields())),
        Format::Json => json_line(item),
    }
}

/// Prints a short confirmation for people, or `json` for scripts.
pub fn note<T: Serialize>(format: Format, text: &str, json: &T) -> anyhow::Result<()> {
    match format {
        Format::Table => write_stdout(&format!("{text}\n")),
        Format::Json => json_line(json),
    }
}

fn json_line<T: Serialize>(item: &T) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(item)?;
    line.push('\n');
    write_stdout(&line)
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    std::iter::once(&header)
        .chain(rows)
        .map(|row| render_row(row, &widths))
        .collect()
}

fn render_row(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (cell, width) in row.iter().zip(widths) {
        line.push_str(&format!("{cell:<width$}  "));
    }
    let mut line = line.trim_end().to_string();
    line.push('\n');
    line
}

/// `label: value` lines with the values aligned.
pub fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(label, _)| label.chars().count() + 1)
        .max()
        .unwrap_or(0);
    fields
        .iter()
        .map(|(label, value)| format!("{:<width$} {value}\n", format!("{label}:")))
        .collect()
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// How long ago `unix_secs` was, roughly: `42s ago`, `5m ago`, `3h ago`, `2d ago`; `-` when unset.
pub fn age(unix_secs: i64, now_secs: i64) -> String {
    if unix_secs <= 0 {
        return "-".to_string();
    }
    format!("{} ago", duration((now_secs - unix_secs).max(0) as u64))
}

/// A duration in the largest whole unit: `42s`, `5m`, `3h`, `2d`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// How long until `unix_secs`, roughly: `in 14m`, `in 2h`; `due` once it has passed; `-` when
/// unset.
pub fn until(unix_secs: i64, now_secs: i64) -> String {
    if unix_secs <= 0 {
        return "-".to_string();
    }
    if unix_secs <= now_secs {
        return "due".to_string();
    }
    format!("in {}", duration((unix_secs - now_secs) as u64))
}

/// A duration exactly, in the syntax `--every` accepts: `45s`, `15m`, `1h30m`, `1d2h`.
pub fn interval(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            text.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    text
}

/// A byte count in binary units: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A Unix time in milliseconds as an RFC 3339 UTC timestamp to the second
/// (`2023-11-14T22:13:20Z`); `-` when unset.
pub fn rfc3339(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "-".to_string();
    }
    let secs = unix_ms.div_euclid(1000);
    let (days, secs_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Seconds from milliseconds, to a tenth: `12.3 s`.
pub fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// `-` for values that mean "none" (zero, empty), the value itself otherwise.
pub fn or_dash(value: impl ToString, is_none: bool) -> String {
    if is_none {
        "-".to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_aligned_without_trailing_blanks() {
        let rows = vec![
            vec!["web".to_string(), "running".to_string()],
            vec!["database".to_string(), "-".to_string()],
        ];
        assert_eq!(
            render_table(&["ID", "STATUS"], &rows),
            "ID        STATUS\nweb       running\ndatabase  -\n"
        );
    }

    #[test]
    fn empty_table_is_its_header() {
        assert_eq!(render_table(&["ID", "STATUS"], &[]), "ID  STATUS\n");
    }

    #[test]
    fn fields_are_aligned() {
        let fields = [("id", "web".to_string()), ("exit code", "0".to_string())];
        assert_eq!(render_fields(&fields), "id:        web\nexit code: 0\n");
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 * 1024 * 1024), "12.0 MiB");
        assert_eq!(age(0, 100), "-");
        assert_eq!(age(100, 142), "42s ago");
        assert_eq!(age(100, 100 + 7200), "2h ago");
        assert_eq!(duration(3 * 86_400 + 5), "3d");
        assert_eq!(until(0, 100), "-");
        assert_eq!(until(100, 100), "due");
        assert_eq!(until(100 + 14 * 60, 100), "in 14m");
        assert_eq!(interval(0), "0s");
        assert_eq!(interval(45), "45s");
        assert_eq!(interval(5400), "1h30m");
        assert_eq!(interval(86_400 + 7200 + 1), "1d2h1s");
        assert_eq!(seconds(12_345), "12.3 s");
        assert_eq!(seconds(0), "0.0 s");
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(rfc3339(0), "-");
        assert_eq!(rfc3339(1), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(951_868_799_000), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400_000), "2100-03-01T00:00:00Z");
    }
}
