//! The ClickHouse tables ccotel writes, as data: their columns, keys and
//! indexes, rendered to DDL for a database, table prefix, TTL and cluster.
//!
//! Two groups:
//! - the OpenTelemetry Collector ClickHouse exporter's tables, column for column
//!   as its DDL templates in opentelemetry-collector-contrib
//!   `exporter/clickhouseexporter/internal/sqltemplates/` at these commits:
//!   `logs_table.sql` e3bd2d1d, `traces_table.sql` f92a5763,
//!   `traces_id_ts_lookup_table.sql` 61540ced, `traces_id_ts_lookup_mv.sql`
//!   57b29d74, `metrics_sum_table.sql` 8090d3c8, `metrics_gauge_table.sql`
//!   e3bd2d1d, `metrics_histogram_table.sql` 61540ced. Grafana's ClickHouse
//!   plugin in OpenTelemetry mode reads them unchanged.
//! - domain tables for analysis without map lookups: sessions, messages, tool
//!   calls, file access.
//!
//! Every table deduplicates re-sent inserts (`non_replicated_deduplication_window`
//! on MergeTree; replicated engines do it by default), which makes a batch re-sent
//! with the same deduplication token a no-op.

/// One table.
pub struct Table {
    /// Name without the configured prefix.
    pub name: &'static str,
    /// `(name, type and codec)`, in order, in groups (the metric tables share
    /// their leading columns).
    pub columns: &'static [&'static [Column]],
    pub indexes: &'static [&'static str],
    pub partition_by: &'static str,
    pub primary_key: Option<&'static str>,
    pub order_by: &'static str,
    /// A DateTime expression for the TTL.
    pub ttl_time: &'static str,
}

/// A column's name and its type with codec.
pub type Column = (&'static str, &'static str);

const MAP: &str = "Map(LowCardinality(String), String) CODEC(ZSTD(1))";
const EXEMPLARS: &str = "Nested (FilteredAttributes Map(LowCardinality(String), String), TimeUnix DateTime64(9), Value Float64, SpanId String, TraceId String) CODEC(ZSTD(1))";
const METRIC_HEAD: [Column; 14] = [
    ("ResourceAttributes", MAP),
    ("ResourceSchemaUrl", "String CODEC(ZSTD(1))"),
    ("ScopeName", "String CODEC(ZSTD(1))"),
    ("ScopeVersion", "String CODEC(ZSTD(1))"),
    ("ScopeAttributes", MAP),
    ("ScopeDroppedAttrCount", "UInt32 CODEC(ZSTD(1))"),
    ("ScopeSchemaUrl", "String CODEC(ZSTD(1))"),
    ("ServiceName", "LowCardinality(String) CODEC(ZSTD(1))"),
    ("MetricName", "String CODEC(ZSTD(1))"),
    ("MetricDescription", "String CODEC(ZSTD(1))"),
    ("MetricUnit", "String CODEC(ZSTD(1))"),
    ("Attributes", MAP),
    ("StartTimeUnix", "DateTime64(9) CODEC(Delta, ZSTD(1))"),
    ("TimeUnix", "DateTime64(9) CODEC(Delta, ZSTD(1))"),
];
const MAP_INDEXES: [&str; 6] = [
    "INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
    "INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
    "INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
    "INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
    "INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1",
    "INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1",
];
const METRIC_ORDER: &str = "(ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))";

pub const OTEL_LOGS: Table = Table {
    name: "otel_logs",
    columns: &[&[
        ("Timestamp", "DateTime64(9) CODEC(Delta(8), ZSTD(1))"),
        ("TimestampTime", "DateTime DEFAULT toDateTime(Timestamp)"),
        ("TraceId", "String CODEC(ZSTD(1))"),
        ("SpanId", "String CODEC(ZSTD(1))"),
        ("TraceFlags", "UInt8"),
        ("SeverityText", "LowCardinality(String) CODEC(ZSTD(1))"),
        ("SeverityNumber", "UInt8"),
        ("ServiceName", "LowCardinality(String) CODEC(ZSTD(1))"),
        ("Body", "String CODEC(ZSTD(1))"),
        ("ResourceSchemaUrl", "LowCardinality(String) CODEC(ZSTD(1))"),
        ("ResourceAttributes", MAP),
        ("ScopeSchemaUrl", "LowCardinality(String) CODEC(ZSTD(1))"),
        ("ScopeName", "String CODEC(ZSTD(1))"),
        ("ScopeVersion", "LowCardinality(String) CODEC(ZSTD(1))"),
        ("ScopeAttributes", MAP),
        ("LogAttributes", MAP),
        ("EventName", "String CODEC(ZSTD(1))"),
    ]],
    indexes: &[
        "INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1",
        "INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8",
    ],
    partition_by: "toDate(TimestampTime)",
    primary_key: Some("(ServiceName, TimestampTime)"),
    order_by: "(ServiceName, TimestampTime, Timestamp)",
    ttl_time: "TimestampTime",
};

