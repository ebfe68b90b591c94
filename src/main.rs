//! The `ccotel` command line: parses arguments and wires the library together.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use ccotel::config::{self, Environment, Loaded, Overrides};
use ccotel::export::stats::PipelineStats;
use ccotel::export::{ExportOptions, Mode};
use ccotel::ingest::{
    full_scan, ingest_speculating, Basis, IngestOptions, IngestSummary, PriorState, Progress,
    Speculation,
};
use ccotel::progress::ProgressLine;
use ccotel::receiver::ReceiverSettings;
use ccotel::report::cache::{CacheFile, Rendered};
use ccotel::report::{Cached, DateFilter, Grouping, View};
use ccotel::session::PriceTable;
use ccotel::session::TrackerOptions;
use ccotel::signal::{Encoder, ResourceBase};
use ccotel::sink::clickhouse::ClickHouseSink;
use ccotel::sink::file::FileSink;
use ccotel::sink::grpc::GrpcSink;
use ccotel::sink::http::HttpSink;
use ccotel::sink::retry::Backoff;
use ccotel::sink::{Protocol, Sink};
use ccotel::source::{discover_with, ListedFiles, Listing, StateDir};
use ccotel::telemetry::{self, LogFormat};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Claude Code transcripts to exact token and cost reports (and OpenTelemetry).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Config file (default: $XDG_CONFIG_HOME/ccotel/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// State directory holding the manifest (default: $CCOTEL_STATE_DIR,
    /// $XDG_STATE_HOME/ccotel or ~/.local/state/ccotel).
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// More detail on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines on stderr as plain text or JSON.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "CCOTEL_LOG_FORMAT",
        default_value = "plain"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Token and cost report, read incrementally through the manifest.
    Report(ReportArgs),
    /// Send every transcript's logs, spans and metrics (OTLP), then keep following
    /// new lines. Without an OTLP endpoint, writes OTLP-JSON files locally.
    Run(RunArgs),
    /// Like `run`, but exit once everything on disk has been sent.
    Backfill(ExportArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the DDL of the tables ccotel writes.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// ClickHouse: database, tables and view, for the configured database,
    /// prefix, TTL and cluster.
    Clickhouse,
}

#[derive(clap::Args, Clone)]
struct ExportArgs {
    /// Transcript text sent: none, truncate:N (bytes per value) or full
    /// [env: CCOTEL_CONTENT; default: truncate:4096].
    #[arg(long, value_name = "POLICY")]
    content: Option<String>,
    /// OTLP endpoint (overrides OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// OTLP protocol: grpc or http/protobuf (overrides OTEL_EXPORTER_OTLP_PROTOCOL).
    #[arg(long, value_name = "PROTOCOL")]
    protocol: Option<String>,
    /// Also (or only, without an OTLP endpoint) insert into ClickHouse at this
    /// HTTP URL [env: CCOTEL_CLICKHOUSE_URL; config: clickhouse.url].
    #[arg(long, value_name = "URL")]
    clickhouse_url: Option<String>,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    export: ExportArgs,
    /// Also take Claude Code's own telemetry (OTLP on gRPC and HTTP), enrich it
    /// from the transcripts, and send it on [config: receiver.enabled].
    #[arg(long)]
    receiver: bool,
    /// OTLP/gRPC address for the receiver, or `off` [env: CCOTEL_RECEIVER_GRPC;
    /// default: 127.0.0.1:4317].
    #[arg(long, value_name = "ADDR")]
    receiver_grpc: Option<String>,
    /// OTLP/HTTP address for the receiver, or `off` [env: CCOTEL_RECEIVER_HTTP;
    /// default: 127.0.0.1:4318].
    #[arg(long, value_name = "ADDR")]
    receiver_http: Option<String>,
    /// How long an event waits for its transcript line before going on
    /// unenriched [config: receiver.wait_ms; default: 5000].
    #[arg(long, value_name = "MS")]
    receiver_wait_ms: Option<u64>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// How to group: daily, monthly, session, project or model.
    #[arg(value_enum, default_value = "daily")]
    grouping: Grouping,
    /// First date to include (YYYYMMDD or YYYY-MM-DD).
    #[arg(short, long, value_parser = parse_date)]
    since: Option<jiff::civil::Date>,
    /// Last date to include (YYYYMMDD or YYYY-MM-DD).
    #[arg(short, long, value_parser = parse_date)]
    until: Option<jiff::civil::Date>,
    /// IANA time zone for dates (default: the system's).
    #[arg(short = 'z', long)]
    timezone: Option<String>,
    /// JSON in ccusage's shape instead of a table.
    #[arg(short, long)]
    json: bool,
    /// Rescan every file from the start, ignoring and not touching the manifest.
    #[arg(long)]
    full: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets masked) and where it came from.
    Check,
}

