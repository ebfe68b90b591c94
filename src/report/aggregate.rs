//! Grouping counted responses into report rows.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

use rustc_hash::FxHashMap;

use crate::codec::{put_i64, put_section, put_u64, Decoder};
use crate::session::{
    Ledger, LedgerDelta, ModelPrice, PriceTable, Response, StringIds, StringLookup,
};

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
        [self.output, self.cache_creation, self.cache_read]
            .into_iter()
            .fold(self.input, u64::saturating_add)
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

#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
        // Saturating: counts and costs are capped where they are read, so only
        // a corpus of millions of absurd lines could reach the limits.
        let t = &response.tokens;
        self.input = self.input.saturating_add(t.input);
        self.output = self.output.saturating_add(t.output);
        self.cache_creation = self.cache_creation.saturating_add(t.cache_creation);
        self.cache_read = self.cache_read.saturating_add(t.cache_read);
        self.cost_femtodollars = self.cost_femtodollars.saturating_add(cost_femtodollars);
        self.responses += 1;
    }

    /// Takes back what [`Sum::add`] added; `None` if these sums never held it.
    fn remove(&mut self, response: &Response<'_>, cost_femtodollars: i128) -> Option<()> {
        let t = &response.tokens;
        self.input = self.input.checked_sub(t.input)?;
        self.output = self.output.checked_sub(t.output)?;
        self.cache_creation = self.cache_creation.checked_sub(t.cache_creation)?;
        self.cache_read = self.cache_read.checked_sub(t.cache_read)?;
        self.cost_femtodollars = self.cost_femtodollars.checked_sub(cost_femtodollars)?;
        self.responses = self.responses.checked_sub(1)?;
        Some(())
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
    /// The row's project; the first by name when its responses came from
    /// several.
    pub project: Option<String>,
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

#[derive(Debug, Clone, PartialEq)]
struct Group {
    sum: Sum,
    /// By model string id; a group has few models.
    models: Vec<(u32, Sum)>,
    /// Responses by project string id, in the groupings whose rows name a
    /// project (sessions); empty in the others, whose groups (a day) can hold
    /// hundreds of projects that no row shows.
    projects: FxHashMap<u32, u64>,
    first_ms: i64,
    last_ms: i64,
}

impl Default for Group {
    fn default() -> Self {
        Group {
            sum: Sum::default(),
            models: Vec::new(),
            projects: FxHashMap::default(),
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        }
    }
}

impl Group {
    /// Adds a response, and counts it in its `project` when the grouping
    /// keeps them.
    fn add(&mut self, ids: StringIds, project: Option<u32>, response: &Response<'_>, cost: i128) {
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
        if let Some(project) = project {
            *self.projects.entry(project).or_insert(0) += 1;
        }
        self.first_ms = self.first_ms.min(response.timestamp_ms);
        self.last_ms = self.last_ms.max(response.timestamp_ms);
    }

    /// Takes back what [`Group::add`] added. `None` when that cannot be done
    /// exactly: the group never held it, or it was the first or last response
    /// of a group that keeps others (their times are a minimum and a maximum,
    /// not sums).
    fn remove(
        &mut self,
        ids: StringIds,
        project: Option<u32>,
        response: &Response<'_>,
        cost: i128,
    ) -> Option<()> {
        self.sum.remove(response, cost)?;
        if self.sum.responses == 0 {
            *self = Group::default();
            return Some(());
        }
        let at = response.timestamp_ms;
        if at <= self.first_ms || at >= self.last_ms {
            return None;
        }
        let index = self
            .models
            .iter()
            .position(|(model, _)| *model == ids.model)?;
        self.models[index].1.remove(response, cost)?;
        if self.models[index].1.responses == 0 {
            self.models.remove(index);
        }
        if let Some(project) = project {
            let count = self.projects.get_mut(&project)?;
            *count -= 1;
            if *count == 0 {
                self.projects.remove(&project);
            }
        }
        Some(())
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
    Tally::of(ledger, prices, grouping, filter).report(ledger)
}

/// A report's sums by group, before they become rows: what the report cache
/// keeps beside a report's text, so that the next state's report is this tally
/// less the records a run replaced plus those it added, not a grouping of every
/// response again. Text is grouped by ledger string id.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    grouping: Grouping,
    groups: FxHashMap<GroupKey, Group>,
    total: Sum,
    /// Responses without a price, by model string id.
    unpriced: FxHashMap<u32, u64>,
}

/// A ledger's string ids by text: what a cached tally's text and a delta's
/// strings are mapped onto. The ledger's own index when interning built it (a
/// run that read new lines has), else a map built once per report.
pub enum TextIds<'a> {
    Interned(StringLookup<'a>),
    Built(FxHashMap<&'a str, u32>),
}

impl<'a> TextIds<'a> {
    pub fn of(ledger: &'a Ledger) -> TextIds<'a> {
        match ledger.string_lookup() {
            Some(lookup) => TextIds::Interned(lookup),
            None => TextIds::Built(ledger.strings().zip(0..).collect()),
        }
    }

    fn get(&self, text: &str) -> Option<u32> {
        match self {
            TextIds::Interned(lookup) => lookup.get(text),
            TextIds::Built(ids) => ids.get(text).copied(),
        }
    }
}

/// Where a response goes in a tally, and what it costs; `None` for a response
/// outside the dates.
struct Placement {
    key: GroupKey,
    cost: i128,
    priced: bool,
}

impl<'p> Lookups<'p> {
    fn new(prices: &'p PriceTable, ledger: &Ledger) -> Lookups<'p> {
        Lookups {
            prices,
            day_offsets: FxHashMap::default(),
            model_prices: vec![None; ledger.string_count()],
        }
    }

    fn place(
        &mut self,
        grouping: Grouping,
        filter: &DateFilter,
        ids: StringIds,
        response: &Response<'_>,
    ) -> Option<Placement> {
        let date = self.date(filter, response.timestamp_ms);
        if !filter.includes(date) {
            return None;
        }
        let price = self.price(ids.model, response.model);
        let cost = self.prices.cost_at(price, response);
        let key = match grouping {
            Grouping::Daily => GroupKey::Day(date),
            Grouping::Monthly => GroupKey::Month(date.year(), date.month()),
            Grouping::Session => GroupKey::Text(ids.session),
            Grouping::Project => GroupKey::Text(ids.project),
            Grouping::Model => GroupKey::Text(ids.model),
        };
        Some(Placement {
            key,
            cost: cost.map_or(0, femtodollars),
            priced: cost.is_some(),
        })
    }
}

impl Tally {
    fn empty(grouping: Grouping) -> Tally {
        Tally {
            grouping,
            groups: FxHashMap::default(),
            total: Sum::default(),
            unpriced: FxHashMap::default(),
        }
    }

    /// Every counted response in the ledger, grouped.
    pub fn of(
        ledger: &Ledger,
        prices: &PriceTable,
        grouping: Grouping,
        filter: &DateFilter,
    ) -> Tally {
        let mut tally = Tally::empty(grouping);
        let mut lookups = Lookups::new(prices, ledger);
        for (ids, response) in ledger.responses_with_ids() {
            if let Some(placement) = lookups.place(grouping, filter, ids, &response) {
                tally.add(ids, &response, &placement);
            }
        }
        tally
    }

    /// The project a response is counted in, in the groupings whose rows
    /// name one.
    fn project(&self, ids: StringIds) -> Option<u32> {
        (self.grouping == Grouping::Session).then_some(ids.project)
    }

    fn add(&mut self, ids: StringIds, response: &Response<'_>, placement: &Placement) {
        if !placement.priced {
            *self.unpriced.entry(ids.model).or_insert(0) += 1;
        }
        let project = self.project(ids);
        self.groups
            .entry(placement.key)
            .or_default()
            .add(ids, project, response, placement.cost);
        self.total.add(response, placement.cost);
    }

    fn remove(
        &mut self,
        ids: StringIds,
        response: &Response<'_>,
        placement: &Placement,
    ) -> Option<()> {
        if !placement.priced {
            let count = self.unpriced.get_mut(&ids.model)?;
            *count = count.checked_sub(1)?;
            if *count == 0 {
                self.unpriced.remove(&ids.model);
            }
        }
        let project = self.project(ids);
        let group = self.groups.get_mut(&placement.key)?;
        group.remove(ids, project, response, placement.cost)?;
        if group.sum.responses == 0 {
            self.groups.remove(&placement.key);
        }
        self.total.remove(response, placement.cost)
    }

    /// Brings a tally of the ledger as it was up to date with what `delta`
    /// changed in it, `ledger` being the result and `ids` its string ids.
    /// `None` when that cannot be done exactly (see `Group::remove`); then the
    /// tally is to be built anew.
    pub fn apply(
        mut self,
        ledger: &Ledger,
        ids: &TextIds<'_>,
        prices: &PriceTable,
        filter: &DateFilter,
        delta: &LedgerDelta,
    ) -> Option<Tally> {
        let changes = Change::place_all(self.grouping, ledger, ids, prices, filter, delta)?;
        self.apply_changes(&changes)?;
        Some(self)
    }

    fn apply_changes(&mut self, changes: &[Change<'_>]) -> Option<()> {
        for change in changes {
            match change.removing {
                true => self.remove(change.ids, &change.response, &change.placement)?,
                false => self.add(change.ids, &change.response, &change.placement),
            }
        }
        Some(())
    }

    /// [`Tally::apply`] on the tally `encoded` as [`Tally::encode`] wrote it,
    /// decoding only the groups `delta` touches: what a run that read a little
    /// needs, whatever the history the rest of the tally sums up.
    pub fn update(
        encoded: &[u8],
        ledger: &Ledger,
        ids: &TextIds<'_>,
        prices: &PriceTable,
        filter: &DateFilter,
        grouping: Grouping,
        delta: &LedgerDelta,
    ) -> Option<TallyUpdate> {
        let encoded = EncodedTally::parse(encoded)?;
        let changes = Change::place_all(grouping, ledger, ids, prices, filter, delta)?;
        let name = |id: u32| ledger.string(id);
        let touched: FxHashMap<Vec<u8>, GroupKey> = changes
            .iter()
            .map(|change| {
                (
                    key_bytes(&change.placement.key, &name),
                    change.placement.key,
                )
            })
            .collect();
        let mut tally = Tally {
            grouping,
            groups: FxHashMap::default(),
            total: encoded.total,
            unpriced: encoded.unpriced_ids(ids)?,
        };
        let mut untouched = Vec::with_capacity(encoded.groups.len());
        for (key, body) in encoded.groups {
            match touched.get(key) {
                Some(group_key) => {
                    tally.groups.insert(*group_key, decode_group(body, ids)?);
                }
                None => untouched.push((key, body)),
            }
        }
        tally.apply_changes(&changes)?;
        let mut out = tally.encode_head(&name, untouched.len() + tally.groups.len());
        for (key, body) in untouched {
            put_section(&mut out, key);
            put_section(&mut out, body);
        }
        tally.encode_groups(&mut out, &name);
        let mut changed: Vec<Row> = tally
            .groups
            .iter()
            .map(|(key, group)| row(key, group, &name))
            .collect();
        changed.sort_by(|a, b| order(grouping, a, b).then_with(|| a.key.cmp(&b.key)));
        let gone = touched
            .values()
            .filter(|key| !tally.groups.contains_key(key))
            .map(|key| label(key, &name))
            .collect();
        Some(TallyUpdate {
            encoded: out,
            changed,
            gone,
            totals: tally.total.totals(),
            unpriced: tally.unpriced_by_name(&name),
        })
    }

    /// The tally with its text as text, not ids: ids are the ledger's, and a
    /// ledger saved anew numbers its strings anew. The totals come first, then
    /// each group as its key and its sums, two sections: [`Tally::update`]
    /// finds a group by its key's bytes and copies the others as they are.
    pub fn encode(&self, ledger: &Ledger) -> Vec<u8> {
        let name = |id: u32| ledger.string(id);
        let mut out = self.encode_head(&name, self.groups.len());
        self.encode_groups(&mut out, &name);
        out
    }

    fn encode_head<'a>(&self, name: &impl Fn(u32) -> &'a str, groups: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + groups * 160);
        put_sum(&mut out, &self.total);
        put_counts(&mut out, &counts_of(&self.unpriced), name);
        put_u64(&mut out, groups as u64);
        out
    }

    fn encode_groups<'a>(&self, out: &mut Vec<u8>, name: &impl Fn(u32) -> &'a str) {
        for (key, group) in &self.groups {
            put_section(out, &key_bytes(key, name));
            put_section(out, &group_bytes(group, name));
        }
    }

    /// What [`Tally::encode`] wrote, with its text mapped to a ledger's `ids`;
    /// `None` if it is damaged or names text the ledger does not hold.
    pub fn decode(bytes: &[u8], ids: &TextIds<'_>, grouping: Grouping) -> Option<Tally> {
        let encoded = EncodedTally::parse(bytes)?;
        let mut tally = Tally {
            grouping,
            groups: FxHashMap::default(),
            total: encoded.total,
            unpriced: encoded.unpriced_ids(ids)?,
        };
        for (key, body) in encoded.groups {
            tally
                .groups
                .insert(decode_key(key, ids)?, decode_group(body, ids)?);
        }
        Some(tally)
    }

    /// The report's rows, named from `ledger`'s strings.
    pub fn report(&self, ledger: &Ledger) -> Report {
        let name = |id: u32| ledger.string(id);
        let mut keyed: Vec<(&GroupKey, &Group)> = self.groups.iter().collect();
        keyed.sort_unstable_by_key(|(key, _)| **key);
        let mut rows: Vec<Row> = keyed
            .into_iter()
            .map(|(key, group)| row(key, group, &name))
            .collect();
        rows.sort_by(|a, b| order(self.grouping, a, b));
        Report {
            grouping: self.grouping,
            rows,
            totals: self.total.totals(),
            unpriced: self.unpriced_by_name(&name),
        }
    }

    fn unpriced_by_name<'a>(&self, name: &impl Fn(u32) -> &'a str) -> BTreeMap<String, u64> {
        self.unpriced
            .iter()
            .map(|(model, count)| (name(*model).to_owned(), *count))
            .collect()
    }
}

/// What [`Tally::update`] made of a cached tally: the tally, encoded, and the
/// rows it changed, for a report to be spliced rather than written whole.
#[derive(Debug)]
pub struct TallyUpdate {
    /// The updated tally, as [`Tally::encode`] writes it; the groups the run
    /// did not touch are their old bytes.
    pub encoded: Vec<u8>,
    /// The rows of the touched groups that still hold responses, in report
    /// order.
    pub changed: Vec<Row>,
    /// The keys of the touched rows left without a response.
    pub gone: Vec<String>,
    pub totals: Totals,
    pub unpriced: BTreeMap<String, u64>,
}

/// One response a run added to or took from the ledger, and where it goes.
struct Change<'r> {
    removing: bool,
    ids: StringIds,
    response: Response<'r>,
    placement: Placement,
}

