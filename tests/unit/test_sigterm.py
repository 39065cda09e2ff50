"""SIGTERM as an exception: the handler the deploy engine and the sandbox share."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from unitctl import sigterm
from unitctl.deploy.signals import Interrupted


class Stop(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def test_sigterm_in_the_block_raises_the_given_exception_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stop) as caught, sigterm.raising(Stop):
        os.kill(os.getpid(), signal.SIGTERM)
    assert caught.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_deploy_engine_gets_interrupted_with_the_signal_name() -> None:
    with pytest.raises(Interrupted) as caught, sigterm.raising(Interrupted):
        os.kill(os.getpid(), signal.SIGTERM)
    assert caught.value.signame == "SIGTERM"


def test_disabled_or_outside_the_main_thread_installs_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with sigterm.raising(Stop, enabled=False):
        assert signal.getsignal(signal.SIGTERM) is before
    seen: list[object] = []

    def worker() -> None:
        with sigterm.raising(Stop):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]
