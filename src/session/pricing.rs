//! Prices: an embedded table of Anthropic list prices (PRICING.md), overridable from
//! config, and the cost of one counted response.
//!
//! Rules, each a deliberate choice:
//! - 5-minute and 1-hour cache writes are priced apart (1.25× and 2× input).
//! - Models with a long-context tier (Sonnet 4 and 4.5) bill *every* token of a
//!   request at the tier's rates when its total input (input + cache writes + cache
//!   reads) exceeds 200,000 tokens, as Anthropic bills; ccusage instead tiers each
//!   category separately above 200k.
//! - `inference_geo == "us"` costs 1.1×; `speed == "fast"` multiplies by the
//!   model's fast-mode factor; web searches cost $10 per thousand.
//! - A pre-1.0.9 line's own `costUSD` is used when present, as ccusage's default
//!   `auto` mode does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ledger::Response;

const LONG_CONTEXT_THRESHOLD: u64 = 200_000;
const US_ONLY_MULTIPLIER: f64 = 1.1;
const WEB_SEARCH_USD: f64 = 0.01;

/// USD per million tokens for each kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
}

impl Rates {
    /// Rates from input and output prices with Anthropic's cache multipliers.
    pub const fn standard(input: f64, output: f64) -> Rates {
        Rates {
            input,
            output,
            cache_write_5m: input * 1.25,
            cache_write_1h: input * 2.0,
            cache_read: input * 0.1,
        }
    }
}

/// The price of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub rates: Rates,
    /// Rates for requests whose total input exceeds 200,000 tokens, if different.
    pub above_200k: Option<Rates>,
    pub fast_multiplier: f64,
}

/// A price from the config file: input and output are required, the cache rates
/// default to Anthropic's multipliers of the input price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: Option<f64>,
    pub cache_write_1h: Option<f64>,
    pub cache_read: Option<f64>,
    pub above_200k: Option<Box<PriceOverride>>,
    pub fast_multiplier: Option<f64>,
}

impl PriceOverride {
    fn rates(&self) -> Rates {
        let standard = Rates::standard(self.input, self.output);
        Rates {
            cache_write_5m: self.cache_write_5m.unwrap_or(standard.cache_write_5m),
            cache_write_1h: self.cache_write_1h.unwrap_or(standard.cache_write_1h),
            cache_read: self.cache_read.unwrap_or(standard.cache_read),
            ..standard
        }
    }

    /// The first field that is not a usable price, and why: a price is a
    /// number of USD per million tokens from 0 to `MAX_PRICE`; a tier has no
    /// tier or fast multiplier of its own.
    pub fn problem(&self) -> Option<(String, String)> {
        const PRICE: (f64, &str) = (MAX_PRICE, "a price in USD per million tokens");
        let fields = [
            ("input", Some(self.input), PRICE),
            ("output", Some(self.output), PRICE),
            ("cache_write_5m", self.cache_write_5m, PRICE),
            ("cache_write_1h", self.cache_write_1h, PRICE),
            ("cache_read", self.cache_read, PRICE),
            (
                "fast_multiplier",
                self.fast_multiplier,
                (MAX_FAST_MULTIPLIER, "a multiplier"),
            ),
        ];
        let own = fields.into_iter().find_map(|(field, value, (most, what))| {
            let value = value?;
            (!(0.0..=most).contains(&value)).then(|| {
                let why = format!("{value} is not {what} from 0 to {most}");
                (field.to_owned(), why)
            })
        });
        own.or_else(|| {
            let tier = self.above_200k.as_deref()?;
            let nested = match (&tier.above_200k, tier.fast_multiplier) {
                (Some(_), _) => Some((
                    "above_200k".to_owned(),
                    "a tier cannot have a tier".to_owned(),
                )),
                (None, Some(_)) => Some((
                    "fast_multiplier".to_owned(),
                    "set it beside the tier, not in it".to_owned(),
                )),
                (None, None) => tier.problem(),
            };
            nested.map(|(field, why)| (format!("above_200k.{field}"), why))
        })
    }

    fn price(&self) -> ModelPrice {
        ModelPrice {
            rates: self.rates(),
            above_200k: self.above_200k.as_ref().map(|tier| tier.rates()),
            fast_multiplier: self.fast_multiplier.unwrap_or(1.0),
        }
    }
}

/// The highest price a config may set, in USD per million tokens: far above any
/// model's, and low enough that no sum of costs can overflow.
pub const MAX_PRICE: f64 = 10_000.0;
/// The highest fast-mode multiplier a config may set.
pub const MAX_FAST_MULTIPLIER: f64 = 100.0;

const fn price(input: f64, output: f64) -> ModelPrice {
    ModelPrice {
        rates: Rates::standard(input, output),
        above_200k: None,
        fast_multiplier: 1.0,
    }
}

