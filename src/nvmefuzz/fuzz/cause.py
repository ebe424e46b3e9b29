"""Why a finding happened: the state its migrations lost that the guest went on to see.

How it works
------------
Signatures say what the guest saw (``irq/missing``, ``posted/io/missing``); one lost piece of
state can show several ways, and one way can come from several losses.  On the model both
sides can be looked inside, so a finding is explained the way a developer would explain it:

1. replay the trace and collect the state paths its migrations lost (``Session.lost``, field
   by field: ``cq.waiting``, ``inflight``, ``features.err_rec``);
2. replay it with all of them *repaired*: every migration loads them from the never-migrated
   twin, as a design that saved them correctly would.  A repaired migration can lose what
   the unrepaired one did not (a load that re-derives state only when it has to re-create
   something, e.g. re-enabling when the admin queues are missing): that is the repair's
   doing, and is repaired too, never named.  If the finding stays, the cause is ``outside
   the state`` (what the design's save or load does: interrupts it sends, state it resets,
   timing);
3. otherwise leave one path at a time lost again and drop it from the repair when the
   finding stays away without it.  What remains is a minimal set of lost paths whose repair
   makes the finding go away: the root cause.  Going away means no failure before the step
   that failed and not the same one there: a failure later, or another one at that step, is
   another loss's (or the repair's: re-deriving less on load), and a failure before it (a
   repaired state the design's load rejects) does not count as a repair.

A QEMU trace shows no insides.  It is replayed on the model under ``QEMU_PROFILE``, the
profile that describes the QEMU the ``qemu`` target runs, seen as the qemu target sees
(``targets.base.QEMU_VIEW``) and with the waivers its sessions apply; if the model fails
there the same way, the cause is found as above; if it passes, or fails another way, the
profile does not explain the finding (``unexplained``), which is worth a look on its own.
"The same way" allows for QEMU's timing: diverging at the same step in one of the
observations QEMU's step differed in (``Verdict.also``) is the same way (``reproduces``);
and a migration QEMU came through that the model loses at (a command QEMU finished inside
the VM stop, which the model finishes after it) is made perfect on the model, so that it
reaches the step where QEMU diverged (``TargetConfig.perfect_migrations``).

A cause names schema paths (``cq.tail``), so that findings share it; ``lost_values`` gives
what a bug report needs beside it, from one more replay: at each migration that lost them,
where (``cq[0].tail``: the admin CQ) and the value on each side.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import attrs

from nvmefuzz.fuzz.compare import TARGET_WAIVERS
from nvmefuzz.fuzz.session import lost_paths, replay
from nvmefuzz.model.profiles import get as get_profile
from nvmefuzz.model.snapshot import SCHEMA, capture
from nvmefuzz.model.statediff import differences
from nvmefuzz.targets.base import QEMU_EVENTS, QEMU_VIEW
from nvmefuzz.targets.model import RAM_PASS
from nvmefuzz.trace.schema import DIVERGENCE, Step, Trace, Verdict

#: the model profile that describes the QEMU the ``qemu`` target runs (``targets.discovery``
#: accepts QEMU 11.1 and later; the profile is 11.1's field set and save order)
QEMU_PROFILE = "qemu-11.1"

#: kinds of cause, and how each reads
STATE, OUTSIDE, NOTHING_LOST, UNEXPLAINED, PASSES = (
    "state", "outside the state", "nothing lost", "unexplained", "passes")
SAYS = {
    STATE: "the migration lost {paths}: loading {them} from the twin makes it go away",
    OUTSIDE: "not in the controller state: the migration lost {paths}, but with {them} "
             "repaired it stays (what the design's save or load does: interrupts it sends, "
             "state it resets, timing)",
    NOTHING_LOST: "no completed migration lost controller state (a refused, hung or failed "
                  "save, guest memory, interrupts or timing)",
    UNEXPLAINED: "the model under {profile} does not reproduce it (it saw {seen}): "
                 "{profile} does not describe this",
    PASSES: "the trace passes now",
}


@attrs.frozen
class Cause:
    """A finding's root cause (``kind``; for ``STATE`` the lost ``paths`` it needs)."""

    kind: str
    paths: tuple[str, ...] = ()
    profile: str = ""           # the model profile the trace was explained on
    signature: str = ""         # the finding as the model saw it
    replays: int = 0

    @property
    def key(self) -> str:
        """What findings with one root cause share: e.g. ``lost inflight``; without a lost
        path to name, the kind and what the model saw (a refusal's reason, ...)."""
        if self.kind == STATE:
            return f"lost {' + '.join(self.paths)}"
        if self.kind == UNEXPLAINED:
            return f"{UNEXPLAINED} by {self.profile}"
        return f"{self.kind}: {self.signature}" if self.signature else self.kind

    def describe(self) -> str:
        them = "it" if len(self.paths) == 1 else "them"
        return SAYS[self.kind].format(paths=", ".join(self.paths) or "nothing", them=them,
                                      profile=self.profile, seen=self.signature or "a pass")

    def to_plain(self) -> dict:
        return {"kind": self.kind, "key": self.key, "paths": list(self.paths),
                "profile": self.profile, "signature": self.signature,
                "describe": self.describe()}


