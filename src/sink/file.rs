//! The embedded default destination: OTLP-JSON lines files, one per signal, in the
//! data directory, readable by the collector's `otlpjsonfile` receiver.
//!
//! Each line is one export request in the OTLP/JSON encoding. A file that grows
//! past the size limit is renamed with its rotation time and a new one started;
//! rotated files are kept, since they may be the only copy of old sessions.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Delivery, Sent, SinkError};
use crate::signal::OtlpBatch;

/// Writes batches as OTLP-JSON lines.
pub struct FileSink {
    dir: PathBuf,
    max_bytes: u64,
}

impl FileSink {
    /// Creates the folder if needed.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<FileSink, SinkError> {
        fs::create_dir_all(dir).map_err(|e| {
            SinkError::Permanent(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(FileSink {
            dir: dir.to_owned(),
            max_bytes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends each request as a line, then syncs, so an acknowledged batch is on disk.
    pub fn export(&mut self, batch: &OtlpBatch, sent: &mut Sent) -> Result<Delivery, SinkError> {
        if let (Some(logs), false) = (&batch.logs, sent.logs) {
            self.append("logs", logs)?;
            sent.logs = true;
        }
        if let (Some(traces), false) = (&batch.traces, sent.traces) {
            self.append("traces", traces)?;
            sent.traces = true;
        }
        if let (Some(metrics), false) = (&batch.metrics, sent.metrics) {
            self.append("metrics", metrics)?;
            sent.metrics = true;
        }
        Ok(Delivery::default())
    }

    fn append<T: Serialize>(&self, signal: &str, request: &T) -> Result<(), SinkError> {
        let path = self.dir.join(format!("{signal}.jsonl"));
        let mut line = serde_json::to_vec(request)
            .map_err(|e| SinkError::Permanent(format!("cannot encode {signal} as JSON: {e}")))?;
        line.push(b'\n');
        let io = |e: std::io::Error| SinkError::retryable(format!("{}: {e}", path.display()));
        self.rotate_if_full(&path, signal).map_err(io)?;
        let mut file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let before = file.metadata().map_err(io)?.len();
        if let Err(error) = file.write_all(&line).and_then(|()| file.sync_data()) {
            // Never leave half a line for the reader of the file (a full disk).
            let _ = file.set_len(before);
            return Err(io(error));
        }
        Ok(())
    }

    fn rotate_if_full(&self, path: &Path, signal: &str) -> std::io::Result<()> {
        let size = match fs::metadata(path) {
            Ok(meta) => meta.len(),
            Err(_) => return Ok(()),
        };
        if size < self.max_bytes {
            return Ok(());
        }
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%S%.3fZ")
            .to_string();
        let mut rotated = self.dir.join(format!("{signal}-{stamp}.jsonl"));
        let mut n = 1;
        while rotated.exists() {
            rotated = self.dir.join(format!("{signal}-{stamp}-{n}.jsonl"));
            n += 1;
        }
        fs::rename(path, rotated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

    #[test]
    fn writes_json_lines_and_rotates_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = FileSink::open(dir.path(), 10).expect("open");
        let batch = OtlpBatch {
            logs: Some(ExportLogsServiceRequest::default()),
            ..OtlpBatch::default()
        };
        sink.export(&batch, &mut Sent::default()).expect("first");
        sink.export(&batch, &mut Sent::default()).expect("second");
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let current = fs::read_to_string(dir.path().join("logs.jsonl")).expect("read");
        assert_eq!(current, "{\"resourceLogs\":[]}\n");
    }
}
