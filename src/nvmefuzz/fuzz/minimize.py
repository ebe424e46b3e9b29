"""Step-level shrinking of a finding, after Hypothesis: delete steps while it still reproduces.

Hypothesis shrinks the choices behind an example, within a time budget; on a slow target (a
real QEMU replays an example in seconds) the budget can run out with steps left that the
finding does not need, typically a run of ``migrate`` steps.  ``minimize`` finishes the job
on the trace itself: it cuts everything after the verdict step, then runs ddmin over the
steps (try deleting chunks, halving the chunk size when no chunk can go), keeping a deletion
whenever the shorter trace still replays to the same verdict class and signature.  It is
bounded by ``seconds`` and returns the shortest trace found, with its new verdict.

A QEMU finding costs seconds per replay, so where the model reproduces it (``on_model``: the
same verdict under ``cause.QEMU_PROFILE``, seen as the qemu target sees) it is shrunk on the
model first, in milliseconds per replay (``via_model``): steps deleted, then each argument
made as simple as it can be (``simplify``: what Hypothesis' shrinker does to values), and QEMU
replays the result once to confirm it; the runner then stops Hypothesis shrinking with QEMU
in the loop.
"""

from __future__ import annotations

import time
from typing import Callable

import attrs

from nvmefuzz.errors import NvmeFuzzError
from nvmefuzz.fuzz.cause import explained, on_model
from nvmefuzz.trace.schema import Step, Trace, Verdict

Replay = Callable[[Trace], tuple[Verdict, object]]


def _reproducer(trace: Trace, replay: Replay, keep: Callable[[Trace], bool] | None,
                catch: type[BaseException] | tuple) -> Callable[[list[Step]], Trace | None]:
    """A check of other steps for ``trace``: the trace they make, cut at its verdict, when
    they reach the same verdict class and signature (and ``keep`` accepts it), else None."""
    def reproduces(steps: list[Step]) -> Trace | None:
        candidate = attrs.evolve(trace, steps=tuple(steps))
        try:
            verdict, _ = replay(candidate)
        except catch:
            return None
        if not _same(verdict, trace.verdict):
            return None
        found = attrs.evolve(candidate, steps=tuple(steps[:verdict.step + 1]), verdict=verdict)
        return found if keep is None or keep(found) else None

    return reproduces


def minimize(trace: Trace, seconds: float = 120.0,
             replay: Replay | None = None,
             keep: Callable[[Trace], bool] | None = None) -> Trace:
    """The shortest variant of ``trace`` found that reaches the same verdict signature (and
    that ``keep`` accepts, if given)."""
    if trace.verdict.ok or trace.verdict.step < 0:
        return trace
    if replay is None:
        from nvmefuzz.fuzz.session import replay
    deadline = time.monotonic() + seconds
    best = trace
    reproduces = _reproducer(trace, replay, keep, NvmeFuzzError)

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


#: an argument left out (the action's default)
_DROP = object()


def _simpler(value: object) -> list[object]:
    """Values simpler than ``value``, simplest first: leaving it out, then for an integer 0,
    1, half and one less, for True False."""
    if value is True:
        return [_DROP, False]
    if type(value) is not int or value <= 0:
        return [_DROP]
    return [_DROP, *dict.fromkeys(c for c in (0, 1, value // 2, value - 1) if c < value)]


def simplify(trace: Trace, seconds: float = 30.0, replay: Replay | None = None,
             keep: Callable[[Trace], bool] | None = None) -> Trace:
    """``trace`` with its steps' arguments made simpler (``_simpler``) while it reaches the
    same verdict class and signature (and ``keep`` accepts it), one argument at a time until
    none can be, within ``seconds``: what Hypothesis' shrinker does to values, for a trace
    shrunk without it (``via_model``).  For the model: a value the host cannot even send
    (a queue of no entries) is no simplification, whatever it raises."""
    if trace.verdict.ok or trace.verdict.step < 0:
        return trace
    if replay is None:
        from nvmefuzz.fuzz.session import replay
    deadline = time.monotonic() + seconds
    reproduces = _reproducer(trace, replay, keep, Exception)
    best, changed = trace, True
    while changed and time.monotonic() < deadline:
        changed = False                  # a pass over every argument of every step
        # a change at step i can cut the trace after its verdict, never before step i
        for i in range(len(trace.steps)):
            for key in sorted(best.steps[i].args) if i < len(best.steps) else ():
                while time.monotonic() < deadline and key in best.steps[i].args:
                    found = next(filter(None, (reproduces(_with(best.steps, i, key, value))
                                               for value in _simpler(best.steps[i].args[key]))),
                                 None)
                    if found is None:
                        break
                    best, changed = found, True
    return best


def _with(steps: tuple[Step, ...], i: int, key: str, value: object) -> list[Step]:
    """``steps`` with argument ``key`` of step ``i`` set to ``value`` (left out: ``_DROP``)."""
    args = {k: v for k, v in steps[i].args.items() if k != key}
    if value is not _DROP:
        args[key] = value
    return [*steps[:i], Step(steps[i].action, args), *steps[i + 1:]]


def _same(a: Verdict, b: Verdict) -> bool:
    return (a.kind, a.signature) == (b.kind, b.signature)


def _model_verdict(trace: Trace) -> tuple[Trace, Verdict] | None:
    """``trace`` on the model and the verdict it reaches there, if ``trace`` is a QEMU
    finding the model reproduces (``cause.explained``: the same verdict under
    ``cause.QEMU_PROFILE``)."""
    if trace.verdict.ok or on_model(trace) is trace:
        return None
    try:
        model, verdict, _, same = explained(trace)
    except NvmeFuzzError:
        return None
    return (model, verdict) if same else None


def reproduces_on_model(trace: Trace) -> bool:
    """Is ``trace`` a QEMU trace whose finding the model reproduces?"""
    return _model_verdict(trace) is not None


def via_model(trace: Trace, seconds: float = 60.0, replay: Replay | None = None,
              keep: Callable[[Trace], bool] | None = None) -> Trace | None:
    """``trace`` (a QEMU finding) shrunk on the model (``minimize``, then ``simplify``), then
    confirmed by one replay on its own target: the smaller trace with the verdict it reached
    there, or None when the model does not reproduce the finding, finds nothing smaller, or
    the target does not confirm it.
    ``keep`` judges the trace as its own target's (a finding the run already knows is no
    reproducer)."""
    if replay is None:
        from nvmefuzz.fuzz.session import replay
    seen = _model_verdict(trace)
    if seen is None:
        return None
    model, verdict = seen
    back = (lambda t: keep(attrs.evolve(t, target=trace.target))) if keep else None
    deadline = time.monotonic() + seconds
    small, last = attrs.evolve(model, verdict=verdict), None
    while small != last and time.monotonic() < deadline:     # simpler values free steps
        last = small
        small = minimize(small, deadline - time.monotonic(), replay, back)
        small = simplify(small, deadline - time.monotonic(), replay, back)
    if small.steps == trace.steps:
        return None
    candidate = attrs.evolve(trace, steps=small.steps)
    try:
        confirmed, _ = replay(candidate)
    except NvmeFuzzError:
        return None
    if not _same(confirmed, trace.verdict):
        return None
    found = attrs.evolve(candidate, steps=candidate.steps[:confirmed.step + 1],
                         verdict=confirmed)
    return found if keep is None or keep(found) else None
