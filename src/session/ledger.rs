//! The dedup ledger: one counted usage per API response.
//!
//! Claude Code writes one line per content block of a response, each repeating the
//! usage as it stood, and resumed or forked sessions replay old lines into new
//! files. A response is identified by (`message.id`, `requestId`), or `message.id`
//! alone when `requestId` is absent, and counted once, with its largest usage.
//!
//! "Largest" is a total order (token total, then each field, then the earliest
//! timestamp, a line without one last, then the attribution strings), so the
//! ledger reaches the same state whatever order lines, files and incremental runs
//! arrive in. That is what lets an incremental run count exactly what a full run
//! counts: the ledger is persisted with the manifest and every new line is merged
//! into it.

use std::cmp::{Ordering, Reverse};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::codec::{patch_u64, put_u32, put_u64, CodecError, FileBytes};

mod encoded;
mod strings;

use encoded::{decode_record, encode_record, Check, Encoded, SavedRecords, RECORD_BYTES};
pub use strings::StringLookup;
use strings::{StringIndex, StringTable};

/// Identity of one API response: a 128-bit hash of its ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResponseKey(pub u128);

impl ResponseKey {
    /// The key of a response with a `message.id` and, usually, a `requestId`.
    pub fn of(message_id: &str, request_id: Option<&str>) -> Self {
        let mut bytes = Vec::with_capacity(message_id.len() + 40);
        bytes.extend_from_slice(message_id.as_bytes());
        if let Some(request_id) = request_id {
            bytes.push(0);
            bytes.extend_from_slice(request_id.as_bytes());
        }
        ResponseKey(xxhash_rust::xxh3::xxh3_128(&bytes))
    }

    /// The key of a usage line with no `message.id`: it cannot be deduplicated, so
    /// it is identified by where it is and what it says, which stays the same when
    /// the file is read again.
    pub fn of_line(file: &str, offset: u64, line: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(file.len() + 24);
        bytes.push(1);
        bytes.extend_from_slice(file.as_bytes());
        bytes.extend_from_slice(&offset.to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(line).to_le_bytes());
        ResponseKey(xxhash_rust::xxh3::xxh3_128(&bytes))
    }
}

/// Token counts of one response. `cache_creation_1h` is the part of
/// `cache_creation` written with a one-hour time to live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
    pub cache_creation: u64,
    pub cache_creation_1h: u64,
    pub cache_read: u64,
    pub web_search_requests: u64,
}

impl TokenCounts {
    /// The counts an API `usage` object reports.
    pub fn of(usage: &crate::transcript::Usage) -> TokenCounts {
        TokenCounts {
            input: usage.input_tokens,
            output: usage.output_tokens,
            cache_creation: usage.cache_creation_input_tokens,
            cache_creation_1h: usage.cache_creation_1h(),
            cache_read: usage.cache_read_input_tokens,
            web_search_requests: usage.web_search_requests(),
        }
    }

    /// Input, output, cache writes and cache reads together.
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_creation + self.cache_read
    }

    fn rank(&self) -> (u64, u64, u64, u64, u64, u64, u64) {
        (
            self.total(),
            self.output,
            self.cache_creation,
            self.cache_read,
            self.input,
            self.cache_creation_1h,
            self.web_search_requests,
        )
    }
}

/// One line's view of a response, as the scanner hands it to the ledger.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub tokens: TokenCounts,
    /// Unix milliseconds; 0 when the line had no readable timestamp.
    pub timestamp_ms: i64,
    pub model: &'a str,
    pub session: &'a str,
    pub project: &'a str,
    pub sidechain: bool,
    /// `usage.speed == "fast"`.
    pub fast: bool,
    /// `usage.inference_geo == "us"`: US-only inference.
    pub us_only: bool,
    /// `costUSD` written by pre-1.0.9 Claude Code.
    pub cost_usd: Option<f64>,
}

impl Observation<'_> {
    fn rank(&self) -> impl Ord + '_ {
        (
            self.tokens.rank(),
            // The earliest line, but a dated one before a line without a
            // timestamp (0), which would put the response on no real day.
            Reverse((self.timestamp_ms == 0, self.timestamp_ms)),
            Reverse((self.session, self.project, self.model)),
            (self.sidechain, self.fast, self.us_only),
            self.cost_usd.map(f64::to_bits),
        )
    }
}

