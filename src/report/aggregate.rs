//! Grouping counted responses into report rows.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::session::{Ledger, ModelPrice, PriceTable, Response, StringIds};

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

/// `dollars` in whole femtodollars. Through `i64` when it fits (below $9,000 a
/// response, always in practice): converting a float to `i128` is a slow
/// software routine, and this runs once per response.
fn femtodollars(dollars: f64) -> i128 {
    let scaled = (dollars * FEMTODOLLARS).round();
    match scaled.abs() < 9.0e18 {
        true => i128::from(scaled as i64),
        false => scaled as i128,
    }
}

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

/// What a row is keyed by while responses are grouped: text is grouped by its
/// ledger string id, so grouping never hashes or compares text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum GroupKey {
    Day(Date),
    Month(i16, i8),
    Text(u32),
}

#[derive(Default)]
struct Group {
    sum: Sum,
    /// By model string id; a group has few models.
    models: Vec<(u32, Sum)>,
    projects: FxHashSet<u32>,
    first_ms: i64,
    last_ms: i64,
}

impl Group {
    fn add(&mut self, ids: StringIds, response: &Response<'_>, cost: i128) {
        self.sum.add(response, cost);
        match self
            .models
            .iter_mut()
            .find(|(model, _)| *model == ids.model)
        {
            Some((_, sum)) => sum.add(response, cost),
            None => {
                let mut sum = Sum::default();
                sum.add(response, cost);
                self.models.push((ids.model, sum));
            }
        }
        self.projects.insert(ids.project);
        self.first_ms = self.first_ms.min(response.timestamp_ms);
        self.last_ms = self.last_ms.max(response.timestamp_ms);
    }
}

/// What each response needs looked up once per distinct value: its zone offset,
/// once per UTC day, and its model's price.
struct Lookups<'p> {
    prices: &'p PriceTable,
    /// The offset in force all through a UTC day, by day number; `None` for a day
    /// with a transition (then each of its responses asks the zone).
    day_offsets: FxHashMap<i64, Option<Offset>>,
    model_prices: Vec<Option<Option<&'p ModelPrice>>>,
}

const DAY_MS: i64 = 86_400_000;

impl<'p> Lookups<'p> {
    /// The local date of a response. A table of days, not of timestamps, stays
    /// small enough to be a cache hit for every response.
    fn date(&mut self, filter: &DateFilter, timestamp_ms: i64) -> Date {
        let day = timestamp_ms.div_euclid(DAY_MS);
        let offset = *self
            .day_offsets
            .entry(day)
            .or_insert_with(|| steady_offset(&filter.time_zone, day));
        let local_day = offset.and_then(|offset| {
            let local_ms = timestamp_ms.checked_add(i64::from(offset.seconds()) * 1000)?;
            date_of_epoch_day(local_ms.div_euclid(DAY_MS))
        });
        local_day.unwrap_or_else(|| filter.local_date(timestamp_ms))
    }

    fn price(&mut self, model_id: u32, model: &str) -> Option<&'p ModelPrice> {
        let prices = self.prices;
        *self.model_prices[model_id as usize].get_or_insert_with(|| prices.lookup(model))
    }
}

/// The civil date `days` after 1970-01-01 (proleptic Gregorian), by arithmetic:
/// a report dates every response, and this is several times cheaper than
/// building a civil datetime for each.
fn date_of_epoch_day(days: i64) -> Option<Date> {
    // Days since 0000-03-01, split into 400-year eras; March-based years put the
    // leap day last.
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    Date::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
    )
    .ok()
}

/// The offset `time_zone` keeps through the whole UTC day `day`, if it has no
/// transition that day.
fn steady_offset(time_zone: &TimeZone, day: i64) -> Option<Offset> {
    let start = Timestamp::from_millisecond(day.checked_mul(DAY_MS)?).ok()?;
    let last = Timestamp::from_millisecond(day.checked_add(1)?.checked_mul(DAY_MS)? - 1).ok()?;
    let mut transitions = time_zone.following(start);
    let changes = transitions
        .next()
        .is_some_and(|next| next.timestamp() <= last);
    (!changes).then(|| time_zone.to_offset(start))
}

