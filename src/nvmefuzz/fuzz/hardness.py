"""How hard a state the controller is in: what migrations are counted and scored by.

How it works
------------
Migration code goes wrong where the controller is busy: completions waiting on a full CQ,
AERs outstanding (every slot taken), events queued for AERs not yet sent (worse: events of
two types not masked, so two AERs would collect them, which a design with one pending-event
slot cannot hold), I/O in flight (worse: two commands in flight on the same blocks, where a
replayed, reordered or doubly fetched command shows in the data; worst, a Read ahead of a
Write to its blocks: a Write replayed twice or landed early changes what the Read returns),
SQ entries rung but not yet fetched, shadow doorbells in use, a controller that failed to
start (its CSTS.CFS must survive the migration, and a destination must not start it).
``STATES`` is the one table of them: a name and how to count it on the model's controller.
``measure(ctrl)`` gives every count (the host cannot see them; without a model it gives
nothing), ``names(counts)`` the states present and ``depths(counts)`` each with how deep
in it the controller is (1, 2, 3, then powers of two: the steering key).

Three users read the table: the session counts, per migration, the states it started from
(``migrated with ...`` statistics in every run summary); the state machine reports with
``target()`` its hardest migration (the most states present together at one migration of
the example, a small bounded number Hypothesis' target phase can climb); and it migrates
unasked from sets of them, at depths, no migration of the run started from yet (``Memory``).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping

import attrs

from nvmefuzz.model import events
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.spec import IoOpcode as IO


#: commands that read the medium, and that write it (a Write behind a Read of the same blocks
#: is the hazard: replayed early or twice, it changes what the Read returns)
READS = frozenset({IO.READ, IO.COMPARE})
WRITES = frozenset({IO.WRITE, IO.WRITE_ZEROES, IO.WRITE_UNCORRECTABLE})


def _spans(inflight: list) -> list[tuple[int, int, int]]:
    """(opcode, SLBA, blocks) of each in-flight I/O command, in fetch order."""
    return [(r.sqe.opc, *r.sqe.lba_range) for r in inflight if r.sqid]


def overlap(a: int, n: int, b: int, m: int) -> bool:
    """Do the LBA ranges of ``n`` blocks from ``a`` and ``m`` blocks from ``b`` share one?"""
    return a < b + m and b < a + n


def _pairs(inflight: list, first: frozenset | None = None, then: frozenset | None = None) -> int:
    """Pairs of in-flight I/O commands, the earlier one's opcode in ``first`` and the later
    one's in ``then`` (None: any), whose LBA ranges overlap."""
    spans = _spans(inflight)
    return sum(overlap(a, n, b, m)
               for i, (op1, a, n) in enumerate(spans) if first is None or op1 in first
               for op2, b, m in spans[i + 1:] if then is None or op2 in then)


def overlapping(inflight: list) -> int:
    """Pairs of in-flight I/O commands whose LBA ranges overlap."""
    return _pairs(inflight)


def _unfetched(ctrl: Any) -> int:
    return sum((q.tail - q.head) % q.size for q in ctrl.sqs.values() if q.sqid)


def _collectable(ctrl: Any) -> set[int]:
    """The types of queued events whose type no AER completion has masked: each would
    complete the next AER."""
    return {e.type for e in ctrl.aer_queue if not events.masked(ctrl, e.type)}


#: every hard state: its name (as in ``migrated with <name>``) and its count on a controller
STATES: dict[str, Callable[[Any], int]] = {
    "a full CQ with waiting completions":
        lambda c: sum(len(q.waiting) for q in c.cqs.values() if q.full()),
    "AER requests outstanding": lambda c: len(c.aer_reqs),
    "every AER slot used": lambda c: int(len(c.aer_reqs) == c.config.aerl + 1),
    "events queued": lambda c: len(c.aer_queue),
    "events of two types waiting for AERs": lambda c: int(len(_collectable(c)) > 1),
    "I/O in flight": lambda c: len(c.inflight),
    "commands in flight on the same blocks": lambda c: overlapping(c.inflight),
    "a Read in flight ahead of a Write to its blocks":
        lambda c: _pairs(c.inflight, READS, WRITES),
    "SQ entries not fetched": _unfetched,
    "shadow doorbells on": lambda c: int(c.dbbuf_enabled),
    "a failed controller (CSTS.CFS)": lambda c: int(bool(c.csts & regs.CSTS_CFS)),
}
#: the one score ``target()`` climbs: how many of them one migration starts from at once
TARGET = "hard states at one migration"


def measure(ctrl: Any) -> dict[str, int]:
    """Each hard state's count on a model controller (``{}`` without one)."""
    if ctrl is None:
        return {}
    return {name: count(ctrl) for name, count in STATES.items()}


def names(counts: Mapping[str, int]) -> list[str]:
    """The hard states present, in ``STATES`` order."""
    return [name for name, n in counts.items() if n]


def depth(n: int) -> int:
    """A count's bucket: 1, 2 and 3 each their own, then 4-7, 8-15, ... (as fuzzers bucket
    hit counts)."""
    return n if n < 4 else n.bit_length() + 1


def depths(counts: Mapping[str, int]) -> frozenset[tuple[str, int]]:
    """The hard states present, each with its depth bucket.  Steering keys on it, so a
    migration from deeper in a state than any before (more completions waiting, events
    queued or commands in flight than a fixed-size save array may hold) is somewhere new,
    while counts within one bucket are not."""
    return frozenset((name, depth(n)) for name, n in counts.items() if n)


@attrs.define
class Memory:
    """What a run's migrations have started from: sets of hard states (``names``) and
    changes (read-back keys), for steering.

    A machine migrates unasked the first time an example is somewhere no migration of the run
    started from.  ``seen`` changes only between batches (``commit``): within a batch the same
    choices give the same steps, as Hypothesis needs when it replays and shrinks; what the
    batch's examples met waits in ``pending`` until then."""

    seen: set[Hashable] = attrs.Factory(set)
    pending: set[Hashable] = attrs.Factory(set)

    def commit(self) -> None:
        self.seen |= self.pending
        self.pending = set()