fn parse_date(text: &str) -> Result<jiff::civil::Date, String> {
    let normalized = match text.len() {
        8 if text.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{}-{}-{}", &text[..4], &text[4..6], &text[6..])
        }
        _ => text.to_owned(),
    };
    normalized
        .parse()
        .map_err(|_| format!("{text:?} is not a date (YYYYMMDD or YYYY-MM-DD)"))
}

/// Appends a formatted line to a String.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Writes to stdout; a reader that went away (`ccotel ... | head`) is not an error.
fn emit(text: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let stats = Arc::new(PipelineStats::default());
    let self_endpoint = std::env::var("CCOTEL_SELF_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let _telemetry = telemetry::init(
        default_level,
        cli.log_format,
        self_endpoint.as_deref(),
        stats.clone(),
    );
    match run(cli, stats) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ccotel: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, stats: Arc<PipelineStats>) -> Result<()> {
    let environment = Environment::from_process();
    let timezone = match &cli.command {
        Command::Report(args) => args.timezone.clone(),
        _ => None,
    };
    let export_args = match &cli.command {
        Command::Run(args) => Some(&args.export),
        Command::Backfill(args) => Some(args),
        _ => None,
    };
    let (content, clickhouse) = match export_args {
        Some(args) => (
            args.content.clone(),
            args.clickhouse_url
                .clone()
                .map(|url| config::ClickHouseOverrides { url }),
        ),
        _ => (None, None),
    };
    let receiver = match &cli.command {
        Command::Run(args) => config::ReceiverOverrides {
            enabled: args.receiver.then_some(true),
            grpc: args.receiver_grpc.clone(),
            http: args.receiver_http.clone(),
            wait_ms: args.receiver_wait_ms,
        },
        _ => config::ReceiverOverrides::default(),
    };
    let overrides = Overrides {
        state_dir: cli.state_dir.clone(),
        timezone,
        content,
        clickhouse,
        receiver,
    };
    let loaded = config::load(cli.config.as_deref(), &overrides, &environment)?;
    match cli.command {
        Command::Report(args) => run_report(&loaded, &environment, &args),
        Command::Run(args) => {
            let receiver = loaded.receiver_settings()?;
            run_export(
                &loaded,
                &environment,
                &args.export,
                Mode::Follow,
                receiver,
                stats,
            )
        }
        Command::Backfill(args) => {
            run_export(&loaded, &environment, &args, Mode::Backfill, None, stats)
        }
        Command::Config(ConfigCommand::Check) => config_check(&loaded, &environment),
        Command::Schema(SchemaCommand::Clickhouse) => {
            let layout = loaded
                .clickhouse_settings()
                .map(|s| s.layout)
                .unwrap_or_else(|| default_layout(&loaded));
            let ddl: Vec<String> = layout.ddl().iter().map(|s| format!("{s};\n")).collect();
            emit(ddl.join("\n").as_bytes())
        }
    }
}