/// Groups every counted response in the ledger.
pub fn build(
    ledger: &Ledger,
    prices: &PriceTable,
    grouping: Grouping,
    filter: &DateFilter,
) -> Report {
    let mut groups: FxHashMap<GroupKey, Group> = FxHashMap::default();
    let mut total = Sum::default();
    let mut unpriced: BTreeMap<String, u64> = BTreeMap::new();
    let mut names: Vec<&str> = vec![""; ledger.string_count()];
    let mut lookups = Lookups {
        prices,
        day_offsets: FxHashMap::default(),
        model_prices: vec![None; ledger.string_count()],
    };
    for (ids, response) in ledger.responses_with_ids() {
        let date = lookups.date(filter, response.timestamp_ms);
        if !filter.includes(date) {
            continue;
        }
        let price = lookups.price(ids.model, response.model);
        let cost = match prices.cost_at(price, &response) {
            Some(cost) => femtodollars(cost),
            None => {
                *unpriced.entry(response.model.to_owned()).or_insert(0) += 1;
                0
            }
        };
        let key = match grouping {
            Grouping::Daily => GroupKey::Day(date),
            Grouping::Monthly => GroupKey::Month(date.year(), date.month()),
            Grouping::Session => GroupKey::Text(ids.session),
            Grouping::Project => GroupKey::Text(ids.project),
            Grouping::Model => GroupKey::Text(ids.model),
        };
        for (id, name) in [
            (ids.model, response.model),
            (ids.session, response.session),
            (ids.project, response.project),
        ] {
            names[id as usize] = name;
        }
        groups
            .entry(key)
            .or_insert_with(|| Group {
                first_ms: i64::MAX,
                last_ms: i64::MIN,
                ..Group::default()
            })
            .add(ids, &response, cost);
        total.add(&response, cost);
    }
    let label = |key: &GroupKey| match key {
        GroupKey::Day(date) => date.to_string(),
        GroupKey::Month(year, month) => format!("{year:04}-{month:02}"),
        GroupKey::Text(id) => names[*id as usize].to_owned(),
    };
    let mut keyed: Vec<(GroupKey, Group)> = groups.into_iter().collect();
    keyed.sort_unstable_by_key(|(key, _)| *key);
    let mut rows: Vec<Row> = keyed
        .into_iter()
        .map(|(key, group)| Row {
            key: label(&key),
            totals: group.sum.totals(),
            models: group
                .models
                .iter()
                .map(|(model, sum)| (names[*model as usize].to_owned(), sum.totals()))
                .collect(),
            projects: group
                .projects
                .iter()
                .map(|project| names[*project as usize].to_owned())
                .collect(),
            first_ms: group.first_ms,
            last_ms: group.last_ms,
        })
        .collect();
    rows.sort_by(|a, b| order(grouping, a, b));
    Report {
        grouping,
        rows,
        totals: total.totals(),
        unpriced,
    }
}

/// Days and months stay in calendar order; sessions go by when they were last
/// active, projects and models by cost, largest first.
fn order(grouping: Grouping, a: &Row, b: &Row) -> Ordering {
    let by_key = || a.key.cmp(&b.key);
    match grouping {
        Grouping::Daily | Grouping::Monthly => Ordering::Equal,
        Grouping::Session => a.last_ms.cmp(&b.last_ms).then_with(by_key),
        Grouping::Project | Grouping::Model => {
            b.totals.cost.total_cmp(&a.totals.cost).then_with(by_key)
        }
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

    #[test]
    fn epoch_days_are_the_dates_jiff_gives() {
        let epoch = jiff::civil::date(1970, 1, 1);
        for days in (-800_000..800_000).step_by(7).chain(-1000..1000) {
            let expected = epoch.checked_add(jiff::Span::new().days(days)).ok();
            assert_eq!(date_of_epoch_day(days), expected, "day {days}");
        }
        assert_eq!(date_of_epoch_day(i64::MAX), None);
        assert_eq!(date_of_epoch_day(100_000_000), None, "past year 9999");
    }

    #[test]
    fn femtodollars_round_as_before_on_both_sides_of_the_fast_path() {
        for dollars in [
            0.0,
            1e-15,
            0.4e-15,
            0.5e-15,
            3.75,
            123.456_789,
            -2.5e-15,
            9.5e3,
            1e6,
        ] {
            assert_eq!(
                femtodollars(dollars),
                (dollars * FEMTODOLLARS).round() as i128,
                "{dollars}"
            );
        }
    }

    /// The per-day offset shortcut gives the date the zone itself gives, through
    /// daylight-saving changes, half-hour and 45-minute offsets, and a zone whose
    /// change is 30 minutes.
    #[test]
    fn local_dates_match_the_zone_through_its_transitions() {
        let prices = PriceTable::embedded();
        for zone in [
            "UTC",
            "Europe/Paris",
            "America/New_York",
            "America/St_Johns",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
            "Pacific/Apia",
        ] {
            let filter = DateFilter {
                time_zone: TimeZone::get(zone).expect("bundled zone"),
                since: None,
                until: None,
            };
            let mut lookups = Lookups {
                prices: &prices,
                day_offsets: FxHashMap::default(),
                model_prices: Vec::new(),
            };
            // 2011 holds Samoa's skipped day; 13-minute steps cross every hour.
            let from = Timestamp::from_second(1_293_840_000)
                .expect("2011")
                .as_millisecond();
            let to = Timestamp::from_second(1_330_000_000)
                .expect("2012")
                .as_millisecond();
            for timestamp_ms in (from..to).step_by(13 * 60 * 1000) {
                assert_eq!(
                    lookups.date(&filter, timestamp_ms),
                    filter.local_date(timestamp_ms),
                    "{zone} at {timestamp_ms}"
                );
            }
            let days = lookups.day_offsets.values();
            let steady_days = days.filter(|offset| offset.is_some()).count();
            let transition_days = lookups.day_offsets.len() - steady_days;
            assert!(steady_days > 400, "{zone}: {steady_days} steady days");
            let changes = !matches!(zone, "UTC" | "Asia/Kathmandu");
            assert_eq!(transition_days > 0, changes, "{zone}: {transition_days}");
        }
    }
}
