#!/usr/bin/python
# Copyright: unitctl developers
# MIT License (see LICENSE in the unitctl repository)
"""Run unitctl's guarded deploy on a host and report it in Ansible's terms (the mapping is pure: see interpret)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: apply
short_description: Deploy a revision of a Gunicorn app under systemd with unitctl's guarded apply
version_added: "0.1.0"
description:
  - Runs C(unitctl apply SERVICE --guarded --repo REPO --rev REV --ready-url URL --json) on the host (or
    C(unitctl deploy SERVICE --rev REV --json) with O(command=deploy), which takes the rest from
    C(/etc/unitctl/unitctl.toml)).
  - unitctl checks that the new code imports, switches, polls the readiness URL and rolls back by itself when the
    release does not become ready. This module reads its C(--json) result and maps it to Ansible's conventions.
  - Exit 0 with a switch is C(changed); nothing to do is C(ok); exit 3 (refused, nothing changed), 4 (rolled back,
    the previous release serves) and 5 (the rollback failed, a human is needed) fail the task with the message and
    the outcome. RV(rolled_back) and RV(needs_human) tell 4 from 5 without reading exit codes.
  - Check mode runs C(--dry-run) (capture and check, change nothing). Diff mode adds the unit's diff from
    C(unitctl diff), whose secret values unitctl masks, and the revision change.
  - Reads the C(--json) envelope (C(schema_version) 1) and the result object of unitctl releases before it.
author:
  - unitctl developers
requirements:
  - unitctl on the host (the C(unitctl.deploy.server) role installs it)
options:
  service:
    description: The systemd service, e.g. C(demoapp) or C(demoapp.service).
    type: str
    required: true
    aliases: [name]
  rev:
    description:
      - The git revision to deploy (a commit, a tag or a branch of O(repo)).
      - Pin a commit in CI so that every host gets the same release.
    type: str
    required: true
  command:
    description:
      - C(apply) runs C(unitctl apply --guarded) with the options of this task.
      - C(deploy) runs C(unitctl deploy), which reads repo, readiness URL and timeouts from the C([deploy]) table
        of C(/etc/unitctl/unitctl.toml) (the C(unitctl.deploy.server) role writes it); O(repo) and O(ready_url)
        are then optional overrides.
    type: str
    choices: [apply, deploy]
    default: apply
  repo:
    description: The app's git checkout on the host. Required with O(command=apply).
    type: path
  ready_url:
    description:
      - The readiness URL unitctl polls after the switch, on the host (C(http://127.0.0.1:8000/health/ready)).
      - Required with O(command=apply).
    type: str
  ready_timeout:
    description: Seconds to wait for readiness before the release is rolled back (unitctl's default when unset).
    type: float
  workers:
    description: Gunicorn workers, a number or C(auto); the installed unit is rewritten with it.
    type: str
  unit_file:
    description: A unit file on the host to install with the release (default keep the installed unit).
    type: path
  strategy:
    description: How unitctl switches (C(auto), C(restart), C(reload)); unitctl's default when unset.
    type: str
  fetch:
    description:
      - Run C(unitctl fetch REPO --remote REMOTE) first (git as the checkout's owner, no hooks) so that O(rev)
        is present.
      - Not in check mode, which changes nothing on the host, fetched refs included.
    type: bool
    default: false
  remote:
    description: The remote O(fetch) fetches.
    type: str
    default: origin
  extra_args:
    description: More C(unitctl apply) (or C(deploy)) options, one list item per word (no shell).
    type: list
    elements: str
    default: []
  unitctl_path:
    description: The unitctl program on the host; a bare name is looked up on PATH.
    type: str
    default: /usr/local/bin/unitctl
  chdir:
    description:
      - The directory unitctl runs in. C(unitctl apply) also reads C(./unitctl.toml); the default C(/) has none,
        so only this task's options count.
    type: path
    default: /
notes:
  - Supports check mode (C(--dry-run)) and diff mode.
  - A failed task carries RV(outcome) C(refused), C(rolled-back) or C(rollback-failed); stop the rollout on it
    (C(max_fail_percentage=0) with C(serial)), see the example playbook C(rolling-deploy.yml).
"""