/// Where a response's strings are in the ledger's string table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StringIds {
    pub model: u32,
    pub session: u32,
    pub project: u32,
}

/// A counted response, with its strings resolved.
pub type Response<'a> = Observation<'a>;

#[derive(Debug, Clone, Copy)]
struct Record {
    tokens: TokenCounts,
    timestamp_ms: i64,
    model: u32,
    session: u32,
    project: u32,
    flags: u8,
    cost_usd: Option<f64>,
}

const SIDECHAIN: u8 = 1;
const FAST: u8 = 2;
const US_ONLY: u8 = 4;

/// Keys are already uniform hashes; fold them instead of hashing again.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = (value as u64) ^ ((value >> 64) as u64);
    }
}

/// The counted usage of every response seen.
///
/// A ledger read from the state directory keeps its records in their encoded
/// bytes (sorted by key, so a key is found by binary search) and never changes
/// them: what is observed afterwards goes into `records`, which shadows the saved
/// record of the same key. A rerun that adds a little pays for a little, not for
/// decoding, indexing or checking everything saved: each block of saved records
/// is checked when first used (see [`Ledger::check`]).
#[derive(Default)]
pub struct Ledger {
    saved: Option<Box<SavedRecords>>,
    /// Records observed since the ledger was created or read, new or replacing
    /// a saved one.
    records: Vec<(ResponseKey, Record)>,
    index: HashMap<ResponseKey, usize, BuildHasherDefault<KeyHasher>>,
    strings: StringTable,
    /// Built only when something is interned.
    string_index: Option<StringIndex>,
}

/// A counted record, and its slot in [`Ledger::records`] unless it is saved.
#[derive(Clone, Copy)]
struct Counted {
    record: Record,
    slot: Option<usize>,
}

/// The ids one ledger's strings have in another, interned there as records
/// need them: a merge hashes each string once, not once per record.
struct IdMap(Vec<Option<u32>>);

impl IdMap {
    fn new(from: &Ledger) -> IdMap {
        IdMap(vec![None; from.strings.len()])
    }

    fn id(&mut self, id: u32, from: &Ledger, into: &mut Ledger) -> u32 {
        let slot = &mut self.0[id as usize];
        *slot.get_or_insert_with(|| into.intern(from.string(id)))
    }

    /// `record` of `from`, with its strings' ids in `into`.
    fn record(&mut self, record: Record, from: &Ledger, into: &mut Ledger) -> Record {
        Record {
            model: self.id(record.model, from, into),
            session: self.id(record.session, from, into),
            project: self.id(record.project, from, into),
            ..record
        }
    }
}

/// What merging changed in a ledger: the records it gained (new, or replacing
/// others), and the ones they replaced, as they were. Sums over the ledger can be
/// brought up to date from these without visiting every record.
#[derive(Default)]
pub struct LedgerDelta {
    pub added: Ledger,
    pub replaced: Ledger,
}

/// The persisted ledger is damaged: what is wrong with it. Errors that carry it
/// name the file it was read from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LedgerError(String);

impl LedgerError {
    fn damaged() -> LedgerError {
        LedgerError("a block of its records does not match its checksum".into())
    }
}

impl Ledger {
    pub fn new() -> Self {
        Ledger::default()
    }

    /// Number of distinct responses counted. For a ledger read from the state
    /// directory this searches the saved records for each one observed since.
    pub fn len(&self) -> usize {
        let Some(saved) = &self.saved else {
            return self.records.len();
        };
        let added = self.records.iter();
        saved.count() + added.filter(|(key, _)| saved.find(*key).is_none()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.saved.as_ref().is_none_or(|saved| saved.count() == 0)
    }

    /// Records a line's usage for a response; the largest observation is kept.
    /// Returns true when this observation is now the counted one.
    pub fn observe(&mut self, key: ResponseKey, observation: &Observation<'_>) -> bool {
        let counted = self.counted(key);
        self.observe_over(key, observation, counted)
    }

    /// [`Ledger::observe`], given what [`Ledger::counted`] found for `key`.
    fn observe_over(
        &mut self,
        key: ResponseKey,
        observation: &Observation<'_>,
        counted: Option<Counted>,
    ) -> bool {
        if let Some(counted) = &counted {
            let existing = self.resolve(&counted.record);
            if observation.rank().cmp(&existing.rank()) != Ordering::Greater {
                return false;
            }
        }
        let record = self.intern_record(observation);
        self.put(key, record, counted.and_then(|counted| counted.slot));
        true
    }

    /// The counted record of `key`, and where it is, if it is counted.
    fn counted(&self, key: ResponseKey) -> Option<Counted> {
        if let Some(&slot) = self.index.get(&key) {
            let record = self.records[slot].1;
            let slot = Some(slot);
            return Some(Counted { record, slot });
        }
        let record = self.saved.as_ref()?.find(key)?;
        Some(Counted { record, slot: None })
    }

    /// The counted observation of a response, if any.
    pub fn get(&self, key: ResponseKey) -> Option<Observation<'_>> {
        let counted = self.counted(key)?;
        Some(self.resolve(&counted.record))
    }

