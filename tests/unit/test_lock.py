"""The per-unit lock refuses a second holder at once, naming the first, and frees on exit or death."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unitctl import lock
from unitctl.errors import ExitCode, InputError, LockHeldError


def test_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    with lock.unit_lock(tmp_path, "app.service", command=["unitctl", "apply", "app"]) as me:
        with pytest.raises(LockHeldError) as info:
            with lock.unit_lock(tmp_path, "app.service"):
                pass
        assert info.value.exit_code == ExitCode.REFUSED
        assert f"pid {me.pid}" in str(info.value)
        assert "unitctl apply app" in str(info.value)
        # Another unit is independent.
        with lock.unit_lock(tmp_path, "other.service"):
            pass
    with lock.unit_lock(tmp_path, "app.service"):
        pass


def test_lock_held_by_another_process_and_released_when_it_dies(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from unitctl import lock\n"
        "with lock.unit_lock(Path(sys.argv[1]), 'app.service', command=['holder']):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        # A lock that waited would get the lock once the holder's sleep ends, and pytest.raises would fail.
        with pytest.raises(LockHeldError, match=rf"pid {proc.pid} since .*\(holder\)"):
            with lock.unit_lock(tmp_path, "app.service"):
                pass
    finally:
        proc.kill()
        proc.communicate()  # waits and closes the pipe
    with lock.unit_lock(tmp_path, "app.service"):
        pass


def test_a_lock_file_that_cannot_be_opened_is_one_clear_error(tmp_path: Path) -> None:
    # A directory where the lock file should be: open() fails (EISDIR) even for root.
    lock.lock_path(tmp_path, "app.service").mkdir(parents=True)
    with pytest.raises(InputError, match="cannot open the lock file .*app.service.*UNITCTL_LOCK_DIR"):
        with lock.unit_lock(tmp_path, "app.service"):
            pass
