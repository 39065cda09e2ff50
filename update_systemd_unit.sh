#!/usr/bin/env bash
# update_systemd_unit.sh: the deploy entry point a CI job runs on the server (see --help).
set -euo pipefail

PROG=${0##*/}

usage() {
  cat <<EOF
Usage: $PROG SERVICE [--repo DIR] [--rev REV] [--ready-url URL] [options] [-- APPLY-OPTIONS]

Bring SERVICE's unit up to date and deploy with a guarded apply:
  1. take the installed unit (systemctl show -p FragmentPath) or --unit-file FILE,
  2. rewrite a copy of it with 'unitctl rewrite': drop Gunicorn's --preload, set --workers,
     change nothing else,
  3. run 'unitctl apply SERVICE --guarded --unit-file COPY ...': pre-import check in the
     service's environment, switch, readiness guard, automatic rollback.
unitctl's exit code is this script's exit code:
  0 deployed (or nothing to do)  2 usage error  3 refused, nothing changed
  4 the release failed, rolled back, previous release healthy  5 rollback failed: a human is needed

Options:
  --repo DIR           the app's git checkout on this server (its revision is deployed)
  --rev REV            deploy exactly this revision (a commit hash, e.g. \${{ github.sha }}) [HEAD]
  --fetch              'git fetch --tags REMOTE' in --repo first, so --rev is present
                       (run by 'unitctl fetch': git runs as the checkout's owner, no hooks)
  --remote NAME        the remote --fetch uses [origin]
  --ready-url URL      readiness URL the guard polls, e.g. http://127.0.0.1:8000/health/ready
  --ready-timeout S    seconds to wait for readiness [unitctl's default: 60]
  --workers N|auto     set Gunicorn's worker count (auto: 2 x CPUs + 1) [keep the unit's]
  --keep-preload       do not drop --preload (see docs/preload.md: the trade-off)
  --unit-file FILE     start from this unit instead of the installed one (first deploy)
                       (a NAME.socket beside the unit, as 'unitctl render -o' writes it, goes with it:
                       installed on a first deploy, left alone when unchanged)
  --unitctl PATH       the unitctl to run [\$UNITCTL, else unitctl on PATH]
  --summary-stdout     for a job that runs this over SSH: report as in GitHub Actions
                       (annotations on stderr with all other output) and print the Markdown
                       step summary on stdout:  ssh HOST $PROG ... >> "\$GITHUB_STEP_SUMMARY"
  -h, --help           show this help
Other options go to 'unitctl apply' unchanged: flags (--dry-run, --json) as they are,
options with a value as --opt=VALUE, or anything after '--'.
When GITHUB_ACTIONS=true, unitctl writes ::error:: annotations and appends a summary to
\$GITHUB_STEP_SUMMARY.
EOF
}

# Workflow-command escaping (the runner's rules): % CR LF in messages.
gh_escape() {
  local s=$1
  s=${s//'%'/%25}
  s=${s//$'\r'/%0D}
  s=${s//$'\n'/%0A}
  printf '%s' "$s"
}

die() {
  local code=$1
  shift
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  if [ "${GITHUB_ACTIONS:-}" = "true" ]; then
    printf '::error title=%s::%s\n' "$PROG" "$(gh_escape "$*")" >&2
  fi
  exit "$code"
}

# A failure of this script's own steps (rewrite, fetch): one line, plus the annotation and a summary
# line in GitHub Actions, since unitctl apply never ran to report it.
report_failure() {
  printf '%s: error: %s\n' "$PROG" "$1" >&2
  if [ "${GITHUB_ACTIONS:-}" = "true" ]; then
    printf '::error title=%s::%s\n' "$PROG" "$(gh_escape "$1")" >&2
    if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
      printf '### ❌ %s %s: %s\n\n' "$PROG" "$unit" "$1" >>"$GITHUB_STEP_SUMMARY" || true
    fi
  fi
}

need_value() {
  # $1 option name, $2 number of remaining arguments including the option, $3 the next argument
  if [ "$2" -lt 2 ] || [[ ${3:-} == --* ]]; then
    die 2 "$1 needs a value; see '$PROG --help'"
  fi
}

service=""
repo=""
rev=""
fetch=0
remote="origin"
ready_url=""
ready_timeout=""
workers=""
keep_preload=0
unit_file=""
unitctl_bin="${UNITCTL:-}"
summary_stdout=0
apply_args=()

while [ "$#" -gt 0 ]; do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --repo | --rev | --remote | --ready-url | --ready-timeout | --workers | --unit-file | --unitctl)
      need_value "$1" "$#" "${2:-}"
      opt=$1
      val=$2
      shift 2
      ;;
    --repo=* | --rev=* | --remote=* | --ready-url=* | --ready-timeout=* | --workers=* | --unit-file=* | --unitctl=*)
      opt=${1%%=*}
      val=${1#*=}
      shift
      ;;
    --fetch)
      fetch=1
      shift
      continue
      ;;
    --keep-preload)
      keep_preload=1
      shift
      continue
      ;;
    --summary-stdout)
      summary_stdout=1
      shift
      continue
      ;;
    --)
      shift
      apply_args+=("$@")
      break
      ;;
    -*)
      apply_args+=("$1")
      shift
      continue
      ;;
    *)
      if [ -n "$service" ]; then
        die 2 "unexpected argument '$1' (the service is '$service'); give apply options a value as --opt=VALUE or after '--'"
      fi
      service=$1
      shift
      continue
      ;;
  esac
  case $opt in
    --repo) repo=$val ;;
    --rev) rev=$val ;;
    --remote) remote=$val ;;
    --ready-url) ready_url=$val ;;
    --ready-timeout) ready_timeout=$val ;;
    --workers) workers=$val ;;
    --unit-file) unit_file=$val ;;
    --unitctl) unitctl_bin=$val ;;
  esac
