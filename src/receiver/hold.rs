//! Holds native requests until the transcript lines they refer to are read, or
//! the wait runs out; joins them, applies the content policy, and hands them on.
//!
//! Claude Code batches its events for seconds before sending, so their lines
//! are nearly always read first and a request goes straight through. One that
//! came early waits at most [`super::ReceiverSettings::wait`]; what is still
//! unjoined then goes on as it came, and is counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;

use super::enrich::{apply_policy_to_log, apply_policy_to_span, join_log, join_span, Join};
use super::{Native, ReceiverStats, SharedIndex};
use crate::signal::content::ContentPolicy;
use crate::signal::OtlpBatch;

/// How often held requests look again for their lines.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// The most requests held at once. Beyond it (events for sessions whose
/// transcripts this machine never sees, arriving fast), the oldest goes on
/// unenriched early, so memory stays bounded.
const MAX_HELD: usize = 256;

/// The holding stage's settings and handles.
pub struct Hold {
    pub index: SharedIndex,
    /// Set at shutdown: take nothing more, send on what is held.
    pub stop: Arc<AtomicBool>,
    pub policy: ContentPolicy,
    pub wait: Duration,
    pub stats: Arc<ReceiverStats>,
}

struct Held {
    request: Native,
    deadline: Instant,
}

impl Hold {
    /// Runs until `incoming` closes, then sends on what it still holds.
    pub async fn run(self, mut incoming: mpsc::Receiver<Native>, out: mpsc::Sender<OtlpBatch>) {
        let mut held: VecDeque<Held> = VecDeque::new();
        let mut retry = tokio::time::interval(RETRY_EVERY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopping = super::server::stopped(self.stop.clone());
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                // A client stalled mid-request must not keep ccotel from
                // stopping: close the intake and drain what is queued.
                () = &mut stopping, if !incoming.is_closed() => incoming.close(),
                request = incoming.recv() => {
                    let Some(request) = request else { break };
                    let now = Instant::now();
                    let deadline = now.checked_add(self.wait).unwrap_or(now);
                    let mut request = Held { request, deadline };
                    if self.settle(&mut request, false) {
                        if out.send(request.request.into_batch()).await.is_err() {
                            return;
                        }
                    } else {
                        held.push_back(request);
                    }
                    while held.len() > MAX_HELD {
                        let Some(mut oldest) = held.pop_front() else { break };
                        self.settle(&mut oldest, true);
                        if out.send(oldest.request.into_batch()).await.is_err() {
                            return;
                        }
                    }
                }
                _ = retry.tick(), if !held.is_empty() => {
                    let mut waiting = VecDeque::with_capacity(held.len());
                    for mut request in held.drain(..) {
                        if self.settle(&mut request, false) {
                            if out.send(request.request.into_batch()).await.is_err() {
                                return;
                            }
                        } else {
                            waiting.push_back(request);
                        }
                    }
                    held = waiting;
                }
            }
        }
        for mut request in held {
            self.settle(&mut request, true);
            if out.send(request.request.into_batch()).await.is_err() {
                return;
            }
        }
    }

    /// Joins what can be joined. True when the request is ready to go on:
    /// nothing waits, its time is up, or `give_up`.
    fn settle(&self, held: &mut Held, give_up: bool) -> bool {
        let expired = give_up || Instant::now() >= held.deadline;
        let index = match self.index.lock() {
            Ok(index) => index,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut waiting = 0u64;
        let mut joined = 0u64;
        let mut tally = |join: Join| match join {
            Join::Joined(_) => joined += 1,
            Join::Waiting => waiting += 1,
            Join::AlreadyJoined | Join::NotApplicable => {}
        };
        match &mut held.request {
            Native::Logs(request) => {
                log_records(request).for_each(|r| tally(join_log(r, &index, self.policy, expired)));
            }
            Native::Traces(request) => spans(request).for_each(|s| tally(join_span(s, &index))),
            Native::Metrics(_) => {}
        }
        drop(index);
        self.stats.joined.fetch_add(joined, Ordering::Relaxed);
        if waiting > 0 && !expired {
            return false;
        }
        self.stats.unmatched.fetch_add(waiting, Ordering::Relaxed);
        if waiting > 0 {
            tracing::debug!(
                waiting,
                "native records go on unenriched: their transcript lines were not read in time"
            );
        }
        self.apply_policy(&mut held.request);
        true
    }

    fn apply_policy(&self, request: &mut Native) {
        match request {
            Native::Logs(request) => {
                log_records(request).for_each(|r| apply_policy_to_log(r, self.policy));
            }
            Native::Traces(request) => {
                spans(request).for_each(|s| apply_policy_to_span(s, self.policy));
            }
            // Metrics carry counts and names, no transcript content.
            Native::Metrics(_) => {}
        }
    }
}

