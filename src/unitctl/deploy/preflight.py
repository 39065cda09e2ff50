"""Pre-flight, before the service is touched: readiness URL, verify, build, import check, canary, pre-switch."""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from unitctl import masking
from unitctl.deploy import canary, hooks
from unitctl.deploy.attempt import Attempt, Detail
from unitctl.deploy.capture import transient_prefix
from unitctl.deploy.undo import Undo
from unitctl.errors import PreImportError, ReadyUrlError, RefusedError, VerificationError
from unitctl.probe import ProbeResult

# Pre-flight check of the readiness URL: retry a connection failure for at most this long, this often.
READY_URL_CHECK_SECONDS = 3.0
READY_URL_CHECK_INTERVAL = 0.5


def preflight(att: Attempt) -> None:
    """Check the new release before the service is touched: readiness URL, verify, build, import, canary, pre-switch."""
    req, plan, facts = att.req, att.plan, att.facts
    assert plan is not None and facts is not None
    if att.probe is not None:
        att.step("ready-url")
        with att.phase("ready-url") as detail:
            _check_ready_url(att, att.probe, detail)
    att.step("verify")
    with att.phase("verify") as detail:
        report = _verify(att)
        if report is not None:
            if report.errors:
                more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
                raise VerificationError(
                    f"{req.unit}: the new unit does not verify: {report.errors[0]}{more}",
                    hint="fix the unit; nothing was changed",
                )
            # Printed, not only counted: a warning nobody reads is how a bad unit reaches production.
            for warning in report.warnings:
                att.reporter.line(f"warning: {masking.mask(str(warning))}")
            detail.append(f"{len(report.warnings)} warning(s)" if report.warnings else "clean")
        else:
            detail.append("skipped")
    tree = None
    try:
        if needs_checkout(att) and not req.dry_run:
            # The live checkout stays at the running release until the switch: the new one is checked out aside.
            assert plan.to_rev is not None
            tree = canary.prepare_tree(att, plan.to_rev)
        if req.build_cmd and not req.dry_run and plan.code_changed:
            att.step("build")
            reject_on_failure(att, lambda: hooks.run(att, "build", req.build_cmd, tree=tree), live=tree is None)
        if not (req.no_pre_import or not req.guarded):
            if req.dry_run and att.repo is not None and plan.to_rev != facts.head:
                att.reporter.line(f"pre-import skipped in a dry run: {plan.to_rev} is not checked out")
            else:
                att.step("pre-import")
                with att.phase("pre-import") as detail:
                    reject_on_failure(att, lambda: _pre_import(att, detail, tree), live=tree is None)
        why_not = canary.wanted(att)
        if why_not is None:
            reject_on_failure(att, lambda: canary.run(att, tree), live=tree is None)
        elif not req.dry_run:
            att.reporter.line(f"canary skipped: {why_not}")
        if req.pre_switch_cmd and not req.dry_run:
            # Once, before the switch, on the new code (a migration): in the canary's tree, which is the new release.
            att.step("pre-switch")
            pre_switch = req.pre_switch_cmd
            reject_on_failure(att, lambda: hooks.run(att, "pre-switch", pre_switch, tree=tree), live=tree is None)
    finally:
        # The switch checks the live tree out itself: the canary's tree is not needed any more.
        canary.remove(att)


def needs_checkout(att: Attempt) -> bool:
    """Tell whether the deploy must check the new revision out (the live tree is elsewhere or not clean)."""
    plan, facts = att.plan, att.facts
    assert plan is not None and facts is not None
    return att.repo is not None and bool(plan.to_rev) and (facts.head != plan.to_rev or bool(facts.tree_reason))


def reject_on_failure(att: Attempt, check: Callable[[], None], *, live: bool = True) -> None:
    """Run a check of the new code; when it fails, the tree's target becomes the last good revision.

    A later restart of the old process (by anyone) must not load code that was just proven broken. ``live``: the
    check ran on the live checkout (False: on the canary's tree, and the live one was never touched).
    """
    try:
        check()
    except RefusedError:
        if not live:
            raise
        target = _last_good_rev(att)
        if att.repo is not None and target is not None:
            att.register(Undo("tree", rev=target, repo=str(att.repo.path), build_cmd=rebuild(att)))
        raise