EXAMPLES = r"""
- name: Deploy the pinned commit, guarded
  unitctl.deploy.apply:
    service: demoapp
    repo: /srv/demoapp/app
    rev: "{{ release_commit }}"
    ready_url: http://127.0.0.1:8000/health/ready
    ready_timeout: 60
    workers: auto
    fetch: true
  register: deploy

- name: Deploy with the server's settings from /etc/unitctl/unitctl.toml
  unitctl.deploy.apply:
    command: deploy
    service: demoapp
    rev: "{{ release_commit }}"

- name: Tell a rollback from a failed rollback
  ansible.builtin.debug:
    msg: "{{ 'a human is needed' if deploy.needs_human else 'the previous release serves' }}"
  when: deploy is failed
"""

RETURN = r"""
outcome:
  description:
    - What unitctl did, in the vocabulary of its C(--json) envelope.
    - C(deployed), C(nothing-to-do), C(changes-pending) (check mode), C(usage-error), C(refused), C(rolled-back),
      C(rollback-failed), or C(unknown) for an exit code unitctl does not document (state unknown).
  returned: always
  type: str
  sample: deployed
exit_code:
  description:
    - unitctl's exit code, the process's own (0 ok, 1 changes pending, 2 usage error, 3 refused, 4 rolled back,
      5 rollback failed; anything else is no unitctl outcome).
  returned: always
  type: int
  sample: 0
message:
  description: unitctl's one-line result (secrets masked by unitctl).
  returned: always
  type: str
  sample: "demoapp.service: deployed 3f2a9c1e (ready after 1.2 s)"
hint:
  description: What to do next, when unitctl says it (the part after C(;) of its error line).
  returned: always
  type: str
  sample: "run 'unitctl status demoapp' and 'unitctl history demoapp'"
rolled_back:
  description:
    - True when the release failed after the switch and unitctl brought the previous release back, healthy
      (exit 4).
  returned: always
  type: bool
needs_human:
  description:
    - True when the host's state is not known good and a person must look (exit 5, the rollback failed or could not
      be verified; or an exit code unitctl does not document). The host should stay out of the load balancer.
  returned: always
  type: bool
nothing_changed:
  description: True when unitctl changed nothing on the host (nothing to do, check mode, usage error, refused).
  returned: always
  type: bool
revision:
  description:
    - The revision serving after the attempt as unitctl recorded it (the new one; the previous one after a refusal
      or a rollback).
  returned: when unitctl recorded an attempt
  type: str
previous_revision:
  description: The revision that served before the attempt.
  returned: when unitctl recorded an attempt
  type: str
schema_version:
  description: The C(--json) envelope's schema version; null for a unitctl that prints its result object alone.
  returned: always
  type: int
result:
  description: unitctl's own result payload (the plan and the history record, secrets masked).
  returned: when unitctl printed one
  type: dict
cmd:
  description: The command line that ran.
  returned: always
  type: list
  elements: str
stderr:
  description: unitctl's progress lines and errors (secrets masked by unitctl).
  returned: always
  type: str
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule

# The documented exit codes (unitctl's README) and the envelope's outcome for each: the names a playbook sees.
OUTCOME_BY_EXIT = {
    0: "deployed",
    1: "changes-pending",
    2: "usage-error",
    3: "refused",
    4: "rolled-back",
    5: "rollback-failed",
}
# unitctl before the envelope printed its history record's outcome: the envelope's name for each.
_LEGACY_OUTCOMES = {"ok": "deployed", "would-change": "changes-pending"}
# Outcomes after which the host is as it was before the task.
_UNCHANGED = ("nothing-to-do", "changes-pending", "usage-error", "refused")
_SERVICE = re.compile(r"^[A-Za-z0-9_.:\\@-]+$")


# The task's parameters (DOCUMENTATION's options say the same; a unit test holds them equal).
ARGUMENT_SPEC = {
    "service": {"type": "str", "required": True, "aliases": ["name"]},
    "rev": {"type": "str", "required": True},
    "command": {"type": "str", "choices": ["apply", "deploy"], "default": "apply"},
    "repo": {"type": "path"},
    "ready_url": {"type": "str"},
    "ready_timeout": {"type": "float"},
    "workers": {"type": "str"},
    "unit_file": {"type": "path"},
    "strategy": {"type": "str"},
    "fetch": {"type": "bool", "default": False},
    "remote": {"type": "str", "default": "origin"},
    "extra_args": {"type": "list", "elements": "str", "default": []},
    "unitctl_path": {"type": "str", "default": "/usr/local/bin/unitctl"},
    "chdir": {"type": "path", "default": "/"},
}


def parse_report(rc, stdout, stderr=""):
    """Return unitctl's report (exit_code, outcome, message, hint, result, schema_version) from either shape."""
    data = _json_object(stdout)
    if data is not None and "schema_version" in data:
        outcome = data.get("outcome") if isinstance(data.get("outcome"), str) else None
        exit_code = data.get("exit_code")
        if not isinstance(exit_code, int) or isinstance(exit_code, bool) or exit_code != rc:
            # The process's code is the truth (the envelope promises they are equal), and so is its outcome.
            exit_code, outcome = rc, None
        result = data.get("result") if isinstance(data.get("result"), dict) else None
        return {
            "schema_version": data.get("schema_version"),
            "exit_code": exit_code,
            "outcome": outcome or OUTCOME_BY_EXIT.get(exit_code, "unknown"),
            "message": _text(data.get("message")) or _error_line(stderr)[0],
            "hint": _text(data.get("hint")) or None,
            "result": result,
        }
    # Before the envelope: the result object alone (or {"error": ...}); the exit code is the process's.
    legacy = data or {}
    outcome = OUTCOME_BY_EXIT.get(rc, "unknown")
    if rc == 0 and legacy.get("outcome") == "nothing-to-do":
        outcome = "nothing-to-do"
    what, hint = _error_line(stderr)
    message = _text(legacy.get("message")) or what or _text(legacy.get("error"))
    return {
        "schema_version": None,
        "exit_code": rc,
        "outcome": outcome,
        "message": message or _last_line(stderr) or f"unitctl exited {rc}",
        "hint": hint,
        "result": legacy if "record" in legacy or "plan" in legacy else None,
    }


