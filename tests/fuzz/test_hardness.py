"""The hard states: what they count on a model controller at a given moment."""

from __future__ import annotations

from nvmefuzz.fuzz.hardness import STATES, depths, measure, names, overlapping
from nvmefuzz.trace.schema import Step

from tests.fuzz.test_session import on_twin

PAIR = [Step("enable", {"asqs": 7, "acqs": 7}),
        Step("create_cq", {"qid": 1, "size": 8, "iv": 0}),
        Step("create_sq", {"qid": 1, "cqid": 1, "size": 8})]


def _io(opc: int, slba: int, nlb: int = 1, **extra) -> Step:
    return Step("io", {"qid": 1, "opc": opc, "slba": slba, "nlb": nlb, "pattern": 1, **extra})


def _scores(steps: list[Step]) -> dict[str, int]:
    return on_twin(steps, measure)


def test_a_quiet_controller_scores_zero_everywhere():
    assert _scores(PAIR) == dict.fromkeys(STATES, 0)


def test_commands_in_flight_on_the_same_blocks_are_counted_in_pairs():
    """A Read of blocks 0-3, a Write of block 2 (overlaps), a Write of block 9 (does not)."""
    got = _scores(PAIR + [_io(2, 0, 4), _io(1, 2), _io(1, 9)])
    assert got["I/O in flight"] == 3
    assert got["commands in flight on the same blocks"] == 1
    assert got["a Read in flight ahead of a Write to its blocks"] == 1
    behind = _scores(PAIR + [_io(1, 2), _io(2, 0, 4), _io(1, 2)])    # Write, Read, Write
    assert behind["commands in flight on the same blocks"] == 3
    assert behind["a Read in flight ahead of a Write to its blocks"] == 1
    done = _scores(PAIR + [_io(2, 0, 4), _io(1, 2), Step("advance", {"ns": 100_000})])
    assert done["I/O in flight"] == 0
    assert done["commands in flight on the same blocks"] == 0


def test_a_stalled_sq_and_completions_waiting_on_a_full_cq():
    """A 2-entry CQ fills, its SQ's request pool is used up, the last Write stays unfetched."""
    steps = [PAIR[0], Step("create_cq", {"qid": 1, "size": 2, "iv": 0}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 4}),
             _io(1, 0), _io(1, 1), _io(1, 2), Step("advance", {"ns": 20_000}),
             Step("consume", {"qid": 1, "ring": False}), _io(1, 3), _io(1, 4), _io(1, 5)]
    got = _scores(steps)
    assert got["a full CQ with waiting completions"] == 2
    assert got["SQ entries not fetched"] == 1
    assert got["I/O in flight"] == 2
    unrung = _scores(PAIR + [_io(1, 0, ring=False)])        # written, never rung: not counted
    assert unrung["SQ entries not fetched"] == 0


def test_no_model_no_scores():
    assert measure(None) == {} and overlapping([]) == 0


def test_aer_slots_events_and_shadow_doorbells():
    aers = [PAIR[0]] + [Step("aer", {})] * 4 + [Step("dbbuf", {})]
    got = _scores(aers)
    assert got["AER requests outstanding"] == 4 and got["every AER slot used"] == 1
    assert got["shadow doorbells on"] == 1 and got["events queued"] == 0
    assert names(got) == ["AER requests outstanding", "every AER slot used",
                          "shadow doorbells on"]
    assert len(names(got)) == 3
    one = _scores([PAIR[0], Step("aer", {})])
    assert one["AER requests outstanding"] == 1 and one["every AER slot used"] == 0


def test_a_controller_that_failed_to_start():
    """An enable with a misaligned admin SQ leaves CSTS.CFS set until the next reset."""
    failed = [*PAIR, Step("disable", {}), Step("enable", {"asqs": 7, "acqs": 7, "misalign": 8})]
    assert names(_scores(failed)) == ["a failed controller (CSTS.CFS)"]
    assert names(_scores([*failed, Step("disable", {})])) == []


def test_events_of_two_types_waiting_for_aers():
    """A namespace change (Notice) and a temperature crossing (SMART) queue with no AER
    outstanding: two AERs would collect them.  Once an AER has taken the Notice, its type is
    masked, and a second Notice queued behind the SMART event waits for the log read."""
    both = [PAIR[0], Step("environment", {"event": "ns_changed", "arg": 1}),
            Step("admin", {"opc": 0x09, "cdw10": 0x0B, "cdw11": 1 << 1}),   # SMART temp AEN
            Step("admin", {"opc": 0x09, "cdw10": 0x04})]       # threshold 0: crossed
    name = "events of two types waiting for AERs"
    got = _scores(both)
    assert got["events queued"] == 2 and got[name] == 1
    taken = _scores([*both, Step("aer", {})])
    assert taken["events queued"] == 1 and taken[name] == 0
    masked = _scores([*both, Step("aer", {}),
                      Step("environment", {"event": "ns_changed", "arg": 2})])
    assert masked["events queued"] == 2 and masked[name] == 0


def test_depths_bucket_small_counts_singly_then_by_powers_of_two():
    counts = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "f": 7, "g": 8}
    assert depths(counts) == {("b", 1), ("c", 2), ("d", 3), ("e", 4), ("f", 4), ("g", 5)}
    assert depths({"a": 4}) == depths({"a": 7}) != depths({"a": 8})