def _last_good_rev(att: Attempt) -> str | None:
    facts = att.facts
    assert facts is not None
    return facts.rollback.rev if facts.rollback is not None else facts.head


def rebuild(att: Attempt) -> tuple[str, ...] | None:
    """Return the build hooks to run again after a checkout back (only when the code changed)."""
    return att.req.build_cmd or None if att.plan is not None and att.plan.code_changed else None


def _check_ready_url(att: Attempt, probe: Callable[[], ProbeResult], detail: Detail) -> None:
    """Refuse a readiness URL that does not answer while the service runs: the guard and its rollback would fail."""
    from unitctl.probe import parse_target

    req = att.req
    assert att.facts is not None and req.ready_url is not None
    state = att.facts.state
    if not state.is_active:
        detail.append(f"skipped: {req.unit} is {state.active_state}/{state.sub_state}, nothing runs to answer yet")
        return
    where = parse_target(req.ready_url).display()
    deadline = att.edges.clock() + READY_URL_CHECK_SECONDS
    answer = probe()
    # A service under load may drop a connection now and then: retry, but only briefly.
    while answer.status_code is None and att.edges.clock() + READY_URL_CHECK_INTERVAL + answer.elapsed < deadline:
        att.edges.sleep(READY_URL_CHECK_INTERVAL)
        answer = probe()
    if answer.status_code is None:
        reason = (answer.error or "no answer").replace(f" at {where}", "")
        if req.command == "rollback":
            # A release that runs but does not answer is what 'unitctl rollback' is for: not a reason to refuse it.
            detail.append(f"warning: {where} does not answer ({reason}): rolling back from a release that does not")
            return
        raise ReadyUrlError(
            f"{where} does not answer while {req.unit} is active ({reason})",
            hint="check --ready-url: host, port, path or socket (nothing was changed)",
        )
    if 300 <= answer.status_code < 400:
        raise ReadyUrlError(
            f"{where} answers {answer.describe()} while {req.unit} is active; unitctl never follows redirects",
            hint="point --ready-url at the final URL (nothing was changed)",
        )
    if not answer.ok:
        detail.append(
            f"warning: the running release is not ready ({answer.describe()}): "
            "a rollback would return to an unready release"
        )
        return
    detail.append(f"{answer.describe()} from the running release")


def _verify(att: Attempt) -> Any:
    verifier = att.edges.verifier
    if verifier is None:
        from unitctl.verify import verify_unit

        verifier = verify_unit
    req = att.req
    assert att.facts is not None
    if req.unit_file is not None and req.unit_bytes is None:
        return verifier(req.unit_file, name=req.unit)
    with tempfile.TemporaryDirectory(prefix="unitctl-verify-") as tmp:
        path = Path(tmp) / req.unit
        path.write_bytes(att.facts.candidate)
        if att.facts.socket is not None and att.facts.socket_candidate is not None:
            # The service Requires= its .socket: verify loads the pair, as systemd will.
            (Path(tmp) / att.facts.socket.path.name).write_bytes(att.facts.socket_candidate)
        return verifier(path, name=req.unit)


def _pre_import(att: Attempt, detail: list[str], tree: canary.Tree | None = None) -> None:
    from unitctl.preimport import check_spec

    assert att.facts is not None
    spec = check_spec(
        att.facts.candidate.decode("utf-8", "replace"),
        unit=att.req.unit,
        unit_dir=att.req.unit_dir,
        pre_import=att.req.pre_import,
    )
    spec = replace(spec, name_prefix=transient_prefix(att.req.unit))
    if tree is not None:
        spec = replace(spec, **tree.namespace())  # type: ignore[arg-type]
    detail.append(" ".join(shlex.quote(a) for a in spec.argv)[:200])
    result = att.edges.backend.run_transient(spec)
    if result.returncode != 0:
        att.record.output += result.output
        last = hooks.last_line(result.output) or f"exit status {result.returncode}"
        raise PreImportError(
            f"{att.req.unit}: the new code does not import in the service's environment: {last}",
            hint="fix the release; the service was not restarted and the full output is in 'unitctl history'",
        )
