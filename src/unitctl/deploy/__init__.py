"""The deploy engine: facts captured once, a pure plan, steps with their own undo, an intent journal.

model.py     ApplyRequest, Edges, Facts, Plan, choose_action(Switch)/make_plan(PlanInput) (pure), STEPS
undo.py      Undo / UndoLog: how each step that changed the world is put back
journal.py   the per-unit intent journal (and the fault-injection test hook)
engine.py    the transaction and the recovery of one that died
signals.py   SIGINT/SIGTERM roll back, SIGHUP is ignored, nothing interrupts a rollback
progress.py  phase lines and countdowns that survive a caller who went away
(the commands around it, apply/rollback/status/history, live in unitctl.commands)
"""

from unitctl.deploy.engine import recover, run, run_result
from unitctl.deploy.model import (
    STEPS,
    ApplyRequest,
    ApplyResult,
    Edges,
    Facts,
    Plan,
    PlanInput,
    Switch,
    choose_action,
    make_plan,
)
from unitctl.deploy.progress import Reporter

__all__ = [
    "STEPS",
    "ApplyRequest",
    "ApplyResult",
    "Edges",
    "Facts",
    "Plan",
    "PlanInput",
    "Reporter",
    "Switch",
    "choose_action",
    "make_plan",
    "recover",
    "run",
    "run_result",
]
