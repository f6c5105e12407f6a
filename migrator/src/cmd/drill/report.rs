//! A drill report as it is shown: the steps table with the RTO, RPO and verdict lines on the
//! terminal, one JSON object for scripts, a row of `drill ls`, and the Markdown file kept as the
//! record of a run.

use std::path::PathBuf;

use anyhow::anyhow;
use proto::v1 as api;
use serde::Serialize;

use crate::output::{self, age, or_dash, render_table, rfc3339, seconds, Row};

/// A drill run's report, with the API's fields and snake_case keys.
#[derive(Debug, Serialize)]
pub struct ReportView {
    pub drill_id: String,
    pub name: String,
    pub passed: bool,
    pub dry_run: bool,
    pub coordinator: String,
    pub started_unix_ms: i64,
    pub finished_unix_ms: i64,
    /// Why it did not pass, one line.
    pub error: String,
    pub rto_measured: bool,
    pub rto_ms: u64,
    pub rto_objective_secs: u64,
    pub rto_met: bool,
    pub rpo_measured: bool,
    pub rpo_ms: u64,
    pub rpo_objective_secs: u64,
    pub rpo_met: bool,
    pub steps: Vec<StepView>,
}

/// One step's result.
#[derive(Debug, Serialize)]
pub struct StepView {
    /// Position in the drill's steps (or cleanup steps), from 0.
    pub index: u32,
    pub cleanup: bool,
    pub action: String,
    pub target: String,
    /// passed | failed | skipped | planned (dry run)
    pub outcome: String,
    pub detail: String,
    pub started_unix_ms: i64,
    pub finished_unix_ms: i64,
}

impl From<api::DrillStepResult> for StepView {
    fn from(s: api::DrillStepResult) -> Self {
        Self {
            index: s.index,
            cleanup: s.cleanup,
            action: s.action,
            target: s.target,
            outcome: s.outcome,
            detail: s.detail,
            started_unix_ms: s.started_unix_ms,
            finished_unix_ms: s.finished_unix_ms,
        }
    }
}

impl From<api::DrillReport> for ReportView {
    fn from(r: api::DrillReport) -> Self {
        Self {
            drill_id: r.drill_id,
            name: r.name,
            passed: r.passed,
            dry_run: r.dry_run,
            coordinator: r.coordinator,
            started_unix_ms: r.started_unix_ms,
            finished_unix_ms: r.finished_unix_ms,
            error: r.error,
            rto_measured: r.rto_measured,
            rto_ms: r.rto_ms,
            rto_objective_secs: r.rto_objective_secs,
            rto_met: r.rto_met,
            rpo_measured: r.rpo_measured,
            rpo_ms: r.rpo_ms,
            rpo_objective_secs: r.rpo_objective_secs,
            rpo_met: r.rpo_met,
            steps: r.steps.into_iter().map(StepView::from).collect(),
        }
    }
}

/// A recovery objective and what the drill measured of it.
struct Objective {
    /// RTO or RPO.
    name: &'static str,
    measured: bool,
    ms: u64,
    objective_secs: u64,
    met: bool,
}

impl Objective {
    /// `RTO 12.3 s (objective 60 s): met`, `RTO 12.3 s (no objective)`,
    /// `RTO not measured (objective 60 s)`, `RTO not measured`.
    fn line(&self) -> String {
        let value = if self.measured {
            seconds(self.ms)
        } else {
            "not measured".to_string()
        };
        match (self.objective_secs, self.measured) {
            (0, true) => format!("{} {value} (no objective)", self.name),
            (0, false) => format!("{} {value}", self.name),
            (objective, true) => {
                let met = if self.met { "met" } else { "not met" };
                format!("{} {value} (objective {objective} s): {met}", self.name)
            }
            (objective, false) => format!("{} {value} (objective {objective} s)", self.name),
        }
    }

    /// `drill ls`'s cell: `12.3 s`, `12.3 s (missed)` or `-`.
    fn cell(&self) -> String {
        if !self.measured {
            return "-".to_string();
        }
        if self.objective_secs > 0 && !self.met {
            return format!("{} (missed)", seconds(self.ms));
        }
        seconds(self.ms)
    }

