"""What a run already knows, and whether a new divergence is one of those findings.

How it works
------------
A stored finding whose root cause (``fuzz.cause``) is lost state is known by that cause: a
new divergence is known when loading the state the known causes name from the twin at every
migration makes it go away, i.e. when fixing the stored findings would fix it too
(``posted/io/missing`` with interrupts off and ``irq/missing`` with them on are one loss).
Where no lost state explains a divergence (a refusal, a loss outside the state, a QEMU
behaviour the model does not reproduce) the signature decides, as it must.  So a known
signature no longer hides another bug behind it: a divergence that looks like a stored
finding but goes away only when other lost state is repaired is new, and is stored beside it
(its verdict names its cause, ``Verdict.identity``).

``match`` costs a few model replays of the example: one to see what its migrations lost
(none when the caller already knows, as the model target's session does), one with the
known causes' state repaired, and one with all of it repaired when the signature is known,
each again when a repair loses more (``cause.fixes``);
``stats`` counts them and how each finding was known.  It does nothing while nothing is
known.  Stored findings are attributed when the run starts (the cause a trace records is not
trusted: the model may have changed since).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import attrs

from nvmefuzz.errors import NvmeFuzzError
from nvmefuzz.fuzz.cause import (STATE, Cause, attribute, candidates, explained, fixes,
                                 on_model)
from nvmefuzz.trace.schema import Trace, Verdict


#: the root cause key of a finding the model cannot replay
NOT_REPLAYABLE = "not replayable on the model"


def root_cause(trace: Trace) -> Cause | None:
    """``cause.attribute``, or None for a trace the model cannot replay."""
    try:
        return attribute(trace)
    except NvmeFuzzError:
        return None


@attrs.define
class Known:
    """Known findings: their signatures, and the lost state of those that have a state cause
    (cause key -> the paths it needs)."""

    signatures: set[str] = attrs.Factory(set)
    causes: dict[str, frozenset[str]] = attrs.Factory(dict)
    #: ``known by root cause``, ``known by signature``, ``root cause replays``
    stats: Counter = attrs.Factory(Counter)

    @classmethod
    def of(cls, traces: Iterable[Trace]) -> Known:
        known = cls()
        for trace in traces:
            known.add(trace, root_cause(trace))
        return known

    def add(self, trace: Trace, cause: Cause | None) -> None:
        self.signatures.add(trace.verdict.signature)
        if cause is not None and cause.kind == STATE:
            self.causes[cause.key] = frozenset(cause.paths)

    @property
    def paths(self) -> frozenset[str]:
        """Every state path a known finding's cause needs."""
        return frozenset().union(*self.causes.values())

    def __bool__(self) -> bool:
        return bool(self.signatures)

    def match(self, trace: Trace, lost: Iterable[str] | None = None) -> bool:
        """Is ``trace``'s finding (its verdict) a known one?  ``lost``: the state paths its
        migrations lost, if the caller saw them (a model session)."""
        if not self:
            return False
        try:
            return self._match(trace, lost)
        except NvmeFuzzError:             # the model cannot replay it: the signature decides
            return trace.verdict.signature in self.signatures

    def _match(self, trace: Trace, lost: Iterable[str] | None) -> bool:
        verdict = trace.verdict
        if lost is None or on_model(trace) is not trace:
            self.stats["root cause replays"] += 1
            model, verdict, paths, same = explained(trace)
            if not same:
                self.stats["known by signature"] += trace.verdict.signature in self.signatures
                return trace.verdict.signature in self.signatures
        else:
            model, paths = trace, candidates(trace.profile, lost)
        fix = self.paths                  # repairing what was not lost changes nothing
        if fix and self._fixes(model, fix, verdict, paths):
            self.stats["known by root cause"] += 1
            return True                   # fixing the known findings fixes this one
        if verdict.signature not in self.signatures:
            return False
        if paths and self._fixes(model, paths, verdict, paths):
            return False                  # lost state explains it, but no known finding's
        self.stats["known by signature"] += 1
        return True

    def _fixes(self, model: Trace, repair: Iterable[str], verdict: Verdict,
               lost: Iterable[str]) -> bool:
        ok, replays = fixes(model, repair, verdict, lost)
        self.stats["root cause replays"] += replays
        return ok


__all__ = ["NOT_REPLAYABLE", "Known", "root_cause"]
