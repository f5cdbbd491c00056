#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the build tree into a temporary prefix, builds tests/package against it with
# find_package(lockkit COMPONENTS ...), and runs the consumer.
#   package_test.sh <build-dir> <source-dir> "<components>"
set -euo pipefail
build=$1 src=$2 components=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/tests/package" -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DLOCKKIT_COMPONENTS="${components// /;}" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
urls=(memory:)
for c in $components; do
  if [ "$c" = sqlite ]; then urls+=("sqlite://$tmp/locks.db"); fi
done
schemes=$components
case " $components " in *" postgres "*) schemes="$schemes postgresql" ;; esac
# shellcheck disable=SC2086  # one word per scheme
"$tmp/consumer/consumer" $schemes -- "${urls[@]}"
