"""Which rules a campaign's state machine has, how often, and when each applies.

How it works
------------
``register(Machine, campaign)`` adds to the machine class (``machine.build_machine``) one
Hypothesis rule per unit of each rule's campaign weight: a rule of weight ``w`` is
registered ``w`` times (Hypothesis picks uniformly among applicable rules), weight 0 leaves
it out.  ``_table`` names, for each rule, the machine's method that runs it
(``r_<name>``), the precondition (read from the twin's host view: which queues exist, which
SQ has room), the bundle(s) it adds queue ids to, and the strategies that draw from the
machine's bundles; the other arguments are ``arguments.ARGUMENTS``.

The copies of a queue-creating rule past the first apply only while the host has fewer than
``BUILT`` I/O queues of that kind: queues are built early and then used (one copy stays, so
invalid and duplicate creations still happen).  Likewise the copies of a rule that resets
the controller (``RESETS``) apply only while I/O commands are outstanding, or while the
controller is failed (an enable made it CFS: a driver resets it).  A precondition that
always holds is left out: Hypothesis checks every one each time it considers the rule.
"""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import strategies as st
from hypothesis.stateful import consumes, precondition, rule

from nvmefuzz.fuzz.arguments import ARGUMENTS, QIDS, SIZES, pairs
from nvmefuzz.fuzz.campaign import Campaign

#: I/O queues of a kind (CQs, SQs) from which on only one copy of a queue-creating rule stays
#: applicable: the rest of a campaign's weight builds queues early, then the queues are used
BUILT = 2
#: rules that reset the controller: the copies of one past the first apply only while I/O
#: commands are outstanding (a storm of them hits a busy controller) or the controller failed
RESETS = frozenset({"reset", "shutdown", "restart"})


def always(m: Any) -> bool:
    return True


def admin_ok(m: Any) -> bool:
    return 0 in m.host.sqs and m.host.sqs[0].free() > 0


def io_busy(m: Any) -> bool:
    return any(s.outstanding for q, s in m.host.sqs.items() if q)


def io_sqs(m: Any) -> list[int]:
    """The I/O SQs with room for a command."""
    return sorted(q for q, s in m.host.sqs.items() if q and s.free() > 0)


def _table(M: Any, camp: Campaign) -> dict[str, tuple[Callable, Any, dict]]:
    """Each rule: its precondition, bundle(s) and the strategies drawing from bundles."""
    return {
        "enable": (lambda m: 0 not in m.host.sqs, None, {}),
        "reset": (always, None, {}),
        "shutdown": (always, None, {}),
        "restart": (always, ("cqs", "sqs"), {"pairs": pairs(camp.queue_pairs, least=1)}),
        "register_write": (always, None, {}),
        "register_read": (always, None, {}),
        "migrate": (always, None, {}),
        "create_cq": (admin_ok, "cqs", {}),
        "create_sq": (admin_ok, "sqs", {
            "qid": QIDS, "cqid": st.one_of(M.cqs, st.sampled_from([0, 5, 9])),
            "size": SIZES, "pc": st.sampled_from([1, 1, 1, 1, 0])}),
        # QEMU cancels a deleted SQ's commands and waits for each: a held one never finishes
        "delete_sq": (lambda m: admin_ok(m) and not m.session.held(), None, {
            "qid": st.one_of(consumes(M.sqs), st.sampled_from([0, 7]))}),
        "delete_cq": (admin_ok, None, {
            "qid": st.one_of(consumes(M.cqs), st.sampled_from([0, 7]))}),
        "io": (lambda m: bool(io_sqs(m)), None, {}),
        "ring_sq": (lambda m: bool(m.host.sqs), None, {}),
        "ring_cq": (lambda m: bool(m.host.cqs), None, {}),
        "bad_doorbell": (always, None, {}),
        "consume": (lambda m: bool(m.host.cqs), None, {}),
        "advance": (always, None, {}),
        "aer": (admin_ok, None, {}),
        "identify": (admin_ok, None, {}),
        "get_log_page": (admin_ok, None, {}),
        "get_features": (admin_ok, None, {}),
        "set_features": (admin_ok, None, {}),
        "temperature_event": (lambda m: 0 in m.host.sqs and m.host.sqs[0].free() > 1, None, {}),
        "abort": (admin_ok, None, {}),
        "bad_admin": (admin_ok, None, {}),
        "dbbuf": (admin_ok, None, {}),
        "ns_changed": (always, None, {}),
        "hold_io": (always, None, {}),
        "read_back": (lambda m: bool(m.readable), None, {}),
    }


def register(M: Any, camp: Campaign) -> None:
    """Add ``camp``'s rules to the machine class ``M``, each as often as its weight."""
    table = _table(M, camp)
    for name, weight in camp.weights.items():
        first, bundle, extra = table[name]
        fn = getattr(M, f"r_{name}")
        strategies = {**ARGUMENTS.get(name, {}), **extra}
        target_kw = ({"target": getattr(M, bundle)} if isinstance(bundle, str) else
                     {"targets": tuple(getattr(M, b) for b in bundle)} if bundle else {})
        for copy in range(weight):
            def body(self, _fn=fn, **kw):
                return _fn(self, **kw)
            body.__name__ = f"{name}_{copy}" if copy else name
            pre = first
            if isinstance(bundle, str) and copy:   # a queue-building weight counts while
                pre = (lambda m, _pre=first, _b=bundle:    # queues are few
                       _pre(m) and len(getattr(m.host, _b)) <= BUILT)
            elif name in RESETS and copy:          # while I/O is busy or the controller failed
                pre = (lambda m, _pre=first: _pre(m) and (io_busy(m) or m.failed))
            gated = body if pre is always else precondition(pre)(body)
            setattr(M, body.__name__, rule(**target_kw, **strategies)(gated))


__all__ = ["BUILT", "RESETS", "io_sqs", "register"]
