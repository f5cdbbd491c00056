#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The tool is a lockkit user like any other: every quoted #include in cli/ names a file of cli/
# itself, its generated modules_config.hpp, or a public header (include/lockkit/...), never an
# internal header of src/ (reachable through a relative path even though the build does not add
# src/ to the tool's include path).
#   public_headers_test.sh <source dir> [<cli dir>]
set -euo pipefail
src=$1
cli=${2:-$src/cli}
fail=0
checked=0
for file in "$cli"/*.cpp "$cli"/*.hpp; do
  while IFS= read -r header; do
    checked=$((checked + 1))
    case $header in
      modules_config.hpp) continue ;;
      lockkit/*) [[ $header != *..* && -f $src/include/$header ]] && continue ;;
      */*) ;;
      *) [ -f "$cli/$header" ] && continue ;;
    esac
    echo "public_headers_test: $(basename "$file") includes \"$header\": not cli/'s own nor a" \
      "public header (include/lockkit/)" >&2
    fail=1
  done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/p' "$file")
done
if [ "$checked" -eq 0 ]; then
  echo "public_headers_test: no #include found under $cli" >&2
  exit 1
fi
exit $fail
