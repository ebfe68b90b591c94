//! Configuration, layered with figment: built-in defaults < `config.toml` (the XDG
//! config dir, or `--config`) < `CCOTEL_*` environment variables < command-line
//! flags. An unknown key or a bad value is an error that names the key and where
//! the value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::session::PriceOverride;
use crate::signal::ContentPolicy;
use crate::sink::{OtlpSettings, Protocol};

/// What every environment variable read as config starts with.
const ENV_PREFIX: &str = "CCOTEL_";

/// `CCOTEL_*` variables whose values are numbers, after the prefix: read by
/// figment's `Env`, which parses them.
const NUMBER_ENV_KEYS: &[&str] = &["threads", "max_line_bytes"];

/// `CCOTEL_*` variables whose values are text, after the prefix, and the key
/// each sets: taken as written ([`TextEnv`]).
const TEXT_ENV_KEYS: &[(&str, &str)] = &[
    ("STATE_DIR", "state_dir"),
    ("DATA_DIR", "data_dir"),
    ("TIMEZONE", "timezone"),
    ("CONTENT", "content"),
    ("CLICKHOUSE_URL", "clickhouse.url"),
    ("CLICKHOUSE_USER", "clickhouse.user"),
    ("CLICKHOUSE_PASSWORD", "clickhouse.password"),
    ("CLICKHOUSE_DATABASE", "clickhouse.database"),
    ("RECEIVER_GRPC", "receiver.grpc"),
    ("RECEIVER_HTTP", "receiver.http"),
];

/// Every setting ccotel reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the manifest lives. Default: `$XDG_STATE_HOME/ccotel`, else
    /// `~/.local/state/ccotel`.
    pub state_dir: Option<PathBuf>,
    /// Claude config directories to read `projects/` from. Empty: the
    /// `CLAUDE_CONFIG_DIR` list, else `~/.claude` and `~/.config/claude`.
    pub claude_config_dirs: Vec<PathBuf>,
    /// IANA time zone for dates in reports. Default: the system's.
    pub timezone: Option<String>,
    /// Reader threads; 0 means one per CPU.
    pub threads: usize,
    /// Lines longer than this many bytes are decoded by streaming, not in memory.
    pub max_line_bytes: usize,
    /// Model prices in USD per million tokens, replacing or adding to the built-in
    /// table: `[pricing."model-id"] input = 3.0, output = 15.0`.
    pub pricing: BTreeMap<String, PriceOverride>,
    /// How much transcript text may leave the process: `none`, `truncate:N`
    /// (bytes per value) or `full`.
    pub content: String,
    /// Where the embedded default writes OTLP-JSON files. Default:
    /// `$XDG_DATA_HOME/ccotel`, else `~/.local/share/ccotel`.
    pub data_dir: Option<PathBuf>,
    /// How `run` and `backfill` read and batch.
    pub export: ExportConfig,
    /// OTLP destination; the standard `OTEL_EXPORTER_OTLP_*` variables override it.
    pub otlp: OtlpConfig,
    /// Direct ClickHouse export.
    pub clickhouse: ClickHouseConfig,
    /// Claude Code's own telemetry in, enriched (`run --receiver`).
    pub receiver: ReceiverConfig,
}

/// `[receiver]`: an OTLP endpoint for Claude Code's own telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiverConfig {
    /// Start the receiver with `run` (the `--receiver` flag sets it too).
    pub enabled: bool,
    /// OTLP/gRPC address (`host:port`), or `off`. Loopback by default: another
    /// address lets other machines send through ccotel.
    pub grpc: String,
    /// OTLP/HTTP address (`host:port`), or `off`.
    pub http: String,
    /// How long an event waits for its transcript line before it goes on
    /// unenriched.
    pub wait_ms: u64,
    /// Transcript facts kept for joining: how long after they are read...
    pub index_max_age_secs: u64,
    /// ...how many...
    pub index_max_facts: usize,
    /// ...and about how many bytes.
    pub index_max_bytes: usize,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        let defaults = crate::receiver::ReceiverSettings::default();
        ReceiverConfig {
            enabled: false,
            grpc: crate::receiver::DEFAULT_GRPC.to_owned(),
            http: crate::receiver::DEFAULT_HTTP.to_owned(),
            wait_ms: defaults.wait.as_millis() as u64,
            index_max_age_secs: defaults.index.max_age.as_secs(),
            index_max_facts: defaults.index.max_facts,
            index_max_bytes: defaults.index.max_bytes,
        }
    }
}

