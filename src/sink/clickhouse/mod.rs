//! Direct ClickHouse export with the `clickhouse` crate: the OpenTelemetry
//! Collector exporter's tables and the domain tables (see [`schema`]), one insert
//! per table per batch.
//!
//! Exactly once: rows hold no wall-clock values, so a batch read again after a
//! crash yields the same rows, and each insert carries an
//! `insert_deduplication_token` derived from its table and content. ClickHouse
//! (with `non_replicated_deduplication_window` on MergeTree, by default on
//! replicated engines) drops an insert whose token it has seen, so a re-sent batch
//! adds no row. Offsets are committed only after every insert was acknowledged.

pub mod schema;

use std::hash::Hasher;
use std::time::Duration;

use clickhouse::Client;
use serde::Serialize;

use super::{Delivery, SinkError};
use crate::signal::rows::Rows;
use schema::{Layout, Table};

/// Connection and layout settings (`[clickhouse]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseSettings {
    pub url: String,
    pub user: String,
    pub password: String,
    pub layout: Layout,
    pub async_insert: bool,
    /// Create missing databases and tables, and add missing columns.
    pub create_schema: bool,
}

/// Which of a batch's tables ClickHouse has taken, so a retry skips them.
pub type TablesSent = [bool; 8];

/// Sends rows to ClickHouse.
pub struct ClickHouseSink {
    client: Client,
    /// The same, scoped to the database (which may not exist before the schema).
    inserts: Client,
    settings: ClickHouseSettings,
}

impl ClickHouseSink {
    /// Connects, checks the credentials and the database, and creates or migrates
    /// the schema when asked. Each failure is one line naming the setting.
    pub async fn connect(settings: ClickHouseSettings) -> Result<ClickHouseSink, SinkError> {
        let mut client = Client::default()
            .with_url(&settings.url)
            .with_user(&settings.user);
        if !settings.password.is_empty() {
            client = client.with_password(&settings.password);
        }
        let inserts = client.clone().with_database(&settings.layout.database);
        let sink = ClickHouseSink {
            client,
            inserts,
            settings,
        };
        sink.check_connection().await?;
        if sink.settings.create_schema {
            sink.create_schema().await?;
        } else {
            sink.check_database().await?;
        }
        Ok(sink)
    }

    pub fn describe(&self) -> String {
        format!(
            "ClickHouse {} (database {})",
            self.settings.url, self.settings.layout.database
        )
    }

    async fn check_connection(&self) -> Result<(), SinkError> {
        match self.client.query("SELECT 1").fetch_one::<u8>().await {
            Ok(_) => Ok(()),
            Err(error) => {
                let text = error.to_string();
                let setting = if ["Code: 516.", "Code: 194.", "Authentication failed"]
                    .iter()
                    .any(|sign| text.contains(sign))
                {
                    format!(
                        "clickhouse.user `{}` / clickhouse.password: authentication failed",
                        self.settings.user
                    )
                } else {
                    format!(
                        "clickhouse.url `{}`: cannot reach ClickHouse",
                        self.settings.url
                    )
                };
                Err(SinkError::Fatal(format!("{setting} ({text})")))
            }
        }
    }

    async fn check_database(&self) -> Result<(), SinkError> {
        let database = &self.settings.layout.database;
        let exists: u8 = self
            .client
            .query("SELECT count() > 0 FROM system.databases WHERE name = ?")
            .bind(database)
            .fetch_one()
            .await
            .map_err(|e| classify(e, "checking the database"))?;
        if exists == 0 {
            return Err(SinkError::Fatal(format!(
                "clickhouse.database `{database}` does not exist and clickhouse.create_schema is off"
            )));
        }
        Ok(())
    }

    /// Creates what is missing and adds columns an older ccotel did not have.
    pub async fn create_schema(&self) -> Result<(), SinkError> {
        for statement in self.settings.layout.ddl() {
            self.client
                .query(&statement)
                .execute()
                .await
                .map_err(|e| classify(e, "creating the schema"))?;
        }
        for table in schema::TABLES {
            let name = self.settings.layout.table(table);
            let existing: Vec<String> = self
                .client
                .query("SELECT name FROM system.columns WHERE database = ? AND table = ?")
                .bind(&self.settings.layout.database)
                .bind(&name)
                .fetch_all()
                .await
                .map_err(|e| classify(e, "reading the schema"))?;
            let mut statements = self.settings.layout.migrations(table, &existing);
            // A table created by the collector's exporter, or an older ccotel,
            // lacks the deduplication window exactly-once relies on.
            statements.extend(self.settings.layout.dedup_setting(table));
            for statement in statements {
                tracing::info!("migrating {name}: {statement}");
                self.client
                    .query(&statement)
                    .execute()
                    .await
                    .map_err(|e| classify(e, "migrating the schema"))?;
            }
        }
        Ok(())
    }

