"""The time budget of one ``edgekit compress`` command, shared out among its stages.

Every stage that can run long (pruning, the int8 searches, the converters) asks :meth:`Clock.share` for
its seconds and runs in a child process killed :data:`GRACE` seconds after them (:meth:`Clock.kill_after`), and
never later than :data:`FINISH` seconds before the limit, so the command ends within its ``--time-limit``
whatever the model. The clock starts with the command, so loading the model and the data counts too.
"""

from __future__ import annotations

import time

TIME_LIMIT = 540.0  # seconds for the whole command by default: 9 minutes
RESERVE = 45.0  # seconds kept back for verification, benchmarks and the report, at the least (see Clock.after)
# Shares of the time left that each stage may take (of the stages still to come).
WEIGHTS = {"prune": 3.0, "onnx:fp32": 0.2, "onnx:fp16": 0.2, "onnx:int8": 3.0, "tflite:fp32": 1.0,
           "tflite:fp16": 1.0, "tflite:int8": 4.0, "inc": 1.0}
GRACE = 60.0  # seconds a child may run past its share (finishing the candidate it started) before it is killed
FINISH = 20.0  # seconds before the limit at which any child is killed: what follows it must still end in time


class Clock:
    """The command's time limit, shared out among the stages still to come."""

    def __init__(self, limit: float, stages: list[str], start: float | None = None, after: float = 0.0):
        """``start``: the command's own ``time.monotonic()`` start, when it began before the clock was made.
        ``after``: the seconds the work after the searches needs (verifying every artifact on the evaluation
        data, benchmarks, the report), measured on the model: on xception41 verification alone took 48 s, more
        than :data:`RESERVE`, and the command ended 37 s past its limit. Set it to 0 once that work is done."""
        self.start = time.monotonic() if start is None else start
        self.limit, self.todo, self.after = float(limit), list(stages), float(after)
        self.spent: dict[str, float] = {}  # seconds each stage took, for the report
        self._last = self.start

    def lap(self, stage: str) -> None:
        """Record the time since the previous lap as ``stage``'s."""
        now = time.monotonic()
        self.spent[stage] = round(self.spent.get(stage, 0.0) + now - self._last, 1)
        self._last = now

    def left(self) -> float:
        return self.limit - (time.monotonic() - self.start)

    def share(self, stage: str) -> float:
        """Seconds ``stage`` may take: its weight's part of what is left (after the reserve); at least 20 s."""
        weights = sum(WEIGHTS.get(s, 1.0) for s in self.todo) or 1.0
        mine = WEIGHTS.get(stage, 1.0)
        if stage in self.todo:
            self.todo.remove(stage)
        return max(20.0, (self.left() - max(RESERVE, self.after)) * mine / weights)

    def kill_after(self, seconds: float) -> float:
        """The timeout of a child given ``seconds``: its grace to finish the step it started, cut so that it
        is killed :data:`FINISH` seconds (or :attr:`after`, when more) before the limit (measured: an autotune
        given 125 s ran 169 s and took the command 39 s past its limit), but never before its own deadline plus
        10 s."""
        return max(seconds + 10.0, min(seconds + GRACE, self.left() - max(FINISH, self.after)))