/// `[clickhouse]`: direct export to ClickHouse, on when `url` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    pub url: Option<String>,
    pub user: String,
    pub password: String,
    pub database: String,
    pub table_prefix: String,
    /// Rows older than this many days are dropped by ClickHouse.
    pub ttl_days: Option<u32>,
    /// Create tables `ON CLUSTER` with replicated engines.
    pub cluster: Option<String>,
    pub async_insert: bool,
    /// Create missing tables and add missing columns at start.
    pub create_schema: bool,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: None,
            user: "default".to_owned(),
            password: String::new(),
            database: "otel".to_owned(),
            table_prefix: String::new(),
            ttl_days: None,
            cluster: None,
            async_insert: false,
            create_schema: true,
        }
    }
}

/// `[export]`: reading, batching and span timing for `run` and `backfill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// A session with no new line for this long is finished and its root span sent.
    pub idle_timeout_secs: u64,
    /// A response with no new line for this long is finished and its span sent.
    pub response_linger_secs: u64,
    /// How often every file is checked, whatever file events say.
    pub poll_interval_ms: u64,
    /// A batch is sent at this many records...
    pub batch_max_records: usize,
    /// ...or this many bytes, or when the reader has caught up.
    pub batch_max_bytes: usize,
    /// Batches read ahead of the slowest destination.
    pub queue_batches: usize,
    /// On SIGINT/SIGTERM, how long to keep delivering what was read.
    pub shutdown_grace_secs: u64,
    /// The embedded default's files are rotated at this size.
    pub file_max_bytes: u64,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            idle_timeout_secs: 600,
            response_linger_secs: 30,
            poll_interval_ms: 1000,
            batch_max_records: 2048,
            batch_max_bytes: 2 << 20,
            queue_batches: 4,
            shutdown_grace_secs: 10,
            file_max_bytes: 64 << 20,
        }
    }
}

/// `[otlp]`: the OTLP destination, as in the `OTEL_EXPORTER_OTLP_*` variables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    pub protocol: Option<String>,
    pub traces_endpoint: Option<String>,
    pub logs_endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// `gzip` or `none`.
    pub compression: Option<String>,
    pub timeout_secs: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: None,
            claude_config_dirs: Vec::new(),
            timezone: None,
            threads: 0,
            max_line_bytes: crate::source::DEFAULT_MAX_INLINE_LINE,
            pricing: BTreeMap::new(),
            content: "truncate:4096".to_owned(),
            data_dir: None,
            export: ExportConfig::default(),
            otlp: OtlpConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            receiver: ReceiverConfig::default(),
        }
    }
}

/// Values given on the command line; `None` leaves lower layers in force.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse: Option<ClickHouseOverrides>,
    #[serde(skip_serializing_if = "ReceiverOverrides::is_empty")]
    pub receiver: ReceiverOverrides,
}

/// `--receiver`, `--receiver-grpc`, `--receiver-http`, `--receiver-wait-ms`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReceiverOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

impl ReceiverOverrides {
    fn is_empty(&self) -> bool {
        self.enabled.is_none()
            && self.grpc.is_none()
            && self.http.is_none()
            && self.wait_ms.is_none()
    }
}

/// `--clickhouse-url`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ClickHouseOverrides {
    pub url: String,
}

/// A config error, naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// The effective configuration and where it came from.
pub struct Loaded {
    pub config: Config,
    /// The config file consulted, and whether it exists.
    pub file: Option<(PathBuf, bool)>,
    figment: Figment,
    /// Resolved once, while the config is checked: the system's zone is read
    /// from disk.
    time_zone: jiff::tz::TimeZone,
}

/// The process environment ccotel consults, passed in so tests can set it.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_state_home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
    pub claude_config_dir: Option<String>,
    /// The `OTEL_*` variables, by name.
    pub otel: BTreeMap<String, String>,
}