    /// The Markdown row: objective, measured, met.
    fn markdown_row(&self) -> [String; 3] {
        let objective = match self.objective_secs {
            0 => format!("{} (no objective)", self.name),
            secs => format!("{} <= {secs} s", self.name),
        };
        let measured = if self.measured {
            seconds(self.ms)
        } else {
            "not measured".to_string()
        };
        let met = match (self.objective_secs, self.measured, self.met) {
            (0, _, _) => "-",
            (_, false, _) => "no (not measured)",
            (_, true, true) => "yes",
            (_, true, false) => "no",
        };
        [objective, measured, met.to_string()]
    }
}

const STEP_HEADERS: &[&str] = &["#", "ACTION", "TARGET", "OUTCOME", "TIME (ms)", "DETAIL"];

impl StepView {
    /// `3`, or `cleanup 1` for a cleanup step (counted from 1, like the file's steps).
    fn number(&self) -> String {
        if self.cleanup {
            format!("cleanup {}", self.index + 1)
        } else {
            (self.index + 1).to_string()
        }
    }

    /// Milliseconds the step took, `-` when it did not run.
    fn time_ms(&self) -> String {
        if self.started_unix_ms <= 0 || self.finished_unix_ms < self.started_unix_ms {
            return "-".to_string();
        }
        (self.finished_unix_ms - self.started_unix_ms).to_string()
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.number(),
            self.action.clone(),
            or_dash(&self.target, self.target.is_empty()),
            self.outcome.clone(),
            self.time_ms(),
            or_dash(&self.detail, self.detail.is_empty()),
        ]
    }
}

impl ReportView {
    fn objectives(&self) -> [Objective; 2] {
        [
            Objective {
                name: "RTO",
                measured: self.rto_measured,
                ms: self.rto_ms,
                objective_secs: self.rto_objective_secs,
                met: self.rto_met,
            },
            Objective {
                name: "RPO",
                measured: self.rpo_measured,
                ms: self.rpo_ms,
                objective_secs: self.rpo_objective_secs,
                met: self.rpo_met,
            },
        ]
    }

    /// `PASSED`, `PASSED (dry run: nothing was changed)` or `FAILED: <error>`.
    pub fn verdict(&self) -> String {
        match (self.passed, self.dry_run, self.error.trim()) {
            (true, false, _) => "PASSED".to_string(),
            (true, true, _) => "PASSED (dry run: nothing was changed)".to_string(),
            (false, _, "") => "FAILED".to_string(),
            (false, _, error) => format!("FAILED: {error}"),
        }
    }

    /// What `drill run` and `drill show` print: a title line, the steps table, the RTO and RPO
    /// lines and the verdict.
    pub fn text(&self) -> String {
        let mut text = format!(
            "drill {} ({}), coordinated by {}, started {}\n",
            self.name,
            self.drill_id,
            or_dash(&self.coordinator, self.coordinator.is_empty()),
            rfc3339(self.started_unix_ms)
        );
        let rows: Vec<Vec<String>> = self.steps.iter().map(StepView::cells).collect();
        text.push_str(&render_table(STEP_HEADERS, &rows));
        for objective in self.objectives() {
            text.push_str(&objective.line());
            text.push('\n');
        }
        text.push_str(&self.verdict());
        text.push('\n');
        text
    }

