//! The ledger as it is saved: the strings its records name, then the records,
//! fixed-size and sorted by key, then a table of their blocks (each block's
//! first key and checksum) and a digest of all but the records themselves.
//!
//! A saved ledger is read in place and its records are checked block by block,
//! as lookups first touch them: a run that adds a little to a long history pays
//! for the blocks it looks in, not for hashing every record ever saved. Whatever
//! needs every record (a new base, a report grouped from scratch) checks every
//! block first, and damage found late is kept and reported
//! ([`SavedRecords::damaged`]), never taken for absent records.
//!
//! Format 1, without the block table, is still read: checked whole at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::codec::{
    put_i64, put_self_checked_end, put_self_checked_start, put_u32, put_u64, self_checked,
    CodecError, Decoder, FileBytes,
};

use super::{Record, ResponseKey, TokenCounts};

pub(super) const RECORD_BYTES: usize = 16 + 6 * 8 + 8 + 3 * 4 + 1 + 8;
pub(super) type RecordBytes = [u8; RECORD_BYTES];

/// Format 3: blocks of [`BLOCK_RECORDS`].
const MAGIC: &[u8] = b"ccotel-ledger-3\n";
/// Format 2: blocks of 64 records; read, and saved anew as format 3.
const MAGIC_BLOCKS_OF_64: &[u8] = b"ccotel-ledger-2\n";
/// Format 1, without a block table: checked whole when read.
const MAGIC_WITHOUT_BLOCKS: &[u8] = b"ccotel-ledger-1\n";

/// Records in a block: checked together, and found through the block's first
/// key (its fence) without touching the others. A run looks up the key of each
/// response it reads, and the lookup checks the block the key falls in: with
/// 64 records (format 2) that hashed 6 KB per new response, more than the
/// response's own bytes.
pub(super) const BLOCK_RECORDS: usize = 16;
const FORMAT_2_BLOCK_RECORDS: usize = 64;
/// A block's entry in the table: its fence and its checksum.
const BLOCK_ENTRY_BYTES: usize = 16;

/// How much of an encoded ledger to check as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Every record, now.
    Everything,
    /// The strings and the block table now; each block when first used.
    AsUsed,
}

/// An encoded ledger, its strings read and its records located.
pub(super) struct Encoded<'a> {
    pub strings: Vec<&'a str>,
    pub records: &'a [RecordBytes],
    pub layout: Layout,
}

/// Where the records are, and what checks them.
pub(super) struct Layout {
    start: usize,
    count: usize,
    /// Records in a block: [`BLOCK_RECORDS`], or format 2's 64.
    block_records: usize,
    /// The high 64 bits of each block's first key.
    fences: Vec<u64>,
    /// Each block's checksum; empty for format 1, checked whole when read.
    block_sums: Vec<u64>,
    string_count: u32,
}

