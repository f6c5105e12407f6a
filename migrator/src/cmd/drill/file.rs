//! Drill files: the TOML that describes a failover drill, parsed into the API's [`Drill`] with
//! the line of every key kept, so that each problem — found here, or by the agent's
//! `ValidateDrill` — is reported as `FILE:LINE: ...`.
//!
//! # Format
//!
//! ```toml
//! name = "host loss"
//! rto_secs = 60        # optional objectives, in seconds
//! rpo_secs = 300
//!
//! [[step]]
//! action = "backup"
//! container = "web"
//! to = "host2"
//!
//! [[step]]
//! action = "fail-host"
//! host = "host1"
//!
//! [[step]]
//! action = "restore-latest"
//! container = "web"
//! host = "host2"
//!
//! [[step]]
//! action = "wait-healthy"
//! container = "web"
//! timeout_secs = 30
//! probe = { tcp_port = 8000 }
//!
//! [[step]]
//! action = "assert"
//! container = "web"
//! exec = ["sh", "-c", "test -e /tmp/count"]
//!
//! [[cleanup]]
//! action = "recover-host"
//! host = "host1"
//! ```
//!
//! Top-level keys (any other key is an error):
//!
//! | Key | Type | Meaning |
//! |---|---|---|
//! | `name` | string, required, not empty | the drill's name, shown in reports |
//! | `rto_secs` | integer >= 0, optional | recovery time objective: the longest acceptable time from the start of the `fail-host` step until a later `wait-healthy` passes; absent or 0 = none |
//! | `rpo_secs` | integer >= 0, optional | recovery point objective: the oldest acceptable restored state (the start of `fail-host` minus the time the restored backup was taken); absent or 0 = none |
//! | `[[step]]` | table, one per step, at least one | the steps, run in file order; the first one that fails stops the drill |
//! | `[[cleanup]]` | table, one per step, optional | steps run after a failed drill, each tried even if an earlier one fails; after a drill that passed, its `recover-host` steps still run |
//!
//! Every step has an `action` (a string) and exactly the fields that action takes: a missing
//! required field, a field that does not apply to the action (`to` on `sleep`) and an unknown
//! field are errors.
//!
//! | Action | Required | Optional | What it does |
//! |---|---|---|---|
//! | `move` | `container`, `to` | | live-migrates the container from wherever it runs to host `to` |
//! | `move-back` | `container` | | moves it back to the host it was on before this drill's last move of it |
//! | `backup` | `container` | `to` | backs it up on the host it runs on; the backup is replicated to host `to`, or as the container's schedule says |
//! | `fail-host` | `host` | | the host "dies": its containers are killed and kept down and its agent stops answering peers, until `recover-host` |
//! | `recover-host` | `host` | | ends `fail-host`; the containers the failure killed are removed there (they were restored elsewhere) |
//! | `restore-latest` | `container`, `host` | | restores the newest backup of the container that `host` holds, on `host` |
//! | `wait-healthy` | `container`, `probe` | `timeout_secs` (default 60) | probes until the probe passes; fails after the timeout |
//! | `assert` | `container`, `exec` | `exit_code` (default 0), `stdout_contains` | runs the command in the container; passes when it exits with `exit_code` and, if given, its stdout contains `stdout_contains` |
//! | `sleep` | `secs` | | waits that many seconds |
//!
//! Field types:
//!
//! - `container`, `host`, `to`: non-empty strings (a container id; host names as in the
//!   coordinating agent's config: itself or one of its `[peers]`).
//! - `timeout_secs`, `secs`: whole numbers of seconds, at least 1.
//! - `exec`: a non-empty array of strings, the command and its arguments, run without a shell
//!   (`["sh", "-c", "..."]` for one).
//! - `exit_code`: a whole number from 0 to 255.
//! - `stdout_contains`: a non-empty string.
//! - `probe`: a table with exactly one kind of probe:
//!   `{ exec = ["cat", "/tmp/ready"] }` runs the command in the container and passes when it exits
//!   0; `{ tcp_port = 8000 }` passes when a TCP connect from the coordinating agent to the
//!   container's address on that port succeeds; `{ http_port = 8080, http_path = "/health" }`
//!   passes when a GET of that path (default `/`, must start with `/`) on the container's address
//!   answers 2xx. Ports are 1 to 65535. It may also be written as a `[step.probe]` sub-table.
//!
//! # Problems
//!
//! Each problem is one line, `FILE:LINE: PLACE: field FIELD: MESSAGE`, where PLACE is
//! `step N (ACTION)` or `cleanup N (ACTION)` (N counts from 1 in file order) and is left out for
//! the top-level keys. The line is that of the field at fault, or of the step's `[[step]]` header
//! when the field is missing. A TOML syntax error is the single problem
//! `FILE:LINE: TOML syntax: ...`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use proto::v1::{Drill, DrillProblem, DrillStep, Probe};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// How long `wait-healthy` waits when the step gives no `timeout_secs`.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// An action and the fields (besides `action`) it needs and may have.
struct Action {
    name: &'static str,
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

/// Every action, in the order the docs list them.
const ACTIONS: &[Action] = &[
    Action {
        name: "move",
        required: &["container", "to"],
        optional: &[],
    },
    Action {
        name: "move-back",
        required: &["container"],
        optional: &[],
    },
    Action {
        name: "backup",
        required: &["container"],
        optional: &["to"],
    },
    Action {
        name: "fail-host",
        required: &["host"],
        optional: &[],
    },
    Action {
        name: "recover-host",
        required: &["host"],
        optional: &[],
    },
    Action {
        name: "restore-latest",
        required: &["container", "host"],
        optional: &[],
    },
    Action {
        name: "wait-healthy",
        required: &["container", "probe"],
        optional: &["timeout_secs"],
    },
    Action {
        name: "assert",
        required: &["container", "exec"],
        optional: &["exit_code", "stdout_contains"],
    },
    Action {
        name: "sleep",
        required: &["secs"],
        optional: &[],
    },
];

/// Every field some action takes.
const STEP_FIELDS: &[&str] = &[
    "container",
    "host",
    "to",
    "probe",
    "timeout_secs",
    "exec",
    "exit_code",
    "stdout_contains",
    "secs",
];

const TOP_KEYS: &[&str] = &["name", "rto_secs", "rpo_secs", "step", "cleanup"];

const PROBE_KINDS: &str = "exec, tcp_port, http_port";

/// A parsed drill file: the drill to send to the agent, and where each of its keys is.
#[derive(Debug)]
pub struct DrillFile {
    pub drill: Drill,
    pub lines: Lines,
}

/// The 1-based line of every key of a drill file.
#[derive(Debug, Default)]
pub struct Lines {
    /// Top-level keys (for `[[step]]`, its first header).
    keys: BTreeMap<String, usize>,
    steps: Vec<StepLines>,
    cleanup: Vec<StepLines>,
}

#[derive(Debug, Default)]
struct StepLines {
    /// The `[[step]]` header (or the inline table).
    header: usize,
    /// The step's keys; a probe's own keys as `probe.KEY`.
    fields: BTreeMap<String, usize>,
}

impl Lines {
    /// The line of `field` of step `step` (of the cleanup steps when `cleanup`; -1: the drill
    /// itself), or of the step's header when the file does not have that field.
    pub fn of(&self, step: i32, cleanup: bool, field: &str) -> usize {
        let Ok(index) = usize::try_from(step) else {
            // The API calls the steps `steps`; the file writes `[[step]]`.
            let key = if field == "steps" { "step" } else { field };
            return self.keys.get(key).copied().unwrap_or(1);
        };
        let (list, key) = if cleanup {
            (&self.cleanup, "cleanup")
        } else {
            (&self.steps, "step")
        };
        let Some(step) = list.get(index) else {
            return self.keys.get(key).copied().unwrap_or(1);
        };
        let head = field.split_once('.').map_or(field, |(head, _)| head);
        [
            field.to_string(),
            format!("probe.{field}"),
            head.to_string(),
        ]
        .iter()
        .find_map(|key| step.fields.get(key))
        .copied()
        .unwrap_or(step.header)
    }
}

/// Where in a drill a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The top-level keys.
    Drill,
    /// A step (counted from 0, as in the API), with its action when it has a known one.
    Step {
        index: usize,
        cleanup: bool,
        action: Option<String>,
    },
}