    /// The Markdown record of the run.
    pub fn markdown(&self) -> String {
        let mut md = format!("# Drill report: {}\n\n", markdown_text(&self.name));
        let verdict = match (self.passed, self.error.trim()) {
            (true, _) | (false, "") => format!("**{}**", self.verdict()),
            (false, error) => format!("**FAILED**: {}", markdown_text(error)),
        };
        let items = [
            ("Drill id", self.drill_id.clone()),
            ("Coordinator", self.coordinator.clone()),
            ("Started", rfc3339(self.started_unix_ms)),
            ("Finished", rfc3339(self.finished_unix_ms)),
            ("Verdict", verdict),
        ];
        for (label, value) in items {
            md.push_str(&format!("- **{label}:** {value}\n"));
        }
        if self.dry_run {
            md.push_str("- **Dry run:** the plan only; nothing was changed\n");
        }
        md.push_str("\n## Objectives\n\n");
        let objectives: Vec<Vec<String>> = self
            .objectives()
            .iter()
            .map(|o| o.markdown_row().to_vec())
            .collect();
        md.push_str(&markdown_table(
            &["Objective", "Measured", "Met"],
            &objectives,
        ));
        md.push_str("\n## Steps\n\n");
        let steps: Vec<Vec<String>> = self.steps.iter().map(StepView::cells).collect();
        let headers = ["#", "Action", "Target", "Outcome", "Time (ms)", "Detail"];
        md.push_str(&markdown_table(&headers, &steps));
        md
    }

    /// Where `drill run` writes the Markdown report unless told: `drill-<ID>.md` here.
    pub fn default_report_path(&self) -> PathBuf {
        let id: String = self
            .drill_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let id = if id.is_empty() { "dry-run".into() } else { id };
        PathBuf::from(format!("drill-{id}.md"))
    }

    /// Ok when the drill passed; otherwise the error the command exits 1 with.
    pub fn outcome(&self) -> anyhow::Result<()> {
        if self.passed {
            return Ok(());
        }
        match self.error.trim() {
            "" => Err(anyhow!("drill {} did not pass", self.drill_id)),
            error => Err(anyhow!("drill {} failed: {error}", self.drill_id)),
        }
    }

    fn result_cell(&self) -> String {
        match (self.passed, self.dry_run) {
            (true, false) => "PASSED".to_string(),
            (true, true) => "PASSED (dry run)".to_string(),
            (false, _) => "FAILED".to_string(),
        }
    }

    fn duration_cell(&self) -> String {
        if self.started_unix_ms <= 0 || self.finished_unix_ms < self.started_unix_ms {
            return "-".to_string();
        }
        let ms = (self.finished_unix_ms - self.started_unix_ms).unsigned_abs();
        seconds(ms)
    }
}

/// A row of `drill ls`.
impl Row for ReportView {
    const HEADERS: &'static [&'static str] =
        &["ID", "NAME", "STARTED", "DURATION", "RESULT", "RTO", "RPO"];

    fn cells(&self) -> Vec<String> {
        let [rto, rpo] = self.objectives();
        vec![
            self.drill_id.clone(),
            self.name.clone(),
            age(self.started_unix_ms / 1000, output::now_unix()),
            self.duration_cell(),
            self.result_cell(),
            rto.cell(),
            rpo.cell(),
        ]
    }
}

/// A GitHub-flavoured Markdown table.
fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let mut table = line(headers.iter().map(|h| markdown_text(h)).collect());
    table.push_str(&line(headers.iter().map(|_| "---".to_string()).collect()));
    for row in rows {
        table.push_str(&line(row.iter().map(|c| markdown_text(c)).collect()));
    }
    table
}