def interpret(report, check_mode=False):
    """Return the Ansible result (changed, failed, msg and the fields RETURN documents) for a parsed report."""
    code = report["exit_code"]
    outcome = _LEGACY_OUTCOMES.get(report["outcome"], report["outcome"])
    if code not in OUTCOME_BY_EXIT:
        outcome = "unknown"
    if code == 0 and outcome not in ("deployed", "nothing-to-do"):
        outcome = "deployed" if not check_mode else "nothing-to-do"
    record = (report.get("result") or {}).get("record") or {}
    # A dry run that found changes exits 1: in check mode that is Ansible's "would change", not a failure.
    failed = not (code == 0 or (code == 1 and check_mode))
    changed = (code == 0 and outcome == "deployed" and not check_mode) or (code == 1 and check_mode)
    out = {
        "changed": changed,
        "failed": failed,
        "outcome": outcome,
        "exit_code": code,
        "message": report["message"],
        "hint": report["hint"],
        "rolled_back": code == 4,
        "needs_human": code == 5 or outcome == "unknown",
        "nothing_changed": outcome in _UNCHANGED,
        "schema_version": report["schema_version"],
    }
    if report.get("result") is not None:
        out["result"] = report["result"]
    revision = record.get("to_rev") if code == 0 else record.get("from_rev") if code in (3, 4) else None
    if revision:
        out["revision"] = revision
    if record.get("from_rev"):
        out["previous_revision"] = record["from_rev"]
    msg = f"unitctl: {outcome} (exit {code}): {report['message']}"
    if report["hint"] and report["hint"] not in msg:
        msg += f"; {report['hint']}"
    if code == 5:
        msg += " -- a human is needed: the host's state is not known good"
    elif outcome == "unknown":
        msg += " -- unitctl exited with a code it does not document: the host's state is unknown, a human is needed"
    out["msg"] = msg
    return out


def build_argv(unitctl, params, check_mode=False):
    """Return the unitctl command line for the task's parameters (options as --opt=value: no value reads as a flag)."""
    service = params["service"]
    if not service or service.startswith("-") or not _SERVICE.match(service):
        raise ValueError(f"service {service!r} is not a unit name (letters, digits, _ . : \\ @ -)")
    if not params["rev"] or params["rev"].startswith("-"):
        raise ValueError(f"rev {params['rev']!r} is not a revision")
    if params["command"] == "deploy":
        argv = [unitctl, "deploy", service, f"--rev={params['rev']}"]
    else:
        for key in ("repo", "ready_url"):
            if not params.get(key):
                raise ValueError(f"{key} is required with command=apply (or use command=deploy with unitctl.toml)")
        argv = [unitctl, "apply", service, "--guarded", f"--rev={params['rev']}"]
    for key, flag in (
        ("repo", "--repo"),
        ("ready_url", "--ready-url"),
        ("ready_timeout", "--ready-timeout"),
        ("workers", "--workers"),
        ("unit_file", "--unit-file"),
        ("strategy", "--strategy"),
    ):
        value = params.get(key)
        if value is not None and value != "":
            argv.append(f"{flag}={value:g}" if isinstance(value, float) else f"{flag}={value}")
    argv.extend(params.get("extra_args") or [])
    if check_mode:
        argv.append("--dry-run")
    argv.append("--json")
    return argv


