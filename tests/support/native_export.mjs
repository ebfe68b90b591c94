// Sends a fixture of Claude Code native telemetry (logs, spans, metrics) to an
// OTLP endpoint with the real OpenTelemetry JavaScript SDK, the one Claude Code
// exports with, so the tests can drive ccotel's OTLP receiver with a real
// client. The SDK is not vendored: scripts/install-otel-js.sh installs it and
// prints a folder; pass that folder in CCOTEL_OTEL_JS.
//
//   CCOTEL_OTEL_JS=$(scripts/install-otel-js.sh) node tests/support/native_export.mjs \
//       --fixture FILE --protocol grpc|http/protobuf|http/json --endpoint URL \
//       [--gzip] [--repeat N] [--batch N] [--timeout-ms N]
//
// --endpoint is the base URL (http://127.0.0.1:4317 for gRPC, :4318 for HTTP;
// /v1/logs, /v1/traces and /v1/metrics are appended for HTTP). --repeat emits
// the fixture's logs N times (spans and metrics once); --batch is the log batch
// size (default 512); --timeout-ms is each export's timeout, retries included
// (default 10000, the SDK's).
//
// Exits 0 and prints {"logs": N, "spans": N, "metric_points": N, "seconds": S}
// only if every export succeeded and nothing was dropped; otherwise exits 1
// with the reasons on stderr. The SDK never throws on a failed export, so each
// exporter's export() is wrapped to see its result.
//
// Fixture (every section optional; attribute values are strings, numbers or
// booleans; an integral number is sent as intValue, any other as doubleValue):
//   {"resource": {"service.name": "claude-code", ...}, "scope_version": "2.1.214",
//    "logs": [{"time": ISO-8601, "body": "...", "attributes": {...}}],
//    "spans": [{"name": "...", "start": ISO, "end": ISO, "attributes": {...},
//               "status": "ok"|"error", "children": [...same shape...]}],
//    "metrics": [{"name": "...", "unit": "...", "kind": "counter",
//                 "description": "...", "points": [{"value": 1, "attributes": {...}}]}]}
// Metric kinds: counter (Claude Code's only kind), up_down_counter, histogram,
// gauge. Metrics use delta temporality and are exported once, at the end.

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

const USAGE =
    'usage: node native_export.mjs --fixture FILE --protocol grpc|http/protobuf|http/json ' +
    '--endpoint URL [--gzip] [--repeat N] [--batch N] [--timeout-ms N]';

function die(message) {
    process.stderr.write(`native_export: ${message}\n`);
    process.exit(1);
}

function parseArgs(argv) {
    const opts = { gzip: false, repeat: 1, batch: 512, timeoutMs: 10000 };
    const positive = (name, value) => {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 1) die(`${name} wants a positive integer, got ${value}`);
        return n;
    };
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const value = () => {
            if (i + 1 >= argv.length) die(`${arg} wants a value\n${USAGE}`);
            return argv[++i];
        };
        switch (arg) {
            case '--fixture': opts.fixture = value(); break;
            case '--protocol': opts.protocol = value(); break;
            case '--endpoint': opts.endpoint = value(); break;
            case '--gzip': opts.gzip = true; break;
            case '--repeat': opts.repeat = positive(arg, value()); break;
            case '--batch': opts.batch = positive(arg, value()); break;
            case '--timeout-ms': opts.timeoutMs = positive(arg, value()); break;
            case '-h': case '--help': process.stdout.write(`${USAGE}\n`); process.exit(0);
            default: die(`unknown argument ${arg}\n${USAGE}`);
        }
    }
    if (!opts.fixture || !opts.protocol || !opts.endpoint) die(USAGE);
    if (!['grpc', 'http/protobuf', 'http/json'].includes(opts.protocol)) {
        die(`unknown protocol ${opts.protocol}; want grpc, http/protobuf or http/json`);
    }
    opts.endpoint = opts.endpoint.replace(/\/+$/, '');
    return opts;
}

const opts = parseArgs(process.argv.slice(2));

