//! Reports as JSON in ccusage's shape (`daily[]`/`monthly[]`/`sessions[]` and
//! `totals`), so scripts written for ccusage keep working.

use serde_json::{json, Map, Value};

use super::aggregate::{Grouping, Report, Row, Totals};

/// The report as a ccusage-compatible JSON document.
pub fn to_json(report: &Report) -> Value {
    let (list, key_field) = match report.grouping {
        Grouping::Daily => ("daily", "date"),
        Grouping::Monthly => ("monthly", "month"),
        Grouping::Session => ("sessions", "sessionId"),
        Grouping::Project => ("projects", "project"),
        Grouping::Model => ("models", "model"),
    };
    let rows: Vec<Value> = report
        .rows
        .iter()
        .map(|row| row_json(row, key_field, report.grouping))
        .collect();
    let mut document = Map::new();
    document.insert(list.into(), Value::Array(rows));
    document.insert("totals".into(), token_fields(&report.totals, "totalCost"));
    Value::Object(document)
}

fn row_json(row: &Row, key_field: &str, grouping: Grouping) -> Value {
    let mut object = match token_fields(&row.totals, "totalCost") {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    object.insert(key_field.into(), Value::String(row.key.clone()));
    let mut breakdowns: Vec<(&String, &Totals)> = row.models.iter().collect();
    breakdowns.sort_by(|a, b| b.1.cost.total_cmp(&a.1.cost).then_with(|| a.0.cmp(b.0)));
    object.insert(
        "modelsUsed".into(),
        json!(row.models.keys().collect::<Vec<_>>()),
    );
    object.insert(
        "modelBreakdowns".into(),
        Value::Array(
            breakdowns
                .into_iter()
                .map(|(model, totals)| {
                    let mut breakdown = match token_fields(totals, "cost") {
                        Value::Object(object) => object,
                        _ => Map::new(),
                    };
                    breakdown.remove("totalTokens");
                    breakdown.insert("modelName".into(), json!(model));
                    Value::Object(breakdown)
                })
                .collect(),
        ),
    );
    if matches!(grouping, Grouping::Session) {
        object.insert("projectPath".into(), json!(row.projects.iter().next()));
        object.insert("firstActivity".into(), json!(iso(row.first_ms)));
        object.insert("lastActivity".into(), json!(iso(row.last_ms)));
    }
    Value::Object(object)
}

fn token_fields(totals: &Totals, cost_field: &str) -> Value {
    let mut object = Map::new();
    object.insert("inputTokens".into(), json!(totals.input));
    object.insert("outputTokens".into(), json!(totals.output));
    object.insert("cacheCreationTokens".into(), json!(totals.cache_creation));
    object.insert("cacheReadTokens".into(), json!(totals.cache_read));
    object.insert("totalTokens".into(), json!(totals.total_tokens()));
    object.insert(cost_field.into(), json!(totals.cost));
    Value::Object(object)
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|ts| format!("{ts:.3}"))
        .unwrap_or_default()
}