def _in_schema_order(paths: Iterable[str]) -> list[str]:
    order = {p: i for i, p in enumerate(SCHEMA)}
    return sorted(paths, key=lambda p: (order.get(p, len(order)), p))


def on_model(trace: Trace) -> Trace:
    """``trace`` as the model replays it: a QEMU trace runs under ``QEMU_PROFILE``, with the
    model showing what the qemu target can (``QEMU_VIEW``: commands complete within their
    step, an MSI-X vector shows once per look), the waivers the qemu target's sessions
    apply (``compare.TARGET_WAIVERS``), and the environment events it skips
    (``QEMU_EVENTS``) skipped the way it does: time advanced by nothing."""
    kind = trace.target.get("kind", "model")
    if kind == "model":
        return trace
    waivers = (*trace.waivers, *(w for w in TARGET_WAIVERS.get(kind, ())
                                 if w not in trace.waivers))
    skipped = Step("advance", {"ns": 0})      # what the qemu target does for such an event
    steps = tuple(skipped if s.action == "environment" and s.args.get("event") not in QEMU_EVENTS
                  else s for s in trace.steps)
    return attrs.evolve(trace, waivers=waivers, steps=steps, target={
        **trace.target, "kind": "model", "profile": QEMU_PROFILE, **QEMU_VIEW})


def candidates(profile: str, lost: Iterable[str]) -> list[str]:
    """What a repair may load from the twin: the lost paths (schema order), and the final
    RAM pass for a ``ram_first`` profile that lost anything."""
    out = _in_schema_order(lost)
    if out and get_profile(profile).ram_first:
        out.append(RAM_PASS)
    return out


def _stays(now: Verdict, verdict: Verdict) -> bool:
    """Does a repaired replay's verdict ``now`` still fail as ``verdict``?  It does when it
    fails the same way at the same step, or at any earlier step (a repair the design cannot
    load); failing later, differently at that step, or not at all, is a fix."""
    return not now.ok and (now.step < verdict.step or (
        now.step == verdict.step and now.signature == verdict.signature))


def fixes(model: Trace, repair: Iterable[str], verdict: Verdict,
          lost: Iterable[str]) -> tuple[bool, int]:
    """Does repairing ``repair`` make ``verdict`` go away?  What the repaired migrations lose
    that the unrepaired ones (``lost``) did not is the repair's doing (a load that re-derives
    less once it finds what it would have re-created) and is repaired too.  Also the replays
    it took."""
    repair, lost, replays = set(repair), set(lost), 0
    while True:
        replays += 1
        now, stats = replay(model, repair=frozenset(repair))
        if not _stays(now, verdict):
            return True, replays
        more = set(candidates(model.profile, lost_paths(stats))) - repair - lost
        if not more:
            return False, replays
        repair |= more


def _observations(verdict: Verdict) -> set[str]:
    """The observations a failing step differed in, without how: ``divergence:posted/io``
    for ``divergence:posted/io/missing`` and for ``divergence:posted/io/cqes``."""
    return {s.rsplit("/", 1)[0] for s in verdict.signatures}


def same(a: Verdict, b: Verdict) -> bool:
    """The same verdict class and signature: the same finding, wherever it was reached."""
    return (a.kind, a.signature) == (b.kind, b.signature)


def reproduces(seen: Verdict, verdict: Verdict) -> bool:
    """Does the model, reaching ``seen``, reproduce a target's ``verdict``?  It does when both
    pass or fail the same way, and when both diverge at the same step in one observation.
    Which of a step's observations differs first, and how, can depend on timing: a QEMU
    backend finishing a Read inside or after the save decides whether the destination lost
    one completion or both, so whether the guest misses the interrupt or one CQE."""
    if same(seen, verdict):
        return True
    return (seen.kind == verdict.kind == DIVERGENCE and seen.step == verdict.step
            and bool(_observations(seen) & _observations(verdict)))