impl Environment {
    /// The real environment of this process.
    pub fn from_process() -> Self {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Environment {
            home: path("HOME"),
            xdg_config_home: path("XDG_CONFIG_HOME"),
            xdg_state_home: path("XDG_STATE_HOME"),
            xdg_data_home: path("XDG_DATA_HOME"),
            claude_config_dir: std::env::var("CLAUDE_CONFIG_DIR").ok(),
            otel: std::env::vars()
                .filter(|(name, value)| name.starts_with("OTEL_") && !value.is_empty())
                .collect(),
        }
    }

    fn default_config_file(&self) -> Option<PathBuf> {
        let base = self
            .xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|home| home.join(".config")))?;
        Some(base.join("ccotel").join("config.toml"))
    }
}

/// Loads the layered configuration. `explicit_file` (from `--config`) must exist.
pub fn load(
    explicit_file: Option<&Path>,
    overrides: &Overrides,
    environment: &Environment,
) -> Result<Loaded, ConfigError> {
    let file = match explicit_file {
        Some(path) if !path.is_file() => {
            return Err(ConfigError(format!(
                "config file {} does not exist",
                path.display()
            )))
        }
        Some(path) => Some(path.to_owned()),
        None => environment.default_config_file(),
    };
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file.as_ref().filter(|path| path.is_file()) {
        figment = figment.merge(Toml::file_exact(path));
    }
    let figment = figment
        .merge(Env::prefixed(ENV_PREFIX).only(NUMBER_ENV_KEYS))
        .merge(TextEnv)
        .merge(CommandLine(overrides));
    let config: Config = figment.extract().map_err(|error| describe(&error))?;
    let file = file.map(|path| {
        let exists = path.is_file();
        (path, exists)
    });
    let mut loaded = Loaded {
        config,
        file,
        figment,
        time_zone: jiff::tz::TimeZone::UTC,
    };
    loaded.time_zone = loaded.resolve_time_zone()?;
    loaded.content_policy()?;
    loaded.check_pricing()?;
    Ok(loaded)
}

fn describe(errors: &figment::Error) -> ConfigError {
    let lines: Vec<String> = errors
        .clone()
        .into_iter()
        .map(|error| {
            let key = if error.path.is_empty() {
                "(top level)".to_owned()
            } else {
                error.path.join(".")
            };
            let source = error
                .metadata
                .as_ref()
                .map(|meta| format!(" in {}", origin(meta, &key)))
                .unwrap_or_default();
            format!("config key `{key}`{source}: {}", error.kind)
        })
        .collect();
    ConfigError(lines.join("\n"))
}

/// Where the value of `key` came from: a file's full path (figment would
/// shorten it relative to the working directory), the environment variable that
/// set it (figment names only the prefix), or the provider's name.
fn origin(meta: &figment::Metadata, key: &str) -> String {
    use figment::Provider;
    match &meta.source {
        Some(figment::Source::File(path)) => path.display().to_string(),
        Some(figment::Source::Code(_)) => "the built-in defaults".to_owned(),
        Some(source) => source.to_string(),
        // `TextEnv` is named like figment's `Env`: this is either of them.
        None if meta.name == TextEnv.metadata().name => {
            format!("environment variable {}", env_var_of(key))
        }
        None => meta.name.to_string(),
    }
}

/// The `CCOTEL_*` variable that sets `key` (dotted, as figment names it).
fn env_var_of(key: &str) -> String {
    let name = TEXT_ENV_KEYS
        .iter()
        .find(|(_, path)| *path == key)
        .map_or_else(|| key.to_ascii_uppercase(), |(name, _)| (*name).to_owned());
    format!("{ENV_PREFIX}{name}")
}

/// The `CCOTEL_*` variables of [`TEXT_ENV_KEYS`], as written. figment's `Env`
/// would parse `CCOTEL_CLICKHOUSE_PASSWORD=12345` as a number and then refuse
/// it as a password. One set to nothing is as if unset (an empty
/// `CCOTEL_STATE_DIR` is no directory). Named like `Env`, so errors name the
/// variable.
struct TextEnv;