/// One problem with a drill file, on its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub place: Place,
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    /// `FILE:LINE: step 3 (wait-healthy): field probe: ...`
    pub fn render(&self, file: &Path) -> String {
        format!("{}:{}: {self}", file.display(), self.line)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Place::Step {
            index,
            cleanup,
            action,
        } = &self.place
        {
            let list = if *cleanup { "cleanup" } else { "step" };
            write!(f, "{list} {}", index + 1)?;
            if let Some(action) = action {
                write!(f, " ({action})")?;
            }
            f.write_str(": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field {field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl DrillFile {
    /// The agent's problems with this drill, each on the line of its field, in line order.
    pub fn place(&self, problems: Vec<DrillProblem>) -> Vec<Problem> {
        let mut placed: Vec<Problem> = problems
            .into_iter()
            .map(|p| {
                let line = self.lines.of(p.step, p.cleanup, &p.field);
                let place = match usize::try_from(p.step) {
                    Err(_) => Place::Drill,
                    Ok(index) => Place::Step {
                        index,
                        cleanup: p.cleanup,
                        action: self.action_of(index, p.cleanup),
                    },
                };
                Problem {
                    line,
                    place,
                    field: (!p.field.is_empty()).then_some(p.field),
                    message: p.message,
                }
            })
            .collect();
        placed.sort_by_key(|p| p.line);
        placed
    }

    fn action_of(&self, index: usize, cleanup: bool) -> Option<String> {
        let steps = if cleanup {
            &self.drill.cleanup
        } else {
            &self.drill.steps
        };
        steps.get(index).map(|s| s.action.clone())
    }
}

/// Parses a drill file. On failure, every problem found, in line order.
pub fn parse(text: &str) -> Result<DrillFile, Vec<Problem>> {
    let doc = DeTable::parse(text).map_err(|err| vec![syntax(text, &err)])?;
    let mut parser = Parser {
        text,
        problems: Vec::new(),
    };
    let mut drill = Drill::default();
    let mut lines = Lines::default();
    for (key, value) in doc.get_ref() {
        let name: &str = key.get_ref();
        lines.keys.insert(name.to_string(), parser.line(key.span()));
        let field = Field {
            place: &Place::Drill,
            name,
        };
        match name {
            "name" => drill.name = parser.string(value, field).unwrap_or_default(),
            "rto_secs" | "rpo_secs" => {
                let secs = parser.whole(value, field, 0, u64::MAX).unwrap_or_default();
                if name == "rto_secs" {
                    drill.rto_secs = secs;
                } else {
                    drill.rpo_secs = secs;
                }
            }
            "step" | "cleanup" => {
                let cleanup = name == "cleanup";
                let Some((steps, step_lines)) = parser.steps(value, cleanup) else {
                    continue;
                };
                if cleanup {
                    drill.cleanup = steps;
                    lines.cleanup = step_lines;
                } else {
                    if steps.is_empty() {
                        parser.problem(value.span(), field, no_steps());
                    }
                    drill.steps = steps;
                    lines.steps = step_lines;
                }
            }
            other => parser.problem(
                key.span(),
                Field {
                    place: &Place::Drill,
                    name: "",
                },
                format!("unknown key {other}; a drill has {}", TOP_KEYS.join(", ")),
            ),
        }
    }
    if !lines.keys.contains_key("name") {
        parser.problem_at(
            1,
            &Place::Drill,
            Some("name"),
            "missing: give the drill a name",
        );
    }
    if !lines.keys.contains_key("step") {
        parser.problem_at(1, &Place::Drill, None, no_steps());
    }
    if parser.problems.is_empty() {
        Ok(DrillFile { drill, lines })
    } else {
        parser.problems.sort_by_key(|p| p.line);
        Err(parser.problems)
    }
}

fn no_steps() -> String {
    "the drill has no steps: add at least one [[step]]".to_string()
}

/// A TOML syntax error as the file's only problem.
fn syntax(text: &str, err: &toml::de::Error) -> Problem {
    let start = err.span().map_or(0, |span| span.start).min(text.len());
    let line = line_of(text, start);
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    let message: Vec<&str> = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Problem {
        line,
        place: Place::Drill,
        field: None,
        message: format!("TOML syntax: {} (column {column})", message.join("; ")),
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The field a value belongs to, for naming it in problems.
#[derive(Clone, Copy)]
struct Field<'a> {
    place: &'a Place,
    /// Empty for a problem of the place as a whole.
    name: &'a str,
}

/// Collects the problems while walking the document.
struct Parser<'t> {
    text: &'t str,
    problems: Vec<Problem>,
}

type Value<'i> = Spanned<DeValue<'i>>;

impl Parser<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    fn problem(&mut self, span: Range<usize>, field: Field<'_>, message: impl Into<String>) {
        let line = self.line(span);
        let name = (!field.name.is_empty()).then_some(field.name);
        self.problem_at(line, field.place, name, message);
    }

    fn problem_at(
        &mut self,
        line: usize,
        place: &Place,
        field: Option<&str>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            line,
            place: place.clone(),
            field: field.map(str::to_string),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, value: &Value<'_>, field: Field<'_>, expected: &str) {
        let found = value.get_ref().type_str();
        self.problem(
            value.span(),
            field,
            format!("expected {expected}, found {found}"),
        );
    }

    /// A non-empty string.
    fn string(&mut self, value: &Value<'_>, field: Field<'_>) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) if s.is_empty() => {
                self.problem(value.span(), field, "must not be empty");
                None
            }
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(value, field, "a string");
                None
            }
        }
    }

    /// A whole number from `min` to `max`.
    fn whole(&mut self, value: &Value<'_>, field: Field<'_>, min: u64, max: u64) -> Option<u64> {
        let DeValue::Integer(integer) = value.get_ref() else {
            self.wrong_type(value, field, "a whole number");
            return None;
        };
        let message = match u64::from_str_radix(integer.as_str(), integer.radix()) {
            Ok(n) if (min..=max).contains(&n) => return Some(n),
            Ok(n) if n < min => format!("must be at least {min}"),
            Err(_) if integer.as_str().starts_with('-') => format!("must be at least {min}"),
            Ok(_) | Err(_) => format!("must be at most {max}"),
        };
        self.problem(value.span(), field, message);
        None
    }

    /// A command and its arguments: a non-empty array of strings.
    fn command(&mut self, value: &Value<'_>, field: Field<'_>) -> Option<Vec<String>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(
                value,
                field,
                "an array of strings like [\"cat\", \"/tmp/ready\"]",
            );
            return None;
        };
        if items.is_empty() {
            self.problem(
                value.span(),
                field,
                "must name a command: the array is empty",
            );
            return None;
        }
        let mut command = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => command.push(s.to_string()),
                _ => self.wrong_type(item, field, "strings in the array"),
            }
        }
        if command.first().is_some_and(String::is_empty) {
            self.problem(value.span(), field, "the command name must not be empty");
            return None;
        }
        (command.len() == items.len()).then_some(command)
    }

    /// `[[step]]` or `[[cleanup]]`: a list of tables (`None` when it is not a list at all).
    fn steps(
        &mut self,
        value: &Value<'_>,
        cleanup: bool,
    ) -> Option<(Vec<DrillStep>, Vec<StepLines>)> {
        let key = if cleanup { "cleanup" } else { "step" };
        let mut steps = Vec::new();
        let mut lines = Vec::new();
        let DeValue::Array(items) = value.get_ref() else {
            let field = Field {
                place: &Place::Drill,
                name: key,
            };
            let expected = format!("tables written [[{key}]]");
            self.wrong_type(value, field, &expected);
            return None;
        };
        for (index, item) in items.iter().enumerate() {
            let header = self.line(item.span());
            match item.get_ref() {
                DeValue::Table(table) => {
                    let (step, step_lines) = self.step(table, index, cleanup, header);
                    steps.push(step);
                    lines.push(step_lines);
                }
                _ => {
                    let place = Place::Step {
                        index,
                        cleanup,
                        action: None,
                    };
                    let field = Field {
                        place: &place,
                        name: "",
                    };
                    self.wrong_type(item, field, "a table");
                    steps.push(DrillStep::default());
                    lines.push(StepLines {
                        header,
                        fields: BTreeMap::new(),
                    });
                }
            }
        }
        Some((steps, lines))
    }

    /// One step's table; `header` is its line.
    fn step(
        &mut self,
        table: &DeTable<'_>,
        index: usize,
        cleanup: bool,
        header: usize,
    ) -> (DrillStep, StepLines) {
        let mut lines = StepLines {
            header,
            fields: BTreeMap::new(),
        };
        for (key, value) in table {
            lines
                .fields
                .insert(key.get_ref().to_string(), self.line(key.span()));
            if let (DeValue::Table(probe), "probe") = (value.get_ref(), key.get_ref().as_ref()) {
                for probe_key in probe.keys() {
                    let line = self.line(probe_key.span());
                    lines
                        .fields
                        .insert(format!("probe.{}", probe_key.get_ref()), line);
                }
            }
        }
        let mut step = DrillStep::default();
        let mut place = Place::Step {
            index,
            cleanup,
            action: None,
        };
        let action = self.action(table, &place, header);
        if let Some(action) = action {
            step.action = action.name.to_string();
            place = Place::Step {
                index,
                cleanup,
                action: Some(step.action.clone()),
            };
        }
        for (key, value) in table {
            let name: &str = key.get_ref();
            let field = Field {
                place: &place,
                name,
            };
            if name == "action" {
                continue;
            }
            if !STEP_FIELDS.contains(&name) {
                let message = match action {
                    Some(action) => format!("unknown field; {}", takes(action)),
                    None => format!(
                        "unknown field; steps have action and {}",
                        STEP_FIELDS.join(", ")
                    ),
                };
                self.problem(key.span(), field, message);
                continue;
            }
            let Some(action) = action else {
                // Which fields apply depends on the action, and it has a problem of its own.
                continue;
            };
            if !action.required.contains(&name) && !action.optional.contains(&name) {
                let message = format!("does not apply to {}; {}", action.name, takes(action));
                self.problem(key.span(), field, message);
                continue;
            }
            self.step_field(&mut step, value, field);
        }
        if let Some(action) = action {
            for required in action.required {
                if !table.contains_key(*required) {
                    let message = format!("missing; {}", takes(action));
                    self.problem_at(header, &place, Some(required), message);
                }
            }
            if action.name == "wait-healthy" && step.timeout_secs == 0 {
                step.timeout_secs = DEFAULT_TIMEOUT_SECS;
            }
        }
        (step, lines)
    }

    /// The step's action, when it names a known one.
    fn action(
        &mut self,
        table: &DeTable<'_>,
        place: &Place,
        header: usize,
    ) -> Option<&'static Action> {
        let field = Field {
            place,
            name: "action",
        };
        let Some(value) = table.get("action") else {
            self.problem_at(
                header,
                place,
                Some("action"),
                format!("missing; one of {}", action_names()),
            );
            return None;
        };
        let name = self.string(value, field)?;
        let action = ACTIONS.iter().find(|a| a.name == name);
        if action.is_none() {
            let message = format!("unknown action {name:?}; one of {}", action_names());
            self.problem(value.span(), field, message);
        }
        action
    }

    /// Checks one field the step's action takes and sets it on `step`.
    fn step_field(&mut self, step: &mut DrillStep, value: &Value<'_>, field: Field<'_>) {
        match field.name {
            "container" => step.container = self.string(value, field).unwrap_or_default(),
            "host" => step.host = self.string(value, field).unwrap_or_default(),
            "to" => step.to = self.string(value, field).unwrap_or_default(),
            "stdout_contains" => {
                step.stdout_contains = self.string(value, field).unwrap_or_default();
            }
            "timeout_secs" => {
                step.timeout_secs = self.whole(value, field, 1, u64::MAX).unwrap_or_default();
            }
            "secs" => step.secs = self.whole(value, field, 1, u64::MAX).unwrap_or_default(),
            "exit_code" => {
                let code = self.whole(value, field, 0, 255).unwrap_or_default();
                step.exit_code = i32::try_from(code).unwrap_or_default();
            }
            "exec" => step.exec = self.command(value, field).unwrap_or_default(),
            "probe" => step.probe = self.probe(value, field.place),
            other => unreachable!("{other} is not in STEP_FIELDS"),
        }
    }

    /// A probe table with exactly one kind.
    fn probe(&mut self, value: &Value<'_>, place: &Place) -> Option<Probe> {
        let field = Field {
            place,
            name: "probe",
        };
        let DeValue::Table(table) = value.get_ref() else {
            self.wrong_type(value, field, "a table like { tcp_port = 8000 }");
            return None;
        };
        let mut probe = Probe::default();
        let mut kinds = Vec::new();
        let mut ok = true;
        for (key, item) in table {
            let name: &str = key.get_ref();
            let qualified = format!("probe.{name}");
            let field = Field {
                place,
                name: &qualified,
            };
            let port = |parser: &mut Self| {
                let port = parser.whole(item, field, 1, u64::from(u16::MAX));
                port.and_then(|p| u32::try_from(p).ok())
            };
            let parsed = match name {
                "exec" => self.command(item, field).map(|c| probe.exec = c),
                "tcp_port" => port(self).map(|p| probe.tcp_port = p),
                "http_port" => port(self).map(|p| probe.http_port = p),
                "http_path" => match self.string(item, field) {
                    Some(path) if !path.starts_with('/') => {
                        self.problem(item.span(), field, "must start with /");
                        None
                    }
                    path => path.map(|p| probe.http_path = p),
                },
                _ => {
                    let message = format!(
                        "unknown probe key; a probe has exactly one of {PROBE_KINDS} (http_port with an optional http_path)"
                    );
                    self.problem(key.span(), field, message);
                    None
                }
            };
            ok &= parsed.is_some();
            if ["exec", "tcp_port", "http_port"].contains(&name) {
                kinds.push(name);
            }
        }
        if kinds.len() != 1 {
            let found = if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(" and ")
            };
            let message = format!("needs exactly one of {PROBE_KINDS}; found {found}");
            self.problem(value.span(), field, message);
            ok = false;
        }
        if let Some(path) = table.get("http_path") {
            if !table.contains_key("http_port") {
                let field = Field {
                    place,
                    name: "probe.http_path",
                };
                self.problem(path.span(), field, "only goes with http_port");
                ok = false;
            }
        }
        if probe.http_port > 0 && probe.http_path.is_empty() {
            probe.http_path = "/".to_string();
        }
        ok.then_some(probe)
    }
}