done

# -- validate everything before touching anything ------------------------------------------------

if [ "$summary_stdout" = 1 ]; then
  export GITHUB_ACTIONS=true # our own errors become annotations too
fi

[ -n "$service" ] || die 2 "no SERVICE given; usage: $PROG SERVICE [--repo DIR] [--rev REV] [--ready-url URL] (see --help)"
name=${service%.service}
if ! [[ $name =~ ^[A-Za-z0-9_.:@-]+$ ]] || [[ $name == -* ]]; then
  die 2 "'$service' is not a service name; pass e.g. myapp or myapp.service"
fi
unit="$name.service"

if [ -n "$workers" ] && ! [[ $workers =~ ^(auto|[1-9][0-9]{0,3})$ ]]; then
  die 2 "--workers must be a positive number or 'auto', not '$workers'"
fi
if [ -n "$ready_timeout" ] && ! [[ $ready_timeout =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
  die 2 "--ready-timeout must be a number of seconds, not '$ready_timeout'"
fi
if [ -n "$repo" ] && [ ! -d "$repo" ]; then
  die 2 "--repo $repo: no such directory; pass the app's git checkout on this server"
fi
if [ -n "$rev" ] && [ -z "$repo" ]; then
  die 2 "--rev needs --repo DIR (the checkout to switch)"
fi
if [ "$fetch" = 1 ] && [ -z "$repo" ]; then
  die 2 "--fetch needs --repo DIR"
fi
if [ -n "$rev" ] && [[ $rev == -* ]]; then
  die 2 "--rev '$rev' is not a revision"
fi
if [[ $remote == -* ]] || [ -z "$remote" ]; then
  die 2 "--remote '$remote' is not a remote name"
fi
if [ -n "$unit_file" ] && [ ! -f "$unit_file" ]; then
  die 2 "--unit-file $unit_file: no such file"
fi

if [ -z "$unitctl_bin" ]; then
  unitctl_bin=$(command -v unitctl || true)
fi
if [ -z "$unitctl_bin" ] || [ ! -x "$unitctl_bin" ] || [ -d "$unitctl_bin" ]; then
  where=""
  [ -z "$unitctl_bin" ] || where=" at $unitctl_bin"
  die 2 "unitctl not found$where; install it (scripts/install-server.sh) or pass --unitctl PATH"
fi

# -- 1. the unit to start from -------------------------------------------------------------------

if [ -z "$unit_file" ]; then
  command -v systemctl >/dev/null 2>&1 || die 2 "systemctl not found: this script runs on the systemd host"
  load_state=$(systemctl show --property=LoadState --value -- "$unit" 2>/dev/null || true)
  unit_file=$(systemctl show --property=FragmentPath --value -- "$unit" 2>/dev/null || true)
  if [ "$load_state" != "loaded" ] || [ -z "$unit_file" ]; then
    die 3 "$unit is not installed (LoadState=${load_state:-unknown}); install it first or pass --unit-file FILE"
  fi
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/update_systemd_unit.XXXXXX")
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() { rm -rf -- "$workdir"; }
trap cleanup EXIT

# Same name as the unit: unitctl verifies the candidate as that unit.
candidate="$workdir/$unit"
cp -- "$unit_file" "$candidate"
# A socket-activated service: the NAME.socket beside the unit travels with it. unitctl installs it on a first
# deploy and leaves an installed socket alone when it is unchanged (its listening fd stays open).
socket_unit="$(dirname -- "$unit_file")/${unit%.service}.socket"
if [ -f "$socket_unit" ]; then
  cp -- "$socket_unit" "$workdir/${unit%.service}.socket"
fi

if [ "$summary_stdout" = 1 ]; then
  export GITHUB_STEP_SUMMARY="$workdir/summary.md"
  : >"$GITHUB_STEP_SUMMARY"
  exec 3>&1 1>&2 # everything to stderr; fd 3 keeps stdout for the summary
fi

# -- 2. rewrite the copy -------------------------------------------------------------------------

rewrite_args=()
# --strict: a gunicorn.conf.py that sets preload_app keeps preload on whatever the unit says: refuse the deploy.
[ "$keep_preload" = 1 ] || rewrite_args+=(--no-preload --strict)
[ -z "$workers" ] || rewrite_args+=(--workers "$workers")
rc=0
if [ "${#rewrite_args[@]}" -gt 0 ]; then
  echo "$PROG: rewriting $unit (from $unit_file): ${rewrite_args[*]}" >&2
  "$unitctl_bin" rewrite "$candidate" "${rewrite_args[@]}" --in-place || rc=$?
  if [ "$rc" != 0 ]; then
    report_failure "unitctl rewrite of $unit exited $rc (see above); nothing was changed"
  fi
fi

# -- 3. fetch, then the guarded apply ------------------------------------------------------------

# unitctl runs git as the checkout's owner with hooks and fsmonitor off (SECURITY.md): the script never
# runs git as root itself.
if [ "$rc" = 0 ] && [ "$fetch" = 1 ]; then
  echo "$PROG: git fetch --tags $remote in $repo (as the checkout's owner)" >&2
  "$unitctl_bin" fetch "$repo" --remote "$remote" >&2 || rc=$?
  if [ "$rc" != 0 ]; then
    report_failure "git fetch from $remote in $repo failed (see above); nothing was changed"
  fi
fi

if [ "$rc" = 0 ]; then
  cmd=("$unitctl_bin" apply "$name" --guarded --unit-file "$candidate")
  [ -z "$repo" ] || cmd+=(--repo "$repo")
  [ -z "$rev" ] || cmd+=(--rev "$rev")
  [ -z "$ready_url" ] || cmd+=(--ready-url "$ready_url")
  [ -z "$ready_timeout" ] || cmd+=(--ready-timeout "$ready_timeout")
  cmd+=("${apply_args[@]}")
  echo "$PROG: unitctl apply $name${rev:+ --rev $rev}" >&2
  "${cmd[@]}" || rc=$?
fi

if [ "$summary_stdout" = 1 ]; then
  cat -- "$GITHUB_STEP_SUMMARY" >&3
fi
exit "$rc"
