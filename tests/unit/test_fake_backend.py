"""The fake backend behaves like the real ones where tests rely on it; backend selection errors clearly."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from unitctl.errors import SystemdError, UsageError
from unitctl.systemd import get_backend
from unitctl.systemd.base import SystemdBackend, TransientResult, TransientSpec
from unitctl.systemd.dbus import DbusBackend
from unitctl.systemd.fake import FakeSystemd, failed_state
from unitctl.systemd.systemctl import SystemctlBackend


def test_fake_satisfies_the_protocol() -> None:
    backend: SystemdBackend = FakeSystemd()
    assert backend.name == "fake"


@pytest.mark.parametrize("backend", [FakeSystemd, SystemctlBackend, DbusBackend])
def test_every_backend_has_the_protocols_methods_with_the_same_signatures(
    backend: type[FakeSystemd | SystemctlBackend | DbusBackend],
) -> None:
    # mypy checks only src/, where nothing assigns a FakeSystemd to a SystemdBackend: compare at run time.
    methods = [n for n, v in vars(SystemdBackend).items() if callable(v) and not n.startswith("_")]
    assert "run_transient" in methods and "journal" in methods
    for method in methods:
        expected = inspect.signature(getattr(SystemdBackend, method))
        assert inspect.signature(getattr(backend, method)) == expected, method
    assert isinstance(backend.name, str) and backend.name


def test_calls_are_recorded_in_order() -> None:
    fake = FakeSystemd()
    fake.add_unit("app")
    fake.daemon_reload()
    fake.restart("app")
    fake.state("app.service")
    assert fake.calls == [("daemon_reload",), ("restart", "app.service"), ("state", "app.service")]
    assert fake.ops("app.service") == ["restart", "state"]


def test_restart_gives_a_new_invocation_and_pid_and_resets_nrestarts() -> None:
    fake = FakeSystemd()
    before = fake.add_unit("app.service")
    fake.units["app.service"] = dataclasses.replace(before, n_restarts=4)
    fake.restart("app.service")
    after = fake.state("app.service")
    assert after.is_active and after.main_pid != before.main_pid
    assert after.invocation_id != before.invocation_id and after.n_restarts == 0


def test_scripted_states_are_consumed_then_the_last_sticks() -> None:
    fake = FakeSystemd()
    ok = fake.add_unit("app.service")
    bad = failed_state("app.service")
    fake.script_states("app.service", [ok, bad])
    assert [fake.state("app.service").active_state for _ in range(4)] == ["active", "failed", "failed", "failed"]


def test_on_restart_scripts_the_new_invocation() -> None:
    fake = FakeSystemd()
    fake.add_unit("app.service")
    fake.on_restart("app.service", [dataclasses.replace(failed_state("app.service"), invocation_id="")])
    fake.restart("app.service")
    st = fake.state("app.service")
    assert st.active_state == "failed" and len(st.invocation_id) == 32


def test_fail_next_raises_once_and_still_records() -> None:
    fake = FakeSystemd()
    fake.add_unit("app.service")
    fake.fail_next("restart", "app.service", "restart of app.service failed: Job failed")
    with pytest.raises(SystemdError, match="Job failed"):
        fake.restart("app.service")
    fake.restart("app.service")
    assert fake.ops() == ["restart", "restart"]


def test_unknown_units_and_bad_names() -> None:
    fake = FakeSystemd()
    assert fake.state("ghost.service").load_state == "not-found"
    with pytest.raises(SystemdError, match="not found"):
        fake.restart("ghost.service")
    with pytest.raises(UsageError):
        fake.restart("bad name")
    assert ("restart", "bad name") not in fake.calls


def test_reload_needs_an_active_unit_and_reset_failed_clears() -> None:
    fake = FakeSystemd()
    fake.add_unit("app.service", failed_state("app.service"))
    with pytest.raises(SystemdError, match="not active"):
        fake.reload("app.service")
    fake.reset_failed("app.service")
    assert fake.state("app.service").active_state == "inactive"
    fake.start("app.service")
    assert fake.state("app.service").is_active
    fake.stop("app.service")
    assert fake.state("app.service").sub_state == "dead"


def test_journal_by_invocation() -> None:
    fake = FakeSystemd()
    first = fake.add_unit("app.service")
    fake.add_journal("app.service", ["old 1", "old 2"])
    fake.restart("app.service")
    fake.add_journal("app.service", ["Traceback (most recent call last):", "ImportError: x"])
    assert fake.journal("app.service", invocation_id=first.invocation_id) == ["old 1", "old 2"]
    current = fake.state("app.service").invocation_id
    assert fake.journal("app.service", invocation_id=current, lines=1) == ["ImportError: x"]
    assert len(fake.journal("app.service")) == 4 and fake.journal("app.service", lines=0) == []


def test_transient_results_are_scripted() -> None:
    fake = FakeSystemd()
    fake.script_transient(TransientResult(4, "ImportError: no module", "exit-code"))
    fake.script_transient(lambda spec: TransientResult(0, f"ran as {spec.user}"))
    assert fake.run_transient(TransientSpec(argv=["python", "-c", "import app"])).returncode == 4
    assert fake.run_transient(TransientSpec(argv=["true"], user="www")).output == "ran as www"
    assert fake.run_transient(TransientSpec(argv=["true"])).returncode == 0
    with pytest.raises(SystemdError):
        fake.run_transient(TransientSpec(argv=[]))


def test_daemon_reload_clears_need_daemon_reload() -> None:
    fake = FakeSystemd()
    st = fake.add_unit("app.service")
    fake.units["app.service"] = dataclasses.replace(st, need_daemon_reload=True)
    fake.daemon_reload()
    assert fake.state("app.service").need_daemon_reload is False


# -- backend selection (on this host there is no system bus; the real backends are tested in the sandbox) ----


def test_unknown_backend_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown systemd backend 'pystemd'; choose one of auto, dbus, systemctl"):
        get_backend("pystemd")


def test_explicit_dbus_without_a_bus_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/unitctl-test-bus")
    with pytest.raises(SystemdError, match="cannot talk to systemd over the system bus") as info:
        get_backend("dbus")
    assert "--backend systemctl" in str(info.value) and "\n" not in str(info.value)


def test_auto_falls_back_to_systemctl_without_a_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/unitctl-test-bus")
    assert get_backend("auto").name == "systemctl"
    assert get_backend("systemctl").name == "systemctl"


def test_dbus_without_pystemd_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pystemd.dbuslib", None)
    with pytest.raises(SystemdError, match="needs pystemd"):
        get_backend("dbus")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/unitctl-test-bus")
    assert get_backend().name == "systemctl"


def test_a_restart_keeps_where_systemd_reads_the_unit() -> None:
    fake = FakeSystemd()
    vendor = dataclasses.replace(
        failed_state("app.service"),
        fragment_path="/usr/lib/systemd/system/app.service",
        dropin_paths=("/etc/systemd/system/app.service.d/override.conf",),
        unit_file_state="enabled",
    )
    fake.add_unit("app", vendor)
    fake.restart("app")
    after = fake.state("app")
    assert after.is_active
    assert (after.fragment_path, after.dropin_paths, after.unit_file_state) == (
        vendor.fragment_path,
        vendor.dropin_paths,
        "enabled",
    )