/// `move takes container, to`
fn takes(action: &Action) -> String {
    let mut fields: Vec<&str> = action.required.to_vec();
    fields.extend_from_slice(action.optional);
    format!("{} takes {}", action.name, fields.join(", "))
}

fn action_names() -> String {
    let names: Vec<&str> = ACTIONS.iter().map(|a| a.name).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(file) => panic!("accepted: {:?}", file.drill),
            Err(problems) => problems
                .iter()
                .map(|p| p.render(Path::new("d.toml")))
                .collect(),
        }
    }

    /// The only problem of `text`, rendered.
    #[track_caller]
    fn problem(text: &str) -> String {
        let problems = problems(text);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        problems.into_iter().next().unwrap()
    }

    const HOST_LOSS: &str = r#"name = "host loss"
rto_secs = 60        # optional objectives
rpo_secs = 900

[[step]]
action = "backup"
container = "web"
to = "host2"

[[step]]
action = "fail-host"
host = "host1"

[[step]]
action = "restore-latest"
container = "web"
host = "host2"

[[step]]
action = "wait-healthy"
container = "web"
timeout_secs = 30
probe = { tcp_port = 8000 }

[[step]]
action = "assert"
container = "web"
exec = ["cat", "/tmp/marker"]
stdout_contains = "before"

