//! Counter deltas folded into OTLP metric points, one point per series per batch.
//!
//! Every point is a delta (aggregation temporality DELTA) over the transcript time
//! of the lines it came from, so the sum of all points ever sent for a series is
//! that series' total, and a point re-sent after a crash is the same point.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, Sum,
};

use super::nanos;
use super::resource::string_kv;
use crate::session::activity::{Activity, SeriesKey};

/// `gen_ai.client.token.usage` bucket bounds from the semantic conventions.
const TOKEN_BUCKETS: [f64; 13] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0,
];

#[derive(Default)]
struct Window {
    start_ms: i64,
    end_ms: i64,
}

impl Window {
    fn widen(&mut self, time_ms: i64) {
        if self.start_ms == 0 && self.end_ms == 0 {
            self.start_ms = time_ms;
            self.end_ms = time_ms;
        } else {
            self.start_ms = self.start_ms.min(time_ms);
            self.end_ms = self.end_ms.max(time_ms);
        }
    }
}

#[derive(Default)]
struct IntSeries {
    value: i64,
    window: Window,
}

#[derive(Default)]
struct FloatSeries {
    value: f64,
    window: Window,
}

#[derive(Default)]
struct HistogramSeries {
    count: u64,
    sum: f64,
    buckets: Vec<u64>,
    window: Window,
}

/// The metrics of one batch.
pub fn metrics(activity: &Activity) -> Vec<Metric> {
    let mut tokens: BTreeMap<(SeriesKey, &'static str), IntSeries> = BTreeMap::new();
    let mut cost: BTreeMap<SeriesKey, FloatSeries> = BTreeMap::new();
    let mut histogram: BTreeMap<(String, &'static str), HistogramSeries> = BTreeMap::new();
    for delta in &activity.usage {
        let parts = [
            ("input", delta.input),
            ("output", delta.output),
            ("cache_read", delta.cache_read),
            ("cache_creation", delta.cache_creation),
        ];
        for (kind, value) in parts {
            if value != 0 {
                let series = tokens.entry((delta.series.clone(), kind)).or_default();
                series.value += value;
                series.window.widen(delta.time_ms);
            }
        }
        let series = cost.entry(delta.series.clone()).or_default();
        series.value += delta.cost_usd;
        series.window.widen(delta.time_ms);
    }
    // One observation per model call, when its response is complete.
    for call in &activity.calls {
        for (kind, value) in [("input", call.input), ("output", call.output)] {
            let series = histogram
                .entry((call.model.clone(), kind))
                .or_insert_with(|| HistogramSeries {
                    buckets: vec![0; TOKEN_BUCKETS.len() + 1],
                    ..HistogramSeries::default()
                });
            series.count += 1;
            series.sum += value as f64;
            let bucket = TOKEN_BUCKETS.partition_point(|bound| (value as f64) > *bound);
            series.buckets[bucket] += 1;
            series.window.widen(call.time_ms);
        }
    }
    let mut tools: BTreeMap<(String, String, String), IntSeries> = BTreeMap::new();
    let mut tool_errors: BTreeMap<(String, String, String), IntSeries> = BTreeMap::new();
    for call in &activity.tools {
        let key = (
            call.session.clone(),
            call.project.clone(),
            call.tool.clone(),
        );
        let series = tools.entry(key.clone()).or_default();
        series.value += 1;
        series.window.widen(call.time_ms);
        if call.error {
            let series = tool_errors.entry(key).or_default();
            series.value += 1;
            series.window.widen(call.time_ms);
        }
    }
    let mut api_errors: BTreeMap<(String, String), IntSeries> = BTreeMap::new();
    for error in &activity.api_errors {
        let series = api_errors
            .entry((error.session.clone(), error.project.clone()))
            .or_default();
        series.value += 1;
        series.window.widen(error.time_ms);
    }

    let mut out = Vec::new();
    if !tokens.is_empty() {
        let points = tokens
            .iter()
            .map(|((series, kind), s)| {
                let mut attributes = series_attributes(series);
                attributes.push(string_kv("type", kind));
                int_point(attributes, s)
            })
            .collect();
        out.push(sum_metric(
            "ccotel.token.usage",
            "Tokens counted, by type and model (deduplicated per API response).",
            "{token}",
            points,
        ));
    }
    if !cost.is_empty() {
        let points = cost
            .iter()
            .map(|(series, s)| float_point(series_attributes(series), s))
            .collect();
        out.push(sum_metric(
            "ccotel.cost.usage",
            "Estimated cost from the embedded price table.",
            "USD",
            points,
        ));
    }
    if !tools.is_empty() {
        out.push(sum_metric(
            "ccotel.tool.calls",
            "Tool calls that finished.",
            "{call}",
            tool_points(&tools),
        ));
    }
    if !tool_errors.is_empty() {
        out.push(sum_metric(
            "ccotel.tool.errors",
            "Tool calls whose result was an error.",
            "{call}",
            tool_points(&tool_errors),
        ));
    }
    if !api_errors.is_empty() {
        let points = api_errors
            .iter()
            .map(|((session, project), s)| {
                int_point(
                    vec![
                        string_kv("session.id", session),
                        string_kv("project", project),
                    ],
                    s,
                )
            })
            .collect();
        out.push(sum_metric(
            "ccotel.api.errors",
            "API errors Claude Code recorded.",
            "{error}",
            points,
        ));
    }
    if !histogram.is_empty() {
        out.push(token_histogram(&histogram));
    }
    out
}

fn series_attributes(series: &SeriesKey) -> Vec<KeyValue> {
    vec![
        string_kv("session.id", &series.session),
        string_kv("project", &series.project),
        string_kv("model", &series.model),
    ]
}

fn tool_points(series: &BTreeMap<(String, String, String), IntSeries>) -> Vec<NumberDataPoint> {
    series
        .iter()
        .map(|((session, project, tool), s)| {
            int_point(
                vec![
                    string_kv("session.id", session),
                    string_kv("project", project),
                    string_kv("tool_name", tool),
                ],
                s,
            )
        })
        .collect()
}

fn int_point(attributes: Vec<KeyValue>, series: &IntSeries) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: nanos(series.window.start_ms),
        time_unix_nano: nanos(series.window.end_ms),
        value: Some(number_data_point::Value::AsInt(series.value)),
        ..NumberDataPoint::default()
    }
}

