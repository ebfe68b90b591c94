//! Reports already rendered, kept in the state directory (`reports.bin`) under a
//! key made of everything a report is a function of: the saved ledger's checksum,
//! the effective price table, the grouping, dates, time zone and format, and the
//! ccotel version. A rerun over an unchanged corpus prints the stored text instead
//! of aggregating every response again.
//!
//! Like the directory listing, this is a cache, not state: it is replaced without
//! an fsync, and a missing or damaged file only means the report is rendered.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use xxhash_rust::xxh3::Xxh3;

use crate::codec::{put_section, put_u64, seal, unseal, CodecError, Decoder, FileBytes};

const CACHE_FILE: &str = "reports.bin";
const MAGIC: &[u8; 16] = b"ccotel-reports1\n";
/// Reports kept: a few views (daily, by model, a JSON one for a status line) of
/// the latest ledger.
const KEEP: usize = 8;

/// A report as printed, with the models it could not price (warned about on every
/// print, cached or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub unpriced: BTreeMap<String, u64>,
}

/// What a rendered report is keyed by: build it from every input of the report.
#[derive(Default)]
pub struct CacheKey(Xxh3);

impl CacheKey {
    pub fn new() -> CacheKey {
        let mut key = CacheKey(Xxh3::new());
        key.add(env!("CARGO_PKG_VERSION").as_bytes());
        key
    }

    /// Adds one input, delimited so that ("ab", "c") and ("a", "bc") differ.
    pub fn add(&mut self, part: &[u8]) -> &mut CacheKey {
        self.0.update(&(part.len() as u64).to_le_bytes());
        self.0.update(part);
        self
    }

    pub fn finish(&self) -> u64 {
        self.0.digest()
    }
}

/// The rendered report stored under `key`, if any.
pub fn lookup(state_dir: &Path, key: u64) -> Option<Rendered> {
    let bytes = FileBytes::open(&state_dir.join(CACHE_FILE)).ok()?;
    let mut found = None;
    visit(&bytes, |entry_key, entry| {
        if entry_key == key {
            found = Some(entry.to_owned());
        }
    })
    .ok()?;
    found
}

/// Stores `rendered` under `key`, keeping the [`KEEP`] most recent reports.
pub fn store(state_dir: &Path, key: u64, rendered: &Rendered) -> io::Result<()> {
    let path = state_dir.join(CACHE_FILE);
    let mut entries = FileBytes::open(&path)
        .ok()
        .and_then(|bytes| decode(&bytes).ok())
        .unwrap_or_default();
    entries.retain(|(found, _)| *found != key);
    entries.insert(0, (key, rendered.clone()));
    entries.truncate(KEEP);
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, encode(&entries))?;
    fs::rename(&tmp, &path)
}

fn encode(entries: &[(u64, Rendered)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    put_u64(&mut out, entries.len() as u64);
    for (key, rendered) in entries {
        put_u64(&mut out, *key);
        put_section(&mut out, rendered.text.as_bytes());
        put_u64(&mut out, rendered.unpriced.len() as u64);
        for (model, responses) in &rendered.unpriced {
            put_section(&mut out, model.as_bytes());
            put_u64(&mut out, *responses);
        }
    }
    seal(&mut out);
    out
}

fn decode(bytes: &[u8]) -> Result<Vec<(u64, Rendered)>, CodecError> {
    let mut entries = Vec::new();
    visit(bytes, |key, entry| entries.push((key, entry.to_owned())))?;
    Ok(entries)
}

/// A stored report, borrowed from the cache file.
struct Entry<'a> {
    text: &'a str,
    unpriced: Vec<(&'a str, u64)>,
}

impl Entry<'_> {
    fn to_owned(&self) -> Rendered {
        Rendered {
            text: self.text.to_owned(),
            unpriced: self
                .unpriced
                .iter()
                .map(|&(model, responses)| (model.to_owned(), responses))
                .collect(),
        }
    }
}

/// Checks the whole file, and calls `each` with every entry without copying it.
fn visit(bytes: &[u8], mut each: impl FnMut(u64, &Entry<'_>)) -> Result<(), CodecError> {
    let mut input = Decoder::new(unseal(bytes)?);
    if input.take(MAGIC.len())? != MAGIC {
        return Err(CodecError::Invalid("not a ccotel report cache".into()));
    }
    let count = input.count(3 * 8)?;
    for _ in 0..count {
        let key = input.u64()?;
        let text = input.text()?;
        let models = input.count(2 * 8)?;
        let unpriced = (0..models)
            .map(|_| Ok((input.text()?, input.u64()?)))
            .collect::<Result<Vec<_>, CodecError>>()?;
        each(key, &Entry { text, unpriced });
    }
    input.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(text: &str) -> Rendered {
        Rendered {
            text: text.into(),
            unpriced: BTreeMap::from([("mystery-model".to_owned(), 3)]),
        }
    }

    #[test]
    fn keys_tell_their_inputs_apart() {
        let key = |parts: &[&str]| {
            let mut key = CacheKey::new();
            for part in parts {
                key.add(part.as_bytes());
            }
            key.finish()
        };
        assert_eq!(key(&["daily", "UTC"]), key(&["daily", "UTC"]));
        assert_ne!(key(&["daily", "UTC"]), key(&["daily", "Asia/Tokyo"]));
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
    }

    #[test]
    fn stores_the_latest_reports_and_ignores_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(lookup(dir.path(), 1), None);
        for key in 0..(KEEP as u64 + 2) {
            store(dir.path(), key, &rendered(&format!("report {key}"))).expect("store");
        }
        assert_eq!(lookup(dir.path(), 9), Some(rendered("report 9")));
        assert_eq!(lookup(dir.path(), 2), Some(rendered("report 2")));
        assert_eq!(lookup(dir.path(), 1), None, "the oldest were dropped");
        store(dir.path(), 2, &rendered("again")).expect("store");
        assert_eq!(lookup(dir.path(), 2), Some(rendered("again")));

        let path = dir.path().join(CACHE_FILE);
        let mut bytes = fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        fs::write(&path, &bytes).expect("damage");
        assert_eq!(lookup(dir.path(), 2), None);
        store(dir.path(), 5, &rendered("fresh")).expect("store over damage");
        assert_eq!(lookup(dir.path(), 5), Some(rendered("fresh")));
    }
}
