#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run ruff, mypy and the whole pytest suite.
# Real-systemd tests boot a systemd-nspawn sandbox: run as root. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh

echo "== ruff"
"$VENV/bin/ruff" check src tests scripts ansible
"$VENV/bin/ruff" format --check src tests scripts ansible
echo "== mypy"
"$VENV/bin/mypy"
echo "== pytest"
exec "$VENV/bin/pytest" "$@"
