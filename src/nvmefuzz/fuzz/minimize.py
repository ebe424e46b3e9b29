"""Step-level shrinking of a finding, after Hypothesis: delete steps while it still reproduces.

Hypothesis shrinks the choices behind an example, within a time budget; on a slow target (a
real QEMU replays an example in seconds) the budget can run out with steps left that the
finding does not need, typically a run of ``migrate`` steps.  ``minimize`` finishes the job
on the trace itself: it cuts everything after the verdict step, then runs ddmin over the
steps (try deleting chunks, halving the chunk size when no chunk can go), keeping a deletion
whenever the shorter trace still replays to the same verdict class and signature.  It is
bounded by ``seconds`` and returns the shortest trace found, with its new verdict.  On a
target whose timing varies (QEMU) the same loss shows in either of two forms from one replay
to the next (two Reads in flight at a migration: ``posted/io/cqes`` or ``irq/missing``), so
a deletion is kept also when the shorter trace diverges at the very step the finding does,
in an observation the finding differed in (``cause.reproduces``, the leeway a corpus replay
gives).  Demanding the exact signature there turned down every deletion that showed the
other form, and left 7 to 9 steps of a six-step finding.  A deletion that takes away that
step, or moves the divergence to another step or observation, needs the exact signature, so
shrinking cannot slip to another finding.  ``varies`` says whether replays vary: by default
for a trace of any target but the model; ``nvmefuzz diff`` sets it, since its replays run
QEMU beside the model.

A QEMU finding costs seconds per replay, so where the model reproduces it (``on_model``: the
same verdict under ``cause.QEMU_PROFILE``, seen as the qemu target sees) it is shrunk on the
model first, in milliseconds per replay (``via_model``): steps deleted, then each argument
made as simple as it can be (``simplify``: what Hypothesis' shrinker does to values), and QEMU
replays the result once to confirm it; the runner then stops Hypothesis shrinking with QEMU
in the loop.  ``shrink`` is the two passes again until neither helps (a simpler value can
free a step), the whole shrink of a model finding.  A number is simplified by bisection, not
one at a time: a virtual time of an hour takes some forty replays.

``reshrink`` shrinks a stored finding again (``nvmefuzz corpus shrink``): a corpus written by
an older shrinker gets today's reproducers, each keeping its verdict, signature and root
cause, and so its file.
"""

from __future__ import annotations

import time
from typing import Callable

import attrs

from nvmefuzz.errors import NvmeFuzzError
from nvmefuzz.fuzz.cause import explained, on_model, reproduces, same
from nvmefuzz.fuzz.known import root_cause
from nvmefuzz.trace.schema import Step, Trace, Verdict

Replay = Callable[[Trace], tuple[Verdict, object]]
Check = Callable[[list[Step], int | None], Trace | None]


def _the_finding(verdict: Verdict, want: Verdict, at: int | None, varies: bool) -> bool:
    """Is ``verdict`` the finding ``want``?  The same class and signature; where replays vary
    also its other form at step ``at`` (``cause.reproduces``)."""
    if at is None or not varies:
        return same(verdict, want)
    return reproduces(attrs.evolve(want, step=at), verdict)


def _reproducer(trace: Trace, replay: Replay, keep: Callable[[Trace], bool] | None,
                catch: type[BaseException] | tuple, varies: bool | None = None) -> Check:
    """A check of other steps for ``trace``: the trace they make, cut at its verdict, when
    they reach the same verdict class and signature (and ``keep`` accepts it), else None.
    ``at`` is where the failing step of the trace being shrunk sits among ``steps`` (None
    where they leave it out): where replays vary (``varies``; by default on any target but
    the model), a divergence there in an observation the finding differed in is the finding
    too."""
    if varies is None:
        varies = trace.target.get("kind", "model") != "model"

    def check(steps: list[Step], at: int | None) -> Trace | None:
        candidate = attrs.evolve(trace, steps=tuple(steps))
        try:
            verdict, _ = replay(candidate)
        except catch:
            return None
        if not _the_finding(verdict, trace.verdict, at, varies):
            return None
        found = attrs.evolve(candidate, steps=tuple(steps[:verdict.step + 1]), verdict=verdict)
        return found if keep is None or keep(found) else None

    return check


