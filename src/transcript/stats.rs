//! Counts of what the lines of a file turned out to be.

use serde::{Deserialize, Serialize};

use super::decode::{DecodeError, Decoded};

/// Lines by outcome. `not_object + malformed` lines were skipped; `repaired` lines
/// were decoded after a repair.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineStats {
    pub lines: u64,
    pub blank: u64,
    pub not_object: u64,
    pub malformed: u64,
    pub repaired: u64,
    /// Lines too long to hold in memory, decoded by streaming.
    pub oversized: u64,
}

impl LineStats {
    /// Counts one decoded (or undecodable) line.
    pub fn record<T>(&mut self, outcome: &Result<Decoded<T>, DecodeError>) {
        self.lines += 1;
        match outcome {
            Ok(Decoded::Blank) => self.blank += 1,
            Ok(Decoded::Value { repair, .. }) => self.repaired += u64::from(repair.is_some()),
            Err(DecodeError::NotObject) => self.not_object += 1,
            Err(DecodeError::Malformed(_)) => self.malformed += 1,
        }
    }

    /// Lines that could not be decoded and were skipped.
    pub fn skipped(&self) -> u64 {
        self.not_object + self.malformed
    }

    pub fn add(&mut self, other: &LineStats) {
        self.lines += other.lines;
        self.blank += other.blank;
        self.not_object += other.not_object;
        self.malformed += other.malformed;
        self.repaired += other.repaired;
        self.oversized += other.oversized;
    }
}