    /// Merges another ledger into this one, as if its observations were made here.
    pub fn merge(&mut self, other: &Ledger) {
        self.records.reserve(other.records.len());
        self.index.reserve(other.records.len());
        let mut ids = IdMap::new(other);
        for (key, record) in other.iter() {
            let counted = self.counted(key);
            if !self.outranks(other, &record, counted.as_ref()) {
                continue;
            }
            let record = ids.record(record, other, self);
            self.put(key, record, counted.and_then(|counted| counted.slot));
        }
    }

    /// Whether `record` of `other` is to replace what `counted` found here.
    fn outranks(&self, other: &Ledger, record: &Record, counted: Option<&Counted>) -> bool {
        let Some(counted) = counted else {
            return true;
        };
        let existing = self.resolve(&counted.record);
        let candidate = other.resolve(record);
        // A statement, not the tail expression: the ranks borrow both locals.
        return candidate.rank() > existing.rank();
    }

    /// Sets `key`'s record, in `slot` if it has one.
    fn put(&mut self, key: ResponseKey, record: Record, slot: Option<usize>) {
        match slot {
            Some(slot) => self.records[slot].1 = record,
            None => {
                self.index.insert(key, self.records.len());
                self.records.push((key, record));
            }
        }
    }

    /// Makes room for the records of changes `encoded_bytes` long in all, so
    /// that applying them (see [`Ledger::apply_encoded_changes`]) does not grow
    /// the index step by step.
    pub fn reserve_for_changes(&mut self, encoded_bytes: usize) {
        let most = encoded_bytes / RECORD_BYTES;
        self.records.reserve(most);
        self.index.reserve(most);
    }

    /// Applies what [`Ledger::merge_recording`] recorded when this ledger's saved
    /// state grew into its next one, as [`Ledger::encode`] wrote it: each record
    /// was the counted one then, so it replaces its key's record here without a
    /// comparison, read straight from `encoded`. That is what keeps reading a
    /// journal cheap.
    ///
    /// `encoded` comes checked by its journal record's checksum, so its blocks
    /// are not hashed again (that was a fifth of a journal's replay); its
    /// strings are still checked, and a record naming a string `encoded` does
    /// not hold is given string 0 rather than read out of bounds.
    pub fn apply_encoded_changes(&mut self, encoded: &[u8]) -> Result<(), LedgerError> {
        let changes = Encoded::parse(encoded, Check::AsUsed)
            .map_err(|error| LedgerError(error.to_string()))?;
        let ids: Vec<u32> = changes
            .strings
            .iter()
            .map(|text| self.intern(text))
            .collect();
        // Unchecked ids (see above) are given string 0, never read out of bounds.
        let id = |of: u32| ids.get(of as usize).copied().unwrap_or_default();
        for chunk in changes.records {
            let (key, record) = decode_record(chunk);
            let record = Record {
                model: id(record.model),
                session: id(record.session),
                project: id(record.project),
                ..record
            };
            let slot = self.index.get(&key).copied();
            self.put(key, record, slot);
        }
        Ok(())
    }

