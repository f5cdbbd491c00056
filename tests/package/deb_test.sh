#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the .deb packages of a shared build tree with CPack, checks what each contains and
# depends on, unpacks them into a temporary root and runs the tool from there.
#   deb_test.sh <shared-build-dir> <version> "<backend facts>"
# A backend's facts (from cmake/LockkitBackends.cmake) read
#   name|Debian runtime package regex|Debian -dev package|linked or module (into the tool)
set -euo pipefail
build=$1 version=$2 facts=$3
IFS=. read -r major minor _ <<<"$version"
if [ "$major" -eq 0 ]; then soversion=$major.$minor; else soversion=$major; fi
lib_package=liblockkit$soversion
rm -rf "$build/packages"
(cd "$build" && cpack -G DEB --config CPackConfig.cmake >/dev/null)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
deb() { find "$build/packages" -maxdepth 1 -name "$1_*.deb" | head -1; }
contains() {  # contains <package> <path regex>...
  local pkg=$1 list
  shift
  list=$(dpkg-deb -c "$(deb "$pkg")" | awk '{print $6}')
  for re in "$@"; do
    if ! grep -Eq "$re" <<<"$list"; then
      echo "deb_test: $pkg has no file matching $re" >&2
      fail=1
    fi
  done
}
depends() {  # depends <package> <dependency regex>...
  local pkg=$1 dep
  shift
  dep=$(dpkg-deb -f "$(deb "$pkg")" Depends)
  echo "$pkg Depends: $dep"
  for re in "$@"; do
    if ! grep -Eq "(^|, )$re" <<<"$dep"; then
      echo "deb_test: $pkg does not depend on $re" >&2
      fail=1
    fi
  done
}
for pkg in "$lib_package" liblockkit-dev lockkit; do
  if [ -z "$(deb "$pkg")" ]; then
    echo "deb_test: no package $pkg in $build/packages:" >&2
    ls "$build/packages" >&2
    exit 1
  fi
  dpkg -I "$(deb "$pkg")" | sed -n 's/^ \(Package\|Version\|Depends\):/  &/p'
done

lib_files=('/usr/lib/(.*/)?liblockkit\.so\.'"$soversion"'$')
dev_files=('/usr/include/lockkit/lockkit\.hpp$' '/usr/include/lockkit/export\.hpp$'
  '/usr/lib/(.*/)?liblockkit\.so$' '/usr/lib/(.*/)?cmake/lockkit/lockkitConfig\.cmake$'
  '/usr/lib/(.*/)?cmake/lockkit/lockkitConfigVersion\.cmake$' '/usr/lib/(.*/)?pkgconfig/lockkit\.pc$')
lib_depends=('libc6' 'libstdc\+\+6')
dev_depends=("$lib_package \(= $version\)")
tool_files=('/usr/bin/lockkit$' '/usr/share/man/man1/lockkit\.1' '/usr/share/man/man1/lockkit-run\.1'
  '/usr/share/bash-completion/completions/lockkit$')
tool_depends=("$lib_package \(= $version\)" libc6)
components="" modules=""
for fact in $facts; do
  IFS='|' read -r c runtime dev tool <<<"$fact"
  components+=" $c"
  lib_files+=('/usr/lib/(.*/)?liblockkit_'"$c"'\.so\.'"$soversion"'$')
  dev_files+=('/usr/lib/(.*/)?liblockkit_'"$c"'\.so$' '/usr/lib/(.*/)?pkgconfig/lockkit-'"$c"'\.pc$'
    '/usr/lib/(.*/)?cmake/lockkit/lockkit-'"$c"'Targets\.cmake$')
  IFS=',' read -r -a runtime <<<"$runtime"
  IFS=',' read -r -a dev <<<"$dev"
  dev=("${dev[@]//+/\\+}")  # package names, matched as regexes: libgrpc++-dev
  lib_depends+=("${runtime[@]}") dev_depends+=("${dev[@]}")
  # The tool's modules are the tool's: in its package, which depends on what they load.
  if [ "$tool" = module ]; then
    modules+=" $c"
    tool_files+=('/usr/lib/(.*/)?lockkit/lockkit-'"$c"'\.so$')
    tool_depends+=("${runtime[@]}")
  fi
done
contains "$lib_package" "${lib_files[@]}"
contains liblockkit-dev "${dev_files[@]}"
contains lockkit "${tool_files[@]}"
depends "$lib_package" "${lib_depends[@]}"
depends liblockkit-dev "${dev_depends[@]}"
depends lockkit "${tool_depends[@]}"
# The runtime package holds no headers or links, the tool package no libraries.
if dpkg-deb -c "$(deb "$lib_package")" | grep -Eq '/include/|\.so$|\.a$'; then
  echo "deb_test: $lib_package contains development files" >&2
  fail=1
fi

# Unpack all three into a temporary root and run the tool from there.
for pkg in "$lib_package" liblockkit-dev lockkit; do dpkg -x "$(deb "$pkg")" "$tmp/root"; done
libdir=$(dirname "$(find "$tmp/root" -name "liblockkit.so.$soversion")")
out=$(LD_LIBRARY_PATH=$libdir "$tmp/root/usr/bin/lockkit" --version)
echo "unpacked: lockkit --version: $out"
[ "$out" = "lockkit $version" ] || { echo "deb_test: unexpected --version output" >&2; fail=1; }
if LD_LIBRARY_PATH=$libdir ldd "$tmp/root/usr/bin/lockkit" | grep -q 'not found'; then
  echo "deb_test: unpacked lockkit misses a library" >&2
  fail=1
fi
if [[ " $components " == *" sqlite "* ]]; then
  LD_LIBRARY_PATH=$libdir "$tmp/root/usr/bin/lockkit" list --backend "sqlite://$tmp/l.db" >/dev/null \
    || { echo "deb_test: unpacked lockkit cannot open sqlite://" >&2; fail=1; }
fi
# The unpacked tool finds its modules next to itself: nothing listens on port 1, so a loaded
# module reports the store unavailable (69) where a missing one would be 69 naming the module.
for c in $modules; do
  case $c in
    redis) url=redis://127.0.0.1:1 ;;
    postgres) url=postgres://lockkit@127.0.0.1:1/lockkit ;;
    *) continue ;;
  esac
  set +e
  err=$(LD_LIBRARY_PATH=$libdir "$tmp/root/usr/bin/lockkit" status --key k --backend "$url" 2>&1)
  status=$?
  set -e
  echo "unpacked: lockkit status --backend $url: $status $err"
  if [ "$status" -ne 69 ] || grep -q 'module' <<<"$err"; then
    echo "deb_test: unpacked lockkit cannot load its $c module" >&2
    fail=1
  fi
done
exit $fail
