"""The mutant catalogue and the strategies that hunt it (bench/mutants.py's building blocks).

Field mutants follow the schema; every mutant resolves by name; the hard behavioural mutants
are killed by a hand-written trace (so they are killable) while ``full`` passes it; short
fixed-seed runs of the state machine kill representative mutants; the baselines are
deterministic for a seed.
"""

from __future__ import annotations

import random

import attrs
import pytest

from nvmefuzz.fuzz import baselines, walk
from nvmefuzz.fuzz.cause import attribute
from nvmefuzz.fuzz.campaign import load
from nvmefuzz.fuzz.session import replay
from nvmefuzz.model import profiles, snapshot as snap
from nvmefuzz.model.profiles import full, mutants as M
from nvmefuzz.targets import TargetConfig
from nvmefuzz.trace.schema import Step, Trace

CAMPAIGNS = ("mutant-hunt-admin", "mutant-hunt-io", "mutant-hunt-intx")
W, R = 1, 2
ON = [("enable", {"asqs": 7, "acqs": 7})]
ADV, MIG = ("advance", {"ns": 20_000}), ("migrate", {})


def _io(opc: int, slba: int, pattern: int = 0) -> tuple[str, dict]:
    return ("io", {"qid": 1, "opc": opc, "slba": slba, "nlb": 1, "pattern": pattern})


def _pair(cq: int = 8, sq: int = 8, ien: int = 1) -> list:
    return [("create_cq", {"qid": 1, "size": cq, "ien": ien, "iv": 0}),
            ("create_sq", {"qid": 1, "cqid": 1, "size": sq})]


#: a stalled SQ at migration: pool used up by completions waiting on a full CQ, one SQE unfetched
STALL = (ON + _pair(2, 4) + [_io(W, 0), _io(W, 1), _io(W, 2), ADV,
                             ("consume", {"qid": 1, "ring": False}), _io(W, 3), _io(W, 4),
                             _io(W, 5), MIG, ("ring_cq", {"qid": 1})]
         + [ADV, ("consume", {"qid": 1})] * 3)
#: a Read then a Write of the same block in flight at migration
RACE = ON + _pair() + [_io(W, 0, 1), ADV, ("consume", {"qid": 1}), _io(R, 0), _io(W, 0, 2),
                       MIG, ADV, ("consume", {"qid": 1})]
#: a Write completed and consumed on a 2-entry CQ, twice: the CQ has lapped, and is empty
LAPPED = ON + _pair(2, 4) + [_io(W, 0), ADV, ("consume", {"qid": 1}),
                             _io(W, 1), ADV, ("consume", {"qid": 1})]
#: a wrapped SQ at migration: two Writes done first, so the stall leaves head 3, tail 0
WRAPPED = ON + _pair(2, 4) + [_io(W, 9), ADV, ("consume", {"qid": 1})] * 2 + STALL[3:]
BAD_DB, AER = ("reg_write", {"offset": 0x1028, "value": 1}), ("aer", {})
#: three events queued with no AER outstanding, the newest the only one an AER can collect:
#: an Error (its type masked by the first), a Notice (masked likewise), then a SMART event
EVENTS = ON + [("admin", {"opc": 0x09, "cdw10": 0x0B, "cdw11": 0x2}), AER, BAD_DB, AER, BAD_DB,
               ("environment", {"event": "ns_changed", "arg": 1}),
               ("environment", {"event": "ns_changed", "arg": 2}),
               ("admin", {"opc": 0x09, "cdw10": 0x04, "cdw11": 0x100}), MIG, AER]