    /// [`Ledger::merge`], also recording in `delta` what changed this ledger:
    /// each record of `other` it gained (all a journal needs to write), and each
    /// record those replaced, as it was before the first merge into `delta`.
    pub fn merge_recording(&mut self, other: &Ledger, delta: &mut LedgerDelta) {
        let (mut into_self, mut into_added) = (IdMap::new(other), IdMap::new(other));
        for (key, record) in other.iter() {
            let counted = self.counted(key);
            if !self.outranks(other, &record, counted.as_ref()) {
                continue;
            }
            if let Some(counted) = &counted {
                if delta.added.get(key).is_none() {
                    delta.replaced.observe(key, &self.resolve(&counted.record));
                }
            }
            let mine = into_self.record(record, other, self);
            self.put(key, mine, counted.and_then(|counted| counted.slot));
            // What `delta.added` holds of `key` is what this ledger held, which
            // `record` outranks: no comparison needed.
            let added = into_added.record(record, other, &mut delta.added);
            let slot = delta.added.index.get(&key).copied();
            delta.added.put(key, added, slot);
        }
    }

    /// Every counted response, in no particular order.
    pub fn responses(&self) -> impl Iterator<Item = (ResponseKey, Response<'_>)> + '_ {
        self.iter()
            .map(|(key, record)| (key, self.resolve(&record)))
    }

    /// Every counted response with the ids of its model, session and project
    /// strings: equal ids are equal strings, so a report can group by them
    /// without hashing text. Ids index [`Ledger::string_count`] slots.
    pub fn responses_with_ids(&self) -> impl Iterator<Item = (StringIds, Response<'_>)> + '_ {
        self.iter().map(|(_, record)| {
            let ids = StringIds {
                model: record.model,
                session: record.session,
                project: record.project,
            };
            (ids, self.resolve(&record))
        })
    }

    /// How many distinct strings the ledger holds: every id is below this.
    pub fn string_count(&self) -> usize {
        self.strings.len()
    }

    /// Each string's id by its text, if interning has built the index (a merge
    /// does); it then holds every string.
    pub fn string_lookup(&self) -> Option<StringLookup<'_>> {
        self.string_index.as_ref().map(|index| StringLookup {
            strings: &self.strings,
            index,
        })
    }

    /// The string with id `id`; empty for an id the ledger never gave.
    pub fn string(&self, id: u32) -> &str {
        self.strings.get(id).unwrap_or_default()
    }

    /// The strings, by id.
    pub fn strings(&self) -> impl ExactSizeIterator<Item = &str> {
        self.strings.iter()
    }

    /// Saved records that nothing replaced, then the records observed since.
    fn iter(&self) -> impl Iterator<Item = (ResponseKey, Record)> + '_ {
        // Where the replaced saved records are, found by binary search: a rerun
        // replaces few, and this costs that few rather than a lookup per record.
        let mut replaced: Vec<usize> = match &self.saved {
            Some(saved) => self
                .records
                .iter()
                .filter_map(|(key, _)| saved.position(*key))
                .collect(),
            None => Vec::new(),
        };
        replaced.sort_unstable();
        let mut replaced = replaced.into_iter().peekable();
        self.saved
            .iter()
            .flat_map(|saved| saved.iter())
            .filter(move |(at, _)| replaced.next_if_eq(at).is_none())
            .map(|(_, record)| record)
            .chain(self.records.iter().copied())
    }