impl<'r> Change<'r> {
    /// Every response `delta` replaced (to be taken back) or added, placed;
    /// `None` if one names text `ids` does not know.
    fn place_all(
        grouping: Grouping,
        ledger: &Ledger,
        ids: &TextIds<'_>,
        prices: &PriceTable,
        filter: &DateFilter,
        delta: &'r LedgerDelta,
    ) -> Option<Vec<Change<'r>>> {
        let mut lookups = Lookups::new(prices, ledger);
        let mut changes = Vec::new();
        for (part, removing) in [(&delta.replaced, true), (&delta.added, false)] {
            for (_, response) in part.responses() {
                let ids = StringIds {
                    model: ids.get(response.model)?,
                    session: ids.get(response.session)?,
                    project: ids.get(response.project)?,
                };
                if let Some(placement) = lookups.place(grouping, filter, ids, &response) {
                    changes.push(Change {
                        removing,
                        ids,
                        response,
                        placement,
                    });
                }
            }
        }
        Some(changes)
    }
}

/// A tally as [`Tally::encode`] wrote it, each group's key and sums found but
/// not decoded.
struct EncodedTally<'a> {
    total: Sum,
    unpriced: Vec<(&'a str, u64)>,
    groups: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> EncodedTally<'a> {
    fn parse(bytes: &'a [u8]) -> Option<EncodedTally<'a>> {
        let mut input = Decoder::new(bytes);
        let total = take_sum(&mut input)?;
        let unpriced = (0..input.count(16).ok()?)
            .map(|_| Some((input.text().ok()?, input.u64().ok()?)))
            .collect::<Option<Vec<_>>>()?;
        let groups = (0..input.count(16).ok()?)
            .map(|_| Some((input.section().ok()?, input.section().ok()?)))
            .collect::<Option<Vec<_>>>()?;
        input.finish().ok()?;
        Some(EncodedTally {
            total,
            unpriced,
            groups,
        })
    }

    fn unpriced_ids(&self, ids: &TextIds<'_>) -> Option<FxHashMap<u32, u64>> {
        self.unpriced
            .iter()
            .map(|&(model, count)| Some((ids.get(model)?, count)))
            .collect()
    }
}

/// A group's key as a tally's encoding holds it: text as text.
fn key_bytes<'a>(key: &GroupKey, name: &impl Fn(u32) -> &'a str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    match key {
        GroupKey::Day(date) => {
            out.push(0);
            put_i64(&mut out, i64::from(date.year()));
            put_i64(&mut out, i64::from(date.month()));
            put_i64(&mut out, i64::from(date.day()));
        }
        GroupKey::Month(year, month) => {
            out.push(1);
            put_i64(&mut out, i64::from(*year));
            put_i64(&mut out, i64::from(*month));
        }
        GroupKey::Text(id) => {
            out.push(2);
            put_section(&mut out, name(*id).as_bytes());
        }
    }
    out
}

