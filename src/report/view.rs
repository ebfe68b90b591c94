//! A report as the user asked for it (grouping, dates, prices, format): recalled
//! from the cache of rendered reports by the saved state's id (no ledger needed),
//! or rendered to text from a ledger, starting from the previous state's tally
//! when a run changed it.

use std::path::Path;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::session::{Ledger, LedgerDelta, PriceTable};

use super::aggregate::{build, DateFilter, Grouping, Report, Tally, TextIds};
use super::cache::{self, CacheFile, CacheKey, Rendered};
use super::json::{self, to_json_document, RowIndex};
use super::table::render;

/// How a report is to be shown: its grouping, dates, prices and format.
pub struct View {
    pub prices: PriceTable,
    pub filter: DateFilter,
    pub grouping: Grouping,
    pub json: bool,
}

/// A report, and whether it came from the cache or is to be stored in it.
pub enum Cached {
    /// In the cache: recalled from it by the saved state's id, or stored there
    /// by the run that rendered it.
    Hit(Rendered),
    /// Rendered now; to be stored under `key` once it is the report to print.
    Miss {
        rendered: Rendered,
        key: u64,
        /// The saved state it is a report of.
        state: String,
        /// That state was first saved by this run, so the cache holds nothing
        /// of it.
        new_state: bool,
        /// What is stored beside it, each under its key: the tally it was made
        /// from, encoded, and the index of its rows when it is JSON.
        beside: Vec<(u64, Vec<u8>)>,
    },
    /// Rendered now from a ledger not saved yet, with its tally encoded (and
    /// its rows indexed, when it is JSON): to be keyed once the state that
    /// holds the ledger is saved.
    Fresh {
        rendered: Rendered,
        tally: Vec<u8>,
        rows: Option<RowIndex>,
    },
    /// Rendered now, in a view that is not cached.
    Unkeyed(Rendered),
}

impl View {
    pub fn render(&self, ledger: &Ledger) -> Rendered {
        self.render_report(build(ledger, &self.prices, self.grouping, &self.filter))
            .0
    }

    /// The report as text, and the index of its rows when it is JSON.
    fn render_report(&self, report: Report) -> (Rendered, Option<RowIndex>) {
        tracing::debug!(rows = report.rows.len(), "report built");
        let (text, rows) = match self.json {
            true => {
                let document = to_json_document(&report);
                (document.text, Some(document.rows))
            }
            false => (render(&report).into_bytes(), None),
        };
        let rendered = Rendered {
            text: text.into(),
            unpriced: report.unpriced,
        };
        (rendered, rows)
    }

    /// The report of a ledger that a run changed from the saved state `from`
    /// names (if any): that state's cached report with the rows the run
    /// changed written anew, when it can be; else its cached tally brought up
    /// to date with what the run changed; else every response grouped.
    pub fn render_changed(
        &self,
        cache: &CacheFile,
        ledger: &Ledger,
        from: Option<(&str, &LedgerDelta)>,
    ) -> Cached {
        let started = std::time::Instant::now();
        if let Some(spliced) = from.and_then(|from| self.splice_changed(cache, ledger, from)) {
            tracing::debug!(elapsed = ?started.elapsed(), "report spliced");
            return spliced;
        }
        let updated = from.and_then(|(state, delta)| {
            let bytes = cache.lookup_bytes(self.tally_key(state)?)?;
            let ids = TextIds::of(ledger);
            let tally = Tally::decode(bytes, &ids, self.grouping)?;
            tally.apply(ledger, &ids, &self.prices, &self.filter, delta)
        });
        tracing::debug!(elapsed = ?started.elapsed(), from_previous = updated.is_some(), "report tallied");
        let tally =
            updated.unwrap_or_else(|| Tally::of(ledger, &self.prices, self.grouping, &self.filter));
        let report = tally.report(ledger);
        tracing::debug!(elapsed = ?started.elapsed(), "report rows named");
        let (rendered, rows) = self.render_report(report);
        tracing::debug!(elapsed = ?started.elapsed(), "report rendered");
        let tally = tally.encode(ledger);
        Self::fresh(ledger, rendered, tally, rows)
    }

