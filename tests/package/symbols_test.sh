#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The shared libraries export the public API only (nothing of lockkit::detail or of the
# backends' internals) and carry the soname of the version policy: liblockkit.so.MAJOR.MINOR
# before 1.0, liblockkit.so.MAJOR after.
#   symbols_test.sh <shared-build-dir> <version> "<components>"
set -euo pipefail
build=$1 version=$2 components=$3
IFS=. read -r major minor _ <<<"$version"
if [ "$major" -eq 0 ]; then soversion=$major.$minor; else soversion=$major; fi
fail=0
libs=("$build/liblockkit.so")
for c in $components; do libs+=("$build/src/$c/liblockkit_$c.so"); done
for lib in "${libs[@]}"; do
  name=$(basename "$lib")
  soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  if [ "$soname" != "$name.$soversion" ]; then
    echo "symbols_test: $name has soname '$soname', expected $name.$soversion" >&2
    fail=1
  fi
  exported=$(nm -D --defined-only "$lib" | c++filt)
  # Lock::keep_alive_on is private (reached only by lockkit_async, through
  # detail::KeepAliveAccess): a detail type in its signature is no API a user can call.
  leaked=$(grep -E 'lockkit::detail|lockkit::.*::(Store|Connection|Pool)\b' <<<"$exported" |
             grep -v 'lockkit::Lock::keep_alive_on(' || true)
  if [ -n "$leaked" ]; then
    echo "symbols_test: $name exports internal symbols:" >&2
    echo "$leaked" | head -20 >&2
    fail=1
  fi
  if ! grep -q 'lockkit::open\|lockkit::register_backend\|lockkit_backend_anchor\|LockApi\|lockkit::make_' \
      <<<"$exported"; then
    echo "symbols_test: $name exports no public API at all" >&2
    fail=1
  fi
  echo "$name ($soname): $(grep -c . <<<"$exported") exported symbols"
done
exit $fail