pub const OTEL_TRACES: Table = Table {
    name: "otel_traces",
    columns: &[&[
        ("Timestamp", "DateTime64(9) CODEC(Delta, ZSTD(1))"),
        ("TraceId", "String CODEC(ZSTD(1))"),
        ("SpanId", "String CODEC(ZSTD(1))"),
        ("ParentSpanId", "String CODEC(ZSTD(1))"),
        ("TraceState", "String CODEC(ZSTD(1))"),
        ("SpanName", "LowCardinality(String) CODEC(ZSTD(1))"),
        ("SpanKind", "LowCardinality(String) CODEC(ZSTD(1))"),
        ("ServiceName", "LowCardinality(String) CODEC(ZSTD(1))"),
        ("ResourceAttributes", MAP),
        ("ScopeName", "String CODEC(ZSTD(1))"),
        ("ScopeVersion", "String CODEC(ZSTD(1))"),
        ("SpanAttributes", MAP),
        ("Duration", "UInt64 CODEC(ZSTD(1))"),
        ("StatusCode", "LowCardinality(String) CODEC(ZSTD(1))"),
        ("StatusMessage", "String CODEC(ZSTD(1))"),
        ("Events", "Nested (Timestamp DateTime64(9), Name LowCardinality(String), Attributes Map(LowCardinality(String), String)) CODEC(ZSTD(1))"),
        ("Links", "Nested (TraceId String, SpanId String, TraceState String, Attributes Map(LowCardinality(String), String)) CODEC(ZSTD(1))"),
    ]],
    indexes: &[
        "INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1",
        "INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_duration Duration TYPE minmax GRANULARITY 1",
    ],
    partition_by: "toDate(Timestamp)",
    primary_key: None,
    order_by: "(ServiceName, SpanName, toDateTime(Timestamp))",
    ttl_time: "toDateTime(Timestamp)",
};

pub const OTEL_TRACES_TRACE_ID_TS: Table = Table {
    name: "otel_traces_trace_id_ts",
    columns: &[&[
        ("TraceId", "String CODEC(ZSTD(1))"),
        ("Start", "DateTime CODEC(Delta, ZSTD(1))"),
        ("End", "DateTime CODEC(Delta, ZSTD(1))"),
    ]],
    indexes: &["INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1"],
    partition_by: "toDate(Start)",
    primary_key: None,
    order_by: "(TraceId, Start)",
    ttl_time: "Start",
};

pub const OTEL_METRICS_SUM: Table = Table {
    name: "otel_metrics_sum",
    columns: &[
        &METRIC_HEAD,
        &[
            ("Value", "Float64 CODEC(ZSTD(1))"),
            ("Flags", "UInt32  CODEC(ZSTD(1))"),
            ("Exemplars", EXEMPLARS),
            ("AggregationTemporality", "Int32 CODEC(ZSTD(1))"),
            ("IsMonotonic", "Boolean CODEC(Delta, ZSTD(1))"),
        ],
    ],
    indexes: &MAP_INDEXES,
    partition_by: "toDate(TimeUnix)",
    primary_key: None,
    order_by: METRIC_ORDER,
    ttl_time: "toDateTime(TimeUnix)",
};

