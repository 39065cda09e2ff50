#!/usr/bin/env bash
# Many servers, end to end, on a fresh Debian 12 machine as root: installs what it needs, boots three throwaway
# systemd hosts, installs unitctl on them with the Ansible role, and rolls the example app's releases out with the
# real ansible-playbook (ansible/playbooks/rolling-deploy.yml), one host at a time: good releases reach all three,
# a release that fails readiness is rolled back on the first host and stops the rollout, a release refused by the
# import check changes nothing anywhere. Prints a table release x host -> exit code, outcome, release served after;
# exits 0 only if every host did what it should. Options go to 'python -m unitctl.fleetdemo' (--ready-timeout S).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh
exec "$VENV/bin/python" -m unitctl.fleetdemo "$@"