[[step]]
action = "move"
container = "web"
to = "host2"

[[step]]
action = "move-back"
container = "web"

[[step]]
action = "sleep"
secs = 2

[[step]]
action = "wait-healthy"
container = "web"
probe = { http_port = 8080 }

[[step]]
action = "assert"
container = "web"
exec = ["true"]
exit_code = 3

[[cleanup]]
action = "recover-host"
host = "host1"
"#;

    #[test]
    fn parses_every_action() {
        let file = parse(HOST_LOSS).unwrap();
        let d = &file.drill;
        assert_eq!(d.name, "host loss");
        assert_eq!((d.rto_secs, d.rpo_secs), (60, 900));
        let actions: Vec<&str> = d.steps.iter().map(|s| s.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "backup",
                "fail-host",
                "restore-latest",
                "wait-healthy",
                "assert",
                "move",
                "move-back",
                "sleep",
                "wait-healthy",
                "assert"
            ]
        );
        assert_eq!(d.steps[0].to, "host2");
        assert_eq!(d.steps[1].host, "host1");
        assert_eq!(d.steps[2].host, "host2");
        let wait = &d.steps[3];
        assert_eq!(wait.timeout_secs, 30);
        assert_eq!(wait.probe.as_ref().unwrap().tcp_port, 8000);
        assert_eq!(d.steps[4].exec, ["cat", "/tmp/marker"]);
        assert_eq!(d.steps[4].stdout_contains, "before");
        assert_eq!(d.steps[4].exit_code, 0);
        assert_eq!(d.steps[7].secs, 2);
        // Defaults are filled in, so the agent runs what the docs say.
        let http = &d.steps[8];
        assert_eq!(http.timeout_secs, DEFAULT_TIMEOUT_SECS);
        let probe = http.probe.as_ref().unwrap();
        assert_eq!((probe.http_port, probe.http_path.as_str()), (8080, "/"));
        assert_eq!(d.steps[9].exit_code, 3);
        assert_eq!(d.cleanup.len(), 1);
        assert_eq!(d.cleanup[0].action, "recover-host");
    }

    #[test]
    fn lines_map_fields_and_headers() {
        let file = parse(HOST_LOSS).unwrap();
        let lines = &file.lines;
        assert_eq!(lines.of(-1, false, "rto_secs"), 2);
        assert_eq!(lines.of(-1, false, "steps"), 5);
        assert_eq!(lines.of(-1, false, "nonsense"), 1);
        assert_eq!(lines.of(0, false, "to"), 8);
        assert_eq!(lines.of(3, false, "probe"), 23);
        assert_eq!(lines.of(3, false, "probe.tcp_port"), 23);
        assert_eq!(lines.of(3, false, "tcp_port"), 23);
        // An absent field: the step's header.
        assert_eq!(lines.of(1, false, "container"), 10);
        assert_eq!(lines.of(0, true, "host"), 57);
        assert_eq!(lines.of(0, true, "to"), 55);
        // A step the file does not have: its list's first header.
        assert_eq!(lines.of(99, false, "host"), 5);
    }

    #[test]
    fn agent_problems_land_on_their_lines() {
        let file = parse(HOST_LOSS).unwrap();
        let placed = file.place(vec![
            DrillProblem {
                step: 3,
                cleanup: false,
                field: "probe".into(),
                message: "a probe has exactly one of exec, tcp_port, http_port".into(),
            },
            DrillProblem {
                step: 0,
                cleanup: true,
                field: "host".into(),
                message: "unknown host host1".into(),
            },
            DrillProblem {
                step: -1,
                cleanup: false,
                field: "rto_secs".into(),
                message: "an RTO objective needs a fail-host step".into(),
            },
            DrillProblem {
                step: 1,
                cleanup: false,
                field: String::new(),
                message: "no".into(),
            },
        ]);
        let rendered: Vec<String> = placed
            .iter()
            .map(|p| p.render(Path::new("f.toml")))
            .collect();
        assert_eq!(
            rendered,
            [
                "f.toml:2: field rto_secs: an RTO objective needs a fail-host step",
                "f.toml:10: step 2 (fail-host): no",
                "f.toml:23: step 4 (wait-healthy): field probe: a probe has exactly one of exec, tcp_port, http_port",
                "f.toml:57: cleanup 1 (recover-host): field host: unknown host host1",
            ]
        );
    }

    #[test]
    fn syntax_errors_are_one_line_with_their_position() {
        let text = "name = \"x\"\n\n[[step]]\naction = \"sleep\nsecs = 1\n";
        let line = problem(text);
        assert!(line.starts_with("d.toml:4: TOML syntax: "), "{line}");
        assert!(!line.contains('\n'));
        assert!(line.contains("(column "), "{line}");
        let duplicate = "name = \"x\"\nname = \"y\"\n";
        assert!(problem(duplicate).starts_with("d.toml:2: TOML syntax: "));
    }

    #[test]
    fn unknown_top_level_key() {
        let text = "name = \"x\"\nrto = 60\n[[step]]\naction = \"sleep\"\nsecs = 1\n";
        assert_eq!(
            problem(text),
            "d.toml:2: unknown key rto; a drill has name, rto_secs, rpo_secs, step, cleanup"
        );
    }

    #[test]
    fn unknown_action_lists_the_known_ones() {
        let text = "name = \"x\"\n[[step]]\naction = \"fial-host\"\nhost = \"h\"\n";
        assert_eq!(
            problem(text),
            "d.toml:3: step 1: field action: unknown action \"fial-host\"; one of move, \
             move-back, backup, fail-host, recover-host, restore-latest, wait-healthy, assert, \
             sleep"
        );
    }

    #[test]
    fn missing_action_names_the_header() {
        let text = "name = \"x\"\n\n[[step]]\ncontainer = \"web\"\n";
        let line = problem(text);
        assert!(
            line.starts_with("d.toml:3: step 1: field action: missing; one of move, "),
            "{line}"
        );
    }

    #[test]
    fn missing_required_field_names_the_header() {
        let text = "name = \"x\"\n[[step]]\naction = \"sleep\"\nsecs = 1\n\n[[step]]\naction = \"move\"\ncontainer = \"web\"\n";
        assert_eq!(
            problem(text),
            "d.toml:6: step 2 (move): field to: missing; move takes container, to"
        );
    }

    #[test]
    fn field_that_does_not_apply() {
        let text = "name = \"x\"\n[[step]]\naction = \"sleep\"\nsecs = 2\nto = \"host2\"\n";
        assert_eq!(
            problem(text),
            "d.toml:5: step 1 (sleep): field to: does not apply to sleep; sleep takes secs"
        );
    }

    #[test]
    fn unknown_field() {
        let text = "name = \"x\"\n[[step]]\naction = \"move-back\"\ncontainer = \"web\"\ncontaner = \"web\"\n";
        assert_eq!(
            problem(text),
            "d.toml:5: step 1 (move-back): field contaner: unknown field; move-back takes container"
        );
    }

    #[test]
    fn wrong_types() {
        let text = r#"name = 5
rpo_secs = "300"
[[step]]
action = "sleep"
secs = 1.5
[[step]]
action = "assert"
container = "web"
exec = "cat /tmp/x"
exit_code = 256
[[step]]
action = "wait-healthy"
container = "web"
timeout_secs = -1
probe = 8000
[[cleanup]]
action = "recover-host"
host = ""
"#;
        assert_eq!(
            problems(text),
            [
                "d.toml:1: field name: expected a string, found integer",
                "d.toml:2: field rpo_secs: expected a whole number, found string",
                "d.toml:5: step 1 (sleep): field secs: expected a whole number, found float",
                "d.toml:9: step 2 (assert): field exec: expected an array of strings like [\"cat\", \"/tmp/ready\"], found string",
                "d.toml:10: step 2 (assert): field exit_code: must be at most 255",
                "d.toml:14: step 3 (wait-healthy): field timeout_secs: must be at least 1",
                "d.toml:15: step 3 (wait-healthy): field probe: expected a table like { tcp_port = 8000 }, found integer",
                "d.toml:18: cleanup 1 (recover-host): field host: must not be empty",
            ]
        );
    }

    #[test]
    fn probe_needs_exactly_one_kind() {
        let none =
            "name = \"x\"\n[[step]]\naction = \"wait-healthy\"\ncontainer = \"web\"\nprobe = {}\n";
        assert_eq!(
            problem(none),
            "d.toml:5: step 1 (wait-healthy): field probe: needs exactly one of exec, tcp_port, http_port; found none"
        );
        let two = "name = \"x\"\n[[step]]\naction = \"wait-healthy\"\ncontainer = \"web\"\nprobe = { tcp_port = 1, exec = [\"true\"] }\n";
        assert_eq!(
            problem(two),
            "d.toml:5: step 1 (wait-healthy): field probe: needs exactly one of exec, tcp_port, http_port; found exec and tcp_port"
        );
    }

    #[test]
    fn probe_keys_are_checked_on_their_lines() {
        let text = r#"name = "x"
[[step]]
action = "wait-healthy"
container = "web"
[step.probe]
tcp_port = 70000
[[step]]
action = "wait-healthy"
container = "web"
probe = { exec = ["true"], http_path = "health", timeout = 3 }
"#;
        assert_eq!(
            problems(text),
            [
                "d.toml:6: step 1 (wait-healthy): field probe.tcp_port: must be at most 65535",
                "d.toml:10: step 2 (wait-healthy): field probe.http_path: must start with /",
                "d.toml:10: step 2 (wait-healthy): field probe.timeout: unknown probe key; a probe has exactly one of exec, tcp_port, http_port (http_port with an optional http_path)",
                "d.toml:10: step 2 (wait-healthy): field probe.http_path: only goes with http_port",
            ]
        );
    }

    #[test]
    fn empty_exec() {
        let text = "name = \"x\"\n[[step]]\naction = \"assert\"\ncontainer = \"web\"\nexec = []\n";
        assert_eq!(
            problem(text),
            "d.toml:5: step 1 (assert): field exec: must name a command: the array is empty"
        );
        let probe = "name = \"x\"\n[[step]]\naction = \"wait-healthy\"\ncontainer = \"web\"\nprobe = { exec = [] }\n";
        assert_eq!(
            problem(probe),
            "d.toml:5: step 1 (wait-healthy): field probe.exec: must name a command: the array is empty"
        );
        let number = "name = \"x\"\n[[step]]\naction = \"assert\"\ncontainer = \"web\"\nexec = [\"sleep\",\n  1]\n";
        assert_eq!(
            problem(number),
            "d.toml:6: step 1 (assert): field exec: expected strings in the array, found integer"
        );
    }

    #[test]
    fn no_steps() {
        assert_eq!(
            problem("name = \"x\"\n"),
            "d.toml:1: the drill has no steps: add at least one [[step]]"
        );
        assert_eq!(
            problem("name = \"x\"\nstep = []\n"),
            "d.toml:2: field step: the drill has no steps: add at least one [[step]]"
        );
        assert_eq!(
            problem("name = \"x\"\n[step]\naction = \"sleep\"\n"),
            "d.toml:2: field step: expected tables written [[step]], found table"
        );
        // Cleanup steps alone are not a drill.
        let cleanup_only = "name = \"x\"\n[[cleanup]]\naction = \"recover-host\"\nhost = \"h\"\n";
        assert_eq!(
            problem(cleanup_only),
            "d.toml:1: the drill has no steps: add at least one [[step]]"
        );
    }

    #[test]
    fn missing_name() {
        assert_eq!(
            problem("[[step]]\naction = \"sleep\"\nsecs = 1\n"),
            "d.toml:1: field name: missing: give the drill a name"
        );
    }

    #[test]
    fn every_problem_is_reported_in_line_order() {
        let text =
            "name = \"x\"\nbogus = 1\n[[step]]\naction = \"sleep\"\n[[step]]\naction = \"nap\"\n";
        let lines: Vec<String> = problems(text)
            .iter()
            .map(|p| p.split(':').nth(1).unwrap().to_string())
            .collect();
        assert_eq!(lines, ["2", "3", "6"]);
    }

    #[test]
    fn numbers_in_other_notations() {
        let text = "name = \"x\"\nrpo_secs = 1_000\nrto_secs = 0x3c\n[[step]]\naction = \"sleep\"\nsecs = 0o10\n";
        let drill = parse(text).unwrap().drill;
        assert_eq!((drill.rpo_secs, drill.rto_secs), (1000, 60));
        assert_eq!(drill.steps[0].secs, 8);
    }

    #[test]
    fn the_example_drills_and_the_module_docs_example_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/drills");
        for (name, steps, cleanup) in [
            ("planned-maintenance.toml", 5, 0),
            ("host-loss.toml", 5, 1),
            ("rolling-drain.toml", 8, 0),
        ] {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            let file = parse(&text).unwrap_or_else(|problems| {
                let lines: Vec<String> = problems.iter().map(|p| p.render(&path)).collect();
                panic!("{}", lines.join("\n"))
            });
            assert_eq!(file.drill.steps.len(), steps, "{name}");
            assert_eq!(file.drill.cleanup.len(), cleanup, "{name}");
        }
        let source = include_str!("file.rs");
        let example: String = source
            .lines()
            .skip_while(|l| *l != "//! ```toml")
            .skip(1)
            .take_while(|l| *l != "//! ```")
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        assert_eq!(parse(&example).unwrap().drill.steps.len(), 5);
    }

    #[test]
    fn line_of_counts_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 99), 2);
    }
}
