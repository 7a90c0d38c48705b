"""Progress as plain lines when output goes to a file or pipe (a progress bar there prints nothing
until it ends): one line per finished epoch, and one every ``every_s`` seconds within a long epoch."""

from __future__ import annotations

import time
from typing import Callable

from mqarbench.runner.plan import RunSpec

EVERY_S = 60.0

# (spec, epoch, step, steps per epoch), as executors.run_local calls it
StepFn = Callable[[RunSpec, int, int, int], None]


class LineProgress:
    """A step callback that prints a line per epoch (and a heartbeat every ``every_s`` seconds)."""

    def __init__(self, say: Callable[[str], None], every_s: float = EVERY_S, clock=time.monotonic):
        self.say, self.every_s, self.clock = say, every_s, clock
        self.last = clock()

    def __call__(self, spec: RunSpec, epoch: int, step: int, steps: int) -> None:
        now = self.clock()
        if step < steps and now - self.last < self.every_s:
            return
        self.last = now
        where = "done" if step == steps else f"step {step}/{steps}"
        self.say(f"{spec.run_id} {spec.adapter_name} on {spec.train.task}, lr {spec.hparams.lr:g}, "
                 f"seed {spec.seed}: epoch {epoch + 1}/{spec.hparams.epochs} {where}")


def with_lines(on_step: StepFn | None, say: Callable[[str], None], every_s: float = EVERY_S) -> StepFn:
    """``on_step`` followed by a ``LineProgress``."""
    lines = LineProgress(say, every_s)

    def step(spec: RunSpec, epoch: int, s: int, steps: int) -> None:
        if on_step:
            on_step(spec, epoch, s, steps)
        lines(spec, epoch, s, steps)
    return step
