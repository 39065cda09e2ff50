#!/usr/bin/env bash
# Install unitctl on a server, for root, in a virtual environment of its own (Debian 12 refuses a root
# 'pip install' into the system Python, PEP 668):
#   /opt/unitctl/venvs/<version>-<time>/   the venv, with unitctl[dbus] when libsystemd can be built against
#   /opt/unitctl/current                  -> that venv, switched atomically once the new one works
#   /usr/local/bin/unitctl                -> /opt/unitctl/current/bin/unitctl          (sudo's secure_path finds it)
#   /usr/local/sbin/update_systemd_unit.sh -> /opt/unitctl/current/share/unitctl/update_systemd_unit.sh
# A failed install or upgrade leaves the previous one in place; the two newest venvs are kept.
#
#   bash scripts/install-server.sh --wheel dist/unitctl-VERSION-py3-none-any.whl [--find-links DIR] [--offline]
#                                  [--prefix /opt/unitctl] [--no-dbus] [--python PYTHON]
set -euo pipefail

die() { echo "install-server: error: $2" >&2; exit "$1"; }
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

wheel="" find_links="" offline=0 prefix=/opt/unitctl dbus=auto python=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case $1 in
    --wheel) [ $# -ge 2 ] || die 2 "--wheel needs a FILE"; wheel=$2; shift 2 ;;
    --wheel=*) wheel=${1#*=}; shift ;;
    --find-links) [ $# -ge 2 ] || die 2 "--find-links needs a DIR"; find_links=$2; shift 2 ;;
    --find-links=*) find_links=${1#*=}; shift ;;
    --offline) offline=1; shift ;;
    --prefix) [ $# -ge 2 ] || die 2 "--prefix needs a DIR"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --no-dbus) dbus=no; shift ;;
    --python) [ $# -ge 2 ] || die 2 "--python needs a PYTHON"; python=$2; shift 2 ;;
    --python=*) python=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die 2 "unknown argument '$1'; see --help" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die 2 "run as root: unitctl is installed for root into $prefix and /usr/local"
if [ -z "$wheel" ]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  wheel=$(printf '%s\n' "$here"/dist/unitctl-*.whl | sort -V | tail -n 1)
  [ -e "$wheel" ] || wheel=""
  [ -n "$wheel" ] || die 2 "no wheel given and none in $here/dist; build one with 'bash scripts/build.sh' or pass --wheel FILE"
fi
[ -f "$wheel" ] || die 2 "$wheel: no such wheel; build one with 'bash scripts/build.sh'"
case $wheel in *.whl) ;; *) die 2 "$wheel is not a wheel (*.whl)" ;; esac
wheel=$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")
[ -z "$find_links" ] || [ -d "$find_links" ] || die 2 "--find-links $find_links: no such directory"
[ "$offline" -eq 0 ] || [ -n "$find_links" ] || die 2 "--offline needs --find-links DIR with every dependency's wheel"

command -v "$python" >/dev/null 2>&1 || die 3 "$python not found; install Python >= 3.11 (apt-get install python3 python3-venv)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die 3 "$python is older than 3.11; pass --python PYTHON"
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  die 3 "$python cannot create virtual environments; install python3-venv (apt-get install python3-venv)"
fi

if [ "$dbus" = auto ]; then
  # pystemd has no wheels: it builds against libsystemd-dev with pkg-config and a C compiler (and Python's headers).
  if pkg-config --exists libsystemd 2>/dev/null && command -v cc >/dev/null 2>&1; then dbus=yes; else dbus=no; fi
fi

version=$(basename "$wheel" | cut -d- -f2)
venv="$prefix/venvs/$version-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$prefix/venvs"
chmod 0755 "$prefix" "$prefix/venvs"
trap 'rm -rf "$venv"' ERR
echo "== creating $venv"
"$python" -m venv "$venv"
pip_args=(--quiet --disable-pip-version-check)
[ -z "$find_links" ] || pip_args+=(--find-links "$find_links")
[ "$offline" -eq 0 ] || pip_args+=(--no-index)
installed=""
if [ "$dbus" = yes ]; then
  echo "== installing $(basename "$wheel") with the dbus extra (pystemd)"
  if "$venv/bin/pip" install "${pip_args[@]}" "${wheel}[dbus]"; then
    installed=dbus
  else
    echo "install-server: warning: pystemd did not build; installing without it (unitctl then drives systemd through systemctl, same behaviour)" >&2
  fi
fi
if [ -z "$installed" ]; then
  echo "== installing $(basename "$wheel")"
  "$venv/bin/pip" install "${pip_args[@]}" "$wheel"
  installed=plain
fi
"$venv/bin/unitctl" --version >/dev/null || die 3 "the new unitctl in $venv does not run; the previous install is untouched"
chmod 0755 "$venv/share/unitctl/update_systemd_unit.sh"
trap - ERR

# Switch atomically: a rename over the old link, never a moment without unitctl.
ln -sfn "$venv" "$prefix/current.new"
mv -T "$prefix/current.new" "$prefix/current"
mkdir -p /usr/local/bin /usr/local/sbin
ln -sfn "$prefix/current/bin/unitctl" /usr/local/bin/unitctl
ln -sfn "$prefix/current/share/unitctl/update_systemd_unit.sh" /usr/local/sbin/update_systemd_unit.sh
# Keep the two newest venvs (the current one and the one before it, for a quick manual switch back).
current=$(readlink -f "$prefix/current")
printf '%s\n' "$prefix"/venvs/*/ | sort -r | tail -n +3 | while read -r old; do
  [ "$(readlink -f "$old")" = "$current" ] || rm -rf "$old"
done
echo "unitctl $("$venv/bin/unitctl" --version | cut -d' ' -f2) installed in $venv ($installed); /usr/local/bin/unitctl, /usr/local/sbin/update_systemd_unit.sh"
