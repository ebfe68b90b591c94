//! Grouping counted responses into report rows.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
}

/// Costs are summed in integer femtodollars: exact, so a report's cents never
/// depend on the order responses are visited in (hash-map order, or an
/// incremental run versus a full one).
const FEMTODOLLARS: f64 = 1e15;

#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    input: u64,
    output: u64,
    cache_creation: u64,
    cache_read: u64,
    cost_femtodollars: i128,
    responses: u64,
}

impl Sum {
    fn add(&mut self, response: &Response<'_>, cost_femtodollars: i128) {
        let t = &response.tokens;
        self.input += t.input;
        self.output += t.output;
        self.cache_creation += t.cache_creation;
        self.cache_read += t.cache_read;
        self.cost_femtodollars += cost_femtodollars;
        self.responses += 1;
    }

    fn totals(&self) -> Totals {
        Totals {
            input: self.input,
            output: self.output,
            cache_creation: self.cache_creation,
            cache_read: self.cache_read,
            cost: self.cost_femtodollars as f64 / FEMTODOLLARS,
            responses: self.responses,
        }
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

/// What a row is keyed by while responses are grouped; cheap to hash and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum GroupKey<'a> {
    Day(Date),
    Month(i16, i8),
    Text(&'a str),
}

impl GroupKey<'_> {
    fn label(&self) -> String {
        match self {
            GroupKey::Day(date) => date.to_string(),
            GroupKey::Month(year, month) => format!("{year:04}-{month:02}"),
            GroupKey::Text(text) => (*text).to_owned(),
        }
    }
}

#[derive(Default)]
struct Group<'a> {
    sum: Sum,
    models: HashMap<&'a str, Sum>,
    projects: BTreeSet<&'a str>,
    first_ms: i64,
    last_ms: i64,
}

/// Groups every counted response in the ledger.
pub fn build(
    ledger: &Ledger,
    prices: &PriceTable,
    grouping: Grouping,
    filter: &DateFilter,
) -> Report {
    let mut groups: HashMap<GroupKey<'_>, Group<'_>> = HashMap::new();
    let mut total = Sum::default();
    let mut unpriced: BTreeMap<String, u64> = BTreeMap::new();
    // Every time zone offset is a multiple of 15 minutes: one conversion per
    // quarter hour gives every response's local date.
    let mut dates: HashMap<i64, Date> = HashMap::new();
    let mut prices_by_model = HashMap::new();
    for (_, response) in ledger.responses() {
        let date = *dates
            .entry(response.timestamp_ms.div_euclid(900_000))
            .or_insert_with(|| filter.local_date(response.timestamp_ms));
        if !filter.includes(date) {
            continue;
        }
        let price = *prices_by_model
            .entry(response.model)
            .or_insert_with(|| prices.lookup(response.model));
        let cost = match prices.cost_at(price, &response) {
            Some(cost) => (cost * FEMTODOLLARS).round() as i128,
            None => {
                *unpriced.entry(response.model.to_owned()).or_insert(0) += 1;
                0
            }
        };
        let key = match grouping {
            Grouping::Daily => GroupKey::Day(date),
            Grouping::Monthly => GroupKey::Month(date.year(), date.month()),
            Grouping::Session => GroupKey::Text(response.session),
            Grouping::Project => GroupKey::Text(response.project),
            Grouping::Model => GroupKey::Text(response.model),
        };
        let group = groups.entry(key).or_insert_with(|| Group {
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            ..Group::default()
        });
        group.sum.add(&response, cost);
        group
            .models
            .entry(response.model)
            .or_default()
            .add(&response, cost);
        group.projects.insert(response.project);
        group.first_ms = group.first_ms.min(response.timestamp_ms);
        group.last_ms = group.last_ms.max(response.timestamp_ms);
        total.add(&response, cost);
    }
    let mut keyed: Vec<(GroupKey<'_>, Group<'_>)> = groups.into_iter().collect();
    keyed.sort_unstable_by(|a, b| order(&a.0, &b.0));
    let mut rows: Vec<Row> = keyed
        .into_iter()
        .map(|(key, group)| Row {
            key: key.label(),
            totals: group.sum.totals(),
            models: group
                .models
                .iter()
                .map(|(model, sum)| ((*model).to_owned(), sum.totals()))
                .collect(),
            projects: group.projects.iter().map(|p| (*p).to_owned()).collect(),
            first_ms: group.first_ms,
            last_ms: group.last_ms,
        })
        .collect();
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
        totals: total.totals(),
        unpriced,
    }
}

fn order(a: &GroupKey<'_>, b: &GroupKey<'_>) -> Ordering {
    match (a, b) {
        (GroupKey::Day(a), GroupKey::Day(b)) => a.cmp(b),
        (GroupKey::Month(ay, am), GroupKey::Month(by, bm)) => (ay, am).cmp(&(by, bm)),
        (GroupKey::Text(a), GroupKey::Text(b)) => a.cmp(b),
        _ => Ordering::Equal,
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