fn run_export(
    loaded: &Loaded,
    environment: &Environment,
    args: &ExportArgs,
    mode: Mode,
    receiver: Option<ReceiverSettings>,
    stats: Arc<PipelineStats>,
) -> Result<()> {
    let config = &loaded.config;
    let export = &config.export;
    let policy = loaded.content_policy()?;
    let otlp = loaded.otlp_settings(
        environment,
        args.endpoint.as_deref(),
        args.protocol.as_deref(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let _guard = runtime.enter();
    let mut sinks = Vec::new();
    if let Some(settings) = loaded.clickhouse_settings() {
        let sink = runtime.block_on(ClickHouseSink::connect(settings))?;
        sinks.push(Sink::ClickHouse(Box::new(sink)));
    }
    let sink = match &otlp {
        Some(settings) if settings.protocol == Protocol::Grpc => {
            Some(Sink::Grpc(Box::new(GrpcSink::new(settings)?)))
        }
        Some(settings) => Some(Sink::Http(HttpSink::new(settings)?)),
        None if !sinks.is_empty() => None,
        None => {
            let dir = loaded.data_dir(environment)?.join("otlp");
            let sink = FileSink::open(&dir, export.file_max_bytes)?;
            eprintln!(
                "ccotel: no OTLP endpoint configured (OTEL_EXPORTER_OTLP_ENDPOINT or --endpoint); \
                 writing OTLP-JSON to {}/{{logs,traces,metrics}}.jsonl",
                dir.display()
            );
            Some(Sink::File(sink))
        }
    };
    sinks.extend(sink);
    let destination: Vec<String> = sinks.iter().map(Sink::describe).collect();
    let destination = destination.join(" and ");
    let rows = sinks.iter().any(Sink::wants_rows);
    let otlp = sinks.iter().any(|sink| !sink.wants_rows());
    let resource = ResourceBase::from_env(
        environment
            .otel
            .get("OTEL_RESOURCE_ATTRIBUTES")
            .map(String::as_str),
    );
    let options = ExportOptions {
        mode,
        roots: loaded.claude_roots(environment),
        state_dir: loaded.state_dir(environment)?,
        prices: PriceTable::with_overrides(&config.pricing),
        tracker: TrackerOptions {
            idle_ms: export.idle_timeout_secs.min(u32::MAX.into()) as i64 * 1000,
            response_linger_ms: export.response_linger_secs.min(u32::MAX.into()) as i64 * 1000,
        },
        encoder: Encoder::new(policy, resource),
        max_inline_line: config.max_line_bytes,
        batch_max_records: export.batch_max_records,
        batch_max_bytes: export.batch_max_bytes,
        queue_batches: export.queue_batches,
        poll_interval: Duration::from_millis(export.poll_interval_ms.max(10)),
        shutdown_grace: Duration::from_secs(export.shutdown_grace_secs),
        backoff: Backoff::default(),
        text_cap: policy.max_bytes().unwrap_or(0),
        stats,
        rows,
        otlp,
        receiver,
    };
    let stop = Arc::new(AtomicBool::new(false));
    runtime.spawn(stop_on_signal(stop.clone()));
    let summary = runtime.block_on(ccotel::export::run(options, sinks, stop))?;
    eprintln!(
        "ccotel: sent {} log records, {} spans, {} metric points from {} lines ({:.1} MB) to {destination}",
        summary.log_records,
        summary.spans,
        summary.metric_points,
        summary.lines,
        summary.bytes as f64 / 1e6
    );
    if summary.rejected > 0 || summary.refused_batches > 0 {
        eprintln!(
            "ccotel: the destination rejected {} records and refused {} batches (see warnings above)",
            summary.rejected, summary.refused_batches
        );
    }
    if summary.native_requests > 0 || summary.native_dropped > 0 {
        eprintln!(
            "ccotel: forwarded {} requests from Claude Code ({} records joined to the transcript, {} unmatched after the wait){}",
            summary.native_requests,
            summary.native_joined,
            summary.native_unmatched,
            match summary.native_dropped {
                0 => String::new(),
                dropped => format!("; {dropped} were not delivered before shutdown and are lost"),
            }
        );
    }
    if summary.abandoned_batches > 0 {
        eprintln!(
            "ccotel: {} batches were not delivered before shutdown; they will be read again next run",
            summary.abandoned_batches
        );
    }
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// Sets `stop` on SIGINT or SIGTERM; a second signal exits at once.
async fn stop_on_signal(stop: Arc<AtomicBool>) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!("cannot listen for SIGTERM: {error}");
                return;
            }
        };
    for _ in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("ccotel: stopping now; undelivered lines will be read again next run");
            std::process::exit(130);
        }
        eprintln!("ccotel: stopping: delivering what was read, then committing (signal again to quit now)");
    }
}

