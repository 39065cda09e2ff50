#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian 12 machine as root: installs what it needs, then boots a
# throwaway systemd, deploys the example app's releases with update_systemd_unit.sh (good, good, broken
# import, database down) and prints what each did. Exit 0 only if every step behaved as expected.
# Options go to 'python -m unitctl.demo' (--ready-timeout S, --workers N).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh
exec "$VENV/bin/python" -m unitctl.demo "$@"