/// Anthropic list prices (USD per million tokens), from PRICING.md §2.
const EMBEDDED: &[(&str, ModelPrice)] = &[
    ("claude-fable-5", price(10.0, 50.0)),
    ("claude-opus-5", price(5.0, 25.0)),
    ("claude-sonnet-5", price(2.0, 10.0)),
    (
        "claude-opus-4-8",
        ModelPrice {
            fast_multiplier: 2.0,
            ..price(5.0, 25.0)
        },
    ),
    ("claude-opus-4-7", price(5.0, 25.0)),
    ("claude-opus-4-6", price(5.0, 25.0)),
    ("claude-opus-4-5", price(5.0, 25.0)),
    ("claude-opus-4-1", price(15.0, 75.0)),
    ("claude-opus-4", price(15.0, 75.0)),
    ("claude-sonnet-4-6", price(3.0, 15.0)),
    (
        "claude-sonnet-4-5",
        ModelPrice {
            above_200k: Some(Rates::standard(6.0, 22.5)),
            ..price(3.0, 15.0)
        },
    ),
    (
        "claude-sonnet-4",
        ModelPrice {
            above_200k: Some(Rates::standard(6.0, 22.5)),
            ..price(3.0, 15.0)
        },
    ),
    ("claude-haiku-4-5", price(1.0, 5.0)),
    ("claude-3-7-sonnet", price(3.0, 15.0)),
    ("claude-3-5-sonnet", price(3.0, 15.0)),
    (
        "claude-3-5-haiku",
        ModelPrice {
            rates: Rates {
                input: 0.8,
                output: 4.0,
                cache_write_5m: 1.0,
                cache_write_1h: 1.6,
                cache_read: 0.08,
            },
            above_200k: None,
            fast_multiplier: 1.0,
        },
    ),
    ("claude-3-opus", price(15.0, 75.0)),
    ("claude-3-sonnet", price(3.0, 15.0)),
    (
        "claude-3-haiku",
        ModelPrice {
            rates: Rates {
                input: 0.25,
                output: 1.25,
                cache_write_5m: 0.3,
                cache_write_1h: 0.5,
                cache_read: 0.03,
            },
            above_200k: None,
            fast_multiplier: 1.0,
        },
    ),
];

/// Model prices by model id.
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Sorted longest id first, so the most specific match wins.
    models: Vec<(String, ModelPrice)>,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable::embedded()
    }
}

impl PriceTable {
    /// The built-in table.
    pub fn embedded() -> PriceTable {
        PriceTable::from_entries(
            EMBEDDED
                .iter()
                .map(|(id, price)| ((*id).to_owned(), *price)),
        )
    }

    /// The built-in table with entries replaced or added from config.
    pub fn with_overrides(overrides: &BTreeMap<String, PriceOverride>) -> PriceTable {
        let mut models: BTreeMap<String, ModelPrice> = EMBEDDED
            .iter()
            .map(|(id, price)| ((*id).to_owned(), *price))
            .collect();
        for (id, price) in overrides {
            models.insert(id.clone(), price.price());
        }
        PriceTable::from_entries(models)
    }

    fn from_entries(entries: impl IntoIterator<Item = (String, ModelPrice)>) -> PriceTable {
        let mut models: Vec<(String, ModelPrice)> = entries.into_iter().collect();
        models.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        PriceTable { models }
    }

    /// The price of a model id as written in a transcript: an exact entry, else the
    /// longest entry the id contains at word boundaries, allowing a date suffix
    /// (`-20250514`) and provider decorations (`anthropic.`, `-v1:0`, `[1m]`) but
    /// not another version number (`claude-opus-4` does not price `claude-opus-4-1`).
    pub fn lookup(&self, model: &str) -> Option<&ModelPrice> {
        let normalized = model.replace(['.', '@'], "-").to_ascii_lowercase();
        self.models
            .iter()
            .find(|(id, _)| *id == model || matches_model(&normalized, id))
            .map(|(_, price)| price)
    }

    /// USD cost of a response, or `None` when its model has no price.
    pub fn cost(&self, response: &Response<'_>) -> Option<f64> {
        self.cost_at(self.lookup(response.model), response)
    }

    /// USD cost of a response whose model's price was already looked up.
    pub fn cost_at(&self, price: Option<&ModelPrice>, response: &Response<'_>) -> Option<f64> {
        if let Some(cost) = response.cost_usd {
            return Some(cost);
        }
        let price = price?;
        let t = &response.tokens;
        let rates = match price.above_200k {
            Some(tier) if t.input + t.cache_creation + t.cache_read > LONG_CONTEXT_THRESHOLD => {
                tier
            }
            _ => price.rates,
        };
        let cache_5m = t.cache_creation - t.cache_creation_1h.min(t.cache_creation);
        let mut cost = (t.input as f64 * rates.input
            + t.output as f64 * rates.output
            + cache_5m as f64 * rates.cache_write_5m
            + t.cache_creation_1h as f64 * rates.cache_write_1h
            + t.cache_read as f64 * rates.cache_read)
            / 1e6;
        if response.us_only {
            cost *= US_ONLY_MULTIPLIER;
        }
        cost += t.web_search_requests as f64 * WEB_SEARCH_USD;
        if response.fast {
            cost *= price.fast_multiplier;
        }
        Some(cost)
    }
}

