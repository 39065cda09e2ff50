#!/usr/bin/env bash
# update_systemd_unit.sh: the deploy entry point a CI job runs on the server. 'unitctl deploy' does the work
# (rewrite a copy of the unit, fetch, guarded apply, annotations and summary); this finds unitctl and runs it:
#   update_systemd_unit.sh [--unitctl PATH] SERVICE [--repo DIR] [--rev REV] [options] [-- APPLY-OPTIONS]
# unitctl is --unitctl PATH, else $UNITCTL, else unitctl on PATH. Every other argument goes to 'unitctl deploy'
# unchanged, and its exit code is this script's: 0 deployed (or nothing to do), 2 usage error, 3 refused
# (nothing changed), 4 the release failed and was rolled back, 5 rollback failed: a human is needed.
set -euo pipefail

PROG=${0##*/}

# Workflow-command escaping (the runner's rules): % CR LF in messages.
gh_escape() {
  local s=$1
  s=${s//'%'/%25}
  s=${s//$'\r'/%0D}
  s=${s//$'\n'/%0A}
  printf '%s' "$s"
}

# The script's own errors (unitctl not found): one line, and an annotation in GitHub Actions.
die() {
  printf '%s: error: %s\n' "$PROG" "$1" >&2
  if [ "${GITHUB_ACTIONS:-}" = "true" ] || [ "$summary_stdout" = 1 ]; then
    printf '::error title=%s::%s\n' "$PROG" "$(gh_escape "$1")" >&2
  fi
  exit 2
}

unitctl_bin=${UNITCTL:-}
summary_stdout=0
help=0
args=()
while [ "$#" -gt 0 ]; do
  case $1 in
    --unitctl)
      if [ "$#" -lt 2 ] || [[ $2 == --* ]]; then
        die "--unitctl needs a value; see '$PROG --help'"
      fi
      unitctl_bin=$2
      shift 2
      ;;
    --unitctl=*)
      unitctl_bin=${1#*=}
      shift
      ;;
    --)
      args+=("$@") # the apply options, '--' included, for unitctl deploy
      break
      ;;
    *)
      case $1 in
        -h | --help) help=1 ;;
        --summary-stdout) summary_stdout=1 ;;
      esac
      args+=("$1")
      shift
      ;;
  esac
done

if [ -z "$unitctl_bin" ]; then
  unitctl_bin=$(command -v unitctl || true)
fi
if [ "$help" = 1 ]; then
  printf 'Usage: %s [--unitctl PATH] SERVICE [OPTIONS] [-- APPLY-OPTIONS]\n\n' "$PROG"
  printf '  Runs unitctl deploy (--unitctl PATH, else %s, else unitctl on PATH) with the other arguments:\n\n' "\$UNITCTL"
fi
if [ -z "$unitctl_bin" ] || [ ! -x "$unitctl_bin" ] || [ -d "$unitctl_bin" ]; then
  where=""
  [ -z "$unitctl_bin" ] || where=" at $unitctl_bin"
  die "unitctl not found$where; install it (scripts/install-server.sh) or pass --unitctl PATH"
fi
exec "$unitctl_bin" deploy "${args[@]}"