impl<'a> Encoded<'a> {
    pub fn parse(bytes: &'a [u8], check: Check) -> Result<Encoded<'a>, CodecError> {
        let (digest, body_at, with_blocks) = match self_checked(bytes) {
            Some((digest, body_at)) => (digest, body_at, true),
            None => (0, 0..bytes.len(), false),
        };
        let body = &bytes[body_at.clone()];
        let mut input = Decoder::new(body);
        let magic = input.take(MAGIC.len())?;
        let block_records = match with_blocks {
            true if magic == MAGIC => BLOCK_RECORDS,
            true if magic == MAGIC_BLOCKS_OF_64 => FORMAT_2_BLOCK_RECORDS,
            // Format 1 is checked whole; its fences are made here.
            false if magic == MAGIC_WITHOUT_BLOCKS => BLOCK_RECORDS,
            _ => return Err(CodecError::Invalid("unknown format".into())),
        };
        let string_count = input.u32()?;
        let strings = (0..string_count)
            .map(|_| {
                let len = input.u32()? as usize;
                std::str::from_utf8(input.take(len)?)
                    .map_err(|error| CodecError::Invalid(error.to_string()))
            })
            .collect::<Result<Vec<&str>, CodecError>>()?;
        let count = input.count(RECORD_BYTES)?;
        let start = body.len() - input.remaining();
        let records: &[RecordBytes] = input.take(count * RECORD_BYTES)?.as_chunks().0;
        let (fences, block_sums) = match with_blocks {
            true => {
                let table = input.take(count.div_ceil(block_records) * BLOCK_ENTRY_BYTES)?;
                let mut sum = Xxh3::new();
                sum.update(&body[..start]);
                sum.update(table);
                if sum.digest() != digest {
                    return Err(CodecError::Checksum);
                }
                read_block_table(table)?
            }
            false => {
                check_records(records, string_count)?;
                (fences(records, block_records), Vec::new())
            }
        };
        input.finish()?;
        let layout = Layout {
            start: body_at.start + start,
            count,
            block_records,
            fences,
            block_sums,
            string_count,
        };
        if check == Check::Everything && !layout.block_sums.is_empty() {
            for (block, records) in records.chunks(block_records).enumerate() {
                if !layout.block_is_sound(block, records) {
                    return Err(CodecError::Checksum);
                }
            }
        }
        Ok(Encoded {
            strings,
            records,
            layout,
        })
    }
}

fn read_block_table(table: &[u8]) -> Result<(Vec<u64>, Vec<u64>), CodecError> {
    let mut input = Decoder::new(table);
    let blocks = table.len() / BLOCK_ENTRY_BYTES;
    let (mut fences, mut sums) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
    for _ in 0..blocks {
        let fence = input.u64()?;
        if fences.last().is_some_and(|&last| last > fence) {
            return Err(CodecError::Invalid("response keys out of order".into()));
        }
        fences.push(fence);
        sums.push(input.u64()?);
    }
    Ok((fences, sums))
}

/// Format 1's check of all records at once: each names strings that exist, and
/// keys are in order.
fn check_records(records: &[RecordBytes], string_count: u32) -> Result<(), CodecError> {
    let mut previous_key = None;
    for chunk in records {
        let (key, record) = decode_record(chunk);
        if !names_known_strings(&record, string_count) {
            return Err(CodecError::Invalid("string index out of range".into()));
        }
        if previous_key.is_some_and(|previous| previous >= key) {
            return Err(CodecError::Invalid("response keys out of order".into()));
        }
        previous_key = Some(key);
    }
    Ok(())
}

fn names_known_strings(record: &Record, string_count: u32) -> bool {
    [record.model, record.session, record.project]
        .iter()
        .all(|&id| id < string_count)
}

impl Layout {
    fn blocks(&self) -> usize {
        self.count.div_ceil(self.block_records)
    }

    /// Whether block `block`, holding `records`, is as it was written: its
    /// checksum matches, it starts at its fence, its keys are in order and it
    /// names strings that exist.
    fn block_is_sound(&self, block: usize, records: &[RecordBytes]) -> bool {
        let Some(&sum) = self.block_sums.get(block) else {
            return self.block_sums.is_empty();
        };
        if xxh3_64(records.as_flattened()) != sum {
            return false;
        }
        let first_high = records.first().map(|first| high(record_key(first)));
        if first_high != self.fences.get(block).copied() {
            return false;
        }
        let ordered = records
            .windows(2)
            .all(|pair| record_key(&pair[0]) < record_key(&pair[1]));
        ordered
            && records
                .iter()
                .all(|chunk| names_known_strings(&decode_record(chunk).1, self.string_count))
    }
}

/// Starts an encoded ledger; returns where its body (what the digest covers
/// but for the records) starts.
pub(super) fn put_start(out: &mut Vec<u8>) -> usize {
    let body = put_self_checked_start(out);
    out.extend_from_slice(MAGIC);
    body
}

/// Ends an encoded ledger whose body starts at `body` in `out` (see
/// [`put_start`]) and whose records, `count` of them, start at `start`: the
/// block table, then the digest of the body but for the records.
pub(super) fn put_block_table(out: &mut Vec<u8>, body: usize, start: usize, count: usize) {
    put_blocks_of(out, body, start, count, BLOCK_RECORDS);
}

fn put_blocks_of(out: &mut Vec<u8>, body: usize, start: usize, count: usize, block_records: usize) {
    let records: &[RecordBytes] = out[start..start + count * RECORD_BYTES].as_chunks().0;
    let mut table = Vec::with_capacity(records.len().div_ceil(block_records) * BLOCK_ENTRY_BYTES);
    for block in records.chunks(block_records) {
        put_u64(
            &mut table,
            block.first().map_or(0, |first| high(record_key(first))),
        );
        put_u64(&mut table, xxh3_64(block.as_flattened()));
    }
    let mut digest = Xxh3::new();
    digest.update(&out[body..start]);
    digest.update(&table);
    out.extend_from_slice(&table);
    put_self_checked_end(out, digest.digest());
}

/// Records as [`super::Ledger::encode`] wrote them, sorted by key, each block
/// checked when first used.
pub(super) struct SavedRecords {
    bytes: FileBytes,
    layout: Layout,
    /// One bit per block: checked and sound.
    sound: Vec<AtomicU64>,
    /// A block failed its check.
    damaged: AtomicBool,
}

impl SavedRecords {
    pub fn new(bytes: FileBytes, layout: Layout) -> SavedRecords {
        let words = layout.blocks().div_ceil(64);
        let all_checked = layout.block_sums.is_empty();
        let sound = (0..words)
            .map(|_| AtomicU64::new(if all_checked { u64::MAX } else { 0 }))
            .collect();
        SavedRecords {
            bytes,
            layout,
            sound,
            damaged: AtomicBool::new(false),
        }
    }

