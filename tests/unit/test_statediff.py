"""Where two captured controller states differ, and repairing some paths of one from another."""

from __future__ import annotations

import copy

from nvmefuzz.model.snapshot import capture, select
from nvmefuzz.model.statediff import differences, differing, merge

from tests.fuzz.test_session import HARD, on_twin


def _hard_state() -> dict:
    return on_twin(HARD, capture)


def test_queues_differ_field_by_field_when_both_sides_hold_the_same_queues():
    a = _hard_state()
    b = copy.deepcopy(a)
    b["cq"][1]["waiting"] = []
    b["sq"][0]["head"] += 1
    b["features.err_rec"] = 7
    assert differing(a, b) == ["cq.waiting", "sq.head", "features.err_rec"]   # capture order
    assert differing(a, a) == []


def test_a_queue_missing_on_one_side_is_the_whole_list():
    a = _hard_state()
    b = copy.deepcopy(a)
    b["cq"] = b["cq"][:-1]
    assert differing(a, b) == ["cq"]


def test_differences_name_the_queue_and_the_values_on_each_side():
    a = _hard_state()
    b = copy.deepcopy(a)
    b["sq"][0]["head"] += 1
    b["features.err_rec"] = 7
    cqid = b["cq"][-1]["cqid"]
    b["cq"] = b["cq"][:-1]
    sq = a["sq"][0]
    assert differences(a, b, ["sq.head", "features.err_rec", "ram pass"]) == [
        (f"sq[{sq['sqid']}].head", sq["head"], sq["head"] + 1),
        ("features.err_rec", a["features.err_rec"], 7)]        # not a state path: nothing
    assert differences(a, b, ["cq"]) == [(f"cq[{cqid}]", a["cq"][-1], None)]
    assert differences(a, b, ["cq.tail"]) == [(f"cq[{cqid}]", a["cq"][-1], None)]
    assert differences(a, a, ["sq.head", "features.err_rec", "cq"]) == []


def test_merge_takes_the_paths_from_the_truth_and_leaves_the_rest():
    truth = _hard_state()
    saved = select(truth, frozenset({"cc", "sq", "sq.cqid", "sq.base", "sq.size",
                                     "cq", "cq.base", "cq.size"}))
    before = copy.deepcopy(saved)
    out = merge(saved, truth, ["sq.head", "features.err_rec"])
    assert saved == before                                   # not changed in place
    assert [q["head"] for q in out["sq"]] == [q["head"] for q in truth["sq"]]
    assert all("tail" not in q for q in out["sq"])           # only the field asked for
    assert out["features.err_rec"] == truth["features.err_rec"]
    assert out["cq"] == saved["cq"]


def test_merge_brings_queues_the_saved_state_lacks_whole_and_drops_extra_ones():
    truth = _hard_state()
    saved = select(truth, frozenset({"sq", "sq.cqid", "sq.base", "sq.size", "sq.head"}))
    saved["sq"] = [q for q in saved["sq"] if q["sqid"]]      # no admin SQ saved
    saved["sq"].append({"sqid": 9, "cqid": 1, "base": 0, "size": 2, "head": 0})
    out = merge(saved, truth, ["sq.head"])
    assert [q["sqid"] for q in out["sq"]] == [q["sqid"] for q in truth["sq"]]
    assert out["sq"][0] == truth["sq"][0]                    # the admin SQ, whole
