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
use super::json::to_json_text;
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
        /// The tally it was made from, encoded, and its key.
        tally: Option<(u64, Vec<u8>)>,
    },
    /// Rendered now from a ledger not saved yet, with its tally encoded: to be
    /// keyed once the state that holds the ledger is saved.
    Fresh { rendered: Rendered, tally: Vec<u8> },
    /// Rendered now, in a view that is not cached.
    Unkeyed(Rendered),
}

impl View {
    pub fn render(&self, ledger: &Ledger) -> Rendered {
        self.render_report(build(ledger, &self.prices, self.grouping, &self.filter))
    }

    fn render_report(&self, report: Report) -> Rendered {
        tracing::debug!(rows = report.rows.len(), "report built");
        let text = if self.json {
            to_json_text(&report)
        } else {
            render(&report)
        };
        Rendered {
            text: text.into(),
            unpriced: report.unpriced,
        }
    }

    /// The report of a ledger that a run changed from the saved state `from`
    /// names (if any): that state's cached tally brought up to date with what
    /// the run changed, when it can be; else every response grouped.
    pub fn render_changed(
        &self,
        cache: &CacheFile,
        ledger: &Ledger,
        from: Option<(&str, &LedgerDelta)>,
    ) -> Cached {
        let started = std::time::Instant::now();
        let updated = from.and_then(|(state, delta)| {
            let bytes = cache.lookup_bytes(self.tally_key(state)?)?;
            let ids = TextIds::of(ledger);
            let tally = Tally::decode(&bytes, &ids, self.grouping)?;
            tally.apply(ledger, &ids, &self.prices, &self.filter, delta)
        });
        tracing::debug!(elapsed = ?started.elapsed(), from_previous = updated.is_some(), "report tallied");
        let tally =
            updated.unwrap_or_else(|| Tally::of(ledger, &self.prices, self.grouping, &self.filter));
        let report = tally.report(ledger);
        tracing::debug!(elapsed = ?started.elapsed(), "report rows named");
        let rendered = self.render_report(report);
        tracing::debug!(elapsed = ?started.elapsed(), "report rendered");
        // Saved records not checked before were checked as they were tallied:
        // a report missing a damaged block's is not to be kept.
        if ledger.check().is_err() {
            return Cached::Unkeyed(rendered);
        }
        let tally = tally.encode(ledger);
        Cached::Fresh { rendered, tally }
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
        let rendered = self.render_report(tally.report(ledger));
        let tally = self
            .tally_key(checksum)
            .map(|tally_key| (tally_key, tally.encode(ledger)));
        Cached::Miss {
            rendered,
            key,
            state: checksum.to_owned(),
            new_state: false,
            tally,
        }
    }

    /// A report rendered from a ledger before it was saved, keyed now that it is
    /// the one saved with `checksum` (by this run, if `new_state`); any other
    /// report as it is.
    pub fn keyed(&self, cached: Cached, checksum: &str, new_state: bool) -> Cached {
        let Cached::Fresh { rendered, tally } = cached else {
            return cached;
        };
        match (self.cache_key(checksum), self.tally_key(checksum)) {
            (Some(key), Some(tally_key)) => Cached::Miss {
                rendered,
                key,
                state: checksum.to_owned(),
                new_state,
                tally: Some((tally_key, tally)),
            },
            _ => Cached::Unkeyed(rendered),
        }
    }

    /// Everything the report is a function of besides the ledger's content;
    /// `None` when the running binary cannot be identified.
    fn cache_key(&self, checksum: &str) -> Option<u64> {
        let mut key = self.tally_inputs(checksum)?;
        key.add(format!("json={}", self.json).as_bytes());
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
            tally,
        } = self
        {
            let tally = tally.as_ref().map(|(key, bytes)| (*key, bytes.as_slice()));
            let stored = cache::store(state_dir, state, *new_state, *key, rendered, tally);
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