impl figment::Provider for TextEnv {
    fn metadata(&self) -> figment::Metadata {
        Env::prefixed(ENV_PREFIX).metadata()
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut found = figment::value::Dict::new();
        for (var, value) in std::env::vars_os() {
            let Some(key) = text_env_key(&var) else {
                continue;
            };
            let Some(text) = value.to_str() else {
                return Err(
                    format!("environment variable {} is not UTF-8", env_var_of(key)).into(),
                );
            };
            if !text.is_empty() {
                insert_nested(&mut found, key, text.into());
            }
        }
        Ok(figment::Profile::Default.collect(found))
    }
}

/// Sets the dotted `key` in `dict`, making the tables on its way.
fn insert_nested(dict: &mut figment::value::Dict, key: &str, value: figment::value::Value) {
    use figment::value::{Dict, Value};
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((table, rest)) => {
            let entry = dict
                .entry(table.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_nested(inner, rest, value);
            }
        }
    }
}

/// The key a `CCOTEL_*` variable of text sets (the name in any case, as `Env`
/// reads them).
fn text_env_key(var: &std::ffi::OsStr) -> Option<&'static str> {
    let var = var.to_str()?;
    let (prefix, name) = (var.get(..ENV_PREFIX.len())?, var.get(ENV_PREFIX.len()..)?);
    if !prefix.eq_ignore_ascii_case(ENV_PREFIX) {
        return None;
    }
    TEXT_ENV_KEYS
        .iter()
        .find(|(known, _)| name.eq_ignore_ascii_case(known))
        .map(|(_, key)| *key)
}

/// Flag values as a figment provider whose name says where they came from.
struct CommandLine<'a>(&'a Overrides);

impl figment::Provider for CommandLine<'_> {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("the command line")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::defaults(self.0).data()
    }
}

impl Loaded {
    /// Where a key's value came from, for error messages.
    fn source_of(&self, key: &str) -> String {
        match self.figment.find_metadata(key) {
            Some(meta) => origin(meta, key),
            None => "defaults".into(),
        }
    }

