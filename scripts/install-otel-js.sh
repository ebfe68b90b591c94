#!/usr/bin/env sh
# Installs the OpenTelemetry JavaScript SDK and its OTLP exporters (gRPC,
# HTTP/protobuf, HTTP/JSON for logs, traces and metrics), the SDK Claude Code
# itself exports its native telemetry with, into the cache folder the tests
# look in. tests/support/native_export.mjs loads them from there: point
# CCOTEL_OTEL_JS at the folder this prints. Needs node and npm.
#
#   scripts/install-otel-js.sh      # prints the folder holding node_modules
set -eu

# One upstream release: the 2.12.0 stable packages with the 0.223.0
# experimental ones (the last release line with sdk-trace-base and api-logs).
# Change the tag whenever a version changes, so a stale cache is not reused.
tag=0.223.0
packages="
@opentelemetry/api@1.9.1
@opentelemetry/api-logs@0.223.0
@opentelemetry/resources@2.12.0
@opentelemetry/sdk-logs@0.223.0
@opentelemetry/sdk-metrics@2.12.0
@opentelemetry/sdk-trace-base@2.12.0
@opentelemetry/exporter-logs-otlp-grpc@0.223.0
@opentelemetry/exporter-logs-otlp-http@0.223.0
@opentelemetry/exporter-logs-otlp-proto@0.223.0
@opentelemetry/exporter-trace-otlp-grpc@0.223.0
@opentelemetry/exporter-trace-otlp-http@0.223.0
@opentelemetry/exporter-trace-otlp-proto@0.223.0
@opentelemetry/exporter-metrics-otlp-grpc@0.223.0
@opentelemetry/exporter-metrics-otlp-http@0.223.0
@opentelemetry/exporter-metrics-otlp-proto@0.223.0
"
cache="${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}"
dir="$cache/ccotel-test/otel-js-$tag"
# The folder only appears, by `mv`, once npm has finished; this checks it is whole.
marker="$dir/node_modules/@opentelemetry/exporter-metrics-otlp-proto/package.json"

if [ ! -f "$marker" ]; then
    mkdir -p "$cache/ccotel-test"
    staging="$cache/ccotel-test/.otel-js-staging-$$"
    rm -rf "$staging"
    trap 'rm -rf "$staging"' EXIT
    mkdir -p "$staging"
    # shellcheck disable=SC2086 # the list is meant to split into arguments
    npm install --prefix "$staging" --no-audit --no-fund --silent \
        --save-exact $packages >&2
    # Another run may have finished first; `mv` onto a folder would nest, and
    # still does if that run wins between the test and the `mv`: drop the copy.
    [ -e "$dir" ] || mv "$staging" "$dir"
    rm -rf "$dir/${staging##*/}"
    [ -f "$marker" ]
fi
echo "$dir"