fn run_report(loaded: &Loaded, environment: &Environment, args: &ReportArgs) -> Result<()> {
    let config = &loaded.config;
    let roots = loaded.claude_roots(environment);
    let started = std::time::Instant::now();
    let options = IngestOptions {
        threads: config.threads,
        max_inline_line: config.max_line_bytes,
    };
    let view = report_view(loaded, args)?;
    let progress = Arc::new(Progress::default());
    let (summary, cached, state) = if args.full {
        let nothing_cached = Listing::default();
        let found = discover_with(&roots, &nothing_cached).context("listing transcripts")?;
        found.warn(&roots);
        let files = found.into_parts().0.into_sorted();
        let _line = ProgressLine::start(Arc::clone(&progress));
        let result = full_scan(files, &options, &progress);
        let rendered = view.render(&result.ledger);
        // The process ends soon: returning the ledger's memory page by page
        // would cost a few percent of a run for nothing.
        std::mem::forget(result.ledger);
        (result.summary, Cached::Unkeyed(rendered), None)
    } else {
        let dir = loaded.state_dir(environment)?;
        let state = StateDir::open(&dir).context("opening the state directory")?;
        let list_files = || list_through_cache(&roots, state.path());
        let _line = ProgressLine::start(Arc::clone(&progress));
        let speculation = ReportSpeculation {
            view: &view,
            state_dir: &dir,
            cache: CacheFile::in_dir(&dir),
        };
        let run = ingest_speculating(&state, list_files, &speculation, &options, &progress)?;
        if let PriorState::Discarded(reason) = &run.prior {
            tracing::warn!("{reason}; every transcript was read again");
        }
        let output = match (run.output, &run.ledger) {
            (Some(output), _) => output,
            (None, Some(ledger)) => Cached::Unkeyed(view.render(ledger)),
            (None, None) => anyhow::bail!("the report was not rendered"),
        };
        let cached = match &run.saved_state {
            // A report of a changed state is cached too, for the next run.
            Some(state_id) => view.keyed(output, state_id, run.new_state),
            None => output,
        };
        std::mem::forget(run.ledger);
        std::mem::forget(run.listed);
        (run.summary, cached, Some(state))
    };
    // Stored while the state directory is locked, and the lock released before
    // printing: a pager reading the report could hold it for minutes.
    if let Some(state) = state {
        cached.store(state.path());
        tracing::debug!(elapsed = ?started.elapsed(), "report cached");
    }
    print_rendered(cached.rendered())?;
    tracing::debug!(elapsed = ?started.elapsed(), "report printed");
    warn_about(&summary);
    Ok(())
}

/// The report, computed on the state a run ends with while the run waits on
/// the disk.
struct ReportSpeculation<'a> {
    view: &'a View,
    state_dir: &'a Path,
    /// The report cache in `state_dir`, as this run found it.
    cache: CacheFile,
}

impl Speculation for ReportSpeculation<'_> {
    type Output = Cached;

    fn recall(&self, state: &str) -> Option<Self::Output> {
        self.view.recall(&self.cache, state)
    }

    fn needs_every_response(&self, state: &str) -> bool {
        !self.view.has_tally(&self.cache, state)
    }

    fn compute(&self, basis: Basis<'_>) -> Self::Output {
        match basis {
            Basis::Saved { ledger, state } => self.view.render_saved(ledger, state),
            Basis::Changed {
                ledger,
                from,
                saved_as,
            } => {
                let cached = self.view.render_changed(&self.cache, ledger, from);
                match saved_as {
                    // Stored while the run waits on the disk. Should the save
                    // fail, the entry names a state that is never loaded.
                    Some(state) => self.view.keyed(cached, state, true).stored(self.state_dir),
                    None => cached,
                }
            }
        }
    }
}

fn report_view(loaded: &Loaded, args: &ReportArgs) -> Result<View> {
    if let (Some(since), Some(until)) = (args.since, args.until) {
        anyhow::ensure!(
            since <= until,
            "--since {since} is after --until {until}: no day is in both"
        );
    }
    Ok(View {
        prices: PriceTable::with_overrides(&loaded.config.pricing),
        filter: DateFilter {
            time_zone: loaded.time_zone(),
            since: args.since,
            until: args.until,
        },
        grouping: args.grouping,
        json: args.json,
    })
}

