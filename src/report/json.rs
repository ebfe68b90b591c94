//! Reports as JSON in ccusage's shape (`daily[]`/`monthly[]`/`sessions[]` and
//! `totals`), so scripts written for ccusage keep working.
//!
//! Written by hand, straight from the report, as serde_json's pretty printer
//! would write the same document (its indentation, escapes and number formats;
//! a test holds the two equal). On a run that read something new, building
//! serde's objects and serializing them was most of the time between the tally
//! and the printed report. Each object's keys are written in sorted order, as
//! ccusage's consumers have seen them from the start.

use std::ops::Range;

use serde_json::Value;

use super::aggregate::{Grouping, Report, Row, Totals};
use crate::codec::{put_section, put_u64, Decoder};

/// The report as a ccusage-compatible JSON document.
pub fn to_json(report: &Report) -> Value {
    serde_json::from_str(&to_json_text(report)).unwrap_or(Value::Null)
}

/// [`to_json`] as indented text, ending with a newline.
pub fn to_json_text(report: &Report) -> String {
    // Only whole UTF-8 strings and ASCII were written.
    String::from_utf8(to_json_document(report).text).unwrap_or_default()
}

/// A report's JSON text, and where each of its rows is in it.
#[derive(Debug)]
pub struct JsonDocument {
    /// UTF-8 when every row was rendered; a spliced document's copied rows
    /// are as the earlier document held them.
    pub text: Vec<u8>,
    pub rows: RowIndex,
}

/// [`to_json_text`], with its rows indexed for [`splice`].
pub fn to_json_document(report: &Report) -> JsonDocument {
    let rows = report.rows.iter().map(RowSource::Render);
    // About what a daily row with several models takes.
    let capacity = 1_024 + report.rows.len() * 2_048;
    write_document(report.grouping, rows, &report.totals, capacity)
}

/// Each row's key and where its object is in the document, in document order:
/// kept beside a cached report, so that the next run copies the rows it did
/// not change instead of writing every row again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowIndex(Vec<(String, Range<usize>)>);

impl RowIndex {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.0.len() * 40);
        put_u64(&mut out, self.0.len() as u64);
        for (key, at) in &self.0 {
            put_section(&mut out, key.as_bytes());
            put_u64(&mut out, at.start as u64);
            put_u64(&mut out, at.end as u64);
        }
        out
    }

    /// What [`RowIndex::encode`] wrote; `None` if it is damaged.
    pub fn decode(bytes: &[u8]) -> Option<RowIndex> {
        let mut input = Decoder::new(bytes);
        let rows = (0..input.count(24).ok()?)
            .map(|_| {
                let key = input.text().ok()?.to_owned();
                let start = usize::try_from(input.u64().ok()?).ok()?;
                let end = usize::try_from(input.u64().ok()?).ok()?;
                Some((key, start..end))
            })
            .collect::<Option<Vec<_>>>()?;
        input.finish().ok()?;
        Some(RowIndex(rows))
    }
}

/// `previous`, the document of a day or month report that `index` indexes,
/// with `changed` rows written in place of its rows of the same keys (or among
/// them, in key order, for new keys), the rows keyed in `gone` left out, and
/// `totals`: byte for byte what [`to_json_document`] writes for the report as
/// a whole, without writing the rows that did not change.
///
/// `None` if the grouping's rows are not in key order, or `index` does not fit
/// `previous`: then the report is to be written whole.
pub fn splice(
    previous: &[u8],
    index: &RowIndex,
    grouping: Grouping,
    changed: &[Row],
    gone: &[String],
    totals: &Totals,
) -> Option<JsonDocument> {
    if !splices(grouping) {
        return None;
    }
    let fits = index.0.iter().all(|(_, at)| {
        previous
            .get(at.clone())
            .is_some_and(|text| text.first() == Some(&b'{') && text.last() == Some(&b'}'))
    });
    if !fits
        || !in_key_order(index.0.iter().map(|(key, _)| key.as_str()))
        || !in_key_order(changed.iter().map(|row| row.key.as_str()))
    {
        return None;
    }
    let replaced = |key: &str| {
        changed
            .binary_search_by(|row| row.key.as_str().cmp(key))
            .is_ok()
            || gone.iter().any(|gone| gone == key)
    };
    let mut kept = index
        .0
        .iter()
        .filter(|(key, _)| !replaced(key))
        .map(|(key, at)| RowSource::Copy {
            key,
            text: &previous[at.clone()],
        })
        .peekable();
    let capacity = previous.len() + 1_024 + changed.len() * 2_048;
    let mut changed = changed.iter().map(RowSource::Render).peekable();
    let merged = std::iter::from_fn(|| match (kept.peek(), changed.peek()) {
        (Some(old), Some(new)) if old.key() < new.key() => kept.next(),
        (Some(_), Some(_)) | (None, _) => changed.next(),
        (Some(_), None) => kept.next(),
    });
    Some(write_document(grouping, merged, totals, capacity))
}

/// Whether [`splice`] can write a report of `grouping`: its rows are in the
/// order of their keys, dates or months.
pub fn splices(grouping: Grouping) -> bool {
    matches!(grouping, Grouping::Daily | Grouping::Monthly)
}

