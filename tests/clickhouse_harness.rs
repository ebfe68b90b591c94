//! Self-test of the ClickHouse harness in `common::clickhouse`: DDL for an
//! `otel_logs`-shaped table, rows inserted with hand-written HTTP requests and
//! read back, ClickHouse-style errors, and data that survives a stop and a
//! restart. Runs against `CCOTEL_TEST_CLICKHOUSE_URL` when set, else against the
//! embedded engine.

mod common;

use common::clickhouse::ClickHouse;

/// The OpenTelemetry Collector exporter's `otel_logs`, trimmed, without TTL.
fn create_logs(ch: &ClickHouse, db: &str) {
    ch.query(&format!(
        "CREATE TABLE {db}.otel_logs (
            Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
            TimestampTime DateTime DEFAULT toDateTime(Timestamp),
            TraceId String CODEC(ZSTD(1)),
            SeverityText LowCardinality(String) CODEC(ZSTD(1)),
            SeverityNumber UInt8,
            ServiceName LowCardinality(String) CODEC(ZSTD(1)),
            Body String CODEC(ZSTD(1)),
            ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
            LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
            Tags Array(LowCardinality(String)),
            INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1
        ) ENGINE = MergeTree
        PARTITION BY toDate(TimestampTime)
        ORDER BY (ServiceName, TimestampTime, Timestamp)
        SETTINGS non_replicated_deduplication_window = 100"
    ));
}

#[test]
fn rows_go_in_and_come_back() {
    let Some(ch) = ClickHouse::start() else {
        return;
    };
    let db = ch.create_database("harness_rows");
    create_logs(&ch, &db);
    let columns = format!("{db}.otel_logs (Timestamp, TraceId, SeverityText, SeverityNumber, ServiceName, Body, ResourceAttributes, LogAttributes, Tags)");

    // The SQL and the rows in the body.
    ch.query(&format!(
        "INSERT INTO {columns} FORMAT JSONEachRow\n{}\n",
        r#"{"Timestamp":"2026-11-21 10:00:00.123456789","TraceId":"aa","SeverityText":"INFO","SeverityNumber":9,"ServiceName":"claude-code","Body":"tab\there","ResourceAttributes":{"service.name":"claude-code"},"LogAttributes":{"event.name":"user_prompt","prompt_length":"42"},"Tags":["a","b"]}"#
    ));
    // The SQL in `query`, the rows in the body, as clients insert.
    // DateTime64 text as a plain number: nanoseconds since the epoch.
    let tsv =
        "1795255200000000001\tbb\tERROR\t17\tclaude-code\tline\\nbreak\t{'host':'h'}\t{}\t[]\n";
    let response = ch
        .request(
            &[(
                "query",
                &format!("INSERT INTO {columns} FORMAT TabSeparated"),
            )],
            tsv.as_bytes(),
        )
        .expect("insert request");
    assert_eq!(response.status, 200, "{}", response.text());

    let rows = ch.query(&format!(
        "SELECT Timestamp, TimestampTime, TraceId, SeverityText, SeverityNumber, Body,
                ResourceAttributes, LogAttributes['prompt_length'], Tags
         FROM {db}.otel_logs ORDER BY Timestamp"
    ));
    assert_eq!(
        rows,
        "2026-11-21 10:00:00.000000001\t2026-11-21 10:00:00\tbb\tERROR\t17\tline\\nbreak\t{'host':'h'}\t\t[]\n\
         2026-11-21 10:00:00.123456789\t2026-11-21 10:00:00\taa\tINFO\t9\ttab\\there\t{'service.name':'claude-code'}\t42\t['a','b']\n"
    );

    // Another result format, a `{name:Type}` parameter, and the table's columns.
    let json = ch
        .request(
            &[
                ("default_format", "JSONEachRow"),
                ("param_trace", "bb"),
            ],
            format!("SELECT TraceId, SeverityNumber FROM {db}.otel_logs WHERE TraceId = {{trace:String}}").as_bytes(),
        )
        .expect("json request");
    assert_eq!(json.text(), "{\"TraceId\":\"bb\",\"SeverityNumber\":17}\n");
    let described = ch.query(&format!("DESCRIBE TABLE {db}.otel_logs"));
    assert!(
        described.contains("LogAttributes\tMap(LowCardinality(String), String)"),
        "{described}"
    );
    ch.query(&format!("DROP DATABASE {db}"));
}