fn decode_key(bytes: &[u8], ids: &TextIds<'_>) -> Option<GroupKey> {
    let mut input = Decoder::new(bytes);
    let small = |input: &mut Decoder<'_>| -> Option<i8> { i8::try_from(input.i64().ok()?).ok() };
    let key = match input.u8().ok()? {
        0 => {
            let year = i16::try_from(input.i64().ok()?).ok()?;
            GroupKey::Day(Date::new(year, small(&mut input)?, small(&mut input)?).ok()?)
        }
        1 => GroupKey::Month(i16::try_from(input.i64().ok()?).ok()?, small(&mut input)?),
        2 => GroupKey::Text(ids.get(input.text().ok()?)?),
        _ => return None,
    };
    input.finish().ok()?;
    Some(key)
}

fn group_bytes<'a>(group: &Group, name: &impl Fn(u32) -> &'a str) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    put_sum(&mut out, &group.sum);
    put_i64(&mut out, group.first_ms);
    put_i64(&mut out, group.last_ms);
    put_u64(&mut out, group.models.len() as u64);
    for (model, sum) in &group.models {
        put_section(&mut out, name(*model).as_bytes());
        put_sum(&mut out, sum);
    }
    put_counts(&mut out, &counts_of(&group.projects), name);
    out
}

