#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The generated man pages exist for the tool and each subcommand, render without a single
# groff/man warning at 80 columns, and carry the help's sections.
#   man_test.sh <man-dir> <subcommand>...
set -euo pipefail
dir=$1
shift
fail=0
for name in lockkit "${@/#/lockkit-}"; do
  page=$dir/$name.1
  if [ ! -s "$page" ]; then
    echo "man_test: $page missing" >&2
    fail=1
    continue
  fi
  warnings=$(MANWIDTH=80 man -l --warnings "$page" 2>&1 >/dev/null)
  text=$(MANWIDTH=80 man -l "$page" 2>/dev/null)
  if [ -n "$warnings" ]; then
    echo "man_test: $name.1 renders with warnings:" >&2
    echo "$warnings" >&2
    fail=1
  fi
  for section in NAME SYNOPSIS DESCRIPTION "EXIT STATUS"; do
    if ! grep -q "^$section" <<<"$text"; then
      echo "man_test: $name.1 has no $section section" >&2
      fail=1
    fi
  done
  whatis=$(lexgrog "$page" 2>&1 || true)
  echo "$whatis"
  if ! grep -q "\"$name - " <<<"$whatis"; then
    echo "man_test: $name.1's NAME line is not indexable as $name" >&2
    fail=1
  fi
done
exit $fail