    /// The zone reports group days in: `timezone` from the config, else the
    /// system's.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        self.time_zone.clone()
    }

    fn resolve_time_zone(&self) -> Result<jiff::tz::TimeZone, ConfigError> {
        match &self.config.timezone {
            None => Ok(system_time_zone()),
            Some(name) => read_zone_file(&zoneinfo_dir(), name)
                .map(Ok)
                .unwrap_or_else(|| jiff::tz::TimeZone::get(name))
                .map_err(|error| {
                    ConfigError(format!(
                        "config key `timezone` in {}: {name:?} is not a known time zone ({error})",
                        self.source_of("timezone")
                    ))
                }),
        }
    }

    /// Every price override is a usable price (see [`PriceOverride::problem`]).
    fn check_pricing(&self) -> Result<(), ConfigError> {
        for (model, price) in &self.config.pricing {
            if let Some((field, why)) = price.problem() {
                let key = format!("pricing.{model}.{field}");
                return Err(ConfigError(format!(
                    "config key `{key}` in {}: {why}",
                    self.source_of(&format!("pricing.{model}"))
                )));
            }
        }
        Ok(())
    }

    /// The state directory.
    pub fn state_dir(&self, environment: &Environment) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &self.config.state_dir {
            return Ok(dir.clone());
        }
        environment
            .xdg_state_home
            .clone()
            .or_else(|| {
                environment
                    .home
                    .as_ref()
                    .map(|home| home.join(".local").join("state"))
            })
            .map(|base| base.join("ccotel"))
            .ok_or_else(|| {
                ConfigError("no state directory: set --state-dir, CCOTEL_STATE_DIR or HOME".into())
            })
    }

    /// The content policy.
    pub fn content_policy(&self) -> Result<ContentPolicy, ConfigError> {
        self.config.content.parse().map_err(|error| {
            ConfigError(format!(
                "config key `content` in {}: {error}",
                self.source_of("content")
            ))
        })
    }

    /// Where the embedded default writes.
    pub fn data_dir(&self, environment: &Environment) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &self.config.data_dir {
            return Ok(dir.clone());
        }
        environment
            .xdg_data_home
            .clone()
            .or_else(|| {
                environment
                    .home
                    .as_ref()
                    .map(|home| home.join(".local").join("share"))
            })
            .map(|base| base.join("ccotel"))
            .ok_or_else(|| {
                ConfigError("no data directory: set data_dir, CCOTEL_DATA_DIR or HOME".into())
            })
    }

    /// The receiver's settings, or `None` when it is off.
    pub fn receiver_settings(
        &self,
    ) -> Result<Option<crate::receiver::ReceiverSettings>, ConfigError> {
        let receiver = &self.config.receiver;
        if !receiver.enabled {
            return Ok(None);
        }
        let address =
            |key: &str, value: &str| -> Result<Option<std::net::SocketAddr>, ConfigError> {
                if value.trim().eq_ignore_ascii_case("off") {
                    return Ok(None);
                }
                value.trim().parse().map(Some).map_err(|_| {
                    ConfigError(format!(
                        "config key `{key}` in {}: `{value}` is not an address (ip:port) or `off`",
                        self.source_of(key)
                    ))
                })
            };
        let grpc = address("receiver.grpc", &receiver.grpc)?;
        let http = address("receiver.http", &receiver.http)?;
        if grpc.is_none() && http.is_none() {
            return Err(ConfigError(format!(
                "config keys `receiver.grpc` and `receiver.http` in {} are both `off`: the receiver would take nothing",
                self.source_of("receiver.grpc")
            )));
        }
        let defaults = crate::receiver::ReceiverSettings::default();
        Ok(Some(crate::receiver::ReceiverSettings {
            grpc,
            http,
            wait: std::time::Duration::from_millis(receiver.wait_ms),
            index: crate::receiver::index::IndexLimits {
                max_age: std::time::Duration::from_secs(receiver.index_max_age_secs),
                max_facts: receiver.index_max_facts.max(1),
                max_bytes: receiver.index_max_bytes,
                ..defaults.index
            },
            ..defaults
        }))
    }

    /// The ClickHouse destination, or `None` when `clickhouse.url` is not set.
    pub fn clickhouse_settings(&self) -> Option<crate::sink::clickhouse::ClickHouseSettings> {
        let ch = &self.config.clickhouse;
        let url = ch.url.clone()?;
        Some(crate::sink::clickhouse::ClickHouseSettings {
            url,
            user: ch.user.clone(),
            password: ch.password.clone(),
            layout: crate::sink::clickhouse::schema::Layout {
                database: ch.database.clone(),
                table_prefix: ch.table_prefix.clone(),
                ttl_days: ch.ttl_days,
                cluster: ch.cluster.clone(),
            },
            async_insert: ch.async_insert,
            create_schema: ch.create_schema,
        })
    }

    /// The OTLP destination, or `None` when none is configured (the embedded
    /// default is used). Precedence: `endpoint` (a flag) < nothing else; then the
    /// standard variables over the `[otlp]` table.
    pub fn otlp_settings(
        &self,
        environment: &Environment,
        flag_endpoint: Option<&str>,
        flag_protocol: Option<&str>,
    ) -> Result<Option<OtlpSettings>, ConfigError> {
        let otlp = &self.config.otlp;
        let env = |name: &str| environment.otel.get(name).cloned();
        let pick = |flag: Option<&str>, var: &str, file: &Option<String>| {
            flag.map(str::to_owned)
                .or_else(|| env(var))
                .or_else(|| file.clone())
        };
        let endpoint = pick(flag_endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint);
        let traces = pick(
            None,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            &otlp.traces_endpoint,
        );
        let logs = pick(
            None,
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            &otlp.logs_endpoint,
        );
        let metrics = pick(
            None,
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            &otlp.metrics_endpoint,
        );
        if endpoint.is_none() && traces.is_none() && logs.is_none() && metrics.is_none() {
            return Ok(None);
        }
        let protocol_text = pick(flag_protocol, "OTEL_EXPORTER_OTLP_PROTOCOL", &otlp.protocol)
            .unwrap_or_else(|| "grpc".to_owned());
        let protocol = match protocol_text.as_str() {
            "grpc" => Protocol::Grpc,
            "http/protobuf" => Protocol::HttpProtobuf,
            other => {
                return Err(ConfigError(format!(
                    "OTLP protocol `{other}` (from {}) is not supported: use grpc or http/protobuf",
                    self.otlp_source(
                        flag_protocol.is_some(),
                        "OTEL_EXPORTER_OTLP_PROTOCOL",
                        environment,
                        "otlp.protocol"
                    )
                )))
            }
        };
        let default_endpoint = match protocol {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf => "http://localhost:4318",
        };
        let mut headers: Vec<(String, String)> = otlp.headers.clone().into_iter().collect();
        if let Some(text) = env("OTEL_EXPORTER_OTLP_HEADERS") {
            for (key, value) in crate::signal::resource::parse_resource_attributes(&text) {
                headers.retain(|(k, _)| *k != key);
                headers.push((key, value));
            }
        }
        let compression = pick(None, "OTEL_EXPORTER_OTLP_COMPRESSION", &otlp.compression)
            .unwrap_or_else(|| "gzip".to_owned());
        let gzip = match compression.as_str() {
            "gzip" => true,
            "none" => false,
            other => {
                return Err(ConfigError(format!(
                    "OTLP compression `{other}` (from {}) is not supported: use gzip or none",
                    self.otlp_source(
                        false,
                        "OTEL_EXPORTER_OTLP_COMPRESSION",
                        environment,
                        "otlp.compression"
                    )
                )))
            }
        };
        let timeout_ms = match env("OTEL_EXPORTER_OTLP_TIMEOUT") {
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                ConfigError(format!(
                    "OTEL_EXPORTER_OTLP_TIMEOUT `{text}` is not a number of milliseconds"
                ))
            })?,
            None => otlp.timeout_secs.map_or(10_000, |s| s.saturating_mul(1000)),
        };
        Ok(Some(OtlpSettings {
            protocol,
            endpoint: endpoint.unwrap_or_else(|| default_endpoint.to_owned()),
            logs_endpoint: logs,
            traces_endpoint: traces,
            metrics_endpoint: metrics,
            headers,
            gzip,
            // A day is more than any export needs; larger values overflow timers.
            timeout: std::time::Duration::from_millis(timeout_ms.clamp(1, 86_400_000)),
        }))
    }

    fn otlp_source(&self, flag: bool, var: &str, environment: &Environment, key: &str) -> String {
        if flag {
            "the command line".to_owned()
        } else if environment.otel.contains_key(var) {
            format!("environment variable {var}")
        } else {
            format!("config key `{key}` in {}", self.source_of(key))
        }
    }

    /// The Claude config directories to scan.
    pub fn claude_roots(&self, environment: &Environment) -> Vec<PathBuf> {
        if let Some(roots) = crate::source::roots_from_env(environment.claude_config_dir.as_deref())
        {
            return roots;
        }
        if !self.config.claude_config_dirs.is_empty() {
            return self.config.claude_config_dirs.clone();
        }
        environment
            .home
            .as_deref()
            .map(crate::source::default_roots)
            .unwrap_or_default()
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut value = match toml::Value::try_from(&self.config) {
            Ok(value) => value,
            Err(error) => return format!("# cannot render config: {error}\n"),
        };
        mask_secrets(&mut value);
        toml::to_string_pretty(&value).unwrap_or_default()
    }
}

