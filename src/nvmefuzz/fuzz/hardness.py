"""How hard a state a migration starts from: the scores ``target()`` climbs.

How it works
------------
Migration code goes wrong where the controller is busy: completions waiting on a full CQ,
every AER slot taken, events queued for AERs not yet sent, I/O in flight (worse: two
commands in flight on the same blocks, where a replayed, reordered or doubly fetched command
shows in the data), SQ entries rung but not yet fetched.  ``measure(ctrl)`` counts each of
these on the model's controller (the host cannot see them; on a target without a model it
returns nothing).  The state machine reports with ``target()`` the most of these kinds that
were present together at one migration of the example (0 to 6): Hypothesis' target phase
then mutates examples towards migrations where several coincide -- a stalled SQ with
completions waiting and commands in flight -- and, the score being small and bounded, gives
the rest of the batch back to generation once it cannot climb further.
"""

from __future__ import annotations

from typing import Any

#: the hard states, in ``measure``'s order
HARD = tuple(f"{name} at migration" for name in (
    "waiting completions on a full CQ", "AER slots used", "queued events", "I/O in flight",
    "commands in flight on the same blocks", "SQ entries not fetched"))
#: the one score ``target()`` climbs: how many of them one migration starts from at once
TARGET = "hard states at one migration"


def overlapping(inflight: list) -> int:
    """Pairs of in-flight I/O commands whose LBA ranges overlap."""
    spans = [(r.sqe.cdw10 | r.sqe.cdw11 << 32, (r.sqe.cdw12 & 0xFFFF) + 1)
             for r in inflight if r.sqid]
    return sum(a < b + m and b < a + n
               for i, (a, n) in enumerate(spans) for b, m in spans[i + 1:])


def measure(ctrl: Any) -> dict[str, int]:
    """Each hard state's count on a model controller (``{}`` without one)."""
    if ctrl is None:
        return {}
    counts = (sum(len(q.waiting) for q in ctrl.cqs.values() if q.full()),
              len(ctrl.aer_reqs), len(ctrl.aer_queue), len(ctrl.inflight),
              overlapping(ctrl.inflight),
              sum((q.tail - q.head) % q.size for q in ctrl.sqs.values() if q.sqid))
    return dict(zip(HARD, counts))
