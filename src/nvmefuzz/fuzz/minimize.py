"""Step-level shrinking of a finding, after Hypothesis: delete steps while it still reproduces.

Hypothesis shrinks the choices behind an example, within a time budget; on a slow target (a
real QEMU replays an example in seconds) the budget can run out with steps left that the
finding does not need, typically a run of ``migrate`` steps.  ``minimize`` finishes the job
on the trace itself: it cuts everything after the verdict step, then runs ddmin over the
steps (try deleting chunks, halving the chunk size when no chunk can go), keeping a deletion
whenever the shorter trace still replays to the same verdict class and signature.  It is
bounded by ``seconds`` and returns the shortest trace found, with its new verdict.
"""

from __future__ import annotations

import time
from typing import Callable

import attrs

from nvmefuzz.errors import NvmeFuzzError
from nvmefuzz.trace.schema import Step, Trace, Verdict


def minimize(trace: Trace, seconds: float = 120.0,
             replay: Callable[[Trace], tuple[Verdict, object]] | None = None,
             keep: Callable[[Trace], bool] | None = None) -> Trace:
    """The shortest variant of ``trace`` found that reaches the same verdict signature (and
    that ``keep`` accepts, if given)."""
    if trace.verdict.ok or trace.verdict.step < 0:
        return trace
    if replay is None:
        from nvmefuzz.fuzz.session import replay
    deadline = time.monotonic() + seconds
    want = (trace.verdict.kind, trace.verdict.signature)
    best = trace

    def reproduces(steps: list[Step]) -> Trace | None:
        candidate = attrs.evolve(trace, steps=tuple(steps))
        try:
            verdict, _ = replay(candidate)
        except NvmeFuzzError:
            return None
        if (verdict.kind, verdict.signature) != want:
            return None
        found = attrs.evolve(candidate, steps=tuple(steps[:verdict.step + 1]), verdict=verdict)
        return found if keep is None or keep(found) else None

    steps = list(trace.steps[:trace.verdict.step + 1])
    if len(steps) < len(trace.steps):
        best = reproduces(steps) or trace
        steps = list(best.steps)
    parts = 2
    while len(steps) >= 2 and time.monotonic() < deadline:
        size = -(-len(steps) // parts)
        for start in range(len(steps) - size, -size, -size):    # later chunks first
            lo = max(start, 0)
            found = reproduces(steps[:lo] + steps[start + size:])
            if found is not None:
                best, steps = found, list(found.steps)
                parts = max(parts - 1, 2)
                break
            if time.monotonic() >= deadline:
                break
        else:
            if size == 1:
                break
            parts = min(len(steps), parts * 2)
    return best