fn matches_model(model: &str, id: &str) -> bool {
    memchr::memmem::find_iter(model.as_bytes(), id.as_bytes()).any(|at| {
        let before_ok = at == 0 || !model.as_bytes()[at - 1].is_ascii_alphanumeric();
        before_ok && suffix_is_decoration(&model[at + id.len()..])
    })
}

/// Whether what follows a price id is a date or decoration rather than a version.
fn suffix_is_decoration(rest: &str) -> bool {
    let bytes = rest.as_bytes();
    match bytes {
        [] => true,
        [b'-', tail @ ..] => {
            let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
            match digits {
                0 => tail.first().is_some_and(u8::is_ascii_alphabetic),
                8 => tail.get(8).is_none_or(|b| !b.is_ascii_alphanumeric()),
                _ => false,
            }
        }
        [first, ..] => !first.is_ascii_alphanumeric(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::TokenCounts;

    fn response(model: &str, tokens: TokenCounts) -> Response<'_> {
        Response {
            tokens,
            timestamp_ms: 0,
            model,
            session: "s",
            project: "p",
            sidechain: false,
            fast: false,
            us_only: false,
            cost_usd: None,
        }
    }

    #[test]
    fn model_ids_match_their_family_and_not_the_next_version() {
        let table = PriceTable::embedded();
        let input = |model: &str| table.lookup(model).map(|p| p.rates.input);
        assert_eq!(input("claude-sonnet-4-20250514"), Some(3.0));
        assert_eq!(input("claude-opus-4-1-20250805"), Some(15.0));
        assert_eq!(input("claude-opus-4-5-20251101"), Some(5.0));
        assert_eq!(input("claude-opus-4-20250514"), Some(15.0));
        assert_eq!(input("claude-3-5-haiku-20241022"), Some(0.8));
        assert_eq!(
            input("anthropic.claude-3-5-sonnet-20241022-v2:0"),
            Some(3.0)
        );
        assert_eq!(input("claude-opus-4-6[1m]"), Some(5.0));
        assert_eq!(input("claude-opus-4-9"), None);
        assert_eq!(input("gpt-4o"), None);
    }

    #[test]
    fn cache_writes_are_priced_by_ttl() {
        let table = PriceTable::embedded();
        let tokens = TokenCounts {
            input: 1_000_000,
            output: 1_000_000,
            cache_creation: 3_000_000,
            cache_creation_1h: 1_000_000,
            cache_read: 1_000_000,
            web_search_requests: 0,
        };
        // Sonnet 4.6: 3 input + 15 output + 2×3.75 (5m) + 6 (1h) + 0.30 read.
        let cost = table
            .cost(&response("claude-sonnet-4-6", tokens))
            .expect("priced");
        assert!((cost - 31.8).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn long_context_tier_applies_to_the_whole_request() {
        let table = PriceTable::embedded();
        let small = TokenCounts {
            input: 10,
            output: 1000,
            cache_read: 199_990,
            ..TokenCounts::default()
        };
        let large = TokenCounts {
            cache_read: 200_000,
            ..small
        };
        let cost_small = table
            .cost(&response("claude-sonnet-4-5-20250929", small))
            .expect("priced");
        let cost_large = table
            .cost(&response("claude-sonnet-4-5-20250929", large))
            .expect("priced");
        assert!((cost_small - (10.0 * 3.0 + 1000.0 * 15.0 + 199_990.0 * 0.3) / 1e6).abs() < 1e-12);
        assert!((cost_large - (10.0 * 6.0 + 1000.0 * 22.5 + 200_000.0 * 0.6) / 1e6).abs() < 1e-12);
        let opus = table
            .cost(&response("claude-opus-4-6", large))
            .expect("priced");
        assert!((opus - (10.0 * 5.0 + 1000.0 * 25.0 + 200_000.0 * 0.5) / 1e6).abs() < 1e-12);
    }

    #[test]
    fn recorded_cost_geo_fast_and_overrides() {
        let tokens = TokenCounts {
            output: 1_000_000,
            web_search_requests: 3,
            ..TokenCounts::default()
        };
        let table = PriceTable::embedded();
        let mut r = response("claude-opus-4-8", tokens);
        r.us_only = true;
        r.fast = true;
        let cost = table.cost(&r).expect("priced");
        assert!((cost - (25.0 * 1.1 + 0.03) * 2.0).abs() < 1e-9, "{cost}");
        r.cost_usd = Some(0.5);
        assert_eq!(table.cost(&r), Some(0.5));
        let overrides = BTreeMap::from([(
            "my-gateway-model".to_owned(),
            PriceOverride {
                input: 1.0,
                output: 2.0,
                cache_write_5m: None,
                cache_write_1h: None,
                cache_read: Some(0.5),
                above_200k: None,
                fast_multiplier: None,
            },
        )]);
        let table = PriceTable::with_overrides(&overrides);
        let price = table.lookup("my-gateway-model").expect("override");
        assert_eq!(price.rates.cache_write_5m, 1.25);
        assert_eq!(price.rates.cache_read, 0.5);
        assert!(
            table.lookup("claude-opus-4-6").is_some(),
            "embedded entries stay"
        );
    }
}