fn print_rendered(rendered: &Rendered) -> Result<()> {
    emit(rendered.text.as_bytes())?;
    for (model, responses) in &rendered.unpriced {
        tracing::warn!(
            "no price for model {model:?} ({responses} responses counted at $0); add [pricing.\"{model}\"] to the config"
        );
    }
    Ok(())
}

/// Lists transcripts, reading only the directories changed since the listing
/// saved in the state directory, and saves what changed.
fn list_through_cache(roots: &[PathBuf], state_dir: &Path) -> std::io::Result<ListedFiles> {
    let previous = Listing::load(state_dir);
    let found = discover_with(roots, &previous)?;
    tracing::debug!(
        dirs_read = found.dirs_read,
        dirs_cached = previous.len(),
        "transcripts listed"
    );
    found.warn(roots);
    let (files, changed_listing) = found.into_parts();
    if let Some(listing) = changed_listing {
        if let Err(error) = listing.save(state_dir) {
            tracing::debug!("saving the directory listing: {error}");
        }
    }
    Ok(files)
}

fn warn_about(summary: &IngestSummary) {
    for (path, lines) in &summary.files_with_skipped_lines {
        tracing::info!(
            "{}: skipped {} malformed and {} non-object lines",
            path.display(),
            lines.malformed,
            lines.not_object
        );
    }
    let skipped: u64 = summary.lines.skipped();
    if skipped > 0 {
        tracing::warn!(
            "skipped {skipped} unreadable lines in {} files (-v lists them)",
            summary.files_with_skipped_lines.len()
        );
    }
    for (path, restart) in &summary.files_restarted {
        tracing::info!("{}: {restart:?}, read again from the start", path.display());
    }
    for (path, error) in &summary.errors {
        tracing::warn!("{}: {error}; will retry on the next run", path.display());
    }
    if summary.usage_lines_without_timestamp > 0 {
        tracing::warn!(
            "{} usage lines have no readable timestamp; a response with no dated line is dated 1970-01-01",
            summary.usage_lines_without_timestamp
        );
    }
    tracing::info!(
        files = summary.files,
        read = summary.files_read,
        unchanged = summary.files_unchanged,
        bytes = summary.bytes_read,
        "scan finished"
    );
}

/// The layout `[clickhouse]` describes even without a URL.
fn default_layout(loaded: &Loaded) -> ccotel::sink::clickhouse::schema::Layout {
    let ch = &loaded.config.clickhouse;
    ccotel::sink::clickhouse::schema::Layout {
        database: ch.database.clone(),
        table_prefix: ch.table_prefix.clone(),
        ttl_days: ch.ttl_days,
        cluster: ch.cluster.clone(),
    }
}

fn config_check(loaded: &Loaded, environment: &Environment) -> Result<()> {
    let mut out = String::new();
    match &loaded.file {
        Some((path, true)) => outln!(out, "# config file: {}", path.display()),
        Some((path, false)) => outln!(
            out,
            "# config file: {} (not present; defaults apply)",
            path.display()
        ),
        None => outln!(out, "# config file: none"),
    }
    outln!(
        out,
        "# state directory: {}",
        loaded.state_dir(environment)?.display()
    );
    let roots: Vec<String> = loaded
        .claude_roots(environment)
        .iter()
        .map(|root| root.display().to_string())
        .collect();
    outln!(out, "# transcripts under: {}", roots.join(", "));
    outln!(
        out,
        "# time zone: {}",
        loaded.time_zone().iana_name().unwrap_or("system")
    );
    match loaded.otlp_settings(environment, None, None)? {
        Some(otlp) => outln!(
            out,
            "# export: OTLP {:?} to {} (gzip: {}, {} headers, masked)",
            otlp.protocol,
            otlp.endpoint,
            otlp.gzip,
            otlp.headers.len()
        ),
        None => outln!(
            out,
            "# export: no OTLP endpoint; OTLP-JSON files in {}",
            loaded.data_dir(environment)?.join("otlp").display()
        ),
    }
    outln!(out, "# content policy: {}", loaded.content_policy()?);
    outln!(out, "{}", loaded.to_masked_toml().trim_end());
    emit(out.as_bytes())
}
