"""Completion order across steps: the legal reorderings of a nondeterministic target pass,
lost, duplicated or altered completions do not, and the strict comparator stays strict."""

from __future__ import annotations

import attrs

from nvmefuzz.fuzz.actions import ACTIONS
from nvmefuzz.fuzz.compare import Comparator, canonical_order
from nvmefuzz.fuzz.reorder import DoorbellTap, HostView, Ledger
from nvmefuzz.host.driver import Host, HostSQ, Outstanding
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import CQE
from nvmefuzz.targets import TargetConfig, open_target

CQ = 2
A, B, C, X = (1, 1), (1, 2), (1, 3), (1, 4)
STATUS = {A: 0x4285}                                 # A is a Compare that failed
LABEL = {A: "cqe/io/COMPARE", B: "cqe/io/WRITE_ZEROES", C: "cqe/io/READ", X: "cqe/io/WRITE"}


def done(key, phase: int = 1, **change):
    """The observation of consuming ``key``'s completion, as actions.completion_obs makes it."""
    fields = {"sqid": key[0], "cid": key[1], "status": STATUS.get(key, 0), "dw0": 0, "dw1": 0,
              "sqhd": 3, "phase": phase, **change}
    return (LABEL[key], fields)


def posted(*keys, phase: int = 1, **change):
    """CQEs of ``keys`` posted on the I/O CQ and not consumed yet."""
    cqes = tuple(CQE(cid=k[1], sqid=k[0], status=change.get("status", STATUS.get(k, 0)),
                     sqhd=3, phase=phase) for k in keys)
    return ("posted/io", {"qid": CQ, "cqes": cqes})


def view(*outstanding, synced: bool = False, size: int = 16) -> HostView:
    """A host with SQ 1 on CQ 2 of ``size`` entries; ``synced``: the controller's CQ head
    is known to be the host's."""
    return HostView(frozenset(outstanding), {0: 0, 1: CQ}, {0: 8, CQ: size},
                    frozenset({CQ}) if synced else frozenset())


class Pair:
    """Both sides of a session step by step through one comparator."""

    def __init__(self, ledger: bool = True) -> None:
        self.comparator = Comparator(ledger=Ledger() if ledger else None)

    def step(self, twin, mig, twin_view: HostView, mig_view: HostView):
        views = (twin_view, mig_view) if self.comparator.ledger is not None else None
        return self.comparator.check(canonical_order(twin), canonical_order(mig), views)


def consumed_one_at_a_time(pair: Pair):
    """A and B complete together; each side consumes them one per step, in its own order."""
    assert pair.step([posted(A, B)], [posted(B, A)], view(A, B, synced=True),
                     view(A, B, synced=True)) is None
    first = pair.step([done(A), posted(B)], [done(B), posted(A)],
                      view(B, synced=True), view(A, synced=True))
    if first is not None:
        return first
    return pair.step([done(B)], [done(A)], view(synced=True), view(synced=True))


# ---------------------------------------------------------------------- legal reorderings
def test_completions_consumed_in_different_steps_are_accepted():
    """Twin consumes A then B, the migrated side B then A: legal, and nothing stays owed."""
    pair = Pair()
    assert consumed_one_at_a_time(pair) is None
    ledger = pair.comparator.ledger
    assert ledger.owed() == 0
    assert ledger.consumed == ({}, {})


def test_the_strict_comparator_still_reports_the_same_steps():
    """Without a ledger (a deterministic target) the same steps are a finding."""
    diff = consumed_one_at_a_time(Pair(ledger=False))
    assert diff is not None
    assert diff.label == "cqe/io/WRITE_ZEROES/extra"


def test_phase_follows_the_slot_not_the_completion():
    """Entries swapped across the CQ wrap point carry each other's phase: not a difference."""
    pair = Pair()
    twin = [("posted/io", {"qid": CQ, "cqes": (CQE(cid=1, sqid=1, phase=1),
                                                 CQE(cid=2, sqid=1, phase=0))})]
    mig = [("posted/io", {"qid": CQ, "cqes": (CQE(cid=2, sqid=1, phase=1),
                                                CQE(cid=1, sqid=1, phase=0))})]
    assert pair.step(twin, mig, view(A, B), view(A, B)) is None