/// Replaces the value of every key that names a secret with `"****"`.
fn mask_secrets(value: &mut toml::Value) {
    if let toml::Value::Table(table) = value {
        for (key, item) in table.iter_mut() {
            let lower = key.to_ascii_lowercase();
            if [
                "password",
                "secret",
                "token",
                "authorization",
                "headers",
                "api_key",
            ]
            .iter()
            .any(|word| lower.contains(word))
            {
                *item = toml::Value::String("****".into());
            } else {
                mask_secrets(item);
            }
        }
    }
}

/// The system's time zone: `TZ`, else `/etc/localtime`.
///
/// When that names a zone, its file is read from `TZDIR` (or the system's
/// zoneinfo) directly: jiff's own lookup first indexes every zone in that folder,
/// which costs a few percent of an unchanged rerun. Anything else (a POSIX rule,
/// a missing file) is left to jiff.
fn system_time_zone() -> jiff::tz::TimeZone {
    let named = match std::env::var("TZ") {
        Ok(value) if !value.is_empty() => Some(value.trim_start_matches(':').to_owned()),
        Ok(_) | Err(_) => std::fs::read_link("/etc/localtime")
            .ok()
            .and_then(|target| {
                let target = target.to_str()?;
                let (_, name) = target.split_once("zoneinfo/")?;
                Some(name.to_owned())
            }),
    };
    named
        .and_then(|name| read_zone_file(&zoneinfo_dir(), &name))
        .unwrap_or_else(jiff::tz::TimeZone::system)
}