// Only the command line configures the exporters: the SDK would otherwise also
// read OTEL_* variables (headers, timeouts, batch sizes) from the environment.
for (const name of Object.keys(process.env)) {
    if (name.startsWith('OTEL_')) delete process.env[name];
}

const sdkDir = process.env.CCOTEL_OTEL_JS;
if (!sdkDir) die('CCOTEL_OTEL_JS is not set; set it to the folder scripts/install-otel-js.sh prints');
const require = createRequire(path.join(path.resolve(sdkDir), 'package.json'));
let api, resources, sdkLogs, sdkTrace, sdkMetrics, metricsHttp;
try {
    api = require('@opentelemetry/api');
    resources = require('@opentelemetry/resources');
    sdkLogs = require('@opentelemetry/sdk-logs');
    sdkTrace = require('@opentelemetry/sdk-trace-base');
    sdkMetrics = require('@opentelemetry/sdk-metrics');
    metricsHttp = require('@opentelemetry/exporter-metrics-otlp-http');
} catch (e) {
    die(`cannot load the OpenTelemetry SDK from ${sdkDir} (run scripts/install-otel-js.sh): ${e.message}`);
}

const failures = [];
function fail(message) {
    failures.push(message);
    process.stderr.write(`native_export: ${message}\n`);
}

// The SDK reports what goes wrong through its diagnostic logger: show warnings,
// count errors as failures, and fail on a partial success that rejected items.
api.diag.setLogger(
    {
        error: (...args) => fail(`OpenTelemetry SDK error: ${formatArgs(args)}`),
        warn: (...args) => {
            const text = formatArgs(args);
            if (text.startsWith('Received Partial Success response:')) {
                let rejected = 0;
                try {
                    const partial = JSON.parse(args[1]);
                    for (const [key, v] of Object.entries(partial)) {
                        if (key.startsWith('rejected')) rejected += Number(v?.low ?? v) || 0;
                    }
                } catch {
                    rejected = 1;
                }
                if (rejected > 0) {
                    fail(`the receiver rejected ${rejected} item(s): ${text}`);
                    return;
                }
            }
            process.stderr.write(`native_export: OpenTelemetry SDK warning: ${text}\n`);
        },
        info: () => {},
        debug: () => {},
        verbose: () => {},
    },
    api.DiagLogLevel.WARN,
);

function formatArgs(args) {
    const describe = a => {
        if (typeof a === 'string') {
            // The SDK's error handler passes errors on as JSON text.
            try {
                const parsed = JSON.parse(a);
                if (parsed && typeof parsed.message === 'string') a = parsed;
                else return a;
            } catch {
                return a;
            }
        }
        if (a && typeof a.message === 'string') return `${a.message}${a.code !== undefined ? ` (code ${a.code})` : ''}`;
        return JSON.stringify(a);
    };
    return args.map(describe).join(' ');
}

let fixture;
try {
    fixture = JSON.parse(readFileSync(opts.fixture, 'utf8'));
} catch (e) {
    die(`cannot read fixture ${opts.fixture}: ${e.message}`);
}

// "2026-03-01T10:00:00.123456789Z" -> HrTime [seconds, nanoseconds], keeping
// every fractional digit (a Date would keep milliseconds only).
function hrTime(text, where) {
    const m = typeof text === 'string' && /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)$/.exec(text);
    const millis = m ? Date.parse(`${m[1]}${m[3]}`) : NaN;
    if (!Number.isFinite(millis)) die(`${where}: not an ISO-8601 time with a zone: ${JSON.stringify(text)}`);
    return [Math.floor(millis / 1000), Number((m[2] ?? '').padEnd(9, '0'))];
}

function attributes(value, where) {
    if (value === undefined) return {};
    if (value === null || typeof value !== 'object' || Array.isArray(value)) die(`${where}: attributes must be an object`);
    for (const [key, v] of Object.entries(value)) {
        const ok = (x) => typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x));
        if (!(ok(v) || (Array.isArray(v) && v.every(ok)))) {
            die(`${where}: attribute ${key} must be a string, number or boolean, got ${JSON.stringify(v)}`);
        }
    }
    return value;
}

