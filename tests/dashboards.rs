//! Every panel of the Grafana dashboards in `deploy/grafana/` runs against a real
//! ClickHouse engine loaded with a generated corpus, returns rows, and agrees with
//! `ccotel report` where the two overlap.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::clickhouse::ClickHouse;
use common::{generate_corpus, ClaudeHome};

const FROM: &str = "2000-01-01 00:00:00";
const TO: &str = "2100-01-01 00:00:00";

fn dashboards() -> Vec<(PathBuf, serde_json::Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/grafana")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "dashboards in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let json = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
            (path, json)
        })
        .collect()
}

/// Grafana's macros and the dashboards' variables, filled in as Grafana would.
fn render(sql: &str, database: &str, variables: &BTreeMap<&str, String>) -> String {
    let mut sql = sql.replace("${database}", database);
    for (name, value) in variables {
        sql = sql.replace(&format!("${{{name}}}"), value);
    }
    while let Some(start) = sql.find("$__timeFilter(") {
        let end = start + sql[start..].find(')').expect("closing parenthesis");
        let column = &sql[start + "$__timeFilter(".len()..end];
        let filter = format!(
            "{column} >= toDateTime64('{FROM}', 3) AND {column} <= toDateTime64('{TO}', 3)"
        );
        sql.replace_range(start..=end, &filter);
    }
    assert!(!sql.contains('$'), "unrendered macro or variable in {sql}");
    sql
}

fn backfill(home: &ClaudeHome, state: &std::path::Path, ch: &ClickHouse, database: &str) {
    let output = home
        .backfill_into_clickhouse(state, ch, database)
        .output()
        .expect("backfill");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_panel_runs_and_matches_the_report() {
    let Some(ch) = ClickHouse::start() else {
        return;
    };
    let corpus = tempfile::tempdir().expect("tempdir");
    if generate_corpus(corpus.path(), 150, 12.0, 42).is_none() {
        return;
    }
    let home = ClaudeHome { dir: corpus };
    let database = ch.create_database("ccotel_dashboards");
    let state = tempfile::tempdir().expect("tempdir");
    backfill(&home, state.path(), &ch, &database);

    let session = ch
        .query(&format!(
            "SELECT session_id FROM {database}.claude_messages GROUP BY session_id ORDER BY count() DESC LIMIT 1"
        ))
        .trim()
        .to_owned();
    let mut variables = BTreeMap::new();
    variables.insert("session_id", session.clone());
    variables.insert("after_ts", "1970-01-01 00:00:00.000".to_owned());
    variables.insert("after_uuid", String::new());

    // Cost per day equals the report's daily costs (UTC dates).
    let report = home
        .ccotel(state.path())
        .args(["report", "daily", "--json", "--full"])
        .output()
        .expect("report");
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("JSON");
    let expected: BTreeMap<String, f64> = report["daily"]
        .as_array()
        .expect("daily")
        .iter()
        .map(|d| {
            (
                d["date"].as_str().expect("date").to_owned(),
                d["totalCost"].as_f64().expect("cost"),
            )
        })
        .collect();
    let cost_panel = dashboards()
        .into_iter()
        .find(|(_, d)| d["uid"] == "ccotel-cost")
        .expect("cost dashboard")
        .1;
    let sql = cost_panel["panels"][0]["targets"][0]["rawSql"]
        .as_str()
        .expect("sql")
        .to_owned();
    let per_day: BTreeMap<String, f64> = ch
        .query(&render(&sql, &database, &variables))
        .lines()
        .map(|line| {
            let (time, cost) = line.split_once('\t').expect("two columns");
            (time[..10].to_owned(), cost.parse().expect("cost"))
        })
        .collect();
    assert_eq!(
        per_day.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (day, cost) in &expected {
        assert!(
            (per_day[day] - cost).abs() < 1e-6,
            "{day}: {} vs {cost}",
            per_day[day]
        );
    }

    // Keyset pagination: the second page starts right after the first.
    let page = |after_ts: &str, after_uuid: &str| {
        let mut vars = variables.clone();
        vars.insert("after_ts", after_ts.to_owned());
        vars.insert("after_uuid", after_uuid.to_owned());
        let dashboards = dashboards();
        let sessions = dashboards
            .iter()
            .find(|(_, d)| d["uid"] == "ccotel-sessions")
            .expect("sessions");
        let sql = sessions.1["panels"][1]["targets"][0]["rawSql"]
            .as_str()
            .expect("sql")
            .to_owned();
        ch.query(&render(&sql, &database, &vars))
    };
    let first = page("1970-01-01 00:00:00.000", "");
    let rows: Vec<&str> = first.lines().collect();
    let total: usize = ch
        .query(&format!(
            "SELECT count() FROM {database}.claude_messages WHERE session_id = '{session}'"
        ))
        .trim()
        .parse()
        .expect("count");
    assert_eq!(rows.len(), total.min(100));
    if total > 100 {
        let last: Vec<&str> = rows[99].split('\t').collect();
        let second = page(last[0], last[1]);
        assert_eq!(second.lines().count(), (total - 100).min(100));
        assert!(
            !first.contains(second.lines().next().expect("a row")),
            "pages overlap"
        );
    }

    // The samples add what the generated corpus lacks (file reads and edits).
    let samples = ClaudeHome::with_samples();
    let state = tempfile::tempdir().expect("tempdir");
    backfill(&samples, state.path(), &ch, &database);
    let mut panels = 0;
    for (path, dashboard) in dashboards() {
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let sql = render(
                    target["rawSql"].as_str().expect("rawSql"),
                    &database,
                    &variables,
                );
                let result = ch.try_query(&sql).unwrap_or_else(|e| {
                    panic!("{} panel {}: {e}\n{sql}", path.display(), panel["title"])
                });
                assert!(
                    !result.trim().is_empty(),
                    "{} panel {} returned no rows:\n{sql}",
                    path.display(),
                    panel["title"]
                );
                panels += 1;
            }
        }
    }
    assert!(panels >= 12, "{panels} panels");
}
