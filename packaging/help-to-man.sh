#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Writes a man page from `lockkit [SUBCOMMAND] --help`, so the page and --help never disagree.
# The help is laid out GNU-style: "Usage: ..." (and "  or: ..." lines) become SYNOPSIS, the
# one-line summary after them NAME, the paragraphs up to the first "Heading:" DESCRIPTION, and
# each "Heading:" at column 0 a section of its own (EXIT STATUS, EXAMPLES, ...), its lines kept
# as they are.
#   help-to-man.sh <lockkit binary> <version> <output.1> [SUBCOMMAND]
set -euo pipefail
bin=$1 version=$2 out=$3 sub=${4:-}
title=lockkit${sub:+-$sub}
help=$("$bin" ${sub:+"$sub"} --help)
{
  printf '.TH %s 1 "" "lockkit %s" "User Commands"\n' "$(tr a-z- A-Z- <<<"$title")" "$version"
  printf '.nh\n'  # no hyphenation: names and options stay whole
  awk -v title="$title" '
    function roff(s) {
      gsub(/\\/, "\\e", s)
      gsub(/-/, "\\-", s)
      sub(/^[.\x27]/, "\\\\&&", s)
      return s
    }
    function body(line) {
      if (!open) { print ".nf"; open = 1 }
      sub(/^  /, "", line)
      print (line == "" ? "" : roff(line))
    }
    function heading(name) {
      if (open) print ".fi"
      open = 0
      print ".SH \"" toupper(name) "\""
    }
    NR == 1 && /^Usage: / { usage[n++] = substr($0, 8); state = "usage"; next }
    state == "usage" && /^  or: / { line = $0; sub(/^  or: +/, "", line); usage[n++] = line; next }
    state == "usage" {
      # The summary line: "lockkit-run \- Run a command ...", the name mandb indexes.
      print ".SH NAME"
      summary = $0
      sub(/\.$/, "", summary)
      print roff(title) " \\- " roff(summary)
      heading("SYNOPSIS")
      for (i = 0; i < n; i++) body(usage[i])
      heading("DESCRIPTION")
      state = "description"
      next
    }
    # The description is prose: filled by man, a blank line starts a new paragraph.
    state == "description" && !/^[A-Z][A-Za-z0-9 ]*:$/ {
      if ($0 ~ /^[[:space:]]*$/) { if (started) para = 1; next }
      if (para) { print ".PP"; para = 0 }
      started = 1
      print roff($0)
      next
    }
    /^[A-Z][A-Za-z0-9 ]*:$/ { state = "sections"; heading(substr($0, 1, length($0) - 1)); next }
    { if (!(open == 0 && $0 ~ /^[[:space:]]*$/)) body($0) }
    END { if (open) print ".fi" }
' <<<"$help"
  # The pages refer to each other (unless the help has its own SEE ALSO).
  if ! grep -q '^See also:$' <<<"$help"; then
    if [ -n "$sub" ]; then
      see=(lockkit)
    else
      mapfile -t see < <(sed -n '/^Subcommands:$/,/^$/s/^  \([a-z][a-z]*\)  .*/lockkit-\1/p' <<<"$help")
    fi
    printf '.SH "SEE ALSO"\n'
    for ((i = 0; i < ${#see[@]}; i++)); do
      printf '.BR %s (1)%s\n' "${see[i]//-/\\-}" "$( ((i + 1 < ${#see[@]})) && echo , )"
    done
  fi
} > "$out.tmp"
mv "$out.tmp" "$out"