def diff_argv(unitctl, params):
    """Return the ``unitctl diff`` command line comparing the installed unit with the one this task installs."""
    argv = [unitctl, "diff", params["service"]]
    if params.get("unit_file"):
        argv.append(f"--unit-file={params['unit_file']}")
    if params.get("workers"):
        argv.append(f"--workers={params['workers']}")
    return argv


def prepared_diff(unit_diff, result):
    """Return the text diff mode shows: the revision change and unitctl's (masked) unit diff."""
    record = (result or {}).get("record") or {}
    plan = (result or {}).get("plan") or {}
    before = record.get("from_rev") or plan.get("from_rev")
    after = record.get("to_rev") or plan.get("to_rev")
    parts = []
    if before != after and (before or after):
        parts.append(f"revision: {before or '(none)'} -> {after or '(none)'}\n")
    if unit_diff.strip():
        parts.append(unit_diff if unit_diff.endswith("\n") else unit_diff + "\n")
    return "".join(parts)


def _json_object(stdout):
    text = (stdout or "").strip()
    for candidate in (text, text.splitlines()[-1] if text else ""):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def _error_line(stderr):
    """Split unitctl's last ``unitctl: error: WHAT; WHAT TO DO`` line into (WHAT, WHAT TO DO)."""
    for line in reversed((stderr or "").splitlines()):
        if line.startswith("unitctl: error: "):
            what, sep, hint = line[len("unitctl: error: ") :].partition("; ")
            return what.strip(), (hint.strip() or None) if sep else None
    return "", None


def _last_line(text):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _text(value):
    return value if isinstance(value, str) else ""


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("command", "apply", ("repo", "ready_url"))],
        supports_check_mode=True,
    )
    params = module.params
    unitctl = params["unitctl_path"]
    if os.sep not in unitctl:
        unitctl = module.get_bin_path(unitctl, required=True)
    elif not os.access(unitctl, os.X_OK):
        module.fail_json(
            msg=f"{unitctl} is not an executable unitctl; install it (role unitctl.deploy.server) or set unitctl_path",
            outcome="usage-error",
            exit_code=2,
            rolled_back=False,
            needs_human=False,
            nothing_changed=True,
        )
    try:
        argv = build_argv(unitctl, params, module.check_mode)
    except ValueError as exc:
        module.fail_json(
            msg=str(exc), outcome="usage-error", exit_code=2, rolled_back=False, needs_human=False, nothing_changed=True
        )
    cwd = params["chdir"]
    if params["fetch"] and not module.check_mode:
        if not params.get("repo"):
            module.fail_json(msg="fetch needs repo", outcome="usage-error", exit_code=2, rolled_back=False,
                             needs_human=False, nothing_changed=True)  # fmt: skip
        fetch = [unitctl, "fetch", params["repo"], f"--remote={params['remote']}"]
        rc, out, err = module.run_command(fetch, cwd=cwd)
        if rc != 0:
            report = parse_report(rc, "", err)
            res = interpret(report, check_mode=False)
            res["msg"] = f"unitctl fetch failed (exit {rc}): {report['message']}"
            res.update(cmd=fetch, stderr=err)
            module.fail_json(**res)
    unit_diff = ""
    if module._diff:
        drc, dout, derr = module.run_command(diff_argv(unitctl, params), cwd=cwd)
        if drc == 1:
            unit_diff = dout
        elif drc != 0:
            module.warn(f"unitctl diff exited {drc}: {_last_line(derr)}")
    rc, out, err = module.run_command(argv, cwd=cwd)
    res = interpret(parse_report(rc, out, err), check_mode=module.check_mode)
    res.update(cmd=argv, stderr=err)
    if module._diff:
        text = prepared_diff(unit_diff, res.get("result"))
        if text:
            res["diff"] = {"prepared": text}
    if res.pop("failed"):
        module.fail_json(**res)
    module.exit_json(**res)


if __name__ == "__main__":
    main()