const resource = resources.resourceFromAttributes(attributes(fixture.resource, 'resource'));
const scopeVersion = fixture.scope_version;
const logs = fixture.logs ?? [];
const spans = fixture.spans ?? [];
const metrics = fixture.metrics ?? [];

const exported = { logs: 0, spans: 0, metric_points: 0 };
const SIGNAL_NAME = { logs: 'logs', spans: 'traces', metric_points: 'metrics' };

// Wraps an exporter's export() so a failed export, which the SDK only passes
// to its callback, is seen, and successful items are counted.
function watch(exporter, signal, count) {
    const inner = exporter.export.bind(exporter);
    exporter.export = (items, resultCallback) => {
        inner(items, result => {
            if (result.code === 0) {
                exported[signal] += count(items);
            } else {
                const e = result.error;
                const detail = e ? `${e.message ?? e}${e.code !== undefined ? ` (code ${e.code})` : ''}${e.data ? `: ${e.data}` : ''}` : 'no error given';
                fail(`${SIGNAL_NAME[signal]} export to ${opts.endpoint} over ${opts.protocol} failed: ${detail}`);
            }
            resultCallback(result);
        });
    };
    return exporter;
}

const SIGNAL_PATH = { logs: 'logs', trace: 'traces', metrics: 'metrics' };
const PACKAGE_SUFFIX = { grpc: 'grpc', 'http/protobuf': 'proto', 'http/json': 'http' };
function makeExporter(signal, className, extra = {}) {
    const pkg = `@opentelemetry/exporter-${signal}-otlp-${PACKAGE_SUFFIX[opts.protocol]}`;
    const Exporter = require(pkg)[className];
    const url = opts.protocol === 'grpc' ? opts.endpoint : `${opts.endpoint}/v1/${SIGNAL_PATH[signal]}`;
    return new Exporter({
        url,
        compression: opts.gzip ? 'gzip' : 'none',
        timeoutMillis: opts.timeoutMs,
        ...extra,
    });
}

function countSpans(list) {
    return list.reduce((n, s) => n + 1 + countSpans(s.children ?? []), 0);
}

const started = performance.now();
const work = [];

if (logs.length > 0) {
    work.push(async () => {
        const exporter = watch(makeExporter('logs', 'OTLPLogExporter'), 'logs', items => items.length);
        // Logs are emitted in chunks, each flushed before the next, so the
        // queue never overflows (the SDK drops silently when it does). A chunk
        // is a whole number of batches so every batch but the last is full.
        const chunk = opts.batch * Math.max(1, Math.ceil(8192 / opts.batch));
        const provider = new sdkLogs.LoggerProvider({
            resource,
            processors: [
                new sdkLogs.BatchLogRecordProcessor({
                    exporter,
                    maxExportBatchSize: opts.batch,
                    maxQueueSize: chunk,
                    scheduledDelayMillis: 1000,
                    exportTimeoutMillis: opts.timeoutMs + 5000,
                }),
            ],
        });
        const logger = provider.getLogger('com.anthropic.claude_code.events', scopeVersion);
        const records = logs.map((log, i) => ({
            timestamp: hrTime(log.time, `logs[${i}].time`),
            body: log.body,
            attributes: attributes(log.attributes, `logs[${i}]`),
        }));
        let pending = 0;
        for (let r = 0; r < opts.repeat; r++) {
            for (const record of records) {
                // A fresh object each time: the SDK keeps what it is given.
                logger.emit({ ...record, attributes: { ...record.attributes } });
                if (++pending === chunk) {
                    await provider.forceFlush();
                    pending = 0;
                }
            }
        }
        await provider.forceFlush();
        await provider.shutdown();
        const expected = logs.length * opts.repeat;
        if (exported.logs !== expected && failures.length === 0) {
            fail(`exported ${exported.logs} of ${expected} log records; the rest were dropped`);
        }
    });
}

