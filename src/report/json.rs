//! Reports as JSON in ccusage's shape (`daily[]`/`monthly[]`/`sessions[]` and
//! `totals`), so scripts written for ccusage keep working.
//!
//! Written by hand, straight from the report, as serde_json's pretty printer
//! would write the same document (its indentation, escapes and number formats;
//! a test holds the two equal). On a run that read something new, building
//! serde's objects and serializing them was most of the time between the tally
//! and the printed report. Each object's keys are written in sorted order, as
//! ccusage's consumers have seen them from the start.

use serde_json::Value;

use super::aggregate::{Grouping, Report, Row, Totals};

/// The report as a ccusage-compatible JSON document.
pub fn to_json(report: &Report) -> Value {
    serde_json::from_str(&to_json_text(report)).unwrap_or(Value::Null)
}

/// [`to_json`] as indented text, ending with a newline.
pub fn to_json_text(report: &Report) -> String {
    // About what a daily row with several models takes: one allocation, not a
    // dozen doublings, for a year of rows.
    let mut out = Writer::with_capacity(1_024 + report.rows.len() * 2_048);
    let shape = Shape::of(report.grouping);
    out.object(&[shape.list, Key::Totals], |out, key| match key {
        Key::Totals => out.object(&TOTALS, |out, key| write_total(out, &report.totals, key)),
        _ => out.array(&report.rows, |out, row| write_row(out, row, &shape)),
    });
    out.bytes.push(b'\n');
    // Only whole UTF-8 strings and ASCII were written.
    String::from_utf8(out.bytes).unwrap_or_default()
}

/// The keys of the report's totals, in order.
const TOTALS: [Key; 6] = [
    Key::CacheCreationTokens,
    Key::CacheReadTokens,
    Key::InputTokens,
    Key::OutputTokens,
    Key::TotalCost,
    Key::TotalTokens,
];

/// The keys of a row's model breakdown, in order.
const BREAKDOWN: [Key; 6] = [
    Key::CacheCreationTokens,
    Key::CacheReadTokens,
    Key::Cost,
    Key::InputTokens,
    Key::ModelName,
    Key::OutputTokens,
];

/// What a grouping's document holds: the list's name, the key naming each
/// row, and a row's keys in order.
struct Shape {
    list: Key,
    row_key: Key,
    row: Vec<Key>,
}

impl Shape {
    fn of(grouping: Grouping) -> Shape {
        let (list, row_key) = match grouping {
            Grouping::Daily => (Key::Daily, Key::Date),
            Grouping::Monthly => (Key::Monthly, Key::Month),
            Grouping::Session => (Key::Sessions, Key::SessionId),
            Grouping::Project => (Key::Projects, Key::Project),
            Grouping::Model => (Key::Models, Key::Model),
        };
        let mut row = TOTALS.to_vec();
        row.extend([row_key, Key::ModelsUsed, Key::ModelBreakdowns]);
        if grouping == Grouping::Session {
            row.extend([Key::ProjectPath, Key::FirstActivity, Key::LastActivity]);
        }
        row.sort_unstable();
        Shape { list, row_key, row }
    }
}

/// One row: its keys in the shape's order.
fn write_row(out: &mut Writer, row: &Row, shape: &Shape) {
    out.object(&shape.row, |out, key| match key {
        Key::ModelsUsed => out.array(row.models.keys(), |out, model| out.string(model)),
        Key::ModelBreakdowns => {
            let mut breakdowns: Vec<(&String, &Totals)> = row.models.iter().collect();
            breakdowns.sort_by(|a, b| b.1.cost.total_cmp(&a.1.cost).then_with(|| a.0.cmp(b.0)));
            out.array(breakdowns, |out, (model, totals)| {
                out.object(&BREAKDOWN, |out, key| match key {
                    Key::ModelName => out.string(model),
                    key => write_total(out, totals, key),
                })
            });
        }
        Key::ProjectPath => out.string_or_null(row.project.as_deref()),
        Key::FirstActivity => out.string(&iso(row.first_ms)),
        Key::LastActivity => out.string(&iso(row.last_ms)),
        key if key == shape.row_key => out.string(&row.key),
        key => write_total(out, &row.totals, key),
    });
}