/// Whether `keys` are dates or months (four-digit years first), strictly
/// increasing: their text then sorts as they do.
fn in_key_order<'k>(mut keys: impl Iterator<Item = &'k str>) -> bool {
    let mut last: Option<&str> = None;
    keys.all(|key| {
        let ordered =
            key.starts_with(|c: char| c.is_ascii_digit()) && last.is_none_or(|last| last < key);
        last = Some(key);
        ordered
    })
}

/// A row of a document being written: rendered now, or copied from the
/// document of an earlier run, where it was written at the same depth.
enum RowSource<'a> {
    Render(&'a Row),
    Copy { key: &'a str, text: &'a [u8] },
}

impl RowSource<'_> {
    fn key(&self) -> &str {
        match self {
            RowSource::Render(row) => &row.key,
            RowSource::Copy { key, .. } => key,
        }
    }
}

/// The document of `rows` and `totals`, written into `capacity` bytes: what
/// it is expected to take, so that it is one allocation, not a dozen
/// doublings.
fn write_document<'a>(
    grouping: Grouping,
    mut rows: impl Iterator<Item = RowSource<'a>>,
    totals: &Totals,
    capacity: usize,
) -> JsonDocument {
    let (mut out, shape) = (Writer::with_capacity(capacity), Shape::of(grouping));
    let mut index = Vec::new();
    out.object(&[shape.list, Key::Totals], |out, key| match key {
        Key::Totals => out.object(&TOTALS, |out, key| write_total(out, totals, key)),
        _ => out.array(rows.by_ref(), |out, source| {
            let start = out.bytes.len();
            match &source {
                RowSource::Render(row) => write_row(out, row, &shape),
                RowSource::Copy { text, .. } => out.bytes.extend_from_slice(text),
            }
            index.push((source.key().to_owned(), start..out.bytes.len()));
        }),
    });
    out.bytes.push(b'\n');
    JsonDocument {
        text: out.bytes,
        rows: RowIndex(index),
    }
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
    fn object(&mut self, keys: &[Key], mut value: impl FnMut(&mut Writer, Key)) {
        self.sequence(b'{', b'}', keys, |out, &key| {
            out.raw(key.quoted());
            value(out, key);
        });
    }

    fn array<T>(&mut self, items: impl IntoIterator<Item = T>, write: impl FnMut(&mut Writer, T)) {
        self.sequence(b'[', b']', items, write);
    }

    fn sequence<T>(
        &mut self,
        open: u8,
        close: u8,
        items: impl IntoIterator<Item = T>,
        mut write: impl FnMut(&mut Writer, T),
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

    /// A daily report of `days` (dates), each row seeded by its position.
    fn days(days: &[&str]) -> Report {
        let mut report = report(Grouping::Daily);
        report.rows.truncate(days.len());
        for (row, day) in report.rows.iter_mut().zip(days) {
            row.key = (*day).to_owned();
            row.project = None;
        }
        report
    }

    #[test]
    fn a_splice_changes_adds_and_drops_rows_as_a_whole_document_would() {
        let before = days(&["2025-01-01", "2025-01-02", "2025-01-04"]);
        let mut after = days(&["2025-01-02", "2025-01-03", "2025-01-04"]);
        // Jan 2 kept (copied), Jan 3 new, Jan 4 changed, Jan 1 gone.
        after.rows[0] = before.rows[1].clone();
        after.rows[2].totals.output += 5;
        after.totals.output += 99;
        let earlier = to_json_document(&before);
        let changed = [after.rows[1].clone(), after.rows[2].clone()];
        let spliced = splice(
            &earlier.text,
            &earlier.rows,
            Grouping::Daily,
            &changed,
            &["2025-01-01".to_owned()],
            &after.totals,
        )
        .expect("spliced");
        let whole = to_json_document(&after);
        assert_eq!(
            String::from_utf8_lossy(&spliced.text),
            String::from_utf8_lossy(&whole.text)
        );
        assert_eq!(spliced.rows, whole.rows);
    }

    /// An index that does not fit its document, or rows out of key order,
    /// leave the report to be written whole rather than spliced wrong.
    #[test]
    fn a_splice_refuses_what_it_cannot_do_exactly() {
        let report = days(&["2025-01-01", "2025-01-02"]);
        let document = to_json_document(&report);
        let totals = &report.totals;
        let attempt = |text: &[u8], index: &RowIndex, grouping, changed: &[Row]| {
            splice(text, index, grouping, changed, &[], totals).is_some()
        };
        assert!(attempt(
            &document.text,
            &document.rows,
            Grouping::Daily,
            &[]
        ));
        let shorter = &document.text[..document.text.len() / 2];
        assert!(!attempt(shorter, &document.rows, Grouping::Daily, &[]));
        let mut shifted = document.rows.clone();
        shifted.0[0].1.start += 1;
        assert!(!attempt(&document.text, &shifted, Grouping::Daily, &[]));
        let mut unordered = document.rows.clone();
        unordered.0.swap(0, 1);
        assert!(!attempt(&document.text, &unordered, Grouping::Daily, &[]));
        let backwards = [report.rows[1].clone(), report.rows[0].clone()];
        assert!(!attempt(
            &document.text,
            &document.rows,
            Grouping::Daily,
            &backwards
        ));
        assert!(!attempt(
            &document.text,
            &document.rows,
            Grouping::Session,
            &[]
        ));
        let encoded = document.rows.encode();
        assert_eq!(RowIndex::decode(&encoded), Some(document.rows.clone()));
        assert_eq!(RowIndex::decode(&encoded[..encoded.len() - 1]), None);
    }
}
