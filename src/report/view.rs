//! A report as the user asked for it (grouping, dates, prices, format), rendered
//! to text from a ledger, through the cache of rendered reports when the ledger is
//! the one saved in the state directory.

use std::path::Path;

use crate::session::{Ledger, PriceTable};

use super::aggregate::{build, DateFilter, Grouping};
use super::cache::{self, CacheKey, Rendered};
use super::json::to_json_text;
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
    /// Rendered now; to be stored under `key` once it is printed.
    Miss {
        rendered: Rendered,
        key: u64,
        /// The saved state it is a report of.
        state: String,
    },
    /// Rendered now, in a view that is not cached.
    Unkeyed(Rendered),
}

impl View {
    pub fn render(&self, ledger: &Ledger) -> Result<Rendered, serde_json::Error> {
        let report = build(ledger, &self.prices, self.grouping, &self.filter);
        tracing::debug!(rows = report.rows.len(), "report built");
        let text = if self.json {
            to_json_text(&report)?
        } else {
            render(&report)
        };
        Ok(Rendered {
            text: text.into(),
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
        Ok(Cached::Miss {
            rendered,
            key,
            state: checksum.to_owned(),
        })
    }

    /// A report rendered from a ledger before it was saved, keyed now that it is
    /// the one saved with `checksum`.
    pub fn keyed(&self, rendered: Rendered, checksum: &str) -> Cached {
        match self.cache_key(checksum) {
            Some(key) => Cached::Miss {
                rendered,
                key,
                state: checksum.to_owned(),
            },
            None => Cached::Unkeyed(rendered),
        }
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
    pub fn rendered(&self) -> &Rendered {
        match self {
            Cached::Hit(rendered) | Cached::Unkeyed(rendered) => rendered,
            Cached::Miss { rendered, .. } => rendered,
        }
    }

    /// Stores the report in the cache in `state_dir` if it was not there. Only
    /// once printed: a speculation that something new made useless is not worth
    /// a write, and the user need not wait for it.
    pub fn store(&self, state_dir: &Path) {
        if let Cached::Miss {
            rendered,
            key,
            state,
        } = self
        {
            if let Err(error) = cache::store(state_dir, state, *key, rendered) {
                tracing::debug!("caching the report: {error}");
            }
        }
    }
}