/// The value of one of the token and cost keys.
fn write_total(out: &mut Writer, totals: &Totals, key: Key) {
    let count = match key {
        Key::InputTokens => totals.input,
        Key::OutputTokens => totals.output,
        Key::CacheCreationTokens => totals.cache_creation,
        Key::CacheReadTokens => totals.cache_read,
        Key::TotalTokens => totals.total_tokens(),
        Key::Cost | Key::TotalCost => return out.number(totals.cost),
        // Not a key of these objects: every shape above names only the keys
        // written here or by its own writer.
        _ => return out.raw("null"),
    };
    out.raw(itoa::Buffer::new().format(count));
}

/// Every key a report's objects have, declared in the order of their names,
/// so that ordering keys orders names without comparing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    CacheCreationTokens,
    CacheReadTokens,
    Cost,
    Daily,
    Date,
    FirstActivity,
    InputTokens,
    LastActivity,
    Model,
    ModelBreakdowns,
    ModelName,
    Models,
    ModelsUsed,
    Month,
    Monthly,
    OutputTokens,
    Project,
    ProjectPath,
    Projects,
    SessionId,
    Sessions,
    TotalCost,
    TotalTokens,
    Totals,
}

impl Key {
    /// The key as written, quoted, with what follows it.
    fn quoted(self) -> &'static str {
        match self {
            Key::CacheCreationTokens => "\"cacheCreationTokens\": ",
            Key::CacheReadTokens => "\"cacheReadTokens\": ",
            Key::Cost => "\"cost\": ",
            Key::Daily => "\"daily\": ",
            Key::Date => "\"date\": ",
            Key::FirstActivity => "\"firstActivity\": ",
            Key::InputTokens => "\"inputTokens\": ",
            Key::LastActivity => "\"lastActivity\": ",
            Key::Model => "\"model\": ",
            Key::ModelBreakdowns => "\"modelBreakdowns\": ",
            Key::ModelName => "\"modelName\": ",
            Key::Models => "\"models\": ",
            Key::ModelsUsed => "\"modelsUsed\": ",
            Key::Month => "\"month\": ",
            Key::Monthly => "\"monthly\": ",
            Key::OutputTokens => "\"outputTokens\": ",
            Key::Project => "\"project\": ",
            Key::ProjectPath => "\"projectPath\": ",
            Key::Projects => "\"projects\": ",
            Key::SessionId => "\"sessionId\": ",
            Key::Sessions => "\"sessions\": ",
            Key::TotalCost => "\"totalCost\": ",
            Key::TotalTokens => "\"totalTokens\": ",
            Key::Totals => "\"totals\": ",
        }
    }
}

/// Pretty-printed JSON: two spaces a level, one value a line.
struct Writer {
    bytes: Vec<u8>,
    depth: usize,
}

/// Which bytes serde_json escapes in a string: `"`, `\` and control characters.
const ESCAPED: [bool; 256] = {
    let mut escaped = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        escaped[byte] = true;
        byte += 1;
    }
    escaped[b'"' as usize] = true;
    escaped[b'\\' as usize] = true;
    escaped
};

impl Writer {
    fn with_capacity(capacity: usize) -> Writer {
        Writer {
            bytes: Vec::with_capacity(capacity),
            depth: 0,
        }
    }

    fn raw(&mut self, text: &str) {
        self.bytes.extend_from_slice(text.as_bytes());
    }

    /// As serde_json writes an `f64`: shortest round-trip digits, `null` when
    /// not finite.
    fn number(&mut self, value: f64) {
        match value.is_finite() {
            true => self.raw(zmij::Buffer::new().format_finite(value)),
            false => self.raw("null"),
        }
    }

