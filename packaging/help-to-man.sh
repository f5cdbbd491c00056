#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Writes a man page from `lockkit [SUBCOMMAND] --help`, so the page and --help never disagree.
# The help text is already laid out like a man page (NAME, SYNOPSIS, ... headings in capitals,
# content indented by two spaces); each section becomes .SH plus its lines kept as they are.
#   help-to-man.sh <lockkit binary> <version> <output.1> [SUBCOMMAND]
set -euo pipefail
bin=$1 version=$2 out=$3 sub=${4:-}
title=lockkit${sub:+-$sub}
help=$("$bin" ${sub:+"$sub"} --help)
{
  printf '.TH %s 1 "" "lockkit %s" "User Commands"\n' "$(tr a-z- A-Z- <<<"$title")" "$version"
  printf '.nh\n'  # no hyphenation: names and options stay whole
  awk -v title="$title" -v sub_="$sub" '
    function roff(s) {
      gsub(/\\/, "\\e", s)
      gsub(/-/, "\\-", s)
      sub(/^[.\x27]/, "\\\\&&", s)
      return s
    }
    /^[A-Z][A-Z0-9 ]*$/ {
      if (open) print ".fi"
      print ".SH \"" $0 "\""
      section = $0; open = 0; next
    }
    section == "NAME" {
      if ($0 ~ /^[[:space:]]*$/) next
      line = $0
      sub(/^[[:space:]]+/, "", line)
      # "lockkit run - text" -> "lockkit-run \- text": the name mandb indexes.
      if (sub_ != "") sub("^lockkit " sub_, title, line)
      dash = index(line, " - ")
      print roff(substr(line, 1, dash - 1)) " \\- " roff(substr(line, dash + 3))
      next
    }
    {
      if (!open) { print ".nf"; open = 1 }
      line = $0
      sub(/^  /, "", line)
      print (line == "" ? "" : roff(line))
    }
    END { if (open) print ".fi" }
  ' <<<"$help"
  # The pages refer to each other (unless the help has its own SEE ALSO).
  if ! grep -q '^SEE ALSO$' <<<"$help"; then
    if [ -n "$sub" ]; then
      see=(lockkit)
    else
      mapfile -t see < <(sed -n 's/^  lockkit \([a-z][a-z]*\)  *[[-].*/lockkit-\1/p' <<<"$help")
    fi
    printf '.SH "SEE ALSO"\n'
    for ((i = 0; i < ${#see[@]}; i++)); do
      printf '.BR %s (1)%s\n' "${see[i]//-/\\-}" "$( ((i + 1 < ${#see[@]})) && echo , )"
    done
  fi
} > "$out.tmp"
mv "$out.tmp" "$out"