fn decode_group(bytes: &[u8], ids: &TextIds<'_>) -> Option<Group> {
    let mut input = Decoder::new(bytes);
    let id = |input: &mut Decoder<'_>| -> Option<u32> { ids.get(input.text().ok()?) };
    let mut group = Group {
        sum: take_sum(&mut input)?,
        first_ms: input.i64().ok()?,
        last_ms: input.i64().ok()?,
        ..Group::default()
    };
    for _ in 0..input.count(8).ok()? {
        let model = id(&mut input)?;
        group.models.push((model, take_sum(&mut input)?));
    }
    for _ in 0..input.count(16).ok()? {
        let project = id(&mut input)?;
        group.projects.insert(project, input.u64().ok()?);
    }
    input.finish().ok()?;
    Some(group)
}

/// A group's row label: the date, the month, or the text it is grouped by.
fn label<'a>(key: &GroupKey, name: &impl Fn(u32) -> &'a str) -> String {
    match key {
        GroupKey::Day(date) => date.to_string(),
        GroupKey::Month(year, month) => format!("{year:04}-{month:02}"),
        GroupKey::Text(id) => name(*id).to_owned(),
    }
}

fn row<'a>(key: &GroupKey, group: &Group, name: &impl Fn(u32) -> &'a str) -> Row {
    Row {
        key: label(key, name),
        totals: group.sum.totals(),
        models: group
            .models
            .iter()
            .map(|(model, sum)| (name(*model).to_owned(), sum.totals()))
            .collect(),
        project: group
            .projects
            .keys()
            .map(|project| name(*project))
            .min()
            .map(str::to_owned),
        first_ms: group.first_ms,
        last_ms: group.last_ms,
    }
}