    fn string_or_null(&mut self, text: Option<&str>) {
        match text {
            Some(text) => self.string(text),
            None => self.raw("null"),
        }
    }

    /// An object with `keys`, in that order, each value written by `value`.
    fn object(&mut self, keys: &[Key], value: impl Fn(&mut Writer, Key)) {
        self.sequence(b'{', b'}', keys, |out, &key| {
            out.raw(key.quoted());
            value(out, key);
        });
    }

    fn array<T>(&mut self, items: impl IntoIterator<Item = T>, write: impl Fn(&mut Writer, T)) {
        self.sequence(b'[', b']', items, write);
    }

    fn sequence<T>(
        &mut self,
        open: u8,
        close: u8,
        items: impl IntoIterator<Item = T>,
        write: impl Fn(&mut Writer, T),
    ) {
        self.bytes.push(open);
        self.depth += 1;
        let mut empty = true;
        for item in items {
            if !empty {
                self.bytes.push(b',');
            }
            empty = false;
            self.new_line();
            write(self, item);
        }
        self.depth -= 1;
        if !empty {
            self.new_line();
        }
        self.bytes.push(close);
    }

    fn new_line(&mut self) {
        const SPACES: &[u8; 64] = &[b' '; 64];
        self.bytes.push(b'\n');
        let mut indent = self.depth * 2;
        while indent > 0 {
            let step = indent.min(SPACES.len());
            self.bytes.extend_from_slice(&SPACES[..step]);
            indent -= step;
        }
    }