    /// Inserts every table's rows not yet taken; marks those taken. A table
    /// that fails does not keep the others from being tried.
    pub async fn export(&self, rows: &Rows, sent: &mut TablesSent) -> Result<Delivery, SinkError> {
        use schema::*;
        let mut failure: Option<SinkError> = None;
        let mut note = |result: Result<(), SinkError>| {
            if let Err(error) = result {
                failure = Some(SinkError::graver(failure.take(), error));
            }
        };
        note(self.insert(&OTEL_LOGS, &rows.logs, &mut sent[0]).await);
        note(self.insert(&OTEL_TRACES, &rows.traces, &mut sent[1]).await);
        note(
            self.insert(&OTEL_METRICS_SUM, &rows.sums, &mut sent[2])
                .await,
        );
        note(
            self.insert(&OTEL_METRICS_HISTOGRAM, &rows.histograms, &mut sent[3])
                .await,
        );
        note(
            self.insert(&CLAUDE_MESSAGES, &rows.messages, &mut sent[4])
                .await,
        );
        note(
            self.insert(&CLAUDE_SESSIONS, &rows.sessions, &mut sent[5])
                .await,
        );
        note(
            self.insert(&CLAUDE_TOOL_USAGE, &rows.tools, &mut sent[6])
                .await,
        );
        note(
            self.insert(&CLAUDE_FILE_ACCESS, &rows.files, &mut sent[7])
                .await,
        );
        match failure {
            Some(error) => Err(error),
            None => Ok(Delivery::default()),
        }
    }

    async fn insert<T>(&self, table: &Table, rows: &[T], taken: &mut bool) -> Result<(), SinkError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Serialize,
    {
        if rows.is_empty() || *taken {
            return Ok(());
        }
        let name = self.settings.layout.table(table);
        let what = format!("inserting into {}.{name}", self.settings.layout.database);
        let mut insert = self
            .inserts
            .insert::<T>(&name)
            .await
            .map_err(|e| classify(e, &what))?
            .with_setting("insert_deduplication_token", token(table.name, rows))
            .with_setting("insert_deduplicate", "1")
            .with_timeouts(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)));
        if self.settings.async_insert {
            // Without async_insert_deduplicate the token is ignored.
            insert = insert
                .with_setting("async_insert", "1")
                .with_setting("wait_for_async_insert", "1")
                .with_setting("async_insert_deduplicate", "1");
        }
        for row in rows {
            insert.write(row).await.map_err(|e| classify(e, &what))?;
        }
        insert.end().await.map_err(|e| classify(e, &what))?;
        *taken = true;
        Ok(())
    }
}

/// A token naming the insert by its table and content: the same rows give the
/// same token, so ClickHouse drops a repeat.
fn token<T: Serialize>(table: &str, rows: &[T]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.write(table.as_bytes());
    let mut writer = HashWriter(&mut hasher);
    // Serialising to a hasher cannot fail for these plain rows.
    let _ = serde_json::to_writer(&mut writer, rows);
    format!("ccotel-{:032x}", hasher.digest128())
}

struct HashWriter<'a>(&'a mut xxhash_rust::xxh3::Xxh3);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Network trouble and server overload are retryable; a request ClickHouse
/// refuses (auth, unknown table, bad data) is not.
fn classify(error: clickhouse::error::Error, what: &str) -> SinkError {
    use clickhouse::error::Error;
    let message = format!("{what}: {error}");
    match &error {
        Error::Network(_) | Error::TimedOut => SinkError::retryable(message),
        // The table is not what this version writes: every batch would fail.
        Error::SchemaMismatch(_) => SinkError::Fatal(message),
        Error::BadResponse(text) => {
            let permanent = [
                "Code: 516",
                "Code: 81.",
                "Code: 60.",
                "Code: 62.",
                "Code: 27.",
                "Code: 117.",
                "Code: 53.",
            ];
            if permanent.iter().any(|code| text.contains(code)) {
                SinkError::Permanent(message)
            } else {
                SinkError::retryable(message)
            }
        }
        _ => SinkError::Permanent(message),
    }
}
