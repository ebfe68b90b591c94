//! Wake-ups for the tailer: filesystem events from notify as a latency hint, and a
//! poll interval as the ground truth (events can be dropped, limits hit, or the
//! filesystem may not report them at all).

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// Why the tailer woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Event,
    Poll,
}

/// Watches the `projects/` folders of the roots.
pub struct Watch {
    _watcher: Option<RecommendedWatcher>,
    events: Receiver<()>,
    poll: Duration,
}

impl Watch {
    /// Starts watching; a root that cannot be watched is polled only, with a warning.
    pub fn start(roots: &[PathBuf], poll: Duration) -> Watch {
        let (sender, events) = channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = sender.send(());
            }
        });
        let watcher = match watcher {
            Ok(mut watcher) => {
                for root in roots {
                    let projects = root.join("projects");
                    if let Err(error) = watcher.watch(&projects, RecursiveMode::Recursive) {
                        tracing::warn!(
                            "not watching {} ({error}); polling every {:?}",
                            projects.display(),
                            poll
                        );
                    }
                }
                Some(watcher)
            }
            Err(error) => {
                tracing::warn!("file events unavailable ({error}); polling every {poll:?}");
                None
            }
        };
        Watch {
            _watcher: watcher,
            events,
            poll,
        }
    }

    /// Waits for an event or the poll interval, at most `limit`. Events arriving
    /// in a burst are taken together.
    pub fn wait(&self, limit: Duration) -> Wake {
        match self.events.recv_timeout(self.poll.min(limit)) {
            Ok(()) => {
                while self.events.try_recv().is_ok() {}
                Wake::Event
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => Wake::Poll,
        }
    }
}