fn log_records(request: &mut ExportLogsServiceRequest) -> impl Iterator<Item = &mut LogRecord> {
    request
        .resource_logs
        .iter_mut()
        .flat_map(|r| &mut r.scope_logs)
        .flat_map(|s| &mut s.log_records)
}

fn spans(request: &mut ExportTraceServiceRequest) -> impl Iterator<Item = &mut Span> {
    request
        .resource_spans
        .iter_mut()
        .flat_map(|r| &mut r.scope_spans)
        .flat_map(|s| &mut s.spans)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

    use super::*;
    use crate::receiver::enrich::{string_value, MATCH_KEY};
    use crate::receiver::fixture::{index, SESSION};
    use crate::receiver::index::IndexLimits;

    fn tool_result(tool_use_id: &str) -> Native {
        let attr = |key: &str, value: &str| KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..Default::default()
        };
        let record = LogRecord {
            attributes: vec![
                attr("event.name", "tool_result"),
                attr("session.id", SESSION),
                attr("tool_use_id", tool_use_id),
            ],
            ..Default::default()
        };
        Native::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn joined(batch: &OtlpBatch) -> bool {
        let record =
            &batch.logs.as_ref().expect("logs").resource_logs[0].scope_logs[0].log_records[0];
        string_value(&record.attributes, MATCH_KEY).is_some()
    }

    #[tokio::test]
    async fn joined_requests_go_straight_on_and_held_ones_stay_bounded() {
        let index = index(8, IndexLimits::default(), Instant::now());
        let stats = Arc::new(ReceiverStats::default());
        let hold = Hold {
            index: Arc::new(Mutex::new(index)),
            stop: Arc::new(AtomicBool::new(false)),
            policy: ContentPolicy::default(),
            wait: Duration::from_secs(60),
            stats: stats.clone(),
        };
        let (sender, incoming) = mpsc::channel(8);
        let (out, mut ready) = mpsc::channel(1024);
        let running = tokio::spawn(hold.run(incoming, out));

        sender.send(tool_result("toolu_01AAA")).await.expect("send");
        let first = tokio::time::timeout(Duration::from_secs(5), ready.recv())
            .await
            .expect("not held")
            .expect("a batch");
        assert!(joined(&first));

        // Unknown calls wait their 60 s, but no more than MAX_HELD of them.
        for n in 0..MAX_HELD + 10 {
            sender
                .send(tool_result(&format!("toolu_unknown_{n}")))
                .await
                .expect("send");
        }
        for _ in 0..10 {
            let early = tokio::time::timeout(Duration::from_secs(5), ready.recv())
                .await
                .expect("the oldest go on early")
                .expect("a batch");
            assert!(!joined(&early));
        }
        assert!(ready.try_recv().is_err(), "the rest are still held");

        // Closing the intake sends on everything held.
        drop(sender);
        running.await.expect("hold finished");
        let mut rest = 0;
        while ready.try_recv().is_ok() {
            rest += 1;
        }
        assert_eq!(rest, MAX_HELD);
        assert_eq!(stats.joined.load(Ordering::Relaxed), 1);
        assert_eq!(
            stats.unmatched.load(Ordering::Relaxed),
            (MAX_HELD + 10) as u64
        );
    }
}
