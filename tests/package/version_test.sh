#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# One version everywhere: include/lockkit/version.hpp, the CMake package version, every
# pkg-config file and `lockkit --version` agree. And the compatibility policy: before 1.0 each
# minor release is a break, so find_package(lockkit 0.<minor+1>) and 0.<minor-1> must fail
# against 0.<minor>, while MAJOR.MINOR itself succeeds.
#   version_test.sh <build-dir> <source-dir>
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null

header=$src/include/lockkit/version.hpp
part() { sed -n "s/^#define LOCKKIT_VERSION_$1 \([0-9]*\)$/\1/p" "$header"; }
major=$(part MAJOR) minor=$(part MINOR) patch=$(part PATCH)
version=$major.$minor.$patch
echo "header: $version"
fail=0
check() {  # check <what> <value>
  if [ "$2" != "$version" ]; then
    echo "version_test: $1 says '$2', the header $version" >&2
    fail=1
  else
    echo "$1: $2"
  fi
}
# The header's string, as a compiler sees it.
printf '#include <lockkit/version.hpp>\n#include <cstdio>\nint main() { std::puts(lockkit::kVersion); }\n' \
  >"$tmp/v.cpp"
c++ -std=c++20 -I"$tmp/prefix/include" -o "$tmp/v" "$tmp/v.cpp"
check "lockkit::kVersion" "$("$tmp/v")"
config_version=$(find "$tmp/prefix" -name lockkitConfigVersion.cmake)
check "lockkitConfigVersion.cmake" "$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")$/\1/p' "$config_version")"
while IFS= read -r pc; do
  check "$(basename "$pc")" "$(sed -n 's/^Version: //p' "$pc")"
done < <(find "$tmp/prefix" -name '*.pc')
if [ -x "$tmp/prefix/bin/lockkit" ]; then
  lib=$(dirname "$(find "$tmp/prefix" -name lockkit.pc)")/..
  check "lockkit --version" "$(LD_LIBRARY_PATH=$lib "$tmp/prefix/bin/lockkit" --version | sed 's/^lockkit //')"
fi

# find_package(lockkit <requested>) in a throwaway project: prints found/not found.
find_lockkit() {
  mkdir -p "$tmp/find-$1"
  # shellcheck disable=SC2016  # ${lockkit_FOUND} is CMake's
  printf 'cmake_minimum_required(VERSION 3.25)\nproject(v LANGUAGES CXX)\nfind_package(lockkit %s)\nmessage(STATUS "lockkit_FOUND=${lockkit_FOUND}")\n' \
    "$1" >"$tmp/find-$1/CMakeLists.txt"
  cmake -S "$tmp/find-$1" -B "$tmp/find-$1/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" 2>&1 |
    sed -n 's/.*lockkit_FOUND=\(.*\)$/\1/p'
}
expect() {  # expect <requested version> <1|0>
  local found
  found=$(find_lockkit "$1")
  if [ "$found" = "$2" ]; then
    echo "find_package(lockkit $1) against $version: found=${found:-0} (as expected)"
  else
    echo "version_test: find_package(lockkit $1) against $version: found=${found:-0}" >&2
    fail=1
  fi
}
expect "$major.$minor" 1
expect "$version" 1
if [ "$major" -eq 0 ]; then
  expect "0.$((minor + 1))" 0
  if [ "$minor" -gt 0 ]; then expect "0.$((minor - 1))" 0; fi
else
  expect "$((major + 1)).0" 0
fi
exit $fail