/// Text that stays one table cell: pipes escaped, line breaks as spaces.
fn markdown_text(text: &str) -> String {
    text.replace('|', "\\|")
        .split(['\r', '\n'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn step(
        index: u32,
        cleanup: bool,
        action: &str,
        outcome: &str,
        ms: i64,
    ) -> api::DrillStepResult {
        api::DrillStepResult {
            index,
            cleanup,
            action: action.into(),
            target: if action == "fail-host" || action == "recover-host" {
                "host1".into()
            } else {
                "web".into()
            },
            outcome: outcome.into(),
            detail: if outcome == "failed" {
                "web not healthy after 30 s: connect refused".into()
            } else {
                String::new()
            },
            started_unix_ms: if outcome == "skipped" { 0 } else { T0 },
            finished_unix_ms: if outcome == "skipped" { 0 } else { T0 + ms },
        }
    }

    fn passed() -> ReportView {
        ReportView::from(api::DrillReport {
            drill_id: "op-7".into(),
            name: "host loss".into(),
            passed: true,
            coordinator: "host2".into(),
            started_unix_ms: T0,
            finished_unix_ms: T0 + 14_000,
            steps: vec![
                step(0, false, "fail-host", "passed", 40),
                step(1, false, "wait-healthy", "passed", 12_300),
                step(0, true, "recover-host", "passed", 55),
            ],
            rto_measured: true,
            rto_ms: 12_345,
            rto_objective_secs: 60,
            rto_met: true,
            rpo_measured: true,
            rpo_ms: 4_100,
            rpo_objective_secs: 0,
            rpo_met: true,
            ..Default::default()
        })
    }

    /// A run whose wait-healthy step failed: the RTO was not measured.
    fn failed() -> ReportView {
        let steps = [
            step(0, false, "fail-host", "passed", 40),
            step(1, false, "wait-healthy", "failed", 30_000),
            step(2, false, "assert", "skipped", 0),
            step(0, true, "recover-host", "passed", 55),
        ];
        ReportView {
            drill_id: "op-8".into(),
            passed: false,
            finished_unix_ms: T0 + 31_000,
            steps: steps.into_iter().map(StepView::from).collect(),
            rto_measured: false,
            rto_ms: 0,
            rto_met: false,
            rpo_measured: false,
            rpo_ms: 0,
            error: "step 2 (wait-healthy) failed: web not healthy | after 30 s; the RTO objective \
                    was not measured"
                .into(),
            ..passed()
        }
    }

    #[test]
    fn text_has_the_steps_table_objectives_and_verdict() {
        let text = passed().text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "drill host loss (op-7), coordinated by host2, started 2023-11-14T22:13:20Z"
        );
        let header: Vec<&str> = lines[1].split("  ").filter(|c| !c.is_empty()).collect();
        assert_eq!(
            header,
            ["#", "ACTION", "TARGET", "OUTCOME", "TIME (ms)", "DETAIL"]
        );
        assert!(
            lines[2].starts_with("1          fail-host     host1   passed   40 "),
            "{text}"
        );
        assert!(
            lines[4].starts_with("cleanup 1  recover-host  host1   passed   55 "),
            "{text}"
        );
        assert_eq!(lines[5], "RTO 12.3 s (objective 60 s): met");
        assert_eq!(lines[6], "RPO 4.1 s (no objective)");
        assert_eq!(lines[7], "PASSED");
        assert_eq!(lines.len(), 8);
    }

    #[test]
    fn failed_text_names_the_error_and_unmeasured_objectives() {
        let text = failed().text();
        let skipped = text.lines().find(|l| l.starts_with("3 ")).unwrap();
        let cells: Vec<&str> = skipped.split_whitespace().collect();
        assert_eq!(cells, ["3", "assert", "web", "skipped", "-", "-"]);
        assert!(
            text.contains("\nRTO not measured (objective 60 s)\nRPO not measured\n"),
            "{text}"
        );
        assert!(text.ends_with(
            "\nFAILED: step 2 (wait-healthy) failed: web not healthy | after 30 s; the RTO objective was not measured\n"
        ));
    }

    #[test]
    fn objective_lines() {
        let mut o = Objective {
            name: "RPO",
            measured: true,
            ms: 301_000,
            objective_secs: 300,
            met: false,
        };
        assert_eq!(o.line(), "RPO 301.0 s (objective 300 s): not met");
        assert_eq!(o.cell(), "301.0 s (missed)");
        assert_eq!(o.markdown_row(), ["RPO <= 300 s", "301.0 s", "no"]);
        o.met = true;
        assert_eq!(o.cell(), "301.0 s");
        o.measured = false;
        assert_eq!(o.cell(), "-");
        assert_eq!(
            o.markdown_row(),
            ["RPO <= 300 s", "not measured", "no (not measured)"]
        );
        o.objective_secs = 0;
        assert_eq!(o.line(), "RPO not measured");
        assert_eq!(
            o.markdown_row(),
            ["RPO (no objective)", "not measured", "-"]
        );
    }

    #[test]
    fn verdicts() {
        assert_eq!(passed().verdict(), "PASSED");
        let mut dry = passed();
        dry.dry_run = true;
        assert_eq!(dry.verdict(), "PASSED (dry run: nothing was changed)");
        let mut bare = failed();
        bare.error.clear();
        assert_eq!(bare.verdict(), "FAILED");
    }

    #[test]
    fn markdown_has_the_summary_objectives_and_steps() {
        let md = passed().markdown();
        assert!(md.starts_with("# Drill report: host loss\n\n"), "{md}");
        for item in [
            "- **Drill id:** op-7\n",
            "- **Coordinator:** host2\n",
            "- **Started:** 2023-11-14T22:13:20Z\n",
            "- **Finished:** 2023-11-14T22:13:34Z\n",
            "- **Verdict:** **PASSED**\n",
        ] {
            assert!(md.contains(item), "{item:?} in {md}");
        }
        assert!(
            md.contains(
                "## Objectives\n\n| Objective | Measured | Met |\n| --- | --- | --- |\n\
             | RTO <= 60 s | 12.3 s | yes |\n| RPO (no objective) | 4.1 s | - |\n"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "## Steps\n\n| # | Action | Target | Outcome | Time (ms) | Detail |\n\
             | --- | --- | --- | --- | --- | --- |\n\
             | 1 | fail-host | host1 | passed | 40 | - |\n\
             | 2 | wait-healthy | web | passed | 12300 | - |\n\
             | cleanup 1 | recover-host | host1 | passed | 55 | - |\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn markdown_of_a_failure_escapes_cells() {
        let md = failed().markdown();
        assert!(md.contains(
            "- **Verdict:** **FAILED**: step 2 (wait-healthy) failed: web not healthy \\| after 30 s;"
        ), "{md}");
        assert!(
            md.contains("| RTO <= 60 s | not measured | no (not measured) |"),
            "{md}"
        );
        assert!(md.contains(
            "| 2 | wait-healthy | web | failed | 30000 | web not healthy after 30 s: connect refused |"
        ), "{md}");
        assert!(
            md.contains("| 3 | assert | web | skipped | - | - |"),
            "{md}"
        );
        assert_eq!(markdown_text("a|b\nc"), "a\\|b c");
    }

    #[test]
    fn exit_code_follows_passed() {
        assert!(passed().outcome().is_ok());
        let err = failed().outcome().unwrap_err();
        assert!(err
            .to_string()
            .starts_with("drill op-8 failed: step 2 (wait-healthy) failed"));
        let mut bare = failed();
        bare.error.clear();
        assert_eq!(
            bare.outcome().unwrap_err().to_string(),
            "drill op-8 did not pass"
        );
    }

    #[test]
    fn ls_row() {
        let row = passed().cells();
        assert_eq!(row[0], "op-7");
        assert_eq!(row[3], "14.0 s");
        assert_eq!(row[4], "PASSED");
        assert_eq!(row[5], "12.3 s");
        assert_eq!(row[6], "4.1 s");
        let row = failed().cells();
        assert_eq!(row[4], "FAILED");
        assert_eq!((row[5].as_str(), row[6].as_str()), ("-", "-"));
    }

    #[test]
    fn default_report_path_is_safe() {
        assert_eq!(
            passed().default_report_path(),
            PathBuf::from("drill-op-7.md")
        );
        let mut odd = passed();
        odd.drill_id = "../x y".into();
        assert_eq!(odd.default_report_path(), PathBuf::from("drill----x-y.md"));
        odd.drill_id.clear();
        assert_eq!(odd.default_report_path(), PathBuf::from("drill-dry-run.md"));
    }

    #[test]
    fn json_is_the_whole_report() {
        let json = serde_json::to_value(failed()).unwrap();
        assert_eq!(json["drill_id"], "op-8");
        assert_eq!(json["passed"], false);
        assert_eq!(json["rto_objective_secs"], 60);
        assert_eq!(json["steps"][3]["cleanup"], true);
        assert_eq!(json["steps"][1]["outcome"], "failed");
    }
}