if (spans.length > 0) {
    work.push(async () => {
        const exporter = watch(makeExporter('trace', 'OTLPTraceExporter'), 'spans', items => items.length);
        const total = countSpans(spans);
        const provider = new sdkTrace.BasicTracerProvider({
            resource,
            spanProcessors: [
                new sdkTrace.BatchSpanProcessor(exporter, {
                    maxQueueSize: Math.max(2048, total),
                    exportTimeoutMillis: opts.timeoutMs + 5000,
                }),
            ],
        });
        const tracer = provider.getTracer('com.anthropic.claude_code', scopeVersion);
        const start = (list, parentContext, where) => {
            list.forEach((s, i) => {
                const at = `${where}[${i}]`;
                const span = tracer.startSpan(
                    s.name,
                    { startTime: hrTime(s.start, `${at}.start`), attributes: attributes(s.attributes, at) },
                    parentContext,
                );
                if (s.status === 'error') span.setStatus({ code: api.SpanStatusCode.ERROR });
                else if (s.status === 'ok') span.setStatus({ code: api.SpanStatusCode.OK });
                else if (s.status !== undefined) die(`${at}.status must be "ok" or "error"`);
                start(s.children ?? [], api.trace.setSpan(api.ROOT_CONTEXT, span), `${at}.children`);
                span.end(hrTime(s.end, `${at}.end`));
            });
        };
        start(spans, api.ROOT_CONTEXT, 'spans');
        await provider.forceFlush();
        await provider.shutdown();
        if (exported.spans !== total && failures.length === 0) {
            fail(`exported ${exported.spans} of ${total} spans; the rest were dropped`);
        }
    });
}

if (metrics.length > 0) {
    work.push(async () => {
        const exporter = watch(
            makeExporter('metrics', 'OTLPMetricExporter', {
                temporalityPreference: metricsHttp.AggregationTemporalityPreference.DELTA,
            }),
            'metric_points',
            rm => rm.scopeMetrics.reduce((n, sm) => n + sm.metrics.reduce((m, md) => m + md.dataPoints.length, 0), 0),
        );
        const reader = new sdkMetrics.PeriodicExportingMetricReader({
            exporter,
            // Exported by the forceFlush below, never by the timer.
            exportIntervalMillis: 2 ** 31 - 1,
            exportTimeoutMillis: opts.timeoutMs + 5000,
        });
        const provider = new sdkMetrics.MeterProvider({ resource, readers: [reader] });
        const meter = provider.getMeter('com.anthropic.claude_code', scopeVersion);
        metrics.forEach((m, i) => {
            const at = `metrics[${i}]`;
            const options = { unit: m.unit, description: m.description };
            const [instrument, method] = {
                counter: () => [meter.createCounter(m.name, options), 'add'],
                up_down_counter: () => [meter.createUpDownCounter(m.name, options), 'add'],
                histogram: () => [meter.createHistogram(m.name, options), 'record'],
                gauge: () => [meter.createGauge(m.name, options), 'record'],
            }[m.kind ?? 'counter']?.() ?? die(`${at}.kind must be counter, up_down_counter, histogram or gauge`);
            (m.points ?? []).forEach((p, j) => {
                if (typeof p.value !== 'number') die(`${at}.points[${j}].value must be a number`);
                instrument[method](p.value, attributes(p.attributes, `${at}.points[${j}]`));
            });
        });
        await provider.forceFlush();
        await provider.shutdown();
    });
}

// A provider whose export failed may also reject its flush; that is already
// counted, but anything else that throws is a failure too.
await Promise.all(
    work.map(w =>
        w().catch(e => {
            const errors = Array.isArray(e) ? e : [e];
            fail(`export aborted: ${errors.map(x => x?.message ?? String(x)).join('; ')}`);
        }),
    ),
);
const seconds = (performance.now() - started) / 1000;

if (failures.length > 0) {
    process.stderr.write(`native_export: FAILED: ${failures.length} problem(s), first: ${failures[0]}\n`);
    process.exit(1);
}
process.stdout.write(
    `${JSON.stringify({ logs: exported.logs, spans: exported.spans, metric_points: exported.metric_points, seconds: Number(seconds.toFixed(3)) })}\n`,
    () => process.exit(0),
);
