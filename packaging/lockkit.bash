# SPDX-License-Identifier: MIT
# bash completion for lockkit(1): subcommands, their options, backend URL schemes, and after
# `lockkit run ... --` the command to run. Installed as
# share/bash-completion/completions/lockkit; `source` it to try it by hand.

# Options per subcommand: extend these lists when the tool gains an option.
_lockkit_subcommands="run acquire release extend status list help"
_lockkit_opts_global="--help -h --version -V"
_lockkit_opts_key="--key -k --key-hex --backend -b --help -h"
_lockkit_opts_run="$_lockkit_opts_key --ttl -t --wait -w --no-renew --max-hold --conflict-exit-code"
_lockkit_opts_acquire="$_lockkit_opts_key --ttl -t --wait -w --json --token-file"
_lockkit_opts_release="$_lockkit_opts_key --token --token-file"
_lockkit_opts_extend="$_lockkit_opts_key --token --token-file --ttl -t --json"
_lockkit_opts_status="$_lockkit_opts_key --json"
_lockkit_opts_list="--prefix --prefix-hex --json --backend -b --help -h"
# Options whose next word is a value (not completed as an option or subcommand).
_lockkit_opts_with_value="--key -k --key-hex --ttl -t --wait -w --backend -b --token
  --token-file --prefix --prefix-hex --conflict-exit-code --max-hold"
# The build replaces this list with the schemes of the backends it built (packaging/CMakeLists.txt).
_lockkit_schemes="sqlite:// redis:// rediss:// redlock:// postgres:// postgresql:// memory: noop: noop:locked"

_lockkit() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=""
  ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
  COMPREPLY=()

  # The subcommand is the first word that is not an option.
  local i sub="" sub_at=0
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      -*) ;;
      *) sub=${COMP_WORDS[i]} sub_at=$i; break ;;
    esac
  done

  # `lockkit run [options] -- CMD ...`: complete CMD and its arguments like a command line.
  if [[ $sub == run ]]; then
    for ((i = sub_at + 1; i < COMP_CWORD; i++)); do
      if [[ ${COMP_WORDS[i]} == -- ]]; then
        if declare -F _command_offset >/dev/null; then
          _command_offset $((i + 1))
        else
          mapfile -t COMPREPLY < <(compgen -c -- "$cur" | sort -u)
        fi
        return 0
      fi
    done
  fi

  case $prev in
    --backend | -b)
      mapfile -t COMPREPLY < <(compgen -W "$_lockkit_schemes" -- "$cur")
      compopt -o nospace 2>/dev/null
      return 0
      ;;
    --token-file)
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      return 0
      ;;
    --wait | -w)
      mapfile -t COMPREPLY < <(compgen -W "forever" -- "$cur")
      return 0
      ;;
  esac
  local word
  for word in $_lockkit_opts_with_value; do
    [[ $prev == "$word" ]] && return 0
  done

  if [[ -z $sub ]]; then
    if [[ $cur == -* ]]; then
      mapfile -t COMPREPLY < <(compgen -W "$_lockkit_opts_global" -- "$cur")
    else
      mapfile -t COMPREPLY < <(compgen -W "$_lockkit_subcommands" -- "$cur")
    fi
    return 0
  fi
  if [[ $sub == help ]]; then
    ((COMP_CWORD == sub_at + 1)) &&
      mapfile -t COMPREPLY < <(compgen -W "${_lockkit_subcommands% help}" -- "$cur")
    return 0
  fi
  local opts_var=_lockkit_opts_$sub
  if [[ -n ${!opts_var+set} ]]; then
    local opts=${!opts_var}
    [[ $sub == run ]] && opts+=" --"
    mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
  fi
  return 0
}
complete -F _lockkit lockkit