#[test]
fn a_deduplication_token_makes_a_resent_insert_a_no_op() {
    let Some(ch) = ClickHouse::start() else {
        return;
    };
    let db = ch.create_database("harness_dedup");
    create_logs(&ch, &db);
    let insert = |token: &str, trace: &str| {
        let sql = format!("INSERT INTO {db}.otel_logs (Timestamp, TraceId) FORMAT TabSeparated");
        let response = ch
            .request(
                &[("query", &sql), ("insert_deduplication_token", token)],
                format!("2026-11-21 10:00:00\t{trace}\n").as_bytes(),
            )
            .expect("insert");
        assert_eq!(response.status, 200, "{}", response.text());
    };
    insert("batch-1", "a");
    insert("batch-1", "a");
    insert("batch-1", "b"); // the token alone decides
    insert("batch-2", "a");
    let count = ch.query(&format!("SELECT count() FROM {db}.otel_logs"));
    assert_eq!(count, "2\n");
    ch.query(&format!("DROP DATABASE {db}"));
}

#[test]
fn errors_read_like_clickhouse() {
    let Some(ch) = ClickHouse::start() else {
        return;
    };

    let wrong = ch
        .raw_request(
            "POST",
            &[],
            &[
                ("X-ClickHouse-User", ch.user()),
                ("X-ClickHouse-Key", "not the password"),
            ],
            b"SELECT 1",
        )
        .expect("request");
    assert!(
        matches!(wrong.status, 401 | 403),
        "{}: {}",
        wrong.status,
        wrong.text()
    );
    assert!(
        wrong.text().contains("Authentication failed"),
        "{}",
        wrong.text()
    );
    if ch.is_embedded() {
        assert_eq!(wrong.status, 403);
        assert_eq!(wrong.header("X-ClickHouse-Exception-Code"), Some("516"));
        assert!(
            wrong.text().starts_with(
                "Code: 516. DB::Exception: default: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED) (version 26."
            ),
            "{}",
            wrong.text()
        );
        // Basic authentication is checked too.
        let basic = ch
            .raw_request(
                "POST",
                &[],
                &[("Authorization", "Basic ZGVmYXVsdDp4")],
                b"SELECT 1",
            )
            .expect("request");
        assert_eq!(basic.status, 403, "{}", basic.text());
    }

    let unknown = ch
        .request(&[("database", "ccotel_no_such_db")], b"SELECT 1")
        .expect("request");
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(unknown.header("X-ClickHouse-Exception-Code"), Some("81"));
    assert!(
        unknown
            .text()
            .starts_with("Code: 81. DB::Exception: Database ccotel_no_such_db does not exist. (UNKNOWN_DATABASE)"),
        "{}",
        unknown.text()
    );

    let syntax = ch.try_query("SELEC 1").unwrap_err();
    assert!(
        syntax.starts_with("Code: 62. DB::Exception: Syntax error"),
        "{syntax}"
    );
    let table = ch
        .try_query("SELECT * FROM system.no_such_table")
        .unwrap_err();
    assert!(table.starts_with("Code: 60."), "{table}");
    let setting = ch
        .request(&[("no_such_setting", "1")], b"SELECT 1")
        .expect("request");
    assert_eq!(
        (
            setting.status,
            setting.header("X-ClickHouse-Exception-Code")
        ),
        (404, Some("115"))
    );
}

#[test]
fn data_survives_a_stop_and_a_restart() {
    let Some(mut ch) = ClickHouse::start() else {
        return;
    };
    if !ch.is_embedded() {
        return; // a real server is not ours to stop
    }
    let url = ch.url();
    let db = ch.create_database("harness_restart");
    create_logs(&ch, &db);
    ch.query(&format!(
        "INSERT INTO {db}.otel_logs (Timestamp, TraceId) VALUES ('2026-11-21 10:00:00', 'before')"
    ));

    ch.stop();
    let down = ch.try_query("SELECT 1").unwrap_err();
    assert!(down.contains("connecting to"), "{down}");

    ch.restart();
    assert_eq!(ch.url(), url);
    ch.query(&format!(
        "INSERT INTO {db}.otel_logs (Timestamp, TraceId) VALUES ('2026-11-21 10:00:01', 'after')"
    ));
    let traces = ch.query(&format!(
        "SELECT TraceId FROM {db}.otel_logs ORDER BY Timestamp"
    ));
    assert_eq!(traces, "before\nafter\n");
    ch.restart(); // while running
    assert_eq!(
        ch.query(&format!("SELECT count() FROM {db}.otel_logs")),
        "2\n"
    );
}