    /// The cached report of the saved state `state`, with the rows the run's
    /// `delta` touched written anew and the others copied: a run that read a
    /// little writes a few rows, not a row for every day of the history. Only
    /// for JSON reports by day or month (see [`json::splice`]), and when the
    /// cache holds that report, its row index and its tally.
    fn splice_changed(
        &self,
        cache: &CacheFile,
        ledger: &Ledger,
        (state, delta): (&str, &LedgerDelta),
    ) -> Option<Cached> {
        if !self.json || !json::splices(self.grouping) {
            return None;
        }
        // As bytes: the rows copied from it are printed as they are.
        let previous = cache.lookup_bytes(self.cache_key(state)?)?;
        let index = RowIndex::decode(cache.lookup_bytes(self.rows_key(state)?)?)?;
        let tally = cache.lookup_bytes(self.tally_key(state)?)?;
        let ids = TextIds::of(ledger);
        let update = Tally::update(
            tally,
            ledger,
            &ids,
            &self.prices,
            &self.filter,
            self.grouping,
            delta,
        )?;
        let document = json::splice(
            previous,
            &index,
            self.grouping,
            &update.changed,
            &update.gone,
            &update.totals,
        )?;
        let rendered = Rendered {
            text: document.text.into(),
            unpriced: update.unpriced,
        };
        Some(Self::fresh(
            ledger,
            rendered,
            update.encoded,
            Some(document.rows),
        ))
    }

    /// A report rendered from `ledger` before it is saved, to be cached once
    /// it is.
    fn fresh(
        ledger: &Ledger,
        rendered: Rendered,
        tally: Vec<u8>,
        rows: Option<RowIndex>,
    ) -> Cached {
        // Saved records not checked before were checked as they were tallied:
        // a report missing a damaged block's is not to be kept.
        match ledger.check() {
            Ok(()) => Cached::Fresh {
                rendered,
                tally,
                rows,
            },
            Err(_) => Cached::Unkeyed(rendered),
        }
    }

    /// Whether `cache` holds this view's tally of the saved state `checksum`,
    /// for a run that changes it to start from.
    pub fn has_tally(&self, cache: &CacheFile, checksum: &str) -> bool {
        self.tally_key(checksum)
            .is_some_and(|key| cache.contains(key))
    }

    /// This view of the state saved with `checksum`, if `cache` has it: what an
    /// unchanged rerun prints, without the ledger.
    pub fn recall(&self, cache: &CacheFile, checksum: &str) -> Option<Cached> {
        let rendered = cache.lookup(self.cache_key(checksum)?)?;
        tracing::debug!("report taken from the cache");
        Some(Cached::Hit(rendered))
    }

    /// The report of the ledger saved with `checksum`, rendered (it was not
    /// [recalled](View::recall)), to be stored in the cache once printed.
    pub fn render_saved(&self, ledger: &Ledger, checksum: &str) -> Cached {
        let Some(key) = self.cache_key(checksum) else {
            return Cached::Unkeyed(self.render(ledger));
        };
        let tally = Tally::of(ledger, &self.prices, self.grouping, &self.filter);
        let (rendered, rows) = self.render_report(tally.report(ledger));
        Cached::Miss {
            rendered,
            key,
            state: checksum.to_owned(),
            new_state: false,
            beside: self.beside(checksum, tally.encode(ledger), rows),
        }
    }

    /// What is stored beside a report of the state `checksum`, each under its
    /// key: its tally, and its row index if it has one.
    fn beside(
        &self,
        checksum: &str,
        tally: Vec<u8>,
        rows: Option<RowIndex>,
    ) -> Vec<(u64, Vec<u8>)> {
        let tally = self.tally_key(checksum).map(|key| (key, tally));
        let rows = rows.zip(self.rows_key(checksum));
        let rows = rows.map(|(rows, key)| (key, rows.encode()));
        tally.into_iter().chain(rows).collect()
    }

    /// A report rendered from a ledger before it was saved, keyed now that it is
    /// the one saved with `checksum` (by this run, if `new_state`); any other
    /// report as it is.
    pub fn keyed(&self, cached: Cached, checksum: &str, new_state: bool) -> Cached {
        let Cached::Fresh {
            rendered,
            tally,
            rows,
        } = cached
        else {
            return cached;
        };
        match self.cache_key(checksum) {
            Some(key) => Cached::Miss {
                rendered,
                key,
                state: checksum.to_owned(),
                new_state,
                beside: self.beside(checksum, tally, rows),
            },
            None => Cached::Unkeyed(rendered),
        }
    }

    /// Everything the report is a function of besides the ledger's content;
    /// `None` when the running binary cannot be identified.
    fn cache_key(&self, checksum: &str) -> Option<u64> {
        let mut key = self.tally_inputs(checksum)?;
        key.add(format!("json={}", self.json).as_bytes());
        Some(key.finish())
    }