    fn resolve(&self, record: &Record) -> Observation<'_> {
        Observation {
            tokens: record.tokens,
            timestamp_ms: record.timestamp_ms,
            model: self.string(record.model),
            session: self.string(record.session),
            project: self.string(record.project),
            sidechain: record.flags & SIDECHAIN != 0,
            fast: record.flags & FAST != 0,
            us_only: record.flags & US_ONLY != 0,
            cost_usd: record.cost_usd,
        }
    }

    fn intern_record(&mut self, observation: &Observation<'_>) -> Record {
        Record {
            tokens: observation.tokens,
            timestamp_ms: observation.timestamp_ms,
            model: self.intern(observation.model),
            session: self.intern(observation.session),
            project: self.intern(observation.project),
            flags: (u8::from(observation.sidechain) * SIDECHAIN)
                | (u8::from(observation.fast) * FAST)
                | (u8::from(observation.us_only) * US_ONLY),
            cost_usd: observation.cost_usd,
        }
    }

    fn intern(&mut self, text: &str) -> u32 {
        let Ledger {
            strings,
            string_index,
            ..
        } = self;
        let index = string_index.get_or_insert_with(|| StringIndex::of(strings));
        let hash = strings::hash(text);
        if let Some(id) = index.get(strings, hash, text) {
            return id;
        }
        let id = strings.push(text);
        index.add(hash, id);
        id
    }

    /// The ledger in a compact binary form, for the state directory: records
    /// sorted by key, so that equal ledgers encode to equal bytes. Saved records
    /// are checked first: an error if any is damaged, which is not to be saved
    /// over.
    pub fn encode(&self) -> Result<Vec<u8>, LedgerError> {
        let saved = self.saved.as_ref();
        let records = match saved {
            Some(saved) => saved.all_checked().ok_or_else(LedgerError::damaged)?,
            None => &[],
        };
        let most = records.len() + self.records.len();
        let text: usize = self.strings.iter().map(|text| 4 + text.len()).sum();
        let mut out = Vec::with_capacity(64 + text + most * (RECORD_BYTES + 1));
        let body = encoded::put_start(&mut out);
        put_u32(&mut out, self.strings.len() as u32);
        for text in self.strings.iter() {
            put_u32(&mut out, text.len() as u32);
            out.extend_from_slice(text.as_bytes());
        }
        let mut added = self.records.clone();
        added.sort_unstable_by_key(|(key, _)| *key);
        let count_at = out.len();
        put_u64(&mut out, 0);
        let start = out.len();
        // Saved records go over in runs, as they are, between the added ones.
        let (mut count, mut next_saved) = (0, 0);
        for (key, record) in &added {
            let found = saved.map_or(Err(0), |saved| saved.search(*key));
            // Added keys are distinct and sorted: none is before the last one.
            let (at, replaced) = match found {
                Ok(at) => (at.max(next_saved), 1),
                Err(at) => (at.max(next_saved), 0),
            };
            let before = at - next_saved;
            out.extend_from_slice(records[next_saved..at].as_flattened());
            encode_record(&mut out, *key, record);
            count += before + 1;
            next_saved += before + replaced;
        }
        let rest = &records[next_saved..];
        out.extend_from_slice(rest.as_flattened());
        count += rest.len();
        patch_u64(&mut out, count_at, count as u64);
        encoded::put_block_table(&mut out, body, start, count);
        Ok(out)
    }

    /// Whether the saved records used so far were sound: a damaged block is
    /// found when first used, and what was looked up in it was not found.
    pub fn check(&self) -> Result<(), LedgerError> {
        match self.saved.as_ref().is_some_and(|saved| saved.damaged()) {
            true => Err(LedgerError::damaged()),
            false => Ok(()),
        }
    }

    /// Checks every saved record, for a use that needs them all.
    pub fn check_everything(&self) -> Result<(), LedgerError> {
        match self.saved.as_ref().is_none_or(|saved| saved.check_all()) {
            true => Ok(()),
            false => Err(LedgerError::damaged()),
        }
    }

    /// Reads a ledger written by [`Ledger::encode`], checking all of it.
    pub fn decode(bytes: &[u8]) -> Result<Ledger, LedgerError> {
        Ledger::try_decode(FileBytes::from(bytes.to_vec()), Check::Everything)
            .map_err(|error| LedgerError(error.to_string()))
    }

    /// Reads a ledger written by [`Ledger::encode`], keeping its records in
    /// `bytes` and checking each block of them when it is first used: see
    /// [`Ledger::check`].
    pub fn from_encoded(bytes: FileBytes) -> Result<Ledger, LedgerError> {
        Ledger::try_decode(bytes, Check::AsUsed).map_err(|error| LedgerError(error.to_string()))
    }

    fn try_decode(bytes: FileBytes, check: Check) -> Result<Ledger, CodecError> {
        let encoded = Encoded::parse(&bytes, check)?;
        let strings = StringTable::of(&encoded.strings);
        let layout = encoded.layout;
        Ok(Ledger {
            strings,
            saved: Some(Box::new(SavedRecords::new(bytes, layout))),
            ..Ledger::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn obs(output: u64, timestamp_ms: i64, session: &str) -> Observation<'_> {
        Observation {
            tokens: TokenCounts {
                input: 3,
                output,
                cache_creation: 100,
                cache_creation_1h: 40,
                cache_read: 2000,
                web_search_requests: 0,
            },
            timestamp_ms,
            model: "claude-opus-4-6",
            session,
            project: "-p",
            sidechain: false,
            fast: false,
            us_only: false,
            cost_usd: None,
        }
    }

    #[test]
    fn largest_usage_wins_in_any_order() {
        let key = ResponseKey::of("msg_1", Some("req_1"));
        let lines = [
            obs(3, 10, "s"),
            obs(172, 0, "s"),
            obs(172, 11, "s"),
            obs(172, 12, "s"),
        ];
        let mut forward = Ledger::new();
        let mut backward = Ledger::new();
        for line in &lines {
            forward.observe(key, line);
        }
        for line in lines.iter().rev() {
            backward.observe(key, line);
        }
        for ledger in [&forward, &backward] {
            let (_, kept) = ledger.responses().next().expect("one");
            assert_eq!(ledger.len(), 1);
            assert_eq!(kept.tokens.output, 172);
            assert_eq!(
                kept.timestamp_ms, 11,
                "ties keep the earliest dated line, not the one without a timestamp"
            );
        }
        let mut undated = Ledger::new();
        undated.observe(key, &obs(172, 0, "s"));
        undated.observe(key, &obs(3, 10, "s"));
        let (_, kept) = undated.responses().next().expect("one");
        assert_eq!(
            (kept.tokens.output, kept.timestamp_ms),
            (172, 0),
            "a larger usage wins, dated or not"
        );
    }

    #[test]
    fn request_id_is_part_of_the_key() {
        assert_ne!(
            ResponseKey::of("msg_1", Some("req_1")),
            ResponseKey::of("msg_1", Some("req_2"))
        );
        assert_ne!(
            ResponseKey::of("msg_1", None),
            ResponseKey::of("msg_1", Some(""))
        );
    }

    #[test]
    fn merge_equals_observing_everything_in_one() {
        let mut a = Ledger::new();
        let mut b = Ledger::new();
        let mut all = Ledger::new();
        for (i, (into_a, output)) in [(true, 5), (false, 9), (true, 7)].into_iter().enumerate() {
            let key = ResponseKey::of(&format!("msg_{}", i % 2), None);
            let ledger = if into_a { &mut a } else { &mut b };
            ledger.observe(key, &obs(output, i as i64, "s"));
            all.observe(key, &obs(output, i as i64, "s"));
        }
        a.merge(&b);
        assert_eq!(a.encode().expect("encode"), {
            let mut merged = Ledger::new();
            merged.merge(&all);
            merged.encode().expect("encode")
        });
    }

    #[test]
    fn a_saved_ledger_grows_as_a_fresh_one_would_and_records_what_changed() {
        let key = |i: i64| ResponseKey::of(&format!("msg_{i}"), None);
        let session = |i: i64| if i > 60 { "s2" } else { "s1" };
        let mut everything = Ledger::new();
        let mut first = Ledger::new();
        for i in 0..50 {
            first.observe(key(i), &obs(10, i, "s1"));
            everything.observe(key(i), &obs(10, i, "s1"));
        }
        let mut later = Ledger::new();
        for i in 25..75 {
            // Saved responses grow (even) or repeat smaller (odd); 50.. are new.
            let output = if i % 2 == 0 { 20 } else { 5 };
            later.observe(key(i), &obs(output, i, session(i)));
            everything.observe(key(i), &obs(output, i, session(i)));
        }
        let mut saved = Ledger::decode(&first.encode().expect("encode")).expect("decode");
        let mut delta = LedgerDelta::default();
        saved.merge_recording(&later, &mut delta);
        let changes = delta.added;

        assert_eq!(saved.len(), 75);
        assert_eq!(saved.responses().count(), 75);
        assert_eq!(
            saved.encode().expect("encode"),
            everything.encode().expect("encode")
        );
        assert_eq!(saved.get(key(26)).map(|r| r.tokens.output), Some(20));
        assert_eq!(saved.get(key(27)).map(|r| r.tokens.output), Some(10));
        assert_eq!(saved.get(key(99)).map(|r| r.tokens.output), None);
        // 26, 28, .., 48 replaced and 50..75 added: nothing else.
        assert_eq!(changes.len(), 12 + 25);
        let replaced: Vec<_> = delta
            .replaced
            .responses()
            .map(|(key, r)| (key, r.tokens.output))
            .collect();
        assert_eq!(replaced.len(), 12, "26, 28, .., 48 as they were");
        assert!(replaced.iter().all(|&(_, output)| output == 10));
        for i in (26..50).step_by(2) {
            assert!(replaced
                .iter()
                .any(|&(key, _)| key == super::ResponseKey::of(&format!("msg_{i}"), None)));
        }
        let encoded_changes = changes.encode().expect("encode");
        let changes = Ledger::decode(&encoded_changes).expect("decode");
        let mut merged = Ledger::decode(&first.encode().expect("encode")).expect("decode");
        merged.merge(&changes);
        assert_eq!(
            merged.encode().expect("encode"),
            everything.encode().expect("encode")
        );
        let mut applied = Ledger::decode(&first.encode().expect("encode")).expect("decode");
        applied.reserve_for_changes(encoded_changes.len());
        applied
            .apply_encoded_changes(&encoded_changes)
            .expect("changes just encoded");
        assert_eq!(applied.len(), 75);
        assert_eq!(
            applied.encode().expect("encode"),
            everything.encode().expect("encode")
        );
    }

    #[test]
    fn saved_records_are_checked_block_by_block_as_they_are_used() {
        let key = |i: u64| ResponseKey::of(&format!("msg_{i}"), None);
        let mut ledger = Ledger::new();
        for i in 0..300 {
            ledger.observe(key(i), &obs(i + 1, 1, "s"));
        }
        let bytes = ledger.encode().expect("encode");
        let mut sorted: Vec<ResponseKey> = (0..300).map(key).collect();
        sorted.sort_unstable();
        // Blocks hold 16 records: these are in the first and the thirteenth.
        let (near, far) = (sorted[10], sorted[200]);
        let mut damaged = bytes.clone();
        let at = damaged
            .windows(16)
            .position(|window| window == far.0.to_le_bytes())
            .expect("far's record");
        damaged[at + 24] ^= 1;

        assert!(Ledger::decode(&damaged).is_err(), "decode checks it whole");
        let lazy = Ledger::from_encoded(FileBytes::from(damaged.clone())).expect("header sound");
        assert!(lazy.get(near).is_some());
        assert!(lazy.check().is_ok(), "only the first block was used");
        assert!(
            lazy.get(far).is_none(),
            "nothing is taken from a damaged block"
        );
        assert!(lazy.check().is_err());
        assert!(lazy.encode().is_err(), "a damaged ledger is not saved over");
        assert_eq!(
            lazy.responses().count(),
            300 - encoded::BLOCK_RECORDS,
            "its block is left out"
        );

        let untouched = Ledger::from_encoded(FileBytes::from(damaged)).expect("header sound");
        assert!(untouched.check().is_ok());
        assert!(untouched.check_everything().is_err());

        // The strings and the block table are checked when the ledger is read.
        for at in [30, bytes.len() - 30] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert!(
                Ledger::from_encoded(FileBytes::from(damaged)).is_err(),
                "{at}"
            );
        }
        let sound = Ledger::from_encoded(FileBytes::from(bytes.clone())).expect("sound");
        assert!(sound.check_everything().is_ok());
        assert_eq!(sound.encode().expect("encode"), bytes);
    }

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        let mut ledger = Ledger::new();
        ledger.observe(ResponseKey::of("m", Some("r")), &obs(5, 1, "s1"));
        let mut with_cost = obs(6, 2, "s2");
        with_cost.cost_usd = Some(0.25);
        with_cost.sidechain = true;
        ledger.observe(ResponseKey::of("m2", None), &with_cost);
        let bytes = ledger.encode().expect("encode");
        let back = Ledger::decode(&bytes).expect("decode");
        assert_eq!(back.encode().expect("encode"), bytes);
        let kept: Vec<_> = back
            .responses()
            .filter(|(_, r)| r.cost_usd.is_some())
            .collect();
        assert_eq!(kept.len(), 1);
        assert!(kept[0].1.sidechain);
        for cut in [0, 5, bytes.len() - 1] {
            assert!(Ledger::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extended = bytes.clone();
        extended.push(0);
        assert!(Ledger::decode(&extended).is_err());
    }
}
