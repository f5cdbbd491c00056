#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every relative link in README.md and docs/*.md names a file that exists, and every #anchor
# names a heading of that file (GitHub's slugs: lower case, punctuation dropped, spaces -> -).
#   links_test.sh <source dir>
set -euo pipefail
cd "$1"
slugs() {
  grep -E '^#{1,6} ' "$1" | sed -E 's/^#+ +//' | tr 'A-Z' 'a-z' |
    sed -E 's/[^a-z0-9 _-]//g; s/ /-/g'
}
fail=0
checked=0
for doc in README.md docs/*.md; do
  dir=$(dirname "$doc")
  while IFS= read -r link; do
    target=${link%%#*}
    anchor=
    [[ $link == *"#"* ]] && anchor=${link#*#}
    file=$doc
    [ -n "$target" ] && file=$dir/$target
    checked=$((checked + 1))
    if [ ! -e "$file" ]; then
      echo "links_test: $doc links to $link: $file does not exist" >&2
      fail=1
    elif [ -n "$anchor" ] && ! slugs "$file" | grep -qxF -- "$anchor"; then
      echo "links_test: $doc links to $link: no such heading in $file" >&2
      fail=1
    fi
  done < <(grep -oE '\]\([^)[:space:]]+\)' "$doc" | sed -E 's/^\]\(//; s/\)$//' |
             grep -vE '^[a-z]+:' || true)
done
echo "links_test: $checked links checked"
exit $fail
