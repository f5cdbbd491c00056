#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The bash completion is installed, registers for `lockkit`, completes subcommands and options,
# and knows every subcommand and every option that `lockkit [SUBCOMMAND] --help` documents.
#   completion_test.sh <build-dir> <lockkit binary>
set -euo pipefail
build=$1 lockkit=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" --component Tool >/dev/null
file=$tmp/prefix/share/bash-completion/completions/lockkit
[ -s "$file" ] || { echo "completion_test: $file not installed" >&2; exit 1; }

# complete <words...>: what bash would offer for the last word.
complete_words() {
  bash --norc --noprofile -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
    _lockkit lockkit "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    [ ${#COMPREPLY[@]} -eq 0 ] || printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' _ "$file" "$@"
}
fail=0
expect() {  # expect "<expected>" <words...>
  local want=$1 got
  shift
  got=$(complete_words "$@")
  if [ "$got" != "$want" ]; then
    echo "completion_test: [$*] offered '$got', expected '$want'" >&2
    fail=1
  else
    echo "[$*] -> $got"
  fi
}
registered=$(bash --norc --noprofile -c 'source "$1" && complete -p lockkit' _ "$file")
echo "$registered"
[ "$registered" = "complete -F _lockkit lockkit" ] || { echo "completion_test: not registered" >&2; fail=1; }
expect "release run " lockkit r
expect "--ttl " lockkit run --tt
expect "--json " lockkit status --key k --js
expect "redis:// rediss:// redlock:// " lockkit run --backend red
expect "rediss:// " lockkit run --backend rediss
expect "" lockkit run --ttl ""

# Every subcommand in the synopsis, and every option in each subcommand's help, is offered.
help_options() {  # the option column of `lockkit [sub] --help`
  "$lockkit" "$@" --help | awk '/^ +-/ { sub(/^ +/, ""); split($0, cols, "  "); print cols[1] }' |
    grep -oE -- '(^|[ ,])--?[a-zA-Z][a-zA-Z-]*' | tr -d ' ,' | sort -u
}
subcommands=$("$lockkit" --help | sed -n 's/^  lockkit \([a-z][a-z]*\)  *[[-].*/\1/p' | sort -u)
offered=" $(complete_words lockkit "")"
for sub in $subcommands; do
  if [[ $offered != *" $sub "* ]]; then
    echo "completion_test: subcommand $sub is not offered" >&2
    fail=1
  fi
  offered_opts=" $(complete_words lockkit "$sub" -)"
  for opt in $(help_options "$sub"); do
    if [[ $offered_opts != *" $opt "* ]]; then
      echo "completion_test: lockkit $sub: option $opt is not offered" >&2
      fail=1
    fi
  done
done
echo "subcommands checked: ${subcommands//$'\n'/ }"
exit $fail