    pub fn count(&self) -> usize {
        self.layout.count
    }

    /// All records, checked or not: only for what checks them first.
    fn raw(&self) -> &[RecordBytes] {
        let (start, count) = (self.layout.start, self.layout.count);
        self.bytes[start..start + count * RECORD_BYTES]
            .as_chunks()
            .0
    }

    fn block(&self, block: usize) -> &[RecordBytes] {
        let (records, size) = (self.raw(), self.layout.block_records);
        let start = block * size;
        &records[start..(start + size).min(records.len())]
    }

    /// Checks block `block` if it was not, and says whether it is sound. A
    /// block found damaged stays so, and marks the records damaged.
    fn block_is_sound(&self, block: usize) -> bool {
        let (word, bit) = (block / 64, 1u64 << (block % 64));
        let Some(sound) = self.sound.get(word) else {
            return false;
        };
        if sound.load(Ordering::Relaxed) & bit != 0 {
            return true;
        }
        if self.layout.block_is_sound(block, self.block(block)) {
            sound.fetch_or(bit, Ordering::Relaxed);
            return true;
        }
        self.damaged.store(true, Ordering::Relaxed);
        false
    }

    /// Whether a block was found damaged.
    pub fn damaged(&self) -> bool {
        self.damaged.load(Ordering::Relaxed)
    }

    /// Checks every block not checked yet; whether all are sound.
    pub fn check_all(&self) -> bool {
        (0..self.layout.blocks()).all(|block| self.block_is_sound(block))
    }

    /// Every record, once every block is checked and sound.
    pub fn all_checked(&self) -> Option<&[RecordBytes]> {
        self.check_all().then(|| self.raw())
    }

    /// The records of sound blocks, with their indexes; damaged blocks are
    /// skipped, and reported by [`SavedRecords::damaged`].
    pub fn iter(&self) -> impl Iterator<Item = (usize, (ResponseKey, Record))> + '_ {
        (0..self.layout.blocks())
            .filter(|&block| self.block_is_sound(block))
            .flat_map(move |block| {
                let first = block * self.layout.block_records;
                let records = self.block(block).iter().map(|chunk| decode_record(chunk));
                (first..).zip(records)
            })
    }

    pub fn find(&self, key: ResponseKey) -> Option<Record> {
        let at = self.position(key)?;
        Some(decode_record(&self.raw()[at]).1)
    }

    /// Where the record of `key` is, if saved.
    pub fn position(&self, key: ResponseKey) -> Option<usize> {
        self.search(key).ok()
    }

    /// `Ok` with where `key`'s record is, or `Err` with where it would go. The
    /// blocks searched are checked first; in a damaged one, nothing is found.
    pub fn search(&self, key: ResponseKey) -> Result<usize, usize> {
        let layout = &self.layout;
        let (start, end) = candidates(&layout.fences, layout.block_records, layout.count, key);
        let blocks = start / layout.block_records..end.div_ceil(layout.block_records);
        if !blocks.into_iter().all(|block| self.block_is_sound(block)) {
            return Err(start);
        }
        search_in(self.raw(), start, end, key)
    }
}

fn high(key: ResponseKey) -> u64 {
    (key.0 >> 64) as u64
}

/// The high 64 bits of each block's first key: a small array that stays in
/// cache. A lookup finds its block there, and touches the records only in that
/// block, where a binary search over them all would take about 17 dependent
/// probes through a large ledger, most of them cache misses.
pub(super) fn fences(records: &[RecordBytes], block_records: usize) -> Vec<u64> {
    let first_high = |block: &[RecordBytes]| high(record_key(&block[0]));
    records.chunks(block_records).map(first_high).collect()
}

