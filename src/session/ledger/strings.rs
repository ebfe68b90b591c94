//! A ledger's strings: kept in one buffer, and a string's id found by its text.
//!
//! The index keeps a hash of each text and the id it belongs to, not a copy of
//! the text: a lookup compares the text with the string its hash leads to. A
//! saved ledger holds a string per session (10,000 on a 10,000-file corpus), and
//! a run that merges anything new indexes them all; copying each into a map key
//! was most of that cost.

use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_64;

/// A ledger's strings by id, in one buffer: a saved ledger holds a string per
/// session, and opening one allocated each of them (10,000 on a 10,000-file
/// corpus) on the path a changed run waits on.
#[derive(Debug, Default)]
pub(super) struct StringTable {
    text: String,
    /// Where each string ends in `text`; it starts where the one before ends.
    ends: Vec<usize>,
}

impl StringTable {
    /// `strings`, with their ids their positions.
    pub(super) fn of(strings: &[&str]) -> StringTable {
        let mut table = StringTable {
            text: String::with_capacity(strings.iter().map(|text| text.len()).sum()),
            ends: Vec::with_capacity(strings.len()),
        };
        for text in strings {
            table.push(text);
        }
        table
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The string with id `id`, if there is one.
    pub(super) fn get(&self, id: u32) -> Option<&str> {
        let id = id as usize;
        let end = *self.ends.get(id)?;
        let start = id.checked_sub(1).map_or(0, |before| self.ends[before]);
        self.text.get(start..end)
    }

    /// Adds `text` as a new string; returns its id.
    pub(super) fn push(&mut self, text: &str) -> u32 {
        self.text.push_str(text);
        self.ends.push(self.text.len());
        (self.ends.len() - 1) as u32
    }

    /// The strings, by id.
    pub(super) fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.ends.len() as u32).map(|id| self.get(id).unwrap_or_default())
    }
}

/// Each string's id, by the hash of its text.
#[derive(Debug, Default)]
pub(super) struct StringIndex {
    by_hash: FxHashMap<u64, u32>,
    /// Ids whose hash an earlier string already had: looked through only when
    /// the string the hash leads to is another text.
    collided: Vec<u32>,
}

impl StringIndex {
    /// The index of `strings`, where a string's id is its position. Of equal
    /// texts, the first one's id is found.
    pub(super) fn of(strings: &StringTable) -> StringIndex {
        let mut index = StringIndex {
            by_hash: FxHashMap::with_capacity_and_hasher(strings.len(), Default::default()),
            collided: Vec::new(),
        };
        for (id, text) in (0u32..).zip(strings.iter()) {
            index.add(hash(text), id);
        }
        index
    }

    /// The id of `text` (whose hash is `hash`) among `strings`, the strings
    /// this index was built from and added to.
    pub(super) fn get(&self, strings: &StringTable, hash: u64, text: &str) -> Option<u32> {
        let is_text = |id: &u32| strings.get(*id) == Some(text);
        self.by_hash
            .get(&hash)
            .filter(|id| is_text(id))
            .or_else(|| self.collided.iter().find(|id| is_text(id)))
            .copied()
    }

    /// Records that the string with id `id` has the hash `hash`.
    pub(super) fn add(&mut self, hash: u64, id: u32) {
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.collided.push(id),
        }
    }
}

/// The hash a text is indexed by.
pub(super) fn hash(text: &str) -> u64 {
    xxh3_64(text.as_bytes())
}

/// A ledger's strings with their index: a text's id without a map of its own.
#[derive(Clone, Copy)]
pub struct StringLookup<'a> {
    pub(super) strings: &'a StringTable,
    pub(super) index: &'a StringIndex,
}

impl StringLookup<'_> {
    /// The id of the string `text`, if the ledger has it.
    pub fn get(&self, text: &str) -> Option<u32> {
        self.index.get(self.strings, hash(text), text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(texts: &[&str]) -> StringTable {
        StringTable::of(texts)
    }

    #[test]
    fn a_table_gives_each_string_back_by_its_id() {
        let texts = ["claude-opus-4-6", "", "sé", "s1"];
        let mut table = strings(&texts[..3]);
        assert_eq!(table.push(texts[3]), 3);
        assert_eq!(table.len(), 4);
        for (id, text) in (0u32..).zip(texts) {
            assert_eq!(table.get(id), Some(text));
        }
        assert_eq!(table.get(4), None);
        assert!(table.iter().eq(texts));
        assert_eq!(table.iter().len(), 4);
    }

    #[test]
    fn every_string_is_found_by_its_text_and_nothing_else_is() {
        let strings = strings(&["claude-opus-4-6", "s1", "-p", "", "s2"]);
        let index = StringIndex::of(&strings);
        for (id, text) in (0u32..).zip(strings.iter()) {
            assert_eq!(index.get(&strings, hash(text), text), Some(id));
        }
        assert_eq!(index.get(&strings, hash("s3"), "s3"), None);
    }

    #[test]
    fn texts_whose_hashes_collide_are_told_apart() {
        // Added under one hash, as two texts whose hashes collide would be.
        let strings = strings(&["a", "b", "a"]);
        let mut index = StringIndex::default();
        for id in 0..3 {
            index.add(7, id);
        }
        assert_eq!(
            index.get(&strings, 7, "a"),
            Some(0),
            "the first of equal texts"
        );
        assert_eq!(
            index.get(&strings, 7, "b"),
            Some(1),
            "found past the collision"
        );
        assert_eq!(index.get(&strings, 7, "c"), None);
    }
}
