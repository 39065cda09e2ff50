#!/usr/bin/env bash
# Build what a server installs: the wheel and the sdist, into dist/ (or the directory given).
#   bash scripts/build.sh [OUTDIR]
# Then, on the server: bash scripts/install-server.sh --wheel dist/unitctl-*.whl (see docs/install.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh
out=${1:-dist}
mkdir -p "$out"
rm -f "$out"/unitctl-*.whl "$out"/unitctl-*.tar.gz
"$VENV/bin/python" -m build --outdir "$out" . >"$out/build.log" 2>&1 || { cat "$out/build.log" >&2; exit 1; }
ls -1 "$out"/unitctl-*