def test_a_full_cq_may_hold_different_completions():
    """With one free slot each side posts a different one of two concurrent completions, and
    the other once the host frees a slot."""
    pair = Pair()
    full = dict(synced=True, size=3)
    assert pair.step([posted(X, A)], [posted(X, B)], view(X, A, B, **full),
                     view(X, A, B, **full)) is None
    assert pair.comparator.ledger.owed() == 2
    assert pair.step([done(X), done(A), posted(B)], [done(X), done(B), posted(A)],
                     view(B, **full), view(A, **full)) is None
    assert pair.comparator.ledger.owed() == 0
    assert pair.step([done(B)], [done(A)], view(**full), view(**full)) is None
    assert pair.comparator.ledger.consumed == ({}, {})


def test_a_reset_cancels_what_a_full_cq_held():
    """Completions held in a full CQ are never posted once the hosts forget their commands."""
    pair = Pair()
    full = dict(synced=True, size=3)
    assert pair.step([posted(X, A)], [posted(X, B)], view(X, A, B, **full),
                     view(X, A, B, **full)) is None
    assert pair.step([], [], view(), view()) is None
    assert pair.comparator.ledger.owed() == 0


# ---------------------------------------------------------------------- still findings
def test_wrong_data_is_found_when_the_second_side_consumes():
    """A read whose data differs is a finding even when the sides consume it steps apart."""
    pair = Pair()
    steps = [([posted(C, B)], [posted(B, C)], (C, B), (C, B)),
             ([done(C, data=b"\0"), posted(B)], [done(B), posted(C)], (B,), (C,))]
    for twin, mig, tv, mv in steps:
        assert pair.step(twin, mig, view(*tv, synced=True), view(*mv, synced=True)) is None
    diff = pair.step([done(B)], [done(C, data=b"\x07")], view(synced=True), view(synced=True))
    assert diff is not None
    assert diff.label == "cqe/io/READ/data"
    assert diff.twin["data"] == b"\0" and diff.mig["data"] == b"\x07"


def test_host_view_finds_reads_racing_writes_to_their_blocks():
    """Reads outstanding with a write to a shared block, or with a Dataset Management on
    their namespace, are racy; a Read of other blocks or another namespace is not."""
    host = Host(bus=None)
    sq = host.sqs[1] = HostSQ(1, CQ, 16)

    def cmd(opc: int, nsid: int, slba: int, nlb: int) -> Outstanding:
        return Outstanding(opc, 0, 0, opc == 2, span=(nsid, slba, nlb))
    sq.outstanding.update({1: cmd(2, 1, 20, 5),          # Read 20-24
                           2: cmd(8, 1, 22, 5),          # Write Zeroes 22-26
                           3: cmd(2, 1, 27, 2),          # Read 27-28: clear of it
                           4: cmd(5, 2, 22, 1)})         # Compare, namespace 2
    tap = DoorbellTap(open_target(TargetConfig()))
    assert HostView.of(host, tap).racy == {(1, 1)}
    sq.outstanding[5] = cmd(9, 2, 0, 1)                  # a deallocate on namespace 2
    assert HostView.of(host, tap).racy == {(1, 1), (1, 4)}


def test_data_of_a_read_racing_a_write_is_not_compared():
    """The sides consume a racy Read in one step with different data: not a difference; its
    status still is.  The same Read not racing is compared."""
    for racy, mig_c, expect in ((True, done(C, data=b"\x07"), None),
                                (False, done(C, data=b"\x07"), "cqe/io/READ/data"),
                                (True, done(C, data=b"\x07", status=0x281), "cqe/io/READ/status")):
        pair = Pair()
        racing = HostView(frozenset({C}), {0: 0, 1: CQ}, {0: 8, CQ: 16}, frozenset({CQ}),
                          racy=frozenset({C}) if racy else frozenset())
        assert pair.step([posted(C)], [posted(C)], racing, racing) is None
        diff = pair.step([done(C, data=b"\0")], [mig_c], view(synced=True), view(synced=True))
        assert (diff and diff.label) == expect