KILLERS = {
    "full+waiting-capped": (ON + _pair(2, 8) + [_io(W, i) for i in range(4)] + [ADV, MIG]
                            + [("consume", {"qid": 1}), ADV] * 4, True),
    "full+inflight-capped": (ON + _pair() + [_io(W, i) for i in range(3)]
                             + [MIG, ADV, ("consume", {"qid": 1})], True),
    "full+aer-queue-capped": (EVENTS, True),
    "full+wrapped-sq-clamped": (WRAPPED, True),
    "full+wrapped-cq-phase": (LAPPED + [MIG, _io(W, 2), ADV, ("consume", {"qid": 1})], True),
    "full+inflight-replayed-twice": (RACE, True),
    "full+source-fetches-after-capture": (RACE, True),
    "full+stalled-sq-not-rekicked": (STALL, True),
    "full+sqs-unlinked-from-cqs": (STALL, True),
    "full+used-not-recomputed": (STALL, True),
    "full+refused-save-stalls-sq": (STALL, True),
    "full-without-sq.tail": (STALL, True),
    "full+cq-eventidx-not-lagging": (ON + [("dbbuf", {})] + _pair(2, 4) + [
        _io(W, 0), _io(W, 1), _io(W, 2), ADV, MIG, ("consume", {"qid": 1})], True),
    "full+inflight-restarted": (ON + _pair() + [_io(W, 0), ("advance", {"ns": 5000}), MIG]
                                + [("advance", {"ns": 5000})] * 3, True),
    "full+cq-pending-recounted": (ON + _pair(ien=0) + [_io(W, 0), ADV, MIG, (
        "admin", {"opc": 0x0A, "cdw10": 7})], False),
    "full+intms-written-to-intmc": (ON + [("reg_write", {"offset": 0x0C, "value": 1}), MIG,
                                          ("reg_read", {"offset": 0x0C})], True),
    "full+timestamp-rebased": (ON + [("advance", {"ns": 3_600_000_000_000}), MIG, (
        "admin", {"opc": 0x0A, "cdw10": 0x0E, "length": 8})], True),
    "full+err-rec-low-word": (ON + [("admin", {"opc": 0x09, "cdw10": 5, "cdw11": 1 << 20,
                                               "nsid": 1}), MIG,
                                    ("admin", {"opc": 0x0A, "cdw10": 5, "nsid": 1})], True),
    "full+dbbuf-addresses-zero": (ON + [("dbbuf", {})] + _pair() + [
        MIG, _io(W, 0), ADV, ("consume", {"qid": 1})], True),
}


def _replay(profile: str, steps: list, msix: bool):
    trace = Trace(target=TargetConfig(profile=profile, msix=msix).to_plain(),
                  campaign="killers", seed=0, steps=tuple(Step(a, k) for a, k in steps),
                  refusals="continue")
    return replay(trace)[0]


def _camps(profile: str) -> list:
    return [load(c).with_profile(profile) for c in CAMPAIGNS]


# ---------------------------------------------------------------------- the catalogue
def test_one_field_mutant_per_path_full_saves():
    """The generated field mutants are exactly full-without-P for every path full saves."""
    assert set(M.FIELDS) == {f"full-without-{p}" for p in full.PROFILE.saves}
    assert all(M.KIND[n] == M.FIELD for n in M.FIELDS)


def test_field_mutants_grow_with_the_schema(monkeypatch):
    """A field added to snapshot.SCHEMA gets its mutant without anyone writing one."""
    before = M.field_mutants()
    monkeypatch.setattr(snap, "SCHEMA", (*snap.SCHEMA, "features.brand_new"))
    after = M.field_mutants()
    assert set(after) - set(before) == {"full-without-features.brand_new"}
    assert "features.brand_new" not in after["full-without-features.brand_new"].saves
    assert after["full-without-cc"].saves == before["full-without-cc"].saves | {
        "features.brand_new"}


def test_field_mutants_follow_a_profiles_saved_paths():
    """A profile saving one more path yields one more field mutant."""
    wider = attrs.evolve(full.PROFILE, saves=full.PROFILE.saves | {"cq.brand_new"})
    assert set(M.field_mutants(wider)) == set(M.FIELDS) | {"full-without-cq.brand_new"}


def test_catalogue_has_the_hand_written_and_shipped_mutants():
    """At least 15 behavioural mutants plus the six shipped bug classes, each documented."""
    kinds = list(M.KIND.values())
    assert kinds.count(M.BEHAVIOUR) >= 15 and kinds.count(M.SHIPPED) == 6
    for name, mutant in M.MUTANTS.items():
        assert mutant.name == name and mutant.description and mutant.source
        assert mutant.saves <= full.PROFILE.saves


@pytest.mark.parametrize("name", sorted(M.MUTANTS))
def test_every_mutant_resolves_through_profiles_get(name):
    """profiles.get finds every mutant by its name."""
    got = profiles.get(name)
    assert got.name == name and got.saves == M.MUTANTS[name].saves


def test_not_killable_mutants_are_field_mutants_with_an_argument():
    """Every not-killable entry names a real mutant and says why."""
    assert set(M.NOT_KILLABLE) <= set(M.FIELDS)
    assert all(len(why) > 40 for why in M.NOT_KILLABLE.values())
    assert len(M.killable()) == len(M.MUTANTS) - len(M.NOT_KILLABLE)