/// The range of records that may hold `key`, given their fences.
fn candidates(
    fences: &[u64],
    block_records: usize,
    count: usize,
    key: ResponseKey,
) -> (usize, usize) {
    let high = high(key);
    // Keys before the first block are below every fence at or under `high`,
    // keys from the end on are above a fence over it; keys of equal high bits
    // may straddle fences, so the range runs from the last fence below `high`
    // to the first one above it.
    let first_block = fences
        .partition_point(|&fence| fence < high)
        .saturating_sub(1);
    let end_block = fences.partition_point(|&fence| fence <= high);
    let start = first_block * block_records;
    let end = (end_block * block_records).min(count).max(start);
    (start, end)
}

fn search_in(
    records: &[RecordBytes],
    start: usize,
    end: usize,
    key: ResponseKey,
) -> Result<usize, usize> {
    records[start..end]
        .binary_search_by(|record| record_key(record).cmp(&key))
        .map(|at| start + at)
        .map_err(|at| start + at)
}

/// Finds `key` in records sorted by key, given their [`fences`].
#[cfg(test)]
pub(super) fn search(
    records: &[RecordBytes],
    fences: &[u64],
    key: ResponseKey,
) -> Result<usize, usize> {
    let (start, end) = candidates(fences, BLOCK_RECORDS, records.len(), key);
    search_in(records, start, end, key)
}

pub(super) fn encode_record(out: &mut Vec<u8>, key: ResponseKey, record: &Record) {
    out.extend_from_slice(&key.0.to_le_bytes());
    let t = &record.tokens;
    for value in [
        t.input,
        t.output,
        t.cache_creation,
        t.cache_creation_1h,
        t.cache_read,
        t.web_search_requests,
    ] {
        put_u64(out, value);
    }
    put_i64(out, record.timestamp_ms);
    for id in [record.model, record.session, record.project] {
        put_u32(out, id);
    }
    out.push(record.flags);
    put_u64(out, record.cost_usd.unwrap_or(f64::NAN).to_bits());
}

pub(super) fn record_key(chunk: &[u8]) -> ResponseKey {
    ResponseKey(u128::from_le_bytes(
        chunk[..16].try_into().unwrap_or([0; 16]),
    ))
}