    /// The index of the rows of the report under [`View::cache_key`].
    fn rows_key(&self, checksum: &str) -> Option<u64> {
        let mut key = self.tally_inputs(checksum)?;
        key.add(format!("json={}", self.json).as_bytes())
            .add(b"rows");
        Some(key.finish())
    }

    /// What the report's tally is a function of: all but the format.
    fn tally_key(&self, checksum: &str) -> Option<u64> {
        let mut key = self.tally_inputs(checksum)?;
        key.add(b"tally");
        Some(key.finish())
    }

    fn tally_inputs(&self, checksum: &str) -> Option<CacheKey> {
        let mut key = CacheKey::for_this_build()?;
        key.add(checksum.as_bytes())
            .add(format!("{:?}", self.prices).as_bytes())
            .add(&zone_rules(&self.filter.time_zone))
            .add(format!("{:?} {:?}", self.filter.since, self.filter.until).as_bytes())
            .add(format!("{:?}", self.grouping).as_bytes());
        Some(key)
    }
}

/// What a zone does to dates, as far as a report can see: its offset from 1970
/// on and every change of it until [`RULES_UNTIL`]. A zone is keyed by its rules
/// rather than its name: a tzdata update changes a named zone's rules, and a
/// zone without a name (a copy of `/etc/localtime`, a POSIX `TZ`) has nothing
/// else to be known by.
fn zone_rules(zone: &TimeZone) -> Vec<u8> {
    let mut rules = Vec::new();
    rules.extend_from_slice(
        &zone
            .to_offset(Timestamp::UNIX_EPOCH)
            .seconds()
            .to_le_bytes(),
    );
    for transition in zone.following(Timestamp::UNIX_EPOCH) {
        let at = transition.timestamp().as_second();
        if at >= RULES_UNTIL {
            break;
        }
        rules.extend_from_slice(&at.to_le_bytes());
        rules.extend_from_slice(&transition.offset().seconds().to_le_bytes());
    }
    rules
}

/// 2100-01-01T00:00:00Z: past any timestamp a transcript holds.
const RULES_UNTIL: i64 = 4_102_444_800;

impl Cached {
    pub fn rendered(&self) -> &Rendered {
        match self {
            Cached::Hit(rendered) | Cached::Unkeyed(rendered) => rendered,
            Cached::Miss { rendered, .. } | Cached::Fresh { rendered, .. } => rendered,
        }
    }

    /// [`Cached::store`], for a report known to be the one to print.
    pub fn stored(self, state_dir: &Path) -> Cached {
        self.store(state_dir);
        match self {
            Cached::Miss { rendered, .. } => Cached::Hit(rendered),
            other => other,
        }
    }

    /// Stores the report in the cache in `state_dir` if it was not there. Only
    /// once it is the report to print: a speculation that something new made
    /// useless is not worth a write.
    pub fn store(&self, state_dir: &Path) {
        if let Cached::Miss {
            rendered,
            key,
            state,
            new_state,
            beside,
        } = self
        {
            let beside: Vec<(u64, &[u8])> = beside
                .iter()
                .map(|(key, bytes)| (*key, bytes.as_slice()))
                .collect();
            let stored = cache::store(state_dir, state, *new_state, *key, rendered, &beside);
            if let Err(error) = stored {
                tracing::debug!("caching the report: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_told_apart_by_their_rules_not_their_names() {
        let posix = |rule: &str| TimeZone::posix(rule).expect("a POSIX zone");
        let us_rules = posix("EST5EDT,M3.2.0,M11.1.0");
        assert_eq!(
            zone_rules(&us_rules),
            zone_rules(&posix("EST5EDT,M3.2.0,M11.1.0"))
        );
        assert_ne!(
            zone_rules(&us_rules),
            zone_rules(&posix("EST5EDT,M4.1.0,M10.5.0")),
            "the same offsets, changed on other days"
        );
        assert_ne!(zone_rules(&posix("EST5")), zone_rules(&posix("EST6")));
        let named = TimeZone::get("America/New_York").expect("a named zone");
        assert_ne!(
            zone_rules(&named),
            zone_rules(&us_rules),
            "1970's rules differ"
        );
        assert_eq!(
            zone_rules(&TimeZone::UTC),
            zone_rules(&TimeZone::fixed(jiff::tz::Offset::UTC)),
            "the same rules under two names"
        );
    }
}