fn zoneinfo_dir() -> PathBuf {
    std::env::var_os("TZDIR").map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from)
}

/// The zone `name` (an IANA name such as `Europe/Paris`) from its file in `dir`.
fn read_zone_file(dir: &Path, name: &str) -> Option<jiff::tz::TimeZone> {
    let clean = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !clean {
        return None;
    }
    let bytes = std::fs::read(dir.join(name)).ok()?;
    jiff::tz::TimeZone::tzif(name, &bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(dir: &Path) -> Environment {
        Environment {
            home: Some(dir.to_owned()),
            ..Environment::default()
        }
    }

    #[test]
    fn zone_files_are_read_by_clean_names_only() {
        let system = Path::new("/usr/share/zoneinfo");
        let paris = read_zone_file(system, "Europe/Paris").expect("the system's tzdata");
        let bundled = jiff::tz::TimeZone::get("Europe/Paris").expect("jiff's");
        let summer: jiff::Timestamp = "2026-07-01T12:00:00Z".parse().expect("instant");
        assert_eq!(paris.to_offset(summer), bundled.to_offset(summer));
        assert_eq!(paris.iana_name(), Some("Europe/Paris"));
        for name in [
            "",
            "/etc/localtime",
            "../zoneinfo/UTC",
            "Europe//Paris",
            "./UTC",
        ] {
            assert!(read_zone_file(system, name).is_none(), "{name:?}");
        }
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(read_zone_file(empty.path(), "Europe/Paris").is_none());
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "timezone = \"UTC\"\nstate_dri = \"/tmp/x\"\n").expect("write");
        let error = load(Some(&file), &Overrides::default(), &environment(dir.path()))
            .err()
            .expect("error");
        let message = error.to_string();
        assert!(message.contains("state_dri"), "{message}");
        assert!(message.contains(&file.display().to_string()), "{message}");
    }

    #[test]
    fn receiver_addresses_are_checked_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "[receiver]\nenabled = true\ngrpc = \"localhost:x\"\n",
        )
        .expect("write");
        let env = environment(dir.path());
        let loaded = load(Some(&file), &Overrides::default(), &env).expect("load");
        let message = loaded.receiver_settings().expect_err("error").to_string();
        assert!(message.contains("`receiver.grpc`"), "{message}");
        assert!(message.contains(&file.display().to_string()), "{message}");

        std::fs::write(&file, "[receiver]\nenabled = true\nhttp = \"off\"\n").expect("write");
        let loaded = load(Some(&file), &Overrides::default(), &env).expect("load");
        let settings = loaded.receiver_settings().expect("valid").expect("on");
        assert_eq!(settings.http, None);
        assert_eq!(settings.grpc, "127.0.0.1:4317".parse().ok());

        std::fs::write(&file, "[receiver]\nwait_secs = 3\n").expect("write");
        let message = load(Some(&file), &Overrides::default(), &env)
            .err()
            .expect("unknown key")
            .to_string();
        assert!(message.contains("wait_secs"), "{message}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "[pricing.my-model]\ninput = \"cheap\"\noutput = 1.0\n",
        )
        .expect("write");
        let message = load(Some(&file), &Overrides::default(), &environment(dir.path()))
            .err()
            .expect("error")
            .to_string();
        assert!(message.contains("pricing.my-model.input"), "{message}");
        for (toml, key) in [
            ("input = -1.0\noutput = 1.0", "pricing.my-model.input"),
            ("input = 1.0\noutput = inf", "pricing.my-model.output"),
            ("input = 1.0\noutput = nan", "pricing.my-model.output"),
            ("input = 1.0\noutput = 1e300", "pricing.my-model.output"),
            (
                "input = 1.0\noutput = 2.0\nabove_200k = { input = 2.0, output = 4.0, fast_multiplier = 6.0 }",
                "pricing.my-model.above_200k.fast_multiplier",
            ),
            (
                "input = 1.0\noutput = 2.0\nabove_200k = { input = 2.0, output = -4.0 }",
                "pricing.my-model.above_200k.output",
            ),
        ] {
            std::fs::write(&file, format!("[pricing.my-model]\n{toml}\n")).expect("write");
            let message = load(Some(&file), &Overrides::default(), &environment(dir.path()))
                .err()
                .expect("a bad price is refused")
                .to_string();
            assert!(message.contains(key), "{toml}: {message}");
            assert!(message.contains(&file.display().to_string()), "{message}");
        }
        std::fs::write(
            &file,
            "[pricing.my-model]\ninput = 0.0\noutput = 1e4\nfast_multiplier = 6.0\n",
        )
        .expect("write");
        load(Some(&file), &Overrides::default(), &environment(dir.path())).expect("in range");
        std::fs::write(&file, "timezone = \"Mars/Olympus\"\n").expect("write");
        let message = load(Some(&file), &Overrides::default(), &environment(dir.path()))
            .err()
            .expect("error")
            .to_string();
        assert!(
            message.contains("`timezone`") && message.contains("Mars/Olympus"),
            "{message}"
        );
        assert!(message.contains(&file.display().to_string()), "{message}");
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "timezone = \"Asia/Tokyo\"\nthreads = 3\n").expect("write");
        let env = environment(dir.path());
        let loaded = load(Some(&file), &Overrides::default(), &env).expect("load");
        assert_eq!(loaded.config.timezone.as_deref(), Some("Asia/Tokyo"));
        assert_eq!(loaded.config.threads, 3);
        let overrides = Overrides {
            timezone: Some("UTC".into()),
            state_dir: Some("/tmp/s".into()),
            ..Overrides::default()
        };
        let loaded = load(Some(&file), &overrides, &env).expect("load");
        assert_eq!(loaded.config.timezone.as_deref(), Some("UTC"));
        assert_eq!(
            loaded.state_dir(&env).expect("dir"),
            PathBuf::from("/tmp/s")
        );
        let missing = dir.path().join("nope.toml");
        assert!(load(Some(&missing), &Overrides::default(), &env).is_err());
    }

    #[test]
    fn defaults_follow_xdg_and_claude_config_dir() {
        let env = Environment {
            home: Some("/home/u".into()),
            xdg_state_home: Some("/xdg/state".into()),
            claude_config_dir: Some("/a,/b".into()),
            ..Environment::default()
        };
        let loaded = load(None, &Overrides::default(), &env).expect("load");
        assert_eq!(
            loaded.state_dir(&env).expect("dir"),
            PathBuf::from("/xdg/state/ccotel")
        );
        assert_eq!(
            loaded.claude_roots(&env),
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let plain = Environment {
            home: Some("/home/u".into()),
            ..Environment::default()
        };
        assert_eq!(
            loaded.state_dir(&plain).expect("dir"),
            PathBuf::from("/home/u/.local/state/ccotel")
        );
        assert_eq!(
            loaded.claude_roots(&plain),
            [
                PathBuf::from("/home/u/.claude"),
                PathBuf::from("/home/u/.config/claude")
            ]
        );
    }

    #[test]
    fn secrets_are_masked() {
        let mut value: toml::Value =
            toml::from_str("[otlp]\nheaders = \"x=1\"\npassword = \"p\"\nurl = \"u\"\n")
                .expect("toml");
        mask_secrets(&mut value);
        let text = toml::to_string(&value).expect("render");
        assert!(!text.contains("x=1") && !text.contains("\"p\""), "{text}");
        assert!(text.contains("\"u\""));
    }
}