pub const OTEL_METRICS_GAUGE: Table = Table {
    name: "otel_metrics_gauge",
    columns: &[
        &METRIC_HEAD,
        &[
            ("Value", "Float64 CODEC(ZSTD(1))"),
            ("Flags", "UInt32 CODEC(ZSTD(1))"),
            ("Exemplars", EXEMPLARS),
        ],
    ],
    indexes: &MAP_INDEXES,
    partition_by: "toDate(TimeUnix)",
    primary_key: None,
    order_by: METRIC_ORDER,
    ttl_time: "toDateTime(TimeUnix)",
};

pub const OTEL_METRICS_HISTOGRAM: Table = Table {
    name: "otel_metrics_histogram",
    columns: &[
        &METRIC_HEAD,
        &[
            ("Count", "UInt64 CODEC(Delta, ZSTD(1))"),
            ("Sum", "Float64 CODEC(ZSTD(1))"),
            ("BucketCounts", "Array(UInt64) CODEC(ZSTD(1))"),
            ("ExplicitBounds", "Array(Float64) CODEC(ZSTD(1))"),
            ("Exemplars", EXEMPLARS),
            ("Flags", "UInt32 CODEC(ZSTD(1))"),
            ("Min", "Float64 CODEC(ZSTD(1))"),
            ("Max", "Float64 CODEC(ZSTD(1))"),
            ("AggregationTemporality", "Int32 CODEC(ZSTD(1))"),
        ],
    ],
    indexes: &MAP_INDEXES,
    partition_by: "toDate(TimeUnix)",
    primary_key: None,
    order_by: METRIC_ORDER,
    ttl_time: "toDateTime(TimeUnix)",
};

/// One row per transcript entry; usage columns carry what the entry added to
/// its response's counted usage, so a plain `sum()` is the true total.
pub const CLAUDE_MESSAGES: Table = Table {
    name: "claude_messages",
    columns: &[&[
        ("uuid", "String"),
        ("session_id", "String"),
        ("parent_uuid", "String"),
        ("timestamp", "DateTime64(3) CODEC(Delta, ZSTD(1))"),
        ("type", "LowCardinality(String)"),
        ("role", "LowCardinality(String)"),
        ("model", "LowCardinality(String)"),
        ("content_type", "LowCardinality(String)"),
        ("content_length", "UInt64"),
        ("content_preview", "String CODEC(ZSTD(1))"),
        ("is_sidechain", "Bool"),
        ("agent_id", "String"),
        ("cwd", "String CODEC(ZSTD(1))"),
        ("git_branch", "LowCardinality(String)"),
        ("project", "LowCardinality(String)"),
        ("version", "LowCardinality(String)"),
        ("message_id", "String"),
        ("request_id", "String"),
        ("input_tokens", "UInt64"),
        ("output_tokens", "UInt64"),
        ("cache_creation_input_tokens", "UInt64"),
        ("cache_read_input_tokens", "UInt64"),
        ("cost_estimate", "Float64"),
        ("transcript_path", "String CODEC(ZSTD(1))"),
        ("transcript_offset", "UInt64"),
    ]],
    indexes: &["INDEX idx_uuid uuid TYPE bloom_filter(0.001) GRANULARITY 1"],
    partition_by: "toYYYYMM(timestamp)",
    primary_key: None,
    order_by: "(session_id, timestamp, uuid)",
    ttl_time: "toDateTime(timestamp)",
};

/// One row per session each time it is finished (a resumed session adds a row;
/// read with `argMax(…, last_activity)` or `FINAL`).
pub const CLAUDE_SESSIONS: Table = Table {
    name: "claude_sessions",
    columns: &[&[
        ("session_id", "String"),
        ("project", "LowCardinality(String)"),
        ("cwd", "String"),
        ("git_branch", "LowCardinality(String)"),
        ("version", "LowCardinality(String)"),
        ("start", "DateTime64(3)"),
        ("last_activity", "DateTime64(3)"),
        ("entries", "UInt64"),
        ("bytes", "UInt64"),
        ("turns", "UInt64"),
        ("input_tokens", "UInt64"),
        ("output_tokens", "UInt64"),
        ("cache_creation_input_tokens", "UInt64"),
        ("cache_read_input_tokens", "UInt64"),
        ("cost_estimate", "Float64"),
    ]],
    indexes: &[],
    partition_by: "toYYYYMM(start)",
    primary_key: None,
    order_by: "(project, start, session_id)",
    ttl_time: "toDateTime(last_activity)",
};

