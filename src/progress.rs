//! A progress line on stderr for long scans, drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ingest::Progress;

/// Draws `progress` until dropped. Scans shorter than half a second show nothing.
pub struct ProgressLine {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressLine {
    pub fn start(progress: Arc<Progress>) -> ProgressLine {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || draw_until(&progress, &stop))
        });
        ProgressLine { stop, thread }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn draw_until(progress: &Progress, stop: &AtomicBool) {
    std::thread::sleep(Duration::from_millis(500));
    let mut drawn = false;
    while !stop.load(Ordering::Relaxed) {
        let total = progress.bytes_total.load(Ordering::Relaxed).max(1);
        let done = progress.bytes_done.load(Ordering::Relaxed).min(total);
        let width = 30;
        let filled = (done * width / total) as usize;
        let bar = format!(
            "{}{}",
            "█".repeat(filled),
            "░".repeat(width as usize - filled)
        );
        eprint!(
            "\r  reading transcripts {bar} {:>6.1} / {:.1} MB {:>3}%",
            done as f64 / 1e6,
            total as f64 / 1e6,
            done * 100 / total
        );
        let _ = std::io::stderr().flush();
        drawn = true;
        std::thread::sleep(Duration::from_millis(100));
    }
    if drawn {
        eprint!("\r\x1b[2K");
    }
}