def test_wrong_status_is_found_across_steps():
    """The same completion with another status is a finding, whichever step shows it."""
    pair = Pair()
    assert pair.step([posted(X, A)], [posted(X, B)], view(X, A, B, size=3),
                     view(X, A, B, size=3)) is None
    diff = pair.step([done(X), done(A), posted(B)], [done(X), done(B), posted(A, status=0)],
                     view(B, synced=True, size=3), view(A, synced=True, size=3))
    assert diff is not None
    assert diff.label == "cqe/io/COMPARE/status"
    assert diff.twin["status"] == 0x4285 and diff.mig["status"] == 0


def test_a_completion_owed_where_the_cq_has_room_is_missing():
    """Different completions while the CQ has a free slot: accepted only while the controller
    might think the CQ full (its head unknown), then a finding."""
    pair = Pair()
    assert pair.step([posted(A)], [posted(B)], view(A, B, size=4), view(A, B, size=4)) is None
    diff = pair.step([posted(A)], [posted(B)], view(A, B, synced=True, size=4),
                     view(A, B, synced=True, size=4))
    assert diff is not None
    assert diff.label == "posted/io/cqes"
    assert diff.twin["cqes"] == ((1, 1, 0x4285, 0, 0),)
    assert diff.mig["cqes"] == ((1, 2, 0, 0, 0),)


def test_a_consumed_completion_the_other_side_never_posts_is_missing():
    """Consumed by the twin, never shown by the migrated side although its CQ has room."""
    pair = Pair()
    diff = pair.step([done(A)], [done(B)], view(B, synced=True), view(A, synced=True))
    assert diff is not None
    assert diff.label == "cqe/io/WRITE_ZEROES/extra"      # the twin's B never came either
    assert diff.mig["cid"] == B[1]


def test_a_lost_completion_is_a_count_difference():
    """One completion fewer on the migrated side is a finding in the step it shows."""
    pair = Pair()
    diff = pair.step([posted(A, B)], [posted(A)], view(A, B), view(A, B))
    assert diff is not None and diff.label == "posted/io/cqes"
    pair = Pair()
    diff = pair.step([done(A), done(B)], [done(A)], view(synced=True), view(B, synced=True))
    assert diff is not None and diff.label == "cqe/io/WRITE_ZEROES/missing"


def test_a_duplicated_completion_is_a_finding():
    """A completion posted twice, or posted again after it was consumed, is a difference."""
    pair = Pair()
    diff = pair.step([posted(A, B)], [posted(A, A)], view(A, B), view(A, B))
    assert diff is not None and diff.label == "posted/io/cqes"
    pair = Pair()
    assert pair.step([done(A)], [done(A)], view(synced=True), view(synced=True)) is None
    diff = pair.step([], [posted(A)], view(synced=True), view(synced=True))
    assert diff is not None and diff.label == "posted/io/extra"


def stray(cid: int, status: int = 0x400B):
    """Consuming the completion of a stale SQ entry fetched again (no command of the host)."""
    return ("cqe/unknown/q2", {"sqid": 1, "cid": cid, "status": status, "dw0": 0, "dw1": 0,
                               "sqhd": 0, "phase": 1})


def stale(*cids: int, status: int = 0):
    """Those completions posted and not consumed yet."""
    return ("posted/io", {"qid": CQ, "cqes": tuple(CQE(cid=c, sqid=1, status=status, sqhd=0,
                                                       phase=1) for c in cids)})


def test_completions_of_no_command_may_come_in_either_order():
    """Stale entries fetched again complete in any order too: a full CQ shows another one on
    each side, each side consumes its own first, and the other's in a later step."""
    pair = Pair()
    full = dict(synced=True, size=4)
    assert pair.step([stale(5, 6, 8)], [stale(5, 7, 8)], view(**full), view(**full)) is None
    assert pair.step([stray(5, 0), stray(6, 0), stray(8, 0), stale(7)],
                     [stray(5, 0), stray(7, 0), stray(8, 0), stale(6)],
                     view(**full), view(**full)) is None
    assert pair.comparator.ledger.owed() == 2
    assert pair.step([stray(7, 0)], [stray(6, 0)], view(**full), view(**full)) is None
    assert pair.comparator.ledger.owed() == 0


