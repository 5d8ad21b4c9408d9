#!/usr/bin/env bash
# Installs strata from the build tree into a temporary prefix, then builds
# and runs a downstream C project that uses find_package(strata).
set -euo pipefail
build_dir=$1
src_dir=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build_dir" --prefix "$tmp/prefix" > "$tmp/install.log"
test -f "$tmp/prefix/include/strata/strata.h"
ls "$tmp"/prefix/lib*/libstrata.so > /dev/null
ls "$tmp"/prefix/lib*/pkgconfig/strata.pc > /dev/null
cmake -S "$src_dir/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" > "$tmp/configure.log"
cmake --build "$tmp/consumer" > "$tmp/build.log"
"$tmp/consumer/consumer"