/// One fixed-size record, as [`encode_record`] lays it out.
pub(super) fn decode_record(chunk: &[u8]) -> (ResponseKey, Record) {
    let u64_at = |at: usize| u64::from_le_bytes(chunk[at..at + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |at: usize| u32::from_le_bytes(chunk[at..at + 4].try_into().unwrap_or([0; 4]));
    let cost = f64::from_bits(u64_at(85));
    let record = Record {
        tokens: TokenCounts {
            input: u64_at(16),
            output: u64_at(24),
            cache_creation: u64_at(32),
            cache_creation_1h: u64_at(40),
            cache_read: u64_at(48),
            web_search_requests: u64_at(56),
        },
        timestamp_ms: u64_at(64) as i64,
        model: u32_at(72),
        session: u32_at(76),
        project: u32_at(80),
        flags: chunk[84],
        cost_usd: (!cost.is_nan()).then_some(cost),
    };
    (record_key(chunk), record)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records with these keys, sorted, as the saved part of a ledger holds them.
    fn saved_with_keys(keys: &[u128]) -> Vec<RecordBytes> {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        let record = Record {
            tokens: TokenCounts::default(),
            timestamp_ms: 1,
            model: 0,
            session: 0,
            project: 0,
            flags: 0,
            cost_usd: None,
        };
        let encoded = keys.iter().map(|&key| {
            let mut out = Vec::new();
            encode_record(&mut out, ResponseKey(key), &record);
            out.try_into().expect("one record")
        });
        encoded.collect()
    }

    /// `encoded` (format 3) as format 1 wrote it: no self-checking frame, no
    /// block table.
    fn as_format_1(encoded: &[u8]) -> Vec<u8> {
        let parsed = Encoded::parse(encoded, Check::Everything).expect("parse");
        let end = parsed.layout.start + parsed.layout.count * RECORD_BYTES;
        let mut old = MAGIC_WITHOUT_BLOCKS.to_vec();
        let (_, body) = self_checked(encoded).expect("format 3");
        old.extend_from_slice(&encoded[body.start + MAGIC.len()..end]);
        old
    }

    /// `encoded` (format 3) as format 2 wrote it: blocks of 64 records.
    fn as_format_2(encoded: &[u8]) -> Vec<u8> {
        let parsed = Encoded::parse(encoded, Check::Everything).expect("parse");
        let end = parsed.layout.start + parsed.layout.count * RECORD_BYTES;
        let (_, body_at) = self_checked(encoded).expect("format 3");
        let mut old = Vec::new();
        let body = put_self_checked_start(&mut old);
        old.extend_from_slice(MAGIC_BLOCKS_OF_64);
        old.extend_from_slice(&encoded[body_at.start + MAGIC.len()..end]);
        let start = old.len() - parsed.layout.count * RECORD_BYTES;
        put_blocks_of(
            &mut old,
            body,
            start,
            parsed.layout.count,
            FORMAT_2_BLOCK_RECORDS,
        );
        old
    }

    /// A ledger of `responses` responses, of two models.
    fn ledger_of(responses: u64) -> super::super::Ledger {
        let mut ledger = super::super::Ledger::new();
        for i in 0..responses {
            let mut observation = super::super::tests::obs(i, 1, "s");
            observation.model = if i % 2 == 0 { "a" } else { "b" };
            ledger.observe(ResponseKey::of(&format!("m{i}"), None), &observation);
        }
        ledger
    }

    /// `read`, a ledger of an earlier format, is sound and saved as `current`.
    fn assert_sound_and_saved_anew(read: &super::super::Ledger, current: &[u8]) {
        assert!(read.check_everything().is_ok());
        assert_eq!(
            read.encode().expect("encode"),
            current,
            "saved anew as format 3"
        );
    }

    #[test]
    fn format_2_is_still_read_block_by_block_and_saved_as_format_3() {
        let current = ledger_of(300).encode().expect("encode");
        let old = as_format_2(&current);
        let parsed = Encoded::parse(&old, Check::AsUsed).expect("format 2 parses");
        assert_eq!(parsed.layout.blocks(), 5, "300 records in blocks of 64");
        let read = super::super::Ledger::from_encoded(FileBytes::from(old.clone())).expect("read");
        assert_sound_and_saved_anew(&read, &current);
        // A record changed in its third block of 64 is found by that block's
        // checksum.
        let mut damaged = old.clone();
        let record_at = parsed.layout.start + 150 * RECORD_BYTES;
        damaged[record_at + 20] ^= 1;
        let read = super::super::Ledger::from_encoded(FileBytes::from(damaged)).expect("read");
        assert!(
            read.check_everything().is_err(),
            "the damaged block is found"
        );
    }

    #[test]
    fn format_1_is_still_read_and_checked_whole() {
        let current = ledger_of(150).encode().expect("encode");
        let old = as_format_1(&current);
        for read in [
            super::super::Ledger::decode(&old).expect("decode"),
            super::super::Ledger::from_encoded(FileBytes::from(old.clone())).expect("read"),
        ] {
            assert_sound_and_saved_anew(&read, &current);
        }
        // Format 1 has no checksums of its own; what it can check, it does.
        let mut swapped = old.clone();
        let start = old.len() - 150 * RECORD_BYTES;
        let (first, second) = swapped[start..].split_at_mut(RECORD_BYTES);
        first.swap_with_slice(&mut second[..RECORD_BYTES]);
        assert!(
            super::super::Ledger::decode(&swapped).is_err(),
            "keys out of order"
        );
    }

    #[test]
    fn search_finds_every_key_and_where_a_missing_one_goes() {
        let even: Vec<u128> = (0..5000u64)
            .map(|i| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes()))
            .collect();
        // Clustered: most keys tiny (high bits all zero), a few huge.
        let uneven: Vec<u128> = (0..5000u128)
            .map(|i| if i % 500 == 0 { u128::MAX - i } else { i * 3 })
            .collect();
        // Runs of keys with equal high bits, across several fences.
        let tied: Vec<u128> = (0..1000u128).map(|i| ((i / 300) << 64) | (i * 7)).collect();
        for keys in [even, uneven, tied, vec![7], vec![]] {
            let records = saved_with_keys(&keys);
            let fences = fences(&records, BLOCK_RECORDS);
            let search = |key: u128| search(&records, &fences, ResponseKey(key));
            let sorted: Vec<u128> = records.iter().map(|r| record_key(r).0).collect();
            for (at, &key) in sorted.iter().enumerate() {
                assert_eq!(search(key), Ok(at));
                for absent in [key.wrapping_sub(1), key.wrapping_add(1)] {
                    if sorted.binary_search(&absent).is_err() {
                        let expected = sorted.partition_point(|&k| k < absent);
                        assert_eq!(search(absent), Err(expected), "{absent:#x}");
                    }
                }
            }
            for absent in [0, 1, u128::MAX / 2, u128::MAX] {
                assert_eq!(
                    search(absent).map_err(|_| ()),
                    sorted.binary_search(&absent).map_err(|_| ())
                );
            }
        }
    }
}
