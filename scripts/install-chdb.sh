#!/usr/bin/env sh
# Installs the embedded ClickHouse engine used by the integration tests
# (tests/common/clickhouse.rs runs tests/support/chdb_front.py on it) into the
# cache folder the tests look in, so CI can install it, and cache it, ahead of
# `cargo test`. The tests install it on first use too; this only moves that step
# earlier. Needs python3 (3.9 or newer) with pip.
#
#   scripts/install-chdb.sh         # prints the folder to put on PYTHONPATH
set -eu

chdb_version=26.9.0   # chdb-core: the ClickHouse 26.9 engine
lz4_version=4.4.5     # lz4: the compressed insert bodies
# chdb's wheel suits any CPython 3; lz4's is built per version, hence the tag.
python_tag=$(python3 -c 'import sys; print("py%d%d" % sys.version_info[:2])')
cache="${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}"
dir="$cache/ccotel-test/chdb-$chdb_version-lz4-$lz4_version-$python_tag"

if [ ! -f "$dir/.complete" ]; then
    mkdir -p "$cache/ccotel-test"
    staging="$cache/ccotel-test/.chdb-staging-$$"
    rm -rf "$staging"
    trap 'rm -rf "$staging"' EXIT
    # No dependencies: chdb's pandas and pyarrow only serve DataFrame results.
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --target "$staging" \
        "chdb-core==$chdb_version" "lz4==$lz4_version"
    touch "$staging/.complete"
    # Another run may have finished first; `mv` onto a folder would nest.
    [ -e "$dir" ] || mv "$staging" "$dir"
    [ -f "$dir/.complete" ]
fi
PYTHONPATH="$dir" python3 -c 'import chdb, lz4.block; print("chdb", chdb.__version__, "ClickHouse", chdb.engine_version)' >&2
echo "$dir"