/// One row per finished tool call.
pub const CLAUDE_TOOL_USAGE: Table = Table {
    name: "claude_tool_usage",
    columns: &[&[
        ("tool_use_id", "String"),
        ("session_id", "String"),
        ("message_uuid", "String"),
        ("timestamp", "DateTime64(3) CODEC(Delta, ZSTD(1))"),
        ("tool_name", "LowCardinality(String)"),
        ("file_path", "String"),
        ("command", "String CODEC(ZSTD(1))"),
        ("query", "String CODEC(ZSTD(1))"),
        ("success", "Bool"),
        ("error_message", "String CODEC(ZSTD(1))"),
        ("result_size", "UInt64"),
        ("duration_ms", "UInt64"),
        ("project", "LowCardinality(String)"),
    ]],
    indexes: &[],
    partition_by: "toYYYYMM(timestamp)",
    primary_key: None,
    order_by: "(tool_name, timestamp, tool_use_id)",
    ttl_time: "toDateTime(timestamp)",
};

/// One row per file a tool read, wrote, edited or searched.
pub const CLAUDE_FILE_ACCESS: Table = Table {
    name: "claude_file_access",
    columns: &[&[
        ("session_id", "String"),
        ("timestamp", "DateTime64(3) CODEC(Delta, ZSTD(1))"),
        ("file_path", "String"),
        ("operation", "LowCardinality(String)"),
        ("size", "UInt64"),
        ("extension", "LowCardinality(String)"),
        ("sensitive", "Bool"),
        ("tool_use_id", "String"),
        ("project", "LowCardinality(String)"),
    ]],
    indexes: &[],
    partition_by: "toYYYYMM(timestamp)",
    primary_key: None,
    order_by: "(session_id, timestamp, file_path)",
    ttl_time: "toDateTime(timestamp)",
};

/// Every table, in creation order (the lookup table before its view).
pub const TABLES: [&Table; 10] = [
    &OTEL_LOGS,
    &OTEL_TRACES,
    &OTEL_TRACES_TRACE_ID_TS,
    &OTEL_METRICS_SUM,
    &OTEL_METRICS_GAUGE,
    &OTEL_METRICS_HISTOGRAM,
    &CLAUDE_MESSAGES,
    &CLAUDE_SESSIONS,
    &CLAUDE_TOOL_USAGE,
    &CLAUDE_FILE_ACCESS,
];

/// Where and how the tables are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub database: String,
    pub table_prefix: String,
    pub ttl_days: Option<u32>,
    /// `ON CLUSTER` and replicated engines.
    pub cluster: Option<String>,
}

impl Table {
    /// Every column, in order.
    pub fn all_columns(&self) -> impl Iterator<Item = &'static Column> {
        self.columns.iter().flat_map(|group| group.iter())
    }
}

impl Layout {
    pub fn table(&self, table: &Table) -> String {
        format!("{}{}", self.table_prefix, table.name)
    }

    fn on_cluster(&self) -> String {
        self.cluster
            .as_ref()
            .map(|c| format!(" ON CLUSTER {}", quote(c)))
            .unwrap_or_default()
    }