fn counts_of(counts: &FxHashMap<u32, u64>) -> Vec<(u32, u64)> {
    counts.iter().map(|(&id, &count)| (id, count)).collect()
}

fn put_counts<'a>(out: &mut Vec<u8>, counts: &[(u32, u64)], name: &impl Fn(u32) -> &'a str) {
    put_u64(out, counts.len() as u64);
    for &(id, count) in counts {
        put_section(out, name(id).as_bytes());
        put_u64(out, count);
    }
}

fn put_sum(out: &mut Vec<u8>, sum: &Sum) {
    for value in [
        sum.input,
        sum.output,
        sum.cache_creation,
        sum.cache_read,
        sum.responses,
    ] {
        put_u64(out, value);
    }
    // Two halves: the codec has no 128-bit numbers.
    put_u64(out, sum.cost_femtodollars as u64);
    put_u64(out, (sum.cost_femtodollars >> 64) as u64);
}

fn take_sum(input: &mut Decoder<'_>) -> Option<Sum> {
    let mut value = || input.u64().ok();
    let (input_tokens, output, cache_creation, cache_read, responses) =
        (value()?, value()?, value()?, value()?, value()?);
    let (low, high) = (value()?, value()?);
    Some(Sum {
        input: input_tokens,
        output,
        cache_creation,
        cache_read,
        cost_femtodollars: (i128::from(high as i64) << 64) | i128::from(low),
        responses,
    })
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
    use crate::report::RowIndex;
    use crate::session::{LedgerDelta, Observation, ResponseKey, TokenCounts};

    /// A response of `output` tokens at `time` (RFC 3339).
    fn observation<'a>(
        output: u64,
        time: &str,
        model: &'a str,
        project: &'a str,
    ) -> Observation<'a> {
        Observation {
            tokens: TokenCounts {
                output,
                ..TokenCounts::default()
            },
            timestamp_ms: crate::transcript::parse_timestamp_ms(time).expect("ts"),
            model,
            session: "s",
            project,
            sidechain: false,
            fast: false,
            us_only: false,
            cost_usd: None,
        }
    }

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
            ledger.observe(
                ResponseKey::of(id, None),
                &observation(output, ts, model, "p"),
            );
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

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    fn observe_random(ledger: &mut Ledger, rng: &mut Rng, id: u64) {
        let models = [
            "claude-sonnet-4-20250514",
            "claude-opus-4-1-20250805",
            "mystery-model",
        ];
        let model = models[rng.below(3) as usize];
        let session = format!("s{}", rng.below(7));
        let project = format!("p{}", rng.below(3));
        let observation = Observation {
            tokens: TokenCounts {
                input: rng.below(50),
                output: 1 + rng.below(2000),
                cache_creation: rng.below(5000),
                cache_read: rng.below(90_000),
                ..TokenCounts::default()
            },
            // Twelve days, so most responses are neither first nor last of theirs.
            timestamp_ms: 1_750_000_000_000 + rng.below(12 * 86_400_000) as i64,
            model,
            session: &session,
            project: &project,
            sidechain: false,
            fast: false,
            us_only: false,
            cost_usd: None,
        };
        ledger.observe(ResponseKey::of(&format!("msg_{id}"), None), &observation);
    }

    fn report_json(tally: &Tally, ledger: &Ledger) -> serde_json::Value {
        crate::report::to_json(&tally.report(ledger))
    }

    /// A tally brought up to date with what a merge changed equals a tally of
    /// the merged ledger, in every grouping; after a trip through its encoding
    /// too.
    #[test]
    fn a_tally_plus_a_delta_equals_a_tally_of_the_result() {
        let prices = PriceTable::embedded();
        let filter = filter("Europe/Paris");
        let mut applied_somewhere = 0;
        for seed in 1..=12u64 {
            let mut rng = Rng(seed * 0x9E37_79B9);
            let mut first = Ledger::new();
            for id in 0..300 {
                observe_random(&mut first, &mut rng, id);
            }
            let ledger = Ledger::decode(&first.encode().expect("encode")).expect("decode");
            let mut later = Ledger::new();
            for _ in 0..80 {
                // Mostly saved responses again (larger or not), some new ones.
                let id = rng.below(400);
                observe_random(&mut later, &mut rng, id);
            }
            for grouping in [
                Grouping::Daily,
                Grouping::Monthly,
                Grouping::Session,
                Grouping::Project,
                Grouping::Model,
            ] {
                let before = Tally::of(&ledger, &prices, grouping, &filter);
                let encoded = before.encode(&ledger);
                let mut merged = Ledger::decode(&ledger.encode().expect("encode")).expect("decode");
                let mut delta = LedgerDelta::default();
                merged.merge_recording(&later, &mut delta);
                assert!(
                    !delta.replaced.is_empty(),
                    "seed {seed}: something replaced"
                );
                let expected = Tally::of(&merged, &prices, grouping, &filter);
                let ids = TextIds::of(&merged);
                // The ledger's own index, which a changed run's report looks up in.
                assert!(matches!(ids, TextIds::Interned(_)), "seed {seed}");
                let decoded = Tally::decode(&encoded, &ids, grouping).expect("decode");
                if let Some(updated) = decoded.apply(&merged, &ids, &prices, &filter, &delta) {
                    applied_somewhere += 1;
                    assert_eq!(
                        report_json(&updated, &merged),
                        report_json(&expected, &merged),
                        "seed {seed}, {grouping:?}"
                    );
                    let again = Tally::decode(&updated.encode(&merged), &ids, grouping);
                    let again = again.expect("round trip");
                    assert_eq!(
                        report_json(&again, &merged),
                        report_json(&expected, &merged)
                    );
                    let previous = before.report(&ledger);
                    let update =
                        Tally::update(&encoded, &merged, &ids, &prices, &filter, grouping, &delta)
                            .expect("update where apply succeeded");
                    assert_updated_as_whole(&previous, &update, &expected, &merged, &ids);
                }
            }
        }
        // The others replaced a group's first or last response (see below).
        assert!(applied_somewhere >= 20, "applied {applied_somewhere} of 60");
    }

    /// `update`, decoding only the groups it touched, agrees with a whole
    /// tally of the result: its encoding decodes to it, and for days and
    /// months its rows spliced into the earlier document are the document
    /// written whole, byte for byte.
    fn assert_updated_as_whole(
        previous: &Report,
        update: &TallyUpdate,
        expected: &Tally,
        merged: &Ledger,
        ids: &TextIds<'_>,
    ) {
        let grouping = expected.grouping;
        let decoded = Tally::decode(&update.encoded, ids, grouping).expect("decode update");
        assert_eq!(
            report_json(&decoded, merged),
            report_json(expected, merged),
            "{grouping:?}"
        );
        let whole = crate::report::to_json_document(&expected.report(merged));
        let earlier = crate::report::to_json_document(previous);
        let index = RowIndex::decode(&earlier.rows.encode()).expect("index round trip");
        assert_eq!(index, earlier.rows);
        let spliced = crate::report::splice(
            &earlier.text,
            &index,
            grouping,
            &update.changed,
            &update.gone,
            &update.totals,
        );
        match grouping {
            Grouping::Daily | Grouping::Monthly => {
                let spliced = spliced.expect("days and months splice");
                assert_eq!(
                    String::from_utf8_lossy(&spliced.text),
                    String::from_utf8_lossy(&whole.text),
                    "{grouping:?}"
                );
                assert_eq!(spliced.rows, whole.rows, "{grouping:?}");
            }
            _ => assert!(spliced.is_none(), "{grouping:?} is written whole"),
        }
    }

    /// Removing a group's first or last response cannot be done exactly: the
    /// tally says so rather than keep a wrong time.
    #[test]
    fn a_replaced_first_or_last_response_asks_for_a_full_tally() {
        let prices = PriceTable::embedded();
        let ledger = ledger();
        let tally = Tally::of(&ledger, &prices, Grouping::Session, &filter("UTC"));
        let mut merged = Ledger::decode(&ledger.encode().expect("encode")).expect("decode");
        let mut later = Ledger::new();
        let grown = observation(
            500,
            "2025-05-21T00:00:00.000Z",
            "claude-sonnet-4-20250514",
            "p",
        );
        // "a" is the session's first response.
        later.observe(ResponseKey::of("a", None), &grown);
        let mut delta = LedgerDelta::default();
        merged.merge_recording(&later, &mut delta);
        assert_eq!(delta.replaced.len(), 1);
        assert!(tally
            .apply(
                &merged,
                &TextIds::of(&merged),
                &prices,
                &filter("UTC"),
                &delta
            )
            .is_none());
    }

    /// A response that moved to another project takes its old project out of
    /// the session's projects, when it was the only one there.
    #[test]
    fn a_replaced_response_leaves_its_old_project_and_model() {
        let prices = PriceTable::embedded();
        let response = |output, time: &str, model, project| {
            observation(
                output,
                &format!("2025-05-20T{time}:00.000Z"),
                model,
                project,
            )
        };
        let sonnet = "claude-sonnet-4-20250514";
        let mut ledger = Ledger::new();
        ledger.observe(
            ResponseKey::of("a", None),
            &response(1, "01:00", sonnet, "p1"),
        );
        ledger.observe(
            ResponseKey::of("m", None),
            &response(2, "12:00", "mystery", "p2"),
        );
        ledger.observe(
            ResponseKey::of("z", None),
            &response(3, "23:00", sonnet, "p1"),
        );
        let tally = Tally::of(&ledger, &prices, Grouping::Session, &filter("UTC"));
        let mut later = Ledger::new();
        later.observe(
            ResponseKey::of("m", None),
            &response(9, "12:00", sonnet, "p3"),
        );
        let mut delta = LedgerDelta::default();
        ledger.merge_recording(&later, &mut delta);
        let updated = tally
            .apply(
                &ledger,
                &TextIds::of(&ledger),
                &prices,
                &filter("UTC"),
                &delta,
            )
            .expect("the middle response");
        let names: Vec<&str> = ledger.strings().collect();
        let group = updated.groups.values().next().expect("one session");
        let mut projects: Vec<&str> = group
            .projects
            .keys()
            .map(|&id| names[id as usize])
            .collect();
        projects.sort_unstable();
        assert_eq!(projects, ["p1", "p3"]);
        let report = updated.report(&ledger);
        assert_eq!(report.rows[0].project.as_deref(), Some("p1"));
        let models: Vec<&str> = report.rows[0].models.keys().map(String::as_str).collect();
        assert_eq!(models, [sonnet]);
        assert!(report.unpriced.is_empty(), "{:?}", report.unpriced);
        assert_eq!(report.totals.output, 13);
    }

    #[test]
    fn a_damaged_tally_or_one_naming_unknown_text_is_not_decoded() {
        let prices = PriceTable::embedded();
        let ledger = ledger();
        let tally = Tally::of(&ledger, &prices, Grouping::Model, &filter("UTC"));
        let bytes = tally.encode(&ledger);
        let ids = TextIds::of(&ledger);
        let back = Tally::decode(&bytes, &ids, Grouping::Model).expect("decode");
        assert_eq!(back, tally);
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(Tally::decode(&bytes[..cut], &ids, Grouping::Model).is_none());
        }
        let empty = Ledger::new();
        assert!(Tally::decode(&bytes, &TextIds::of(&empty), Grouping::Model).is_none());
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