def test_a_cid_of_no_command_recurring_on_one_side_only_is_a_reordering():
    """Stale entries fetched again: a zeroed one (CID 0, Invalid Namespace) and a stale Write
    with CID 0 and a Flush with CID 2 finish in either order into full CQs.  One side shows
    CID 0 twice, the other CID 0 and CID 2: strays by content, owed, not a duplicate."""
    pair = Pair()
    full = dict(synced=True, size=4)
    zeroed = CQE(cid=0, sqid=1, status=0x400B, sqhd=0, phase=1)

    def shows(cid):
        return ("posted/io", {"qid": CQ, "cqes": (zeroed, *stale(cid)[1]["cqes"],
                                                  *stale(3, status=0x4002)[1]["cqes"])})
    assert pair.step([shows(0)], [shows(2)], view(**full), view(**full)) is None
    assert pair.step([stray(0), stray(0, 0), stray(3, 0x4002), stale(2)],
                     [stray(0), stray(2, 0), stray(3, 0x4002), stale(0)],
                     view(**full), view(**full)) is None
    assert pair.comparator.ledger.owed() == 2
    assert pair.step([stray(2, 0)], [stray(0, 0)], view(**full), view(**full)) is None
    assert pair.comparator.ledger.owed() == 0


def test_a_completion_of_no_command_owed_where_the_cq_has_room_is_a_difference():
    """One side consumed a stale entry's completion; the other has room and shows nothing."""
    pair = Pair()
    diff = pair.step([stray(5, 0), stray(6, 0)], [stray(5, 0), stray(7, 0)],
                     view(synced=True), view(synced=True))
    assert diff is not None and diff.label.startswith("cqe/unknown/q2")
    pair = Pair()                         # the same while the CQs may be full: owed, not lost
    assert pair.step([stray(5, 0), stray(6, 0)], [stray(5, 0), stray(7, 0)],
                     view(), view()) is None


def test_a_stale_entry_of_an_outstanding_command_may_run_again_on_one_side_first():
    """The host rang SQ 1 past its own tail, so the controller fetched the stale entries
    behind the Compare A, which is still outstanding, and A's own entry again.  A CQ of 3
    entries fills up: one side posts A twice, the other A and the stale CID 0 (the order its
    backend finished them in); each posts the other one once the host frees the CQ."""
    again = CQE(cid=A[1], sqid=A[0], status=STATUS[A], sqhd=3, phase=1)
    zeroed = CQE(cid=0, sqid=1, status=0, sqhd=3, phase=1)
    full = dict(synced=True, size=3)

    def rung_past(*outstanding):
        return attrs.evolve(view(*outstanding, **full), overrun=frozenset({1}))
    pair = Pair()
    shows = [("posted/io", {"qid": CQ, "cqes": (again, zeroed)})], [
        ("posted/io", {"qid": CQ, "cqes": (again, again)})]
    assert pair.step(*shows, rung_past(A), rung_past(A)) is None
    assert pair.step([done(A), stray(0, 0), stale(1, status=STATUS[A])],
                     [done(A), stray(1, STATUS[A]), stale(0)], rung_past(), rung_past()) is None
    assert pair.comparator.ledger.owed() == 2
    assert pair.step([stray(1, STATUS[A])], [stray(0, 0)], rung_past(), rung_past()) is None
    assert pair.comparator.ledger.owed() == 0
    pair = Pair()                 # an SQ the host never rang past: A posted twice is a finding
    diff = pair.step(*shows, view(A, **full), view(A, **full))
    assert diff is not None and diff.label == "posted/io/cqes"


def test_a_completion_the_host_cannot_pair_is_compared_by_content():
    """A completion of no outstanding command is not paired with a command's completion."""
    pair = Pair()
    stray = ("cqe/unknown/q2", {"sqid": 1, "cid": 9, "status": 0, "dw0": 0, "dw1": 0,
                                "sqhd": 0, "phase": 1})
    diff = pair.step([done(A)], [stray], view(synced=True), view(A, synced=True))
    assert diff is not None and diff.label == "cqe/unknown/q2/extra"