# ---------------------------------------------------------------------- killability
@pytest.mark.parametrize("name", sorted(KILLERS))
def test_hard_mutant_is_killed_by_a_known_trace(name):
    """A hand-written trace tells the mutant from full; full itself passes it."""
    steps, msix = KILLERS[name]
    assert _replay("full", steps, msix).ok
    assert not _replay(name, steps, msix).ok


@pytest.mark.parametrize("name", ["full+csts-not-migrated", "full-without-cq.tail",
                                  "full+vector-ien-swapped", "full+enabled-flag-stale",
                                  "full-without-host_writes",
                                  "full-without-features.err_rec"])
def test_state_machine_kills_representative_mutants(name):
    """A fixed-seed nvmefuzz run kills the mutant and shrinks the reproducer.

    The seed fixes which example kills it; the time bound is only a safety net (speed is
    measured by bench/mutants.py, never asserted here)."""
    kill = baselines.state_machine(_camps(name), seed=1, seconds=90)
    assert kill.killed
    assert kill.length <= kill.raw_length
    trace = Trace.decode(kill.trace)
    assert trace.profile == name and not replay(trace)[0].ok
    # and its root cause is the state the mutant loses
    assert attribute(trace).paths == CAUSE[name]


#: the lost state ``fuzz.cause`` must name for each representative mutant's reproducer
CAUSE = {"full+csts-not-migrated": ("csts",), "full-without-cq.tail": ("cq.tail",),
         "full+vector-ien-swapped": ("cq.ien",),   # the interrupt missed: its vector is next
         "full+enabled-flag-stale": (),      # a derived flag: no saved state differs
         "full-without-host_writes": ("host_writes",),
         "full-without-features.err_rec": ("features.err_rec",)}


def test_state_machine_leaves_full_alone():
    """The control: a short run finds nothing in full."""
    kill = baselines.state_machine(_camps("full"), seed=1, seconds=2)
    assert not kill.killed and kill.examples > 0


# ---------------------------------------------------------------------- baselines
def test_random_steps_are_deterministic_for_a_seed():
    """The same seed draws the same steps, and every step is of the vocabulary."""
    a = [walk.random_step(random.Random(5)) for _ in range(3)]
    r1, r2 = random.Random(9), random.Random(9)
    s1 = [walk.random_step(r1) for _ in range(200)]
    assert s1 == [walk.random_step(r2) for _ in range(200)]
    assert {s.action for s in s1} <= set(walk.NAMES) and a[0] == a[1] == a[2]


def test_random_walk_run_is_deterministic_for_a_seed():
    """Two random-walk hunts with one seed kill after the same walks with the same trace."""
    one = baselines.random_walk(_camps("full+csts-not-migrated"), seed=3, seconds=20)
    two = baselines.random_walk(_camps("full+csts-not-migrated"), seed=3, seconds=20)
    assert one.killed and two.killed
    assert (one.examples, one.trace, one.signature) == (two.examples, two.trace, two.signature)
    assert not replay(Trace.decode(one.trace))[0].ok


def test_walks_keep_their_length_whatever_the_campaign_step_budget():
    """Campaigns of 5 steps per example still get walks of ``WALK_STEPS`` steps: a walk
    longer than the campaign's examples kills."""
    camps = [attrs.evolve(c, steps=5) for c in _camps("full+csts-not-migrated")]
    kill = baselines.random_walk(camps, seed=3, seconds=20)
    assert kill.killed and 5 < kill.length <= baselines.WALK_STEPS


def test_functional_test_passes_full_and_catches_lost_io():
    """The functional workload passes on full and fails when in-flight I/O is dropped."""
    assert not baselines.functional(_camps("full"), seed=1, seconds=1).killed
    kill = baselines.functional(_camps("full-without-inflight"), seed=1, seconds=10)
    assert kill.killed and kill.signature.startswith(("hung:workload", "divergence:workload"))


def test_campaigns_take_batches_in_turn_growing_to_the_cap():
    """Each round of campaigns doubles the batch: every campaign is tried early, later batches
    are long enough for Hypothesis' target phase (20 examples and more)."""
    sizes = [baselines.batch_size(b, 3) for b in range(18)]
    assert sizes[:3] == [3] * 3 and sizes[3:6] == [6] * 3 and sizes[6:9] == [12] * 3
    assert sizes[-1] == baselines.MAX_BATCH == 80 and sizes == sorted(sizes)
