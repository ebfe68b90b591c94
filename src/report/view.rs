//! A report as the user asked for it (grouping, dates, prices, format), rendered
//! to text from a ledger, through the cache of rendered reports when the ledger is
//! the one saved in the state directory.

use std::path::Path;

use crate::session::{Ledger, PriceTable};

use super::aggregate::{build, DateFilter, Grouping};
use super::cache::{self, CacheKey, Rendered};
use super::json::to_json;
use super::table::render;

/// How a report is to be shown: its grouping, dates, prices and format.
pub struct View {
    pub prices: PriceTable,
    pub filter: DateFilter,
    pub grouping: Grouping,
    pub json: bool,
}

/// A report rendered from the saved ledger, and whether the cache had it.
pub enum Cached {
    Hit(Rendered),
    /// Rendered now; to be stored under `key` if it is printed.
    Miss {
        rendered: Rendered,
        key: u64,
    },
    /// Rendered now, in a view that is not cached.
    Unkeyed(Rendered),
}

impl View {
    pub fn render(&self, ledger: &Ledger) -> Result<Rendered, serde_json::Error> {
        let report = build(ledger, &self.prices, self.grouping, &self.filter);
        tracing::debug!(rows = report.rows.len(), "report built");
        let text = if self.json {
            format!("{}\n", serde_json::to_string_pretty(&to_json(&report))?)
        } else {
            render(&report)
        };
        Ok(Rendered {
            text,
            unpriced: report.unpriced,
        })
    }

    /// The report of the ledger saved with `checksum`: from the report cache in
    /// `state_dir` when this view of it was rendered before.
    pub fn render_from_cache(
        &self,
        state_dir: &Path,
        ledger: &Ledger,
        checksum: &str,
    ) -> Result<Cached, serde_json::Error> {
        let Some(key) = self.cache_key(checksum) else {
            return self.render(ledger).map(Cached::Unkeyed);
        };
        if let Some(rendered) = cache::lookup(state_dir, key) {
            tracing::debug!("report taken from the cache");
            return Ok(Cached::Hit(rendered));
        }
        let rendered = self.render(ledger)?;
        Ok(Cached::Miss { rendered, key })
    }

    /// Everything the report is a function of besides the ledger's content;
    /// `None` for a time zone without a name, which could change unseen.
    fn cache_key(&self, checksum: &str) -> Option<u64> {
        let zone = self.filter.time_zone.iana_name()?;
        let mut key = CacheKey::new();
        key.add(checksum.as_bytes())
            .add(format!("{:?}", self.prices).as_bytes())
            .add(zone.as_bytes())
            .add(format!("{:?} {:?}", self.filter.since, self.filter.until).as_bytes())
            .add(format!("{:?} json={}", self.grouping, self.json).as_bytes());
        Some(key.finish())
    }
}

impl Cached {
    /// The report, stored in the cache in `state_dir` if it was not there. Only
    /// now: a speculation that something new made useless is not worth a write.
    pub fn into_rendered(self, state_dir: &Path) -> Rendered {
        match self {
            Cached::Hit(rendered) | Cached::Unkeyed(rendered) => rendered,
            Cached::Miss { rendered, key } => {
                if let Err(error) = cache::store(state_dir, key, &rendered) {
                    tracing::debug!("caching the report: {error}");
                }
                rendered
            }
        }
    }
}