    /// A string with serde_json's escapes; everything else as it is.
    fn string(&mut self, text: &str) {
        self.bytes.push(b'"');
        let bytes = text.as_bytes();
        let mut start = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            if !ESCAPED[usize::from(byte)] {
                continue;
            }
            self.bytes.extend_from_slice(&bytes[start..at]);
            self.escape(byte);
            start = at + 1;
        }
        self.bytes.extend_from_slice(&bytes[start..]);
        self.bytes.push(b'"');
    }

    fn escape(&mut self, byte: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => {
                self.bytes.extend_from_slice(b"\\u00");
                self.bytes.push(HEX[usize::from(byte >> 4)]);
                self.bytes.push(HEX[usize::from(byte & 0xf)]);
                return;
            }
        };
        self.bytes.extend_from_slice(short);
    }
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|ts| format!("{ts:.3}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn totals(seed: u64, cost: f64) -> Totals {
        Totals {
            input: seed,
            output: seed * 7 + 1,
            cache_creation: seed * 13,
            cache_read: (1 << 40) + seed,
            cost,
            responses: seed,
        }
    }

    /// Texts that need every kind of escape, and some that need none.
    const AWKWARD: [&str; 6] = [
        "plain",
        "quote \" backslash \\ slash /",
        "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
        "ünïcödé ✓ 𝄞",
        "",
        "/home/dev/my \"project\"",
    ];

    fn report(grouping: Grouping) -> Report {
        let costs = [0.0, 1.5, 1e-7, 123_456.789, 0.1 + 0.2, f64::NAN];
        let rows = AWKWARD
            .iter()
            .enumerate()
            .map(|(i, key)| Row {
                key: (*key).to_owned(),
                totals: totals(i as u64, costs[i]),
                models: AWKWARD[..i]
                    .iter()
                    .enumerate()
                    .map(|(j, model)| ((*model).to_owned(), totals(j as u64, costs[j])))
                    .collect(),
                project: (i % 2 == 0).then(|| AWKWARD[5 - i].to_owned()),
                first_ms: 1_735_689_600_000 + i as i64,
                last_ms: 1_735_689_600_000 + i as i64 * 1_000,
            })
            .collect();
        Report {
            grouping,
            rows,
            totals: totals(99, 2.25),
            unpriced: BTreeMap::new(),
        }
    }

    /// The same document built as a `serde_json::Value` (whose maps keep
    /// their keys sorted) and printed by serde_json.
    fn by_serde_json(report: &Report, list: &str, key_field: &str) -> String {
        let tokens = |totals: &Totals, cost: &str| {
            let mut object = json!({
                "inputTokens": totals.input,
                "outputTokens": totals.output,
                "cacheCreationTokens": totals.cache_creation,
                "cacheReadTokens": totals.cache_read,
                "totalTokens": totals.total_tokens(),
            });
            object[cost] = json!(totals.cost);
            object
        };
        let rows: Vec<Value> = report
            .rows
            .iter()
            .map(|row| {
                let mut object = tokens(&row.totals, "totalCost");
                object[key_field] = json!(row.key);
                object["modelsUsed"] = json!(row.models.keys().collect::<Vec<_>>());
                let mut models: Vec<(&String, &Totals)> = row.models.iter().collect();
                models.sort_by(|a, b| b.1.cost.total_cmp(&a.1.cost).then(a.0.cmp(b.0)));
                let breakdowns: Vec<Value> = models
                    .into_iter()
                    .map(|(model, totals)| {
                        let mut breakdown = tokens(totals, "cost");
                        breakdown.as_object_mut().map(|b| b.remove("totalTokens"));
                        breakdown["modelName"] = json!(model);
                        breakdown
                    })
                    .collect();
                object["modelBreakdowns"] = json!(breakdowns);
                if report.grouping == Grouping::Session {
                    object["projectPath"] = json!(row.project);
                    object["firstActivity"] = json!(iso(row.first_ms));
                    object["lastActivity"] = json!(iso(row.last_ms));
                }
                object
            })
            .collect();
        let mut document = json!({ "totals": tokens(&report.totals, "totalCost") });
        document[list] = json!(rows);
        serde_json::to_string_pretty(&document).expect("a Value prints") + "\n"
    }

    #[test]
    fn writes_what_serde_json_writes() {
        for (grouping, list, key_field) in [
            (Grouping::Daily, "daily", "date"),
            (Grouping::Monthly, "monthly", "month"),
            (Grouping::Session, "sessions", "sessionId"),
            (Grouping::Project, "projects", "project"),
            (Grouping::Model, "models", "model"),
        ] {
            let report = report(grouping);
            assert_eq!(
                to_json_text(&report),
                by_serde_json(&report, list, key_field),
                "{grouping:?}"
            );
        }
    }

    #[test]
    fn keys_are_declared_in_the_order_of_their_names() {
        let keys = [
            Key::CacheCreationTokens,
            Key::CacheReadTokens,
            Key::Cost,
            Key::Daily,
            Key::Date,
            Key::FirstActivity,
            Key::InputTokens,
            Key::LastActivity,
            Key::Model,
            Key::ModelBreakdowns,
            Key::ModelName,
            Key::Models,
            Key::ModelsUsed,
            Key::Month,
            Key::Monthly,
            Key::OutputTokens,
            Key::Project,
            Key::ProjectPath,
            Key::Projects,
            Key::SessionId,
            Key::Sessions,
            Key::TotalCost,
            Key::TotalTokens,
            Key::Totals,
        ];
        for pair in keys.windows(2) {
            assert!(
                pair[0] < pair[1],
                "{:?} is declared after {:?}",
                pair[0],
                pair[1]
            );
            assert!(
                pair[0].quoted() < pair[1].quoted(),
                "{} sorts after {}",
                pair[0].quoted(),
                pair[1].quoted()
            );
        }
    }

    #[test]
    fn an_empty_report_has_an_empty_list() {
        let mut report = report(Grouping::Daily);
        report.rows.clear();
        let text = to_json_text(&report);
        assert!(
            text.starts_with("{\n  \"daily\": [],\n  \"totals\": {\n"),
            "{text}"
        );
        assert_eq!(to_json(&report)["totals"]["totalCost"], json!(2.25));
    }
}