def shows(now: Verdict, trace: Trace) -> bool:
    """Does a replay of ``trace`` that reached ``now`` show the finding ``trace`` stores?  The
    same verdict class and signature; on a target whose timing varies (QEMU), also a
    divergence at the same step in an observation the stored one differed in, the leeway
    ``reproduces`` gives the model (a corpus replay is no regression for it)."""
    return same(now, trace.verdict) or (trace.target.get("kind", "model") != "model"
                                        and reproduces(now, trace.verdict))


def _aligned(model: Trace, verdict: Verdict, want: Verdict) -> tuple[Trace, Verdict, Counter]:
    """``model`` with migrations made perfect (``TargetConfig.perfect_migrations``) while it
    diverges earlier than the target did: each time the last migration up to the step the
    model diverged at.  The target came through it (its timing let what was in flight
    finish in time), so the model must too to show what the target met later."""
    perfect: list[int] = []
    stats = Counter()
    while verdict.kind == want.kind == DIVERGENCE and verdict.step < want.step:
        n = sum(s.action == "migrate" for s in model.steps[:verdict.step + 1]) - 1
        if n < 0 or n in perfect:
            break                       # not a migration's loss: nothing to align
        perfect.append(n)
        model = attrs.evolve(model, target={**model.target, "perfect_migrations": [*perfect]})
        verdict, stats = replay(model)
    return model, verdict, stats


def explained(trace: Trace) -> tuple[Trace, Verdict, list[str], bool]:
    """``trace`` on the model, the verdict it reaches there, the repair candidates, and
    whether that reproduces ``trace``'s own verdict (``reproduces``; False: a QEMU behaviour
    ``QEMU_PROFILE`` does not describe).  Where the model diverges at a migration the target
    came through, that migration is made perfect on the model (``_aligned``)."""
    model = on_model(trace)
    verdict, stats = replay(model)
    if model is not trace and not reproduces(verdict, trace.verdict):
        aligned, seen, more = _aligned(model, verdict, trace.verdict)
        if reproduces(seen, trace.verdict):
            model, verdict, stats = aligned, seen, more
    same = model is trace or reproduces(verdict, trace.verdict)
    return model, verdict, candidates(model.profile, lost_paths(stats)), same


def attribute(trace: Trace) -> Cause:
    """The root cause of ``trace``'s finding, found by replaying it on the model."""
    model, verdict, lost, same = explained(trace)
    profile, replays = model.profile, 1
    if not same:
        return Cause(UNEXPLAINED, profile=profile, signature=verdict.signature,
                     replays=replays)
    if verdict.ok:
        return Cause(PASSES, profile=profile, replays=replays)
    if not lost:
        return Cause(NOTHING_LOST, profile=profile, signature=verdict.signature,
                     replays=replays)
    ok, replays = fixes(model, lost, verdict, lost)
    replays += 1
    if not ok:
        return Cause(OUTSIDE, tuple(lost), profile, verdict.signature, replays)
    need = list(lost)
    for path in lost:
        rest = [p for p in need if p != path]
        ok, n = fixes(model, rest, verdict, lost)
        replays += n
        if ok:                          # the finding still goes away without it
            need = rest
    return Cause(STATE, tuple(_in_schema_order(need)), profile, verdict.signature, replays)


def lost_values(trace: Trace, paths: Iterable[str]) -> list[tuple[int, str, object, object]]:
    """What exactly ``trace``'s migrations lost of ``paths`` (a cause's), replayed on the model
    as ``attribute`` does: (step of the migration, where, twin's value, migrated value), e.g.
    ``(4, "cq[0].tail", 3, 0)``: which queue, and the values a bug report needs."""
    paths = list(paths)
    out: list[tuple[int, str, object, object]] = []

    def look(i: int, step, session) -> None:
        lost = [p for p in paths if p in session.lost]
        if step.action == "migrate" and lost:
            twin, mig = capture(session.twin.ctrl), capture(session.mig.ctrl)
            out.extend((i, *d) for d in differences(twin, mig, lost))

    replay(explained(trace)[0], after_step=look)
    return out


def lost_lines(trace: Trace, cause: Cause | None) -> list[str]:
    """``lost_values`` of ``cause``'s paths as a report shows them, one line each:
    ``migrate at step 4: cq[0].tail: twin 3, migrated 0``; none unless lost state is the
    cause (outside the state, what was lost is not why the guest saw a difference)."""
    if cause is None or cause.kind != STATE:
        return []
    return [f"migrate at step {i}: {where}: twin {_brief(a)}, migrated {_brief(b)}"
            for i, where, a, b in lost_values(trace, cause.paths)]


def _brief(value: object, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = ["QEMU_PROFILE", "Cause", "attribute", "candidates", "explained", "fixes",
           "lost_lines", "lost_values", "on_model", "reproduces", "same", "shows"]
