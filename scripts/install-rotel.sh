#!/usr/bin/env sh
# Installs the rotel OpenTelemetry collector used by the integration tests
# (tests/common/collector.rs) into the cache folder the tests look in, so CI can
# install it, and cache it, ahead of `cargo test`. The tests install it on first
# use too; this only moves that step earlier. Needs python3 with pip.
#
#   scripts/install-rotel.sh        # prints the agent's path
set -eu

version=0.0.1a15
cache="${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}"
dir="$cache/ccotel-test/rotel-$version"
agent="$dir/rotel/rotel-agent"

if [ ! -x "$agent" ]; then
    mkdir -p "$cache/ccotel-test"
    staging="$cache/ccotel-test/.rotel-staging-$$"
    rm -rf "$staging"
    trap 'rm -rf "$staging"' EXIT
    # Every wheel carries the same static agent, so any Python version will do.
    python3 -m pip install --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --python-version 3.11 --target "$staging" "rotel==$version"
    chmod +x "$staging/rotel/rotel-agent"
    # Another run may have finished first; `mv` onto a folder would nest, and
    # still does if that run wins between the test and the `mv`: drop the copy.
    [ -e "$dir" ] || mv "$staging" "$dir"
    rm -rf "$dir/${staging##*/}"
    [ -x "$agent" ]
fi
"$agent" --version >&2
echo "$agent"
