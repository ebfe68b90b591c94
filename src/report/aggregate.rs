//! Grouping counted responses into report rows.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::session::{Ledger, PriceTable, Response};

/// What a report's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Grouping {
    Daily,
    Monthly,
    Session,
    Project,
    Model,
}

/// Token and cost sums.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub input: u64,
    pub output: u64,
    pub cache_creation: u64,
    pub cache_read: u64,
    pub cost: f64,
    pub responses: u64,
}

impl Totals {
    pub fn total_tokens(&self) -> u64 {
        self.input + self.output + self.cache_creation + self.cache_read
    }

    fn add(&mut self, response: &Response<'_>, cost: f64) {
        let t = &response.tokens;
        self.input += t.input;
        self.output += t.output;
        self.cache_creation += t.cache_creation;
        self.cache_read += t.cache_read;
        self.cost += cost;
        self.responses += 1;
    }
}

/// One row: a day, month, session, project or model.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub key: String,
    pub totals: Totals,
    pub models: BTreeMap<String, Totals>,
    pub projects: BTreeSet<String>,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// A finished report.
#[derive(Debug, Clone)]
pub struct Report {
    pub grouping: Grouping,
    pub rows: Vec<Row>,
    pub totals: Totals,
    /// Models without a price, with how many responses used them.
    pub unpriced: BTreeMap<String, u64>,
}

/// Which local dates to include, in which time zone.
#[derive(Debug, Clone)]
pub struct DateFilter {
    pub time_zone: TimeZone,
    pub since: Option<Date>,
    pub until: Option<Date>,
}

impl DateFilter {
    fn local_date(&self, timestamp_ms: i64) -> Date {
        Timestamp::from_millisecond(timestamp_ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.time_zone.clone())
            .date()
    }

    fn includes(&self, date: Date) -> bool {
        self.since.is_none_or(|since| date >= since) && self.until.is_none_or(|until| date <= until)
    }
}

/// Groups every counted response in the ledger.
pub fn build(
    ledger: &Ledger,
    prices: &PriceTable,
    grouping: Grouping,
    filter: &DateFilter,
) -> Report {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut totals = Totals::default();
    let mut unpriced = BTreeMap::new();
    // Responses sharing a timestamp's hour share a date; cache the conversion.
    let mut dates: std::collections::HashMap<i64, Date> = std::collections::HashMap::new();
    // Sorted by key so floating-point sums do not depend on hash-map order: the
    // same ledger always gives the same cents.
    let mut responses: Vec<_> = ledger.responses().collect();
    responses.sort_unstable_by_key(|(key, _)| *key);
    for (_, response) in responses {
        let date = *dates
            .entry(response.timestamp_ms.div_euclid(900_000))
            .or_insert_with(|| filter.local_date(response.timestamp_ms));
        if !filter.includes(date) {
            continue;
        }
        let cost = prices.cost(&response).unwrap_or_else(|| {
            *unpriced.entry(response.model.to_owned()).or_insert(0) += 1;
            0.0
        });
        let key = match grouping {
            Grouping::Daily => date.to_string(),
            Grouping::Monthly => format!("{:04}-{:02}", date.year(), date.month()),
            Grouping::Session => response.session.to_owned(),
            Grouping::Project => response.project.to_owned(),
            Grouping::Model => response.model.to_owned(),
        };
        let row = rows.entry(key).or_insert_with_key(|key| Row {
            key: key.clone(),
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            ..Row::default()
        });
        row.totals.add(&response, cost);
        row.models
            .entry(response.model.to_owned())
            .or_default()
            .add(&response, cost);
        if !row.projects.contains(response.project) {
            row.projects.insert(response.project.to_owned());
        }
        row.first_ms = row.first_ms.min(response.timestamp_ms);
        row.last_ms = row.last_ms.max(response.timestamp_ms);
        totals.add(&response, cost);
    }
    let mut rows: Vec<Row> = rows.into_values().collect();
    if matches!(grouping, Grouping::Session) {
        rows.sort_by(|a, b| a.last_ms.cmp(&b.last_ms).then_with(|| a.key.cmp(&b.key)));
    }
    if matches!(grouping, Grouping::Project | Grouping::Model) {
        rows.sort_by(|a, b| {
            b.totals
                .cost
                .total_cmp(&a.totals.cost)
                .then_with(|| a.key.cmp(&b.key))
        });
    }
    Report {
        grouping,
        rows,
        totals,
        unpriced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Observation, ResponseKey, TokenCounts};

    fn ledger() -> Ledger {
        let mut ledger = Ledger::new();
        for (id, ts, model, output) in [
            (
                "a",
                "2025-05-19T23:30:00.000Z",
                "claude-sonnet-4-20250514",
                10,
            ),
            (
                "b",
                "2025-05-20T00:30:00.000Z",
                "claude-sonnet-4-20250514",
                20,
            ),
            ("c", "2025-05-20T10:00:00.000Z", "mystery-model", 40),
        ] {
            let observation = Observation {
                tokens: TokenCounts {
                    output,
                    ..TokenCounts::default()
                },
                timestamp_ms: crate::transcript::parse_timestamp_ms(ts).expect("ts"),
                model,
                session: "s",
                project: "p",
                sidechain: false,
                fast: false,
                us_only: false,
                cost_usd: None,
            };
            ledger.observe(ResponseKey::of(id, None), &observation);
        }
        ledger
    }

    fn filter(zone: &str) -> DateFilter {
        DateFilter {
            time_zone: TimeZone::get(zone).expect("zone"),
            since: None,
            until: None,
        }
    }

    #[test]
    fn days_follow_the_time_zone() {
        let prices = PriceTable::embedded();
        let utc = build(&ledger(), &prices, Grouping::Daily, &filter("UTC"));
        let keys: Vec<_> = utc
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.totals.output))
            .collect();
        assert_eq!(keys, [("2025-05-19", 10), ("2025-05-20", 60)]);
        let new_york = build(
            &ledger(),
            &prices,
            Grouping::Daily,
            &filter("America/New_York"),
        );
        let keys: Vec<_> = new_york
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.totals.output))
            .collect();
        assert_eq!(keys, [("2025-05-19", 30), ("2025-05-20", 40)]);
        assert_eq!(utc.totals.output, 70);
        assert_eq!(utc.unpriced.get("mystery-model"), Some(&1));
    }

    #[test]
    fn since_and_until_are_inclusive() {
        let mut f = filter("UTC");
        f.since = Some(jiff::civil::date(2025, 5, 20));
        f.until = Some(jiff::civil::date(2025, 5, 20));
        let report = build(&ledger(), &PriceTable::embedded(), Grouping::Monthly, &f);
        assert_eq!(report.rows.len(), 1);
        assert_eq!(report.rows[0].key, "2025-05");
        assert_eq!(report.totals.output, 60);
    }
}