def minimize(trace: Trace, seconds: float = 120.0,
             replay: Replay | None = None,
             keep: Callable[[Trace], bool] | None = None, varies: bool | None = None) -> Trace:
    """The shortest variant of ``trace`` found that reaches the same finding (its verdict
    signature, or on QEMU its other form at its step) and that ``keep`` accepts, if given."""
    if trace.verdict.ok or trace.verdict.step < 0:
        return trace
    if replay is None:
        from nvmefuzz.fuzz.session import replay
    deadline = time.monotonic() + seconds
    best = trace
    check = _reproducer(trace, replay, keep, NvmeFuzzError, varies)

    steps = list(trace.steps[:trace.verdict.step + 1])
    if len(steps) < len(trace.steps):
        best = check(steps, len(steps) - 1) or trace
        steps = list(best.steps)
    parts = 2
    while len(steps) >= 2 and time.monotonic() < deadline:
        size = -(-len(steps) // parts)
        fails = best.verdict.step                   # where the failing step sits in steps
        for start in range(len(steps) - size, -size, -size):    # later chunks first
            lo, hi = max(start, 0), start + size
            at = fails if fails < lo else fails - (hi - lo) if fails >= hi else None
            found = check(steps[:lo] + steps[hi:], at)
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


def _simplest(value: object, works: Callable[[object], bool], top: bool = True) -> object:
    """The simplest value found in place of ``value`` (which works) for which ``works`` holds,
    as Hypothesis' shrinker simplifies values: True to False; a positive integer to 0, 1,
    else the smallest that works by bisection (a time or a count of ten digits takes tens of
    replays, not its value); a list (DSM ranges) loses the elements it can, one at a time,
    then its elements are simplified in turn (a list inside it, a range's SLBA and length,
    keeps its length).  Other values stay."""
    if value is True:
        return False if works(False) else value
    if type(value) is int and value > 0:
        if works(0):
            return 0
        lo, hi = 0, value                  # lo does not work, hi does
        if value > 1:
            lo, hi = (0, 1) if works(1) else (1, value)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if works(mid) else (mid, hi)
        return hi
    if isinstance(value, (list, tuple)):
        items, kind, i = list(value), type(value), 0
        while top and i < len(items):
            if len(items) > 1 and works(kind(items[:i] + items[i + 1:])):
                del items[i]
            else:
                i += 1
        for i, item in enumerate(items):
            items[i] = _simplest(item, lambda v, i=i: works(kind(items[:i] + [v]
                                                                 + items[i + 1:])), False)
        return kind(items)
    return value


def simplify(trace: Trace, seconds: float = 30.0, replay: Replay | None = None,
             keep: Callable[[Trace], bool] | None = None) -> Trace:
    """``trace`` with its steps' arguments made simpler while it reaches the same verdict class
    and signature (and ``keep`` accepts it): each argument left out (the action's default),
    else made as simple as it can be (``_simplest``), one argument at a time, in passes until
    none changes or ``seconds`` are spent: what Hypothesis' shrinker does to values, for a
    trace shrunk without it (``via_model``).  For the model: a value the host cannot even send
    (a queue of no entries) is no simplification, whatever it raises."""
    if trace.verdict.ok or trace.verdict.step < 0:
        return trace
    if replay is None:
        from nvmefuzz.fuzz.session import replay
    deadline = time.monotonic() + seconds
    check = _reproducer(trace, replay, keep, Exception)
    best, changed = trace, True

    def works(i: int, key: str, value: object) -> bool:
        nonlocal best, changed
        if time.monotonic() >= deadline:
            return False
        found = check(_with(best.steps, i, key, value), best.verdict.step)
        if found is not None:
            best, changed = found, True
        return found is not None

    while changed and time.monotonic() < deadline:
        changed = False                  # a pass over every argument of every step
        # a change at step i can cut the trace after its verdict, never before step i
        for i in range(len(trace.steps)):
            for key in sorted(best.steps[i].args) if i < len(best.steps) else ():
                if not works(i, key, _DROP):
                    _simplest(best.steps[i].args[key], lambda v: works(i, key, v))
    return best


def _with(steps: tuple[Step, ...], i: int, key: str, value: object) -> list[Step]:
    """``steps`` with argument ``key`` of step ``i`` set to ``value`` (left out: ``_DROP``)."""
    args = {k: v for k, v in steps[i].args.items() if k != key}
    if value is not _DROP:
        args[key] = value
    return [*steps[:i], Step(steps[i].action, args), *steps[i + 1:]]


def shrink(trace: Trace, seconds: float = 60.0, replay: Replay | None = None,
           keep: Callable[[Trace], bool] | None = None) -> Trace:
    """``minimize`` then ``simplify``, again until neither changes the trace (a simpler value
    can free a step) or ``seconds`` are spent: the model's whole shrink, at ms per replay."""
    deadline = time.monotonic() + seconds
    small, last = trace, None
    while small != last and time.monotonic() < deadline:
        last = small
        small = minimize(small, deadline - time.monotonic(), replay, keep)
        small = simplify(small, deadline - time.monotonic(), replay, keep)
    return small


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
    the target does not confirm it.  The target confirms it with the finding's signature, or
    with a divergence the model's shrunk verdict reproduces (``cause.reproduces``: the same
    step, one observation in common), the other form the finding takes by QEMU's timing.
    ``keep`` judges the trace as its own target's (a finding the run already knows is no
    reproducer)."""
    if replay is None:
        from nvmefuzz.fuzz.session import replay
    seen = _model_verdict(trace)
    if seen is None:
        return None
    model, verdict = seen
    back = (lambda t: keep(attrs.evolve(t, target=trace.target))) if keep else None
    small = shrink(attrs.evolve(model, verdict=verdict), seconds, replay, back)
    if small.steps == trace.steps:
        return None
    candidate = attrs.evolve(trace, steps=small.steps)
    try:
        confirmed, _ = replay(candidate)
    except NvmeFuzzError:
        return None
    if not (same(confirmed, trace.verdict) or reproduces(small.verdict, confirmed)):
        return None
    found = attrs.evolve(candidate, steps=candidate.steps[:confirmed.step + 1],
                         verdict=confirmed)
    return found if keep is None or keep(found) else None


#: replays on its own target (QEMU) a re-shrunk stored trace must reach its verdict in, all
CONFIRMATIONS = 3


def _steady(trace: Trace, times: int, replay: Replay | None = None) -> bool:
    """Does ``trace`` reach its verdict class and signature ``times`` more times?"""
    if replay is None:
        from nvmefuzz.fuzz.session import replay
    try:
        return all(same(replay(trace)[0], trace.verdict) for _ in range(times))
    except NvmeFuzzError:
        return False


def reshrink(trace: Trace, seconds: float = 60.0, replay: Replay | None = None) -> Trace:
    """A stored finding shrunk again by today's shrinking, for ``nvmefuzz corpus shrink``:
    steps deleted and arguments simplified until neither helps, keeping the verdict class,
    the signature and the root cause (``known.root_cause``), so the finding keeps its
    identity and its file; ``trace`` itself when nothing smaller or simpler is found.  A QEMU
    trace is shrunk on the model and confirmed on QEMU (``via_model``), ``CONFIRMATIONS``
    replays in all (the corpus replays it in CI); with no QEMU here, or where the model does
    not reproduce it, it stays as it is."""
    def cause(t: Trace) -> str | None:
        found = root_cause(t)
        return found.key if found is not None else None

    if trace.verdict.ok or trace.verdict.step < 0:
        return trace
    was = cause(trace)

    def same_cause(t: Trace) -> bool:
        return cause(t) == was

    if trace.target.get("kind", "model") != "model":
        small = via_model(trace, seconds, replay, same_cause)
        if small is not None and not (same(small.verdict, trace.verdict)
                                      and _steady(small, CONFIRMATIONS - 1, replay)):
            small = None        # its file is its signature; a reproducer must not come and go
    else:
        small = shrink(trace, seconds, replay, same_cause)
    if small is None or small.steps == trace.steps:
        return trace
    return attrs.evolve(small, verdict=attrs.evolve(small.verdict, cause=trace.verdict.cause))