# ---------------------------------------------------------------------- the doorbell tap
def test_tap_knows_when_the_controller_head_is_the_hosts():
    """The tap trusts a CQ head after the host rang what it consumed, not before, not after a
    head doorbell with another value, and never again after a write to CC."""
    target = open_target(TargetConfig())
    tap = DoorbellTap(target)
    host = Host(tap)
    ACTIONS["enable"](host, tap, {})
    assert 0 in tap.synced(host)                         # a new CQ starts at head 0
    ACTIONS["admin"](host, tap, {"opc": 6, "cdw10": 1, "length": 4096, "reap": False})
    ACTIONS["consume"](host, tap, {"qid": 0, "ring": False})
    assert host.cqs[0].head == 1 and 0 not in tap.synced(host)
    ACTIONS["ring_cq"](host, tap, {"qid": 0})
    assert 0 in tap.synced(host)
    ACTIONS["ring_cq"](host, tap, {"qid": 0, "value": 5})
    assert 0 not in tap.synced(host)
    ACTIONS["ring_cq"](host, tap, {"qid": 0})
    assert 0 in tap.synced(host)
    ACTIONS["reg_write"](host, tap, {"offset": regs.BY_NAME["INTMS"].offset, "value": 1})
    assert 0 in tap.synced(host)
    ACTIONS["reg_write"](host, tap, {"offset": regs.BY_NAME["CC"].offset,
                                     "value": host.read_reg("CC")})
    ACTIONS["ring_cq"](host, tap, {"qid": 0})
    assert 0 not in tap.synced(host)
    ACTIONS["enable"](host, tap, {})                     # a new admin CQ: trusted again
    assert 0 in tap.synced(host)


def test_tap_trusts_a_new_io_cq_and_forwards_the_rest():
    """A created I/O CQ starts trusted at head 0; everything else reaches the target."""
    target = open_target(TargetConfig())
    tap = DoorbellTap(target)
    host = Host(tap)
    ACTIONS["enable"](host, tap, {})
    assert tap.synced(host) == {0}                      # looked at after every step
    ACTIONS["create_cq"](host, tap, {"qid": 1, "size": 4})
    assert tap.synced(host) == {0, 1}
    assert tap.name == target.name and tap.deterministic_order is True
    ACTIONS["reg_write"](host, tap, {"offset": regs.cq_head_doorbell(1) + 2, "size": 2,
                                     "value": 0})
    assert tap.synced(host) == frozenset()


def test_a_cid_posted_again_by_a_stale_entry_on_both_sides_keeps_the_ledger_at_work():
    """A command's completion and a stale entry's with the same CID posted on both sides:
    no key for either, and a reordering of two other completions is still forgiven.  The
    same CID twice on one side only is a difference."""
    a_again = CQE(cid=A[1], sqid=A[0], status=0x400B, sqhd=3, phase=1)

    def with_dup(*keys):
        return ("posted/io", {"qid": CQ, "cqes": (*posted(A, *keys)[1]["cqes"], a_again)})
    pair = Pair()
    assert pair.step([with_dup(B, C)], [with_dup(C, B)], view(A, B, C), view(A, B, C)) is None
    assert pair.step([done(B), with_dup(C)], [done(C), with_dup(B)], view(A, C),
                     view(A, B)) is None
    assert pair.step([done(C), with_dup()], [done(B), with_dup()], view(A), view(A)) is None
    pair = Pair()
    diff = pair.step([posted(A, B)], [with_dup()], view(A, B), view(A, B))
    assert diff is not None and diff.label == "posted/io/cqes"


def test_host_view_names_the_sqs_rung_past_the_hosts_tail():
    """A tail past the host's own marks the SQ until it is created again; the host's own
    tail and a value the controller refuses (not below the SQ size) do not."""
    target = open_target(TargetConfig())
    tap = DoorbellTap(target)
    host = Host(tap)
    ACTIONS["enable"](host, tap, {})
    ACTIONS["create_cq"](host, tap, {"qid": 1, "size": 4})
    ACTIONS["create_sq"](host, tap, {"qid": 1, "cqid": 1, "size": 4})
    for value in (None, 4, 0xFFFF):
        ACTIONS["ring_sq"](host, tap, {"qid": 1, "value": value})
        assert HostView.of(host, tap).overrun == frozenset()
    ACTIONS["ring_sq"](host, tap, {"qid": 1, "value": 2})
    assert HostView.of(host, tap).overrun == {1}
    ACTIONS["ring_sq"](host, tap, {"qid": 1})
    assert HostView.of(host, tap).overrun == {1}
    ACTIONS["delete_sq"](host, tap, {"qid": 1})
    ACTIONS["create_sq"](host, tap, {"qid": 1, "cqid": 1, "size": 4})
    assert HostView.of(host, tap).overrun == frozenset()
