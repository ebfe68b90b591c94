//! Reports as JSON in ccusage's shape (`daily[]`/`monthly[]`/`sessions[]` and
//! `totals`), so scripts written for ccusage keep working.
//!
//! Serialized straight from the report, not through a `serde_json::Value`: a
//! year of daily rows with their model breakdowns is thousands of small maps,
//! and building them cost more than aggregating. Each object's keys are written
//! in sorted order, as ccusage's consumers have seen them from the start.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::aggregate::{Grouping, Report, Row, Totals};

/// The report as a ccusage-compatible JSON document.
pub fn to_json(report: &Report) -> Value {
    serde_json::to_value(document(report)).unwrap_or(Value::Null)
}

/// [`to_json`] as indented text, ending with a newline.
pub fn to_json_text(report: &Report) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(&document(report))?;
    text.push('\n');
    Ok(text)
}

fn document(report: &Report) -> Object<'_> {
    let (list, key_field) = match report.grouping {
        Grouping::Daily => ("daily", "date"),
        Grouping::Monthly => ("monthly", "month"),
        Grouping::Session => ("sessions", "sessionId"),
        Grouping::Project => ("projects", "project"),
        Grouping::Model => ("models", "model"),
    };
    let rows = report
        .rows
        .iter()
        .map(|row| row_object(row, key_field, report.grouping))
        .collect();
    let totals = Object(token_fields(&report.totals, "totalCost"));
    Object(vec![
        (list, Field::Objects(rows)),
        ("totals", Field::Object(totals)),
    ])
}

/// One value of an object's field.
enum Field<'a> {
    Count(u64),
    Dollars(f64),
    Text(&'a str),
    OptionalText(Option<&'a str>),
    Owned(String),
    Names(Vec<&'a str>),
    Object(Object<'a>),
    Objects(Vec<Object<'a>>),
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Count(n) => serializer.serialize_u64(*n),
            Field::Dollars(dollars) => serializer.serialize_f64(*dollars),
            Field::Text(text) => serializer.serialize_str(text),
            Field::OptionalText(text) => text.serialize(serializer),
            Field::Owned(text) => serializer.serialize_str(text),
            Field::Names(names) => names.serialize(serializer),
            Field::Object(object) => object.serialize(serializer),
            Field::Objects(objects) => objects.serialize(serializer),
        }
    }
}

/// A JSON object, written with its keys in sorted order.
struct Object<'a>(Vec<(&'static str, Field<'a>)>);

impl Serialize for Object<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields: Vec<&(&str, Field<'_>)> = self.0.iter().collect();
        fields.sort_unstable_by_key(|(name, _)| *name);
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (name, value) in fields {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

fn row_object<'a>(row: &'a Row, key_field: &'static str, grouping: Grouping) -> Object<'a> {
    let mut fields = token_fields(&row.totals, "totalCost");
    fields.push((key_field, Field::Text(&row.key)));
    let mut breakdowns: Vec<(&String, &Totals)> = row.models.iter().collect();
    breakdowns.sort_by(|a, b| b.1.cost.total_cmp(&a.1.cost).then_with(|| a.0.cmp(b.0)));
    let names = row.models.keys().map(String::as_str).collect();
    fields.push(("modelsUsed", Field::Names(names)));
    let breakdowns = breakdowns
        .into_iter()
        .map(|(model, totals)| {
            let mut breakdown = token_fields(totals, "cost");
            breakdown.retain(|(name, _)| *name != "totalTokens");
            breakdown.push(("modelName", Field::Text(model)));
            Object(breakdown)
        })
        .collect();
    fields.push(("modelBreakdowns", Field::Objects(breakdowns)));
    if matches!(grouping, Grouping::Session) {
        let project = row.projects.iter().next().map(String::as_str);
        fields.push(("projectPath", Field::OptionalText(project)));
        fields.push(("firstActivity", Field::Owned(iso(row.first_ms))));
        fields.push(("lastActivity", Field::Owned(iso(row.last_ms))));
    }
    Object(fields)
}

fn token_fields<'a>(totals: &Totals, cost_field: &'static str) -> Vec<(&'static str, Field<'a>)> {
    vec![
        ("inputTokens", Field::Count(totals.input)),
        ("outputTokens", Field::Count(totals.output)),
        ("cacheCreationTokens", Field::Count(totals.cache_creation)),
        ("cacheReadTokens", Field::Count(totals.cache_read)),
        ("totalTokens", Field::Count(totals.total_tokens())),
        (cost_field, Field::Dollars(totals.cost)),
    ]
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|ts| format!("{ts:.3}"))
        .unwrap_or_default()
}
