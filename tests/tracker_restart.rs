//! Open spans survive a restart: feeding the samples through one tracker, or
//! through a tracker saved and restored after every few lines (as `ccotel run`
//! does at each committed batch), yields the same spans, logs and usage.

mod common;

use ccotel::session::activity::Activity;
use ccotel::session::{Ledger, LineOrigin, PriceTable, Tracker, TrackerOptions};
use ccotel::transcript::{decode_line, Decoded, Entry};
use common::ClaudeHome;

/// Every decodable line of the home, in the order `ccotel` reads them.
fn lines(home: &ClaudeHome) -> Vec<(String, String, u64, Vec<u8>)> {
    let mut out = Vec::new();
    for file in ccotel::source::discover(&[home.root()]).expect("discover") {
        let bytes = std::fs::read(&file.path).expect("read");
        let mut offset = 0u64;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if line.ends_with(b"\n") {
                out.push((
                    file.path.display().to_string(),
                    file.project.to_string(),
                    offset,
                    line.to_vec(),
                ));
            }
            offset += line.len() as u64;
        }
    }
    out
}

fn feed(tracker: &mut Tracker, line: &(String, String, u64, Vec<u8>), out: &mut Activity) {
    let mut scratch = Vec::new();
    let Ok(Decoded::Value { value, .. }) = decode_line::<Entry>(&line.3, &mut scratch) else {
        return;
    };
    let origin = LineOrigin {
        path: &line.0,
        project: &line.1,
        offset: line.2,
        line: &line.3,
        file_time_ms: 1_700_000_000_000,
    };
    tracker.observe(&origin, &value, 1_800_000_000_000, out);
}

fn run(home: &ClaudeHome, every: Option<usize>) -> Activity {
    let options = TrackerOptions::default();
    let mut tracker = Tracker::new(PriceTable::embedded(), options);
    let mut out = Activity::default();
    let all = lines(home);
    let mut closed: Vec<(String, Vec<u8>)> = Vec::new();
    for (index, line) in all.iter().enumerate() {
        feed(&mut tracker, line, &mut out);
        let next_file = all.get(index + 1).is_none_or(|next| next.0 != line.0);
        if next_file {
            tracker.end_of_file(&line.0, 1_800_000_000_000, &mut out);
        }
        // Finished sessions are saved as they change, as the committer does.
        closed.extend(tracker.take_closed_changes());
        if every.is_some_and(|n| index % n == 0) {
            let ledger = Ledger::decode(&tracker.ledger().encode().expect("encode"))
                .expect("ledger round trip");
            let open = tracker.open_state();
            let (restored, error) =
                Tracker::restore(PriceTable::embedded(), options, ledger, &open, &closed);
            assert!(error.is_none(), "{error:?}");
            tracker = restored;
        }
    }
    tracker.close_all(&mut out);
    out
}

#[test]
fn a_tracker_restored_between_lines_emits_exactly_the_same() {
    let home = ClaudeHome::with_samples();
    let straight = run(&home, None);
    let restarted = run(&home, Some(7));
    assert!(straight.spans.len() > 100);
    let key = |a: &Activity| {
        let mut spans: Vec<String> = a.spans.iter().map(|s| format!("{s:?}")).collect();
        spans.sort();
        spans
    };
    let (a, b) = (key(&straight), key(&restarted));
    let only_straight: Vec<&String> = a.iter().filter(|s| !b.contains(s)).collect();
    let only_restarted: Vec<&String> = b.iter().filter(|s| !a.contains(s)).collect();
    assert!(
        only_straight.is_empty() && only_restarted.is_empty(),
        "differ:\n{:.600?}\nvs\n{:.600?}",
        only_straight.first(),
        only_restarted.first()
    );
    assert_eq!(straight.logs, restarted.logs);
    assert_eq!(straight.usage, restarted.usage);
    assert_eq!(straight.tools, restarted.tools);
}