    fn engine(&self) -> &'static str {
        if self.cluster.is_some() {
            "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"
        } else {
            "MergeTree()"
        }
    }

    /// The statements that create the database, every table and the view.
    pub fn ddl(&self) -> Vec<String> {
        let mut statements = vec![format!(
            "CREATE DATABASE IF NOT EXISTS {}{}",
            quote(&self.database),
            self.on_cluster()
        )];
        statements.extend(TABLES.iter().map(|table| self.create_table(table)));
        statements.push(self.trace_id_view());
        statements
    }

    pub fn create_table(&self, table: &Table) -> String {
        let mut body: Vec<String> = table
            .all_columns()
            .map(|(name, kind)| format!("    {} {kind}", quote(name)))
            .collect();
        body.extend(table.indexes.iter().map(|index| format!("    {index}")));
        let primary = table
            .primary_key
            .map(|key| format!("PRIMARY KEY {key}\n"))
            .unwrap_or_default();
        let ttl = self
            .ttl_days
            .map(|days| format!("TTL {} + toIntervalDay({days})\n", table.ttl_time))
            .unwrap_or_default();
        let dedup = if self.cluster.is_some() {
            ""
        } else {
            ", non_replicated_deduplication_window = 10000"
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {}.{}{} (\n{}\n) ENGINE = {}\nPARTITION BY {}\n{primary}ORDER BY {}\n{ttl}SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{dedup}",
            quote(&self.database),
            quote(&self.table(table)),
            self.on_cluster(),
            body.join(",\n"),
            self.engine(),
            table.partition_by,
            table.order_by,
        )
    }

    fn trace_id_view(&self) -> String {
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view}{cluster}\nTO {db}.{lookup}\nAS SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End\nFROM {db}.{traces}\nWHERE TraceId != ''\nGROUP BY TraceId",
            db = quote(&self.database),
            view = quote(&format!("{}otel_traces_trace_id_ts_mv", self.table_prefix)),
            cluster = self.on_cluster(),
            lookup = quote(&self.table(&OTEL_TRACES_TRACE_ID_TS)),
            traces = quote(&self.table(&OTEL_TRACES)),
        )
    }

    /// Sets the insert deduplication window on an existing MergeTree table
    /// (replicated tables deduplicate by default).
    pub fn dedup_setting(&self, table: &Table) -> Option<String> {
        self.cluster.is_none().then(|| {
            format!(
                "ALTER TABLE {}.{} MODIFY SETTING non_replicated_deduplication_window = 10000",
                quote(&self.database),
                quote(&self.table(table))
            )
        })
    }

    /// `ALTER TABLE … ADD COLUMN` for columns of `table` missing from `existing`
    /// (what a table created by an older ccotel lacks).
    pub fn migrations(&self, table: &Table, existing: &[String]) -> Vec<String> {
        let mut after: Option<&str> = None;
        let mut statements = Vec::new();
        for (name, kind) in table.all_columns() {
            if !existing.iter().any(|c| c == name) {
                let position = after
                    .map(|a| format!(" AFTER {}", quote(a)))
                    .unwrap_or_else(|| " FIRST".to_owned());
                statements.push(format!(
                    "ALTER TABLE {}.{}{} ADD COLUMN IF NOT EXISTS {} {kind}{position}",
                    quote(&self.database),
                    quote(&self.table(table)),
                    self.on_cluster(),
                    quote(name),
                ));
            }
            after = Some(name);
        }
        statements
    }
}

/// A backquoted identifier.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            database: "otel".into(),
            table_prefix: String::new(),
            ttl_days: None,
            cluster: None,
        }
    }

    #[test]
    fn ddl_names_database_prefix_ttl_and_cluster() {
        let mut layout = layout();
        let plain = layout.create_table(&OTEL_LOGS);
        assert!(plain.starts_with("CREATE TABLE IF NOT EXISTS `otel`.`otel_logs` ("));
        assert!(plain.contains("ENGINE = MergeTree()"));
        assert!(plain.contains("non_replicated_deduplication_window"));
        assert!(!plain.contains("TTL"));
        layout.table_prefix = "cc_".into();
        layout.ttl_days = Some(30);
        layout.cluster = Some("main".into());
        let clustered = layout.create_table(&CLAUDE_MESSAGES);
        assert!(clustered.contains("`otel`.`cc_claude_messages` ON CLUSTER `main`"));
        assert!(clustered.contains("ReplicatedMergeTree("));
        assert!(clustered.contains("TTL toDateTime(timestamp) + toIntervalDay(30)"));
        assert_eq!(layout.ddl().len(), 1 + TABLES.len() + 1);
    }

    #[test]
    fn migrations_add_only_missing_columns_in_place() {
        let existing: Vec<String> = CLAUDE_TOOL_USAGE
            .all_columns()
            .map(|(n, _)| n.to_string())
            .filter(|n| n != "query" && n != "project")
            .collect();
        let statements = layout().migrations(&CLAUDE_TOOL_USAGE, &existing);
        assert_eq!(statements.len(), 2);
        assert!(statements[0]
            .contains("ADD COLUMN IF NOT EXISTS `query` String CODEC(ZSTD(1)) AFTER `command`"));
        assert!(statements[1].contains("`project`"));
    }
}