fn float_point(attributes: Vec<KeyValue>, series: &FloatSeries) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: nanos(series.window.start_ms),
        time_unix_nano: nanos(series.window.end_ms),
        value: Some(number_data_point::Value::AsDouble(series.value)),
        ..NumberDataPoint::default()
    }
}

fn sum_metric(name: &str, description: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Metric::default()
    }
}

fn token_histogram(series: &BTreeMap<(String, &'static str), HistogramSeries>) -> Metric {
    let points = series
        .iter()
        .map(|((model, kind), s)| HistogramDataPoint {
            attributes: vec![
                string_kv("gen_ai.operation.name", "chat"),
                string_kv("gen_ai.provider.name", "anthropic"),
                string_kv("gen_ai.token.type", kind),
                string_kv("gen_ai.request.model", model),
            ],
            start_time_unix_nano: nanos(s.window.start_ms),
            time_unix_nano: nanos(s.window.end_ms),
            count: s.count,
            sum: Some(s.sum),
            bucket_counts: s.buckets.clone(),
            explicit_bounds: TOKEN_BUCKETS.to_vec(),
            ..HistogramDataPoint::default()
        })
        .collect();
    Metric {
        name: "gen_ai.client.token.usage".to_owned(),
        description: "Billable tokens per model call (semantic conventions; input includes cache reads and writes).".to_owned(),
        unit: "{token}".to_owned(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Metric::default()
    }
}
